"""Replication as one safe command: ``add`` does the seed's steps 1-3, ``remove`` undoes them.

    result = add("host=db1 dbname=nova_memory", "host=db2 dbname=graybeard_memory")
    result.subscription   # 'agent_chat_from_nova', as the seed names it
    result.slot           # 'agent_chat_from_nova_graybeard_memory_1a2b3c4d': one per target

``add`` runs a preflight on both sides (facts first, then a verdict per fact with the fix), then
creates, each with an undo: the subscription's own replication role on the source (named like
its slot), the publication, the slot (in one cluster: first, since CREATE SUBSCRIPTION to its own
cluster hangs forever), the subscription (``disable_on_error = false``: a lost connection, a
source restart, heals by itself), waits for the initial sync, installs the target (trigger
policy and the guard that refuses local writes) and records the replica in the topology file
(under its lock). A failure at any step undoes the steps before it, so nothing is left
half-made. Running it again changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import _db, errors, schema
from agentchat import install as installer
from agentchat.health import HISTORY_FROM, foreign_rows
from agentchat.passfile import read_passfile, write_passfile
from agentchat.preflight import (
    Finding,
    PreflightFailed,
    SourceFacts,
    TargetFacts,
    check_transport,
    judge,
    source_facts,
    target_facts,
)
from agentchat.replication_role import (
    drop_role,
    ensure_role,
    no_statement_logging,
    restore_passfile,
    role_of,
)
from agentchat.sql import queries
from agentchat.topology import Topology

DEFAULT_PUBLICATION = "agent_chat_pub"
#: conninfo keys of the source DSN that the subscription's connection keeps
_KEEP_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout")

#: ``progress(step, detail)`` is called as each step starts and as the initial sync advances
Progress = Callable[[str, str], None]


def _quiet(step: str, detail: str) -> None:
    """The default progress callback: says nothing."""


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


# -- add ------------------------------------------------------------------------------------


class _Undo:
    """Undo actions, run in reverse on failure; each failing undo is reported, not raised."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self.failures: list[str] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self._actions.append((what, action))

    def run(self) -> None:
        for what, action in reversed(self._actions):
            try:
                action()
            except Exception as exc:  # keep undoing the rest
                self.failures.append(f"could not undo {what}: {exc}")
        self._actions.clear()


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
    progress: Progress = _quiet,
) -> AddResult:
    """Replicate agent_chat (and the chat's embeddings) from *source_dsn* to *target_dsn*.

    *publisher_dsn* is how the target's server reaches the source, when that differs from how
    agentchat reaches it (another machine, another address); by default the host and port
    agentchat connected to. *role*: by default the subscription gets a role of its own, named
    like its slot; a named role that exists is used only with a password that works.
    """
    _db.validate_identifier(publication, "publication name")
    if role is not None:
        _db.validate_identifier(role, "role name")
    source_info = _db.make_conninfo(source_dsn)
    if sslmode:
        source_info = _conninfo.make_conninfo(source_info, sslmode=sslmode)
    target_info = _db.make_conninfo(target_dsn)
    publisher = {
        k: str(v)
        for k, v in _conninfo.conninfo_to_dict(_db.make_conninfo(publisher_dsn or "")).items()
    }
    check_transport(_db.conninfo_params(source_info), allow_insecure)

    progress("preflight", "checking source and target")
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(_db.connect(source_info))
        check_transport(_db.connection_params(src), allow_insecure)
        target_created = False
        try:
            tgt = stack.enter_context(_db.connect(target_info))
        except errors.DatabaseMissing:  # made with the source's embedding dimension
            dimension = schema.embedding_dimension(src)
            target_created = installer.install(target_info, dimension=dimension).created
            tgt = stack.enter_context(_db.connect(target_info))
        try:
            return _add(
                src, tgt, target_info, name=name, publication=publication, role=role,
                password=password, passfile=passfile, publisher=publisher, copy_data=copy_data,
                timeout=timeout, topology=topology, progress=progress,
                allow_insecure=allow_insecure,
            )  # fmt: skip
        except BaseException as exc:
            if target_created:  # made by this add: gone again, as if it never ran
                stack.close()
                installer.drop_database(target_info, _db.target_dbname(target_info) or "")
            if isinstance(exc, psycopg.Error):
                raise _db.translate(exc) from None
            raise


