"""verify's verdict on a made-up probe result (no database): when a probe counts as ok, and the
JSON shape ``agentchat verify --json`` prints."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agentchat.ops.verify import VerifyResult

ARRIVED = VerifyResult(
    "nova", "owl", probe_id=22, arrived=True, notified=True, arrival_ms=3.1, notify_ms=2.4,
    embedding_rows=1, cleaned_up=True,
)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({}, True),
        ({"embedding_rows": 0}, True),  # the embedding row may not be there yet
        ({"cleaned_up": False}, True),  # the probe's deletion is reported, not judged
        ({"arrived": False, "arrival_ms": None}, False),
        ({"notified": False, "notify_ms": None}, False),  # a deaf replica
        ({"embedding_rows": 2}, False),  # queued twice: the embed trigger is wrong
        ({"error": "cannot connect to owl"}, False),
        ({"error": ""}, True),  # no message is no error
    ],
)
def test_when_a_probe_is_ok(changes: dict[str, object], ok: bool) -> None:
    result = replace(ARRIVED, **changes)  # type: ignore[arg-type]
    assert result.ok is ok
    assert result.as_dict()["ok"] is ok


def test_as_dict_shape() -> None:
    assert ARRIVED.as_dict() == {
        "source": "nova", "target": "owl", "probe_id": 22, "arrived": True, "notified": True,
        "arrival_ms": 3.1, "notify_ms": 2.4, "embedding_rows": 1, "cleaned_up": True,
        "error": None, "ok": True,
    }  # fmt: skip


def test_a_fresh_result_is_not_ok() -> None:
    result = VerifyResult("nova", "owl")
    assert not result.ok
    assert result.as_dict()["probe_id"] is None
