"""What ``replicate add`` will do, worked out from facts before anything is changed.

:func:`gather` reads the facts (both sides' preflight facts, the target's agent_chat
subscriptions, the connection agentchat used); :func:`plan` is a pure function from those facts
and the caller's options to a :class:`ReplicationPlan`: every name (subscription, slot, role,
publication), the subscription's connection, whether the slot comes first (one cluster), what
is made and what exists already (a re-run makes nothing), what happens to the history
bookkeeping, and the reason to refuse, if any. No I/O here except in :func:`gather`, so the
decisions are unit-tested from made-up facts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from psycopg import conninfo as _conninfo

from agentchat import _db
from agentchat.replication.preflight import SourceFacts, TargetFacts, source_facts, target_facts
from agentchat.replication.role import role_of
from agentchat.sql import queries

DEFAULT_PUBLICATION = "agent_chat_pub"
#: conninfo keys of the source DSN that the subscription's connection keeps
KEEP_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout")

#: the steps that make something, in order, each with an undo (``progress`` names them)
CREATE_STEPS = ("role", "publication", "slot", "subscription")
#: the steps every run takes after them (a re-run too)
FINISH_STEPS = ("sync", "install", "topology")

#: what an add does about ``history_from`` (:attr:`ReplicationPlan.history`)
History = Literal["keep", "clear", "record"]


# -- names ----------------------------------------------------------------------------------


def default_subscription_name(source_db: str) -> str:
    """``agent_chat_from_nova`` for ``nova_memory``, as in the seed."""
    return _db.validate_identifier(
        f"agent_chat_from_{source_db.removesuffix('_memory')}", "subscription name (use --name)"
    )


def slot_name(subscription: str, target_db: str, target_system_id: str) -> str:
    """The source-side slot for one target: ``agent_chat_from_nova_graybeard_memory_1a2b3c4d``.

    Slots live on the source cluster, one per target, so the name carries the target database
    and a hash of the target (its cluster's system identifier and database): two
    ``graybeard_memory`` databases on two servers get two slots. Only ``[a-z0-9_]``, 63 bytes.
    """
    raw = f"{subscription}_{target_db}"
    clean = re.sub(r"[^a-z0-9_]", "_", raw.lower())[:54]
    digest = hashlib.sha1(f"{target_system_id}/{target_db}/{subscription}".encode()).hexdigest()
    return f"{clean}_{digest[:8]}"


def subscription_params(
    source: Mapping[str, str], role: str, publisher: Mapping[str, str]
) -> dict[str, str]:
    """How the subscription connects to the source (without the password).

    *source*: the parameters of agentchat's own connection to the source (host, port, dbname
    and its TLS settings, which carry over), unless *publisher* (``--publisher-dsn``) says how
    the target's server reaches the source instead; the user is always *role*.
    """
    params = {k: v for k, v in source.items() if k in (*KEEP_KEYS, "host", "port", "dbname")}
    params.update({k: v for k, v in publisher.items() if k not in ("user", "password")})
    params["user"] = role
    return params


def points_at(conninfo: str | None, wanted: Mapping[str, str]) -> bool:
    """Whether an existing subscription's *conninfo* reads the database this add would
    subscribe to (same database and port); an unreadable one (not superuser) is trusted."""
    if conninfo is None:
        return True
    params = _conninfo.conninfo_to_dict(conninfo)
    return params.get("dbname") == wanted.get("dbname") and str(params.get("port")) == str(
        wanted.get("port")
    )


# -- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """A subscription of the target by name, as ``pg_subscription`` has it."""

    name: str
    slot: str | None
    enabled: bool
    conninfo: str | None  # None: readable by superusers only


@dataclass(frozen=True)
class Facts:
    """What :func:`plan` decides from: read by :func:`gather`, or made up in a test."""

    source: SourceFacts
    target: TargetFacts
    source_db: str
    target_db: str
    #: agentchat's own connection to the source: host, port, dbname and its TLS settings
    source_params: Mapping[str, str]
    #: the target's subscriptions that carry agent_chat
    existing: tuple[str, ...] = ()
    #: the target's subscription of the name this add would use, whatever it carries
    named: Subscription | None = None
    #: the target as messages name it (its description, without password)
    target_label: str = "the target"
    #: on the source: the role, the publication and the slot this add would use exist already
    role_exists: bool = False
    publication_exists: bool = False
    slot_exists: bool = False


def gather(
    src: _db.Connection,
    tgt: _db.Connection,
    subscription: str,
    *,
    publication: str = DEFAULT_PUBLICATION,
    role: str | None = None,
    target_db: str | None = None,
) -> Facts:
    """Read every fact :func:`plan` needs; changes nothing. *target_db*: the target database's
    name when *tgt* is another database of its server (one that does not exist yet)."""
    params = {k: v for k, v in _db.connection_params(src).items() if k in KEEP_KEYS}
    params.update(host=src.info.host, port=str(src.info.port), dbname=src.info.dbname)
    row = tgt.execute(queries["subscription"], (subscription,)).fetchone()
    target = target_facts(tgt)
    target_db = target_db or tgt.info.dbname
    slot = slot_name(subscription, target_db, target.system_id)

    def exists(query: str, name: str) -> bool:
        return src.execute(queries[query], (name,)).fetchone() == (True,)

    return Facts(
        source=source_facts(src),
        target=target,
        source_db=src.info.dbname,
        target_db=target_db,
        source_params=params,
        existing=tuple(r[0] for r in tgt.execute(queries["agent_chat_subscriptions"])),
        named=Subscription(row[0], row[1], bool(row[2]), row[3]) if row else None,
        target_label=_db.describe(_db.resolved_conninfo(tgt)),
        role_exists=exists("role_exists", role or slot),
        publication_exists=exists("publication_exists", publication),
        slot_exists=src.execute(queries["slot_exists"], (slot,)).fetchone() is not None,
    )


# -- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why the add must not go on, and what to do instead."""

    message: str
    fix: str