def _add(
    src: _db.Connection,
    tgt: _db.Connection,
    target_info: str,
    *,
    name: str | None,
    publication: str,
    role: str | None,
    password: str | None,
    passfile: Path | None,
    publisher: dict[str, str],
    copy_data: bool,
    timeout: float,
    topology: Topology | None,
    progress: Progress,
    allow_insecure: bool,
) -> AddResult:
    source_db, target_db = src.info.dbname, tgt.info.dbname
    name = _db.validate_identifier(name, "subscription name") if name else None
    name = name or default_subscription_name(source_db)
    s_facts, t_facts = source_facts(src), target_facts(tgt)
    # the resolved (password-free) DSNs are for the topology file and messages; connections
    # to the target keep the caller's conninfo, which may carry a password
    source_dsn, target_dsn = _db.resolved_conninfo(src), _db.resolved_conninfo(tgt)
    slot = slot_name(name, target_db, t_facts.system_id)
    result = AddResult(
        source=_db.describe(source_dsn), target=_db.describe(target_dsn), subscription=name,
        slot=slot, publication=publication, role=role or slot,
        same_cluster=s_facts.system_id == t_facts.system_id,
    )  # fmt: skip

    existing = [row[0] for row in tgt.execute(queries["agent_chat_subscriptions"])]
    findings = judge(s_facts, t_facts, new_slot=not existing)
    if copy_data and not existing and t_facts.schema_version:
        findings.append(_history_finding(src, tgt, result.target, s_facts, t_facts))
    if any(not f.ok for f in findings):
        raise PreflightFailed(findings)
    sub_params = subscription_params(src, result.role, publisher)
    check_transport(sub_params, allow_insecure)  # how the target's server will connect

    if existing:
        if existing != [name] or not _subscription_points_at(tgt, name, sub_params):
            raise errors.AgentchatError(
                f"{result.target} already subscribes to agent_chat"
                f" (subscription {', '.join(existing)})",
                fix="remove it first: agentchat replicate remove --target ...",
            )
        result.already = True
        row = tgt.execute(queries["subscription"], (name,)).fetchone()
        result.role = role_of(row[3] if row else None) or result.role
    elif tgt.execute(queries["subscription"], (name,)).fetchone():
        raise errors.AgentchatError(
            f"{result.target} already has a subscription named {name!r} for other tables",
            fix="choose another --name",
        )
    if topology is not None:
        topology.check_source(source_dsn)
    # rows carrying the source's schema must find it on the target: bring the target up first
    if (t_facts.schema_version or 0) < (s_facts.schema_version or 0):
        progress("prepare", f"bringing {result.target} to schema {s_facts.schema_version}")
        installer.install(
            target_info, dimension=t_facts.embedding_dimension or s_facts.embedding_dimension
        )

    undo = _Undo()
    try:
        if not result.already:
            _create(src, tgt, result, password, passfile, sub_params, copy_data, topology, undo,
                    progress, dedicated=role is None)  # fmt: skip
            _record_history(src, tgt, copy_data)
        progress("sync", "waiting for the initial sync")
        result.tables = wait_for_sync(tgt, name, timeout=timeout, progress=progress)
        progress("install", f"setting the trigger policy on {result.target}")
        installer.install(target_info)
        if topology is not None:
            progress("topology", f"recording the replica in {topology.path}")
            topology.record_replica(source_dsn, publication, name, target_dsn)
    except BaseException as exc:
        undo.run()
        if undo.failures:  # say what is left behind, with the original cause
            cause = exc.message if isinstance(exc, errors.AgentchatError) else str(exc)
            raise errors.AgentchatError(
                f"{cause}; undoing it left something behind: {'; '.join(undo.failures)}"
            ) from exc
        raise
    return result


def _record_history(src: _db.Connection, tgt: _db.Connection, copy_data: bool) -> None:
    """With --no-copy-data the replica is not expected to hold what the source has now: record
    the source's newest id (the subscription exists, so every later message streams), which
    status and doctor then leave out when they count missing messages."""
    if schema.schema_version(tgt) < 2:
        return
    if copy_data:
        tgt.execute(queries["setting_delete"], (HISTORY_FROM,))
    else:
        [(upto,)] = src.execute(queries["chat_max_id"]).fetchall()
        tgt.execute(queries["setting_put"], (HISTORY_FROM, str(upto)))


def _history_finding(
    src: _db.Connection,
    tgt: _db.Connection,
    target: str,
    s_facts: SourceFacts,
    t_facts: TargetFacts,
) -> Finding:
    """Whether the source's history can be copied into a target that holds messages already.

    From schema version 5 on (the target is brought to the source's version first), a copied
    row that the target already holds is skipped by its admission trigger, and an embedding row
    merged: a replica that lost rows is repaired by removing it and adding it again, keeping its
    delivery marks. Rows that are not the source's would be lost or collide: those refuse.
    """
    [(rows,)] = tgt.execute(queries["agent_chat_rows"]).fetchall()
    if not rows:
        return Finding("target_history", True, "", "")
    fix = (
        "if they came from this source earlier, add with --no-copy-data; otherwise move them to"
        " the source and empty the table"
    )
    version = max(t_facts.schema_version or 0, s_facts.schema_version or 0)
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


