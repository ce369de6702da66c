"""Two-way replication: every agent writes to its own database (docs/replication.md).

A topology is a tree (a hub and its spokes; a spoke that is a hub of its own is a relay) or a
mesh, and each edge is two links. A link X -> Y is a publication on X, named
``agent_chat_<x>_to_<y>`` after the node numbers, filtered on the node of origin that every id
carries, and Y's subscription of the same name (``origin = any``: the filters, not ``origin``,
keep rows from going round; see :mod:`agentchat.replication.links`)::

    result = join("host=db1 dbname=nova_memory", "host=db2 dbname=graybeard_memory")
    result.links      # ['agent_chat_1_to_7', 'agent_chat_7_to_1']
    result = mesh(["dbname=a_memory", "dbname=b_memory", "dbname=c_memory"])

:func:`join` adds a node below a parent (the hub, or a relay); the links on the path from the
parent to the root widen their filters first, so the new node's messages travel all the way up
and down. The initial copy of each link goes through its filter: the child receives the whole
history except its own rows and the parent exactly the child's own rows, so nothing is copied
back. :func:`leave` removes a node: its registry row goes first (it travels to every node),
then its links, slots and roles, then the path's filters narrow again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat import _db, errors, nodes, schema, settings
from agentchat import install as installer
from agentchat.replication import lifecycle, phases
from agentchat.replication.links import Link, link_name, parse_link_name, tree
from agentchat.replication.phases import Progress, Run, drop_slot, drop_subscription, quiet
from agentchat.replication.plan import ReplicationPlan, gather, plan, points_at, slot_name
from agentchat.replication.preflight import (
    Finding,
    PreflightFailed,
    check_transport,
    judge,
    source_facts,
    target_facts,
)
from agentchat.replication.role import drop_role
from agentchat.sql import queries
from agentchat.topology import Topology

#: two-way replication needs ``origin`` on subscriptions, and is measured on 16 and 18
MIN_TWO_WAY_VERSION = 160000
#: the tables a link carries: the chat, its embeddings, the node and the agent registries
LINK_TABLES = 4


@dataclass
class Node:
    """One database of the topology, connected: its node number and how it is named."""

    conn: _db.Connection
    #: agentchat's connection to it, resolved, without password
    conninfo: str
    label: str
    number: int = 0

    @classmethod
    def of(cls, conn: _db.Connection) -> Node:
        conninfo = _db.resolved_conninfo(conn)
        return cls(conn, conninfo, _db.describe(conninfo))


@dataclass
class LinkResult:
    """What one ``join`` or ``mesh`` did."""

    nodes: dict[str, int]
    links: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    #: links on the path to the root whose filters changed
    widened: list[str] = field(default_factory=list)
    renumbered: dict[str, int] = field(default_factory=dict)
    already: bool = False
    warnings: list[str] = field(default_factory=list)
    #: the one-way subscription a join turned into two-way links
    converted: str | None = None
    #: what ``leave`` dropped (subscriptions, slots, roles, publications)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LinkOptions:
    """How each side's server reaches the other, and the TLS rule."""

    #: how the child's server reaches the parent (default: as agentchat does)
    publisher: Mapping[str, str] = field(default_factory=dict)
    #: how the parent's server reaches the child (default: as agentchat does)
    back: Mapping[str, str] = field(default_factory=dict)
    passfile: Path | None = None
    allow_insecure: bool = False
    timeout: float = 300.0


# -- checks ---------------------------------------------------------------------------------


def _version_finding(node: Node) -> Finding | None:
    [(version,)] = node.conn.execute(queries["server_version_num"]).fetchall()
    return version_finding(node.label, int(version))


def version_finding(label: str, version_num: int) -> Finding | None:
    """Two-way replication needs PostgreSQL 16 (``origin``; the facts are measured on 16, 18)."""
    if version_num >= MIN_TWO_WAY_VERSION:
        return None
    return Finding(
        "two_way_version", False,
        f"{label} runs PostgreSQL {version_num // 10000}: two-way replication needs 16"
        " or later (subscriptions with origin)",
        "upgrade that server, or replicate one way: agentchat replicate add --one-way",
    )  # fmt: skip


