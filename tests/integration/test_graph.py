"""status and doctor on two-way topologies (issue 13): a star of three databases and a mesh of
three, healthy, then broken for real (a dropped subscription, an overlapping link, two nodes with
one number), read through the library and the CLI's JSON and exit codes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from agentchat import _db, replication, topology
from agentchat.ops import doctor, graph, verify
from agentchat.ops.judge import Check, Verdict
from agentchat.ops.report import Report, status
from agentchat.replication.links import Link
from agentchat.server import Cluster
from tests import helpers
from tests.helpers import execute, invoke

pytestmark = pytest.mark.slow


@pytest.fixture
def third_db(hub: Cluster, hub_template: str) -> Iterator[str]:
    """A third installed database on the hub cluster."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    helpers.create_database(hub, name, hub_template)
    yield hub.conninfo(name)
    helpers.drop_database(hub, name)


def number(dsn: str) -> int:
    [(value,)] = execute(dsn, "SELECT value FROM agentchat_settings WHERE key = 'node'")
    return int(value)


@pytest.fixture
def star(installed_db: str, installed_db2: str, third_db: str) -> list[str]:
    """A hub and two spokes, linked both ways (agentchat replicate add)."""
    for spoke in (installed_db2, third_db):
        replication.join(installed_db, spoke, timeout=60)
    return [installed_db, installed_db2, third_db]


@pytest.fixture
def mesh3(installed_db: str, installed_db2: str, third_db: str) -> list[str]:
    dsns = [installed_db, installed_db2, third_db]
    replication.mesh(dsns, timeout=60)
    return dsns


def graph_checks(report: Report) -> list[Check]:
    names = {"node_number", "link", "link_name", "link_filter", "link_origin", "loop"}
    return [c for c in report.checks if c.check in names | {"registry", "delivery"}]


def failing(checks: list[Check]) -> list[tuple[str, str | None, Verdict]]:
    return sorted((c.check, c.subject, c.verdict) for c in checks if not c.ok)


def cli(*args: str) -> tuple[int, Any]:
    done = invoke(*args, "--format", "json")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def dsn_args(dsns: list[str]) -> list[str]:
    return [arg for d in dsns for arg in ("--dsn", d)]


def drop_subscription(dsn: str, name: str) -> None:
    ident = sql.Identifier(name).as_string(None)
    for step in (f"ALTER SUBSCRIPTION {ident} DISABLE",
                 f"ALTER SUBSCRIPTION {ident} SET (slot_name = NONE)",
                 f"DROP SUBSCRIPTION {ident}"):  # fmt: skip
        execute(dsn, step)


def extra_link(hub: Cluster, sender: str, receiver: str, carries: frozenset[int]) -> str:
    """A link made by hand from *sender* to *receiver* (one cluster: the slot first), carrying
    the rows of *carries*; its name."""
    name = f"agent_chat_{number(sender)}_to_{number(receiver)}"
    chat = Link("x", "y", carries, down=False).row_filter().as_string(None)
    execute(sender, f"CREATE PUBLICATION {name} FOR TABLE public.agent_chat WHERE {chat}")
    slot = f"{name}_{helpers.dbname(receiver)}"
    execute(sender, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    execute(
        receiver,
        f"CREATE SUBSCRIPTION {name} CONNECTION '{hub.conninfo(helpers.dbname(sender))}'"
        f" PUBLICATION {name} WITH (create_slot = false, slot_name = '{slot}',"
        " copy_data = false, origin = any)",
    )
    return name


# -- healthy -----------------------------------------------------------------------------------


def test_a_healthy_star_is_ok_with_every_link_named(star: list[str]) -> None:
    hub, near, far = star
    report = status(star)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]
    checks = graph_checks(report)
    h, n, f = number(hub), number(near), number(far)
    links = sorted(c.subject or "" for c in checks if c.check == "link")
    assert links == sorted(f"agent_chat_{x}_to_{y}" for x, y in [(h, n), (n, h), (h, f), (f, h)])
    delivery = [c for c in checks if c.check == "delivery"]
    assert len(delivery) == 3 and all("once each" in c.detail for c in delivery)
    assert report.graph is not None
    assert {g.node for g in report.graph} == {h, n, f}
    assert doctor.diagnose(star).verdict is Verdict.OK
    twice = status([*star, f"{hub} application_name=again"])  # one database, two DSNs
    assert twice.verdict is Verdict.OK, [c for c in twice.checks if not c.ok]

    code, data = cli("status", *dsn_args(star))
    assert code == 0
    assert {c["check"] for c in data["checks"]} >= {"link", "delivery", "node_number"}
    [spoke] = [g for g in data["graph"] if g["node"] == n]
    [(pub)] = spoke["publications"]
    assert pub["name"] == f"agent_chat_{n}_to_{h}"
    assert pub["carries"] == {"direction": "up", "nodes": [n]}


