"""Preflight for replication: gather facts from both sides, then judge each one.

Facts are read first (:func:`source_facts`, :func:`target_facts`); :func:`judge` turns each into
a :class:`Finding` whose failure names its fix, as pg_easy_replicate's config check does. Nothing
here changes a database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from psycopg.rows import dict_row

from agentchat import _db, errors, schema
from agentchat.sql import queries

PUBLISHED_TABLES = ("public.agent_chat", "public.memory_embeddings")
MIN_VERSION_NUM = 150000  # row filters (PG15) and disable_on_error (PG15)
STRICT_SSLMODES = ("require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class Finding:
    """One preflight verdict: which check, whether it passed, what is wrong, how to fix it."""

    check: str
    ok: bool
    message: str
    fix: str | None = None


class PreflightFailed(errors.ReplicationError):
    """Preflight found problems; :attr:`findings` holds each with its fix."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = [f for f in findings if not f.ok]
        super().__init__("; ".join(_finding_text(f) for f in self.findings))


def _finding_text(finding: Finding) -> str:
    return f"{finding.message} ({finding.fix})" if finding.fix else finding.message


# -- preflight ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFacts:
    version_num: int
    wal_level: str
    max_slots: int
    used_slots: int
    max_senders: int
    used_senders: int
    is_superuser: bool
    can_create_role: bool
    system_id: str
    schema_version: int | None  # None: not readable by this role
    embedding_dimension: int | None = None  # None: not installed


@dataclass(frozen=True)
class TargetFacts:
    version_num: int
    max_workers: int
    used_workers: int
    is_superuser: bool
    system_id: str
    schema_version: int | None  # None: not readable by this role
    embedding_dimension: int | None = None  # None: not installed
    #: replication origins the server can track (PostgreSQL 18: max_active_replication_origins,
    #: earlier: max_replication_slots) and those that exist (one per subscription, and one per
    #: table it is copying); None: not known
    max_origins: int | None = None
    used_origins: int = 0


def source_facts(conn: _db.Connection) -> SourceFacts:
    row = conn.cursor(row_factory=dict_row).execute(queries["source_facts"]).fetchone()
    assert row is not None
    return SourceFacts(**row, schema_version=_schema_version(conn),
                       embedding_dimension=schema.embedding_dimension(conn))  # fmt: skip


def target_facts(conn: _db.Connection) -> TargetFacts:
    row = conn.cursor(row_factory=dict_row).execute(queries["target_facts"]).fetchone()
    assert row is not None
    return TargetFacts(**row, schema_version=_schema_version(conn),
                       embedding_dimension=schema.embedding_dimension(conn))  # fmt: skip


#: insufficient_privilege
_NOT_ALLOWED = "42501"


def _schema_version(conn: _db.Connection) -> int | None:
    try:
        with _db.wrap_errors():
            return schema.schema_version(conn)
    except errors.DatabaseError as exc:
        if exc.sqlstate == _NOT_ALLOWED:
            return None  # the privilege findings say what to do
        raise


def judge(source: SourceFacts, target: TargetFacts, *, new_slot: bool) -> list[Finding]:
    """Turn the facts into findings, each failure with the fix that makes it pass."""
    same = source.system_id == target.system_id
    # one slot for the subscription plus one per table being synced
    slots_needed = (1 + len(PUBLISHED_TABLES)) if new_slot else 0
    workers_needed = 2 if new_slot else 0
    return [
        Finding(
            "source_version",
            source.version_num >= MIN_VERSION_NUM,
            f"source runs PostgreSQL {source.version_num // 10000}; agentchat needs 15 or later",
            "upgrade the source server",
        ),
        Finding(
            "target_version",
            target.version_num >= MIN_VERSION_NUM,
            f"target runs PostgreSQL {target.version_num // 10000}; agentchat needs 15 or later",
            "upgrade the target server",
        ),
        Finding(
            "wal_level",
            source.wal_level == "logical",
            f"source wal_level is {source.wal_level}, logical replication needs logical",
            "ALTER SYSTEM SET wal_level = logical; then restart the source server",
        ),
        Finding(
            "replication_slots",
            source.max_slots - source.used_slots >= slots_needed,
            f"source has {source.max_slots - source.used_slots} free replication slots"
            f" (max_replication_slots = {source.max_slots}); {slots_needed} needed",
            "raise max_replication_slots on the source (restart needed),"
            " or drop unused slots (pg_replication_slots)",
        ),
        Finding(
            "wal_senders",
            source.max_senders - source.used_senders >= slots_needed,
            f"source has {source.max_senders - source.used_senders} free wal senders"
            f" (max_wal_senders = {source.max_senders}); {slots_needed} needed",
            "raise max_wal_senders on the source (restart needed)",
        ),
        Finding(
            "replication_workers",
            target.max_workers - target.used_workers >= workers_needed,
            f"target has {target.max_workers - target.used_workers} free logical replication"
            f" workers (max_logical_replication_workers = {target.max_workers});"
            f" {workers_needed} needed",
            "raise max_logical_replication_workers and max_worker_processes on the target"
            + (" (one cluster: source and target share them)" if same else ""),
        ),
        Finding(
            "replication_origins",
            target.max_origins is None or target.max_origins - target.used_origins >= slots_needed,
            f"target has {(target.max_origins or 0) - target.used_origins} free replication"
            f" origins ({target.max_origins} in all); {slots_needed} needed",
            "raise max_active_replication_origins on the target (PostgreSQL 18; earlier:"
            " max_replication_slots), then restart it",
        ),
        Finding(
            "source_privileges",
            source.is_superuser,
            "the role connecting to the source is not a superuser: it cannot create the"
            " replication role and the publication",
            "connect to the source as a superuser (e.g. postgres)",
        ),
        Finding(
            "target_privileges",
            target.is_superuser,
            "the role connecting to the target is not a superuser: it cannot create a subscription",
            "connect to the target as a superuser (e.g. postgres)",
        ),
        Finding(
            "source_schema",
            source.schema_version != 0,
            "agent_chat is not installed on the source",
            "run `agentchat install` on the source database first",
        ),
        Finding(
            "embedding_dimension",
            None in (source.embedding_dimension, target.embedding_dimension)
            or source.embedding_dimension == target.embedding_dimension,
            f"the target's memory_embeddings holds {target.embedding_dimension}-dimension"
            f" vectors, the source's {source.embedding_dimension}: the first embedding to"
            " arrive would stop the subscription",
            f"use a target installed with --dimension {source.embedding_dimension} (a new"
            " database: replicate add creates a missing one with the source's dimension)",
        ),
    ]


def check_transport(params: dict[str, str], allow_insecure: bool) -> None:
    """Refuse a non-local source reached without TLS, unless explicitly allowed.

    *params* are connection parameters with libpq's environment applied (PGHOST, PGSSLMODE),
    or those of an open connection, so a host from the environment or a service file is judged
    too.
    """
    host = params.get("host") or params.get("hostaddr") or ""
    local = not host or host.startswith("/") or host in ("localhost", "::1")
    local = local or host.startswith("127.")
    mode = params.get("sslmode") or os.environ.get("PGSSLMODE") or ""
    if not local and mode not in STRICT_SSLMODES and not allow_insecure:
        raise errors.InvalidInput(
            f"source host {host} is not local and the connection would not require TLS"
            f" (sslmode {mode or 'prefer'})",
            fix="pass --sslmode require (or verify-full), or --allow-insecure on a trusted network",
        )
