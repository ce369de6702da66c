"""``agentchat bench``: agentchat's speed on embedded clusters, each figure beside its floor."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from agentchat import bench as bench_mod
from agentchat.bench import report
from agentchat.server import SUPPORTED_VERSIONS


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes (every figure, in well under a minute).")
@click.option(
    "--only", "only", multiple=True, metavar="NAME",
    help=f"Run only this benchmark (repeatable): {', '.join(bench_mod.BENCHMARKS)}.",
)  # fmt: skip
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    metavar="PATH", help="Also write the figures, units and targets as JSON to PATH.",
)  # fmt: skip
@click.option(
    "--pg-version", type=click.Choice([str(v) for v in SUPPORTED_VERSIONS]), default="18",
    show_default=True, help="PostgreSQL version of the embedded clusters.",
)  # fmt: skip
def bench(quick: bool, only: tuple[str, ...], json_path: Path | None, pg_version: str) -> None:
    """Delivery latency, throughput, catch-up, fan-out, embeddings and search, measured on
    private clusters, each figure against a bare floor measured in the same run and beside its
    target. Machines are noisy: compare ratios, not absolute figures."""
    live = sys.stderr.isatty()
    signal.signal(signal.SIGTERM, _terminated)  # the lab's clusters go on the way out
    start = time.perf_counter()
    figures = bench_mod.run(
        only, quick, _progress if live else bench_mod.quiet, version=int(pg_version)
    )
    if live:
        click.echo("\r\x1b[2K", nl=False, err=True)
    click.echo(report.render(figures))
    if json_path is not None:
        json_path.write_text(
            report.as_json(
                figures, quick=quick, pg_version=int(pg_version),
                seconds=round(time.perf_counter() - start, 1),
                command="agentchat bench" + (" --quick" if quick else "")
                + "".join(f" --only {name}" for name in only),
            ) + "\n"
        )  # fmt: skip


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _progress(line: str) -> None:
    click.echo(f"\r\x1b[2Kbench: {line}", nl=False, err=True)
