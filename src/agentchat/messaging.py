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
        id_, channel, sender, mentions, reply_to, created_at, text = row
        return cls(
            int(id_), str(channel), str(sender), tuple(mentions or ()),
            int(reply_to) if reply_to is not None else None, created_at, str(text), delivery,
        )  # fmt: skip

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


def check_name(name: str, what: str = "agent name") -> str:
    """Return *name* lowercased if it is a valid agent name, else raise :class:`InvalidInput`."""
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
    """Validated, lowercased, de-duplicated mentions (``*`` addresses everyone)."""
    clean: list[str] = []
    for name in names:
        one = name.strip()
        one = one if one == EVERYONE else check_name(one, "recipient")
        if one not in clean:
            clean.append(one)
    if len(clean) > MAX_MENTIONS:
        raise errors.InvalidInput(f"too many recipients ({len(clean)}; at most {MAX_MENTIONS})")
    return clean


def check_channel(channel: str) -> str:
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
    if reply_to is not None and (isinstance(reply_to, bool) or reply_to < 1):
        raise errors.InvalidInput(f"reply_to must be a message id, not {reply_to!r}")
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
    params = send_params(agent, text, to or [message.sender], message.channel, message.id)
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
    target = send_dsn or send_target(_db.make_conninfo(dsn))
    with _db.connection(_db.make_conninfo(target)) as conn:
        try:
            return send_on(conn, params)
        except psycopg.Error as exc:
            raise database_error(exc, target) from None


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
        if data["sender"] == agent:
            return False, None
        if channel is not None and data["channel"] != channel:
            return False, None
        if agent not in mentions and EVERYONE not in mentions:
            return False, None
        msg_id = data["id"]
        return True, msg_id if isinstance(msg_id, int) and not isinstance(msg_id, bool) else None
    except (ValueError, KeyError, TypeError):
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
    if older_than < dt.timedelta(0):
        raise errors.InvalidInput("--older-than must not be negative")
    if batch_size < 1:
        raise errors.InvalidInput("--batch-size must be at least 1")
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
            cur = conn.execute(queries["prune_batch"], {"cutoff": cutoff, "batch": batch_size})
            deleted += cur.rowcount
            if cur.rowcount < batch_size:
                return PruneResult(where, cutoff, deleted, False)
