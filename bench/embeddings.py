"""Embedding speed: agentchat's worker against the bare model, measured in the same run.

    .venv/bin/python bench/embeddings.py [--messages 2000] [--batch-size 32] [--version 18]

Starts a private cluster, installs a database and queues the messages (one transaction: the
embed trigger enqueues one memory_embeddings row each), then, for the same texts:

- raw: the bare all-MiniLM-L6-v2, ``LocalEmbedder()._model.encode(texts, batch_size=B,
  normalize_embeddings=True)`` on all the texts at once (the floor: the model alone);
- agentchat: ``Worker(dsn, embedder, batch_size=B).run(once=True)``, rows/s end to end (claim
  a batch FOR UPDATE SKIP LOCKED, embed it, write the vectors into the HNSW-indexed column,
  commit), with the same embedder object, so each claimed batch is one forward pass of B texts;
- HTTP: the same worker with the OpenAI-compatible embedder against tests/embedding_stub.py
  (in its own process, each request delayed by --http-delay to stand in for network latency),
  --concurrency 1 vs 4: what worker threads buy when the embedder is remote.

Each figure is the best of --rounds runs (raw and agentchat alternate, so a noisy neighbour
hurts both alike); between runs the queue is reset (embedding NULL) and vacuumed. Nothing here
is a pass/fail test: machines are noisy; compare the ratios. Needs the ``embeddings`` extra.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import torch

from agentchat import install
from agentchat.embeddings import LocalEmbedder, OpenAIEmbedder, Worker
from agentchat.server import Cluster

ROOT = Path(__file__).resolve().parent.parent
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

#: the stub in a child process (its JSON and vectors cost CPU: keep them off our GIL)
STUB = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.embedding_stub import Stub, serve
with serve(Stub(delay=float(sys.argv[2]))) as stub:
    print(stub.url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or dies)
"""


def texts(count: int) -> list[str]:
    """Chat-like messages of one or two sentences, all different."""
    rng = random.Random(0)
    return [
        f"{rng.choice(SERVICES).capitalize()} {rng.choice(EVENTS)} {rng.choice(DETAILS)};"
        f" ticket {1000 + i}, {rng.choice(AGENTS)} is looking into it."
        for i in range(count)
    ]


def queue(dsn: str, messages: list[str]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "SELECT send_agent_message(%s, %s, '{*}')",
            [(AGENTS[i % len(AGENTS)], text) for i, text in enumerate(messages)],
        )


def reset(dsn: str) -> None:
    """Queue every row again, and vacuum away the dead tuples and index entries of the run."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE memory_embeddings SET embedding = NULL, model = NULL, attempts = 0,"
            " last_error = NULL, next_attempt_at = NULL"
        )
        conn.execute("VACUUM (ANALYZE) memory_embeddings")


def queued_texts(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT content FROM memory_embeddings WHERE embedding IS NULL ORDER BY id"
        ).fetchall()
    return [str(r[0]) for r in rows]


def embedded(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM memory_embeddings WHERE embedding IS NOT NULL"
        ).fetchone()
    return int(row[0]) if row else 0


def timed_worker(worker: Worker, expected: int) -> float:
    """Rows/s of one ``run(once=True)`` (connect and dimension check included)."""
    start = time.perf_counter()
    stats = worker.run(once=True)
    seconds = time.perf_counter() - start
    if stats.embedded != expected or stats.failed:
        raise SystemExit(f"the worker embedded {stats.embedded}/{expected} ({stats.failed} failed)")
    return expected / seconds


def max_difference(dsn: str, expected: dict[str, list[float]], sample: int = 50) -> float:
    """Largest |component| difference between stored vectors and the raw model's."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT content, embedding::text FROM memory_embeddings ORDER BY id LIMIT %s",
            (sample,),
        ).fetchall()
    worst = 0.0
    for content, vector in rows:
        stored = [float(x) for x in str(vector).strip("[]").split(",")]
        raw = expected[str(content)]
        worst = max(worst, *(abs(a - b) for a, b in zip(stored, raw, strict=True)))
    return worst