def test_the_filters_the_server_shows_parse_back_to_agentchats_links(star: list[str]) -> None:
    """What pg_publication_tables.rowfilter says, on this server version, is what was planned."""
    hub, near, far = star
    report = status(star)
    assert report.graph is not None
    carries = {p.name: p.carry for g in report.graph for p in g.publications}
    h, n, f = number(hub), number(near), number(far)
    assert carries == {
        f"agent_chat_{h}_to_{n}": graph.Carry(frozenset({n}), down=True),
        f"agent_chat_{h}_to_{f}": graph.Carry(frozenset({f}), down=True),
        f"agent_chat_{n}_to_{h}": graph.Carry(frozenset({n}), down=False),
        f"agent_chat_{f}_to_{h}": graph.Carry(frozenset({f}), down=False),
    }


def test_a_healthy_mesh_delivers_once_and_a_dropped_subscription_is_a_missing_link(
    mesh3: list[str],
) -> None:
    report = status(mesh3)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]
    assert len([c for c in report.checks if c.check == "link"]) == 6
    a, b, _ = mesh3
    name = f"agent_chat_{number(a)}_to_{number(b)}"
    drop_subscription(b, name)
    report = status(mesh3)
    assert failing(graph_checks(report)) == [("link", name, Verdict.BROKEN)]
    [missing] = [c for c in report.checks if c.check == "link" and not c.ok]
    assert missing.detail.startswith("missing link: ")
    code, data = cli("doctor", *dsn_args(mesh3))
    assert code == 2
    assert any(c["check"] == "link" and c["verdict"] == "broken" for c in data["checks"])
    [fix] = [c["fix"] for c in data["checks"] if c["check"] == "link" and c["verdict"] != "ok"]
    [(slot,)] = execute(
        a,
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s AND NOT active",
        (f"{name}_%",),
    )
    assert f"SELECT pg_drop_replication_slot('{slot}');" in str(fix)
    execute(a, "SELECT pg_drop_replication_slot(%s)", (slot,))  # the fix, step by step
    execute(a, f"DROP PUBLICATION {name}")
    replication.leave(b)
    replication.mesh(mesh3, timeout=60)
    report = status(mesh3)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]


# -- broken ------------------------------------------------------------------------------------


def test_a_dropped_subscription_in_a_star_is_a_missing_link(star: list[str]) -> None:
    hub, near, _ = star
    name = f"agent_chat_{number(hub)}_to_{number(near)}"
    drop_subscription(near, name)
    report = status(star)
    assert failing(graph_checks(report)) == [("link", name, Verdict.BROKEN)]
    assert report.verdict is Verdict.BROKEN
    code, data = cli("status", *dsn_args(star))
    assert code == 2
    [check] = [c for c in data["checks"] if c["check"] == "link" and c["verdict"] != "ok"]
    assert check["subject"] == name
    assert check["fix"]
    [(slot,)] = execute(
        hub, "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s", (f"{name}_%",)
    )
    assert f"pg_drop_replication_slot('{slot}')" in check["fix"]
    execute(hub, "SELECT pg_drop_replication_slot(%s)", (slot,))  # the fix, step by step
    execute(hub, f"DROP PUBLICATION {name}")
    replication.leave(near)
    replication.join(hub, near, timeout=60)
    report = status(star)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]


