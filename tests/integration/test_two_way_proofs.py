"""Issue 13's proofs on real clusters: every agent writes to its own database, and two-way
replication carries every message to every database exactly once.

Two servers: the suite's ``hub`` cluster (Unix socket, trust) and ``remote`` (another superuser,
``agentadmin``, reached over TCP with a password, like another machine). The proofs:

1. a hub and three spokes on the two servers, an agent on each spoke with only its own
   database's DSN: 1,000 messages with replies, the same set everywhere, exactly once, and each
   database keeps only its own agents' marks (marks are never replicated);
2. the hub's server stopped for 30 s mid-stream: the spokes keep accepting writes and deliver
   locally, and once it is back everything converges, exactly once;
3. a fourth spoke joins while a writer is sending, and receives the whole history once;
4. a 3-node mesh, and a 3-level relay tree (legacy rows go down only);
5. embeddings: each node embeds what was written on it, every node ends with one per message;
6. a one-way deployment made two-way in place (``replicate add``, and ``replicate remove`` then
   ``add``) keeps every message and id;
7. the refusals: a node joining itself, a node number that collides with written messages.

Convergence is waited for (``helpers.wait_for``); the only fixed wait is the hub's outage (30 s
on the run's newest server version, 5 s on an older one: the same proof, a minute less).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from agentchat import Agent, messaging, replication
from agentchat.embeddings import OpenAIEmbedder, Worker
from agentchat.messaging import Message
from agentchat.replication.links import EPOCH_MS, node_of
from agentchat.server import Cluster
from tests import helpers
from tests.conftest import VERSIONS
from tests.embedding_stub import serve
from tests.faults.harness import AgentThread, Writer, addressed
from tests.helpers import execute, wait_for
from tests.two_way_harness import (
    Burst,
    Databases,
    converged,
    count,
    dangling_replies,
    duplicates,
    errors_of,
    ids,
    node_setting,
    published_tables,
    replies,
    set_node_by_hand,
    subscriptions,
)

pytestmark = pytest.mark.slow

#: how long a topology may take to converge after the last write (2 cores, both versions)
CONVERGE = 120
#: the hub's outage the issue asks for, on the newest server version of the run; on an older
#: one, the same proof with a shorter outage (the suite's time: two minutes of it would be sleep)
OUTAGE = 30.0
SHORT_OUTAGE = 5.0
#: 2**52: below it, an id is a legacy row (node 0), written before two-way replication
LEGACY_LIMIT = 1 << 52


@pytest.fixture
def dbs(
    cluster_root: Path, pg_version: int, hub_template: str, remote_template: str
) -> Iterator[Databases]:
    made = Databases(cluster_root, pg_version)
    try:
        yield made
    finally:
        made.drop()


def log_sizes(*clusters: Cluster) -> dict[Cluster, int]:
    return {c: c.log.stat().st_size for c in clusters}


def assert_no_duplicate_key(logs: dict[Cluster, int]) -> None:
    for cluster, start in logs.items():
        tail = cluster.log_tail(100000, since=start)
        assert "duplicate key" not in tail, tail


#: what a subscriber's server logs when its publisher goes away (and nothing else may be there)
LOST_PUBLISHER = (
    "could not connect to the publisher",
    "could not send end-of-streaming message",
    "could not receive data from WAL stream",
)


def assert_sound(dsns: list[str], *, errors: bool = True) -> None:
    """Each database: nothing stored twice, every reply's reply_to there, no apply or sync
    error (*errors*: checked), no publication carrying agent_chat_processed (marks stay
    local)."""
    for dsn in dsns:
        assert duplicates(dsn) == [], helpers.dbname(dsn)
        assert dangling_replies(dsn) == [], helpers.dbname(dsn)
        if errors:
            assert errors_of(dsn) == [], helpers.dbname(dsn)
        assert "agent_chat_processed" not in published_tables(dsn)


def marked(dsn: str, agent: str | None = None) -> list[tuple[int, str, str]]:
    return helpers.marks(dsn, agent)


def own_database_only(agent: Agent, dsn: str) -> None:
    """The agent listens and sends on *dsn*'s database, and on nothing else: no source is
    recorded there for it to send to."""
    wanted = psycopg.conninfo.conninfo_to_dict(dsn)
    sends = psycopg.conninfo.conninfo_to_dict(agent.send_conninfo)
    assert agent.sends_locally
    assert (sends["dbname"], str(sends["port"])) == (wanted["dbname"], str(wanted["port"]))
    recorded = "SELECT value FROM agentchat_settings WHERE key = 'source_conninfo'"
    assert execute(dsn, recorded) == []


def unix_ms(message_id: int) -> int:
    """When a new-style id was made (its top 41 bits), in ms since 1970."""
    return (message_id >> 22) + EPOCH_MS


def reply_on(dsn: str, sender: str, to_id: int) -> int:
    """A reply to message *to_id*, written on *dsn*'s database."""
    return messaging.send(dsn, sender=sender, message=f"re {to_id}", reply_to=to_id)


