"""The graph of two-way links judged from made-up facts (no database): filters as PostgreSQL 16
and 18 show them, complete and half links, loops, node numbers that collide, the registry, and
a flood of every node's rows over the links."""

from __future__ import annotations

import doctest
from collections.abc import Mapping

import pytest

from agentchat.ops import graph
from agentchat.ops.graph import (
    Carry,
    LinkPublication,
    LinkSubscription,
    NodeGraph,
    RegistryRow,
    judge_graph,
    parse_filter,
)
from agentchat.ops.judge import Check, Verdict
from agentchat.replication.links import Link, mesh, tree

#: pg_publication_tables.rowfilter of agentchat's filters, measured on PostgreSQL 16 and 18 (the
#: same text on both): down all but {2, 3, 17}, up {2, 5}
PG_DOWN = (
    "((id < '4503599627370496'::bigint) OR (((id >> 12) & (1023)::bigint) <> ALL"
    " ('{2,3,17}'::smallint[])))"
)
PG_UP = (
    "((id >= '4503599627370496'::bigint) AND (((id >> 12) & (1023)::bigint) = ANY"
    " ('{2,5}'::smallint[])))"
)


def normalised(link: Link) -> str:
    """The filter of *link* as the server shows it in pg_publication_tables.rowfilter."""
    nodes = ",".join(str(n) for n in sorted(link.nodes))
    if link.down:
        return (
            "((id < '4503599627370496'::bigint) OR (((id >> 12) & (1023)::bigint) <> ALL"
            f" ('{{{nodes}}}'::smallint[])))"
        )
    return (
        "((id >= '4503599627370496'::bigint) AND (((id >> 12) & (1023)::bigint) = ANY"
        f" ('{{{nodes}}}'::smallint[])))"
    )


def build(links: list[Link], numbers: Mapping[str, int]) -> dict[str, NodeGraph]:
    """Every node's facts for these planned links: publication, subscription and slot each."""
    pubs: dict[str, list[LinkPublication]] = {n: [] for n in numbers}
    subs: dict[str, list[LinkSubscription]] = {n: [] for n in numbers}
    slots: dict[str, dict[str, bool]] = {n: {} for n in numbers}
    registry = tuple(RegistryRow(number, name) for name, number in numbers.items())
    for link in links:
        name = f"agent_chat_{numbers[link.sender]}_to_{numbers[link.receiver]}"
        pubs[link.sender].append(LinkPublication(name, normalised(link)))
        subs[link.receiver].append(LinkSubscription(name, slot=f"slot_{name}"))
        slots[link.sender][f"slot_{name}"] = True
    return {
        name: NodeGraph(name, number, registry, tuple(pubs[name]), tuple(subs[name]), slots[name])
        for name, number in numbers.items()
    }


STAR = {"hub": 1, "nova": 2, "gray": 3}
STAR_PARENTS: dict[str, str | None] = {"hub": None, "nova": "hub", "gray": "hub"}


def star() -> dict[str, NodeGraph]:
    return build(tree(STAR_PARENTS, STAR), STAR)


def bad(checks: list[Check]) -> list[tuple[str, str, Verdict]]:
    return [(c.database, c.check, c.verdict) for c in checks if not c.ok]


def replace_node(nodes: dict[str, NodeGraph], name: str, **changes: object) -> list[NodeGraph]:
    from dataclasses import replace

    nodes[name] = replace(nodes[name], **changes)  # type: ignore[arg-type]
    return list(nodes.values())


# -- filters -----------------------------------------------------------------------------------


def test_the_servers_normalised_filters_parse() -> None:
    assert parse_filter(PG_DOWN) == Carry(frozenset({2, 3, 17}), down=True)
    assert parse_filter(PG_UP) == Carry(frozenset({2, 5}), down=False)


@pytest.mark.parametrize("down", [True, False])
def test_agentchats_own_filter_text_parses_back_to_its_link(down: bool) -> None:
    link = Link("a", "b", frozenset({4, 9}), down)
    assert parse_filter(link.row_filter().as_string(None)) == Carry(link.nodes, down)
    assert parse_filter(normalised(link)) == Carry(link.nodes, down)


