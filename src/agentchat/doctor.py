"""``doctor``: the seed's troubleshooting section as code — cause, repair, and safe fixes.

On top of :mod:`agentchat.health`'s checks, doctor looks across each subscription to its source:
does the publication still exist, and has anybody written rows into the replica's agent_chat
(rows the source does not have, or has with other content: the duplicate key that stops the
apply worker)? ``fix`` repairs what is safe to repair — trigger modes, and a subscription
disabled for a cause that is gone — and never deletes a row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from agentchat import _db, errors, health
from agentchat import install as installer
from agentchat.health import Check, DatabaseFacts, Verdict
from agentchat.sql import queries

BATCH = 5000


@dataclass
class Diagnosis:
    report: health.Report
    fixed: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return self.report.verdict

    def as_dict(self) -> dict[str, object]:
        return {**self.report.as_dict(), "fixed": self.fixed}


def diagnose(
    conninfos: Sequence[str],
    *,
    source: str | None = None,
    wal_threshold: int = health.DEFAULT_WAL_THRESHOLD,
) -> health.Report:
    """status's checks plus the cross-database ones; *source* is the topology's source DSN."""
    report = health.status(conninfos, wal_threshold=wal_threshold)
    for facts in report.databases:
        if facts.reachable and facts.role.is_subscriber:
            report.checks += _cross_checks(facts, source)
    _explain_stopped(report)
    return report


def _source_for(facts: DatabaseFacts, subscription: str, source: str | None) -> str | None:
    """How to reach a subscription's source: the topology's DSN, else its own conninfo."""
    if source:
        return source
    try:
        with _db.connection(facts.conninfo) as conn:
            row = conn.execute(queries["subscription_conninfo"], (subscription,)).fetchone()
    except (errors.AgentchatError, psycopg.Error):
        return None
    return str(row[0]) if row and row[0] else None


def _cross_checks(facts: DatabaseFacts, source: str | None) -> list[Check]:
    checks: list[Check] = []
    for sub in facts.subscriptions:
        if not sub.carries_agent_chat:
            continue
        reach = _source_for(facts, sub.name, source)
        if reach is None:
            checks.append(
                Check(
                    facts.name,
                    "source_reachable",
                    Verdict.DEGRADED,
                    f"cannot tell where subscription {sub.name} reads from",
                    "run doctor as a superuser, or from the topology file",
                    subject=sub.name,
                )
            )
            continue
        try:
            with _db.connection(reach) as src, _db.connection(facts.conninfo) as rep:
                checks += _publication_check(facts.name, sub, src)
                checks += _local_rows(facts.name, sub.name, rep, src)
        except errors.AgentchatError as exc:
            checks.append(
                Check(
                    facts.name,
                    "source_reachable",
                    Verdict.DEGRADED,
                    f"the source of {sub.name} is unreachable: {exc.message}",
                    "check the source server",
                    subject=sub.name,
                )
            )
    return checks


def _publication_check(db: str, sub: health.SubscriptionFacts, src: _db.Connection) -> list[Check]:
    found = {r[0] for r in src.execute(queries["existing_publications"], (list(sub.publications),))}
    missing = [p for p in sub.publications if p not in found]
    if not missing:
        return [
            Check(
                db,
                "publication",
                Verdict.OK,
                f"{', '.join(sub.publications)} exists",
                subject=sub.name,
            )
        ]
    return [
        Check(
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
    ]


def _local_rows(
    db: str, subscription: str, rep: _db.Connection, src: _db.Connection
) -> list[Check]:
    """Rows in the replica's agent_chat the source does not have (or has differently)."""
    local: list[int] = []
    conflicts: list[int] = []
    last = 0
    while True:
        batch = rep.execute(queries["chat_fingerprints"], (last, BATCH)).fetchall()
        if not batch:
            break
        ids = [i for i, _ in batch]
        theirs: dict[int, str] = dict(src.execute(queries["chat_fingerprints_of"], (ids,)))
        for msg_id, fingerprint in batch:
            if msg_id not in theirs:
                local.append(msg_id)
            elif theirs[msg_id] != fingerprint:
                conflicts.append(msg_id)
        last = batch[-1][0]
    checks = []
    for msg_id in conflicts[:5]:
        row = rep.execute(queries["chat_row_summary"], (msg_id,)).fetchone()
        who = f"from {row[1]} at {row[2]:%Y-%m-%d %H:%M}, {row[3]!r}" if row else ""
        checks.append(
            Check(
                db,
                "conflict",
                Verdict.BROKEN,
                f"the replica's local row {msg_id} ({who}) holds the id of another message on the"
                f" source: applying it fails with a duplicate key and {subscription} stops",
                f"save that row, then on the replica: DELETE FROM agent_chat WHERE id = {msg_id};"  # noqa: S608 (advice text)
                f" ALTER SUBSCRIPTION {sql.Identifier(subscription).as_string(rep)} ENABLE;"
                " (or skip the source's transaction: ALTER SUBSCRIPTION ... SKIP (lsn = <the"
                " 'finished at' LSN in the replica's server log>))",
                subject=str(msg_id),
            )
        )
    if local:
        shown = ", ".join(str(i) for i in local[:10]) + (" ..." if len(local) > 10 else "")
        checks.append(
            Check(
                db,
                "local_rows",
                Verdict.DEGRADED,
                f"{len(local)} rows in this replica's agent_chat were written here, not at the"
                f" source (ids {shown}); the source's later rows with those ids will collide",
                "send them again at the source (SELECT send_agent_message(...) there), then"
                " delete them here; agentchat install sets the guard that refuses such writes",
                subject=str(len(local)),
            )
        )
    if not local and not conflicts:
        checks.append(Check(db, "local_rows", Verdict.OK, "no local rows", subject=subscription))
    checks.append(_missing_rows(db, subscription, rep, src, last, len(local)))
    return checks


