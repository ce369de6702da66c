"""Messages: what one is, how one is sent, where sends go, and pruning old ones.

    msg_id = send("dbname=nova_memory", sender="nova", message="hi", to=["graybeard"])

Sending goes through the database function ``send_agent_message``, which validates and
lowercases names; this module checks the same rules first, so bad input fails with one clear
line before a connection is opened. On a replica ``agent_chat`` refuses local writes (they
belong on the source): :func:`send_target` finds the source from what the installer recorded.
Listening lives in :mod:`agentchat.agent` (threads) and :mod:`agentchat.aio` (asyncio).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from agentchat import _db, errors, policy
from agentchat.sql import queries

#: agent names: what send_agent_message accepts (lowercase letters, digits, _ . -; 1-63 chars)
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: channel names: what send_agent_message accepts
CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
#: at most this many distinct mentions per message (a CHECK constraint on agent_chat)
MAX_MENTIONS = 64
#: the mention that addresses every agent
EVERYONE = "*"
#: the NOTIFY channel the notify trigger uses
NOTIFY_CHANNEL = "agent_chat"
#: the largest message id (agent_chat.id is a bigint)
MAX_ID = 2**63 - 1
#: bounds for the seconds an agent waits: poll interval, idle timeout
MAX_POLL_INTERVAL = 86_400.0
MAX_IDLE_TIMEOUT = 31_536_000.0
#: the most messages one prune transaction deletes, and the oldest cutoff it takes (days)
MAX_PRUNE_BATCH = 1_000_000
MAX_PRUNE_DAYS = 100_000


class UnreadableMessage(errors.AgentchatError):
    """A row of ``agent_chat`` that is not a valid message (written raw, before the database
    checked what it stores): recorded as ``failed`` with this error, never handed to a handler,
    and delivery goes on."""


class SendFailed(errors.ConnectionFailed):
    """The connection where an agent sends (its source, for an agent on a replica) failed;
    *conninfo* names it."""

    def __init__(self, message: str, *, conninfo: str, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.conninfo = conninfo


#: what to do when the database where an agent sends cannot be reached
SEND_FIX = (
    "give --send-dsn (send_dsn=) a DSN that can write there, or let this user in at the"
    " source: a line in its pg_hba.conf, and the password in ~/.pgpass or PGPASSWORD"
)


class _Replier(Protocol):
    """The delivery a message belongs to (agent.py's for threads, aio.py's for asyncio)."""

    def reply(self, message: Message, text: str, to: Sequence[str] | None) -> int: ...

    async def areply(self, message: Message, text: str, to: Sequence[str] | None) -> int: ...

    def fail(self, message: Message, error: str) -> None: ...


@dataclass(frozen=True)
class Message:
    """One row of ``agent_chat``, as an agent receives it.

    While a message is being delivered, :meth:`reply` answers it and :meth:`fail` records that
    handling it failed; both are recorded with the delivery, in one transaction.
    """

    id: int
    channel: str
    sender: str
    mentions: tuple[str, ...]
    reply_to: int | None
    created_at: dt.datetime
    message: str
    _delivery: _Replier | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Sequence[Any], delivery: _Replier | None = None) -> Message:
        """The message a row of ``agent_chat`` holds (id, channel, sender, mentions, reply_to,
        created_at, message), or :class:`UnreadableMessage` if the row breaks the rules that
        ``send_agent_message`` keeps (a raw INSERT of an older schema could store anything)."""
        id_, channel, sender, mentions, reply_to, created_at, text = row
        problem = row_problem(channel, sender, mentions, reply_to, created_at, text)
        if problem:
            raise UnreadableMessage(f"message {id_} cannot be read: {problem}")
        return cls(int(id_), channel, sender, tuple(mentions), reply_to, created_at, text,
                   delivery)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape ``agentchat listen --json`` prints and ``--exec`` commands read."""
        return {
            "id": self.id,
            "channel": self.channel,
            "sender": self.sender,
            "mentions": list(self.mentions),
            "reply_to": self.reply_to,
            "created_at": self.created_at.isoformat(),
            "message": self.message,
        }

    def to_json(self, *, ascii_only: bool = False) -> str:
        """One line of JSON (``ascii_only``: non-ASCII as ``\\u`` escapes, still the same JSON)."""
        return json.dumps(self.as_dict(), ensure_ascii=ascii_only)

    def reply(self, text: str, *, to: Sequence[str] | None = None) -> int:
        """Answer this message (addressed to its sender unless *to* says otherwise, on its
        channel, ``reply_to`` set); return the reply's id. Only while it is being delivered."""
        if self._delivery is None:
            raise errors.AgentchatError(f"message {self.id} is not being delivered: use send()")
        return self._delivery.reply(self, text, to)

    async def areply(self, text: str, *, to: Sequence[str] | None = None) -> int:
        """:meth:`reply` for messages from :class:`agentchat.aio.AsyncAgent`."""
        if self._delivery is None:
            raise errors.AgentchatError(f"message {self.id} is not being delivered: use send()")
        return await self._delivery.areply(self, text, to)

    def fail(self, error: str) -> None:
        """Record that handling this message failed (status ``failed``, with *error*)."""
        if self._delivery is None:
            raise errors.AgentchatError(f"message {self.id} is not being delivered")
        self._delivery.fail(self, error)