@pytest.mark.parametrize(
    "text",
    [
        "(id > 5)",
        "((id < '4503599627370496'::bigint) AND (((id >> 12) & (1023)::bigint) <> ALL"
        " ('{2}'::smallint[])))",  # a down filter joined with AND
        "((id < '4503599627370496'::bigint) OR (((id >> 12) & (1023)::bigint) = ANY"
        " ('{2}'::smallint[])))",  # legacy rows plus only node 2: no shape of ours
        "((id >= '4503599627370496'::bigint) AND (((id >> 12) & (1023)::bigint) = ANY"
        " ('{2000}'::smallint[])))",  # not a node number
        "(source_type = 'agent_chat'::text)",
    ],
)
def test_a_filter_of_another_shape_is_not_guessed(text: str) -> None:
    assert parse_filter(text) is None


def test_no_filter_carries_everything() -> None:
    carry = parse_filter(None)
    assert carry is not None and carry.carries(0) and carry.carries(7)


def test_carry_and_its_description() -> None:
    down, up = Carry(frozenset({2}), True), Carry(frozenset({2, 3}), False)
    assert down.carries(0) and down.carries(1) and not down.carries(2)
    assert not up.carries(0) and up.carries(3) and not up.carries(1)
    assert down.describe() == "every node's rows but node 2's, legacy rows too"
    assert up.describe() == "the rows of nodes 2, 3"
    assert graph.describe_nodes(down.carried & Carry(frozenset({2, 5}), True).carried) == (
        "every node but nodes 2, 5"
    )


def test_doctests() -> None:
    assert doctest.testmod(graph).failed == 0


# -- healthy graphs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nodes",
    [
        star(),
        build(mesh({"a": 1, "b": 2, "c": 3}), {"a": 1, "b": 2, "c": 3}),
        build(
            tree({"h": None, "r": "h", "s": "r", "t": "h"}, {"h": 1, "r": 2, "s": 3, "t": 4}),
            {"h": 1, "r": 2, "s": 3, "t": 4},
        ),
    ],
    ids=["star", "mesh", "relay"],
)
def test_a_healthy_graph_has_only_ok_checks(nodes: dict[str, NodeGraph]) -> None:
    checks = judge_graph(list(nodes.values()))
    assert bad(checks) == []
    kinds = {c.check for c in checks}
    assert kinds == {"node_number", "link", "delivery"}
    delivered = {c.database: c.detail for c in checks if c.check == "delivery"}
    assert len(delivered) == len(nodes)
    assert all("once each" in d for d in delivered.values())


def test_a_link_says_what_it_carries_and_its_slot() -> None:
    checks = judge_graph(list(star().values()))
    link = next(c for c in checks if c.subject == "agent_chat_1_to_2")
    assert link.database == "nova"
    assert link.detail == (
        "link agent_chat_1_to_2 (from node 1, hub) carries every node's rows but node 2's,"
        " legacy rows too; slot slot_agent_chat_1_to_2 active"
    )


def test_without_node_settings_the_numbers_come_from_the_links_names() -> None:
    nodes = {name: NodeGraph(n.database, None, (), n.publications, n.subscriptions, n.slots)
             for name, n in star().items()}  # fmt: skip
    checks = judge_graph(list(nodes.values()))
    assert bad(checks) == []
    number = next(c for c in checks if c.check == "node_number" and c.database == "hub")
    assert number.detail == "node 1 (from its links' names: no node setting)"


# -- missing links -----------------------------------------------------------------------------


def test_a_dropped_subscription_is_a_missing_link_on_its_receiver() -> None:
    nodes = star()
    nova = nodes["nova"]
    subs = tuple(s for s in nova.subscriptions if s.name != "agent_chat_1_to_2")
    checks = judge_graph(replace_node(nodes, "nova", subscriptions=subs))
    assert ("nova", "link", Verdict.BROKEN) in bad(checks)
    missing = next(c for c in checks if c.check == "link" and not c.ok)
    assert missing.subject == "agent_chat_1_to_2"
    assert missing.detail.startswith("missing link: node 1 (hub) publishes agent_chat_1_to_2")
    assert missing.fix and "agentchat replicate add" in missing.fix
    assert missing.fix.startswith("first, on node 1: DROP PUBLICATION agent_chat_1_to_2; then")
    hub = replace_node(nodes, "hub", slots={**nodes["hub"].slots, "agent_chat_1_to_2_x": False})
    [again] = [c for c in judge_graph(hub) if c.check == "link" and not c.ok]
    assert again.fix and again.fix.startswith(
        "first, on node 1: SELECT pg_drop_replication_slot('agent_chat_1_to_2_x'); DROP"
        " PUBLICATION agent_chat_1_to_2; then take the node out and put it back"
    )
    assert not any(c.check == "delivery" for c in checks)  # not judged with a link missing


