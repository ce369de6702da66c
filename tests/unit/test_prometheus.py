"""status' Prometheus rendering from made-up facts, read back by Prometheus' own parser."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from agentchat import health, policy
from agentchat.cli._prometheus import render
from agentchat.embeddings.mode import EmbeddingMode
from agentchat.health import (
    Check,
    DatabaseFacts,
    EmbeddingFacts,
    Report,
    SlotFacts,
    SubscriptionFacts,
    Verdict,
)

REPLICA = "host=/tmp/s port=5432 dbname=graybeard_memory user=postgres"
SOURCE = "host=db1 port=5433 dbname=nova_memory user=postgres"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def report() -> Report:
    replica = DatabaseFacts(
        conninfo=REPLICA, name="graybeard", resolved=REPLICA, version_num=180004,
        schema_version=5, role=policy.RoleFacts(False, True, ("agent_chat_from_nova",)),
        triggers=[
            policy.TriggerStatus("public", "agent_chat", policy.NOTIFY_TRIGGER,
                                 policy.Mode.ORIGIN, policy.Mode.ALWAYS),
        ],
        subscriptions=[
            SubscriptionFacts(
                name='odd "name"\\', enabled=True, slot="s", publications=("agent_chat_pub",),
                worker_pid=None, last_message=datetime(2026, 1, 1, tzinfo=UTC),
                apply_errors=7, sync_errors=0, tables={"agent_chat": "r", "memory_embeddings": "d"},
            )
        ],
        embeddings=EmbeddingFacts(EmbeddingMode.REPLICATED, 10, 2, 1, ("m",)),
    )  # fmt: skip
    source = DatabaseFacts(
        conninfo=SOURCE, name="nova", resolved=SOURCE, schema_version=5,
        slots=[SlotFacts("s", False, "extended", 5 * 1024**2, None)],
    )  # fmt: skip
    down = DatabaseFacts(conninfo="host=db9 dbname=gone", name="gone", reachable=False)
    checks = [
        Check("graybeard", "apply_worker", Verdict.BROKEN, "no worker"),
        Check("nova", "slot", Verdict.DEGRADED, "inactive"),
        Check("gone", "reachable", Verdict.BROKEN, "down"),
    ]
    return Report([replica, source, down], checks)


def test_every_figure_with_its_labels_and_types() -> None:
    text = render(report())
    got = samples(text)
    replica = (("database", "graybeard_memory"), ("server", "/tmp/s:5432"))
    assert got["agentchat_up", replica] == 1
    assert got["agentchat_verdict", replica] == Verdict.BROKEN
    assert got["agentchat_schema_version", replica] == 5
    trigger = tuple(sorted((*replica, ("trigger", policy.NOTIFY_TRIGGER), ("mode", "ORIGIN"))))
    assert got["agentchat_trigger_ok", trigger] == 0
    subscription = tuple(sorted((*replica, ("subscription", 'odd "name"\\'))))
    assert got["agentchat_subscription_worker_running", subscription] == 0
    assert got["agentchat_subscription_tables_ready", subscription] == 1
    assert got["agentchat_subscription_tables", subscription] == 2
    assert got["agentchat_subscription_apply_errors_total", subscription] == 7
    assert got["agentchat_subscription_last_message_timestamp_seconds", subscription] == (
        datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    )
    embeddings = tuple(sorted((*replica, ("mode", EmbeddingMode.REPLICATED.value))))
    assert got["agentchat_embeddings_queued", embeddings] == 2
    assert got["agentchat_embeddings_failing", embeddings] == 1

    source = (("database", "nova_memory"), ("server", "db1:5433"))
    assert got["agentchat_verdict", source] == Verdict.DEGRADED
    slot = tuple(sorted((*source, ("slot", "s"))))
    assert got["agentchat_slot_active", slot] == 0
    assert got["agentchat_slot_retained_bytes", slot] == 5 * 1024**2
    assert got["agentchat_slot_lag_bytes", slot] == 0

    gone = (("database", "gone"), ("server", "db9:"))
    assert got["agentchat_up", gone] == 0
    assert got["agentchat_verdict", gone] == Verdict.BROKEN
    assert not any(name == "agentchat_schema_version" and key == gone for name, key in got)

    assert "# TYPE agentchat_subscription_apply_errors_total counter" in text
    assert "# TYPE agentchat_slot_lag_bytes gauge" in text
    assert text.endswith("\n")


def test_a_healthy_empty_report_renders_nothing_but_valid_text() -> None:
    assert render(health.Report([], [])) == "\n"
