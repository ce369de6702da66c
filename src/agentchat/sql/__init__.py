"""SQL shipped with agentchat: named queries and ordered migrations, loaded from .sql files.

``queries["trigger_status"]`` is the text of the block headed ``-- name: trigger_status`` in
one of the package's ``.sql`` files (names are unique across files). A block may hold
``{placeholder}`` fields for names and values known only at run time; :meth:`Queries.compose` fills
them, each with a :class:`psycopg.sql.Identifier` or :class:`~psycopg.sql.Literal`::

    conn.execute(queries.compose("drop_subscription", subscription=sql.Identifier(name)))

Migrations are the files ``migrations/NNNN_name.sql``, applied in order.
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


_PLACEHOLDER = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")


def statement_text(block: str) -> str:
    """A block's statement alone: its leading comment lines and trailing ``;`` removed."""
    lines = block.strip().splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        lines.pop(0)
    return "\n".join(lines).strip().removesuffix(";").rstrip()


def placeholders(block: str) -> set[str]:
    """The ``{name}`` placeholders of a block."""
    return set(_PLACEHOLDER.findall(block))


class Queries(dict[str, sql.SQL]):
    """``{name: SQL}`` of every named block, and :meth:`compose` for blocks with placeholders."""

    def compose(self, name: str, **values: sql.Composable) -> sql.Composed:
        """The statement of block *name* (no comments, no trailing ``;``, so it can be shown as
        it runs) with every ``{placeholder}`` filled; a missing or unknown one is an error."""
        text = statement_text(self[name].as_string(None))
        wanted = placeholders(text)
        if wanted != set(values):
            missing, unknown = sorted(wanted - set(values)), sorted(set(values) - wanted)
            raise KeyError(f"query {name!r}: missing {missing}, unknown {unknown}")
        # the template is shipped text; only the Identifier/Literal values vary
        return sql.SQL(text).format(**values)


def _load_queries() -> Queries:
    found = Queries()
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, query in parse_queries(entry.read_text(encoding="utf-8")).items():
                if name in found:
                    raise ValueError(f"query {name!r} is defined in two files")
                found[name] = query
    return found


#: every named query of every .sql file in this package (queries.sql, replication.sql, ...)
queries: Queries = _load_queries()


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


@dataclass(frozen=True)
class Script:
    """A whole SQL script shipped with the package (a compatibility layer, compat/NAME.sql)."""

    name: str
    text: str

    @property
    def statement(self) -> sql.SQL:
        return sql.SQL(self.text)


def load_compat(name: str) -> Script:
    """The compatibility layer *name*'s script (``compat/<name>.sql``)."""
    entry = resources.files(__name__).joinpath("compat", f"{name}.sql")
    return Script(name, entry.read_text(encoding="utf-8"))
