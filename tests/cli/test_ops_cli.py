"""status / doctor / verify / upgrade as users run them: exit codes, JSON, Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agentchat import replication, topology
from agentchat.server import Cluster
from agentchat.sql import load_migrations
from tests import helpers
from tests.helpers import execute, run_cli

#: the schema version a fresh install reaches
LATEST = len(load_migrations())


def make_topology(source: str, targets: list[str], path: Path) -> Path:
    """*source* (installed) replicated to each of *targets*, recorded in the topology file."""
    file = topology.Topology(path)
    for target in targets:
        replication.add(source, target, topology=file, timeout=60)
    return path


def test_status_defaults_to_the_topology_file(
    installed_db: str, installed_db2: str, installed_remote_db: str, tmp_path: Path
) -> None:
    targets = [installed_db2, installed_remote_db]
    make_topology(installed_db, targets, tmp_path / "agentchat.toml")  # ./agentchat.toml
    done = run_cli("status")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(": ")[1] for line in lines[:3]] == [
        f"source, schema {LATEST} [ok]", f"subscriber, schema {LATEST} [ok]",
        f"subscriber, schema {LATEST} [ok]",
    ]  # fmt: skip
    assert lines[-1] == "verdict: ok"
    verbose = run_cli("status", "-v").stdout
    assert "sync_state: 2/2 tables ready (agent_chat r, memory_embeddings r)" in verbose
    assert verbose.count(", apply errors 0, sync errors 0") == 2
    assert verbose.count(", wal_status reserved, retains ") == 2

    data = json.loads(run_cli("status", "--json").stdout)
    assert data["verdict"] == "ok"
    [source, *replicas] = data["databases"]
    assert source["role"] == "source" and len(source["slots"]) == 2
    sub = replicas[0]["subscriptions"][0]
    assert sub["enabled"] and sub["worker_running"]
    assert sub["tables"] == {"agent_chat": "r", "memory_embeddings": "r"}
    assert {"apply_error_count", "sync_error_count", "last_message"} <= set(sub)

    # verify every replica of the topology
    done = run_cli("verify", "--json")
    assert done.returncode == 0, done.stdout
    results = json.loads(done.stdout)
    assert len(results) == 2
    for result in results:
        assert {"arrived", "notified", "arrival_ms", "notify_ms", "ok"} <= set(result)
        assert result["ok"] and result["embedding_rows"] == 1


def test_prometheus_output_parses(
    installed_db: str, installed_remote_db: str, tmp_path: Path
) -> None:
    db, remote_db = installed_db, installed_remote_db
    make_topology(db, [remote_db], tmp_path / "agentchat.toml")
    done = run_cli("status", "--format", "prometheus")
    assert done.returncode == 0
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}
    up = families["agentchat_up"].samples
    assert {s.value for s in up} == {1.0}
    assert {s.labels["database"] for s in up} == {helpers.dbname(db), helpers.dbname(remote_db)}
    assert all(s.labels["server"].startswith("/") for s in up)  # the clusters' socket dirs
    workers = families["agentchat_subscription_worker_running"].samples
    assert [s.value for s in workers] == [1.0]
    assert families["agentchat_subscription_apply_errors"].type == "counter"
    retained = families["agentchat_slot_retained_bytes"].samples
    assert len(retained) == 1 and retained[0].labels["slot"].startswith("agent_chat_from_")
    modes = {
        (s.labels["trigger"], s.labels["mode"]) for s in families["agentchat_trigger_ok"].samples
    }
    assert ("trg_notify_agent_chat", "ALWAYS") in modes


def test_broken_replica_exit_codes_and_doctor_fix(
    installed_db: str, installed_remote_db: str, tmp_path: Path
) -> None:
    db, remote_db = installed_db, installed_remote_db
    make_topology(db, [remote_db], tmp_path / "agentchat.toml")
    execute(remote_db, "ALTER TABLE agent_chat DISABLE TRIGGER trg_notify_agent_chat")
    done = run_cli("status")
    assert done.returncode == 2
    assert "BROKEN   trigger_mode: trg_notify_agent_chat is DISABLED on a subscriber" in done.stdout
    assert "fix: agentchat doctor --fix" in done.stdout
    assert run_cli("verify").returncode == 1

    done = run_cli("doctor")
    assert done.returncode == 2
    done = run_cli("doctor", "--fix")
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[0].endswith("trg_notify_agent_chat DISABLED -> ALWAYS")
    assert run_cli("status").returncode == 0


def test_degraded_exit_code_and_upgrade(
    installed_db: str, installed_remote_db: str, tmp_path: Path
) -> None:
    db, remote_db = installed_db, installed_remote_db
    config = make_topology(db, [remote_db], tmp_path / "agentchat.toml")
    execute(db, "SELECT pg_create_logical_replication_slot('old_replica', 'pgoutput')")
    try:
        execute(
            db, "SELECT send_agent_message('nova', repeat('x', 5000)) FROM generate_series(1, 5)"
        )
        done = run_cli("status", "--wal-threshold", "100")
        assert done.returncode == 1
        assert "DEGRADED slot: slot old_replica is inactive" in done.stdout
    finally:
        execute(db, "SELECT pg_drop_replication_slot('old_replica')")
    done = run_cli("upgrade", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(up to date)") == 2


def test_a_bare_database_name_is_a_dsn(hub: Cluster, installed_db: str) -> None:
    done = run_cli("status", helpers.dbname(installed_db), env=helpers.pg_env(hub))
    assert done.returncode == 0, done.stdout
    assert f": plain, schema {LATEST} [ok]" in done.stdout


def test_verify_without_topology_is_a_usage_error() -> None:
    helpers.one_line_error(helpers.invoke("verify"), "give --source and --target", 2)


def test_databases_by_dsn_option_and_output_formats(
    hub: Cluster, installed_db: str, installed_db2: str
) -> None:
    """--dsn (repeatable) names databases, as positional DSNs always have (they come first);
    --format json is --json; a bare name is a database name there too."""
    db, db2 = installed_db, installed_db2
    env = helpers.pg_env(hub)
    first, second = helpers.dbname(db), helpers.dbname(db2)

    def names(*args: str) -> list[str]:
        data = json.loads(helpers.ok(helpers.invoke(*args, env=env)))
        return [d["database"] for d in data["databases"]]

    by_option = names("status", "--dsn", db, "--dsn", second, "--format", "json")
    assert len(by_option) == 2
    assert f'database "{first}"' in by_option[0] and f'database "{second}"' in by_option[1]
    assert names("status", second, "--dsn", db, "--json") == by_option[::-1]
    assert names("doctor", "--dsn", first, "--dsn", db2, "--format", "json") == by_option

    data = json.loads(helpers.ok(helpers.invoke("doctor", "--dsn", db, "--json", env=env)))
    assert data["verdict"] == "ok" and data["fixed"] == []
    text = helpers.ok(helpers.invoke("doctor", "--dsn", db, "--format", "text", env=env))
    assert text.splitlines()[-1] == "verdict: ok"

    done = helpers.invoke("status", "--dsn", db, "--format", "yaml", env=env)
    helpers.one_line_error(done, "'yaml' is not one of 'text', 'json', 'prometheus'", 2)
    done = helpers.invoke("doctor", "--format", "prometheus", env=env)
    helpers.one_line_error(done, "'prometheus' is not one of 'text', 'json'", 2)


def test_verify_and_upgrade_take_format(
    installed_db: str, installed_remote_db: str, tmp_path: Path
) -> None:
    make_topology(installed_db, [installed_remote_db], tmp_path / "agentchat.toml")
    done = run_cli("verify", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    [result] = json.loads(done.stdout)
    assert result["ok"] and result["cleaned_up"]
    done = run_cli("upgrade", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [r["schema_version"] for r in json.loads(done.stdout)] == [LATEST, LATEST]
