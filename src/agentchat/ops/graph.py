"""The graph of two-way links (issue 13): what each node says about its links, and its judgement.

A link X -> Y is a publication on X and a subscription on Y, both named ``agent_chat_<x>_to_<y>``
(x, y: node numbers), and a slot on X. Its publication's row filter on ``agent_chat.id`` says
which nodes' rows it carries (docs/design/two-way.md): a *down* link every node's but a few
(legacy rows too), an *up* link only a few nodes'. :func:`read` gathers one node's
:class:`NodeGraph` over its connection (read-only); :func:`judge_graph` judges all of them,
purely, into :class:`~agentchat.ops.judge.Check` rows:

- ``link``: each link complete (publication, subscription, slot), or half of one missing (a link
  whose other end was not looked at is judged only as far as it was seen); ``link_filter``, a
  filter agentchat does not write; ``link_origin``, a subscription without ``origin = any``;
  ``link_name``, a link named for another number than its database's;
- ``loop``: two inbound links of one node carrying the same node's rows, or a link carrying the
  receiver's own rows back to it;
- ``node_number``: two databases with one node number, or the registry holding one number under
  two names; ``registry``: a registered node that no link joins;
- ``delivery``: when every node of the graph was looked at, whether every node's rows reach
  each node exactly once along the links (a flood over the filters, as the server runs them).

Only databases with links take part: a plain database looked at alongside is in no topology.

The filter is read from ``pg_publication_tables.rowfilter``, the server's normalised text, the
same on PostgreSQL 16 and 18::

    >>> parse_filter("((id < '4503599627370496'::bigint) OR (((id >> 12) & (1023)::bigint)"
    ...              " <> ALL ('{2,3}'::smallint[])))")
    Carry(nodes=frozenset({2, 3}), down=True)

:func:`parse_filter` reads only what decides the link's meaning, each part on its own (the
legacy bound's comparison, the node bits' comparison, the array of node numbers), checks that
they agree with each other, and returns None for anything else (reported, never guessed).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agentchat import _db, errors, settings
from agentchat.ops.judge import Check, Verdict
from agentchat.replication.links import LEGACY_LIMIT, MAX_NODE
from agentchat.sql import queries

#: a link's publication and subscription name
LINK_NAME = re.compile(r"^agent_chat_(\d+)_to_(\d+)$")
#: the ``agentchat_settings`` key of this database's node number (migration 0006)
NODE_SETTING = "node"
#: every node number a row can carry; 0 stands for the legacy rows (ids below 2^52)
ALL_NODES = frozenset(range(MAX_NODE + 1))
#: node numbers named one by one in a detail line, at most
SHOWN = 8
#: the repair of a link that lost a part (remove drops what is left of its links, add makes them)
REMAKE = (
    "take the node out and put it back: agentchat replicate remove --target DSN, then"
    " agentchat replicate add PARENT DSN (a mesh member: agentchat mesh with every member)"
)

_LEGACY = re.compile(r"\bid\"?\s*\)?\s*(<|>=)\s*\(?\s*'?" + str(LEGACY_LIMIT) + r"\b")
_BITS = re.compile(r"\bid\"?\s*>>\s*'?12\b.*?&.*?\b1023\b")
_NODES = re.compile(r"(<>|=)\s*(ALL|ANY)\s*\(\s*'\{([0-9,\s]*)\}'", re.IGNORECASE)


def link_ends(name: str) -> tuple[int, int] | None:
    """``(sender, receiver)`` node numbers of a link's name, None for another name.

    >>> link_ends("agent_chat_1_to_12")
    (1, 12)
    """
    match = LINK_NAME.match(name)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class Carry:
    """What a link carries, as :class:`agentchat.replication.links.Link` plans it: *down*, every
    node's rows but those of :attr:`nodes` (and the legacy rows); up, only those of
    :attr:`nodes`. Node 0 is the legacy rows."""

    nodes: frozenset[int]
    down: bool

    def carries(self, node: int) -> bool:
        if self.down:
            return node == 0 or node not in self.nodes
        return node != 0 and node in self.nodes

    @property
    def carried(self) -> frozenset[int]:
        """Every node number (0: legacy rows) whose rows pass."""
        return ALL_NODES - self.nodes if self.down else self.nodes - {0}

    def describe(self) -> str:
        """``every node's rows but 2's (and legacy rows)``, ``the rows of node 2``."""
        if self.down:
            return f"every node's rows but {describe_nodes(self.nodes)}'s, legacy rows too"
        return f"the rows of {describe_nodes(self.nodes)}"


def describe_nodes(nodes: Iterable[int]) -> str:
    """``node 2``, ``nodes 2, 3``, ``legacy rows and node 2``; long sets as ``every node but
    ...``. (0 stands for the legacy rows.)

    >>> describe_nodes({0, 3})
    'legacy rows and node 3'
    """
    found = set(nodes)
    if len(found) > MAX_NODE // 2:
        rest = ALL_NODES - found
        but = f" but {describe_nodes(rest)}" if rest else ""
        return f"every node{but}"
    legacy = 0 in found
    numbers = sorted(found - {0})
    shown = ", ".join(str(n) for n in numbers[:SHOWN]) + (" ..." if len(numbers) > SHOWN else "")
    text = f"node{'s' if len(numbers) > 1 else ''} {shown}" if numbers else ""
    if legacy:
        return f"legacy rows and {text}" if text else "legacy rows"
    return text or "no node"


def parse_filter(text: str | None) -> Carry | None:
    """The :class:`Carry` of a normalised ``agent_chat`` row filter, None when it is not one of
    agentchat's two shapes (down: ``id < 2^52 OR node bits <> ALL (array)``; up: ``id >= 2^52
    AND node bits = ANY (array)``). No filter at all carries everything (a down link excluding
    nobody).

    >>> parse_filter("((id >= '4503599627370496'::bigint) AND (((id >> 12) & (1023)::bigint)"
    ...              " = ANY ('{5}'::smallint[])))")
    Carry(nodes=frozenset({5}), down=False)
    """
    if text is None:
        return Carry(frozenset(), down=True)
    legacy, bits = _LEGACY.findall(text), _BITS.search(text)
    found = _NODES.findall(text)
    if len(legacy) != 1 or bits is None or len(found) != 1:
        return None
    comparison, (operator, quantifier, listed) = legacy[0], found[0]
    down = comparison == "<"
    if down != (operator == "<>" and quantifier.upper() == "ALL"):
        return None
    if not down and (operator != "=" or quantifier.upper() != "ANY"):
        return None
    if re.search(r"\bOR\b" if not down else r"\bAND\b", text, re.IGNORECASE):
        return None  # up filters join with AND, down filters with OR, and nothing else
    numbers = [int(n) for n in listed.replace(" ", "").split(",") if n]
    if not all(1 <= n <= MAX_NODE for n in numbers):
        return None
    return Carry(frozenset(numbers), down)


# -- facts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryRow:
    """One row of ``agentchat_nodes`` as a node holds it."""

    number: int
    name: str
    conninfo: str | None = None
    parent: int | None = None


@dataclass(frozen=True)
class LinkPublication:
    """A link's publication on its sender."""

    name: str
    #: agent_chat's row filter as the server shows it (None: unfiltered)
    filter: str | None
    tables: tuple[str, ...] = ("agent_chat", "agentchat_nodes", "memory_embeddings")

    @property
    def ends(self) -> tuple[int, int]:
        ends = link_ends(self.name)
        assert ends is not None
        return ends

    @property
    def carry(self) -> Carry | None:
        """What it carries; None: a filter agentchat does not write, or no agent_chat at all."""
        return parse_filter(self.filter) if "agent_chat" in self.tables else None


