"""Every statement NOVA's clients run (tests/fixtures/nova/, issue 16), run as their drivers send
it, against a default install and against ``agentchat install --compat nova``, with the results
their code expects (docs/nova.md).

Their clients connect as a least-privileged role with their usual grants: ``nova``, made and
granted by their own register-agent.sh's statements (installer.sql). Each test gets its own
database, a copy of a module template (installed, the grants given; for compat also the layer),
so that counts are exact; the compat copy then runs ``agentchat install --compat nova
--compat-role nova`` as a user would (the role's search_path is per database).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from agentchat import Agent, identity, install
from agentchat.server import Cluster
from tests import helpers, nova_clients
from tests.nova_clients import Result, Statement, run

#: the role (and agent name) their register-agent.sh makes for NOVA's main agent
NOVA = "nova"
#: agentchat ids are 63-bit; NOVA's clients see integer refs under --compat nova
INT4_MAX = 2**31 - 1


class S:
    """The fixtures by file."""

    seed_plugin = nova_clients.load("seed_plugin")
    seed_tools = nova_clients.load("seed_tools")
    plugin = nova_clients.load("plugin")
    installer = nova_clients.load("installer")
    scripts = nova_clients.load("scripts")


# -- databases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nova_role(hub: Cluster) -> Iterator[str]:
    """Role ``nova`` as their register-agent.sh makes it (when missing), with its password; dropped
    at the end if this module made it (roles outlive databases)."""
    with nova_clients.connect(hub.conninfo()) as admin:
        created = not run(admin, S.installer["register_role_exists"]).rows
        if created:
            assert run(admin, S.installer["register_create_role"]).status == "CREATE ROLE"
        assert run(admin, S.installer["register_set_password"]).status == "ALTER ROLE"
    yield NOVA
    if created:
        helpers.execute(hub.conninfo(), f'DROP ROLE IF EXISTS "{NOVA}"')


def _grant_as_register_agent(conninfo: str, *, sequence: bool) -> None:
    with nova_clients.connect(conninfo) as admin:
        for name in ("register_grant_agent_chat", "register_grant_processed"):
            assert run(admin, S.installer[name]).status == "GRANT"
        if sequence:
            assert run(admin, S.installer["register_grant_sequence"]).status == "GRANT"


def _module_template(hub: Cluster, hub_template: str, compat: bool) -> Iterator[str]:
    name = f"t_nova_{'compat' if compat else 'default'}_{uuid.uuid4().hex[:8]}"
    helpers.create_database(hub, name, hub_template)
    try:
        if compat:  # NOVA's order: the layer first, then their register-agent.sh (its GRANTs
            # name public.agent_chat_id_seq, which the layer makes), then the role's path
            install.install(hub.conninfo(name), compat=["nova"])
        _grant_as_register_agent(hub.conninfo(name), sequence=compat)
        helpers.execute(
            hub.conninfo(), f"ALTER DATABASE {name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )
        yield name
    finally:
        helpers.execute(hub.conninfo(), f"ALTER DATABASE {name} WITH IS_TEMPLATE false")
        helpers.drop_database(hub, name)


@pytest.fixture(scope="module")
def default_template(hub: Cluster, hub_template: str, nova_role: str) -> Iterator[str]:
    yield from _module_template(hub, hub_template, compat=False)


@pytest.fixture(scope="module")
def compat_template(hub: Cluster, hub_template: str, nova_role: str) -> Iterator[str]:
    yield from _module_template(hub, hub_template, compat=True)


@dataclass
class Db:
    kind: str  # "default" | "compat"
    dsn: str

    @property
    def compat(self) -> bool:
        return self.kind == "compat"

    def admin(self) -> psycopg.Connection[Any]:
        """The installing superuser (no compat search_path)."""
        return nova_clients.connect(self.dsn)

    def nova(self) -> psycopg.Connection[Any]:
        """Their clients' connection: role nova, its grants (and, under compat, its path)."""
        return nova_clients.connect(make_conninfo(self.dsn, user=NOVA))

    def query(self, query: str, *params: object) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(query.encode(), params or None).fetchall()

    def chat_id(self, their_id: object) -> int:
        """agentchat's id of a message, from the id their clients see (a ref under compat)."""
        if not self.compat:
            return int(str(their_id))
        rows = self.query(
            "SELECT chat_id FROM agentchat_nova.chat_refs WHERE ref = %s", int(str(their_id))
        )
        assert rows, f"no message with ref {their_id}"
        return int(rows[0]["chat_id"])

    def message(self, their_id: object) -> dict[str, Any]:
        rows = self.query("SELECT * FROM public.agent_chat WHERE id = %s", self.chat_id(their_id))
        assert len(rows) == 1
        return rows[0]

    def mark(self, their_id: object, agent: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM public.agent_chat_processed WHERE chat_id = %s AND agent = %s",
            self.chat_id(their_id),
            agent,
        )
        return rows[0] if rows else None

    def post(
        self,
        sender: str,
        text: str,
        to: list[str],
        *,
        created_at: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
    ) -> int:
        """A message from one of agentchat's own senders (the superuser's raw INSERT into
        public.agent_chat); the id NOVA's clients see."""
        rows = self.query(
            "INSERT INTO public.agent_chat (sender, message, mentions, created_at, expires_at)"
            " VALUES (%s, %s, %s, coalesce(%s, now()), %s) RETURNING id",
            sender,
            text,
            to,
            created_at,
            expires_at,
        )
        chat_id = int(rows[0]["id"])
        if not self.compat:
            return chat_id
        ref = self.query("SELECT ref FROM agentchat_nova.chat_refs WHERE chat_id = %s", chat_id)
        return int(ref[0]["ref"])


