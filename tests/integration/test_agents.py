"""Agents on real clusters: NOTIFY on a replica, crashes, restarts, many agents, pruning."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import psycopg
import pytest

from agentchat import errors, messaging, replication
from agentchat.agent import Agent
from agentchat.aio import AsyncAgent
from agentchat.messaging import Message
from agentchat.server import Cluster
from tests import helpers
from tests.helpers import execute, marks, wait_for


@dataclass
class Pair:
    source: str
    replica: str


@dataclass
class Topo:
    source: str
    local: str  # a replica in the source's cluster
    far: str  # a replica in another cluster ("another host")


@pytest.fixture
def near(installed_db: str, db2: str) -> Pair:
    """A source (a copy of the installed template) and a replica in its cluster, made by
    `add`."""
    replication.add(installed_db, db2, timeout=60)
    return Pair(installed_db, db2)


@pytest.fixture
def far(installed_db: str, remote_db: str) -> Pair:
    """A source (a copy of the installed template) and a replica in another cluster ("another
    host"), made by `add`."""
    replication.add(installed_db, remote_db, timeout=60)
    return Pair(installed_db, remote_db)


@pytest.fixture
def topo(near: Pair, far: Pair) -> Topo:
    """One source and both its replicas (a test that needs one replica asks for near or far)."""
    return Topo(near.source, near.replica, far.replica)


@dataclass
class Running:
    """An agent's run() in a thread, and what its handler saw."""

    agent: Agent
    seen: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None
    handled: int = 0

    def stop(self) -> None:
        self.agent.stop()
        assert self.thread is not None
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.agent.name} did not stop"
        self.agent.close()


def start(agent: Agent, reply: Callable[[Message], str | None] = lambda m: None) -> Running:
    running = Running(agent)

    def handler(msg: Message) -> str | None:
        running.seen.append(msg.id)
        return reply(msg)

    def loop() -> None:
        running.handled = agent.run(handler)

    running.thread = threading.Thread(target=loop, name=agent.name, daemon=True)
    running.thread.start()
    return running


def listening(conninfo: str, count: int = 1) -> bool:
    """Whether *count* sessions LISTEN on the database (their last statement says so)."""
    [(n,)] = execute(
        conninfo,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE '%%LISTEN agent_chat%%'",
    )
    return int(str(n)) >= count


def test_a_listener_on_a_replica_is_woken_by_notify(far: Pair) -> None:
    # a poll interval far beyond the test's wait: only a notification can deliver in time
    agent = Agent("graybeard", far.replica, send_dsn=far.source, poll_interval=300)
    running = start(agent, reply=lambda m: f"re: {m.message}")
    try:
        wait_for(lambda: listening(far.replica), what="the listener")
        sent = [
            messaging.send(far.source, sender="nova", message=f"m{i}", to=["graybeard"])
            for i in range(3)
        ]
        wait_for(lambda: len(marks(far.replica, "graybeard")) == 3, timeout=20, what="delivery")
    finally:
        running.stop()
    assert running.seen == sent
    assert marks(far.replica, "graybeard") == [(i, "graybeard", "responded") for i in sent]
    # the replies were posted at the source (a replica refuses local writes) and replicated back
    replies = (
        "SELECT reply_to, sender, mentions, message FROM agent_chat WHERE reply_to IS NOT NULL"
    )
    expected = sorted((i, "graybeard", ["nova"], f"re: m{n}") for n, i in enumerate(sent))
    assert sorted(execute(far.source, replies)) == expected
    wait_for(lambda: sorted(execute(far.replica, replies)) == expected, what="replies replicated")
    assert marks(far.source) == []  # marks stay where the agent listens


