"""Fan-out: one source to 1, 8 and 50 one-way replicas (quick: 1 and 2); and the hub's commit
rate with and without listeners.

For each width, replicas are added to the same source (spread over the lab's clusters,
:data:`~agentchat.bench.lab.REPLICAS_PER_CLUSTER` to a cluster), then:

- latency: a paced writer at 200 msg/s; ``fanout_<n>_p99_ms`` is the worst replica's p99 from
  a message's commit at the source (its commit timestamp) to its apply on the replica (an
  ``ENABLE ALWAYS`` trigger's clock there): 50 listening clients in one process would measure
  themselves. Against the 1-replica p99 as its floor;
- throughput: 20,000 messages (quick: 1,000) in 1,000-row transactions; ``fanout_<n>_rate_per_s``
  is messages / seconds until the last row is on every replica (floor: the 1-replica rate), and
  ``fanout_<n>_walsender_cores`` the CPU the source's walsenders used meanwhile (cores, from
  /proc): where it nears the machine's cores, the walsenders saturate (each decodes the WAL
  for itself); ``fanout_<n>_apply_cores``, the same for the replicas' apply workers (each
  applies every message for itself). Together they show where one machine runs out: on 2
  cores, both near 2 means every replica waits for a CPU.

``fanout_widest_*`` repeat the widest case (50, quick 2; ``fanout_widest_replicas``) against the
1-replica floor: the issue's target is p99 <= 4x. ``fanout_spokes_*``: the same from a hub to 8
two-way spokes (quick: 1; ``fanout_spokes``), against the 1-replica floors.

NOTIFY takes a global lock at commit: ``fanout_notify_commit_per_s`` is the commit rate of
pgbench (4 clients, one message per transaction) on a hub database with 8 listening
connections, against the same without listeners as its floor;
``fanout_notify_trigger_commit_per_s`` is that rate without listeners against the floor of the
notify trigger turned off (what the NOTIFY itself costs a writer).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from pathlib import Path

from agentchat import _db
from agentchat.bench.delivery import RATE, RawListener, paced_send, percentile, wait_until
from agentchat.bench.lab import REPLICAS_PER_CLUSTER, Lab, Progress
from agentchat.bench.report import Figures
from agentchat.bench.throughput import send_bulk
from agentchat.sql import queries, statement_text

LISTENERS = 8
CLIENTS = 4
#: two-way spokes to a cluster (each holds a subscription on both sides)
SPOKES_PER_CLUSTER = REPLICAS_PER_CLUSTER // 2


def _ticks(pid: int) -> int:
    """CPU clock ticks (user + system) process *pid* used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


def walsender_ticks(source: str) -> int:
    with _db.connection(source) as conn:
        pids = [int(r[0]) for r in conn.execute(queries["bench_walsender_pids"]).fetchall()]
    return sum(_ticks(pid) for pid in pids)


def apply_pids(targets: list[str]) -> set[int]:
    """The apply workers of *targets*' subscriptions (on whichever clusters they are)."""
    pids: set[int] = set()
    for target in targets:
        with _db.connection(target) as conn:
            pids.update(int(r[0]) for r in conn.execute(queries["bench_apply_pids"]).fetchall())
    return pids


def commit_times(dsn: str, ids: list[int], query: str = "bench_commit_times") -> dict[int, float]:
    with _db.connection(dsn) as conn:
        rows = conn.execute(queries[query], (ids,)).fetchall()
    return {int(r[0]): float(r[1]) for r in rows if r[1] is not None}


def time_arrivals(target: str) -> str:
    """*target* (a replica or spoke) records when each latency probe is applied; *target*."""
    with _db.connection(target) as conn:
        conn.execute(queries["bench_arrivals_setup"])
    return target


def worst_p99(source: str, replicas: list[str], count: int) -> float:
    """The worst replica's p99 latency (ms) of *count* messages sent at :data:`RATE`: from
    each message's commit at the source to its apply on the replica (both timed by the
    servers: no listening client in the way, however many replicas)."""
    ids = list(paced_send(source, count, RATE, "fan"))
    arrived(replicas, max(ids))
    written = commit_times(source, ids)
    worst = 0.0
    for replica in replicas:
        applied = commit_times(replica, ids, "bench_arrivals")
        times = [(applied[i] - t) * 1000 for i, t in written.items() if i in applied]
        if len(times) < len(ids):
            raise RuntimeError(f"{len(ids) - len(times)} probe(s) not timed on a replica")
        worst = max(worst, percentile(times, 0.99))
    return worst


def arrived(replicas: list[str], last: int, timeout: float = 600) -> None:
    """Until message *last* is on every replica."""
    with contextlib.ExitStack() as stack:
        waiting = [stack.enter_context(_db.connection(replica)) for replica in replicas]

        def there() -> bool:
            waiting[:] = [
                c for c in waiting
                if not (c.execute(queries["bench_has_message"], (last,)).fetchone() or (0,))[0]
            ]  # fmt: skip
            return not waiting

        if not wait_until(there, timeout=timeout, step=0.01):
            raise TimeoutError(f"message {last} did not reach every replica in {timeout:.0f} s")


