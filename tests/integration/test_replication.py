"""`replicate add / remove` against real clusters: one cluster and two, fan-out, undo, faults."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agentchat import _db, errors, install, policy, replication, topology
from agentchat.server import Cluster
from agentchat.sql import load_migrations
from agentchat.topology import Topology
from tests import helpers
from tests.helpers import execute


def new_db(cluster: Cluster, prefix: str = "t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    execute(cluster.conninfo(), f'CREATE DATABASE "{name}"')
    return cluster.conninfo(name)


@pytest.fixture
def extra_dbs(hub: Cluster, remote: Cluster) -> Iterator[list[str]]:
    """Databases a test creates itself (dropped afterwards with their subscriptions)."""
    made: list[str] = []
    yield made
    for conninfo in made:
        port = psycopg.conninfo.conninfo_to_dict(conninfo)["port"]
        cluster = hub if str(port) == str(hub.port) else remote
        helpers.drop_database(cluster, helpers.dbname(conninfo))


@pytest.fixture
def source(db: str) -> str:
    install.install(db)
    return db


def slots(cluster: Cluster) -> set[str]:
    return {r[0] for r in execute(cluster.conninfo(), "SELECT slot_name FROM pg_replication_slots")}


def send(conninfo: str, text: str, mentions: tuple[str, ...] = ("graybeard",)) -> int:
    [(msg_id,)] = execute(
        conninfo, "SELECT send_agent_message('nova', %s, %s)", (text, list(mentions))
    )
    return int(msg_id)


def own_subscription(conninfo: str) -> tuple[str, str, bool]:
    """(name, conninfo, enabled) of the one subscription of this database."""
    [(name, info, enabled)] = execute(
        conninfo,
        "SELECT subname, subconninfo, subenabled FROM pg_subscription"
        " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return str(name), str(info), bool(enabled)


def arrived(conninfo: str, msg_id: int) -> bool:
    return bool(execute(conninfo, "SELECT count(*) FROM agent_chat WHERE id = %s", (msg_id,))[0][0])


@pytest.mark.parametrize("layout", ["one-cluster", "two-clusters"])
def test_add_replicates_messages_and_embeddings(
    layout: str, hub: Cluster, source: str, db2: str, remote_db: str, tmp_path
) -> None:
    target = db2 if layout == "one-cluster" else remote_db
    before = send(source, "history before the subscription")
    topo = Topology(tmp_path / "agentchat.toml")
    result = replication.add(source, target, topology=topo, timeout=60)
    assert result.same_cluster is (layout == "one-cluster")
    assert result.subscription == "agent_chat_from_" + helpers.dbname(source)
    assert result.tables == 2
    assert result.slot in slots(hub)
    assert arrived(target, before)  # copy_data brought the history

    with psycopg.connect(target) as conn:
        facts = policy.read_kind(conn)
        assert facts.kind is policy.NodeKind.SUBSCRIBER
        assert all(t.ok for t in policy.trigger_report(conn, facts))
        modes = {name: mode.name for name, mode in policy.trigger_modes(conn).items()}
    assert modes["trg_guard_replica_writes"] == "ORIGIN"

    msg = send(source, "after the subscription")
    helpers.wait_for(lambda: arrived(target, msg), what="replicated message")
    # the source's worker computes the embedding once; the replica receives it
    execute(
        source,
        "UPDATE memory_embeddings SET embedding = array_fill(0.5, ARRAY[384])::vector,"
        " model = 'test' WHERE source_id = %s",
        (msg,),
    )
    helpers.wait_for(
        lambda: execute(
            target,
            "SELECT count(*) FROM memory_embeddings WHERE source_id = %s AND model = 'test'",
            (msg,),
        )[0][0],
        what="replicated embedding",
    )
    rows = execute(target, "SELECT source_id, count(*) FROM memory_embeddings GROUP BY 1")
    assert sorted(rows) == [(before, 1), (msg, 1)]  # exactly one row per message

    saved = topology.load(topo.path)
    assert saved.replicas[0].name == result.subscription
    assert "password=" not in topo.path.read_text()


def test_fan_out_and_idempotent_re_add(
    hub: Cluster, remote: Cluster, source: str, extra_dbs: list[str], tmp_path
) -> None:
    targets = [new_db(hub), new_db(remote), new_db(remote)]
    extra_dbs.extend(targets)
    topo = Topology(tmp_path / "agentchat.toml")
    results = [replication.add(source, t, topology=topo, timeout=60) for t in targets]
    # each subscription connects as a role of its own, named like its slot, own password
    users = [psycopg.conninfo.conninfo_to_dict(own_subscription(t)[1]) for t in targets]
    assert [u["user"] for u in users] == [r.slot for r in results] == [r.role for r in results]
    assert len({u["password"] for u in users}) == 3
    assert len({r.slot for r in results}) == 3
    assert {r.slot for r in results} <= slots(hub)
    msg = send(source, "to everyone", ("*",))
    execute(source, "UPDATE memory_embeddings SET embedding = array_fill(0.25, ARRAY[384])::vector,"
            " model = 'test' WHERE source_id = %s", (msg,))  # fmt: skip

    def embedded(target: str) -> bool:
        query = "SELECT count(*) FROM memory_embeddings WHERE source_id = %s AND model = 'test'"
        return bool(execute(target, query, (msg,))[0][0])

    for t in targets:
        helpers.wait_for(functools.partial(arrived, t, msg), what="fan-out message")
        helpers.wait_for(
            functools.partial(embedded, t), what="the message's embedding on every target"
        )

    slot_count = len(slots(hub))
    again = replication.add(source, targets[1], topology=topo, timeout=60)
    assert again.already and again.created == []
    assert len(slots(hub)) == slot_count
    assert len(topo.replicas) == 3


def test_remove_with_source_reachable(hub: Cluster, source: str, remote_db: str, tmp_path) -> None:
    topo = Topology(tmp_path / "agentchat.toml")
    result = replication.add(source, remote_db, topology=topo, timeout=60)
    removed = replication.remove(remote_db, topology=topo)
    assert removed.slot == result.slot and removed.slot_dropped
    assert result.slot not in slots(hub)
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]
    assert topo.replicas == []
    # no longer a replica: the guard is off and local writes work again
    assert install.install(remote_db).kind is policy.NodeKind.PLAIN
    send(remote_db, "local again")


def test_replication_role_can_only_read_published_tables(
    hub: Cluster, source: str, remote_db: str
) -> None:
    replication.add(source, remote_db, role="ac_reader_only", timeout=60)
    [(conninfo,)] = execute(hub.conninfo(), "SELECT 1") and execute(
        remote_db, "SELECT subconninfo FROM pg_subscription"
    )
    params = psycopg.conninfo.conninfo_to_dict(str(conninfo))
    assert params["user"] == "ac_reader_only" and params["password"]
    as_role = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=hub.port, dbname=helpers.dbname(source),
        user="ac_reader_only", password=params["password"],
    )  # fmt: skip
    assert execute(as_role, "SELECT count(*) FROM agent_chat") == [(0,)]
    for statement in (
        "INSERT INTO agent_chat (sender, message) VALUES ('x', 'y')",
        "DELETE FROM memory_embeddings",
        "SELECT * FROM agent_chat_processed",
        "SELECT send_agent_message('x', 'y')",
        "CREATE TABLE public.intruder (id int)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            execute(as_role, statement)


def test_replica_refuses_local_writes(source: str, remote_db: str) -> None:
    replication.add(source, remote_db, timeout=60)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match=helpers.dbname(source)):
        execute(remote_db, "SELECT send_agent_message('graybeard', 'written on the replica')")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="is a replica"):
        execute(remote_db, "INSERT INTO agent_chat (sender, message) VALUES ('g', 'm')")
    msg = send(source, "replicated rows pass the guard")
    helpers.wait_for(lambda: arrived(remote_db, msg), what="replicated message")


STEPS = ["role", "publication", "slot", "subscription", "sync", "install", "topology"]


class Stop(Exception):
    pass


@pytest.mark.parametrize("step", STEPS)
def test_failed_add_at_each_step_leaves_nothing(
    step: str, hub: Cluster, source: str, db2: str, tmp_path
) -> None:
    """One cluster (every step runs, slot included); the progress hook fails at *step*."""
    role = f"ac_undo_{step}"
    topo = Topology(tmp_path / "agentchat.toml")

    def progress(name: str, detail: str) -> None:
        if name == step:
            raise Stop(step)

    with pytest.raises(Stop):
        replication.add(source, db2, role=role, topology=topo, progress=progress, timeout=60)
    assert execute(hub.conninfo(), "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [
        (0,)
    ]
    assert execute(source, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert execute(
        db2,
        "SELECT count(*) FROM pg_subscription"
        " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ) == [(0,)]
    assert not any(helpers.dbname(db2) in s for s in slots(hub))
    assert not topo.path.exists()


def test_failed_initial_sync_is_undone(hub: Cluster, source: str, remote_db: str) -> None:
    """A real conflict preflight cannot see: the target refuses the source's history."""
    send(source, "the source's message")
    install.install(remote_db)
    execute(
        remote_db,
        "ALTER TABLE agent_chat ADD CONSTRAINT refuses_history"
        " CHECK (message <> 'the source''s message')",
    )
    with pytest.raises(errors.AgentchatError, match=r"initial sync .* failed"):
        replication.add(source, remote_db, role="ac_undo_sync_conflict", timeout=60)
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]
    assert not any(helpers.dbname(remote_db) in s for s in slots(hub))
    assert execute(source, "SELECT count(*) FROM pg_publication") == [(0,)]