def test_a_listener_survives_an_immediate_restart_of_its_cluster(
    far: Pair, remote: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentchat.agent")
    running = start(Agent("graybeard", far.replica, send_dsn=far.source, poll_interval=0.5))
    sent: list[int] = []
    stop_writing = threading.Event()
    restarted = threading.Event()

    def writer() -> None:
        # one connection; a message every 50 ms until the cluster is back, then the rest at once
        with Agent("nova", far.source) as nova:
            while not stop_writing.is_set() and len(sent) < 150:
                sent.append(nova.send("x", to=["graybeard"]))
                if not restarted.is_set():
                    time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: len(marks(far.replica)) >= 10, what="the first deliveries")
        remote.restart(mode="immediate")
        during = len(sent)
        restarted.set()
        thread.join(60)
        assert 10 <= during < 150, f"{during} sent by the restart's end: not while writing"
        wait_for(lambda: len(marks(far.replica)) == len(sent), timeout=60, what="every message")
    finally:
        stop_writing.set()
        thread.join(10)
        running.stop()
    assert len(sent) == 150
    assert [m[0] for m in marks(far.replica)] == sorted(sent)  # each recorded once (primary key)
    assert set(running.seen) == set(sent)
    assert any("connection lost" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
@pytest.mark.volume
def test_five_agents_on_three_databases_exchange_a_thousand_messages(topo: Topo) -> None:
    homes = {
        "nova": topo.source, "atlas": topo.source,
        "graybeard": topo.local, "sage": topo.local,
        "echo": topo.far,
    }  # fmt: skip
    # the far replica's user is no user at the source's server: it sends with --send-dsn
    sends = {name: topo.source if dsn == topo.far else None for name, dsn in homes.items()}
    # answer every message that is not itself a reply (no ping-pong)
    agents = {
        name: start(
            Agent(name, dsn, send_dsn=sends[name], poll_interval=1),
            reply=lambda m: None if m.reply_to else f"re {m.id}",
        )
        for name, dsn in homes.items()
    }
    rng = random.Random(7)
    plan = [(rng.choice(list(homes)), i) for i in range(1000)]
    originals: dict[int, tuple[str, list[str]]] = {}

    def sender(name: str) -> None:
        me = Agent(name, homes[name], send_dsn=sends[name])
        with me:
            for who, i in plan:
                if who == name:
                    others = [n for n in homes if n != name]
                    to = rng.sample(others, k=1 + i % 2)
                    originals[me.send(f"message {i}", to=to)] = (name, to)

    threads = [threading.Thread(target=sender, args=(n,)) for n in homes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(originals) == 1000
    expected = {(msg_id, to) for msg_id, (_s, tos) in originals.items() for to in tos}

    def replies() -> list[tuple[object, ...]]:
        return execute(
            topo.source,
            "SELECT id, reply_to, sender, mentions FROM agent_chat WHERE reply_to IS NOT NULL",
        )

    try:
        wait_for(lambda: len(replies()) >= len(expected), timeout=180, what="every reply")
        # every reply reaches the original sender: one more delivery each
        total = 2 * len(expected)
        wait_for(
            lambda: sum(len(marks(d)) for d in (topo.source, topo.local, topo.far)) >= total,
            timeout=180,
            what="every delivery",
        )
    finally:
        for running in agents.values():
            running.stop()

    reply_rows = replies()
    by_reply = {(int(str(r[1])), str(r[2])) for r in reply_rows}
    assert len(reply_rows) == len(expected) and by_reply == expected  # one reply per delivery
    for r in reply_rows:
        mentions = cast("list[str]", r[3])
        assert list(mentions) == [originals[int(str(r[1]))][0]]  # to the original sender
    recorded = Counter(
        (chat_id, agent)
        for d in {topo.source, topo.local, topo.far}
        for chat_id, agent, _status in marks(d)
        if homes[agent] == d
    )
    wanted = expected | {(int(str(r[0])), originals[int(str(r[1]))][0]) for r in reply_rows}
    assert set(recorded) == wanted and set(recorded.values()) == {1}
    handled = Counter((m, name) for name, running in agents.items() for m in running.seen)
    assert set(handled) == wanted and set(handled.values()) == {1}  # no crash: once each


def test_two_listeners_of_one_agent_never_share_a_message(installed_db: str) -> None:
    db = installed_db
    first, second = (start(Agent("graybeard", db, poll_interval=0.2)) for _ in range(2))
    try:
        wait_for(lambda: listening(db, 2), what="both listeners")
        with Agent("nova", db) as nova:  # one connection: 200 messages in a burst
            sent = [nova.send("x", to=["*"]) for _ in range(200)]
        wait_for(lambda: len(marks(db)) == 200, what="every message")
    finally:
        first.stop()
        second.stop()
    assert sorted(first.seen + second.seen) == sent


def test_leaving_the_loop_early_redelivers_the_message(installed_db: str) -> None:
    db = installed_db
    sent = [messaging.send(db, sender="nova", message=f"m{i}", to=["graybeard"]) for i in range(3)]
    with Agent("graybeard", db) as agent:
        for msg in agent.messages(idle_timeout=0):
            msg.reply("handled, then the process died")
            break  # the mark and the reply roll back together
    assert marks(db) == []
    assert execute(db, "SELECT count(*) FROM agent_chat WHERE reply_to IS NOT NULL") == [(0,)]
    with Agent("graybeard", db) as agent:
        got = [m.id for m in agent.messages(idle_timeout=0)]
    assert got == sent
    assert [s for _i, _a, s in marks(db)] == ["routed"] * 3


def test_replies_at_the_source_are_not_posted_twice_on_redelivery(near: Pair) -> None:
    msg_id = messaging.send(near.source, sender="nova", message="question", to=["graybeard"])
    wait_for(lambda: execute(near.replica, "SELECT count(*) FROM agent_chat") == [(1,)])
    with Agent("graybeard", near.replica) as agent:
        assert not agent.sends_locally
        for msg in agent.messages(idle_timeout=0):
            msg.reply("one")
            msg.reply("two")
            break  # "crash": the replies are at the source, the mark rolled back
    with Agent("graybeard", near.replica) as agent:
        handled = agent.run(lambda m: (m.reply("one"), "two")[1], idle_timeout=0)
    assert handled == 1
    rows = execute(near.source, "SELECT message FROM agent_chat WHERE reply_to = %s ORDER BY id",
                   (msg_id,))  # fmt: skip
    assert rows == [("one",), ("two",)]
    assert marks(near.replica) == [(msg_id, "graybeard", "responded")]


def test_a_failing_handler_is_recorded_and_the_rest_proceed(installed_db: str) -> None:
    db = installed_db
    sent = [messaging.send(db, sender="nova", message=t, to=["graybeard"]) for t in "abc"]

    def handler(msg: Message) -> str | None:
        if msg.message == "b":
            raise ValueError("cannot handle b")
        return None

    with Agent("graybeard", db) as agent:
        assert agent.run(handler, idle_timeout=0) == 3
    assert marks(db) == [(sent[0], "graybeard", "routed"), (sent[1], "graybeard", "failed"),
                         (sent[2], "graybeard", "routed")]  # fmt: skip
    [(error,)] = execute(db, "SELECT error FROM agent_chat_processed WHERE status = 'failed'")
    assert error == "ValueError: cannot handle b"


def test_the_asyncio_agent(far: Pair) -> None:
    sent = [messaging.send(far.source, sender="nova", message=f"a{i}", to=["sage"])
            for i in range(4)]  # fmt: skip
    wait_for(lambda: execute(far.replica, "SELECT count(*) FROM agent_chat") == [(4,)])

    async def main() -> tuple[list[int], int]:
        got = []
        async with AsyncAgent("sage", far.replica, send_dsn=far.source, poll_interval=0.2) as agent:
            async for msg in agent.messages(limit=2):
                got.append(msg.id)
                await msg.areply(f"async re {msg.message}")

            async def handler(msg: Message) -> str:
                await asyncio.sleep(0)
                return f"handler re {msg.message}"

            handled = await agent.run(handler, limit=2)
            later = await agent.send("new", to=["nova"])
            assert later > max(sent)
        return got, handled

    got, handled = asyncio.run(main())
    assert got == sent[:2] and handled == 2
    assert [s for _i, _a, s in marks(far.replica)] == ["responded"] * 4
    replies = execute(
        far.source, "SELECT reply_to, message FROM agent_chat WHERE sender = 'sage' ORDER BY id"
    )
    assert replies == [
        (sent[0], "async re a0"), (sent[1], "async re a1"),
        (sent[2], "handler re a2"), (sent[3], "handler re a3"), (None, "new"),
    ]  # fmt: skip


def test_prune_removes_marks_and_embeddings_on_every_database(
    topo: Topo, hub: Cluster, remote: Cluster
) -> None:
    old = [messaging.send(topo.source, sender="nova", message=f"old {i}", to=["*"])
           for i in range(5)]  # fmt: skip
    new = messaging.send(topo.source, sender="nova", message="new", to=["*"])
    with psycopg.connect(topo.source) as conn:  # messages are immutable: past the guard
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE agent_chat SET created_at = now() - interval '30 days'"
                     " WHERE id = ANY(%s)", (old,))  # fmt: skip

    def holds(conninfo: str, query: str, rows: list[tuple[object, ...]]) -> bool:
        return execute(conninfo, query) == rows

    def only_new_marked(conninfo: str) -> bool:
        return marks(conninfo) == [(new, "graybeard", "routed")]

    for replica in (topo.local, topo.far):
        wait_for(partial(holds, replica, "SELECT count(*) FROM agent_chat", [(6,)]))
        with Agent("graybeard", replica) as agent:
            assert [m.id for m in agent.messages(idle_timeout=0)] == [*old, new]
    with Agent("graybeard", topo.source) as agent:
        assert agent.run(lambda m: None, idle_timeout=0) == 6
    logs = {c: c.log.stat().st_size for c in (hub, remote)}
    embedding_rows = "SELECT count(*) FROM memory_embeddings"
    assert all(execute(d, embedding_rows) == [(6,)] for d in vars(topo).values())

    result = messaging.prune(topo.source, older_than=dt.timedelta(days=7))
    assert result.deleted == 5 and not result.dry_run

    for d in vars(topo).values():
        wait_for(partial(holds, d, "SELECT id FROM agent_chat", [(new,)]), what="prune")
        wait_for(partial(only_new_marked, d), what="marks pruned")
        wait_for(partial(holds, d, embedding_rows, [(1,)]), what="embeddings pruned")
    for cluster, start_at in logs.items():
        tail = cluster.log_tail(100000, since=start_at)
        assert "ERROR" not in tail and "conflict" not in tail, tail
    with pytest.raises(Exception, match="is a replica"):
        messaging.prune(topo.local, older_than=dt.timedelta(0))


@pytest.fixture
def no_source_recorded(near: Pair) -> Iterator[str]:
    execute(near.replica, "DELETE FROM agentchat_settings WHERE key = 'source_conninfo'")
    yield near.replica


def test_a_replica_without_a_recorded_source_says_how_to_send(
    no_source_recorded: str, near: Pair
) -> None:
    with pytest.raises(Exception, match="--send-dsn"):
        messaging.send(no_source_recorded, sender="sage", message="hi", to=["nova"])
    msg_id = messaging.send(
        no_source_recorded, sender="sage", message="hi", to=["nova"], send_dsn=near.source
    )
    assert execute(near.source, "SELECT sender FROM agent_chat WHERE id = %s", (msg_id,)) == [
        ("sage",)
    ]
    helpers.wait_for(lambda: execute(near.replica, "SELECT count(*) FROM agent_chat") == [(1,)])


def test_a_forged_notification_wakes_but_never_misdelivers(installed_db: str) -> None:
    db = installed_db
    other = messaging.send(db, sender="nova", message="for atlas only", to=["atlas"])
    mine = messaging.send(db, sender="nova", message="for sage", to=["sage"])
    agent = Agent("sage", db, poll_interval=300)
    running = start(agent)
    try:
        wait_for(lambda: running.seen == [mine], what="the catch-up")
        forged = f'{{"id": {other}, "channel": "general", "sender": "nova", "mentions": ["sage"]}}'
        execute(db, "SELECT pg_notify('agent_chat', %s)", (forged,))
        later = messaging.send(db, sender="nova", message="again", to=["sage"])
        wait_for(lambda: running.seen == [mine, later], what="the next message")
    finally:
        running.stop()
    assert marks(db) == [(mine, "sage", "routed"), (later, "sage", "routed")]


def test_a_reply_by_hand_never_hides_a_delivery_reply_on_a_replica(near: Pair) -> None:
    asked = messaging.send(near.source, sender="nova", message="question", to=["graybeard"])
    wait_for(lambda: execute(near.replica, "SELECT count(*) FROM agent_chat") == [(1,)])
    by_hand = messaging.send(near.replica, sender="graybeard", message="on it", to=["nova"],
                             reply_to=asked)  # fmt: skip
    with Agent("graybeard", near.replica) as agent:
        assert agent.run(lambda m: "the answer", idle_timeout=0) == 1
    rows = execute(near.source, "SELECT id, message, reply_key FROM agent_chat"
                   " WHERE reply_to = %s ORDER BY id", (asked,))  # fmt: skip
    assert rows[0] == (by_hand, "on it", None)
    assert [r[1:] for r in rows[1:]] == [("the answer", f"graybeard:{asked}:1")]


#: rows an older schema let a raw INSERT store; each is addressed to everyone
POISON = [
    ("nova", "general", "{NULL,*}", "now", "its mentions hold NULL"),
    ("nova", "general", "{{*,owl},{sage,atlas}}", "now", "mentions are not a list of names"),
    ("nova", "general", '{*,"Not An Agent"}', "now", "invalid mention 'Not An Agent'"),
    ("nova", "ops\nroom", "{*}", "now", "invalid channel 'ops\\nroom'"),
    ("Nova Prime", "general", "{*}", "now", "invalid sender 'Nova Prime'"),
    ("nova", "general", "{*}", "infinity", "timestamp too large"),
]


def let_anything_in(conninfo: str) -> list[int]:
    """Make *conninfo*'s agent_chat as permissive as before schema version 5 (no admission
    trigger, no mentions CHECK), insert the POISON rows raw, and return their ids."""
    execute(
        conninfo,
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_trigger WHERE tgname = 'trg_admit_agent_chat')"
        " THEN ALTER TABLE agent_chat DISABLE TRIGGER trg_admit_agent_chat; END IF; END $$",
    )
    execute(conninfo, "ALTER TABLE agent_chat DROP CONSTRAINT IF EXISTS agent_chat_mentions_valid")
    ids = []
    for sender, channel, mentions, created_at, _error in POISON:
        [(new_id,)] = execute(
            conninfo,
            "INSERT INTO agent_chat (sender, channel, message, mentions, created_at)"
            " VALUES (%s, %s, 'poison', %s::text[], %s::timestamptz) RETURNING id",
            (sender, channel, mentions, created_at),
        )
        ids.append(int(str(new_id)))
    return ids


