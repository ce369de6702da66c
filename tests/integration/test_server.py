"""The embedded PostgreSQL clusters (agentchat.server), against real servers on 16 and 18.

One fresh cluster per version for the module (init ~1 s); every test leaves it running.
"""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as pg_conninfo

from agentchat import errors
from agentchat.server import Cluster
from tests import helpers

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def cluster(cluster_root: Path, pg_version: int) -> Iterator[Cluster]:
    """A cluster made by this module, in a directory of its own."""
    made = Cluster(cluster_root / f"srv-{uuid.uuid4().hex[:8]}", version=pg_version, ephemeral=True)
    made.start()
    yield made
    made.destroy()


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    cluster.start()  # a no-op unless an earlier test left it stopped
    return cluster


def show(cluster: Cluster, setting: str) -> str:
    return str(helpers.execute(cluster.conninfo(), f"SHOW {setting}")[0][0])


def proc_uid(pid: int) -> list[int]:
    """The real, effective, saved and filesystem uid of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


def process_gone(pid: int) -> bool:
    """No process with that pid, or only a zombie (a killed postmaster waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# -- a new cluster -------------------------------------------------------------------------------


def test_new_cluster_is_initialised_with_logical_replication(running: Cluster, pg_version: int):
    assert running.initialized
    assert (running.data / "PG_VERSION").read_text().strip() == str(pg_version)
    assert show(running, "wal_level") == "logical"
    for setting in ("max_replication_slots", "max_wal_senders", "max_logical_replication_workers"):
        assert int(show(running, setting)) >= 10, setting
    version_num = int(show(running, "server_version_num"))
    assert version_num // 10000 == pg_version
    assert running.status().version == pg_version


def test_listens_on_loopback_port_and_own_socket(running: Cluster):
    port = running.port
    assert show(running, "listen_addresses") == "127.0.0.1"
    assert int(show(running, "port")) == port
    # its own socket directory, with the socket in it
    assert show(running, "unix_socket_directories") == str(running.socket_dir)
    sock = running.socket_dir / f".s.PGSQL.{port}"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    over_socket = helpers.execute(running.conninfo(), "SELECT inet_server_addr()")
    assert over_socket == [(None,)]  # a Unix-socket connection has no server address
    # TCP on 127.0.0.1:port, the password coming from the passfile
    params = pg_conninfo.conninfo_to_dict(running.tcp_conninfo())
    assert "password" not in params
    assert params["passfile"] == str(running.passfile)
    assert stat.S_IMODE(running.passfile.stat().st_mode) == 0o600
    addr, server_port = helpers.execute(
        running.tcp_conninfo(), "SELECT host(inet_server_addr()), inet_server_port()"
    )[0]
    assert (addr, server_port) == ("127.0.0.1", port)


def test_tcp_needs_the_password(running: Cluster, tmp_path: Path, monkeypatch):
    """TCP is not trust: without the passfile the same connection is refused."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    empty = tmp_path / "empty.pgpass"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(running.tcp_conninfo(), passfile=str(empty), connect_timeout=5).close()


@pytest.mark.skipif(not IS_ROOT, reason="only root hands the server to an unprivileged user")
def test_as_root_the_server_runs_unprivileged(running: Cluster):
    pid = running.pid()
    assert pid is not None
    uids = proc_uid(pid)
    assert 0 not in uids, f"postmaster {pid} runs with uids {uids}"
    owner = running.directory.stat()
    assert owner.st_uid == uids[0]
    assert stat.S_IMODE(owner.st_mode) == 0o700
    assert running.data.stat().st_uid == uids[0]
    assert stat.S_IMODE(running.data.stat().st_mode) == 0o700


# -- lifecycle -----------------------------------------------------------------------------------


def test_start_on_running_cluster_is_a_no_op(running: Cluster):
    pid = running.pid()
    running.start()
    assert running.pid() == pid


def test_restart_keeps_the_port(running: Cluster):
    port, pid = running.port, running.pid()
    running.restart()
    assert running.port == port
    assert running.pid() not in (None, pid)
    assert helpers.execute(running.tcp_conninfo(), "SELECT inet_server_port()") == [(port,)]


@pytest.mark.parametrize("mode", ["smart", "fast", "immediate"])
def test_stop_modes(running: Cluster, mode: str):
    pid = running.pid()
    assert pid is not None
    log_size = running.log.stat().st_size
    assert running.stop(mode) is True
    assert running.pid() is None
    assert not running.is_running()
    assert not (running.data / "postmaster.pid").exists()
    helpers.wait_for(lambda: process_gone(pid), timeout=5, what=f"postmaster {pid} to exit")
    assert running.stop(mode) is False  # not running any more
    running.start()
    assert helpers.execute(running.conninfo(), "SELECT 1") == [(1,)]
    recovered = "not properly shut down" in running.log.read_text()[log_size:]
    assert recovered == (mode == "immediate")  # only an immediate stop needs crash recovery


def test_stop_returns_false_when_never_started(cluster_root: Path, pg_version: int):
    fresh = Cluster(cluster_root / f"never-{uuid.uuid4().hex[:8]}", version=pg_version)
    assert fresh.stop() is False
    assert fresh.pid() is None
    assert not fresh.directory.exists()


def test_start_after_kill_9_despite_stale_postmaster_pid(running: Cluster):
    pid = running.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    helpers.wait_for(lambda: running.pid() is None, timeout=5, what="pid() to notice the kill")
    assert (running.data / "postmaster.pid").exists()  # left behind, naming the dead pid
    assert not running.is_running()
    assert running.stop() is False
    running.start()
    new_pid = running.pid()
    assert new_pid not in (None, pid)
    assert not process_gone(new_pid)
    assert helpers.execute(running.conninfo(), "SELECT 1") == [(1,)]


# -- refusals ------------------------------------------------------------------------------------


def test_untraversable_parent_is_named_and_left_alone(cluster_root: Path, pg_version: int):
    blocked = Path(tempfile.mkdtemp(prefix="blocked-", dir=cluster_root))
    # as root: a root-owned 0700 directory; otherwise one we cannot traverse ourselves
    mode = 0o700 if IS_ROOT else 0o600
    blocked.chmod(mode)
    try:
        target = Cluster(blocked / "c", version=pg_version, ephemeral=True)
        with pytest.raises(errors.ServerError) as raised:
            target.start()
        message = str(raised.value)
        assert str(blocked) in message
        assert "not traversable" in message
        assert stat.S_IMODE(blocked.stat().st_mode) == mode  # nothing was chmod-ed
        blocked.chmod(0o700)
        assert list(blocked.iterdir()) == []  # and nothing was made inside
    finally:
        blocked.chmod(0o700)
        helpers.rmtree(blocked)


def test_other_version_for_existing_cluster_is_refused(running: Cluster, pg_version: int):
    other = 16 if pg_version == 18 else 18
    with pytest.raises(errors.ServerError, match=f"PostgreSQL {pg_version} cluster, not {other}"):
        Cluster(running.directory, version=other)
    # the same version, or none, opens it
    assert Cluster(running.directory, version=pg_version).pid() == running.pid()
    assert Cluster(running.directory).version == pg_version
