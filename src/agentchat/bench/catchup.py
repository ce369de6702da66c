"""Catch-up: an agent offline while 100,000 messages (quick: 2,000) arrive; time to drain.

The messages are written at the source in 1,000-row transactions and replicated while the
agent is down (``catchup_replicated_s``: from the first write until all are on the replica).
Then an :class:`agentchat.Agent` starts on the replica and handles them all (``idle_timeout=0``:
it returns once none is left): ``catchup_drain_s`` from its start, ``catchup_rate_per_s``
messages per second (the issue's target, 100,000 in 10 s, is 10,000/s).
"""

from __future__ import annotations

import time

from agentchat.agent import Agent
from agentchat.bench.lab import Lab, Progress
from agentchat.bench.report import Figures
from agentchat.bench.throughput import exactly_once, send_bulk, wait_replicated


def run(lab: Lab, quick: bool, progress: Progress) -> Figures:
    count = 2000 if quick else 100000
    source = lab.database("catchup_source")
    replica = lab.replica(source, "catchup_replica")
    progress(f"catchup: {count} messages while the agent is offline")
    start = time.perf_counter()
    send_bulk(source, count, "offline")
    wait_replicated(replica, ["offline"], count, timeout=600)
    replicated = time.perf_counter() - start
    progress("catchup: the agent drains them")
    with Agent("offline", replica) as agent:
        start = time.perf_counter()
        handled = agent.run(lambda message: None, idle_timeout=0)
        drain = time.perf_counter() - start
    figures = Figures()
    figures.add("catchup_messages", handled)
    figures.add("catchup_replicated_s", replicated)
    figures.add("catchup_drain_s", drain)
    figures.add("catchup_rate_per_s", handled / drain)
    figures.add("catchup_exactly_once", exactly_once(replica, "offline", count))
    return figures