def test_history_on_the_target_is_caught_before_anything_is_made(
    hub: Cluster, source: str, remote_db: str
) -> None:
    msg = send(source, "the source's message")
    install.install(remote_db)
    execute(
        remote_db,
        "INSERT INTO agent_chat (id, sender, message) OVERRIDING SYSTEM VALUE"
        " VALUES (%s, 'local', 'a local row in the way')",
        (msg,),
    )
    with pytest.raises(errors.AgentchatError, match="--no-copy-data"):
        replication.add(source, remote_db, timeout=60)
    assert execute(source, "SELECT count(*) FROM pg_publication") == [(0,)]
    # the replica kept its history after a remove: add again without copying it
    with psycopg.connect(remote_db) as conn:  # one transaction: maintenance allows the DELETE
        conn.execute("SELECT pg_catalog.set_config('agentchat.maintenance', 'on', true)")
        conn.execute("DELETE FROM agent_chat")
        conn.execute("DELETE FROM memory_embeddings")  # the local row's queued embedding
    install.install(remote_db)
    first = replication.add(source, remote_db, timeout=60)
    replication.remove(remote_db)
    assert arrived(remote_db, msg)
    again = replication.add(source, remote_db, copy_data=False, timeout=60)
    assert again.slot == first.slot
    later = send(source, "after the second add")
    helpers.wait_for(lambda: arrived(remote_db, later), what="message after re-adding")


