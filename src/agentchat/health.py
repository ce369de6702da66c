"""Health of a topology: facts gathered from each database, then judged into checks.

``gather`` reads facts (never changes anything); ``judge`` turns them into :class:`Check` rows,
each with a verdict (ok, degraded, broken), a one-line detail and the fix. ``status`` and
``doctor`` print these; their exit code is the worst verdict (0 ok, 1 degraded, 2 broken), so
cron and monitoring can use it.

    report = status(["host=db1 dbname=nova_memory", "host=db2 dbname=graybeard_memory"])
    report.verdict            # Verdict.OK
    [c for c in report.checks if not c.ok]
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from agentchat import _db, errors, policy, schema
from agentchat.embeddings.mode import EmbeddingMode, embedding_mode
from agentchat.policy import EMBED_TRIGGER, GUARD_TRIGGER, NOTIFY_TRIGGER, Mode
from agentchat.sql import queries

#: an inactive slot holding back more WAL than this is reported (bytes)
DEFAULT_WAL_THRESHOLD = 1024**3


class Verdict(enum.IntEnum):
    """How bad a finding is; also the exit code of status and doctor."""

    OK = 0
    DEGRADED = 1
    BROKEN = 2


@dataclass(frozen=True)
class Check:
    """One judged fact: where, what, how bad, and what to do about it."""

    database: str
    check: str
    verdict: Verdict
    detail: str
    fix: str | None = None
    #: doctor --fix may repair it without risk to data ("policy", "enable")
    repair: str | None = None
    subject: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def as_dict(self) -> dict[str, object]:
        return {
            "database": self.database,
            "check": self.check,
            "subject": self.subject,
            "verdict": self.verdict.name.lower(),
            "detail": self.detail,
            "fix": self.fix,
            "repairable": self.repair is not None,
        }


@dataclass(frozen=True)
class SubscriptionFacts:
    name: str
    enabled: bool
    slot: str | None
    publications: tuple[str, ...]
    worker_pid: int | None
    last_message: datetime | None
    apply_errors: int
    sync_errors: int
    tables: dict[str, str]

    @property
    def tables_ready(self) -> int:
        return sum(1 for state in self.tables.values() if state == "r")

    @property
    def carries_agent_chat(self) -> bool:
        return "agent_chat" in self.tables


@dataclass(frozen=True)
class SlotFacts:
    name: str
    active: bool
    wal_status: str | None
    retained_bytes: int | None
    lag_bytes: int | None


@dataclass(frozen=True)
class EmbeddingFacts:
    """memory_embeddings of one database: rows with a vector, queued, failing, models."""

    mode: EmbeddingMode
    embedded: int
    queued: int
    failing: int
    models: tuple[str, ...]


@dataclass
class DatabaseFacts:
    """Everything status needs to know about one database."""

    conninfo: str
    name: str
    #: the connection as it was really made (host and port resolved), once reached
    resolved: str | None = None
    reachable: bool = True
    error: str | None = None
    version_num: int = 0
    wal_level: str = ""
    schema_version: int = 0
    role: policy.RoleFacts = field(default_factory=lambda: policy.RoleFacts(False, False))
    triggers: list[policy.TriggerStatus] = field(default_factory=list)
    subscriptions: list[SubscriptionFacts] = field(default_factory=list)
    slots: list[SlotFacts] = field(default_factory=list)
    embeddings: EmbeddingFacts | None = None

    @property
    def embedding_mode(self) -> EmbeddingMode | None:
        return self.embeddings.mode if self.embeddings else None

    def as_dict(self) -> dict[str, object]:
        return {
            "database": self.name,
            "reachable": self.reachable,
            "error": self.error,
            "server_version": self.version_num,
            "wal_level": self.wal_level,
            "schema_version": self.schema_version,
            "role": self.role.role.value,
            "triggers": [
                {"trigger": t.trigger, "mode": t.mode_name, "ok": t.ok} for t in self.triggers
            ],
            "subscriptions": [
                {
                    "name": s.name,
                    "enabled": s.enabled,
                    "worker_running": s.worker_pid is not None,
                    "slot": s.slot,
                    "publications": list(s.publications),
                    "tables": s.tables,
                    "last_message": s.last_message.isoformat() if s.last_message else None,
                    "apply_error_count": s.apply_errors,
                    "sync_error_count": s.sync_errors,
                }
                for s in self.subscriptions
            ],
            "slots": [
                {
                    "name": s.name,
                    "active": s.active,
                    "wal_status": s.wal_status,
                    "retained_bytes": s.retained_bytes,
                    "lag_bytes": s.lag_bytes,
                }
                for s in self.slots
            ],
            "embeddings": None
            if self.embeddings is None
            else {
                "mode": self.embeddings.mode.value,
                "embedded": self.embeddings.embedded,
                "queued": self.embeddings.queued,
                "failing": self.embeddings.failing,
                "models": list(self.embeddings.models),
            },
        }


def gather(conninfo: str) -> DatabaseFacts:
    """Read one database's facts; an unreachable database is a fact too, not an exception."""
    facts = DatabaseFacts(conninfo=conninfo, name=_db.describe(conninfo))
    try:
        with _db.connection(conninfo) as conn:
            facts.resolved = _db.resolved_conninfo(conn)
            facts.name = _db.describe(facts.resolved)
            row = conn.execute(queries["database_facts"]).fetchone()
            assert row is not None
            facts.version_num, facts.wal_level = int(row[0]), str(row[1])
            facts.schema_version = schema.schema_version(conn)
            facts.role = policy.read_role(conn)
            if facts.schema_version:
                facts.triggers = policy.trigger_report(conn, facts.role)
            facts.subscriptions = [
                SubscriptionFacts(
                    name,
                    enabled,
                    slot,
                    tuple(pubs or ()),
                    pid,
                    last,
                    int(apply_e),
                    int(sync_e),
                    dict(tables),
                )
                for name, enabled, slot, pubs, pid, last, apply_e, sync_e, tables in conn.execute(
                    queries["subscription_facts"]
                )
            ]
            facts.slots = [SlotFacts(*r) for r in conn.execute(queries["slot_facts"])]
            if facts.schema_version >= 4:
                row = conn.execute(queries["embedding_facts"]).fetchone()
                assert row is not None
                mode = embedding_mode(conn, facts.role)
                facts.embeddings = EmbeddingFacts(
                    mode, int(row[0]), int(row[1]), int(row[2]), tuple(row[3])
                )
    except errors.AgentchatError as exc:
        facts.reachable, facts.error = False, exc.message
    except psycopg.Error as exc:
        facts.reachable, facts.error = False, _db.translate(exc).message
    return facts


