"""status' judges on made-up facts (no database): one database (``judge``), across databases
(``judge_topology``), and the report (verdict, exit code, ``as_dict``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from agentchat import policy
from agentchat.embeddings.mode import EmbeddingMode
from agentchat.ops.facts import (
    DatabaseFacts,
    EmbeddingFacts,
    RowCounts,
    SlotFacts,
    SubscriptionFacts,
)
from agentchat.ops.judge import (
    DEFAULT_WAL_THRESHOLD,
    Check,
    Verdict,
    judge,
    judge_rows,
    judge_topology,
)
from agentchat.ops.report import Report
from agentchat.policy import (
    EMBED_TRIGGER,
    FORGET_PROCESSED_TRIGGER,
    GUARD_TRIGGER,
    NOTIFY_TRIGGER,
    Mode,
)
from agentchat.topology import Replica, Topology

SOURCE = policy.NodeFacts(is_source=True, is_subscriber=False)
SUBSCRIBER = policy.NodeFacts(is_source=False, is_subscriber=True)
PLAIN = policy.NodeFacts(is_source=False, is_subscriber=False)


def sub(**changes: object) -> SubscriptionFacts:
    base: dict[str, object] = {
        "name": "agent_chat_from_nova", "enabled": True, "slot": "slot_a",
        "publications": ("agent_chat_pub",), "worker_pid": 4242, "last_message": None,
        "apply_errors": 0, "sync_errors": 0,
        "tables": {"agent_chat": "r", "memory_embeddings": "r"},
    }  # fmt: skip
    base.update(changes)
    return SubscriptionFacts(**base)  # type: ignore[arg-type]


def trigger(name: str, mode: Mode | None, expected: Mode | None) -> policy.TriggerStatus:
    return policy.TriggerStatus("public", "agent_chat", name, mode, expected)


def db(**changes: object) -> DatabaseFacts:
    facts = DatabaseFacts(
        conninfo="dbname=owl", name="owl", version_num=180001, wal_level="logical",
        schema_version=5, node=PLAIN,
    )  # fmt: skip
    return replace(facts, **changes)  # type: ignore[arg-type]


def only(checks: list[Check], name: str) -> Check:
    [check] = [c for c in checks if c.check == name]
    return check


# -- one database ------------------------------------------------------------------------------


def test_an_unreachable_database_is_one_broken_check_with_its_error() -> None:
    checks = judge(db(reachable=False, error="cannot connect to owl: refused"))
    assert [(c.check, c.verdict) for c in checks] == [("reachable", Verdict.BROKEN)]
    assert checks[0].detail == "cannot connect to owl: refused"
    assert checks[0].fix == "check the server, the DSN and the credentials"
    assert checks[0].repair is None


def test_an_unreachable_database_without_an_error_says_unreachable() -> None:
    [check] = judge(db(reachable=False))
    assert check.detail == "unreachable"


def test_a_database_without_the_schema_stops_after_installed() -> None:
    checks = judge(db(schema_version=0, triggers=[trigger(NOTIFY_TRIGGER, None, Mode.ALWAYS)]))
    assert [(c.check, c.verdict) for c in checks] == [
        ("reachable", Verdict.OK),
        ("installed", Verdict.BROKEN),
    ]
    assert checks[0].detail == "PostgreSQL 18"
    assert checks[1].detail == "agent_chat is not installed here"
    assert checks[1].fix == "agentchat install --dsn ..."


def test_a_healthy_plain_database() -> None:
    checks = judge(db())
    assert [(c.check, c.verdict, c.detail) for c in checks] == [
        ("reachable", Verdict.OK, "PostgreSQL 18"),
        ("installed", Verdict.OK, "schema version 5"),
    ]
    assert checks[1].subject == "5"


@pytest.mark.parametrize(
    ("node", "wal_level", "verdict"),
    [
        (SOURCE, "replica", Verdict.BROKEN),
        (SOURCE, "minimal", Verdict.BROKEN),
        (SOURCE, "logical", None),  # no check at all
        (PLAIN, "replica", None),  # only a source needs logical
        (SUBSCRIBER, "replica", None),
    ],
)
def test_wal_level(node: policy.NodeFacts, wal_level: str, verdict: Verdict | None) -> None:
    checks = [c for c in judge(db(node=node, wal_level=wal_level)) if c.check == "wal_level"]
    if verdict is None:
        assert checks == []
        return
    [check] = checks
    assert check.verdict is verdict
    assert check.detail == f"wal_level is {wal_level}: this source cannot replicate"
    assert check.fix == "ALTER SYSTEM SET wal_level = logical; then restart the server"


@pytest.mark.parametrize(
    ("node", "status", "verdict", "detail", "fix", "repair"),
    [
        (SUBSCRIBER, trigger(NOTIFY_TRIGGER, Mode.ALWAYS, Mode.ALWAYS), Verdict.OK,
         f"{NOTIFY_TRIGGER} ALWAYS", None, None),
        # a policy that says nothing about a trigger: whatever it is, it is ok
        (PLAIN, trigger("trg_other", Mode.DISABLED, None), Verdict.OK,
         "trg_other DISABLED", None, None),
        (SUBSCRIBER, trigger(NOTIFY_TRIGGER, None, Mode.ALWAYS), Verdict.BROKEN,
         f"{NOTIFY_TRIGGER} is missing", "agentchat install", None),
        # the deaf replica: ORIGIN (what a plain ENABLE TRIGGER sets) on a subscriber
        (SUBSCRIBER, trigger(NOTIFY_TRIGGER, Mode.ORIGIN, Mode.ALWAYS), Verdict.BROKEN,
         "on a subscriber: agents here hear no replicated message (it must be ALWAYS)",
         "agentchat doctor --fix (or agentchat install)", "policy"),
        (SUBSCRIBER, trigger(NOTIFY_TRIGGER, Mode.DISABLED, Mode.ALWAYS), Verdict.BROKEN,
         f"{NOTIFY_TRIGGER} is DISABLED on a subscriber", "agentchat doctor --fix", "policy"),
        # on a source the same wrong mode is the generic wording
        (SOURCE, trigger(NOTIFY_TRIGGER, Mode.ORIGIN, Mode.ALWAYS), Verdict.BROKEN,
         f"{NOTIFY_TRIGGER} is ORIGIN; on a source database it must be ALWAYS",
         "agentchat doctor --fix", "policy"),
        # the seed's advice, backwards
        (SUBSCRIBER, trigger(EMBED_TRIGGER, Mode.REPLICA, Mode.ORIGIN), Verdict.BROKEN,
         "is REPLICA: it fires only for replicated rows (the seed's advice, backwards)",
         "agentchat doctor --fix", "policy"),
        (PLAIN, trigger(EMBED_TRIGGER, Mode.DISABLED, Mode.ORIGIN), Verdict.BROKEN,
         f"{EMBED_TRIGGER} is DISABLED; on a plain database it must be ORIGIN",
         "agentchat doctor --fix", "policy"),
        # the guard alone is only degraded
        (SUBSCRIBER, trigger(GUARD_TRIGGER, Mode.DISABLED, Mode.ORIGIN), Verdict.DEGRADED,
         f"{GUARD_TRIGGER} is DISABLED; on a subscriber database it must be ORIGIN",
         "agentchat doctor --fix", "policy"),
        (SUBSCRIBER, trigger(FORGET_PROCESSED_TRIGGER, Mode.ORIGIN, Mode.ALWAYS),
         Verdict.BROKEN, "on a subscriber database it must be ALWAYS",
         "agentchat doctor --fix", "policy"),
    ],
)  # fmt: skip
def test_trigger_modes(
    node: policy.NodeFacts,
    status: policy.TriggerStatus,
    verdict: Verdict,
    detail: str,
    fix: str | None,
    repair: str | None,
) -> None:
    check = only(judge(db(node=node, triggers=[status])), "trigger_mode")
    assert check.verdict is verdict
    assert detail in check.detail
    assert check.subject == status.trigger
    assert check.repair == repair
    if fix is None:
        assert check.fix is None
    else:
        assert check.fix is not None and check.fix.startswith(fix)


@pytest.mark.parametrize(
    ("slot", "threshold", "verdict", "detail"),
    [
        (SlotFacts("s1", True, "reserved", 4200, 0, "agent_chat_from_nova", "10.0.0.9"),
         DEFAULT_WAL_THRESHOLD, Verdict.OK,
         "slot s1 active (walsender of agent_chat_from_nova from 10.0.0.9), wal_status reserved,"
         " retains 4.1 kB, lag 0 B"),
        (SlotFacts("s1", True, "reserved", 100, 10, "agent_chat_from_nova", None),
         DEFAULT_WAL_THRESHOLD, Verdict.OK, "(walsender of agent_chat_from_nova from local)"),
        # active: never reported for what it retains
        (SlotFacts("s1", True, "extended", 5 * 1024**3, 0), 1024, Verdict.OK,
         "slot s1 active, wal_status extended, retains 5.0 GB"),
        (SlotFacts("s1", False, "reserved", 2048, None), 4096, Verdict.OK,
         "slot s1 inactive, wal_status reserved, retains 2.0 kB, lag 0 B"),
        (SlotFacts("s1", False, "reserved", 3 * 1024**2, None), 1024, Verdict.DEGRADED,
         "slot s1 is inactive and retains 3.0 MB of WAL"),
        (SlotFacts("s1", False, "lost", None, None), DEFAULT_WAL_THRESHOLD, Verdict.BROKEN,
         "slot s1 lost the WAL its replica needs: that replica must be re-added"),
        (SlotFacts("s1", True, "lost", 0, 0), DEFAULT_WAL_THRESHOLD, Verdict.BROKEN,
         "lost the WAL"),
    ],
)  # fmt: skip
def test_slots(slot: SlotFacts, threshold: int, verdict: Verdict, detail: str) -> None:
    check = only(judge(db(node=SOURCE, slots=[slot]), wal_threshold=threshold), "slot")
    assert check.verdict is verdict
    assert detail in check.detail
    assert check.subject == "s1"
    assert check.repair is None
    if verdict is Verdict.OK:
        assert check.fix is None
    else:
        assert check.fix == "if its replica is gone: SELECT pg_drop_replication_slot('s1');"


def test_slot_sizes_below_a_kilobyte_are_whole_bytes() -> None:
    slot = SlotFacts("s1", False, "reserved", 512, 3)
    check = only(judge(db(node=SOURCE, slots=[slot])), "slot")
    assert check.detail.endswith("retains 512 B, lag 3 B")


@pytest.mark.parametrize(
    ("facts", "verdict", "detail", "fix"),
    [
        (EmbeddingFacts(EmbeddingMode.LOCAL, 10, 2, 0, ("all-MiniLM-L6-v2",)), Verdict.OK,
         "local (embedded here, where messages are written); 10 embedded, 2 queued,"
         " model all-MiniLM-L6-v2", None),
        (EmbeddingFacts(EmbeddingMode.REPLICATED, 0, 1, 0, ()), Verdict.OK,
         "replicated (embeddings arrive by replication from the source); 0 embedded, 1 queued",
         None),
        (EmbeddingFacts(EmbeddingMode.EMBED_REPLICATED, 3, 4, 2, ("a", "b")),
         Verdict.DEGRADED, "3 embedded, 4 queued, model a, b; 2 failing (retried with backoff)",
         "fix the embedder, the worker retries them"),
    ],
)  # fmt: skip
def test_embeddings(facts: EmbeddingFacts, verdict: Verdict, detail: str, fix: str | None) -> None:
    check = only(judge(db(embeddings=facts)), "embeddings")
    assert check.verdict is verdict
    assert detail in check.detail
    assert check.subject == facts.mode.value
    if fix is None:
        assert check.fix is None
    else:
        assert check.fix is not None and check.fix.endswith(fix)
        assert "WHERE attempts > 0" in check.fix


def test_no_embeddings_check_below_schema_4() -> None:
    assert [c for c in judge(db(schema_version=3)) if c.check == "embeddings"] == []


def test_a_subscriber_is_judged_per_subscription_in_order() -> None:
    checks = judge(db(node=SUBSCRIBER, subscriptions=[sub(), sub(name="other", enabled=False)]))
    assert [(c.check, c.subject) for c in checks[2:]] == [
        ("subscription_enabled", "agent_chat_from_nova"),
        ("apply_worker", "agent_chat_from_nova"),
        ("sync_state", "agent_chat_from_nova"),
        ("subscription_enabled", "other"),  # a disabled one: nothing more to say about it
    ]


def test_the_rows_check_comes_last_and_names_the_first_subscription() -> None:
    counts = RowCounts(upto=20, history_from=0, source=20, replica=18)
    checks = judge(db(node=SUBSCRIBER, subscriptions=[sub()], rows=counts))
    assert checks[-1].check == "missing_rows" and checks[-1].subject == "agent_chat_from_nova"
    assert checks[-1].verdict is Verdict.BROKEN


@pytest.mark.parametrize(
    ("facts", "detail", "fix"),
    [
        (sub(enabled=False, apply_errors=2, sync_errors=1),
         "subscription agent_chat_from_nova is disabled (apply errors: 2, sync errors: 1):"
         " nothing arrives", "agentchat doctor names the cause and the repair"),
        (sub(worker_pid=None, apply_errors=1, apply_errors_first=1, watched=6.4),
         "has had no running apply worker for 6 s (apply errors: 1)",
         "agentchat doctor checks the source, the subscription's password and conflicting rows"),
        (sub(worker_pid=None), "has had no running apply worker (apply errors: 0)",
         "agentchat doctor checks the source"),
        (sub(tables={"agent_chat": "d", "memory_embeddings": "i"}),
         "0/2 tables ready (agent_chat d, memory_embeddings i)", "wait for the initial sync"),
        (sub(disable_on_error=True),
         "has disable_on_error on: any error, a source restart included, stops it",
         "agentchat doctor --fix (or agentchat upgrade) turns it off"),
    ],
)  # fmt: skip
def test_subscription_problems_name_their_fix(
    facts: SubscriptionFacts, detail: str, fix: str
) -> None:
    [check] = [c for c in judge(db(node=SUBSCRIBER, subscriptions=[facts])) if not c.ok]
    assert detail in check.detail
    assert check.fix is not None and check.fix.startswith(fix)


@pytest.mark.parametrize(
    ("facts", "check", "repair"),
    [
        (sub(enabled=False), "subscription_enabled", "enable"),
        (sub(disable_on_error=True), "disable_on_error", "subscription"),
        (sub(worker_pid=None), "apply_worker", None),  # doctor must find the cause first
        (sub(worker_pid=None, apply_errors=3, apply_errors_first=1, watched=5), "apply_worker",
         None),
    ],
)  # fmt: skip
def test_what_doctor_fix_may_repair(facts: SubscriptionFacts, check: str, repair: str) -> None:
    assert only(judge(db(node=SUBSCRIBER, subscriptions=[facts])), check).repair == repair


def test_a_working_apply_worker_says_when_it_last_heard() -> None:
    heard = datetime.now(UTC) - timedelta(seconds=30)
    facts = sub(last_message=heard, apply_errors=2, sync_errors=1)
    check = only(judge(db(node=SUBSCRIBER, subscriptions=[facts])), "apply_worker")
    assert check.ok
    assert check.detail.startswith("pid 4242, last message 3")
    assert check.detail.endswith(" s ago, apply errors 2, sync errors 1")


def test_a_last_message_from_the_future_is_not_negative() -> None:
    facts = sub(last_message=datetime.now(UTC) + timedelta(seconds=60))
    check = only(judge(db(node=SUBSCRIBER, subscriptions=[facts])), "apply_worker")
    assert "last message 0.0 s ago" in check.detail


def test_rows_after_history_from_name_it() -> None:
    check = judge_rows("owl", "sub", RowCounts(upto=30, history_from=12, source=18, replica=10))
    assert check.detail.startswith(
        "8 of the source's messages up to id 30 after id 12 are not on this replica"
    )
    assert check.subject == "sub" and check.repair is None


# -- across databases --------------------------------------------------------------------------


def topo(*replicas: str) -> Topology:
    return Topology(
        Path("/etc/agentchat.toml"), "dbname=src", "agent_chat_pub",
        [Replica(f"agent_chat_from_{r}", f"dbname={r}") for r in replicas],
    )  # fmt: skip


def named(name: str, **changes: object) -> DatabaseFacts:
    return db(conninfo=f"dbname={name}", name=name, **changes)


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ({"a": 5, "b": 5}, []),
        ({"a": 4, "b": 5, "c": 3}, [("a", "4"), ("c", "3")]),
        # unreachable (0) and not installed (0) databases do not count
        ({"a": 5, "b": 0}, []),
        ({}, []),
    ],
)
def test_schema_versions(versions: dict[str, int], expected: list[tuple[str, str]]) -> None:
    checks = judge_topology([named(n, schema_version=v) for n, v in versions.items()])
    assert [(c.database, c.subject) for c in checks] == expected
    for check in checks:
        assert check.verdict is Verdict.DEGRADED
        assert check.detail == f"schema version {check.subject}, while others are at 5"
        assert check.fix == "agentchat upgrade (replicas first, then the source)"


def test_an_unreachable_database_is_not_a_version() -> None:
    checks = judge_topology([named("a", schema_version=3, reachable=False), named("b")])
    assert checks == []


def test_without_a_topology_file_slots_and_subscriptions_are_not_compared() -> None:
    source = named("src", node=SOURCE, slots=[SlotFacts("x", False, "reserved", 0, 0)])
    assert judge_topology([source, named("a")]) == []
    assert [c.check for c in judge_topology([source, named("a")], topo("a"))] == [
        "subscribed",
        "unlisted_replica",
    ]


def test_a_listed_replica_that_does_not_answer_makes_unlisted_slots_unsure() -> None:
    source = named("src", node=SOURCE, slots=[SlotFacts("slot_b", False, "reserved", 0, 0)])
    down = named("a", reachable=False)
    [check] = judge_topology([source, down], topo("a"))
    assert check.check == "unlisted_replica" and check.database == "src"
    assert "(or of a listed replica that did not answer)" in check.detail
    assert "/etc/agentchat.toml does not list" in check.detail
    assert check.fix is not None and "pg_drop_replication_slot('slot_b')" in check.fix


def test_an_unreachable_source_says_nothing_of_slots() -> None:
    source = named("src", reachable=False, slots=[SlotFacts("slot_b", False, "r", 0, 0)])
    replica = named("a", node=SUBSCRIBER, subscriptions=[sub(slot="slot_a")])
    assert judge_topology([source, replica], topo("a")) == []


def test_a_listed_replica_whose_subscription_carries_no_agent_chat_is_not_subscribed() -> None:
    other = sub(name="mine", tables={"my_table": "r"})
    [check] = judge_topology([named("src"), named("a", subscriptions=[other])], topo("a"))
    assert (check.check, check.verdict, check.database) == ("subscribed", Verdict.BROKEN, "a")
    assert "lists it as a replica, but it has no agent_chat subscription" in check.detail
    assert check.fix is not None and check.fix.startswith("agentchat replicate add --target")


# -- the report --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "worst"),
    [
        ([], Verdict.OK),
        ([Verdict.OK, Verdict.OK], Verdict.OK),
        ([Verdict.OK, Verdict.DEGRADED], Verdict.DEGRADED),
        ([Verdict.BROKEN, Verdict.DEGRADED, Verdict.OK], Verdict.BROKEN),
    ],
)
def test_the_report_verdict_is_the_worst_check_and_the_exit_code(
    verdicts: list[Verdict], worst: Verdict
) -> None:
    report = Report([], [Check("a", f"c{i}", v, "x") for i, v in enumerate(verdicts)])
    assert report.verdict is worst
    assert int(report.verdict) == {"ok": 0, "degraded": 1, "broken": 2}[worst.name.lower()]


def test_check_as_dict() -> None:
    check = Check("owl", "trigger_mode", Verdict.BROKEN, "bad", "fix it", "policy", "trg")
    assert check.as_dict() == {
        "database": "owl", "check": "trigger_mode", "subject": "trg", "verdict": "broken",
        "detail": "bad", "fix": "fix it", "repairable": True,
    }  # fmt: skip
    assert Check("owl", "x", Verdict.OK, "fine").as_dict()["repairable"] is False


def test_report_as_dict_shape() -> None:
    heard = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    facts = db(
        node=SUBSCRIBER,
        triggers=[trigger(NOTIFY_TRIGGER, Mode.ALWAYS, Mode.ALWAYS)],
        subscriptions=[sub(last_message=heard, apply_errors=3, apply_errors_first=1)],
        slots=[SlotFacts("s1", True, "reserved", 10, 2)],
        embeddings=EmbeddingFacts(EmbeddingMode.REPLICATED, 1, 2, 0, ("m",)),
    )
    data = Report([facts], judge(facts)).as_dict()
    assert list(data) == ["verdict", "databases", "checks"]
    assert data["verdict"] == "broken"  # the crash loop
    databases = cast(list[dict[str, Any]], data["databases"])
    [database] = databases
    assert list(database) == [
        "database", "reachable", "error", "server_version", "wal_level", "schema_version",
        "role", "triggers", "subscriptions", "slots", "embeddings",
    ]  # fmt: skip
    assert database["role"] == "subscriber" and database["server_version"] == 180001
    assert database["triggers"] == [{"trigger": NOTIFY_TRIGGER, "mode": "ALWAYS", "ok": True}]
    assert database["subscriptions"] == [
        {
            "name": "agent_chat_from_nova", "enabled": True, "worker_running": True,
            "slot": "slot_a", "publications": ["agent_chat_pub"],
            "tables": {"agent_chat": "r", "memory_embeddings": "r"},
            "last_message": "2026-12-02T06:00:00+00:00", "apply_error_count": 3,
            "sync_error_count": 0, "disable_on_error": False, "crash_looping": True,
        }
    ]  # fmt: skip
    assert database["slots"] == [
        {"name": "s1", "active": True, "wal_status": "reserved", "retained_bytes": 10,
         "lag_bytes": 2}
    ]  # fmt: skip
    assert database["embeddings"] == {
        "mode": "replicated", "embedded": 1, "queued": 2, "failing": 0, "models": ["m"],
    }  # fmt: skip
    checks = cast(list[dict[str, Any]], data["checks"])
    assert {c["check"] for c in checks} >= {"reachable", "apply_worker"}


def test_an_unreachable_database_as_dict() -> None:
    facts = db(reachable=False, error="refused", schema_version=0)
    data = facts.as_dict()
    assert data["reachable"] is False and data["error"] == "refused"
    assert data["embeddings"] is None and data["subscriptions"] == []
    assert data["role"] == "plain"
