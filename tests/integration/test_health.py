"""status, doctor, verify and upgrade on real topologies, healthy and broken for real."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from agentchat import install, replication, topology
from agentchat.ops import doctor, verify
from agentchat.ops.judge import Check, Verdict
from agentchat.ops.report import Report, status
from agentchat.server import Cluster
from agentchat.sql import Migration, load_migrations
from tests import helpers
from tests.helpers import execute


@dataclass
class Topo:
    source: str
    replicas: list[str]
    config: Path

    @property
    def all(self) -> list[str]:
        return [self.source, *self.replicas]


@pytest.fixture
def topo(installed_db: str, installed_db2: str, installed_remote_db: str, tmp_path: Path) -> Topo:
    """nova (hub) -> one replica in the same cluster, one on the remote cluster."""
    file = topology.Topology(tmp_path / "agentchat.toml")
    replicas = [installed_db2, installed_remote_db]
    for target in replicas:
        replication.add(installed_db, target, topology=file, timeout=60)
    return Topo(installed_db, replicas, file.path)


def send(conninfo: str, text: str = "hello") -> int:
    [(msg_id,)] = execute(conninfo, "SELECT send_agent_message('nova', %s, '{graybeard}')", (text,))
    return int(msg_id)


def arrived(conninfo: str, msg_id: int) -> bool:
    return bool(execute(conninfo, "SELECT count(*) FROM agent_chat WHERE id = %s", (msg_id,))[0][0])


def failing(report: Report) -> dict[str, Verdict]:
    return {c.check: c.verdict for c in report.checks if not c.ok}


def test_healthy_topology(topo: Topo) -> None:
    report = status(topo.all)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]
    kinds = [d.node.kind.value for d in report.databases]
    assert kinds == ["source", "subscriber", "subscriber"]
    source = report.databases[0]
    assert len(source.slots) == 2 and all(s.active for s in source.slots)
    for replica in report.databases[1:]:
        [sub] = replica.subscriptions
        assert sub.enabled and sub.worker_pid and sub.tables_ready == 2
    assert doctor.diagnose(topo.all, source=topo.source).verdict is Verdict.OK
    for target in topo.replicas:
        result = verify.verify(topo.source, target)
        assert result.ok, result
        assert result.arrived and result.notified and result.embedding_rows == 1
        assert result.arrival_ms is not None and result.notify_ms is not None
        assert result.cleaned_up
    # the probes are gone on both sides
    for conninfo in topo.all:
        assert execute(
            conninfo, "SELECT count(*) FROM agent_chat WHERE channel = 'agentchat-verify'"
        ) == [(0,)]


def test_deaf_replica_fails_verify_and_is_fixed(topo: Topo) -> None:
    replica = topo.replicas[1]
    execute(replica, "ALTER TABLE agent_chat ENABLE TRIGGER trg_notify_agent_chat")  # ORIGIN
    report = status(topo.all)
    assert report.verdict is Verdict.BROKEN
    [check] = [c for c in report.checks if not c.ok]
    assert "agents here hear no replicated message" in check.detail
    result = verify.verify(topo.source, replica, timeout=3)
    assert result.arrived and not result.notified and not result.ok

    diagnosis = doctor.diagnose(topo.all, source=topo.source)
    fixed = doctor.fix(diagnosis, topo.all)
    assert fixed == [f"{check.database}: trg_notify_agent_chat ORIGIN -> ALWAYS"]
    assert status(topo.all).verdict is Verdict.OK
    assert verify.verify(topo.source, replica).ok


def test_seed_replica_advice_is_broken_and_fixed(topo: Topo) -> None:
    execute(
        topo.replicas[0], "ALTER TABLE agent_chat ENABLE REPLICA TRIGGER trg_embed_chat_message"
    )
    report = status(topo.all)
    [check] = [c for c in report.checks if not c.ok]
    assert check.verdict is Verdict.BROKEN and "seed's advice, backwards" in check.detail
    assert doctor.fix(report, topo.all)
    assert status(topo.all).verdict is Verdict.OK


def local_row(replica: str, msg_id: int, text: str = "written on the replica") -> None:
    """A local write that slips past the guard (as a superuser in replica mode can)."""
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO agent_chat (id, sender, message) OVERRIDING SYSTEM VALUE"
            " VALUES (%s, 'intruder', %s)",
            (msg_id, text),
        )


OWN_SUBSCRIPTION = (
    "SELECT subname FROM pg_subscription"
    " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def next_id(source: str) -> int:
    """An id the source's next message will not take (agentchat_next_id() moves on): the test
    then writes a message under it on purpose."""
    [(value,)] = execute(source, "SELECT public.agentchat_next_id()")
    return int(value)


def apply_worker_check(replica: str) -> Check | None:
    return next((c for c in status([replica]).checks if c.check == "apply_worker"), None)


def test_conflict_crash_loops_status_says_so_and_doctor_names_the_row(topo: Topo) -> None:
    replica = topo.replicas[0]
    blocked = next_id(topo.source)
    local_row(replica, blocked)
    execute(
        topo.source,
        "INSERT INTO agent_chat (id, sender, message, mentions)"
        " VALUES (%s, 'nova', 'this one collides', '{graybeard}')",
        (blocked,),
    )

    def crash_looping() -> Check | None:
        check = apply_worker_check(replica)
        return check if check and "crash-looping" in check.detail else None

    check = helpers.wait_for(crash_looping, timeout=60, what="status to see the crash loop")
    assert check is not None
    assert check.verdict is Verdict.BROKEN and "agentchat doctor" in (check.fix or "")
    report = doctor.diagnose(topo.all, source=topo.source)
    [conflict] = [c for c in report.checks if c.check == "conflict"]
    assert conflict.verdict is Verdict.BROKEN and conflict.subject == str(blocked)
    assert f"DELETE FROM agent_chat WHERE id = {blocked};" in (conflict.fix or "")  # noqa: S608

    with psycopg.connect(replica) as conn:  # the repair doctor names, in one transaction
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("DELETE FROM agent_chat WHERE id = %s", (blocked,))
    helpers.wait_for(  # no command: the apply worker retries by itself
        lambda: (
            execute(replica, "SELECT sender FROM agent_chat WHERE id = %s", (blocked,))
            == [("nova",)]
        ),
        timeout=30,
        what="the blocked message",
    )
    assert status(topo.all).verdict is Verdict.OK


def test_local_rows_on_a_replica(topo: Topo) -> None:
    local_row(topo.replicas[0], 10**9)
    checks = failing(doctor.diagnose(topo.all, source=topo.source))
    assert checks == {"local_rows": Verdict.DEGRADED}


def test_inactive_slot_retaining_wal(topo: Topo) -> None:
    execute(
        topo.source, "SELECT pg_create_logical_replication_slot('forgotten_replica', 'pgoutput')"
    )
    try:
        for i in range(20):
            send(topo.source, f"wal {i} " + "x" * 2000)
        report = status([topo.source], wal_threshold=1000)
        [check] = [c for c in report.checks if not c.ok]
        assert check.check == "slot" and check.verdict is Verdict.DEGRADED
        assert "forgotten_replica is inactive and retains" in check.detail
        assert "pg_drop_replication_slot('forgotten_replica')" in (check.fix or "")
    finally:
        execute(topo.source, "SELECT pg_drop_replication_slot('forgotten_replica')")


def test_vanished_publication(topo: Topo) -> None:
    execute(topo.source, "DROP PUBLICATION agent_chat_pub")
    checks = doctor.diagnose(topo.replicas, source=topo.source).checks
    broken = [c for c in checks if c.check == "publication"]
    assert broken and all(c.verdict is Verdict.BROKEN for c in broken)
    assert "no longer exists on the source" in broken[0].detail


EXTRA = Migration(
    len(load_migrations()) + 1,
    "topic",
    "ALTER TABLE public.agent_chat ADD COLUMN topic text;",
)


def test_upgrade_replicas_first_while_messages_flow(topo: Topo) -> None:
    install.upgrade([], topo.source, migrations=[])  # nothing pending: a no-op
    migrations = [*load_migrations(), EXTRA]
    install.install(topo.replicas[0], migrations=migrations)
    report = status(topo.all)
    assert failing(report) == {"schema_versions": Verdict.DEGRADED}

    sent: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            sent.append(send(topo.source, f"during the upgrade {len(sent)}"))
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        reports = install.upgrade(topo.replicas, topo.source, migrations=migrations)
        topic = f"{EXTRA.version:04d}_topic"
        assert [r.applied for r in reports] == [[], [topic], [topic]]
        [(with_topic,)] = execute(
            topo.source,
            "INSERT INTO agent_chat (sender, message, topic)"
            " VALUES ('nova', 'x', 'ops') RETURNING id",
        )
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert len(sent) > 10
    for replica in topo.replicas:
        helpers.wait_for(
            functools.partial(arrived, replica, with_topic), what="the row with a topic"
        )
        assert execute(replica, "SELECT topic FROM agent_chat WHERE id = %s", (with_topic,)) == [
            ("ops",)
        ]
        got = {
            i for (i,) in execute(replica, "SELECT id FROM agent_chat WHERE id = ANY(%s)", (sent,))
        }
        assert got == set(sent), "messages lost during the upgrade"
    assert status(topo.all).verdict is Verdict.OK


@pytest.fixture(scope="module")
def low_wal(cluster_root: Path, pg_version: int) -> Iterator[Cluster]:
    cluster = Cluster(
        cluster_root / f"lowwal-health{pg_version}",
        version=pg_version,
        ephemeral=True,
        settings={"wal_level": "replica"},
    )
    cluster.start()
    yield cluster
    cluster.destroy()


def test_source_with_wrong_wal_level(low_wal: Cluster) -> None:
    conninfo = low_wal.conninfo(f"nova_{uuid.uuid4().hex[:6]}")
    install.install(conninfo)
    execute(conninfo, "CREATE PUBLICATION agent_chat_pub FOR TABLE agent_chat")
    [check] = [c for c in status([conninfo]).checks if not c.ok]
    assert check.check == "wal_level" and check.verdict is Verdict.BROKEN
    assert "ALTER SYSTEM SET wal_level = logical" in (check.fix or "")


def test_unreachable_database_is_broken_not_an_exception() -> None:
    from agentchat.server import free_port

    report = status([f"host=127.0.0.1 port={free_port()} dbname=x"])
    assert report.verdict is Verdict.BROKEN
    assert report.databases[0].reachable is False


def test_messages_that_never_arrived_are_counted(topo: Topo) -> None:
    ids = [send(topo.source, f"m{i}") for i in range(3)]
    replica = topo.replicas[0]
    helpers.wait_for(lambda: arrived(replica, ids[-1]), what="the messages")
    listed = topology.load(topo.config)
    assert status(topo.all, topology=listed).verdict is Verdict.OK
    with psycopg.connect(replica, autocommit=True) as conn:  # lost on the replica, for real
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM agent_chat WHERE id = %s", (ids[0],))
    [check] = [c for c in doctor.diagnose(topo.all, source=topo.source).checks if not c.ok]
    assert check.check == "missing_rows" and check.verdict is Verdict.BROKEN
    assert check.detail.startswith(f"1 of the source's messages up to id {ids[-1]}")
    # emptied by a superuser bypassing the guard: status (with the topology) notices
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("TRUNCATE agent_chat CASCADE")
    report = status(topo.all, topology=listed)
    [lost] = [c for c in report.checks if not c.ok]
    assert (lost.check, lost.verdict) == ("missing_rows", Verdict.BROKEN)
    assert lost.detail.startswith(f"3 of the source's messages up to id {ids[-1]}")


def test_fix_says_when_an_enabled_subscription_stops_again(topo: Topo) -> None:
    """A subscription of an older agentchat (disable_on_error on), stopped by a conflict doctor
    cannot see (a constraint of the replica's own): doctor --fix switches it over and enables
    it, and says that it stopped again."""
    replica = topo.replicas[0]
    [(sub,)] = execute(
        replica,
        "SELECT subname FROM pg_subscription"
        " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    execute(replica, f'ALTER SUBSCRIPTION "{sub}" SET (disable_on_error = true)')
    execute(replica, "ALTER TABLE agent_chat ADD CONSTRAINT mine CHECK (message <> 'refused')")
    send(topo.source, "refused")
    helpers.wait_for(
        lambda: status([replica]).verdict is Verdict.BROKEN, what="the subscription to stop"
    )
    report = doctor.diagnose([replica], source=topo.source)
    assert failing(report)["disable_on_error"] is Verdict.DEGRADED
    fixed = doctor.fix(report, [replica])
    assert any("disable_on_error true -> false" in line for line in fixed), fixed
    assert any("but it stopped again: the cause is still there" in line for line in fixed), fixed
    check = apply_worker_check(replica)
    assert check is not None and "crash-looping" in check.detail


def test_fix_enables_a_subscription_whose_cause_is_gone(topo: Topo) -> None:
    """Disabled by hand, no conflicting row: doctor offers to enable it, --fix does, and the
    apply worker stays up."""
    replica = topo.replicas[1]
    [(sub,)] = execute(replica, OWN_SUBSCRIPTION)
    execute(replica, f'ALTER SUBSCRIPTION "{sub}" DISABLE')
    report = doctor.diagnose([replica], source=topo.source)
    [stopped] = [c for c in report.checks if c.check == "subscription_enabled"]
    assert stopped.verdict is Verdict.BROKEN and stopped.repair == "enable"
    assert stopped.detail.endswith("; no conflicting row remains")
    fixed = doctor.fix(report, [replica])
    assert fixed == [
        f"{stopped.database}: enabled subscription {sub} (its apply worker is running)"
    ]
    later = send(topo.source, "after the fix")
    helpers.wait_for(lambda: arrived(replica, later), what="a message after the fix")
    assert doctor.diagnose([replica], source=topo.source).verdict is Verdict.OK


def test_status_compares_the_topology_file_with_the_source(topo: Topo, tmp_path: Path) -> None:
    """A replica the file does not list (a lost entry) is found by its slot; a listed one whose
    subscription is gone is broken."""
    listed, unlisted = topo.replicas
    config = tmp_path / "only-one.toml"
    file = topology.Topology(config)
    file.record_replica(topo.source, "agent_chat_pub", "agent_chat_from_x", listed)
    [(slot,)] = execute(unlisted, OWN_SUBSCRIPTION.replace("subname", "subslotname"))
    report = status(file.databases(), topology=file)
    [check] = [c for c in report.checks if not c.ok]
    assert (check.check, check.verdict) == ("unlisted_replica", Verdict.DEGRADED)
    assert check.subject == slot

    replication.remove(listed)  # behind the file's back (no topology given)
    done = helpers.run_cli("status", "--config", str(config))
    assert done.returncode == 2, done.stdout
    assert "BROKEN   subscribed: " in done.stdout and "no longer receives anything" in done.stdout
    assert f"DEGRADED unlisted_replica: slot {slot}" in done.stdout