def judge(facts: DatabaseFacts, *, wal_threshold: int = DEFAULT_WAL_THRESHOLD) -> list[Check]:
    """The checks of one database, from its facts alone."""
    db = facts.name
    if not facts.reachable:
        return [
            Check(
                db,
                "reachable",
                Verdict.BROKEN,
                facts.error or "unreachable",
                "check the server, the DSN and the credentials",
            )
        ]
    checks = [Check(db, "reachable", Verdict.OK, f"PostgreSQL {facts.version_num // 10000}")]
    if not facts.schema_version:
        checks.append(
            Check(
                db,
                "installed",
                Verdict.BROKEN,
                "agent_chat is not installed here",
                "agentchat install --dsn ...",
            )
        )
        return checks
    checks.append(
        Check(
            db,
            "installed",
            Verdict.OK,
            f"schema version {facts.schema_version}",
            subject=str(facts.schema_version),
        )
    )
    checks += [_judge_trigger(db, facts, t) for t in facts.triggers]
    if facts.role.is_source and facts.wal_level != "logical":
        checks.append(
            Check(
                db,
                "wal_level",
                Verdict.BROKEN,
                f"wal_level is {facts.wal_level}: this source cannot replicate",
                "ALTER SYSTEM SET wal_level = logical; then restart the server",
            )
        )
    for sub in facts.subscriptions:
        checks += _judge_subscription(db, sub)
    for slot in facts.slots:
        checks.append(_judge_slot(db, slot, wal_threshold))
    if facts.embeddings is not None:
        checks.append(_judge_embeddings(db, facts.embeddings))
    return checks


def _judge_embeddings(db: str, e: EmbeddingFacts) -> Check:
    models = f", model {', '.join(e.models)}" if e.models else ""
    detail = (
        f"{e.mode.value} ({e.mode.description}); {e.embedded} embedded, {e.queued} queued{models}"
    )
    if e.failing:
        return Check(
            db, "embeddings", Verdict.DEGRADED,
            f"{detail}; {e.failing} failing (retried with backoff)",
            "SELECT source_id, attempts, last_error FROM memory_embeddings WHERE attempts > 0"
            " AND embedding IS NULL; fix the embedder, the worker retries them",
            subject=e.mode.value,
        )  # fmt: skip
    return Check(db, "embeddings", Verdict.OK, detail, subject=e.mode.value)


def _judge_trigger(db: str, facts: DatabaseFacts, t: policy.TriggerStatus) -> Check:
    if t.ok:
        return Check(
            db, "trigger_mode", Verdict.OK, f"{t.trigger} {t.mode_name}", subject=t.trigger
        )
    fix = "agentchat doctor --fix (or agentchat install)"
    role = facts.role.role.value
    if t.mode is None:
        return Check(
            db,
            "trigger_mode",
            Verdict.BROKEN,
            f"{t.trigger} is missing",
            "agentchat install",
            subject=t.trigger,
        )
    if t.trigger == NOTIFY_TRIGGER and facts.role.is_subscriber:
        detail = (
            f"{t.trigger} is {t.mode_name} on a subscriber: agents here hear no replicated"
            " message (it must be ALWAYS)"
        )
    elif t.trigger == EMBED_TRIGGER and t.mode is Mode.REPLICA:
        detail = (
            f"{t.trigger} is REPLICA: it fires only for replicated rows (the seed's advice,"
            " backwards): the apply worker then writes embedding rows, and the first duplicate"
            " key stops the subscription; it must be ORIGIN"
        )
    elif t.trigger == GUARD_TRIGGER:
        detail = f"{t.trigger} is {t.mode_name}; on a {role} database it must be {t.expected_name}"
        return Check(db, "trigger_mode", Verdict.DEGRADED, detail, fix, "policy", t.trigger)
    else:
        detail = f"{t.trigger} is {t.mode_name}; on a {role} database it must be {t.expected_name}"
    return Check(db, "trigger_mode", Verdict.BROKEN, detail, fix, "policy", t.trigger)


