"""The delivery protocol: every decision :class:`~agentchat.agents.agent.Agent` and
:class:`~agentchat.agents.aio.AsyncAgent` share, with no I/O (psycopg_pool's ``BasePool``
beside ``pool.py`` and ``pool_async.py`` is the model).

Here: the agent's settings and their bounds and the queries' parameters (:class:`BaseAgent`),
one message's delivery (:class:`Delivery`), one ``messages()`` loop (:class:`DeliveryLoop`:
limit, idle timeout, the pause after a pass, :class:`Wait`, :class:`Backoff`, which connection
was lost), which errors are a lost connection (:func:`is_transient`), what a failure records
(:func:`failure_text`), what a handler's result and exception mean. Beside it, as pure as it:
:mod:`~agentchat.agents.message` (the message and the input rules),
:mod:`~agentchat.agents.notices` (the NOTIFY payload, :func:`parse_notification`, and
:class:`Catchup`, both re-exported here) and :mod:`~agentchat.agents.route` (where an agent
sends). The front-ends only open connections, run the named queries and wait.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypedDict

from agentchat import _db, errors
from agentchat.agents.message import (
    MAX_ERROR,
    Message,
    UnreadableMessage,
    check_channel,
    check_name,
    read_claimed,
    reply_params,
    send_params,
    shown,
)
from agentchat.agents.notices import MAX_PAYLOAD as MAX_PAYLOAD
from agentchat.agents.notices import NOTIFY_CHANNEL as NOTIFY_CHANNEL
from agentchat.agents.notices import Catchup as Catchup
from agentchat.agents.notices import ChatNotice as ChatNotice
from agentchat.agents.notices import notification_concerns as notification_concerns
from agentchat.agents.notices import notified_id as notified_id
from agentchat.agents.notices import parse_notification as parse_notification
from agentchat.agents.recipients import KnownAgents, named
from agentchat.agents.route import SendFailed, SendRoute, reraise, send_unreachable

log = logging.getLogger("agentchat.agent")

#: bounds for the seconds an agent waits: poll interval, idle timeout
MAX_POLL_INTERVAL = 86_400.0
MAX_IDLE_TIMEOUT = 31_536_000.0
#: SQLSTATE foreign_key_violation: a message pruned between finding and claiming it
FOREIGN_KEY_VIOLATION = "23503"
#: about how much handler time one batch holds (seconds): a batch's size adapts to it, so a
#: handler slower than this gets one message per transaction, a fast one up to ``batch_size``
BATCH_WORK = 0.02
#: a full catch-up looks at this many batches of candidates, so that it finds work past the
#: batches other listeners of the same agent hold (locked: skipped, not waited for)
SCAN_BATCHES = 4


# -- settings ---------------------------------------------------------------------------------


def check_limits(limit: int | None, idle_timeout: float | None) -> None:
    """An agent's ``limit`` (messages) and ``idle_timeout`` (seconds), or InvalidInput."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise errors.InvalidInput(f"limit must be at least 1, not {shown(limit)}")
    if idle_timeout is not None and not (
        isinstance(idle_timeout, int | float) and 0 <= idle_timeout <= MAX_IDLE_TIMEOUT
    ):
        raise errors.InvalidInput(
            f"idle_timeout must be 0 to {MAX_IDLE_TIMEOUT:g} seconds, not {shown(idle_timeout)}"
        )


def check_agent_settings(poll_interval: float, batch_size: int) -> None:
    """An agent's ``poll_interval`` (seconds) and ``batch_size``, or InvalidInput."""
    if not (isinstance(poll_interval, int | float) and 0 < poll_interval <= MAX_POLL_INTERVAL):
        raise errors.InvalidInput(
            f"poll_interval must be more than 0 and at most {MAX_POLL_INTERVAL:g} seconds,"
            f" not {shown(poll_interval)}"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise errors.InvalidInput(f"batch_size must be at least 1, not {shown(batch_size)}")


# -- errors -----------------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """A lost connection: the delivery is rolled back, the connection re-opened (with backoff)
    and the message delivered again. agentchat's connection errors (a refused password too: a
    restart may be under way) and any error :attr:`~agentchat.errors.DatabaseError.transient`;
    also a handler's own untranslated driver error of the same kind."""
    return isinstance(exc, errors.ConnectionFailed) or _db.is_transient(exc)


