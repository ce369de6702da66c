"""Node identity without a database: the id layout migration 0006 ships is links.make_id's, the
registry query counts the ids links.node_of gives a node, and free node numbers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agentchat import errors, nodes
from agentchat.replication import links
from agentchat.sql import load_migrations, queries

NOW = 1_796_000_000_000  # 2026-11-29, Unix ms
MIGRATION = next(m for m in load_migrations() if m.version == 6)


def test_node_numbers_are_the_links_ones() -> None:
    assert (nodes.MIN_NODE, nodes.MAX_NODE) == (1, links.MAX_NODE)


def test_the_migration_builds_ids_as_make_id_does() -> None:
    """agentchat_next_id()'s epoch, shifts and modulus are make_id's (the integration test
    compares the ids a server makes)."""
    text = MIGRATION.text
    assert f"- {links.EPOCH_MS};" in text
    [body] = re.findall(r"RETURN (\(since.*?\));", text, re.DOTALL)
    shifts = [int(s) for s in re.findall(r"<< (\d+)", body)]
    assert shifts == [links.NODE_BITS + links.SEQUENCE_BITS, links.SEQUENCE_BITS]
    assert f"% {1 << links.SEQUENCE_BITS})" in body
    assert "BETWEEN 1 AND 1023" in text and f"{2**30} AND {2**41 - 1}" in text


def own_rows_predicate(message_id: int, node: int) -> bool:
    """The WHERE clause of the node_own_rows query, evaluated in Python."""
    text = queries["node_own_rows"].as_string(None)
    [limit, shift, mask] = re.findall(r"c\.id >= (\d+) AND \(\(c\.id >> (\d+)\) & (\d+)\)", text)[0]
    return message_id >= int(limit) and (message_id >> int(shift)) & int(mask) == node


@pytest.mark.parametrize(
    "message_id",
    [
        links.make_id(NOW, 1, 0),
        links.make_id(NOW, 1023, 4095),
        links.make_id(NOW + 1, 512, 4096),
        links.make_id(links.EPOCH_MS + 2**30, 7, 1),
        1,
        links.LEGACY_LIMIT - 1,
    ],
)
def test_own_rows_counts_the_ids_node_of_gives_the_node(message_id: int) -> None:
    for node in (1, 7, 512, 1023):
        assert own_rows_predicate(message_id, node) == (links.node_of(message_id) == node)


@pytest.mark.parametrize(
    ("taken", "free"),
    [
        (set(), 1),
        ({1, 2, 4}, 3),
        ({2, 3}, 1),
        ({0, 1, 2000}, 2),  # numbers outside 1..1023 take nothing
        (set(range(1, 1023)), 1023),
    ],
)
def test_free_number_is_the_smallest_free(taken: set[int], free: int) -> None:
    assert nodes.free_number(taken) == free


def test_no_free_number_is_an_error() -> None:
    with pytest.raises(errors.InvalidInput, match="all 1023 node numbers are taken"):
        nodes.free_number(frozenset(range(1, 1024)))


NO_CONNECTION: Any = None  # the checks below refuse before touching the database


@pytest.mark.parametrize("number", [0, -1, 1024])
def test_a_node_number_out_of_range_is_refused(number: int) -> None:
    with pytest.raises(errors.InvalidInput, match=f"node number {number} is not between 1 and"):
        nodes.set_number(NO_CONNECTION, number)
    with pytest.raises(errors.InvalidInput, match="not between"):
        nodes.own_rows(NO_CONNECTION, number)
    with pytest.raises(errors.InvalidInput, match="not between"):
        nodes.register_self(NO_CONNECTION, name="a", conninfo=None, parent=number)


@pytest.mark.parametrize(
    "conninfo",
    ["host=h dbname=d password=secret", "postgresql://u:secret@h/d"],
)
def test_a_conninfo_with_a_password_is_refused(conninfo: str) -> None:
    with pytest.raises(errors.InvalidInput, match="must hold no password"):
        nodes.register_self(NO_CONNECTION, name="a", conninfo=conninfo, parent=None)


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(errors.InvalidInput, match="must not be empty"):
        nodes.register_self(NO_CONNECTION, name="", conninfo=None, parent=None)
