"""``doctor``: the seed's troubleshooting section as code — cause, repair, and safe fixes.

On top of status' checks, doctor checks agent identity (:mod:`agentchat.ops.identity`:
registered agents without their role, agent roles with more than an agent's rights, senders
the registry does not know) and looks across each subscription to its source: does the
publication still exist, does the source still take the subscription's password, and has anybody
written rows into the replica's agent_chat (rows the source does not have, or has with other
content: the conflict that makes the apply worker crash-loop)? ``fix`` repairs what is safe to
repair — trigger modes, disable_on_error, a subscription disabled for a cause that is gone, a
subscription whose password no longer works (it gets a role of its own) — and never deletes a
row.

Facts, then judgement, as for status: ``look_across`` gathers one subscription's
:class:`SourceLook` (I/O), ``judge_across`` and ``explain_stopped`` are pure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from agentchat import _db, errors
from agentchat import install as installer
from agentchat.ops import identity
from agentchat.ops.facts import (
    DatabaseFacts,
    RowCounts,
    SubscriptionFacts,
    count_rows,
    foreign_rows,
    settled_rows,
)
from agentchat.ops.graph import link_ends
from agentchat.ops.judge import DEFAULT_WAL_THRESHOLD, Check, Verdict, judge_rows
from agentchat.ops.report import Report, status
from agentchat.replication.role import give_own_role, password_fails, role_of
from agentchat.sql import queries
from agentchat.topology import Topology

#: the schema version that brought the registry of agents (agent identity)
IDENTITY_SCHEMA = 7
#: conflicting rows doctor names one by one (each is a check with its repair)
CONFLICTS_SHOWN = 5
#: local row ids doctor lists in its one local_rows check
LOCAL_SHOWN = 10


@dataclass
class Diagnosis:
    report: Report
    fixed: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return self.report.verdict

    def as_dict(self) -> dict[str, object]:
        return {**self.report.as_dict(), "fixed": self.fixed}


@dataclass(frozen=True)
class RowSummary:
    """A conflicting row of the replica, as doctor names it (None fields: it is gone)."""

    id: int
    sender: str | None = None
    created_at: datetime | None = None
    message: str | None = None


@dataclass
class SourceLook:
    """What doctor found looking from one subscription of a replica to its source."""

    subscription: SubscriptionFacts
    #: the subscription's own conninfo (superusers can read it); None: unreadable
    conninfo: str | None = None
    #: the source's reason for refusing that conninfo's password; None: taken (or not tested)
    password_refused: str | None = None
    #: the source could be named at all (the topology's, or the subscription's own conninfo)
    source_known: bool = True
    #: why the source could not be reached (checks gathered before it broke are kept)
    source_error: str | None = None
    #: the publications the subscription reads that the source no longer has; None: not looked
    missing_publications: tuple[str, ...] | None = None
    local: list[int] = field(default_factory=list)
    conflicts: list[RowSummary] = field(default_factory=list)
    counts: RowCounts | None = None


@_db.wrap_exceptions
def diagnose(
    conninfos: Sequence[str],
    *,
    source: str | None = None,
    wal_threshold: int = DEFAULT_WAL_THRESHOLD,
    topology: Topology | None = None,
) -> Report:
    """status's checks plus the cross-database ones; *source* is the topology's source DSN."""
    report = status(conninfos, wal_threshold=wal_threshold, topology=topology)
    # doctor counts missing rows itself, with the local rows it finds
    checks = [c for c in report.checks if c.check != "missing_rows"]
    for facts in report.databases:
        if facts.reachable and facts.node.is_subscriber:
            for sub in facts.subscriptions:
                if link_ends(sub.name) is not None:  # a two-way link: status' graph judges it
                    checks += _judge_password(facts.name, look_password(facts, sub))
                elif sub.carries_agent_chat:
                    checks += judge_across(facts.name, look_across(facts, sub, source))
    for facts in report.databases:
        if facts.reachable and facts.schema_version >= IDENTITY_SCHEMA:
            checks += identity.checks_for(facts.name, facts.conninfo)
    report.checks[:] = explain_stopped(checks)
    return report


# -- facts -------------------------------------------------------------------------------------


def look_across(facts: DatabaseFacts, sub: SubscriptionFacts, source: str | None) -> SourceLook:
    """Gather one subscription's :class:`SourceLook`: its password tested at the source, the
    publications there, the replica's rows compared with the source's."""
    look = SourceLook(sub, conninfo=_subscription_conninfo(facts.conninfo, sub.name))
    if look.conninfo is not None:
        look.password_refused = password_fails(look.conninfo)
    reach = source or look.conninfo
    if reach is None:
        look.source_known = False
        return look
    try:
        with _db.connection(reach) as src, _db.connection(facts.conninfo) as rep:
            found = {r[0] for r in src.execute(queries["existing_publications"],
                                               (list(sub.publications),))}  # fmt: skip
            look.missing_publications = tuple(p for p in sub.publications if p not in found)
            local, conflicts = foreign_rows(rep, src)
            look.local = local
            look.conflicts = [_summary(rep, i) for i in conflicts[:CONFLICTS_SHOWN]]
            look.counts = settled_rows(rep, src) if not conflicts else count_rows(rep, src)
    except errors.AgentchatError as exc:
        look.source_error = exc.message
    return look


def look_password(facts: DatabaseFacts, sub: SubscriptionFacts) -> SourceLook:
    """A two-way link's subscription: only its password, tested where it connects (its rows
    are not a copy of one source's, and the graph judges the link itself)."""
    look = SourceLook(sub, conninfo=_subscription_conninfo(facts.conninfo, sub.name))
    if look.conninfo is not None:
        look.password_refused = password_fails(look.conninfo)
    return look


