"""The replication roles on the source: one per subscription, passwords never shown or logged.

Each ``replicate add`` gives its subscription a role of its own, named like its slot
(``agent_chat_from_nova_graybeard_memory_1a2b3c4d``: unique, and fixed, so ``remove`` finds and
drops it), with LOGIN and REPLICATION, SELECT on exactly the published tables and a fresh
generated password. Nothing else uses that role, so setting its password can never break another
subscription. A role named with ``--role`` (the older shared ``agent_chat_replicator``, say)
is used only with a password that works: agentchat never changes the password of a role that
live subscriptions may use. The password is kept where PostgreSQL reads it (the subscription's
conninfo, readable by superusers only, or a passfile); statements that carry it run with
statement logging off.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import _db, errors
from agentchat.replication.passfile import read_passfile, remove_passfile_line, write_passfile
from agentchat.sql import queries
from agentchat.topology import Topology

#: how long a test login with a candidate password may take
_LOGIN_TIMEOUT = 5


def new_password() -> str:
    return secrets.token_urlsafe(24)


def create_role(src: _db.Connection, role: str, password: str) -> None:
    with no_statement_logging(src):
        src.execute(
            queries.compose(
                "create_replication_role", role=sql.Identifier(role), password=sql.Literal(password)
            )
        )


def ensure_role(
    src: _db.Connection,
    tgt: _db.Connection,
    role: str,
    password: str | None,
    passfile: Path | None,
    topology: Topology | None,
    *,
    dedicated: bool,
) -> tuple[str, bool]:
    """Create the role, or find the existing one's password: ``(password, created)``.

    *dedicated*: the role is agentchat's own for the one subscription being created (named
    like its slot), so nothing else uses it and it may get a new password, unless something is
    connected as it right now. Otherwise an existing role's password is never changed: it must
    be given, or found where a subscription or passfile keeps it.
    """
    exists = src.execute(queries["role_exists"], (role,)).fetchone() == (True,)
    if not exists:
        password = password or new_password()
        create_role(src, role, password)
    elif dedicated:
        if src.execute(queries["role_in_use"], (role,)).fetchone() == (True,):
            raise errors.ReplicationError(
                f"role {role} exists on the source and something is connected as it",
                fix="remove the replica that uses it first (agentchat replicate remove), or"
                " pass --role to choose another role",
            )
        password = password or new_password()
        set_password(src, role, password)  # agentchat's own, for this subscription only
    elif password is None:
        password = find_password(src, tgt, role, passfile, topology)
        if password is None:
            raise errors.ReplicationError(
                f"role {role} exists on the source and agentchat found no password for it that"
                " the source accepts; it does not reset it, since live subscriptions may use it",
                fix="leave --role out (each replica then gets a role of its own), or pass"
                " --passfile with a file that holds the role's password",
            )
    src.execute(queries.compose("grant_published", role=sql.Identifier(role)))
    return password, not exists


def role_of(conninfo: str | None) -> str | None:
    """The user a subscription's conninfo connects as (None if unreadable)."""
    if not conninfo:
        return None
    return str(_conninfo.conninfo_to_dict(conninfo).get("user") or "") or None


def give_own_role(
    src: _db.Connection, rep: _db.Connection, subscription: str, conninfo: str, role: str
) -> str:
    """Give one subscription a role of its own (*role*, named like its slot) with a new password,
    and point the subscription at it: ``ALTER SUBSCRIPTION ... CONNECTION``. No other
    subscription is touched. Returns the role."""
    if role_of(conninfo) != role and (
        src.execute(queries["role_in_use"], (role,)).fetchone() == (True,)
    ):
        raise errors.ReplicationError(f"role {role} exists on the source and is in use elsewhere")
    password = new_password()
    if src.execute(queries["role_exists"], (role,)).fetchone() == (True,):
        set_password(src, role, password)
    else:
        create_role(src, role, password)
    src.execute(queries.compose("grant_published", role=sql.Identifier(role)))
    params = {k: str(v) for k, v in _conninfo.conninfo_to_dict(conninfo).items() if v is not None}
    params["user"] = role
    params.pop("password", None)
    passfile = params.get("passfile")
    if passfile and os.access(passfile, os.W_OK):
        write_passfile(
            Path(passfile), params.get("host", "*"), params.get("port", "5432"),
            params.get("dbname", "*"), role, password,
        )  # fmt: skip
    else:
        params.pop("passfile", None)
        params["password"] = password
    with no_statement_logging(rep):
        rep.execute(
            queries.compose(
                "subscription_connection",
                subscription=sql.Identifier(subscription),
                conninfo=sql.Literal(_conninfo.make_conninfo("", **params)),
            )
        )
    return role


