"""Replication as one safe command: ``add`` does the seed's steps 1-3, ``remove`` undoes them.

    result = add("host=db1 dbname=nova_memory", "host=db2 dbname=graybeard_memory")
    result.subscription   # 'agent_chat_from_nova', as the seed names it
    result.slot           # 'agent_chat_from_nova_graybeard_memory_1a2b3c4d': one per target

``add`` gathers facts from both sides (:func:`agentchat.replication.plan.gather`), judges them
(the preflight, every failure with its fix) and plans every name and step
(:func:`agentchat.replication.plan.plan`) before it changes anything. Then it runs the steps of
:mod:`agentchat.replication.phases`, each pushing its undo: the subscription's own replication
role on the source (named like its slot), the publication, the slot (in one cluster: first,
since CREATE SUBSCRIPTION to its own cluster hangs forever), the subscription
(``disable_on_error = false``: a lost connection, a source restart, heals by itself); it waits
for the initial sync, installs the target on the connection it has open (trigger policy and
the guard that refuses local writes) and records the replica in the topology file (under its
lock). A failure at any step undoes the steps before it, so nothing is left half-made. Running
it again changes nothing. :func:`check` is the preflight alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import _db, errors, schema
from agentchat import install as installer
from agentchat.ops.facts import foreign_rows
from agentchat.replication import phases
from agentchat.replication.phases import Progress, Run, drop_slot, drop_subscription, quiet
from agentchat.replication.plan import (
    DEFAULT_PUBLICATION,
    Facts,
    ReplicationPlan,
    default_subscription_name,
    gather,
    plan,
)
from agentchat.replication.preflight import Finding, PreflightFailed, check_transport, judge
from agentchat.replication.role import drop_role, role_of
from agentchat.sql import queries
from agentchat.topology import Topology

#: the schema version whose admission trigger skips a copied row the target already holds
SKIPS_KNOWN_ROWS = 5


@dataclass
class AddResult:
    source: str
    target: str
    subscription: str
    slot: str
    publication: str
    role: str
    same_cluster: bool
    already: bool = False
    created: list[str] = field(default_factory=list)
    tables: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class RemoveResult:
    target: str
    subscription: str | None  # None: there was nothing to remove
    slot: str | None
    slot_dropped: bool
    warnings: list[str] = field(default_factory=list)
    #: the subscription's own replication role, dropped on the source with its slot
    role_dropped: str | None = None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckResult:
    """``replicate check``: the preflight's findings and the plan an add would follow."""

    source: str
    target: str
    findings: list[Finding]
    plan: ReplicationPlan

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "ok": self.ok,
            "findings": [dataclasses.asdict(f) for f in self.findings if not f.ok],
            "plan": {
                "subscription": self.plan.subscription,
                "slot": self.plan.slot,
                "role": self.plan.role,
                "publication": self.plan.publication,
                "same_cluster": self.plan.same_cluster,
                "already": self.plan.already,
                "steps": list(self.plan.steps),
                "exists": list(self.plan.exists),
                "creates": list(self.plan.creates),
            },
        }


@dataclass(frozen=True)
class _Request:
    """The caller's options for one add (or check)."""

    name: str | None
    publication: str
    role: str | None
    passfile: Path | None
    publisher: dict[str, str]
    copy_data: bool
    allow_insecure: bool


def _request(
    name: str | None,
    publication: str,
    role: str | None,
    passfile: Path | None,
    publisher_dsn: str | None,
    copy_data: bool,
    allow_insecure: bool,
) -> _Request:
    _db.validate_identifier(publication, "publication name")
    if role is not None:
        _db.validate_identifier(role, "role name")
    name = _db.validate_identifier(name, "subscription name") if name else None
    publisher = _conninfo.conninfo_to_dict(_db.make_conninfo(publisher_dsn or ""))
    return _Request(
        name, publication, role, passfile, {k: str(v) for k, v in publisher.items()},
        copy_data, allow_insecure,
    )  # fmt: skip


def _source_conninfo(source_dsn: str, sslmode: str | None, allow_insecure: bool) -> str:
    info = _db.make_conninfo(source_dsn)
    if sslmode:
        info = _conninfo.make_conninfo(info, sslmode=sslmode)
    check_transport(_db.conninfo_params(info), allow_insecure)
    return info


# -- add ------------------------------------------------------------------------------------