#: the schema version whose admission trigger skips a copied row the target already holds
SKIPS_KNOWN_ROWS = 5


def publication_shape(src: _db.Connection) -> list[tuple[object, ...]]:
    """What agentchat's publication carries (tables, columns, row filters), as the catalog says.

    Read from a scratch publication created and dropped in a rolled-back transaction, so the
    comparison uses PostgreSQL's own normalised form of the row filter.
    """
    shape: list[tuple[object, ...]] = []
    with src.transaction():
        src.execute(
            queries["create_publication"].format(publication=sql.Identifier("agentchat_probe"))
        )
        shape = [tuple(r) for r in src.execute(queries["publication_tables"], ("agentchat_probe",))]
        raise psycopg.Rollback
    return shape


def subscription_params(
    src: _db.Connection, role: str, publisher: dict[str, str]
) -> dict[str, str]:
    """How the subscription connects to the source (without the password).

    The host and port agentchat itself used, unless *publisher* (``--publisher-dsn``) says how
    the target's server reaches the source instead; TLS settings carry over.
    """
    params = {k: v for k, v in _db.connection_params(src).items() if k in _KEEP_KEYS}
    params.update(host=src.info.host, port=str(src.info.port), dbname=src.info.dbname)
    params.update({k: v for k, v in publisher.items() if k not in ("user", "password")})
    params["user"] = role
    return params


def _create(
    src: _db.Connection,
    tgt: _db.Connection,
    result: AddResult,
    password: str | None,
    passfile: Path | None,
    sub_params: dict[str, str],
    copy_data: bool,
    topology: Topology | None,
    undo: _Undo,
    progress: Progress,
    *,
    dedicated: bool,
) -> None:
    role, publication, slot, name = (
        result.role,
        result.publication,
        result.slot,
        result.subscription,
    )
    progress("role", f"replication role {role}")
    src.execute(queries["replicate_lock"])  # two adds at once: grants and publication in turn
    try:
        password = _role_and_publication(src, tgt, result, password, passfile, topology, undo,
                                         progress, dedicated=dedicated)  # fmt: skip
    finally:
        src.execute(queries["replicate_unlock"])

    params: dict[str, str] = dict(sub_params)
    if passfile is not None:
        line = (params["host"], params["port"], params["dbname"], role)
        previous = read_passfile(passfile, role)
        write_passfile(passfile, *line, password)
        undo.push(f"the line of {role} in {passfile}", lambda: restore_passfile(
            passfile, line, previous))  # fmt: skip
        params["passfile"] = str(passfile)
    else:
        params["password"] = password
    conninfo = _conninfo.make_conninfo("", **params)

    if src.execute(queries["slot_exists"], (slot,)).fetchone() is not None:
        raise errors.AgentchatError(
            f"the source already has a replication slot named {slot!r}",
            fix=f"if it is left over, drop it there: SELECT pg_drop_replication_slot('{slot}');",
        )
    if result.same_cluster:
        progress("slot", f"slot {slot} (one cluster: created first)")
        src.execute(queries["create_slot"], (slot,))
        result.created.append(f"slot {slot}")
        undo.push(f"slot {slot}", lambda: drop_slot(src, slot))

    progress("subscription", f"subscription {name}")
    options = sql.SQL(
        "WITH (slot_name = {}, create_slot = {}, copy_data = {}, disable_on_error = false)"
    ).format(sql.Literal(slot), sql.Literal(not result.same_cluster), sql.Literal(copy_data))
    with no_statement_logging(tgt):
        tgt.execute(
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} {}").format(
                sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication), options
            )
        )
    if not result.same_cluster:  # the subscription created the slot on the source
        result.created.append(f"slot {slot}")
        undo.push(f"slot {slot}", lambda: drop_slot(src, slot))
    result.created.append(f"subscription {name}")
    undo.push(f"subscription {name}", lambda: drop_subscription(tgt, name))


