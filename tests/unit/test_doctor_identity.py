"""doctor's agent identity checks: the judging, on made-up facts."""

from __future__ import annotations

from datetime import UTC, datetime

from agentchat.ops.identity import (
    AgentRole,
    IdentityFacts,
    RegisteredAgent,
    TableRight,
    UnknownSender,
    excess,
    judge_agent_roles,
    judge_identity,
    judge_rights,
    judge_senders,
    repair_sql,
)
from agentchat.ops.judge import Verdict

AGENT_RIGHTS = (
    TableRight("agent_chat", "SELECT", "agentchat_agent"),
    TableRight("memory_embeddings", "SELECT", "agentchat_agent"),
    TableRight("agentchat_agents", "SELECT", "agentchat_agent"),
    TableRight("agent_chat_processed", "SELECT", "agentchat_agent"),
    TableRight("agent_chat_processed", "INSERT", "agentchat_agent"),
    TableRight("agent_chat_processed", "UPDATE", "agentchat_agent"),
)
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_an_agents_rights_are_not_too_much() -> None:
    role = AgentRole("ac_nova", table_rights=AGENT_RIGHTS)
    assert excess(role) == []
    check = judge_rights("db", role)
    assert check.verdict is Verdict.OK and check.subject == "ac_nova"


def test_each_extra_right_is_named_and_taken_away_where_it_is_held() -> None:
    role = AgentRole(
        'ac_we"ird',
        superuser=True,
        bypassrls=True,
        member_of=("pg_read_all_data",),
        table_rights=(
            *AGENT_RIGHTS,
            TableRight("agent_chat", "INSERT", 'ac_we"ird'),
            TableRight("agent_chat", "DELETE", 'ac_we"ird'),
            TableRight("agentchat_settings", "SELECT", "agentchat_agent"),
            TableRight("agentchat_nodes", "SELECT", "PUBLIC"),
            TableRight("agent_chat_processed", "DELETE", ""),
        ),
        sequences_set=("agentchat_id_seq",),
        schema_create=True,
    )
    assert excess(role) == [
        "SUPERUSER",
        "BYPASSRLS",
        "member of pg_read_all_data",
        "INSERT on agent_chat",
        "DELETE on agent_chat",
        "SELECT on agentchat_settings (held by agentchat_agent)",
        "SELECT on agentchat_nodes (held by PUBLIC)",
        "DELETE on agent_chat_processed (through another role, ownership or a column grant)",
        "UPDATE on sequence agentchat_id_seq (setval)",
        "CREATE on schema public",
    ]
    fix = repair_sql(role)
    assert fix.startswith('ALTER ROLE "ac_we""ird" NOSUPERUSER NOBYPASSRLS;')
    for statement in (
        'REVOKE "pg_read_all_data" FROM "ac_we""ird";',
        'REVOKE INSERT, DELETE ON public."agent_chat" FROM "ac_we""ird";',
        'REVOKE SELECT ON public."agentchat_settings" FROM "agentchat_agent";',
        'REVOKE SELECT ON public."agentchat_nodes" FROM PUBLIC;',
        'REVOKE DELETE ON public."agent_chat_processed" FROM "ac_we""ird";',
        'REVOKE UPDATE ON SEQUENCE public."agentchat_id_seq" FROM "ac_we""ird";',
        'REVOKE CREATE ON SCHEMA public FROM "ac_we""ird", PUBLIC;',
    ):
        assert statement in fix, (statement, fix)
    check = judge_rights("db", role)
    assert check.verdict is Verdict.BROKEN and "\n" not in check.detail
    assert check.fix == f"as a superuser: {fix}"


def agents(*rows: tuple[str, int | None, bool]) -> IdentityFacts:
    return IdentityFacts(
        node=7, agents=[RegisteredAgent(n, f"ac_{n}", node, ok) for n, node, ok in rows]
    )


def test_a_missing_role_is_broken_only_where_the_agent_was_added() -> None:
    facts = agents(("nova", 7, False), ("sage", 9, False), ("owl", None, True))
    checks = judge_agent_roles("db", facts)
    assert [(c.subject, c.verdict) for c in checks] == [("nova", Verdict.BROKEN)]
    assert "ac_nova" in checks[0].detail and "agent remove nova" in (checks[0].fix or "")
    [ok] = judge_agent_roles("db", agents(("owl", None, True), ("sage", 9, False)))
    assert ok.verdict is Verdict.OK and "(1 added on other nodes)" in ok.detail
    assert judge_agent_roles("db", IdentityFacts(node=7)) == []


def test_unknown_senders() -> None:
    facts = agents(("nova", 7, True))
    assert judge_senders("db", facts).verdict is Verdict.OK
    facts.senders = [UnknownSender("oldtimer", 3, NOW, False)]
    facts.sender_count = 1
    check = judge_senders("db", facts)
    assert check.verdict is Verdict.OK and "oldtimer (3)" in check.detail
    facts.senders = [UnknownSender(f"m{i}", 1, NOW, True) for i in range(5)]
    facts.sender_count = 9
    check = judge_senders("db", facts)
    assert check.verdict is Verdict.DEGRADED and check.subject == "9"
    assert "m0 (1), m1 (1)" in check.detail and "and 4 more" in check.detail
    assert "m0 wrote at 2026-12-02 10:00" in check.detail


def test_no_agent_no_sender_check() -> None:
    role = AgentRole("ac_stray", createdb=True)
    checks = judge_identity("db", IdentityFacts(node=1, roles=[role]))
    assert [(c.check, c.verdict) for c in checks] == [("agent_rights", Verdict.BROKEN)]