@dataclass(frozen=True)
class ReplicationPlan:
    """Everything ``replicate add`` will create or reuse, decided before it changes anything."""

    subscription: str
    slot: str
    role: str
    #: the role is the subscription's own (named like its slot), not one given with --role
    own_role: bool
    publication: str
    #: source and target share a cluster: the slot is made first (CREATE SUBSCRIPTION to its
    #: own cluster would wait forever for the slot it creates)
    same_cluster: bool
    copy_data: bool
    #: how the target's server connects to the source, without the password
    connection: Mapping[str, str]
    passfile: Path | None
    #: the target subscribes already, from this source under this name: nothing is made
    already: bool
    #: not None: the add must stop (the target subscribes elsewhere, the name is taken)
    refusal: Refusal | None
    #: the steps this run takes, in order (``progress`` names)
    steps: tuple[str, ...]
    #: the target's schema is older than the source's: bring it up first
    upgrade_target: bool
    #: the embedding dimension to install the target with
    dimension: int | None
    #: preflight's question: does this add need a new slot and workers?
    new_slot: bool
    #: copying into a target with a schema: its rows must be checked against the source's
    check_history: bool
    #: ``"clear"``: the replica holds all history (forget ``history_from``); ``"record"``:
    #: only what comes after now (remember the source's newest id); ``"keep"``: a re-run
    history: History = "keep"
    #: what is there already and is used as it is (``"publication agent_chat_pub"``; an own
    #: role that exists gets a new password), and what this add would make
    exists: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()
    #: the subscription's synchronous_commit: ``"off"`` for a one-way replica, ``"local"`` for
    #: a two-way link (a relay passes applied rows on only once they are flushed)
    synchronous_commit: str = "off"

    def conninfo(self, password: str) -> str:
        """The subscription's connection string: the password itself, or the passfile."""
        params = dict(self.connection)
        if self.passfile is not None:
            params["passfile"] = str(self.passfile)
        else:
            params["password"] = password
        return _conninfo.make_conninfo("", **params)

    @property
    def passfile_line(self) -> tuple[str, str, str, str]:
        """The passfile line's key: host, port, database, role."""
        c = self.connection
        return (c["host"], c["port"], c["dbname"], self.role)


