"""The agent API for asyncio: :class:`AsyncAgent`, the same contract as :class:`agentchat.Agent`.

    from agentchat.aio import AsyncAgent

    async with AsyncAgent("graybeard", "dbname=graybeard_memory") as agent:
        await agent.send("hello, nova", to=["nova"])
        async for msg in agent.messages(idle_timeout=30):
            await msg.areply(f"got it: {msg.message}")

    await AsyncAgent("graybeard", dsn).run(handler)   # handler: sync or async, str | None

Delivery works exactly as described in :mod:`agentchat.agent`: LISTEN, catch up by query, one
transaction per message (mark, replies, outcome), notification or poll, reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import psycopg

from agentchat import _db, errors
from agentchat.agent import TRANSIENT, Backoff, failure_text, lost
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
    send_params,
    send_target,
    send_unreachable,
)
from agentchat.sql import queries

log = logging.getLogger("agentchat.agent")

#: an async handler's result: a string is posted as the reply, None means nothing to say
AsyncHandler = Callable[[Message], "Awaitable[str | None] | str | None"]


class _AsyncDelivery:
    """One message being delivered: its replies and outcome, recorded with its mark."""

    def __init__(self, agent: AsyncAgent, conn: _db.AsyncConnection) -> None:
        self.agent = agent
        self.conn = conn
        self.status = "routed"
        self.error: str | None = None
        self.replies = 0

    def reply(self, message: Message, text: str, to: Sequence[str] | None) -> int:
        raise errors.AgentchatError("with AsyncAgent, answer with `await msg.areply(...)`")

    async def areply(self, message: Message, text: str, to: Sequence[str] | None) -> int:
        params = reply_params(self.agent.name, message, text, to, self.replies + 1)
        if await self.agent.sends_locally():
            async with self.conn.transaction():  # a savepoint inside the delivery's transaction
                new_id = await _send_on(self.conn, params)
        else:
            new_id = await self.agent._post(params)
        self.replies += 1
        self.status = "responded"
        return new_id

    def fail(self, message: Message, error: str) -> None:
        self.status, self.error = "failed", error[:2000]


class AsyncAgent:
    """:class:`agentchat.Agent` for asyncio (same arguments, awaitable methods)."""

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
        self._work: _db.AsyncConnection | None = None
        self._listen: _db.AsyncConnection | None = None
        self._sender: _db.AsyncConnection | None = None
        self._stopping = asyncio.Event()

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        message: str,
        *,
        to: Iterable[str] = (),
        channel: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Post *message* from this agent to *to* (names, or ``*`` for everyone); its id."""
        params = send_params(self.name, message, to, channel or self.channel or "general", reply_to)
        return await self._post(params)

    async def _post(self, params: dict[str, Any]) -> int:
        """Post on the send connection: a message, or a delivery's reply at a remote source
        (idempotent by its reply_key)."""
        try:
            return await _send_on(await self._send_connection(), params)
        except TRANSIENT as exc:
            await self._close_sender()
            raise send_unreachable(self.name, await self.send_conninfo(), exc) from None
        except psycopg.Error as exc:
            raise database_error(exc, await self.send_conninfo()) from None

    async def send_conninfo(self) -> str:
        """Where this agent's messages go (resolved once)."""
        if self._send_conninfo is None:
            if self._send_dsn is not None:
                self._send_conninfo = self._send_dsn
                return self._send_dsn
            found = await asyncio.to_thread(send_target, self.conninfo)
            self._send_conninfo = found
            return found
        return self._send_conninfo

    async def sends_locally(self) -> bool:
        return await self.send_conninfo() == self.conninfo

    async def _send_connection(self) -> _db.AsyncConnection:
        if self._sender is None or self._sender.closed:
            self._sender = await _db.connect_async(await self.send_conninfo(), long_lived=True)
        return self._sender

    async def check_send_connection(self) -> None:
        """:meth:`agentchat.Agent.check_send_connection`: fail now if sends cannot go out."""
        if await self.sends_locally():
            return
        try:
            await self._send_connection()
        except (errors.ConnectionFailed, errors.DatabaseMissing) as exc:
            raise send_unreachable(self.name, await self.send_conninfo(), exc) from None

    # -- receiving ---------------------------------------------------------------------------

    async def messages(
        self, *, limit: int | None = None, idle_timeout: float | None = None
    ) -> AsyncGenerator[Message, None]:
        """Every message addressed to this agent, oldest first, each exactly once; recorded
        when the loop asks for the next (see :meth:`agentchat.Agent.messages`)."""
        check_limits(limit, idle_timeout)
        closing = False
        delivered = 0
        idle_since = time.monotonic()
        backoff = Backoff()
        catchup = Catchup(self.poll_interval)
        await self._connect()
        while not self._stopping.is_set():
            try:
                work = await self._connect()
                ids = catchup.plan()
                if ids is None:
                    cur = await work.execute(queries["agent_pending"], self._filter())
                    ids = [row[0] for row in await cur.fetchall()]
                    catchup.caught_up(len(ids), self.batch_size)
                for chat_id in ids:
                    if self._stopping.is_set():
                        return
                    delivery = _AsyncDelivery(self, work)
                    try:
                        async with work.transaction():
                            claim = {"id": chat_id, "agent": self.name, "channel": self.channel}
                            cur = await work.execute(queries["agent_claim"], claim)
                            row: Any
                            try:
                                row = await cur.fetchone()
                            except psycopg.DataError as exc:  # a value Python cannot hold
                                row = exc
                            if row is None:
                                continue
                            try:
                                message = read_claimed(chat_id, row, delivery)
                            except UnreadableMessage as exc:
                                await self._unreadable(work, chat_id, exc)
                                continue
                            try:
                                yield message
                            except GeneratorExit:
                                closing = True
                                raise
                            await work.execute(
                                queries["agent_finish"],
                                {"id": chat_id, "agent": self.name, "status": delivery.status,
                                 "error": delivery.error},
                            )  # fmt: skip
                    except psycopg.errors.ForeignKeyViolation:
                        continue
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
                await self._wait(wait, catchup)
            except TRANSIENT as exc:
                failed = exc.conninfo if isinstance(exc, SendFailed) else self.conninfo
                if failed == self.conninfo:
                    await self._disconnect()
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            except psycopg.Error as exc:
                raise database_error(exc, self.conninfo) from None

    async def run(
        self,
        handler: AsyncHandler,
        *,
        limit: int | None = None,
        idle_timeout: float | None = None,
    ) -> int:
        """Call *handler* (a function or a coroutine function) for every message; a returned
        string is the reply, an exception records ``failed``; return how many were handled."""
        handled = 0
        check_limits(limit, idle_timeout)
        await self._connect()
        await self.check_send_connection()  # a handler's reply must have somewhere to go
        deliveries = self.messages(limit=limit, idle_timeout=idle_timeout)
        try:
            message = await anext(deliveries, None)
            while message is not None:
                try:
                    result = handler(message)
                    if inspect.isawaitable(result):
                        result = await result
                    if result is not None:
                        if not isinstance(result, str):
                            raise TypeError(
                                "a handler returns a reply (str) or None,"
                                f" not {type(result).__name__}"
                            )
                        if result.strip():
                            await message.areply(result)
                except TRANSIENT as exc:
                    try:
                        message = await deliveries.athrow(exc)
                    except StopAsyncIteration:
                        break
                    continue
                except errors.ConfigError:
                    raise  # the setup is wrong, not this message: it is rolled back
                except Exception as exc:
                    log.warning("%s: message %s failed: %s", self.name, message.id, exc)
                    message.fail(failure_text(exc))
                handled += 1
                message = await anext(deliveries, None)
        finally:
            await deliveries.aclose()
        return handled

    def stop(self) -> None:
        """Make :meth:`messages` / :meth:`run` return after the current message."""
        self._stopping.set()

    async def close(self) -> None:
        await self._disconnect()
        await self._close_sender()

    async def __aenter__(self) -> AsyncAgent:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connections -------------------------------------------------------------------------

    def _filter(self) -> dict[str, Any]:
        return {"agent": self.name, "channel": self.channel, "limit": self.batch_size}

    async def _unreadable(
        self, work: _db.AsyncConnection, chat_id: int, exc: UnreadableMessage
    ) -> None:
        """Record a claimed row that is not a valid message as failed; delivery goes on."""
        log.warning("%s: %s; recorded as failed", self.name, exc)
        outcome = {"id": chat_id, "agent": self.name, "status": "failed", "error": str(exc)[:2000]}
        await work.execute(queries["agent_finish"], outcome)

    async def _connect(self) -> _db.AsyncConnection:
        if self._work is not None and not self._work.closed:
            return self._work
        await self._disconnect()
        listen = await _db.connect_async(self.conninfo, long_lived=True)
        try:
            await listen.execute(queries["listen"])
            self._work = await _db.connect_async(self.conninfo, long_lived=True)
        except BaseException:
            await listen.close()
            raise
        self._listen = listen
        if self._send_conninfo is None and self._send_dsn is None:
            with contextlib.suppress(errors.ConfigError):
                await self.send_conninfo()
        return self._work

    async def _wait(self, timeout: float, catchup: Catchup) -> None:
        assert self._listen is not None
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                await self._listen.execute(queries["ping"])
                return
            woken = False
            async for note in self._listen.notifies(timeout=min(left, 1.0), stop_after=1):
                woken = catchup.note(note.payload, self.name, self.channel) or woken
            if woken:
                async for note in self._listen.notifies(timeout=0):
                    catchup.note(note.payload, self.name, self.channel)
                return

    async def _disconnect(self) -> None:
        for conn in (self._listen, self._work):
            if conn is not None:
                await conn.close()
        self._listen = self._work = None

    async def _close_sender(self) -> None:
        if self._sender is not None:
            await self._sender.close()
        self._sender = None


async def _send_on(conn: _db.AsyncConnection, params: dict[str, Any]) -> int:
    cur = await conn.execute(queries["send_reply" if "reply_key" in params else "send_message"],
                             params)  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