def _preflight(sender: Node, receiver: Node, *, new_slot: bool) -> list[Finding]:
    findings = judge(source_facts(sender.conn), target_facts(receiver.conn), new_slot=new_slot)
    return [
        dataclasses.replace(f, message=f"{sender.label} -> {receiver.label}: {f.message}")
        for f in findings
        if not f.ok
    ]


def _one_way_subscriptions(node: Node) -> list[str]:
    """agent_chat subscriptions of *node* that are no two-way links."""
    subs = [r[0] for r in node.conn.execute(queries["agent_chat_subscriptions"])]
    return [s for s in subs if parse_link_name(s) is None]


def _links_of(node: Node) -> list[tuple[int, int]]:
    """The ``(sender, receiver)`` of every link subscription and publication of *node*."""
    names = [r[0] for r in node.conn.execute(queries["link_subscriptions"])]
    names += [r[0] for r in node.conn.execute(queries["link_publications"])]
    return sorted({p for p in map(parse_link_name, names) if p is not None})


# -- numbers --------------------------------------------------------------------------------


def _settle_number(
    node: Node,
    taken: Mapping[int, str],
    result: LinkResult,
    *,
    wrote: bool = True,
    parent: Node | None = None,
) -> None:
    """Give *node* a number nobody else has: its own if free, else (when it wrote nothing under
    its number) the smallest free one; refuse a collision it cannot get out of. *wrote*: False
    for a former one-way replica, whose rows all came from its source."""
    number = nodes.number(node.conn)
    holder = taken.get(number)
    if holder is None or holder == node.label:
        node.number = number
        return
    written = _written_here(node, number, parent) if wrote else 0
    if written:
        raise errors.ReplicationError(
            f"{node.label} wrote {written} messages as node {number}, which is {holder}'s number:"
            " their ids would collide",
            fix="join it to a topology where its number is free, or move its messages to a"
            " database that joins first",
        )
    node.number = nodes.free_number(set(taken))
    nodes.set_number(node.conn, node.number)
    result.renumbered[node.label] = node.number


def _written_here(node: Node, number: int, parent: Node | None) -> int:
    """How many of *node*'s messages carrying *number* it wrote itself: when the parent has the
    same number, the rows it holds too came from it (a former replica of it, or a copy)."""
    if parent is None or parent.number != number:
        return nodes.own_rows(node.conn, number)
    ids = [r[0] for r in node.conn.execute(queries["ids_of_node"], (number,))]
    [(held,)] = parent.conn.execute(queries["ids_held"], (ids,)).fetchall()
    return len(ids) - int(held)


def _taken(registry: Sequence[nodes.Node]) -> dict[int, str]:
    return {n.number: n.name for n in registry}


# -- one link -------------------------------------------------------------------------------


def _link_plan(sender: Node, receiver: Node, name: str, opts: LinkOptions, back: bool) -> Run:
    if receiver.conn.execute(queries["subscription"], (name,)).fetchone() is None:
        # a slot of this link's own name that nothing uses is what a half-removed link left
        slot = _link_slot(receiver.conn, name)
        if sender.conn.execute(queries["slot_exists"], (slot,)).fetchone() == (False,):
            drop_slot(sender.conn, slot)
    facts = gather(sender.conn, receiver.conn, name, publication=name)
    mine = tuple(s for s in facts.existing if s == name)
    facts = dataclasses.replace(facts, existing=mine, target_label=receiver.label)
    the_plan: ReplicationPlan = plan(
        facts,
        name=name,
        publication=name,
        copy_data=True,
        publisher=opts.back if back else opts.publisher,
        passfile=opts.passfile,
    )
    if the_plan.refusal is not None:
        raise errors.ReplicationError(the_plan.refusal.message, fix=the_plan.refusal.fix)
    check_transport(dict(the_plan.connection), opts.allow_insecure)
    the_plan = dataclasses.replace(the_plan, synchronous_commit="local")
    return Run(sender.conn, receiver.conn, the_plan)


