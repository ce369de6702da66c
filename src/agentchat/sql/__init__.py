"""SQL shipped with agentchat: named queries and ordered migrations, loaded from .sql files.

``queries["trigger_status"]`` is the text of the block headed ``-- name: trigger_status`` in
one of the package's ``.sql`` files (names are unique across files). Migrations are the files
``migrations/NNNN_name.sql``, applied in order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


def parse_queries(text: str) -> dict[str, sql.SQL]:
    """Split a queries file into ``{name: SQL}`` (the text of each block, comments included)."""
    chunks = _NAME.split(text)
    found: dict[str, sql.SQL] = {}
    for name, body in zip(chunks[1::2], chunks[2::2], strict=True):
        if name in found:
            raise ValueError(f"query {name!r} is defined twice")
        # The text comes from files shipped in this package, never from user input (mypy
        # treats LiteralString as str, so no cast is needed to build sql.SQL from it).
        found[name] = sql.SQL(body.strip())
    return found


def _load_queries() -> dict[str, sql.SQL]:
    found: dict[str, sql.SQL] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, query in parse_queries(entry.read_text(encoding="utf-8")).items():
                if name in found:
                    raise ValueError(f"query {name!r} is defined in two files")
                found[name] = query
    return found


#: every named query of every .sql file in this package (queries.sql, replication.sql, ...)
queries: dict[str, sql.SQL] = _load_queries()


@dataclass(frozen=True)
class Migration:
    """One schema migration: a version number, a name, its SQL and the SQL's checksum."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def statement(self) -> sql.SQL:
        return sql.SQL(self.text)


def load_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    folder = resources.files(__name__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..N without gaps, found {versions}")
    return found
