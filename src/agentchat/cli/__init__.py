"""The ``agentchat`` command: a thin shell over the library.

Commands parse arguments, call the library and render its results; the library raises
:class:`agentchat.errors.AgentchatError`, and :func:`main` turns every error into one line on
stderr and an exit code (2 for bad usage or input, 1 for other failures). No traceback reaches
the user unless AGENTCHAT_DEBUG=1.
"""

from __future__ import annotations

import io
import os
import sys

import click

from agentchat import __version__, errors
from agentchat.cli import _output
from agentchat.cli.agents import listen, prune, send
from agentchat.cli.demo import demo
from agentchat.cli.embeddings import embed_worker, search_command
from agentchat.cli.install import install, triggers
from agentchat.cli.ops import doctor, status, upgrade, verify
from agentchat.cli.replicate import replicate
from agentchat.cli.server import server
from agentchat.cli.soak import soak


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentchat")
def cli() -> None:
    """Agents talking through PostgreSQL: install, replicate, verify, send, listen."""


cli.add_command(install)
cli.add_command(triggers)
cli.add_command(server)
cli.add_command(replicate)
for command in (status, doctor, verify, upgrade, send, listen, prune, embed_worker, search_command):
    cli.add_command(command)
cli.add_command(demo)
cli.add_command(soak)


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