def test_a_replica_that_lost_rows_is_repaired_by_adding_it_again(
    source: str, remote_db: str
) -> None:
    """Remove and add again copies what the replica lost and skips what it has: its delivery
    marks stay, nothing is there twice."""
    replication.add(source, remote_db, timeout=60)
    sent = [send(source, f"message {n}") for n in range(3)]
    helpers.wait_for(lambda: all(arrived(remote_db, m) for m in sent), what="the messages")
    execute(remote_db, "INSERT INTO agent_chat_processed (chat_id, agent) VALUES (%s, 'graybeard')",
            (sent[0],))  # fmt: skip
    with psycopg.connect(remote_db, autocommit=True) as conn:  # a superuser past the guard
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM agent_chat WHERE id = %s", (sent[1],))

    replication.remove(remote_db)
    replication.add(source, remote_db, timeout=60)  # was refused: "already holds 2 rows"
    assert execute(remote_db, "SELECT id FROM agent_chat ORDER BY id") == [(m,) for m in sent]
    assert helpers.marks(remote_db) == [(sent[0], "graybeard", "received")]
    assert execute(
        remote_db, "SELECT source_id, count(*) FROM memory_embeddings GROUP BY 1 ORDER BY 1"
    ) == [(m, 1) for m in sent]
    later = send(source, "after the repair")
    helpers.wait_for(lambda: arrived(remote_db, later), what="a message after the repair")


