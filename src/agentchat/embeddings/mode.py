"""Where a database's chat embeddings come from: computed here, or replicated from the source.

The policy (docs/embeddings.md): an embedding is computed once, where the message was written,
and reaches replicas by replication. A replica never enqueues replicated rows (the embed trigger
is ORIGIN). A replica whose source runs no worker can embed the replicated queue rows itself
(``agentchat install --embed-replicated``): its worker then fills in the rows that arrived with
embedding NULL, still one row per message.
"""

from __future__ import annotations

import enum

from agentchat import _db, policy, settings

#: the agentchat_settings key of the per-replica mode
SETTING = settings.EMBED_REPLICATED


class EmbeddingMode(enum.Enum):
    """How a database gets its chat messages' embeddings."""

    #: messages are written here, and embedded here (a source, or a database on its own)
    LOCAL = "local"
    #: a replica: embeddings arrive by replication from the source
    REPLICATED = "replicated"
    #: a replica that embeds the replicated queue rows itself
    EMBED_REPLICATED = "embed-replicated"

    @property
    def description(self) -> str:
        return {
            EmbeddingMode.LOCAL: "embedded here, where messages are written",
            EmbeddingMode.REPLICATED: "embeddings arrive by replication from the source",
            EmbeddingMode.EMBED_REPLICATED: "replicated messages are embedded here",
        }[self]


def embed_replicated_setting(conn: _db.Connection) -> bool:
    """Whether ``agentchat install --embed-replicated`` is on for this database."""
    return settings.get(conn, SETTING) == "on"


def embedding_mode(conn: _db.Connection, facts: policy.NodeFacts | None = None) -> EmbeddingMode:
    facts = facts or policy.read_kind(conn)
    if not facts.is_replica:
        return EmbeddingMode.LOCAL
    if embed_replicated_setting(conn):
        return EmbeddingMode.EMBED_REPLICATED
    return EmbeddingMode.REPLICATED
