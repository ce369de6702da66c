"""Schema migrations: ordered .sql files, one transaction each, serialised by an advisory lock.

Concurrent installers are safe: each migration's transaction first takes the migration lock, then
checks whether another installer applied it meanwhile. A failing migration rolls back whole, so a
database is always at exactly one schema version.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from agentchat import errors
from agentchat._db import Connection
from agentchat.sql import Migration, load_migrations, queries

DEFAULT_DIMENSION = 384


def applied_versions(conn: Connection) -> dict[int, str]:
    """``{version: checksum}`` of the migrations applied to this database."""
    exists = conn.execute(queries["migrations_table_exists"]).fetchone()
    if not exists or not exists[0]:
        return {}
    return {v: checksum for v, _name, checksum in conn.execute(queries["migrations_applied"])}


def schema_version(conn: Connection) -> int:
    """The highest applied migration, 0 for a database agentchat never touched."""
    return max(applied_versions(conn), default=0)


def pending(conn: Connection, migrations: Sequence[Migration] | None = None) -> list[Migration]:
    """Migrations not yet applied, in order."""
    done = applied_versions(conn)
    return [m for m in (migrations or load_migrations()) if m.version not in done]


def validate_dimension(dimension: int) -> int:
    if not 1 <= dimension <= 2000:
        raise errors.InvalidInput(
            f"embedding dimension {dimension} is out of range",
            fix="pgvector indexes vectors of 1 to 2000 dimensions",
        )
    return dimension


def migrate(
    conn: Connection,
    *,
    dimension: int = DEFAULT_DIMENSION,
    migrations: Sequence[Migration] | None = None,
) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return those applied here.

    *conn* must be in autocommit mode (each migration opens its own transaction).
    """
    validate_dimension(dimension)
    applied: list[Migration] = []
    for migration in migrations or load_migrations():
        try:
            with conn.transaction():
                conn.execute(queries["migration_lock"])
                conn.execute(queries["migrations_table"])
                if migration.version in applied_versions(conn):
                    continue  # another installer got here first
                conn.execute(queries["set_embedding_dimension"], (str(dimension),))
                conn.execute(migration.statement)
                conn.execute(
                    queries["record_migration"],
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            reason = errors.DatabaseError(str(exc))
            diag = getattr(exc, "diag", None)
            if diag is not None and diag.message_primary:
                reason = errors.DatabaseError(diag.message_primary)
            raise errors.MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed and was rolled back:"
                f" {reason.message}"
            ) from None
        applied.append(migration)
    return applied


def embedding_dimension(conn: Connection) -> int | None:
    """The vector dimension fixed at install, or None before the schema exists."""
    row = conn.execute(queries["embedding_dimension"]).fetchone()
    return int(row[0]) if row and row[0] and row[0] > 0 else None