def _shown(value: object) -> str:
    """A value for an error message: one line, at most about 40 characters."""
    text = repr(value)
    return text if len(text) <= 42 else text[:40] + "..."


def row_problem(
    channel: object,
    sender: object,
    mentions: object,
    reply_to: object,
    created_at: object,
    text: object,
) -> str | None:
    """What makes a row of ``agent_chat`` unreadable as a message, or None if nothing does."""
    if not isinstance(sender, str) or not NAME.fullmatch(sender):
        return f"invalid sender {_shown(sender)}"
    if not isinstance(channel, str) or not CHANNEL.fullmatch(channel):
        return f"invalid channel {_shown(channel)}"
    if not isinstance(mentions, list):
        return f"its mentions are not a list of names ({_shown(mentions)})"
    for name in mentions:
        if name is None:
            return "its mentions hold NULL"
        if not isinstance(name, str):
            return f"its mentions are not a list of names ({_shown(mentions)})"
        if name != EVERYONE and not NAME.fullmatch(name):
            return f"invalid mention {_shown(name)}"
    if reply_to is not None and (not isinstance(reply_to, int) or isinstance(reply_to, bool)):
        return f"invalid reply_to {_shown(reply_to)}"
    if not isinstance(created_at, dt.datetime):
        return f"invalid created_at {_shown(created_at)}"
    if not isinstance(text, str):
        return "its text is not text"
    return None


def read_claimed(
    chat_id: int, row: Sequence[Any] | Exception, delivery: _Replier | None = None
) -> Message:
    """The message of a claimed row; *row* is the exception if fetching it failed (a value
    Python cannot hold, such as a timestamp past year 9999). :class:`UnreadableMessage` if it
    cannot be a message."""
    if isinstance(row, Exception):
        reason = str(row).strip().splitlines()[0] if str(row).strip() else type(row).__name__
        raise UnreadableMessage(f"message {chat_id} cannot be read: {reason[:500]}")
    return Message.from_row(row, delivery)


def check_name(name: str, what: str = "agent name") -> str:
    """Return *name* lowercased if it is a valid agent name, else raise :class:`InvalidInput`."""
    if name is not None and not isinstance(name, str):
        raise errors.InvalidInput(f"{what} must be a name (str), not {_shown(name)}")
    clean = (name or "").strip().lower()
    if "\x00" in clean:
        raise errors.InvalidInput(f"{what} must not contain a NUL byte")
    if not NAME.match(clean):
        shown = clean if len(clean) <= 40 else clean[:40] + "..."
        raise errors.InvalidInput(
            f"invalid {what} {shown!r}" if clean else f"{what} must not be empty",
            fix="names are 1 to 63 characters: letters, digits, _ . - (lowercased)",
        )
    return clean


