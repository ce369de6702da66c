"""Delivery latency: a writer commits on the source, an agent's handler runs on a replica.

The floor is a bare LISTEN on the same replica (replication plus the notify trigger's NOTIFY,
nothing of agentchat's delivery); the product is an :class:`agentchat.Agent` whose handler runs
through the real listen path (claim, handler, recorded outcome). Both get the same paced writer
(one message per transaction) in two passes, one after the other; each latency is commit ->
notification (floor) or commit -> handler call (agent).

Figures: ``delivery_200_{p50,p95,p99,max}_ms`` at 200 msg/s, each with its floor and ratio;
``delivery_top_rate_per_s``, the highest rate of a doubling ladder the agent sustained (the last
message handled within :data:`SUSTAINED_LAG` of its send, the writer keeping the rate), with
``delivery_top_{p50,p95,p99,max}_ms`` there against the floor at that rate; ``delivery_200_missed``,
messages the agent never handled in the 200 msg/s pass.

The helpers here (:func:`paced_send`, :class:`RawListener`, :func:`percentile`) are shared with
the other benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from agentchat import _db
from agentchat.agent import Agent
from agentchat.agents.message import Message
from agentchat.bench.lab import Lab, Progress
from agentchat.bench.report import Figures
from agentchat.sql import queries

RATE = 200
#: a rate is sustained when the last message is handled within this many seconds of its send
SUSTAINED_LAG = 0.5
#: the longest wait for a pass's last message
WAIT = 60.0
STATS = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank *q* quantile (``q=1``: the maximum); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def paced_send(
    source: str, count: int, rate: float, to: str, sender: str = "nova"
) -> dict[int, float]:
    """Send *count* messages to *to*, one per transaction, *rate* per second on a schedule;
    ``{id: perf_counter at its commit}``."""
    sent: dict[int, float] = {}
    with _db.connection(source) as conn:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            row = conn.execute(queries["bench_send"], (sender, f"m {i}", [to])).fetchone()
            assert row is not None
            sent[int(row[0])] = time.perf_counter()
    return sent


class RawListener:
    """A bare LISTEN on *dsn* in a thread: the arrival time of each notification naming *to*."""

    def __init__(self, dsn: str, to: str) -> None:
        self.to = to
        self.got: dict[int, float] = {}
        self._stop = threading.Event()
        self._conn = _db.connect(dsn)
        self._conn.execute(queries["bench_listen"])
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            for note in self._conn.notifies(timeout=0.2):
                now = time.perf_counter()
                data = json.loads(note.payload)
                if self.to in data["mentions"]:
                    self.got[int(data["id"])] = now

    def wait_for(self, ids: Sequence[int], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while any(i not in self.got for i in ids) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()


@contextlib.contextmanager
def raw_listener(dsn: str, to: str) -> Iterator[RawListener]:
    listener = RawListener(dsn, to)
    try:
        yield listener
    finally:
        listener.close()


class AgentTimes:
    """An :class:`Agent` named *name* on *dsn* running in a thread; the time each message
    reached its handler. Started once a warm-up message sent at *source* was handled."""

    def __init__(self, source: str, dsn: str, name: str) -> None:
        self.got: dict[int, float] = {}
        self.agent = Agent(name, dsn, poll_interval=5)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        warm = paced_send(source, 1, 1, name)
        self.wait_for(list(warm))

    def _handle(self, message: Message) -> None:
        self.got[message.id] = time.perf_counter()

    def _run(self) -> None:
        try:
            self.agent.run(self._handle)
        except BaseException as exc:  # re-raised in the measuring thread
            self.failed = exc

    failed: BaseException | None = None

    def handled(self) -> int:
        """How many messages reached the handler (raises what stopped the agent, if it did)."""
        if self.failed is not None:
            raise self.failed
        return len(self.got)

    def wait_for(self, ids: Sequence[int], timeout: float = WAIT) -> None:
        wait_until(lambda: self.handled() >= 0 and all(i in self.got for i in ids), timeout)

    def close(self) -> None:
        self.agent.stop()
        self._thread.join(30)
        self.agent.close()


def wait_until(what: Callable[[], bool], timeout: float = WAIT, step: float = 0.01) -> bool:
    """Poll *what* until true or *timeout* seconds pass; whether it came true."""
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def latencies(sent: dict[int, float], got: dict[int, float]) -> list[float]:
    """Milliseconds from each send to its arrival (those that arrived)."""
    return [(got[i] - t) * 1000 for i, t in sent.items() if i in got]


def lag(sent: dict[int, float], got: dict[int, float]) -> float:
    """Seconds from the last send to the last arrival (inf when one never arrived)."""
    if any(i not in got for i in sent):
        return float("inf")
    return max(got.values()) - max(sent.values())


def achieved(sent: dict[int, float]) -> float:
    """The rate the writer kept (messages per second between its first and last commit)."""
    span = max(sent.values()) - min(sent.values())
    return (len(sent) - 1) / span if span > 0 else float("inf")


def passes(
    source: str, replica: str, count: int, rate: float, agent: AgentTimes
) -> tuple[dict[int, float], dict[int, float], dict[int, float], dict[int, float]]:
    """The floor's pass then the agent's: (sent, arrived) of each."""
    with raw_listener(replica, "rawbench") as raw:
        raw_sent = paced_send(source, count, rate, "rawbench")
        raw.wait_for(list(raw_sent))
        raw_got = dict(raw.got)
    agent_sent = paced_send(source, count, rate, agent.agent.name)
    agent.wait_for(list(agent_sent))
    return raw_sent, raw_got, agent_sent, dict(agent.got)


def run(lab: Lab, quick: bool, progress: Progress) -> Figures:
    figures = Figures()
    source = lab.database("delivery_source")
    replica = lab.replica(source, "delivery_replica")
    count = 200 if quick else 2000
    agent = AgentTimes(source, replica, "graybeard")
    try:
        progress(f"delivery: {count} messages at {RATE} msg/s, floor then agent")
        raw_sent, raw_got, sent, got = passes(source, replica, count, RATE, agent)
        floor, ours = latencies(raw_sent, raw_got), latencies(sent, got)
        for stat, q in STATS:
            figures.compare(f"delivery_{RATE}_{stat}_ms", percentile(ours, q), percentile(floor, q))
        figures.add(f"delivery_{RATE}_missed", len(sent) - len(ours))

        top = float(RATE)
        at_top = (ours, floor)
        rate = 2 * RATE
        seconds = 0.5 if quick else 3.0
        for _ in range(2 if quick else 6):
            progress(f"delivery: ladder at {rate} msg/s")
            raw_sent, raw_got, sent, got = passes(source, replica, int(rate * seconds), rate, agent)
            if lag(sent, got) > SUSTAINED_LAG or achieved(sent) < 0.9 * rate:
                break
            top, at_top = rate, (latencies(sent, got), latencies(raw_sent, raw_got))
            rate *= 2
        figures.add("delivery_top_rate_per_s", top)
        for stat, q in STATS:
            figures.compare(
                f"delivery_top_{stat}_ms", percentile(at_top[0], q), percentile(at_top[1], q)
            )
    finally:
        agent.close()
    return figures
