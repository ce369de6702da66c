"""Delivery in batches: one transaction claims, hands over and records several messages.

What must hold (docs/agents.md, "How delivery works"): two listeners of one agent split a
backlog, neither waiting on the other, with no message twice; a batch cut short (``break``, a
crash) redelivers exactly its uncommitted part, and its replies go with it; ``stop()`` and
``limit`` never record a message that was not handed over; an expired message in a batch is
recorded expired and not handed over.

Batch sizes adapt to the handler's speed (:data:`agentchat.agents.protocol.BATCH_WORK`); here
that budget is made huge, so that sizes double from 1 whatever the machine's speed: the
batches are [m0], [m1 m2], [m3 m4 m5 m6], [m7 ...].
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg import sql

from agentchat import messaging
from agentchat.agent import Agent
from agentchat.agents import protocol
from agentchat.aio import AsyncAgent
from agentchat.sql import queries
from tests.helpers import execute, marks

#: the barrier's timeout: a deadlock detector (a listener waiting on the other), not a speed
DEADLOCK = 60


@pytest.fixture
def doubling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 1, 2, 4, 8, ... messages, however slow the machine."""
    monkeypatch.setattr(protocol, "BATCH_WORK", 3600.0)


def send_many(db: str, count: int, to: str = "graybeard") -> list[int]:
    return [messaging.send(db, sender="nova", message=f"m{i}", to=[to]) for i in range(count)]


def replied_to(db: str) -> list[int]:
    rows = execute(db, "SELECT reply_to FROM agent_chat WHERE reply_to IS NOT NULL ORDER BY 1")
    return [int(str(r[0])) for r in rows]


def test_two_listeners_split_a_backlog_neither_waiting_on_the_other(installed_db: str) -> None:
    """Each listener's first 5 messages meet the other's at a barrier: both must be inside a
    handler at once, 5 times over. A listener that waited for the other's claim (the old way:
    the second to claim a message waited for the first's transaction) would break it."""
    db = installed_db
    sent = send_many(db, 60)
    rounds = 5
    barrier = threading.Barrier(2, timeout=DEADLOCK)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    broken: list[str] = []

    def listen(name: str) -> None:
        with Agent("graybeard", db, poll_interval=0.2) as agent:
            for msg in agent.messages(idle_timeout=1):
                seen[name].append(msg.id)
                if len(seen[name]) <= rounds:
                    try:
                        barrier.wait()
                    except threading.BrokenBarrierError:
                        broken.append(f"{name} at its message {len(seen[name])}")
                        return

    threads = [threading.Thread(target=listen, args=(n,), daemon=True) for n in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLOCK * 3)
    assert not broken, broken
    assert all(len(ids) >= rounds for ids in seen.values()), seen
    handed = Counter(seen["a"] + seen["b"])
    assert set(handed) == set(sent) and set(handed.values()) == {1}  # none twice, none lost
    assert [m[0] for m in marks(db)] == sent  # one mark each
    assert {m[2] for m in marks(db)} == {"routed"}


@pytest.mark.parametrize("front", ["sync", "asyncio"])
def test_a_batch_cut_short_redelivers_exactly_its_uncommitted_part(
    installed_db: str, doubling: None, front: str
) -> None:
    """Left at m4, the second message of the batch [m3 m4 m5 m6]: m0 to m2 are recorded with
    their replies; m3 (handed over, replied to) and m4 roll back with the batch, and come again
    with m5 onwards, each once; m3's reply is posted once, by the second run."""
    db = installed_db
    sent = send_many(db, 10)

    def first_run() -> list[int]:
        got: list[int] = []
        with Agent("graybeard", db) as agent:
            for msg in agent.messages(idle_timeout=0):
                got.append(msg.id)
                if len(got) == 5:
                    break
                msg.reply(f"re {msg.id}")
        return got

    async def first_run_async() -> list[int]:
        got: list[int] = []
        async with AsyncAgent("graybeard", db) as agent:
            async for msg in agent.messages(idle_timeout=0):
                got.append(msg.id)
                if len(got) == 5:
                    break
                await msg.areply(f"re {msg.id}")
        return got

    got = first_run() if front == "sync" else asyncio.run(first_run_async())
    assert got == sent[:5]
    assert marks(db) == [(i, "graybeard", "responded") for i in sent[:3]]
    assert replied_to(db) == sent[:3]  # m3's reply rolled back with its batch

    with Agent("graybeard", db) as agent:
        assert agent.run(lambda m: f"re {m.id}", idle_timeout=0) == 7
    assert marks(db) == [(i, "graybeard", "responded") for i in sent]
    assert replied_to(db) == sent  # one reply each


