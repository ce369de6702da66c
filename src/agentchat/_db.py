"""Connections by libpq conventions, and the one place driver errors become agentchat errors.

A connection string is anything libpq accepts: a ``postgresql://`` URI, a ``key=value`` conninfo,
or nothing at all (then PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSERVICE, PGDATABASE and ~/.pgpass
apply, exactly as for psql). Passwords never leave this module in a message: errors and
descriptions name host, port, database and user only.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import conninfo as _conninfo
from psycopg.rows import TupleRow

from agentchat import errors

Connection = psycopg.Connection[TupleRow]
AsyncConnection = psycopg.AsyncConnection[TupleRow]

F = TypeVar("F", bound=Callable[..., Any])

#: a connection the server ended: admin_shutdown, crash_shutdown, cannot_connect_now
_SHUTDOWN = ("57P01", "57P02", "57P03")

#: seconds to wait for a server that does not answer, unless the DSN or PGCONNECT_TIMEOUT says
DEFAULT_CONNECT_TIMEOUT = 10
#: the longest identifier PostgreSQL keeps; longer names are silently truncated by the server
MAX_IDENTIFIER_BYTES = 63


def validate_identifier(name: str, what: str = "name") -> str:
    """Return *name* if PostgreSQL can store it unchanged, else raise :class:`InvalidInput`.

    Quotes, spaces, semicolons and unicode are fine (names always go through
    ``psycopg.sql.Identifier``); empty names, NUL bytes and names over 63 bytes are not, since
    the server would reject or silently truncate them.
    """
    if not name:
        raise errors.InvalidInput(f"{what} must not be empty")
    if "\x00" in name:
        raise errors.InvalidInput(f"{what} must not contain a NUL byte")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise errors.InvalidInput(
            f"{what} {name[:20]!r}... is {len(name.encode())} bytes long;"
            f" PostgreSQL keeps at most {MAX_IDENTIFIER_BYTES}"
        )
    return name


def make_conninfo(dsn: str | None = None, *, dbname: str | None = None) -> str:
    """Combine a DSN (URI or conninfo, may be empty) with an optional database override."""
    try:
        if dbname is not None:
            return _conninfo.make_conninfo(
                dsn or "", dbname=validate_identifier(dbname, "database")
            )
        return _conninfo.make_conninfo(dsn or "")
    except psycopg.ProgrammingError as exc:
        raise errors.InvalidInput(f"invalid connection string: {_first_line(str(exc))}") from exc


def conninfo_params(conninfo: str) -> dict[str, str]:
    """The parameters of a conninfo, with libpq's environment defaults filled in (not password)."""
    params = {k: str(v) for k, v in _conninfo.conninfo_to_dict(conninfo).items() if v is not None}
    env = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}
    for key, var in env.items():
        if key not in params and os.environ.get(var):
            params[key] = os.environ[var]
    params.pop("password", None)
    return params


def target_dbname(conninfo: str) -> str | None:
    """The database a conninfo names (explicitly or through PGDATABASE/PGUSER), if it can tell."""
    params = conninfo_params(conninfo)
    return params.get("dbname") or params.get("user") or None


def describe(conninfo: str) -> str:
    """A short, password-free description such as ``db "nova" on 127.0.0.1:5432``."""
    params = conninfo_params(conninfo)
    host = params.get("host") or "the local socket"
    if host.startswith("/"):
        host = f"socket {host}"
    where = f"{host}:{params['port']}" if "port" in params else host
    name = params.get("dbname") or params.get("service")
    return f'database "{name}" on {where}' if name else where


def connection_params(conn: Connection) -> dict[str, str]:
    """The parameters an open connection really uses (host and port resolved, no password)."""
    params = {k: str(v) for k, v in conn.info.get_parameters().items() if k != "password"}
    params.update(host=conn.info.host, port=str(conn.info.port), dbname=conn.info.dbname)
    params["user"] = conn.info.user
    return params


