"""Throughput to one agent, and bulk: how fast a backlog is handled and recorded exactly once.

- ``throughput_agent_per_s``: an :class:`agentchat.Agent` on a replica handles a backlog of
  10,000 messages (quick: 300) waiting for it (``idle_timeout=0``: it returns once drained),
  each recorded exactly once (``throughput_agent_exactly_once``: 1 when the marks say so). The
  floor is a bare loop over as many messages on the same replica: one transaction per message
  that reads it and inserts its mark.
- ``throughput_bulk_s``: 50,000 messages (quick: 2,000) written at the source in 1,000-row
  transactions while an agent listens on the replica: seconds from the first write until the
  agent has handled the last; the floor is until a bare LISTEN on the replica is notified of
  the last row (the rows are there). ``throughput_bulk_rate_per_s``: messages / that time.
"""

from __future__ import annotations

import time

from agentchat import _db
from agentchat.agent import Agent
from agentchat.bench.delivery import AgentTimes, raw_listener, wait_until
from agentchat.bench.lab import Lab, Progress
from agentchat.bench.report import Figures
from agentchat.sql import queries

BATCH = 1000
SENDER = "nova"


def send_bulk(source: str, count: int, to: str) -> int:
    """*count* messages to *to* in :data:`BATCH`-row transactions; the largest id."""
    last = 0
    with _db.connection(source) as conn:
        for start in range(0, count, BATCH):
            row = conn.execute(
                queries["bench_send_many"], (SENDER, [to], min(BATCH, count - start))
            ).fetchone()
            assert row is not None
            last = max(last, int(row[0]))
    return last


def wait_replicated(replica: str, names: list[str], count: int, timeout: float = 300) -> None:
    """Until *count* messages to *names* are on *replica*."""
    with _db.connection(replica) as conn:

        def there() -> bool:
            row = conn.execute(queries["bench_count_to"], (names,)).fetchone()
            return row is not None and int(row[0]) >= count

        if not wait_until(there, timeout, step=0.05):
            raise TimeoutError(f"{count} messages did not reach the replica in {timeout:.0f} s")


def bare_loop(replica: str, name: str) -> float:
    """The floor: one transaction per message addressed to *name* (read it, insert its mark);
    messages per second."""
    with _db.connection(replica) as conn:
        ids = [int(r[0]) for r in conn.execute(queries["bench_ids_to"], ([name],)).fetchall()]
        start = time.perf_counter()
        for chat_id in ids:
            with conn.transaction():
                conn.execute(queries["bench_read_one"], (chat_id,)).fetchone()
                conn.execute(queries["bench_mark_one"], (chat_id, name))
        return len(ids) / (time.perf_counter() - start)


def exactly_once(replica: str, name: str, count: int) -> bool:
    with _db.connection(replica) as conn:
        row = conn.execute(queries["bench_marks"], (name,)).fetchone()
    return row is not None and int(row[0]) == int(row[1]) == count


def backlog(source: str, replica: str, quick: bool, progress: Progress, figures: Figures) -> None:
    count = 300 if quick else 10000
    progress(f"throughput: a backlog of {count} messages for each of two agents")
    send_bulk(source, count, "atlas")
    send_bulk(source, count, "sage")
    wait_replicated(replica, ["atlas", "sage"], 2 * count)
    progress("throughput: the bare loop")
    floor = bare_loop(replica, "atlas")
    progress("throughput: the agent")
    with Agent("sage", replica) as agent:
        start = time.perf_counter()
        handled = agent.run(lambda message: None, idle_timeout=0)
        rate = handled / (time.perf_counter() - start)
    figures.compare("throughput_agent_per_s", rate, floor)
    figures.add("throughput_agent_messages", handled)
    figures.add("throughput_agent_exactly_once", exactly_once(replica, "sage", count))


def bulk(source: str, replica: str, quick: bool, progress: Progress, figures: Figures) -> None:
    count = 2000 if quick else 50000
    agent = AgentTimes(source, replica, "bulk")
    try:
        with raw_listener(replica, "bulk") as raw:
            progress(f"throughput: bulk, {count} messages in {BATCH}-row transactions")
            before = agent.handled()
            start = time.perf_counter()
            last = send_bulk(source, count, "bulk")
            wait_until(lambda: last in raw.got, timeout=300)
            wait_until(lambda: agent.handled() >= before + count, timeout=600)
            floor = raw.got[last] - start
            done = max(agent.got.values()) - start
    finally:
        agent.close()
    figures.compare("throughput_bulk_s", done, floor)
    figures.add("throughput_bulk_rate_per_s", count / done)
    figures.add("throughput_bulk_messages", count)


def run(lab: Lab, quick: bool, progress: Progress) -> Figures:
    figures = Figures()
    source = lab.database("throughput_source")
    replica = lab.replica(source, "throughput_replica")
    backlog(source, replica, quick, progress, figures)
    bulk(source, replica, quick, progress, figures)
    return figures
