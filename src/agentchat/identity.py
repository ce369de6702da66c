"""Agent identity (schema version 7): each agent may have a login role of its own.

``agentchat agent add nova`` registers agent ``nova`` in ``public.agentchat_agents`` and gives it
a login role, ``ac_nova`` (``ac_<first 50 chars>_<6 hex>`` when that role exists and is not
nova's, or the name is too long: an existing role is never taken over), with a generated password
and membership in the NOLOGIN group :data:`GROUP`, which holds exactly the rights an agent needs.
The database then enforces who the role is (migration 0007: row-level security, and
``send_agent_message`` checking the sender against ``session_user``); docs/identity.md.

The password is written to a libpq password file (``~/.pgpass`` by default) or returned once to
be shown; it never reaches the server in clear (the role gets its SCRAM verifier, computed here)
and never a log line. Removing an agent drops its role and its registry row.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import _db, errors
from agentchat.replication.passfile import read_passfile, remove_passfile_line, write_passfile
from agentchat.replication.role import no_statement_logging
from agentchat.sql import queries

#: the NOLOGIN group role that holds an agent's rights (cluster-wide)
GROUP = "agentchat_agent"
#: an agent's role is named ``ac_<name>`` when it can be
ROLE_PREFIX = "ac_"
#: agent names, as send_agent_message checks them
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: channel names, as send_agent_message checks them
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
#: insufficient_privilege
_DENIED = "42501"


@dataclass(frozen=True)
class AgentEntry:
    """One registered agent: its name, its login role, the channels it reads, the node where it
    was added; *role_exists*: whether that role exists in this cluster."""

    name: str
    role: str
    channels: tuple[str, ...] = ()
    node: int | None = None
    created_at: datetime | None = None
    role_exists: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "role": self.role,
            "channels": list(self.channels),
            "node": self.node,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "role_exists": self.role_exists,
        }


@dataclass(frozen=True)
class Added:
    """What :func:`add` did. *password* is set only when it was asked to return it
    (``show_password``) and a new role was made; *passfile* is where the password was written."""

    entry: AgentEntry
    created: bool
    dsn: str
    passfile: Path | None = None
    password: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "agent": self.entry.name,
            "role": self.entry.role,
            "channels": list(self.entry.channels),
            "passfile": str(self.passfile) if self.passfile else None,
            "created": self.created,
            "dsn": self.dsn,
        }
        if self.password is not None:
            found["password"] = self.password
        return found


def check_name(name: str) -> str:
    """An agent name as the chat stores it (trimmed, lowercased), or :class:`InvalidInput`."""
    if not isinstance(name, str):  # pragma: no cover - typed callers
        raise errors.InvalidInput("agent name must be text")
    clean = name.strip(" ")  # as the database's btrim sees it; then lower, ASCII only
    clean = clean.lower() if clean.isascii() else ""
    if not _NAME.fullmatch(clean):
        shown = name[:70].encode("unicode_escape").decode()
        raise errors.InvalidInput(
            f'invalid agent name "{shown}"',
            fix="names are 1 to 63 characters: letters, digits, _ . - (lowercased)",
        )
    return clean


def check_channel(channel: str) -> str:
    clean = channel.strip(" ")
    if not clean.isascii() or not _CHANNEL.fullmatch(clean):
        shown = channel[:70].encode("unicode_escape").decode()
        raise errors.InvalidInput(
            f'invalid channel name "{shown}"',
            fix="channels are 1 to 63 characters: letters, digits, _ . : / -",
        )
    return clean


def role_names(name: str) -> list[str]:
    """The roles agent *name* may get, in order: ``ac_<name>`` (when it fits in 63 bytes), then
    ``ac_<first 50 chars>_<6 hex of sha256(name)>``."""
    hashed = f"{ROLE_PREFIX}{name[:50]}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    plain = f"{ROLE_PREFIX}{name}"
    return [plain, hashed] if len(plain) <= _db.MAX_IDENTIFIER_BYTES else [hashed]


def new_password() -> str:
    return secrets.token_urlsafe(24)


def _require_registry(conn: _db.Connection) -> None:
    if conn.execute(queries["registry_exists"]).fetchone() != (True,):
        raise errors.DatabaseError(
            f'database "{conn.info.dbname}" has no agent registry (schema version 7)',
            fix="run agentchat install on it first",
        )


def _entry(row: Sequence[Any], role_exists: bool = True) -> AgentEntry:
    return AgentEntry(row[0], row[1], tuple(row[2] or ()), row[3], row[4], role_exists)


def get(conn: _db.Connection, name: str) -> AgentEntry | None:
    """Agent *name*'s registry row, or None."""
    with _db.wrap_errors():
        _require_registry(conn)
        row = conn.execute(queries["agent_get"], (check_name(name),)).fetchone()
        if row is None:
            return None
        exists = conn.execute(queries["identity_role_exists"], (row[1],)).fetchone() == (True,)
        return _entry(row, exists)


