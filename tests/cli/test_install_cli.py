"""`agentchat install` / `triggers` / agent-install.sh as users run them, bad input included."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agentchat.server import Cluster, copy_installation, find_binaries, free_port
from agentchat.sql import load_migrations
from tests import helpers
from tests.helpers import execute, invoke, one_line_error, pg_env, run_cli

ROOT = Path(__file__).parents[2]


def database_exists(cluster: Cluster, name: str) -> bool:
    rows = execute(
        cluster.conninfo(), "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
    )
    return rows == [(1,)]


@pytest.fixture
def fresh_name(hub: Cluster) -> Iterator[str]:
    name = "cli_fresh_db"
    helpers.drop_database(hub, name)
    yield name
    helpers.drop_database(hub, name)


def test_install_report_and_rerun(hub: Cluster, fresh_name: str) -> None:
    first = run_cli("install", "--database", fresh_name, env=pg_env(hub))
    assert first.returncode == 0, first.stderr
    assert "created    yes" in first.stdout
    every = ", ".join(f"{m.version:04d}_{m.name}" for m in load_migrations())
    assert f"applied {every}" in first.stdout
    assert "role       plain" in first.stdout
    second = run_cli("install", "--database", fresh_name, "--json", env=pg_env(hub))
    report = json.loads(second.stdout)
    assert report["created"] is False and report["applied"] == [] and report["changes"] == []
    assert report["role"] == "plain" and report["schema_version"] == load_migrations()[-1].version


def test_install_with_dsn_uri(hub: Cluster, fresh_name: str) -> None:
    done = run_cli("install", "--dsn", hub.uri(fresh_name), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["database"] == fresh_name
    assert database_exists(hub, fresh_name)


def test_dry_run_prints_sql_and_changes_nothing(hub: Cluster, fresh_name: str) -> None:
    done = run_cli("install", "--database", fresh_name, "--dry-run", env=pg_env(hub))
    assert done.returncode == 0, done.stderr
    assert f'CREATE DATABASE "{fresh_name}";' in done.stdout
    assert "CREATE TABLE public.agent_chat" in done.stdout
    assert not database_exists(hub, fresh_name)


def test_agent_install_sh_works_verbatim(hub: Cluster) -> None:
    name = "graybeard_memory"
    helpers.drop_database(hub, name)
    try:
        done = subprocess.run(
            ["./agent-install.sh", "--database", name], cwd=ROOT, capture_output=True, text=True,
            env={**__import__("os").environ, **pg_env(hub)}, check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "database   graybeard_memory" in done.stdout
        triggers = run_cli("triggers", "--database", name, "--json", env=pg_env(hub))
        assert triggers.returncode == 0
        rows = {(t["trigger"], t["mode"], t["ok"]) for t in json.loads(triggers.stdout)}
        assert all(ok for _, _, ok in rows)
        assert {
            ("trg_notify_agent_chat", "ALWAYS", True),
            ("trg_embed_chat_message", "ORIGIN", True),
            ("trg_guard_replica_writes", "DISABLED", True),
            ("trg_forget_processed", "ALWAYS", True),
            ("trg_forget_embedding", "ORIGIN", True),
        } <= rows
    finally:
        helpers.drop_database(hub, name)


def test_triggers_table_and_verdicts(hub: Cluster, db: str) -> None:
    env = pg_env(hub)
    name = helpers.dbname(db)
    assert run_cli("install", "-d", name, env=env).returncode == 0
    execute(db, "ALTER TABLE agent_chat ENABLE REPLICA TRIGGER trg_embed_chat_message")
    done = run_cli("triggers", "-d", name, env=env)
    assert done.returncode == 1
    table = re.sub(r" +", " ", done.stdout)  # column widths follow the longest trigger name
    assert (
        " public | agent_chat | trg_embed_chat_message | REPLICA | WRONG (policy: ORIGIN)" in table
    )
    assert " public | agent_chat | trg_notify_agent_chat | ALWAYS | ok" in table
    rows = json.loads(run_cli("triggers", "-d", name, "--json", env=env).stdout)
    assert {tuple(sorted(r)) for r in rows} == {
        ("expected", "mode", "ok", "schema", "table", "trigger")
    }
    fixed = run_cli("install", "-d", name, env=env)
    assert "changed    trg_embed_chat_message: REPLICA -> ORIGIN" in fixed.stdout
    assert run_cli("triggers", "-d", name, env=env).returncode == 0


@pytest.mark.parametrize(
    "name",
    ['we"ird', "with space", "semi;colon; DROP DATABASE postgres", "ünïcødé_メモリ", "Mixed-Case"],
)
def test_odd_database_names_are_handled(hub: Cluster, name: str) -> None:
    helpers.drop_database(hub, name)
    try:
        done = run_cli("install", "--database", name, "--json", env=pg_env(hub))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["database"] == name
        assert database_exists(hub, name)
        triggers = run_cli("triggers", "--database", name, env=pg_env(hub))
        assert triggers.returncode == 0, triggers.stderr
        assert database_exists(hub, "postgres")
    finally:
        helpers.drop_database(hub, name)


def test_name_too_long(hub: Cluster) -> None:
    done = invoke("install", "--database", "x" * 64, env=pg_env(hub))
    one_line_error(done, "at most 63", 2)


def test_missing_database_with_no_create(hub: Cluster) -> None:
    done = invoke("install", "--database", "not_there_db", "--no-create", env=pg_env(hub))
    one_line_error(done, 'database "not_there_db" does not exist', 1)
    assert not database_exists(hub, "not_there_db")


def test_unreachable_server() -> None:
    port = free_port()
    done = invoke("install", "--dsn", f"host=127.0.0.1 port={port} user=postgres dbname=x")
    line = one_line_error(done, "cannot connect to", 1)
    assert f"127.0.0.1:{port}" in line, line


def test_wrong_password_is_refused_and_never_shown(hub: Cluster) -> None:
    secret = "not-the-password-1234"
    dsn = f"postgresql://postgres:{secret}@127.0.0.1:{hub.port}/postgres"
    done = invoke("install", "--dsn", dsn, env={"PGPASSFILE": "/dev/null"})
    one_line_error(done, "authentication failed", 1)
    assert secret not in done.stderr + done.stdout


def test_bad_option_value_is_one_line(hub: Cluster) -> None:
    done = invoke("install", "--database", "x", "--dimension", "0", env=pg_env(hub))
    one_line_error(done, "--dimension", 2)


@pytest.fixture(scope="module")
def odd_clusters(cluster_root: Path, pg_version: int) -> Iterator[tuple[Cluster, Cluster]]:
    """Servers the installer must cope with: one without pgvector, one at wal_level=replica."""
    plain = find_binaries(pg_version)
    no_vector = copy_installation(plain, cluster_root / f"novector-bin{pg_version}")
    for path in (no_vector.prefix / "share").rglob("vector*"):
        path.unlink()
    without = Cluster(
        cluster_root / f"novector{pg_version}", version=pg_version, ephemeral=True,
        binaries=no_vector,
    )  # fmt: skip
    replica = Cluster(
        cluster_root / f"walreplica{pg_version}", version=pg_version, ephemeral=True,
        settings={"wal_level": "replica"},
    )  # fmt: skip
    without.start()
    replica.start()
    yield without, replica
    without.destroy()
    replica.destroy()


def test_server_without_pgvector_leaves_nothing(odd_clusters: tuple[Cluster, Cluster]) -> None:
    without, _ = odd_clusters
    done = run_cli("install", "--database", "nova_memory", env=pg_env(without))
    one_line_error(done, "pgvector", 1)
    assert not database_exists(without, "nova_memory")
    # an existing database is left as it was: no half-applied schema
    execute(without.conninfo(), "CREATE DATABASE existing")
    done = run_cli("install", "--database", "existing", env=pg_env(without))
    one_line_error(done, "pgvector", 1)
    assert execute(
        without.conninfo("existing"), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    ) == [(0,)]


def test_wal_level_below_logical_installs_with_a_warning(
    odd_clusters: tuple[Cluster, Cluster],
) -> None:
    _, replica = odd_clusters
    done = run_cli("install", "--database", "nova_memory", env=pg_env(replica))
    assert done.returncode == 0, done.stderr
    assert "created    yes" in done.stdout
    [warning] = done.stderr.strip().splitlines()
    assert warning.startswith("agentchat: warning: wal_level is replica")
    assert "wal_level = logical" in warning
    with psycopg.connect(replica.conninfo("nova_memory")) as conn:
        assert conn.execute("SELECT count(*) FROM agent_chat").fetchone() == (0,)