def test_a_dropped_publication_is_a_missing_link_on_its_sender(star: list[str]) -> None:
    hub, near, _ = star
    name = f"agent_chat_{number(near)}_to_{number(hub)}"
    execute(near, f"DROP PUBLICATION {name}")
    report = status(star)
    assert ("link", name, Verdict.BROKEN) in failing(graph_checks(report))
    [missing] = [c for c in report.checks if c.check == "link" and not c.ok]
    assert missing.database == report.databases[1].name
    assert missing.fix and f"DROP SUBSCRIPTION {name};" in missing.fix
    execute(hub, f"DROP SUBSCRIPTION {name}")  # the fix, step by step
    replication.leave(near)
    replication.join(hub, near, timeout=60)
    report = status(star)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]


def test_an_overlapping_link_is_a_loop_naming_the_node(star: list[str], hub: Cluster) -> None:
    """far -> near directly, carrying far's rows: near gets them from the hub too."""
    _, near, far = star
    name = extra_link(hub, far, near, frozenset({number(far)}))
    report = status(star)
    loops = [c for c in report.checks if c.check == "loop"]
    assert [(c.database, c.verdict) for c in loops] == [(report.databases[1].name, Verdict.BROKEN)]
    assert f"both carry the rows of node {number(far)}" in loops[0].detail
    assert name in loops[0].detail
    assert loops[0].fix and loops[0].fix.startswith(f"{name} joins two nodes the registry")
    code, data = cli("doctor", *dsn_args(star))
    assert code == 2
    assert any(c["check"] == "loop" for c in data["checks"])
    execute(near, f"DROP SUBSCRIPTION {name}")  # the fix (the subscription drops its slot)
    execute(far, f"DROP PUBLICATION {name}")
    report = status(star)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]


def test_two_nodes_with_one_number_collide(star: list[str]) -> None:
    _, near, far = star
    was = number(far)
    execute(
        far, "UPDATE agentchat_settings SET value = %s WHERE key = 'node'", (str(number(near)),)
    )
    report = status(star)
    collisions = [c for c in report.checks if c.check == "node_number" and not c.ok]
    assert {c.database for c in collisions} == {report.databases[1].name, report.databases[2].name}
    assert all(c.verdict is Verdict.BROKEN and c.fix for c in collisions)
    code, data = cli("status", *dsn_args(star))
    assert code == 2
    assert (
        sum(c["check"] == "node_number" and c["verdict"] == "broken" for c in data["checks"]) == 2
    )
    [fix] = [c.fix for c in collisions if c.database == report.databases[2].name]
    back = f"UPDATE agentchat_settings SET value = '{was}' WHERE key = 'node';"  # noqa: S608
    assert fix and back in fix
    execute(far, back)  # the fix
    report = status(star)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]


def test_a_one_way_topology_has_no_graph(installed_db: str, installed_db2: str) -> None:
    replication.add(installed_db, installed_db2, timeout=60)
    report = status([installed_db, installed_db2])
    assert report.graph is None
    assert "graph" not in report.as_dict()
    assert not graph_checks(report)


def test_verify_sends_a_probe_from_every_node_of_a_star(star: list[str]) -> None:
    results = verify.verify_links(star, timeout=20)
    assert [(r.source, r.target) for r in results] == [
        (verify_name(w), verify_name(t)) for w in star for t in star if t != w
    ]
    for r in results:
        assert r.ok, r
        assert r.notifications == 1 and r.embedding_rows == 1 and r.cleaned_up
    for dsn in star:
        assert execute(
            dsn, "SELECT count(*) FROM agent_chat WHERE channel = 'agentchat-verify'"
        ) == [(0,)]
    done = invoke("verify", *dsn_args(star))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.splitlines()) == 6
    assert all(line.endswith("[ok]") and " -> " in line for line in done.stdout.splitlines())


def test_verify_of_a_broken_star_names_the_pairs_that_fail(star: list[str]) -> None:
    hub, near, far = star
    drop_subscription(near, f"agent_chat_{number(hub)}_to_{number(near)}")
    code, data = cli("verify", "--timeout", "3", *dsn_args(star))
    assert code == 1
    failed = sorted((r["source"], r["target"]) for r in data if not r["ok"])
    assert failed == sorted(
        [(verify_name(hub), verify_name(near)), (verify_name(far), verify_name(near))]
    )


def verify_name(dsn: str) -> str:
    return _db.describe(_db.make_conninfo(dsn))


