"""Replication preflight as a pure judge: made-up facts in, findings with their fixes out."""

from __future__ import annotations

import dataclasses

import pytest

from agentchat import errors
from agentchat.preflight import SourceFacts, TargetFacts, check_transport, judge

SOURCE = SourceFacts(
    version_num=180004, wal_level="logical", max_slots=10, used_slots=0, max_senders=10,
    used_senders=0, is_superuser=True, can_create_role=True, system_id="1", schema_version=5,
    embedding_dimension=384,
)  # fmt: skip
TARGET = TargetFacts(
    version_num=160014, max_workers=4, used_workers=0, is_superuser=True, system_id="2",
    schema_version=5, embedding_dimension=384,
)  # fmt: skip


def failed(source: SourceFacts, target: TargetFacts, *, new_slot: bool = True) -> list[str]:
    return [f.check for f in judge(source, target, new_slot=new_slot) if not f.ok]


def test_healthy_facts_pass_every_check() -> None:
    findings = judge(SOURCE, TARGET, new_slot=True)
    assert findings and all(f.ok for f in findings)
    assert len({f.check for f in findings}) == len(findings)


@pytest.mark.parametrize(
    ("source_change", "target_change", "check", "fix_says"),
    [
        ({"version_num": 140011}, {}, "source_version", "upgrade the source"),
        ({}, {"version_num": 140011}, "target_version", "upgrade the target"),
        ({"wal_level": "replica"}, {}, "wal_level", "wal_level = logical"),
        ({"used_slots": 8}, {}, "replication_slots", "max_replication_slots"),
        ({"used_senders": 9}, {}, "wal_senders", "max_wal_senders"),
        ({}, {"used_workers": 3}, "replication_workers", "max_logical_replication_workers"),
        ({"is_superuser": False}, {}, "source_privileges", "superuser"),
        ({}, {"is_superuser": False}, "target_privileges", "superuser"),
        ({"schema_version": 0}, {}, "source_schema", "agentchat install"),
        ({}, {"embedding_dimension": 768}, "embedding_dimension", "--dimension 384"),
    ],
)
def test_each_failing_fact_is_one_finding_with_its_fix(
    source_change: dict[str, object], target_change: dict[str, object], check: str, fix_says: str
) -> None:
    source = dataclasses.replace(SOURCE, **source_change)  # type: ignore[arg-type]
    target = dataclasses.replace(TARGET, **target_change)  # type: ignore[arg-type]
    findings = [f for f in judge(source, target, new_slot=True) if not f.ok]
    assert [f.check for f in findings] == [check]
    assert fix_says in (findings[0].fix or "")
    assert findings[0].message  # one line that says what is wrong


def test_a_re_run_needs_no_new_slot_sender_or_worker() -> None:
    full = dataclasses.replace(SOURCE, used_slots=10, used_senders=10)
    busy = dataclasses.replace(TARGET, used_workers=4)
    assert failed(full, busy, new_slot=False) == []
    assert failed(full, busy, new_slot=True) == [
        "replication_slots", "wal_senders", "replication_workers"
    ]  # fmt: skip


def test_one_cluster_says_the_workers_are_shared() -> None:
    same = dataclasses.replace(TARGET, system_id=SOURCE.system_id, used_workers=4)
    [finding] = [f for f in judge(SOURCE, same, new_slot=True) if not f.ok]
    assert "source and target share them" in (finding.fix or "")


def test_unknown_schema_or_dimension_is_not_a_failure() -> None:
    """A role that cannot read the schema is reported by the privilege checks, not guessed."""
    unknown = dataclasses.replace(SOURCE, schema_version=None, embedding_dimension=None)
    assert failed(unknown, TARGET) == []


@pytest.mark.parametrize(
    ("params", "allow_insecure", "refused"),
    [
        ({"host": "db.example.net"}, False, True),
        ({"host": "db.example.net", "sslmode": "prefer"}, False, True),
        ({"host": "db.example.net", "sslmode": "require"}, False, False),
        ({"host": "db.example.net", "sslmode": "verify-full"}, False, False),
        ({"host": "db.example.net"}, True, False),
        ({"hostaddr": "10.0.0.5"}, False, True),
        ({"host": "127.0.0.1"}, False, False),
        ({"host": "localhost"}, False, False),
        ({"host": "::1"}, False, False),
        ({"host": "/var/run/postgresql"}, False, False),
        ({}, False, False),
    ],
)
def test_transport_refuses_a_remote_source_without_tls(
    params: dict[str, str], allow_insecure: bool, refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    if refused:
        with pytest.raises(errors.InvalidInput, match="would not require TLS"):
            check_transport(params, allow_insecure)
    else:
        check_transport(params, allow_insecure)


def test_pgsslmode_from_the_environment_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "require")
    check_transport({"host": "db.example.net"}, False)