def test_failed_add_drops_the_target_database_it_created(hub: Cluster, source: str) -> None:
    name = f"made_by_add_{uuid.uuid4().hex[:6]}"
    execute(source, "CREATE TABLE other (id int PRIMARY KEY)")
    execute(source, "CREATE PUBLICATION agent_chat_pub FOR TABLE other")
    with pytest.raises(errors.AgentchatError, match="already exists on the source"):
        replication.add(source, hub.conninfo(name), timeout=60)
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
    ) == [(0,)]


def test_passfile_keeps_the_password_out_of_the_subscription(
    hub: Cluster, cluster_root, source: str, remote_db: str
) -> None:
    path = cluster_root / f"pgpass-{uuid.uuid4().hex[:6]}"
    path.touch(mode=0o600)
    if hub.account is not None:  # the target's server reads the file: it must own it
        os.chown(path, hub.account.uid, hub.account.gid)
    replication.add(source, remote_db, passfile=path, role="ac_passfile_user", timeout=60)
    [(conninfo,)] = execute(remote_db, "SELECT subconninfo FROM pg_subscription")
    assert f"passfile={path}" in str(conninfo) and "password" not in str(conninfo)
    assert ":ac_passfile_user:" in path.read_text()
    msg = send(source, "through a passfile")
    helpers.wait_for(lambda: arrived(remote_db, msg), what="replicated message")
    path.unlink()


def test_target_subscribing_elsewhere_is_refused(
    hub: Cluster, source: str, db2: str, remote_db: str
) -> None:
    install.install(db2)
    replication.add(source, remote_db, timeout=60)
    before = slots(hub)
    with pytest.raises(errors.AgentchatError, match="already subscribes to agent_chat"):
        replication.add(db2, remote_db, name="agent_chat_from_elsewhere", timeout=60)
    assert slots(hub) == before
    assert execute(db2, "SELECT count(*) FROM pg_publication") == [(0,)]


def test_publication_name_taken_by_other_tables(hub: Cluster, source: str, remote_db: str) -> None:
    execute(source, "CREATE TABLE other (id int PRIMARY KEY)")
    execute(source, "CREATE PUBLICATION agent_chat_pub FOR TABLE other")
    with pytest.raises(errors.AgentchatError, match="already exists on the source for other"):
        replication.add(source, remote_db, role="ac_undo_pubname", timeout=60)
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_undo_pubname'"
    ) == [(0,)]
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_names_that_need_quoting(hub: Cluster, source: str, extra_dbs: list[str]) -> None:
    target_name = 'agent "db"; one ü'
    helpers.drop_database(hub, target_name)
    extra_dbs.append(hub.conninfo(target_name))
    result = replication.add(
        source, hub.conninfo(target_name), name='Sub "x"; y', publication="pub; z",
        role='role "q"', timeout=60,
    )  # fmt: skip
    assert result.slot in slots(hub)
    assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in result.slot)
    msg = send(source, "quoted names work")
    helpers.wait_for(lambda: arrived(hub.conninfo(target_name), msg), what="replicated message")
    replication.remove(hub.conninfo(target_name))
    assert result.slot not in slots(hub)


def test_remote_host_without_tls_is_refused() -> None:
    with pytest.raises(errors.InvalidInput, match="not local"):
        replication.add("host=db.example.com dbname=nova_memory", "dbname=x")