def test_a_dropped_publication_is_a_missing_link_on_its_sender() -> None:
    nodes = star()
    pubs = tuple(p for p in nodes["gray"].publications if p.name != "agent_chat_3_to_1")
    checks = judge_graph(replace_node(nodes, "gray", publications=pubs))
    assert bad(checks) == [("gray", "link", Verdict.BROKEN)]
    [missing] = [c for c in checks if not c.ok]
    assert "(hub) subscribes to agent_chat_3_to_1, but this database (node 3)" in missing.detail
    assert missing.fix and missing.fix.startswith(
        "first, on node 1: DROP SUBSCRIPTION agent_chat_3_to_1; then take the node out"
    )


def test_a_lost_slot_breaks_its_link() -> None:
    nodes = star()
    checks = judge_graph(replace_node(nodes, "hub", slots={"slot_agent_chat_1_to_3": True}))
    assert bad(checks) == [("nova", "link", Verdict.BROKEN)]
    [lost] = [c for c in checks if not c.ok]
    assert "its slot slot_agent_chat_1_to_2 is gone from hub" in lost.detail


def test_half_a_link_to_a_node_not_looked_at_is_not_judged() -> None:
    nodes = star()
    checks = judge_graph([nodes["hub"], nodes["nova"]])
    assert bad(checks) == []
    assert "delivery" not in {c.check for c in checks}  # gray's links are out of view


def test_a_registered_node_nothing_links_to() -> None:
    nodes = star()
    extra = RegistryRow(9, "gone", parent=1)
    registry = (*nodes["hub"].registry, extra)
    checks = judge_graph(replace_node(nodes, "hub", registry=registry))
    assert bad(checks) == [("hub", "registry", Verdict.BROKEN)]
    [row] = [c for c in checks if not c.ok]
    assert row.detail == (
        "the node registry lists node 9 (gone), a child of node 1, but no link joins it:"
        " it neither sends nor receives"
    )
    assert row.fix and "DELETE FROM agentchat_nodes WHERE node = 9;" in row.fix


def test_a_plain_databases_own_registry_row_is_not_a_missing_link() -> None:
    nodes = star()
    plain = NodeGraph("plain", 7, (RegistryRow(7, "plain"),))
    assert bad(judge_graph([*nodes.values(), plain])) == []
    same = NodeGraph("plain", 2, (RegistryRow(2, "plain"),))  # nova's number: joining renumbers
    checks = judge_graph([*nodes.values(), same])
    assert bad(checks) == []
    assert "delivery" in {c.check for c in checks}


# -- loops -------------------------------------------------------------------------------------


def test_an_overlapping_publication_is_a_loop_naming_the_nodes() -> None:
    """A mesh link from a to c that carries b's rows too: c gets b's rows from a and from b."""
    numbers = {"a": 1, "b": 2, "c": 3}
    links = [
        Link(x.sender, x.receiver, frozenset({1, 2}), False)
        if (x.sender, x.receiver) == ("a", "c")
        else x
        for x in mesh(numbers)
    ]
    checks = judge_graph(list(build(links, numbers).values()))
    loops = [c for c in checks if c.check == "loop"]
    assert [(c.database, c.verdict) for c in loops] == [("c", Verdict.BROKEN)]
    assert loops[0].detail.startswith(
        "links agent_chat_1_to_3 and agent_chat_2_to_3 both carry the rows of node 2"
    )
    assert loops[0].fix and loops[0].fix.startswith("one of them must not carry them")
    assert ("c", "delivery", Verdict.BROKEN) in bad(checks)


