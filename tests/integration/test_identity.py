"""Agent identity on real clusters (schema version 7, docs/identity.md): an agent's own role,
connecting over TCP with the password agent add wrote to a passfile, gets a permission error for
every forbidden action and can do exactly what an agent needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import errors, identity
from agentchat.agent import Agent
from agentchat.embeddings import Worker, search
from agentchat.embeddings.embedders import OpenAIEmbedder
from agentchat.replication.passfile import read_passfile
from agentchat.server import Cluster
from tests import helpers
from tests.embedding_stub import serve
from tests.helpers import execute, invoke, marks


@dataclass
class Agents:
    """nova (reads channel ops) and sage registered in *db*; their DSNs over TCP with the
    passfile agent add wrote."""

    db: str
    passfile: Path
    nova: str
    sage: str
    nova_role: str
    sage_role: str


def _drop_role(hub: Cluster, role: str) -> None:
    with psycopg.connect(hub.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def agent_dsn(hub: Cluster, db: str, role: str, passfile: Path) -> str:
    """Over TCP with password authentication, as another machine would connect."""
    return _conninfo.make_conninfo(
        hub.tcp_conninfo(helpers.dbname(db)), user=role, passfile=str(passfile)
    )


@pytest.fixture
def agents(hub: Cluster, installed_db: str, tmp_path: Path) -> Iterator[Agents]:
    passfile = tmp_path / "pgpass"
    nova = identity.add(installed_db, "nova", channels=["ops"], passfile=passfile)
    sage = identity.add(installed_db, "sage", passfile=passfile)
    # the seed's sender: an agent's replies go to registered agents only
    graybeard = identity.add(installed_db, "graybeard", passfile=passfile)
    try:
        yield Agents(
            installed_db, passfile,
            agent_dsn(hub, installed_db, nova.entry.role, passfile),
            agent_dsn(hub, installed_db, sage.entry.role, passfile),
            nova.entry.role, sage.entry.role,
        )  # fmt: skip
    finally:
        for added in (nova, sage, graybeard):
            try:
                identity.remove(installed_db, added.entry.name, passfile=passfile)
            except errors.AgentchatError:
                _drop_role(hub, added.entry.role)


def seed(db: str) -> dict[str, int]:
    """The seed's plain INSERTs, as the owner: one message of each kind nova may or may not
    read."""
    rows = {
        "to_sage": ("graybeard", "for sage only", ["sage"], "general"),
        "to_all": ("graybeard", "for everyone", ["*"], "general"),
        "on_ops": ("graybeard", "ops chatter", [], "ops"),
        "elsewhere": ("graybeard", "ops elsewhere", [], "lab"),
        "from_nova": ("nova", "nova wrote this", ["graybeard"], "general"),
    }
    ids = {}
    for key, (sender, message, mentions, channel) in rows.items():
        ids[key] = execute(
            db,
            "INSERT INTO agent_chat (sender, message, mentions, channel)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (sender, message, mentions, channel),
        )[0][0]
    return ids


def denied(dsn: str, query: str, params: tuple[object, ...] = ()) -> str:
    """Run *query* as the agent: it must fail with insufficient_privilege; the message."""
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as caught,
    ):
        conn.execute(query.encode(), params)
    return str(caught.value)


def as_role(role: str) -> sql.Composed:
    return sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role))


def rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list(conn.execute(query.encode(), params))


# -- forbidden -----------------------------------------------------------------------------------


def test_an_agent_cannot_send_as_another(agents: Agents) -> None:
    text = denied(agents.nova, "SELECT send_agent_message('sage', 'i am sage', ARRAY['*'])")
    assert "agent nova cannot send as sage" in text
    denied(
        agents.nova,
        "SELECT send_agent_reply('sage', 'i am sage', '{}', 'general', %s, 'sage:1:1')",
        (seed(agents.db)["to_all"],),
    )
    done = invoke("send", "--dsn", agents.nova, "--as", "sage", "--to", "nova", "hello")
    helpers.one_line_error(done, "agent nova cannot send as sage", 1)
    assert execute(agents.db, "SELECT count(*) FROM agent_chat WHERE sender = 'sage'") == [(0,)]


def test_an_agent_cannot_use_another_agents_reply_key(agents: Agents) -> None:
    ids = seed(agents.db)
    text = denied(
        agents.nova,
        "SELECT send_agent_reply('nova', 'hi', '{}', 'general', %s, 'sage:1:1')",
        (ids["to_all"],),
    )
    assert "reply key" in text


def test_an_agent_sends_only_to_registered_agents(agents: Agents) -> None:
    with (
        psycopg.connect(agents.nova, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InvalidParameterValue, match=r"unknown agent.*graybaerd"),
    ):
        conn.execute("SELECT send_agent_message('nova', 'hi', ARRAY['graybaerd', 'sage'])")


def test_an_agent_cannot_write_the_chat_directly(agents: Agents) -> None:
    ids = seed(agents.db)
    denied(agents.nova, "INSERT INTO agent_chat (sender, message) VALUES ('nova', 'raw')")
    denied(agents.nova, "UPDATE agent_chat SET message = 'changed' WHERE id = %s",
           (ids["from_nova"],))  # fmt: skip
    denied(agents.nova, "DELETE FROM agent_chat WHERE id = %s", (ids["from_nova"],))
    denied(agents.nova, "TRUNCATE agent_chat")
    assert execute(agents.db, "SELECT count(*) FROM agent_chat") == [(len(ids),)]


def test_an_agent_cannot_touch_the_embedding_queue(agents: Agents) -> None:
    ids = seed(agents.db)
    denied(agents.nova, "UPDATE memory_embeddings SET content = 'x' WHERE source_id = %s",
           (ids["from_nova"],))  # fmt: skip
    denied(agents.nova, "DELETE FROM memory_embeddings WHERE source_id = %s", (ids["from_nova"],))
    denied(
        agents.nova,
        "INSERT INTO memory_embeddings (source_type, source_id, content, content_hash)"
        " VALUES ('agent_chat', 1, 'x', 'x')",
    )
    assert execute(agents.db, "SELECT count(*) FROM memory_embeddings") == [(len(ids),)]


def test_an_agent_cannot_read_the_settings_or_the_node_registry(agents: Agents) -> None:
    denied(agents.nova, "SELECT * FROM agentchat_settings")
    denied(agents.nova, "SELECT * FROM agentchat_nodes")
    denied(agents.nova, "SELECT * FROM agentchat_migrations")


def test_an_agent_reads_only_what_is_for_it(agents: Agents) -> None:
    ids = seed(agents.db)
    readable = {ids[k] for k in ("to_all", "on_ops", "from_nova")}
    seen = {r[0] for r in rows(agents.nova, "SELECT id FROM agent_chat")}
    assert seen == readable
    assert rows(agents.nova, "SELECT * FROM agent_chat WHERE id = %s", (ids["to_sage"],)) == []
    # search reads memory_embeddings: only the rows of readable messages
    embedded = {r[0] for r in rows(agents.nova, "SELECT source_id FROM memory_embeddings")}
    assert embedded == readable
    # sage reads its own message and everyone's, not nova's channel
    sage_sees = {r[0] for r in rows(agents.sage, "SELECT id FROM agent_chat")}
    assert sage_sees == {ids["to_sage"], ids["to_all"]}
    # the owner still reads everything
    assert execute(agents.db, "SELECT count(*) FROM agent_chat") == [(len(ids),)]


def test_an_agent_searches_only_what_it_may_read(agents: Agents) -> None:
    ids = seed(agents.db)
    with serve() as stub:
        embedder = OpenAIEmbedder(stub.url, "stub-model", backoff=0.01, dimension=stub.dimension)
        Worker(agents.db, embedder).run(once=True)  # the owner embeds every message
        everything = search(agents.db, "for sage only", embedder, limit=10)
        mine = search(agents.nova, "for sage only", embedder, limit=10)
    assert {h.message.id for h in everything} == set(ids.values())
    assert {h.message.id for h in mine} == {ids[k] for k in ("to_all", "on_ops", "from_nova")}


def test_an_agent_cannot_mark_another_agents_message(agents: Agents) -> None:
    ids = seed(agents.db)
    denied(
        agents.nova,
        "INSERT INTO agent_chat_processed (chat_id, agent, status) VALUES (%s, 'sage', 'routed')",
        (ids["to_all"],),
    )
    execute(
        agents.db,
        "INSERT INTO agent_chat_processed (chat_id, agent, status) VALUES (%s, 'sage', 'received')",
        (ids["to_all"],),
    )
    with psycopg.connect(agents.nova, autocommit=True) as conn:
        # sage's mark is invisible to nova: an update finds nothing, a re-labelling is refused
        assert conn.execute("SELECT * FROM agent_chat_processed").fetchall() == []
        cur = conn.execute("UPDATE agent_chat_processed SET status = 'failed' WHERE agent = 'sage'")
        assert cur.rowcount == 0
        conn.execute(
            "INSERT INTO agent_chat_processed (chat_id, agent, status)"
            " VALUES (%s, 'nova', 'routed')",
            (ids["to_all"],),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE agent_chat_processed SET agent = 'sage' WHERE agent = 'nova'")
    assert marks(agents.db, "sage") == [(ids["to_all"], "sage", "received")]


def test_an_agent_cannot_listen_as_another(agents: Agents) -> None:
    ids = seed(agents.db)
    with Agent("sage", agents.nova) as impostor, pytest.raises(errors.DatabaseError) as caught:
        list(impostor.messages(idle_timeout=0))
    assert caught.value.sqlstate == "42501"
    done = invoke("listen", "--dsn", agents.nova, "--as", "sage", "--once")
    line = helpers.one_line_error(done, "agent nova cannot ", 1)
    assert "agent sage" in line
    assert marks(agents.db, "sage") == []
    # the check a listener can make before it starts gives the same line
    with psycopg.connect(agents.nova, autocommit=True) as conn:
        with pytest.raises(errors.DatabaseError) as refused:
            identity.check_acting_as(conn, "sage")
        assert f"agentchat: error: {refused.value}" == line
        with pytest.raises(errors.DatabaseError, match="agent nova cannot send as sage"):
            identity.check_acting_as(conn, "Sage", listening=False)
        identity.check_acting_as(conn, " Nova")
    with psycopg.connect(agents.db, autocommit=True) as conn:
        identity.check_acting_as(conn, "sage")  # the owner is no agent: anything goes
    # the real sage still gets both of its messages
    with Agent("sage", agents.sage) as sage:
        got = [m.id for m in sage.messages(idle_timeout=0)]
    assert got == sorted([ids["to_sage"], ids["to_all"]])


def test_listening_as_another_agent_is_refused_even_with_nothing_to_claim(
    agents: Agents,
) -> None:
    """Not a listener that waits for nothing: the Agent refuses on connecting."""
    refused = pytest.raises(errors.DatabaseError, match="agent nova cannot record deliveries of")
    with refused, Agent("sage", agents.nova) as impostor:
        list(impostor.messages(idle_timeout=0))
    done = invoke("listen", "--dsn", agents.nova, "--as", "sage", "--idle-timeout", "1")
    helpers.one_line_error(done, "agent nova cannot record deliveries of agent sage", 1)


def test_the_own_marks_check_looks_the_agent_up_once_per_transaction(
    agents: Agents, installed_db: str
) -> None:
    """Schema version 9: a batch of marks costs one lookup of the session's agent, not one per
    mark (pg_stat_xact_user_functions counts the SECURITY DEFINER lookup's calls)."""
    for _ in range(3):
        seed(agents.db)
    with psycopg.connect(agents.nova) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM agent_chat ORDER BY id")]
    assert len(ids) >= 9  # what nova may read: it mentions nova, or is on ops, or from nova

    with psycopg.connect(installed_db) as owner:  # the superuser: it may count calls
        owner.execute("SET track_functions = 'all'")
        owner.execute(as_role(agents.nova_role))  # as nova, in one statement
        owner.execute(
            "INSERT INTO agent_chat_processed (chat_id, agent)"
            " SELECT id, 'nova' FROM unnest(%s::bigint[]) AS id",
            (ids,),
        )
        [(calls,)] = owner.execute(
            "SELECT calls FROM pg_stat_xact_user_functions"
            " WHERE funcname = 'agentchat_session_agent'"
        ).fetchall()
        owner.execute("RESET SESSION AUTHORIZATION")
        owner.rollback()
    # the RLS policy's lookup once per statement, the trigger's once per transaction
    assert calls == 2


def test_a_forged_own_marks_setting_changes_only_the_error(agents: Agents) -> None:
    """The cached agent in agentchat.session_agent decides nothing: row-level security refuses
    a mark for another agent whatever the setting says."""
    to_sage = seed(agents.db)["to_sage"]
    for forged in ("sage " + agents.nova_role, " " + agents.nova_role, "sage nobody"):
        with (
            psycopg.connect(agents.nova) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege) as caught,
        ):
            conn.execute("SELECT set_config('agentchat.session_agent', %s, true)", (forged,))
            conn.execute(
                "INSERT INTO agent_chat_processed (chat_id, agent) VALUES (%s, 'sage')",
                (to_sage,),
            )
        # the lookup was made again ("nobody" is not this role): the message names both agents
        if forged == "sage nobody":
            assert "agent nova cannot record deliveries of agent sage" in str(caught.value)
    assert marks(agents.db, "sage") == []