def resolved_conninfo(conn: Connection) -> str:
    """A password-free conninfo naming exactly what *conn* is connected to.

    Independent of the environment it was opened in (PGHOST and friends are resolved), so it
    can be stored in the topology file and used later from anywhere on this machine.
    """
    keep = ("host", "port", "dbname", "user", "sslmode", "sslrootcert", "service")
    params = connection_params(conn)
    return _conninfo.make_conninfo("", **{k: params[k] for k in keep if params.get(k)})


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same connection parameters, another database."""
    return _conninfo.make_conninfo(conninfo, dbname=dbname)


#: TCP keepalives for long-lived connections (an agent's listener): a peer that vanished without
#: closing the connection is noticed within about 10 s instead of the kernel's two hours
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10000,
}


def prepare(conninfo: str, *, long_lived: bool = False) -> str:
    """The conninfo agentchat really connects with: a connect timeout and application name
    unless the DSN or the environment sets them, and keepalives for *long_lived* connections."""
    params = _conninfo.conninfo_to_dict(conninfo)
    extra: dict[str, str | int] = {}
    if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
        extra["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    if "application_name" not in params and not os.environ.get("PGAPPNAME"):
        extra["application_name"] = "agentchat"
    if long_lived:
        extra.update({k: v for k, v in KEEPALIVES.items() if k not in params})
    return _conninfo.make_conninfo(conninfo, **extra)


#: how long a connection attempt waits for a server that said it is restarting
RESTART_WAIT = 60.0
#: what a server says while it shuts down, starts or recovers (SQLSTATE 57P03, cannot_connect_now)
_RESTARTING = (
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)
#: what a client meets while a server it was told is restarting stops and starts again
_REFUSED = (
    "Connection refused",
    "No such file or directory",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
)


class _RestartWait:
    """Whether a failed connection attempt is worth another: only once the server said it is
    restarting (a wrong address still fails at once), and then also while its port is closed
    between the stop and the start, for at most :data:`RESTART_WAIT` seconds."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def again(self, exc: psycopg.OperationalError) -> bool:
        text = str(exc)
        if self.deadline is None and any(s in text for s in _RESTARTING):
            self.deadline = time.monotonic() + RESTART_WAIT
        if self.deadline is None or time.monotonic() > self.deadline:
            return False
        return any(s in text for s in (*_RESTARTING, *_REFUSED))