def list_agents(conninfo: str) -> list[AgentEntry]:
    """Every registered agent of the database, by name."""
    with _db.connection(conninfo) as conn:
        _require_registry(conn)
        return [_entry(row[:5], bool(row[5])) for row in conn.execute(queries["agent_list"])]


def session_agent(conn: _db.Connection) -> str | None:
    """The agent the connection's role is (``agentchat_session_agent()``), None for any other
    role or a database before schema version 7."""
    with _db.wrap_errors():
        if conn.execute(queries["registry_exists"]).fetchone() != (True,):
            return None
        row = conn.execute(queries["session_agent"]).fetchone()
        return str(row[0]) if row and row[0] is not None else None


def check_acting_as(conn: _db.Connection, name: str, *, listening: bool = True) -> None:
    """Refuse to act as agent *name* on a connection whose role is another agent's, before a
    listener starts (*listening*) or a message is sent: one clear line
    (:class:`~agentchat.errors.DatabaseError`, SQLSTATE 42501), the same the database gives
    when it refuses (migration 0007), instead of a listener that waits for nothing."""
    me = session_agent(conn)
    wanted = name.strip().lower()
    if me is None or me == wanted:
        return
    what = f"record deliveries of agent {wanted}" if listening else f"send as {wanted}"
    verb = "listens" if listening else "sends"
    raise errors.DatabaseError(
        f"agent {me} cannot {what}",
        fix=f"role {conn.info.user} is agent {me}: it {verb} as {me} only",
        sqlstate=_DENIED,
    )


def grant_rights(conn: _db.Connection) -> None:
    """Make the group :data:`GROUP` if it is missing and give it an agent's rights in this
    database (idempotent; the connection's role needs CREATEROLE, or to be a superuser, and
    the grant option on the tables: the owner). Run it in every database an agent connects to.
    """
    if conn.execute(queries["identity_role_exists"], (GROUP,)).fetchone() != (True,):
        conn.execute(queries.compose("create_agent_group", group=sql.Identifier(GROUP)))
    conn.execute(
        queries.compose(
            "grant_agent_group",
            group=sql.Identifier(GROUP),
            database=sql.Identifier(conn.info.dbname),
        )
    )


def _choose_role(conn: _db.Connection, name: str) -> str:
    for role in role_names(name):
        if conn.execute(queries["identity_role_exists"], (role,)).fetchone() != (True,):
            return role
    raise errors.DatabaseError(
        f"agent {name} cannot get a role: {', '.join(role_names(name))} exist already and are"
        " not this agent's",
        fix="agentchat never takes over an existing role: drop or rename it, or choose another"
        " agent name",
        sqlstate=_DENIED,
    )


@contextlib.contextmanager
def _quiet(conn: _db.Connection) -> Iterator[None]:
    """Statement logging off around a statement that carries a password verifier, when this
    role may turn it off (superusers); the verifier is never the password itself anyway."""
    row = conn.execute(queries["may_silence_logging"]).fetchone()
    if not (row and row[0]):
        yield
        return
    with no_statement_logging(conn):
        yield


def _create_role(conn: _db.Connection, role: str, password: str) -> None:
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode())
    with _quiet(conn):
        conn.execute(
            queries.compose(
                "create_agent_role",
                role=sql.Identifier(role),
                password=sql.Literal(verifier.decode()),
                group=sql.Identifier(GROUP),
            )
        )


def agent_dsn(conn: _db.Connection, role: str) -> str:
    """A password-free conninfo for the agent's role: this connection's server and database."""
    params = _db.connection_params(conn)
    keep = {k: params[k] for k in ("host", "port", "dbname", "sslmode") if params.get(k)}
    return _conninfo.make_conninfo("", **keep, user=role)


def default_passfile() -> Path:
    return Path.home() / ".pgpass"