def _set_filters(conn: _db.Connection, link: Link, name: str, *, create: bool) -> None:
    statement = "create_link_publication" if create else "set_link_publication"
    conn.execute(queries.compose(statement, publication=sql.Identifier(name), **link.filters()))


def _make_link(run: Run, link: Link, result: LinkResult, timeout: float) -> None:
    """Role, publication, slot and subscription of one link (a re-run makes nothing), then
    the initial copy through the link's filter."""
    the_plan, src = run.plan, run.src
    name = the_plan.subscription
    result.links.append(name)
    if not the_plan.already:
        _clear_leftovers(run, link)
        src.execute(queries["replicate_lock"])
        try:
            password = phases.make_role(run, None, None)
            src.execute(queries.compose("grant_link_published", role=sql.Identifier(the_plan.role)))
            exists = src.execute(queries["publication_exists"], (name,)).fetchone() == (True,)
            _set_filters(src, link, name, create=not exists)
            if not exists:
                ident = sql.Identifier(name)
                run.made(
                    f"publication {name}",
                    lambda: src.execute(queries.compose("drop_publication", publication=ident)),
                )
        finally:
            src.execute(queries["replicate_unlock"])
        phases.make_slot(run)
        phases.make_subscription(run, password)
    else:  # a re-run: the filters are brought to what the tree says now
        _set_filters(src, link, name, create=False)
        [(tables,)] = run.tgt.execute(queries["subscription_tables"], (name,)).fetchall()
        if tables < LINK_TABLES:  # a link made before a table joined the links (an upgrade)
            run.progress("link", f"{name}: copying the tables it gained")
            _clear_leftovers(run, link, ("forget_carried_agents",))
            run.tgt.execute(
                queries.compose("refresh_subscription", subscription=sql.Identifier(name))
            )
    run.progress("sync", f"{name}: waiting for the initial copy")
    phases.wait_for_sync(run.tgt, name, timeout=timeout, progress=run.progress)
    result.created += run.created


def _link_slot(receiver: _db.Connection, name: str) -> str:
    """The slot a link's subscription uses on its sender (named as ``replicate add`` names it)."""
    [(system_id,)] = receiver.execute(queries["system_identifier"]).fetchall()
    return slot_name(name, receiver.info.dbname, str(system_id))


def _clear_leftovers(
    run: Run, link: Link, what: Sequence[str] = ("forget_carried_nodes", "forget_carried_agents")
) -> None:
    """The registry rows a new link is about to copy, which the receiver may hold from before
    (a half-removed link, a node joining again): the copy would collide on their key, and the
    link brings them back at once."""
    for query in what:
        run.tgt.execute(queries.compose(query, node_filter=link.filters()["node_filter"]))


def _drop_link(sender: _db.Connection, receiver: _db.Connection, name: str) -> list[str]:
    """Both halves of a link, whatever is left of them: the subscription, the slot and the
    link's own role on the sender (by the names ``join`` gives them, so a half left behind by
    a failure goes too), the publication; what was dropped."""
    dropped: list[str] = []
    slot = _link_slot(receiver, name)
    row = receiver.execute(queries["subscription"], (name,)).fetchone()
    if row is not None:
        slot = row[1] or slot
        drop_subscription(receiver, name)
        dropped.append(f"subscription {name}")
    if drop_slot(sender, slot):
        dropped.append(f"slot {slot}")
    if sender.execute(queries["role_exists"], (slot,)).fetchone() == (True,):
        drop_role(sender, slot)
        dropped.append(f"role {slot}")
    if sender.execute(queries["publication_exists"], (name,)).fetchone() == (True,):
        sender.execute(queries.compose("drop_publication", publication=sql.Identifier(name)))
        dropped.append(f"publication {name}")
    return dropped