def test_an_extra_link_between_two_spokes_is_named_as_the_one_to_drop() -> None:
    numbers = {**STAR}
    links = [*tree(STAR_PARENTS, STAR), Link("gray", "nova", frozenset({3}), down=False)]
    nodes = build(links, numbers)
    parents = {1: None, 2: 1, 3: 1}
    registry = tuple(RegistryRow(n, name, parent=parents[n]) for name, n in STAR.items())
    for name in nodes:
        nodes[name] = NodeGraph(
            name, STAR[name], registry, nodes[name].publications, nodes[name].subscriptions,
            nodes[name].slots,
        )  # fmt: skip
    [loop] = [c for c in judge_graph(list(nodes.values())) if c.check == "loop"]
    assert loop.database == "nova"
    assert loop.fix == (
        "agent_chat_3_to_2 joins two nodes the registry does not link (neither is the other's"
        " parent, nor are both mesh members): drop it, DROP SUBSCRIPTION agent_chat_3_to_2 here,"
        " then DROP PUBLICATION agent_chat_3_to_2 on node 3"
    )


def test_a_link_carrying_the_receivers_own_rows_back_is_a_loop() -> None:
    nodes = star()
    hub = nodes["hub"]
    pubs = tuple(
        LinkPublication(p.name, None) if p.name == "agent_chat_1_to_2" else p
        for p in hub.publications
    )
    checks = judge_graph(replace_node(nodes, "hub", publications=pubs))
    assert bad(checks) == [("nova", "loop", Verdict.BROKEN)]
    [echo] = [c for c in checks if not c.ok]
    assert "carries this node's own rows (node 2) back to it" in echo.detail


def test_two_down_links_into_one_node_overlap_on_legacy_rows() -> None:
    down = Carry(frozenset({3}), True)
    assert graph.describe_nodes(down.carried & down.carried).startswith("every node but")
    both = Carry(frozenset({3}), True).carried & Carry(frozenset({1, 2, 3}), False).carried
    assert graph.describe_nodes(both) == "nodes 1, 2"


def test_an_unknown_filter_is_reported_not_judged() -> None:
    nodes = star()
    pubs = tuple(
        LinkPublication(p.name, "(id > 5)") if p.name == "agent_chat_1_to_2" else p
        for p in nodes["hub"].publications
    )
    checks = judge_graph(replace_node(nodes, "hub", publications=pubs))
    assert bad(checks) == [("hub", "link_filter", Verdict.DEGRADED)]


def test_a_subscription_with_origin_none_drops_relayed_rows() -> None:
    nodes = star()
    subs = tuple(LinkSubscription(s.name, slot=s.slot, origin="none")
                 for s in nodes["nova"].subscriptions)  # fmt: skip
    checks = judge_graph(replace_node(nodes, "nova", subscriptions=subs))
    assert bad(checks) == [("nova", "link_origin", Verdict.DEGRADED)]


# -- node numbers ------------------------------------------------------------------------------


def test_two_databases_with_one_number_collide() -> None:
    nodes = star()
    checks = judge_graph(replace_node(nodes, "gray", number=2))
    collisions = [c for c in checks if c.check == "node_number" and not c.ok]
    assert [(c.database, c.subject) for c in collisions] == [("nova", "2"), ("gray", "2")]
    assert collisions[0].detail.startswith("node number 2 is also that of gray")
    assert collisions[0].fix == (
        "this database has the number its links are named for: change the other, gray"
    )
    assert collisions[1].fix and collisions[1].fix.startswith(
        "its links are named for node 3: give it that number back, on it: UPDATE"
        " agentchat_settings SET value = '3' WHERE key = 'node';"
    )
    # a copy of a node (its links' names and number both the original's): out and in again
    clone = NodeGraph("clone", 2, (), nodes["nova"].publications)
    [copy] = [c for c in judge_graph([*star().values(), clone])
              if c.check == "node_number" and c.database == "clone"]  # fmt: skip
    assert copy.fix and "(4 is free)" in copy.fix
    [names] = [c for c in checks if c.check == "link_name"]
    assert names.subject == "agent_chat_3_to_1, agent_chat_1_to_3"
    assert names.detail.startswith(
        "its links agent_chat_3_to_1, agent_chat_1_to_3 are named for node 3, but this database"
        " is node 2"
    )


