"""NOVA's channel plugin's message loop, unchanged, on a replica of a two-database topology
(issue 16's "Done when").

The topology: the hub (an installed database on the ``hub`` cluster) and the agent's database on
the ``remote`` cluster (another "host": another superuser, TCP with passwords), joined two-way
by the library. The plugin (:mod:`tests.nova_plugin`: their startAgentChatMonitor and
processAgentChatMessage, every statement from ``tests/fixtures/nova``) runs in a thread on the
agent's database as the role their register-agent.sh makes (``nova``: SELECT, INSERT, UPDATE,
DELETE on agent_chat and agent_chat_processed, nothing else), or for the current plugin also as
an agentchat agent role. graybeard talks to it from the hub through agentchat's own API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import conninfo as _conninfo

from agentchat import Agent, identity, replication
from agentchat.server import Cluster
from tests import helpers
from tests.nova_clients import connect, load, run
from tests.nova_plugin import CURRENT, SEED, Plugin, Row

pytestmark = pytest.mark.slow

T = TypeVar("T")

#: the password the fixtures' register_set_password gives role nova
NOVA_PASSWORD = "nova-test-password"


@dataclass
class Topology:
    hub: str  #: the hub, as its superuser
    spoke: str  #: the agent's database, as its superuser over TCP (password)
    remote: Cluster

    def as_role(self, role: str, password: str | None = None, passfile: Path | None = None) -> str:
        """The agent's database over TCP as *role*, as their plugin's config connects."""
        extra: dict[str, Any] = {"user": role}
        if password is not None:
            extra["password"] = password
        if passfile is not None:
            extra["passfile"] = str(passfile)
        return _conninfo.make_conninfo(self.spoke, **extra)


@pytest.fixture
def topology(installed_db: str, installed_remote_db: str, remote: Cluster) -> Topology:
    spoke = remote.tcp_conninfo(helpers.dbname(installed_remote_db))
    replication.join(installed_db, spoke, timeout=60)
    return Topology(installed_db, spoke, remote)


def register_nova(dsn: str, request: pytest.FixtureRequest, *, sequence: bool) -> str:
    """Their register-agent.sh for agent nova on *dsn*'s database, its statements as it runs
    them (psql, as a superuser): the role if missing, its password, the standard grants (the
    sequence's only where it exists: a compat install). Roles outlive a test's databases: the
    role goes at the end, with what it was granted here."""
    stmts = load("installer")
    request.addfinalizer(lambda: at(dsn, "DROP OWNED BY nova; DROP ROLE nova"))
    with connect(dsn) as conn:
        if not run(conn, stmts["register_role_exists"]).rows:
            # another test's register-agent run may make it meanwhile
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                run(conn, stmts["register_create_role"])
        run(conn, stmts["register_set_password"])
        run(conn, stmts["register_grant_agent_chat"])
        run(conn, stmts["register_grant_processed"])
        if sequence:
            run(conn, stmts["register_grant_sequence"])
    return "nova"


def reply_of(row: Row) -> str:
    """The fake agent behind their runtime: one reply per message; a message it cannot answer
    is a dispatch error."""
    if "cannot answer" in row["message"]:
        raise RuntimeError("the model is unavailable")
    return f"nova heard: {row['message']}"


def at(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    return helpers.execute(dsn, query, params)


def arrived(dsn: str, *ids: int) -> bool:
    rows = at(dsn, "SELECT count(*) FROM agent_chat WHERE id = ANY(%s)", list(ids))
    return bool(rows[0][0] == len(ids))


def eventually(
    predicate: Callable[[], T], *, what: str, plugin: Plugin | None = None, timeout: float = 60
) -> T:
    """:func:`helpers.wait_for` across the link (a minute: two servers under a busy suite),
    failing with what the plugin did so far."""
    try:
        return helpers.wait_for(predicate, timeout=timeout, what=what)
    except AssertionError as exc:
        if plugin is None:
            raise
        state = f"handled {plugin.handled}, fetches {plugin.fetches}, log {plugin.log}"
        raise AssertionError(f"{exc}; the plugin: {state}") from None


@pytest.fixture
def plugins() -> Iterator[list[Plugin]]:
    """The plugins a test starts, stopped at its end whatever happened."""
    started: list[Plugin] = []
    yield started
    for plugin in started:
        if plugin.running:
            plugin.stop()


def after_start(plugin: Plugin) -> tuple[list[tuple[str, list[int]]], int]:
    """The plugin's fetches without the empty wake-ups right after its start, and how many
    there were. PostgreSQL may hand a new listener the notifications of transactions that
    committed just before its LISTEN (async.c, Exec_ListenPreCommit: "We might get a few more
    but that doesn't hurt"): the rows are already there, so such a wake-up finds nothing new
    (seen once, on a suite run with four workers)."""
    fetches = list(plugin.fetches)
    early = 0
    while len(fetches) > 1 and fetches[1] == ("notify", []):
        del fetches[1]
        early += 1
    return fetches, early


def check_woken_not_polled(plugin: Plugin, inserted: int, before: int) -> None:
    """The plugin fetched at start and then once per notification, and was notified once per
    row *inserted* into its database's agent_chat while it listened (replicated or its own),
    and at most once more for each of the *before* rows that arrived just before it started
    (:func:`after_start`): every message after the start reached it through NOTIFY (their
    keep-alive fetches nothing), and nothing else woke it."""
    assert plugin.fatal is None, plugin.log
    fetches, _ = after_start(plugin)
    assert inserted <= plugin.wakeups <= inserted + before, plugin.fetches
    assert [w for w, _ in fetches] == ["start"] + ["notify"] * inserted
    assert len(plugin.handled_ids()) == len(set(plugin.handled_ids())), plugin.handled


# -- the seed-era plugin against a default install --------------------------------------------


def test_the_seed_era_plugin_answers_across_the_hub(
    topology: Topology, plugins: list[Plugin], request: pytest.FixtureRequest
) -> None:
    hub, spoke = topology.hub, topology.spoke
    role = register_nova(spoke, request, sequence=False)
    with Agent("graybeard", hub) as graybeard:
        early = graybeard.send("sent before the plugin started", to=["nova"])
        everyone = graybeard.send("a broadcast", to=["*"])
        eventually(lambda: arrived(spoke, early, everyone), what="graybeard's messages")

        plugin = Plugin(SEED, topology.as_role(role, NOVA_PASSWORD), "nova", reply_of)
        plugins.append(plugin.start())
        assert after_start(plugin)[0] == [("start", [early])]  # its query never matches '*'

        live = graybeard.send("sent while it runs", to=["nova"])
        hard = graybeard.send("a question it cannot answer", to=["nova"])
        eventually(lambda: len(plugin.handled) == 3, what="the live messages", plugin=plugin)
        eventually(
            lambda: at(hub, "SELECT count(*) FROM agent_chat WHERE sender = 'nova'") == [(2,)],
            what="both replies at the hub",
            plugin=plugin,
        )
        replies = at(
            hub,
            "SELECT id, sender, reply_to, mentions, channel FROM agent_chat"
            " WHERE sender = 'nova' ORDER BY reply_to",
        )
        # its replies carry mentions '{}' (its code): graybeard's agent is not sent them
        assert [(s, r, m, c) for _, s, r, m, c in replies] == [
            ("nova", early, [], "general"),
            ("nova", live, [], "general"),
        ]
        assert [m.id for m in graybeard.messages(idle_timeout=0)] == []
    plugin.stop()

    assert [(h.id, h.woken_by, h.outcome) for h in plugin.handled] == [
        (early, "start", "replied"),
        (live, "notify", "replied"),
        (hard, "notify", "dispatch-failed"),
    ]
    assert [h.reply_ids for h in plugin.handled] == [[r[0]] for r in replies] + [[]]
    # while it listened: graybeard's two live messages and the two replies
    check_woken_not_polled(plugin, inserted=4, before=2)
    assert plugin.log == []
    # the marks, where nova lives: its markRouted after the reply overwrites 'responded'; a
    # dispatch error is 'failed' with its text in error_message (and error, the same column)
    marks = at(
        spoke,
        "SELECT chat_id, status, received_at IS NOT NULL, responded_at IS NOT NULL,"
        " routed_at IS NOT NULL, received_at <= responded_at AND responded_at <= routed_at,"
        " error_message, error FROM agent_chat_processed WHERE agent = 'nova' ORDER BY chat_id",
    )
    failure = "the model is unavailable"
    assert marks == [
        (early, "routed", True, True, True, True, None, None),
        (live, "routed", True, True, True, True, None, None),
        (hard, "failed", True, False, False, None, failure, failure),
    ]
    assert at(spoke, "SELECT count(*) FROM agent_chat_processed") == [(3,)]
    assert at(hub, "SELECT count(*) FROM agent_chat_processed WHERE agent = 'nova'") == [(0,)]


# -- the current plugin against --compat nova -------------------------------------------------


def refs(dsn: str, *ids: int) -> list[int]:
    """Their integer ids (agentchat_nova.chat_refs) of agentchat's *ids*, in that order."""
    rows = dict(
        at(
            dsn,
            "SELECT chat_id, ref FROM agentchat_nova.chat_refs WHERE chat_id = ANY(%s)",
            list(ids),
        )
    )
    return [int(rows[i]) for i in ids]


def install_compat(dsn: str, role: str | None = None) -> None:
    """``agentchat install --dsn DSN --compat nova [--compat-role ROLE]`` on the agent's
    database."""
    roles = ("--compat-role", role) if role else ()
    out = helpers.ok(helpers.invoke("install", "--dsn", dsn, "--compat", "nova", *roles))
    seen_by = role or "no role yet: add --compat-role ROLE"
    assert f"compat     nova: schema agentchat_nova, for {seen_by}" in out.splitlines(), out


@pytest.mark.parametrize("as_agent", [False, True], ids=["register-agent-role", "agent-role"])
def test_the_current_plugin_answers_across_the_hub(
    topology: Topology,
    plugins: list[Plugin],
    as_agent: bool,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    hub, spoke = topology.hub, topology.spoke
    passfile = tmp_path / "pgpass"
    if as_agent:
        added = identity.add(spoke, "nova", passfile=passfile)
        request.addfinalizer(lambda: identity.remove(spoke, "nova", passfile=passfile))
        gray = identity.add(hub, "graybeard", passfile=passfile)
        request.addfinalizer(lambda: identity.remove(hub, "graybeard", passfile=passfile))
        role = added.entry.role
        install_compat(spoke, role)
        plugin_dsn = topology.as_role(role, passfile=passfile)
        graybeard_dsn = _conninfo.make_conninfo(hub, user=gray.entry.role, passfile=str(passfile))
        eventually(
            lambda: at(spoke, "SELECT count(*) FROM agentchat_agents") == [(2,)],
            what="both agents known where nova lives",
        )
    else:
        # as docs/nova.md says for a new server: the layer first (their register-agent.sh
        # grants on its sequence), then their script, then the layer again for the role
        install_compat(spoke)
        role = register_nova(spoke, request, sequence=True)
        install_compat(spoke, role)
        plugin_dsn = topology.as_role(role, NOVA_PASSWORD)
        graybeard_dsn = hub

    with Agent("graybeard", graybeard_dsn) as graybeard:
        early = graybeard.send("sent before the plugin started", to=["nova"])
        [(stale,)] = at(
            hub,
            "INSERT INTO agent_chat (sender, message, mentions, expires_at)"
            " VALUES ('graybeard', 'too late', '{nova}', now() - interval '1 second')"
            " RETURNING id",
        )
        eventually(lambda: arrived(spoke, early, stale), what="graybeard's first messages")

        plugin = Plugin(CURRENT, plugin_dsn, "nova", reply_of)
        plugins.append(plugin.start())
        [early_ref] = refs(spoke, early)
        assert after_start(plugin)[0] == [("start", [early_ref])]  # the expired one is not shown

        live = graybeard.send("sent while it runs", to=["nova"])
        everyone = graybeard.send("a broadcast", to=["*"])
        [(timed,)] = at(
            hub,
            "INSERT INTO agent_chat (sender, message, mentions, expires_at)"
            " VALUES ('graybeard', 'answer within the hour', '{nova}', now() + interval '1 hour')"
            " RETURNING id",
        )
        sent = [early, live, everyone, timed]
        eventually(lambda: len(plugin.handled) == 4, what="every message", plugin=plugin)
        # nova's own broadcast, by their sendText (insertOutboundMessage, replyTo null) on
        # another connection: the plugin fetches it too ('*') and its self-mention guard
        # only marks it received
        with connect(plugin_dsn) as conn:
            [row] = run(conn, load("plugin")["send"], "nova", "hello, all", ["*"], None, None).rows
        [own] = at(spoke, "SELECT chat_id FROM agentchat_nova.chat_refs WHERE ref = %s", row["id"])
        eventually(lambda: len(plugin.handled) == 5, what="nova's own broadcast", plugin=plugin)

        # the replies and the broadcast reach the hub, and graybeard's agent there
        heard: list[tuple[str, int | None, list[str]]] = []

        def hear() -> bool:
            heard.extend(
                (m.sender, m.reply_to, list(m.mentions)) for m in graybeard.messages(idle_timeout=0)
            )
            return len(heard) >= 5

        eventually(hear, what="nova's messages at graybeard", plugin=plugin)
    plugin.stop()

    replies = sorted(h for h in heard if h[1] is not None)
    assert replies == sorted(("nova", i, ["graybeard"]) for i in sent)
    assert [h for h in heard if h[1] is None] == [("nova", None, ["*"])]
    assert at(hub, "SELECT id FROM agent_chat WHERE sender = 'nova' AND reply_to IS NULL") == [
        (own[0],)
    ]
    all_refs = refs(spoke, *sent, own[0])
    assert [(h.id, h.woken_by, h.outcome) for h in plugin.handled] == [
        (all_refs[0], "start", "replied"),
        *[(r, "notify", "replied") for r in all_refs[1:4]],
        (all_refs[4], "notify", "self"),
    ]
    # while it listened: graybeard's three messages, four replies, nova's own broadcast
    check_woken_not_polled(plugin, inserted=8, before=2)
    assert plugin.log == []
    assert refs(spoke, stale)[0] not in plugin.handled_ids()
    # the marks, where nova lives: responded (their markRouted's guard keeps it), no routed_at;
    # its own broadcast: received (the guard), nothing for the expired message
    marks = at(
        spoke,
        "SELECT chat_id, status, received_at IS NOT NULL, responded_at >= received_at,"
        " routed_at, error_message FROM agent_chat_processed WHERE agent = 'nova'",
    )
    assert sorted(marks) == sorted(
        [(i, "responded", True, True, None, None) for i in sent]
        + [(own[0], "received", True, None, None, None)]
    )
    # and as their code reads them, through its role: their integer ids
    seen = at(plugin_dsn, "SELECT chat_id, status FROM agent_chat_processed WHERE agent = 'nova'")
    assert sorted(seen) == sorted(
        [(r, "responded") for r in all_refs[:4]] + [(all_refs[4], "received")]
    )
    [(ttl,)] = at(spoke, "SELECT expires_at > now() FROM agent_chat WHERE id = %s", timed)
    assert ttl is True  # the time to live travelled with the message
    assert at(hub, "SELECT count(*) FROM agent_chat_processed WHERE agent = 'nova'") == [(0,)]
