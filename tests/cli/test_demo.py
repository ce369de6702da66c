"""`agentchat demo` — the README's first command — runs to the end and leaves nothing running."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli


def test_demo_runs_and_stops_its_server(cluster_root: Path) -> None:
    data_dir = cluster_root / "demo-data"
    done = run_cli("demo", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert "created    yes" in done.stdout
    assert "trg_embed_chat_message   | ORIGIN       | ok" in done.stdout
    assert "trg_notify_agent_chat    | ALWAYS       | ok" in done.stdout
    assert done.stdout.rstrip().endswith("server stopped")
    status = run_cli("server", "status", "--data-dir", str(data_dir), "--name", "demo", "--json")
    assert status.returncode == 3
    assert json.loads(status.stdout)["running"] is False

    again = run_cli("demo", "--data-dir", str(data_dir), "--keep")
    try:
        assert again.returncode == 0, again.stderr
        assert "created    no (exists)" in again.stdout
        assert "connect with: psql 'postgresql://postgres@/nova_memory?host=" in again.stdout
        status = run_cli("server", "status", "--data-dir", str(data_dir), "--name", "demo")
        assert status.returncode == 0
    finally:
        run_cli("server", "stop", "--data-dir", str(data_dir), "--name", "demo")
