"""The trigger policy: which mode each agent_chat trigger must have, for a node's kind.

A node's *kind* (plain, source or subscriber: :class:`NodeKind`) is what the database is in the
replication topology; it is not a PostgreSQL *role* (a login), the word kept for those.

PostgreSQL decides whether a trigger fires from its mode (``pg_trigger.tgenabled``) and the
session's ``session_replication_role``; the logical replication apply worker runs as ``replica``:

=============  ===========================  ==========================
mode           row arriving by replication  row written locally
=============  ===========================  ==========================
ORIGIN (O)     does not fire                fires
REPLICA (R)    fires                        does not fire
ALWAYS (A)     fires                        fires
DISABLED (D)   does not fire                does not fire
=============  ===========================  ==========================

So agents on a replica hear replicated rows only with the notify trigger in ALWAYS mode, and the
embedding trigger skips replicated rows in ORIGIN mode. (The seed document's advice, ``ENABLE
REPLICA TRIGGER trg_embed_chat_message``, does the opposite: it fires *only* for replicated rows.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from psycopg import sql

from agentchat._db import Connection
from agentchat.sql import queries

NOTIFY_TRIGGER = "trg_notify_agent_chat"
EMBED_TRIGGER = "trg_embed_chat_message"
GUARD_TRIGGER = "trg_guard_replica_writes"
FORGET_PROCESSED_TRIGGER = "trg_forget_processed"
FORGET_EMBEDDING_TRIGGER = "trg_forget_embedding"
ADMIT_TRIGGER = "trg_admit_agent_chat"
IMMUTABLE_TRIGGER = "trg_immutable_agent_chat"
IMMUTABLE_TRUNCATE_TRIGGER = "trg_immutable_agent_chat_truncate"
GUARD_TRUNCATE_TRIGGER = "trg_guard_replica_truncate"
#: a compatibility layer's (agentchat install --compat nova): each message's integer ref
NOVA_REFS_TRIGGER = "trg_nova_refs_agent_chat"


class Mode(enum.Enum):
    """A trigger's firing mode, named as the seed's status query names it."""

    ORIGIN = "O"
    ALWAYS = "A"
    REPLICA = "R"
    DISABLED = "D"

    @property
    def clause(self) -> str:
        """The ALTER TABLE clause that sets this mode."""
        return {
            Mode.ORIGIN: "ENABLE",
            Mode.ALWAYS: "ENABLE ALWAYS",
            Mode.REPLICA: "ENABLE REPLICA",
            Mode.DISABLED: "DISABLE",
        }[self]

    @property
    def query(self) -> str:
        """The named block (``sql/queries.sql``) that sets this mode on one trigger."""
        return f"trigger_mode_{self.name.lower()}"


class NodeKind(enum.Enum):
    """A node's kind: what a database is in the replication topology, as its catalogs say."""

    PLAIN = "plain"
    SOURCE = "source"
    SUBSCRIBER = "subscriber"
    #: a two-way node (issue 13): it publishes the rows written on its side of a link and
    #: subscribes to the other side's; it accepts local writes, so it runs the source's policy
    PEER = "peer"


@dataclass(frozen=True)
class NodeFacts:
    """Replication facts read from the catalogs (never guessed from names): the node's kind."""

    is_source: bool
    is_subscriber: bool
    subscriptions: tuple[str, ...] = ()
    publications: tuple[str, ...] = ()
    #: it publishes agent_chat through a row filter: a two-way link (docs/replication.md)
    is_peer: bool = False

    @property
    def kind(self) -> NodeKind:
        # A two-way node accepts local writes wherever it sits (hub, relay, spoke, mesh).
        if self.is_peer:
            return NodeKind.PEER
        # A database both publishing and subscribing one way (a cascade) follows the
        # subscriber policy.
        if self.is_subscriber:
            return NodeKind.SUBSCRIBER
        return NodeKind.SOURCE if self.is_source else NodeKind.PLAIN

    @property
    def is_replica(self) -> bool:
        """A one-way replica: it refuses local writes, and its agents send to its source."""
        return self.kind is NodeKind.SUBSCRIBER

    @property
    def role(self) -> NodeKind:
        """Deprecated: the old name of :attr:`kind`."""
        return self.kind


#: the mode each trigger must have, per kind of node
POLICY: dict[NodeKind, dict[str, Mode]] = {
    kind: {
        NOTIFY_TRIGGER: Mode.ALWAYS,
        EMBED_TRIGGER: Mode.ORIGIN,
        # a replica refuses local writes; ORIGIN never fires for the rows replication applies
        GUARD_TRIGGER: Mode.ORIGIN if kind is NodeKind.SUBSCRIBER else Mode.DISABLED,
        GUARD_TRUNCATE_TRIGGER: Mode.ORIGIN if kind is NodeKind.SUBSCRIBER else Mode.DISABLED,
        # schema version 3: what follows a deleted (pruned) message
        FORGET_PROCESSED_TRIGGER: Mode.ALWAYS,
        FORGET_EMBEDDING_TRIGGER: Mode.ORIGIN,
        # schema version 5: names checked and normalised for every writer, replicated rows that
        # are already here skipped; messages immutable wherever they are written
        ADMIT_TRIGGER: Mode.ALWAYS,
        IMMUTABLE_TRIGGER: Mode.ORIGIN,
        IMMUTABLE_TRUNCATE_TRIGGER: Mode.ORIGIN,
    }
    for kind in NodeKind
}

