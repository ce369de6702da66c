"""Where an agent sends, worked out in one place (no I/O): its own database, or, on a
replica, the source the installer recorded; and the errors of sending there.

The front-ends read the facts (:func:`agentchat.agents.send.send_target`: the node's kind and
``agentchat_settings.source_conninfo``); :func:`send_destination` decides; :class:`SendRoute`
remembers the answer for one agent.
"""

from __future__ import annotations

from typing import NoReturn

from agentchat import _db, errors

#: SQLSTATEs undefined_table and undefined_function: agentchat is not installed there
NOT_INSTALLED = ("42P01", "42883")
#: what to do when the database where an agent sends cannot be reached
SEND_FIX = (
    "give --send-dsn (send_dsn=) a DSN that can write there, or let this user in at the"
    " source: a line in its pg_hba.conf, and the password in ~/.pgpass or PGPASSWORD"
)


class SendFailed(errors.ConnectionFailed):
    """The connection where an agent sends (its source, for an agent on a replica) failed;
    *conninfo* names it."""

    def __init__(self, message: str, *, conninfo: str, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.conninfo = conninfo


def send_destination(conninfo: str, *, replica: bool, recorded: str | None) -> str:
    """Where an agent on *conninfo*'s database sends: that database, or, on a *replica*, the
    source the installer *recorded* (``agentchat_settings.source_conninfo``), reached with the
    agent's own user and credentials. ConfigError for a replica whose source is not recorded."""
    if not replica:
        return conninfo
    if recorded is None:
        raise errors.ConfigError(
            f"{_db.describe(conninfo)} is a replica and its source is not recorded",
            fix="pass --send-dsn (send_dsn=) with the source's DSN, or run `agentchat install`"
            " on the replica as a superuser to record it",
        )
    return _db.retarget(conninfo, recorded)


class SendRoute:
    """Where one agent sends, worked out once: *send_dsn* if given, else (on first need) what
    :func:`send_destination` says, which the front-end :meth:`settle`\\ s."""

    def __init__(self, own: str, send_dsn: str | None) -> None:
        self.own = own
        self.conninfo: str | None = _db.make_conninfo(send_dsn) if send_dsn else None

    def settle(self, found: str) -> str:
        """Remember *found* (unless the route is known already) and return the route."""
        if self.conninfo is None:
            self.conninfo = found
        return self.conninfo

    def is_local(self, found: str) -> bool:
        """Whether sends go to the database the agent listens on (a reply is then part of the
        delivery's transaction), once settled with *found*."""
        return self.settle(found) == self.own


#: seconds between the tries of a reply posted at the source while the message it answers is not
#: visible there yet (then it fails). PostgreSQL sends a commit to its subscribers once its WAL
#: is flushed, before the committing session has made it visible to the source's own sessions:
#: on a busy source, an agent on a replica can be handed a message, and answer it at the source,
#: a moment before the source shows it. Seen once in a CI run under load; the reply_key makes a
#: second try safe.
REPLY_NOT_VISIBLE_RETRIES = (0.01, 0.05, 0.2, 0.5, 1.0)


def not_visible_yet(exc: BaseException, reply_to: object) -> bool:
    """Whether *exc* is the source's refusal of a reply to *reply_to* as no message (yet)."""
    return isinstance(exc, errors.InvalidInput) and exc.message.startswith(
        f"reply_to {reply_to} is not a message"
    )


def send_unreachable(agent: str, conninfo: str, exc: BaseException) -> SendFailed:
    """The error for an agent whose sends go to *conninfo* (its source) when that fails."""
    reason = exc.message if isinstance(exc, errors.AgentchatError) else str(exc).strip()
    reason = (reason.splitlines() or [type(exc).__name__])[0]
    return SendFailed(
        f"{agent} sends to {_db.describe(conninfo)}, which failed: {reason}",
        conninfo=conninfo,
        fix=SEND_FIX,
    )


def reraise(exc: Exception, conninfo: str) -> NoReturn:
    """Raise *exc*, an error of *conninfo*'s database, as the user should see it: a missing
    table or function as ConfigError (agentchat is not installed there), anything else as is."""
    config = not_installed(exc, conninfo)
    if config is not None:
        raise config from exc
    raise exc


def not_installed(exc: BaseException, conninfo: str) -> errors.ConfigError | None:
    """The error for a missing table or function (agentchat is not installed there), or None
    when *exc* means something else."""
    if isinstance(exc, errors.DatabaseError) and exc.sqlstate in NOT_INSTALLED:
        return errors.ConfigError(
            f"agentchat is not installed in {_db.describe(conninfo)}",
            fix="run `agentchat install` on that database first",
        )
    return None
