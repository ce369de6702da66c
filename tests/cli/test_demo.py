"""`agentchat demo` — the README's first command — runs to the end and leaves nothing running."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from agentchat.sql import load_migrations
from tests.helpers import run_cli

SCHEMA = len(load_migrations())
pytestmark = pytest.mark.slow  # a cluster, three databases, replication, a model: a minute


def postgres_processes(data_dir: Path) -> list[str]:
    found = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in found.stdout.splitlines() if f"-D {data_dir}" in line]


def test_the_demo_runs_end_to_end_and_leaves_nothing_behind(cluster_root: Path) -> None:
    data_dir = cluster_root / "demo-data"
    done = run_cli("demo", "--data-dir", str(data_dir), env={"NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    stages = re.findall(r"^(\d)\. ", out, flags=re.MULTILINE)
    assert stages == [str(n) for n in range(1, 9)], out
    for db in ("nova_memory", "graybeard_memory", "sage_memory"):
        assert re.search(rf"^   {db} +schema version {SCHEMA}, role plain$", out, re.MULTILINE), out
    assert (
        "   graybeard_memory  role subscriber" in out and "   nova_memory       role source" in out
    )
    # the conversation: 7 messages, each timed on both replicas and at each addressee's listener
    talk = out[out.index("4. Agents talk") : out.index("5. Triggers")]
    timings = re.findall(r"reached graybeard_memory [\d.]+ ms, sage_memory [\d.]+ ms; listener of",
                         talk)  # fmt: skip
    assert len(timings) == 7, talk
    assert "#2 graybeard -> nova (reply to #1), written on nova_memory" in talk
    assert re.search(r"#6 nova -> \*, .*\n.*listener of graybeard [\d.]+ ms, sage [\d.]+ ms$",
                     talk, flags=re.MULTILINE)  # fmt: skip
    assert len(re.findall(r"trg_notify_agent_chat +\| ALWAYS +\| ok", out)) == 3
    assert len(re.findall(r"trg_guard_replica_writes +\| ORIGIN +\| ok", out)) == 2
    assert "WRONG" not in out and "verdict: ok" in out
    assert len(re.findall(r"_memory: arrived in [\d.]+ ms, NOTIFY in [\d.]+ ms, 1 embedding"
                          r" row\(s\) \[ok\]", out)) == 2  # fmt: skip
    # embeddings: computed at the hub, replicated, and a paraphrase finds the backup message
    assert "nova_memory: embedded 7 messages (all-MiniLM-L6-v2)" in out
    assert "sage_memory: 7 embeddings arrived by replication" in out
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
