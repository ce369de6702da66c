"""Node identity on real clusters (schema version 6): ids that carry their node, made by the
server exactly as links.make_id lays them out; two nodes writing at once never collide; the
registry; and a one-way pair upgraded in place keeps every id and keeps replicating."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from agentchat import _db, errors, install, nodes, policy, replication, schema
from agentchat.replication import links
from agentchat.server import Cluster
from agentchat.sql import load_migrations
from agentchat.topology import Topology
from tests import helpers
from tests.helpers import execute

BEFORE_NODE_IDS = [m for m in load_migrations() if m.version <= 5]


def send(conninfo: str, text: str = "hello", reply_to: int | None = None) -> int:
    [(msg_id,)] = execute(
        conninfo,
        "SELECT send_agent_message('nova', %s, '{graybeard}', 'general', %s)",
        (text, reply_to),
    )
    return int(msg_id)


def seed_insert(conninfo: str, text: str = "the seed's way") -> int:
    """The seed's statement: a plain INSERT that leaves the id out."""
    [(msg_id,)] = execute(
        conninfo,
        "INSERT INTO agent_chat (sender, message, mentions) VALUES ('nova', %s, '{graybeard}')"
        " RETURNING id",
        (text,),
    )
    return int(msg_id)


def number(conninfo: str) -> int:
    with _db.connection(conninfo) as conn:
        return nodes.number(conn)


def set_number(conninfo: str, n: int) -> None:
    with _db.connection(conninfo) as conn:
        nodes.set_number(conn, n)


def ids(conninfo: str) -> list[int]:
    return [int(r[0]) for r in execute(conninfo, "SELECT id FROM agent_chat ORDER BY id")]


# -- the ids ---------------------------------------------------------------------------------


def test_a_new_install_has_a_node_number_and_its_own_registry_row(db: str) -> None:
    install.install(db)
    n = number(db)
    assert 1 <= n <= links.MAX_NODE
    with _db.connection(db) as conn:  # named and reached as install reached it, no password
        where = _db.resolved_conninfo(conn)
        assert nodes.registry(conn) == [nodes.Node(n, _db.describe(where), where, None)]
        assert "password" not in where
    assert execute(db, "SELECT to_regclass('public.agent_chat_id_seq')") == [(None,)]
    [(default,)] = execute(
        db,
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_name = 'agent_chat' AND column_name = 'id'",
    )
    assert default == "agentchat_next_id()"


def test_new_ids_carry_the_node_and_increase(installed_db: str) -> None:
    set_number(installed_db, 77)
    made = [send(installed_db, f"message {i}") for i in range(50)]
    made.append(seed_insert(installed_db))
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(m > 2**59 for m in made)  # after 2020-01-13 every id is above 2^52, now 2^59
    assert {links.node_of(m) for m in made} == {77}
    with _db.connection(installed_db) as conn:
        assert nodes.own_rows(conn, 77) == 51
        assert nodes.own_rows(conn, 78) == 0


def test_the_server_makes_the_id_make_id_makes(installed_db: str) -> None:
    n = number(installed_db)
    with psycopg.connect(installed_db, autocommit=True) as conn:
        before = int(time.time() * 1000)
        [(made,)] = conn.execute("SELECT public.agentchat_next_id()").fetchall()
        [(sequence,)] = conn.execute("SELECT currval('public.agentchat_id_seq')").fetchall()
        after = int(time.time() * 1000)
    assert links.node_of(made) == n
    ms = (made >> (links.NODE_BITS + links.SEQUENCE_BITS)) + links.EPOCH_MS
    assert before - 5 <= ms <= after + 5  # the server's clock is this machine's
    assert made == links.make_id(ms, n, sequence)


