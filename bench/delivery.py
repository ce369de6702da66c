"""Delivery speed: an agentchat listener against a bare LISTEN loop, measured in the same run.

    .venv/bin/python bench/delivery.py [--messages 500] [--version 18]

Starts a private cluster with a source database and a replica (logical replication, agentchat's
publication and subscription), then, for the same messages sent one per transaction at the
source, measures on the replica:

- raw: a bare psycopg connection that LISTENs and receives the notify trigger's NOTIFY
  (the floor: replication plus NOTIFY, nothing of agentchat's delivery);
- agentchat: an :class:`agentchat.Agent` whose handler is called per message, with the claim,
  the anti-join catch-up and the recorded outcome in one transaction.

It prints send -> handler latency percentiles for both, the throughput of a backlog of the
same size handled from the table (agentchat vs a hand-written loop: one transaction per message
that reads it and inserts its mark), and the ratios agentchat / raw. Nothing here is a pass/fail
test: machines are noisy; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from agentchat import install, messaging, replication
from agentchat.agent import Agent
from agentchat.messaging import Message
from agentchat.server import Cluster

#: seconds between two sends in the latency runs (one message in flight at a time, mostly)
GAP = 0.01


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_latencies(source: str, replica: str, count: int) -> list[float]:
    """Send at the source; a bare LISTEN on the replica; ms from commit to notification."""
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    with psycopg.connect(replica, autocommit=True) as listener:
        listener.execute("LISTEN agent_chat")
        done = threading.Event()

        def receive() -> None:
            for note in listener.notifies(timeout=60):
                data = json.loads(note.payload)
                if "rawbench" in data["mentions"]:
                    got[data["id"]] = time.perf_counter()
                if len(got) >= count:
                    break
            done.set()

        thread = threading.Thread(target=receive)
        thread.start()
        with psycopg.connect(source, autocommit=True) as conn:
            for i in range(count):
                row = conn.execute(
                    "SELECT send_agent_message('nova', %s, '{rawbench}')", (f"raw {i}",)
                ).fetchone()
                assert row is not None
                sent[int(row[0])] = time.perf_counter()
                time.sleep(GAP)
        done.wait(60)
        thread.join()
    return [(got[i] - t) * 1000 for i, t in sent.items() if i in got]


def agent_latencies(source: str, replica: str, count: int) -> list[float]:
    """The same, received by an Agent's handler (claimed, handled, recorded)."""
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    agent = Agent("graybeard", replica, poll_interval=5)

    def handler(msg: Message) -> None:
        got[msg.id] = time.perf_counter()

    thread = threading.Thread(target=lambda: agent.run(handler, limit=count))
    thread.start()
    time.sleep(0.5)  # listening
    with psycopg.connect(source, autocommit=True) as conn:
        for i in range(count):
            row = conn.execute(
                "SELECT send_agent_message('nova', %s, '{graybeard}')", (f"agent {i}",)
            ).fetchone()
            assert row is not None
            sent[int(row[0])] = time.perf_counter()
            time.sleep(GAP)
    thread.join(120)
    agent.close()
    return [(got[i] - t) * 1000 for i, t in sent.items() if i in got]


def backlog_rates(source: str, replica: str, count: int) -> tuple[float, float]:
    """Messages/s when *count* messages wait: a hand-written psycopg loop (one transaction per
    message that inserts its mark) vs an Agent handling each (claim, handler, outcome)."""
    with psycopg.connect(source, autocommit=True) as conn, conn.transaction():
        for i in range(count):
            for name in ("sage", "atlas"):
                conn.execute("SELECT send_agent_message('nova', %s, ARRAY[%s])", (f"b {i}", name))
    deadline = time.monotonic() + 60
    with psycopg.connect(replica, autocommit=True) as conn:
        query = "SELECT count(*) FROM agent_chat WHERE mentions && '{sage,atlas}'"
        while (conn.execute(query).fetchone() or (0,))[0] < 2 * count:
            assert time.monotonic() < deadline, "backlog did not replicate"
            time.sleep(0.05)
        start = time.perf_counter()
        ids = conn.execute("SELECT id FROM agent_chat WHERE mentions && '{atlas}' ORDER BY id")
        for (chat_id,) in ids.fetchall():
            with conn.transaction():
                conn.execute(
                    "SELECT id, message FROM agent_chat WHERE id = %s", (chat_id,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO agent_chat_processed (chat_id, agent, status)"
                    " VALUES (%s, 'atlas', 'routed')",
                    (chat_id,),
                )
        raw = count / (time.perf_counter() - start)
    with Agent("sage", replica) as agent:
        start = time.perf_counter()
        handled = agent.run(lambda m: None, idle_timeout=0)
        rate = handled / (time.perf_counter() - start)
    return raw, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--version", type=int, default=18)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="agentchat-bench-"))
    root.chmod(0o755)
    cluster = Cluster(root / "bench", version=args.version, ephemeral=True)
    cluster.start()
    try:
        source, replica = cluster.conninfo("nova_memory"), cluster.conninfo("graybeard_memory")
        install.install(source)
        replication.add(source, replica, timeout=60)
        messaging.send(source, sender="nova", message="warm-up", to=["nobody"])
        raw = raw_latencies(source, replica, args.messages)
        ours = agent_latencies(source, replica, args.messages)
        raw_rate, our_rate = backlog_rates(source, replica, args.messages)
    finally:
        cluster.destroy()
    print(f"PostgreSQL {args.version}, {args.messages} messages, source -> replica, one cluster")
    print(f"{'':28}{'raw':>10}{'agentchat':>12}{'ratio':>8}")
    for q in (0.5, 0.9, 0.99):
        label = f"latency p{int(q * 100)} (ms)"
        a, b = percentile(raw, q), percentile(ours, q)
        print(f"{label:28}{a:>10.2f}{b:>12.2f}{b / a:>8.1f}")
    print(f"{'mean latency (ms)':28}{statistics.mean(raw):>10.2f}{statistics.mean(ours):>12.2f}"
          f"{statistics.mean(ours) / statistics.mean(raw):>8.1f}")  # fmt: skip
    rates = f"{raw_rate:>10.0f}{our_rate:>12.0f}{our_rate / raw_rate:>8.2f}"
    print(f"{'backlog (messages/s)':28}{rates}")
    print(f"delivered: raw {len(raw)}/{args.messages}, agentchat {len(ours)}/{args.messages}")


if __name__ == "__main__":
    main()
