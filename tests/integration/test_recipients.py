"""Recipients checked against the registry of agents, on a real database: ``send()``,
``Agent``/``AsyncAgent`` sends and replies, ``agentchat send`` (--allow-unknown)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from agentchat import errors, identity
from agentchat.agents import send as sending
from agentchat.agents.agent import Agent
from agentchat.agents.aio import AsyncAgent
from agentchat.server import Cluster
from tests.helpers import execute, invoke, ok, one_line_error

#: the registry as the brief fixes it (migration 0007 makes it; a stand-in where it has not)
REGISTRY = """
CREATE TABLE IF NOT EXISTS public.agentchat_agents (
    name text PRIMARY KEY, role name NOT NULL UNIQUE, channels text[] NOT NULL DEFAULT '{}',
    node int, created_at timestamptz NOT NULL DEFAULT now())
"""


def register(conninfo: str, *names: str) -> None:
    """Registry rows by hand (no roles: the Python check reads names only)."""
    execute(conninfo, REGISTRY)
    for name in names:
        execute(
            conninfo,
            "INSERT INTO agentchat_agents (name, role) VALUES (%s, %s)",
            (name, f"ac_test_{uuid.uuid4().hex[:8]}"),
        )


def chat(conninfo: str) -> list[tuple[str, list[str]]]:
    rows = execute(conninfo, "SELECT sender, mentions FROM agent_chat ORDER BY id")
    return [(str(s), sorted(m)) for s, m in rows]  # (order: as the schema keeps it)


@pytest.fixture
def registered(installed_db: str) -> str:
    register(installed_db, "graybeard", "nova")
    return installed_db


def test_no_registry_rows_means_no_check(installed_db: str) -> None:
    execute(installed_db, REGISTRY)
    sending.send(installed_db, sender="nova", message="hi", to=["anyone"])
    assert chat(installed_db) == [("nova", ["anyone"])]


def test_a_registry_refuses_an_unknown_recipient_and_names_the_closest(registered: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        sending.send(registered, sender="nova", message="hi", to=["graybaerd"])
    assert caught.value.message == 'unknown agent "graybaerd" (did you mean graybeard?)'
    assert chat(registered) == []
    sending.send(registered, sender="nova", message="hi", to=["graybeard", "*"])
    sending.send(registered, sender="boss", message="to all", to=["*"])  # any sender, as today
    sending.send(registered, sender="nova", message="deliberate", to=["later"], allow_unknown=True)
    assert chat(registered) == [
        ("nova", ["*", "graybeard"]),
        ("boss", ["*"]),
        ("nova", ["later"]),
    ]


def test_agent_sends_are_checked_and_a_new_agent_is_known_at_once(registered: str) -> None:
    with Agent("nova", registered) as agent:
        agent.send("hi", to=["graybeard"])  # read and cached
        with pytest.raises(errors.InvalidInput, match="did you mean nova"):
            agent.send("hi", to=["novaa"])
        register(registered, "owl")  # within the cache's TTL: looked up again, not refused
        agent.send("hi owl", to=["owl"])
        agent.send("anyway", to=["ghost"], allow_unknown=True)
    assert [m for _, m in chat(registered)] == [["graybeard"], ["owl"], ["ghost"]]


def test_replies_check_the_names_given_not_the_sender(registered: str) -> None:
    sending.send(registered, sender="boss", message="hello graybeard", to=["graybeard"])
    with Agent("graybeard", registered) as agent:
        for msg in agent.messages(limit=1, idle_timeout=5):
            msg.reply("hello boss")  # boss is not registered: it is the sender, no typo
            with pytest.raises(errors.InvalidInput, match='unknown agent "nvoa"'):
                msg.reply("psst", to=["nvoa"])
            msg.reply("psst", to=["nova"])
            msg.reply("psst", to=["ghost"], allow_unknown=True)
    assert [m for _, m in chat(registered)][1:] == [["boss"], ["nova"], ["ghost"]]


def test_the_asyncio_agent_checks_too(registered: str) -> None:
    async def main() -> None:
        async with AsyncAgent("nova", registered) as agent:
            await agent.send("hi", to=["graybeard"])
            with pytest.raises(errors.InvalidInput, match="did you mean graybeard"):
                await agent.send("hi", to=["graybeardd"])
            await agent.send("hi", to=["x"], allow_unknown=True)

    asyncio.run(main())
    assert [m for _, m in chat(registered)] == [["graybeard"], ["x"]]


def test_cli_send_unknown_is_one_line_exit_2_and_allow_unknown_sends(registered: str) -> None:
    done = invoke("send", "--dsn", registered, "--as", "nova", "--to", "graybaerd,nova", "hi")
    line = one_line_error(done, 'unknown agent "graybaerd" (did you mean graybeard?)', 2)
    assert "--allow-unknown" in line
    ok(invoke("send", "--dsn", registered, "--as", "nova", "--to", "graybeard", "hi"))
    ok(invoke("send", "--dsn", registered, "--as", "nova", "--to", "zed", "--allow-unknown", "x"))
    assert [m for _, m in chat(registered)] == [["graybeard"], ["zed"]]


@pytest.fixture
def plain_role(registered: str) -> Iterator[str]:
    """A role that is no agent's, may send (INSERT on agent_chat), and may not read the
    registry: its conninfo."""
    role = f"rc_{uuid.uuid4().hex[:8]}"
    execute(registered, f"CREATE ROLE {role} LOGIN")
    execute(registered, f"GRANT SELECT, INSERT ON agent_chat TO {role}")
    execute(registered, f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    execute(registered, f"REVOKE ALL ON agentchat_agents FROM {role}, PUBLIC")
    yield psycopg.conninfo.make_conninfo(registered, user=role)
    execute(registered, f"DROP OWNED BY {role}")
    execute(registered, f"DROP ROLE {role}")


def test_a_role_that_may_not_read_the_registry_is_not_checked(
    registered: str, plain_role: str
) -> None:
    sending.send(plain_role, sender="tool", message="hi", to=["unregistered"])
    assert chat(registered) == [("tool", ["unregistered"])]


@pytest.fixture
def agent_role(hub: Cluster, registered: str) -> Iterator[str]:
    """An agent added by ``agent add`` (it may read the registry); its conninfo (the test
    cluster trusts its socket)."""
    name = f"rcp{uuid.uuid4().hex[:6]}"
    added = identity.add(registered, name, show_password=True)
    yield psycopg.conninfo.make_conninfo(registered, user=added.entry.role)
    identity.remove(registered, name)


def test_the_databases_refusal_for_an_agent_names_the_closest_too(agent_role: str) -> None:
    sender = execute(agent_role, "SELECT agentchat_session_agent()")[0][0]
    with pytest.raises(errors.InvalidInput) as caught:  # the check in Python
        sending.send(agent_role, sender=sender, message="hi", to=["graybaerd"])
    assert caught.value.message == 'unknown agent "graybaerd" (did you mean graybeard?)'
    with pytest.raises(errors.InvalidInput) as caught:  # allowed here, refused by the database
        sending.send(agent_role, sender=sender, message="hi", to=["graybaerd"], allow_unknown=True)
    assert caught.value.message == 'unknown agent "graybaerd" (did you mean graybeard?)'
    with Agent(sender, agent_role) as agent, pytest.raises(errors.InvalidInput) as caught:
        agent.send("hi", to=["novq"], allow_unknown=True)
    assert caught.value.message == 'unknown agent "novq" (did you mean nova?)'
    sending.send(agent_role, sender=sender, message="hi", to=["nova"])
    assert chat(agent_role) == [(sender, ["nova"])]
