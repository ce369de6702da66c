"""Judging facts: pure functions from :mod:`agentchat.ops.facts` to :class:`Check` rows.

Each check has a verdict (ok, degraded, broken), a one-line detail, the fix, and whether
``doctor --fix`` may repair it. ``judge`` looks at one database, ``judge_rows`` at a replica's
messages against its source's, ``judge_topology`` across databases (and the topology file).
No I/O here: the unit tier feeds these made-up facts.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agentchat import policy
from agentchat.ops.facts import (
    DatabaseFacts,
    EmbeddingFacts,
    RowCounts,
    SlotFacts,
    SubscriptionFacts,
)
from agentchat.policy import EMBED_TRIGGER, GUARD_TRIGGER, NOTIFY_TRIGGER, Mode
from agentchat.topology import Topology

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
    if facts.node.is_source and facts.wal_level != "logical":
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
    kind = facts.node.kind.value
    if t.mode is None:
        return Check(
            db,
            "trigger_mode",
            Verdict.BROKEN,
            f"{t.trigger} is missing",
            "agentchat install",
            subject=t.trigger,
        )
    if t.trigger == NOTIFY_TRIGGER and facts.node.is_subscriber:
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
        detail = f"{t.trigger} is {t.mode_name}; on a {kind} database it must be {t.expected_name}"
        return Check(db, "trigger_mode", Verdict.DEGRADED, detail, fix, "policy", t.trigger)
    else:
        detail = f"{t.trigger} is {t.mode_name}; on a {kind} database it must be {t.expected_name}"
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