def assert_poison_failed(conninfo: str, agent: str, ids: list[int]) -> None:
    rows = execute(
        conninfo,
        "SELECT chat_id, status, error FROM agent_chat_processed WHERE agent = %s"
        " AND chat_id = ANY(%s) ORDER BY chat_id",
        (agent, ids),
    )
    assert [(r[0], r[1]) for r in rows] == [(i, "failed") for i in ids]
    for (chat_id, _status, error), (*_row, reason) in zip(rows, POISON, strict=True):
        assert str(error).startswith(f"message {chat_id} cannot be read: "), error
        assert reason in str(error), (reason, error)


def test_no_row_stops_an_agents_delivery(
    installed_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows an older schema let in (a NULL mention, a channel with a newline, a timestamp
    Python cannot hold, ...) are recorded as failed, and every agent gets the next message;
    so does a listener sent a NOTIFY too deeply nested to decode."""
    caplog.set_level(logging.WARNING, logger="agentchat.agent")
    db = installed_db
    poison = let_anything_in(db)
    good = messaging.send(db, sender="nova", message="after the poison", to=["*"])

    with Agent("sage", db) as sage:  # Agent.messages
        assert [m.id for m in sage.messages(idle_timeout=0)] == [good]
    with Agent("atlas", db) as atlas:  # Agent.run
        assert atlas.run(lambda m: None, idle_timeout=0) == 1

    async def asynchronous() -> tuple[list[int], int]:
        async with AsyncAgent("owl", db) as owl, AsyncAgent("echo", db) as echo:
            got = [m.id async for m in owl.messages(idle_timeout=0)]
            return got, await echo.run(lambda m: None, idle_timeout=0)

    assert asyncio.run(asynchronous()) == ([good], 1)
    for agent in ("sage", "atlas", "owl", "echo"):
        assert_poison_failed(db, agent, poison)
        assert (good, agent, "routed") in marks(db, agent)
    warned = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warned) == 4 * len(poison) and all("\n" not in w for w in warned)

    # a forged notification JSON cannot decode (nested too deep) only wakes the listener
    running = start(Agent("sage", db, poll_interval=300))
    try:
        wait_for(lambda: listening(db), what="the listener")
        execute(db, "SELECT pg_notify('agent_chat', %s)", ("[" * 3900 + "]" * 3900,))
        later = messaging.send(db, sender="nova", message="later", to=["sage"])
        wait_for(lambda: running.seen == [later], what="the next message, by NOTIFY")
        assert running.thread is not None and running.thread.is_alive()
    finally:
        running.stop()


def test_recipients_must_be_a_list_of_names(installed_db: str) -> None:
    """`to="owl"` used to address ['l', 'o', 'w'] and `to=[None]` to raise AttributeError."""
    db = installed_db
    asked = messaging.send(db, sender="nova", message="question", to=["owl"])
    bad: list[tuple[object, str]] = [
        ("owl", "recipients must be a list of names, not the string 'owl' (pass a list, e.g."
                " to=['owl'])"),
        ([None], "a recipient must be a name (str), not None"),
        (["owl", 7], "a recipient must be a name (str), not 7"),
        (None, "recipients must be a list of names, not None"),
    ]  # fmt: skip
    for to, error in bad:
        with pytest.raises(errors.InvalidInput) as info:
            messaging.send(db, sender="nova", message="x", to=to)  # type: ignore[arg-type]
        assert str(info.value) == error
        with Agent("nova", db) as nova, pytest.raises(errors.InvalidInput, match="recipient"):
            nova.send("x", to=to)  # type: ignore[arg-type]

        async def asynchronous(to: object = to) -> None:
            async with AsyncAgent("nova", db) as nova:
                await nova.send("x", to=to)  # type: ignore[arg-type]

        with pytest.raises(errors.InvalidInput, match="recipient"):
            asyncio.run(asynchronous())

    # in a delivery, msg.reply(to=...) is refused the same way; the handler's error is recorded
    def handler(msg: Message) -> None:
        msg.reply("answer", to="nova")  # a str is a Sequence[str]: only the check catches it

    with Agent("owl", db) as owl:
        assert owl.run(handler, idle_timeout=0) == 1
    [(status, recorded)] = execute(db, "SELECT status, error FROM agent_chat_processed")
    assert status == "failed"
    assert "InvalidInput: recipients must be a list of names" in str(recorded)
    assert execute(db, "SELECT id FROM agent_chat") == [(asked,)]  # nothing else was stored


class PickyEmbedder:
    """An embedder with a bad answer for two texts: an error carrying a NUL byte (as an
    endpoint's answer may), and a vector that is not one."""

    model = "picky"
    dimension = 384

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if "poison" in texts:
            raise ValueError("endpoint said: bad\x00answer")
        return [[None] * 384 if t == "odd" else [0.5] * 384 for t in texts]  # type: ignore[list-item]


def test_no_row_stops_the_embedding_worker(installed_db: str) -> None:
    """One row the embedder fails on with a NUL byte in its error stopped the whole worker
    (PostgreSQL cannot store the error), on every start: now the row records the error."""
    from agentchat.embeddings.worker import Worker

    db = installed_db
    ids = {t: messaging.send(db, sender="nova", message=t, to=["*"])
           for t in ("fine", "poison", "odd", "also fine")}  # fmt: skip
    stats = Worker(db, PickyEmbedder(), batch_size=10).run(once=True)
    assert (stats.embedded, stats.failed) == (2, 2)
    query = "SELECT source_id, coalesce(last_error, 'embedded') FROM memory_embeddings"
    rows = {int(str(i)): str(e) for i, e in execute(db, query)}
    assert rows[ids["fine"]] == rows[ids["also fine"]] == "embedded"
    assert rows[ids["poison"]] == "endpoint said: bad\\0answer"
    assert "NoneType" in rows[ids["odd"]]


def outcome_of(work: Callable[[], object], timeout: float = 60) -> object:
    """Run *work* in a thread; what it returned or raised (the test fails if it hangs)."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "still retrying: the idle timeout was ignored"
    return result[0]


def test_the_idle_timeout_holds_while_the_database_is_out_of_reach(
    installed_db: str, hub: Cluster
) -> None:
    """The agent's database refuses connections mid-delivery: messages(idle_timeout=...) used to
    retry forever; now it raises once that time has passed, naming the database."""
    db = installed_db
    name = helpers.dbname(db)
    sent = [messaging.send(db, sender="nova", message=f"m{i}", to=["sage"]) for i in range(2)]

    def cut_off() -> None:
        execute(hub.conninfo(), f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        execute(hub.conninfo(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s", (name,))  # fmt: skip

    def sync() -> object:
        with Agent("sage", db) as agent:
            for _msg in agent.messages(idle_timeout=1):
                cut_off()
        return "stopped without an error"

    async def asynchronous() -> object:
        async with AsyncAgent("sage", db) as agent:
            async for _msg in agent.messages(idle_timeout=0):
                cut_off()
        return "stopped without an error"

    try:
        for work in (sync, lambda: asyncio.run(asynchronous())):
            error = outcome_of(work)
            assert isinstance(error, errors.ConnectionFailed), error
            assert f'database "{name}"' in str(error) and "idle timeout" in str(error)
            execute(hub.conninfo(), f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        execute(hub.conninfo(), f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    assert marks(db) == []  # each delivery was rolled back: both are delivered next time
    with Agent("sage", db) as agent:
        assert [m.id for m in agent.messages(idle_timeout=0)] == sent


def test_an_expired_message_is_recorded_expired_and_not_handed_over(installed_db: str) -> None:
    """A message whose time to live ran out (agent_chat.expires_at, NOVA's p_ttl) is marked
    expired for the agent, once, and the agent gets only the live ones; an AsyncAgent too."""
    db = installed_db
    sent = [messaging.send(db, sender="nova", message=t, to=["graybeard"]) for t in "abc"]
    execute(db, "UPDATE agent_chat SET expires_at = now() - interval '1 second' WHERE id = %s",
            (sent[1],))  # fmt: skip
    execute(db, "UPDATE agent_chat SET expires_at = now() + interval '1 hour' WHERE id = %s",
            (sent[2],))  # fmt: skip
    with Agent("graybeard", db) as agent:
        got = [m.id for m in agent.messages(idle_timeout=0)]
    assert got == [sent[0], sent[2]]
    assert marks(db) == [(sent[0], "graybeard", "routed"), (sent[1], "graybeard", "expired"),
                         (sent[2], "graybeard", "routed")]  # fmt: skip

    async def listen() -> list[int]:
        async with AsyncAgent("sage", db) as sage:
            return [m.id async for m in sage.messages(idle_timeout=0)]

    late = messaging.send(db, sender="nova", message="late", to=["sage"])
    execute(db, "UPDATE agent_chat SET expires_at = now() WHERE id = %s", (late,))
    assert asyncio.run(listen()) == []
    assert marks(db, "sage") == [(late, "sage", "expired")]
    with Agent("graybeard", db) as agent:  # nothing again: the marks hold
        assert [m.id for m in agent.messages(idle_timeout=0)] == []


@pytest.mark.parametrize("front", ["sync", "asyncio"])
def test_a_reply_at_the_source_waits_for_the_message_to_show_there(
    installed_db: str, installed_db2: str, front: str
) -> None:
    """A source sends a commit to its replicas before its own sessions see it: an agent on a
    replica can answer at the source a moment before the message shows there (seen once, in a
    CI run under load: the reply failed with "reply_to ... is not a message"). The reply is
    tried again for a while. Here the "source" is a second database where the message is
    written a little after the agent, on the first, has it; and one that never gets it."""
    listen_on, send_to = installed_db, installed_db2
    insert = "INSERT INTO agent_chat (id, sender, message, mentions) VALUES (%s, 'nova', %s, %s)"
    execute(listen_on, insert, (101, "late at the source", ["graybeard"]))
    execute(listen_on, insert, (102, "never at the source", ["graybeard"]))
    late = threading.Timer(0.3, execute, (send_to, insert, (101, "late at the source", ["x"])))

    def handler(msg: Message) -> str:
        if msg.id == 101:
            late.start()
        return f"re {msg.id}"

    async def drain() -> int:
        async with AsyncAgent("graybeard", listen_on, send_dsn=send_to) as agent:
            return await agent.run(handler, idle_timeout=0)

    if front == "sync":
        with Agent("graybeard", listen_on, send_dsn=send_to) as agent:
            assert agent.run(handler, idle_timeout=0) == 2
    else:
        assert asyncio.run(drain()) == 2
    late.join()
    assert marks(listen_on, "graybeard") == [(101, "graybeard", "responded"),
                                             (102, "graybeard", "failed")]  # fmt: skip
    [(error,)] = execute(listen_on, "SELECT error FROM agent_chat_processed WHERE chat_id = 102")
    assert "reply_to 102 is not a message" in str(error)
    replies = execute(send_to, "SELECT reply_to, message FROM agent_chat WHERE reply_to > 0")
    assert replies == [(101, "re 101")]