def test_the_own_marks_check_follows_the_session_role_within_a_transaction(
    agents: Agents, installed_db: str
) -> None:
    """The superuser's mark first (no agent: anything goes), then, in the same transaction, the
    same mark as nova's role: refused with the message that names the agents."""
    to_sage = seed(agents.db)["to_sage"]
    insert = "INSERT INTO agent_chat_processed (chat_id, agent) VALUES (%s, 'sage')"
    with psycopg.connect(installed_db) as owner:
        owner.execute(insert, (to_sage,))
        owner.execute("SAVEPOINT before")
        owner.execute("DELETE FROM agent_chat_processed WHERE chat_id = %s", (to_sage,))
        owner.execute(as_role(agents.nova_role))
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            owner.execute(insert, (to_sage,))
        assert "agent nova cannot record deliveries of agent sage" in str(caught.value)
        owner.rollback()


def test_an_agent_role_unknown_to_a_database_reads_and_sends_nothing(
    hub: Cluster, agents: Agents, installed_db2: str
) -> None:
    """Its group has rights in a database whose registry does not (yet) know it: fail closed."""
    seed(installed_db2)
    with psycopg.connect(installed_db2, autocommit=True) as conn:
        identity.grant_rights(conn)
    there = _conninfo.make_conninfo(
        hub.tcp_conninfo(helpers.dbname(installed_db2)), user=agents.nova_role,
        password=read_passfile(agents.passfile, agents.nova_role), passfile="/dev/null",
    )  # fmt: skip
    assert rows(there, "SELECT id FROM agent_chat") == []
    assert rows(there, "SELECT id FROM memory_embeddings") == []
    text = denied(there, "SELECT send_agent_message('nova', 'hello', ARRAY['*'])")
    assert f"role {agents.nova_role} is an agent's role, but no agent of database" in text
    (any_id,) = execute(installed_db2, "SELECT min(id) FROM agent_chat")[0]
    denied(
        there,
        "INSERT INTO agent_chat_processed (chat_id, agent) VALUES (%s, 'nova')",
        (any_id,),
    )


