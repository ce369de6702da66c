"""Real PostgreSQL for the suite: two clusters per version ("hub" and "remote", two hosts).

AGENTCHAT_PG_VERSIONS=16,18 (the test script's default) runs every database test on both
versions; a plain `pytest` run uses 18. Nothing here mocks the database.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agentchat import install
from agentchat.server import Cluster
from tests import helpers

VERSIONS = [int(v) for v in os.environ.get("AGENTCHAT_PG_VERSIONS", "18").split(",") if v]
#: the commands as users run them and the docs: agentchat's own surface, the same on every
#: server version, so they run on the newest one only (AGENTCHAT_ALL_VERSIONS=1: on each); the
#: library against each server version is what tests/integration/ covers
NEWEST_ONLY = ("tests/cli/", "tests/test_docs.py", "tests/faults/", "tests/property/")
#: and so do the scenarios marked ``volume`` (thousands of messages or rows: what they add to
#: their shorter neighbours is volume, which does not depend on the server's version)
VOLUME = "volume"


#: the suite's clusters retry a failed apply worker or a lost connection every second instead of
#: every 5 s (PostgreSQL's default): the faults and heals under test happen the same way, sooner
TEST_SETTINGS = {"wal_retrieve_retry_interval": "1s"}


#: the longest tests that need nothing but the session's clusters (each document of the docs,
#: up to two minutes each) or clusters of their own (agentchat bench --quick, about a minute):
#: run first, each its own xdist work unit, so that the two workers share them instead of one
#: worker ending the suite with all of them in a row
RUN_FIRST = ("tests/test_docs.py::test_document_runs", "tests/cli/test_bench.py::")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(RUN_FIRST))  # stable otherwise
    if len(VERSIONS) < 2 or os.environ.get("AGENTCHAT_ALL_VERSIONS"):
        return
    newest = max(VERSIONS)
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        version = callspec.params.get("pg_version") if callspec is not None else None
        older = version is not None and version != newest
        newest_only = item.nodeid.startswith(NEWEST_ONLY) or item.get_closest_marker(VOLUME)
        (drop if older and newest_only else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (scripts/test), except that each of :data:`RUN_FIRST`'s tests is a
    work unit of its own: a module otherwise stays on one worker, with its module fixtures."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(RUN_FIRST):
                return nodeid
            return str(super()._split_scope(nodeid))

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def cluster_root() -> Iterator[Path]:
    """A directory for the suite's clusters, traversable by the server's unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="agentchat-tests-"))
    root.chmod(0o755)  # our own fresh temp dir; the clusters inside are 0700
    yield root
    helpers.rmtree(root)


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"pg{v}" for v in VERSIONS])
def pg_version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def _cluster(
    root: Path, name: str, version: int, superuser: str | None = None
) -> Iterator[Cluster]:
    cluster = Cluster(
        root / f"{name}{version}",
        version=version,
        ephemeral=True,
        superuser=superuser,
        settings=TEST_SETTINGS,
    )
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def hub(cluster_root: Path, pg_version: int) -> Iterator[Cluster]:
    """The first "host": a cluster whose databases play the sources (and same-cluster replicas)."""
    yield from _cluster(cluster_root, "hub", pg_version)


@pytest.fixture(scope="session")
def remote(cluster_root: Path, pg_version: int) -> Iterator[Cluster]:
    """The second "host": a separate cluster with another superuser (``agentadmin``), reached
    over TCP with password authentication (``remote.tcp_conninfo``) like another machine."""
    yield from _cluster(cluster_root, "remote", pg_version, superuser="agentadmin")


#: the template every installed test database is cloned from, one per cluster (see
#: :func:`_template`); a plain node, default embedding dimension
TEMPLATE = "agentchat_template"


def _fresh_database(cluster: Cluster, template: str | None = None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    helpers.create_database(cluster, name, template)
    yield cluster.conninfo(name)
    helpers.drop_database(cluster, name)


def _template(cluster: Cluster) -> str:
    """A database with agentchat installed (a plain node), made once per cluster and closed to
    connections, so that ``CREATE DATABASE ... TEMPLATE`` may copy it at any time."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        exists = conn.execute("SELECT FROM pg_database WHERE datname = %s", (TEMPLATE,)).fetchone()
    if not exists:
        helpers.create_database(cluster, TEMPLATE)
        install.install(cluster.conninfo(TEMPLATE))
        helpers.execute(
            cluster.conninfo(),
            f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        )
    return TEMPLATE


@pytest.fixture(scope="session")
def hub_template(hub: Cluster) -> str:
    """The hub's installed template database (name)."""
    return _template(hub)


@pytest.fixture(scope="session")
def remote_template(remote: Cluster) -> str:
    """The remote cluster's installed template database (name)."""
    return _template(remote)


@pytest.fixture
def db(hub: Cluster) -> Iterator[str]:
    """A fresh, empty database on the hub; its conninfo."""
    yield from _fresh_database(hub)


@pytest.fixture
def db2(hub: Cluster) -> Iterator[str]:
    """A second fresh database on the hub (same cluster as `db`)."""
    yield from _fresh_database(hub)


@pytest.fixture
def remote_db(remote: Cluster) -> Iterator[str]:
    """A fresh, empty database on the remote cluster; its conninfo."""
    yield from _fresh_database(remote)


@pytest.fixture
def installed_db(hub: Cluster, hub_template: str) -> Iterator[str]:
    """A fresh database on the hub with agentchat installed (a plain node, as ``install(db)``
    leaves it): a copy of the hub's template, several times quicker than installing."""
    yield from _fresh_database(hub, hub_template)


@pytest.fixture
def installed_db2(hub: Cluster, hub_template: str) -> Iterator[str]:
    """A second installed database on the hub (same cluster as `installed_db`)."""
    yield from _fresh_database(hub, hub_template)


@pytest.fixture
def installed_remote_db(remote: Cluster, remote_template: str) -> Iterator[str]:
    """An installed database on the remote cluster (a plain node)."""
    yield from _fresh_database(remote, remote_template)


@pytest.fixture(autouse=True)
def _private_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory, so no ./agentchat.toml leaks between tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTCHAT_CONFIG", raising=False)
