"""Embeddings on real clusters: the real model, concurrent workers, failures, replicas, search."""

from __future__ import annotations

import json
import math
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
import pytest

from agentchat import errors, health, install, messaging, replication
from agentchat.embeddings import (
    EmbeddingMode,
    LocalEmbedder,
    OpenAIEmbedder,
    Worker,
    embedding_mode,
    search,
)
from agentchat.embeddings.search import nearest
from agentchat.embeddings.vectors import Vector, register, to_vector
from agentchat.server import Cluster
from tests.embedding_stub import Stub, serve, stub_vector
from tests.helpers import EXE, execute, wait_for

PENDING = "SELECT count(*) FROM memory_embeddings WHERE embedding IS NULL"
EMBEDDED = "SELECT count(*) FROM memory_embeddings WHERE embedding IS NOT NULL"


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for this module (a few seconds)."""
    return LocalEmbedder()


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serve() as running:
        yield running


def stub_embedder(stub: Stub) -> OpenAIEmbedder:
    return OpenAIEmbedder(stub.url, "stub-model", backoff=0.01, dimension=stub.dimension)


def mode_of(conninfo: str) -> EmbeddingMode:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return embedding_mode(conn)


def count(conninfo: str, query: str) -> int:
    [(n,)] = execute(conninfo, query)
    return int(str(n))


@dataclass
class Topo:
    source: str
    replica: str  # on another cluster ("another host")


@pytest.fixture
def topo(installed_db: str, remote_db: str) -> Topo:
    replication.add(installed_db, remote_db, timeout=60)
    return Topo(installed_db, remote_db)


def test_the_real_model_ranks_a_paraphrase_above_unrelated_messages(
    installed_db: str, local_embedder: LocalEmbedder
) -> None:
    texts = [
        "The deploy to production failed because the database migration timed out.",
        "Lunch is at noon in the big meeting room.",
        "I adopted a kitten from the shelter this weekend.",
        "The quarterly sales numbers look strong in Europe.",
    ]
    ids = [messaging.send(installed_db, sender="nova", message=t, to=["*"]) for t in texts]
    stats = Worker(installed_db, local_embedder).run(once=True)
    assert stats.embedded == 4 and stats.failed == 0
    assert execute(
        installed_db, "SELECT DISTINCT vector_dims(embedding), model FROM memory_embeddings"
    ) == [(384, "all-MiniLM-L6-v2")]
    hits = search(
        installed_db, "our release broke since the schema change took too long", local_embedder
    )
    assert hits[0].message.id == ids[0]
    assert hits[0].score > hits[1].score + 0.1
    assert len(hits) == 4 and hits == sorted(hits, key=lambda h: -h.score)
    cats = search(installed_db, "a new pet cat", local_embedder, limit=1)
    assert [h.message.id for h in cats] == [ids[2]]


def test_search_goes_through_the_hnsw_index(installed_db: str, stub: Stub) -> None:
    execute(installed_db, "INSERT INTO agent_chat (sender, message, mentions)"
            " SELECT 'nova', 'note ' || g, '{*}' FROM generate_series(1, 300) g")  # fmt: skip
    Worker(installed_db, stub_embedder(stub), batch_size=100).run(once=True)
    hits = search(installed_db, "note 17", stub_embedder(stub), limit=3)
    assert hits[0].message.message == "note 17" and hits[0].score == pytest.approx(1.0)
    # 300 rows are few enough that, once autovacuum has analysed them, a sequential scan costs
    # less: take it off the table so the plan shows whether the index can serve the ordering
    with psycopg.connect(installed_db) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN SELECT source_id FROM memory_embeddings"
            " ORDER BY embedding <=> %s::vector LIMIT 3",
            (str(stub_vector("note 17", 384)),),
        ).fetchall()
    assert any("memory_embeddings_embedding_idx" in str(line[0]) for line in plan), plan


class Counting:
    """An in-process embedder: the stub's deterministic vector per text (or the one given in
    *fixed*), counting what it embeds and the batch sizes it was asked for."""

    model = "counting"
    dimension = 384

    def __init__(self, fixed: dict[str, list[float]] | None = None) -> None:
        self.fixed = fixed or {}
        self.embedded: Counter[str] = Counter()
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        self.embedded.update(texts)
        return [self.fixed.get(t) or stub_vector(t, self.dimension) for t in texts]


def float4(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def test_vectors_round_trip_exactly_in_binary(installed_db: str) -> None:
    """What the worker sends in binary is stored bit for bit: read back in binary, and as the
    server prints it, each component is the float4 of what the embedder gave (extremes too)."""
    edge = [0.1, -0.0, 1e-45, 3.4e38, -3.4e38, 1 / 3, 2**-126] + [0.5] * 377
    embedder = Counting({"edge": edge})
    messaging.send(installed_db, sender="nova", message="edge", to=["*"])
    messaging.send(installed_db, sender="nova", message="plain", to=["*"])
    assert Worker(installed_db, embedder).run(once=True).embedded == 2
    with psycopg.connect(installed_db, autocommit=True) as conn:
        register(conn)
        rows: dict[str, Vector] = dict(
            conn.execute("SELECT content, embedding FROM memory_embeddings").fetchall()
        )
        text: dict[str, str] = dict(
            conn.execute("SELECT content, embedding::text FROM memory_embeddings").fetchall()
        )
    for content, given in (("edge", edge), ("plain", stub_vector("plain", 384))):
        expected = [float4(x) for x in given]
        assert rows[content].to_list() == expected
        assert [float4(float(x)) for x in str(text[content]).strip("[]").split(",")] == expected
    assert math.copysign(1.0, rows["edge"].to_list()[1]) == -1.0


def test_the_pipelined_worker_stores_each_batch_on_its_own_rows_exactly_once(
    installed_db: str,
) -> None:
    """Batches overlap (one written while the next is claimed and embedded, on two
    connections): every row is embedded once, with its own text's vector, in every batch."""
    execute(installed_db, "INSERT INTO agent_chat (sender, message) SELECT 'nova', 'row ' || g"
            " FROM generate_series(1, 103) g")  # fmt: skip
    embedder = Counting()
    stats = Worker(installed_db, embedder, batch_size=4).run(once=True)
    assert (stats.embedded, stats.failed, stats.batches, stats.due) == (103, 0, 26, 0)
    assert embedder.calls == [4] * 25 + [3]
    assert len(embedder.embedded) == 103 and set(embedder.embedded.values()) == {1}
    with psycopg.connect(installed_db, autocommit=True) as conn:
        register(conn)
        stored = conn.execute("SELECT content, embedding, model FROM memory_embeddings").fetchall()
    assert len(stored) == 103
    for content, vector, model in stored:
        assert model == "counting"
        assert vector.to_list() == [float4(x) for x in stub_vector(str(content), 384)], content