def _subscription_conninfo(conninfo: str, subscription: str) -> str | None:
    try:
        with _db.connection(conninfo) as conn:
            row = conn.execute(queries["subscription_conninfo"], (subscription,)).fetchone()
    except errors.AgentchatError:  # _db.connection translated any driver error
        return None
    return str(row[0]) if row and row[0] else None


def _summary(rep: _db.Connection, msg_id: int) -> RowSummary:
    row = rep.execute(queries["chat_row_summary"], (msg_id,)).fetchone()
    if row is None:
        return RowSummary(msg_id)
    return RowSummary(msg_id, str(row[1]), row[2], str(row[3]))


# -- judgement ---------------------------------------------------------------------------------


def judge_across(db: str, look: SourceLook) -> list[Check]:
    """The checks of one subscription against its source, from its :class:`SourceLook`."""
    name = look.subscription.name
    checks = _judge_password(db, look)
    if not look.source_known:
        return [*checks, Check(db, "source_reachable", Verdict.DEGRADED,
                               f"cannot tell where subscription {name} reads from",
                               "run doctor as a superuser, or from the topology file",
                               subject=name)]  # fmt: skip
    if look.missing_publications is not None:
        checks.append(_judge_publication(db, look.subscription, look.missing_publications))
    if look.source_error is None and look.counts is not None:
        checks += [_judge_conflict(db, name, row) for row in look.conflicts]
        local = _judge_local(db, name, look.local, look.conflicts)
        checks += [local] if local else []
        checks.append(judge_rows(db, name, look.counts, len(look.local)))
    if look.source_error is not None:
        checks.append(
            Check(
                db,
                "source_reachable",
                Verdict.DEGRADED,
                f"the source of {name} is unreachable: {look.source_error}",
                "check the source server",
                subject=name,
            )
        )
    return checks


def _judge_password(db: str, look: SourceLook) -> list[Check]:
    """A password the source refuses stops the subscription at its next reconnect, or has."""
    name = look.subscription.name
    if look.conninfo is None:
        return []
    if look.password_refused is None:
        return [Check(db, "password", Verdict.OK, "the source takes the subscription's"
                      " password", subject=name)]  # fmt: skip
    return [
        Check(
            db,
            "password",
            Verdict.BROKEN,
            f"subscription {name} connects as {role_of(look.conninfo)}, and the source refuses"
            f" its password ({look.password_refused}): it stops at its next reconnect, if it"
            " has not already",
            "agentchat doctor --fix gives this subscription a role of its own with a new"
            " password (no other subscription is touched)",
            "password",
            name,
        )
    ]


