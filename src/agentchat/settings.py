"""Per-database settings: the ``agentchat_settings`` table (schema version 2 and later).

One key, one text value. Who writes what:

- ``agentchat install`` on a replica: :data:`REPLICA_OF` (the source as the replica guard's error
  names it) and :data:`SOURCE_CONNINFO` (where agents on the replica send), and
  :data:`EMBED_REPLICATED` (``on`` with ``--embed-replicated``);
- ``agentchat replicate add --no-copy-data`` (or a re-add over kept history):
  :data:`HISTORY_FROM`, the last message id that predates the subscription.

::

    with _db.connection(conninfo) as conn:
        source = settings.get(conn, settings.SOURCE_CONNINFO)
"""

from __future__ import annotations

from agentchat import _db, errors
from agentchat.sql import queries

#: the source a replica follows, described without password (the guard's error names it)
REPLICA_OF = "replica_of"
#: where agents on a replica send: the source's host, port and database, without password
SOURCE_CONNINFO = "source_conninfo"
#: ``on``: this replica's embed worker embeds the replicated queue rows
EMBED_REPLICATED = "embed_replicated"
#: messages up to this id predate the replica's subscription (not lost: never copied)
HISTORY_FROM = "history_from"

#: undefined_table: a database installed before schema version 2 has no settings
_NO_TABLE = "42P01"


def get(conn: _db.Connection, key: str) -> str | None:
    """The value of *key*, or ``None`` when it is not set (or the schema has no settings yet).

    Runs in a savepoint (a transaction in autocommit mode), so a missing table does not break a
    transaction the caller has open.
    """
    try:
        with _db.wrap_errors(), conn.transaction():
            row = conn.execute(queries["setting_get"], (key,)).fetchone()
    except errors.DatabaseError as exc:
        if exc.sqlstate == _NO_TABLE:
            return None
        raise
    return None if row is None else str(row[0])


def put(conn: _db.Connection, key: str, value: str) -> None:
    """Set *key* to *value*."""
    with _db.wrap_errors():
        conn.execute(queries["setting_put"], (key, value))


def delete(conn: _db.Connection, key: str) -> None:
    """Remove *key* (nothing happens when it is not set)."""
    with _db.wrap_errors():
        conn.execute(queries["setting_delete"], (key,))
