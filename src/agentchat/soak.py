"""``agentchat soak``: agents under load while things break, then a count of what arrived.

    report = run(SoakOptions(minutes=1))
    report.verdict          # "ok": nothing lost, nothing recorded twice
    report.as_dict()        # what `agentchat soak --json` prints

Two embedded clusters stand in for two servers: the source database on the first, the replicas
on the second, each added with ``replication.add`` over TCP with a password. Every agent is a
real ``agentchat listen --json`` process on its database; a writer posts mixed traffic at the
source (direct messages, broadcasts to ``*``, replies), and ``agentchat embed-worker`` embeds
each message with a stand-in HTTP embedder (deterministic vectors; the soak measures agentchat,
not a model). Faults come on a schedule: the source's cluster restarted, its walsenders
terminated, the replicas' cluster restarted, a listener and the worker killed with SIGKILL and
started again. No fault is repaired by hand. At the end the soak waits for the topology to
settle, then counts: every message on every replica, every agent's deliveries recorded exactly
once, the subscriptions, and the memory (VmRSS) of the listeners and the worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import conninfo as _conninfo

from agentchat import _db, errors, install, replication, schema, topology
from agentchat._soak_load import Process, Writer, stand_in_embedder
from agentchat.server import Cluster
from agentchat.sql import queries

#: the faults, in the order the schedule cycles through them
FAULTS = ("source-restart", "walsender-kill", "replica-restart", "listener-kill", "worker-kill")
#: ``progress(line)``: one line of news while the soak runs
Progress = Callable[[str], None]


def quiet(line: str) -> None:
    """The default progress callback: says nothing."""


class ListenerExited(errors.AgentchatError):
    """An ``agentchat listen`` process of the soak exited before the traffic began."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float
    rate: float = 200.0
    agents: int = 20
    databases: int = 4
    seed: int = 1
    data_dir: Path | None = None
    keep: bool = False
    version: int | None = None
    #: after the traffic stops: how long the counts may stay still before the soak gives up
    #: (a backlog that drains slowly is lag, not loss: the wait goes on while it moves)
    stall_timeout: float = 60.0

    def check(self) -> None:
        if not self.minutes > 0 or self.minutes > 24 * 60:
            raise errors.InvalidInput("--minutes must be more than 0 and at most 1440")
        if not 0 < self.rate <= 5000:
            raise errors.InvalidInput("--rate must be more than 0 and at most 5000 messages/s")
        if not 2 <= self.databases <= 10:
            raise errors.InvalidInput("--databases must be 2 to 10 (a source and its replicas)")
        if not self.databases <= self.agents <= 200:
            raise errors.InvalidInput(
                f"--agents must be {self.databases} to 200 (one listener per database at least)"
            )


@dataclass
class Fault:
    at: float  # seconds after the traffic started
    kind: str
    detail: str


@dataclass
class AgentCount:
    name: str
    database: str
    expected: int = 0
    delivered: int = 0  # recorded in agent_chat_processed
    recorded_twice: int = 0
    handled_again: int = 0  # printed by its listener more than once (a delivery cut short)
    cuts: int = 0  # faults that could cut one of its deliveries short


@dataclass
class SoakReport:
    options: dict[str, Any]
    version: int = 0
    seconds: float = 0.0
    sent: int = 0
    send_errors: int = 0
    agents: list[AgentCount] = field(default_factory=list)
    missing_on_replicas: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    embeddings: dict[str, list[int]] = field(default_factory=dict)  # database: [rows, embedded]
    rss_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    #: rows still waiting for their embedding at the source when the traffic stopped, and how
    #: long it took from then until everything was there
    embedding_backlog: int = 0
    settle_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    kept: str | None = None

    @property
    def delivered(self) -> int:
        return sum(a.delivered for a in self.agents)

    @property
    def expected(self) -> int:
        return sum(a.expected for a in self.agents)

    @property
    def duplicates(self) -> int:
        return sum(a.recorded_twice for a in self.agents)

    @property
    def undelivered(self) -> int:
        return self.expected - self.delivered + sum(a.recorded_twice for a in self.agents)

    @property
    def verdict(self) -> str:
        return "failed" if self.problems else "ok"

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(
            delivered=self.delivered,
            expected=self.expected,
            duplicates=self.duplicates,
            undelivered=self.undelivered,
            verdict=self.verdict,
        )
        return out


# -- the soak --------------------------------------------------------------------------------