def test_search_results_are_unchanged_by_binary_vectors_and_long_lived_connections(
    installed_db: str, stub: Stub
) -> None:
    """search() (binary query vector) returns exactly what an exact scan with the vector as
    text returns, scores included; and nearest() on one connection, past the point where
    psycopg prepares its statements, keeps returning the same hits."""
    execute(installed_db, "INSERT INTO agent_chat (sender, message, mentions)"
            " SELECT 'nova', 'note ' || g, '{*}' FROM generate_series(1, 300) g")  # fmt: skip
    Worker(installed_db, stub_embedder(stub), batch_size=100).run(once=True)
    exact = (
        "SELECT c.id, 1 - (e.embedding <=> %s::vector) FROM memory_embeddings e"
        " JOIN agent_chat c ON c.id = e.source_id ORDER BY e.embedding <=> %s::vector LIMIT 5"
    )
    for query in ("note 17", "note 250", "something else entirely"):
        hits = search(installed_db, query, stub_embedder(stub), limit=5)
        as_text = str(stub_vector(query, 384))
        with psycopg.connect(installed_db) as conn:
            conn.execute("SET enable_indexscan = off")
            truth = conn.execute(exact.encode(), (as_text, as_text)).fetchall()
        assert [h.message.id for h in hits] == [int(r[0]) for r in truth], query
        assert [h.score for h in hits] == pytest.approx([float(r[1]) for r in truth], abs=1e-6)
    vector = to_vector(stub_vector("note 42", 384))
    with psycopg.connect(installed_db, autocommit=True) as conn:
        register(conn)
        runs = [[(h.message.id, h.score) for h in nearest(conn, vector, limit=3)] for _ in range(8)]
    assert runs[0][0][1] == pytest.approx(1.0)
    assert all(run == runs[0] for run in runs)


