"""``agentchat status``, ``doctor``, ``verify`` and ``upgrade``: what someone runs at 3 a.m.

Exit codes of status and doctor: 0 healthy, 1 degraded, 2 broken (the worst check).
"""

from __future__ import annotations

from pathlib import Path

import click

from agentchat import _db, topology
from agentchat import install as installer
from agentchat.cli import _options, _output
from agentchat.cli._prometheus import render as render_prometheus
from agentchat.ops import doctor as doctor_mod
from agentchat.ops import verify as verify_mod
from agentchat.ops.judge import DEFAULT_WAL_THRESHOLD, Verdict
from agentchat.ops.report import Report
from agentchat.ops.report import status as run_status

MARK = {
    Verdict.OK: "ok",
    Verdict.DEGRADED: "DEGRADED",
    Verdict.BROKEN: "BROKEN",
}


def _targets(dsns: tuple[str, ...], config: Path | None) -> tuple[list[str], topology.Topology]:
    """The databases to look at: the DSNs given, else the topology file's, else libpq's default."""
    topo = topology.load(config, required=config is not None)
    if dsns:
        return [_conninfo(d) for d in dsns], topo
    if topo.databases():
        return topo.databases(), topo
    return [_db.make_conninfo(None)], topo


def _conninfo(dsn: str) -> str:
    """A DSN as conninfo; a bare word is a database name, as for psql."""
    plain = "=" not in dsn and "://" not in dsn
    return _db.make_conninfo(None if plain else dsn, dbname=dsn if plain else None)


def _two_way(topo: topology.Topology) -> tuple[list[str], list[str]]:
    """The topology's two-way nodes (the hub, two-way replicas, a mesh's members; empty when it
    has none) and its one-way replicas."""
    linked = [r.dsn for r in topo.replicas if r.mode == "two-way"]
    if not linked and not topo.mesh:
        return [], [r.dsn for r in topo.replicas]
    found = ([topo.source] if topo.source and linked else []) + linked
    found += [m for m in topo.mesh if m not in found]
    return found, [r.dsn for r in topo.replicas if r.mode != "two-way"]


def _listed(conninfos: list[str], topo: topology.Topology) -> topology.Topology | None:
    """The topology, when the databases looked at are its own (then it is judged too)."""
    return topo if topo.databases() and conninfos == topo.databases() else None


def render_status(report: Report, *, verbose: bool) -> str:
    lines = []
    for facts in report.databases:
        kind = facts.node.kind.value if facts.reachable else "unreachable"
        mine = [c for c in report.checks if c.database == facts.name]
        worst = max((c.verdict for c in mine), default=Verdict.OK)
        lines.append(f"{facts.name}: {kind}, schema {facts.schema_version} [{MARK[worst]}]")
        for check in mine:
            if check.ok and not verbose:
                continue
            lines.append(f"  {MARK[check.verdict]:<8} {check.check}: {check.detail}")
            if check.fix and not check.ok:
                lines.append(f"  {'':<8} fix: {check.fix}")
    lines.append(f"verdict: {MARK[report.verdict]}")
    return "\n".join(lines)


@click.command()
@_options.dsns(positional=True)
@_options.config
@_options.output_format(
    "prometheus", help="Output format (prometheus: for node_exporter's textfile collector)."
)
@click.option(
    "--wal-threshold",
    type=int,
    default=DEFAULT_WAL_THRESHOLD,
    show_default=True,
    help="Bytes of WAL an inactive slot may hold before it is reported.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show the checks that passed too.")
def status(
    dsns: tuple[str, ...],
    config: Path | None,
    fmt: str,
    wal_threshold: int,
    verbose: bool,
) -> int:
    """Kinds, trigger modes, subscriptions and slots of every database, judged.

    The databases: DSNs as arguments or --dsn, else the topology file's. Exit 0 healthy,
    1 degraded, 2 broken.
    """
    conninfos, topo = _targets(dsns, config)
    report = run_status(conninfos, wal_threshold=wal_threshold, topology=_listed(conninfos, topo))
    _output.emit(
        fmt,
        report.as_dict(),
        lambda: render_status(report, verbose=verbose),
        prometheus=lambda: render_prometheus(report),
    )
    return int(report.verdict)


@click.command()
@_options.dsns(positional=True)
@_options.config
@click.option(
    "--fix",
    "do_fix",
    is_flag=True,
    help="Repair what is safe (trigger modes, a subscription stopped by a cause that"
    " is gone); never deletes data.",
)
@_options.output_format
@click.option("--wal-threshold", type=int, default=DEFAULT_WAL_THRESHOLD, show_default=True)
def doctor(
    dsns: tuple[str, ...], config: Path | None, do_fix: bool, fmt: str, wal_threshold: int
) -> int:
    """Name each problem's cause and fix; with --fix, repair the safe ones.

    Knows the seed's failure modes: deaf replicas (notify trigger not ALWAYS), embed trigger in
    REPLICA mode, subscriptions stopped by a conflicting row, dead apply workers, slots holding
    WAL, local rows in a replica, differing schema versions, wal_level, vanished publications.
    The databases: DSNs as arguments or --dsn, else the topology file's.
    """
    conninfos, topo = _targets(dsns, config)
    listed = _listed(conninfos, topo)

    def diagnose() -> Report:
        return doctor_mod.diagnose(
            conninfos, source=topo.source, wal_threshold=wal_threshold, topology=listed
        )

    report = diagnose()
    fixed: list[str] = []
    if do_fix:
        fixed = doctor_mod.fix(report, conninfos, source=topo.source)
        if fixed:
            report = diagnose()
    _output.emit(
        fmt,
        {**report.as_dict(), "fixed": fixed},
        lambda: "\n".join(
            [*(f"fixed: {line}" for line in fixed), render_status(report, verbose=False)]
        ),
    )
    return int(report.verdict)