class _Soak:
    def __init__(self, options: SoakOptions, progress: Progress) -> None:
        self.o, self.progress = options, progress
        self.report = SoakReport(
            options={
                k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(options).items()
            }
        )
        self.rng = random.Random(options.seed)
        self.listeners: dict[str, Process] = {}
        self.homes: dict[str, str] = {}  # agent -> database
        self.worker: Process | None = None
        self.started = 0.0

    # setup ---------------------------------------------------------------------------------

    def topology(self, root: Path) -> None:
        o = self.o
        self.source_cluster = Cluster(root / "source", version=o.version, ephemeral=True)
        self.replica_cluster = Cluster(root / "replicas", version=o.version, ephemeral=True)
        for cluster in (self.source_cluster, self.replica_cluster):
            if cluster.initialized:  # left by an earlier --keep: start afresh
                cluster.destroy()
            cluster.start()
        self.report.version = self.source_cluster.version
        self.source_db = "soak_source"
        self.replica_dbs = [f"soak_replica_{i}" for i in range(1, o.databases)]
        self.dsn = {self.source_db: self.source_cluster.conninfo(self.source_db)}
        self.dsn |= {db: self.replica_cluster.conninfo(db) for db in self.replica_dbs}
        install.install(self.dsn[self.source_db])
        topo = topology.load(root / "agentchat.toml")
        for db in self.replica_dbs:  # over TCP with a password, as between two servers
            self.progress(f"replicating {self.source_db} -> {db}")
            replication.add(
                self.source_cluster.tcp_conninfo(self.source_db),
                self.replica_cluster.tcp_conninfo(db),
                topology=topo,
                timeout=120,
            )

    def start_processes(self, logs: Path, embedder_url: str) -> None:
        databases = [self.source_db, *self.replica_dbs]
        for i in range(self.o.agents):
            name = f"agent{i + 1:02d}"
            db = databases[i % len(databases)]
            self.homes[name] = db
            dsn = _conninfo.make_conninfo(self.dsn[db], application_name=f"soak-{name}")
            self.listeners[name] = Process(
                ["listen", "--dsn", dsn, "--as", name, "--json", "--poll-interval", "2"],
                logs / f"{name}.jsonl",
            )
        self.worker = Process(
            [
                "embed-worker",
                "--dsn",
                self.dsn[self.source_db],
                "--embedder",
                "openai",
                "--base-url",
                embedder_url,
                "--model",
                "soak-stand-in",
                "--poll-interval",
                "2",
                "--quiet",
            ],
            logs / "embed-worker.out",
        )
        for process in [*self.listeners.values(), self.worker]:
            process.start()
        self.progress(f"starting {len(self.listeners)} listeners and the embedding worker")
        _wait(lambda: self._listening() >= len(self.listeners), 120, "every listener to start")

    def _listening(self) -> int:
        """Listeners connected (listen and work connection both open), across both clusters."""
        total = 0
        for cluster in (self.source_cluster, self.replica_cluster):
            with _db.connection(cluster.conninfo()) as conn:
                row = conn.execute(queries["soak_listeners"]).fetchone()
            total += int(row[0]) if row else 0
        for name, process in self.listeners.items():
            if not process.alive:
                raise ListenerExited(f"listener {name} exited: {process.last_error()}")
        return total

    # faults --------------------------------------------------------------------------------

    def inject(self, kind: str) -> str:
        occurrence = sum(1 for f in self.report.faults if f.kind == kind)
        if kind == "source-restart":
            mode = ("fast", "immediate")[occurrence % 2]
            self.source_cluster.restart(mode)
            return f"{mode} restart of the source's cluster"
        if kind == "walsender-kill":  # once they are back from the previous fault
            with _db.connection(self.dsn[self.source_db]) as conn:
                _wait(lambda: self._walsenders(conn) >= len(self.replica_dbs), 60,
                      "the walsenders to serve every replica")  # fmt: skip
                killed = len(conn.execute(queries["soak_kill_walsenders"]).fetchall())
            return f"{killed} walsender(s) terminated"
        if kind == "replica-restart":
            mode = ("immediate", "fast")[occurrence % 2]
            self.replica_cluster.restart(mode)
            return f"{mode} restart of the replicas' cluster"
        if kind == "listener-kill":
            name = self.rng.choice(sorted(self.listeners))
            self.listeners[name].kill9()
            self.listeners[name].start()
            return f"kill -9 of {name}'s listener, started again"
        assert self.worker is not None
        self.worker.kill9()
        self.worker.start()
        return "kill -9 of the embedding worker, started again"

    @staticmethod
    def _walsenders(conn: _db.Connection) -> int:
        row = conn.execute(queries["soak_walsenders"]).fetchone()
        return int(row[0]) if row else 0

    def schedule(self, seconds: float) -> list[tuple[float, str]]:
        """Faults spread evenly over the run, every kind at least once, at most one per 10 s."""
        count = max(len(FAULTS), int(seconds // 10))
        return [(seconds * (i + 1) / (count + 1), FAULTS[i % len(FAULTS)]) for i in range(count)]

    def traffic(self) -> None:
        seconds = self.o.minutes * 60
        writer = Writer(self.dsn[self.source_db], sorted(self.listeners), self.o.rate, self.o.seed)
        self.rss("start")
        self.started = time.monotonic()
        writer.start()
        try:
            for at, kind in self.schedule(seconds):
                while (left := at - (time.monotonic() - self.started)) > 0:
                    time.sleep(min(left, 1.0))
                    self._tick(writer, seconds)
                detail = self.inject(kind)
                self.report.faults.append(
                    Fault(round(time.monotonic() - self.started, 1), kind, detail)
                )
                self.progress(f"fault: {detail}")
            while time.monotonic() - self.started < seconds:
                time.sleep(min(1.0, seconds - (time.monotonic() - self.started)))
                self._tick(writer, seconds)
        finally:
            writer.stop()
        self.report.seconds = round(time.monotonic() - self.started, 1)
        self.report.send_errors = writer.errors
        for name, process in self.listeners.items():  # a listener that died by itself is a bug
            if not process.alive:
                self.report.problems.append(f"{name}'s listener exited: {process.last_error()}")
                process.start()

    def _tick(self, writer: Writer, seconds: float) -> None:
        elapsed = time.monotonic() - self.started
        self.progress(
            f"{elapsed:.0f}/{seconds:.0f} s: {writer.sent} sent"
            f" ({writer.sent / max(elapsed, 0.001):.0f}/s), {len(self.report.faults)}"
            " faults"
        )

    def rss(self, when: str) -> None:
        listeners = [p.rss() for p in self.listeners.values()]
        alive = [r for r in listeners if r] or [0]
        self.report.rss_kib[when] = {
            "listener_mean": int(statistics.mean(alive)),
            "listener_max": max(alive),
            "listeners_total": sum(alive),
            "worker": self.worker.rss() if self.worker else 0,
        }

    # counting ------------------------------------------------------------------------------

    def _rows(self, db: str) -> list[tuple[int, str, list[str]]]:
        with _db.connection(self.dsn[db]) as conn:
            rows = conn.execute(queries["soak_messages"]).fetchall()
        return [(int(i), str(s), list(m or [])) for i, s, m in rows]

    def _marks(self, db: str) -> dict[tuple[str, int], int]:
        with _db.connection(self.dsn[db]) as conn:
            rows = conn.execute(queries["soak_marks"]).fetchall()
        return {(str(a), int(c)): int(n) for a, c, n in rows}

    def count(self) -> dict[str, int]:
        """Gaps left now: per replica, missing messages; per agent, missing deliveries."""
        rows = self._rows(self.source_db)
        sent = {r[0] for r in rows}
        gaps = {db: len(sent - {r[0] for r in self._rows(db)}) for db in self.replica_dbs}
        self.report.sent, self.report.missing_on_replicas = len(rows), dict(gaps)
        marks = {db: self._marks(db) for db in self.dsn}
        cuts = self._cuts()
        self.report.agents = []
        for name, db in sorted(self.homes.items()):
            expected = {i for i, sender, to in rows if sender != name and {name, "*"} & set(to)}
            mine = {c: n for (a, c), n in marks[db].items() if a == name}
            printed = self.listeners[name].printed_ids()
            count = AgentCount(
                name,
                db,
                expected=len(expected),
                delivered=len(expected & set(mine)),
                recorded_twice=sum(n - 1 for n in mine.values()),
                handled_again=len(printed) - len(set(printed)),
                cuts=cuts.get(name, 0),
            )
            self.report.agents.append(count)
            gaps[name] = count.expected - count.delivered + len(set(mine) - expected)
        return {k: v for k, v in gaps.items() if v}

    def _cuts(self) -> dict[str, int]:
        """Per agent, the faults that could cut a delivery short: its cluster restarted, its
        listener killed."""
        cuts: dict[str, int] = {}
        for fault in self.report.faults:
            for name, db in self.homes.items():
                on_source = db == self.source_db
                hit = (
                    (fault.kind == "source-restart" and on_source)
                    or (fault.kind == "replica-restart" and not on_source)
                    or (fault.kind == "listener-kill" and f"{name}'s" in fault.detail)
                )
                cuts[name] = cuts.get(name, 0) + hit
        return cuts

    def settle(self) -> None:
        """Wait until every message, delivery and embedding is there, as long as the counts
        move, then judge. The embeddings are checked first: they are cheap to count, and the
        last to arrive."""
        self.progress("traffic stopped; waiting for every message and delivery")
        began = time.monotonic()
        self._embedded()
        source = self.report.embeddings.get(self.source_db, [0, 0])
        self.report.embedding_backlog = source[0] - source[1]
        last: object = None
        still_since = time.monotonic()
        while True:
            embedded = self._embedded()
            stalled = time.monotonic() - still_since > self.o.stall_timeout
            gaps = self.count() if embedded or stalled else {"embeddings": 1}
            if not gaps or stalled:
                break
            now = (gaps, sorted(self.report.embeddings.items()))
            if now != last:
                last, still_since = now, time.monotonic()
            done = {db: v[1] for db, v in self.report.embeddings.items()}
            self.progress(f"settling: embedded {done} of {self.report.sent}")
            time.sleep(1.0)
        self.report.settle_seconds = round(time.monotonic() - began, 1)
        self.rss("end")
        for db in self.replica_dbs:
            with _db.connection(self.dsn[db]) as conn:
                rows = conn.execute(queries["soak_subscriptions"]).fetchall()
            for name, enabled, running, apply_errors in rows:
                self.report.subscriptions.append(
                    {"database": db, "name": name, "enabled": enabled, "running": running,
                     "apply_errors": int(apply_errors)}
                )  # fmt: skip
        self.judge(gaps)

    def _embedded(self) -> bool:
        """Whether every database holds an embedding for every message of the source."""
        for db, dsn in self.dsn.items():
            with _db.connection(dsn) as conn:
                row = conn.execute(queries["soak_embeddings"]).fetchone()
            self.report.embeddings[db] = [int(row[0]), int(row[1])] if row else [0, 0]
        with _db.connection(self.dsn[self.source_db]) as conn:
            row = conn.execute(queries["soak_count"]).fetchone()
        self.report.sent = sent = int(row[0]) if row else 0
        return all(v == [sent, sent] for v in self.report.embeddings.values())

    def judge(self, gaps: dict[str, int]) -> None:
        r = self.report
        if any(r.missing_on_replicas.values()):
            r.problems.append(f"messages missing on replicas: {r.missing_on_replicas}")
        for a in r.agents:
            if a.delivered != a.expected or a.recorded_twice:
                r.problems.append(
                    f"{a.name}: {a.delivered} of {a.expected} delivered,"
                    f" {a.recorded_twice} recorded twice"
                )
            if a.handled_again > a.cuts:
                r.problems.append(
                    f"{a.name}: {a.handled_again} handled again after {a.cuts} cut(s)"
                )
        if gaps and not r.problems:
            r.problems.append(f"not settled: {gaps}")
        for sub in r.subscriptions:
            if not (sub["enabled"] and sub["running"]):
                r.problems.append(
                    f"subscription {sub['name']} on {sub['database']}: enabled"
                    f" {sub['enabled']}, apply worker running {sub['running']}"
                )
        if len(r.subscriptions) != len(self.replica_dbs):
            r.problems.append(
                f"{len(r.subscriptions)} subscriptions for {len(self.replica_dbs)} replicas"
            )
        unembedded = {db: v for db, v in r.embeddings.items() if v != [r.sent, r.sent]}
        if unembedded:
            r.problems.append(
                f"embeddings (rows, with a vector) not [{r.sent}, {r.sent}]: {unembedded}"
            )

    def stop(self) -> None:
        for name, process in self.listeners.items():
            code = process.stop()
            if code not in (0, None):
                self.report.problems.append(f"{name}'s listener exited {code} on SIGTERM")
        if self.worker is not None:
            self.worker.stop()


def run(options: SoakOptions, progress: Progress = quiet) -> SoakReport:
    """Run the soak; the report says what was sent, delivered, lost or duplicated."""
    options.check()
    if options.data_dir is None:
        root = Path(tempfile.mkdtemp(prefix="agentchat-soak-"))
        root.chmod(0o755)  # our own fresh directory: the server's user must traverse it
    else:
        root = options.data_dir.absolute() / "soak"
        root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    soak = _Soak(options, progress)
    try:
        soak.topology(root)
        with _db.connection(soak.dsn[soak.source_db]) as conn:
            dimension = schema.embedding_dimension(conn) or 384
        with stand_in_embedder(dimension) as url:
            soak.start_processes(logs, url)
            try:
                soak.traffic()
                soak.settle()
            finally:
                soak.stop()
    finally:
        if options.keep:
            soak.report.kept = str(root)
        else:
            for cluster in ("source_cluster", "replica_cluster"):
                with contextlib.suppress(AttributeError):
                    getattr(soak, cluster).destroy()
            shutil.rmtree(root, ignore_errors=True)
    return soak.report


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise errors.TimedOut(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