def _missing_rows(
    db: str, subscription: str, rep: _db.Connection, src: _db.Connection, upto: int, local: int
) -> Check:
    """Messages of the source, up to the newest id the replica has, that it does not have."""
    [(theirs,)] = src.execute(queries["chat_count_upto"], (upto,)).fetchall()
    [(ours,)] = rep.execute(queries["chat_count_upto"], (upto,)).fetchall()
    missing = int(theirs) - (int(ours) - local)
    if missing <= 0:
        return Check(db, "missing_rows", Verdict.OK, "no message missing", subject=subscription)
    return Check(
        db,
        "missing_rows",
        Verdict.DEGRADED,
        f"{missing} of the source's messages up to id {upto} never reached this replica (written"
        " while its subscription could not apply them, or skipped)",
        "they do not come back by themselves: remove the replica, empty its agent_chat, and add"
        " it again to copy the history",
        subject=subscription,
    )


def _explain_stopped(report: health.Report) -> None:
    """A stopped subscription with no conflict found: the cause is gone, --fix may enable it."""
    blocked = {c.database for c in report.checks if c.check == "conflict"}
    updated = []
    for check in report.checks:
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
    report.checks[:] = updated


def fix(report: health.Report, conninfos: Sequence[str]) -> list[str]:
    """Repair what is safe: trigger modes (the installer's policy), and enable subscriptions
    whose cause is gone. Returns one line per thing done."""
    done: list[str] = []
    by_name = {f.name: f for f in report.databases}
    policy_dbs = {c.database for c in report.checks if c.repair == "policy"}
    for name in sorted(policy_dbs):  # trigger modes only: migrations are `upgrade`'s job
        changes = installer.repair_policy(by_name[name].conninfo)
        done += [f"{name}: {c.trigger} {c.old.name} -> {c.new.name}" for c in changes]
    for check in report.checks:
        if check.repair == "enable" and check.subject:
            conninfo = by_name[check.database].conninfo
            with _db.connection(conninfo) as conn:
                conn.execute(
                    sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(check.subject))
                )
                stayed = _stays_enabled(conn, check.subject)
            state = (
                "its apply worker is running"
                if stayed
                else "but it stopped again: the cause is still there, see the server log"
            )
            done.append(f"{check.database}: enabled subscription {check.subject} ({state})")
    return done


def _stays_enabled(conn: _db.Connection, subscription: str, settle: float = 3.0) -> bool:
    """Whether the subscription runs and is still enabled after *settle* seconds (an apply
    error under disable_on_error would have disabled it again by then)."""
    deadline = time.monotonic() + settle
    seen_worker = False
    while True:
        rows = conn.execute(queries["subscription_facts"]).fetchall()
        row = next((r for r in rows if r[0] == subscription), None)
        if row is None or not row[1]:
            return False
        seen_worker = seen_worker or row[4] is not None
        if time.monotonic() > deadline:
            return seen_worker
        time.sleep(0.1)
