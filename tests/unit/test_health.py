"""health's judges on made-up facts (no database): each fact shape and the verdict it gets."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentchat import policy
from agentchat.ops import judge as health
from agentchat.ops.facts import DatabaseFacts, RowCounts, SlotFacts, SubscriptionFacts
from agentchat.ops.judge import Check, Verdict
from agentchat.topology import Replica, Topology

READY = {"agent_chat": "r", "memory_embeddings": "r"}


def sub(**changes: object) -> SubscriptionFacts:
    base: dict[str, object] = {
        "name": "agent_chat_from_nova", "enabled": True, "slot": "slot_a",
        "publications": ("agent_chat_pub",), "worker_pid": 4242, "last_message": None,
        "apply_errors": 0, "sync_errors": 0, "tables": READY,
    }  # fmt: skip
    base.update(changes)
    return SubscriptionFacts(**base)  # type: ignore[arg-type]


def by_check(checks: list[Check]) -> dict[str, Check]:
    return {c.check: c for c in checks}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (sub(), {"subscription_enabled": Verdict.OK, "apply_worker": Verdict.OK}),
        # a source restart seen while the worker reconnects, healed within the watch
        (sub(apply_errors=1, apply_errors_first=1, watched=5.2), {"apply_worker": Verdict.OK}),
        # no worker, and the error count rose while status watched: a conflict
        (
            sub(worker_pid=None, apply_errors=3, apply_errors_first=2, watched=6.5),
            {"apply_worker": Verdict.BROKEN},
        ),
        # caught alive for a moment, but its error count rose while status watched
        (
            sub(apply_errors=4, apply_errors_first=3, watched=6.5),
            {"apply_worker": Verdict.BROKEN},
        ),
        # no worker, no new error: the source is down or refuses the connection
        (
            sub(worker_pid=None, apply_errors=1, apply_errors_first=1, watched=6.5),
            {"apply_worker": Verdict.BROKEN},
        ),
        (sub(worker_pid=None), {"apply_worker": Verdict.BROKEN}),
        (sub(enabled=False), {"subscription_enabled": Verdict.BROKEN}),
        (
            sub(disable_on_error=True),
            {"disable_on_error": Verdict.DEGRADED, "apply_worker": Verdict.OK},
        ),
        (
            sub(enabled=False, disable_on_error=True),
            {"subscription_enabled": Verdict.BROKEN, "disable_on_error": Verdict.DEGRADED},
        ),
        (
            sub(tables={"agent_chat": "d", "memory_embeddings": "r"}),
            {"sync_state": Verdict.DEGRADED},
        ),
    ],
)
def test_subscription_judge(facts: SubscriptionFacts, expected: dict[str, Verdict]) -> None:
    checks = by_check(health._judge_subscription("db", facts))
    assert {name: checks[name].verdict for name in expected} == expected
    for check in checks.values():
        if not check.ok:  # every problem names what to do, and status's fixes name doctor
            assert check.fix
    if "apply_worker" in expected and expected["apply_worker"] is Verdict.BROKEN:
        assert "agentchat doctor" in (checks["apply_worker"].fix or "")


def test_which_subscriptions_status_watches() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    young, old = now - timedelta(seconds=1), now - timedelta(seconds=60)
    assert sub(worker_pid=None).suspect(5000, now)
    assert sub(worker_started=young, apply_errors=2).suspect(5000, now)  # just restarted
    assert not sub(worker_started=young, apply_errors=0).suspect(5000, now)  # a new one
    assert not sub(worker_started=old, apply_errors=2).suspect(5000, now)  # healed long ago
    assert not sub(enabled=False, worker_pid=None).suspect(5000, now)  # its own check


def test_crash_loop_says_so() -> None:
    facts = sub(worker_pid=None, apply_errors=7, apply_errors_first=5, watched=6.4)
    assert facts.crash_looping
    [check] = [c for c in health._judge_subscription("db", facts) if c.check == "apply_worker"]
    assert "crash-looping" in check.detail and "from 5 to 7 in 6 s" in check.detail
    assert not sub(worker_pid=None).crash_looping  # looked once: not judged as a loop


@pytest.mark.parametrize(
    ("counts", "local", "verdict", "missing"),
    [
        (RowCounts(upto=10, history_from=0, source=10, replica=10), 0, Verdict.OK, 0),
        (RowCounts(upto=10, history_from=0, source=10, replica=9), 0, Verdict.BROKEN, 1),
        # emptied: upto is the source's newest id, everything is missing
        (RowCounts(upto=10, history_from=0, source=10, replica=0), 0, Verdict.BROKEN, 10),
        # added with --no-copy-data after id 6: only the later ones are expected
        (RowCounts(upto=10, history_from=6, source=4, replica=4), 0, Verdict.OK, 0),
        # a local row (doctor finds it) would hide a missing one
        (RowCounts(upto=10, history_from=0, source=10, replica=10), 1, Verdict.BROKEN, 1),
        # an empty source and an empty replica
        (RowCounts(upto=0, history_from=0, source=0, replica=0), 0, Verdict.OK, 0),
    ],
)
def test_rows_judge(counts: RowCounts, local: int, verdict: Verdict, missing: int) -> None:
    check = health.judge_rows("db", "sub", counts, local)
    assert check.verdict is verdict
    if missing:
        assert check.detail.startswith(f"{missing} of the source's messages up to id 10")
        assert check.fix and "replicate remove" in check.fix


def database(
    conninfo: str, *, subs: Sequence[SubscriptionFacts] = (), slots: Sequence[SlotFacts] = ()
) -> DatabaseFacts:
    return DatabaseFacts(
        conninfo=conninfo, name=conninfo, schema_version=5,
        node=policy.NodeFacts(is_source=bool(slots), is_subscriber=bool(subs)),
        subscriptions=list(subs), slots=list(slots),
    )  # fmt: skip


def slot(name: str, active: bool = True) -> SlotFacts:
    return SlotFacts(name, active, "reserved", 0, 0, "agent_chat_from_nova", "10.0.0.9")


@pytest.mark.parametrize(
    ("replicas", "source_slots", "expected"),
    [
        # every slot belongs to a listed replica: nothing to say
        ([database("dbname=a", subs=[sub(slot="slot_a")])], [slot("slot_a")], []),
        # a slot no listed replica uses: a replica the file does not list
        (
            [database("dbname=a", subs=[sub(slot="slot_a")])],
            [slot("slot_a"), slot("slot_b")],
            [("unlisted_replica", Verdict.DEGRADED, "slot_b")],
        ),
        # a table sync's temporary slot is not a replica
        (
            [database("dbname=a", subs=[sub(slot="slot_a")])],
            [slot("slot_a"), slot("pg_1_sync_2_3")],
            [],
        ),
        # listed, but its subscription is gone: it receives nothing
        (
            [database("dbname=a")],
            [],
            [("subscribed", Verdict.BROKEN, None)],
        ),
    ],
)
def test_topology_judge(
    replicas: list[DatabaseFacts],
    source_slots: list[SlotFacts],
    expected: list[tuple[str, Verdict, str | None]],
) -> None:
    topo = Topology(Path("agentchat.toml"), "dbname=src", "agent_chat_pub",
                    [Replica("agent_chat_from_nova", "dbname=a")])  # fmt: skip
    source = database("dbname=src", slots=source_slots)
    checks = health.judge_listed([source, *replicas], topo)
    assert [(c.check, c.verdict, c.subject) for c in checks] == expected
    for check in checks:
        assert check.fix
    if expected and expected[0][0] == "unlisted_replica":
        assert "streaming to subscription agent_chat_from_nova at 10.0.0.9" in checks[0].detail


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "agentchat.health",
            ("agentchat.ops.facts", "agentchat.ops.judge", "agentchat.ops.report"),
        ),
        ("agentchat.doctor", ("agentchat.ops.doctor",)),
        ("agentchat.verify", ("agentchat.ops.verify",)),
    ],
)
def test_old_module_paths_re_export_the_ops_objects(old: str, new: tuple[str, ...]) -> None:
    """agentchat.health, .doctor and .verify stay importable: each name in their __all__ is the
    very object of agentchat.ops, and every name other modules import is there."""
    module = importlib.import_module(old)
    homes = [importlib.import_module(n) for n in new]
    assert module.__all__
    for name in module.__all__:
        assert any(getattr(home, name, None) is getattr(module, name) for home in homes), name
    used = {
        "agentchat.health": {"status", "gather", "Report", "Check", "Verdict", "judge",
                             "judge_rows", "judge_listed", "DEFAULT_WAL_THRESHOLD", "HISTORY_FROM",
                             "foreign_rows", "count_rows", "settled_rows", "SubscriptionFacts",
                             "DatabaseFacts", "RowCounts", "SlotFacts", "EmbeddingFacts"},
        "agentchat.doctor": {"diagnose", "fix", "Diagnosis", "repair_text"},
        "agentchat.verify": {"verify", "VerifyResult"},
    }[old]  # fmt: skip
    assert used <= set(module.__all__)
