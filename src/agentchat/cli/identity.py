"""``agentchat agent add|list|remove``: agents' own login roles (docs/identity.md)."""

from __future__ import annotations

from pathlib import Path

import click

from agentchat import _db, identity
from agentchat.cli import _options, _output


@click.group()
def agent() -> None:
    """Register agents, each with a login role that can act only as that agent."""


@agent.command()
@click.argument("name")
@_options.connection
@click.option("--channel", "channels", metavar="C", multiple=True,
              help="A channel the agent reads every message of (repeatable).")  # fmt: skip
@click.option("--passfile", type=click.Path(path_type=Path), default=None,
              help="Write the role's password to this passfile [default: ~/.pgpass].")  # fmt: skip
@click.option("--show-password", is_flag=True,
              help="Print the password once instead of writing it to a passfile.")  # fmt: skip
@_options.output_format
def add(
    name: str,
    dsn: str | None,
    database: str | None,
    channels: tuple[str, ...],
    passfile: Path | None,
    show_password: bool,
    fmt: str,
) -> None:
    """Register agent NAME and give it a login role (ac_NAME) with a generated password.

    The role may send only as NAME, read only the messages it sent, those naming it or *, and
    its channels', and mark only its own deliveries. Needs CREATEROLE (or a superuser). Adding
    an agent again changes nothing but its channels; its password stays.
    """
    added = identity.add(
        _db.make_conninfo(dsn, dbname=database), name,
        channels=channels, passfile=passfile, show_password=show_password,
    )  # fmt: skip
    _output.emit(fmt, added.as_dict(), lambda: _render_added(added))


def _render_added(added: identity.Added) -> str:
    entry = added.entry
    channels = ", ".join(entry.channels) or "-"
    lines = [
        f"agent {entry.name}: role {entry.role}"
        + (" (created)" if added.created else " (already registered; unchanged)"),
        f"channels   {channels}",
        f"connect    {added.dsn}",
    ]
    if added.password is not None:
        lines.append(f"password   {added.password}  (shown once: keep it now)")
    elif added.passfile is not None:
        lines.append(f"password   written to {added.passfile}")
    return "\n".join(lines)


@agent.command("list")
@_options.connection
@_options.output_format
def list_command(dsn: str | None, database: str | None, fmt: str) -> None:
    """The registered agents: name, role, channels, node."""
    entries = identity.list_agents(_db.make_conninfo(dsn, dbname=database))
    _output.emit(
        fmt, [e.as_dict() for e in entries],
        lambda: _output.table(
            ["agent", "role", "channels", "node"],
            [
                [e.name, e.role if e.role_exists else f"{e.role} (missing)",
                 ",".join(e.channels) or "-", e.node if e.node is not None else "-"]
                for e in entries
            ],
        ) if entries else "no agents registered",
    )  # fmt: skip


@agent.command()
@click.argument("name")
@_options.connection
@click.option("--passfile", type=click.Path(path_type=Path), default=None,
              help="Remove the role's line from this passfile [default: ~/.pgpass].")  # fmt: skip
@_options.output_format
def remove(
    name: str, dsn: str | None, database: str | None, passfile: Path | None, fmt: str
) -> None:
    """Forget agent NAME and drop its role (its sessions are ended)."""
    entry = identity.remove(_db.make_conninfo(dsn, dbname=database), name, passfile=passfile)
    _output.emit(
        fmt, {"agent": entry.name, "role": entry.role, "removed": True},
        lambda: f"agent {entry.name} removed (role {entry.role} dropped)",
    )  # fmt: skip