def test_stop_and_limit_record_only_what_was_handed_over(installed_db: str, doubling: None) -> None:
    """stop() in m3, the first of the batch [m3 m4 m5 m6], returns once that batch is handed
    over (its marks were taken with it: nothing claimed is left unhandled); a limit ends in the
    middle of where a batch would go, claiming no more than it leaves."""
    db = installed_db
    sent = send_many(db, 12)
    got: list[int] = []
    with Agent("graybeard", db) as agent:
        for msg in agent.messages():
            got.append(msg.id)
            if len(got) == 4:
                agent.stop()
    assert got == sent[:7]
    assert [m[0] for m in marks(db)] == got

    with Agent("graybeard", db) as agent:
        assert [m.id for m in agent.messages(limit=3)] == sent[7:10]
    assert [m[0] for m in marks(db)] == sent[:10]
    with Agent("graybeard", db) as agent:
        assert agent.run(lambda m: None, idle_timeout=0) == 2
    assert [m[0] for m in marks(db)] == sent


def test_an_expired_message_in_a_batch_is_recorded_expired(
    installed_db: str, doubling: None
) -> None:
    """m2, in the batch [m1 m2], expired: recorded expired, not handed over; m1 and the next
    batch are handled as usual. An AsyncAgent too."""
    db = installed_db
    for agent_name in ("graybeard", "sage"):
        sent = send_many(db, 5, to=agent_name)
        execute(db, "UPDATE agent_chat SET expires_at = now() WHERE id = %s", (sent[2],))
        if agent_name == "graybeard":
            with Agent(agent_name, db) as agent:
                got = [m.id for m in agent.messages(idle_timeout=0)]
        else:

            async def listen(name: str = agent_name) -> list[int]:
                async with AsyncAgent(name, db) as agent:
                    return [m.id async for m in agent.messages(idle_timeout=0)]

            got = asyncio.run(listen())
        assert got == [sent[0], sent[1], sent[3], sent[4]]
        assert marks(db, agent_name) == [
            (i, agent_name, "expired" if i == sent[2] else "routed") for i in sent
        ]


def claimed_marks_read(db: str, query: str, params: dict[str, Any], plans: str) -> int:
    """The mark rows the claim *query* reads (its EXPLAIN ANALYZE, *plans* being psycopg's
    ``plan_cache_mode`` for it; the claim itself rolled back)."""
    with psycopg.connect(db) as conn:
        conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Identifier(plans)))
        explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + queries[query]
        [(plan,)] = conn.execute(explain, params).fetchall()
        conn.rollback()

    def mark_rows(node: dict[str, Any]) -> int:
        own = node["Actual Rows"] * node["Actual Loops"]
        reads = node.get("Relation Name") == "agent_chat_processed" and "Scan" in node["Node Type"]
        return (own if reads else 0) + sum(mark_rows(n) for n in node.get("Plans", []))

    return mark_rows(plan[0]["Plan"])


def a_long_history(db: str) -> int:
    """20,000 messages to graybeard, the first 18,000 marked: the last mark's id."""
    execute(db, "INSERT INTO agent_chat (sender, message, mentions) SELECT 'nova', 'm' || g,"
                " '{graybeard}' FROM generate_series(1, 20000) g")  # fmt: skip
    execute(db, "INSERT INTO agent_chat_processed (chat_id, agent, status) SELECT id,"
                " 'graybeard', 'routed' FROM agent_chat ORDER BY id LIMIT 18000")  # fmt: skip
    execute(db, "ANALYZE agent_chat")
    execute(db, "ANALYZE agent_chat_processed")
    return int(execute(db, "SELECT max(chat_id) FROM agent_chat_processed")[0][0])


