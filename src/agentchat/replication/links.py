"""Two-way links, planned (docs/replication.md, docs/design/two-way.md): no I/O.

A message id made by ``agentchat_next_id()`` carries the node it was written on::

    bit 63  62 .......................... 22  21 ......... 12  11 ......... 0
      0     milliseconds since 2020-01-01      node (10 bits)   sequence (12)

Ids below :data:`LEGACY_LIMIT` are legacy rows (written at a source before two-way replication;
node 0). A topology is a tree (a star, or relays) or a mesh. Each link X -> Y carries the rows
written on X's side of it, chosen by a publication row filter on the id (the primary key, so
UPDATE and DELETE keep working: fact 8 of tests/integration/test_two_way_facts.py)::

    >>> links = tree({"hub": None, "nova": "hub"}, {"hub": 1, "nova": 2})
    >>> [(link.sender, link.receiver, sorted(link.nodes), link.down) for link in links]
    [('hub', 'nova', [2], True), ('nova', 'hub', [2], False)]

(a down link carries every node but ``nodes``; an up link only ``nodes``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from psycopg import sql

from agentchat import errors
from agentchat.sql import queries

#: ids below this are legacy rows (a sequence's), ids from agentchat_next_id() are above
LEGACY_LIMIT = 1 << 52
NODE_BITS = 10
SEQUENCE_BITS = 12
#: node numbers a writer can have (0 is the legacy rows')
MAX_NODE = (1 << NODE_BITS) - 1
#: 2020-01-01T00:00:00Z in Unix milliseconds: the ids' epoch
EPOCH_MS = 1_577_836_800_000


def make_id(unix_ms: int, node: int, sequence: int) -> int:
    """The id ``agentchat_next_id()`` makes at *unix_ms* on *node* with *sequence*."""
    if not 1 <= node <= MAX_NODE:
        raise errors.InvalidInput(f"node number {node} is not between 1 and {MAX_NODE}")
    since = unix_ms - EPOCH_MS
    if not 1 << 30 <= since < 1 << 41:  # before 2020-01-13 an id would look like a legacy one
        raise errors.InvalidInput(f"time {unix_ms} ms is outside the ids' years (2020-2089)")
    low = sequence % (1 << SEQUENCE_BITS)
    return (since << (NODE_BITS + SEQUENCE_BITS)) | (node << SEQUENCE_BITS) | low


def node_of(message_id: int) -> int:
    """The node a message was written on: 0 for a legacy id."""
    if message_id < LEGACY_LIMIT:
        return 0
    return (message_id >> SEQUENCE_BITS) & MAX_NODE


@dataclass(frozen=True)
class Link:
    """One direction of one edge: *sender* publishes to *receiver*. A down link carries every
    node's rows except those of :attr:`nodes` (and the legacy rows); an up link only the rows of
    :attr:`nodes`."""

    sender: str
    receiver: str
    nodes: frozenset[int]
    down: bool

    def carries(self, message_id: int) -> bool:
        """Whether the link's filter lets this message through (what the server's filter does)."""
        node = node_of(message_id)
        if self.down:
            return message_id < LEGACY_LIMIT or node not in self.nodes
        return message_id >= LEGACY_LIMIT and node in self.nodes

    def row_filter(self, column: str = "id") -> sql.Composed:
        """The publication's ``WHERE`` expression on a message id *column* (``agent_chat.id``,
        ``memory_embeddings.source_id``)."""
        name = "link_filter_down" if self.down else "link_filter_up"
        return queries.compose(
            name, nodes=sql.Literal(sorted(self.nodes)), column=sql.Identifier(column)
        )

    def filters(self) -> dict[str, sql.Composed]:
        """The three filters of the link's publication (``create_link_publication``)."""
        nodes = sql.Literal(sorted(self.nodes))
        return {
            "chat_filter": self.row_filter("id"),
            "embedding_filter": self.row_filter("source_id"),
            "node_filter": queries.compose(
                "link_nodes_down" if self.down else "link_nodes_up", nodes=nodes
            ),
        }


_LINK_NAME = re.compile(r"agent_chat_([0-9]+)_to_([0-9]+)")


def link_name(sender: int, receiver: int) -> str:
    """``agent_chat_3_to_1``: the publication on node 3 for node 1, and node 1's subscription."""
    return f"agent_chat_{sender}_to_{receiver}"


def parse_link_name(name: str) -> tuple[int, int] | None:
    """``(sender, receiver)`` of a link's name, or None for any other name."""
    found = _LINK_NAME.fullmatch(name)
    return (int(found[1]), int(found[2])) if found else None


def tree(parent: Mapping[str, str | None], numbers: Mapping[str, int]) -> list[Link]:
    """The links of a tree: *parent* maps each node to its parent (the root to None), *numbers*
    each node to its node number. Parent -> child carries what is not in the child's subtree;
    child -> parent carries the child's subtree."""
    _check_numbers(numbers, parent)
    roots = [name for name, up in parent.items() if up is None]
    if len(roots) != 1:
        raise errors.InvalidInput(f"a tree has one root, not {len(roots)}: {sorted(roots)}")
    subtree: dict[str, set[int]] = {name: {numbers[name]} for name in parent}
    for name in parent:
        seen, up = {name}, parent[name]
        while up is not None:
            if up not in parent:
                raise errors.InvalidInput(f"{name}'s parent {up} is not in the tree")
            if up in seen:
                raise errors.InvalidInput(f"the tree has a loop through {up}")
            subtree[up].add(numbers[name])
            seen.add(up)
            up = parent[up]
    links: list[Link] = []
    for name, up in parent.items():
        if up is not None:
            below = frozenset(subtree[name])
            links += [Link(up, name, below, down=True), Link(name, up, below, down=False)]
    return links


def mesh(numbers: Mapping[str, int]) -> list[Link]:
    """The links of a full mesh: every node publishes its own rows to every other."""
    _check_numbers(numbers, numbers)
    return [
        Link(sender, receiver, frozenset({numbers[sender]}), down=False)
        for sender in numbers
        for receiver in numbers
        if sender != receiver
    ]


def _check_numbers(numbers: Mapping[str, int], names: Mapping[str, object]) -> None:
    missing = sorted(set(names) - set(numbers))
    if missing:
        raise errors.InvalidInput(f"no node number for {', '.join(missing)}")
    by_number: dict[int, str] = {}
    for name in names:
        number = numbers[name]
        if not 1 <= number <= MAX_NODE:
            raise errors.InvalidInput(f"{name}'s node number {number} is not in 1..{MAX_NODE}")
        if number in by_number:
            raise errors.InvalidInput(
                f"{name} and {by_number[number]} have the same node number {number}"
            )
        by_number[number] = name