def _judge_publication(db: str, sub: SubscriptionFacts, missing: Sequence[str]) -> Check:
    if not missing:
        return Check(
            db, "publication", Verdict.OK, f"{', '.join(sub.publications)} exists", subject=sub.name
        )
    return Check(
        db,
        "publication",
        Verdict.BROKEN,
        f"subscription {sub.name} reads publication {', '.join(missing)}, which no longer"
        " exists on the source",
        "re-create it on the source as docs/replication.md shows (CREATE PUBLICATION ..."
        " FOR TABLE agent_chat, memory_embeddings ...), or remove the replica and add it"
        " again; messages written meanwhile may never arrive (doctor counts them)",
        subject=sub.name,
    )


def repair_text(msg_id: int, subscription: str) -> str:
    """How to take a conflicting local row out of a replica (advice, not run)."""
    delete = f"DELETE FROM agent_chat WHERE id = {msg_id};"  # noqa: S608 (advice text)
    return (
        "save that row, then on the replica as a superuser (the guard refuses it otherwise):"
        f" BEGIN; SET LOCAL session_replication_role = replica; {delete} COMMIT; the apply"
        " worker retries by itself within seconds (or skip the source's transaction: ALTER"
        f" SUBSCRIPTION {subscription} SKIP (lsn = <the 'finished at' LSN in the replica's"
        " server log>))"
    )


def _judge_conflict(db: str, subscription: str, row: RowSummary) -> Check:
    who = ""
    if row.sender is not None and row.created_at is not None:
        who = f"from {row.sender} at {row.created_at:%Y-%m-%d %H:%M}, {row.message!r}"
    return Check(
        db,
        "conflict",
        Verdict.BROKEN,
        f"the replica's local row {row.id} ({who}) holds the id of another message on the"
        f" source: applying that message fails, and {subscription} retries it for ever,"
        " blocking every later change",
        repair_text(row.id, sql.Identifier(subscription).as_string()),
        subject=str(row.id),
    )


def _judge_local(
    db: str, subscription: str, local: Sequence[int], conflicts: Sequence[RowSummary]
) -> Check | None:
    if not local:
        if conflicts:  # each conflict is a check of its own
            return None
        return Check(db, "local_rows", Verdict.OK, "no local rows", subject=subscription)
    more = " ..." if len(local) > LOCAL_SHOWN else ""
    shown = ", ".join(str(i) for i in local[:LOCAL_SHOWN]) + more
    return Check(
        db,
        "local_rows",
        Verdict.DEGRADED,
        f"{len(local)} rows in this replica's agent_chat were written here, not at the"
        f" source (ids {shown}); the source's later rows with those ids will collide",
        "send them again at the source (SELECT send_agent_message(...) there), then"
        " delete them here as a superuser (BEGIN; SET LOCAL session_replication_role ="
        " replica; DELETE ...; COMMIT); the guard refuses other local writes",
        subject=str(len(local)),
    )


def explain_stopped(checks: Sequence[Check]) -> list[Check]:
    """A stopped subscription: with a conflict found on its database, the conflict is the cause
    (no repair for --fix); with none, the cause is gone and --fix may enable it."""
    blocked = {c.database for c in checks if c.check == "conflict"}
    updated = []
    for check in checks:
        if check.check == "subscription_enabled" and not check.ok:
            if check.database in blocked:
                check = Check(
                    check.database,
                    check.check,
                    check.verdict,
                    check.detail + "; the cause: the conflicting row(s) below",
                    "repair the conflict (below), then ALTER SUBSCRIPTION ... ENABLE",
                    None,
                    check.subject,
                )
            else:
                check = Check(
                    check.database,
                    check.check,
                    check.verdict,
                    check.detail + "; no conflicting row remains",
                    f"ALTER SUBSCRIPTION {check.subject} ENABLE (doctor --fix does it)",
                    "enable",
                    check.subject,
                )
        updated.append(check)
    return updated


# -- repairs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repair:
    """One thing ``doctor --fix`` will do: *kind* is a check's ``repair`` (``policy``,
    ``subscription``, ``password``, ``enable``), on *database*, for *subject* (a subscription;
    None for the database-wide ones)."""

    kind: str
    database: str
    subject: str | None = None


#: the order repairs run in: trigger modes, then subscription settings (disable_on_error, which
#: also enables), then passwords, then enabling what is still stopped
REPAIR_ORDER = ("policy", "subscription", "password", "enable")


