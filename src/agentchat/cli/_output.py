"""Rendering for the CLI: psql-style tables, JSON, and one-line messages on stderr."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click

PROG = "agentchat"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table laid out as psql lays it out (headers centred, a rule, cells left-aligned)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [" " + " | ".join(h.center(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("-" + "-+-".join("-" * w for w in widths) + "-")
    for row in cells:
        lines.append(
            " " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
    noun = "row" if len(cells) == 1 else "rows"
    lines.append(f"({len(cells)} {noun})")
    return "\n".join(lines)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def error(message: str) -> None:
    """One line on stderr: ``agentchat: error: ...``."""
    click.echo(f"{PROG}: error: {message}", err=True)


def warning(message: str) -> None:
    click.echo(f"{PROG}: warning: {message}", err=True)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@contextlib.contextmanager
def progress(quiet: bool = False) -> Iterator[Callable[[str, str], None]]:
    """A ``progress(step, detail)`` callback for long work.

    On a terminal (stderr) it is a live status line (rich); when stderr is not a terminal, or
    with ``quiet``, it says nothing, so piped output and error lines stay clean.
    """
    if quiet or not sys.stderr.isatty():
        yield lambda step, detail: None
        return
    from rich.console import Console  # only here: rich costs ~0.1 s to import

    console = Console(stderr=True)
    with console.status("starting") as status:

        def report(step: str, detail: str) -> None:
            status.update(f"[bold]{step}[/bold]: {detail}")

        yield report


class _WarningLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        warning(record.getMessage())


def log_warnings(logger_name: str) -> None:
    """The library's warnings from *logger_name* as ``agentchat: warning:`` lines on stderr."""
    logger = logging.getLogger(logger_name)
    logger.addHandler(_WarningLines())
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def stop_on_sigterm(stop: Callable[[], None]) -> None:
    """Call *stop* on SIGTERM, from a thread: a signal handler must not take locks that the
    code it interrupted may hold."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: threading.Thread(target=stop).start())


def emit(
    fmt: str, data: Any, render_text: Callable[[], str], **renderers: Callable[[], str]
) -> None:
    """Print a command's result in the format asked for: ``json`` prints *data* as JSON, ``text``
    what *render_text* returns, any other format what its renderer in *renderers* returns
    (``emit(fmt, report.as_dict(), lambda: render(report), prometheus=...)``).

    Renderers are called only for the format asked for. Their text is printed as it is, with a
    line break added unless it ends with one; an empty text prints nothing.
    """
    if fmt == "json":
        emit_json(data)
        return
    render = render_text if fmt == "text" else renderers[fmt]
    text = render()
    if text:
        click.echo(text, nl=not text.endswith("\n"))