@pytest.mark.volume
def test_two_concurrent_workers_embed_each_of_2000_rows_exactly_once(
    installed_db: str, hub: Cluster, stub: Stub
) -> None:
    execute(installed_db, "INSERT INTO agent_chat (sender, message) SELECT 'nova', 'message ' || g"
            " FROM generate_series(1, 2000) g")  # fmt: skip
    assert count(installed_db, PENDING) == 2000
    stub.delay = 0.02  # both workers stay busy long enough to overlap
    command = [EXE, "embed-worker", "--dsn", installed_db, "--once", "--json", "--batch-size", "20",
               "--embedder", "openai", "--base-url", stub.url, "--model", "stub-model"]  # fmt: skip
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=180) for w in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    assert all(r["embedded"] > 0 for r in reports), reports  # both did part of the work
    assert sum(r["embedded"] for r in reports) == 2000
    del stub.embedded["dimension probe"]  # each worker asks the endpoint its dimension once
    assert len(stub.embedded) == 2000 and set(stub.embedded.values()) == {1}  # once each
    assert count(installed_db, PENDING) == 0
    [(content, vector)] = execute(
        installed_db,
        "SELECT content, embedding::text FROM memory_embeddings WHERE content = 'message 1234'",
    )
    assert json.loads(str(vector)) == pytest.approx(stub_vector(str(content), 384), abs=1e-6)


def test_http_500_is_retried_and_recorded_while_other_rows_proceed(
    installed_db: str, stub: Stub
) -> None:
    stub.fail_first = 1  # one transient 500: the embedder's own retry absorbs it
    good = [messaging.send(installed_db, sender="nova", message=f"fine {i}") for i in range(30)]
    bad = [messaging.send(installed_db, sender="nova", message=f"poison {i}") for i in range(2)]
    worker = Worker(installed_db, stub_embedder(stub), batch_size=8, retry_base=60)
    stats = worker.run(once=True)
    assert stats.embedded == 30 and stats.failed == 2 and stats.retrying == 2
    assert stub.requests > 4  # the first 500 was retried; the poisoned batch went row by row
    rows = execute(
        installed_db,
        "SELECT source_id, attempts, last_error, next_attempt_at > now() + interval '50 s'"
        " FROM memory_embeddings WHERE embedding IS NULL ORDER BY source_id",
    )
    assert [(r[0], r[1], r[3]) for r in rows] == [(i, 1, True) for i in bad]
    assert all("HTTP 500" in str(r[2]) and "poisoned" in str(r[2]) for r in rows)
    assert count(installed_db, EMBEDDED) == len(good)
    # not due yet: a second run leaves them alone
    assert Worker(installed_db, stub_embedder(stub), retry_base=60).run(once=True).failed == 0
    # once due, a failure is counted again and the wait doubles
    execute(
        installed_db, "UPDATE memory_embeddings SET next_attempt_at = now() WHERE embedding IS NULL"
    )
    Worker(installed_db, stub_embedder(stub), retry_base=60).run(once=True)
    rows = execute(
        installed_db,
        "SELECT attempts, next_attempt_at > now() + interval '110 s' FROM memory_embeddings"
        " WHERE embedding IS NULL",
    )
    assert rows == [(2, True), (2, True)]


def test_a_dimension_mismatch_is_a_clear_error(db: str, stub: Stub) -> None:
    install.install(db, dimension=8)
    messaging.send(db, sender="nova", message="hello")
    with pytest.raises(errors.ConfigError, match=r"gives 384-dimension vectors, but .* for 8"):
        Worker(db, stub_embedder(stub)).run(once=True)
    with pytest.raises(errors.ConfigError, match="--dimension 384"):
        search(db, "hello", stub_embedder(stub))
    assert count(db, PENDING) == 1  # nothing was touched


