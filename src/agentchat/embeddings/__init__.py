"""Embeddings: computed once per message, where it was written, and searched everywhere.

    from agentchat.embeddings import Worker, make_embedder, search

    embedder = make_embedder("local")                   # all-MiniLM-L6-v2, offline
    Worker("dbname=nova_memory", embedder).run(once=True)
    search("dbname=graybeard_memory", "a paraphrase", embedder, limit=3)

See docs/embeddings.md for the policy (who embeds what on a replica) and the worker's contract.
"""

from agentchat.embeddings.embedders import (
    Embedder,
    EmbedderError,
    OpenAIEmbedder,
    make_embedder,
)
from agentchat.embeddings.local import LocalEmbedder
from agentchat.embeddings.mode import EmbeddingMode, embedding_mode
from agentchat.embeddings.search import Hit, search
from agentchat.embeddings.worker import Worker, WorkerStats

__all__ = [
    "Embedder",
    "EmbedderError",
    "EmbeddingMode",
    "Hit",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Worker",
    "WorkerStats",
    "embedding_mode",
    "make_embedder",
    "search",
]