@pytest.fixture
def default_db(hub: Cluster, default_template: str) -> Iterator[Db]:
    for conninfo in _copy(hub, default_template):
        yield Db("default", conninfo)


@pytest.fixture
def compat_db(hub: Cluster, compat_template: str) -> Iterator[Db]:
    for conninfo in _copy(hub, compat_template):
        report = install.install(conninfo, compat=["nova"], compat_roles=[NOVA])
        assert [(c.name, c.roles) for c in report.compat] == [("nova", [NOVA])]
        yield Db("compat", conninfo)


@pytest.fixture(params=["default", "compat"])
def any_db(request: pytest.FixtureRequest, hub: Cluster) -> Db:
    """The seed-era clients work on both (*hub*: the server version is this test's parameter)."""
    db: Db = request.getfixturevalue(f"{request.param}_db")
    return db


def _copy(cluster: Cluster, template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    helpers.create_database(cluster, name, template)
    try:
        yield cluster.conninfo(name)
    finally:
        helpers.drop_database(cluster, name)


def _notified(conn: psycopg.Connection[Any], channel: str) -> bool:
    return any(n.channel == channel for n in conn.notifies(timeout=5, stop_after=1))


def _one(result: Result) -> dict[str, Any]:
    assert len(result.rows) == 1, result
    return result.rows[0]


# -- the seed-era plugin and the agents' raw SQL: default install and compat -------------------


def test_seed_plugin_message_cycle(any_db: Db) -> None:
    """The seed-era plugin of agent newhart (as role nova): a raw INSERT by NOVA's agent wakes
    it, it fetches the message (its name only, never '*'), marks it received, replies (mentions
    '{}', reply_to the message), marks it responded then routed (its code's order), and fails
    another one with its error text."""
    db, plugin, agent = any_db, S.seed_plugin, "newhart"
    with db.nova() as listener, db.nova() as tools:
        assert run(listener, plugin["listen"]).status == "LISTEN"
        assert run(tools, S.seed_tools["skill_example_send"]).status == "INSERT 0 1"
        assert _notified(listener, "agent_chat")
        db.post("orion", "to everyone", ["*"])
        db.post("orion", "to someone else", ["vega"])
        db.post("orion", "second, to NEWHART", ["NEWHART"])
        assert _one(run(listener, plugin["keep_alive"])) == {"?column?": 1}

        fetched = run(listener, plugin["fetch_unprocessed"], agent).rows
        assert [(m["sender"], m["message"][:12], m["mentions"]) for m in fetched] == [
            ("nova", "Hey Newhart,", ["newhart"]),
            ("orion", "second, to N", ["newhart"]),
        ]
        first, second = fetched
        assert first["channel"] == "general" and first["reply_to"] is None
        assert isinstance(first["created_at"], dt.datetime)
        if db.compat:
            assert 0 < first["id"] <= INT4_MAX

        assert run(listener, plugin["mark_received"], first["id"], agent).status == "INSERT 0 1"
        mark = db.mark(first["id"], agent)
        assert mark is not None and mark["status"] == "received" and mark["received_at"]
        received_at = mark["received_at"]
        # again (a second notification): ON CONFLICT keeps the first received_at
        assert run(listener, plugin["mark_received"], first["id"], agent).rowcount == 1
        assert db.mark(first["id"], agent)["received_at"] == received_at  # type: ignore[index]
        assert [m["id"] for m in run(listener, plugin["fetch_unprocessed"], agent).rows] == [
            second["id"]
        ]

        reply = _one(
            run(listener, plugin["insert_outbound"], "general", agent, "on it", [], first["id"])
        )
        stored = db.message(reply["id"])
        assert (stored["sender"], stored["message"], stored["mentions"]) == (agent, "on it", [])
        assert stored["reply_to"] == db.chat_id(first["id"])
        assert run(listener, plugin["mark_responded"], first["id"], agent).status == "UPDATE 1"
        responded = db.mark(first["id"], agent)
        assert responded is not None and responded["status"] == "responded"
        assert responded["responded_at"] and responded["routed_at"] is None
        assert run(listener, plugin["mark_routed"], first["id"], agent).status == "UPDATE 1"
        routed = db.mark(first["id"], agent)
        assert routed is not None and routed["status"] == "routed"
        assert routed["routed_at"] >= routed["responded_at"] == responded["responded_at"]

        run(listener, plugin["mark_received"], second["id"], agent)
        failed = run(listener, plugin["mark_failed"], second["id"], agent, "dispatch: boom")
        assert failed.status == "UPDATE 1"
        mark = db.mark(second["id"], agent)
        assert mark is not None and mark["status"] == "failed"
        assert mark["error_message"] == mark["error"] == "dispatch: boom"

        assert run(listener, plugin["fetch_unprocessed"], agent).rows == []
        assert run(listener, plugin["unlisten"]).status == "UNLISTEN"


def test_seed_raw_inserts_are_normalised(any_db: Db) -> None:
    """The skill's INSERT with ARRAY['NOVA'] is stored as {nova} (sender too), so NOVA's own
    polling (mentions @> ARRAY['nova']) finds it; the same INSERT by a peer reaches agentchat's
    Agent nova. Every agents' statement runs as role nova."""
    db, tools = any_db, S.seed_tools
    with db.nova() as conn:
        assert run(conn, tools["skill_send"]).status == "INSERT 0 1"
        stored = db.query("SELECT sender, mentions FROM public.agent_chat")
        assert stored == [{"sender": "nova", "mentions": ["nova"]}]
        polled = run(conn, tools["protocol_poll"]).rows
        assert [(m["sender"], m["message"]) for m in polled] == [("nova", "Your message here")]

        # the same skill as a peer runs it, with its own name as sender
        peer = tools["skill_send"].replacing("('NOVA', ", "('Newhart', ")
        assert run(conn, peer).status == "INSERT 0 1"
        for name in (
            "skill_example_send", "protocol_send", "protocol_send_multiline",
            "protocol_send_alias", "protocol_send_multi",
        ):  # fmt: skip
            assert run(conn, tools[name]).status == "INSERT 0 1", name
        mentions = db.query("SELECT sender, mentions FROM public.agent_chat ORDER BY id")
        assert mentions == [
            {"sender": "nova", "mentions": ["nova"]},
            {"sender": "newhart", "mentions": ["nova"]},
            {"sender": "nova", "mentions": ["newhart"]},
            {"sender": "mcp-name", "mentions": ["peer-unix-user"]},
            {"sender": "mcp", "mentions": ["agent-architect"]},
            {"sender": "nova", "mentions": ["architect"]},
            {"sender": "nova", "mentions": ["architect", "coder", "qa-bot"]},
        ]
        for name in ("skill_check_recent", "protocol_check_recent"):
            recent = run(conn, tools[name]).rows
            assert len(recent) == 7 and recent[0]["preview"].startswith("Please coordinate")
            assert recent[-1]["preview"] == "Your message here", name
        example = run(conn, tools["skill_example_check"]).rows
        assert len(example) == 7 and example[0]["mentions"] == ["architect", "coder", "qa-bot"]

    with Agent(NOVA, db.dsn, poll_interval=0.2) as nova:
        got = [(m.sender, m.message) for m in nova.messages(idle_timeout=0)]
    assert got == [("newhart", "Your message here")]  # its own message is not its mail
    assert [m["status"] for m in db.query("SELECT status FROM public.agent_chat_processed")] == [
        "routed"
    ]


# -- the current plugin and scripts: they need --compat nova -------------------------------------


#: (file, statement, its parameters, the error, its first line) on a default install
FAILING_ON_DEFAULT = [
    ("plugin", "fetch_unprocessed", (NOVA,), psycopg.errors.UndefinedColumn,
     "column ac.recipients does not exist"),
    ("plugin", "send", (NOVA, "hi", ["orion"], None, None), psycopg.errors.UndefinedFunction,
     "function send_agent_message(text, text, text[], p_ttl => interval, p_reply_to =>"
     " integer) does not exist"),
    ("scripts", "daily_log_total", ("2026-01-01", "2026-01-02"),
     psycopg.errors.UndefinedColumn, 'column "timestamp" does not exist'),
    ("scripts", "daily_log_top_senders", ("2026-01-01", "2026-01-02"),
     psycopg.errors.UndefinedColumn, 'column "timestamp" does not exist'),
    ("scripts", "gate_unacknowledged", (), psycopg.errors.UndefinedColumn,
     "column ac.recipients does not exist"),
    ("installer", "cron_expire_old_chat", (), psycopg.errors.UndefinedFunction,
     "function expire_old_chat() does not exist"),
    ("installer", "install_schema_version", (), psycopg.errors.UndefinedTable,
     'relation "public.schema_version" does not exist'),
    ("installer", "register_grant_sequence", (), psycopg.errors.UndefinedTable,
     'relation "public.agent_chat_id_seq" does not exist'),
]  # fmt: skip


@pytest.fixture(scope="module")
def shared_default_db(hub: Cluster, default_template: str) -> Iterator[Db]:
    """One default-install copy for the tests that change nothing in it."""
    for conninfo in _copy(hub, default_template):
        yield Db("default", conninfo)


@pytest.mark.parametrize(
    ("file", "name", "params", "error", "text"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}") for case in FAILING_ON_DEFAULT],
)
def test_current_clients_fail_on_a_default_install(
    shared_default_db: Db,
    file: str,
    name: str,
    params: tuple[object, ...],
    error: type,
    text: str,
) -> None:
    """The issue's failures, unchanged without --compat (their installer's, as the
    superuser; the rest as role nova)."""
    default_db = shared_default_db
    stmt: Statement = getattr(S, file)[name]
    conn = default_db.admin() if file == "installer" else default_db.nova()
    with conn, pytest.raises(error) as raised:
        run(conn, stmt, *params)
    assert str(raised.value).splitlines()[0] == text


def test_current_plugin_on_a_default_install_marks_work(default_db: Db) -> None:
    """Its marks are the seed's columns (0008): they work without --compat; only its fetch
    and send need the layer."""
    chat_id = default_db.post("orion", "hello", [NOVA])
    with default_db.nova() as conn:
        for name in ("mark_received", "mark_routed", "mark_responded"):
            assert run(conn, S.plugin[name], chat_id, NOVA).rowcount == 1, name
        mark = default_db.mark(chat_id, NOVA)
        assert mark is not None and mark["status"] == "responded"
        assert mark["routed_at"] and mark["responded_at"]


def test_current_plugin_message_cycle(compat_db: Db) -> None:
    """The current plugin (agent nova, role nova): woken by a notification, it fetches its
    messages and '*' broadcasts with integer ids, oldest first; marks received; replies
    through NOVA's send_agent_message (the new message's integer id comes back, the reply is
    stored with reply_to and recipients); responded, then routed is not written over it
    (its guard); routed for a broadcast it does not answer; failed with its text."""
    db, plugin = compat_db, S.plugin
    with db.nova() as conn:
        assert run(conn, plugin["listen"]).status == "LISTEN"
        direct = db.post("orion", "hello nova", ["NOVA"])
        assert _notified(conn, "agent_chat")
        broadcast = db.post("vega", "to everyone", ["*"])
        db.post("vega", "not for nova", ["orion"])
        third = db.post("orion", "this one fails", [NOVA])
        assert _one(run(conn, plugin["keep_alive"])) == {"?column?": 1}

        fetched = run(conn, plugin["fetch_unprocessed"], NOVA).rows
        assert [(m["id"], m["sender"], m["recipients"]) for m in fetched] == [
            (direct, "orion", [NOVA]),
            (broadcast, "vega", ["*"]),
            (third, "orion", [NOVA]),
        ]
        assert set(fetched[0]) == {"id", "sender", "message", "recipients", "reply_to", "timestamp"}
        assert all(isinstance(m["id"], int) and 0 < m["id"] <= INT4_MAX for m in fetched)
        assert fetched[0]["timestamp"] <= fetched[1]["timestamp"] <= fetched[2]["timestamp"]

        for chat in (direct, broadcast, third):
            assert run(conn, plugin["mark_received"], chat, NOVA).status == "INSERT 0 1"
        assert run(conn, plugin["fetch_unprocessed"], NOVA).rows == []

        sent = _one(run(conn, plugin["send"], NOVA, "hi orion", ["orion"], None, direct))
        assert isinstance(sent["id"], int) and 0 < sent["id"] <= INT4_MAX
        reply = db.message(sent["id"])
        assert (reply["sender"], reply["message"], reply["mentions"]) == (
            NOVA, "hi orion", ["orion"],
        )  # fmt: skip
        assert reply["reply_to"] == db.chat_id(direct) and reply["expires_at"] is None
        assert run(conn, plugin["mark_responded"], direct, NOVA).status == "UPDATE 1"
        assert run(conn, plugin["mark_routed"], direct, NOVA).status == "UPDATE 0"
        mark = db.mark(direct, NOVA)
        assert mark is not None and mark["status"] == "responded"
        assert mark["responded_at"] and mark["routed_at"] is None

        assert run(conn, plugin["mark_routed"], broadcast, NOVA).status == "UPDATE 1"
        mark = db.mark(broadcast, NOVA)
        assert mark is not None and mark["status"] == "routed" and mark["routed_at"]

        text = f"Reply for message {third} rejected: invalid reply_to (foreign key violation)"
        assert run(conn, plugin["mark_failed"], third, NOVA, text).status == "UPDATE 1"
        mark = db.mark(third, NOVA)
        assert mark is not None and (mark["status"], mark["error_message"]) == ("failed", text)
        # and routed does not write over failed either
        assert run(conn, plugin["mark_routed"], third, NOVA).rowcount == 0

        # their view of the marks: the same rows, by integer id
        view = conn.execute(
            b"SELECT chat_id, status FROM agent_chat_processed WHERE agent = 'nova'"
            b" ORDER BY chat_id"
        ).fetchall()
        assert view == sorted([(direct, "responded"), (broadcast, "routed"), (third, "failed")])
        assert run(conn, plugin["unlisten"]).status == "UNLISTEN"

    # the reply reaches agentchat's Agent orion (after its other mail), as a reply to its message
    with Agent("orion", db.dsn, poll_interval=0.2) as orion:
        got = [(m.sender, m.message, m.reply_to) for m in orion.messages(idle_timeout=0)]
    assert got == [
        ("vega", "to everyone", None),
        ("vega", "not for nova", None),
        (NOVA, "hi orion", db.chat_id(direct)),
    ]


def test_send_checks_as_their_code_expects(compat_db: Db) -> None:
    """NOVA's send_agent_message refuses what theirs refuses; an unknown reply_to is the
    foreign-key violation (23503) their deliver callback turns into a failed mark."""
    with compat_db.nova() as conn:
        send = S.plugin["send"]
        cases: list[tuple[tuple[object, ...], str, str]] = [
            (("orion", "hi", ["vega"], None, None), "42501", "sender must match session_user"),
            ((NOVA, "hi", [], None, None), "22023", "recipients cannot be NULL or empty"),
            ((NOVA, "hi", ["NOVA"], None, None), "22023", "agents cannot message themselves"),
            ((NOVA, "hi", ["orion"], None, 999_999), "23503", "agent_chat_reply_to_fkey"),
        ]
        for params, sqlstate, text in cases:
            with pytest.raises(psycopg.Error) as raised:
                run(conn, send, *params)
            assert raised.value.sqlstate == sqlstate, params
            assert text in str(raised.value), params
    assert compat_db.query("SELECT count(*) AS n FROM public.agent_chat") == [{"n": 0}]


def test_ttl_is_stored_and_honoured(compat_db: Db) -> None:
    """p_ttl is stored as public.agent_chat.expires_at; once past it, their fetch no longer
    returns the message, agentchat's Agent records it expired instead of handing it over, and
    the nightly expire_old_chat deletes it."""
    db, plugin = compat_db, S.plugin
    with db.nova() as conn:
        hour = _one(run(conn, plugin["send"], NOVA, "within the hour", ["orion"], "1 hour", None))
        short = _one(run(conn, plugin["send"], NOVA, "quick", ["orion"], "300 milliseconds", None))
        stored = db.message(hour["id"])
        span = db.query(
            "SELECT expires_at - created_at AS ttl FROM public.agent_chat WHERE id = %s",
            db.chat_id(hour["id"]),
        )
        assert span == [{"ttl": dt.timedelta(hours=1)}] and stored["expires_at"] is not None
        ids = [m["id"] for m in run(conn, plugin["fetch_unprocessed"], "orion").rows]
        assert ids == [hour["id"], short["id"]]

        time.sleep(0.4)
        ids = [m["id"] for m in run(conn, plugin["fetch_unprocessed"], "orion").rows]
        assert ids == [hour["id"]]
        short_chat_id = db.chat_id(short["id"])

    with Agent("orion", db.dsn, poll_interval=0.2) as orion:
        assert [m.message for m in orion.messages(idle_timeout=0)] == ["within the hour"]
    marks = db.query("SELECT chat_id, status FROM public.agent_chat_processed ORDER BY status")
    assert marks == [
        {"chat_id": short_chat_id, "status": "expired"},
        {"chat_id": db.chat_id(hour["id"]), "status": "routed"},
    ]

    with db.nova() as conn:
        assert _one(run(conn, S.installer["cron_expire_old_chat"])) == {"expire_old_chat": 1}
    left = db.query("SELECT message FROM public.agent_chat")
    assert left == [{"message": "within the hour"}]
    assert db.query(
        "SELECT count(*) AS n FROM public.agent_chat_processed WHERE chat_id = %s", short_chat_id
    ) == [{"n": 0}]


def test_expire_old_chat(compat_db: Db) -> None:
    """The cron's ``SELECT expire_old_chat();`` (as their role): messages older than 90 days
    and expired ones go, with their marks and refs; the count comes back. Nobody without the
    layer's search_path sees the function."""
    db = compat_db
    now = dt.datetime.now(dt.UTC)
    old = db.post("orion", "old", [NOVA], created_at=now - dt.timedelta(days=91))
    db.post("orion", "expired", [NOVA], expires_at=now - dt.timedelta(minutes=1))
    kept_old = db.post("orion", "89 days", [NOVA], created_at=now - dt.timedelta(days=89))
    kept = db.post("orion", "fresh", [NOVA], expires_at=now + dt.timedelta(days=1))
    old_chat_id = db.chat_id(old)
    with db.nova() as conn:
        run(conn, S.plugin["mark_received"], old, NOVA)
        with db.admin() as admin, pytest.raises(psycopg.errors.UndefinedFunction):
            run(admin, S.installer["cron_expire_old_chat"])
        assert _one(run(conn, S.installer["cron_expire_old_chat"])) == {"expire_old_chat": 2}
        assert _one(run(conn, S.installer["cron_expire_old_chat"])) == {"expire_old_chat": 0}
        fetched = run(conn, S.plugin["fetch_unprocessed"], NOVA).rows
    assert [m["id"] for m in fetched] == [kept_old, kept]
    assert [
        m["message"] for m in db.query("SELECT message FROM public.agent_chat ORDER BY id")
    ] == [
        "89 days",
        "fresh",
    ]
    assert db.query("SELECT count(*) AS n FROM public.agent_chat_processed") == [{"n": 0}]
    assert db.query(
        "SELECT count(*) AS n FROM agentchat_nova.chat_refs WHERE chat_id = %s", old_chat_id
    ) == [{"n": 0}]


def test_scripts_count_correctly(compat_db: Db) -> None:
    """generate-daily-log.py's day counts (UTC-aware [start, end), top senders by count then
    name) and proactive-gate-check.py's unacknowledged count for nova."""
    db = compat_db
    today = dt.datetime.now(dt.UTC).date()
    start = dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    db.post("orion", "yesterday", [NOVA], created_at=start - dt.timedelta(seconds=1))
    first = db.post("orion", "one", [NOVA])
    db.post("vega", "two", ["*"])
    db.post("orion", "three", ["vega"])
    db.post("vega", "four", ["vega", "NOVA"])
    with db.nova() as conn:
        run(conn, S.plugin["send"], NOVA, "five", ["orion"], None, None)
        assert _one(run(conn, S.scripts["daily_log_total"], start, end)) == {"total": 5}
        top = run(conn, S.scripts["daily_log_top_senders"], start, end).rows
        assert top == [
            {"sender": "orion", "cnt": 2},
            {"sender": "vega", "cnt": 2},
            {"sender": "nova", "cnt": 1},
        ]
        yesterday = (start - dt.timedelta(days=1), start)
        assert _one(run(conn, S.scripts["daily_log_total"], *yesterday)) == {"total": 1}

        # messages naming nova (not '*': their gate counts only its name) without nova's mark
        assert _one(run(conn, S.scripts["gate_unacknowledged"])) == {"count": 3}
        run(conn, S.plugin["mark_received"], first, NOVA)
        assert _one(run(conn, S.scripts["gate_unacknowledged"])) == {"count": 2}


# -- their installer and register-agent.sh -------------------------------------------------------


def test_installer_statements_under_compat(compat_db: Db) -> None:
    """install.sh, run again on the database, finds schema_version 4 (up to date: applies
    nothing); its checks pass for the installing superuser; register-agent.sh's statements
    all succeed, and role nova logs in. The drift check reads agentchat's columns (their
    script only warns)."""
    db, inst = compat_db, S.installer
    name = helpers.dbname(db.dsn)
    with db.admin() as admin:
        databases = [r["datname"] for r in run(admin, inst["install_list_databases"]).rows]
        assert name in databases
        assert _one(run(admin, inst["install_connectivity"])) == {"?column?": 1}
        assert _one(run(admin, inst["install_can_createdb"])) == {"?column?": True}
        assert _one(run(admin, inst["install_schema_version"])) == {"coalesce": 4}
        drift = _one(run(admin, inst["install_drift"]))["string_agg"]
        assert drift.startswith("id,channel,sender,message,mentions,reply_to,created_at")
        assert "expires_at" in drift.split(",")

        assert _one(run(admin, inst["register_connectivity"])) == {"?column?": 1}
        assert _one(run(admin, inst["register_can_createrole"])) == {"?column?": True}
        assert _one(run(admin, inst["register_role_exists"])) == {"?column?": 1}
        with pytest.raises(psycopg.errors.DuplicateObject):  # their script checks first
            run(admin, inst["register_create_role"])
        assert run(admin, inst["register_set_password"]).status == "ALTER ROLE"
        for grant in ("agent_chat", "processed", "sequence"):
            assert run(admin, inst[f"register_grant_{grant}"]).status == "GRANT"
    with db.nova() as conn:
        assert _one(run(conn, inst["register_verify_login"])) == {"?column?": 1}
        # their role sees the same handshake (public.schema_version is in public)
        assert _one(run(conn, inst["install_schema_version"])) == {"coalesce": 4}


def test_installer_statements_on_a_default_install(shared_default_db: Db) -> None:
    """Without --compat their install.sh's version check fails (its ``|| echo "0"`` then
    applies their schema.sql: the reason for the layer's handshake table); its other checks
    and register-agent.sh's table grants work, its sequence GRANT does not (see the failing
    cases above)."""
    with shared_default_db.admin() as admin:
        assert _one(run(admin, S.installer["install_can_createdb"])) == {"?column?": True}
        drift = _one(run(admin, S.installer["install_drift"]))["string_agg"]
        assert drift.split(",")[:3] == ["id", "channel", "sender"]
    with shared_default_db.nova() as conn:
        assert _one(run(conn, S.installer["register_verify_login"])) == {"?column?": 1}
        assert _one(run(conn, S.installer["install_can_createdb"])) == {"?column?": False}


# -- agentchat's own API does not change --------------------------------------------------------


def test_agentchat_api_unchanged_in_a_compat_database(compat_db: Db, hub: Cluster) -> None:
    """In a database with the layer, a role without its search_path (the superuser, another
    role with the same grants) calls agentchat's send_agent_message unambiguously (bigint id,
    channel general); public has one send_agent_message. Role nova, whose path starts with
    the layer, gets NOVA's (an integer ref)."""
    db = compat_db
    assert db.query(
        "SELECT count(*) AS n FROM pg_proc WHERE proname = 'send_agent_message'"
        " AND pronamespace = 'public'::regnamespace"
    ) == [{"n": 1}]
    other = f"nova_peer_{uuid.uuid4().hex[:6]}"
    helpers.execute(db.dsn, f'CREATE ROLE "{other}" LOGIN')
    try:
        helpers.execute(db.dsn, f'GRANT SELECT, INSERT ON public.agent_chat TO "{other}"')
        for user in (None, other):
            conninfo = make_conninfo(db.dsn, user=user) if user else db.dsn
            sender = user or "a"
            with psycopg.connect(conninfo, autocommit=True) as conn:
                cur = conn.execute(
                    sql.SQL("SELECT send_agent_message({}, 'b', ARRAY['c'])").format(
                        sql.Literal(sender)
                    )
                )
                assert cur.description is not None and cur.description[0].type_code == 20
                (chat_id,) = cur.fetchone() or (None,)
            stored = db.query(
                "SELECT sender, channel, mentions FROM public.agent_chat WHERE id = %s", chat_id
            )
            assert stored == [{"sender": sender, "channel": "general", "mentions": ["c"]}]
    finally:
        helpers.execute(db.dsn, f'REVOKE ALL ON public.agent_chat FROM "{other}"')
        helpers.execute(hub.conninfo(), f'DROP ROLE "{other}"')
    with db.nova() as conn:
        cur = conn.execute(b"SELECT send_agent_message('nova', 'b', ARRAY['c'])")
        assert cur.description is not None and cur.description[0].type_code == 23  # integer


# -- the fixtures are all exercised ---------------------------------------------------------------


def test_every_statement_is_run_here() -> None:
    """Each fixture statement appears in this module (S.<file>["<name>"] or a loop over its
    name), so none is left untested."""
    source = Path(__file__).read_text(encoding="utf-8")
    quoted = set(re.findall(r'"([a-z_]+)"', source))
    grants = {f"register_grant_{g}" for g in ("agent_chat", "processed", "sequence")}
    missing = [
        f"{s.file}:{s.name}"
        for s in nova_clients.load_all()
        if s.name not in quoted and s.name not in grants
    ]
    assert missing == []


def test_legacy_ids_keep_their_number(compat_db: Db) -> None:
    """A migrated NOVA database's serial ids (below 2^30) are their own integer id for their
    clients: fetched, marked and replied to by that number; agentchat's new messages get ids
    from 2^30 on, so the two never meet."""
    db, plugin = compat_db, S.plugin
    db.query(
        "INSERT INTO public.agent_chat (id, sender, message, mentions, created_at)"
        " VALUES (1000, 'orion', 'from the old bus', ARRAY['nova'], now() - interval '1 day')"
        " RETURNING id"
    )
    new = db.post("orion", "after the move", [NOVA])
    assert new >= 2**30
    with db.nova() as conn:
        fetched = run(conn, plugin["fetch_unprocessed"], NOVA).rows
        assert [m["id"] for m in fetched] == [1000, new]
        assert run(conn, plugin["mark_received"], 1000, NOVA).status == "INSERT 0 1"
        sent = _one(run(conn, plugin["send"], NOVA, "late reply", ["orion"], None, 1000))
        assert sent["id"] >= 2**30 and sent["id"] != new
        reply = run(conn, S.seed_tools["skill_check_recent"]).rows
    assert db.mark(1000, NOVA) is not None and db.chat_id(1000) == 1000
    assert db.message(sent["id"])["reply_to"] == 1000
    assert [m["id"] for m in reply] == [sent["id"], new]  # the last 10 minutes, newest first


def test_current_plugin_as_an_agentchat_agent_role(compat_db: Db, tmp_path: Path) -> None:
    """The current plugin connecting as agentchat's agent role for nova (``agent add nova``,
    the role given to --compat-role): the sender check takes the agent's name, and row-level
    security applies through the layer's views (security_invoker): it fetches only its mail
    and '*', and their daily log, run as that role, counts only what the agent may read."""
    db, plugin = compat_db, S.plugin
    passfile = tmp_path / "pgpass"
    cleanup = contextlib.ExitStack()
    added = identity.add(db.dsn, NOVA, passfile=passfile)
    role = added.entry.role
    cleanup.callback(identity.remove, db.dsn, NOVA, passfile=passfile)  # the layer grants none
    # an agent role sends to registered agents only: the one it answers is one
    identity.add(db.dsn, "orion", passfile=passfile)
    cleanup.callback(identity.remove, db.dsn, "orion", passfile=passfile)
    with cleanup:
        report = install.install(db.dsn, compat=["nova"], compat_roles=[role])
        assert report.compat[0].roles == sorted([NOVA, role])
        direct = db.post("orion", "hello", [NOVA])
        broadcast = db.post("vega", "to everyone", ["*"])
        db.post("vega", "private", ["orion"])
        with nova_clients.connect(make_conninfo(db.dsn, user=role)) as conn:
            fetched = run(conn, plugin["fetch_unprocessed"], NOVA).rows
            assert [m["id"] for m in fetched] == [direct, broadcast]
            assert run(conn, plugin["mark_received"], direct, NOVA).status == "INSERT 0 1"
            sent = _one(run(conn, plugin["send"], NOVA, "hi orion", ["orion"], None, direct))
            assert db.message(sent["id"])["sender"] == NOVA
            with pytest.raises(psycopg.Error) as raised:
                run(conn, plugin["send"], role, "as the role", ["orion"], None, None)
            assert raised.value.sqlstate == "42501"
            assert run(conn, plugin["mark_responded"], direct, NOVA).status == "UPDATE 1"
            run(conn, plugin["mark_received"], broadcast, NOVA)
            assert run(conn, plugin["mark_routed"], broadcast, NOVA).status == "UPDATE 1"

            today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            day = (today, today + dt.timedelta(days=1))
            # hello, the broadcast, its own reply: not vega's private message to orion
            assert _one(run(conn, S.scripts["daily_log_total"], *day)) == {"total": 3}
            assert _one(run(conn, S.scripts["gate_unacknowledged"])) == {"count": 0}
        mark = db.mark(direct, NOVA)
        assert mark is not None and mark["status"] == "responded" and mark["responded_at"]
        mark = db.mark(broadcast, NOVA)
        assert mark is not None and mark["status"] == "routed" and mark["routed_at"]
        with db.nova() as conn:  # register-agent.sh's role reads every message
            assert _one(run(conn, S.scripts["daily_log_total"], *day)) == {"total": 4}