# -- trees ----------------------------------------------------------------------------------


def _tree_of(registry: Sequence[nodes.Node], member: int) -> dict[int, int | None]:
    """``{number: parent}`` of the tree *member* belongs to, from a registry."""
    parent = {n.number: n.parent for n in registry}
    parent.setdefault(member, None)
    root = member
    seen = {root}
    while parent.get(root) is not None:
        up = parent[root]
        assert up is not None
        if up in seen:
            raise errors.ReplicationError(f"the node registry has a loop through node {up}")
        seen.add(up)
        root = up
        parent.setdefault(root, None)

    def reaches(number: int) -> bool:
        hops: set[int] = set()
        while number != root:
            up = parent.get(number)
            if up is None or number in hops:
                return False
            hops.add(number)
            number = up
        return True

    return {n: p for n, p in parent.items() if reaches(n)}


def tree_links(parents: Mapping[int, int | None]) -> dict[tuple[int, int], Link]:
    """Every link of a tree of node numbers, by ``(sender, receiver)``."""
    names = {n: str(n) for n in parents}
    links = tree(
        {names[n]: (names[p] if p is not None else None) for n, p in parents.items()},
        {names[n]: n for n in parents},
    )
    return {(int(link.sender), int(link.receiver)): link for link in links}


def _path_up(parents: Mapping[int, int | None], start: int) -> list[tuple[int, int]]:
    """``(child, parent)`` edges from *start* to the root."""
    edges = []
    node = start
    while parents.get(node) is not None:
        up = parents[node]
        assert up is not None
        edges.append((node, up))
        node = up
    return edges


@contextlib.contextmanager
def _ancestors(
    first: Node, registry: Sequence[nodes.Node], edges: Sequence[tuple[int, int]]
) -> Iterator[dict[int, _db.Connection]]:
    """Connections to every node on the path (the first one's is open already), through the
    conninfo each node registered and libpq's own password sources (~/.pgpass, PGPASSFILE)."""
    where = {n.number: n.conninfo for n in registry}
    conns = {first.number: first.conn}
    with contextlib.ExitStack() as stack:
        for child, up in edges:
            for number in (child, up):
                if number in conns:
                    continue
                conninfo = where.get(number)
                if not conninfo:
                    raise errors.ReplicationError(
                        f"node {number} (an ancestor of {first.label}) has no conninfo in the"
                        " node registry",
                        fix=f"run agentchat install on node {number}'s database",
                    )
                try:
                    conns[number] = stack.enter_context(_db.connection(conninfo))
                except errors.AgentchatError as exc:
                    raise errors.ReplicationError(
                        f"node {number} on the path to the root ({_db.describe(conninfo)})"
                        f" cannot be reached: {exc.message}",
                        fix="its filters must change too: let this user in there (pg_hba.conf,"
                        " and the password in ~/.pgpass or PGPASSFILE)",
                    ) from exc
        yield conns


def _refilter(
    conns: Mapping[int, _db.Connection],
    links: Mapping[tuple[int, int], Link],
    edges: Sequence[tuple[int, int]],
) -> list[str]:
    """Bring the filters of both links of every edge on the path to what *links* say."""
    changed = []
    for child, up in edges:
        for sender, receiver in ((child, up), (up, child)):
            name = link_name(sender, receiver)
            conn = conns[sender]
            if conn.execute(queries["publication_exists"], (name,)).fetchone() == (True,):
                _set_filters(conn, links[(sender, receiver)], name, create=False)
                changed.append(name)
    return changed


# -- join -----------------------------------------------------------------------------------


def _connect_child(stack: contextlib.ExitStack, child_info: str, dimension: int | None) -> Node:
    try:
        conn = stack.enter_context(_db.connect(child_info))
    except errors.DatabaseMissing:
        installer.create_database(child_info)
        conn = stack.enter_context(_db.connect(child_info))
    installer.install_into(conn, dimension=dimension)
    return Node.of(conn)


