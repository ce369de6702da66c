"""Sending without an agent object, where sends go, and pruning old messages.

    msg_id = send("dbname=nova_memory", sender="nova", message="hi", to=["graybeard"])

Sending goes through the database function ``send_agent_message``, which validates and
lowercases names; the same rules are checked first (:mod:`agentchat.agents.message`), so bad
input fails with one clear line before a connection is opened. On a replica ``agent_chat``
refuses local writes (they belong on the source): :func:`send_target` finds the source from
what the installer recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentchat import _db, errors, policy, settings
from agentchat.agents.message import send_params
from agentchat.agents.recipients import (
    check_recipients,
    explain_refusal,
    named,
    read_registry,
)
from agentchat.agents.route import (
    SEND_FIX,
    SendFailed,
    not_installed,
    send_destination,
    send_unreachable,
)
from agentchat.sql import queries

__all__ = [
    "MAX_PRUNE_BATCH",
    "MAX_PRUNE_DAYS",
    "SEND_FIX",
    "PruneResult",
    "SendFailed",
    "check_prune",
    "prune",
    "send",
    "send_on",
    "send_target",
    "send_unreachable",
]

#: the most messages one prune transaction deletes, and the oldest cutoff it takes (days)
MAX_PRUNE_BATCH = 1_000_000
MAX_PRUNE_DAYS = 100_000


def send_on(conn: _db.Connection, params: dict[str, Any]) -> int:
    """Run ``send_agent_message`` on an open connection (inside its transaction, if any); with
    a ``reply_key`` in *params*, ``send_agent_reply``."""
    query = queries["send_reply" if "reply_key" in params else "send_message"]
    with _db.wrap_errors():
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
    allow_unknown: bool = False,
) -> int:
    """Post one message and return its id. On a replica it goes to the source (see
    :func:`send_target`); pass *send_dsn* to say where explicitly.

    When the database has a registry of agents, every recipient must be ``*`` or a registered
    agent, else :class:`agentchat.errors.InvalidInput` names the unknown ones and the closest
    registered names (*allow_unknown*: send anyway). The registry is read there, once per send
    (:mod:`agentchat.agents.recipients`; no registry, no rows, or a role that may not read it:
    no check)."""
    params = send_params(sender, message, to, channel, reply_to)
    check = [] if allow_unknown else named(params["mentions"])
    conninfo = _db.make_conninfo(dsn)
    target = _db.make_conninfo(send_dsn) if send_dsn else send_target(conninfo)
    try:
        conn = _db.connect(target)
    except errors.ConnectionFailed as exc:
        if target == conninfo:
            raise
        raise send_unreachable(params["sender"], target, exc) from exc
    with conn:
        try:
            if check:
                check_recipients(check, read_registry(conn))
            return send_on(conn, params)
        except errors.InvalidInput as exc:
            refused = explain_refusal(exc, conn)
            if refused is not None:
                raise refused from exc
            raise
        except errors.DatabaseError as exc:
            config = not_installed(exc, target)
            if config is None:
                raise
            raise config from exc


def send_target(conninfo: str, conn: _db.Connection | None = None) -> str:
    """Where an agent on *conninfo*'s database sends: that database, or its source if it is a
    replica (as recorded by ``agentchat install`` in ``agentchat_settings.source_conninfo``,
    reached with the agent's own user and credentials; :func:`send_destination` decides)."""
    if conn is None:
        with _db.connection(conninfo) as own:
            return send_target(conninfo, own)
    with _db.wrap_errors(conninfo):
        replica = policy.read_kind(conn).is_replica
        recorded = settings.get(conn, settings.SOURCE_CONNINFO) if replica else None
    return send_destination(conninfo, replica=replica, recorded=recorded)


def check_prune(older_than: dt.timedelta, batch_size: int) -> None:
    """prune's bounds: *older_than* 0 to 100000 days, *batch_size* 1 to 1000000."""
    if not dt.timedelta(0) <= older_than <= dt.timedelta(days=MAX_PRUNE_DAYS):
        raise errors.InvalidInput(f"--older-than must be 0 to {MAX_PRUNE_DAYS} days")
    if isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_PRUNE_BATCH:
        raise errors.InvalidInput(f"--batch-size must be 1 to {MAX_PRUNE_BATCH}")


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
    check_prune(older_than, batch_size)
    conninfo = _db.make_conninfo(dsn)
    with _db.connection(conninfo) as conn:
        where = _db.describe(_db.resolved_conninfo(conn))
        facts = policy.read_kind(conn)
        if facts.is_replica:
            raise errors.ConfigError(
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