def add(
    conninfo: str,
    name: str,
    *,
    channels: Sequence[str] = (),
    passfile: Path | None = None,
    show_password: bool = False,
) -> Added:
    """Register agent *name* and give it a login role (see the module's docstring).

    Adding an agent that is already registered here, with its role, changes nothing but its
    channels (when some are given): its password stays. Returns the password only with
    *show_password*; otherwise it is written to *passfile* (default ``~/.pgpass``).
    """
    name = check_name(name)
    clean_channels = sorted({check_channel(c) for c in channels})
    if show_password and passfile is not None:
        raise errors.InvalidInput("--passfile and --show-password: choose one")
    target = None if show_password else (passfile or default_passfile())
    with _db.connection(conninfo) as conn:
        _require_registry(conn)
        with conn.transaction():
            conn.execute(queries["identity_lock"])
            row = conn.execute(queries["agent_get"], (name,)).fetchone()
            if row is not None:
                return _readd(conn, _entry(row), clean_channels if channels else None)
            role = _choose_role(conn, name)
            grant_rights(conn)
            password = new_password()
            _create_role(conn, role, password)
            conn.execute(
                queries["agent_insert"], {"name": name, "role": role, "channels": clean_channels}
            )
            row = conn.execute(queries["agent_get"], (name,)).fetchone()
            assert row is not None
            dsn = agent_dsn(conn, role)
            if target is not None:
                _write_password(conn, target, role, password)
    return Added(_entry(row), True, dsn, target, password if show_password else None)


def _write_password(conn: _db.Connection, path: Path, role: str, password: str) -> None:
    params = _db.connection_params(conn)
    line = (params.get("host") or "", params.get("port") or "5432", conn.info.dbname, role)
    try:
        write_passfile(path, *line, password)
    except OSError as exc:
        with contextlib.suppress(OSError):
            remove_passfile_line(path, *line)
        raise errors.ConfigError(
            f"cannot write the password file {path}: {exc.strerror or exc}",
            fix="pass --passfile with a writable path, or --show-password to print it once",
        ) from exc


def _readd(conn: _db.Connection, entry: AgentEntry, channels: list[str] | None) -> Added:
    """``agent add`` of an agent registered already: its role must be here and agentchat's."""
    exists = conn.execute(queries["identity_role_exists"], (entry.role,)).fetchone() == (True,)
    if not exists:
        raise errors.DatabaseError(
            f"agent {entry.name} is registered with role {entry.role}, which does not exist in"
            " this cluster",
            fix=f"add the agent where it lives (node {entry.node}), or agentchat agent remove"
            f" {entry.name} and add it again",
        )
    if channels is not None and list(entry.channels) != channels:
        conn.execute(queries["agent_set_channels"], {"name": entry.name, "channels": channels})
        entry = AgentEntry(entry.name, entry.role, tuple(channels), entry.node, entry.created_at)
    grant_rights(conn)
    return Added(entry, False, agent_dsn(conn, entry.role))


def remove(conninfo: str, name: str, *, passfile: Path | None = None) -> AgentEntry:
    """Forget agent *name* and drop its role (after ending its sessions). A role the registry
    maps to the agent but that does not look like one agent add made (not a plain login member
    of :data:`GROUP`) is refused, not dropped. The role's line in *passfile* (default
    ``~/.pgpass``) goes too."""
    name = check_name(name)
    with _db.connection(conninfo) as conn:
        _require_registry(conn)
        with conn.transaction():
            conn.execute(queries["identity_lock"])
            row = conn.execute(queries["agent_get"], (name,)).fetchone()
            if row is None:
                raise errors.InvalidInput(f"no agent {name} is registered in this database")
            entry = _entry(row)
            exists = conn.execute(queries["identity_role_exists"], (entry.role,)).fetchone()
            if exists == (True,):
                ours = conn.execute(
                    queries["role_is_agent_login"], {"role": entry.role, "group": GROUP}
                ).fetchone()
                if not (ours and ours[0]):
                    raise errors.DatabaseError(
                        f"role {entry.role} of agent {name} is not one agentchat agent add made"
                        f" (a plain login role in {GROUP}): agentchat does not drop it",
                        fix="drop or fix the role by hand, then run agent remove again",
                        sqlstate=_DENIED,
                    )
            conn.execute(queries["agent_delete"], (name,))
            if exists == (True,):
                # its sessions end first: a removed agent cannot keep acting (best effort:
                # ending another role's sessions needs a superuser or pg_signal_backend)
                with (
                    contextlib.suppress(errors.DatabaseError),
                    _db.wrap_errors(),
                    conn.transaction(),
                ):
                    conn.execute(queries["terminate_role_sessions"], (entry.role,))
                conn.execute(queries.compose("drop_agent_role", role=sql.Identifier(entry.role)))
        params = _db.connection_params(conn)
        path = passfile or default_passfile()
        if read_passfile(path, entry.role) is not None:
            with contextlib.suppress(OSError):
                remove_passfile_line(
                    path, params.get("host") or "", params.get("port") or "5432",
                    conn.info.dbname, entry.role,
                )  # fmt: skip
    return AgentEntry(entry.name, entry.role, entry.channels, entry.node, entry.created_at, False)
