"""Facts for status and doctor: what each database says, read and never changed.

``gather`` reads one database into :class:`DatabaseFacts` (an unreachable database is a fact,
not an exception); ``count_rows``, ``settled_rows`` and ``foreign_rows`` compare a replica's
messages with its source's. Judging them is :mod:`agentchat.ops.judge`'s job.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentchat import _db, errors, policy, schema, settings
from agentchat.embeddings.mode import EmbeddingMode, embedding_mode
from agentchat.sql import queries

if TYPE_CHECKING:
    from agentchat.ops.graph import NodeGraph

#: seconds an apply worker must have lived without a new error to count as healed
HEALED_AFTER = 3.0
#: seconds to watch for rows in flight before calling a replica's missing rows lost
ROWS_SETTLE = 3.0
#: kept for compatibility: :data:`agentchat.settings.HISTORY_FROM`
HISTORY_FROM = settings.HISTORY_FROM
#: rows compared per round trip when a replica's messages are checked one by one
FINGERPRINT_BATCH = 5000


@dataclass(frozen=True)
class SubscriptionFacts:
    name: str
    enabled: bool
    slot: str | None
    publications: tuple[str, ...]
    worker_pid: int | None
    last_message: datetime | None
    apply_errors: int
    sync_errors: int
    tables: dict[str, str]
    disable_on_error: bool = False
    #: when the running apply worker started (pg_stat_activity.backend_start)
    worker_started: datetime | None = None
    #: when status found no apply worker, or one just restarted after errors, it watched for a
    #: while: the apply_error_count it saw first (the fields above are the last look), and
    #: for how long it watched
    apply_errors_first: int | None = None
    watched: float = 0.0

    @property
    def crash_looping(self) -> bool:
        """The error count rose while status watched: the worker keeps failing on a change."""
        return self.apply_errors_first is not None and self.apply_errors > self.apply_errors_first

    def suspect(self, retry_ms: int, now: datetime) -> bool:
        """Worth watching: enabled, and no worker, or one that started within the last retry
        interval after errors (a crash loop's worker lives for a moment in every interval)."""
        if not self.enabled:
            return False
        if self.worker_pid is None:
            return True
        young = self.worker_started is not None and (
            (now - self.worker_started).total_seconds() < retry_ms / 1000 + 2
        )
        return young and self.apply_errors > 0

    @property
    def tables_ready(self) -> int:
        return sum(1 for state in self.tables.values() if state == "r")

    @property
    def carries_agent_chat(self) -> bool:
        return "agent_chat" in self.tables


@dataclass(frozen=True)
class SlotFacts:
    name: str
    active: bool
    wal_status: str | None
    retained_bytes: int | None
    lag_bytes: int | None
    #: of the walsender using it (pg_stat_replication): the subscription's name, the replica
    application_name: str | None = None
    client_addr: str | None = None


@dataclass(frozen=True)
class EmbeddingFacts:
    """memory_embeddings of one database: rows with a vector, queued, failing, models."""

    mode: EmbeddingMode
    embedded: int
    queued: int
    failing: int
    models: tuple[str, ...]


@dataclass
class DatabaseFacts:
    """Everything status needs to know about one database."""

    conninfo: str
    name: str
    #: the connection as it was really made (host and port resolved), once reached
    resolved: str | None = None
    reachable: bool = True
    error: str | None = None
    version_num: int = 0
    wal_level: str = ""
    retry_interval_ms: int = 5000
    schema_version: int = 0
    #: the node's replication facts, and so its kind (plain, source, subscriber)
    node: policy.NodeFacts = field(default_factory=lambda: policy.NodeFacts(False, False))
    triggers: list[policy.TriggerStatus] = field(default_factory=list)
    subscriptions: list[SubscriptionFacts] = field(default_factory=list)
    slots: list[SlotFacts] = field(default_factory=list)
    embeddings: EmbeddingFacts | None = None
    #: this database's messages against its source's (status with a topology whose source
    #: answered; None otherwise)
    rows: RowCounts | None = None
    #: its part of the graph of two-way links (node number, registry, links); None: unread
    graph: NodeGraph | None = None

    @property
    def role(self) -> policy.NodeFacts:
        """Deprecated: the old name of :attr:`node`."""
        return self.node

    @property
    def embedding_mode(self) -> EmbeddingMode | None:
        return self.embeddings.mode if self.embeddings else None

    def as_dict(self) -> dict[str, object]:
        return {
            "database": self.name,
            "reachable": self.reachable,
            "error": self.error,
            "server_version": self.version_num,
            "wal_level": self.wal_level,
            "schema_version": self.schema_version,
            # the node's kind, kept under its old key "role" for compatibility
            "role": self.node.kind.value,
            "triggers": [
                {"trigger": t.trigger, "mode": t.mode_name, "ok": t.ok} for t in self.triggers
            ],
            "subscriptions": [
                {
                    "name": s.name,
                    "enabled": s.enabled,
                    "worker_running": s.worker_pid is not None,
                    "slot": s.slot,
                    "publications": list(s.publications),
                    "tables": s.tables,
                    "last_message": s.last_message.isoformat() if s.last_message else None,
                    "apply_error_count": s.apply_errors,
                    "sync_error_count": s.sync_errors,
                    "disable_on_error": s.disable_on_error,
                    "crash_looping": s.crash_looping,
                }
                for s in self.subscriptions
            ],
            "slots": [
                {
                    "name": s.name,
                    "active": s.active,
                    "wal_status": s.wal_status,
                    "retained_bytes": s.retained_bytes,
                    "lag_bytes": s.lag_bytes,
                }
                for s in self.slots
            ],
            "embeddings": None
            if self.embeddings is None
            else {
                "mode": self.embeddings.mode.value,
                "embedded": self.embeddings.embedded,
                "queued": self.embeddings.queued,
                "failing": self.embeddings.failing,
                "models": list(self.embeddings.models),
            },
        }


@dataclass(frozen=True)
class RowCounts:
    """A replica's messages against its source's, for ids in (history_from, upto].

    *upto* is the replica's newest id, or the source's when the replica is empty; messages up
    to *history_from* predate a subscription added with --no-copy-data.
    """

    upto: int
    history_from: int
    source: int
    replica: int

    @property
    def missing(self) -> int:
        return max(self.source - self.replica, 0)


def count_rows(rep: _db.Connection, src: _db.Connection) -> RowCounts:
    """Compare a replica's messages with its source's (see :class:`RowCounts`)."""
    [(upto,)] = rep.execute(queries["chat_max_id"]).fetchall()
    if not upto:
        [(upto,)] = src.execute(queries["chat_max_id"]).fetchall()
    recorded = settings.get(rep, settings.HISTORY_FROM)  # None before schema version 2
    history_from = int(recorded) if recorded and recorded.isdigit() else 0
    bounds = (history_from, int(upto))
    [(theirs,)] = src.execute(queries["chat_count_between"], bounds).fetchall()
    [(ours,)] = rep.execute(queries["chat_count_between"], bounds).fetchall()
    return RowCounts(int(upto), history_from, int(theirs), int(ours))


def foreign_rows(rep: _db.Connection, src: _db.Connection) -> tuple[list[int], list[int]]:
    """The replica's messages its source does not hold: ``(local, conflicts)``, the ids that
    are not at the source at all and those whose id holds a different message there (compared
    by sender, channel, text and time, as the admission trigger compares them)."""
    local: list[int] = []
    conflicts: list[int] = []
    last = 0
    while True:
        batch = rep.execute(queries["chat_fingerprints"], (last, FINGERPRINT_BATCH)).fetchall()
        if not batch:
            return local, conflicts
        ids = [i for i, _ in batch]
        theirs: dict[int, str] = dict(src.execute(queries["chat_fingerprints_of"], (ids,)))
        for msg_id, fingerprint in batch:
            if msg_id not in theirs:
                local.append(msg_id)
            elif theirs[msg_id] != fingerprint:
                conflicts.append(msg_id)
        last = batch[-1][0]


def settled_rows(
    rep: _db.Connection, src: _db.Connection, settle: float = ROWS_SETTLE
) -> RowCounts:
    """:func:`count_rows`, looked at again for up to *settle* seconds while rows are missing
    (rows in flight: commits arrive in commit order, not id order)."""
    deadline = time.monotonic() + settle
    counts = count_rows(rep, src)
    while counts.missing and time.monotonic() < deadline:
        time.sleep(0.25)
        counts = count_rows(rep, src)
    return counts


def gather(conninfo: str, *, watch: bool = True) -> DatabaseFacts:
    """Read one database's facts; an unreachable database is a fact too, not an exception.

    *watch*: when an enabled subscription has no apply worker (or one that just restarted after
    errors), look again for up to ``wal_retrieve_retry_interval`` plus a little: a worker that
    comes back without a new error was reconnecting (a source restart); one whose error count
    rose meanwhile is crash-looping on a change it cannot apply.
    """
    facts = DatabaseFacts(conninfo=conninfo, name=_db.describe(conninfo))
    try:
        with _db.connection(conninfo) as conn:
            facts.resolved = _db.resolved_conninfo(conn)
            facts.name = _db.describe(facts.resolved)
            row = conn.execute(queries["database_facts"]).fetchone()
            assert row is not None
            facts.version_num, facts.wal_level = int(row[0]), str(row[1])
            facts.retry_interval_ms = int(row[3] or 5000)
            facts.schema_version = schema.schema_version(conn)
            facts.node = policy.read_kind(conn)
            if facts.schema_version:
                facts.triggers = policy.trigger_report(conn, facts.node)
            facts.subscriptions = _subscription_facts(conn)
            retry, now = facts.retry_interval_ms, datetime.now(UTC)
            if watch and any(s.suspect(retry, now) for s in facts.subscriptions):
                facts.subscriptions = _watch(conn, facts.subscriptions, retry)
            facts.slots = [SlotFacts(*r) for r in conn.execute(queries["slot_facts"])]
            if facts.schema_version >= 4:
                row = conn.execute(queries["embedding_facts"]).fetchone()
                assert row is not None
                mode = embedding_mode(conn, facts.node)
                facts.embeddings = EmbeddingFacts(
                    mode, int(row[0]), int(row[1]), int(row[2]), tuple(row[3])
                )
            facts.graph = _graph(conn, facts.name)
    except errors.AgentchatError as exc:  # _db.connection translated any driver error
        facts.reachable, facts.error = False, exc.message
    return facts


def _graph(conn: _db.Connection, name: str) -> NodeGraph | None:
    """The node's part of the graph of two-way links (None when it cannot be read)."""
    from agentchat.ops import graph  # graph judges with ops.judge, which reads these facts

    try:
        return graph.read(conn, name)
    except errors.AgentchatError:
        return None


def _subscription_facts(conn: _db.Connection) -> list[SubscriptionFacts]:
    facts = []
    for row in conn.execute(queries["subscription_facts"]):
        name, enabled, slot, pubs, pid, last, apply_e, sync_e, tables, disable_on_error = row[:10]
        sub = SubscriptionFacts(
            name, enabled, slot, tuple(pubs or ()), pid, last, int(apply_e), int(sync_e),
            dict(tables), bool(disable_on_error), row[10],
        )  # fmt: skip
        facts.append(sub)
    return facts


def _watch(
    conn: _db.Connection, first: list[SubscriptionFacts], retry_ms: int
) -> list[SubscriptionFacts]:
    """Look again at subscriptions without a worker until each has one (without new errors) or
    the launcher's retry interval has passed, so a restart in progress is not called broken."""
    start = time.monotonic()
    deadline = start + retry_ms / 1000 + 1.5
    suspects = {s.name: s.apply_errors for s in first if s.suspect(retry_ms, datetime.now(UTC))}
    while True:
        time.sleep(0.25)
        latest = _subscription_facts(conn)
        now = datetime.now(UTC)
        healed = all(  # a worker that has lived a while with no new error
            s.worker_pid is not None
            and s.apply_errors == suspects[s.name]
            and s.worker_started is not None
            and (now - s.worker_started).total_seconds() >= HEALED_AFTER
            for s in latest
            if s.name in suspects
        )
        if healed or time.monotonic() > deadline:
            break
    watched = time.monotonic() - start
    return [
        dataclasses.replace(s, apply_errors_first=suspects[s.name], watched=watched)
        if s.name in suspects
        else s
        for s in latest
    ]
