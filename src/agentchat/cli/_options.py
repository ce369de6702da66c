"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
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