# -- allowed -------------------------------------------------------------------------------------


def test_the_allowed_path_end_to_end(agents: Agents) -> None:
    ids = seed(agents.db)
    send = ("send", "--dsn", agents.nova, "--as", "nova", "--to", "sage", "--json", "hello?")
    sent = json.loads(helpers.ok(invoke(*send)))
    question = sent["id"] if isinstance(sent, dict) else sent
    with Agent("sage", agents.sage) as sage:
        handled = sage.run(lambda msg: f"yes, #{msg.id}", idle_timeout=0)
    assert handled == 3  # to_sage, to_all, nova's question
    replies = execute(
        agents.db, "SELECT sender, mentions, reply_to FROM agent_chat WHERE sender = 'sage'"
        " ORDER BY reply_to"
    )  # fmt: skip
    assert {r[2] for r in replies} == {ids["to_sage"], ids["to_all"], question}
    assert {s for s, _, _ in replies} == {"sage"}
    assert {m[2] for m in marks(agents.db, "sage")} == {"responded"}
    # nova hears sage's answer to its question, and marks it as its own
    with Agent("nova", agents.nova) as nova:
        answers = [m for m in nova.messages(idle_timeout=0) if m.sender == "sage"]
    assert [m.reply_to for m in answers] == [question]
    assert {m[1] for m in marks(agents.db)} == {"sage", "nova"}


