"""``agentchat replicate add|check|remove``: the seed's steps 1-3 as one command, its preflight
alone, and their undo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from agentchat import replication, topology
from agentchat.cli import _options, _output


@click.group()
def replicate() -> None:
    """Replicate agent_chat from a source database to its replicas."""


F = TypeVar("F", bound=Callable[..., object])


def _source_and_target(func: F) -> F:
    """The options ``add`` and ``check`` share: which two databases, and how they connect."""
    for option in reversed([
        click.option("--source", "source_dsn", metavar="DSN", help="The source (libpq URI"
                     " or conninfo) [default: the topology file's source]."),
        click.option("--target", "target_dsn", required=True, metavar="DSN",
                     help="The replica-to-be: the database to replicate into"
                     " (created if missing)."),
        click.option("--name", help="Subscription name [default: agent_chat_from_<source stem>]."),
        click.option("--publication", default=replication.DEFAULT_PUBLICATION, show_default=True),
    ]):  # fmt: skip
        func = option(func)
    return func


def _connection_options(func: F) -> F:
    """How the target's server reaches the source, the history, and TLS (``add``, ``check``)."""
    for option in reversed([
        click.option("--publisher-dsn", metavar="DSN",
                     help="How the target's server reaches the source (e.g. \"host=10.0.0.5\")"
                     " when that differs from how agentchat reaches it."),
        click.option("--copy-data/--no-copy-data", default=True, show_default=True,
                     help="Copy the existing history."),
        click.option("--sslmode", type=click.Choice(
            ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
            help="libpq sslmode for the source connection (passed to the subscription)."),
        click.option("--allow-insecure", is_flag=True,
                     help="Allow a non-local source without sslmode require or stricter."),
    ]):  # fmt: skip
        func = option(func)
    return func


def _source(source_dsn: str | None, topo: topology.Topology) -> str:
    source = source_dsn or topo.source
    if not source:
        raise click.UsageError("--source is required (no topology file names a source)")
    return source


@replicate.command()
@_source_and_target
@click.option("--role", help="Replication role on the source [default: one of the"
              " subscription's own, named like its slot]; an existing one is used only with a"
              " password that works (never reset).")  # fmt: skip
@click.option("--passfile", type=click.Path(path_type=Path),
              help="Keep the role's password in this libpq passfile (readable by the target"
              " server) instead of the subscription's conninfo.")  # fmt: skip
@_connection_options
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for the initial sync.")  # fmt: skip
@_options.config
@_options.quiet
@_options.output_format
def add(
    source_dsn: str | None,
    target_dsn: str,
    name: str | None,
    publication: str,
    role: str | None,
    passfile: Path | None,
    publisher_dsn: str | None,
    copy_data: bool,
    sslmode: str | None,
    allow_insecure: bool,
    timeout: float,
    config: Path | None,
    quiet: bool,
    fmt: str,
) -> None:
    """Publish agent_chat on the source, subscribe the target, wait for the sync.

    Preflight first (each failure names its fix); every step has an undo, so a failed add
    leaves no role, publication, slot or subscription behind. Running it again changes nothing.
    `replicate check` runs the preflight alone.
    """
    topo = topology.load(config)
    source = _source(source_dsn, topo)
    as_json = fmt == "json"
    with _output.progress(quiet or as_json) as report:
        result = replication.add(
            source, target_dsn, name=name, publication=publication, role=role,
            passfile=passfile, publisher_dsn=publisher_dsn, copy_data=copy_data, sslmode=sslmode,
            allow_insecure=allow_insecure, timeout=timeout, topology=topo, progress=report,
        )  # fmt: skip
    if as_json:
        _output.emit_json(result.as_dict())
    elif result.already:
        click.echo(f"{result.target} already replicates from {result.source}: nothing changed")
    else:
        click.echo(f"replicating {result.source} -> {result.target}")
        click.echo(f"  subscription {result.subscription}, slot {result.slot},"
                   f" publication {result.publication}, role {result.role}")  # fmt: skip
        click.echo(f"  {result.tables} tables synced; topology: {topo.path}")
    for line in result.warnings:
        _output.warning(line)


@replicate.command()
@_source_and_target
@_connection_options
@_options.config
@_options.output_format
def check(
    source_dsn: str | None,
    target_dsn: str,
    name: str | None,
    publication: str,
    publisher_dsn: str | None,
    copy_data: bool,
    sslmode: str | None,
    allow_insecure: bool,
    config: Path | None,
    fmt: str,
) -> int:
    """The preflight of `replicate add` alone: changes nothing.

    Exit 0 when add would proceed (what it would make is listed), 1 with every finding and
    its fix otherwise.
    """
    topo = topology.load(config)
    result = replication.check(
        _source(source_dsn, topo), target_dsn, name=name, publication=publication,
        publisher_dsn=publisher_dsn, copy_data=copy_data, sslmode=sslmode,
        allow_insecure=allow_insecure, topology=topo,
    )  # fmt: skip
    _output.emit(fmt, result.as_dict(), lambda: render_check(result))
    return 0 if result.ok else 1


def render_check(result: replication.CheckResult) -> str:
    """``replicate check``'s text: the verdict, then the plan or each finding with its fix."""
    plan = result.plan
    if not result.ok:
        failed = [f for f in result.findings if not f.ok]
        lines = [f"replicate add would stop: {len(failed)} problem(s) with"
                 f" {result.source} -> {result.target}"]  # fmt: skip
        for finding in failed:
            lines.append(f"  {finding.check}: {finding.message}")
            if finding.fix:
                lines.append(f"    fix: {finding.fix}")
        return "\n".join(lines)
    if plan.already:
        return f"{result.target} already replicates from {result.source}: add would change nothing"
    return "\n".join([
        f"replicate add would proceed: {result.source} -> {result.target}",
        f"  subscription {plan.subscription}, slot {plan.slot}, publication {plan.publication},"
        f" role {plan.role}",
        f"  steps: {', '.join(plan.steps)}",
        f"  would create: {', '.join(plan.creates)}",
        *([f"  exists already: {', '.join(plan.exists)}"] if plan.exists else []),
    ])  # fmt: skip


@replicate.command()
@click.option("--target", "target_dsn", metavar="DSN",
              help="The replica to detach [default: the topology's replica --name].")  # fmt: skip
@click.option("--name", help="Subscription name (needed if the target has several).")
@click.option("--source", "source_dsn", metavar="DSN",
              help="Where to drop the slot [default: topology source, else the subscription's"
              " own connection].")  # fmt: skip
@_options.config
@_options.quiet
@_options.output_format
def remove(
    target_dsn: str | None,
    name: str | None,
    source_dsn: str | None,
    config: Path | None,
    quiet: bool,
    fmt: str,
) -> None:
    """Drop the target's subscription and its slot on the source.

    With the source unreachable the subscription is still removed, and the slot to drop later
    is named. The replica keeps the history it has.
    """
    topo = topology.load(config)
    if target_dsn is None:
        named = [r for r in topo.replicas if r.name == name] if name else []
        if len(named) != 1:
            several = f" ({len(named)} replicas are named {name!r})" if len(named) > 1 else ""
            raise click.UsageError(
                f"--target is required{several} (or the --name of one replica in the topology)"
            )
        target_dsn = named[0].dsn
    as_json = fmt == "json"
    with _output.progress(quiet or as_json) as report:
        result = replication.remove(
            target_dsn, name=name, source_dsn=source_dsn, topology=topo, progress=report
        )
    if as_json:
        _output.emit_json(result.as_dict())
    elif result.subscription is None:
        click.echo(f"{result.target} has no agent_chat subscription: nothing to remove")
    else:
        click.echo(f"removed subscription {result.subscription} from {result.target}")
        if result.slot_dropped:
            click.echo(f"  dropped slot {result.slot} on the source")
        if result.role_dropped:
            click.echo(f"  dropped role {result.role_dropped} on the source")
    for line in result.warnings:
        _output.warning(line)