def http_rates(dsn: str, count: int, batch: int, delay: float, rounds: int) -> dict[int, float]:
    stub = subprocess.Popen(
        [sys.executable, "-c", STUB, str(ROOT), str(delay)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert stub.stdout is not None
        url = stub.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit("the embedding stub did not start")
        rates = {1: 0.0, 4: 0.0}
        for _ in range(rounds):
            for concurrency in rates:
                reset(dsn)
                embedder = OpenAIEmbedder(url, "stub-model", dimension=384)
                worker = Worker(dsn, embedder, batch_size=batch, concurrency=concurrency)
                rates[concurrency] = max(rates[concurrency], timed_worker(worker, count))
                embedder.close()
        return rates
    finally:
        if stub.stdin is not None:
            stub.stdin.close()
        try:
            stub.wait(10)
        except subprocess.TimeoutExpired:
            stub.kill()
            stub.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--version", type=int, default=18)
    parser.add_argument(
        "--http-delay", type=float, default=0.02, help="seconds the stub waits per request"
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs per figure (the best counts)")
    args = parser.parse_args()
    count, batch = args.messages, args.batch_size

    started = time.perf_counter()
    embedder = LocalEmbedder(batch_size=batch)  # the worker's batches: one forward pass each
    load = time.perf_counter() - started
    # warm-up on texts of the real lengths (torch's CPU kernels are set up per input shape)
    embedder.embed(texts(4 * batch))

    root = Path(tempfile.mkdtemp(prefix="agentchat-bench-"))
    root.chmod(0o755)
    cluster = Cluster(root / "bench", version=args.version, ephemeral=True)
    cluster.start()
    try:
        dsn = cluster.conninfo("nova_memory")
        install.install(dsn)
        queue(dsn, texts(count))
        same = queued_texts(dsn)  # exactly what the worker will embed, in its order
        assert len(same) == count

        raw = ours = 0.0
        vectors = None
        for round_ in range(args.rounds):
            for which in ("raw", "agentchat") if round_ % 2 == 0 else ("agentchat", "raw"):
                if which == "raw":
                    start = time.perf_counter()
                    vectors = embedder._model.encode(
                        same, batch_size=batch, normalize_embeddings=True, show_progress_bar=False
                    )
                    raw = max(raw, count / (time.perf_counter() - start))
                else:
                    reset(dsn)
                    worker = Worker(dsn, embedder, batch_size=batch)
                    ours = max(ours, timed_worker(worker, count))
        assert embedded(dsn) == count and vectors is not None
        start = time.perf_counter()  # the fixed cost of a run: connect, check, listen, count
        Worker(dsn, embedder, batch_size=batch).run(once=True)
        fixed = time.perf_counter() - start
        by_text = {t: [float(x) for x in v] for t, v in zip(same, vectors, strict=True)}
        diff = max_difference(dsn, by_text)

        http = http_rates(dsn, count, batch, args.http_delay, args.rounds)
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)

    threads, cpus = torch.get_num_threads(), len(os.sched_getaffinity(0))
    print(f"PostgreSQL {args.version}, {count} messages, batch size {batch},"
          f" all-MiniLM-L6-v2 on CPU (torch {threads} threads, {cpus} CPUs),"
          f" best of {args.rounds} runs")  # fmt: skip
    print(f"model load {load:.1f} s; stored vectors vs raw: max |difference| {diff:.1e};"
          f" a run(once=True) on an empty queue takes {fixed:.2f} s (included below)")  # fmt: skip
    print(f"{'':40}{'per s':>10}{'ratio':>8}")
    print(f"{'raw model.encode (texts)':40}{raw:>10.0f}{1:>8.2f}")
    print(f"{'agentchat Worker, local (rows)':40}{ours:>10.0f}{ours / raw:>8.2f}")
    delay = f"{args.http_delay * 1000:.0f} ms/request"
    print(f"{f'HTTP stub {delay}, concurrency 1':40}{http[1]:>10.0f}{1:>8.2f}")
    print(f"{f'HTTP stub {delay}, concurrency 4':40}{http[4]:>10.0f}{http[4] / http[1]:>8.2f}")
    print("ratios: agentchat / raw for the local model; concurrency 4 / concurrency 1 for HTTP")


if __name__ == "__main__":
    main()