@dataclass(frozen=True)
class LinkSubscription:
    """A link's subscription on its receiver."""

    name: str
    enabled: bool = True
    slot: str | None = None
    worker_running: bool = True
    apply_errors: int = 0
    sync_errors: int = 0
    #: ``any`` or ``none`` (PostgreSQL 16+); None: not known
    origin: str | None = "any"

    @property
    def ends(self) -> tuple[int, int]:
        ends = link_ends(self.name)
        assert ends is not None
        return ends


@dataclass(frozen=True)
class NodeGraph:
    """One database's part of the graph: its node number, its copy of the registry, its link
    publications and subscriptions, and its slots (name: active)."""

    database: str
    #: the ``node`` setting (None before schema version 6, or unset)
    number: int | None = None
    #: its copy of ``agentchat_nodes`` (empty before schema version 6)
    registry: tuple[RegistryRow, ...] = ()
    publications: tuple[LinkPublication, ...] = ()
    subscriptions: tuple[LinkSubscription, ...] = ()
    slots: Mapping[str, bool] = field(default_factory=dict)
    #: which database this is, however reached (the cluster's system identifier and the
    #: database's oid); None: unknown
    identity: str | None = None

    @property
    def has_links(self) -> bool:
        return bool(self.publications or self.subscriptions)

    @property
    def named_number(self) -> int | None:
        """The number its links' names give it (senders of its publications, receivers of its
        subscriptions), when they agree; the setting stands in for it before schema 6."""
        named = {p.ends[0] for p in self.publications} | {s.ends[1] for s in self.subscriptions}
        return named.pop() if len(named) == 1 else None

    @property
    def node(self) -> int | None:
        """Its node number: the setting, else what its links' names say."""
        return self.number if self.number is not None else self.named_number

    def as_dict(self) -> dict[str, object]:
        return {
            "database": self.database,
            "node": self.node,
            "node_setting": self.number,
            "publications": [
                {
                    "name": p.name,
                    "filter": p.filter,
                    "carries": _carry_dict(p.carry),
                    "tables": list(p.tables),
                }
                for p in self.publications
            ],
            "subscriptions": [
                {
                    "name": s.name,
                    "enabled": s.enabled,
                    "slot": s.slot,
                    "worker_running": s.worker_running,
                    "apply_error_count": s.apply_errors,
                    "sync_error_count": s.sync_errors,
                    "origin": s.origin,
                }
                for s in self.subscriptions
            ],
            "registry": [
                {"node": r.number, "name": r.name, "parent": r.parent} for r in self.registry
            ],
        }