def reply_with_id(msg: Message) -> str:
    return f"re {msg.id}"


def hears(agent: AgentThread, writer: Writer, after: int = 0) -> Callable[[], bool]:
    """Whether *agent* was handed a message *writer* sent after its first *after* ones."""
    return lambda: bool(set(agent.seen) & set(writer.confirmed[after:]))


def in_turn(names: list[str]) -> Callable[[int], list[str]]:
    """Message *n* addressed to one of *names*, in turn."""
    return lambda n: [names[n % len(names)]]


def holds(dsn: str, message_id: int) -> Callable[[], bool]:
    return lambda: message_id in ids(dsn)


def reaches(writer: Writer, dsn: str, after: int = 0) -> Callable[[], bool]:
    """Whether a message *writer* sent after its first *after* ones is in *dsn*'s database."""
    return lambda: bool(set(writer.confirmed[after:]) & ids(dsn))


# -- 1. a hub and three spokes on two servers -----------------------------------------------

AGENTS = ("nova", "sage", "echo")
PER_WRITER = 125  # four writers: 500 messages, each answered once: 1,000


@pytest.mark.volume
def test_a_hub_and_three_spokes_on_two_servers_carry_1000_messages_exactly_once(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    logs = log_sizes(hub, remote)
    center = dbs.new(hub)
    homes = {  # each agent's own database: one beside the hub, two on the other server
        "nova": dbs.new(hub),
        "sage": dbs.new(remote, tcp=True),
        "echo": dbs.new(remote, tcp=True),
    }
    for home in homes.values():
        replication.join(center, home, timeout=60)
    everywhere = [center, *homes.values()]
    numbers = {dsn: node_setting(dsn) for dsn in everywhere}
    assert len(set(numbers.values())) == 4, numbers
    for dsn in homes.values():
        assert len(subscriptions(dsn)) == 1  # its link from the hub, nothing else
    assert len(subscriptions(center)) == 3

    agents = {name: AgentThread(name, dsn, reply=reply_with_id) for name, dsn in homes.items()}
    for name, thread in agents.items():
        own_database_only(thread.agent, homes[name])
        thread.start()
    for name in ("sage", "echo"):  # over TCP to the other server, its password in a passfile
        params = psycopg.conninfo.conninfo_to_dict(homes[name])
        assert (params["host"], params["port"]) == ("127.0.0.1", str(remote.port))
        assert params["user"] == "agentadmin" and "password" not in params
    writers = [  # on every node, each message to one agent on another spoke, in turn
        Burst(dsn, f"w-{where}", PER_WRITER, in_turn([a for a in AGENTS if a != where])).start()
        for where, dsn in {"hub": center, **homes}.items()
    ]
    sent = {w.sender: w.join() for w in writers}
    try:
        wait_for(lambda: converged(everywhere, 1000), timeout=CONVERGE, what="1,000 everywhere")
    finally:
        for thread in agents.values():
            thread.stop()

    assert_sound(everywhere)
    assert_no_duplicate_key(logs)
    every = ids(center)
    for writer, made in sent.items():  # written where the writer was: that node's number
        home = center if writer == "w-hub" else homes[writer[2:]]
        assert {node_of(i) for i in made} == {numbers[home]}
    answered = replies(center)
    assert len(answered) == 500 and set(answered.values()) == {i for s in sent.values() for i in s}
    expected = addressed(center)
    for name, thread in agents.items():
        home = homes[name]
        mine = expected(name)
        assert len(mine) in range(150, 190), (name, len(mine))
        # handed exactly what was addressed to it, once, and recorded on its own database
        assert sorted(thread.seen) == sorted(mine) and thread.duplicates == 0
        assert marked(home) == [(i, name, "responded") for i in sorted(mine)]
        # its replies were written on its own database (they carry its node number)
        own_replies = [r for r, m in answered.items() if m in mine]
        assert {node_of(r) for r in own_replies} == {numbers[home]}
    assert marked(center) == []  # marks stay local: nobody listens on the hub
    assert every == ids(homes["nova"]) == ids(homes["sage"]) == ids(homes["echo"])


# -- 2. the hub stopped for 30 s -------------------------------------------------------------


def test_the_hub_down_for_30_s_spokes_keep_delivering_locally_then_all_converge_once(
    dbs: Databases, hub: Cluster, remote: Cluster, pg_version: int
) -> None:
    outage = OUTAGE if pg_version == max(VERSIONS) else SHORT_OUTAGE
    own = dbs.cluster("hub-down")  # the hub's own server: stopped while the spokes' run on
    center = dbs.new(own, template=None)
    homes = {"nova": dbs.new(hub), "sage": dbs.new(remote, tcp=True)}
    for home in homes.values():
        replication.join(center, home, timeout=60)
    everywhere = [center, *homes.values()]
    agents = {name: AgentThread(name, dsn, reply=reply_with_id) for name, dsn in homes.items()}
    for thread in agents.values():
        thread.start()
    # a writer on each spoke, addressing the agent beside it and the one on the other spoke
    writers = {
        name: Writer(dsn, f"w-{name}", lambda n: [AGENTS[n % 2]], pause=0.1).start()
        for name, dsn in homes.items()
    }
    pairs = (("nova", "sage"), ("sage", "nova"))
    try:
        for name, other in pairs:
            wait_for(hears(agents[name], writers[other]), timeout=CONVERGE,
                     what=f"{name} hearing the other spoke's writer")  # fmt: skip

        logs = log_sizes(hub, remote, own)
        assert own.stop()
        stopped, down_since = time.monotonic(), time.time()

        def written_while_down(writer: Writer) -> set[int]:  # the time is in the id
            return {i for i in writer.confirmed if unix_ms(i) > down_since * 1000}

        def delivered_while_down(name: str) -> bool:  # locally: the writer beside it
            return bool(set(agents[name].seen) & written_while_down(writers[name]))

        for name in homes:
            wait_for(functools.partial(delivered_while_down, name), timeout=OUTAGE,
                     what=f"{name} delivering while the hub is down")  # fmt: skip
        time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
        during = {name: written_while_down(w) for name, w in writers.items()}
        assert all(len(d) >= outage for d in during.values()), {
            n: len(d) for n, d in during.items()
        }
        for name, other in pairs:
            # written on one spoke while the hub was down: not on the other (it had no way)
            assert not during[other] & ids(homes[name])
            handled = during[name] & set(agents[name].seen)
            assert handled, f"{name} delivered nothing of its own spoke's outage writes"
            assert handled <= set(replies(homes[name]).values())  # and answered, locally
        own.start()
        back = {name: len(w.confirmed) for name, w in writers.items()}
        for name, other in pairs:
            wait_for(hears(agents[name], writers[other], back[other]), timeout=CONVERGE,
                     what=f"{name} hearing the other spoke again")  # fmt: skip
    finally:
        for writer in writers.values():
            writer.stop()
    assert all(w.failures == 0 for w in writers.values())  # the spokes never refused a write

    def settled() -> bool:
        sets = [ids(d) for d in everywhere]
        if not all(s == sets[0] for s in sets):
            return False
        expected = addressed(center)
        return all({c for c, _, _ in marked(homes[name], name)} == expected(name) for name in homes)

    try:
        wait_for(settled, timeout=CONVERGE, what="convergence after the hub came back")
    finally:
        for thread in agents.values():
            thread.stop()
    # the spokes' apply workers lost their publisher once (PostgreSQL counts that as an apply
    # error) and could not connect while it was down; nothing else went wrong
    from_hub = f"agent_chat_{node_setting(center)}_to_"
    for dsn in homes.values():
        assert all(n.startswith(from_hub) and s == 0 for n, _, s in errors_of(dsn))
    assert errors_of(center) == []
    for cluster, start in logs.items():
        lines = cluster.log_tail(100000, since=start).splitlines()
        unexpected = [
            line for line in lines
            if " ERROR: " in line and not any(lost in line for lost in LOST_PUBLISHER)
        ]  # fmt: skip
        assert unexpected == []
    assert_sound(everywhere, errors=False)
    expected = addressed(center)
    for name, thread in agents.items():
        assert sorted(thread.seen) == sorted(expected(name)) and thread.duplicates == 0
        assert marked(homes[name]) == [(i, name, "responded") for i in sorted(expected(name))]
    assert marked(center) == []
    sent = {i for w in writers.values() for i in w.confirmed}
    assert sent <= ids(center) and len(replies(center)) == len(sent)


# -- 3. a fourth spoke joins a running topology ----------------------------------------------


def test_a_fourth_spoke_joins_while_a_writer_sends_and_receives_the_history_once(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    logs = log_sizes(hub, remote)
    center = dbs.new(hub)
    spokes = [dbs.new(hub), dbs.new(remote, tcp=True), dbs.new(remote, tcp=True)]
    for spoke in spokes:
        replication.join(center, spoke, timeout=60)
    history = [Burst(d, f"h{n}", 20, lambda i: ["*"]).start() for n, d in enumerate(spokes)]
    early = {i for b in history for i in b.join()}
    writers = [
        Writer(center, "w-hub", lambda n: ["*"], pause=0.01).start(),
        Writer(spokes[1], "w-far", lambda n: ["*"], pause=0.01).start(),
    ]
    try:
        wait_for(lambda: all(len(w.confirmed) > 20 for w in writers), what="the writers going")
        fourth = dbs.new(hub)
        replication.join(center, fourth, timeout=60)
        after = [len(w.confirmed) for w in writers]
        for writer, sent in zip(writers, after, strict=True):
            wait_for(reaches(writer, fourth, sent), timeout=CONVERGE,
                     what="the new spoke receiving what is sent after it joined")  # fmt: skip
    finally:
        for writer in writers:
            writer.stop()
    own = Burst(fourth, "w-fourth", 10, lambda i: ["*"]).start().join()
    want = early | {i for w in writers for i in w.confirmed} | set(own)
    everywhere = [center, *spokes, fourth]
    wait_for(lambda: converged(everywhere, len(want)), timeout=CONVERGE, what="convergence")
    assert ids(fourth) == want
    assert early <= ids(fourth)  # the whole history, copied once
    assert {node_of(i) for i in own} == {node_setting(fourth)}
    assert len({node_setting(d) for d in everywhere}) == 5
    assert_sound(everywhere)
    assert_no_duplicate_key(logs)


# -- 4. a mesh of three, and a tree of three levels ------------------------------------------


def _write_everywhere_and_reply(dsns: list[str], per_node: int) -> set[int]:
    """*per_node* messages written on each database at once, then on each a reply to a
    message written on the next one (once it has arrived): what was written."""
    bursts = [Burst(d, f"w{n}", per_node, lambda i: ["*"]).start() for n, d in enumerate(dsns)]
    written = [b.join() for b in bursts]
    for n, dsn in enumerate(dsns):
        theirs = written[(n + 1) % len(dsns)][0]
        wait_for(holds(dsn, theirs), timeout=CONVERGE, what="a message to answer")
        written[n].append(reply_on(dsn, f"w{n}", theirs))
    return {i for w in written for i in w}


def test_a_mesh_of_three_carries_every_message_to_every_node_once(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    members = [dbs.new(hub), dbs.new(hub), dbs.new(remote, tcp=True)]
    result = replication.mesh(members, timeout=60)
    assert len(result.links) == 6 and len(set(result.nodes.values())) == 3
    want = _write_everywhere_and_reply(members, 30)
    wait_for(lambda: converged(members, len(want)), timeout=CONVERGE, what="the mesh converging")
    assert ids(members[0]) == want
    by_node = {node_setting(d) for d in members}
    assert {node_of(i) for i in want} == by_node
    assert all(len(subscriptions(d)) == 2 for d in members)
    assert_sound(members)


def test_a_three_level_relay_tree_converges_and_legacy_rows_go_down_only(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    top, relay, leaf = dbs.new(hub), dbs.new(remote, tcp=True), dbs.new(hub)
    legacy = "INSERT INTO agent_chat (id, sender, message, mentions) VALUES (%s, %s, %s, '{*}')"
    for i in (1, 2, 3):  # history from before two-way replication: ids from the old sequence
        execute(top, legacy, (i, "old", f"legacy {i}"))
    replication.join(top, relay, timeout=60)
    replication.join(relay, leaf, timeout=60)  # hub <- relay <- leaf
    chain = [top, relay, leaf]
    assert len({node_setting(d) for d in chain}) == 3
    assert [len(subscriptions(d)) for d in chain] == [1, 2, 1]
    execute(top, legacy, (4, "old", "legacy 4, written on the hub after the join"))
    execute(relay, legacy, (5, "old", "legacy 5, written on the relay"))
    want = _write_everywhere_and_reply(chain, 30) | {1, 2, 3, 4}
    wait_for(lambda: ids(top) == want and ids(relay) == ids(leaf) == want | {5},
             timeout=CONVERGE, what="the tree converging")  # fmt: skip
    # the relay's legacy row went down to the leaf, and never up: the hub's own copy of what
    # the relay wrote after it (its replies) is there, and it is not
    assert ids(top) == want and 5 not in ids(top)
    assert {i for i in want if i < LEGACY_LIMIT} == {1, 2, 3, 4}
    assert_sound(chain)


# -- 5. embeddings ---------------------------------------------------------------------------


def test_each_node_embeds_what_was_written_on_it_and_every_node_has_one_per_message(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    center, near, far = dbs.new(hub), dbs.new(hub), dbs.new(remote, tcp=True)
    for spoke in (near, far):
        replication.join(center, spoke, timeout=60)
    everywhere = [center, near, far]
    bursts = [Burst(d, f"w{n}", 10, lambda i: ["*"]).start() for n, d in enumerate(everywhere)]
    written = {d: b.join() for d, b in zip(everywhere, bursts, strict=True)}
    wait_for(lambda: converged(everywhere, 30), timeout=CONVERGE, what="the messages")
    with serve() as stub:
        embedder = OpenAIEmbedder(stub.url, "stub-model", backoff=0.01, dimension=stub.dimension)
        done = {d: Worker(d, embedder).run(once=True).embedded for d in everywhere}
        embedded = "SELECT count(*) FROM memory_embeddings WHERE embedding IS NOT NULL"
        wait_for(lambda: all(count(d, embedded) == 30 for d in everywhere),
                 timeout=CONVERGE, what="every embedding everywhere")  # fmt: skip
        texts = dict(stub.embedded)
    texts.pop("dimension probe", None)  # a worker may ask the endpoint its dimension
    assert done == {d: 10 for d in everywhere}  # each node embedded its own ten
    assert len(texts) == 30 and set(texts.values()) == {1}  # never twice
    per_message = "SELECT source_id, count(*) FROM memory_embeddings GROUP BY 1 ORDER BY 1"
    every = sorted(i for w in written.values() for i in w)
    vectors = "SELECT source_id, embedding::text, model FROM memory_embeddings ORDER BY 1"
    for dsn in everywhere:
        assert execute(dsn, per_message) == [(i, 1) for i in every]
        assert execute(dsn, vectors) == execute(center, vectors)
    assert_sound(everywhere)


# -- 6. a one-way deployment made two-way in place -------------------------------------------


def _one_way_deployment(dbs: Databases, hub: Cluster, remote: Cluster) -> tuple[str, str]:
    """A source with legacy history and new messages, and a one-way replica of it on the
    other server holding all of them (what issue 13 finds deployed)."""
    source, replica = dbs.new(hub), dbs.new(remote, tcp=True)
    legacy = "INSERT INTO agent_chat (id, sender, message, mentions) VALUES (%s, %s, %s, '{*}')"
    for i in (1, 2, 3):
        execute(source, legacy, (i, "old", f"legacy {i}"))
    execute(source, "SELECT send_agent_message('nova', 'before the replica', ARRAY['*'])")
    replication.add(source, replica, timeout=60)
    execute(source, "SELECT send_agent_message('nova', 'after the replica', ARRAY['*'])")
    wait_for(lambda: converged([source, replica], 5), what="the one-way replica")
    return source, replica


ROWS = "SELECT id, sender, message, reply_to, created_at FROM agent_chat ORDER BY id"


def _two_way_now(source: str, replica: str, held: list[tuple[object, ...]]) -> None:
    """Every row the replica held is there, unchanged, once; and both now write and hear."""
    assert execute(replica, ROWS) == held == execute(source, ROWS)
    theirs = reply_on(source, "nova", int(str(held[-1][0])))
    # a reply names a message its database holds: wait for the source's to come down
    wait_for(lambda: theirs in ids(replica), what="the source's reply on the replica")
    mine = reply_on(replica, "sage", theirs)  # written on the former replica
    wait_for(lambda: converged([source, replica], len(held) + 2), what="both ways")
    assert node_of(mine) == node_setting(replica) != node_setting(source)
    assert_sound([source, replica])


def test_a_one_way_replica_made_two_way_by_replicate_add_keeps_every_message_and_id(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    source, replica = _one_way_deployment(dbs, hub, remote)
    held = execute(replica, ROWS)
    logs = log_sizes(hub, remote)
    done = helpers.invoke(
        "replicate", "add", "--source", source, "--target", replica, "--format", "json"
    )
    result = json.loads(helpers.ok(done))
    assert result["converted"] and result["converted"] not in subscriptions(replica)
    assert len(subscriptions(replica)) == len(subscriptions(source)) == 1  # the two links
    _two_way_now(source, replica, held)
    assert_no_duplicate_key(logs)  # the down link's copy skipped what the replica held


def test_a_one_way_replica_of_another_source_is_refused_then_removed_and_added(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    source, replica = _one_way_deployment(dbs, hub, remote)
    elsewhere = dbs.new(hub)
    refused = helpers.run_cli(
        "replicate", "add", "--source", elsewhere, "--target", replica, "--quiet"
    )
    helpers.one_line_error(refused, "one-way replica", 1)
    held = execute(replica, ROWS)
    helpers.ok(helpers.invoke("replicate", "remove", "--target", replica))
    assert subscriptions(replica) == []
    # a copy of the source would share its node number: the rows carrying it came from the
    # source, so the former replica counts as having written nothing and is renumbered
    set_node_by_hand(replica, node_setting(source))
    helpers.ok(helpers.invoke("replicate", "add", "--source", source, "--target", replica))
    _two_way_now(source, replica, held)


# -- 7. refusals -----------------------------------------------------------------------------


# PostgreSQL 15's refusal: there are no 15 binaries here, so the judgment is unit-tested
# (tests/unit/test_twoway.py::test_two_way_is_refused_before_postgresql_16_with_the_way_out).


def test_a_node_cannot_join_itself(dbs: Databases, hub: Cluster) -> None:
    alone = dbs.new(hub)
    refused = helpers.invoke("replicate", "add", "--source", alone, "--target", alone, "--quiet")
    helpers.one_line_error(refused, "cannot join itself", 2)
    assert subscriptions(alone) == [] and published_tables(alone) == set()


def test_a_node_whose_number_collides_and_has_written_under_it_is_refused(
    dbs: Databases, hub: Cluster, remote: Cluster
) -> None:
    first, second = dbs.new(hub), dbs.new(remote, tcp=True)
    for dsn in (first, second):  # by hand: both databases believe they are node 777
        set_node_by_hand(dsn, 777)
        for n in range(3):
            execute(dsn, "SELECT send_agent_message('nova', %s, ARRAY['*'])", (f"m{n}",))
    assert {node_of(i) for d in (first, second) for i in ids(d)} == {777}
    refused = helpers.invoke("replicate", "add", "--source", first, "--target", second, "--quiet")
    line = helpers.one_line_error(refused, "wrote 3 messages as node 777", 1)
    assert "collide" in line
    for dsn in (first, second):
        assert subscriptions(dsn) == [] and published_tables(dsn) == set()
        assert count(dsn) == 3
