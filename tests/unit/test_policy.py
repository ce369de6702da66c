"""The trigger policy as data: the same modes for every node kind, and the seed's mistake named."""

from __future__ import annotations

import pytest

from agentchat import policy
from agentchat.cli._output import table
from agentchat.policy import (
    ADMIT_TRIGGER,
    EMBED_TRIGGER,
    FORGET_EMBEDDING_TRIGGER,
    FORGET_PROCESSED_TRIGGER,
    GUARD_TRIGGER,
    GUARD_TRUNCATE_TRIGGER,
    IMMUTABLE_TRIGGER,
    IMMUTABLE_TRUNCATE_TRIGGER,
    NOTIFY_TRIGGER,
    Mode,
    NodeFacts,
    NodeKind,
)


def test_policy_modes() -> None:
    for kind in NodeKind:
        guard = Mode.ORIGIN if kind is NodeKind.SUBSCRIBER else Mode.DISABLED
        assert policy.POLICY[kind] == {
            NOTIFY_TRIGGER: Mode.ALWAYS,
            EMBED_TRIGGER: Mode.ORIGIN,
            GUARD_TRIGGER: guard,
            GUARD_TRUNCATE_TRIGGER: guard,
            FORGET_PROCESSED_TRIGGER: Mode.ALWAYS,
            FORGET_EMBEDDING_TRIGGER: Mode.ORIGIN,
            ADMIT_TRIGGER: Mode.ALWAYS,
            IMMUTABLE_TRIGGER: Mode.ORIGIN,
            IMMUTABLE_TRUNCATE_TRIGGER: Mode.ORIGIN,
        }
        assert set(policy.POLICY[kind]) | set(policy.OPTIONAL_POLICY) == set(policy.REASONS)


def test_kind_from_facts() -> None:
    assert NodeFacts(False, False).kind is NodeKind.PLAIN
    assert NodeFacts(True, False).kind is NodeKind.SOURCE
    assert NodeFacts(False, True).kind is NodeKind.SUBSCRIBER
    # a relay follows the subscriber policy
    assert NodeFacts(True, True).kind is NodeKind.SUBSCRIBER


def test_the_old_role_names_still_work() -> None:
    """Deprecated aliases: the node's kind was called its role before."""
    assert policy.Role is NodeKind and policy.RoleFacts is NodeFacts
    assert policy.read_role is policy.read_kind
    assert NodeFacts(False, True).role is NodeKind.SUBSCRIBER


def test_verdicts() -> None:
    wrong = policy.TriggerStatus("public", "agent_chat", EMBED_TRIGGER, Mode.REPLICA, Mode.ORIGIN)
    missing = policy.TriggerStatus("public", "agent_chat", NOTIFY_TRIGGER, None, Mode.ALWAYS)
    extra = policy.TriggerStatus("public", "agent_chat", "user_trigger", Mode.ORIGIN, None)
    assert (wrong.ok, missing.ok, extra.ok) == (False, False, True)
    assert missing.mode_name == "MISSING"
    assert "REPLICA" in policy.REASONS[EMBED_TRIGGER]


def test_table_is_laid_out_like_psql() -> None:
    assert table(["a", "long header"], [("x", "y")]) == (
        " a | long header\n---+-------------\n x | y\n(1 row)"
    )


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_has_its_statement(mode: Mode) -> None:
    """The named block of each mode says what ``Mode.clause`` says (the dry run prints it)."""
    statement = policy.alter_statement("trg_x", mode).as_string(None)
    assert statement == f'ALTER TABLE public.agent_chat {mode.clause} TRIGGER "trg_x"'
