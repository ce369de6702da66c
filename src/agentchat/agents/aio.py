"""The agent API for asyncio: :class:`AsyncAgent`, the same contract as :class:`agentchat.Agent`.

    from agentchat import AsyncAgent

    async with AsyncAgent("graybeard", "dbname=graybeard_memory") as agent:
        await agent.send("hello, nova", to=["nova"])
        async for msg in agent.messages(idle_timeout=30):
            await msg.areply(f"got it: {msg.message}")

    await AsyncAgent("graybeard", dsn).run(handler)   # handler: sync or async, str | None

Delivery works exactly as described in :mod:`agentchat.agents.agent`: LISTEN, catch up by
query, one transaction per batch (marks, replies, outcomes), notification or poll, reconnect
with backoff. Every decision lives in :mod:`agentchat.agents.protocol`; this module holds the
asyncio I/O only, with the same method names as :class:`agentchat.Agent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Unpack

from agentchat import _db, errors
from agentchat.agents import protocol
from agentchat.agents.message import Message
from agentchat.agents.recipients import aexplain_refusal, aread_registry
from agentchat.agents.route import REPLY_NOT_VISIBLE_RETRIES, not_visible_yet, reraise
from agentchat.agents.send import send_target
from agentchat.sql import queries

#: an async handler's result: a string is posted as the reply, None means nothing to say
AsyncHandler = Callable[[Message], "Awaitable[str | None] | str | None"]


class AsyncAgent(protocol.BaseAgent):
    """:class:`agentchat.Agent` for asyncio (same arguments, awaitable methods)."""

    _event = asyncio.Event
    _stopping: asyncio.Event
    _work: _db.AsyncConnection | None = None
    _listen: _db.AsyncConnection | None = None
    _sender: _db.AsyncConnection | None = None

    # -- sending -----------------------------------------------------------------------------

    async def send(self, message: str, **options: Unpack[protocol.SendOptions]) -> int:
        """Post *message* from this agent (``to=[...]``, ``channel=``, ``reply_to=``:
        :class:`~agentchat.agents.protocol.SendOptions`); return its id. Recipients are
        checked as :meth:`agentchat.Agent.send` checks them."""
        return await self._post(*self._outgoing(message, **options))

    async def send_conninfo(self) -> str:
        """Where this agent's messages go (resolved once: on connecting, or on first use)."""
        if self._route.conninfo is not None:
            return self._route.conninfo
        return self._route.settle(await asyncio.to_thread(send_target, self.conninfo))

    async def sends_locally(self) -> bool:
        """:attr:`agentchat.Agent.sends_locally`."""
        return self._route.is_local(await self.send_conninfo())

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
            raise self._unreachable(exc) from exc

    async def _post(self, params: dict[str, Any], check: Sequence[str] = ()) -> int:
        """Post on the send connection: a message, or a delivery's reply at a remote source
        (idempotent by its reply_key); the names in *check* must be registered agents."""
        try:
            conn = await self._send_connection()
            await self._check_recipients(conn, check)
            return await _send_on(conn, params)
        except errors.InvalidInput as exc:
            refused = None if self._sender is None else await aexplain_refusal(exc, self._sender)
            if refused is not None:
                raise refused from exc
            raise
        except errors.DatabaseError as exc:
            if not protocol.is_transient(exc):
                reraise(exc, await self.send_conninfo())
            await self._close_sender()  # reconnect next time; a send is never retried blindly
            raise self._unreachable(exc) from exc

    async def _reply(
        self, work: _db.AsyncConnection, params: dict[str, Any], check: Sequence[str] = ()
    ) -> int:
        """A delivery's reply: in its transaction when sends are local, else posted there."""
        if not await self.sends_locally():
            for delay in REPLY_NOT_VISIBLE_RETRIES:  # the source may not show the message yet
                try:
                    return await self._post(params, check)
                except errors.InvalidInput as exc:
                    if not not_visible_yet(exc, params["reply_to"]):
                        raise
                    await asyncio.sleep(delay)
            return await self._post(params, check)
        with _db.wrap_errors(self.conninfo):
            async with work.transaction():  # a savepoint inside the delivery's transaction
                await self._check_recipients(work, check)
                return await _send_on(work, params)

    async def _check_recipients(self, conn: _db.AsyncConnection, names: Sequence[str]) -> None:
        """:meth:`agentchat.Agent._check_recipients`."""
        if self._known.needs_read(names):
            self._known.store(await aread_registry(conn))
        self._known.check(names)

    # -- receiving ---------------------------------------------------------------------------

    async def messages(
        self, *, limit: int | None = None, idle_timeout: float | None = None
    ) -> AsyncGenerator[Message, None]:
        """Every message addressed to this agent, oldest first, each exactly once; recorded
        when the loop asks for the next (see :meth:`agentchat.Agent.messages`)."""
        loop = self._loop(limit, idle_timeout)
        await self._connect()
        while not self._stopping.is_set():
            try:
                work = await self._connect()
                batch = loop.batch()
                apost = functools.partial(self._reply, work)
                with loop.claiming():
                    async with work.transaction():
                        async for row in self._claim(work, batch):
                            taken = batch.take(row, apost=apost)
                            if taken is None:
                                continue
                            delivery, message = taken
                            with loop.handing_over(delivery):
                                yield message
                        outcomes = batch.outcomes()
                        if outcomes is not None:
                            await work.execute(queries["agent_finish"], outcomes)
                if loop.finished(batch) or self._stopping.is_set():
                    return
                wait = loop.pause()
                if wait is None:
                    return
                await self._wait(wait, loop)
            except Exception as exc:
                gone = loop.lost(exc)  # raised again unless a connection was lost
                if gone.own:
                    await self._disconnect()
                if loop.closing:
                    return
                delay = loop.retry_in(gone)  # raised once the idle timeout has passed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

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
        protocol.check_limits(limit, idle_timeout)
        await self._connect()
        await self.check_send_connection()  # a handler's reply must have somewhere to go
        deliveries = self.messages(limit=limit, idle_timeout=idle_timeout)
        try:
            message = await anext(deliveries, None)
            while message is not None:
                try:
                    result = handler(message)
                    text = protocol.reply_text(
                        await result if inspect.isawaitable(result) else result
                    )
                    if text is not None:
                        await message.areply(text)
                except Exception as exc:
                    if protocol.redeliver(self.name, message, exc):  # roll back, reconnect, again
                        try:
                            message = await deliveries.athrow(exc)
                        except StopAsyncIteration:
                            break
                        continue
                handled += 1
                message = await anext(deliveries, None)
        finally:
            await deliveries.aclose()
        return handled

    def stop(self) -> None:
        """Make :meth:`messages` / :meth:`run` return after the current message (or the rest of
        its batch)."""
        self._stopping.set()

    async def close(self) -> None:
        """Close the agent's connections."""
        await self._disconnect()
        await self._close_sender()

    async def __aenter__(self) -> AsyncAgent:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connections -------------------------------------------------------------------------

    async def _claim(
        self, work: _db.AsyncConnection, batch: protocol.Batch
    ) -> AsyncIterator[protocol.ClaimedRow]:
        """:meth:`agentchat.Agent._claim`: the batch's rows, an unloadable one as such."""
        cur = await work.execute(queries[batch.query], batch.params)
        for position in range(cur.rowcount):
            try:
                with _db.wrap_errors(self.conninfo):
                    row = await cur.fetchone()
            except errors.AgentchatError as exc:
                yield protocol.unloadable(cur, position, protocol.unreadable_value(exc))
                if position + 1 < cur.rowcount:  # past the row that failed
                    await cur.scroll(position + 1, mode="absolute")
                continue
            if row is not None:
                yield row

    async def _connect(self) -> _db.AsyncConnection:
        """The work connection, after (re)opening both connections and LISTENing if needed."""
        if self._work is not None and not self._work.closed:
            return self._work
        await self._disconnect()
        listen = await _db.connect_async(self.conninfo, long_lived=True)
        try:
            with _db.wrap_errors(self.conninfo):
                await listen.execute(queries["listen"])
            self._work = await _db.connect_async(self.conninfo, long_lived=True)
            with _db.wrap_errors(self.conninfo):
                await self._work.execute(queries["fresh_statistics"])  # for a backlog's claims
        except BaseException:
            await listen.close()
            if self._work is not None:
                await self._work.close()
                self._work = None
            raise
        self._listen = listen
        with contextlib.suppress(errors.ConfigError):  # raised again when it sends
            await self.send_conninfo()
        return self._work

    async def _wait(self, wait: protocol.Wait, loop: protocol.DeliveryLoop) -> None:
        """:meth:`agentchat.Agent._wait`."""
        listen = self._listen
        assert listen is not None
        with _db.wrap_errors(self.conninfo):
            for left in wait.slices(self._stopping):
                if not left:
                    await listen.execute(queries["ping"])  # a dead listener must not go unnoticed
                    return
                notes = listen.notifies(timeout=left, stop_after=1)
                if loop.note([note.payload async for note in notes]):
                    # take whatever else has arrived too, without waiting
                    loop.note([note.payload async for note in listen.notifies(timeout=0)])
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
    """:func:`agentchat.agents.send.send_on` on an asyncio connection."""
    with _db.wrap_errors():
        cur = await conn.execute(
            queries["send_reply" if "reply_key" in params else "send_message"], params
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])
