"""status: every database gathered and judged into a :class:`Report`.

The report's verdict is the exit code of status and doctor (0 ok, 1 degraded, 2 broken), so
cron and monitoring can use it; ``as_dict`` is what ``--format json`` prints.

    report = status(["host=db1 dbname=nova_memory", "host=db2 dbname=graybeard_memory"])
    report.verdict            # Verdict.OK
    [c for c in report.checks if not c.ok]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentchat import _db, errors
from agentchat.ops.facts import DatabaseFacts, gather, settled_rows
from agentchat.ops.graph import NodeGraph, judge_graph
from agentchat.ops.judge import DEFAULT_WAL_THRESHOLD, Check, Verdict, judge, judge_topology
from agentchat.topology import Topology


@dataclass
class Report:
    databases: list[DatabaseFacts]
    checks: list[Check]
    #: each node's part of the graph of two-way links, when any node has links (else None)
    graph: list[NodeGraph] | None = None

    @property
    def verdict(self) -> Verdict:
        return max((c.verdict for c in self.checks), default=Verdict.OK)

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.name.lower(),
            "databases": [d.as_dict() for d in self.databases],
            "checks": [c.as_dict() for c in self.checks],
            **({} if self.graph is None else {"graph": [g.as_dict() for g in self.graph]}),
        }


@_db.wrap_exceptions
def status(
    conninfos: Sequence[str],
    *,
    wal_threshold: int = DEFAULT_WAL_THRESHOLD,
    topology: Topology | None = None,
) -> Report:
    """Gather and judge every database; with the *topology* file, also compare each replica's
    messages with the source's, and what the file lists with what the source feeds."""
    facts = [gather(c) for c in conninfos]
    if topology is not None and topology.source:
        _compare_rows(facts, topology.source)
    checks = [c for f in facts for c in judge(f, wal_threshold=wal_threshold)]
    nodes = linked_nodes(facts)
    if nodes is not None:
        checks += judge_graph(nodes)
    return Report(facts, checks + judge_topology(facts, topology), nodes)


def linked_nodes(all_facts: Sequence[DatabaseFacts]) -> list[NodeGraph] | None:
    """The graph's nodes (the reachable databases'), when any of them has a two-way link."""
    nodes = [f.graph for f in all_facts if f.reachable and f.graph is not None]
    return nodes if any(n.has_links for n in nodes) else None


def _compare_rows(all_facts: Sequence[DatabaseFacts], source: str) -> None:
    """Fill in :attr:`DatabaseFacts.rows` of each replica that applies changes right now (a
    replica whose worker is down is judged by that already)."""
    replicas = [
        f
        for f in all_facts
        if f.reachable
        and f.node.is_subscriber
        and f.conninfo != source
        and any(s.carries_agent_chat and s.worker_pid is not None for s in f.subscriptions)
    ]
    if not replicas:
        return
    try:
        with _db.connection(source) as src:
            for facts in replicas:
                with _db.connection(facts.conninfo) as rep:
                    facts.rows = settled_rows(rep, src)
    except errors.AgentchatError:  # _db.connection translated any driver error
        return  # an unreachable source is its own check
