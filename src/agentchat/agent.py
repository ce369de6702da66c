"""An agent: send messages, and handle every message addressed to it exactly once.

    from agentchat import Agent

    with Agent("graybeard", "dbname=graybeard_memory") as agent:
        agent.send("hello, nova", to=["nova"])
        for msg in agent.messages(idle_timeout=30):
            msg.reply(f"got it: {msg.message}")

    # or the handler style: a returned string is the reply; an exception is recorded as failed
    Agent("graybeard", dsn).run(lambda msg: f"echo: {msg.message}")

How delivery works (docs/agents.md has the whole story):

1. LISTEN first, then catch up from the table: the messages addressed to the agent (its name or
   ``*``, not its own) that have no mark in ``agent_chat_processed``, oldest first.
2. Each message is claimed, handled and recorded in **one transaction**: the mark's insert, the
   replies (when the agent's database is where it sends), and the outcome. A crash in between
   rolls it all back and the message is delivered again: at least once to the handler, exactly
   once recorded.
3. Then wait for a NOTIFY that concerns the agent and claim the ids it names (the claim checks
   the address again), and catch up in full at least every ``poll_interval`` seconds: a lost
   notification costs at most one interval.
4. A dropped connection is noticed (errors, TCP keepalives, a probe on quiet connections) and
   re-opened with backoff; then it catches up again, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg

from agentchat import _db, errors
from agentchat.messaging import (
    Catchup,
    Message,
    SendFailed,
    UnreadableMessage,
    check_agent_settings,
    check_channel,
    check_limits,
    check_name,
    database_error,
    read_claimed,
    reply_params,
    send_on,
    send_params,
    send_target,
    send_unreachable,
)
from agentchat.sql import queries

log = logging.getLogger("agentchat.agent")

#: errors after which the connection is re-opened and the message delivered again
TRANSIENT: tuple[type[Exception], ...] = (psycopg.OperationalError, errors.ConnectionFailed)

#: a handler's result: a string is posted as the reply, None means nothing to say
Handler = Callable[[Message], "str | None"]


@dataclass
class Backoff:
    """Exponential backoff with jitter between reconnection attempts."""

    first: float = 0.1
    maximum: float = 5.0
    _next: float = 0.0

    def delay(self) -> float:
        self._next = min(self.maximum, self._next * 2 if self._next else self.first)
        return self._next * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = 0.0


def failure_text(exc: BaseException) -> str:
    """What a failed delivery records: the error, one line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:2000] if text else type(exc).__name__


class _Delivery:
    """One message being delivered: its replies and outcome, recorded with its mark."""

    def __init__(self, agent: Agent, conn: _db.Connection) -> None:
        self.agent = agent
        self.conn = conn
        self.status = "routed"
        self.error: str | None = None
        self._replies = 0

    def reply(self, message: Message, text: str, to: Sequence[str] | None) -> int:
        params = reply_params(self.agent.name, message, text, to, self._replies + 1)
        if self.agent.sends_locally:
            with self.conn.transaction():  # a savepoint: a failed reply leaves the mark usable
                new_id = send_on(self.conn, params)
        else:
            new_id = self.agent._post(params)
        self._replies += 1
        self.status = "responded"
        return new_id

    async def areply(self, message: Message, text: str, to: Sequence[str] | None) -> int:
        raise errors.AgentchatError("msg.areply() is for AsyncAgent: use msg.reply()")

    def fail(self, message: Message, error: str) -> None:
        self.status, self.error = "failed", error[:2000]


