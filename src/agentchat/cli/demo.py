"""``agentchat demo``: the main job in one command (grows with each capability)."""

from __future__ import annotations

from pathlib import Path

import click

from agentchat import _db, policy
from agentchat import install as installer
from agentchat.cli import _output
from agentchat.cli.install import render_report, render_triggers
from agentchat.cli.server import cluster_options, get_cluster


@click.command()
@cluster_options
@click.option("--keep", is_flag=True, help="Leave the server running and print how to connect.")
def demo(data_dir: Path | None, name: str, keep: bool) -> None:
    """Start the embedded PostgreSQL, install nova_memory, show its trigger table."""
    cluster = get_cluster(data_dir, "demo" if name == "default" else name)
    click.echo(f"starting PostgreSQL in {cluster.directory} ...")
    was_running = cluster.is_running()
    cluster.start()
    try:
        click.echo(f"installing agentchat into nova_memory on {cluster.uri('nova_memory')}")
        report = installer.install(cluster.conninfo(), database="nova_memory")
        for line in report.warnings:
            _output.warning(line)
        click.echo(render_report(report))
        with _db.connection(cluster.conninfo("nova_memory")) as conn:
            facts = policy.read_role(conn)
            click.echo(render_triggers(policy.trigger_report(conn, facts), facts))
        if keep:
            click.echo(f"server left running; connect with: psql '{cluster.uri('nova_memory')}'")
    finally:
        if not keep and not was_running:
            cluster.stop()
            click.echo("server stopped")
