"""The pure parts of two-way joins: which tree a registry describes, its links, the path up."""

from __future__ import annotations

import pytest

from agentchat import errors
from agentchat.nodes import Node
from agentchat.replication.twoway import _path_up, _tree_of, tree_links, version_finding


def _registry(parents: dict[int, int | None]) -> list[Node]:
    return [Node(n, f"db{n}", f"dbname=db{n}", p) for n, p in parents.items()]


def test_the_tree_of_a_member_leaves_out_mesh_members_and_strays() -> None:
    registry = _registry({1: None, 2: 1, 3: 2, 7: None, 8: 7})  # 7 and 8: another tree
    assert _tree_of(registry, 3) == {1: None, 2: 1, 3: 2}
    assert _tree_of(registry, 8) == {7: None, 8: 7}


def test_a_node_not_yet_registered_is_its_own_root() -> None:
    assert _tree_of(_registry({}), 5) == {5: None}


def test_a_registry_loop_is_refused() -> None:
    with pytest.raises(errors.ReplicationError, match="loop through node"):
        _tree_of(_registry({1: 2, 2: 1}), 1)


def test_the_path_up_lists_each_edge_child_first() -> None:
    parents = {1: None, 2: 1, 3: 2, 4: 3}
    assert _path_up(parents, 4) == [(4, 3), (3, 2), (2, 1)]
    assert _path_up(parents, 1) == []


def test_joining_below_a_relay_widens_every_link_on_the_path() -> None:
    before = tree_links({1: None, 2: 1, 3: 2})
    after = tree_links({1: None, 2: 1, 3: 2, 4: 3})
    for edge in _path_up({1: None, 2: 1, 3: 2}, 3):  # the edges whose filters change
        child, up = edge
        assert after[(child, up)].nodes == before[(child, up)].nodes | {4}
        assert after[(up, child)].nodes == before[(up, child)].nodes | {4}
    assert after[(3, 4)].down and after[(3, 4)].nodes == {4}
    assert not after[(4, 3)].down and after[(4, 3)].nodes == {4}
    unchanged = set(before) & set(after)
    assert all(
        before[k] == after[k] for k in unchanged if k not in {(3, 2), (2, 3), (2, 1), (1, 2)}
    )


def test_two_way_is_refused_before_postgresql_16_with_the_way_out() -> None:
    assert version_finding("db", 160000) is None and version_finding("db", 180004) is None
    old = version_finding("nova_memory on db1:5432", 150012)
    assert old is not None and not old.ok
    assert old.message == (
        "nova_memory on db1:5432 runs PostgreSQL 15: two-way replication needs 16 or later"
        " (subscriptions with origin)"
    )
    assert old.fix is not None and "--one-way" in old.fix
