"""NOVA's clients' SQL, run as their drivers run it (issue 16).

``tests/fixtures/nova/<file>.sql`` holds every statement NOVA-Openclaw's agent-chat clients send,
byte-for-byte as in their source, one block each::

    -- name: fetch_unprocessed
    -- source: NOVA-Openclaw/nova-mind@<40 hex> cognition/focus/agent_chat/src/channel.ts:58-63
    -- style: node-pg
    -- params: agentName
    -- subst: <placeholder in the source> => <the value used here>
    -- note: anything a reader should know
    <the statement's lines>

Header lines follow ``-- name:`` directly (``params``, ``subst`` and ``note`` are optional,
``subst`` and ``note`` may repeat); the statement is every line after them up to the next
``-- name:`` (trailing blank lines dropped). Lines before the first block are the file's comment.

:func:`run` sends a statement the way its client's driver does:

- ``node-pg`` (node-postgres): with parameters, the SQL verbatim with its ``$n`` placeholders over
  the extended protocol, every parameter as untyped text converted like node-postgres's
  ``prepareValue`` (None -> NULL, bool -> 'true'/'false', numbers -> str, list -> an array
  literal such as ``{"a","b"}``, datetime -> ISO text, dict -> JSON); without parameters, the
  simple query protocol (``client.query("LISTEN agent_chat")``).
- ``psycopg2``: ``%s`` placeholders interpolated on the client (psycopg.ClientCursor), as psycopg2
  does; without parameters the SQL is sent as it is.
- ``psql``: no parameters, the simple query protocol (``psql -c``).

Connections should be autocommit (each statement its own transaction, as node-postgres, psycopg2
under ``with conn`` and ``psql -c`` leave it): :func:`connect` opens one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

FIXTURES = Path(__file__).parent / "fixtures" / "nova"
#: the fixture files, without ``.sql``
FILES = ("seed_plugin", "seed_tools", "plugin", "installer", "scripts")
STYLES = ("node-pg", "psycopg2", "psql")

_SOURCE = re.compile(
    r"(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)@(?P<commit>[0-9a-f]{40}) "
    r"(?P<path>\S+):(?P<first>\d+)(?:-(?P<last>\d+))?"
)
_DOLLAR = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Statement:
    name: str
    file: str
    #: ``owner/repo@commit path:first-last``
    source: str
    #: node-pg | psycopg2 | psql
    style: str
    sql: str
    #: the names of the client's values, in order (``-- params:``)
    params: tuple[str, ...] = ()
    #: (text in the source, the value used here) for each template placeholder replaced
    substs: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    def _source(self) -> re.Match[str]:
        found = _SOURCE.fullmatch(self.source)
        if found is None:
            raise ValueError(f"{self.file}:{self.name}: bad source {self.source!r}")
        return found

    @property
    def repo(self) -> str:
        return self._source()["repo"]

    @property
    def commit(self) -> str:
        return self._source()["commit"]

    @property
    def path(self) -> str:
        return self._source()["path"]

    @property
    def lines(self) -> tuple[int, int]:
        """The source's line range (first, last), 1-based, inclusive."""
        found = self._source()
        first = int(found["first"])
        return first, int(found["last"] or first)

    def placeholders(self) -> int:
        """How many parameters the SQL takes: the highest ``$n`` (node-pg), the number of
        ``%s`` (psycopg2), 0 (psql)."""
        if self.style == "node-pg":
            return max((int(n) for n in _DOLLAR.findall(self.sql)), default=0)
        if self.style == "psycopg2":
            return self.sql.count("%s")
        return 0

    def replacing(self, old: str, new: str) -> Statement:
        """A copy with *old* replaced by *new* in the SQL (say, another agent's name in a
        GRANT): no longer the source's text, which the copy's ``substs`` records."""
        if old not in self.sql:
            raise ValueError(f"{self.file}:{self.name}: {old!r} is not in the statement")
        return replace(self, sql=self.sql.replace(old, new), substs=(*self.substs, (old, new)))


@dataclass
class Result:
    rows: list[dict[str, Any]]
    rowcount: int
    #: the command tag, e.g. ``UPDATE 1``, ``INSERT 0 1``, ``LISTEN``
    status: str