def connect(conninfo: str, *, autocommit: bool = True, long_lived: bool = False) -> Connection:
    """Open a connection or raise a clear :class:`agentchat.errors.ConnectionFailed`.

    A server that answers that it is shutting down or starting up (a routine restart) is waited
    for, up to :data:`RESTART_WAIT` seconds; any other failure is raised at once.
    """
    wait = _RestartWait()
    while True:
        try:
            return psycopg.connect(prepare(conninfo, long_lived=long_lived), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            if not wait.again(exc):
                raise connection_error(exc, conninfo) from exc
        time.sleep(0.25)


async def connect_async(
    conninfo: str, *, autocommit: bool = True, long_lived: bool = False
) -> AsyncConnection:
    """:func:`connect` for asyncio."""
    wait = _RestartWait()
    while True:
        try:
            return await psycopg.AsyncConnection.connect(
                prepare(conninfo, long_lived=long_lived), autocommit=autocommit
            )
        except psycopg.OperationalError as exc:
            if not wait.again(exc):
                raise connection_error(exc, conninfo) from exc
        await asyncio.sleep(0.25)


def retarget(conninfo: str, target: str) -> str:
    """*conninfo*'s credentials and options, pointed at *target*'s server and database.

    Used to reach a replica's source as the same user: host, port and database come from
    *target* (a password-free conninfo); the password is kept only for the same server,
    otherwise PGPASSWORD or ~/.pgpass supply it, as for psql.
    """
    mine = {k: v for k, v in _conninfo.conninfo_to_dict(conninfo).items() if v is not None}
    where = {k: v for k, v in _conninfo.conninfo_to_dict(target).items() if v is not None}
    place = ("host", "hostaddr", "port", "dbname", "service")
    same_server = all(mine.get(k) == where.get(k) for k in ("host", "hostaddr", "port"))
    kept = {k: v for k, v in mine.items() if k not in place}
    if not same_server:
        kept.pop("password", None)
    where.pop("password", None)
    return _conninfo.make_conninfo("", **{**kept, **where})


@contextmanager
def connection(conninfo: str, *, autocommit: bool = True) -> Iterator[Connection]:
    """``with connection(conninfo) as conn:`` — connect, translate errors, always close."""
    conn = connect(conninfo, autocommit=autocommit)
    with wrap_errors(conninfo), conn:
        yield conn


@contextmanager
def wrap_errors(conninfo: str | None = None) -> Iterator[None]:
    r"""The driver-error boundary: inside, any :class:`psycopg.Error` becomes the matching
    :class:`agentchat.errors.AgentchatError`, raised ``from`` the driver's error (its SQLSTATE
    and constraint copied onto :class:`~agentchat.errors.DatabaseError`).

    It is a plain context manager, so it also spans ``await``\ s::

        with _db.wrap_errors(conninfo):
            await conn.execute(queries["listen"])

    *conninfo*, when given, names the database in a lost connection's message.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, conninfo) from exc


def wrap_exceptions(func: F) -> F:
    """:func:`wrap_errors` as a decorator, for plain and ``async`` functions alike."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            with wrap_errors():
                return await func(*args, **kwargs)

        return cast(F, wrapped_async)

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with wrap_errors():
            return func(*args, **kwargs)

    return cast(F, wrapped)


def connection_error(exc: psycopg.OperationalError, conninfo: str) -> errors.AgentchatError:
    """Turn a failed connection attempt into one actionable line."""
    text = str(exc)
    where = describe(conninfo)
    if "password authentication failed" in text or "no password supplied" in text:
        return errors.AuthenticationFailed(
            f"authentication failed for {where}: {_server_reason(text)}",
            fix="check the user and password (PGPASSWORD, ~/.pgpass or the DSN)",
        )
    if "does not exist" in text and "database" in text:
        return errors.DatabaseMissing(f"{where}: {_server_reason(text)}")
    return errors.ConnectionFailed(f"cannot connect to {where}: {_server_reason(text)}")


def is_transient(exc: BaseException) -> bool:
    """Whether *exc*, translated or still the driver's (a handler's own query), is worth a retry
    on a new connection: see :attr:`agentchat.errors.DatabaseError.transient`."""
    if isinstance(exc, psycopg.Error):
        exc = translate(exc)
    return isinstance(exc, errors.DatabaseError) and exc.transient


def translate(exc: psycopg.Error, conninfo: str | None = None) -> errors.AgentchatError:
    """Turn a driver error into an agentchat error (one line, the server's hint as the fix).

    A broken connection (no SQLSTATE, or class 08 / 57P01-57P03) is
    :class:`~agentchat.errors.ConnectionLost`; bad values and CHECK violations are
    :class:`~agentchat.errors.InvalidInput`; anything else a
    :class:`~agentchat.errors.DatabaseError` carrying ``sqlstate`` and ``constraint``.
    """
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    message = primary or _first_line(str(exc)) or type(exc).__name__
    hint = diag.message_hint if diag is not None else None
    sqlstate = exc.sqlstate
    constraint = diag.constraint_name if diag is not None else None
    if isinstance(exc, psycopg.errors.InvalidParameterValue | psycopg.errors.CheckViolation):
        return errors.InvalidInput(message, fix=hint)
    if isinstance(exc, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith("08") or sqlstate in _SHUTDOWN
    ):
        where = f" to {describe(conninfo)}" if conninfo else ""
        return errors.ConnectionLost(
            f"connection{where} lost: {_server_reason(str(exc))}", sqlstate=sqlstate
        )
    return errors.DatabaseError(message, fix=hint, sqlstate=sqlstate, constraint=constraint)


def _server_reason(text: str) -> str:
    """The useful part of a libpq connection error (it is multi-line and repeats itself)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "FATAL:" in line:
            return line.split("FATAL:", 1)[1].strip()
    line = lines[0] if lines else text
    if line.startswith("connection failed: "):
        line = line[len("connection failed: ") :]
    if "failed: " in line:
        line = line.rsplit("failed: ", 1)[1]
    return line


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