def test_json_of_result(source: str, remote_db: str) -> None:
    result = replication.add(source, remote_db, timeout=60)
    data = json.loads(json.dumps(result.as_dict()))
    assert data["subscription"] == result.subscription and data["already"] is False


def test_leftover_slot_of_the_same_name_is_refused_and_kept(
    hub: Cluster, source: str, remote_db: str
) -> None:
    [(system_id,)] = execute(remote_db, "SELECT system_identifier FROM pg_control_system()")
    slot = replication.slot_name(
        replication.default_subscription_name(helpers.dbname(source)),
        helpers.dbname(remote_db),
        str(system_id),
    )
    execute(source, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    with pytest.raises(errors.AgentchatError, match="already has a replication slot"):
        replication.add(source, remote_db, role="ac_undo_leftover_slot", timeout=60)
    assert slot in slots(hub)  # someone else's slot is never dropped by an undo
    assert execute(source, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_undo_leftover_slot'"
    ) == [(0,)]


def test_statements_with_passwords_stay_out_of_the_server_log(hub: Cluster, db: str) -> None:
    """A failing statement is logged with its text, unless run under no_statement_logging."""
    with psycopg.connect(db, autocommit=True) as conn:
        for secret, quiet in (("visible-control-7731", False), ("hidden-secret-7732", True)):
            with contextlib.ExitStack() as stack:
                if quiet:
                    stack.enter_context(replication.no_statement_logging(conn))
                with pytest.raises(psycopg.errors.UndefinedTable):
                    conn.execute(f"SELECT '{secret}' FROM no_such_table")  # noqa: S608
        conn.execute("SELECT 1")
    helpers.wait_for(
        lambda: "visible-control-7731" in hub.log.read_text(),
        what="the control statement in the server log",
    )
    assert "hidden-secret-7732" not in hub.log.read_text()


def test_failed_add_takes_its_passfile_line_back(
    hub: Cluster, cluster_root, source: str, remote_db: str
) -> None:
    path = cluster_root / f"pgpass-{uuid.uuid4().hex[:6]}"
    path.write_text("db9:5432:other:someone:keep-me\n")
    path.chmod(0o600)

    def fail_at_sync(step: str, detail: str) -> None:
        if step == "sync":
            raise Stop(step)

    with pytest.raises(Stop):
        replication.add(source, remote_db, passfile=path, role="ac_undo_passfile",
                        progress=fail_at_sync, timeout=60)  # fmt: skip
    assert path.read_text() == "db9:5432:other:someone:keep-me\n"
    path.unlink()


class Writer(threading.Thread):
    """Sends numbered messages to the source until stopped, through restarts: a message whose
    commit was not acknowledged is looked up before it is sent again, so each is sent once."""

    def __init__(self, source: str) -> None:
        super().__init__(daemon=True)
        self.source, self.sent, self.stop = source, 0, threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            text = f"numbered {n + 1}"
            try:
                with psycopg.connect(self.source, autocommit=True, connect_timeout=2) as conn:
                    while not self.stop.is_set():
                        there = conn.execute(
                            "SELECT count(*) FROM agent_chat WHERE message = %s", (text,)
                        ).fetchone()
                        if there == (0,):
                            conn.execute("SELECT send_agent_message('nova', %s)", (text,))
                        n += 1
                        self.sent = n
                        text = f"numbered {n + 1}"
                        time.sleep(0.01)
            except psycopg.Error:
                time.sleep(0.1)  # the source is restarting: try again


def numbered(conninfo: str) -> list[tuple[object, ...]]:
    return execute(
        conninfo,
        "SELECT message, count(*) FROM agent_chat WHERE message LIKE 'numbered %%' GROUP BY 1",
    )


def test_replication_heals_itself_after_source_faults(
    hub: Cluster, source: str, remote_db: str
) -> None:
    """Source restarts (fast, immediate) and a killed walsender: no command, every message
    exactly once, the subscription enabled; install switches an old subscription over."""
    result = replication.add(source, remote_db, publisher_dsn="host=127.0.0.1", timeout=60)
    writer = Writer(source)
    writer.start()

    def received_more() -> bool:
        target = writer.sent + 5
        return helpers.wait_for(lambda: len(numbered(remote_db)) >= target, timeout=60,
                                what=f"{target} messages on the replica")  # fmt: skip

    try:
        received_more()
        hub.restart("fast")
        received_more()
        hub.restart("immediate")
        received_more()
        [(pid,)] = execute(
            source, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (result.slot,),
        )  # fmt: skip
        execute(source, "SELECT pg_terminate_backend(%s)", (pid,))
        received_more()
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    sent = numbered(source)
    assert len(sent) == writer.sent and {c for _, c in sent} == {1}
    helpers.wait_for(lambda: len(numbered(remote_db)) == len(sent), timeout=60,
                     what="every message on the replica")  # fmt: skip
    assert sorted(numbered(remote_db)) == sorted(sent)  # each exactly once
    assert own_subscription(remote_db)[2] is True

    # a subscription made by an older agentchat: disable_on_error on, and stopped by it
    name = own_subscription(remote_db)[0]
    execute(remote_db, f'ALTER SUBSCRIPTION "{name}" SET (disable_on_error = true)')
    execute(remote_db, f'ALTER SUBSCRIPTION "{name}" DISABLE')
    report = install.install(remote_db)
    assert report.subscription_changes == [
        f"subscription {name}: disable_on_error true -> false (heals by itself)",
        f"subscription {name}: was disabled, enabled again",
    ]
    assert execute(
        remote_db, "SELECT subenabled, subdisableonerr FROM pg_subscription WHERE subname = %s",
        (name,),
    ) == [(True, False)]  # fmt: skip
    assert install.install(remote_db).subscription_changes == []
    msg = send(source, "after the switch")
    helpers.wait_for(lambda: arrived(remote_db, msg), what="a message after the switch")


def _inline_password(remote: Cluster, dbname: str) -> str:
    """The remote superuser's conninfo with the password inline, and no passfile."""
    line = remote.passfile.read_text().splitlines()[0]
    password = line.split(":", 4)[4]
    return psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=remote.port, user=remote.superuser, dbname=dbname,
        password=password,
    )  # fmt: skip


