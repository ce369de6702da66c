"""Options shared by several commands, defined once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

import click

F = TypeVar("F", bound=Callable[..., object])

#: the output formats every command with ``--format`` has; a command may add its own
FORMATS = ("text", "json")


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


@overload
def dsns(func: F, /) -> F: ...
@overload
def dsns(*, positional: bool = False) -> Callable[[F], F]: ...
def dsns(func: Any = None, /, *, positional: bool = False) -> Any:
    """A repeatable ``--dsn``, for commands that take several databases: one ``dsns`` parameter,
    a tuple of DSNs (empty when none was given).

    With ``positional=True`` the command also keeps taking DSNs as arguments (``[DSN]...``, as
    ``status`` and ``doctor`` always have); they come first in ``dsns``, then the ``--dsn``
    options, each in the order given.

        @_options.dsns                    # --dsn A --dsn B
        @_options.dsns(positional=True)   # A B, or --dsn A --dsn B, or both
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def command(*args: object, dsn_args: tuple[str, ...] = (), **kwargs: object) -> object:
            options: tuple[str, ...] = kwargs.pop("dsn_options", ())  # type: ignore[assignment]
            kwargs["dsns"] = (*dsn_args, *options)
            return func(*args, **kwargs)

        decorated: Any = command
        decorated = click.option(
            "--dsn", "dsn_options", metavar="DSN", multiple=True,
            help="A database (libpq URI, conninfo or name); repeat it for several.",
        )(decorated)  # fmt: skip
        if positional:
            decorated = click.argument("dsn_args", nargs=-1, metavar="[DSN]...")(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate if func is None else decorate(func)


@overload
def output_format(func: F, /) -> F: ...
@overload
def output_format(*extra: str, help: str | None = None) -> Callable[[F], F]: ...
def output_format(*args: Any, help: str | None = None) -> Any:
    """``--format text|json`` (plus a command's own *extra* formats), and ``--json``, kept as an
    alias of ``--format json``: the command gets one ``fmt`` parameter, the format's name.

        @_options.output_format                      # text | json
        @_options.output_format("prometheus", help="...")  # text | json | prometheus

    ``--json`` wins over ``--format`` (as it always has: ``--json`` means JSON).
    """
    if args and callable(args[0]):
        return output_format()(args[0])
    choices = [*FORMATS, *(x for x in args if x not in FORMATS)]

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def command(
            *a: object, fmt: str = "text", json_alias: bool = False, **kw: object
        ) -> object:
            return func(*a, fmt="json" if json_alias else fmt, **kw)

        decorated: Any = command
        decorated = click.option(
            "--json", "json_alias", is_flag=True, help="Print JSON for machines (--format json).",
        )(decorated)  # fmt: skip
        decorated = click.option(
            "--format", "fmt", type=click.Choice(choices), default="text", show_default=True,
            help=help or "Output format.",
        )(decorated)  # fmt: skip
        return decorated  # type: ignore[no-any-return]

    return decorate


def config(func: F) -> F:
    """``--config``: the topology file [default: $AGENTCHAT_CONFIG, else ./agentchat.toml]."""
    return click.option(
        "--config", type=click.Path(path_type=Path), default=None,
        help="Topology file [default: $AGENTCHAT_CONFIG, else ./agentchat.toml].",
    )(func)  # fmt: skip


def quiet(func: F) -> F:
    return click.option("--quiet", "-q", is_flag=True, help="No progress display.")(func)
