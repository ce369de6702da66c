"""Embeddings: the worker's rows/s against the bare model's ``embed`` of the same texts.

N chat-like messages (2,000; ``quick``: 96) are sent to a lab database (the embed trigger
queues a row for each), then, for the same texts, in the order the worker claims them:

- floor: the bare all-MiniLM-L6-v2, ``LocalEmbedder(batch_size=32).embed(texts)`` over all the
  texts (tokens, the ONNX model, pooling), in a thread as the worker's calls are: the model
  alone, nothing stored;
- product: ``Worker(dsn, embedder).run(once=True)`` end to end (connect, check the dimension,
  claim a batch ``FOR UPDATE SKIP LOCKED`` of the worker's default size,
  :data:`~agentchat.embeddings.worker.BATCH_SIZE` rows, embed it, write its vectors in binary
  into the HNSW-indexed column, commit; until the queue is empty), with the same embedder
  object, so each claimed batch is forward passes of 32 texts of like length.

Each is run ``rounds`` times (3; quick: 2), alternating which goes first so a noisy neighbour
hurts both alike, and the best of each counts; between runs the queue is reset and vacuumed.
Figures (``embeddings_`` + ...): ``worker_per_s`` with its floor (``worker_floor_per_s``, raw
encode) and ``worker_ratio``; ``worker_model_share`` (of the best run's seconds, the share spent
inside the model's ``embed``: the rest is the worker's own cost not hidden behind the model, a
figure a busy machine disturbs less than the ratio); ``rows``; ``model_load_s``;
``run_fixed_s`` (a ``run(once=True)`` on an empty queue: connect, check, count);
``stored_max_abs_diff`` (the largest component difference between a stored vector and the raw
model's for the same text: batches of other lengths pad differently, so it is small, not 0).
Needs the ``embeddings`` extra.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from agentchat import _db, errors
from agentchat.bench.lab import Lab, Progress
from agentchat.bench.report import Figures
from agentchat.embeddings.embedders import Embedder
from agentchat.embeddings.vectors import register
from agentchat.sql import queries

T = TypeVar("T")

BATCH = 32
AGENTS = ["nova", "sage", "graybeard", "atlas", "echo"]
SERVICES = ["billing", "search", "the login page", "the nightly backup", "the build", "ingest"]
EVENTS = ["failed", "recovered", "was slow", "was deployed", "needs a review", "ran out of disk"]
DETAILS = [
    "after the schema migration timed out",
    "because the cache was cold",
    "once the new index finished building",
    "while traffic from Europe peaked",
    "so I rolled back the last change",
    "and the on-call engineer was paged",
]


def texts(count: int) -> list[str]:
    """Chat-like messages of one or two sentences, all different, the same on every run."""
    rng = random.Random(0)
    return [
        f"{rng.choice(SERVICES).capitalize()} {rng.choice(EVENTS)} {rng.choice(DETAILS)};"
        f" ticket {1000 + i}, {rng.choice(AGENTS)} is looking into it."
        for i in range(count)
    ]


class Timed:
    """An embedder's stand-in that adds up the seconds spent in its ``embed``."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder, self.seconds = embedder, 0.0
        self.model, self.dimension = embedder.model, embedder.dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        start = time.perf_counter()
        try:
            return self.embedder.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start


def in_thread(work: Callable[[], T]) -> tuple[float, T]:
    """*work*'s seconds and result, run in a thread of its own, as the worker runs the model
    (on a busy machine, the model in the main thread was measured up to twice as slow as in a new
    thread: the floor must not be the slower of the two)."""
    out: list[tuple[float, T]] = []
    failed: list[BaseException] = []

    def timed() -> None:
        start = time.perf_counter()
        try:
            result = work()
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)
            return
        out.append((time.perf_counter() - start, result))

    thread = threading.Thread(target=timed, name="bench-raw-encode")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return out[0]


def run(lab: Lab, quick: bool, progress: Progress) -> Figures:
    from agentchat.embeddings import LocalEmbedder, Worker

    count, rounds = (96, 2) if quick else (2000, 3)
    progress("embeddings: loading all-MiniLM-L6-v2")
    start = time.perf_counter()
    embedder = LocalEmbedder(batch_size=BATCH)  # forward passes of 32, the floor's and the worker's
    load = time.perf_counter() - start
    # warm-up on texts of the real lengths (the runtime sets up its kernels per input shape)
    embedder.embed(texts(4 * BATCH))

    dsn = lab.database("bench_embeddings")
    with _db.connection(dsn) as conn:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                queries["bench_embed_queue"],
                [(AGENTS[i % len(AGENTS)], text) for i, text in enumerate(texts(count))],
            )
        same = [str(r[0]) for r in conn.execute(queries["bench_embed_queued"]).fetchall()]
    if len(same) != count:
        raise errors.AgentchatError(f"{len(same)} rows queued for {count} messages")

    def reset() -> None:
        with _db.connection(dsn) as conn:
            conn.execute(queries["bench_embed_reset"])
            conn.execute(queries["bench_vacuum"])

    raw = ours = share = 0.0
    vectors = None
    for round_ in range(rounds):
        order = ("raw", "worker") if round_ % 2 == 0 else ("worker", "raw")
        for which in order:
            progress(f"embeddings: round {round_ + 1}/{rounds}, {which}, {count} texts")
            if which == "raw":
                seconds, vectors = in_thread(lambda: embedder.embed(same))
                raw = max(raw, count / seconds)
            else:
                if round_:
                    reset()
                timed = Timed(embedder)
                start = time.perf_counter()
                stats = Worker(dsn, timed).run(once=True)
                seconds = time.perf_counter() - start
                if stats.embedded != count or stats.failed:
                    raise errors.AgentchatError(
                        f"the worker embedded {stats.embedded} of {count} rows"
                        f" ({stats.failed} failed)"
                    )
                if count / seconds > ours:
                    ours, share = count / seconds, timed.seconds / seconds
    assert vectors is not None

    start = time.perf_counter()  # the fixed cost of a run, included in the rate above
    Worker(dsn, embedder).run(once=True)
    fixed = time.perf_counter() - start

    by_text = dict(zip(same, vectors, strict=True))
    worst = 0.0
    with _db.connection(dsn) as conn:
        register(conn)
        for content, stored in conn.execute(queries["bench_embed_stored"], (100,)).fetchall():
            raw_vector = by_text[str(content)]
            diffs = (abs(a - b) for a, b in zip(stored.to_list(), raw_vector, strict=True))
            worst = max(worst, *diffs)

    figures = Figures()
    figures.add("embeddings_rows", count)
    figures.compare("embeddings_worker_per_s", ours, raw)
    figures.add("embeddings_worker_model_share", share)
    figures.add("embeddings_model_load_s", load)
    figures.add("embeddings_run_fixed_s", fixed)
    figures.add("embeddings_stored_max_abs_diff", worst)
    return figures
