"""Search: p50/p99 of ``agentchat search``'s query over N embedded messages, HNSW against an
exact scan, and recall@10 of HNSW against the exact answer.

N messages (100,000; ``quick``: 2,000) are written to a lab database as agents write them (the
embed trigger queues a row for each), and given deterministic vectors from a seeded generator
instead of the model (embedding 100,000 texts would take minutes; the search does not care where
a vector came from). The vectors are built to look like sentence embeddings: unit length, with
most of their variance in a few dozen directions (:func:`synthetic`), since real embeddings lie
near a low-dimensional surface and HNSW's recall depends on it (on isotropic random vectors,
nothing is near anything and every index does badly). The HNSW index is dropped for the load and
built once with the product's parameters (read from the installed index), as a bulk load would.

Each query vector (from the same generator, none of them stored) is searched through
:func:`agentchat.embeddings.search.nearest`, the product's search (settings and query in one
transaction, on one connection, vectors in binary), top 10, with the product's ``ef_search``;
the exact scan runs the same query with index scans off. recall@10 is the mean share of the
exact top 10 that HNSW returns. Figures (``search_`` + ...): ``hnsw_p50_ms``, ``hnsw_p99_ms``,
``exact_p50_ms``, ``exact_p99_ms``, ``hnsw_recall_at_10``, ``hnsw_speedup_ratio`` (exact p50 /
HNSW p50), ``rows``, ``hnsw_ef_search``, ``index_build_s``, and recall at a few other
``ef_search`` values (``hnsw_recall_at_10_ef<N>``) to show the margin.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from psycopg import sql

from agentchat import _db, errors
from agentchat.bench.lab import Lab, Progress
from agentchat.bench.report import Figures
from agentchat.embeddings.search import EF_SEARCH, nearest
from agentchat.embeddings.vectors import Vector, register
from agentchat.sql import queries

#: the vectors' dimension (all-MiniLM-L6-v2's, agentchat's default) and the results per search
DIMENSION, TOP = 384, 10
#: directions that carry most of a synthetic vector's variance, and the noise on the others
INTRINSIC, NOISE = 32, 0.15
#: other ef_search values whose recall is reported beside the product's
EF_SWEEP = (40, 64, 100, 160)


def synthetic(count: int, seed: int) -> Any:
    """*count* unit vectors of :data:`DIMENSION` components, deterministic for *seed*: a random
    linear image of :data:`INTRINSIC`-dimension Gaussian points plus a little isotropic noise
    (the basis is the same for every seed, so data and queries share their space)."""
    import numpy as np

    basis = np.random.default_rng(15).standard_normal((INTRINSIC, DIMENSION))
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((count, INTRINSIC)) @ basis
    points /= np.sqrt(INTRINSIC)
    points += NOISE * rng.standard_normal((count, DIMENSION))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def percentile(samples: list[float], share: float) -> float:
    """The *share* percentile (0..1) of *samples*, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run(lab: Lab, quick: bool, progress: Progress) -> Figures:
    try:
        import numpy  # noqa: F401  # the vectors' generator
    except ImportError as exc:
        raise errors.ConfigError(
            "the search benchmark needs numpy", fix="pip install 'agentchat[embeddings]'"
        ) from exc
    rows = 2_000 if quick else 100_000
    timed = 100 if quick else 1_000  # HNSW searches timed
    exact_count = 50 if quick else 100  # exact scans (each reads every vector)
    dsn = lab.database("bench_search")
    figures = Figures()
    with _db.connection(dsn) as conn:
        build = load(conn, rows, progress)
        probes = [Vector(v) for v in synthetic(max(timed, exact_count), seed=2)]

        progress(f"search: {timed} HNSW searches")
        for vector in probes[:10]:  # warm the index's pages and the plan
            nearest(conn, vector, limit=TOP)
        hnsw_ms, hnsw_ids = [], []
        for vector in probes[:timed]:
            start = time.perf_counter()
            hits = nearest(conn, vector, limit=TOP)
            hnsw_ms.append((time.perf_counter() - start) * 1000)
            hnsw_ids.append([h.message.id for h in hits])

        progress(f"search: {exact_count} exact scans")
        exact_ms, exact_ids = [], []
        for vector in probes[:exact_count]:
            start = time.perf_counter()
            with conn.transaction():
                conn.execute(queries["bench_search_exact"])
                hits = nearest(conn, vector, limit=TOP)
            exact_ms.append((time.perf_counter() - start) * 1000)
            exact_ids.append([h.message.id for h in hits])

        def recall(found: list[list[int]]) -> float:
            return statistics.fmean(
                len(set(f) & set(e)) / len(e) for f, e in zip(found, exact_ids, strict=False)
            )

        figures.add("search_rows", rows)
        figures.add("search_hnsw_p50_ms", percentile(hnsw_ms, 0.50))
        figures.add("search_hnsw_p99_ms", percentile(hnsw_ms, 0.99))
        figures.add("search_exact_p50_ms", percentile(exact_ms, 0.50))
        figures.add("search_exact_p99_ms", percentile(exact_ms, 0.99))
        figures.add(
            "search_hnsw_speedup_ratio", percentile(exact_ms, 0.5) / percentile(hnsw_ms, 0.5)
        )
        figures.add("search_hnsw_recall_at_10", recall(hnsw_ids[:exact_count]))
        figures.add("search_hnsw_ef_search", max(EF_SEARCH, TOP))
        figures.add("search_index_build_s", build)
        for ef in EF_SWEEP:
            found = [
                [h.message.id for h in nearest(conn, v, limit=TOP, ef=ef)]
                for v in probes[:exact_count]
            ]
            figures.add(f"search_hnsw_recall_at_10_ef{ef}", recall(found))
    return figures


def load(conn: _db.Connection, rows: int, progress: Progress) -> float:
    """*rows* messages with synthetic vectors, the HNSW index rebuilt over them; the seconds the
    index took to build."""
    progress(f"search: writing {rows} messages")
    conn.execute(queries["bench_search_messages"], (rows,))
    ids = [int(r[0]) for r in conn.execute(queries["bench_search_queue_ids"]).fetchall()]
    options = conn.execute(queries["bench_search_index_options"]).fetchone()
    params = dict(o.split("=", 1) for o in ((options[0] if options else None) or []))
    m, ef_construction = int(params.get("m", 16)), int(params.get("ef_construction", 64))
    conn.execute(queries["bench_search_drop_index"])
    progress(f"search: loading {rows} vectors")
    vectors = synthetic(len(ids), seed=1)
    vector_oid = register(conn).oid
    conn.execute(queries["bench_search_vectors_table"])
    with conn.cursor().copy(queries["bench_search_copy_vectors"]) as copy:
        copy.set_types(["int8", vector_oid])
        for one_id, vector in zip(ids, vectors, strict=True):
            copy.write_row((one_id, Vector(vector)))
    conn.execute(queries["bench_search_store_vectors"])
    conn.execute(queries["bench_vacuum"])
    progress(f"search: building the HNSW index (m {m}, ef_construction {ef_construction})")
    conn.execute(queries["bench_search_build_settings"])
    start = time.perf_counter()
    conn.execute(
        queries.compose(
            "bench_search_create_index",
            m=sql.Literal(m),
            ef_construction=sql.Literal(ef_construction),
        )
    )
    return time.perf_counter() - start