@click.command()
@click.option("--source", "source_dsn", metavar="DSN", help="[default: the topology's source]")
@click.option(
    "--target", "target_dsn", metavar="DSN", help="[default: every replica of the topology]"
)
@_options.dsns
@_options.config
@click.option(
    "--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the probe."
)
@_options.output_format
def verify(
    source_dsn: str | None,
    target_dsn: str | None,
    dsns: tuple[str, ...],
    config: Path | None,
    timeout: float,
    fmt: str,
) -> int:
    """Send a probe message through replication and time its arrival and NOTIFY.

    One way, a probe goes from the source to each replica. Two-way (the nodes of a star,
    relays or a mesh: --dsn for each, or the topology file's), a probe is written on each node
    and must reach every other node exactly once (one NOTIFY there).

    Exit 0 only when, on every target, the probe arrived, the NOTIFY was heard and the probe
    has at most one embedding row.
    """
    topo = topology.load(config, required=config is not None)
    if dsns:
        if source_dsn or target_dsn or len(dsns) < 2:
            raise click.UsageError("give two or more --dsn (two-way), or --source and --target")
        results = verify_mod.verify_links([_conninfo(d) for d in dsns], timeout=timeout)
        _output.emit(fmt, [r.as_dict() for r in results], lambda: render_verify(results))
        return 0 if all(r.ok for r in results) else 1
    linked, one_way = _two_way(topo)
    if linked and not source_dsn and not target_dsn:
        results = verify_mod.verify_links(linked, timeout=timeout) if len(linked) > 1 else []
        if topo.source:
            results += [verify_mod.verify(topo.source, t, timeout=timeout) for t in one_way]
        _output.emit(fmt, [r.as_dict() for r in results], lambda: render_verify(results))
        return 0 if results and all(r.ok for r in results) else 1
    source = source_dsn or topo.source
    targets = [target_dsn] if target_dsn else [r.dsn for r in topo.replicas]
    if not source or not targets:
        raise click.UsageError("give --source and --target (or a topology file with replicas)")
    results = [verify_mod.verify(source, t, timeout=timeout) for t in targets]
    data = [r.as_dict() for r in results]
    _output.emit(fmt, data[0] if target_dsn else data, lambda: render_verify(results))
    return 0 if all(r.ok for r in results) else 1


@click.command()
@_options.config
@_options.output_format
def upgrade(config: Path | None, fmt: str) -> None:
    """Apply pending migrations across the topology: replicas first, then the source.

    DDL does not replicate: a column the source starts sending must already exist on every
    replica, so replicas are upgraded before the source.
    """
    topo = topology.load(config, required=True) if config else topology.load()
    if not topo.databases():
        raise click.UsageError(f"{topo.path} names no databases (agentchat replicate add first)")
    reports = installer.upgrade([r.dsn for r in topo.replicas], topo.source)
    _output.emit(fmt, [r.as_dict() for r in reports], lambda: render_upgrade(reports))


def render_verify(results: list[verify_mod.VerifyResult]) -> str:
    lines = []
    for r in results:
        # two-way: every node writes, so each line names its writer too
        where = r.target if r.notifications is None else f"{r.source} -> {r.target}"
        if r.error:
            lines.append(f"{where}: FAILED: {r.error}")
            continue
        arrival = f"arrived in {r.arrival_ms} ms" if r.arrived else "did NOT arrive"
        notify = f"NOTIFY in {r.notify_ms} ms" if r.notified else "NO NOTIFY heard"
        if r.notifications is not None and r.notifications > 1:
            notify += f" ({r.notifications} NOTIFYs: it arrived more than once)"
        verdict = "ok" if r.ok else "FAILED"
        lines.append(
            f"{where}: {arrival}, {notify}, {r.embedding_rows} embedding row(s) [{verdict}]"
        )
    return "\n".join(lines)


def render_upgrade(reports: list[installer.InstallReport]) -> str:
    lines = []
    for r in reports:
        what = f"applied {', '.join(r.applied)}" if r.applied else "up to date"
        lines.append(f"{r.database}: schema version {r.schema_version} ({what})")
        lines += [
            f"  changed {c.trigger}: {c.old.name} -> {c.new.name} ({c.reason})" for c in r.changes
        ]
        lines += [f"  changed {what}" for what in r.subscription_changes]
    return "\n".join(lines)
