"""Schema migrations: ordered .sql files, one transaction each, serialised by an advisory lock.

Concurrent installers are safe: each migration's transaction first takes the migration lock, then
checks whether another installer applied it meanwhile. A failing migration rolls back whole, so a
database is always at exactly one schema version.

Each applied migration's SHA-256 is recorded with it. Before migrating, the recorded checksums are
compared with the shipped files (:func:`check_checksums`): a database whose recorded migration
differs from the file of the same version was built from other SQL, and is refused with a
:class:`~agentchat.errors.MigrationError` rather than migrated further. A row recorded without a
checksum gets the shipped one (backfilled, not refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentchat import _db, errors
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


@dataclass(frozen=True)
class ChecksumMismatch:
    """An applied migration whose recorded checksum is not the shipped file's."""

    version: int
    name: str
    recorded: str
    shipped: str


def compare_checksums(
    applied: dict[int, str], migrations: Sequence[Migration]
) -> tuple[list[ChecksumMismatch], list[Migration]]:
    """``(mismatches, to_backfill)``: applied migrations recorded with another checksum than
    the shipped file's, and those recorded without one. Pure: *applied* is
    :func:`applied_versions`' answer."""
    mismatches, backfill = [], []
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is None:
            continue
        if not recorded.strip():
            backfill.append(migration)
        elif recorded != migration.checksum:
            mismatches.append(
                ChecksumMismatch(migration.version, migration.name, recorded, migration.checksum)
            )
    return mismatches, backfill


def mismatch_error(mismatches: Sequence[ChecksumMismatch]) -> errors.MigrationError:
    """The error for a database built from other migration SQL than this agentchat ships."""
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in mismatches)
    record = " ".join(  # the fix's text for a person to run; agentchat never executes it
        f"UPDATE agentchat_migrations SET checksum = '{m.shipped}'"  # noqa: S608
        f" WHERE version = {m.version};"
        for m in mismatches
    )
    return errors.MigrationError(
        f"the recorded checksum of migration {names} differs from the file this agentchat"
        " ships: the database was built from other SQL (another agentchat version, or an edited"
        " migration)",
        fix="install with the agentchat version that built it; or, if the schema is known to"
        f" match the shipped migration, record its checksum: {record}",
    )


def check_checksums(conn: Connection, migrations: Sequence[Migration] | None = None) -> None:
    """Refuse a database whose applied migrations differ from the shipped files (raise
    :func:`mismatch_error`); record the shipped checksum where none was recorded."""
    with _db.wrap_errors():
        mismatches, backfill = compare_checksums(
            applied_versions(conn), migrations or load_migrations()
        )
        if mismatches:
            raise mismatch_error(mismatches)
        for migration in backfill:
            conn.execute(
                queries["backfill_migration_checksum"], (migration.checksum, migration.version)
            )


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
    migrations = migrations or load_migrations()
    check_checksums(conn, migrations)
    applied: list[Migration] = []
    for migration in migrations:
        try:
            with _db.wrap_errors(), conn.transaction():
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
        except errors.AgentchatError as exc:
            raise errors.MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed and was rolled back:"
                f" {exc.message}",
                sqlstate=getattr(exc, "sqlstate", None),
                constraint=getattr(exc, "constraint", None),
            ) from exc
        applied.append(migration)
    return applied


def embedding_dimension(conn: Connection) -> int | None:
    """The vector dimension fixed at install, or None before the schema exists."""
    row = conn.execute(queries["embedding_dimension"]).fetchone()
    return int(row[0]) if row and row[0] and row[0] > 0 else None
