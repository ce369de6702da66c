"""NOVA's OpenClaw channel plugin, its message loop transliterated into Python for the tests.

Two versions of their ``channel.ts``, each its ``startAgentChatMonitor`` and
``processAgentChatMessage`` step for step, every SQL statement run as their code runs it: the
statement comes from the fixtures (``tests/fixtures/nova/<file>.sql``, byte-for-byte from their
source), sent by :func:`tests.nova_clients.run` the way node-postgres sends it.

- ``SEED``: NOVA-Openclaw/nova-mind@b522b80, cognition/focus/agent_chat/src/channel.ts (the
  channel/mentions schema), against a default install.
- ``CURRENT``: NOVA-Openclaw/agent-chat@a1c9e9b, plugin/src/channel.ts (``recipients``,
  ``"timestamp"``, ``send_agent_message(..., p_ttl =>, p_reply_to =>)``), against
  ``agentchat install --compat nova``.

The loop (their lines in brackets, seed-era / current):

1. connect; ``LISTEN agent_chat`` [322-327 / 338-345];
2. the initial fetch, each message processed in turn [353-364 / 371-382]; an error here is their
   outer ``catch``: "Fatal error", the client ended, the monitor gone [396-404];
3. then each notification on channel ``agent_chat``: fetch, process each [330-350 / 348-368]; an
   error is logged ("Error processing notification") and the monitor goes on; between
   notifications their keep-alive ``SELECT 1`` every ``pollIntervalMs`` [367-373], which fetches
   nothing: a message is only ever found at start or after a notification;
4. process (``processAgentChatMessage``): the self-mention guard (sender == agent: mark received,
   nothing else); mark received; dispatch to the agent, whose reply goes through ``deliver``
   (insert the outbound message, mark responded; the current version marks failed when that
   fails); after the dispatch, mark routed (the seed-era statement overwrites ``responded``, the
   current one's guard keeps it); a dispatch error marks failed; any other error marks failed.

node-postgres runs a notification's handler as soon as the notification arrives, interleaving
its queries with a handler still running on the same client; here handlers run one after
another, in arrival order (notifications that arrive meanwhile wait in psycopg's backlog), which
is one of the orders theirs can take. The OpenClaw runtime (envelope, session, dispatcher) is a
fake: :class:`Plugin`'s *agent* gets the message's row and returns the reply text (or None: no
reply; an exception: a dispatch error). Like their runtime's dispatcher, an exception in
``deliver`` is passed to ``onError`` (logged) and never reaches the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.nova_clients import Statement, load, run

#: a message row as their fetch returns it (column name -> value)
Row = dict[str, Any]
#: the fake agent: the message's row in, the reply's text out (None: no reply)
AgentFn = Callable[[Row], "str | None"]


@dataclass(frozen=True)
class Version:
    """One version of their plugin: where its statements are and how it calls them."""

    name: str
    file: str  #: the fixtures file of its statements
    #: insertOutboundMessage's parameters from (agent name, the message's row, the reply text)
    outbound: Callable[[str, Row, str], tuple[object, ...]]
    #: the current version marks failed in deliver's catch (channel.ts:257-276)
    fails_in_deliver: bool
    #: the statement names in the fixtures file (their function -> the block's name)
    names: dict[str, str]


#: their functions -> the fixtures' statement names (both files)
STATEMENT_NAMES = {
    "listen": "listen",
    "fetch": "fetch_unprocessed",
    "received": "mark_received",
    "routed": "mark_routed",
    "responded": "mark_responded",
    "failed": "mark_failed",
    "keepalive": "keep_alive",
    "unlisten": "unlisten",
}


def _seed_outbound(agent: str, row: Row, text: str) -> tuple[object, ...]:
    # channel.ts:151 [channel, sender, message, [], replyTo || null]
    return (row["channel"], agent, text, [], row["id"] or None)


def _current_outbound(agent: str, row: Row, text: str) -> tuple[object, ...]:
    # channel.ts:149-150 and 247-252: [sender, message, recipients, null, replyTo]
    return (agent, text, [row["sender"]], None, row["id"])


SEED = Version(
    "seed-era",
    "seed_plugin",
    _seed_outbound,
    False,
    {**STATEMENT_NAMES, "outbound": "insert_outbound"},
)
CURRENT = Version(
    "current", "plugin", _current_outbound, True, {**STATEMENT_NAMES, "outbound": "send"}
)


@dataclass
class Handled:
    """One call of processAgentChatMessage: the message's id, what woke the loop (``start`` or
    ``notify``), and how it ended: ``self`` (the self-mention guard), ``replied``, ``silent``,
    ``dispatch-failed``, ``deliver-failed``, ``error``."""

    id: int
    woken_by: str
    outcome: str
    reply_ids: list[int] = field(default_factory=list)


class Plugin:
    """Their monitor on *conninfo* as agent *agent_name*, in a thread: :meth:`start`,
    :meth:`stop`. What it did: ``wakeups`` (notifications on ``agent_chat``), ``fetches`` (what
    woke each fetch and the ids it returned), ``handled``, ``log`` (their error lines),
    ``fatal`` (the error that ended the monitor, their outer catch)."""

    def __init__(
        self,
        version: Version,
        conninfo: str,
        agent_name: str,
        agent: AgentFn,
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self.version, self.conninfo, self.agent_name = version, conninfo, agent_name
        self.agent, self.poll_interval = agent, poll_interval
        statements = load(version.file)
        self.sql: dict[str, Statement] = {k: statements[v] for k, v in version.names.items()}
        self.wakeups = 0
        self.keepalives = 0
        self.fetches: list[tuple[str, list[int]]] = []
        self.handled: list[Handled] = []
        self.log: list[str] = []
        self.fatal: BaseException | None = None
        self.started = threading.Event()  #: the initial fetch and processing are done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="nova-plugin", daemon=True)

    # -- the thread --------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> Plugin:
        self._thread.start()
        if not self.started.wait(timeout) and self.fatal is None:
            raise AssertionError("the plugin did not finish its initial fetch")
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the plugin did not stop"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def handled_ids(self) -> list[int]:
        return [h.id for h in self.handled]

    # -- startAgentChatMonitor ---------------------------------------------------------------

    def _monitor(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as client:
                run(client, self.sql["listen"])
                try:
                    self._fetch_and_process(client, "start")  # the initial check
                finally:
                    self.started.set()
                while not self._stop.is_set():
                    woke = self._wait(client)
                    if not woke:
                        run(client, self.sql["keepalive"])  # setInterval(SELECT 1)
                        self.keepalives += 1
                        continue
                    self.wakeups += woke
                    for _ in range(woke):  # one handler per notification
                        try:
                            self._fetch_and_process(client, "notify")
                        except psycopg.Error as exc:
                            self.log.append(f"Error processing notification: {exc}")
                run(client, self.sql["unlisten"])  # the abort signal's handler; then client.end()
        except BaseException as exc:  # their outer catch: "Fatal error", the monitor ends
            self.log.append(f"Fatal error: {exc}")
            self.fatal = exc
            self.started.set()

    def _wait(self, client: psycopg.Connection[Any]) -> int:
        """Notifications on channel agent_chat within one keep-alive interval (0: none)."""
        woke = 0
        deadline = time.monotonic() + self.poll_interval
        while not woke and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for notify in client.notifies(timeout=min(remaining, 0.1)):
                if notify.channel == "agent_chat":
                    woke += 1
        # what else arrived in the same moment (psycopg's backlog), without waiting
        for notify in client.notifies(timeout=0):
            if notify.channel == "agent_chat":
                woke += 1
        return woke

    def _fetch_and_process(self, client: psycopg.Connection[Any], woken_by: str) -> None:
        rows = run(client, self.sql["fetch"], self.agent_name).rows
        self.fetches.append((woken_by, [int(r["id"]) for r in rows]))
        for row in rows:
            self._process(client, row, woken_by)

    # -- processAgentChatMessage -------------------------------------------------------------

    def _process(self, client: psycopg.Connection[Any], row: Row, woken_by: str) -> None:
        agent, chat_id = self.agent_name, row["id"]
        handled = Handled(int(chat_id), woken_by, "")
        self.handled.append(handled)
        if str(row["sender"]).lower() == agent.lower():  # the self-mention guard
            run(client, self.sql["received"], chat_id, agent)
            handled.outcome = "self"
            return
        try:
            run(client, self.sql["received"], chat_id, agent)
            try:
                text = self.agent(row)  # dispatchReplyFromConfig
                if text is not None:
                    self._deliver(client, row, text, handled)
                # markDispatchIdle(); then
                run(client, self.sql["routed"], chat_id, agent)
                handled.outcome = handled.outcome or "silent"
            except Exception as dispatch_error:
                handled.outcome = "dispatch-failed"
                run(client, self.sql["failed"], chat_id, agent, str(dispatch_error))
        except Exception as error:
            handled.outcome = "error"
            run(client, self.sql["failed"], chat_id, agent, str(error))
            self.log.append(f"Failed to route message {chat_id}: {error}")

    def _deliver(self, client: psycopg.Connection[Any], row: Row, text: str, h: Handled) -> None:
        """The dispatcher's deliver; an exception goes to onError (logged), as in their runtime."""
        agent, chat_id = self.agent_name, row["id"]
        try:
            try:
                result = run(client, self.sql["outbound"], *self.version.outbound(agent, row, text))
                h.reply_ids.append(int(result.rows[0]["id"]))
                run(client, self.sql["responded"], chat_id, agent)
                h.outcome = "replied"
            except psycopg.Error as err:
                h.outcome = "deliver-failed"
                if self.version.fails_in_deliver:
                    error_msg = (
                        f"Reply for message {chat_id} rejected: invalid reply_to"
                        " (foreign key violation)"
                        if err.sqlstate == "23503"
                        else f"Failed to send reply for message {chat_id}: {err}"
                    )
                    self.log.append(error_msg)
                    run(client, self.sql["failed"], chat_id, agent, error_msg)
                else:
                    self.log.append(f"Failed to send reply for message {chat_id}: {err}")
                raise
        except Exception as err:  # onError
            self.log.append(f"final reply failed: {err}")