def _parse(file: str, text: str) -> dict[str, Statement]:
    statements: dict[str, Statement] = {}
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("-- name:")]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        block = lines[start:end]
        name = block[0].removeprefix("-- name:").strip()
        headers: dict[str, list[str]] = {}
        i = 1
        while i < len(block):
            key = re.match(r"-- (source|style|params|subst|note): ?(.*)$", block[i])
            if key is None:
                break
            headers.setdefault(key[1], []).append(key[2])
            i += 1
        body = block[i:]
        while body and not body[-1].strip():
            body.pop()
        where = f"{file}.sql: block {name!r}"
        if name in statements:
            raise ValueError(f"{where}: the name is used twice")
        for required in ("source", "style"):
            if len(headers.get(required, [])) != 1:
                raise ValueError(f"{where}: needs exactly one -- {required}: line")
        if len(headers.get("params", [])) > 1:
            raise ValueError(f"{where}: more than one -- params: line")
        if not body:
            raise ValueError(f"{where}: no statement")
        params_line = headers.get("params", [""])[0]
        substs = []
        for subst in headers.get("subst", []):
            old, sep, new = subst.partition(" => ")
            if not sep:
                raise ValueError(f"{where}: -- subst: needs 'OLD => NEW'")
            substs.append((old, new))
        statements[name] = Statement(
            name=name,
            file=file,
            source=headers["source"][0],
            style=headers["style"][0],
            sql="\n".join(body),
            params=tuple(p.strip() for p in params_line.split(",") if p.strip()),
            substs=tuple(substs),
            notes=tuple(headers.get("note", [])),
        )
    return statements


@cache
def _load(file: str) -> dict[str, Statement]:
    return _parse(file, (FIXTURES / f"{file}.sql").read_text(encoding="utf-8"))


def load(file: str) -> dict[str, Statement]:
    """The statements of ``tests/fixtures/nova/<file>.sql`` by name, in the file's order."""
    if file not in FILES:
        raise ValueError(f"no fixture file {file!r} (one of {', '.join(FILES)})")
    return dict(_load(file))


def load_all() -> list[Statement]:
    return [stmt for file in FILES for stmt in load(file).values()]


# -- node-postgres's prepareValue ---------------------------------------------------------------


def _escape_element(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array_literal(values: list[Any] | tuple[Any, ...]) -> str:
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
        elif isinstance(value, list | tuple):
            parts.append(_array_literal(value))
        else:
            prepared = node_pg_value(value)
            parts.append(_escape_element(str(prepared)))
    return "{" + ",".join(parts) + "}"


def node_pg_value(value: object) -> str | None:
    """A parameter as node-postgres sends it: text, or None for NULL."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, list | tuple):
        return _array_literal(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # node-postgres writes a Date in local time, with offset
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


# -- running -----------------------------------------------------------------------------------


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """An autocommit connection, as their clients use."""
    return psycopg.connect(conninfo, autocommit=True, **kwargs)


def run(conn: psycopg.Connection[Any], stmt: Statement, *params: object) -> Result:
    """Send *stmt* with *params* as its client's driver does; rows as dicts by column name."""
    expected = stmt.placeholders()
    if len(params) != expected:
        raise TypeError(f"{stmt.file}:{stmt.name} takes {expected} parameters, got {len(params)}")
    cur: psycopg.Cursor[dict[str, Any]]
    if stmt.style == "node-pg":
        cur = psycopg.RawCursor(conn, row_factory=dict_row)
        if params:
            cur.execute(stmt.sql.encode(), [node_pg_value(p) for p in params])
        else:
            cur.execute(stmt.sql.encode())
    elif stmt.style == "psycopg2":
        cur = psycopg.ClientCursor(conn, row_factory=dict_row)
        cur.execute(stmt.sql.encode(), list(params) if params else None)
    elif stmt.style == "psql":
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(stmt.sql.encode())
    else:
        raise ValueError(f"{stmt.file}:{stmt.name}: unknown style {stmt.style!r}")
    with cur:
        rows = cur.fetchall() if cur.description else []
        return Result(rows=rows, rowcount=cur.rowcount, status=cur.statusmessage or "")