def test_the_owner_and_a_database_without_agents_behave_as_before(installed_db: str) -> None:
    (chat_id,) = execute(
        installed_db,
        "INSERT INTO agent_chat (sender, message, mentions) VALUES ('nova', 'hi', '{sage}')"
        " RETURNING id",
    )[0]
    sent = execute(installed_db, "SELECT send_agent_message('mallory', 'as anyone', '{nobody}')")
    assert sent[0][0] > chat_id
    with Agent("sage", installed_db) as sage:
        assert [m.id for m in sage.messages(idle_timeout=0)] == [chat_id]


def test_a_role_without_insert_still_cannot_send(hub: Cluster, installed_db: str) -> None:
    """SECURITY DEFINER gives nothing to a role that is not an agent's: it still needs INSERT."""
    role = "agentchat_test_reader"
    _drop_role(hub, role)
    execute(installed_db, f"CREATE ROLE {role} LOGIN")
    execute(installed_db, f"GRANT SELECT ON agent_chat TO {role}")
    try:
        dsn = _conninfo.make_conninfo(installed_db, user=role)
        denied(dsn, "SELECT send_agent_message('nova', 'hi')")
    finally:
        execute(installed_db, f"DROP OWNED BY {role}")
        _drop_role(hub, role)


# -- agent add / remove --------------------------------------------------------------------------


