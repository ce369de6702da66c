"""Two-way replication on real clusters: a star, a relay tree and a mesh (issue 13)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as _conninfo

from agentchat import Agent, errors, identity, replication
from agentchat.replication.links import node_of
from agentchat.server import Cluster
from tests import helpers

pytestmark = pytest.mark.slow


def _send(dsn: str, sender: str, text: str, to: list[str]) -> int:
    [(msg_id,)] = helpers.execute(
        dsn,
        "INSERT INTO agent_chat (sender, message, mentions) VALUES (%s, %s, %s) RETURNING id",
        (sender, text, to),
    )
    return int(msg_id)


def _ids(dsn: str) -> list[int]:
    return [r[0] for r in helpers.execute(dsn, "SELECT id FROM agent_chat ORDER BY id")]


def _converged(dsns: list[str], want: set[int]) -> bool:
    return all(set(_ids(d)) == want for d in dsns)


def test_a_star_carries_every_message_to_every_database_once(
    installed_db: str, installed_db2: str, installed_remote_db: str
) -> None:
    hub, near, far = installed_db, installed_db2, installed_remote_db
    first = replication.join(hub, near, timeout=60)
    second = replication.join(hub, far, timeout=60)
    numbers = {**first.nodes, **second.nodes}
    assert len(set(numbers.values())) == 3, numbers
    sent = {
        _send(d, name, f"hello from {name}", ["*"])
        for d, name in ((hub, "nova"), (near, "graybeard"), (far, "sage"))
    }
    helpers.wait_for(lambda: _converged([hub, near, far], sent), what="convergence")
    for dsn in (hub, near, far):
        errors = helpers.execute(
            dsn,
            "SELECT coalesce(sum(apply_error_count + sync_error_count), 0)"
            " FROM pg_stat_subscription_stats",
        )
        assert errors == [(0,)]
    assert {node_of(i) for i in sent} == set(numbers.values())


def test_a_one_way_replica_becomes_a_two_way_spoke_keeping_every_row(
    installed_db: str, installed_db2: str
) -> None:
    hub, spoke = installed_db, installed_db2
    before = {_send(hub, "nova", f"old {i}", ["graybeard"]) for i in range(5)}
    replication.add(hub, spoke, timeout=60)
    helpers.wait_for(lambda: set(_ids(spoke)) == before, what="the one-way copy")
    result = replication.join(hub, spoke, timeout=60)
    assert result.converted == "agent_chat_from_" + helpers.dbname(hub).removesuffix("_memory")
    assert replication.has_links(spoke)
    reply = _send(spoke, "graybeard", "written on the spoke", ["nova"])
    want = before | {reply}
    helpers.wait_for(lambda: _converged([hub, spoke], want), what="convergence")
    assert sorted(_ids(spoke)) == sorted(want)  # nothing twice
    subs = helpers.execute(
        spoke,
        "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid"
        " WHERE d.datname = current_database()",
    )
    assert [s[0] for s in subs] == [result.links[0]]  # the link, not the one-way subscription


def test_leaving_drops_the_links_on_both_sides_and_the_node_everywhere(
    installed_db: str, installed_db2: str, installed_remote_db: str
) -> None:
    hub, near, far = installed_db, installed_db2, installed_remote_db
    replication.join(hub, near, timeout=60)
    joined = replication.join(hub, far, timeout=60)
    far_number = list(joined.nodes.values())[1]  # the parent's first, then the child's
    helpers.wait_for(
        lambda: (
            far_number in [r[0] for r in helpers.execute(near, "SELECT node FROM agentchat_nodes")]
        ),
        what="the far node's registry row on the near spoke",
    )
    left = replication.leave(far)
    assert any(c.startswith("subscription ") for c in left.removed)
    assert not replication.has_links(far)

    def registered(dsn: str) -> list[int]:
        return [r[0] for r in helpers.execute(dsn, "SELECT node FROM agentchat_nodes")]

    helpers.wait_for(
        lambda: far_number not in registered(hub) + registered(near), what="the registry row gone"
    )
    pubs = helpers.execute(hub, "SELECT pubname FROM pg_publication ORDER BY 1")
    assert all(str(far_number) not in p[0].split("_") for p in pubs), pubs
    slots = helpers.execute(hub, "SELECT slot_name FROM pg_replication_slots")
    assert all(helpers.dbname(far) not in s[0] for s in slots), slots
    # the star still works without it
    msg = _send(near, "graybeard", "still here", ["nova"])
    helpers.wait_for(lambda: msg in _ids(hub), what="the near spoke's message at the hub")


def test_a_relay_passes_its_leafs_messages_up_and_the_hubs_down(
    installed_db: str, installed_db2: str, installed_remote_db: str
) -> None:
    hub, relay, leaf = installed_db, installed_db2, installed_remote_db
    replication.join(hub, relay, timeout=60)
    below = replication.join(relay, leaf, timeout=60)
    hub_number, relay_number = (
        helpers.execute(d, "SELECT value::int FROM agentchat_settings WHERE key = 'node'")[0][0]
        for d in (hub, relay)
    )
    assert below.widened == [f"agent_chat_{relay_number}_to_{hub_number}",
                             f"agent_chat_{hub_number}_to_{relay_number}"]  # fmt: skip
    sent = {_send(d, name, f"from {name}", ["*"]) for d, name in
            ((hub, "nova"), (relay, "graybeard"), (leaf, "sage"))}  # fmt: skip
    helpers.wait_for(lambda: _converged([hub, relay, leaf], sent), what="convergence")
    # the hub has no link to the leaf: the relay carried its message
    names = helpers.execute(hub, "SELECT pubname FROM pg_publication ORDER BY 1")
    assert [n[0] for n in names] == [f"agent_chat_{hub_number}_to_{relay_number}"]


def test_a_hub_with_spokes_cannot_leave(installed_db: str, installed_db2: str) -> None:
    replication.join(installed_db, installed_db2, timeout=60)
    with pytest.raises(errors.ReplicationError, match="is the hub of nodes"):
        replication.leave(installed_db)
    assert replication.has_links(installed_db2)


def test_a_mesh_grows_by_one_member_and_loses_one(
    installed_db: str, installed_db2: str, installed_remote_db: str
) -> None:
    a, b, c = installed_db, installed_db2, installed_remote_db
    replication.mesh([a, b], timeout=60)
    early = {_send(a, "nova", "before c", ["*"]), _send(b, "graybeard", "before c", ["*"])}
    helpers.wait_for(lambda: _converged([a, b], early), what="the pair")
    grown = replication.mesh([a, b, c], timeout=60)
    assert len(grown.links) == 6 and len(grown.created) > 0
    # a mesh carries each node's own rows: c receives a's and b's history through the copy
    helpers.wait_for(lambda: _converged([a, b, c], early), what="c's copy of the history")
    late = _send(c, "sage", "from c", ["*"])
    helpers.wait_for(lambda: _converged([a, b, c], early | {late}), what="c's message")
    replication.leave(b)
    assert not replication.has_links(b)
    last = _send(a, "nova", "after b left", ["*"])
    helpers.wait_for(lambda: last in _ids(c), what="a -> c without b")
    assert last not in _ids(b)


def _drop_subscription_by_hand(dsn: str, name: str) -> None:
    """What a failure or an operator can leave: one half of a link, its slot still there."""
    for statement in (f"ALTER SUBSCRIPTION {name} DISABLE",
                      f"ALTER SUBSCRIPTION {name} SET (slot_name = NONE)",
                      f"DROP SUBSCRIPTION {name}"):  # fmt: skip
        helpers.execute(dsn, statement)


def test_a_half_link_is_remade_by_running_mesh_again_and_removed_whole_by_leave(
    installed_db: str, installed_db2: str
) -> None:
    a, b = installed_db, installed_db2
    made = replication.mesh([a, b], timeout=60)
    na, nb = made.nodes.values()
    _drop_subscription_by_hand(b, f"agent_chat_{na}_to_{nb}")  # its slot stays on a's server
    again = replication.mesh([a, b], timeout=60)
    assert f"subscription agent_chat_{na}_to_{nb}" in again.created
    msg = _send(a, "nova", "after the repair", ["*"])
    helpers.wait_for(lambda: msg in _ids(b), what="the remade link")
    _drop_subscription_by_hand(a, f"agent_chat_{nb}_to_{na}")
    left = replication.leave(b)
    assert f"publication agent_chat_{nb}_to_{na}" in left.removed
    assert any(r.startswith(f"slot agent_chat_{nb}_to_{na}_") for r in left.removed)
    for dsn in (a, b):
        assert helpers.execute(dsn, "SELECT count(*) FROM pg_publication") == [(0,)]
    slots = helpers.execute(a, "SELECT slot_name FROM pg_replication_slots")
    assert not [
        s for s in slots if s[0].startswith(("agent_chat_" + str(na), "agent_chat_" + str(nb)))
    ]


def test_the_agent_registry_travels_the_links_and_leaves_with_its_node(
    installed_db: str,
    installed_db2: str,
    installed_remote_db: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    hub, near, far = installed_db, installed_db2, installed_remote_db
    replication.join(hub, near, timeout=60)
    replication.join(hub, far, timeout=60)
    identity.add(near, "graybeard", passfile=tmp_path / "pgpass")
    identity.add(far, "sage", passfile=tmp_path / "pgpass")
    # roles outlive a test's databases: each agent's role goes at the end (its registry row
    # and role go with identity.remove; the node that left keeps its own)
    request.addfinalizer(lambda: identity.remove(near, "graybeard", passfile=tmp_path / "pgpass"))
    request.addfinalizer(lambda: identity.remove(far, "sage", passfile=tmp_path / "pgpass"))

    def agents(dsn: str) -> list[tuple[str, int]]:
        return helpers.execute(dsn, "SELECT name, node FROM agentchat_agents ORDER BY name")

    helpers.wait_for(lambda: [a for a, _ in agents(hub)] == ["graybeard", "sage"], what="hub")
    helpers.wait_for(lambda: agents(near) == agents(far) == agents(hub), what="every spoke")
    replication.leave(far)
    helpers.wait_for(lambda: [a for a, _ in agents(near)] == ["graybeard"], what="sage gone")
    assert [a for a, _ in agents(far)] == ["sage"]  # the node that left keeps its own agents


def test_agents_on_two_servers_talk_as_themselves_through_the_hub(
    installed_db: str,
    installed_remote_db: str,
    remote: Cluster,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Issue 14's allowed path across replication: each agent's role exists where the agent
    lives, sends and records there with only its own rights, and its messages are trusted where
    they are replicated (the apply worker writes them)."""
    hub = installed_db
    spoke = remote.tcp_conninfo(helpers.dbname(installed_remote_db))  # password auth over TCP
    replication.join(hub, spoke, timeout=60)
    passfile = tmp_path / "pgpass"
    nova = identity.add(hub, "nova", passfile=passfile)
    request.addfinalizer(lambda: identity.remove(hub, "nova", passfile=passfile))
    sage = identity.add(spoke, "sage", passfile=passfile)
    request.addfinalizer(lambda: identity.remove(spoke, "sage", passfile=passfile))
    helpers.wait_for(
        lambda: helpers.execute(spoke, "SELECT count(*) FROM agentchat_agents") == [(2,)],
        what="both agents known on the spoke",
    )
    as_sage = _conninfo.make_conninfo(spoke, user=sage.entry.role, passfile=str(passfile))
    as_nova = _conninfo.make_conninfo(hub, user=nova.entry.role, passfile=str(passfile))
    with Agent("sage", as_sage) as agent:
        question = agent.send("is the backup green?", to=["nova"])
    helpers.wait_for(lambda: question in _ids(hub), what="sage's question at the hub")
    with Agent("nova", as_nova) as agent:
        handled = agent.run(lambda msg: "yes", idle_timeout=0)
    assert handled == 1
    [(answer, sender, reply_to)] = helpers.execute(
        hub, "SELECT id, sender, reply_to FROM agent_chat WHERE sender = 'nova'"
    )
    assert (sender, reply_to) == ("nova", question)
    helpers.wait_for(lambda: answer in _ids(spoke), what="nova's answer on the spoke")
    with Agent("sage", as_sage) as agent:
        heard = [m.id for m in agent.messages(idle_timeout=0)]
    assert heard == [answer]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot send as"):
        helpers.execute(as_sage, "SELECT send_agent_message('nova', 'forged', '{sage}')")
    assert helpers.execute(spoke, "SELECT count(*) FROM agent_chat_processed") == [(1,)]
    assert helpers.execute(hub, "SELECT agent FROM agent_chat_processed") == [("nova",)]