class Agent:
    """An agent named *name* whose database is *dsn* (libpq URI or conninfo; PG* apply).

    *send_dsn*: where sends go. By default the agent's own database, or, when that is a replica,
    its source as ``agentchat install`` recorded it. *channel*: only this channel's messages.
    *poll_interval*: the longest a lost notification can delay a message.
    """

    def __init__(
        self,
        name: str,
        dsn: str | None = None,
        *,
        send_dsn: str | None = None,
        channel: str | None = None,
        poll_interval: float = 5.0,
        batch_size: int = 100,
    ) -> None:
        self.name = check_name(name)
        self.conninfo = _db.make_conninfo(dsn)
        self.channel = check_channel(channel) if channel is not None else None
        check_agent_settings(poll_interval, batch_size)
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self._send_dsn = _db.make_conninfo(send_dsn) if send_dsn else None
        self._send_conninfo: str | None = None
        self._work: _db.Connection | None = None
        self._listen: _db.Connection | None = None
        self._sender: _db.Connection | None = None
        self._stopping = threading.Event()

    # -- sending -----------------------------------------------------------------------------

    def send(
        self,
        message: str,
        *,
        to: Iterable[str] = (),
        channel: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Post *message* from this agent to *to* (names, or ``*`` for everyone); its id."""
        params = send_params(self.name, message, to, channel or self.channel or "general", reply_to)
        return self._post(params)

    @property
    def send_conninfo(self) -> str:
        """Where this agent's messages go (resolved once: on connecting, or on first use)."""
        if self._send_conninfo is None:
            self._send_conninfo = self._send_dsn or send_target(self.conninfo)
        return self._send_conninfo

    @property
    def sends_locally(self) -> bool:
        """True when sends go to the database the agent listens on (replies are then atomic
        with the delivery's mark)."""
        return self.send_conninfo == self.conninfo

    def _send_connection(self) -> _db.Connection:
        if self._sender is None or self._sender.closed:
            self._sender = _db.connect(self.send_conninfo, long_lived=True)
        return self._sender

    def check_send_connection(self) -> None:
        """Open the connection where this agent sends, if that is not its own database: a
        :class:`agentchat.messaging.SendFailed` naming it and the fix, now rather than at the
        first reply."""
        if self.sends_locally:
            return
        try:
            self._send_connection()
        except (errors.ConnectionFailed, errors.DatabaseMissing) as exc:
            raise send_unreachable(self.name, self.send_conninfo, exc) from None

    def _post(self, params: dict[str, Any]) -> int:
        """Post on the send connection: a message, or a delivery's reply at a remote source
        (outside the delivery's transaction; its reply_key makes a redelivery's second post
        return the first one's id)."""
        try:
            return send_on(self._send_connection(), params)
        except TRANSIENT as exc:
            self._close_sender()  # reconnect next time; a send is never retried blindly
            raise send_unreachable(self.name, self.send_conninfo, exc) from None
        except psycopg.Error as exc:
            raise database_error(exc, self.send_conninfo) from None

    # -- receiving ---------------------------------------------------------------------------

    def messages(
        self, *, limit: int | None = None, idle_timeout: float | None = None
    ) -> Generator[Message, None, None]:
        """Every message addressed to this agent, oldest first, each exactly once.

        A message is recorded as handled when the loop asks for the next one (or ends by
        *limit* or *idle_timeout*): leaving the loop early with ``break`` or an exception rolls
        the current message back, and it is delivered again next time. Call ``msg.reply()`` to
        answer and ``msg.fail(error)`` to record a failure; both are part of the same record.
        *limit*: stop after that many messages. *idle_timeout*: stop after that many seconds
        without a message (0: just catch up), also while a connection is lost (then the error
        is raised). Neither: run until :meth:`stop`. A row that is not a valid message is
        recorded as ``failed`` (the error says why) and skipped, with a warning.
        """
        check_limits(limit, idle_timeout)
        closing = False
        delivered = 0
        idle_since = time.monotonic()
        backoff = Backoff()
        catchup = Catchup(self.poll_interval)
        self._connect()  # a wrong DSN fails here, at once; later failures are retried
        while not self._stopping.is_set():
            try:
                work = self._connect()
                ids = catchup.plan()
                if ids is None:
                    ids = [row[0] for row in work.execute(queries["agent_pending"], self._filter())]
                    catchup.caught_up(len(ids), self.batch_size)
                for chat_id in ids:
                    if self._stopping.is_set():
                        return
                    delivery = _Delivery(self, work)
                    try:
                        with work.transaction():
                            cur = work.execute(queries["agent_claim"], self._claim(chat_id))
                            row: Any
                            try:
                                row = cur.fetchone()
                            except psycopg.DataError as exc:  # a value Python cannot hold
                                row = exc
                            if row is None:
                                continue  # not for this agent, or handled meanwhile
                            try:
                                message = read_claimed(chat_id, row, delivery)
                            except UnreadableMessage as exc:
                                self._unreadable(work, chat_id, exc)
                                continue
                            try:
                                yield message
                            except GeneratorExit:
                                closing = True
                                raise
                            work.execute(queries["agent_finish"], self._outcome(chat_id, delivery))
                    except psycopg.errors.ForeignKeyViolation:
                        continue  # pruned between finding and claiming it
                    delivered += 1
                    idle_since = time.monotonic()
                    if limit is not None and delivered >= limit:
                        return
                backoff.reset()
                if catchup.has_work:
                    continue
                wait = catchup.wait_time()
                if idle_timeout is not None:
                    wait = min(wait, idle_timeout - (time.monotonic() - idle_since))
                    if wait <= 0:
                        return
                self._wait(wait, catchup)
            except TRANSIENT as exc:
                failed = exc.conninfo if isinstance(exc, SendFailed) else self.conninfo
                if failed == self.conninfo:
                    self._disconnect()
                catchup.lost_connection()
                if closing:
                    return
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    raise lost(failed, exc) from None
                delay = backoff.delay()
                log.warning(
                    "%s: connection lost (%s); reconnecting in %.1f s",
                    _db.describe(failed), failure_text(exc), delay,
                )  # fmt: skip
                self._stopping.wait(delay)
            except psycopg.Error as exc:
                raise database_error(exc, self.conninfo) from None

    def run(
        self,
        handler: Handler,
        *,
        limit: int | None = None,
        idle_timeout: float | None = None,
    ) -> int:
        """Call *handler* for every message (as :meth:`messages` delivers them); return how many.

        A returned string is posted as the reply (status ``responded``); None records
        ``routed``; an exception records ``failed`` with the error, and the loop goes on. A lost
        connection (from the handler's replies too) rolls the message back for redelivery.
        Where replies go is settled first: a replica whose source is not recorded (and no
        *send_dsn*) raises :class:`agentchat.errors.ConfigError` before any message is taken.
        """
        handled = 0
        check_limits(limit, idle_timeout)
        self._connect()
        self.check_send_connection()  # a handler's reply must have somewhere to go
        deliveries = self.messages(limit=limit, idle_timeout=idle_timeout)
        try:
            message = next(deliveries, None)
            while message is not None:
                try:
                    _apply_result(message, handler(message))
                except TRANSIENT as exc:  # roll back and reconnect inside the generator
                    try:
                        message = deliveries.throw(exc)
                    except StopIteration:
                        break
                    continue
                except errors.ConfigError:
                    raise  # the setup is wrong, not this message: it is rolled back
                except Exception as exc:
                    log.warning("%s: message %s failed: %s", self.name, message.id, exc)
                    message.fail(failure_text(exc))
                handled += 1
                message = next(deliveries, None)
        finally:
            deliveries.close()
        return handled

    def stop(self) -> None:
        """Make :meth:`messages` / :meth:`run` return after the current message (thread-safe)."""
        self._stopping.set()

    def close(self) -> None:
        """Close the agent's connections."""
        self._disconnect()
        self._close_sender()

    def __enter__(self) -> Agent:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- connections -------------------------------------------------------------------------

    def _filter(self) -> dict[str, Any]:
        return {"agent": self.name, "channel": self.channel, "limit": self.batch_size}

    def _claim(self, chat_id: int) -> dict[str, Any]:
        return {"id": chat_id, "agent": self.name, "channel": self.channel}

    def _unreadable(self, work: _db.Connection, chat_id: int, exc: UnreadableMessage) -> None:
        """Record a claimed row that is not a valid message as failed (in the claim's
        transaction) and say so; delivery goes on."""
        log.warning("%s: %s; recorded as failed", self.name, exc)
        outcome = {"id": chat_id, "agent": self.name, "status": "failed", "error": str(exc)[:2000]}
        work.execute(queries["agent_finish"], outcome)

    def _outcome(self, chat_id: int, delivery: _Delivery) -> dict[str, Any]:
        return {"id": chat_id, "agent": self.name, "status": delivery.status,
                "error": delivery.error}  # fmt: skip

    def _connect(self) -> _db.Connection:
        """The work connection, after (re)opening both connections and LISTENing if needed."""
        if self._work is not None and not self._work.closed:
            return self._work
        self._disconnect()
        listen = _db.connect(self.conninfo, long_lived=True)
        try:
            listen.execute(queries["listen"])
            self._work = _db.connect(self.conninfo, long_lived=True)
        except BaseException:
            listen.close()
            raise
        self._listen = listen
        if self._send_conninfo is None and self._send_dsn is None:
            with contextlib.suppress(errors.ConfigError):  # raised again when it sends
                self._send_conninfo = send_target(self.conninfo, self._work)
        return self._work

    def _wait(self, timeout: float, catchup: Catchup) -> None:
        """Until a notification concerns this agent, or *timeout* s; then probe if quiet."""
        assert self._listen is not None
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self._listen.execute(queries["ping"])  # a dead listener must not go unnoticed
                return
            woken = False
            for note in self._listen.notifies(timeout=min(left, 1.0), stop_after=1):
                woken = catchup.note(note.payload, self.name, self.channel) or woken
            if woken:  # take whatever else has arrived too, without waiting
                for note in self._listen.notifies(timeout=0):
                    catchup.note(note.payload, self.name, self.channel)
                return

    def _disconnect(self) -> None:
        for conn in (self._listen, self._work):
            if conn is not None:
                conn.close()
        self._listen = self._work = None

    def _close_sender(self) -> None:
        if self._sender is not None:
            self._sender.close()
        self._sender = None


def lost(conninfo: str, exc: BaseException) -> errors.ConnectionFailed:
    """The error when an agent's idle timeout passes while a connection is still lost."""
    if isinstance(exc, errors.ConnectionFailed):
        exc.message += " (the idle timeout passed while retrying)"
        return exc
    return errors.ConnectionFailed(
        f"{_db.describe(conninfo)}: connection lost ({failure_text(exc)}); the idle timeout"
        " passed while reconnecting"
    )


def _apply_result(message: Message, result: object) -> None:
    if result is None:
        return
    if not isinstance(result, str):
        raise TypeError(f"a handler returns a reply (str) or None, not {type(result).__name__}")
    if result.strip():
        message.reply(result)