def plan_repairs(checks: Sequence[Check]) -> list[Repair]:
    """What ``fix`` does for these checks, in order: the policy and the subscription settings
    once per database (sorted by name), a password and an enable per subscription (in check
    order). Checks that are not repairable are left alone."""
    plan: list[Repair] = []
    for kind in REPAIR_ORDER[:2]:
        plan += [
            Repair(kind, db) for db in sorted({c.database for c in checks if c.repair == kind})
        ]
    for kind in REPAIR_ORDER[2:]:
        plan += [Repair(kind, c.database, c.subject) for c in checks
                 if c.repair == kind and c.subject]  # fmt: skip
    return plan


@_db.wrap_exceptions
def fix(report: Report, conninfos: Sequence[str], *, source: str | None = None) -> list[str]:
    """Repair what is safe (:func:`plan_repairs`): trigger modes (the installer's policy; no
    migration, that is `upgrade`'s job), disable_on_error, a subscription whose password the
    source refuses (*source*: a superuser DSN of the source, by default the replica's
    credentials at the subscription's host), and enable subscriptions whose cause is gone.
    Returns one line per thing done."""
    done: list[str] = []
    by_name = {f.name: f for f in report.databases}
    for repair in plan_repairs(report.checks):
        name, facts = repair.database, by_name[repair.database]
        if repair.kind == "policy":
            changes = installer.repair_policy(facts.conninfo)
            done += [f"{name}: {c.trigger} {c.old.name} -> {c.new.name}" for c in changes]
        elif repair.kind == "subscription":
            done += [f"{name}: {what}" for what in installer.repair_subscriptions(facts.conninfo)]
        elif repair.kind == "password" and repair.subject:
            done.append(_fix_password(facts, repair.subject, source))
        elif repair.kind == "enable" and repair.subject:
            done.append(f"{name}: {_enable(facts.conninfo, repair.subject)}")
    return done


def _enable(conninfo: str, subscription: str) -> str:
    with _db.connection(conninfo) as conn:
        name = sql.Identifier(subscription)
        conn.execute(queries.compose("enable_subscription", subscription=name))
        stayed = _stays_enabled(conn, subscription)
    state = (
        "its apply worker is running"
        if stayed
        else "but it stopped again: the cause is still there, see the server log"
    )
    return f"enabled subscription {subscription} ({state})"


def _fix_password(facts: DatabaseFacts, subscription: str, source: str | None) -> str:
    """Give one subscription a role of its own with a new password (named like its slot)."""
    with _db.connection(facts.conninfo) as rep:
        row = rep.execute(queries["subscription"], (subscription,)).fetchone()
        if row is None or not row[3]:
            return f"{facts.name}: subscription {subscription} is gone or its conninfo unreadable"
        _, slot, _, conninfo = row
        reach = source or _db.retarget(facts.conninfo, source_place(str(conninfo)))
        with _db.connection(reach) as src:
            role = give_own_role(src, rep, subscription, str(conninfo), slot or subscription)
    return (
        f"{facts.name}: subscription {subscription} now connects as its own role {role}"
        " with a new password"
    )


def source_place(conninfo: str) -> str:
    """A subscription conninfo's host, port and database, without its user and password."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    keep = ("host", "hostaddr", "port", "dbname", "sslmode", "sslrootcert")
    return psycopg.conninfo.make_conninfo(
        "", **{k: params[k] for k in keep if params.get(k) is not None}
    )


def _stays_enabled(conn: _db.Connection, subscription: str, settle: float = 3.0) -> bool:
    """Whether, after *settle* seconds (at least one retry interval), the subscription is
    enabled, its apply worker runs and its apply_error_count did not rise."""
    row = conn.execute(queries["database_facts"]).fetchone()
    retry_ms = int(row[3]) if row and row[3] else 5000
    deadline = time.monotonic() + max(settle, retry_ms / 1000 + 1.5)
    first: int | None = None
    while True:
        rows = conn.execute(queries["subscription_facts"]).fetchall()
        row = next((r for r in rows if r[0] == subscription), None)
        if row is None or not row[1]:
            return False
        first = row[6] if first is None else first
        if row[6] > first:
            return False
        if time.monotonic() > deadline:
            return row[4] is not None
        time.sleep(0.1)
