"""A message as an agent receives it, and the input rules every message keeps.

:class:`Message` is one row of ``agent_chat`` (its JSON shape is what ``agentchat listen
--json`` prints and ``--exec`` commands read). The rules here are the ones the database function
``send_agent_message`` keeps; they are checked before a connection opens, so bad input fails
with one clear line. No I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentchat import errors

if TYPE_CHECKING:
    from agentchat.agents.protocol import Delivery

#: agent names: what send_agent_message accepts (lowercase letters, digits, _ . -; 1-63 chars)
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: channel names: what send_agent_message accepts
CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
#: at most this many distinct mentions per message (a CHECK constraint on agent_chat)
MAX_MENTIONS = 64
#: the mention that addresses every agent
EVERYONE = "*"
#: the largest message id (agent_chat.id is a bigint)
MAX_ID = 2**63 - 1
#: the longest error text a delivery records
MAX_ERROR = 2000


class UnreadableMessage(errors.AgentchatError):
    """A row of ``agent_chat`` that is not a valid message (written raw, before the database
    checked what it stores): recorded as ``failed`` with this error, never handed to a handler,
    and delivery goes on."""


@dataclass(frozen=True)
class Message:
    """One row of ``agent_chat``, as an agent receives it.

    While a message is being delivered, :meth:`reply` (:meth:`areply` from an
    :class:`agentchat.AsyncAgent`) answers it and :meth:`fail` records that handling it failed;
    both are recorded with the delivery, in one transaction.
    """

    id: int
    channel: str
    sender: str
    mentions: tuple[str, ...]
    reply_to: int | None
    created_at: dt.datetime
    message: str
    _delivery: Delivery | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Sequence[Any], delivery: Delivery | None = None) -> Message:
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

    def reply(
        self, text: str, *, to: Sequence[str] | None = None, allow_unknown: bool = False
    ) -> int:
        """Answer this message (addressed to its sender unless *to* says otherwise, on its
        channel, ``reply_to`` set); return the reply's id. Only while it is being delivered.
        Names given with *to* must be registered agents when the database has a registry
        (*allow_unknown*: send anyway; :mod:`agentchat.agents.recipients`)."""
        delivery = self._delivering("use send()")
        if delivery.post is None:
            raise errors.DeliveryError("with AsyncAgent, answer with `await msg.areply(...)`")
        params = delivery.reply_params(self, text, to)
        checks = delivery.reply_checks(params, to, allow_unknown)
        return delivery.replied(delivery.post(params, checks))

    async def areply(
        self, text: str, *, to: Sequence[str] | None = None, allow_unknown: bool = False
    ) -> int:
        """:meth:`reply` for messages from :class:`agentchat.AsyncAgent`."""
        delivery = self._delivering("use send()")
        if delivery.apost is None:
            raise errors.DeliveryError("msg.areply() is for AsyncAgent: use msg.reply()")
        params = delivery.reply_params(self, text, to)
        checks = delivery.reply_checks(params, to, allow_unknown)
        return delivery.replied(await delivery.apost(params, checks))

    def fail(self, error: str) -> None:
        """Record that handling this message failed (status ``failed``, with *error*)."""
        self._delivering().fail(error)

    def _delivering(self, hint: str = "") -> Delivery:
        if self._delivery is None:
            end = f": {hint}" if hint else ""
            raise errors.DeliveryError(f"message {self.id} is not being delivered{end}")
        return self._delivery


def shown(value: object) -> str:
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
        return f"invalid sender {shown(sender)}"
    if not isinstance(channel, str) or not CHANNEL.fullmatch(channel):
        return f"invalid channel {shown(channel)}"
    if not isinstance(mentions, list):
        return f"its mentions are not a list of names ({shown(mentions)})"
    for name in mentions:
        if name is None:
            return "its mentions hold NULL"
        if not isinstance(name, str):
            return f"its mentions are not a list of names ({shown(mentions)})"
        if name != EVERYONE and not NAME.fullmatch(name):
            return f"invalid mention {shown(name)}"
    if reply_to is not None and (not isinstance(reply_to, int) or isinstance(reply_to, bool)):
        return f"invalid reply_to {shown(reply_to)}"
    if not isinstance(created_at, dt.datetime):
        return f"invalid created_at {shown(created_at)}"
    if not isinstance(text, str):
        return "its text is not text"
    return None


def read_claimed(
    chat_id: int, row: Sequence[Any] | Exception, delivery: Delivery | None = None
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
        raise errors.InvalidInput(f"{what} must be a name (str), not {shown(name)}")
    clean = (name or "").strip().lower()
    if "\x00" in clean:
        raise errors.InvalidInput(f"{what} must not contain a NUL byte")
    if not NAME.match(clean):
        cut = clean if len(clean) <= 40 else clean[:40] + "..."
        raise errors.InvalidInput(
            f"invalid {what} {cut!r}" if clean else f"{what} must not be empty",
            fix="names are 1 to 63 characters: letters, digits, _ . - (lowercased)",
        )
    return clean


def check_mentions(names: Iterable[str]) -> list[str]:
    """Validated, lowercased, de-duplicated mentions (``*`` addresses everyone).

    *names* is a list (any iterable) of names: a string is refused, not split into letters.
    """
    if isinstance(names, str | bytes):
        text = names if isinstance(names, str) else names.decode(errors="replace")
        example = text.strip().lower() if NAME.fullmatch(text.strip().lower()) else "owl"
        raise errors.InvalidInput(
            f"recipients must be a list of names, not the string {shown(text)}",
            fix=f"pass a list, e.g. to=[{example!r}]",
        )
    if names is None or not isinstance(names, Iterable):
        raise errors.InvalidInput(f"recipients must be a list of names, not {shown(names)}")
    clean: dict[str, None] = {}
    for name in names:
        if not isinstance(name, str):
            raise errors.InvalidInput(f"a recipient must be a name (str), not {shown(name)}")
        one = name.strip()
        one = one if one == EVERYONE else check_name(one, "recipient")
        clean[one] = None
    if len(clean) > MAX_MENTIONS:
        raise errors.InvalidInput(f"too many recipients ({len(clean)}; at most {MAX_MENTIONS})")
    return list(clean)


def check_channel(channel: str) -> str:
    """Return *channel* trimmed if it is a valid channel name, else raise InvalidInput."""
    if channel is not None and not isinstance(channel, str):
        raise errors.InvalidInput(f"a channel must be a name (str), not {shown(channel)}")
    clean = (channel or "").strip()
    if "\x00" in clean or not CHANNEL.match(clean):
        cut = clean.replace("\x00", "\\0")[:40]
        raise errors.InvalidInput(
            f"invalid channel {cut!r}" if clean else "channel must not be empty",
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
        raise errors.InvalidInput(f"reply_to must be a message id, not {shown(reply_to)}")
    return {
        "sender": check_name(sender, "sender"),
        "message": check_text(message),
        "mentions": check_mentions(to),
        "channel": check_channel(channel),
        "reply_to": reply_to,
    }


def reply_key(agent: str, message_id: int, index: int) -> str:
    """What makes a delivery's *index*-th reply idempotent: posted again (a redelivery after the
    reply reached a remote source but the mark did not commit), it returns the first post's id."""
    return f"{agent}:{message_id}:{index}"


def reply_params(
    agent: str, message: Message, text: str, to: Sequence[str] | None, index: int
) -> dict[str, Any]:
    """Checked parameters for the ``send_reply`` query: the *index*-th reply of *agent*'s
    delivery of *message*, to its sender unless *to* says otherwise, on its channel."""
    if to is None or (isinstance(to, Sequence) and not isinstance(to, str | bytes) and not to):
        to = [message.sender]
    params = send_params(agent, text, to, message.channel, message.id)
    return {**params, "reply_key": reply_key(params["sender"], message.id, index)}
