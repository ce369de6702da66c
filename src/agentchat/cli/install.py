"""``agentchat install`` and ``agentchat triggers``."""

from __future__ import annotations

from pathlib import Path

import click

from agentchat import _db, policy, topology
from agentchat import compat as compat_layers
from agentchat import install as installer
from agentchat.cli import _options, _output


@click.command()
@_options.connection
@click.option("--no-create", is_flag=True, help="Fail instead of creating a missing database.")
@click.option("--dry-run", is_flag=True, help="Print the SQL it would run; change nothing.")
@click.option(
    "--dimension", type=click.IntRange(1, 2000), default=None,
    help="Embedding vector dimension, fixed at first install [default: 384].",
)  # fmt: skip
@click.option(
    "--embed-replicated/--no-embed-replicated", default=None,
    help="On a replica: embed replicated messages here (for a source that runs no embedding"
    " worker), or go back to receiving the source's embeddings [default: unchanged].",
)  # fmt: skip
@click.option(
    "--compat", "compat", type=click.Choice(list(compat_layers.COMPATS)), multiple=True,
    help="Also install a compatibility layer: nova (NOVA-Openclaw's agent-chat plugin and"
    " scripts, unchanged; docs/nova.md).",
)  # fmt: skip
@click.option(
    "--compat-role", "compat_roles", multiple=True, metavar="ROLE",
    help="A role whose clients use the layer: its schema goes first on the role's search_path"
    " in this database (repeatable; run again to add roles).",
)  # fmt: skip
@_options.output_format
def install(
    dsn: str | None,
    database: str | None,
    no_create: bool,
    dry_run: bool,
    dimension: int | None,
    embed_replicated: bool | None,
    compat: tuple[str, ...],
    compat_roles: tuple[str, ...],
    fmt: str,
) -> None:
    """Install agentchat into a database and set its triggers by the policy.

    Creates the database if missing, creates pgvector, applies migrations, detects the
    node's kind (plain, source, subscriber) from the catalogs and sets trigger modes accordingly.
    A second run changes nothing.
    """
    report = installer.install(
        dsn, database=database, create=not no_create, dry_run=dry_run, dimension=dimension,
        embed_replicated=embed_replicated, compat=compat, compat_roles=compat_roles,
    )  # fmt: skip
    for line in report.warnings:
        _output.warning(line)
    _output.emit(fmt, report.as_dict(), lambda: render_dry_run(report) if dry_run
                 else render_report(report))  # fmt: skip


def render_dry_run(report: installer.InstallReport) -> str:
    """``--dry-run``: the SQL the installer would run, after a comment saying nothing changed."""
    lines = [
        f"-- agentchat install --dry-run for database {report.database!r}: nothing was changed"
    ]
    lines += report.statements or ["-- nothing to do: schema and triggers are up to date"]
    return "\n".join(lines)


def render_report(report: installer.InstallReport) -> str:
    facts = report.facts
    lines = [f"database   {report.database}"]
    lines.append(f"created    {'yes' if report.created else 'no (exists)'}")
    applied = f"applied {', '.join(report.applied)}" if report.applied else "up to date"
    lines.append(f"schema     version {report.schema_version} ({applied})")
    kind = facts.kind.value
    if facts.subscriptions:
        kind += f" (subscriptions: {', '.join(facts.subscriptions)})"
    elif facts.publications:
        kind += f" (publications: {', '.join(facts.publications)})"
    lines.append(f"role       {kind}")  # the node's kind, under its old label "role"
    if facts.is_replica and report.embedding_mode is not None:
        mode = report.embedding_mode
        lines.append(f"embeddings {mode.value}: {mode.description}")
    if not report.changes:
        lines.append("triggers   match the policy, nothing changed")
    for change in report.changes:
        lines.append(
            f"changed    {change.trigger}: {change.old.name} -> {change.new.name} ({change.reason})"
        )
    lines += [f"changed    {what}" for what in report.subscription_changes]
    for layer in report.compat:
        seen_by = ", ".join(layer.roles) or "no role yet: add --compat-role ROLE"
        lines.append(f"compat     {layer.name}: schema agentchat_{layer.name}, for {seen_by}")
    return "\n".join(lines)


@click.command()
@_options.connection
@_options.config
@_options.output_format
def triggers(dsn: str | None, database: str | None, config: Path | None, fmt: str) -> int:
    """Show agent_chat's triggers, their modes, and whether each matches the policy.

    The seed's "Check Trigger Status" table plus a verdict. Without --dsn and --database, every
    database of the topology file. Exit code 0 when every trigger matches the policy for its
    node's kind, 1 otherwise.
    """
    topo = topology.load(config, required=config is not None)
    from_topology = dsn is None and database is None and (config is not None or topo.exists)
    if from_topology:
        targets = topo.databases()
        if not targets:
            raise click.UsageError(f"{topo.path} names no databases; pass --dsn or --database")
    else:
        targets = [_db.make_conninfo(dsn, dbname=database)]
    reports = []
    for conninfo in targets:
        with _db.connection(conninfo) as conn:
            facts = policy.read_kind(conn)
            reports.append((conninfo, facts, policy.trigger_report(conn, facts)))
    ok = all(rows and all(r.ok for r in rows) for _, _, rows in reports)
    data: object = (
        [
            # the node's kind, kept under its old key "role" for compatibility
            {"database": _db.describe(c), "role": f.kind.value, "triggers": _trigger_rows(r)}
            for c, f, r in reports
        ]
        if from_topology
        else _trigger_rows(reports[0][2])
    )

    def text() -> str:
        parts = []
        for conninfo, facts, rows in reports:
            table = render_triggers(rows, facts)
            parts.append(f"{_db.describe(conninfo)}\n{table}" if from_topology else table)
        return "\n\n".join(parts)

    _output.emit(fmt, data, text)
    return 0 if ok else 1


def _trigger_rows(rows: list[policy.TriggerStatus]) -> list[dict[str, object]]:
    return [
        {
            "schema": r.schema,
            "table": r.table,
            "trigger": r.trigger,
            "mode": r.mode_name,
            "expected": r.expected.name if r.expected else None,
            "ok": r.ok,
        }
        for r in rows
    ]


def render_triggers(rows: list[policy.TriggerStatus], facts: policy.NodeFacts) -> str:
    body = _output.table(
        ["schemaname", "tablename", "triggername", "trigger_mode", "verdict"],
        [
            (
                r.schema,
                r.table,
                r.trigger,
                r.mode_name,
                "ok" if r.ok else f"WRONG (policy: {r.expected.name if r.expected else '-'})",
            )
            for r in rows
        ],
    )
    return f"role: {facts.kind.value}\n{body}"  # the node's kind, under its old label