def test_plain_inserts_work_with_an_empty_search_path_and_replies_cross_old_and_new(
    db: str,
) -> None:
    """An installation from before version 6 keeps its ids; new rows get new-style ids, also
    from a session with an empty search_path (as the apply worker runs), and reply_to links a
    new row to an old one."""
    install.install(db, migrations=BEFORE_NODE_IDS)
    legacy = [send(db, "old"), seed_insert(db)]
    assert legacy == [1, 2]
    install.install(db)
    assert ids(db) == legacy
    reply = send(db, "a reply to history", reply_to=legacy[0])
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET search_path = ''")
        [(plain,)] = conn.execute(
            "INSERT INTO public.agent_chat (sender, message, reply_to) VALUES ('a', 'b', %s)"
            " RETURNING id",
            (reply,),
        ).fetchall()
    assert ids(db) == [*legacy, reply, plain]
    assert links.node_of(reply) == links.node_of(plain) == number(db)
    assert execute(db, "SELECT reply_to FROM agent_chat WHERE id = %s", (plain,)) == [(reply,)]
    assert execute(db, "SELECT count(*) FROM memory_embeddings") == [(4,)]


def test_a_writer_without_privileges_on_the_sequence_or_settings_gets_ids(
    installed_db: str,
) -> None:
    role = f"writer_{uuid.uuid4().hex[:8]}"
    execute(installed_db, f"CREATE ROLE {role}")
    try:
        execute(installed_db, f"GRANT SELECT, INSERT ON agent_chat, memory_embeddings TO {role}")
        with psycopg.connect(installed_db, autocommit=True) as conn:
            conn.execute(f"SET ROLE {role}")
            [(made,)] = conn.execute(
                "INSERT INTO agent_chat (sender, message) VALUES ('nova', 'hi') RETURNING id"
            ).fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT value FROM agentchat_settings")
        assert links.node_of(made) == number(installed_db)
    finally:
        execute(installed_db, f"DROP OWNED BY {role}")
        execute(installed_db, f"DROP ROLE {role}")


def test_no_node_number_is_a_clear_error(installed_db: str) -> None:
    execute(installed_db, "DELETE FROM agentchat_settings WHERE key = 'node'")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as caught:
        seed_insert(installed_db)
    assert "has no agentchat node number" in str(caught.value)
    assert "agentchat install sets it" in (caught.value.diag.message_hint or "")
    with (
        _db.connection(installed_db) as conn,
        pytest.raises(errors.DatabaseError, match="no agentchat node number") as error,
    ):
        nodes.number(conn)
    assert error.value.fix is not None and "agentchat install" in error.value.fix
    # what install does: a number where there is none, and it keeps the number it finds
    with _db.connection(installed_db) as conn:
        given = nodes.ensure_number(conn)
        assert 1 <= given <= links.MAX_NODE and nodes.ensure_number(conn) == given
    assert links.node_of(seed_insert(installed_db)) == given


def test_no_node_numbers_before_version_6(db: str) -> None:
    install.install(db, migrations=BEFORE_NODE_IDS)
    with (
        _db.connection(db) as conn,
        pytest.raises(errors.DatabaseError, match="no node numbers yet") as caught,
    ):
        nodes.number(conn)
    assert caught.value.fix == "run agentchat install on it"


