"""doctor's explanations on made-up facts (no database): what it finds looking from a replica's
subscription to its source (``judge_across``), and how it explains a stopped subscription."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentchat.ops.doctor import (
    Repair,
    RowSummary,
    SourceLook,
    explain_stopped,
    judge_across,
    plan_repairs,
    repair_text,
    source_place,
)
from agentchat.ops.facts import RowCounts, SubscriptionFacts
from agentchat.ops.judge import Check, Verdict

SUB = SubscriptionFacts(
    name="agent_chat_from_nova", enabled=True, slot="slot_a",
    publications=("agent_chat_pub",), worker_pid=4242, last_message=None, apply_errors=0,
    sync_errors=0, tables={"agent_chat": "r", "memory_embeddings": "r"},
)  # fmt: skip
CONNINFO = "host=10.0.0.5 port=5432 dbname=nova_memory user=agent_chat_from_nova_owl password=x"
EVEN = RowCounts(upto=30, history_from=0, source=30, replica=30)
NIGHT = RowSummary(26, "owl", datetime(2026, 12, 2, 3, 4, tzinfo=UTC), "Notes from the night")


def look(**changes: object) -> SourceLook:
    base: dict[str, object] = {
        "subscription": SUB, "conninfo": CONNINFO, "missing_publications": (), "counts": EVEN,
    }  # fmt: skip
    base.update(changes)
    return SourceLook(**base)  # type: ignore[arg-type]


def checks_of(found: SourceLook) -> dict[str, Check]:
    return {c.check: c for c in judge_across("owl", found)}


def test_a_healthy_subscription_passes_every_check_in_order() -> None:
    checks = judge_across("owl", look())
    assert [(c.check, c.verdict) for c in checks] == [
        ("password", Verdict.OK),
        ("publication", Verdict.OK),
        ("local_rows", Verdict.OK),
        ("missing_rows", Verdict.OK),
    ]
    assert checks[1].detail == "agent_chat_pub exists"
    assert all(c.subject == SUB.name and c.database == "owl" for c in checks)


@pytest.mark.parametrize(
    ("found", "check", "verdict", "detail", "fix", "repair"),
    [
        # a password the source refuses: --fix gives the subscription a role of its own
        (look(password_refused="password authentication failed for user x"), "password",
         Verdict.BROKEN,
         "subscription agent_chat_from_nova connects as agent_chat_from_nova_owl, and the"
         " source refuses its password (password authentication failed for user x): it stops"
         " at its next reconnect, if it has not already",
         "agentchat doctor --fix gives this subscription a role of its own", "password"),
        # the publication is gone at the source
        (look(missing_publications=("agent_chat_pub",)), "publication", Verdict.BROKEN,
         "subscription agent_chat_from_nova reads publication agent_chat_pub, which no longer"
         " exists on the source", "re-create it on the source as docs/replication.md shows",
         None),
        # rows written on the replica that the source does not have
        (look(local=[1000000, 1000001], counts=RowCounts(30, 0, 30, 32)), "local_rows",
         Verdict.DEGRADED,
         "2 rows in this replica's agent_chat were written here, not at the source (ids"
         " 1000000, 1000001); the source's later rows with those ids will collide",
         "send them again at the source (SELECT send_agent_message(...) there)", None),
        # a conflicting row: the apply worker crash-loops on it
        (look(conflicts=[NIGHT]), "conflict", Verdict.BROKEN,
         "the replica's local row 26 (from owl at 2026-12-02 03:04, 'Notes from the night')"
         " holds the id of another message on the source: applying that message fails, and"
         " agent_chat_from_nova retries it for ever, blocking every later change",
         "save that row, then on the replica as a superuser", None),
        # rows the source has and the replica lost
        (look(counts=RowCounts(30, 0, 30, 27)), "missing_rows", Verdict.BROKEN,
         "3 of the source's messages up to id 30 are not on this replica",
         "agentchat replicate remove, then add it again", None),
        # the source cannot be named: not superuser, no topology file
        (look(conninfo=None, source_known=False, missing_publications=None, counts=None),
         "source_reachable", Verdict.DEGRADED,
         "cannot tell where subscription agent_chat_from_nova reads from",
         "run doctor as a superuser, or from the topology file", None),
        (look(source_error="cannot connect to nova: refused", missing_publications=None,
              counts=None), "source_reachable", Verdict.DEGRADED,
         "the source of agent_chat_from_nova is unreachable: cannot connect to nova: refused",
         "check the source server", None),
    ],
)  # fmt: skip
def test_each_finding_with_its_fix(
    found: SourceLook, check: str, verdict: Verdict, detail: str, fix: str, repair: str | None
) -> None:
    got = checks_of(found)[check]
    assert got.verdict is verdict
    assert detail in got.detail
    assert got.fix is not None and got.fix.startswith(fix)
    assert got.repair == repair


def test_a_conflict_repair_deletes_that_row_past_the_guard_and_names_the_skip() -> None:
    got = checks_of(look(conflicts=[NIGHT]))["conflict"]
    assert got.subject == "26"
    assert got.fix == repair_text(26, '"agent_chat_from_nova"')
    assert (
        "BEGIN; SET LOCAL session_replication_role = replica;"
        " DELETE FROM agent_chat WHERE id = 26; COMMIT;" in (got.fix or "")
    )
    assert 'ALTER SUBSCRIPTION "agent_chat_from_nova" SKIP (lsn = ' in (got.fix or "")


def test_an_odd_subscription_name_is_quoted_in_the_advice() -> None:
    odd = SubscriptionFacts(**{**SUB.__dict__, "name": 'Odd"Sub'})
    got = checks_of(look(subscription=odd, conflicts=[NIGHT]))["conflict"]
    assert 'ALTER SUBSCRIPTION "Odd""Sub" SKIP' in (got.fix or "")


def test_a_conflicting_row_gone_meanwhile_is_still_named_by_id() -> None:
    got = checks_of(look(conflicts=[RowSummary(26)]))["conflict"]
    assert got.detail.startswith("the replica's local row 26 () holds the id")


def test_with_conflicts_and_no_local_rows_there_is_no_local_rows_check() -> None:
    checks = judge_across("owl", look(conflicts=[NIGHT, RowSummary(27)]))
    assert [c.check for c in checks] == [
        "password", "publication", "conflict", "conflict", "missing_rows",
    ]  # fmt: skip


def test_local_rows_list_at_most_ten_ids() -> None:
    ids = list(range(1000, 1012))
    got = checks_of(look(local=ids, counts=RowCounts(30, 0, 30, 42)))["local_rows"]
    assert "12 rows in this replica's agent_chat" in got.detail
    assert "(ids 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009 ...)" in got.detail
    assert got.subject == "12"


def test_local_rows_do_not_hide_missing_ones() -> None:
    # the replica has as many rows as the source, but one is its own: one is missing
    found = look(local=[1000000], counts=RowCounts(30, 0, 30, 30))
    got = checks_of(found)["missing_rows"]
    assert got.verdict is Verdict.BROKEN
    assert got.detail.startswith("1 of the source's messages up to id 30")


def test_an_unreadable_subscription_conninfo_is_not_a_password_finding() -> None:
    checks = judge_across("owl", look(conninfo=None))
    assert "password" not in [c.check for c in checks]
    assert checks[0].check == "publication"  # the topology's source was reached


def test_a_source_lost_midway_keeps_what_was_found() -> None:
    found = look(missing_publications=("agent_chat_pub",), counts=None, source_error="lost")
    assert [(c.check, c.verdict) for c in judge_across("owl", found)] == [
        ("password", Verdict.OK),
        ("publication", Verdict.BROKEN),
        ("source_reachable", Verdict.DEGRADED),
    ]


def stopped(db: str = "owl", subject: str = "agent_chat_from_nova") -> Check:
    return Check(db, "subscription_enabled", Verdict.BROKEN, "subscription is disabled",
                 "agentchat doctor names the cause and the repair", "enable", subject)  # fmt: skip


def conflict(db: str = "owl") -> Check:
    return Check(db, "conflict", Verdict.BROKEN, "row 26", "delete it", subject="26")


@pytest.mark.parametrize(
    ("checks", "detail", "fix", "repair"),
    [
        # no conflict left: the cause is gone, --fix enables it
        ([stopped()], "subscription is disabled; no conflicting row remains",
         "ALTER SUBSCRIPTION agent_chat_from_nova ENABLE (doctor --fix does it)", "enable"),
        # a conflict on the same database: that is the cause, and --fix must not enable it
        ([stopped(), conflict()], "subscription is disabled; the cause: the conflicting row(s)"
         " below", "repair the conflict (below), then ALTER SUBSCRIPTION ... ENABLE", None),
        # a conflict elsewhere is not this subscription's cause
        ([stopped(), conflict("graybeard")], "subscription is disabled; no conflicting row"
         " remains", "ALTER SUBSCRIPTION agent_chat_from_nova ENABLE", "enable"),
    ],
)  # fmt: skip
def test_a_stopped_subscription_is_explained(
    checks: list[Check], detail: str, fix: str, repair: str | None
) -> None:
    [explained] = [c for c in explain_stopped(checks) if c.check == "subscription_enabled"]
    assert explained.detail == detail
    assert explained.fix is not None and explained.fix.startswith(fix)
    assert explained.repair == repair
    assert explained.verdict is Verdict.BROKEN and explained.subject == "agent_chat_from_nova"


def test_explain_stopped_leaves_other_checks_and_their_order_alone() -> None:
    enabled = Check("owl", "subscription_enabled", Verdict.OK, "enabled", subject="s")
    other = Check("owl", "apply_worker", Verdict.BROKEN, "down", "doctor")
    checks = [other, enabled, conflict()]
    assert explain_stopped(checks) == checks


@pytest.mark.parametrize(
    ("conninfo", "place"),
    [
        (CONNINFO, "host=10.0.0.5 port=5432 dbname=nova_memory"),
        ("host=db1 dbname=nova user=r password=secret sslmode=verify-full sslrootcert=/ca.pem",
         "host=db1 dbname=nova sslmode=verify-full sslrootcert=/ca.pem"),
        ("postgresql://r:secret@db1:5433/nova", "host=db1 port=5433 dbname=nova"),
    ],
)  # fmt: skip
def test_source_place_drops_user_and_password(conninfo: str, place: str) -> None:
    assert source_place(conninfo) == place


def repairable(db: str, check: str, repair: str | None, subject: str | None = None) -> Check:
    return Check(db, check, Verdict.BROKEN, "x", "y", repair, subject)


@pytest.mark.parametrize(
    ("checks", "plan"),
    [
        ([], []),
        # not repairable: doctor --fix leaves them to a person
        ([repairable("owl", "conflict", None, "26"), repairable("owl", "apply_worker", None)], []),
        # the policy once per database, however many triggers are wrong, databases by name
        ([repairable("owl", "trigger_mode", "policy", "t1"),
          repairable("graybeard", "trigger_mode", "policy", "t2"),
          repairable("owl", "trigger_mode", "policy", "t3")],
         [Repair("policy", "graybeard"), Repair("policy", "owl")]),
        # trigger modes, then subscription settings, then passwords, then enabling
        ([repairable("owl", "subscription_enabled", "enable", "s1"),
          repairable("owl", "password", "password", "s1"),
          repairable("owl", "disable_on_error", "subscription", "s1"),
          repairable("owl", "trigger_mode", "policy", "t1")],
         [Repair("policy", "owl"), Repair("subscription", "owl"),
          Repair("password", "owl", "s1"), Repair("enable", "owl", "s1")]),
        # per subscription, in check order; one without a subject cannot be named: skipped
        ([repairable("owl", "subscription_enabled", "enable", "s2"),
          repairable("graybeard", "subscription_enabled", "enable", "s1"),
          repairable("owl", "subscription_enabled", "enable", None)],
         [Repair("enable", "owl", "s2"), Repair("enable", "graybeard", "s1")]),
    ],
)  # fmt: skip
def test_what_fix_will_do_and_in_which_order(checks: list[Check], plan: list[Repair]) -> None:
    assert plan_repairs(checks) == plan


def test_a_conflict_leaves_its_stopped_subscription_out_of_the_plan() -> None:
    """explain_stopped takes the repair off a subscription a conflict stops: fix must not
    enable it (it would only fail again)."""
    checks = explain_stopped([stopped(), conflict()])
    assert plan_repairs(checks) == []
    assert plan_repairs(explain_stopped([stopped()])) == [
        Repair("enable", "owl", "agent_chat_from_nova")
    ]
