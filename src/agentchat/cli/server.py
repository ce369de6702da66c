"""``agentchat server start|stop|status``: a private PostgreSQL for users and the demo."""

from __future__ import annotations

import os
from pathlib import Path

import click
import platformdirs

from agentchat import server as embedded
from agentchat.cli import _options, _output


def default_data_dir() -> Path:
    """$AGENTCHAT_DATA_DIR, else /var/lib/agentchat for root, else the user's data directory.

    Root's home is not traversable by the unprivileged user the server runs as, and agentchat
    never chmods a user's directories, so root's clusters live where system services keep data.
    """
    if os.environ.get("AGENTCHAT_DATA_DIR"):
        return Path(os.environ["AGENTCHAT_DATA_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/agentchat")
    return Path(platformdirs.user_data_dir("agentchat"))


def cluster_options(func: _options.F) -> _options.F:
    func = click.option(
        "--name", default="default", show_default=True,
        help="Cluster name: one directory per cluster under the data directory.",
    )(func)  # fmt: skip
    func = click.option(
        "--data-dir", type=click.Path(path_type=Path), default=None,
        help="Where clusters live [default: $AGENTCHAT_DATA_DIR, /var/lib/agentchat for root,"
        " else ~/.local/share/agentchat].",
    )(func)  # fmt: skip
    return func


def get_cluster(data_dir: Path | None, name: str, version: int | None = None) -> embedded.Cluster:
    from agentchat._db import validate_identifier

    validate_identifier(name, "cluster name")
    if "/" in name or name in (".", ".."):
        from agentchat.errors import InvalidInput

        raise InvalidInput(f"cluster name {name!r} must not contain '/'")
    return embedded.Cluster((data_dir or default_data_dir()) / name, version=version)


@click.group()
def server() -> None:
    """Run a private PostgreSQL (16 or 18, with pgvector and wal_level=logical)."""


@server.command()
@cluster_options
@click.option(
    "--pg-version", type=click.Choice([str(v) for v in embedded.SUPPORTED_VERSIONS]),
    default=None, help=f"PostgreSQL major version for a new cluster [default: "
    f"{embedded.DEFAULT_VERSION}].",
)  # fmt: skip
@_options.output_format
def start(data_dir: Path | None, name: str, pg_version: str | None, fmt: str) -> None:
    """Initialise (first time) and start the cluster; print its connection URI."""
    cluster = get_cluster(data_dir, name, int(pg_version) if pg_version else None)
    cluster.start()
    status = cluster.status()
    _output.emit(fmt, status.as_dict(), lambda: status.uri)


@server.command()
@cluster_options
@click.option(
    "--mode", type=click.Choice(["smart", "fast", "immediate"]), default="fast",
    show_default=True, help="PostgreSQL shutdown mode.",
)  # fmt: skip
def stop(data_dir: Path | None, name: str, mode: str) -> None:
    """Stop the cluster (a no-op when it is not running)."""
    cluster = get_cluster(data_dir, name)
    if not cluster.initialized:
        _output.warning(f"no cluster in {cluster.directory}")
        return
    stopped = cluster.stop(mode)
    click.echo("stopped" if stopped else "not running")


@server.command()
@cluster_options
@_options.output_format
def status(data_dir: Path | None, name: str, fmt: str) -> int:
    """Is the cluster running? Exit 0 if so, 3 if not (as pg_ctl status)."""
    cluster = get_cluster(data_dir, name)
    if not cluster.initialized:
        # the same keys as for an existing cluster, so scripts need no special case
        missing = {"running": False, "pid": None, "port": None, "version": None,
                   "directory": str(cluster.directory), "uri": None}  # fmt: skip
        _output.emit(fmt, missing, lambda: f"no cluster in {cluster.directory}")
        return 3
    state = cluster.status()

    def text() -> str:
        if state.running:
            return f"running (pid {state.pid}, PostgreSQL {state.version}): {state.uri}"
        return f"stopped (PostgreSQL {state.version}, {state.directory})"

    _output.emit(fmt, state.as_dict(), text)
    return 0 if state.running else 3