def join(
    parent_dsn: str,
    child_dsn: str,
    *,
    publisher_dsn: str | None = None,
    back_dsn: str | None = None,
    passfile: Path | None = None,
    allow_insecure: bool = False,
    timeout: float = 300.0,
    topology: Topology | None = None,
    progress: Progress = quiet,
) -> LinkResult:
    """Join *child_dsn*'s database (created and installed if missing) below *parent_dsn*'s (the
    hub, or a relay): both directions, each with its filter; the path's filters widen first.

    *publisher_dsn*: how the child's server reaches the parent; *back_dsn*: how the parent's
    server reaches the child (both default to how agentchat reaches them)."""
    opts = LinkOptions(_params(publisher_dsn), _params(back_dsn), passfile, allow_insecure, timeout)
    parent_info = _db.make_conninfo(parent_dsn)
    check_transport(_db.conninfo_params(parent_info), allow_insecure)
    converted = _convert_one_way(parent_info, _db.make_conninfo(child_dsn), progress)
    with _db.wrap_errors(), contextlib.ExitStack() as stack:
        progress("preflight", "checking both databases")
        parent_conn = stack.enter_context(_db.connect(parent_info))
        installer.install_into(parent_conn)
        parent = Node.of(parent_conn)
        child = _connect_child(
            stack, _db.make_conninfo(child_dsn), schema.embedding_dimension(parent_conn)
        )
        return _join(parent, child, opts, topology, progress, converted)


def _convert_one_way(parent_info: str, child_info: str, progress: Progress) -> str | None:
    """A one-way replica of the parent becomes a two-way spoke: its subscription, slot and role
    go first (it keeps every row it holds), and the new down link's copy, through its filter,
    brings what it lacks: the admission trigger skips the rows it has already. Returns the
    one-way subscription's name, or None when the child is no replica of the parent."""
    with _db.wrap_errors():
        try:
            child = _db.connect(child_info)
        except errors.DatabaseMissing:
            return None
        with child, _db.connection(parent_info) as parent:
            subs = _one_way_subscriptions(Node(child, "", ""))
            if len(subs) != 1:
                return None
            row = child.execute(queries["subscription"], (subs[0],)).fetchone()
            wanted = {"dbname": parent.info.dbname, "port": str(parent.info.port)}
            if row is None or not points_at(row[3], wanted):
                return None
    progress("convert", f"turning one-way subscription {subs[0]} into two-way links")
    removed = lifecycle.remove(child_info, name=subs[0], source_dsn=parent_info)
    if removed.warnings:
        raise errors.ReplicationError(
            f"could not remove the one-way subscription {subs[0]} cleanly:"
            f" {'; '.join(removed.warnings)}"
        )
    with _db.connection(child_info) as child:
        settings.delete(child, settings.HISTORY_FROM)
    return subs[0]


def _params(dsn: str | None) -> dict[str, str]:
    if not dsn:
        return {}
    return {k: str(v) for k, v in _conninfo.conninfo_to_dict(_db.make_conninfo(dsn)).items()}


