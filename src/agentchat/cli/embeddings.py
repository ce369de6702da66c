"""``agentchat embed-worker`` and ``agentchat search``: the embedding queue and semantic search."""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Any

import click

from agentchat import _db
from agentchat.cli import _options, _output
from agentchat.embeddings import Embedder, Worker, WorkerStats, make_embedder, search
from agentchat.embeddings.embedders import DEFAULT_KEY_ENV, EMBEDDERS
from agentchat.embeddings.worker import BATCH_SIZE


@dataclasses.dataclass(frozen=True)
class EmbedderChoice:
    """The embedder a command line names (``--embedder``, ``--base-url``, ``--model``,
    ``--api-key-env``, ``--embed-timeout``), built when the command needs it."""

    kind: str = "local"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = DEFAULT_KEY_ENV
    timeout: float = 30.0

    def build(self) -> Embedder:
        return make_embedder(
            self.kind, base_url=self.base_url, model=self.model, api_key_env=self.api_key_env,
            timeout=self.timeout,
        )  # fmt: skip


def embedder_options(func: _options.F) -> _options.F:
    """The embedder's options, defined once: the command gets one ``embedder`` parameter, an
    :class:`EmbedderChoice` (``embedder.build()`` makes the embedder)."""

    @functools.wraps(func)
    def command(
        *args: object, embedder: str, base_url: str | None, model: str | None,
        api_key_env: str, embed_timeout: float, **kwargs: object,
    ) -> object:  # fmt: skip
        choice = EmbedderChoice(embedder, base_url, model, api_key_env, embed_timeout)
        return func(*args, embedder=choice, **kwargs)

    decorated: Any = command
    for option in reversed(
        [
            click.option(
                "--embedder", type=click.Choice(EMBEDDERS), default="local", show_default=True,
                help="local: all-MiniLM-L6-v2, offline (agentchat[embeddings]); openai: an"
                " OpenAI-compatible HTTP endpoint (OpenAI, Ollama, vLLM).",
            ),
            click.option("--base-url", metavar="URL", help="The endpoint, e.g. http://host:11434/v1."),
            click.option("--model", metavar="NAME", help="The endpoint's embedding model."),
            click.option(
                "--api-key-env", metavar="VAR", default=DEFAULT_KEY_ENV, show_default=True,
                help="Environment variable holding the endpoint's API key (never printed).",
            ),
            click.option(
                "--embed-timeout", type=click.FloatRange(min=0.1), default=30.0,
                show_default=True, metavar="SECONDS", help="Timeout of one HTTP request.",
            ),
        ]
    ):  # fmt: skip
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


class _Progress:
    """Rate and backlog: a live line on a terminal, a log line every few seconds otherwise."""

    def __init__(self, quiet: bool, every: float = 10.0) -> None:
        self.quiet, self.every = quiet, every
        self.live = not quiet and sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, stats: WorkerStats) -> None:
        line = (
            f"embedded {stats.embedded} ({stats.rate:.1f}/s), backlog {stats.due},"
            f" retrying {stats.retrying}, failed attempts {stats.failed}"
        )
        if self.quiet:
            return
        if self.live:
            click.echo(f"\r\x1b[2K{line}", nl=False, err=True)
        elif time.monotonic() - self._last >= self.every:
            click.echo(f"agentchat: {line}", err=True)
            self._last = time.monotonic()

    def done(self) -> None:
        if self.live:
            click.echo("", err=True)


@click.command("embed-worker")
@_options.connection
@embedder_options
@click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=BATCH_SIZE, show_default=True)
@click.option(
    "--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
    help="Worker threads, each with its own connection (useful with an HTTP embedder).",
)  # fmt: skip
@click.option(
    "--poll-interval", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
    metavar="SECONDS", help="Look for work at least this often (NOTIFY may be lost).",
)  # fmt: skip
@click.option(
    "--retry-base", type=click.FloatRange(min=0), default=5.0, show_default=True,
    metavar="SECONDS",
    help="A failed row waits this long times 2**attempts (at least 1 s, at most an hour).",
)  # fmt: skip
@_options.quiet
@_options.output_format
def embed_worker(
    dsn: str | None,
    database: str | None,
    embedder: EmbedderChoice,
    once: bool,
    batch_size: int,
    concurrency: int,
    poll_interval: float,
    retry_base: float,
    quiet: bool,
    fmt: str,
) -> int:
    """Embed queued rows of memory_embeddings, woken by NOTIFY, polling as a fallback.

    Several workers at once never embed a row twice (FOR UPDATE SKIP LOCKED). A failure is
    recorded on the row and retried with backoff; the rest of the queue goes on. With --once:
    exit 0 when what was due is done, 1 when rows are left failing (waiting for a retry).
    """
    progress = _Progress(quiet or fmt == "json")
    worker = Worker(
        _db.make_conninfo(dsn, dbname=database),
        embedder.build(),
        batch_size=batch_size, concurrency=concurrency, poll_interval=poll_interval,
        retry_base=retry_base, progress=progress,
    )  # fmt: skip
    _output.log_warnings("agentchat.embeddings")
    _output.stop_on_sigterm(worker.stop)
    try:
        stats = worker.run(once=once)
    except KeyboardInterrupt:
        worker.stop()
        raise
    finally:
        progress.done()
    _output.emit(
        fmt, {"mode": worker.mode.value, **stats.as_dict()},
        lambda: "" if quiet else (
            f"embedded {stats.embedded} row(s) in {stats.elapsed:.1f} s ({stats.rate:.1f}/s);"
            f" failed attempts {stats.failed}; left: {stats.due} due,"
            f" {stats.retrying} waiting to retry"
        ),
    )  # fmt: skip
    # rows still due were held by another worker (it embeds them): only failed rows count,
    # waiting for their retry or due again by now
    return 1 if once and stats.failing else 0


@click.command("search")
@_options.connection
@embedder_options
@click.option("--limit", "-k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--channel", default=None, help="Only this channel's messages.")
@_options.output_format
@click.argument("query")
def search_command(
    dsn: str | None,
    database: str | None,
    embedder: EmbedderChoice,
    limit: int,
    channel: str | None,
    fmt: str,
    query: str,
) -> None:
    """The messages most similar in meaning to QUERY (cosine similarity), best first.

    Works on a replica with the embeddings replicated from the source. Use the embedder the
    messages were embedded with.
    """
    hits = search(
        _db.make_conninfo(dsn, dbname=database), query,
        embedder.build(),
        limit=limit, channel=channel,
    )  # fmt: skip
    _output.emit(
        fmt, [hit.as_dict() for hit in hits],
        lambda: "".join(
            f"{h.score:.3f}  #{h.message.id} [{h.message.channel}] {h.message.sender}:"
            f" {h.message.message}\n"
            for h in hits
        ),
    )  # fmt: skip
