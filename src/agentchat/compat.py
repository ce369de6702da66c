"""Compatibility layers: other projects' clients, unchanged, over agentchat's tables.

One layer today, ``nova``: NOVA-Openclaw's agent-chat plugin and scripts (docs/nova.md). It is a
schema of their names (views over agentchat's messages and marks, their ``send_agent_message``
and ``expire_old_chat``) that only their roles see, first on those roles' ``search_path``::

    with _db.connection(conninfo) as conn:
        report = compat.install_compat(conn, "nova", roles=["nova", "graybeard"])
        report.roles        # ['graybeard', 'nova']: every role that sees the layer here
        compat.installed(conn)   # ['nova']

The layer is a whole script (``sql/compat/nova.sql``), idempotent, applied in one transaction
under the migration lock; running it again changes nothing but adds roles. It needs schema
version 8 (``agentchat install`` applies it first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from psycopg import sql

from agentchat import _db, errors, schema
from agentchat.sql import load_compat, queries

#: the layers agentchat ships
COMPATS = ("nova",)

#: the schema version a layer needs (agent_chat.expires_at, the marks' NOVA columns)
COMPAT_SCHEMA = 8

#: the columns of NOVA's public.schema_version, the table their install.sh reads
_NOVA_SCHEMA_VERSION_COLUMNS = ["version", "applied_at", "description"]


@dataclass
class CompatReport:
    """What ``install_compat`` did (or, in a dry run, would do)."""

    name: str
    #: every role whose search_path in this database starts with the layer's schema
    roles: list[str] = field(default_factory=list)
    #: in a dry run: the SQL it would run
    statements: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "schema": f"agentchat_{self.name}", "roles": self.roles}


def check_name(name: str) -> str:
    """*name* if agentchat ships that layer, else :class:`~agentchat.errors.InvalidInput`."""
    if name not in COMPATS:
        raise errors.InvalidInput(
            f"unknown compatibility layer {name!r}", fix=f"choose one of: {', '.join(COMPATS)}"
        )
    return name


def installed(conn: _db.Connection) -> list[str]:
    """The layers installed in this database."""
    row = conn.execute(queries["compat_nova_installed"]).fetchone()
    return ["nova"] if row and row[0] else []


def roles(conn: _db.Connection) -> list[str]:
    """The roles that see the nova layer in this database (its schema first on their path)."""
    return [name for (name,) in conn.execute(queries["compat_nova_roles"])]


def install_compat(
    conn: _db.Connection, name: str, roles_: Sequence[str] = (), *, dry_run: bool = False
) -> CompatReport:
    """Install layer *name* into the connection's database (autocommit connection, schema
    version 8 or later) and put it on the search_path of *roles_* in this database.

    Each role must exist (their own installer made it, or ``agentchat agent add``); a missing one
    is refused before anything changes. A ``public.schema_version`` that is not NOVA's handshake
    table is refused too."""
    check_name(name)
    report = CompatReport(name=name)
    wanted = sorted({_db.validate_identifier(r, "role name") for r in roles_})
    with _db.wrap_errors():
        version = schema.schema_version(conn)
        if version < COMPAT_SCHEMA and not dry_run:
            raise errors.MigrationError(
                f"--compat {name} needs schema version {COMPAT_SCHEMA}; this database is at"
                f" {version}",
                fix="run agentchat install without --compat first",
            )
        for role in wanted:
            row = conn.execute(queries["compat_role_exists"], (role,)).fetchone()
            if not row or not row[0]:
                raise errors.InvalidInput(
                    f"role {role!r} does not exist",
                    fix="create it first (NOVA's register-agent.sh, or agentchat agent add),"
                    " then run this again",
                )
        columns = [c for (c,) in conn.execute(queries["compat_schema_version_columns"])]
        if columns and columns != _NOVA_SCHEMA_VERSION_COLUMNS:
            raise errors.InvalidInput(
                f"public.schema_version exists with columns ({', '.join(columns)}), not NOVA's"
                f" ({', '.join(_NOVA_SCHEMA_VERSION_COLUMNS)})",
                fix="it belongs to another tool: rename it, or install the layer into another"
                " database",
            )
        database = sql.Identifier(conn.info.dbname)
        grants = [
            queries.compose("compat_nova_role", role=sql.Identifier(role), database=database)
            for role in wanted
        ]
        if dry_run:
            report.statements = [load_compat(name).text.strip()]
            report.statements += [g.as_string(conn).strip() for g in grants]
            report.roles = sorted(set(roles(conn)) | set(wanted))
            return report
        with conn.transaction():
            conn.execute(queries["migration_lock"])
            conn.execute(load_compat(name).statement)
            for grant in grants:
                conn.execute(grant)
        report.roles = roles(conn)
    return report
