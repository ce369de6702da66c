"""Semantic search over the chat: the messages nearest to a query, by cosine similarity.

    hits = search("dbname=graybeard_memory", "who broke the build?", embedder, limit=5)
    for hit in hits:
        print(f"{hit.score:.3f} #{hit.message.id} {hit.message.message}")

The query is embedded with the same embedder as the messages (the dimension is checked), and
the nearest rows come from the HNSW index on ``memory_embeddings.embedding``. It works on a
replica too, with the embeddings that arrived from the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentchat import _db, errors
from agentchat.embeddings.embedders import Embedder, EmbedderError
from agentchat.embeddings.vectors import Vector, register, to_vector
from agentchat.embeddings.worker import check_dimension
from agentchat.messaging import Message, check_channel
from agentchat.sql import queries

#: at most this many results per search
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Hit:
    """A message and its cosine similarity to the query (1: same direction)."""

    message: Message
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.message.as_dict(), "score": round(self.score, 6)}


def search(
    dsn: str | None,
    query: str,
    embedder: Embedder,
    *,
    limit: int = 10,
    channel: str | None = None,
) -> list[Hit]:
    """The *limit* messages most similar to *query* (only *channel*'s, if given), best first."""
    if not query or not query.strip():
        raise errors.InvalidInput("the search query must not be empty")
    if "\x00" in query:
        raise errors.InvalidInput("the search query contains a NUL byte")
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidInput(f"--limit must be between 1 and {MAX_LIMIT}")
    channel = check_channel(channel) if channel is not None else None
    conninfo = _db.make_conninfo(dsn)
    with _db.connection(conninfo) as conn:
        check_dimension(conn, embedder, _db.describe(conninfo))
        try:
            vector = to_vector(embedder.embed([query])[0])
        except ValueError as exc:
            raise EmbedderError(f"the embedder gave an unusable vector: {exc}") from exc
        register(conn)
        return nearest(conn, vector, limit=limit, channel=channel)


def ef_search(limit: int) -> int:
    """pgvector's ``hnsw.ef_search`` for a search of *limit* results: the candidates the index
    scan keeps. :data:`EF_SEARCH` at least (recall@10 >= 0.95 over 100,000 messages:
    docs/embeddings.md, Performance), and never fewer than *limit*."""
    return max(EF_SEARCH, limit)


#: the smallest ``hnsw.ef_search`` a search uses (pgvector's default, 40, gave recall@10 0.81
#: over 100,000 messages: docs/embeddings.md, Performance)
EF_SEARCH = 128


def nearest(
    conn: _db.Connection,
    vector: Vector,
    *,
    limit: int = 10,
    channel: str | None = None,
    ef: int | None = None,
) -> list[Hit]:
    """The search itself, on *conn* (:func:`~agentchat.embeddings.vectors.register` done):
    the *limit* messages nearest to *vector*, best first, through the HNSW index.
    *ef*: ``hnsw.ef_search`` instead of :func:`ef_search`'s (the benchmark's tuning)."""
    with conn.transaction():
        conn.execute(queries["search_settings"], {"ef_search": str(ef or ef_search(limit))})
        rows = conn.execute(
            queries["search_messages"], {"query": vector, "channel": channel, "limit": limit}
        ).fetchall()
    return [Hit(Message.from_row(row[:7]), float(row[7])) for row in rows]