def _join(
    parent: Node,
    child: Node,
    opts: LinkOptions,
    topology: Topology | None,
    progress: Progress,
    converted: str | None = None,
) -> LinkResult:
    if parent.conninfo == child.conninfo:
        raise errors.InvalidInput(f"{parent.label} cannot join itself")
    parent.number = nodes.number(parent.conn)
    registry = nodes.registry(parent.conn)
    result = LinkResult(nodes={}, converted=converted)
    refusals, rejoin = _refusals(parent, child, registry)
    if refusals:
        raise errors.ReplicationError(refusals[0].message, fix=refusals[0].fix)
    taken = {k: v for k, v in _taken(registry).items() if v != child.label}
    taken[parent.number] = parent.label
    _settle_number(child, taken, result, wrote=converted is None, parent=parent)
    result.nodes = {parent.label: parent.number, child.label: child.number}
    findings = [] if rejoin else _preflight(parent, child, new_slot=True)
    findings += [] if rejoin else _preflight(child, parent, new_slot=True)
    if findings:
        raise PreflightFailed(findings)

    mine = next((n for n in registry if n.number == parent.number), None)
    nodes.register_self(
        parent.conn, name=parent.label, conninfo=parent.conninfo,
        parent=mine.parent if mine else None,
    )  # fmt: skip
    nodes.register_self(child.conn, name=child.label, conninfo=child.conninfo, parent=parent.number)
    registry = [n for n in registry if n.number != child.number]
    registry.append(nodes.Node(child.number, child.label, child.conninfo, parent.number))
    if mine is None:
        registry.append(nodes.Node(parent.number, parent.label, parent.conninfo, None))
    parents = _tree_of(registry, parent.number)
    links = tree_links(parents)
    edges = _path_up(parents, parent.number)

    with _ancestors(parent, registry, edges) as conns:
        progress("filters", f"widening {len(edges)} links on the path to the root")
        result.widened = _refilter(conns, links, edges)
        runs: list[Run] = []
        try:
            for sender, receiver, back in ((parent, child, False), (child, parent, True)):
                name = link_name(sender.number, receiver.number)
                progress("link", f"{name}: {sender.label} -> {receiver.label}")
                run = _link_plan(sender, receiver, name, opts, back)
                run.progress = progress
                runs.append(run)
                _make_link(run, links[(sender.number, receiver.number)], result, opts.timeout)
        except BaseException:
            for run in reversed(runs):
                run.undo.run()
                result.warnings += run.undo.failures
            narrowed = tree_links({n: p for n, p in parents.items() if n != child.number})
            with contextlib.suppress(errors.AgentchatError):
                _refilter(conns, narrowed, edges)
            raise
    result.already = all(run.plan.already for run in runs)
    progress("install", "setting the trigger policy on both")
    for node in (child, parent):
        installer.install_into(node.conn)
    if topology is not None:
        progress("topology", f"recording the link in {topology.path}")
        topology.record_link(
            parent.conninfo, child.conninfo, link_name(parent.number, child.number)
        )
    return result


def _refusals(
    parent: Node, child: Node, registry: Sequence[nodes.Node]
) -> tuple[list[Finding], bool]:
    """Why *child* cannot join below *parent* (each with its fix), and whether the two are
    linked already (a re-run)."""
    found = [f for f in map(_version_finding, (parent, child)) if f is not None]
    for node, what in ((parent, "parent"), (child, "new node")):
        if subs := _one_way_subscriptions(node):
            found.append(Finding(
                "one_way_replica", False,
                f"the {what} {node.label} is a one-way replica (subscription {', '.join(subs)})",
                "remove that subscription first: agentchat replicate remove --target ...",
            ))  # fmt: skip
    child_links = _links_of(child)
    rejoin = any(parent.number in pair for pair in child_links)
    if child_links and not rejoin:
        found.append(Finding(
            "linked_elsewhere", False,
            f"{child.label} is linked to other nodes already ({_names(child_links)})",
            "join a database that has no links yet, or remove its links first"
            " (agentchat replicate remove --target ...)",
        ))  # fmt: skip
    below = {n.number for n in registry if n.parent == parent.number}
    mine = next((n for n in registry if n.number == parent.number), None)
    neighbours = {a if b == parent.number else b for a, b in _links_of(parent)}
    strangers = sorted(neighbours - below - {mine.parent if mine else None} - {child.number})
    if strangers and not rejoin:
        found.append(Finding(
            "mesh_member", False,
            f"{parent.label} is a mesh member (linked to nodes {', '.join(map(str, strangers))}):"
            " a mesh does not relay, so a node below it would talk to it alone",
            "join the new database to the mesh instead: agentchat mesh DSN... (all members)",
        ))  # fmt: skip
    return found, rejoin


