"""What ``agentchat soak`` runs beside its clusters: a stand-in HTTP embedder (deterministic
vectors), the ``agentchat listen`` and ``embed-worker`` processes it kills and restarts (with
their memory, VmRSS), and the writer threads posting mixed traffic at the source, reconnecting
after each fault. :mod:`agentchat.soak` schedules the faults and counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from agentchat import _db, errors, messaging

# -- the stand-in embedder -------------------------------------------------------------------


def _vector(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector for *text* (the same text, the same vector)."""
    digest = hashlib.sha256(text.encode()).digest()
    rng = random.Random(digest)
    raw = [rng.gauss(0, 1) for _ in range(dimension)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


@contextlib.contextmanager
def stand_in_embedder(dimension: int) -> Iterator[str]:
    """An OpenAI-compatible ``/v1/embeddings`` on 127.0.0.1; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": _vector(t, dimension)}
                for i, t in enumerate(texts)
            ]
            payload = json.dumps({"object": "list", "data": data, "model": body.get("model")})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            # a worker that gave up on a slow answer (its timeout, a restart) closed the
            # connection: nothing to say about it on stderr
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="embedder", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- processes -------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """A live process's resident memory (VmRSS), in KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Process:
    """An ``agentchat`` subprocess; stdout appended to *out* across restarts."""

    def __init__(self, args: list[str], out: Path) -> None:
        self.args, self.out = args, out
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("AGENTCHAT_DSN", "AGENTCHAT_CONFIG", "OPENAI_API_KEY")
        }
        self.env["PYTHONUNBUFFERED"] = "1"

    def start(self) -> None:
        command = [sys.executable, "-c", "from agentchat.cli import entry_point; entry_point()"]
        with self.out.open("ab") as out, self.out.with_suffix(".err").open("ab") as err:
            self.proc = subprocess.Popen(
                [*command, *self.args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        return rss_kib(self.proc.pid) if self.alive and self.proc else 0

    def kill9(self) -> None:
        if self.proc is not None and self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then its exit code (SIGKILL after 30 s)."""
        if self.proc is None:
            return None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def last_error(self) -> str:
        lines = self.out.with_suffix(".err").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def printed_ids(self) -> list[int]:
        """The message ids of the ``--json`` lines printed (a line cut short by a kill is not)."""
        found = []
        for line in self.out.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                found.append(int(json.loads(line)["id"]))
        return found


# -- the writer ------------------------------------------------------------------------------


class Writer:
    """Mixed traffic at the source, *rate* messages per second in all, from *connections*
    threads with a connection each (one connection waits on every round trip)."""

    def __init__(
        self, source: str, names: list[str], rate: float, seed: int, connections: int = 4
    ) -> None:
        self.source, self.names = source, names
        self.connections = max(1, min(connections, int(rate // 20) or 1))
        self.interval = self.connections / rate
        self.seed = seed
        self.sent = 0
        self.errors = 0
        self.recent: list[tuple[int, str, list[str]]] = []  # (id, sender, to) for replies
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"soak-writer-{i}", daemon=True)
            for i in range(self.connections)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _next(self, rng: random.Random, number: int) -> dict[str, Any]:
        names = self.names
        roll = rng.random()
        with self._lock:
            recent = list(self.recent)
        if roll < 0.2 and recent:  # a reply to a recent message, from one it reached
            msg_id, sender, to = rng.choice(recent)
            who = rng.choice([n for n in to if n not in ("*", sender)] or
                             [n for n in names if n != sender])  # fmt: skip
            return messaging.send_params(who, f"re #{msg_id} ({number})", [sender], "general",
                                         msg_id)  # fmt: skip
        sender = rng.choice(names)
        if roll < 0.3:  # a broadcast
            to = ["*"]
        else:  # a direct message to one or two agents
            to = rng.sample([n for n in names if n != sender], k=1 + (roll > 0.85))
        channel = "ops" if roll > 0.95 else "general"
        return messaging.send_params(sender, f"soak {number}", to, channel, None)

    def _run(self, index: int) -> None:
        rng = random.Random(f"{self.seed}/{index}")
        conn: psycopg.Connection[Any] | None = None
        due = time.monotonic()
        number = index
        while not self._stop.is_set():
            try:
                with _db.wrap_errors(self.source):
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.source, autocommit=True, connect_timeout=5)
                    params = self._next(rng, number)
                    msg_id = messaging.send_on(conn, params)
                number += self.connections
                with self._lock:
                    self.sent += 1
                    self.recent = [*self.recent[-49:], (msg_id, params["sender"],
                                                        params["mentions"])]  # fmt: skip
            except errors.DatabaseError:  # a fault: the server went away; try again shortly
                with self._lock:
                    self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.2)
                due = time.monotonic()
                continue
            due = max(due + self.interval, time.monotonic() - 0.5)  # at most 0.5 s to catch up
            self._stop.wait(max(0.0, due - time.monotonic()))
        if conn is not None:
            conn.close()