def check_mentions(names: Iterable[str]) -> list[str]:
    """Validated, lowercased, de-duplicated mentions (``*`` addresses everyone).

    *names* is a list (any iterable) of names: a string is refused, not split into letters.
    """
    if isinstance(names, str | bytes):
        shown = names if isinstance(names, str) else names.decode(errors="replace")
        example = shown.strip().lower() if NAME.fullmatch(shown.strip().lower()) else "owl"
        raise errors.InvalidInput(
            f"recipients must be a list of names, not the string {_shown(shown)}",
            fix=f"pass a list, e.g. to=[{example!r}]",
        )
    if names is None or not isinstance(names, Iterable):
        raise errors.InvalidInput(f"recipients must be a list of names, not {_shown(names)}")
    clean: dict[str, None] = {}
    for name in names:
        if not isinstance(name, str):
            raise errors.InvalidInput(f"a recipient must be a name (str), not {_shown(name)}")
        one = name.strip()
        one = one if one == EVERYONE else check_name(one, "recipient")
        clean[one] = None
    if len(clean) > MAX_MENTIONS:
        raise errors.InvalidInput(f"too many recipients ({len(clean)}; at most {MAX_MENTIONS})")
    return list(clean)


def check_channel(channel: str) -> str:
    if channel is not None and not isinstance(channel, str):
        raise errors.InvalidInput(f"a channel must be a name (str), not {_shown(channel)}")
    clean = (channel or "").strip()
    if "\x00" in clean or not CHANNEL.match(clean):
        shown = clean.replace("\x00", "\\0")[:40]
        raise errors.InvalidInput(
            f"invalid channel {shown!r}" if clean else "channel must not be empty",
            fix="channels are 1 to 63 characters: letters, digits, _ . : / -",
        )
    return clean


def check_text(text: str) -> str:
    """A message body PostgreSQL can store: not blank, no NUL byte (any length works)."""
    if not isinstance(text, str):
        raise errors.InvalidInput("a message must be text")
    if "\x00" in text:
        raise errors.InvalidInput(
            "the message contains a NUL byte, which PostgreSQL text cannot store",
            fix="remove it, or encode binary data (base64) first",
        )
    if not text.strip():
        raise errors.InvalidInput("message must not be empty")
    return text


def send_params(
    sender: str,
    message: str,
    to: Iterable[str] = (),
    channel: str = "general",
    reply_to: int | None = None,
) -> dict[str, Any]:
    """Checked parameters for the ``send_message`` query."""
    if reply_to is not None and (
        not isinstance(reply_to, int) or isinstance(reply_to, bool) or not 1 <= reply_to <= MAX_ID
    ):
        raise errors.InvalidInput(f"reply_to must be a message id, not {_shown(reply_to)}")
    return {
        "sender": check_name(sender, "sender"),
        "message": check_text(message),
        "mentions": check_mentions(to),
        "channel": check_channel(channel),
        "reply_to": reply_to,
    }


def reply_params(
    agent: str, message: Message, text: str, to: Sequence[str] | None, index: int
) -> dict[str, Any]:
    """Checked parameters for the ``send_reply`` query: the *index*-th reply of *agent*'s
    delivery of *message*, to its sender unless *to* says otherwise, on its channel."""
    if to is None or (isinstance(to, Sequence) and not isinstance(to, str | bytes) and not to):
        to = [message.sender]
    params = send_params(agent, text, to, message.channel, message.id)
    return {**params, "reply_key": f"{params['sender']}:{message.id}:{index}"}


def database_error(exc: psycopg.Error, conninfo: str) -> errors.AgentchatError:
    """A psycopg error as agentchat's: a missing table or function means not installed."""
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return errors.ConfigError(
            f"agentchat is not installed in {_db.describe(conninfo)}",
            fix="run `agentchat install` on that database first",
        )
    return _db.translate(exc)


def send_on(conn: _db.Connection, params: dict[str, Any]) -> int:
    """Run ``send_agent_message`` on an open connection (inside its transaction, if any); with
    a ``reply_key`` in *params*, ``send_agent_reply``."""
    query = queries["send_reply" if "reply_key" in params else "send_message"]
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def send(
    dsn: str | None,
    *,
    sender: str,
    message: str,
    to: Iterable[str] = (),
    channel: str = "general",
    reply_to: int | None = None,
    send_dsn: str | None = None,
) -> int:
    """Post one message and return its id. On a replica it goes to the source (see
    :func:`send_target`); pass *send_dsn* to say where explicitly."""
    params = send_params(sender, message, to, channel, reply_to)
    conninfo = _db.make_conninfo(dsn)
    target = _db.make_conninfo(send_dsn) if send_dsn else send_target(conninfo)
    try:
        conn = _db.connect(target)
    except errors.ConnectionFailed as exc:
        if target == conninfo:
            raise
        raise send_unreachable(params["sender"], target, exc) from None
    with conn:
        try:
            return send_on(conn, params)
        except psycopg.Error as exc:
            raise database_error(exc, target) from None


