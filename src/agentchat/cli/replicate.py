"""``agentchat replicate add|check|remove`` and ``agentchat mesh``: two-way links (the default),
or the seed's steps 1-3 one way (``--one-way``) as one command, its preflight alone, and their
undo."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from psycopg import conninfo as _conninfo

from agentchat import _db, replication, topology
from agentchat.cli import _options, _output


@click.group()
def replicate() -> None:
    """Replicate agent_chat between a hub and its agents' databases, both ways."""


#: ``add``'s options that only one-way replication has, with what they default to
ONE_WAY_ONLY = {"name": None, "publication": replication.DEFAULT_PUBLICATION, "role": None,
                "copy_data": True}  # fmt: skip


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
@click.option(
    "--one-way",
    is_flag=True,
    help="A read-only replica, as the seed has it: the target receives the source's"
    " messages and refuses local writes; its agents send to the source.",
)
@click.option(
    "--back-dsn",
    metavar="DSN",
    help="Two-way: how the source's server reaches the target (e.g."
    ' "host=10.0.0.6") when that differs from how agentchat reaches it.',
)
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
    one_way: bool,
    back_dsn: str | None,
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
    """Link the target to the source both ways (the target joins below the source: a spoke of
    a hub, or of a relay), or replicate one way with --one-way.

    Two-way: every agent writes to its own database, and each message travels to every other
    database once. One-way: the target is a read-only replica. Preflight first (each failure
    names its fix); every step has an undo, so a failed add leaves no role, publication, slot or
    subscription behind. Running it again changes nothing.
    """
    topo = topology.load(config)
    source = _source(source_dsn, topo)
    as_json = fmt == "json"
    if not one_way:
        given = {"name": name, "publication": publication, "role": role, "copy_data": copy_data}
        for option, value in given.items():
            if value != ONE_WAY_ONLY[option]:
                flag = "--no-copy-data" if option == "copy_data" else f"--{option}"
                raise click.UsageError(f"{flag} is for --one-way replication only")
        with _output.progress(quiet or as_json) as report:
            joined = replication.join(
                _with_sslmode(source, sslmode), target_dsn, publisher_dsn=publisher_dsn,
                back_dsn=back_dsn, passfile=passfile, allow_insecure=allow_insecure,
                timeout=timeout, topology=topo, progress=report,
            )  # fmt: skip
        _output.emit(fmt, joined.as_dict(), lambda: render_link(joined, topo.path))
        for line in joined.warnings:
            _output.warning(line)
        return
    if back_dsn:
        raise click.UsageError("--back-dsn is for two-way replication (leave out --one-way)")
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
@click.option("--one-way", is_flag=True, help="Check a one-way add (a read-only replica).")
@_connection_options
@_options.config
@_options.output_format
def check(
    source_dsn: str | None,
    target_dsn: str,
    name: str | None,
    publication: str,
    one_way: bool,
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
    source = _source(source_dsn, topo)
    if not one_way:
        findings = replication.check_join(
            _with_sslmode(source, sslmode), target_dsn, allow_insecure=allow_insecure
        )
        place = f"{_db.describe(_db.make_conninfo(source))} <-> {_db.describe(target_dsn)}"
        data = {
            "source": source, "target": target_dsn, "mode": "two-way", "ok": not findings,
            "findings": [dataclasses.asdict(f) for f in findings],
        }  # fmt: skip
        _output.emit(fmt, data, lambda: render_findings(findings, place, "two-way"))
        return 0 if not findings else 1
    result = replication.check(
        source, target_dsn, name=name, publication=publication,
        publisher_dsn=publisher_dsn, copy_data=copy_data, sslmode=sslmode,
        allow_insecure=allow_insecure, topology=topo,
    )  # fmt: skip
    _output.emit(fmt, result.as_dict(), lambda: render_check(result))
    return 0 if result.ok else 1


def render_findings(findings: list[replication.Finding], place: str, mode: str) -> str:
    """A check's verdict: add would proceed, or every problem with its fix."""
    if not findings:
        return f"replicate add would proceed: {place} ({mode})"
    lines = [f"replicate add would stop: {len(findings)} problem(s) with {place}"]
    for finding in findings:
        lines.append(f"  {finding.check}: {finding.message}")
        if finding.fix:
            lines.append(f"    fix: {finding.fix}")
    return "\n".join(lines)


def render_check(result: replication.CheckResult) -> str:
    """``replicate check --one-way``'s text: the verdict, then the plan or each finding."""
    plan = result.plan
    if not result.ok:
        place = f"{result.source} -> {result.target}"
        return render_findings([f for f in result.findings if not f.ok], place, "one-way")
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


def _with_sslmode(dsn: str, sslmode: str | None) -> str:
    return _conninfo.make_conninfo(dsn, sslmode=sslmode) if sslmode else dsn


def render_link(result: replication.LinkResult, path: Path) -> str:
    """What a two-way add or a mesh did, in a few lines."""
    if result.already:
        return f"{' and '.join(result.nodes)} are linked already: nothing changed"
    members = ", ".join(f"{label} (node {n})" for label, n in result.nodes.items())
    lines = [f"linked both ways: {members}", f"  links {', '.join(result.links)}"]
    if result.converted:
        lines.append(f"  one-way subscription {result.converted} turned into these links")
    if result.widened:
        lines.append(f"  filters widened on the way to the root: {', '.join(result.widened)}")
    for label, number in result.renumbered.items():
        lines.append(f"  {label} is node {number} now (its number was taken)")
    lines.append(f"  topology: {path}")
    return "\n".join(lines)


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
    if replication.has_links(target_dsn):
        with _output.progress(quiet or as_json) as report:
            left = replication.leave(target_dsn, topology=topo, progress=report)
        label, number = next(iter(left.nodes.items()))
        _output.emit(fmt, left.as_dict(), lambda: (
            f"removed node {number} ({label}) from its topology: {', '.join(left.removed)}"
        ))  # fmt: skip
        return
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


@click.command()
@click.argument("dsns", nargs=-1, required=True, metavar="DSN DSN [DSN...]")
@click.option("--passfile", type=click.Path(path_type=Path),
              help="Keep the links' role passwords in this libpq passfile (readable by every"
              " server) instead of the subscriptions' conninfo.")  # fmt: skip
@click.option(
    "--allow-insecure",
    is_flag=True,
    help="Allow non-local databases without sslmode require or stricter.",
)
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for each link's initial copy.")  # fmt: skip
@_options.config
@_options.quiet
@_options.output_format
def mesh(
    dsns: tuple[str, ...],
    passfile: Path | None,
    allow_insecure: bool,
    timeout: float,
    config: Path | None,
    quiet: bool,
    fmt: str,
) -> None:
    """Link every database to every other directly, both ways: a full mesh.

    Each database publishes the messages written on it to each other one. Slots and walsenders
    grow as N*(N-1): pick a mesh for a few databases, a star (`replicate add`) for more. Run it
    again with one more DSN to add a member; `replicate remove --target` takes one out.
    """
    if len(dsns) < 2:
        raise click.UsageError("a mesh needs at least two DSNs")
    topo = topology.load(config)
    with _output.progress(quiet or fmt == "json") as report:
        result = replication.mesh(
            list(dsns), passfile=passfile, allow_insecure=allow_insecure, timeout=timeout,
            topology=topo, progress=report,
        )  # fmt: skip
    _output.emit(fmt, result.as_dict(), lambda: render_link(result, topo.path))
    for line in result.warnings:
        _output.warning(line)