def failure_text(exc: BaseException) -> str:
    """What a failed delivery records: the error, one line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR] if text else type(exc).__name__


def unreadable_value(exc: errors.AgentchatError) -> errors.AgentchatError:
    """A claimed row that could not be fetched: a lost connection is raised again; anything
    else is a value Python cannot hold (a timestamp past year 9999), and the row unreadable."""
    if is_transient(exc):
        raise exc
    return exc


def unloadable(cur: Any, position: int, error: Exception) -> Unloadable:
    """The claimed row at *position* of *cur*'s result whose values could not be fetched: its
    id and status read from the raw result (text; both always fetchable), and the error."""
    raw_id, raw_status = cur.pgresult.get_value(position, 0), cur.pgresult.get_value(position, 1)
    status = None if raw_status is None else bytes(raw_status).decode()
    return Unloadable(int(bytes(raw_id)), status, error)


def lost(conninfo: str, exc: BaseException) -> errors.ConnectionFailed:
    """The error when an agent's idle timeout passes while a connection is still lost."""
    if isinstance(exc, errors.ConnectionFailed):
        exc.message += " (the idle timeout passed while retrying)"
        return exc
    return errors.ConnectionFailed(
        f"{_db.describe(conninfo)}: connection lost ({failure_text(exc)}); the idle timeout"
        " passed while reconnecting"
    )


def reply_text(result: object) -> str | None:
    """What a handler's *result* posts: a string that is not blank; None posts nothing."""
    if result is None:
        return None
    if not isinstance(result, str):
        raise TypeError(f"a handler returns a reply (str) or None, not {type(result).__name__}")
    return result if result.strip() else None


def redeliver(agent: str, message: Message, exc: Exception) -> bool:
    """What a handler's exception means: True, a lost connection (roll back, reconnect, deliver
    again); a ConfigError is raised (the setup is wrong, not this message: it is rolled back);
    anything else is recorded as the message's failure, and delivery goes on (False)."""
    if is_transient(exc):
        return True
    if isinstance(exc, errors.ConfigError):
        raise exc
    log.warning("%s: message %s failed: %s", agent, message.id, exc)
    message.fail(failure_text(exc))
    return False


@dataclass
class Backoff:
    """Exponential backoff with jitter between reconnection attempts."""

    first: float = 0.1
    maximum: float = 5.0
    _next: float = 0.0
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def delay(self) -> float:
        self._next = min(self.maximum, self._next * 2 if self._next else self.first)
        return self._next * self.jitter(0.8, 1.2)

    def reset(self) -> None:
        self._next = 0.0


# -- one delivery, one loop -------------------------------------------------------------------

#: how a front-end posts a reply: Agent's way, and AsyncAgent's
#: (the reply's parameters, the recipients to check against the registry)
Post = Callable[[dict[str, Any], Sequence[str]], int]
APost = Callable[[dict[str, Any], Sequence[str]], Awaitable[int]]


