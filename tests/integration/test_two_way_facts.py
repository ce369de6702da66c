"""The PostgreSQL facts issue 13 (two-way replication) is designed on, measured on real clusters.

Plain SQL on a bare ``chat(id, node, body)`` table, not agentchat's schema: each test proves one
fact (its docstring states it) from the rows each database ends with. Every subscription's slot
is made first on its publisher (the facts sheet's same-cluster trick, used everywhere), and the
apply workers reach their publishers over TCP as a replication role with a password.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from agentchat.replication.links import Link, make_id
from agentchat.server import Cluster
from tests import helpers
from tests.helpers import execute, wait_for

#: a notice as the tests compare it
NOTE = "{d.severity_nonlocalized}: {d.message_primary} | {d.message_detail} | {d.message_hint}"


@dataclass(frozen=True)
class Node:
    dsn: str  # ours: the superuser over the cluster's socket
    reach: str  # another server's apply worker: TCP, the replication role, a password


@pytest.fixture
def make_node(hub: Cluster, remote: Cluster) -> Iterator[Callable[[str], Node]]:
    """Fresh databases with an empty ``chat`` table, on "hub" or "remote"; at the end every
    subscription is dropped first, then the databases (and with them their slots)."""
    made: list[tuple[Cluster, str]] = []

    def make(where: str = "hub") -> Node:
        cluster = hub if where == "hub" else remote
        name = f"t_{uuid.uuid4().hex[:10]}"
        helpers.create_database(cluster, name)
        made.append((cluster, name))
        dsn = cluster.conninfo(name)
        helpers.ensure_replication_user(dsn)
        execute(dsn, "CREATE TABLE chat (id bigint PRIMARY KEY, node int NOT NULL, body text)")
        execute(dsn, "GRANT SELECT ON chat TO replication_user")
        reach = psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=cluster.port, dbname=name, user="replication_user",
            password=helpers.REPLICATION_PASSWORD,
        )  # fmt: skip
        return Node(dsn, reach)

    yield make
    for cluster, name in made:
        with psycopg.connect(cluster.conninfo(name), autocommit=True) as conn:
            for (sub,) in conn.execute(
                "SELECT subname FROM pg_subscription"
                " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ):
                for step in ("DISABLE", "SET (slot_name = NONE)"):
                    conn.execute(
                        sql.SQL("ALTER SUBSCRIPTION {} " + step).format(sql.Identifier(sub))
                    )
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(sub)))
    for cluster, name in made:
        helpers.drop_database(cluster, name)


def subscribe(
    sub: Node, pub: Node, name: str, publication: str, origin: str = "any", copy: bool = False
) -> list[str]:
    """``CREATE SUBSCRIPTION name`` on *sub* to *publication* on *pub* (slot *name* made first);
    the notices it raised, as ``SEVERITY: message | detail | hint``."""
    execute(pub.dsn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
    notes: list[str] = []
    with psycopg.connect(sub.dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notes.append(NOTE.format(d=d)))
        conn.execute(
            f"CREATE SUBSCRIPTION {name} CONNECTION '{pub.reach}' PUBLICATION {publication}"
            f" WITH (create_slot = false, slot_name = '{name}', origin = '{origin}',"
            f" copy_data = {copy})".encode()
        )
    return notes


def write(node: Node, *rows: tuple[int, int]) -> None:
    """Local inserts on *node*: ``(id, node)`` pairs, each its own transaction."""
    for row in rows:
        execute(node.dsn, "INSERT INTO chat VALUES (%s, %s, 'hi')", row)


def rows(node: Node) -> list[tuple[int, int]]:
    return [(int(i), int(n)) for i, n in execute(node.dsn, "SELECT id, node FROM chat ORDER BY id")]


def arrives(node: Node, expected: list[tuple[int, int]], what: str) -> None:
    """Wait until *node*'s table holds exactly *expected* (``(id, node)``, by id)."""
    wait_for(lambda: rows(node) == expected, what=f"{what}: {expected}")


def ready(node: Node) -> bool:
    """Every table of every subscription on *node* synced (``srsubstate = 'r'``)."""
    sync = "SELECT count(*) > 0 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel"
    return bool(execute(node.dsn, sync)[0][0])