def test_password_in_the_target_dsn_is_kept_for_every_connection(
    hub: Cluster, remote: Cluster, source: str, remote_db: str, tmp_path: Path
) -> None:
    target = _inline_password(remote, helpers.dbname(remote_db))
    config = str(tmp_path / "t.toml")
    done = helpers.run_cli("replicate", "add", "--one-way", "--source", source, "--target", target,
                           "--config", config, env={"PGPASSFILE": "/dev/null"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "password=" not in (tmp_path / "t.toml").read_text()
    msg = send(source, "through a target DSN with a password")
    helpers.wait_for(lambda: arrived(remote_db, msg), what="replicated message")


def test_two_adds_at_once_keep_both_topology_entries(
    hub: Cluster, remote: Cluster, source: str, extra_dbs: list[str], tmp_path: Path
) -> None:
    targets = [new_db(remote), new_db(remote)]
    extra_dbs.extend(targets)
    config = tmp_path / "agentchat.toml"
    exe = Path(sys.executable).with_name("agentchat")
    commands = [
        [
            str(exe),
            "replicate",
            "add",
            "--one-way",
            "--source",
            source,
            "--target",
            t,
            "--config",
            str(config),
        ]
        for t in targets
    ]
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outcomes
    saved = topology.load(config)
    assert sorted(r.dsn for r in saved.replicas) == sorted(
        topology.strip_password(t) for t in targets
    )


def test_a_second_source_on_the_server_leaves_the_first_ones_replicas_alone(
    hub: Cluster, remote: Cluster, source: str, db2: str, remote_db: str, extra_dbs: list[str]
) -> None:
    """Two sources on one server, each with a replica elsewhere; then a password changed
    behind agentchat's back: doctor names it, doctor --fix repairs that one subscription."""
    from agentchat import doctor

    install.install(db2)
    tcp = "host=127.0.0.1"  # the subscriptions log in with their passwords, as across machines
    first = replication.add(source, remote_db, publisher_dsn=tcp, timeout=60)
    other_target = new_db(remote)
    extra_dbs.append(other_target)
    second = replication.add(db2, other_target, publisher_dsn=tcp, timeout=60)
    assert first.role != second.role and first.warnings == second.warnings == []
    hub.restart("fast")  # every subscription reconnects, with its own password
    msg = send(source, "after the second source")
    helpers.wait_for(lambda: arrived(remote_db, msg), timeout=30, what="the first source's message")

    # the first replica's password changes behind agentchat's back
    execute(hub.conninfo(), f"ALTER ROLE \"{first.role}\" PASSWORD 'changed-behind-its-back'")
    execute(source, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = %s", (first.slot,))  # fmt: skip
    report = doctor.diagnose([remote_db, other_target])
    broken = [c for c in report.checks if c.check == "password" and not c.ok]
    assert [(c.subject, c.repair) for c in broken] == [(first.subscription, "password")]
    assert "password authentication failed" in broken[0].detail
    other_before = own_subscription(other_target)[1]
    fixed = doctor.fix(report, [remote_db, other_target], source=source)
    assert any(f"now connects as its own role {first.role}" in line for line in fixed), fixed
    assert own_subscription(other_target)[1] == other_before  # untouched
    later = send(source, "after doctor --fix")
    helpers.wait_for(lambda: arrived(remote_db, later), timeout=30, what="a message after the fix")
    assert not [
        c for c in doctor.diagnose([remote_db]).checks if c.check == "password" and not c.ok
    ]

    removed = replication.remove(remote_db, source_dsn=source)
    assert removed.role_dropped == first.role
    assert execute(hub.conninfo(), "SELECT count(*) FROM pg_roles WHERE rolname = %s",
                   (first.role,)) == [(0,)]  # fmt: skip


def test_an_existing_named_role_without_its_password_is_refused(
    hub: Cluster, source: str, remote_db: str
) -> None:
    execute(hub.conninfo(), "DROP ROLE IF EXISTS ac_someone_elses")
    execute(hub.conninfo(), "CREATE ROLE ac_someone_elses LOGIN REPLICATION PASSWORD 'theirs'")
    with pytest.raises(errors.AgentchatError, match="does not reset it"):
        replication.add(source, remote_db, role="ac_someone_elses", timeout=60)
    as_them = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=hub.port, dbname=helpers.dbname(source), user="ac_someone_elses",
        password="theirs",
    )  # fmt: skip
    assert execute(as_them, "SELECT 1") == [(1,)]  # the password was left alone


@pytest.mark.parametrize("target_state", ["missing", "older schema", "installed"])
def test_add_connects_to_the_target_once(
    target_state: str, hub: Cluster, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target is created, brought up to date and installed on the one connection add
    opened (install.install_into), never through connections of its own."""
    name = f"t_once_{uuid.uuid4().hex[:8]}"
    target = hub.conninfo(name)
    if target_state != "missing":
        execute(hub.conninfo(), f'CREATE DATABASE "{name}"')
        older = load_migrations()[:4] if target_state == "older schema" else None
        install.install(target, migrations=older)
    opened: list[str] = []
    connect = _db.connect

    def counting(conninfo: str, **kwargs: object) -> _db.Connection:
        conn = connect(conninfo, **kwargs)  # type: ignore[arg-type]
        opened.append(conn.info.dbname)  # connections made, not attempts (a missing database)
        return conn

    monkeypatch.setattr(_db, "connect", counting)
    try:
        result = replication.add(source, target, timeout=60)
        assert result.tables == 2
        assert opened.count(name) == 1, opened
        assert execute(target, "SELECT max(version) FROM agentchat_migrations") == [
            (len(load_migrations()),)
        ]
    finally:
        monkeypatch.undo()
        replication.remove(target, source_dsn=source)
        helpers.drop_database(hub, name)
