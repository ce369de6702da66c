"""The replication role on the source: created once, its password never shown or logged.

A role (``agent_chat_replicator`` by default) with LOGIN and REPLICATION and SELECT on exactly
the published tables. Its password is generated, kept where PostgreSQL reads it (the
subscription's conninfo, readable by superusers only, or a passfile), and found again there
when a second replica is added; statements that carry it run with statement logging off.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import _db, errors
from agentchat.passfile import read_passfile, remove_passfile_line, write_passfile
from agentchat.sql import queries
from agentchat.topology import Topology


def ensure_role(
    src: _db.Connection,
    tgt: _db.Connection,
    role: str,
    password: str | None,
    passfile: Path | None,
    topology: Topology | None,
) -> tuple[str, bool, str | None]:
    """Create the role, or find the existing one's password: ``(password, created, warning)``."""
    ident = sql.Identifier(role)
    warning = None
    created = src.execute(queries["role_exists"], (role,)).fetchone() != (True,)
    if created:
        password = password or secrets.token_urlsafe(24)
        with no_statement_logging(src):
            src.execute(
                sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    ident, sql.Literal(password)
                )
            )
    elif password is not None:  # the caller chose it: the role gets it
        set_password(src, role, password)
    else:
        password = find_password(src, tgt, role, passfile, topology)
        if password is None:  # nowhere to be found: a new one, said out loud
            password = secrets.token_urlsafe(24)
            set_password(src, role, password)
            warning = (
                f"role {role} existed and no subscription or passfile agentchat can read holds"
                " its password: it was given a new one; subscriptions elsewhere that use the old"
                " one need ALTER SUBSCRIPTION ... CONNECTION"
            )
    src.execute(queries["grant_published"].format(role=ident))
    return password, created, warning


@contextlib.contextmanager
def no_statement_logging(conn: _db.Connection) -> Iterator[None]:
    """Keep statements carrying a password out of the server log, even when they fail."""
    settings = ("log_statement", "log_min_error_statement", "log_min_duration_statement")
    saved = [
        conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(s))).fetchone() for s in settings
    ]
    conn.execute("SET log_statement = 'none'")
    conn.execute("SET log_min_error_statement = 'panic'")
    conn.execute("SET log_min_duration_statement = -1")
    try:
        yield
    finally:
        for setting, value in zip(settings, saved, strict=True):
            if value is not None:
                conn.execute(
                    sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value[0]))
                )


def set_password(src: _db.Connection, role: str, password: str) -> None:
    with no_statement_logging(src):
        src.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )


def drop_role(src: _db.Connection, role: str) -> None:
    ident = sql.Identifier(role)
    src.execute(sql.SQL("DROP OWNED BY {}").format(ident))
    src.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


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
    with contextlib.suppress(psycopg.Error):
        conninfos += [r[2] for r in tgt.execute(queries["cluster_subscription_conninfos"])]
    for replica in topology.replicas if topology else []:
        with (
            contextlib.suppress(errors.AgentchatError, psycopg.Error),
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
        )  # fmt: skip
        try:
            psycopg.connect(attempt, connect_timeout=5).close()
        except psycopg.Error:
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
