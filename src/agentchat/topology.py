"""The topology file (``agentchat.toml``): the source, its replicas and their names.

``replicate add`` and ``replicate remove`` keep it up to date; later commands default to it, so
with five replicas ``agentchat triggers`` (and status, doctor, verify) need no arguments.
It never holds a password: DSNs are stored without one, and libpq's ~/.pgpass or service files
supply it, as for psql. Where it is: ``--config PATH``, else $AGENTCHAT_CONFIG, else
``./agentchat.toml``.

Changes go through :meth:`Topology.record_replica` and :meth:`Topology.forget_replica`, which
hold a lock file (``.agentchat.toml.lock``) across read-modify-write: they re-read the file under
the lock, merge their one change and replace the file atomically, so two ``replicate add`` runs
at once both keep their entry.

    [source]
    dsn = "host=db1 port=5432 dbname=nova_memory user=postgres"
    publication = "agent_chat_pub"

    [[replicas]]
    name = "agent_chat_from_nova"
    dsn = "host=db2 port=5432 dbname=graybeard_memory user=postgres"
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import tomli_w
from psycopg import conninfo as _conninfo

from agentchat import errors

FILE_NAME = "agentchat.toml"
ENV_VAR = "AGENTCHAT_CONFIG"
#: seconds to wait for another agentchat command that holds the topology file's lock
LOCK_TIMEOUT = 60.0


def locate(config: Path | str | None = None) -> Path:
    """The topology file's path: the given one, $AGENTCHAT_CONFIG, or ./agentchat.toml."""
    if config:
        return Path(config)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path.cwd() / FILE_NAME


def strip_password(dsn: str) -> str:
    """The DSN as conninfo without password (what the file may hold)."""
    params = {k: v for k, v in _conninfo.conninfo_to_dict(dsn).items() if k != "password"}
    return _conninfo.make_conninfo("", **params)


@dataclass
class Replica:
    name: str  # the subscription's name on the replica (its down link's, when two-way)
    dsn: str
    #: ``"one-way"`` (a read-only replica) or ``"two-way"`` (it writes, and its rows go up)
    mode: str = "one-way"
    #: a relay's child: the DSN of its parent, when that is not the source
    parent: str | None = None