def plan(
    facts: Facts,
    *,
    name: str | None = None,
    publication: str = DEFAULT_PUBLICATION,
    role: str | None = None,
    copy_data: bool = True,
    publisher: Mapping[str, str] | None = None,
    passfile: Path | None = None,
) -> ReplicationPlan:
    """Decide every name and step of one add from *facts*; no I/O, nothing raised.

    *name* must be validated already (it is used as given); a refusal is returned in
    :attr:`ReplicationPlan.refusal`, for the caller to raise after the preflight's findings.
    """
    subscription = name or default_subscription_name(facts.source_db)
    slot = slot_name(subscription, facts.target_db, facts.target.system_id)
    chosen = role or slot
    wanted = subscription_params(facts.source_params, chosen, publisher or {})
    already, refusal = _judge_existing(facts, subscription, slot, wanted)
    if already:  # a re-run: the subscription keeps the role it connects as
        chosen = role_of(facts.named.conninfo if facts.named else None) or chosen
        wanted = subscription_params(facts.source_params, chosen, publisher or {})
    same = facts.source.system_id == facts.target.system_id
    creating = () if already else tuple(s for s in CREATE_STEPS if s != "slot" or same)
    objects = (
        (f"role {chosen}", facts.role_exists or already),
        (f"publication {publication}", facts.publication_exists or already),
        (f"slot {slot}", already),
        (f"subscription {subscription}", already),
    )
    source_version = facts.source.schema_version or 0
    return ReplicationPlan(
        subscription=subscription,
        slot=slot,
        role=chosen,
        own_role=role is None,
        publication=publication,
        same_cluster=same,
        copy_data=copy_data,
        connection=wanted,
        passfile=passfile,
        already=already,
        refusal=refusal,
        steps=(*creating, *FINISH_STEPS),
        upgrade_target=(facts.target.schema_version or 0) < source_version,
        dimension=facts.target.embedding_dimension or facts.source.embedding_dimension,
        new_slot=not facts.existing,
        check_history=copy_data and not facts.existing and bool(facts.target.schema_version),
        history="keep" if already else ("clear" if copy_data else "record"),
        exists=tuple(what for what, there in objects if there),
        creates=tuple(what for what, there in objects if not there),
    )


def _judge_existing(
    facts: Facts, subscription: str, slot: str, wanted: Mapping[str, str]
) -> tuple[bool, Refusal | None]:
    """``(already, refusal)``: whether the target subscribes already, from this source under
    this name (a re-run), or why the add must stop (subscribed elsewhere or under another name,
    the name taken by a subscription of other tables, a slot of this name left on the source)."""
    named = facts.named
    if facts.existing:
        rerun = list(facts.existing) == [subscription] and named is not None
        if rerun and named is not None and points_at(named.conninfo, wanted):
            return True, None
        return False, Refusal(
            f"{facts.target_label} already subscribes to agent_chat"
            f" (subscription {', '.join(facts.existing)})",
            "remove it first: agentchat replicate remove --target ...",
        )
    if named is not None:
        return False, Refusal(
            f"{facts.target_label} already has a subscription named {subscription!r} for other"
            " tables",
            "choose another --name",
        )
    if facts.slot_exists:
        drop = f"SELECT pg_drop_replication_slot('{slot}');"
        return False, Refusal(
            f"the source already has a replication slot named {slot!r}",
            f"if it is left over, drop it there: {drop}",
        )
    return False, None