def test_adding_an_agent_again_changes_nothing_but_its_channels(
    hub: Cluster, agents: Agents
) -> None:
    before = agents.passfile.read_text()
    again = identity.add(agents.db, "nova", passfile=agents.passfile)
    assert (again.created, again.entry.role, again.entry.channels) == (
        False, agents.nova_role, ("ops",),
    )  # fmt: skip
    assert agents.passfile.read_text() == before
    again = identity.add(agents.db, "nova", channels=["ops", "lab"], passfile=agents.passfile)
    assert again.entry.channels == ("lab", "ops")
    rows(agents.nova, "SELECT 1")  # the password still works


def test_an_existing_role_is_never_taken_over(
    hub: Cluster, installed_db: str, tmp_path: Path
) -> None:
    _drop_role(hub, "ac_robin")
    execute(installed_db, "CREATE ROLE ac_robin NOLOGIN")
    passfile = tmp_path / "pgpass"
    try:
        added = identity.add(installed_db, "robin", passfile=passfile)
        assert added.entry.role.startswith("ac_robin_") and len(added.entry.role) == 15
        attrs = execute(installed_db, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'ac_robin'")
        assert attrs == [(False,)]
        member = execute(
            installed_db,
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
            " WHERE r.rolname = 'ac_robin'",
        )
        assert member == [(0,)]
        rows(agent_dsn(hub, installed_db, added.entry.role, passfile), "SELECT 1")
        identity.remove(installed_db, "robin", passfile=passfile)
        assert execute(
            installed_db, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'ac_robin%'"
        ) == [("ac_robin",)]
    finally:
        _drop_role(hub, "ac_robin")


def test_remove_drops_the_role_and_the_row_and_refuses_a_role_not_ours(
    hub: Cluster, installed_db: str, tmp_path: Path
) -> None:
    passfile = tmp_path / "pgpass"
    added = identity.add(installed_db, "wren", passfile=passfile)
    assert read_passfile(passfile, added.entry.role)
    identity.remove(installed_db, "wren", passfile=passfile)
    assert execute(installed_db, "SELECT count(*) FROM agentchat_agents") == [(0,)]
    assert execute(installed_db, "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_wren'") == [
        (0,)
    ]
    assert "ac_wren" not in passfile.read_text()
    # a registry row pointing at a role agent add did not make: refused, nothing dropped
    execute(installed_db, "INSERT INTO agentchat_agents (name, role) VALUES ('boss', 'postgres')")
    with pytest.raises(errors.DatabaseError, match="not one agentchat agent add made"):
        identity.remove(installed_db, "boss")
    assert execute(installed_db, "SELECT count(*) FROM agentchat_agents") == [(1,)]
    done = invoke("agent", "remove", "--dsn", installed_db, "nobody")
    helpers.one_line_error(done, "no agent nobody", 2)


def test_remove_ends_the_agents_sessions(hub: Cluster, installed_db: str, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    added = identity.add(installed_db, "tern", passfile=passfile)
    with psycopg.connect(agent_dsn(hub, installed_db, added.entry.role, passfile)) as conn:
        conn.execute("SELECT 1")
        identity.remove(installed_db, "tern", passfile=passfile)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert execute(installed_db, "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_tern'") == [
        (0,)
    ]


def test_bad_names_are_refused_and_nothing_is_made(installed_db: str) -> None:
    hostile = ("*", "", "Nova Smith", "x" * 64, "a;drop role postgres", "-x", "\u212aite", "\tnova")
    for name in hostile:
        done = invoke("agent", "add", "--dsn", installed_db, "--show-password", "--", name)
        helpers.one_line_error(done, "invalid agent name", 2)
    assert execute(installed_db, "SELECT count(*) FROM agentchat_agents") == [(0,)]


def test_the_password_is_in_no_output_and_no_log(
    hub: Cluster, installed_db: str, tmp_path: Path
) -> None:
    passfile = tmp_path / "pgpass"
    # every statement logged, errors with their statement: what a password must never be in
    name = helpers.dbname(installed_db)
    execute(installed_db, f"ALTER DATABASE {name} SET log_statement = 'all'")
    execute(installed_db, f"ALTER DATABASE {name} SET log_min_error_statement = 'error'")
    start = hub.log.stat().st_size
    as_json = invoke("agent", "add", "--dsn", installed_db, "kite", "--json", "--passfile",
                     str(passfile))  # fmt: skip
    text = invoke("agent", "add", "--dsn", installed_db, "kite", "--passfile", str(passfile))
    listed = invoke("agent", "list", "--dsn", installed_db, "--json")
    shown = invoke("agent", "add", "--dsn", installed_db, "lark", "--show-password", "--json")
    try:
        password = read_passfile(passfile, "ac_kite")
        assert password
        for done in (text, as_json, listed):
            helpers.ok(done)
            assert password not in done.stdout + done.stderr
        assert "password" not in json.loads(as_json.stdout)
        assert json.loads(as_json.stdout)["passfile"] == str(passfile)
        assert [a["agent"] for a in json.loads(listed.stdout)] == ["kite"]
        lark = json.loads(helpers.ok(shown))["password"]
        assert lark and lark != password
        # both passwords work over TCP, and neither is in the server log
        rows(agent_dsn(hub, installed_db, "ac_kite", passfile), "SELECT 1")
        lark_dsn = _conninfo.make_conninfo(
            hub.tcp_conninfo(helpers.dbname(installed_db)), user="ac_lark", password=lark,
            passfile="/dev/null",
        )  # fmt: skip
        rows(lark_dsn, "SELECT 1")
        log = hub.log.read_bytes()[start:].decode(errors="replace")
        assert "agentchat_agents" in log  # statements were logged
        assert password not in log and lark not in log
        assert "SCRAM-SHA-256$" not in log  # not even the verifier (logging off around it)
    finally:
        for name in ("kite", "lark"):
            invoke("agent", "remove", "--dsn", installed_db, name, "--passfile", str(passfile))