def add(
    source_dsn: str,
    target_dsn: str,
    *,
    name: str | None = None,
    publication: str = DEFAULT_PUBLICATION,
    role: str | None = None,
    password: str | None = None,
    passfile: Path | None = None,
    publisher_dsn: str | None = None,
    copy_data: bool = True,
    sslmode: str | None = None,
    allow_insecure: bool = False,
    timeout: float = 300.0,
    topology: Topology | None = None,
    progress: Progress = quiet,
) -> AddResult:
    """Replicate agent_chat (and the chat's embeddings) from *source_dsn* to *target_dsn*.

    *publisher_dsn* is how the target's server reaches the source, when that differs from how
    agentchat reaches it (another machine, another address); by default the host and port
    agentchat connected to. *role*: by default the subscription gets a role of its own, named
    like its slot; a named role that exists is used only with a password that works.
    """
    request = _request(name, publication, role, passfile, publisher_dsn, copy_data, allow_insecure)
    source_info = _source_conninfo(source_dsn, sslmode, allow_insecure)
    target_info = _db.make_conninfo(target_dsn)
    progress("preflight", "checking source and target")
    with _db.wrap_errors(), contextlib.ExitStack() as stack:
        src = stack.enter_context(_db.connect(source_info))
        check_transport(_db.connection_params(src), allow_insecure)
        target_created = False
        try:
            try:
                tgt = stack.enter_context(_db.connect(target_info))
            except errors.DatabaseMissing:  # made with the source's embedding dimension
                target_created = installer.create_database(target_info)
                tgt = stack.enter_context(_db.connect(target_info))
                installer.install_into(tgt, dimension=schema.embedding_dimension(src))
            return _add(
                src, tgt, request, password=password, timeout=timeout, topology=topology,
                progress=progress,
            )  # fmt: skip
        except BaseException:
            if target_created:  # made by this add: gone again, as if it never ran
                stack.close()
                installer.drop_database(target_info, _db.target_dbname(target_info) or "")
            raise


def _prepare(
    src: _db.Connection, tgt: _db.Connection, request: _Request
) -> tuple[Facts, ReplicationPlan]:
    """Facts, the preflight's verdict and the plan; raises on any finding or refusal."""
    facts, the_plan, findings = _judge(src, tgt, request)
    if any(not f.ok for f in findings):
        raise PreflightFailed(findings)
    check_transport(dict(the_plan.connection), request.allow_insecure)  # the target's way there
    if the_plan.refusal is not None:
        raise errors.ReplicationError(the_plan.refusal.message, fix=the_plan.refusal.fix)
    return facts, the_plan


def _judge(
    src: _db.Connection, tgt: _db.Connection, request: _Request, *, missing: str | None = None
) -> tuple[Facts, ReplicationPlan, list[Finding]]:
    """Gather, plan, judge. *missing*: *tgt* is a maintenance database of the server where
    that database will be created (nothing in it yet: no subscription, no schema)."""
    subscription = request.name or default_subscription_name(src.info.dbname)
    facts = gather(
        src, tgt, subscription, publication=request.publication, role=request.role,
        target_db=missing,
    )  # fmt: skip
    if missing is not None:
        empty = dataclasses.replace(facts.target, schema_version=0, embedding_dimension=None)
        facts = dataclasses.replace(
            facts, target=empty, existing=(), named=None,
            target_label=f"{facts.target_label} (database {missing} to be created)",
        )  # fmt: skip
    the_plan = plan(
        facts, name=subscription, publication=request.publication, role=request.role,
        copy_data=request.copy_data, publisher=request.publisher, passfile=request.passfile,
    )  # fmt: skip
    findings = judge(facts.source, facts.target, new_slot=the_plan.new_slot)
    if the_plan.check_history:
        findings.append(_history_finding(src, tgt, facts))
    return facts, the_plan, findings