def test_a_replica_receives_the_embeddings_by_replication(
    topo: Topo, hub: Cluster, remote: Cluster, stub: Stub
) -> None:
    logs = {c: c.log.stat().st_size for c in (hub, remote)}
    ids = [messaging.send(topo.source, sender="nova", message=f"fact {i}", to=["*"])
           for i in range(40)]  # fmt: skip
    wait_for(lambda: count(topo.replica, "SELECT count(*) FROM agent_chat") == 40)
    assert mode_of(topo.replica) is EmbeddingMode.REPLICATED
    # the replica has the source's queue rows, but its worker leaves them to the source
    assert count(topo.replica, PENDING) == 40
    assert Worker(topo.replica, stub_embedder(stub)).run(once=True).embedded == 0
    assert Worker(topo.source, stub_embedder(stub)).run(once=True).embedded == 40
    wait_for(lambda: count(topo.replica, EMBEDDED) == 40, what="embeddings replicated")
    per_message = "SELECT source_id, count(*) FROM memory_embeddings GROUP BY 1 ORDER BY 1"
    assert execute(topo.replica, per_message) == [(i, 1) for i in ids]
    vectors = "SELECT source_id, embedding::text, model FROM memory_embeddings ORDER BY 1"
    assert execute(topo.replica, vectors) == execute(topo.source, vectors)
    assert sum(stub.embedded.values()) == 40  # computed once, at the source
    hits = search(topo.replica, "fact 7", stub_embedder(stub), limit=2)
    assert hits[0].message.id == ids[7] and hits[0].score == pytest.approx(1.0)
    for cluster, start in logs.items():
        tail = cluster.log_tail(100000, since=start)
        assert "duplicate key" not in tail and "ERROR" not in tail, tail


def test_embed_replicated_mode_embeds_on_the_replica_once_per_message(
    topo: Topo, hub: Cluster, remote: Cluster, stub: Stub
) -> None:
    logs = {c: c.log.stat().st_size for c in (hub, remote)}
    report = install.install(topo.replica, embed_replicated=True)
    assert report.embedding_mode is EmbeddingMode.EMBED_REPLICATED
    ids = [messaging.send(topo.source, sender="nova", message=f"item {i}") for i in range(25)]
    wait_for(lambda: count(topo.replica, "SELECT count(*) FROM agent_chat") == 25)
    stats = Worker(topo.replica, stub_embedder(stub)).run(once=True)
    assert stats.embedded == 25
    assert count(topo.source, PENDING) == 25  # the source runs no worker
    per_message = "SELECT source_id, count(*) FROM memory_embeddings GROUP BY 1 ORDER BY 1"
    assert execute(topo.replica, per_message) == [(i, 1) for i in ids]
    assert count(topo.replica, EMBEDDED) == 25
    # a source worker started later: its vectors replicate over the replica's, still one row each
    Worker(topo.source, stub_embedder(stub)).run(once=True)
    wait_for(lambda: execute(topo.replica, "SELECT count(DISTINCT model), count(*)"
                             " FROM memory_embeddings") == [(1, 25)])  # fmt: skip
    assert execute(topo.replica, per_message) == [(i, 1) for i in ids]
    facts = health.gather(topo.replica)
    assert facts.embedding_mode is EmbeddingMode.EMBED_REPLICATED
    # and back: the default mode again
    assert install.install(topo.replica, embed_replicated=False).embedding_mode is (
        EmbeddingMode.REPLICATED
    )
    for cluster, start in logs.items():
        tail = cluster.log_tail(100000, since=start)
        assert "duplicate key" not in tail and "ERROR" not in tail, tail


def test_embed_replicated_is_refused_where_there_is_no_subscription(installed_db: str) -> None:
    with pytest.raises(errors.InvalidInput, match="not a replica"):
        install.install(installed_db, embed_replicated=True)


def test_replicate_add_keeps_the_embedding_dimension(db: str, remote: Cluster) -> None:
    install.install(db, dimension=8)
    created = remote.conninfo("t_dim_created")
    try:
        replication.add(db, created, timeout=60)  # a missing target: made like the source
        assert execute(created, "SELECT atttypmod FROM pg_attribute WHERE attname = 'embedding'"
                       " AND attrelid = 'memory_embeddings'::regclass") == [(8,)]  # fmt: skip
    finally:
        replication.remove(created, source_dsn=db)
        install.drop_database(remote.conninfo(), "t_dim_created")


def test_replicate_add_refuses_a_target_of_another_dimension(
    installed_db: str, remote_db: str
) -> None:
    install.install(remote_db, dimension=8)
    with pytest.raises(replication.PreflightFailed, match="8-dimension vectors, the source's 384"):
        replication.add(installed_db, remote_db, timeout=60)