class Delivery:
    """One message being delivered: the outcome recorded with its mark (``routed``, then
    ``responded`` after a reply, or ``failed``) and the replies posted so far.

    The front-end gives it the one way it posts a reply: *post* (:class:`Agent`, for
    ``msg.reply()``) or *apost* (:class:`AsyncAgent`, for ``await msg.areply()``).
    """

    def __init__(
        self, agent: str, chat_id: int, *, post: Post | None = None, apost: APost | None = None
    ) -> None:
        self.agent = agent
        self.chat_id = chat_id
        self.post = post
        self.apost = apost
        self.status = "routed"
        self.error: str | None = None
        self.replies = 0
        self.claimed = False  # the claim returned the row: record an outcome
        self.handed_over = False  # the consumer asked for the next message: it counts

    def read(self, row: Sequence[Any] | Exception | None) -> Message | None:
        """The message of the claimed *row* (None: not for this agent, or handled already).
        An unreadable one is recorded as failed (and said); delivery goes on without it."""
        if row is None:
            return None
        self.claimed = True
        try:
            return read_claimed(self.chat_id, row, self)
        except UnreadableMessage as exc:
            log.warning("%s: %s; recorded as failed", self.agent, exc)
            self.fail(str(exc))
            return None

    def reply_params(self, message: Message, text: str, to: Sequence[str] | None) -> dict[str, Any]:
        """The next reply's checked parameters (its reply_key counts this delivery's replies)."""
        return reply_params(self.agent, message, text, to, self.replies + 1)

    @staticmethod
    def reply_checks(
        params: dict[str, Any], to: Sequence[str] | None, allow_unknown: bool
    ) -> list[str]:
        """The recipients of a reply to check against the registry: those given with *to*
        (none with *allow_unknown*); a reply to the message's sender (no *to*) is not checked,
        the sender is no typo."""
        if allow_unknown or to is None or (isinstance(to, Sequence) and not to):
            return []
        return named(params["mentions"])

    def replied(self, new_id: int) -> int:
        """A reply was posted as *new_id*."""
        self.replies += 1
        self.status = "responded"
        return new_id

    def fail(self, error: str) -> None:
        self.status, self.error = "failed", error[:MAX_ERROR]

    def outcome(self) -> dict[str, Any]:
        """This delivery's row of ``agent_finish``."""
        return {"id": self.chat_id, "agent": self.agent, "status": self.status,
                "error": self.error}  # fmt: skip


@dataclass(frozen=True)
class Unloadable:
    """A claimed row whose values could not be fetched (a timestamp past year 9999): its id and
    status, read apart from the rest, and the error."""

    chat_id: int
    status: str | None
    error: Exception


#: a row of ``agent_claim_batch`` / ``agent_claim_ids`` as a front-end fetched it
ClaimedRow = Sequence[Any] | Unloadable


