"""doctor's agent identity checks on a real database: agents whose role is missing, agent
roles with more than an agent's rights, senders the registry does not know (and
``doctor --format json`` carrying them)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from agentchat import identity, messaging
from agentchat.ops import doctor
from agentchat.ops import identity as checks
from agentchat.ops.judge import Check, Verdict
from agentchat.server import Cluster
from tests.helpers import execute, invoke


@dataclass
class Registered:
    db: str
    name: str
    role: str


def drop_role(hub: Cluster, role: str) -> None:
    with psycopg.connect(hub.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def agent(hub: Cluster, installed_db: str) -> Iterator[Registered]:
    """An agent added by ``agent add`` (its own role in the group agentchat_agent)."""
    name = f"doc{uuid.uuid4().hex[:6]}"
    added = identity.add(installed_db, name, show_password=True)
    yield Registered(installed_db, name, added.entry.role)
    execute(hub.conninfo(), f'ALTER ROLE "{added.entry.role}" NOSUPERUSER')  # droppable again
    with psycopg.connect(installed_db, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(added.entry.role)))
    drop_role(hub, added.entry.role)


def identity_checks(db: str) -> dict[str, list[Check]]:
    found: dict[str, list[Check]] = {}
    for check in doctor.diagnose([db]).checks:
        if check.check in ("agent_role", "agent_rights", "chat_senders", "agent_identity"):
            found.setdefault(check.check, []).append(check)
    return found


def test_no_agent_no_identity_checks(installed_db: str) -> None:
    assert identity_checks(installed_db) == {}


def test_an_agent_made_by_agent_add_is_healthy(agent: Registered) -> None:
    messaging.send(agent.db, sender=agent.name, message="hi", to=["*"])
    found = identity_checks(agent.db)
    assert sorted(found) == ["agent_rights", "agent_role", "chat_senders"], found
    assert all(c.verdict is Verdict.OK for cs in found.values() for c in cs), found
    [rights] = found["agent_rights"]
    assert rights.subject == agent.role and "an agent's rights only" in rights.detail


def test_extra_rights_are_named_with_the_statements_that_take_them_away(
    agent: Registered,
) -> None:
    role = agent.role
    execute(agent.db, f'GRANT INSERT, DELETE ON agent_chat TO "{role}"')
    execute(agent.db, "GRANT SELECT ON agentchat_settings TO agentchat_agent")
    execute(agent.db, f'GRANT UPDATE ON agentchat_id_seq TO "{role}"')
    execute(agent.db, f'ALTER ROLE "{role}" CREATEROLE BYPASSRLS')
    execute(agent.db, f'GRANT pg_read_all_data TO "{role}"')
    [check] = identity_checks(agent.db)["agent_rights"]
    assert check.verdict is Verdict.BROKEN and check.subject == role
    for phrase in (
        "CREATEROLE", "BYPASSRLS", "member of pg_read_all_data", "DELETE on agent_chat",
        "INSERT on agent_chat", "SELECT on agentchat_settings (held by agentchat_agent)",
        "UPDATE on sequence agentchat_id_seq",
    ):  # fmt: skip
        assert phrase in check.detail, (phrase, check.detail)
    assert "\n" not in check.detail and check.fix is not None and "\n" not in check.fix
    # the fix, run as it says, leaves an agent's rights only
    statements = check.fix.removeprefix("as a superuser: ")
    execute(agent.db, statements)
    [check] = identity_checks(agent.db)["agent_rights"]
    assert check.verdict is Verdict.OK, check.detail


def test_a_superuser_agent_is_broken(agent: Registered) -> None:
    execute(agent.db, f'ALTER ROLE "{agent.role}" SUPERUSER')
    [check] = identity_checks(agent.db)["agent_rights"]
    assert check.verdict is Verdict.BROKEN and "SUPERUSER" in check.detail
    assert f'ALTER ROLE "{agent.role}" NOSUPERUSER' in (check.fix or "")


def test_a_role_in_the_group_but_not_registered_is_judged_too(
    hub: Cluster, agent: Registered
) -> None:
    stray = f"stray_{uuid.uuid4().hex[:6]}"
    execute(agent.db, f"CREATE ROLE {stray} LOGIN CREATEDB IN ROLE agentchat_agent")
    try:
        found = {c.subject: c for c in identity_checks(agent.db)["agent_rights"]}
        assert found[stray].verdict is Verdict.BROKEN and "CREATEDB" in found[stray].detail
        assert found[agent.role].verdict is Verdict.OK
    finally:
        drop_role(hub, stray)


def test_a_registered_agent_without_its_role(agent: Registered) -> None:
    here = execute(agent.db, "SELECT agentchat_node()")[0][0]
    execute(
        agent.db,
        "INSERT INTO agentchat_agents (name, role, node) VALUES ('ghost', 'ac_ghost_gone', %s),"
        " ('far', 'ac_far_elsewhere', %s)",
        (here, here % 1000 + 1),
    )
    found = identity_checks(agent.db)["agent_role"]
    assert [(c.subject, c.verdict) for c in found] == [("ghost", Verdict.BROKEN)]
    assert "ac_ghost_gone" in found[0].detail
    assert found[0].fix == "agentchat agent remove ghost, then agentchat agent add ghost (a new" \
        " role and password)"  # fmt: skip


def test_unknown_senders_after_the_registry_are_degraded(agent: Registered) -> None:
    execute(
        agent.db,
        "INSERT INTO agent_chat (sender, message, mentions, created_at) VALUES"
        " ('oldtimer', 'before', '{}', now() - interval '1 day')",
    )
    [check] = identity_checks(agent.db)["chat_senders"]
    assert check.verdict is Verdict.OK and "oldtimer (1)" in check.detail
    for i in range(7):
        messaging.send(agent.db, sender=f"mallory{i}", message="x", to=["*"])
    messaging.send(agent.db, sender=agent.name, message="x", to=["*"])
    [check] = identity_checks(agent.db)["chat_senders"]
    assert check.verdict is Verdict.DEGRADED and check.subject == "8"
    assert "and 3 more" in check.detail and "oldtimer" not in check.detail
    assert agent.name not in check.detail and "agentchat agent add" in (check.fix or "")


def test_doctor_json_carries_the_identity_checks(agent: Registered) -> None:
    execute(agent.db, f'GRANT TRUNCATE ON agent_chat TO "{agent.role}"')
    done = invoke("doctor", "--dsn", agent.db, "--format", "json")
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    [rights] = [c for c in report["checks"] if c["check"] == "agent_rights"]
    assert rights["verdict"] == "broken" and "TRUNCATE on agent_chat" in rights["detail"]
    assert {c["check"] for c in report["checks"]} >= {"agent_role", "chat_senders"}


def test_unit_judging_matches_what_is_read(agent: Registered) -> None:
    facts = checks.look(agent.db)
    assert facts is not None and [a.name for a in facts.agents] == [agent.name]
    [role] = facts.roles
    assert role.role == agent.role and checks.excess(role) == []