def _carry_dict(carry: Carry | None) -> dict[str, object] | None:
    if carry is None:
        return None
    return {"direction": "down" if carry.down else "up", "nodes": sorted(carry.nodes)}


def _number(conn: _db.Connection) -> int | None:
    """The ``node`` setting; None before schema 6, or when this role may not read it."""
    try:
        raw = settings.get(conn, NODE_SETTING)
    except errors.DatabaseError:  # no privilege on agentchat_settings: judged from the names
        return None
    return int(raw) if raw is not None and raw.strip().isdigit() else None


def _registry(conn: _db.Connection) -> tuple[RegistryRow, ...]:
    """This database's copy of the registry; empty before schema 6, or when unreadable."""
    try:
        with _db.wrap_errors(), conn.transaction():
            if conn.execute(queries["graph_has_registry"]).fetchone() != (True,):
                return ()
            return tuple(
                RegistryRow(int(n), str(name), conninfo, None if up is None else int(up))
                for n, name, conninfo, up in conn.execute(queries["graph_registry"])
            )
    except errors.DatabaseError:  # no privilege on agentchat_nodes: judged without it
        return ()


def read(conn: _db.Connection, database: str) -> NodeGraph:
    """Read one node's :class:`NodeGraph` (nothing is changed). Before schema version 6 there
    is no node setting and no registry: the number then comes from the links' names."""
    number, registry = _number(conn), _registry(conn)
    with _db.wrap_errors():
        pubs = tuple(
            LinkPublication(str(name), rowfilter, tuple(tables))
            for name, rowfilter, tables in conn.execute(queries["graph_link_publications"])
        )
        origins: dict[str, str] = {}
        if conn.info.server_version >= 160000:
            origins = {
                str(n): str(o) for n, o in conn.execute(queries["graph_subscription_origins"])
            }
        subs = tuple(
            LinkSubscription(
                str(name),
                bool(enabled),
                slot,
                bool(running),
                int(apply_e),
                int(sync_e),
                origins.get(str(name)),
            )
            for name, enabled, slot, _pubs, running, apply_e, sync_e in conn.execute(
                queries["graph_link_subscriptions"]
            )
        )
        slots = {str(name): bool(active) for name, active in conn.execute(queries["graph_slots"])}
        row = conn.execute(queries["graph_identity"]).fetchone()
    identity = str(row[0]) if row and row[0] else None
    return NodeGraph(database, number, registry, pubs, subs, slots, identity)


