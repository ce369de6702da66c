"""status' Prometheus rendering from made-up facts, read back by Prometheus' own parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentchat import policy
from agentchat.cli._prometheus import _HELP, render
from agentchat.embeddings.mode import EmbeddingMode
from agentchat.ops.facts import DatabaseFacts, EmbeddingFacts, SlotFacts, SubscriptionFacts
from agentchat.ops.judge import Check, Verdict
from agentchat.ops.report import Report

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
        schema_version=5, node=policy.NodeFacts(False, True, ("agent_chat_from_nova",)),
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
    assert render(Report([], [])) == "\n"


def one_database(**changes: object) -> DatabaseFacts:
    base: dict[str, object] = {"conninfo": SOURCE, "name": "nova", "schema_version": 5}
    base.update(changes)
    return DatabaseFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conninfo", "resolved", "labels"),
    [
        # the connection as it was really made wins over the DSN given
        ("dbname=nova_memory", SOURCE, {"database": "nova_memory", "server": "db1:5433"}),
        ("host=db1 port=5433 dbname=nova_memory", None,
         {"database": "nova_memory", "server": "db1:5433"}),
        # no host: libpq's default socket, no port: empty
        ("dbname=nova_memory", None, {"database": "nova_memory", "server": "local:"}),
        ("host=db1", None, {"database": "", "server": "db1:"}),
    ],
)  # fmt: skip
def test_database_and_server_labels(
    conninfo: str, resolved: str | None, labels: dict[str, str]
) -> None:
    text = render(Report([one_database(conninfo=conninfo, resolved=resolved)], []))
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "agentchat_up"]
    assert [s.labels for s in family.samples] == [labels]


@pytest.mark.parametrize(
    ("verdicts", "value"),
    [
        ([], 0),
        ([Verdict.OK], 0),
        ([Verdict.DEGRADED, Verdict.OK], 1),
        ([Verdict.OK, Verdict.BROKEN, Verdict.DEGRADED], 2),
    ],
)
def test_verdict_is_the_worst_check_of_that_database(verdicts: list[Verdict], value: int) -> None:
    checks = [Check("nova", f"c{i}", v, "x") for i, v in enumerate(verdicts)]
    checks.append(Check("elsewhere", "reachable", Verdict.BROKEN, "x"))  # not this database's
    text = render(Report([one_database()], checks))
    assert f'agentchat_verdict{{database="nova_memory",server="db1:5433"}} {value}\n' in text


@pytest.mark.parametrize(
    ("facts", "present", "absent"),
    [
        # an unreachable database: only up and verdict
        (one_database(reachable=False), {"agentchat_up", "agentchat_verdict"},
         {"agentchat_schema_version", "agentchat_trigger_ok"}),
        # no subscription, slot or embeddings: no such family, not even its HELP line
        (one_database(), {"agentchat_schema_version"},
         {"agentchat_subscription_enabled", "agentchat_slot_active", "agentchat_embeddings_rows"}),
        # a subscription that never heard from its source has no timestamp
        (one_database(subscriptions=[SubscriptionFacts("s", False, None, (), None, None, 0, 0,
                                                        {})]),
         {"agentchat_subscription_enabled", "agentchat_subscription_tables"},
         {"agentchat_subscription_last_message_timestamp_seconds"}),
    ],
)  # fmt: skip
def test_which_families_appear(facts: DatabaseFacts, present: set[str], absent: set[str]) -> None:
    text = render(Report([facts], []))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert present <= names
    assert not absent & names
    for name in absent:
        assert f"# HELP {name} " not in text


def test_values_are_integers_unless_they_have_a_fraction() -> None:
    heard = datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    facts = one_database(
        subscriptions=[SubscriptionFacts("s", True, "s", (), 7, heard, 3, 0, {"agent_chat": "r"})],
        slots=[SlotFacts("s", True, "reserved", None, None)],
    )
    text = render(Report([facts], []))
    assert 'agentchat_subscription_apply_errors_total{database="nova_memory",' in text
    assert ',subscription="s"} 3\n' in text
    assert f',subscription="s"}} {heard.timestamp()!r}\n' in text
    assert ',slot="s"} 0\n' in text  # retained and lag unknown: 0
    assert "3.0" not in text


def test_families_come_in_the_documented_order_each_with_help_then_type() -> None:
    lines = render(report()).splitlines()
    helps = [i for i, line in enumerate(lines) if line.startswith("# HELP ")]
    names = [lines[i].split()[2] for i in helps]
    assert names[:3] == ["agentchat_up", "agentchat_verdict", "agentchat_schema_version"]
    assert names == sorted(names, key=list(_HELP).index)
    for i, name in zip(helps, names, strict=True):
        assert lines[i + 1] == f"# TYPE {name} {_HELP[name][0]}"
        assert lines[i + 2].startswith(name + "{")


def test_label_values_are_escaped() -> None:
    text = render(report())
    assert 'subscription="odd \\"name\\"\\\\"' in text