def test_a_relay_tree_is_ok_and_each_node_gets_every_other_nodes_rows_once(
    installed_db: str, installed_db2: str, third_db: str
) -> None:
    """hub <- relay <- leaf: the leaf joins below the relay, not the hub."""
    hub, relay, leaf = installed_db, installed_db2, third_db
    replication.join(hub, relay, timeout=60)
    replication.join(relay, leaf, timeout=60)
    report = status([hub, relay, leaf])
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]
    h, r, f = number(hub), number(relay), number(leaf)
    assert report.graph is not None
    carries = {p.name: p.carry for g in report.graph for p in g.publications}
    assert carries[f"agent_chat_{h}_to_{r}"] == graph.Carry(frozenset({r, f}), down=True)
    assert carries[f"agent_chat_{r}_to_{h}"] == graph.Carry(frozenset({r, f}), down=False)
    assert carries[f"agent_chat_{r}_to_{f}"] == graph.Carry(frozenset({f}), down=True)
    delivery = {c.subject: c.detail for c in report.checks if c.check == "delivery"}
    assert delivery[str(f)] == f"the rows of nodes {min(h, r)}, {max(h, r)} arrive here once each"


def test_a_link_that_carries_its_receivers_rows_back_is_a_loop(star: list[str]) -> None:
    hub, near, _ = star
    name = f"agent_chat_{number(hub)}_to_{number(near)}"
    execute(hub, f"ALTER PUBLICATION {name} SET TABLE public.agent_chat")  # no filter
    report = status(star)
    [loop] = [c for c in report.checks if c.check == "loop"]
    assert loop.verdict is Verdict.BROKEN and loop.subject == name
    assert f"carries this node's own rows (node {number(near)}) back to it" in loop.detail
    assert failing(graph_checks(report)) == [("loop", name, Verdict.BROKEN)]
    replication.join(hub, near, timeout=60)  # the fix: add writes the filters again
    report = status(star)
    assert report.verdict is Verdict.OK, [c for c in report.checks if not c.ok]


def test_a_registered_node_that_no_link_joins(star: list[str]) -> None:
    hub = star[0]
    execute(
        hub,
        "INSERT INTO agentchat_nodes (node, name, parent) VALUES (1000, 'gone_memory', %s)",
        (number(hub),),
    )
    report = status(star)
    assert failing(graph_checks(report)) == [("registry", "1000", Verdict.BROKEN)]
    [row] = [c for c in report.checks if c.check == "registry"]
    assert "node 1000 (gone_memory), a child of node" in row.detail
    assert row.fix and "DELETE FROM agentchat_nodes WHERE node = 1000;" in row.fix


def test_verify_reads_a_mesh_from_the_topology_file(
    installed_db: str, installed_db2: str, third_db: str, tmp_path: Path
) -> None:
    file = topology.Topology(tmp_path / "mesh.toml")
    dsns = [installed_db, installed_db2, third_db]
    replication.mesh(dsns, timeout=60, topology=file)
    code, data = cli("verify", "--config", str(file.path))
    assert code == 0, data
    assert len(data) == 6 and all(r["ok"] and r["notifications"] == 1 for r in data)
    code, data = cli("status", "--config", str(file.path))
    assert code == 0, data
    assert sum(c["check"] == "link" for c in data["checks"]) == 6


def test_a_role_that_cannot_read_agentchats_tables_still_sees_the_links(
    star: list[str], hub: Cluster
) -> None:
    """No privilege on agentchat_settings or agentchat_nodes: the numbers come from the links'
    names, the registry is left out, and the links are judged all the same."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    execute(star[0], f"CREATE ROLE {role} LOGIN")
    for dsn in star:  # what status reads of every database (the schema version, the chat)
        execute(dsn, f"GRANT SELECT ON agentchat_migrations, memory_embeddings TO {role}")
    try:
        as_reader = [f"{dsn} user={role}" for dsn in star]
        report = status(as_reader)
        assert report.graph is not None
        assert all(g.number is None and not g.registry for g in report.graph)
        checks = graph_checks(report)
        assert failing(checks) == []
        assert len([c for c in checks if c.check == "link"]) == 4
        assert len([c for c in checks if c.check == "delivery"]) == 3
    finally:
        for dsn in star:
            execute(dsn, f"DROP OWNED BY {role}")
        execute(star[0], f"DROP ROLE {role}")