# -- judgement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    """One link as found across the nodes: either half may be missing (None)."""

    name: str
    sender: int
    receiver: int
    publication: tuple[NodeGraph, LinkPublication] | None
    subscription: tuple[NodeGraph, LinkSubscription] | None

    @property
    def carry(self) -> Carry | None:
        return self.publication[1].carry if self.publication else None


def _links(nodes: Sequence[NodeGraph]) -> list[_Link]:
    pubs: dict[str, tuple[NodeGraph, LinkPublication]] = {}
    subs: dict[str, tuple[NodeGraph, LinkSubscription]] = {}
    for node in nodes:
        for pub in node.publications:
            pubs.setdefault(pub.name, (node, pub))
        for sub in node.subscriptions:
            subs.setdefault(sub.name, (node, sub))
    found = []
    for name in sorted(set(pubs) | set(subs), key=lambda n: link_ends(n) or (0, 0)):
        sender, receiver = link_ends(name) or (0, 0)
        found.append(_Link(name, sender, receiver, pubs.get(name), subs.get(name)))
    return found


def judge_graph(nodes: Sequence[NodeGraph]) -> list[Check]:
    """Every finding about the graph of these nodes (see the module's docstring), with its fix.
    Links whose other end was not looked at are judged only as far as what was seen allows. A
    database named twice (two DSNs) is judged once."""
    seen: set[str] = set()
    distinct = []
    for node in nodes:
        if node.identity is None or node.identity not in seen:
            distinct.append(node)
        if node.identity is not None:
            seen.add(node.identity)
    nodes = distinct
    links = _links(nodes)
    checks = _judge_numbers(nodes)
    checks += _judge_registry(nodes, links)
    for link in links:
        checks += _judge_link(nodes, link)
    checks += _judge_loops(nodes, links)
    checks += _judge_delivery(nodes, links)
    return checks


def free_number(taken: Iterable[int]) -> int:
    """The smallest node number not in *taken*."""
    used = set(taken)
    return next(n for n in range(1, MAX_NODE + 1) if n not in used)


def _by_number(nodes: Sequence[NodeGraph]) -> dict[int, list[NodeGraph]]:
    found: dict[int, list[NodeGraph]] = defaultdict(list)
    for node in nodes:
        if node.node is not None:
            found[node.node].append(node)
    return found


def _taken(nodes: Sequence[NodeGraph]) -> set[int]:
    return {n.node for n in nodes if n.node is not None} | {
        r.number for n in nodes for r in n.registry
    }


def _judge_numbers(nodes: Sequence[NodeGraph]) -> list[Check]:
    checks = []
    free = free_number(_taken(nodes))
    # a database without links (a plain one looked at alongside) is in no topology yet: joining
    # gives it a free number
    for number, holders in sorted(_by_number([n for n in nodes if n.has_links]).items()):
        for node in holders:
            others = [h.database for h in holders if h is not node]
            if others:
                checks.append(
                    Check(
                        node.database,
                        "node_number",
                        Verdict.BROKEN,
                        f"node number {number} is also that of {', '.join(others)}: the ids the two"
                        " write can collide, and links named for node"
                        f" {number} cannot tell them apart",
                        _collision_fix(node, [h for h in holders if h is not node], free),
                        subject=str(number),
                    )
                )
            elif node.has_links:
                how = "" if node.number is not None else " (from its links' names: no node setting)"
                checks.append(
                    Check(
                        node.database,
                        "node_number",
                        Verdict.OK,
                        f"node {number}{how}",
                        subject=str(number),
                    )
                )
        for node in holders:
            checks += _judge_names(node)
    return checks


