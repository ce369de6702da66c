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

import dataclasses
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from agentchat import _db, errors, policy, schema
from agentchat.embeddings.mode import EmbeddingMode, embedding_mode
from agentchat.policy import EMBED_TRIGGER, GUARD_TRIGGER, NOTIFY_TRIGGER, Mode
from agentchat.sql import queries
from agentchat.topology import Topology

#: an inactive slot holding back more WAL than this is reported (bytes)
DEFAULT_WAL_THRESHOLD = 1024**3
#: seconds an apply worker must have lived without a new error to count as healed
HEALED_AFTER = 3.0
#: seconds to watch for rows in flight before calling a replica's missing rows lost
ROWS_SETTLE = 3.0
#: the replica's agentchat_settings key: messages up to this id predate the subscription
#: (added with --no-copy-data), so the replica is not expected to hold them
HISTORY_FROM = "history_from"


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
    disable_on_error: bool = False
    #: when the running apply worker started (pg_stat_activity.backend_start)
    worker_started: datetime | None = None
    #: when status found no apply worker, or one just restarted after errors, it watched for a
    #: while: the apply_error_count it saw first (the fields above are the last look), and
    #: for how long it watched
    apply_errors_first: int | None = None
    watched: float = 0.0

    @property
    def crash_looping(self) -> bool:
        """The error count rose while status watched: the worker keeps failing on a change."""
        return self.apply_errors_first is not None and self.apply_errors > self.apply_errors_first

    def suspect(self, retry_ms: int, now: datetime) -> bool:
        """Worth watching: enabled, and no worker, or one that started within the last retry
        interval after errors (a crash loop's worker lives for a moment in every interval)."""
        if not self.enabled:
            return False
        if self.worker_pid is None:
            return True
        young = self.worker_started is not None and (
            (now - self.worker_started).total_seconds() < retry_ms / 1000 + 2
        )
        return young and self.apply_errors > 0

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
    #: of the walsender using it (pg_stat_replication): the subscription's name, the replica
    application_name: str | None = None
    client_addr: str | None = None


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
    retry_interval_ms: int = 5000
    schema_version: int = 0
    role: policy.RoleFacts = field(default_factory=lambda: policy.RoleFacts(False, False))
    triggers: list[policy.TriggerStatus] = field(default_factory=list)
    subscriptions: list[SubscriptionFacts] = field(default_factory=list)
    slots: list[SlotFacts] = field(default_factory=list)
    embeddings: EmbeddingFacts | None = None
    #: this database's messages against its source's (status with a topology whose source
    #: answered; None otherwise)
    rows: RowCounts | None = None

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
                    "disable_on_error": s.disable_on_error,
                    "crash_looping": s.crash_looping,
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


@dataclass(frozen=True)
class RowCounts:
    """A replica's messages against its source's, for ids in (history_from, upto].

    *upto* is the replica's newest id, or the source's when the replica is empty; messages up
    to *history_from* predate a subscription added with --no-copy-data.
    """

    upto: int
    history_from: int
    source: int
    replica: int

    @property
    def missing(self) -> int:
        return max(self.source - self.replica, 0)


def count_rows(rep: _db.Connection, src: _db.Connection) -> RowCounts:
    """Compare a replica's messages with its source's (see :class:`RowCounts`)."""
    [(upto,)] = rep.execute(queries["chat_max_id"]).fetchall()
    if not upto:
        [(upto,)] = src.execute(queries["chat_max_id"]).fetchall()
    history_from = 0
    if schema.schema_version(rep) >= 2:
        row = rep.execute(queries["setting_get"], (HISTORY_FROM,)).fetchone()
        history_from = int(row[0]) if row and str(row[0]).isdigit() else 0
    bounds = (history_from, int(upto))
    [(theirs,)] = src.execute(queries["chat_count_between"], bounds).fetchall()
    [(ours,)] = rep.execute(queries["chat_count_between"], bounds).fetchall()
    return RowCounts(int(upto), history_from, int(theirs), int(ours))