def check_join(parent_dsn: str, child_dsn: str, *, allow_insecure: bool = False) -> list[Finding]:
    """``replicate check`` for a two-way add: every reason it would stop, each with its fix;
    changes nothing. A missing child database is judged by its server (add creates it)."""
    parent_info = _db.make_conninfo(parent_dsn)
    child_info = _db.make_conninfo(child_dsn)
    found: list[Finding] = []
    try:
        check_transport(_db.conninfo_params(parent_info), allow_insecure)
    except errors.InvalidInput as exc:
        found.append(Finding("transport", False, exc.message, exc.fix))
    with _db.wrap_errors(), contextlib.ExitStack() as stack:
        parent = Node.of(stack.enter_context(_db.connect(parent_info)))
        try:
            child = Node.of(stack.enter_context(_db.connect(child_info)))
            missing = False
        except errors.DatabaseMissing:
            server = stack.enter_context(installer.maintenance_connection(child_info))
            child, missing = Node(server, child_info, _db.describe(child_info)), True
        if schema.schema_version(parent.conn) < installer.NODE_SCHEMA:  # add upgrades it first
            return found + _preflight(parent, child, new_slot=True)
        parent.number = nodes.number(parent.conn)
        registry = nodes.registry(parent.conn)
        if not missing:
            refusals, rejoin = _refusals(parent, child, registry)
            found += refusals
            if rejoin:
                return found
            child.number = nodes.number(child.conn)
            holder = _taken(registry).get(child.number)
            if child.number == parent.number:
                holder = parent.label
            if holder not in (None, child.label) and nodes.own_rows(child.conn, child.number):
                found.append(Finding(
                    "node_number", False,
                    f"{child.label} wrote messages as node {child.number}, which is {holder}'s"
                    " number: their ids would collide",
                    "join it to a topology where its number is free",
                ))  # fmt: skip
        found += _preflight(parent, child, new_slot=True)
        if not missing:
            found += _preflight(child, parent, new_slot=True)
    return found


def _names(pairs: Sequence[tuple[int, int]]) -> str:
    return ", ".join(link_name(a, b) for a, b in pairs)


# -- leave ----------------------------------------------------------------------------------


def leave(dsn: str, *, topology: Topology | None = None, progress: Progress = quiet) -> LinkResult:
    """Take a node out of its tree or mesh: its registry row first (it travels everywhere),
    then every link to and from it (subscriptions, slots, roles, publications), then the
    filters on the path to the root narrow. A node with links below it is refused: they go
    first."""
    info = _db.make_conninfo(dsn)
    with _db.wrap_errors(), contextlib.ExitStack() as stack:
        node = Node.of(stack.enter_context(_db.connect(info)))
        node.number = nodes.number(node.conn)
        registry = nodes.registry(node.conn)
        pairs = _links_of(node)
        result = LinkResult(nodes={node.label: node.number})
        if not pairs:
            return result
        mine = next((n for n in registry if n.number == node.number), None)
        up = mine.parent if mine else None
        linked = {a for a, _ in pairs} | {b for _, b in pairs}
        below = sorted(n.number for n in registry if n.parent == node.number and n.number in linked)
        if below:
            what = "relays for" if up is not None else "is the hub of"
            raise errors.ReplicationError(
                f"{node.label} {what} nodes {', '.join(map(str, below))}: they would be cut off",
                fix="remove the nodes below it first (agentchat replicate remove --target ...)",
            )
        parents = _tree_of(registry, node.number) if up is not None else {}
        edges = _path_up(parents, up) if up is not None else []
        neighbours = sorted(({a for a, b in pairs} | {b for a, b in pairs}) - {node.number})
        reach = [(node.number, n) for n in neighbours] + edges
        with _ancestors(node, registry, reach) as conns:
            progress("registry", f"forgetting node {node.number} everywhere")
            for number in neighbours:
                conns[number].execute(queries["forget_node"], (node.number,))
                conns[number].execute(queries["forget_node_agents"], (node.number,))
            # both halves of every link to a neighbour, even a half whose other half is gone
            both_ways = sorted(
                {(node.number, n) for n in neighbours} | {(n, node.number) for n in neighbours}
            )
            for sender, receiver in both_ways:
                name = link_name(sender, receiver)
                progress("link", f"dropping {name}")
                result.removed += _drop_link(conns[sender], conns[receiver], name)
            if edges:
                narrowed = tree_links({n: p for n, p in parents.items() if n != node.number})
                result.widened = _refilter(conns, narrowed, edges)
        nodes.register_self(node.conn, name=node.label, conninfo=node.conninfo, parent=None)
        node.conn.execute(queries["forget_other_nodes"], (node.number,))
        node.conn.execute(queries["forget_other_nodes_agents"], (node.number,))
        installer.install_into(node.conn)
    if topology is not None:
        topology.forget_link(node.conninfo)
    return result


