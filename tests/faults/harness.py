"""What the fault suite runs beside the clusters: a writer, agents, a listener, a worker.

- :class:`Writer`: a thread posting a numbered stream at the source through the library's send
  path (``messaging.send_on`` on one connection), reconnecting after a fault. A send whose
  connection broke may still have committed, so the source's table, not the writer's list, is
  what was sent; the writer's confirmed ids must all be there.
- :class:`AgentThread`: a real :class:`agentchat.Agent` in a thread, with what its handler saw.
- :class:`Process`: a real ``agentchat`` subprocess (``listen``, ``embed-worker``) that can be
  killed with SIGKILL and started again, its stdout appended to one file across restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg

from agentchat import errors, messaging
from agentchat.agent import Agent
from agentchat.messaging import Message
from agentchat.server import Cluster
from tests.helpers import EXE, execute, wait_for


class Writer:
    """Post messages ``n=<i>`` from *sender* at *source*, *to* chosen per number, every *pause*."""

    def __init__(
        self,
        source: str,
        sender: str,
        to: Callable[[int], list[str]],
        pause: float = 0.01,
    ) -> None:
        self.source, self.sender, self.to, self.pause = source, sender, to, pause
        self.confirmed: list[int] = []  # ids the source returned
        self.failures = 0  # sends that raised (the connection broke, the server was down)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the writer did not stop"

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        number = 0
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.source, autocommit=True, connect_timeout=3)
                params = messaging.send_params(self.sender, f"n={number}", self.to(number))
                self.confirmed.append(messaging.send_on(conn, params))
                number += 1
            # the connect is psycopg's own; a send goes through agentchat's error boundary
            except (psycopg.OperationalError, errors.ConnectionFailed):
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.2)
                continue
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


class AgentThread:
    """``Agent(name, dsn).run(handler)`` in a thread; ``seen`` is every id the handler got."""

    def __init__(
        self,
        name: str,
        dsn: str,
        reply: Callable[[Message], str | None] = lambda m: None,
        send_dsn: str | None = None,
    ) -> None:
        self.agent = Agent(name, dsn, send_dsn=send_dsn, poll_interval=1)
        self.seen: list[int] = []
        self.error: BaseException | None = None
        self._reply = reply
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def name(self) -> str:
        return self.agent.name

    def start(self) -> AgentThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        def handler(msg: Message) -> str | None:
            self.seen.append(msg.id)
            return self._reply(msg)

        try:
            self.agent.run(handler)
        except BaseException as exc:  # reported by the test, which must fail on it
            self.error = exc

    def stop(self) -> None:
        self.agent.stop()
        self._thread.join(30)
        assert not self._thread.is_alive(), f"{self.name} did not stop"
        self.agent.close()
        assert self.error is None, f"{self.name} died: {self.error!r}"

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in Counter(self.seen).values())


class Process:
    """A long-running ``agentchat ARGS`` subprocess; stdout appended to *out* across restarts."""

    def __init__(self, args: list[str], out: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.out = args, out
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> Process:
        with self.out.open("ab") as out, self.out.with_suffix(".err").open("ab") as err:
            self.proc = subprocess.Popen(
                [EXE, *self.args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL, mid-stream: no cleanup, no rollback but the server's."""
        assert self.proc is not None and self.proc.poll() is None, self.stderr()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> int:
        """SIGTERM (stop after the current message) and the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def stderr(self) -> str:
        path = self.out.with_suffix(".err")
        return path.read_text(errors="replace") if path.exists() else ""

    def json_lines(self) -> list[dict[str, object]]:
        """The objects printed on stdout (``--json``), a line cut short by SIGKILL left out."""
        found = []
        for line in self.out.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def kill9_postmaster(cluster: Cluster) -> None:
    """SIGKILL the cluster's postmaster (its backends notice and exit), then start it again."""
    pid = cluster.pid()
    assert pid is not None, "the cluster is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: cluster.pid() is None, timeout=10, what="the postmaster gone")
    deadline = time.monotonic() + 30
    while True:  # refused while an orphaned backend still holds the shared memory
        try:
            cluster.start()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def terminate_walsenders(source: str) -> int:
    """``pg_terminate_backend`` every walsender serving *source*'s database; how many."""
    rows = execute(
        source,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE backend_type = 'walsender' AND datname = current_database()",
    )
    return len(rows)


def ids(conninfo: str) -> list[int]:
    return [int(str(r[0])) for r in execute(conninfo, "SELECT id FROM agent_chat ORDER BY id")]


def addressed(source: str) -> Callable[[str], set[int]]:
    """Who should get what: the source's rows addressed to an agent (name or ``*``), not its own."""
    rows = execute(source, "SELECT id, sender, mentions FROM agent_chat")

    def expected(agent: str) -> set[int]:
        return {
            int(str(i))
            for i, sender, mentions in rows
            if sender != agent and ({agent, "*"} & set(mentions or []))
        }

    return expected


def subscriptions(replica: str) -> list[tuple[str, bool, int | None]]:
    """(name, enabled, apply worker pid) of each subscription of the replica's database."""
    rows = execute(
        replica,
        "SELECT s.subname, s.subenabled, st.pid FROM pg_subscription s"
        " LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL"
        " WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return [(str(n), bool(e), int(str(p)) if p is not None else None) for n, e, p in rows]