def _number_back(node: NodeGraph) -> str | None:
    """How to give a node back the number its links are named for, when it has another."""
    named = node.named_number
    if node.number is None or named is None or named == node.number:
        return None
    update = f"UPDATE agentchat_settings SET value = '{named}' WHERE key = 'node';"  # noqa: S608
    return (
        f"its links are named for node {named}: give it that number back, on it: {update}"
        f" (messages written here since carry node {node.number} and stayed here: send them"
        " again)"
    )


def _collision_fix(node: NodeGraph, others: Sequence[NodeGraph], free: int) -> str:
    back = _number_back(node)
    if back is not None:
        return back
    if node.named_number == node.number and all(_number_back(o) for o in others):
        return (
            "this database has the number its links are named for: change the other,"
            f" {_list(others)}"
        )
    return (
        f"take one of them out (agentchat replicate remove) and add it again: add gives it a"
        f" free number ({free} is free)"
    )


def _list(nodes: Sequence[NodeGraph]) -> str:
    return ", ".join(n.database for n in nodes)


def _judge_names(node: NodeGraph) -> list[Check]:
    """A node's links whose names say another node number than the node's (one check)."""
    if node.number is None:
        return []
    wrong = [(p.name, p.ends[0]) for p in node.publications if p.ends[0] != node.number]
    wrong += [(s.name, s.ends[1]) for s in node.subscriptions if s.ends[1] != node.number]
    if not wrong:
        return []
    named = sorted({n for _, n in wrong})
    names = ", ".join(name for name, _ in wrong)
    return [
        Check(
            node.database,
            "link_name",
            Verdict.BROKEN,
            f"{'its links' if len(wrong) > 1 else 'its link'} {names}"
            f" {'are' if len(wrong) > 1 else 'is'} named for {describe_nodes(named)}, but this"
            f" database is node {node.number}: the number changed after the links were made, or"
            " the links belong elsewhere",
            _number_back(node)
            or "agentchat replicate remove this node, then add it again (its links are made anew"
            " under its number)",
            subject=names,
        )
    ]


def _judge_registry(nodes: Sequence[NodeGraph], links: Sequence[_Link]) -> list[Check]:
    """One number under two names; a registered node no link joins."""
    checks: list[Check] = []
    rows: dict[int, dict[str, RegistryRow]] = defaultdict(dict)
    holders: dict[tuple[int, str], list[NodeGraph]] = defaultdict(list)
    for node in nodes:
        if not node.has_links:  # its registry is its own, replicated nowhere
            continue
        for row in node.registry:
            rows[row.number].setdefault(row.name, row)
            holders[(row.number, row.name)].append(node)
    names = {n.database: n for n in nodes}
    free = free_number(_taken(nodes))
    for number, named in sorted(rows.items()):
        if len(named) < 2:
            continue
        first = holders[(number, min(named))][:1]
        where = [names[n] for n in sorted(named) if n in names] or first
        listed = " and ".join(sorted(named))
        for node in where:
            checks.append(
                Check(
                    node.database,
                    "node_number",
                    Verdict.BROKEN,
                    f"the node registry holds node {number} twice: {listed}",
                    f"if one of them is gone: {_forget(number, '<its name>')} on each database;"
                    " otherwise take one out"
                    f" (agentchat replicate remove) and add it again ({free} is free)",
                    subject=f"registry:{number}",
                )
            )
    mentioned = {end for link in links for end in (link.sender, link.receiver)}
    by_number = _by_number(nodes)
    for number, named in sorted(rows.items()):
        if number in mentioned:
            continue
        for name, row in sorted(named.items()):
            held = holders[(number, name)]
            if all(h.node == number and not h.has_links for h in held):
                continue  # a database's own row, replicated nowhere: a plain node
            parent = by_number.get(row.parent) if row.parent is not None else None
            if row.parent is not None and not parent:
                continue  # its parent was not looked at: its links are not ours to see
            at = parent[0] if parent else held[0]
            checks.append(
                Check(
                    at.database,
                    "registry",
                    Verdict.BROKEN if parent else Verdict.DEGRADED,
                    f"the node registry lists node {number} ({name})"
                    + (f", a child of node {row.parent}," if parent else "")
                    + " but no link joins it: it neither sends nor receives",
                    f"join it again (agentchat replicate add <its parent> <it>, or agentchat mesh"
                    f" ...); if it is gone: {_forget(number)} on each database",
                    subject=str(number),
                )
            )
    return checks


