"""The ``agentchat`` command: a thin shell over the library.

Commands parse arguments, call the library and render its results; the library raises
:class:`agentchat.errors.AgentchatError`, and :func:`main` turns every error into one line on
stderr and an exit code (2 for bad usage or input, 1 for other failures). No traceback reaches
the user unless AGENTCHAT_DEBUG=1.
"""

from __future__ import annotations

import importlib
import io
import os
import sys

import click

from agentchat import __version__, errors
from agentchat.cli import _output

#: every command, by task: (name, "module:attribute", its line in ``agentchat --help``). A
#: command's module is imported only when the command runs: ``agentchat --help`` imports none
#: (tests/unit/test_cli_help.py checks that every row names a command of that name)
SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Set-up": [
        ("server", "server:server", "A private PostgreSQL (16 or 18, pgvector, logical WAL)."),
        ("install", "install:install", "Install agentchat into a database, triggers by its kind."),
        ("triggers", "install:triggers", "agent_chat's triggers: their modes, right for the kind?"),
        ("upgrade", "ops:upgrade", "Pending migrations across the topology, replicas first."),
        (
            "replicate",
            "replicate:replicate",
            "Link agents' databases to a hub, both ways (or --one-way).",
        ),
        ("mesh", "replicate:mesh", "Link a few databases each to each, both ways."),
    ],
    "Operations": [
        ("status", "ops:status", "Kinds, triggers, subscriptions and slots, judged."),
        ("doctor", "ops:doctor", "Each problem's cause and fix; --fix repairs the safe ones."),
        ("verify", "ops:verify", "A probe message through replication, its arrival timed."),
        ("prune", "agents:prune", "Delete old messages at the source; deletions replicate."),
        ("soak", "soak:soak", "Agents under load while things break."),
        ("bench", "bench:bench", "Speed against floors measured in the same run."),
    ],
    "Agents": [
        ("send", "agents:send", "Post a message as agent --as."),
        ("listen", "agents:listen", "Deliver every message addressed to agent --as, in order."),
        ("agent", "identity:agent", "Register agents, each with a role that acts only as it."),
    ],
    "Embeddings": [
        ("embed-worker", "embeddings:embed_worker", "Embed queued messages, woken by NOTIFY."),
        ("search", "embeddings:search_command", "The messages most similar in meaning to QUERY."),
    ],
    "Demo": [
        ("demo", "demo:demo", "Three agents, three databases, talking through replication."),
    ],
}


class TaskGroup(click.Group):
    """A group whose commands are imported when used, listed in ``--help`` by task."""

    def __init__(self, *args: object, sections: dict[str, list[tuple[str, str, str]]],
                 **kwargs: object) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sections = sections
        self._where = {name: where for rows in sections.values() for name, where, _ in rows}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self._where, *(n for n in super().list_commands(ctx) if n not in self._where)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self._where.get(cmd_name)
        if where is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module, attribute = where.split(":")
        command = getattr(importlib.import_module(f"agentchat.cli.{module}"), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a wrong table row
            raise TypeError(f"agentchat.cli.{module}.{attribute} is not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = max(len(name) for name in self._where)  # one column across the sections
        for title, rows in self.sections.items():
            with formatter.section(title):
                formatter.write_dl([(name.ljust(width), text) for name, _, text in rows])


@click.group(
    cls=TaskGroup, sections=SECTIONS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="agentchat")
def cli() -> None:
    """Agents talking through PostgreSQL: install, replicate, verify, send, listen."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, as a console script, exit with) its exit code."""
    for stream in (sys.stdout, sys.stderr):  # a legacy locale: never crash on printing text
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    try:
        result = cli.main(args=argv, prog_name="agentchat", standalone_mode=False)
    except click.exceptions.Abort:
        _output.error("aborted")
        return 130
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__.startswith("NoArgsIsHelp") and ctx is not None:
            click.echo(ctx.get_help(), err=True)  # `agentchat` alone: the help, as usual
            return 2
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _output.error(exc.format_message().replace("\n", " ") + hint)
        return exc.exit_code
    except errors.AgentchatError as exc:
        _output.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _output.error("interrupted")
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("AGENTCHAT_DEBUG"):
            raise
        _output.error(f"internal error: {type(exc).__name__}: {exc} (AGENTCHAT_DEBUG=1 shows more)")
        return 70
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())
