"""The installer: database, pgvector, migrations, and trigger modes by the node's kind.

    report = install("postgresql://postgres@/?host=/tmp/sock", database="nova_memory")
    report.kind      # NodeKind.PLAIN, .SOURCE or .SUBSCRIBER, read from the catalogs
    report.changes   # trigger modes changed to match the policy ([] on a second run)
    report.subscription_changes  # on a replica: disable_on_error switched off, re-enabled

A second run changes nothing. If the installer created the database and a later step fails, it
drops the database again, so a failed install leaves nothing half-made. :func:`install_into`
does the same on a connection the caller has open (``replicate add`` installs its target so).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agentchat import _db, errors, nodes, policy, schema, settings
from agentchat import compat as compat_layers
from agentchat.embeddings.mode import EmbeddingMode, embedding_mode
from agentchat.sql import Migration, load_migrations, queries

#: the schema version that gives every database a node number and the node registry
NODE_SCHEMA = 6

#: SQLSTATEs the installer decides on: insufficient_privilege, duplicate_database
_NOT_ALLOWED, _DUPLICATE_DATABASE = "42501", "42P04"


@dataclass
class InstallReport:
    """What the installer found and did (or, in a dry run, would do)."""

    database: str
    created: bool = False
    applied: list[str] = field(default_factory=list)
    schema_version: int = 0
    facts: policy.NodeFacts = field(default_factory=lambda: policy.NodeFacts(False, False))
    changes: list[policy.TriggerChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    statements: list[str] = field(default_factory=list)
    #: where this database's chat embeddings come from (None in a dry run of a new database)
    embedding_mode: EmbeddingMode | None = None
    #: on a replica: what was done to agentchat's subscriptions so they heal by themselves
    subscription_changes: list[str] = field(default_factory=list)
    #: ``--compat``: the compatibility layers installed, each with the roles that see it
    compat: list[compat_layers.CompatReport] = field(default_factory=list)

    @property
    def kind(self) -> policy.NodeKind:
        return self.facts.kind

    @property
    def role(self) -> policy.NodeKind:
        """Deprecated: the old name of :attr:`kind`."""
        return self.kind

    @property
    def changed_anything(self) -> bool:
        return (
            self.created
            or bool(self.applied)
            or bool(self.changes)
            or bool(self.subscription_changes)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "dry_run": self.dry_run,
            "created": self.created,
            "applied": self.applied,
            "schema_version": self.schema_version,
            # the node's kind, kept under its old key "role" for compatibility
            "role": self.kind.value,
            "subscriptions": list(self.facts.subscriptions),
            "publications": list(self.facts.publications),
            "changes": [
                {"trigger": c.trigger, "from": c.old.name, "to": c.new.name, "reason": c.reason}
                for c in self.changes
            ],
            "subscription_changes": self.subscription_changes,
            "warnings": self.warnings,
            "embedding_mode": self.embedding_mode.value if self.embedding_mode else None,
            **({"compat": [c.as_dict() for c in self.compat]} if self.compat else {}),
            **({"sql": self.statements} if self.dry_run else {}),
        }


def install(
    dsn: str | None = None,
    *,
    database: str | None = None,
    create: bool = True,
    dry_run: bool = False,
    dimension: int | None = None,
    embed_replicated: bool | None = None,
    migrations: Sequence[Migration] | None = None,
    compat: Sequence[str] = (),
    compat_roles: Sequence[str] = (),
) -> InstallReport:
    """Install or upgrade agentchat in one database and set its triggers by the policy.

    *dimension* (default 384) fixes the embedding vector size at the first install; giving a
    different one for an installed database is an error, never a silent no-op.
    *embed_replicated*: on a replica, True makes its embedding worker embed the replicated
    messages (for a source that runs no worker), False goes back to receiving the source's
    embeddings; None keeps what was set.
    *compat* names compatibility layers to install as well (``("nova",)``: NOVA's agent-chat
    clients, :mod:`agentchat.compat`), on the search_path of *compat_roles*; a layer installed
    before is applied again (its script is idempotent), so an upgrade keeps it current.
    """
    if dimension is not None:
        schema.validate_dimension(dimension)
    _check_compat(compat, compat_roles)
    conninfo = _db.make_conninfo(dsn, dbname=database)
    name = database or _db.target_dbname(conninfo)
    if not name:
        raise errors.InvalidInput("no database given", fix="pass --database NAME or a DSN")
    if name in ("template0", "template1"):
        raise errors.InvalidInput(f"refusing to install into the template database {name!r}")
    report = InstallReport(database=name, dry_run=dry_run)

    try:
        conn = _db.connect(conninfo)
    except errors.DatabaseMissing as exc:
        if not create:
            raise errors.DatabaseMissing(
                f'database "{name}" does not exist', fix="drop --no-create to create it"
            ) from exc
        if dry_run:
            return _dry_run_fresh(report)
        report.created = create_database(conninfo, name)
        conn = _db.connect(conninfo)

    try:
        with conn:
            _install_into(conn, report, dimension, migrations, embed_replicated)
            # a layer installed before is brought up to this agentchat's version as well
            known = [] if dry_run else compat_layers.installed(conn)
            for layer in dict.fromkeys([*compat, *known]):
                report.compat.append(
                    compat_layers.install_compat(conn, layer, compat_roles, dry_run=dry_run)
                )
                report.statements += report.compat[-1].statements
    except BaseException:
        conn.close()
        if report.created:
            drop_database(conninfo, name)
        raise
    return report


def _check_compat(compat: Sequence[str], compat_roles: Sequence[str]) -> None:
    for layer in compat:
        compat_layers.check_name(layer)
    if compat_roles and not compat:
        raise errors.InvalidInput(
            "--compat-role names a role for a compatibility layer, and none was given",
            fix="add --compat nova",
        )


def install_into(
    conn: _db.Connection,
    *,
    dry_run: bool = False,
    dimension: int | None = None,
    embed_replicated: bool | None = None,
    migrations: Sequence[Migration] | None = None,
) -> InstallReport:
    """:func:`install` on a connection that is open already (autocommit, to an existing
    database): migrations, trigger policy, a replica's settings. The connection stays open."""
    if dimension is not None:
        schema.validate_dimension(dimension)
    report = InstallReport(database=conn.info.dbname, dry_run=dry_run)
    _install_into(conn, report, dimension, migrations, embed_replicated)
    return report