def errors(node: Node) -> tuple[int, int]:
    """``(apply_error_count, sync_error_count)`` summed over *node*'s subscriptions."""
    (apply, sync), *_ = execute(
        node.dsn,
        "SELECT coalesce(sum(apply_error_count), 0), coalesce(sum(sync_error_count), 0)"
        " FROM pg_stat_subscription_stats JOIN pg_subscription s ON s.oid = subid"
        " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return int(apply), int(sync)


def settle(*links: tuple[Node, str]) -> None:
    """Wait until each slot (on its publisher) has confirmed all WAL written so far, in two
    rounds: a row going round a loop would need a second hop, and would be seen by then."""

    def caught_up(pub: Node, slot: str) -> None:
        (lsn,), *_ = execute(pub.dsn, "SELECT pg_current_wal_lsn()")
        query = "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = %s"
        wait_for(lambda: execute(pub.dsn, query, (lsn, slot))[0][0], what=f"{slot} caught up")

    for _ in range(2):
        for pub, slot in links:
            caught_up(pub, slot)


def publish(node: Node, where: str = "", name: str = "pub") -> None:
    execute(node.dsn, f"CREATE PUBLICATION {name} FOR TABLE chat {where}")


def test_origin_none_on_a_relay_drops_what_the_relay_received(make_node) -> None:
    """A -> B -> C: with ``origin = none`` C gets only the rows written on B itself, not those B
    received from A; with ``origin = any`` it gets both (a relay's downstream needs ``any``)."""
    a, b, c_none, c_any = make_node(), make_node(), make_node("remote"), make_node()
    publish(a)
    publish(b)
    subscribe(b, a, "b_from_a", "pub")
    subscribe(c_none, b, "cnone_from_b", "pub", origin="none")
    subscribe(c_any, b, "cany_from_b", "pub", origin="any")
    write(a, (1, 1))
    write(b, (2, 2))
    arrives(c_any, [(1, 1), (2, 2)], "both rows on C (origin any)")
    arrives(c_none, [(2, 2)], "B's own row on C (origin none)")
    settle((b, "cnone_from_b"))
    assert rows(c_none) == [(2, 2)]


def test_a_pair_subscribed_both_ways_with_origin_none_does_not_loop(make_node) -> None:
    """A <-> B (two clusters), each subscribed to the other with ``origin = none``: a row written
    on either is on both exactly once, and nothing loops (no apply error once both slots have
    confirmed everything, twice)."""
    a, b = make_node("hub"), make_node("remote")
    publish(a)
    publish(b)
    subscribe(b, a, "b_from_a", "pub", origin="none")
    subscribe(a, b, "a_from_b", "pub", origin="none")
    write(a, (1, 1))
    write(b, (2, 2))
    for node in (a, b):
        arrives(node, [(1, 1), (2, 2)], "both rows on both")
    settle((a, "b_from_a"), (b, "a_from_b"))
    assert rows(a) == rows(b) == [(1, 1), (2, 2)]
    assert errors(a) == errors(b) == (0, 0)


FORMS = {
    "<> ALL (array)": "node <> ALL ('{2,3}'::int[])",
    "NOT (= ANY (array))": "NOT (node = ANY ('{2,3}'::int[]))",
    "NOT IN (list)": "node NOT IN (2, 3)",
    "user-defined function": "node <> ALL (public.excluded())",
}


def test_a_row_filter_on_a_column_with_a_constant_array_filters_changes(make_node) -> None:
    """``FOR TABLE chat WHERE (node <> ALL ('{2,3}'::int[]))``, ``NOT (node = ANY (...))`` and
    ``node NOT IN (2, 3)`` are accepted and filter later inserts; a user-defined function is
    refused (the excluded nodes must be constants in the filter). A filter on a column outside
    the replica identity then makes UPDATE and DELETE on the publisher fail while a
    publication publishes them; a replica identity index on ``(id, node)`` lifts that (and they
    replicate), and so does ``publish = 'insert'``."""
    a, b = make_node(), make_node()
    execute(a.dsn, "CREATE FUNCTION public.excluded() RETURNS int[] IMMUTABLE LANGUAGE sql"
                   " RETURN '{2,3}'::int[]")  # fmt: skip
    outcome = {}
    for i, (form, where) in enumerate(FORMS.items()):
        try:
            publish(a, f"WHERE ({where})", f"p{i}")
            outcome[form] = "accepted"
        except psycopg.Error as exc:
            outcome[form] = f"{exc.diag.message_primary} | {exc.diag.message_detail}"
    assert outcome == {
        "<> ALL (array)": "accepted",
        "NOT (= ANY (array))": "accepted",
        "NOT IN (list)": "accepted",
        "user-defined function": "invalid publication WHERE expression"
        " | User-defined or built-in mutable functions are not allowed.",
    }
    subscribe(b, a, "b_from_a", "p0")
    write(a, (1, 1), (2, 2), (3, 3), (4, 1))
    arrives(b, [(1, 1), (4, 1)], "node 1's rows on B")
    settle((a, "b_from_a"))
    assert rows(b) == [(1, 1), (4, 1)]

    for statement, message in [
        ("UPDATE chat SET body = 'edited'", 'cannot update table "chat"'),
        ("DELETE FROM chat", 'cannot delete from table "chat"'),
    ]:
        with pytest.raises(psycopg.Error) as refused:
            execute(a.dsn, statement)
        assert refused.value.diag.message_primary == message
        assert refused.value.diag.message_detail == (
            "Column used in the publication WHERE expression is not part of the replica identity."
        )
    for conninfo in (a.dsn, b.dsn):  # way out 1: the node column in the replica identity
        execute(conninfo, "CREATE UNIQUE INDEX chat_id_node ON chat (id, node)")
        execute(conninfo, "ALTER TABLE chat REPLICA IDENTITY USING INDEX chat_id_node")
    execute(a.dsn, "UPDATE chat SET body = 'edited' WHERE id = 1")
    execute(a.dsn, "DELETE FROM chat WHERE id = 4")
    body = "SELECT id, body FROM chat ORDER BY id"
    wait_for(lambda: execute(b.dsn, body) == [(1, "edited")], what="UPDATE and DELETE on B")
    execute(a.dsn, "ALTER TABLE chat REPLICA IDENTITY DEFAULT")
    execute(a.dsn, "DROP PUBLICATION p1, p2")  # way out 2: publish inserts only
    execute(a.dsn, "ALTER PUBLICATION p0 SET (publish = 'insert')")
    execute(a.dsn, "UPDATE chat SET body = 'again' WHERE id = 1")


def test_a_row_filter_applies_to_the_initial_copy(make_node) -> None:
    """With ``copy_data = true`` the initial table copy honours the publication's row filter:
    rows of an excluded node are not copied (a joining spoke gets history without its own rows,
    whatever their replication origin)."""
    a, b = make_node(), make_node()
    publish(a, "WHERE (node <> ALL ('{2,3}'::int[]))")
    write(a, (1, 1), (2, 2), (3, 3), (4, 1))
    subscribe(b, a, "b_from_a", "pub", copy=True)
    wait_for(lambda: ready(b), what="initial copy")
    assert rows(b) == [(1, 1), (4, 1)]


def test_a_new_row_filter_takes_effect_without_a_refresh(make_node) -> None:
    """``ALTER PUBLICATION p SET TABLE chat WHERE (...)`` on the publisher applies to changes
    written after it, for an existing subscription: nothing is needed on the subscriber (no
    ``REFRESH PUBLICATION``), and rows filtered out before are not sent afterwards."""
    a, b = make_node(), make_node()
    publish(a, "WHERE (node = 1)")
    subscribe(b, a, "b_from_a", "pub")
    write(a, (1, 1), (2, 2))
    arrives(b, [(1, 1)], "node 1's row")
    execute(a.dsn, "ALTER PUBLICATION pub SET TABLE chat WHERE (node = 2)")
    write(a, (3, 1), (4, 2))
    arrives(b, [(1, 1), (4, 2)], "node 2's later row")  # in commit order
    assert rows(b) == [(1, 1), (4, 2)]


#: PostgreSQL 16 and 18 say the same (the WARNING when CREATE SUBSCRIPTION checks origins)
COPY_WARNING = (
    'WARNING: subscription "a_from_b" requested copy_data with origin = NONE but might copy'
    " data that had a different origin | The subscription being created subscribes to a"
    ' publication ("pub") that contains tables that are written to by other subscriptions.'
    " | Verify that initial data copied from the publisher tables did not come from other"
    " origins."
)


def test_copy_data_with_origin_none_only_warns_and_copies_rows_back(make_node, hub) -> None:
    """``copy_data = true`` with ``origin = none`` from a publisher whose table is itself
    subscribed from elsewhere is accepted with a WARNING (no error); the copy does not filter
    by origin, so B's copy of A's row comes back to A and the table sync fails on the duplicate
    key, over and over (sync_error_count rises)."""
    a, b = make_node(), make_node()
    publish(a)
    publish(b)
    write(a, (1, 1))
    assert subscribe(b, a, "b_from_a", "pub", origin="none", copy=True) == []
    wait_for(lambda: ready(b) and rows(b) == [(1, 1)], what="A's row copied to B")
    log_start = hub.log.stat().st_size
    assert subscribe(a, b, "a_from_b", "pub", origin="none", copy=True) == [COPY_WARNING]
    wait_for(lambda: errors(a)[1] > 0, what="the copy back failing on A")
    duplicate = 'duplicate key value violates unique constraint "chat_pkey"'
    assert duplicate in hub.log_tail(10_000, since=log_start)
    assert rows(a) == [(1, 1)]
    assert not ready(a)


def test_a_three_level_relay_tree_with_row_filters_delivers_once(make_node) -> None:
    """H <- R <- S (S on another cluster), every link ``origin = any`` both ways, loops cut by
    row filters on the node column: down H->R ``node NOT IN (R, S)``, up R->H ``node IN (R,
    S)``, down R->S ``node <> S``, up S->R ``node = S``. A row written on each of H, R, S
    reaches all three exactly once, and nothing loops (no apply error after settling)."""
    h, r, s = make_node(), make_node(), make_node("remote")
    publish(h, "WHERE (node NOT IN (2, 3))", "down")
    publish(r, "WHERE (node IN (2, 3))", "up")
    publish(r, "WHERE (node <> 3)", "down")
    publish(s, "WHERE (node = 3)", "up")
    subscribe(r, h, "r_from_h", "down")
    subscribe(h, r, "h_from_r", "up")
    subscribe(s, r, "s_from_r", "down")
    subscribe(r, s, "r_from_s", "up")
    write(h, (1, 1))
    write(r, (2, 2))
    write(s, (3, 3))
    every = [(1, 1), (2, 2), (3, 3)]
    for node in (h, r, s):
        arrives(node, every, "every row on every node")
    settle((h, "r_from_h"), (r, "h_from_r"), (r, "s_from_r"), (s, "r_from_s"))
    assert rows(h) == rows(r) == rows(s) == every
    assert errors(h) == errors(r) == errors(s) == (0, 0)


def snowflake(node: int, seq: int) -> int:
    """A time-ordered id as docs/design/two-way.md lays it out, node in bits 12-21."""
    return make_id(1_796_000_000_000, node, seq)


def test_a_row_filter_on_the_ids_node_bits_keeps_update_and_delete_working(make_node) -> None:
    """A filter on an expression of the primary key (the replica identity), such as the node
    bits of a time-ordered id, filters inserts and the initial copy, and UPDATE and DELETE on the
    publisher keep working and replicate through it: no extra column in the replica identity,
    no insert-only publication. Ids below 2**52 (legacy rows) pass the filter."""
    a, b = make_node(), make_node()
    down = Link("a", "b", frozenset({2}), down=True)  # agentchat's own filter: all but node 2
    publish(a, "WHERE " + down.row_filter().as_string(None))
    legacy, mine, theirs = 7, snowflake(1, 1), snowflake(2, 1)
    write(a, (legacy, 0), (mine, 1), (theirs, 2))
    subscribe(b, a, "b_from_a", "pub", copy=True)
    wait_for(lambda: ready(b), what="initial copy")
    assert rows(b) == [(legacy, 0), (mine, 1)]  # node 2's row not copied
    later_mine, later_theirs = snowflake(1, 2), snowflake(2, 2)
    write(a, (later_mine, 1), (later_theirs, 2))
    execute(a.dsn, "UPDATE chat SET body = 'edited' WHERE id = %s", (mine,))
    execute(a.dsn, "DELETE FROM chat WHERE id = %s", (legacy,))
    execute(a.dsn, "DELETE FROM chat WHERE id = %s", (theirs,))
    body = "SELECT id, body FROM chat ORDER BY id"
    expected = [(mine, "edited"), (later_mine, "hi")]
    wait_for(lambda: execute(b.dsn, body) == expected, what="changes through the id filter")
    settle((a, "b_from_a"))
    assert execute(b.dsn, body) == expected
    assert errors(b) == (0, 0)