def _add(
    src: _db.Connection,
    tgt: _db.Connection,
    request: _Request,
    *,
    password: str | None,
    timeout: float,
    topology: Topology | None,
    progress: Progress,
) -> AddResult:
    facts, the_plan = _prepare(src, tgt, request)
    # the resolved (password-free) DSNs are for the topology file and messages
    source_dsn, target_dsn = _db.resolved_conninfo(src), _db.resolved_conninfo(tgt)
    target = _db.describe(target_dsn)
    if topology is not None:
        topology.check_source(source_dsn)
    # rows carrying the source's schema must find it on the target: bring the target up first
    if the_plan.upgrade_target:
        progress("prepare", f"bringing {target} to schema {facts.source.schema_version}")
        installer.install_into(tgt, dimension=the_plan.dimension)

    run = Run(src, tgt, the_plan, progress)
    try:
        if not the_plan.already:
            _create(run, password, topology)
        progress("sync", "waiting for the initial sync")
        tables = phases.wait_for_sync(
            tgt, the_plan.subscription, timeout=timeout, progress=progress
        )
        phases.install_target(run, target)
        phases.record_topology(run, topology, source_dsn, target_dsn)
    except BaseException as exc:
        run.undo.run()
        if run.undo.failures:  # say what is left behind, with the original cause
            cause = exc.message if isinstance(exc, errors.AgentchatError) else str(exc)
            raise errors.ReplicationError(
                f"{cause}; undoing it left something behind: {'; '.join(run.undo.failures)}"
            ) from exc
        raise
    return AddResult(
        source=_db.describe(source_dsn), target=target, subscription=the_plan.subscription,
        slot=the_plan.slot, publication=the_plan.publication, role=the_plan.role,
        same_cluster=the_plan.same_cluster, already=the_plan.already, created=run.created,
        tables=tables,
    )  # fmt: skip


def _create(run: Run, password: str | None, topology: Topology | None) -> None:
    """The steps that make something: role and publication under the source's replicate
    lock (two adds at once take turns), then the slot and the subscription."""
    run.src.execute(queries["replicate_lock"])
    try:
        password = phases.make_role(run, password, topology)
        phases.make_publication(run)
    finally:
        run.src.execute(queries["replicate_unlock"])
    phases.make_slot(run)
    phases.make_subscription(run, password)
    phases.record_history(run)


def _history_finding(src: _db.Connection, tgt: _db.Connection, facts: Facts) -> Finding:
    """Whether the source's history can be copied into a target that holds messages already.

    From schema version 5 on (the target is brought to the source's version first), a copied
    row that the target already holds is skipped by its admission trigger, and an embedding row
    merged: a replica that lost rows is repaired by removing it and adding it again, keeping its
    delivery marks. Rows that are not the source's would be lost or collide: those refuse.
    """
    [(rows,)] = tgt.execute(queries["agent_chat_rows"]).fetchall()
    if not rows:
        return Finding("target_history", True, "", "")
    target = facts.target_label
    fix = (
        "if they came from this source earlier, add with --no-copy-data; otherwise move them to"
        " the source and empty the table"
    )
    version = max(facts.target.schema_version or 0, facts.source.schema_version or 0)
    if version < SKIPS_KNOWN_ROWS:
        return Finding(
            "target_history",
            False,
            f"{target} already holds {rows} agent_chat rows: copying the source's history would"
            " collide with them",
            f"{fix} (or upgrade both to schema version {SKIPS_KNOWN_ROWS}, which skips them)",
        )
    local, conflicts = foreign_rows(tgt, src)
    foreign = len(local) + len(conflicts)
    return Finding(
        "target_history",
        not foreign,
        f"{target} already holds {foreign} agent_chat rows that are not the source's (ids"
        f" {', '.join(str(i) for i in (conflicts + local)[:10])}): copying the source's history"
        " would collide with them",
        fix,
    )


# -- check ----------------------------------------------------------------------------------


