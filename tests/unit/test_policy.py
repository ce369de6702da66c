"""The trigger policy as data: the same modes for every role, and the seed's mistake named."""

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
    Role,
    RoleFacts,
)


def test_policy_modes() -> None:
    for role in Role:
        guard = Mode.ORIGIN if role is Role.SUBSCRIBER else Mode.DISABLED
        assert policy.POLICY[role] == {
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
        assert set(policy.POLICY[role]) == set(policy.REASONS)


def test_role_from_facts() -> None:
    assert RoleFacts(False, False).role is Role.PLAIN
    assert RoleFacts(True, False).role is Role.SOURCE
    assert RoleFacts(False, True).role is Role.SUBSCRIBER
    assert RoleFacts(True, True).role is Role.SUBSCRIBER  # a relay follows the subscriber policy


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
