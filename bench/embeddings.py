"""Moved: ``agentchat bench --only embeddings --only search`` (src/agentchat/bench/embeddings.py
and src/agentchat/bench/search.py).

    .venv/bin/python bench/embeddings.py [--quick]

runs that command: the embedding worker's rows/s against the bare model's ``encode`` of the same
texts, and search over 100,000 embedded messages (HNSW against an exact scan, recall@10), on an
embedded cluster, each figure beside its floor. Needs the ``embeddings`` extra.
"""

from __future__ import annotations

import sys

from agentchat.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "embeddings", "--only", "search", *sys.argv[1:]]))