def test_the_registry_holding_one_number_under_two_names() -> None:
    nodes = star()
    registry = (*nodes["hub"].registry, RegistryRow(2, "elsewhere"))
    checks = judge_graph(replace_node(nodes, "hub", registry=registry))
    assert bad(checks) == [("nova", "node_number", Verdict.BROKEN)]
    [twice] = [c for c in checks if not c.ok]
    assert twice.detail == "the node registry holds node 2 twice: elsewhere and nova"


# -- the flood ---------------------------------------------------------------------------------


def test_the_flood_counts_each_arrival() -> None:
    links = tree(STAR_PARENTS, STAR)
    carries = [(STAR[x.sender], STAR[x.receiver], Carry(x.nodes, x.down)) for x in links]
    assert graph.flood([1, 2, 3], carries) == {1: {2: 1, 3: 1}, 2: {1: 1, 3: 1}, 3: {1: 1, 2: 1}}
    # an extra direct link 2 -> 3 carrying 2's rows: 3 gets them twice
    arrivals = graph.flood([1, 2, 3], [*carries, (2, 3, Carry(frozenset({2}), False))])
    assert arrivals[3][2] == 2


def test_free_number() -> None:
    assert graph.free_number([1, 2, 4]) == 3
    assert graph.free_number([]) == 1


def test_as_dict() -> None:
    hub = star()["hub"]
    data = hub.as_dict()
    assert data["node"] == 1
    assert data["publications"] == [
        {"name": "agent_chat_1_to_2", "filter": normalised(Link("h", "n", frozenset({2}), True)),
         "carries": {"direction": "down", "nodes": [2]},
         "tables": ["agent_chat", "agentchat_nodes", "memory_embeddings"]},
        {"name": "agent_chat_1_to_3", "filter": normalised(Link("h", "g", frozenset({3}), True)),
         "carries": {"direction": "down", "nodes": [3]},
         "tables": ["agent_chat", "agentchat_nodes", "memory_embeddings"]},
    ]  # fmt: skip
    assert [s["name"] for s in data["subscriptions"]] == [  # type: ignore[attr-defined]
        "agent_chat_2_to_1",
        "agent_chat_3_to_1",
    ]


# -- verify, two-way ---------------------------------------------------------------------------


def test_a_two_way_probe_must_be_heard_exactly_once() -> None:
    from agentchat.ops.verify import VerifyResult

    one_way = VerifyResult("a", "b", 1, True, True, 1.0, 1.0, 1, True)
    assert one_way.ok and "notifications" not in one_way.as_dict()  # one-way JSON unchanged
    once = VerifyResult("a", "b", 1, True, True, 1.0, 1.0, 1, True, notifications=1)
    twice = VerifyResult("a", "b", 1, True, True, 1.0, 1.0, 1, True, notifications=2)
    assert once.ok and once.as_dict()["notifications"] == 1
    assert not twice.ok


def test_two_way_verify_lines_name_writer_and_receiver() -> None:
    from agentchat.cli.ops import render_verify
    from agentchat.ops.verify import VerifyResult

    twice = VerifyResult("a", "b", 1, True, True, 1.5, 1.25, 1, True, notifications=2)
    lost = VerifyResult("b", "a", 2, notifications=0)
    assert render_verify([twice, lost]).splitlines() == [
        "a -> b: arrived in 1.5 ms, NOTIFY in 1.25 ms (2 NOTIFYs: it arrived more than once),"
        " 1 embedding row(s) [FAILED]",
        "b -> a: did NOT arrive, NO NOTIFY heard, 0 embedding row(s) [FAILED]",
    ]


def test_verify_wants_two_dsns_and_not_source_or_target_with_them() -> None:
    from tests.helpers import invoke

    for args in (["--dsn", "a"], ["--dsn", "a", "--dsn", "b", "--source", "c"]):
        done = invoke("verify", *args)
        assert done.returncode == 2, done.stderr
        assert "give two or more --dsn" in done.stderr


def test_a_database_named_twice_is_judged_once() -> None:
    from dataclasses import replace

    nodes = {name: replace(n, identity=f"sys/{n.number}") for name, n in star().items()}
    again = replace(nodes["nova"], database="nova by another dsn")
    checks = judge_graph([*nodes.values(), again])
    assert bad(checks) == []
    assert "nova by another dsn" not in {c.database for c in checks}