def password_fails(conninfo: str) -> str | None:
    """Connect with a subscription's own conninfo, from here: the server's reason if it refused
    the password, None if it accepted it (or failed for another reason: not judged)."""
    try:
        _db.connect(_conninfo.make_conninfo(conninfo, connect_timeout=_LOGIN_TIMEOUT)).close()
    except errors.AuthenticationFailed as exc:
        return exc.message
    except errors.AgentchatError:
        pass
    return None


@contextlib.contextmanager
def no_statement_logging(conn: _db.Connection) -> Iterator[None]:
    """Keep statements carrying a password out of the server log, even when they fail."""
    saved = conn.execute(queries["statement_logging"]).fetchone()
    conn.execute(queries["statement_logging_off"])
    try:
        yield
    finally:
        if saved is not None:
            conn.execute(queries["statement_logging_restore"], tuple(saved))


def set_password(src: _db.Connection, role: str, password: str) -> None:
    with no_statement_logging(src):
        src.execute(
            queries.compose(
                "set_role_password", role=sql.Identifier(role), password=sql.Literal(password)
            )
        )


def drop_role(src: _db.Connection, role: str) -> None:
    """Drop a role this package made (its grants in the source database first)."""
    if src.execute(queries["role_exists"], (role,)).fetchone() != (True,):
        return
    ident = sql.Identifier(role)
    src.execute(queries.compose("drop_owned_by", role=ident))
    src.execute(queries.compose("drop_replication_role", role=ident))


def find_password(
    src: _db.Connection,
    tgt: _db.Connection,
    role: str,
    passfile: Path | None,
    topology: Topology | None,
) -> str | None:
    """The existing role's password: a candidate from a subscription that already uses the role
    (on the target's cluster or any replica of the topology) or from the passfile, accepted only
    once the source takes it."""
    conninfos: list[str] = []
    with contextlib.suppress(errors.AgentchatError), _db.wrap_errors():
        conninfos += [r[2] for r in tgt.execute(queries["cluster_subscription_conninfos"])]
    for replica in topology.replicas if topology else []:
        with (
            contextlib.suppress(errors.AgentchatError),
            _db.connection(replica.dsn) as conn,
        ):
            conninfos += [r[2] for r in conn.execute(queries["cluster_subscription_conninfos"])]
    candidates: list[str] = []
    for info in conninfos:
        params = _conninfo.conninfo_to_dict(info)
        if params.get("user") != role:
            continue
        if params.get("password"):
            candidates.append(str(params["password"]))
        elif params.get("passfile"):
            candidates.append(read_passfile(Path(str(params["passfile"])), role) or "")
    if passfile is not None:
        candidates.append(read_passfile(passfile, role) or "")
    unique = list(dict.fromkeys(c for c in candidates if c))
    for candidate in unique:
        attempt = _conninfo.make_conninfo(
            _db.resolved_conninfo(src), host="127.0.0.1" if src.info.host.startswith("/")
            else src.info.host, user=role, password=candidate, passfile="/dev/null",
            connect_timeout=_LOGIN_TIMEOUT,
        )  # fmt: skip
        try:
            _db.connect(attempt).close()
        except errors.AgentchatError:
            continue
        return candidate
    # None accepted from here (pg_hba may admit the role only from the replicas): an existing
    # subscription's password is still the best guess; a wrong one fails CREATE SUBSCRIPTION,
    # which is undone, while a new password would break the other replicas.
    return unique[0] if unique else None


def restore_passfile(path: Path, line: tuple[str, str, str, str], previous: str | None) -> None:
    if previous is None:
        remove_passfile_line(path, *line)
    else:
        write_passfile(path, *line, previous)