def _install_into(
    conn: _db.Connection,
    report: InstallReport,
    dimension: int | None,
    migrations: Sequence[Migration] | None = None,
    embed_replicated: bool | None = None,
) -> None:
    with _db.wrap_errors():
        if embed_replicated and not policy.read_kind(conn).is_replica:
            raise errors.InvalidInput(
                f"{report.database!r} is not a replica (no agent_chat subscription):"
                " --embed-replicated is for replicas whose source runs no embedding worker",
                fix="messages written here are embedded here already; leave the option out",
            )
        fixed = schema.embedding_dimension(conn)
        if dimension is not None and fixed is not None and fixed != dimension:
            raise errors.InvalidInput(
                f"the embedding dimension of {report.database!r} was fixed at {fixed} when it was"
                f" installed; --dimension {dimension} cannot change it",
                fix="leave --dimension out, or install into a new database",
            )
        version_num, wal_level, vector_available = _server_facts(conn)
        if not vector_available:
            raise errors.ExtensionMissing(
                f"the pgvector extension is not available on this server (PostgreSQL"
                f" {version_num // 10000})",
                fix="install pgvector on the server, or use `agentchat server start`",
            )
        if wal_level != "logical":
            report.warnings.append(
                f"wal_level is {wal_level}: fine for this database, but replicating agent_chat"
                " from it needs wal_level = logical (ALTER SYSTEM SET wal_level = logical;"
                " then restart the server)"
            )
        if report.dry_run:
            todo = schema.pending(conn, migrations)
            report.statements += [m.text.strip() for m in todo]
            report.applied = [f"{m.version:04d}_{m.name}" for m in todo]
            report.schema_version = todo[-1].version if todo else schema.schema_version(conn)
        else:
            done = schema.migrate(
                conn, dimension=dimension or schema.DEFAULT_DIMENSION, migrations=migrations
            )
            report.applied = [f"{m.version:04d}_{m.name}" for m in done]
            report.schema_version = schema.schema_version(conn)
        report.facts = policy.read_kind(conn)
        if report.dry_run:
            report.changes = policy.planned_changes(conn, report.facts)
            report.statements += [c.statement + ";" for c in report.changes]
            planned = subscription_repairs(conn)
            report.subscription_changes = [what for what, _ in planned]
            report.statements += [stmt.as_string(conn) + ";" for _, stmt in planned]
        else:
            report.changes = policy.apply_policy(conn, report.facts)
            report.subscription_changes = heal_subscriptions(conn, report.warnings)
            if report.schema_version >= 2:
                _record_source(conn, report.facts)
                _set_embed_replicated(conn, embed_replicated)
            if report.schema_version >= NODE_SCHEMA:
                _register_node(conn)
            report.embedding_mode = embedding_mode(conn, report.facts)