def _forget(number: int, name: str | None = None) -> str:
    """How to take a node's stale row out of the registry (advice, not run)."""
    which = f" AND name = '{name}'" if name else ""
    return f"DELETE FROM agentchat_nodes WHERE node = {number}{which};"  # noqa: S608 (advice)


def _judge_link(nodes: Sequence[NodeGraph], link: _Link) -> list[Check]:
    by_number = _by_number(nodes)
    name = link.name
    if link.publication and link.subscription:
        (sender, pub), (receiver, sub) = link.publication, link.subscription
        checks = _judge_filter(sender, pub)
        arrow = f"from node {link.sender}, {sender.database}"
        if sub.slot is None:
            return [
                *checks,
                Check(
                    receiver.database,
                    "link",
                    Verdict.BROKEN,
                    f"link {name} ({arrow}): the subscription has no slot: nothing arrives",
                    REMAKE,
                    subject=name,
                ),
            ]
        if sub.slot not in sender.slots:
            return [
                *checks,
                Check(
                    receiver.database,
                    "link",
                    Verdict.BROKEN,
                    f"link {name} ({arrow}): its slot {sub.slot} is gone from {sender.database}:"
                    " the subscription cannot stream, and what was written meanwhile is lost to it",
                    REMAKE,
                    subject=name,
                ),
            ]
        state = "active" if sender.slots[sub.slot] else "inactive"
        carry = pub.carry
        what = carry.describe() if carry else "rows its filter chooses"
        checks.append(
            Check(
                receiver.database,
                "link",
                Verdict.OK,
                f"link {name} ({arrow}) carries {what}; slot {sub.slot} {state}",
                subject=name,
            )
        )
        if sub.origin is not None and sub.origin != "any":
            checks.append(
                Check(
                    receiver.database,
                    "link_origin",
                    Verdict.DEGRADED,
                    f"subscription {name} has origin = {sub.origin}: it drops every row its sender"
                    " received from another node (a relay's rows stop there)",
                    f"ALTER SUBSCRIPTION {name} SET (origin = any) (the filters prevent loops)",
                    subject=name,
                )
            )
        return checks
    if link.publication:
        sender, pub = link.publication
        receivers = by_number.get(link.receiver, [])
        checks = _judge_filter(sender, pub)
        if not receivers:
            return checks  # the receiver was not looked at
        return [
            *checks,
            *(
                Check(
                    receiver.database,
                    "link",
                    Verdict.BROKEN,
                    f"missing link: node {link.sender} ({sender.database}) publishes {name} for"
                    " this node, but this database does not subscribe to it: nothing arrives"
                    " from there",
                    f"{_leftover(sender, name)}; then {REMAKE} (if this node left for good, the"
                    " first step is the whole repair)",
                    subject=name,
                )
                for receiver in receivers
            ),
        ]
    assert link.subscription is not None
    receiver, sub = link.subscription
    senders = by_number.get(link.sender, [])
    return [
        Check(
            sender.database,
            "link",
            Verdict.BROKEN,
            f"missing link: node {link.receiver} ({receiver.database}) subscribes to {name}, but"
            f" this database (node {link.sender}) has no such publication: nothing written"
            " here reaches it that way",
            f"first, on node {link.receiver}: DROP SUBSCRIPTION {name}; then {REMAKE} (if the"
            " link is gone for good, the first step is the whole repair)",
            subject=name,
        )
        for sender in senders
    ]


