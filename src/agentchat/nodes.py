"""Node identity (schema version 6): every database that writes messages has a node number.

The number (1 to 1023) is ``agentchat_settings`` key ``node``, local to the database and never
replicated; migration 0006 gives a database a random one. Every new message id carries it (see
:mod:`agentchat.replication.links` for the layout), so ids made on different nodes never collide.
The registry ``agentchat_nodes`` holds one row per node, written on that node only (its own row)
and replicated through the two-way links::

    with _db.connection(conninfo) as conn:
        nodes.number(conn)                 # 417
        nodes.ensure_number(conn)          # 417 (a random number first, had it none)
        nodes.set_number(conn, nodes.free_number({n.number for n in nodes.registry(conn)}))
        nodes.register_self(conn, name='database "nova" on 127.0.0.1:5432',
                            conninfo="host=127.0.0.1 port=5432 dbname=nova", parent=None)
        nodes.registry(conn)               # [Node(number=1, name='database "nova" on ...', ...)]
        nodes.own(conn)                    # Node(number=1, name='database "nova" on ...', ...)
        nodes.own_rows(conn, 1)            # messages written here since it was numbered 1

Which row is this database's own is remembered in ``agentchat_settings`` key ``node_name``
(rows of other databases arrive by replication, and two of them may share a number: a collision
that status and doctor report, so nothing here deletes another database's row).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict

from agentchat import _db, errors, settings
from agentchat.sql import queries

#: the agentchat_settings key of this database's node number
NODE = "node"
#: the agentchat_settings key of the name of this database's own registry row
NODE_NAME = "node_name"
#: node numbers a database can have (agentchat.replication.links.MAX_NODE; 0 is legacy rows')
MIN_NODE, MAX_NODE = 1, 1023

#: undefined_function: agentchat_node() comes with schema version 6
_NO_FUNCTION = "42883"


@dataclass(frozen=True)
class Node:
    """One row of the registry: a node's number, its name (the database as agentchat describes
    it), how the operator reaches it (no password; None if unknown) and its parent's number in a
    tree (None for a root, a mesh member or a plain database)."""

    number: int
    name: str
    conninfo: str | None
    parent: int | None


def _check_number(n: int) -> int:
    if not MIN_NODE <= n <= MAX_NODE:
        raise errors.InvalidInput(f"node number {n} is not between {MIN_NODE} and {MAX_NODE}")
    return n


def number(conn: _db.Connection) -> int:
    """This database's node number.

    Raises :class:`~agentchat.errors.DatabaseError` for a database before schema version 6 or
    without a number (both mended by ``agentchat install``).
    """
    n = _read(conn)
    if n is None:
        raise errors.DatabaseError(
            f'database "{conn.info.dbname}" has no agentchat node number',
            fix="agentchat install sets it: run agentchat install on it",
        )
    return n


def _read(conn: _db.Connection) -> int | None:
    try:
        with _db.wrap_errors(), conn.transaction():
            row = conn.execute(queries["node_number"]).fetchone()
    except errors.DatabaseError as exc:
        if exc.sqlstate != _NO_FUNCTION:
            raise
        raise errors.DatabaseError(
            f'database "{conn.info.dbname}" has no node numbers yet (schema version 6)',
            fix="run agentchat install on it",
            sqlstate=exc.sqlstate,
        ) from exc
    return None if row is None or row[0] is None else int(row[0])


def ensure_number(conn: _db.Connection) -> int:
    """This database's node number, a random one given first when it has none (what
    ``agentchat install`` does, like migration 0006)."""
    with _db.wrap_errors(), conn.transaction():
        conn.execute(queries["node_lock"])
        if _read(conn) is None:
            conn.execute(queries["node_number_if_missing"])
    return number(conn)


def set_number(conn: _db.Connection, n: int) -> None:
    """Make *n* this database's node number, and move its own registry row to it.

    Messages written before keep the old number in their ids: renumber a database with
    :func:`own_rows` ``== 0`` under its old number, or one whose old number stays reserved.
    """
    _check_number(n)
    with _db.wrap_errors(), conn.transaction():
        conn.execute(queries["node_lock"])
        old = _read(conn)
        if old == n:
            return
        settings.put(conn, NODE, str(n))
        name = settings.get(conn, NODE_NAME)
        if name is not None:
            moved = conn.execute(
                queries["node_renumber_own_row"], {"old": old, "new": n, "name": name}
            ).rowcount
            if not moved:  # no own row yet (or the number was missing): write it
                _upsert(conn, n, name, None, None)


def register_self(
    conn: _db.Connection, *, name: str, conninfo: str | None, parent: int | None
) -> Node:
    """Write this database's own registry row (insert, or refresh one of the same name); a row
    it wrote under another name goes. *conninfo* must hold no password. Returns the row."""
    if not name:
        raise errors.InvalidInput("a node's name must not be empty")
    if conninfo is not None and "password" in conninfo_to_dict(_db.make_conninfo(conninfo)):
        raise errors.InvalidInput(
            "the registry is replicated to every node: a node's conninfo must hold no password",
            fix="leave the password out (libpq finds it in ~/.pgpass or PGPASSWORD)",
        )
    if parent is not None:
        _check_number(parent)
    with _db.wrap_errors(), conn.transaction():
        conn.execute(queries["node_lock"])
        n = number(conn)
        former = settings.get(conn, NODE_NAME)
        if former is not None and former != name:
            conn.execute(queries["node_forget_own_row"], {"node": n, "name": former})
        _upsert(conn, n, name, conninfo, parent)
        settings.put(conn, NODE_NAME, name)
    return Node(n, name, conninfo, parent)


def _upsert(
    conn: _db.Connection, n: int, name: str, conninfo: str | None, parent: int | None
) -> None:
    conn.execute(
        queries["node_register_own_row"],
        {"node": n, "name": name, "conninfo": conninfo, "parent": parent},
    )


def registry(conn: _db.Connection) -> list[Node]:
    """Every node this database knows of (its own row and those replicated here), by number."""
    with _db.wrap_errors():
        rows = conn.execute(queries["node_registry"]).fetchall()
    return [Node(int(n), str(name), info, parent) for n, name, info, parent in rows]


def own(conn: _db.Connection) -> Node | None:
    """This database's own registry row (None before it has one): what ``agentchat install``
    reads to refresh the row's name and conninfo while keeping its parent."""
    n = number(conn)
    name = settings.get(conn, NODE_NAME)
    return next((r for r in registry(conn) if r.number == n and r.name == name), None)


def own_rows(conn: _db.Connection, n: int) -> int:
    """How many messages here carry node *n* in their id (legacy ids carry none)."""
    _check_number(n)
    with _db.wrap_errors():
        row = conn.execute(queries["node_own_rows"], (n,)).fetchone()
    return int(row[0]) if row else 0


def free_number(taken: Set[int]) -> int:
    """The smallest node number not in *taken*::

    >>> free_number({1, 2, 4})
    3
    """
    for n in range(MIN_NODE, MAX_NODE + 1):
        if n not in taken:
            return n
    raise errors.InvalidInput(
        f"all {MAX_NODE} node numbers are taken", fix="remove a node no longer in use"
    )
