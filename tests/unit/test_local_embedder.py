"""The local embedder on ONNX Runtime: sentence-transformers' vectors, converted once, healed.

No database here: the model is the part under test, compared with the reference implementation
of all-MiniLM-L6-v2's sentence embeddings (sentence-transformers, in the dev extra).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agentchat.embeddings import LocalEmbedder
from agentchat.embeddings.local import CACHE_ENV, _shipped_model_path, model_file

TEXTS = [
    "hello",
    "",
    "@nova can you check the replication slot on graybeard_memory? " * 3,
    "word " * 600,  # past the 256 word pieces the model reads
    "Ünïcødé, 日本語のテキスト and an emoji 🚀",
    *[f"message {i} about topic {i % 7}" for i in range(70)],  # more than one batch
]


def test_the_onnx_model_gives_sentence_transformers_vectors_and_is_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    weights = Path(_shipped_model_path())
    cached = model_file(weights)
    assert cached.parent == tmp_path / "models"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a model: a damaged file left in the cache")

    embedder = LocalEmbedder()  # cannot load the damaged file: converts again, by itself
    ours = np.array(embedder.embed(TEXTS))
    assert cached.stat().st_size > 80_000_000
    assert [p.name for p in cached.parent.glob("*.onnx*") if not p.name.endswith(".lock")] == [
        cached.name
    ]  # no scratch file left behind

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(weights), device="cpu", local_files_only=True)
    theirs = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    assert float(np.abs(ours - theirs).max()) < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]) == []

    # a later process loads the cached file as it is, without torch
    converted = cached.stat().st_mtime_ns
    script = (
        "import sys\n"
        "from agentchat.embeddings import LocalEmbedder\n"
        "vector = LocalEmbedder().embed(['hello'])[0]\n"
        "print(len(vector), 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["384", "False"]
    assert cached.stat().st_mtime_ns == converted


def test_an_unwritable_cache_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    from agentchat.embeddings import EmbedderError

    with pytest.raises(EmbedderError) as caught:
        LocalEmbedder()
    assert str(caught.value).startswith("cannot keep the converted embedding model in ")
    assert caught.value.fix == f"set {CACHE_ENV} to a writable directory"