def check(
    source_dsn: str,
    target_dsn: str,
    *,
    name: str | None = None,
    publication: str = DEFAULT_PUBLICATION,
    publisher_dsn: str | None = None,
    copy_data: bool = True,
    sslmode: str | None = None,
    allow_insecure: bool = False,
    topology: Topology | None = None,
) -> CheckResult:
    """``replicate add``'s preflight alone: every finding (with its fix) and the plan; changes
    nothing. What add would refuse later (the target subscribes elsewhere, its subscription name
    is taken, the topology file names another source, the subscription's connection without
    TLS) is a finding too. A missing target database is judged by its server (add creates it)."""
    request = _request(name, publication, None, None, publisher_dsn, copy_data, allow_insecure)
    source_info = _source_conninfo(source_dsn, sslmode, allow_insecure)
    target_info = _db.make_conninfo(target_dsn)
    with _db.wrap_errors(), _db.connect(source_info) as src:
        check_transport(_db.connection_params(src), allow_insecure)
        source_dsn = _db.resolved_conninfo(src)
        try:
            with _db.connect(target_info) as tgt:
                _facts, the_plan, findings = _judge(src, tgt, request)
                target = _db.describe(_db.resolved_conninfo(tgt))
        except errors.DatabaseMissing:
            missing = _db.target_dbname(target_info) or ""
            with installer.maintenance_connection(target_info) as server:
                _facts, the_plan, findings = _judge(src, server, request, missing=missing)
            target = _db.describe(target_info)
    try:
        check_transport(dict(the_plan.connection), allow_insecure)
    except errors.InvalidInput as exc:
        findings.append(Finding("publisher_transport", False, exc.message, exc.fix))
    try:
        if topology is not None:
            topology.check_source(source_dsn)
    except errors.ConfigError as exc:
        findings.append(Finding("topology", False, exc.message, exc.fix))
    if the_plan.refusal is not None:
        refusal = the_plan.refusal
        findings.append(Finding("target_subscription", False, refusal.message, refusal.fix))
    return CheckResult(_db.describe(source_dsn), target, findings, the_plan)


# -- remove ---------------------------------------------------------------------------------


def _drop_own_role(src: _db.Connection, role: str, result: RemoveResult) -> None:
    try:
        with _db.wrap_errors():
            drop_role(src, role)
        result.role_dropped = role
    except errors.DatabaseError as exc:
        ident = sql.Identifier(role).as_string(src)
        result.warnings.append(
            f"could not drop the replica's role {role} on the source"
            f" ({exc.message}); as a superuser there: DROP OWNED BY {ident};"
            f" DROP ROLE {ident};"
        )


def remove(
    target_dsn: str,
    *,
    name: str | None = None,
    source_dsn: str | None = None,
    topology: Topology | None = None,
    progress: Progress = quiet,
) -> RemoveResult:
    """Stop replicating into *target_dsn*: drop its subscription and the slot on the source."""
    target_info = _db.make_conninfo(target_dsn)
    with _db.connection(target_info) as tgt:
        subs = [r[0] for r in tgt.execute(queries["agent_chat_subscriptions"])]
        if name is None and len(subs) > 1:
            raise errors.InvalidInput(
                f"{_db.describe(target_info)} has several: {', '.join(subs)}", fix="pass --name"
            )
        name = name or (subs[0] if subs else None)
        row = tgt.execute(queries["subscription"], (name,)).fetchone() if name else None
        if row is None:  # nothing to remove: as after a successful remove
            return RemoveResult(_db.describe(target_info), None, None, slot_dropped=False)
        name, slot, _, sub_conninfo = row
        target_resolved = _db.resolved_conninfo(tgt)
        progress("subscription", f"dropping subscription {name}")
        drop_subscription(tgt, name)
    result = RemoveResult(_db.describe(target_info), name, slot, slot_dropped=False)

    if slot:
        progress("slot", f"dropping slot {slot} on the source")
        _drop_slot_somewhere(result, slot, sub_conninfo, source_dsn, topology)
    progress("install", f"resetting the trigger policy on {result.target}")
    installer.install(target_info, create=False)
    if topology is not None:
        topology.forget_replica(target_resolved)
    return result


def _drop_slot_somewhere(
    result: RemoveResult,
    slot: str,
    sub_conninfo: str | None,
    source_dsn: str | None,
    topology: Topology | None,
) -> None:
    """The slot on the first source that answers: --source, the topology's source, the
    subscription's own connection; if none does, a warning naming the slot to drop by hand."""
    candidates = [c for c in (source_dsn, topology.source if topology else None) if c]
    if sub_conninfo:
        candidates.append(sub_conninfo)
    reason = "no way to reach the source"
    for candidate in candidates:
        try:
            with _db.connection(_db.make_conninfo(candidate)) as src:
                drop_slot(src, slot)
                result.slot_dropped = True
                if role_of(sub_conninfo) == slot:  # the subscription's own role
                    _drop_own_role(src, slot, result)
                break
        except errors.AgentchatError as exc:
            reason = str(exc)
    if not result.slot_dropped:
        result.warnings.append(
            f"the source is unreachable ({reason}); its slot {slot!r} keeps WAL until you"
            f" run there: SELECT pg_drop_replication_slot('{slot}');"
        )
