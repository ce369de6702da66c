"""`agentchat demo` — the README's first command — runs to the end and leaves nothing running."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from agentchat.sql import load_migrations
from tests.helpers import run_cli
from tests.test_docs import REPO, Context, documented_command, output_matches

README = REPO / "README.md"

SCHEMA = len(load_migrations())
pytestmark = pytest.mark.slow  # a cluster, three databases, two-way links, a model: a minute


def postgres_processes(data_dir: Path) -> list[str]:
    found = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in found.stdout.splitlines() if f"-D {data_dir}" in line]


def test_the_demo_runs_end_to_end_and_leaves_nothing_behind(cluster_root: Path) -> None:
    data_dir = cluster_root / "demo-data"
    done = run_cli("demo", "--data-dir", str(data_dir), env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""  # piped: no progress display
    out = done.stdout
    # the README shows this run's output (its doc test leaves the demo to this test)
    documented = documented_command(README, "agentchat demo --data-dir <tmp>")
    assert output_matches(Context(None, data_dir), documented.expected, out.splitlines()), (
        f"README.md:{documented.line} does not show what the demo printed:\n{out}"
    )
    stages = re.findall(r"^(\d)\. ", out, flags=re.MULTILINE)
    assert stages == [str(n) for n in range(1, 9)], out
    for db in ("nova_memory", "graybeard_memory", "sage_memory"):
        assert re.search(rf"^   {db} +schema version {SCHEMA}, role plain$", out, re.MULTILINE), out
        # two-way: every database is a peer, with a node number of its own
        assert re.search(rf"^   {db} +role peer, node \d+$", out, re.MULTILINE), out
    joins = re.findall(r"^   (\w+) joined nova_memory: links agent_chat_(\d+)_to_(\d+),"
                       r" agent_chat_(\d+)_to_(\d+)$", out, flags=re.MULTILINE)  # fmt: skip
    assert [j[0] for j in joins] == ["graybeard_memory", "sage_memory"], out
    numbers = dict(re.findall(r"^   (\w+_memory) +role peer, node (\d+)$", out, re.MULTILINE))
    assert len(set(numbers.values())) == 3, numbers
    for spoke, hub_to, spoke_from, spoke_to, hub_from in joins:
        assert hub_to == hub_from == numbers["nova_memory"] and spoke_from == spoke_to
        assert spoke_from == numbers[spoke]
    # the conversation: 9 messages, each written on its sender's own database and timed on the
    # two others and at each addressee's listener
    talk = out[out.index("4. Agents talk") : out.index("5. Triggers")]
    timings = re.findall(r"reached (\w+) [\d.]+ ms, (\w+) [\d.]+ ms; listener of", talk)
    assert len(timings) == 9, talk
    homes = {"nova": "nova_memory", "graybeard": "graybeard_memory", "sage": "sage_memory"}
    written = re.findall(r"^   #\d+ (\w+) -> .*, written on (\w+):", talk, flags=re.MULTILINE)
    assert len(written) == 9 and all(homes[who] == db for who, db in written), talk
    for (_, db), reached in zip(written, timings, strict=True):
        assert sorted([db, *reached]) == sorted(homes.values()), talk
    assert "#2 graybeard -> nova (reply to #1), written on graybeard_memory" in talk
    # spoke to spoke, through the hub
    assert "#8 sage -> graybeard, written on sage_memory" in talk
    assert "#9 graybeard -> sage (reply to #8), written on graybeard_memory" in talk
    assert re.search(r"#6 nova -> \*, .*\n.*listener of graybeard [\d.]+ ms, sage [\d.]+ ms$",
                     talk, flags=re.MULTILINE)  # fmt: skip
    ids = re.findall(r"^     #(\d) = (\d+): node (\d+) \((\w+)\)$", talk, flags=re.MULTILINE)
    assert [(n, db) for n, _, _, db in ids] == [
        ("1", "nova_memory"),
        ("2", "graybeard_memory"),
        ("5", "sage_memory"),
    ], talk
    for _, id_, node, db in ids:
        assert (int(id_) >> 12) & 1023 == int(node) == int(numbers[db])
    assert len(re.findall(r"trg_notify_agent_chat +\| ALWAYS +\| ok", out)) == 3
    assert len(re.findall(r"trg_guard_replica_writes +\| DISABLED +\| ok", out)) == 3
    assert len(re.findall(r"^   role: peer$", out, flags=re.MULTILINE)) == 3
    assert "WRONG" not in out and "verdict: ok" in out
    probes = re.findall(r"^   (\w+) -> (\w+): arrived in [\d.]+ ms, NOTIFY in [\d.]+ ms,"
                        r" 1 embedding row\(s\) \[ok\]$", out, flags=re.MULTILINE)  # fmt: skip
    assert len(set(probes)) == 6, out
    # embeddings: each database's worker embeds what was written there; all arrive everywhere
    embedded = re.findall(r"^   (\w+): embedded (\d+) messages \(all-MiniLM-L6-v2\)$", out,
                          flags=re.MULTILINE)  # fmt: skip
    assert [db for db, _ in embedded] == list(homes.values()), out
    assert sum(int(n) for _, n in embedded) == 9, out  # each message once, where written
    assert "each database holds all 9 embeddings" in out
    hits = re.findall(r"^     (\d\.\d{3})  #(\d+) ", out, flags=re.MULTILINE)
    assert hits[0][1] == "1" and float(hits[0][0]) > float(hits[-1][0]), out
    assert out.rstrip().splitlines()[-1].endswith("server stopped and removed")
    assert not (data_dir / "demo").exists()
    assert postgres_processes(data_dir) == []


def test_the_demo_runs_again_and_keeps_its_server_when_asked(cluster_root: Path) -> None:
    data_dir = cluster_root / "demo-keep"
    first = run_cli("demo", "--data-dir", str(data_dir), "--keep", "--no-embeddings")
    assert first.returncode == 0, first.stderr
    try:
        assert "8. Embeddings" in first.stdout and "skipped (--no-embeddings)" in first.stdout
        assert "connect with:" in first.stdout
        assert "psql 'postgresql://postgres@/sage_memory?host=" in first.stdout
        assert (
            run_cli("server", "status", "--data-dir", str(data_dir), "--name", "demo").returncode
            == 0
        )
        # a second run starts afresh from the kept cluster, and removes it
        again = run_cli("demo", "--data-dir", str(data_dir), "--no-embeddings")
        assert again.returncode == 0, again.stderr
        assert "#7 sage -> nova (reply to #6)" in again.stdout
        status = run_cli("server", "status", "--data-dir", str(data_dir), "--name", "demo")
        assert status.returncode == 3
        assert postgres_processes(data_dir) == []
    finally:
        run_cli("server", "stop", "--data-dir", str(data_dir), "--name", "demo")
