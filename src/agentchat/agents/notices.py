"""What the notify trigger says, and what a listener looks at next; no I/O.

The one reader of the trigger's payload is :func:`parse_notification` (a :class:`ChatNotice`,
or None); :class:`Catchup` turns the notices an agent receives into the ids to claim, or a
full catch-up from the table. Both are part of the delivery protocol
(:mod:`agentchat.agents.protocol`, which re-exports them).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentchat.agents.message import EVERYONE, MAX_ID

#: the NOTIFY channel the notify trigger uses
NOTIFY_CHANNEL = "agent_chat"
#: the longest NOTIFY payload PostgreSQL delivers (bytes; anything longer is not the trigger's)
MAX_PAYLOAD = 8000


@dataclass(frozen=True)
class ChatNotice:
    """What the notify trigger says about a new message: its id (None when it is not a message
    id), sender, channel and mentions. Anyone may NOTIFY: a notice can wake an agent, but the
    claim checks the address again, so a forged one never misdelivers."""

    id: int | None
    sender: str
    channel: str
    mentions: tuple[str, ...]

    def concerns(self, agent: str, channel: str | None = None) -> bool:
        """Whether the message may be for *agent* (listening on *channel*, or on all)."""
        if self.sender == agent or (channel is not None and self.channel != channel):
            return False
        return agent in self.mentions or EVERYONE in self.mentions


def parse_notification(payload: str) -> ChatNotice | None:
    """The notify trigger's payload on channel ``agent_chat`` (``{"id", "channel", "sender",
    "mentions"}``) as a :class:`ChatNotice`, or None if it is not one: not JSON (or nested too
    deep to decode), not an object, longer than a NOTIFY can be, a sender or channel that is
    not a string, mentions that are not a list. Never raises.

    The id is kept only if it can be a message id (an integer from 1 to 2^63-1), mentions only
    as far as they are strings.
    """
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    sender, channel, mentions = data.get("sender"), data.get("channel"), data.get("mentions")
    if mentions is None:
        mentions = []
    if not isinstance(sender, str) or not isinstance(channel, str):
        return None
    if not isinstance(mentions, list):
        return None
    msg_id = data.get("id")
    if not isinstance(msg_id, int) or isinstance(msg_id, bool) or not 0 < msg_id <= MAX_ID:
        msg_id = None
    names = tuple(name for name in mentions if isinstance(name, str))
    return ChatNotice(msg_id, sender, channel, names)


def notified_id(payload: str, agent: str, channel: str | None) -> tuple[bool, int | None]:
    """Read a NOTIFY payload of the notify trigger: ``(concerns agent, message id)``.

    An unreadable payload concerns every agent, with no id: the table decides (a full catch-up),
    the notification only wakes. A readable one gives the id to claim; the claim checks the
    address again, so a forged notification can wake an agent but never misdeliver.
    """
    notice = parse_notification(payload)
    if notice is None:
        return True, None
    if not notice.concerns(agent, channel):
        return False, None
    return True, notice.id


def notification_concerns(payload: str, agent: str, channel: str | None) -> bool:
    """Whether a NOTIFY payload from the notify trigger may be a message for *agent*."""
    return notified_id(payload, agent, channel)[0]


class Catchup:
    """What a listener looks at next; no I/O.

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
        self.after = 0  # the next full catch-up's start: past this id (0: from the beginning)

    def plan(self) -> list[int] | None:
        """The notified ids to claim now, or None: run the full catch-up query (past
        :attr:`after`)."""
        if self.clock() - self.last_full >= self.poll_interval:
            self.after = 0  # due: from the beginning
            self.full_due = True
        if self.full_due:
            self.notified = []  # the full catch-up finds them too
            return None
        ids, self.notified = self.notified, []
        return ids

    def caught_up(self, found: int, batch_size: int, last_id: int = 0) -> None:
        """A full catch-up found *found* messages, the last *last_id*. A full batch means there
        may be more: the next one goes on past *last_id* (a backlog is read once, not from the
        beginning each time). When such a run ends, one more from the beginning finds what it
        passed over (a message committed late with a lower id, one another listener let go)."""
        if self.after == 0:
            self.last_full = self.clock()
        if found >= batch_size:
            self.after, self.full_due = last_id, True
        elif self.after:
            self.after, self.full_due = 0, True
        else:
            self.full_due = False

    def put_back(self, ids: list[int]) -> None:
        """Notified *ids* a claim had no room for: first in line next time."""
        self.notified = ids + [i for i in self.notified if i not in ids]

    def note(self, payload: str, agent: str, channel: str | None) -> bool:
        """Take one notification; True if it concerns the agent."""
        concerns, msg_id = notified_id(payload, agent, channel)
        if concerns:
            if msg_id is None:
                self.full_due, self.after = True, 0
            elif msg_id not in self.notified:
                self.notified.append(msg_id)
        return concerns

    def lost_connection(self) -> None:
        """Notifications sent while disconnected are gone: catch up in full."""
        self.full_due, self.after = True, 0

    @property
    def has_work(self) -> bool:
        return self.full_due or bool(self.notified)

    def wait_time(self) -> float:
        """Seconds until the next full catch-up is due."""
        return max(0.0, self.poll_interval - (self.clock() - self.last_full))