def _judge_subscription(db: str, sub: SubscriptionFacts) -> list[Check]:
    name = sub.name
    if not sub.enabled:
        return [
            Check(
                db,
                "subscription_enabled",
                Verdict.BROKEN,
                f"subscription {name} is disabled (apply errors: {sub.apply_errors}, sync"
                f" errors: {sub.sync_errors}): nothing arrives",
                "agentchat doctor names the cause and the repair",
                "enable",
                name,
            )
        ]
    checks = [
        Check(db, "subscription_enabled", Verdict.OK, f"subscription {name} enabled", subject=name)
    ]
    if sub.worker_pid is None:
        checks.append(
            Check(
                db,
                "apply_worker",
                Verdict.BROKEN,
                f"subscription {name} has no running apply worker (apply errors:"
                f" {sub.apply_errors}): changes are not applied",
                "see the server log; agentchat doctor looks for conflicting rows",
                subject=name,
            )
        )
    else:
        heard = "no message yet"
        if sub.last_message is not None:
            age = (datetime.now(UTC) - sub.last_message).total_seconds()
            heard = f"last message {max(age, 0):.1f} s ago"
        detail = (
            f"pid {sub.worker_pid}, {heard}, apply errors {sub.apply_errors},"
            f" sync errors {sub.sync_errors}"
        )
        checks.append(Check(db, "apply_worker", Verdict.OK, detail, subject=name))
    ready, total = sub.tables_ready, len(sub.tables)
    verdict = Verdict.OK if ready == total else Verdict.DEGRADED
    checks.append(
        Check(
            db,
            "sync_state",
            verdict,
            f"{ready}/{total} tables ready ("
            + ", ".join(f"{table} {state}" for table, state in sorted(sub.tables.items()))
            + ")",
            None if verdict is Verdict.OK else "wait for the initial sync",
            subject=name,
        )
    )
    return checks


def _judge_slot(db: str, slot: SlotFacts, threshold: int) -> Check:
    retained = slot.retained_bytes or 0
    size = _bytes(retained)
    drop = f"if its replica is gone: SELECT pg_drop_replication_slot('{slot.name}');"
    if slot.wal_status == "lost":
        return Check(
            db,
            "slot",
            Verdict.BROKEN,
            f"slot {slot.name} lost the WAL its replica needs: that replica must be re-added",
            drop,
            subject=slot.name,
        )
    if not slot.active and retained > threshold:
        return Check(
            db,
            "slot",
            Verdict.DEGRADED,
            f"slot {slot.name} is inactive and retains {size} of WAL",
            drop,
            subject=slot.name,
        )
    state = "active" if slot.active else "inactive"
    detail = (
        f"slot {slot.name} {state}, wal_status {slot.wal_status}, retains {size},"
        f" lag {_bytes(slot.lag_bytes or 0)}"
    )
    return Check(db, "slot", Verdict.OK, detail, subject=slot.name)


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def judge_topology(all_facts: Sequence[DatabaseFacts]) -> list[Check]:
    """Checks across databases: schema versions that differ."""
    versions = {f.name: f.schema_version for f in all_facts if f.reachable and f.schema_version}
    if len(set(versions.values())) <= 1:
        return []
    newest = max(versions.values())
    return [
        Check(
            name,
            "schema_versions",
            Verdict.DEGRADED,
            f"schema version {v}, while others are at {newest}",
            "agentchat upgrade (replicas first, then the source)",
            subject=str(v),
        )
        for name, v in versions.items()
        if v != newest
    ]


@dataclass
class Report:
    databases: list[DatabaseFacts]
    checks: list[Check]

    @property
    def verdict(self) -> Verdict:
        return max((c.verdict for c in self.checks), default=Verdict.OK)

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.name.lower(),
            "databases": [d.as_dict() for d in self.databases],
            "checks": [c.as_dict() for c in self.checks],
        }


def status(conninfos: Sequence[str], *, wal_threshold: int = DEFAULT_WAL_THRESHOLD) -> Report:
    """Gather and judge every database."""
    facts = [gather(c) for c in conninfos]
    checks = [c for f in facts for c in judge(f, wal_threshold=wal_threshold)]
    return Report(facts, checks + judge_topology(facts))
