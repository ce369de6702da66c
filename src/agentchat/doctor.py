"""``doctor``: the seed's troubleshooting section as code — cause, repair, and safe fixes.

On top of :mod:`agentchat.health`'s checks, doctor looks across each subscription to its source:
does the publication still exist, does the source still take the subscription's password, and
has anybody written rows into the replica's agent_chat (rows the source does not have, or has
with other content: the conflict that makes the apply worker crash-loop)? ``fix`` repairs what
is safe to repair — trigger modes, disable_on_error, a subscription disabled for a cause that
is gone, a subscription whose password no longer works (it gets a role of its own) — and never
deletes a row.
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
from agentchat.replication_role import give_own_role, password_fails, role_of
from agentchat.sql import queries
from agentchat.topology import Topology


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
    topology: Topology | None = None,
) -> health.Report:
    """status's checks plus the cross-database ones; *source* is the topology's source DSN."""
    report = health.status(conninfos, wal_threshold=wal_threshold, topology=topology)
    # doctor counts missing rows itself, with the local rows it finds
    report.checks[:] = [c for c in report.checks if c.check != "missing_rows"]
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
        checks += _password_check(facts, sub)
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


def _password_check(facts: DatabaseFacts, sub: health.SubscriptionFacts) -> list[Check]:
    """Connect with the subscription's own conninfo (superusers can read it): a password the
    source refuses stops the subscription at its next reconnect, or has stopped it."""
    try:
        with _db.connection(facts.conninfo) as conn:
            row = conn.execute(queries["subscription_conninfo"], (sub.name,)).fetchone()
    except (errors.AgentchatError, psycopg.Error):
        return []
    conninfo = str(row[0]) if row and row[0] else None
    if conninfo is None:
        return []
    refused = password_fails(conninfo)
    if refused is None:
        return [Check(facts.name, "password", Verdict.OK, "the source takes the subscription's"
                      " password", subject=sub.name)]  # fmt: skip
    return [
        Check(
            facts.name,
            "password",
            Verdict.BROKEN,
            f"subscription {sub.name} connects as {role_of(conninfo)}, and the source refuses"
            f" its password ({refused}): it stops at its next reconnect, if it has not already",
            "agentchat doctor --fix gives this subscription a role of its own with a new"
            " password (no other subscription is touched)",
            "password",
            sub.name,
        )
    ]


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


def _local_rows(
    db: str, subscription: str, rep: _db.Connection, src: _db.Connection
) -> list[Check]:
    """Rows in the replica's agent_chat the source does not have (or has differently)."""
    local, conflicts = health.foreign_rows(rep, src)
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
                f" source: applying that message fails, and {subscription} retries it for ever,"
                " blocking every later change",
                repair_text(msg_id, sql.Identifier(subscription).as_string(rep)),
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
                " delete them here as a superuser (BEGIN; SET LOCAL session_replication_role ="
                " replica; DELETE ...; COMMIT); the guard refuses other local writes",
                subject=str(len(local)),
            )
        )
    if not local and not conflicts:
        checks.append(Check(db, "local_rows", Verdict.OK, "no local rows", subject=subscription))
    counts = health.settled_rows(rep, src) if not conflicts else health.count_rows(rep, src)
    checks.append(health.judge_rows(db, subscription, counts, len(local)))
    return checks


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


def fix(report: health.Report, conninfos: Sequence[str], *, source: str | None = None) -> list[str]:
    """Repair what is safe: trigger modes (the installer's policy), disable_on_error, a
    subscription whose password the source refuses (*source*: a superuser DSN of the source,
    by default the replica's credentials at the subscription's host), and enable subscriptions
    whose cause is gone. Returns one line per thing done."""
    done: list[str] = []
    by_name = {f.name: f for f in report.databases}
    policy_dbs = {c.database for c in report.checks if c.repair == "policy"}
    for name in sorted(policy_dbs):  # trigger modes only: migrations are `upgrade`'s job
        changes = installer.repair_policy(by_name[name].conninfo)
        done += [f"{name}: {c.trigger} {c.old.name} -> {c.new.name}" for c in changes]
    for name in sorted({c.database for c in report.checks if c.repair == "subscription"}):
        done += [f"{name}: {what}" for what in installer.repair_subscriptions(
            by_name[name].conninfo)]  # fmt: skip
    for check in report.checks:
        if check.repair == "password" and check.subject:
            done.append(_fix_password(by_name[check.database], check.subject, source))
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


def _fix_password(facts: DatabaseFacts, subscription: str, source: str | None) -> str:
    """Give one subscription a role of its own with a new password (named like its slot)."""
    with _db.connection(facts.conninfo) as rep:
        row = rep.execute(queries["subscription"], (subscription,)).fetchone()
        if row is None or not row[3]:
            return f"{facts.name}: subscription {subscription} is gone or its conninfo unreadable"
        _, slot, _, conninfo = row
        reach = source or _db.retarget(facts.conninfo, _source_place(str(conninfo)))
        with _db.connection(reach) as src:
            role = give_own_role(src, rep, subscription, str(conninfo), slot or subscription)
    return (
        f"{facts.name}: subscription {subscription} now connects as its own role {role}"
        " with a new password"
    )


def _source_place(conninfo: str) -> str:
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