#: triggers that only some databases have (a compatibility layer's): judged where present
OPTIONAL_POLICY: dict[str, Mode] = {NOVA_REFS_TRIGGER: Mode.ALWAYS}

REASONS: dict[str, str] = {
    NOVA_REFS_TRIGGER: (
        "NOVA's clients (--compat nova) see each message by its integer ref, replicated rows"
        " included: ALWAYS fires for them too"
    ),
    NOTIFY_TRIGGER: "agents on a replica must hear replicated rows: ALWAYS fires for them too",
    EMBED_TRIGGER: (
        "ORIGIN fires for local writes only, so a replicated row never enters the embedding"
        " queue; REPLICA (the seed's advice) fires only for replicated rows — backwards"
    ),
    GUARD_TRIGGER: (
        "a replica refuses local writes to agent_chat (they belong on its source); ORIGIN lets"
        " replicated rows pass, and the guard is off where the database is no replica"
    ),
    GUARD_TRUNCATE_TRIGGER: (
        "a replica refuses a local TRUNCATE of agent_chat too; ORIGIN lets a replicated one pass"
    ),
    ADMIT_TRIGGER: (
        "every row is admitted by it, local or replicated: names lowercased, NULL and invalid"
        " mentions refused at the origin, a replicated row that is already here skipped"
    ),
    IMMUTABLE_TRIGGER: (
        "messages are immutable where they are written: UPDATE of their content, and DELETE"
        " outside agentchat prune, are refused; ORIGIN, so replication still applies its changes"
    ),
    IMMUTABLE_TRUNCATE_TRIGGER: (
        "TRUNCATE of agent_chat is refused outside maintenance, where messages are written;"
        " ORIGIN, so a replicated TRUNCATE still applies"
    ),
    FORGET_PROCESSED_TRIGGER: (
        "a pruned message's delivery marks must go on replicas too, where the foreign key's"
        " cascade does not fire for replicated deletes: ALWAYS fires for them"
    ),
    FORGET_EMBEDDING_TRIGGER: (
        "a deleted message's embedding row is deleted where the message is deleted; replicas"
        " receive that deletion by replication, so ORIGIN (local deletes only)"
    ),
}


@dataclass(frozen=True)
class TriggerStatus:
    """One row of the trigger table: the mode found, the mode the policy wants, the verdict."""

    schema: str
    table: str
    trigger: str
    mode: Mode | None  # None: the trigger does not exist
    expected: Mode | None  # None: the policy says nothing about this trigger

    @property
    def ok(self) -> bool:
        return self.expected is None or self.mode == self.expected

    @property
    def mode_name(self) -> str:
        return self.mode.name if self.mode else "MISSING"

    @property
    def expected_name(self) -> str:
        return self.expected.name if self.expected else "-"


@dataclass(frozen=True)
class TriggerChange:
    """A mode the installer changed (or, in a dry run, would change)."""

    trigger: str
    old: Mode
    new: Mode
    reason: str
    statement: str = field(compare=False)


def read_kind(conn: Connection) -> NodeFacts:
    """The node's replication facts (and so its kind) from the catalogs."""
    row = conn.execute(queries["node_kind"]).fetchone()
    assert row is not None
    return NodeFacts(
        is_subscriber=bool(row[0]),
        is_source=bool(row[1]),
        subscriptions=tuple(row[2] or ()),
        publications=tuple(row[3] or ()),
        is_peer=bool(row[4]),
    )


def trigger_modes(conn: Connection) -> dict[str, Mode]:
    """``{trigger name: mode}`` for agent_chat's user triggers."""
    return {name: Mode[mode] for _s, _t, name, mode in conn.execute(queries["trigger_status"])}


def trigger_report(conn: Connection, facts: NodeFacts | None = None) -> list[TriggerStatus]:
    """The seed's trigger-status table, with the policy's verdict for each trigger."""
    facts = facts or read_kind(conn)
    wanted = POLICY[facts.kind]
    found = trigger_modes(conn)
    rows = [
        TriggerStatus(
            "public", "agent_chat", name, mode, wanted.get(name, OPTIONAL_POLICY.get(name))
        )
        for name, mode in found.items()
    ]
    rows += [
        TriggerStatus("public", "agent_chat", name, None, mode)
        for name, mode in wanted.items()
        if name not in found
    ]
    return sorted(rows, key=lambda r: r.trigger)


def alter_statement(trigger: str, mode: Mode) -> sql.Composed:
    """``ALTER TABLE public.agent_chat <mode clause> TRIGGER <trigger>``, from its named block."""
    return queries.compose(mode.query, trigger=sql.Identifier(trigger))


def planned_changes(conn: Connection, facts: NodeFacts) -> list[TriggerChange]:
    """The mode changes that bring this database in line with the policy."""
    changes = []
    for status in trigger_report(conn, facts):
        if status.mode is not None and status.expected is not None and not status.ok:
            stmt = alter_statement(status.trigger, status.expected)
            changes.append(
                TriggerChange(
                    status.trigger,
                    status.mode,
                    status.expected,
                    REASONS[status.trigger],
                    stmt.as_string(conn),
                )
            )
    return changes


def apply_policy(conn: Connection, facts: NodeFacts) -> list[TriggerChange]:
    """Set every trigger to its policy mode in one transaction; return what changed."""
    with conn.transaction():
        changes = planned_changes(conn, facts)
        for change in changes:
            conn.execute(alter_statement(change.trigger, change.new))
    return changes


# Deprecated names, kept importable: "role" now means a PostgreSQL login role only.
Role = NodeKind
RoleFacts = NodeFacts
read_role = read_kind