def subscription_repairs(conn: _db.Connection) -> list[tuple[str, sql.Composed]]:
    """What agentchat's subscriptions here need so that they heal by themselves.

    ``disable_on_error = false``: with true, PostgreSQL disables the subscription on any apply
    error, a lost connection included (a source restart), and it stays off until someone
    enables it; without it the apply worker reconnects by itself. A subscription found disabled
    is enabled again: if a real conflict is still there, its apply worker retries and status
    shows it crash-looping, with doctor naming the row.
    """
    todo: list[tuple[str, sql.Composed]] = []
    for name, enabled, disable_on_error in conn.execute(queries["agent_chat_subscriptions"]):
        ident = sql.Identifier(name)
        if disable_on_error:
            todo.append((
                f"subscription {name}: disable_on_error true -> false (heals by itself)",
                queries.compose("subscription_retries_errors", subscription=ident),
            ))  # fmt: skip
        if not enabled:
            todo.append((
                f"subscription {name}: was disabled, enabled again",
                queries.compose("enable_subscription", subscription=ident),
            ))  # fmt: skip
    return todo


def heal_subscriptions(conn: _db.Connection, warnings: list[str] | None = None) -> list[str]:
    """Apply :func:`subscription_repairs`; returns what was done (a role that may not alter a
    subscription gets a warning instead)."""
    done = []
    for what, statement in subscription_repairs(conn):
        try:
            with _db.wrap_errors():
                conn.execute(statement)
        except errors.DatabaseError as exc:
            if exc.sqlstate != _NOT_ALLOWED:
                raise
            if warnings is not None:
                warnings.append(f"could not change {what.split(':')[0]}: {exc.message}"
                                " (run agentchat install as a superuser)")  # fmt: skip
            continue
        done.append(what)
    return done


def _record_source(conn: _db.Connection, facts: policy.NodeFacts) -> None:
    """On a replica, remember which source it follows: ``replica_of`` (a description the
    guard's error names) and ``source_conninfo`` (host, port and database, where agents on
    the replica send)."""
    described: str | None = None
    where: str | None = None
    if facts.is_replica:
        subs = facts.subscriptions
        conninfo = _subscription_conninfo(conn, subs[0]) if subs else None
        if conninfo:
            described = _db.describe(conninfo)
            where = _source_location(conninfo)
        described = described or "(see pg_subscription)"
    for key, value in ((settings.REPLICA_OF, described), (settings.SOURCE_CONNINFO, where)):
        if settings.get(conn, key) == value:
            continue
        if value is None:
            settings.delete(conn, key)
        else:
            settings.put(conn, key, value)


def _register_node(conn: _db.Connection) -> None:
    """This database's node number (kept; a random free one if it has none) and its own row in
    the node registry: how it is named and reached (without password), its parent kept."""
    nodes.ensure_number(conn)
    mine = nodes.own(conn)
    conninfo = _db.resolved_conninfo(conn)
    nodes.register_self(
        conn, name=_db.describe(conninfo), conninfo=conninfo,
        parent=mine.parent if mine else None,
    )  # fmt: skip


def _set_embed_replicated(conn: _db.Connection, wanted: bool | None) -> None:
    if wanted is True:
        settings.put(conn, settings.EMBED_REPLICATED, "on")
    elif wanted is False:
        settings.delete(conn, settings.EMBED_REPLICATED)


def _subscription_conninfo(conn: _db.Connection, subscription: str) -> str | None:
    """The subscription's conninfo (readable by superusers only; None otherwise)."""
    try:
        with _db.wrap_errors():
            row = conn.execute(queries["subscription_conninfo"], (subscription,)).fetchone()
    except errors.DatabaseError as exc:
        if exc.sqlstate != _NOT_ALLOWED:
            raise
        conn.rollback()
        return None
    return str(row[0]) if row and row[0] else None