def test_a_claim_reads_no_more_marks_than_its_messages_need(installed_db: str) -> None:
    """A claim must not read the agent's older marks. Both claims did: a backlog's next batch
    (``after``: the last batch's highest id) through a merge anti-join over all of them, so
    draining 100,000 messages went quadratic (``agentchat bench --only catchup``: 1,167
    msg/s); a notified id's claim through its generic plan (a join filter over all of them), so
    each delivery cost more as the history grew. The plans are those psycopg's statements get:
    made for the values (its first runs) and generic (once prepared)."""
    db = installed_db
    after = a_long_history(db)
    [(next_id,)] = execute(db, "SELECT min(id) FROM agent_chat WHERE id > %s", (after,))
    for plans in ("force_custom_plan", "force_generic_plan"):
        batch = {"agent": "graybeard", "channel": None, "limit": 100, "scan": 400, "after": after}
        assert claimed_marks_read(db, "agent_claim_batch", batch, plans) <= 400, plans
        notified = {"agent": "graybeard", "channel": None, "limit": 100, "ids": [next_id]}
        assert claimed_marks_read(db, "agent_claim_ids", notified, plans) <= 1, plans
    assert int(execute(db, "SELECT count(*) FROM agent_chat_processed")[0][0]) == 18000


def analysed(db: str, table: str) -> bool:
    query = "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass"
    return bool(execute(db, query, (table,))[0][0])


@pytest.mark.parametrize("front", ["sync", "asyncio"])
def test_an_agent_connecting_to_a_backlog_with_stale_statistics_analyses_the_chat(
    installed_db: str, front: str
) -> None:
    """Rows replicated while an agent was offline leave the statistics behind until autovacuum
    comes (here it never does); without them a backlog's claims took the GIN index and sorted
    every waiting row for each batch (``agentchat bench --only catchup``: 2,677 msg/s; 12,917
    after an ANALYZE of 0.1 s). The agent's connection analyses the chat first."""
    db = installed_db
    for table in ("agent_chat", "agent_chat_processed"):
        execute(db, f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    execute(db, "INSERT INTO agent_chat (sender, message, mentions) SELECT 'nova', 'm' || g,"
                " '{graybeard}' FROM generate_series(1, 3000) g")  # fmt: skip
    assert not analysed(db, "agent_chat")

    async def drain() -> int:
        async with AsyncAgent("graybeard", db) as agent:
            return await agent.run(lambda message: None, idle_timeout=0)

    if front == "sync":
        with Agent("graybeard", db) as agent:
            assert agent.run(lambda message: None, idle_timeout=0) == 3000
    else:
        assert asyncio.run(drain()) == 3000
    assert analysed(db, "agent_chat")
    # fresh now: the next agent's connection leaves the chat alone
    [(again,)] = execute(db, "SELECT agentchat_fresh_statistics()")
    assert "public.agent_chat" not in again
    assert len(marks(db, "graybeard")) == 3000


def test_fresh_statistics_never_wait_and_need_no_right_on_the_tables(installed_db: str) -> None:
    """While autovacuum (here: a transaction holding its lock) is at the chat, the function skips
    it instead of waiting; a role with no right on the tables may call it (it runs as the
    schema's owner)."""
    db = installed_db
    execute(db, "ALTER TABLE agent_chat SET (autovacuum_enabled = off)")
    execute(db, "INSERT INTO agent_chat (sender, message, mentions) SELECT 'nova', 'm' || g,"
                " '{graybeard}' FROM generate_series(1, 3000) g")  # fmt: skip
    execute(db, "CREATE ROLE stats_caller")
    with psycopg.connect(db) as vacuum, psycopg.connect(db, autocommit=True) as caller:
        vacuum.execute("LOCK TABLE agent_chat IN SHARE UPDATE EXCLUSIVE MODE")
        caller.execute("SET statement_timeout = '10s'")  # a wait would fail the test here
        caller.execute("SET SESSION AUTHORIZATION stats_caller")
        [(skipped,)] = caller.execute("SELECT agentchat_fresh_statistics()").fetchall()
        assert "public.agent_chat" not in skipped
        vacuum.rollback()
        [(done,)] = caller.execute("SELECT agentchat_fresh_statistics()").fetchall()
        assert "public.agent_chat" in done
    assert analysed(db, "agent_chat")