def send_unreachable(agent: str, conninfo: str, exc: Exception) -> SendFailed:
    """The error for an agent whose sends go to *conninfo* (its source) when that fails."""
    reason = exc.message if isinstance(exc, errors.AgentchatError) else str(exc).strip()
    reason = (reason.splitlines() or [type(exc).__name__])[0]
    return SendFailed(
        f"{agent} sends to {_db.describe(conninfo)}, which failed: {reason}",
        conninfo=conninfo,
        fix=SEND_FIX,
    )


def check_limits(limit: int | None, idle_timeout: float | None) -> None:
    """An agent's ``limit`` (messages) and ``idle_timeout`` (seconds), or InvalidInput."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise errors.InvalidInput(f"limit must be at least 1, not {_shown(limit)}")
    if idle_timeout is not None and not (
        isinstance(idle_timeout, int | float) and 0 <= idle_timeout <= MAX_IDLE_TIMEOUT
    ):
        raise errors.InvalidInput(
            f"idle_timeout must be 0 to {MAX_IDLE_TIMEOUT:g} seconds, not {_shown(idle_timeout)}"
        )


def check_agent_settings(poll_interval: float, batch_size: int) -> None:
    """An agent's ``poll_interval`` (seconds) and ``batch_size``, or InvalidInput."""
    if not (isinstance(poll_interval, int | float) and 0 < poll_interval <= MAX_POLL_INTERVAL):
        raise errors.InvalidInput(
            f"poll_interval must be more than 0 and at most {MAX_POLL_INTERVAL:g} seconds,"
            f" not {_shown(poll_interval)}"
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise errors.InvalidInput(f"batch_size must be at least 1, not {_shown(batch_size)}")


def send_target(conninfo: str, conn: _db.Connection | None = None) -> str:
    """Where an agent on *conninfo*'s database sends: that database, or its source if it is a
    replica (as recorded by ``agentchat install`` in ``agentchat_settings.source_conninfo``,
    reached with the agent's own user and credentials)."""
    if conn is None:
        with _db.connection(conninfo) as own:
            return send_target(conninfo, own)
    try:
        facts = policy.read_role(conn)
        if not facts.is_subscriber:
            return conninfo
        row = conn.execute(queries["source_conninfo"]).fetchone()
    except psycopg.errors.UndefinedTable:
        return conninfo  # no agentchat_settings: schema version 1, not set up as a replica
    except psycopg.Error as exc:
        raise _db.translate(exc) from None
    if not row:
        raise errors.ConfigError(
            f"{_db.describe(conninfo)} is a replica and its source is not recorded",
            fix="pass --send-dsn (send_dsn=) with the source's DSN, or run `agentchat install`"
            " on the replica as a superuser to record it",
        )
    return _db.retarget(conninfo, str(row[0]))


def notified_id(payload: str, agent: str, channel: str | None) -> tuple[bool, int | None]:
    """Read a NOTIFY payload of the notify trigger: ``(concerns agent, message id)``.

    An unreadable payload concerns every agent, with no id: the table decides (a full catch-up),
    the notification only wakes. A readable one gives the id to claim; the claim checks the
    address again, so a forged notification can wake an agent but never misdeliver.
    """
    try:
        data = json.loads(payload)
        mentions = data["mentions"] or []
        if not isinstance(mentions, list):
            return True, None
        if data["sender"] == agent:
            return False, None
        if channel is not None and data["channel"] != channel:
            return False, None
        if agent not in mentions and EVERYONE not in mentions:
            return False, None
        msg_id = data["id"]
        readable = isinstance(msg_id, int) and not isinstance(msg_id, bool) and 0 < msg_id <= MAX_ID
        return True, msg_id if readable else None
    except Exception:  # anyone may NOTIFY anything (even JSON nested too deep to decode)
        return True, None


def notification_concerns(payload: str, agent: str, channel: str | None) -> bool:
    """Whether a NOTIFY payload from the notify trigger may be a message for *agent*."""
    return notified_id(payload, agent, channel)[0]


class Catchup:
    """What a listener looks at next; no I/O, shared by :class:`agentchat.Agent` and
    :class:`agentchat.aio.AsyncAgent`.

    A wake-up's message ids are claimed directly (one primary-key lookup each). The full
    catch-up, the anti-join of the agent's messages with its marks, runs at the start, after a
    reconnect, after an unreadable notification, and at least every *poll_interval* seconds:
    it finds what no notification announced (sent while the agent was away, or a lost NOTIFY).
    """

    def __init__(self, poll_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.poll_interval = poll_interval
        self.clock = clock
        self.full_due = True
        self.last_full = -math.inf
        self.notified: list[int] = []

    def plan(self) -> list[int] | None:
        """The notified ids to claim now, or None: run the full catch-up query."""
        if self.full_due or self.clock() - self.last_full >= self.poll_interval:
            self.notified = []  # the full catch-up finds them too
            return None
        ids, self.notified = self.notified, []
        return ids

    def caught_up(self, found: int, batch_size: int) -> None:
        """A full catch-up found *found* ids; a full batch means there may be more."""
        self.last_full = self.clock()
        self.full_due = found >= batch_size

    def note(self, payload: str, agent: str, channel: str | None) -> bool:
        """Take one notification; True if it concerns the agent."""
        concerns, msg_id = notified_id(payload, agent, channel)
        if concerns:
            if msg_id is None:
                self.full_due = True
            elif msg_id not in self.notified:
                self.notified.append(msg_id)
        return concerns

    def lost_connection(self) -> None:
        """Notifications sent while disconnected are gone: catch up in full."""
        self.full_due = True

    @property
    def has_work(self) -> bool:
        return self.full_due or bool(self.notified)

    def wait_time(self) -> float:
        """Seconds until the next full catch-up is due."""
        return max(0.0, self.poll_interval - (self.clock() - self.last_full))


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` deleted (or, in a dry run, would delete)."""

    database: str
    cutoff: dt.datetime
    deleted: int
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "cutoff": self.cutoff.isoformat(),
            "deleted": self.deleted,
            "dry_run": self.dry_run,
        }


def prune(
    dsn: str | None,
    *,
    older_than: dt.timedelta,
    batch_size: int = 5000,
    dry_run: bool = False,
) -> PruneResult:
    """Delete messages older than *older_than* at the source, in batches of *batch_size*.

    The deletions replicate; on every database the messages' delivery marks and embedding
    rows go with them (schema version 3's triggers). A replica refuses: prune its source.
    """
    if not dt.timedelta(0) <= older_than <= dt.timedelta(days=MAX_PRUNE_DAYS):
        raise errors.InvalidInput(f"--older-than must be 0 to {MAX_PRUNE_DAYS} days")
    if isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_PRUNE_BATCH:
        raise errors.InvalidInput(f"--batch-size must be 1 to {MAX_PRUNE_BATCH}")
    conninfo = _db.make_conninfo(dsn)
    with _db.connection(conninfo) as conn:
        where = _db.describe(_db.resolved_conninfo(conn))
        facts = policy.read_role(conn)
        if facts.is_subscriber:
            raise errors.AgentchatError(
                f"{where} is a replica (subscription {', '.join(facts.subscriptions)}):"
                " messages are pruned at the source, and the deletions replicate",
                fix="run agentchat prune against the source database",
            )
        row = conn.execute(queries["prune_cutoff"], {"older_than": older_than}).fetchone()
        assert row is not None
        cutoff: dt.datetime = row[0]
        if dry_run:
            counted = conn.execute(queries["prune_count"], {"cutoff": cutoff}).fetchone()
            return PruneResult(where, cutoff, int(counted[0]) if counted else 0, True)
        deleted = 0
        while True:
            with conn.transaction():  # messages are immutable unless the transaction says so
                conn.execute(queries["allow_maintenance"])
                cur = conn.execute(queries["prune_batch"], {"cutoff": cutoff, "batch": batch_size})
            deleted += cur.rowcount
            if cur.rowcount < batch_size:
                return PruneResult(where, cutoff, deleted, False)