def spread(source: str, replicas: list[str], count: int) -> tuple[float, float, float]:
    """(messages/s until the last of *count* is on every replica, the walsenders' cores and the
    replicas' apply workers' cores meanwhile)."""
    appliers = apply_pids(replicas)
    ticks = walsender_ticks(source)
    applied = sum(_ticks(pid) for pid in appliers)
    start = time.perf_counter()
    last = send_bulk(source, count, "fanbulk")
    arrived(replicas, last)
    elapsed = time.perf_counter() - start
    per_second = os.sysconf("SC_CLK_TCK") * elapsed
    cores = (walsender_ticks(source) - ticks) / per_second
    apply_cores = (sum(_ticks(pid) for pid in appliers) - applied) / per_second
    return count / elapsed, cores, apply_cores


def commit_rate(lab: Lab, dsn: str, seconds: float) -> float:
    """pgbench's transactions per second on *dsn*: :data:`CLIENTS` clients, one message each."""
    cluster = lab.cluster(0)
    script = lab.root / "commit-rate.sql"
    script.write_text(statement_text(queries["bench_pgbench_send"].as_string(None)) + ";\n")
    done = subprocess.run(
        [
            str(cluster.binaries.path("pgbench")), "-n", "-f", str(script),
            "-c", str(CLIENTS), "-j", "2", "-T", str(int(seconds)), dsn,
        ],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    )  # fmt: skip
    match = re.search(r"tps = ([\d.]+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    return float(match[1])


def notify_cost(lab: Lab, quick: bool, progress: Progress, figures: Figures) -> None:
    hub = lab.database("fanout_commit")
    seconds = 1 if quick else 5
    progress("fanout: the hub's commit rate without listeners")
    alone = commit_rate(lab, lab.cluster(0).conninfo("fanout_commit"), seconds)
    progress(f"fanout: the hub's commit rate with {LISTENERS} listeners")
    listeners = [RawListener(hub, "notified") for _ in range(LISTENERS)]
    try:
        heard = commit_rate(lab, lab.cluster(0).conninfo("fanout_commit"), seconds)
    finally:
        for listener in listeners:
            listener.close()
    progress("fanout: the hub's commit rate without the NOTIFY")
    with _db.connection(hub) as conn:
        conn.execute(queries["bench_notify_trigger_off"])
    silent = commit_rate(lab, lab.cluster(0).conninfo("fanout_commit"), seconds)
    figures.compare("fanout_notify_commit_per_s", heard, alone)
    figures.compare("fanout_notify_trigger_commit_per_s", alone, silent)


def run(lab: Lab, quick: bool, progress: Progress) -> Figures:
    figures = Figures()
    notify_cost(lab, quick, progress, figures)
    cases = (1, 2) if quick else (1, 8, 50)
    count = 100 if quick else 1000
    bulk = 1000 if quick else 20000
    with lab.scope():  # gone before the spokes: idle walsenders still decode all WAL
        source = lab.database("fanout_source")
        replicas: list[str] = []
        one_p99 = one_rate = 0.0
        for n in cases:
            while len(replicas) < n:
                index = len(replicas)
                progress(f"fanout: replica {index + 1} of {n}")
                cluster = index // REPLICAS_PER_CLUSTER
                name = f"fanout_replica_{index}"  # the rows so far are not copied: not needed
                replica = lab.replica(source, name, cluster=cluster, copy_data=False)
                replicas.append(time_arrivals(replica))
            p99, rate, cores, apply_cores = measure(source, replicas, count, bulk, progress)
            if n == 1:
                one_p99, one_rate = p99, rate
                figures.add("fanout_1_p99_ms", p99)
                figures.add("fanout_1_rate_per_s", rate)
            else:
                figures.compare(f"fanout_{n}_p99_ms", p99, one_p99)
                figures.compare(f"fanout_{n}_rate_per_s", rate, one_rate)
            figures.add(f"fanout_{n}_walsender_cores", cores)
            figures.add(f"fanout_{n}_apply_cores", apply_cores)
        widest = cases[-1]
        figures.add("fanout_widest_replicas", widest)
        figures.compare("fanout_widest_p99_ms", figures[f"fanout_{widest}_p99_ms"], one_p99)

    spokes = 1 if quick else 8
    hub = lab.database("fanout_hub")
    joined = []
    for index in range(spokes):
        progress(f"fanout: two-way spoke {index + 1} of {spokes}")
        spoke = lab.spoke(hub, f"fanout_spoke_{index}", cluster=index // SPOKES_PER_CLUSTER)
        joined.append(time_arrivals(spoke))
    p99, rate, cores, apply_cores = measure(hub, joined, count, bulk, progress)
    figures.add("fanout_spokes", spokes)
    figures.compare("fanout_spokes_p99_ms", p99, one_p99)
    figures.compare("fanout_spokes_rate_per_s", rate, one_rate)
    figures.add("fanout_spokes_walsender_cores", cores)
    figures.add("fanout_spokes_apply_cores", apply_cores)
    return figures


def measure(
    source: str, targets: list[str], count: int, bulk: int, progress: Progress
) -> tuple[float, float, float, float]:
    """(worst p99 ms, messages/s to all, walsender cores, apply worker cores) from *source* to
    *targets*."""
    progress(f"fanout: {len(targets)} target(s), latency at {RATE} msg/s")
    p99 = worst_p99(source, targets, count)
    progress(f"fanout: {len(targets)} target(s), {bulk} messages in bulk")
    rate, cores, apply_cores = spread(source, targets, bulk)
    return p99, rate, cores, apply_cores