#: rows compared per round trip when a replica's messages are checked one by one
FINGERPRINT_BATCH = 5000


def foreign_rows(rep: _db.Connection, src: _db.Connection) -> tuple[list[int], list[int]]:
    """The replica's messages its source does not hold: ``(local, conflicts)``, the ids that
    are not at the source at all and those whose id holds a different message there (compared
    by sender, channel, text and time, as the admission trigger compares them)."""
    local: list[int] = []
    conflicts: list[int] = []
    last = 0
    while True:
        batch = rep.execute(queries["chat_fingerprints"], (last, FINGERPRINT_BATCH)).fetchall()
        if not batch:
            return local, conflicts
        ids = [i for i, _ in batch]
        theirs: dict[int, str] = dict(src.execute(queries["chat_fingerprints_of"], (ids,)))
        for msg_id, fingerprint in batch:
            if msg_id not in theirs:
                local.append(msg_id)
            elif theirs[msg_id] != fingerprint:
                conflicts.append(msg_id)
        last = batch[-1][0]


def settled_rows(
    rep: _db.Connection, src: _db.Connection, settle: float = ROWS_SETTLE
) -> RowCounts:
    """:func:`count_rows`, looked at again for up to *settle* seconds while rows are missing
    (rows in flight: commits arrive in commit order, not id order)."""
    deadline = time.monotonic() + settle
    counts = count_rows(rep, src)
    while counts.missing and time.monotonic() < deadline:
        time.sleep(0.25)
        counts = count_rows(rep, src)
    return counts


def judge_rows(db: str, subscription: str, counts: RowCounts, local: int = 0) -> Check:
    """Messages of the source a replica should hold and does not: lost (deleted or truncated
    here by a superuser bypassing the guard), or never applied. *local*: rows written here
    that the source does not have (doctor counts them), which would hide as many missing."""
    missing = counts.source - (counts.replica - local)
    if missing <= 0:
        return Check(db, "missing_rows", Verdict.OK, "no message missing", subject=subscription)
    since = f" after id {counts.history_from}" if counts.history_from else ""
    return Check(
        db,
        "missing_rows",
        Verdict.BROKEN,
        f"{missing} of the source's messages up to id {counts.upto}{since} are not on this"
        " replica: deleted here (a superuser bypassing the guard), or never applied; they do"
        " not come back by themselves",
        "agentchat replicate remove, then add it again: the copy brings back what it lost and"
        " skips what it has (its delivery marks stay)"
        " (agentchat replicate remove --target ..., then add)",
        subject=subscription,
    )


def gather(conninfo: str, *, watch: bool = True) -> DatabaseFacts:
    """Read one database's facts; an unreachable database is a fact too, not an exception.

    *watch*: when an enabled subscription has no apply worker (or one that just restarted after
    errors), look again for up to ``wal_retrieve_retry_interval`` plus a little: a worker that
    comes back without a new error was reconnecting (a source restart); one whose error count
    rose meanwhile is crash-looping on a change it cannot apply.
    """
    facts = DatabaseFacts(conninfo=conninfo, name=_db.describe(conninfo))
    try:
        with _db.connection(conninfo) as conn:
            facts.resolved = _db.resolved_conninfo(conn)
            facts.name = _db.describe(facts.resolved)
            row = conn.execute(queries["database_facts"]).fetchone()
            assert row is not None
            facts.version_num, facts.wal_level = int(row[0]), str(row[1])
            facts.retry_interval_ms = int(row[3] or 5000)
            facts.schema_version = schema.schema_version(conn)
            facts.role = policy.read_role(conn)
            if facts.schema_version:
                facts.triggers = policy.trigger_report(conn, facts.role)
            facts.subscriptions = _subscription_facts(conn)
            retry, now = facts.retry_interval_ms, datetime.now(UTC)
            if watch and any(s.suspect(retry, now) for s in facts.subscriptions):
                facts.subscriptions = _watch(conn, facts.subscriptions, retry)
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


