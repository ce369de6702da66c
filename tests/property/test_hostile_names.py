"""Hostile agent names thrown at ``agent add``/``agent remove``, ``send --to`` and ``listen --as``
(hypothesis, in-process through :func:`tests.helpers.invoke`).

After each example the cluster's roles (and their attributes and memberships), the public
schema's tables (and their grants), and the rows of agent_chat and agentchat_agents are as they
were, except for what the command legitimately did; the command either succeeded for a valid
name or failed with one clear line (no traceback). One database for the module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")  # the dev extra's; see the module docstring
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agentchat import errors, identity  # noqa: E402
from agentchat.agents import message as messages  # noqa: E402
from agentchat.server import Cluster  # noqa: E402
from tests import helpers  # noqa: E402
from tests.helpers import execute, invoke  # noqa: E402

#: the agents registered before any example (the "other agents" hostile names may be)
BASELINE = ("graybeard", "nova")

HOSTILE = [
    '"; DROP ROLE postgres; --',
    "'; DROP TABLE agent_chat; --",
    "nova'); DELETE FROM agentchat_agents; --",
    "x; DROP ROLE agentchat_agent",
    "$$; DROP SCHEMA public CASCADE; $$",
    "*",
    "",
    " ",
    ",",
    "*,graybeard",
    "postgres",
    "pg_signal_backend",
    "pg_read_all_data",
    "pg_",
    "agentchat_agent",
    "ac_graybeard",
    "ac_nova",
    "graybeard",
    " GRAYBEARD ",
    "nova",
    "nova,graybaerd",
    "public",
    "current_user",
    "session_user",
    "a" * 63,
    "a" * 64,
    "b" * 61,
    "x" * 5000,
    "\u212a",  # Kelvin sign: lowercases to k in Python, not in the database
    "gr\u00e4ybeard",
    "名前",
    "nova\u200b",
    "nova\x00x",
    "nova\n",
    "\tnova",
    "-nova",
    "--help",
    "agent.1_x-y",
    "nova%s",
    "nova{}",
    "\\",
]

names = st.one_of(
    st.sampled_from(HOSTILE),
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,62}", fullmatch=True),
    st.text(max_size=70),
)

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the autouse private cwd
)


@dataclass(frozen=True)
class State:
    roles: frozenset[tuple[Any, ...]]
    members: frozenset[tuple[str, str]]
    tables: frozenset[tuple[str, str, str]]
    chat: frozenset[tuple[Any, ...]]
    agents: frozenset[tuple[str, str]]


def snapshot(db: str) -> State:
    return State(
        roles=frozenset(
            execute(
                db,
                "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,"
                " rolreplication, rolbypassrls FROM pg_roles",
            )
        ),
        members=frozenset(
            (str(r), str(m))
            for r, m in execute(
                db,
                "SELECT g.rolname, u.rolname FROM pg_auth_members x"
                " JOIN pg_roles g ON g.oid = x.roleid JOIN pg_roles u ON u.oid = x.member",
            )
        ),
        tables=frozenset(
            (str(n), str(k), str(a))
            for n, k, a in execute(
                db,
                "SELECT relname, relkind::text, coalesce(relacl::text, '') FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace",
            )
        ),
        chat=frozenset(
            (i, s, tuple(m), t)
            for i, s, m, t in execute(db, "SELECT id, sender, mentions, message FROM agent_chat")
        ),
        agents=frozenset(
            (str(n), str(r)) for n, r in execute(db, "SELECT name, role FROM agentchat_agents")
        ),
    )


@dataclass
class Chat:
    db: str
    passfile: Path
    start: State


@pytest.fixture(scope="module")
def chat(
    hub: Cluster, hub_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chat]:
    """One installed database for the module, with the baseline agents registered."""
    name = f"t_hostile_{uuid.uuid4().hex[:8]}"
    helpers.create_database(hub, name, hub_template)
    db = hub.conninfo(name)
    passfile = tmp_path_factory.mktemp("hostile") / "pgpass"
    roles_before = {r for (r,) in execute(db, "SELECT rolname FROM pg_roles")}
    for agent in BASELINE:
        identity.add(db, agent, passfile=passfile)
    try:
        yield Chat(db, passfile, snapshot(db))
    finally:
        for (agent,) in execute(db, "SELECT name FROM agentchat_agents"):
            identity.remove(db, str(agent), passfile=passfile)
        helpers.drop_database(hub, name)
        left = {r for (r,) in execute(hub.conninfo(), "SELECT rolname FROM pg_roles")}
        for role in sorted(left - roles_before - {identity.GROUP}):
            execute(hub.conninfo(), f'DROP ROLE "{role}"')


def failed_cleanly(done: Any) -> None:
    """Exit non-zero, one `agentchat: error:` line, no traceback, no internal error."""
    assert done.returncode not in (0, 70), (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentchat: error: "), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def succeeded(done: Any) -> None:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr


def valid_agent_name(name: str) -> str | None:
    try:
        return identity.check_name(name)
    except errors.InvalidInput:
        return None


def agent_cmd(chat: Chat, verb: str, name: str) -> Any:
    return invoke("agent", verb, "--dsn", chat.db, "--passfile", str(chat.passfile), "--", name)


@SETTINGS
@given(name=names)
def test_agent_add_then_remove(chat: Chat, name: str) -> None:
    before = snapshot(chat.db)
    assert before == chat.start
    clean = valid_agent_name(name)
    done = agent_cmd(chat, "add", name)
    after = snapshot(chat.db)
    if clean is None:
        failed_cleanly(done)
        assert after == before
        return
    succeeded(done)
    assert after.tables == before.tables and after.chat == before.chat
    if clean in BASELINE:
        assert after == before  # already registered: unchanged
        return
    [(new_name, role)] = after.agents - before.agents
    assert new_name == clean and before.agents <= after.agents
    assert {r[0] for r in after.roles - before.roles} == {role}
    assert role not in {r[0] for r in before.roles}  # never an existing role taken over
    assert after.members - before.members == {(identity.GROUP, role)}
    assert before.members <= after.members
    succeeded(agent_cmd(chat, "remove", name))
    assert snapshot(chat.db) == before


@SETTINGS
@given(name=names)
def test_agent_remove(chat: Chat, name: str) -> None:
    before = snapshot(chat.db)
    assert before == chat.start
    clean = valid_agent_name(name)
    done = agent_cmd(chat, "remove", name)
    after = snapshot(chat.db)
    if clean not in BASELINE:
        failed_cleanly(done)  # invalid, or no such agent
        assert after == before
        return
    succeeded(done)
    [(gone, role)] = before.agents - after.agents
    assert gone == clean and after.agents <= before.agents
    assert {r[0] for r in before.roles - after.roles} == {role}
    assert after.tables == before.tables and after.chat == before.chat
    identity.add(chat.db, clean, passfile=chat.passfile)  # the baseline again
    assert snapshot(chat.db) == before


def expected_recipients(name: str) -> list[str] | None:
    """What `send --to NAME` addresses (None: refused as input)."""
    items = [n for n in name.split(",") if n.strip()]
    try:
        return messages.check_mentions(items)
    except errors.InvalidInput:
        return None


@SETTINGS
@given(name=names)
def test_send_to(chat: Chat, name: str) -> None:
    before = snapshot(chat.db)
    to = expected_recipients(name)
    text = f"hostile {uuid.uuid4().hex[:6]}"
    done = invoke("send", "--dsn", chat.db, "--as", "graybeard", "--to", name, text)
    after = snapshot(chat.db)
    ok = to is not None and all(n == "*" or n in BASELINE for n in to)
    if not ok:
        failed_cleanly(done)
        assert after == before
        return
    succeeded(done)
    [(_, sender, mentions, stored)] = after.chat - before.chat
    assert (sender, sorted(mentions), stored) == ("graybeard", sorted(set(to or [])), text)
    assert after.chat >= before.chat
    assert (after.roles, after.members, after.tables, after.agents) == (
        before.roles, before.members, before.tables, before.agents,
    )  # fmt: skip


@SETTINGS
@given(name=names)
def test_listen_as(chat: Chat, name: str) -> None:
    before = snapshot(chat.db)
    marks_before = set(helpers.marks(chat.db))
    try:
        clean: str | None = messages.check_name(name)
    except errors.InvalidInput:
        clean = None
    done = invoke("listen", "--dsn", chat.db, "--as", name, "--once")
    assert snapshot(chat.db) == before
    new_marks = set(helpers.marks(chat.db)) - marks_before
    if clean is None:
        failed_cleanly(done)
        assert not new_marks
        return
    succeeded(done)
    assert {agent for _, agent, _ in new_marks} <= {clean}  # only its own deliveries


@pytest.mark.parametrize("verb", ["add", "remove"])  # refused in one line, nothing made
def test_a_trailing_newline_is_refused_in_one_line(chat: Chat, verb: str) -> None:
    before = snapshot(chat.db)
    done = agent_cmd(chat, verb, "nova\n")
    assert snapshot(chat.db) == before
    failed_cleanly(done)