def _source_location(conninfo: str) -> str:
    """Where the source is, without the replication role's user and password."""
    keep = ("host", "hostaddr", "port", "dbname", "sslmode", "sslrootcert")
    params = conninfo_to_dict(conninfo)
    return make_conninfo("", **{k: params[k] for k in keep if params.get(k) is not None})


def _server_facts(conn: _db.Connection) -> tuple[int, str, bool]:
    row = conn.execute(queries["server_facts"]).fetchone()
    assert row is not None
    return int(row[0]), str(row[1]), bool(row[2])


def _dry_run_fresh(report: InstallReport) -> InstallReport:
    """A dry run against a database that does not exist yet: everything would be done."""
    migrations = load_migrations()
    report.created = True
    report.statements.append(f"CREATE DATABASE {_quote_ident(report.database)};")
    report.statements += [m.text.strip() for m in migrations]
    report.applied = [f"{m.version:04d}_{m.name}" for m in migrations]
    report.schema_version = migrations[-1].version
    return report


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _maintenance_conninfos(conninfo: str) -> list[str]:
    return [_db.with_dbname(conninfo, "postgres"), _db.with_dbname(conninfo, "template1")]


def _maintenance_connect(conninfo: str) -> _db.Connection:
    last: errors.AgentchatError | None = None
    for candidate in _maintenance_conninfos(conninfo):
        try:
            return _db.connect(candidate)
        except errors.DatabaseMissing as exc:
            last = exc
    assert last is not None
    raise last


@contextlib.contextmanager
def maintenance_connection(conninfo: str) -> Iterator[_db.Connection]:
    """A connection to the server of *conninfo* through a maintenance database (``postgres``,
    else ``template1``), for a database that does not exist yet; errors translated."""
    with _maintenance_connect(conninfo) as admin, _db.wrap_errors(conninfo):
        yield admin


def create_database(conninfo: str, name: str | None = None) -> bool:
    """CREATE DATABASE (*name*, by default the database of *conninfo*) through a maintenance
    database; False if someone else just created it."""
    name = name or _db.target_dbname(conninfo) or ""
    with maintenance_connection(conninfo) as admin:
        _, _, vector_available = _server_facts(admin)
        if not vector_available:
            raise errors.ExtensionMissing(
                "the pgvector extension is not available on this server",
                fix="install pgvector on the server, or use `agentchat server start`",
            )
        try:
            with _db.wrap_errors():
                admin.execute(queries.compose("create_database", database=sql.Identifier(name)))
        except errors.DatabaseError as exc:
            if exc.sqlstate == _DUPLICATE_DATABASE:
                return False
            raise
    return True


def drop_database(conninfo: str, name: str) -> None:
    """Drop a database this package created, after a later step failed (best effort)."""
    with contextlib.suppress(errors.AgentchatError), maintenance_connection(conninfo) as admin:
        admin.execute(queries.compose("drop_database", database=sql.Identifier(name)))


def repair_policy(dsn: str) -> list[policy.TriggerChange]:
    """Set the trigger modes by the policy, and nothing else (no migration, no database)."""
    with _db.connection(_db.make_conninfo(dsn)) as conn:
        facts = policy.read_kind(conn)
        changes = policy.apply_policy(conn, facts)
        if schema.schema_version(conn) >= 2:
            _record_source(conn, facts)
    return changes


def repair_subscriptions(dsn: str) -> list[str]:
    """doctor --fix: :func:`heal_subscriptions` on one database."""
    with _db.connection(_db.make_conninfo(dsn)) as conn:
        return heal_subscriptions(conn)


def upgrade(
    replicas: Sequence[str],
    source: str | None,
    *,
    migrations: Sequence[Migration] | None = None,
) -> list[InstallReport]:
    """Apply pending migrations across a topology: every replica first, then the source.

    DDL does not replicate, and the apply worker needs every column a row carries: an additive
    change must exist on the replicas before the source starts sending rows with it.
    """
    order = [*replicas, *([source] if source else [])]
    return [install(dsn, create=False, migrations=migrations) for dsn in order]