def _leftover(sender: NodeGraph, name: str) -> str:
    """What is left of a half link on its sender, to drop first: its slot, if the subscription let
    go of it (named after the link, not in use), and its publication (a parent still publishing to
    a node looks linked to it, and adding the node again is refused)."""
    slots = [s for s, on in sorted(sender.slots.items()) if s.startswith(f"{name}_") and not on]
    drops = "".join(f"SELECT pg_drop_replication_slot('{s}'); " for s in slots)
    return f"first, on node {name.split('_')[2]}: {drops}DROP PUBLICATION {name}"


def _judge_filter(sender: NodeGraph, pub: LinkPublication) -> list[Check]:
    if pub.carry is not None:
        return []
    if "agent_chat" not in pub.tables:
        detail = f"publication {pub.name} does not carry agent_chat: no message crosses it"
    else:
        detail = (
            f"publication {pub.name}'s filter is not one agentchat writes ({pub.filter}): what"
            " it carries cannot be judged"
        )
    return [
        Check(
            sender.database,
            "link_filter",
            Verdict.DEGRADED,
            detail,
            "agentchat replicate add writes the link's filter again",
            subject=pub.name,
        )
    ]


def _judge_loops(nodes: Sequence[NodeGraph], links: Sequence[_Link]) -> list[Check]:
    """Per receiver: a link carrying its own rows back, two inbound links carrying the same."""
    checks: list[Check] = []
    parents = _parents(nodes)
    for node in nodes:
        number = node.node
        inbound = [
            (link, link.carry)
            for link in links
            if link.subscription and link.subscription[0] is node and link.carry is not None
        ]
        for link, carry in inbound:
            assert link.publication is not None
            if number is not None and carry.carries(number):
                checks.append(
                    Check(
                        node.database,
                        "loop",
                        Verdict.BROKEN,
                        f"link {link.name} from {link.publication[0].database} carries this node's"
                        f" own rows (node {number}) back to it: each message written here comes"
                        " back (skipped as a copy, or stopping the link when they differ)",
                        _echo_fix(node, link, number),
                        subject=link.name,
                    )
                )
        for i, (first, one) in enumerate(inbound):
            for second, other in inbound[i + 1 :]:
                both = one.carried & other.carried - ({number} if number is not None else set())
                if not both:
                    continue
                checks.append(
                    Check(
                        node.database,
                        "loop",
                        Verdict.BROKEN,
                        f"links {first.name} and {second.name} both carry the rows of"
                        f" {describe_nodes(both)}: those messages arrive here twice (the second"
                        " copy is skipped, or stops its link when the two differ)",
                        _overlap_fix(node, [first, second], parents),
                        subject=f"{first.name},{second.name}",
                    )
                )
    return checks


def _echo_fix(node: NodeGraph, link: _Link, number: int) -> str:
    back = _number_back(node)
    if back is not None:
        return f"this node's number changed, not the filter: {back}"
    sender = link.publication[0].database if link.publication else f"node {link.sender}"
    return (
        f"its filter must leave out node {number}: agentchat replicate add writes the links'"
        f" filters again (by hand: ALTER PUBLICATION {link.name} SET TABLE ... WHERE ... on"
        f" {sender})"
    )


def _parents(nodes: Sequence[NodeGraph]) -> dict[int, int | None]:
    """``{node: its parent}`` by the registries of the nodes with links (None: a root or a
    mesh member)."""
    return {r.number: r.parent for n in nodes if n.has_links for r in n.registry}


def planned(sender: int, receiver: int, parents: Mapping[int, int | None]) -> bool | None:
    """Whether the registry has a link between these two: parent and child, or two mesh members
    (neither has a parent); None when either is not registered.

    >>> planned(2, 3, {1: None, 2: 1, 3: 1})   # two spokes of one hub
    False
    """
    if sender not in parents or receiver not in parents:
        return None
    up, down = parents[sender], parents[receiver]
    return up == receiver or down == sender or (up is None and down is None)