class Batch:
    """One claim and its transaction: the messages a listener locked and marked together, handed
    over one by one, their outcomes recorded together at the end (``agent_finish``).

    The front-end runs :attr:`query` with :attr:`params`, gives each row it fetches to
    :meth:`take` (a :class:`Delivery` and its message, or None: expired, recorded by someone
    else meanwhile, unreadable and recorded failed), then runs ``agent_finish`` with
    :meth:`outcomes` and commits.
    """

    def __init__(
        self,
        agent: str,
        query: str,
        params: dict[str, Any],
        size: int,
        *,
        full: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.query = query
        self.params = params
        self.size = size
        self.full = full  # a full catch-up (else the ids notifications named)
        self.clock = clock
        self.started: float | None = None  # when the first row came: handler time from there
        self.locked = 0  # rows the claim returned: messages this listener holds
        self.last_id = 0  # the highest of them
        self.deliveries: list[Delivery] = []

    def take(
        self, row: ClaimedRow, *, post: Post | None = None, apost: APost | None = None
    ) -> tuple[Delivery, Message] | None:
        """One claimed *row*: its delivery and message to hand over, or None: expired
        (recorded so by the claim), recorded by someone else meanwhile, or unreadable (recorded
        failed, with a warning)."""
        self.locked += 1
        if self.started is None:
            self.started = self.clock()
        value: Sequence[Any] | Exception
        if isinstance(row, Unloadable):
            chat_id, status, value = row.chat_id, row.status, row.error
        else:
            chat_id, status, value = int(row[0]), row[1], [row[0], *row[2:]]
        self.last_id = max(self.last_id, chat_id)
        if status != "routed":  # the claim's mark for a message it hands over
            return None
        delivery = Delivery(self.agent, chat_id, post=post, apost=apost)
        self.deliveries.append(delivery)
        message = delivery.read(value)
        return None if message is None else (delivery, message)

    @property
    def handed_over(self) -> int:
        return sum(1 for d in self.deliveries if d.handed_over)

    def outcomes(self) -> dict[str, Any] | None:
        """Parameters for ``agent_finish``: the outcomes that are not ``routed``, the claim's
        mark (None: every message was simply routed)."""
        each = [d.outcome() for d in self.deliveries if d.status != "routed"]
        if not each:
            return None
        return {
            "agent": self.agent,
            "ids": [o["id"] for o in each],
            "statuses": [o["status"] for o in each],
            "errors": [o["error"] for o in each],
        }


@dataclass(frozen=True)
class Lost:
    """A lost connection in a delivery loop: which one, and the error."""

    conninfo: str
    own: bool  # the agent's own database: re-open its connections (else its send connection)
    error: BaseException


class DeliveryLoop:
    """One run of ``messages()``: what is planned, how many were delivered, since when the
    agent has been idle, the backoff between reconnections, and whether the consumer closed it.
    """

    def __init__(
        self,
        agent: BaseAgent,
        limit: int | None,
        idle_timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_limits(limit, idle_timeout)
        self.agent = agent
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.catchup = Catchup(agent.poll_interval, clock)
        self.backoff = Backoff()
        self.delivered = 0
        self.idle_since = clock()
        self.closing = False
        self.size = 1  # the next batch's size: grows while handlers are fast (see finished())

    def batch(self) -> Batch:
        """The next claim: the ids notifications named (as many as fit), or a full catch-up
        (``agent_claim_batch``); never more than the limit leaves."""
        size = self.size
        if self.limit is not None:
            size = max(1, min(size, self.limit - self.delivered))
        agent = self.agent
        params: dict[str, Any] = {"agent": agent.name, "channel": agent.channel, "limit": size}
        scan = size + (SCAN_BATCHES - 1) * agent.batch_size
        ids = self.catchup.plan()
        if ids is None:
            params["scan"] = scan
            params["after"] = self.catchup.after
            return Batch(agent.name, "agent_claim_batch", params, size, full=True,
                         clock=self.clock)  # fmt: skip
        # as many candidates as a full catch-up looks at: those another listener holds (both
        # were notified) are skipped, not the end of this claim
        self.catchup.put_back(ids[scan:])
        params["ids"] = ids[:scan]
        return Batch(agent.name, "agent_claim_ids", params, size, full=False, clock=self.clock)

    def finished(self, batch: Batch) -> bool:
        """After a batch's commit: count what was handed over, size the next batch to about
        :data:`BATCH_WORK` of handler time, and say whether the limit is reached."""
        if batch.full:
            self.catchup.caught_up(batch.locked, batch.size, batch.last_id)
        elif batch.locked >= batch.size:  # full: the candidates past it were not looked at
            self.catchup.put_back([i for i in batch.params["ids"] if i > batch.last_id])
        handed = batch.handed_over
        if handed and batch.started is not None:
            self.delivered += handed
            self.idle_since = self.clock()
            each = max(self.clock() - batch.started, 1e-9) / handed
            fits = max(1, int(BATCH_WORK / each))
            self.size = max(1, min(self.agent.batch_size, fits, 2 * batch.size))
        return self.limit is not None and self.delivered >= self.limit

    @contextlib.contextmanager
    def claiming(self) -> Iterator[None]:
        """Around a claim's transaction: driver errors translated, and a message pruned between
        finding and claiming it skipped."""
        try:
            with _db.wrap_errors(self.agent.conninfo):
                yield
        except errors.DatabaseError as exc:
            if exc.sqlstate != FOREIGN_KEY_VIOLATION:
                raise

    @contextlib.contextmanager
    def handing_over(self, delivery: Delivery) -> Iterator[None]:
        """Around ``yield message``: the consumer asking for the next one hands it over; the
        generator closed instead (``break``, an exception) ends the loop, even if the rollback
        then fails."""
        try:
            yield
        except GeneratorExit:
            self.closing = True
            raise
        delivery.handed_over = True

    def pause(self) -> Wait | None:
        """After a pass without errors: how long to wait for a notification (nothing, when
        more work is waiting), or None: the idle timeout has passed, stop."""
        self.backoff.reset()
        if self.catchup.has_work:
            return Wait(0.0, self.clock)
        wait = self.catchup.wait_time()  # 0 when a full catch-up is overdue: no wait
        if self.idle_timeout is not None:
            idle_left = self.idle_timeout - (self.clock() - self.idle_since)
            if idle_left <= 0:
                return None
            wait = min(wait, idle_left)
        return Wait(wait, self.clock)

    def lost(self, exc: Exception) -> Lost:
        """*exc* ended a pass: a lost connection (which one), or raised again (a missing table
        or function as ConfigError: agentchat is not installed there)."""
        if not is_transient(exc):
            reraise(exc, self.agent.conninfo)
        failed = exc.conninfo if isinstance(exc, SendFailed) else self.agent.conninfo
        self.catchup.lost_connection()
        return Lost(failed, failed == self.agent.conninfo, exc)

    def retry_in(self, gone: Lost) -> float:
        """Seconds to wait before reconnecting (said in a warning); the error instead once the
        idle timeout has passed."""
        if self.idle_timeout is not None and self.clock() - self.idle_since >= self.idle_timeout:
            error = lost(gone.conninfo, gone.error)
            if error is gone.error:
                raise error  # agentchat's own, its message extended
            raise error from gone.error
        delay = self.backoff.delay()
        log.warning(
            "%s: connection lost (%s); reconnecting in %.1f s",
            _db.describe(gone.conninfo), failure_text(gone.error), delay,
        )  # fmt: skip
        return delay

    def note(self, payloads: Sequence[str]) -> bool:
        """Take notifications; True if any concerns the agent."""
        woken = False
        for payload in payloads:
            woken = self.catchup.note(payload, self.agent.name, self.agent.channel) or woken
        return woken


class Wait:
    """One wait for a notification, *timeout* seconds at most."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self.deadline = clock() + timeout

    def slices(self, stopping: StopEvent) -> Iterator[float]:
        """Seconds to listen for, a second at most each (so that ``stop()`` is seen), until
        stopped; last a 0 when the time is up: probe the quiet connection, then go on. Nothing
        at all for a wait of 0 (more work is waiting)."""
        if self.timeout <= 0:
            return
        while not stopping.is_set():
            left = min(max(0.0, self.deadline - self.clock()), 1.0)
            yield left
            if not left:
                return


class SendOptions(TypedDict, total=False):
    """``send()``'s options, for :class:`Agent` and :class:`AsyncAgent` alike: *to* (names, or
    ``*`` for everyone; default nobody), *channel* (default the agent's own, else ``general``),
    *reply_to* (the id of the message answered), *allow_unknown* (send to names the registry of
    agents does not know: :mod:`agentchat.agents.recipients`)."""

    to: Iterable[str]
    channel: str | None
    reply_to: int | None
    allow_unknown: bool


class StopEvent(Protocol):
    """``threading.Event`` or ``asyncio.Event``: what the loop looks at."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...


# -- the agent's settings ---------------------------------------------------------------------


class BaseAgent:
    """What :class:`Agent` and :class:`AsyncAgent` hold besides their connections: the checked
    settings, where they send, and the queries' parameters.

    An agent named *name* whose database is *dsn* (libpq URI or conninfo; PG* apply).
    *send_dsn*: where sends go. By default the agent's own database, or, when that is a replica,
    its source as ``agentchat install`` recorded it. *channel*: only this channel's messages.
    *poll_interval*: the longest a lost notification can delay a message.
    """

    #: what ``stop()`` sets: ``threading.Event`` (Agent) or ``asyncio.Event`` (AsyncAgent)
    _event: ClassVar[type[StopEvent]]

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
        self._route = SendRoute(self.conninfo, send_dsn)
        self._stopping: StopEvent = self._event()
        self._known = KnownAgents()  # the registry of agents, as this agent last read it

    def _send_params(
        self,
        message: str,
        *,
        to: Iterable[str] = (),
        channel: str | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """Checked parameters of a message this agent sends (on its own channel by default)."""
        return send_params(self.name, message, to, channel or self.channel or "general", reply_to)

    def _outgoing(
        self,
        message: str,
        *,
        to: Iterable[str] = (),
        channel: str | None = None,
        reply_to: int | None = None,
        allow_unknown: bool = False,
    ) -> tuple[dict[str, Any], list[str]]:
        """:meth:`_send_params`, and the recipients to check against the registry of agents
        (none with *allow_unknown*)."""
        params = self._send_params(message, to=to, channel=channel, reply_to=reply_to)
        return params, [] if allow_unknown else named(params["mentions"])

    def _loop(self, limit: int | None, idle_timeout: float | None) -> DeliveryLoop:
        return DeliveryLoop(self, limit, idle_timeout)

    def _unreachable(self, exc: BaseException) -> SendFailed:
        """The error when the send connection fails (it is settled by then)."""
        assert self._route.conninfo is not None
        return send_unreachable(self.name, self._route.conninfo, exc)