def _subscription_facts(conn: _db.Connection) -> list[SubscriptionFacts]:
    facts = []
    for row in conn.execute(queries["subscription_facts"]):
        name, enabled, slot, pubs, pid, last, apply_e, sync_e, tables, disable_on_error = row[:10]
        sub = SubscriptionFacts(
            name, enabled, slot, tuple(pubs or ()), pid, last, int(apply_e), int(sync_e),
            dict(tables), bool(disable_on_error), row[10],
        )  # fmt: skip
        facts.append(sub)
    return facts


def _watch(
    conn: _db.Connection, first: list[SubscriptionFacts], retry_ms: int
) -> list[SubscriptionFacts]:
    """Look again at subscriptions without a worker until each has one (without new errors) or
    the launcher's retry interval has passed, so a restart in progress is not called broken."""
    start = time.monotonic()
    deadline = start + retry_ms / 1000 + 1.5
    suspects = {s.name: s.apply_errors for s in first if s.suspect(retry_ms, datetime.now(UTC))}
    while True:
        time.sleep(0.25)
        latest = _subscription_facts(conn)
        now = datetime.now(UTC)
        healed = all(  # a worker that has lived a while with no new error
            s.worker_pid is not None
            and s.apply_errors == suspects[s.name]
            and s.worker_started is not None
            and (now - s.worker_started).total_seconds() >= HEALED_AFTER
            for s in latest
            if s.name in suspects
        )
        if healed or time.monotonic() > deadline:
            break
    watched = time.monotonic() - start
    return [
        dataclasses.replace(s, apply_errors_first=suspects[s.name], watched=watched)
        if s.name in suspects
        else s
        for s in latest
    ]


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
    if facts.rows is not None and facts.subscriptions:
        checks.append(judge_rows(db, facts.subscriptions[0].name, facts.rows))
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
            " backwards): the apply worker queues an embedding of every arriving message here,"
            " which the source computes already (before schema 5 the source's row then"
            " collided with it and stopped the subscription); it must be ORIGIN"
        )
    elif t.trigger == GUARD_TRIGGER:
        detail = f"{t.trigger} is {t.mode_name}; on a {role} database it must be {t.expected_name}"
        return Check(db, "trigger_mode", Verdict.DEGRADED, detail, fix, "policy", t.trigger)
    else:
        detail = f"{t.trigger} is {t.mode_name}; on a {role} database it must be {t.expected_name}"
    return Check(db, "trigger_mode", Verdict.BROKEN, detail, fix, "policy", t.trigger)


