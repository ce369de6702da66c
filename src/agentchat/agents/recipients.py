"""Recipients checked against the registry of agents (``agentchat_agents``, schema version 7).

When the registry has rows, every recipient of a message must be ``*`` or a registered agent's
name; otherwise the send fails with :class:`agentchat.errors.InvalidInput` naming the unknown
names and the registered ones closest to them::

    unknown agent "graybaerd" (did you mean graybeard?)

``allow_unknown=True`` (``agentchat send --allow-unknown``) skips the check. No check at all
when the registry is empty, when the database has none (schema before 7), or when the role may
not read it (a role that is not an agent's and was not granted SELECT on it: it sends as
before; an agent's own role may always read it). For an agent's role the database checks the
recipients too (``send_agent_message``), whatever ``allow_unknown`` says.

The registry is read where the message is sent (its source, for an agent on a replica):
:func:`read_registry` per send for ``send()`` (a connection of its own each time anyway), and
through :class:`KnownAgents` for an :class:`agentchat.Agent` (a cache with a short TTL: a send
to known names costs no query, a name not in the cache is looked up again before it is refused,
so an agent added a moment ago is never refused; a removed one is accepted for at most the TTL,
and the database refuses it for agent roles). A delivery's reply to its message's sender (no
``to=``) is not checked: the sender is not a typo. When the database refuses an agent's
unknown recipients itself, the error is the same :class:`~agentchat.errors.InvalidInput`, with
the closest names (:func:`explain_refusal`; a reply inside a delivery's transaction keeps the
database's words).
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterable, Sequence

from agentchat import _db, errors
from agentchat.agents.message import EVERYONE
from agentchat.sql import queries

#: seconds an Agent trusts the registry it read (a miss is looked up again at once)
REGISTRY_TTL = 10.0
#: unknown names one error spells out (with their closest known names)
SHOWN = 5
#: closest known names offered per unknown name
CLOSEST = 3

#: send_agent_message's refusal of an agent session's unknown recipients (schema 7)
REFUSED = re.compile(r"^unknown agent\(s\): (.+)$")

#: the registered names (a frozenset), or None: no recipient is checked
Known = frozenset[str] | None


def named(mentions: Iterable[str]) -> list[str]:
    """The recipients that name an agent (``*`` names everyone, and is always fine)."""
    return [m for m in mentions if m != EVERYONE]


def unknown_names(mentions: Iterable[str], known: Known) -> list[str]:
    """The recipients the registry does not know, in order (none when *known* is None)."""
    if known is None:
        return []
    return [m for m in named(mentions) if m not in known]


def closest(name: str, known: Iterable[str]) -> list[str]:
    """The registered names closest to *name*, best first (difflib)."""
    return difflib.get_close_matches(name, sorted(known), n=CLOSEST, cutoff=0.6)


def unknown_error(unknown: Sequence[str], known: Iterable[str]) -> errors.InvalidInput:
    """The error for recipients the registry does not know: each name (at most :data:`SHOWN`)
    with the registered names closest to it."""
    pool = sorted(known)
    parts = []
    for name in unknown[:SHOWN]:
        near = closest(name, pool)
        parts.append(f'"{name}" (did you mean {" or ".join(near)}?)' if near else f'"{name}"')
    more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
    noun = "agent" if len(unknown) == 1 else "agents"
    return errors.InvalidInput(
        f"unknown {noun} {', '.join(parts)}{more}",
        fix="`agentchat agent list` shows the registered agents; --allow-unknown"
        " (allow_unknown=True) sends anyway",
    )


def check_recipients(mentions: Iterable[str], known: Known) -> None:
    """Raise :func:`unknown_error` if a recipient is neither ``*`` nor in *known*."""
    unknown = unknown_names(mentions, known)
    if unknown:
        assert known is not None
        raise unknown_error(unknown, known)


def refused_names(exc: BaseException) -> list[str] | None:
    """The names of the database's refusal of unknown recipients (an agent's role sends only
    to registered agents, whatever ``allow_unknown`` says), or None for any other error."""
    if not isinstance(exc, errors.AgentchatError):  # (InvalidInput: _db's invalid_parameter_value)
        return None
    match = REFUSED.match(exc.message.strip().splitlines()[0] if exc.message.strip() else "")
    return [n.strip() for n in match[1].split(",")] if match else None


def explain_refusal(exc: BaseException, conn: _db.Connection) -> errors.InvalidInput | None:
    """The database's refusal of unknown recipients as :func:`unknown_error` (with the closest
    registered names, read on *conn*, an autocommit connection), or None for other errors."""
    unknown = refused_names(exc)
    if unknown is None:
        return None
    try:
        known = read_registry(conn)
    except errors.AgentchatError:
        known = None
    return unknown_error(unknown, known or ())


async def aexplain_refusal(
    exc: BaseException, conn: _db.AsyncConnection
) -> errors.InvalidInput | None:
    """:func:`explain_refusal` on an asyncio connection."""
    unknown = refused_names(exc)
    if unknown is None:
        return None
    try:
        known = await aread_registry(conn)
    except errors.AgentchatError:
        known = None
    return unknown_error(unknown, known or ())


def read_registry(conn: _db.Connection) -> Known:
    """The registered names, or None (no registry, none registered, or not readable)."""
    with _db.wrap_errors():
        row = conn.execute(queries["registry_readable"]).fetchone()
        if not row or not row[0]:
            return None
        names = frozenset(str(r[0]) for r in conn.execute(queries["registry_names"]))
    return names or None


async def aread_registry(conn: _db.AsyncConnection) -> Known:
    """:func:`read_registry` on an asyncio connection."""
    with _db.wrap_errors():
        cur = await conn.execute(queries["registry_readable"])
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        cur = await conn.execute(queries["registry_names"])
        names = frozenset(str(r[0]) for r in await cur.fetchall())
    return names or None


class KnownAgents:
    """One agent's view of the registry: read at most every *ttl* seconds, and again before a
    name is refused. ``needs_read(names)`` says whether to read (and :meth:`store` it), then
    :meth:`check` judges."""

    def __init__(
        self, ttl: float = REGISTRY_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.known: Known = None
        self.read_at: float | None = None

    def needs_read(self, mentions: Sequence[str]) -> bool:
        """Whether the registry must be read before *mentions* can be judged: a name to
        check, and the cache is stale, or does not know one of them (it may be new)."""
        names = named(mentions)
        if not names:
            return False
        if self.read_at is None or self.clock() - self.read_at >= self.ttl:
            return True
        return bool(unknown_names(names, self.known))

    def store(self, known: Known) -> None:
        self.known, self.read_at = known, self.clock()

    def check(self, mentions: Sequence[str]) -> None:
        """:func:`check_recipients` against what was read last."""
        check_recipients(mentions, self.known)