def _overlap_fix(node: NodeGraph, pair: Sequence[_Link], parents: Mapping[int, int | None]) -> str:
    extra = [link for link in pair if planned(link.sender, link.receiver, parents) is False]
    if len(extra) == 1:
        link = extra[0]
        return (
            f"{link.name} joins two nodes the registry does not link (neither is the other's"
            f" parent, nor are both mesh members): drop it, DROP SUBSCRIPTION {link.name} here,"
            f" then DROP PUBLICATION {link.name} on node {link.sender}"
        )
    return (
        "one of them must not carry them: drop a link made by hand (DROP SUBSCRIPTION here,"
        " DROP PUBLICATION on its sender); agentchat replicate add (or agentchat mesh) writes"
        " the filters of its own links again"
    )


def _judge_delivery(nodes: Sequence[NodeGraph], links: Sequence[_Link]) -> list[Check]:
    """When the whole graph is in view (every link complete and understood, every node it
    names looked at, each number once): flood each node's rows along the links that carry them
    and say, per node, whose rows never arrive or arrive more than once."""
    linked = [n for n in nodes if n.has_links]
    by_number = _by_number(linked)
    if not links or any(len(h) > 1 for h in by_number.values()):
        return []
    if any(n.node is None for n in linked):
        return []
    if any(link.carry is None or link.subscription is None for link in links):
        return []
    numbers = {n.node for n in linked if n.node is not None}
    if any(link.sender not in numbers or link.receiver not in numbers for link in links):
        return []
    arrivals = flood(
        numbers,
        [(link.sender, link.receiver, link.carry) for link in links if link.carry is not None],
    )
    checks = []
    for node in linked:
        assert node.node is not None
        counts = arrivals[node.node]
        others = sorted(numbers - {node.node})
        never = [o for o in others if counts.get(o, 0) == 0]
        twice = [o for o in others if counts.get(o, 0) > 1]
        if never:
            checks.append(
                Check(
                    node.database,
                    "delivery",
                    Verdict.BROKEN,
                    f"the rows of {describe_nodes(never)} never arrive here: no chain of links"
                    " carries them",
                    "agentchat replicate add (or agentchat mesh) writes the links and their"
                    " filters again",
                    subject=str(node.node),
                )
            )
        if twice:
            checks.append(
                Check(
                    node.database,
                    "delivery",
                    Verdict.BROKEN,
                    f"the rows of {describe_nodes(twice)} arrive here more than once (a loop)",
                    "see the loop checks: one of the links must not carry them",
                    subject=str(node.node),
                )
            )
        if not never and not twice:
            checks.append(
                Check(
                    node.database,
                    "delivery",
                    Verdict.OK,
                    f"the rows of {describe_nodes(others)} arrive here once each"
                    if others
                    else "no other node",
                    subject=str(node.node),
                )
            )
    return checks


def flood(
    numbers: Iterable[int], links: Sequence[tuple[int, int, Carry]]
) -> dict[int, dict[int, int]]:
    """``{receiver: {origin: arrivals}}``: each node's rows written once and passed on along
    every link that carries them, each node forwarding what it received once (a second copy is
    skipped by the admit trigger, so it goes no further).

    >>> down, up = Carry(frozenset({2}), True), Carry(frozenset({2}), False)
    >>> flood([1, 2], [(1, 2, down), (2, 1, up)])
    {1: {2: 1}, 2: {1: 1}}
    """
    arrivals: dict[int, dict[int, int]] = {n: {} for n in numbers}
    for origin in list(arrivals):
        have, frontier = {origin}, [origin]
        while frontier:
            at = frontier.pop()
            for sender, receiver, carry in links:
                if sender != at or not carry.carries(origin):
                    continue
                got = arrivals.setdefault(receiver, {})
                got[origin] = got.get(origin, 0) + 1
                if receiver not in have:
                    have.add(receiver)
                    frontier.append(receiver)
    return arrivals
