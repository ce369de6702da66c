"""The steps of ``replicate add``, one small function each, and the undo stack they push onto.

Each step that makes something pushes its undo onto :class:`Undo` right after making it; if a
later step raises, :meth:`Undo.run` undoes in reverse and collects (never raises) the failures.
A step reports itself through ``progress(step, detail)`` as it starts, under the names of
:data:`agentchat.replication.plan.CREATE_STEPS` and ``FINISH_STEPS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from agentchat import _db, errors, schema, settings
from agentchat import install as installer
from agentchat.replication.passfile import read_passfile, write_passfile
from agentchat.replication.plan import ReplicationPlan
from agentchat.replication.role import (
    drop_role,
    ensure_role,
    no_statement_logging,
    restore_passfile,
)
from agentchat.sql import queries
from agentchat.topology import Topology

#: ``progress(step, detail)`` is called as each step starts and as the initial sync advances
Progress = Callable[[str, str], None]

#: object_in_use (a slot's walsender is still there), undefined_object (the slot is gone)
_IN_USE, _UNDEFINED = "55006", "42704"


def quiet(step: str, detail: str) -> None:
    """The default progress callback: says nothing."""


class Undo:
    """Undo actions, run in reverse on failure; each failing undo is reported, not raised."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self.failures: list[str] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self._actions.append((what, action))

    @property
    def pending(self) -> list[str]:
        """What would be undone, in the order it would be."""
        return [what for what, _ in reversed(self._actions)]

    def run(self) -> None:
        for what, action in reversed(self._actions):
            try:
                action()
            except Exception as exc:  # keep undoing the rest
                self.failures.append(f"could not undo {what}: {exc}")
        self._actions.clear()


@dataclass
class Run:
    """One add in progress: both connections, the plan, what was made, the undo stack."""

    src: _db.Connection
    tgt: _db.Connection
    plan: ReplicationPlan
    progress: Progress = quiet
    undo: Undo = field(default_factory=Undo)
    #: what this run made, as ``"slot agent_chat_from_..."`` (the result lists it)
    created: list[str] = field(default_factory=list)

    def made(self, what: str, undo: Callable[[], object]) -> None:
        self.created.append(what)
        self.undo.push(what, undo)


# -- the steps that make something ----------------------------------------------------------


def make_role(run: Run, password: str | None, topology: Topology | None) -> str:
    """The subscription's replication role (or --role's, with a password that works);
    returns the password the subscription connects with."""
    plan, src = run.plan, run.src
    run.progress("role", f"replication role {plan.role}")
    password, created = ensure_role(
        src, run.tgt, plan.role, password, plan.passfile, topology, dedicated=plan.own_role
    )
    if created:
        run.made(f"role {plan.role}", lambda: drop_role(src, plan.role))
    return password


def make_publication(run: Run) -> None:
    """agentchat's publication, unless one of that name carries exactly what it would."""
    plan, src = run.plan, run.src
    run.progress("publication", f"publication {plan.publication}")
    shape = [tuple(r) for r in src.execute(queries["publication_tables"], (plan.publication,))]
    exists = src.execute(queries["publication_exists"], (plan.publication,)).fetchone() == (True,)
    if exists and shape != publication_shape(src):
        raise errors.ReplicationError(
            f"publication {plan.publication!r} already exists on the source for other tables"
            f" or rows ({', '.join(str(t[0]) for t in shape) or 'none'})",
            fix="choose another --publication, or drop that publication",
        )
    if not exists:
        ident = sql.Identifier(plan.publication)
        src.execute(queries.compose("create_publication", publication=ident))
        run.made(
            f"publication {plan.publication}",
            lambda: src.execute(queries.compose("drop_publication", publication=ident)),
        )


def make_slot(run: Run) -> None:
    """Refuse a slot of this name left on the source; in one cluster, make it first."""
    plan, src = run.plan, run.src
    if src.execute(queries["slot_exists"], (plan.slot,)).fetchone() is not None:
        drop = f"SELECT pg_drop_replication_slot('{plan.slot}');"
        raise errors.ReplicationError(
            f"the source already has a replication slot named {plan.slot!r}",
            fix=f"if it is left over, drop it there: {drop}",
        )
    if plan.same_cluster:
        run.progress("slot", f"slot {plan.slot} (one cluster: created first)")
        src.execute(queries["create_slot"], (plan.slot,))
        run.made(f"slot {plan.slot}", lambda: drop_slot(src, plan.slot))


