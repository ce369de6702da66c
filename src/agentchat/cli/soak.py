"""``agentchat soak``: agents under load on two embedded clusters while faults are injected."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentchat import soak as soak_mod
from agentchat.cli import _options, _output


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def render(report: soak_mod.SoakReport) -> str:
    """The report as text: one line per figure, then one per agent."""
    o = report.options
    rate = report.sent / report.seconds if report.seconds else 0.0
    replicas = int(o["databases"]) - 1
    lines = [
        f"soak: {report.seconds:.0f} s on PostgreSQL {report.version}, {o['agents']} agents on"
        f" {o['databases']} databases (a source, {replicas} replica(s) on a second cluster),"
        f" seed {o['seed']}",
        f"sent          {report.sent} messages ({rate:.1f}/s, target {o['rate']:g}/s);"
        f" {report.send_errors} send attempt(s) failed during faults and were retried",
        f"delivered     {report.delivered} of {report.expected} expected deliveries",
        f"duplicates    {report.duplicates} recorded twice; handled again after a cut:"
        f" {sum(a.handled_again for a in report.agents)}"
        f" (at most one per cut: {sum(a.cuts for a in report.agents)} cuts)",
        f"undelivered   {report.undelivered}; missing on replicas:"
        f" {sum(report.missing_on_replicas.values())}",
        f"faults        {len(report.faults)} injected, none repaired by hand",
    ]
    lines += [f"  {f.at:6.1f} s  {f.kind:<16} {f.detail}" for f in report.faults]
    lines.append("subscriptions")
    lines += [
        f"  {s['database']}: {s['name']} {'enabled' if s['enabled'] else 'DISABLED'},"
        f" apply worker {'running' if s['running'] else 'NOT running'},"
        f" {s['apply_errors']} apply error(s) counted"
        for s in report.subscriptions
    ]
    emb = ", ".join(f"{db} {done}/{rows}" for db, (rows, done) in report.embeddings.items())
    lines.append(f"embeddings    {emb or '-'} (embedded/rows, stand-in HTTP embedder)")
    lines.append(
        f"settled       {report.settle_seconds:.0f} s after the traffic stopped"
        f" (embedding backlog then: {report.embedding_backlog} rows)"
    )
    start, end = report.rss_kib.get("start", {}), report.rss_kib.get("end", {})
    if start and end:
        lines.append(
            f"rss           listener mean {_mib(start['listener_mean'])} ->"
            f" {_mib(end['listener_mean'])} (max {_mib(end['listener_max'])}); embedding"
            f" worker {_mib(start['worker'])} -> {_mib(end['worker'])}"
        )
    lines.append("agents        name: delivered/expected (database)")
    lines += [
        f"  {a.name}: {a.delivered}/{a.expected} ({a.database})"
        + (f", {a.recorded_twice} recorded twice" if a.recorded_twice else "")
        + (f", handled again {a.handled_again}" if a.handled_again else "")
        for a in report.agents
    ]
    if report.kept:
        lines.append(f"kept          {report.kept} (clusters running: source/, replicas/)")
    lines.append(f"verdict       {report.verdict}")
    lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)


@click.command("soak")
@click.option(
    "--minutes", type=float, required=True, metavar="N",
    help="How long the traffic runs (fractions work: 0.5 is 30 s).",
)  # fmt: skip
@click.option("--rate", type=float, default=200.0, show_default=True, help="Messages per second.")
@click.option("--agents", type=int, default=20, show_default=True, help="Listening agents.")
@click.option(
    "--databases", type=int, default=4, show_default=True,
    help="Databases: a source and its replicas (on a second cluster).",
)  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed of the traffic.")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Where the two clusters go (in DIR/soak) [default: a temporary directory].",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the clusters running at the end.")
@_options.output_format
def soak(
    minutes: float,
    rate: float,
    agents: int,
    databases: int,
    seed: int,
    data_dir: Path | None,
    keep: bool,
    fmt: str,
) -> int:
    """Agents under load while things break: 20 listeners on 4 databases (a source and 3
    replicas on a second embedded cluster), mixed traffic, faults on a schedule (restarts,
    walsender and process kills). Exit 0 only if nothing was lost or recorded twice."""
    options = soak_mod.SoakOptions(
        minutes=minutes, rate=rate, agents=agents, databases=databases, seed=seed,
        data_dir=data_dir, keep=keep,
    )  # fmt: skip
    options.check()  # bad input: one line, exit 2, before anything starts
    live = sys.stderr.isatty()
    report = soak_mod.run(options, progress=_progress if live else soak_mod.quiet)
    if live:
        click.echo("\r\x1b[2K", nl=False, err=True)
    _output.emit(fmt, report.as_dict(), lambda: render(report))
    return 0 if report.verdict == "ok" else 1


def _progress(line: str) -> None:
    click.echo(f"\r\x1b[2Ksoak: {line}", nl=False, err=True)
