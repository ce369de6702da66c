"""Two-way links (agentchat.replication.links): ids that carry their node, and what each link
of a star, a relay tree or a mesh carries — every message reaches every node exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from agentchat import errors
from agentchat.replication.links import (
    EPOCH_MS,
    LEGACY_LIMIT,
    Link,
    link_name,
    make_id,
    mesh,
    node_of,
    parse_link_name,
    tree,
)

NOW = 1_796_000_000_000  # 2026-11-29, Unix ms


@pytest.mark.parametrize(
    ("ms", "node", "sequence"),
    [(NOW, 1, 0), (NOW, 1023, 4095), (NOW + 1, 7, 4096), (EPOCH_MS + 2**30, 5, 1)],
)
def test_an_id_carries_its_node(ms: int, node: int, sequence: int) -> None:
    made = make_id(ms, node, sequence)
    assert node_of(made) == node
    assert 0 < made < 2**63


@pytest.mark.parametrize("legacy", [1, 4096, 1_000_000, LEGACY_LIMIT - 1])
def test_a_legacy_id_is_node_0(legacy: int) -> None:
    assert node_of(legacy) == 0


def test_ids_sort_by_time_then_node_and_after_every_legacy_id() -> None:
    assert make_id(NOW, 9, 4095) < make_id(NOW + 1, 1, 0)
    assert make_id(NOW, 1, 5) < make_id(NOW, 2, 0)
    assert make_id(EPOCH_MS + 2**30, 1, 0) > LEGACY_LIMIT


@pytest.mark.parametrize(
    ("ms", "node", "error"),
    [
        (NOW, 0, "node number 0"),
        (NOW, 1024, "node number 1024"),
        (EPOCH_MS - 1, 1, "time"),
        (EPOCH_MS + 2**30 - 1, 1, "time"),  # its id would be below LEGACY_LIMIT
    ],
)
def test_an_impossible_id_is_refused(ms: int, node: int, error: str) -> None:
    with pytest.raises(errors.InvalidInput, match=error):
        make_id(ms, node, 0)


def deliveries(links: list[Link], origin: str, message_id: int) -> Counter[str]:
    """How often each node receives *message_id* written on *origin*, following the links that
    carry it (what the servers' row filters do, flooded until nothing new arrives)."""
    received: Counter[str] = Counter()
    have, frontier = {origin}, [origin]
    while frontier:
        node = frontier.pop()
        for link in links:
            if link.sender == node and link.carries(message_id):
                received[link.receiver] += 1
                if link.receiver not in have:
                    have.add(link.receiver)
                    frontier.append(link.receiver)
    return received


STAR = ({"hub": None, "nova": "hub", "sage": "hub", "owl": "hub"},
        {"hub": 1, "nova": 2, "sage": 3, "owl": 4})  # fmt: skip
RELAYS = (
    {"hub": None, "east": "hub", "west": "hub", "e1": "east", "e2": "east", "w1": "west"},
    {"hub": 1, "east": 2, "west": 3, "e1": 4, "e2": 5, "w1": 6},
)
CHAIN = ({"h": None, "r": "h", "s": "r"}, {"h": 10, "r": 20, "s": 30})


@pytest.mark.parametrize(
    ("parent", "numbers"), [STAR, RELAYS, CHAIN], ids=["star", "relays", "chain"]
)
def test_in_a_tree_every_message_reaches_every_node_once(parent, numbers) -> None:
    links = tree(parent, numbers)
    assert len(links) == 2 * (len(parent) - 1)
    for origin, number in numbers.items():
        got = deliveries(links, origin, make_id(NOW, number, 1))
        assert got == Counter({name: 1 for name in parent if name != origin}), origin


def test_legacy_rows_flow_down_from_the_root_and_never_back_up() -> None:
    links = tree(*RELAYS)
    assert deliveries(links, "hub", 42) == Counter({n: 1 for n in RELAYS[0] if n != "hub"})
    assert deliveries(links, "e1", 42) == Counter()  # a legacy id written below: nowhere


def test_in_a_mesh_every_message_reaches_every_node_once_directly() -> None:
    numbers = {"a": 1, "b": 2, "c": 3, "d": 4}
    links = mesh(numbers)
    assert len(links) == 4 * 3
    for origin, number in numbers.items():
        got = deliveries(links, origin, make_id(NOW, number, 7))
        assert got == Counter({name: 1 for name in numbers if name != origin})


def test_what_a_relay_link_carries() -> None:
    by_pair = {(link.sender, link.receiver): link for link in tree(*RELAYS)}
    assert by_pair["hub", "east"].nodes == {2, 4, 5} and by_pair["hub", "east"].down
    assert by_pair["east", "hub"].nodes == {2, 4, 5} and not by_pair["east", "hub"].down
    assert by_pair["east", "e1"].nodes == {4}


def test_the_row_filters_as_the_server_gets_them() -> None:
    down, up = (link.row_filter().as_string(None) for link in tree(*CHAIN)[2:])
    assert down == '("id" < 4503599627370496 OR (("id" >> 12) & 1023) <> ALL (\'{30}\'::int2[]))'
    assert up == '("id" >= 4503599627370496 AND (("id" >> 12) & 1023) = ANY (\'{30}\'::int2[]))'


def test_a_links_filters_cover_the_chat_its_embeddings_and_the_node_registry() -> None:
    down = tree(*CHAIN)[2]
    filters = {k: v.as_string(None) for k, v in down.filters().items()}
    assert filters["embedding_filter"].startswith('("source_id" < 4503599627370496 OR')
    assert filters["node_filter"] == "(node <> ALL ('{30}'::int2[]))"
    up = tree(*CHAIN)[3]
    assert up.filters()["node_filter"].as_string(None) == "(node = ANY ('{30}'::int2[]))"


def test_link_names_carry_both_node_numbers() -> None:
    assert link_name(3, 1) == "agent_chat_3_to_1"
    assert parse_link_name("agent_chat_3_to_1") == (3, 1)
    for other in (
        "agent_chat_from_nova",
        "agent_chat_3_to_",
        "agent_chat_x_to_1",
        "agent_chat_pub",
    ):
        assert parse_link_name(other) is None


@pytest.mark.parametrize(
    ("parent", "numbers", "error"),
    [
        ({"a": None, "b": None}, {"a": 1, "b": 2}, "one root, not 2"),
        ({"a": None, "b": "c"}, {"a": 1, "b": 2}, "b's parent c is not in the tree"),
        ({"a": None, "b": "c", "c": "b"}, {"a": 1, "b": 2, "c": 3}, "loop"),
        ({"a": None, "b": "a"}, {"a": 1, "b": 1}, "same node number 1"),
        ({"a": None, "b": "a"}, {"a": 1}, "no node number for b"),
        ({"a": None, "b": "a"}, {"a": 1, "b": 1024}, "not in 1..1023"),
    ],
)
def test_a_topology_that_cannot_work_is_refused(parent, numbers, error: str) -> None:
    with pytest.raises(errors.InvalidInput, match=error):
        tree(parent, numbers)


def test_a_mesh_refuses_colliding_numbers() -> None:
    with pytest.raises(errors.InvalidInput, match="same node number 3"):
        mesh({"a": 3, "b": 3})


def test_the_module_example_runs() -> None:
    import doctest

    from agentchat.replication import links

    assert doctest.testmod(links).failed == 0