def test_two_nodes_writing_at_once_never_collide(installed_db: str, installed_db2: str) -> None:
    """Two databases (cloned from one template, so renumbered here) write a few thousand rows
    each from several threads at once: every id is unique across both and carries its node."""
    numbers = {installed_db: 1, installed_db2: 2}
    for conninfo, n in numbers.items():
        set_number(conninfo, n)
    per_thread, batch = 1500, 100
    failures: list[BaseException] = []

    def write(conninfo: str) -> None:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for _ in range(per_thread // batch):
                    conn.execute(
                        "INSERT INTO agent_chat (sender, message)"
                        " SELECT 'nova', 'load ' || g FROM generate_series(1, %s) AS g",
                        (batch,),
                    )
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in numbers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    everything: list[int] = []
    for conninfo, n in numbers.items():
        made = ids(conninfo)
        assert len(made) == 2 * per_thread
        assert {links.node_of(m) for m in made} == {n}
        everything += made
    assert len(set(everything)) == len(everything) == 4 * per_thread


# -- the registry ----------------------------------------------------------------------------


def test_register_self_replaces_its_own_row_and_keeps_the_others(installed_db: str) -> None:
    with _db.connection(installed_db) as conn:
        n = nodes.number(conn)
        # a clone of the template starts with the template's row
        [template] = [node.name for node in nodes.registry(conn)]
        assert '"agentchat_template"' in template
        name = _db.describe(_db.resolved_conninfo(conn))
        where = _db.resolved_conninfo(conn)
        assert nodes.register_self(conn, name=name, conninfo=where, parent=None) == nodes.Node(
            n, name, where, None
        )
        assert nodes.registry(conn) == [nodes.Node(n, name, where, None)]
        assert nodes.own(conn) == nodes.Node(n, name, where, None)
        # another node's row (as replication brings it), even one with the same number (a
        # collision, for status to report), is never touched
        other = 1 if n != 1 else 2
        execute(installed_db, "INSERT INTO agentchat_nodes (node, name) VALUES (%s, 'far')",
                (other,))  # fmt: skip
        execute(installed_db, "INSERT INTO agentchat_nodes (node, name) VALUES (%s, 'twin')", (n,))
        nodes.register_self(conn, name=name, conninfo=None, parent=other)
        nodes.register_self(conn, name=name, conninfo=None, parent=other)  # idempotent
        assert {(node.number, node.name, node.parent) for node in nodes.registry(conn)} == {
            (n, name, other), (other, "far", None), (n, "twin", None),
        }  # fmt: skip
        assert nodes.own(conn) == nodes.Node(n, name, None, other)

        free = nodes.free_number({node.number for node in nodes.registry(conn)})
        nodes.set_number(conn, free)
        assert nodes.number(conn) == free
        assert {(node.number, node.name) for node in nodes.registry(conn)} == {
            (free, name), (other, "far"), (n, "twin"),
        }  # fmt: skip
        nodes.set_number(conn, free)  # the same number again: nothing changes
        assert len(nodes.registry(conn)) == 3
        assert nodes.own(conn) == nodes.Node(free, name, None, other)
        execute(installed_db, "DELETE FROM agentchat_nodes WHERE name = %s", (name,))
        assert nodes.own(conn) is None


def test_the_registry_refuses_a_bad_row(installed_db: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        execute(installed_db, "INSERT INTO agentchat_nodes (node, name) VALUES (0, 'zero')")
    with pytest.raises(psycopg.errors.NotNullViolation):
        execute(installed_db, "INSERT INTO agentchat_nodes (node) VALUES (3)")


# -- a one-way pair, upgraded in place -------------------------------------------------------


def test_a_one_way_pair_upgraded_to_node_ids_keeps_its_ids_and_replicates(
    hub: Cluster, db: str, remote_db: str, tmp_path: Path
) -> None:
    """A source and a replica on another cluster, both at version 5 with history, are upgraded
    (replica first, as agentchat upgrade does): every id stays what it was on both sides, and
    the source's new-style ids reach the replica, whose guard still refuses local writes."""
    source, replica = db, remote_db
    install.install(source, migrations=BEFORE_NODE_IDS)
    install.install(replica, migrations=BEFORE_NODE_IDS)
    history = [send(source, f"history {i}") for i in range(5)]
    topo = Topology(tmp_path / "agentchat.toml")
    replication.add(source, replica, topology=topo, timeout=60)
    helpers.wait_for(lambda: ids(replica) == history, what="the history copied")
    during = send(source, "the source is still at version 5")
    helpers.wait_for(lambda: ids(replica) == [*history, during], what="a legacy row replicated")

    reports = install.upgrade([replica], source)
    assert [r.schema_version for r in reports] == [len(load_migrations())] * 2
    assert ids(source) == ids(replica) == [*history, during]

    new = [send(source, "after the upgrade"), seed_insert(source)]
    assert all(links.node_of(m) == number(source) for m in new)
    helpers.wait_for(lambda: ids(replica) == [*history, during, *new], what="new ids replicated")
    assert ids(source) == ids(replica)
    reply = send(source, "a reply to history", reply_to=history[0])
    helpers.wait_for(lambda: reply in ids(replica), what="a reply replicated")
    assert execute(replica, "SELECT reply_to FROM agent_chat WHERE id = %s", (reply,)) == [
        (history[0],)
    ]
    with psycopg.connect(replica) as conn:
        assert policy.read_kind(conn).kind is policy.NodeKind.SUBSCRIBER
        assert schema.schema_version(conn) == len(load_migrations())
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        seed_insert(replica)