@dataclass
class Topology:
    path: Path
    source: str | None = None
    publication: str | None = None
    replicas: list[Replica] = field(default_factory=list)
    #: the members of a mesh (``agentchat mesh``)
    mesh: list[str] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def databases(self) -> list[str]:
        """Every DSN in the topology: the source first, then the replicas, then a mesh's."""
        found = ([self.source] if self.source else []) + [r.dsn for r in self.replicas]
        return found + [m for m in self.mesh if not any(_same(m, f) for f in found)]

    def replica(self, name: str | None = None, dsn: str | None = None) -> Replica | None:
        for replica in self.replicas:
            if (name is None or replica.name == name) and (dsn is None or _same(replica.dsn, dsn)):
                return replica
        return None

    def check_source(self, source: str) -> None:
        """Raise unless *source* is this topology's source (or it has none yet)."""
        if self.source and not _same(self.source, source):
            raise errors.ConfigError(
                f"{self.path} describes another source ({self.source})",
                fix="use --config to keep a second topology in its own file",
            )

    def add_replica(self, source: str, publication: str, name: str, dsn: str) -> None:
        source = strip_password(source)
        self.check_source(source)
        self.source, self.publication = source, publication
        self.replicas = [r for r in self.replicas if not _same(r.dsn, dsn)]
        self.replicas.append(Replica(name, strip_password(dsn)))

    def remove_replica(self, dsn: str) -> bool:
        before = len(self.replicas)
        self.replicas = [r for r in self.replicas if not _same(r.dsn, dsn)]
        return len(self.replicas) != before

    def add_link(self, parent: str, child: str, name: str) -> None:
        """A two-way child below *parent*: the source (the hub), or a replica (a relay)."""
        parent, child = strip_password(parent), strip_password(child)
        if not self.source:
            self.source, self.publication = parent, self.publication or ""
        relay = not _same(self.source, parent)
        if relay and self.replica(dsn=parent) is None:
            raise errors.ConfigError(
                f"{self.path} has neither {parent} nor its parent",
                fix="use --config to keep a second topology in its own file",
            )
        self.replicas = [r for r in self.replicas if not _same(r.dsn, child)]
        self.replicas.append(Replica(name, child, "two-way", parent if relay else None))

    @contextlib.contextmanager
    def locked(self) -> Iterator[Topology]:
        """Hold the file's lock; yield the file as it is now (re-read), saved on success.

        This object takes the saved state too, so later reads through it see every replica.
        """
        lock = filelock.FileLock(str(self.path.with_name(f".{self.path.name}.lock")))
        try:
            lock.acquire(timeout=LOCK_TIMEOUT)
        except filelock.Timeout as exc:
            raise errors.ConfigError(
                f"topology file {self.path} stayed locked for {LOCK_TIMEOUT:.0f} s",
                fix="another agentchat command is changing it; wait for it and run this again",
            ) from exc
        try:
            current = load(self.path)
            yield current
            current.save()
            self.source, self.publication = current.source, current.publication
            self.replicas = list(current.replicas)
            self.mesh = list(current.mesh)
        finally:
            lock.release()

    def record_replica(self, source: str, publication: str, name: str, dsn: str) -> None:
        """Add (or replace) one replica in the file, under its lock."""
        with self.locked() as current:
            current.add_replica(source, publication, name, dsn)

    def record_link(self, parent: str, child: str, name: str) -> None:
        """Add (or replace) one two-way child in the file, under its lock."""
        with self.locked() as current:
            current.add_link(parent, child, name)

    def record_mesh(self, members: list[str]) -> None:
        """The mesh's members (a re-run with one more adds it), under the file's lock."""
        with self.locked() as current:
            known = list(current.mesh)
            for dsn in map(strip_password, members):
                if not any(_same(dsn, m) for m in known):
                    known.append(dsn)
            current.mesh = known

    def forget_link(self, dsn: str) -> bool:
        """Take a node out of the file: a replica or a mesh member."""
        if not self.path.exists():
            return False
        with self.locked() as current:
            before = len(current.mesh)
            current.mesh = [m for m in current.mesh if not _same(m, dsn)]
            return current.remove_replica(dsn) or len(current.mesh) != before

    def forget_replica(self, dsn: str) -> bool:
        """Take one replica out of the file, under its lock; False if it was not there."""
        if not self.path.exists():
            return self.remove_replica(dsn)
        with self.locked() as current:
            return current.remove_replica(dsn)

    def save(self) -> None:
        """Write the file atomically (a scratch file in the same directory, then rename)."""
        data: dict[str, object] = {}
        if self.source:
            data["source"] = {"dsn": self.source, "publication": self.publication or ""}
        data["replicas"] = [_replica_entry(r) for r in self.replicas]
        if self.mesh:
            data["mesh"] = [{"dsn": m} for m in self.mesh]
        text = "# agentchat topology, kept up to date by `agentchat replicate add/remove`.\n"
        text += "# No passwords here: libpq's ~/.pgpass or service files supply them.\n"
        fd, scratch = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent or ".")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text + tomli_w.dumps(data))
            os.chmod(scratch, _file_mode(self.path))
            os.replace(scratch, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            raise


def _replica_entry(replica: Replica) -> dict[str, str]:
    entry = {"name": replica.name, "dsn": replica.dsn}
    if replica.mode != "one-way":
        entry["mode"] = replica.mode
    if replica.parent:
        entry["parent"] = replica.parent
    return entry


def _file_mode(path: Path) -> int:
    """The mode the file keeps: its own, or 0644 less the umask for a new one."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def load(config: Path | str | None = None, *, required: bool = False) -> Topology:
    """Read the topology file (an empty topology if there is none, unless *required*)."""
    path = locate(config)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        if required:
            raise errors.ConfigError(f"topology file {path} does not exist") from exc
        return Topology(path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise errors.ConfigError(f"cannot read topology file {path}: {exc}") from exc
    try:
        source = data.get("source", {})
        replicas = [
            Replica(
                str(r["name"]), str(r["dsn"]), str(r.get("mode", "one-way")),
                str(r["parent"]) if r.get("parent") else None,
            )
            for r in data.get("replicas", [])
        ]  # fmt: skip
        mesh = [str(m["dsn"]) for m in data.get("mesh", [])]
        return Topology(path, source.get("dsn"), source.get("publication"), replicas, mesh)
    except (KeyError, TypeError, AttributeError) as exc:
        raise errors.ConfigError(f"topology file {path} is malformed: {exc!r}") from exc


def _same(a: str, b: str) -> bool:
    """Whether two DSNs name the same database (host, port, dbname), ignoring the rest."""

    def key(dsn: str) -> tuple[str, str, str]:
        p = _conninfo.conninfo_to_dict(dsn)
        return (str(p.get("host", "")), str(p.get("port", "")), str(p.get("dbname", "")))

    return key(a) == key(b)
