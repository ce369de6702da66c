"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def connection(func: F) -> F:
    """``--dsn`` and ``--database``: libpq conventions (PG* variables, .pgpass, services) apply."""
    func = click.option(
        "--database", "-d", metavar="NAME",
        help="Database name (overrides the DSN's dbname).",
    )(func)  # fmt: skip
    func = click.option(
        "--dsn", metavar="DSN", envvar="AGENTCHAT_DSN",
        help="libpq URI or conninfo; PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSERVICE apply.",
    )(func)  # fmt: skip
    return func


def json_flag(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(func)


def config(func: F) -> F:
    """``--config``: the topology file [default: $AGENTCHAT_CONFIG, else ./agentchat.toml]."""
    return click.option(
        "--config", type=click.Path(path_type=Path), default=None,
        help="Topology file [default: $AGENTCHAT_CONFIG, else ./agentchat.toml].",
    )(func)  # fmt: skip


def quiet(func: F) -> F:
    return click.option("--quiet", "-q", is_flag=True, help="No progress display.")(func)
