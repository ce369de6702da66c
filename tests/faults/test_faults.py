"""Faults injected mid-stream on a real topology; afterwards every message is delivered exactly
once, and nobody ran a command to make it so.

One topology for the whole chain (each fault on its own topology would cost minutes): a source
on the hub, a replica in the same cluster, and a replica on the remote cluster reached over TCP
with a password through :class:`tests.faults.proxy.TcpProxy`, so the network between them can be
cut. A writer sends a numbered stream all along; agents listen on every database: three
:class:`agentchat.Agent` threads and one ``agentchat listen`` subprocess; ``agentchat
embed-worker`` embeds at the source with the HTTP stub embedder. The faults, one after another,
each followed by a wait until replication delivers what was sent after it:

1. the source's cluster restarted (fast), and the listener killed with SIGKILL and started again;
2. the source's cluster restarted (immediate), and the embedding worker killed and restarted;
3. the source's walsenders terminated;
4. the replica's cluster: its postmaster killed with SIGKILL, then started again;
5. the network between the replica and its source cut (connections dropped, new ones
   refused) for at least 2 s and until the replica has tried to reconnect and failed.

Then the counts: every agent recorded exactly the messages addressed to it, each once; every
replica holds every message, and every embedding; no subscription is left disabled; no server
log says one was disabled.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentchat import health, replication
from agentchat.messaging import Message
from agentchat.server import Cluster
from tests import helpers
from tests.embedding_stub import serve
from tests.faults.harness import (
    AgentThread,
    Process,
    Writer,
    addressed,
    ids,
    kill9_postmaster,
    subscriptions,
    terminate_walsenders,
)
from tests.faults.proxy import TcpProxy
from tests.helpers import execute, marks, wait_for

pytestmark = pytest.mark.slow

NAMES = ("nova", "sage", "echo", "owl")
#: how long replication may take to resume after a fault: the apply worker retries every
#: wal_retrieve_retry_interval (5 s), a restarted cluster needs a moment more
RESUME = 45

#: agentchat listen claims at most this many messages per transaction (the Agent default)
LISTEN_BATCH_SIZE = 100


@dataclass
class Topo:
    source: str
    local: str  # a replica in the source's cluster
    far: str  # a replica on the remote cluster, over TCP through the proxy
    proxy: TcpProxy

    @property
    def replicas(self) -> dict[str, str]:
        return {"local": self.local, "far": self.far}


@pytest.fixture
def topo(installed_db: str, db2: str, hub: Cluster, remote: Cluster) -> Iterator[Topo]:
    db = installed_db
    replication.add(db, db2, timeout=60)
    name = f"t_{uuid.uuid4().hex[:10]}"
    far = remote.tcp_conninfo(name)
    with TcpProxy(hub.port) as proxy:
        try:
            replication.add(db, far, publisher_dsn=f"host=127.0.0.1 port={proxy.port}", timeout=60)
            assert proxy.active() == 1  # the subscription's connection goes through the proxy
            yield Topo(db, db2, far, proxy)
        finally:
            helpers.drop_database(remote, name)


def route(n: int) -> list[str]:
    """Every fifth message to everyone, the others to one agent (every seventh to two)."""
    if n % 5 == 0:
        return ["*"]
    first = NAMES[n % 4]
    return [first, NAMES[(n + 1) % 4]] if n % 7 == 0 else [first]


def max_id(conninfo: str) -> int:
    return int(str(execute(conninfo, "SELECT coalesce(max(id), 0) FROM agent_chat")[0][0]))


def test_every_fault_heals_by_itself_and_delivers_exactly_once(
    topo: Topo, hub: Cluster, remote: Cluster, tmp_path: Path
) -> None:
    logs = {c: c.log.stat().st_size for c in (hub, remote)}

    def sage_replies(msg: Message) -> None:
        if msg.sender == "writer" and list(msg.mentions) == ["sage"]:
            msg.reply(f"re {msg.id}", to=["nova"])  # posted at the source, heard by nova

    with serve() as stub:
        worker = Process(
            ["embed-worker", "--dsn", topo.source, "--embedder", "openai", "--base-url",
             stub.url, "--model", "m", "--poll-interval", "1", "--quiet"],
            tmp_path / "worker.out", env={"OPENAI_API_KEY": ""},
        ).start()  # fmt: skip
        owl = Process(
            ["listen", "--dsn", topo.far, "--send-dsn", topo.source, "--as", "owl", "--json",
             "--poll-interval", "1"],
            tmp_path / "owl.out",
        ).start()  # fmt: skip
        agents = {
            "nova": AgentThread("nova", topo.source).start(),
            "sage": AgentThread("sage", topo.local, reply=sage_replies).start(),
            "echo": AgentThread("echo", topo.far, send_dsn=topo.source).start(),
        }
        homes = {"nova": topo.source, "sage": topo.local, "echo": topo.far, "owl": topo.far}
        writer = Writer(topo.source, "writer", route, pause=0.02).start()

        def flowing(after: str) -> None:
            """Wait until both replicas hold a message the writer sent after the fault."""
            before = max_id(topo.source)
            wait_for(lambda: writer.confirmed and writer.confirmed[-1] > before, timeout=RESUME,
                     what=f"the writer sending again after {after}")  # fmt: skip
            target = writer.confirmed[-1]
            for where, replica in topo.replicas.items():
                try:
                    wait_for(lambda r=replica: max_id(r) >= target, timeout=RESUME,  # type: ignore[misc]
                             what=f"replication to {where} after {after}")  # fmt: skip
                except AssertionError as exc:
                    state = subscriptions(replica)
                    raise AssertionError(
                        f"{exc}; subscriptions (name, enabled, pid): {state}"
                    ) from None

        try:
            wait_for(lambda: all(len(a.seen) >= 10 or a.error for a in agents.values()),
                     timeout=30, what="every agent thread handling messages")  # fmt: skip
            assert not [a.error for a in agents.values() if a.error]
            wait_for(lambda: len(owl.json_lines()) >= 10, what="the listener printing")
            wait_for(lambda: stub.requests > 1, what="the worker embedding")  # it has started

            hub.restart("fast")
            owl.kill9()
            owl.start()
            flowing("a fast restart of the source")

            hub.restart("immediate")
            worker.kill9()
            worker.start()
            flowing("an immediate restart of the source")

            assert terminate_walsenders(topo.source) == 2
            flowing("the walsenders terminated")

            kill9_postmaster(remote)
            flowing("kill -9 of the replica's postmaster")

            cut_at = time.monotonic()
            # the subscription's connection dropped; the network stays down at least 2 s and
            # until the subscriber has tried again and been refused
            assert topo.proxy.cut(60) == 1
            wait_for(lambda: topo.proxy.refused >= 1, timeout=RESUME, what="a retry in the cut")
            time.sleep(max(0.0, 2 - (time.monotonic() - cut_at)))
            topo.proxy.resume()
            flowing("a network cut")
        finally:
            writer.stop()

        # -- everything arrives, with nobody's help --------------------------------------------
        def missing() -> dict[str, int]:
            """What is not there yet: per replica, messages; per agent, deliveries."""
            sent = set(ids(topo.source))  # read again: sage still replies to the last ones
            expected = addressed(topo.source)
            gaps = {where: len(sent ^ set(ids(r))) for where, r in topo.replicas.items()}
            gaps |= {n: len({m[0] for m in marks(h, n)} ^ expected(n)) for n, h in homes.items()}
            return {k: v for k, v in gaps.items() if v}

        try:
            wait_for(lambda: not missing(), timeout=60, what="every message and delivery")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {missing()} missing or extra") from None
        sent = ids(topo.source)
        expected = addressed(topo.source)
        assert set(writer.confirmed) <= set(sent)
        embedded = ("SELECT count(*) FILTER (WHERE embedding IS NOT NULL), count(*)"
                    " FROM memory_embeddings WHERE source_type = 'agent_chat'")  # fmt: skip
        for conninfo in (topo.source, *topo.replicas.values()):
            wait_for(lambda c=conninfo: execute(c, embedded) == [(len(sent), len(sent))],  # type: ignore[misc]
                     timeout=60, what="every message embedded, everywhere")  # fmt: skip

        for agent in agents.values():
            agent.stop()
        assert owl.stop() == 0, owl.stderr()
        assert worker.stop() == 0, worker.stderr()

    # -- the counts ----------------------------------------------------------------------------
    assert len(sent) > 300 and writer.failures > 0  # a real stream, and the faults hit it
    for name, home in homes.items():
        recorded = Counter(m[0] for m in marks(home, name))
        assert set(recorded) == expected(name), name  # sent == delivered
        assert set(recorded.values()) == {1}, name  # none recorded twice
        assert all(status in ("routed", "responded") for _i, _a, status in marks(home, name))
    # handlers: every message at least once; again only when a fault cut a delivery short, at
    # most one batch per fault that hit the agent's own database (its cluster restarted or
    # killed): a batch's marks commit together, so a cut batch is handed over again whole.
    # sage's handler posts at the source: while the source is down each attempt fails and the
    # message is handed over again (as often as it takes), but its reply is posted once (below)
    cuts = {"nova": 2, "echo": 1}
    for name, agent in agents.items():
        assert set(agent.seen) == expected(name), name
        batch = agent.agent.batch_size
        assert name not in cuts or agent.duplicates <= cuts[name] * batch, (name, agent.duplicates)
    printed = Counter(int(str(line["id"])) for line in owl.json_lines())
    assert set(printed) == expected("owl")
    # printed again only for what a kill cut short: at most one batch per kill (+ the
    # replica's own kill), since a batch's marks commit together (docs/agents.md)
    assert sum(printed.values()) - len(printed) <= (owl.kills + 1) * LISTEN_BATCH_SIZE
    # sage's replies: one per direct message, posted at the source, delivered to nova
    direct = execute(topo.source, "SELECT id FROM agent_chat"
                     " WHERE sender = 'writer' AND mentions = '{sage}' ORDER BY id")  # fmt: skip
    replies = execute(topo.source, "SELECT reply_to FROM agent_chat WHERE sender = 'sage'"
                      " ORDER BY reply_to")  # fmt: skip
    assert replies == direct and len(direct) > 10
    # embeddings: every text at least once, again only for a batch the killed worker held
    texts = {str(r[0]) for r in execute(topo.source, "SELECT message FROM agent_chat")}
    assert set(stub.embedded) - {"dimension probe"} == texts
    # replication: enabled, running, never disabled along the way, and status agrees
    report = health.status([topo.source, *topo.replicas.values()])
    assert [(c.database, c.check, c.detail) for c in report.checks if c.verdict] == []
    for where, replica in topo.replicas.items():
        assert [(s[1], s[2] is not None) for s in subscriptions(replica)] == [(True, True)], where
    for cluster, start in logs.items():
        tail = cluster.log_tail(1_000_000, since=start)
        assert "has been disabled because of an error" not in tail, tail
