"""``agentchat server start|status|stop``: the real console script, real clusters."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agentchat.server import Cluster
from tests import helpers
from tests.helpers import EXE, invoke, run_cli

IS_ROOT = os.geteuid() == 0
STATUS_KEYS = {"running", "pid", "port", "version", "directory", "uri"}
TEST_USER = "agentchat-test"


@pytest.fixture
def data_dir(cluster_root: Path) -> Iterator[Path]:
    """A data directory (traversable by the server's user) whose clusters are destroyed after."""
    path = Path(tempfile.mkdtemp(prefix="cli-", dir=cluster_root))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        if (child / "cluster.json").exists():
            Cluster(child).destroy()
    helpers.rmtree(path)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agentchat: error: ")
    return lines[0]


@pytest.mark.slow
def test_start_status_stop(data_dir: Path, pg_version: int):
    where = ["--data-dir", str(data_dir), "--name", "x"]
    started = run_cli("server", "start", *where, "--pg-version", str(pg_version))
    assert started.returncode == 0, started.stderr
    uri = started.stdout.strip()
    assert uri.startswith("postgresql://")
    assert len(started.stdout.splitlines()) == 1
    cluster = Cluster(data_dir / "x")
    try:
        with psycopg.connect(uri) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(version[0]) // 10000 == pg_version
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        pid = cluster.pid()
        assert pid is not None

        status = run_cli("server", "status", *where)
        assert status.returncode == 0, status.stderr
        assert f"pid {pid}" in status.stdout
        assert status.stdout.startswith("running")

        as_json = run_cli("server", "status", *where, "--json")
        assert as_json.returncode == 0
        state = json.loads(as_json.stdout)
        assert set(state) == STATUS_KEYS
        assert state["running"] is True
        assert state["pid"] == pid
        assert state["port"] == cluster.port
        assert state["version"] == pg_version
        assert state["directory"] == str(data_dir / "x")
        assert state["uri"] == uri

        again = run_cli("server", "start", *where, "--json")  # running: a no-op, same server
        assert again.returncode == 0
        assert json.loads(again.stdout) == state

        stopped = run_cli("server", "stop", *where)
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped")
        assert cluster.pid() is None
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(uri, connect_timeout=3).close()

        status = run_cli("server", "status", *where)
        assert status.returncode == 3
        assert status.stdout.startswith("stopped")
        as_json = run_cli("server", "status", *where, "--json")
        assert as_json.returncode == 3
        state = json.loads(as_json.stdout)
        assert set(state) == STATUS_KEYS
        assert (state["running"], state["pid"]) == (False, None)

        again = run_cli("server", "stop", *where)
        assert (again.returncode, again.stdout.strip()) == (0, "not running")
    finally:
        cluster.destroy()


def test_status_of_a_missing_cluster(data_dir: Path):
    done = invoke("server", "status", "--data-dir", str(data_dir), "--name", "nothing", "--json")
    assert done.returncode == 3
    state = json.loads(done.stdout)
    assert set(state) == STATUS_KEYS
    assert state["running"] is False
    assert state["directory"] == str(data_dir / "nothing")
    assert not (data_dir / "nothing").exists()
    plain = invoke("server", "status", "--data-dir", str(data_dir), "--name", "nothing")
    assert plain.returncode == 3
    assert plain.stdout.startswith("no cluster")


@pytest.mark.parametrize("name", ["a/b", "..", ""])
def test_bad_name_is_one_line_of_error(data_dir: Path, name: str):
    done = invoke("server", "start", "--data-dir", str(data_dir), "--name", name)
    line = one_error_line(done)
    assert "cluster name" in line
    assert done.stdout == ""
    assert list(data_dir.iterdir()) == []  # nothing created, nothing started


def test_other_version_for_existing_cluster(data_dir: Path, pg_version: int):
    other = 16 if pg_version == 18 else 18
    where = ["--data-dir", str(data_dir), "--name", "v"]
    cluster = Cluster(data_dir / "v", version=pg_version, ephemeral=True)
    cluster.init()  # initialised, not started: enough for the version check
    done = invoke("server", "start", *where, "--pg-version", str(other))
    line = one_error_line(done)
    assert f"holds a PostgreSQL {pg_version} cluster, not {other}" in line
    assert cluster.pid() is None


# -- a non-root caller ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged user that is not the server account (created for the test, then removed)."""
    if not IS_ROOT:
        pytest.skip("not root: every other test here already runs the server as its caller")
    created = False
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        created = True
        entry = pwd.getpwnam(TEST_USER)
    yield entry
    if created:
        # userdel refuses while a process of the user exists, even a zombie not yet reaped;
        # exit code 6: the user is already gone
        def userdel() -> bool:
            done = subprocess.run(["userdel", TEST_USER], capture_output=True, check=False)
            return done.returncode in (0, 6)

        helpers.wait_for(userdel, timeout=10, what=f"userdel {TEST_USER}")


def as_user(user: pwd.struct_passwd, cwd: Path) -> dict[str, Any]:
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": cwd}


def runs_as(command: list[str], user: pwd.struct_passwd, cwd: Path) -> bool:
    try:
        probe = subprocess.run(
            [*command, "--version"], capture_output=True, check=False, timeout=60,
            **as_user(user, cwd),
        )  # fmt: skip
    except OSError:  # not executable by that user
        return False
    return probe.returncode == 0 and b"agentchat" in probe.stdout


def cli_for(user: pwd.struct_passwd, cwd: Path) -> list[str]:
    """How *user* runs the agentchat CLI: the venv's console script, or the same code under a
    system Python of the same version when the venv's interpreter (say under /root) is out of
    reach; skip if neither works."""
    script = Path(EXE)
    if runs_as([str(script)], user, cwd):
        return [str(script)]
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(minor, path="/usr/local/bin:/usr/bin:/bin")
    if system:
        code = (
            "import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'agentchat';"
            " from agentchat.cli import entry_point; entry_point()"
        )
        # -I -S: none of the system's own packages, only the venv's (and its editable agentchat)
        command = [system, "-I", "-S", "-c", code, sysconfig.get_paths()["purelib"]]
        if runs_as(command, user, cwd):
            return command
    pytest.skip(
        f"user {user.pw_name} can execute neither {script} (its interpreter"
        f" {Path(sys.executable).resolve()} is not reachable) nor a system {minor}"
    )


@pytest.mark.slow
def test_non_root_caller_runs_its_own_server(
    test_user: pwd.struct_passwd, cluster_root: Path, pg_version: int
):
    home = Path(tempfile.mkdtemp(prefix="user-", dir=cluster_root))
    os.chown(home, test_user.pw_uid, test_user.pw_gid)
    cluster = Cluster(home / "mine")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C.UTF-8"}
    where = ["--data-dir", str(home), "--name", "mine"]
    pid = None
    try:
        command = cli_for(test_user, home)
        done = subprocess.run(
            [*command, "server", "start", *where, "--pg-version", str(pg_version), "--json"],
            capture_output=True, text=True, check=False, timeout=120, env=env,
            **as_user(test_user, home),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        state = json.loads(done.stdout)
        assert state["running"] is True
        pid = state["pid"]
        assert helpers.execute(state["uri"], "SELECT current_user") == [("postgres",)]
        # the server and every file of the cluster belong to that user, not to a server account
        uid_line = next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )  # fmt: skip
        assert {int(v) for v in uid_line.split()[1:]} == {test_user.pw_uid}
        for path in (cluster.directory, cluster.data, cluster.socket_dir, cluster.passfile):
            assert path.stat().st_uid == test_user.pw_uid, path
        assert stat.S_IMODE(cluster.directory.stat().st_mode) == 0o700

        status = subprocess.run(
            [*command, "server", "status", *where], capture_output=True, text=True,
            check=False, timeout=60, env=env, **as_user(test_user, home),
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert f"pid {pid}" in status.stdout

        # root can manage the user's cluster: it acts as the cluster's owner
        stopped = run_cli("server", "stop", *where)
        assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped"), stopped.stderr
        assert cluster.pid() is None
        assert cluster.directory.stat().st_uid == test_user.pw_uid
    finally:
        cluster.destroy()
        if pid is not None and Path(f"/proc/{pid}").exists():  # destroy failed: no leftovers
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGQUIT)
        helpers.rmtree(home)
