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
2. A **batch** of messages is claimed, handled and recorded in **one transaction**: the marks'
   insert (one statement, which skips what another listener of the agent holds), the replies
   (when the agent's database is where it sends), and the outcomes. A crash in between rolls
   the whole batch back and its messages are delivered again: at least once to the handler,
   exactly once recorded. A batch is what is waiting, up to ``batch_size``, sized to about
   :data:`~agentchat.agents.protocol.BATCH_WORK` of handler time (one message for a slow
   handler).
3. Then wait for a NOTIFY that concerns the agent and claim the ids it names (the claim checks
   the address again), and catch up in full at least every ``poll_interval`` seconds: a lost
   notification costs at most one interval.
4. A dropped connection is noticed (errors, TCP keepalives, a probe on quiet connections) and
   re-opened with backoff; then it catches up again, so nothing is lost.

Every decision lives in :mod:`agentchat.agents.protocol`, shared with
:class:`agentchat.agents.aio.AsyncAgent`; this module holds the I/O only.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import Any, Unpack

from agentchat import _db, errors
from agentchat.agents.message import Message
from agentchat.agents.protocol import (
    BaseAgent,
    Batch,
    ClaimedRow,
    DeliveryLoop,
    SendOptions,
    Wait,
    check_limits,
    is_transient,
    redeliver,
    reply_text,
    unloadable,
    unreadable_value,
)
from agentchat.agents.recipients import explain_refusal, read_registry
from agentchat.agents.route import REPLY_NOT_VISIBLE_RETRIES, not_visible_yet, reraise
from agentchat.agents.send import send_on, send_target
from agentchat.sql import queries

#: a handler's result: a string is posted as the reply, None means nothing to say
Handler = Callable[[Message], "str | None"]


class Agent(BaseAgent):
    """An agent named *name* whose database is *dsn* (libpq URI or conninfo; PG* apply).

    ``Agent(name, dsn=None, *, send_dsn=None, channel=None, poll_interval=5.0,
    batch_size=100)``: *send_dsn*: where sends go. By default the agent's own database, or, when
    that is a replica, its source as ``agentchat install`` recorded it. *channel*: only this
    channel's messages. *poll_interval*: the longest a lost notification can delay a message.
    *batch_size*: the most messages one transaction claims.
    """

    _event = threading.Event
    _stopping: threading.Event
    _work: _db.Connection | None = None
    _listen: _db.Connection | None = None
    _sender: _db.Connection | None = None

    # -- sending -----------------------------------------------------------------------------

    def send(self, message: str, **options: Unpack[SendOptions]) -> int:
        """Post *message* from this agent (``to=[...]``, ``channel=``, ``reply_to=``:
        :class:`~agentchat.agents.protocol.SendOptions`); return its id. Recipients must be
        ``*`` or registered agents when the database has a registry (``allow_unknown=True``:
        send anyway; :mod:`agentchat.agents.recipients`)."""
        return self._post(*self._outgoing(message, **options))

    @property
    def send_conninfo(self) -> str:
        """Where this agent's messages go (resolved once: on connecting, or on first use)."""
        return self._route.conninfo or self._route.settle(send_target(self.conninfo))

    @property
    def sends_locally(self) -> bool:
        """True when sends go to the database the agent listens on (replies are then atomic
        with the delivery's mark)."""
        return self._route.is_local(self.send_conninfo)

    def _send_connection(self) -> _db.Connection:
        if self._sender is None or self._sender.closed:
            self._sender = _db.connect(self.send_conninfo, long_lived=True)
        return self._sender

    def check_send_connection(self) -> None:
        """Open the connection where this agent sends, if that is not its own database: a
        :class:`agentchat.agents.protocol.SendFailed` naming it and the fix, now rather than at
        the first reply."""
        if self.sends_locally:
            return
        try:
            self._send_connection()
        except (errors.ConnectionFailed, errors.DatabaseMissing) as exc:
            raise self._unreachable(exc) from exc

    def _post(self, params: dict[str, Any], check: Sequence[str] = ()) -> int:
        """Post on the send connection: a message, or a delivery's reply at a remote source
        (outside the delivery's transaction; its reply_key makes a redelivery's second post
        return the first one's id). The names in *check* must be registered agents."""
        try:
            conn = self._send_connection()
            self._check_recipients(conn, check)
            return send_on(conn, params)
        except errors.InvalidInput as exc:
            refused = None if self._sender is None else explain_refusal(exc, self._sender)
            if refused is not None:
                raise refused from exc
            raise
        except errors.DatabaseError as exc:
            if not is_transient(exc):
                reraise(exc, self.send_conninfo)
            self._close_sender()  # reconnect next time; a send is never retried blindly
            raise self._unreachable(exc) from exc

    def _reply(
        self, work: _db.Connection, params: dict[str, Any], check: Sequence[str] = ()
    ) -> int:
        """A delivery's reply: in its transaction when sends are local, else posted there."""
        if not self.sends_locally:
            for delay in REPLY_NOT_VISIBLE_RETRIES:  # the source may not show the message yet
                try:
                    return self._post(params, check)
                except errors.InvalidInput as exc:
                    if not not_visible_yet(exc, params["reply_to"]):
                        raise
                    time.sleep(delay)
            return self._post(params, check)
        with _db.wrap_errors(self.conninfo), work.transaction():  # a savepoint: a failed
            self._check_recipients(work, check)  # reply leaves the mark usable
            return send_on(work, params)

    def _check_recipients(self, conn: _db.Connection, names: Sequence[str]) -> None:
        """InvalidInput if a name in *names* is not a registered agent (the registry read
        where the message goes, cached: :class:`~agentchat.agents.recipients.KnownAgents`)."""
        if self._known.needs_read(names):
            self._known.store(read_registry(conn))
        self._known.check(names)

    # -- receiving ---------------------------------------------------------------------------

    def messages(
        self, *, limit: int | None = None, idle_timeout: float | None = None
    ) -> Generator[Message, None, None]:
        """Every message addressed to this agent, oldest first, each exactly once.

        A message is handled when the loop asks for the next one, and recorded with its batch
        (the messages claimed in one transaction): leaving the loop early with ``break`` or an
        exception rolls the open batch back (the current message and those handed over with it),
        and they are delivered again next time. Call ``msg.reply()`` to
        answer and ``msg.fail(error)`` to record a failure; both are part of the same record.
        *limit*: stop after that many messages. *idle_timeout*: stop after that many seconds
        without a message (0: just catch up), also while a connection is lost (then the error
        is raised). Neither: run until :meth:`stop`. A row that is not a valid message is
        recorded as ``failed`` (the error says why) and skipped, with a warning.
        """
        loop = self._loop(limit, idle_timeout)
        self._connect()  # a wrong DSN fails here, at once; later failures are retried
        while not self._stopping.is_set():
            try:
                work = self._connect()
                batch = loop.batch()
                post = functools.partial(self._reply, work)
                with loop.claiming(), work.transaction():
                    for row in self._claim(work, batch):
                        taken = batch.take(row, post=post)
                        if taken is None:
                            continue
                        delivery, message = taken
                        with loop.handing_over(delivery):
                            yield message
                    outcomes = batch.outcomes()
                    if outcomes is not None:
                        work.execute(queries["agent_finish"], outcomes)
                if loop.finished(batch):
                    return
                if self._stopping.is_set():
                    return
                wait = loop.pause()
                if wait is None:
                    return
                self._wait(wait, loop)
            except Exception as exc:
                gone = loop.lost(exc)  # raised again unless a connection was lost
                if gone.own:
                    self._disconnect()
                if loop.closing:
                    return
                self._stopping.wait(loop.retry_in(gone))

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
                    text = reply_text(handler(message))
                    if text is not None:
                        message.reply(text)
                except Exception as exc:
                    if redeliver(self.name, message, exc):  # roll back, reconnect, again
                        try:
                            message = deliveries.throw(exc)
                        except StopIteration:
                            break
                        continue
                handled += 1
                message = next(deliveries, None)
        finally:
            deliveries.close()
        return handled

    def stop(self) -> None:
        """Make :meth:`messages` / :meth:`run` return after the current message, or the rest of
        the batch it was claimed with (thread-safe): what a batch claimed is handed over."""
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

    def _claim(self, work: _db.Connection, batch: Batch) -> Iterator[ClaimedRow]:
        """Claim *batch* in its transaction (``agent_claim_batch`` or ``agent_claim_ids``) and
        fetch its rows one by one: a row whose values cannot be fetched (a timestamp past year
        9999) is an :class:`~agentchat.agents.protocol.Unloadable`, and the next ones still
        come."""
        cur = work.execute(queries[batch.query], batch.params)
        for position in range(cur.rowcount):
            try:
                with _db.wrap_errors(self.conninfo):
                    row = cur.fetchone()
            except errors.AgentchatError as exc:
                yield unloadable(cur, position, unreadable_value(exc))
                if position + 1 < cur.rowcount:  # past the row that failed
                    cur.scroll(position + 1, mode="absolute")
                continue
            if row is not None:
                yield row

    def _connect(self) -> _db.Connection:
        """The work connection, after (re)opening both connections and LISTENing if needed."""
        if self._work is not None and not self._work.closed:
            return self._work
        self._disconnect()
        listen = _db.connect(self.conninfo, long_lived=True)
        try:
            with _db.wrap_errors(self.conninfo):
                listen.execute(queries["listen"])
            self._work = _db.connect(self.conninfo, long_lived=True)
            # a role that is another agent's is refused here, in one line, not left waiting
            # (imported here: identity reaches the replication package, which imports ops,
            # which imports the agents)
            from agentchat import identity

            identity.check_acting_as(self._work, self.name)
            with _db.wrap_errors(self.conninfo):
                self._work.execute(queries["fresh_statistics"])  # for a backlog's claims
        except BaseException:
            listen.close()
            if self._work is not None:
                self._work.close()
                self._work = None
            raise
        self._listen = listen
        if self._route.conninfo is None:
            with contextlib.suppress(errors.ConfigError):  # raised again when it sends
                self._route.settle(send_target(self.conninfo, self._work))
        return self._work

    def _wait(self, wait: Wait, loop: DeliveryLoop) -> None:
        """Until a notification concerns this agent, or *wait* is over (then probe the
        quiet listener)."""
        listen = self._listen
        assert listen is not None
        with _db.wrap_errors(self.conninfo):
            for left in wait.slices(self._stopping):
                if not left:
                    listen.execute(queries["ping"])  # a dead listener must not go unnoticed
                    return
                notes = listen.notifies(timeout=left, stop_after=1)
                if loop.note([note.payload for note in notes]):
                    # take whatever else has arrived too, without waiting
                    loop.note([note.payload for note in listen.notifies(timeout=0)])
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