def make_subscription(run: Run, password: str) -> None:
    """The subscription (with --passfile, the role's line in that file first); across
    clusters it makes the slot on the source itself."""
    plan, src, tgt = run.plan, run.src, run.tgt
    run.progress("subscription", f"subscription {plan.subscription}")
    if plan.passfile is not None:
        path, line = plan.passfile, plan.passfile_line
        previous = read_passfile(path, plan.role)
        write_passfile(path, *line, password)
        run.undo.push(
            f"the line of {plan.role} in {path}", lambda: restore_passfile(path, line, previous)
        )
    statement = queries.compose(
        "create_subscription",
        subscription=sql.Identifier(plan.subscription),
        conninfo=sql.Literal(plan.conninfo(password)),
        publication=sql.Identifier(plan.publication),
        slot=sql.Literal(plan.slot),
        create_slot=sql.Literal(not plan.same_cluster),
        copy_data=sql.Literal(plan.copy_data),
        synchronous_commit=sql.Literal(plan.synchronous_commit),
    )
    with no_statement_logging(tgt):
        tgt.execute(statement)
    if not plan.same_cluster:  # the subscription created the slot on the source
        run.made(f"slot {plan.slot}", lambda: drop_slot(src, plan.slot))
    run.made(f"subscription {plan.subscription}", lambda: drop_subscription(tgt, plan.subscription))


def record_history(run: Run) -> None:
    """With --no-copy-data the replica is not expected to hold what the source has now: record
    the source's newest id (the subscription exists, so every later message streams), which
    status and doctor then leave out when they count missing messages."""
    if run.plan.history == "keep" or schema.schema_version(run.tgt) < 2:
        return
    if run.plan.history == "clear":
        settings.delete(run.tgt, settings.HISTORY_FROM)
    else:
        [(upto,)] = run.src.execute(queries["chat_max_id"]).fetchall()
        settings.put(run.tgt, settings.HISTORY_FROM, str(upto))


# -- the steps every run takes --------------------------------------------------------------


def wait_for_sync(
    tgt: _db.Connection, name: str, *, timeout: float = 300.0, progress: Progress = quiet
) -> int:
    """Wait until every table of the subscription is ready ('r'); return the table count."""
    deadline = time.monotonic() + timeout
    last = (-1, -1)
    while True:
        row = tgt.execute(queries["sync_state"], (name,)).fetchone()
        if row is None:
            raise errors.ReplicationError(f"subscription {name!r} disappeared during the sync")
        total, ready, enabled, sync_errors, apply_errors = row
        if (ready, total) != last:
            progress("sync", f"{ready}/{total} tables ready")
            last = (ready, total)
        if total and ready == total:
            return int(total)
        if not enabled or sync_errors:
            raise errors.ReplicationError(
                f"the initial sync of {name!r} failed (sync errors: {sync_errors}, apply errors:"
                f" {apply_errors})",
                fix="see the target server's log for the conflicting row",
            )
        if time.monotonic() > deadline:
            raise errors.TimedOut(
                f"the initial sync of {name!r} did not finish in {timeout:.0f} s"
                f" ({ready}/{total} tables ready)",
                fix="check the source's reachability from the target, or raise --timeout",
            )
        time.sleep(0.1)


def install_target(run: Run, target: str) -> None:
    """The trigger policy and the guard on the target, on the connection already open."""
    run.progress("install", f"setting the trigger policy on {target}")
    installer.install_into(run.tgt)


def record_topology(run: Run, topology: Topology | None, source: str, target: str) -> None:
    """The replica's entry in the topology file (written last, atomically, under its lock)."""
    if topology is not None:
        run.progress("topology", f"recording the replica in {topology.path}")
        topology.record_replica(source, run.plan.publication, run.plan.subscription, target)


# -- pieces shared with remove ---------------------------------------------------------------


def publication_shape(src: _db.Connection) -> list[tuple[object, ...]]:
    """What agentchat's publication carries (tables, columns, row filters), as the catalog says.

    Read from a scratch publication created and dropped in a rolled-back transaction, so the
    comparison uses PostgreSQL's own normalised form of the row filter.
    """
    shape: list[tuple[object, ...]] = []
    with src.transaction():
        probe = sql.Identifier("agentchat_probe")
        src.execute(queries.compose("create_publication", publication=probe))
        shape = [tuple(r) for r in src.execute(queries["publication_tables"], ("agentchat_probe",))]
        raise psycopg.Rollback
    return shape


def drop_subscription(tgt: _db.Connection, name: str) -> None:
    """Drop a subscription without touching its slot (that is dropped on the source)."""
    ident = sql.Identifier(name)
    if tgt.execute(queries["subscription"], (name,)).fetchone() is None:
        return
    tgt.execute(queries.compose("disable_subscription", subscription=ident))
    tgt.execute(queries.compose("detach_subscription_slot", subscription=ident))
    tgt.execute(queries.compose("drop_subscription", subscription=ident))


def drop_slot(src: _db.Connection, slot: str, timeout: float = 15.0) -> bool:
    """Drop a slot on the source once its walsender is gone; False if there was none."""
    deadline = time.monotonic() + timeout
    while True:
        row = src.execute(queries["slot_exists"], (slot,)).fetchone()
        if row is None:
            return False
        if not row[0]:
            try:
                with _db.wrap_errors():
                    src.execute(queries["drop_slot"], (slot,))
                return True
            except errors.DatabaseError as exc:
                if exc.sqlstate == _UNDEFINED:
                    return False
                if exc.sqlstate != _IN_USE:
                    raise
        if time.monotonic() > deadline:
            raise errors.TimedOut(f"slot {slot!r} stayed in use for {timeout:.0f} s")
        time.sleep(0.1)