def _judge_subscription(db: str, sub: SubscriptionFacts) -> list[Check]:
    name = sub.name
    switch = [
        Check(
            db,
            "disable_on_error",
            Verdict.DEGRADED,
            f"subscription {name} has disable_on_error on: any error, a source restart"
            " included, stops it until someone enables it",
            "agentchat doctor --fix (or agentchat upgrade) turns it off",
            "subscription",
            name,
        )
    ] if sub.disable_on_error else []  # fmt: skip
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
            ),
            *switch,
        ]
    checks = [
        Check(db, "subscription_enabled", Verdict.OK, f"subscription {name} enabled", subject=name),
        *switch,
    ]
    if sub.crash_looping:
        checks.append(
            Check(
                db,
                "apply_worker",
                Verdict.BROKEN,
                f"subscription {name}'s apply worker is crash-looping: apply_error_count rose"
                f" from {sub.apply_errors_first} to {sub.apply_errors} in {sub.watched:.0f} s"
                " while status watched; a change this replica cannot apply (a conflicting"
                " row) blocks every later one",
                "agentchat doctor names the conflicting row and its repair (this server's log"
                " has the error)",
                subject=name,
            )
        )
    elif sub.worker_pid is None:
        how_long = f" for {sub.watched:.0f} s" if sub.watched else ""
        checks.append(
            Check(
                db,
                "apply_worker",
                Verdict.BROKEN,
                f"subscription {name} has had no running apply worker{how_long} (apply errors:"
                f" {sub.apply_errors}): nothing is applied; the source may be down or refuse"
                " the connection, or a change cannot be applied",
                "agentchat doctor checks the source, the subscription's password and"
                " conflicting rows (this server's log has the error)",
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
    if slot.active and slot.application_name:
        state += f" (walsender of {slot.application_name} from {slot.client_addr or 'local'})"
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


def judge_topology(
    all_facts: Sequence[DatabaseFacts], topology: Topology | None = None
) -> list[Check]:
    """Checks across databases: schema versions that differ; with the topology file, listed
    replicas that no longer subscribe and the source's replicas that the file does not list."""
    checks = _judge_versions(all_facts)
    if topology is not None:
        checks += judge_listed(all_facts, topology)
    return checks


def judge_listed(all_facts: Sequence[DatabaseFacts], topology: Topology) -> list[Check]:
    """What the topology file says against what the databases say."""
    checks: list[Check] = []
    source = next((f for f in all_facts if topology.source == f.conninfo), None)
    claimed: set[str] = set()
    answered = True
    for facts in all_facts:
        if topology.replica(dsn=facts.conninfo) is None or facts is source:
            continue
        if not facts.reachable or not facts.schema_version:
            answered = False
            continue
        subs = [s for s in facts.subscriptions if s.carries_agent_chat]
        claimed |= {s.slot for s in subs if s.slot}
        if not subs:
            checks.append(
                Check(
                    facts.name,
                    "subscribed",
                    Verdict.BROKEN,
                    f"{topology.path} lists it as a replica, but it has no agent_chat"
                    " subscription: it no longer receives anything",
                    "agentchat replicate add --target ... (--no-copy-data if it keeps its"
                    " history), or agentchat replicate remove --target ... to unlist it",
                )
            )
    if source is None or not source.reachable:
        return checks
    for slot in source.slots:
        if slot.name in claimed or slot.name.startswith("pg_"):  # pg_*: a table sync's
            continue
        where = (
            f" (streaming to subscription {slot.application_name} at"
            f" {slot.client_addr or 'a local socket'})"
            if slot.active and slot.application_name
            else ""
        )
        unsure = "" if answered else " (or of a listed replica that did not answer)"
        checks.append(
            Check(
                source.name,
                "unlisted_replica",
                Verdict.DEGRADED,
                f"slot {slot.name}{where} feeds a replica that {topology.path} does not"
                f" list{unsure}: status, verify, doctor and upgrade do not see it",
                "agentchat replicate add --target <that database> records it (nothing else"
                f" changes), or if it is gone: SELECT pg_drop_replication_slot('{slot.name}');",
                subject=slot.name,
            )
        )
    return checks


def _judge_versions(all_facts: Sequence[DatabaseFacts]) -> list[Check]:
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


def status(
    conninfos: Sequence[str],
    *,
    wal_threshold: int = DEFAULT_WAL_THRESHOLD,
    topology: Topology | None = None,
) -> Report:
    """Gather and judge every database; with the *topology* file, also compare each replica's
    messages with the source's, and what the file lists with what the source feeds."""
    facts = [gather(c) for c in conninfos]
    if topology is not None and topology.source:
        _compare_rows(facts, topology.source)
    checks = [c for f in facts for c in judge(f, wal_threshold=wal_threshold)]
    return Report(facts, checks + judge_topology(facts, topology))


def _compare_rows(all_facts: Sequence[DatabaseFacts], source: str) -> None:
    """Fill in :attr:`DatabaseFacts.rows` of each replica that applies changes right now (a
    replica whose worker is down is judged by that already)."""
    replicas = [
        f
        for f in all_facts
        if f.reachable
        and f.role.is_subscriber
        and f.conninfo != source
        and any(s.carries_agent_chat and s.worker_pid is not None for s in f.subscriptions)
    ]
    if not replicas:
        return
    try:
        with _db.connection(source) as src:
            for facts in replicas:
                with _db.connection(facts.conninfo) as rep:
                    facts.rows = settled_rows(rep, src)
    except (errors.AgentchatError, psycopg.Error):
        return  # an unreachable source is its own check
