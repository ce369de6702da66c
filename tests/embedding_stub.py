"""A local OpenAI-compatible embedding endpoint for tests: real HTTP on 127.0.0.1.

Vectors are deterministic (seeded by the text), so the same text always gets the same vector.
It counts how often each text was embedded, fails with HTTP 500 for texts containing
``poison`` (always) and for the first ``fail_first`` requests, and can be slowed down.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def stub_vector(text: str, dimension: int) -> list[float]:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.gauss(0, 1) for _ in range(dimension)]
    norm = sum(x * x for x in raw) ** 0.5
    return [x / norm for x in raw]


@dataclass
class Stub:
    dimension: int = 384
    fail_first: int = 0
    delay: float = 0.0
    requests: int = 0
    embedded: Counter[str] = field(default_factory=Counter)
    auth: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, body: dict[str, Any], auth: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests += 1
            self.auth.append(auth)
            if self.requests <= self.fail_first:
                return 500, {"error": {"message": "stub: failing on purpose"}}
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if any("poison" in t for t in texts):
            return 500, {"error": {"message": "stub: poisoned input"}}
        if self.delay:
            threading.Event().wait(self.delay)
        with self.lock:
            self.embedded.update(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": stub_vector(t, self.dimension)}
            for i, t in enumerate(texts)
        ]
        return 200, {"object": "list", "data": data, "model": body.get("model")}


@contextmanager
def serve(stub: Stub | None = None) -> Iterator[Stub]:
    """Run *stub* on a free port of 127.0.0.1; ``stub.url`` is its base URL (``.../v1``)."""
    running = stub or Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            if self.path != "/v1/embeddings":
                status, answer = 404, {"error": {"message": f"no route {self.path}"}}
            else:
                status, answer = running.answer(body, self.headers.get("authorization"))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    running.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