# -- mesh -----------------------------------------------------------------------------------


def mesh(
    dsns: Sequence[str],
    *,
    passfile: Path | None = None,
    allow_insecure: bool = False,
    timeout: float = 300.0,
    topology: Topology | None = None,
    progress: Progress = quiet,
) -> LinkResult:
    """Link every database of *dsns* to every other directly (each publishes its own rows to
    each): created and installed if missing, renumbered if its number is taken and it wrote
    nothing. Run again with one more DSN to add a member."""
    if len(dsns) < 2:
        raise errors.InvalidInput("a mesh needs at least two databases")
    opts = LinkOptions({}, {}, passfile, allow_insecure, timeout)
    with _db.wrap_errors(), contextlib.ExitStack() as stack:
        progress("preflight", f"checking {len(dsns)} databases")
        members: list[Node] = []
        dimension: int | None = None
        for dsn in dsns:
            info = _db.make_conninfo(dsn)
            check_transport(_db.conninfo_params(info), allow_insecure)
            node = _connect_child(stack, info, dimension)
            dimension = dimension or schema.embedding_dimension(node.conn)
            if any(node.conninfo == m.conninfo for m in members):
                raise errors.InvalidInput(f"{node.label} is named twice")
            members.append(node)
        for node in members:
            if (old := _version_finding(node)) is not None:
                raise errors.ReplicationError(old.message, fix=old.fix)
            if _one_way_subscriptions(node):
                raise errors.ReplicationError(
                    f"{node.label} is a one-way replica", fix="remove its subscription first"
                )
        result = LinkResult(nodes={})
        taken: dict[int, str] = {}
        for node in members:
            _settle_number(node, taken, result)
            taken[node.number] = node.label
            result.nodes[node.label] = node.number
        findings: list[Finding] = []
        for a in members:
            for b in members:
                if a is not b and not _has_link(b, link_name(a.number, b.number)):
                    findings += _preflight(a, b, new_slot=True)
        if findings:
            raise PreflightFailed(findings)
        for node in members:
            nodes.register_self(node.conn, name=node.label, conninfo=node.conninfo, parent=None)
        runs: list[Run] = []
        try:
            for a in members:
                for b in members:
                    if a is b:
                        continue
                    name = link_name(a.number, b.number)
                    progress("link", f"{name}: {a.label} -> {b.label}")
                    run = _link_plan(a, b, name, opts, back=False)
                    run.progress = progress
                    runs.append(run)
                    link = Link(str(a.number), str(b.number), frozenset({a.number}), down=False)
                    _make_link(run, link, result, opts.timeout)
        except BaseException:
            for run in reversed(runs):
                run.undo.run()
                result.warnings += run.undo.failures
            raise
        result.already = all(run.plan.already for run in runs)
        for node in members:
            installer.install_into(node.conn)
    if topology is not None:
        topology.record_mesh([m.conninfo for m in members])
    return result


def has_links(dsn: str) -> bool:
    """Whether *dsn*'s database has two-way links (``replicate remove`` then leaves)."""
    with _db.connection(_db.make_conninfo(dsn)) as conn:
        return bool(_links_of(Node(conn, "", "")))


def _has_link(node: Node, name: str) -> bool:
    return node.conn.execute(queries["subscription"], (name,)).fetchone() is not None