def _role_and_publication(
    src: _db.Connection,
    tgt: _db.Connection,
    result: AddResult,
    password: str | None,
    passfile: Path | None,
    topology: Topology | None,
    undo: _Undo,
    progress: Progress,
    *,
    dedicated: bool,
) -> str:
    role, publication = result.role, result.publication
    password, created = ensure_role(
        src, tgt, role, password, passfile, topology, dedicated=dedicated
    )
    if created:
        result.created.append(f"role {role}")
        undo.push(f"role {role}", lambda: drop_role(src, role))

    progress("publication", f"publication {publication}")
    shape = [tuple(r) for r in src.execute(queries["publication_tables"], (publication,))]
    exists = src.execute(queries["publication_exists"], (publication,)).fetchone() == (True,)
    if exists and shape != publication_shape(src):
        raise errors.AgentchatError(
            f"publication {publication!r} already exists on the source for other tables"
            f" or rows ({', '.join(str(t[0]) for t in shape) or 'none'})",
            fix="choose another --publication, or drop that publication",
        )
    if not exists:
        src.execute(queries["create_publication"].format(publication=sql.Identifier(publication)))
        result.created.append(f"publication {publication}")
        undo.push(
            f"publication {publication}",
            lambda: src.execute(
                sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication))
            ),
        )

    return password


def _subscription_points_at(tgt: _db.Connection, name: str, wanted: dict[str, str]) -> bool:
    """Whether the target's subscription *name* reads the database this add would subscribe
    to (same database and port as the connection it would create)."""
    row = tgt.execute(queries["subscription"], (name,)).fetchone()
    if row is None or row[3] is None:
        return row is not None  # conninfo unreadable (not superuser): trust the name
    params = _conninfo.conninfo_to_dict(row[3])
    return params.get("dbname") == wanted["dbname"] and str(params.get("port")) == wanted["port"]


def wait_for_sync(
    tgt: _db.Connection, name: str, *, timeout: float = 300.0, progress: Progress = _quiet
) -> int:
    """Wait until every table of the subscription is ready ('r'); return the table count."""
    deadline = time.monotonic() + timeout
    last = (-1, -1)
    while True:
        row = tgt.execute(queries["sync_state"], (name,)).fetchone()
        if row is None:
            raise errors.AgentchatError(f"subscription {name!r} disappeared during the sync")
        total, ready, enabled, sync_errors, apply_errors = row
        if (ready, total) != last:
            progress("sync", f"{ready}/{total} tables ready")
            last = (ready, total)
        if total and ready == total:
            return int(total)
        if not enabled or sync_errors:
            raise errors.AgentchatError(
                f"the initial sync of {name!r} failed (sync errors: {sync_errors}, apply errors:"
                f" {apply_errors})",
                fix="see the target server's log for the conflicting row",
            )
        if time.monotonic() > deadline:
            raise errors.AgentchatError(
                f"the initial sync of {name!r} did not finish in {timeout:.0f} s"
                f" ({ready}/{total} tables ready)",
                fix="check the source's reachability from the target, or raise --timeout",
            )
        time.sleep(0.1)


# -- remove ---------------------------------------------------------------------------------


def drop_subscription(tgt: _db.Connection, name: str) -> None:
    """Drop a subscription without touching its slot (that is dropped on the source)."""
    ident = sql.Identifier(name)
    if tgt.execute(queries["subscription"], (name,)).fetchone() is None:
        return
    tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    tgt.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))


def drop_slot(src: _db.Connection, slot: str, timeout: float = 15.0) -> bool:
    """Drop a slot on the source once its walsender is gone; False if there was none."""
    deadline = time.monotonic() + timeout
    while True:
        row = src.execute(queries["slot_exists"], (slot,)).fetchone()
        if row is None:
            return False
        if not row[0]:
            try:
                src.execute(queries["drop_slot"], (slot,))
                return True
            except psycopg.errors.ObjectInUse:
                pass
            except psycopg.errors.UndefinedObject:
                return False
        if time.monotonic() > deadline:
            raise errors.AgentchatError(f"slot {slot!r} stayed in use for {timeout:.0f} s")
        time.sleep(0.1)


def _drop_own_role(src: _db.Connection, role: str, result: RemoveResult) -> None:
    try:
        drop_role(src, role)
        result.role_dropped = role
    except psycopg.Error as exc:
        ident = sql.Identifier(role).as_string(src)
        result.warnings.append(
            f"could not drop the replica's role {role} on the source"
            f" ({_db.translate(exc).message}); as a superuser there: DROP OWNED BY {ident};"
            f" DROP ROLE {ident};"
        )


def remove(
    target_dsn: str,
    *,
    name: str | None = None,
    source_dsn: str | None = None,
    topology: Topology | None = None,
    progress: Progress = _quiet,
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
            except (errors.AgentchatError, psycopg.Error) as exc:
                reason = str(exc)
        if not result.slot_dropped:
            result.warnings.append(
                f"the source is unreachable ({reason}); its slot {slot!r} keeps WAL until you"
                f" run there: SELECT pg_drop_replication_slot('{slot}');"
            )
    progress("install", f"resetting the trigger policy on {result.target}")
    installer.install(target_info, create=False)
    if topology is not None:
        topology.forget_replica(target_resolved)
    return result
