"""`agentchat replicate` as users run it: the topology file, an unreachable source, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentchat import install
from agentchat.server import Cluster, free_port
from tests import helpers
from tests.helpers import execute, invoke, ok, one_line_error, run_cli


def test_topology_file_drives_later_commands(hub: Cluster, installed_db: str, db2: str,
                                             remote_db: str, tmp_path: Path) -> None:  # fmt: skip
    db = installed_db  # the source, installed; the targets fresh (add makes them replicas)
    config = tmp_path / "agentchat.toml"
    for target in (db2, remote_db):
        done = run_cli("replicate", "add", "--one-way", "--source", db, "--target", target,
                       "--config", str(config), "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["tables"] == 2
    text = config.read_text()
    assert "password=" not in text and helpers.dbname(remote_db) in text

    # `triggers` with no DSN reports every database of the topology
    done = run_cli("triggers", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [d["role"] for d in report] == ["source", "subscriber", "subscriber"]
    assert all(t["ok"] for d in report for t in d["triggers"])

    # the same through the environment variable, from another directory
    env = {"AGENTCHAT_CONFIG": str(config)}
    done = run_cli(
        "replicate", "add", "--one-way", "--target", remote_db, "--json", env=env, cwd=Path("/")
    )
    assert json.loads(done.stdout)["already"] is True

    name = "agent_chat_from_" + helpers.dbname(db)
    done = run_cli("replicate", "remove", "--name", name, "--target", db2, "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "dropped slot" in done.stdout
    assert helpers.dbname(db2) not in config.read_text()


@pytest.fixture
def lonely_source(cluster_root: Path, pg_version: int) -> Iterator[Cluster]:
    """A source cluster of its own, so the test can take it away."""
    cluster = Cluster(cluster_root / f"lonely{pg_version}", version=pg_version, ephemeral=True)
    cluster.start()
    yield cluster
    cluster.destroy()


def test_remove_with_source_unreachable(lonely_source: Cluster, remote: Cluster,
                                        remote_db: str) -> None:  # fmt: skip
    source = lonely_source.conninfo("nova_memory")
    install.install(source)
    done = run_cli(
        "replicate", "add", "--one-way", "--source", source, "--target", remote_db, "--json"
    )
    assert done.returncode == 0, done.stderr
    slot = json.loads(done.stdout)["slot"]
    lonely_source.stop("immediate")

    done = run_cli("replicate", "remove", "--target", remote_db)
    assert done.returncode == 0, done.stderr
    assert "removed subscription" in done.stdout
    [warning] = done.stderr.strip().splitlines()
    assert f"SELECT pg_drop_replication_slot('{slot}');" in warning
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]

    lonely_source.start()  # the slot is still there, as the warning said
    assert execute(lonely_source.conninfo(), "SELECT slot_name FROM pg_replication_slots") == [
        (slot,)
    ]


def test_unreachable_source_leaves_nothing(remote_db: str) -> None:
    port = free_port()
    done = invoke("replicate", "add", "--one-way",
                  "--source", f"host=127.0.0.1 port={port} dbname=nova",
                  "--target", remote_db)  # fmt: skip
    one_line_error(done, "cannot connect to", 1)
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_wrong_password_is_not_shown(hub: Cluster, remote_db: str) -> None:
    secret = "wrong-secret-9876"
    dsn = f"postgresql://postgres:{secret}@127.0.0.1:{hub.port}/postgres"
    done = invoke("replicate", "add", "--one-way", "--source", dsn, "--target", remote_db,
                  env={"PGPASSFILE": "/dev/null"})  # fmt: skip
    one_line_error(done, "authentication failed", 1)
    assert secret not in done.stdout + done.stderr


def test_insecure_remote_source_is_refused() -> None:
    done = invoke("replicate", "add", "--one-way", "--source", "host=db.example.com dbname=nova",
                  "--target", "dbname=x")  # fmt: skip
    one_line_error(done, "--sslmode require", 2)


@pytest.fixture(scope="module")
def poor_clusters(cluster_root: Path, pg_version: int) -> Iterator[tuple[Cluster, Cluster]]:
    """Sources preflight must refuse: wal_level=replica, and too few replication slots."""
    low_wal = Cluster(cluster_root / f"lowwal{pg_version}", version=pg_version, ephemeral=True,
                      settings={"wal_level": "replica"})  # fmt: skip
    few = {"max_replication_slots": "2", "max_wal_senders": "2"}
    few_slots = Cluster(cluster_root / f"fewslots{pg_version}", version=pg_version,
                        ephemeral=True, settings=few)  # fmt: skip
    for cluster in (low_wal, few_slots):
        cluster.start()
        install.install(cluster.conninfo("nova_memory"))
    yield low_wal, few_slots
    low_wal.destroy()
    few_slots.destroy()


def test_preflight_names_each_fix(poor_clusters: tuple[Cluster, Cluster], remote_db: str) -> None:
    low_wal, few_slots = poor_clusters
    done = invoke("replicate", "add", "--one-way", "--source", low_wal.conninfo("nova_memory"),
                  "--target", remote_db)  # fmt: skip
    line = one_line_error(done, "wal_level is replica", 1)
    assert "ALTER SYSTEM SET wal_level = logical" in line, line
    done = invoke("replicate", "add", "--one-way", "--source", few_slots.conninfo("nova_memory"),
                  "--target", remote_db)  # fmt: skip
    line = one_line_error(done, "free replication slots", 1)
    assert "raise max_replication_slots" in line, line
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]
    for cluster in poor_clusters:
        assert execute(cluster.conninfo(), "SELECT count(*) FROM pg_replication_slots") == [(0,)]


def test_preflight_refuses_a_source_role_without_privileges(
    hub: Cluster, installed_db: str, remote_db: str
) -> None:
    execute(
        hub.conninfo(),
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain_agent')"
        " THEN CREATE ROLE plain_agent LOGIN; END IF; END $$",
    )
    name = helpers.dbname(installed_db)
    dsn = f"host={hub.socket_dir} port={hub.port} dbname={name} user=plain_agent"
    done = invoke("replicate", "add", "--one-way", "--source", dsn, "--target", remote_db)
    line = one_line_error(done, "not a superuser", 1)
    assert "connect to the source as a superuser" in line, line
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_unreachable_target_leaves_nothing_on_the_source(hub: Cluster, installed_db: str) -> None:
    port = free_port()
    done = invoke("replicate", "add", "--one-way",
                  "--source", installed_db, "--role", "ac_never_made",
                  "--target", f"host=127.0.0.1 port={port} dbname=graybeard")  # fmt: skip
    line = one_line_error(done, "cannot connect to", 1)
    assert f"127.0.0.1:{port}" in line, line
    assert execute(installed_db, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_never_made'"
    ) == [(0,)]


def test_sslmode_passes_through_to_the_subscription(
    hub: Cluster, installed_db: str, remote_db: str
) -> None:
    done = run_cli("replicate", "add", "--one-way", "--source", installed_db, "--target", remote_db,
                   "--sslmode", "disable")  # fmt: skip
    assert done.returncode == 0, done.stderr
    [(conninfo,)] = execute(remote_db, "SELECT subconninfo FROM pg_subscription")
    assert "sslmode=disable" in str(conninfo)


def made_on(hub: Cluster, source: str, target: str) -> tuple[object, ...]:
    """Roles, publications, slots and subscriptions that an add would make, counted."""
    return (
        execute(hub.conninfo(), "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'agent_chat%'"),
        execute(source, "SELECT count(*) FROM pg_publication"),
        execute(hub.conninfo(), "SELECT count(*) FROM pg_replication_slots"),
        execute(target, "SELECT count(*) FROM pg_subscription"),
    )


def test_check_changes_nothing_and_says_what_add_would_make(
    hub: Cluster, installed_db: str, installed_db2: str, tmp_path: Path
) -> None:
    db, db2 = installed_db, installed_db2
    before = made_on(hub, db, db2)
    config = ["--config", str(tmp_path / "agentchat.toml")]
    done = run_cli("replicate", "check", "--one-way", "--source", db, "--target", db2, *config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("replicate add would proceed: ")
    assert "steps: role, publication, slot, subscription, sync, install, topology" in lines[2]
    done = run_cli(
        "replicate", "check", "--one-way", "--source", db, "--target", db2, "--json", *config
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["findings"] == []
    assert result["plan"]["same_cluster"] is True and result["plan"]["already"] is False
    assert made_on(hub, db, db2) == before
    assert not (tmp_path / "agentchat.toml").exists()

    done = run_cli("replicate", "add", "--one-way", "--source", db, "--target", db2, *config)
    assert done.returncode == 0, done.stderr
    done = run_cli("replicate", "check", "--one-way", "--source", db, "--target", db2, *config)
    assert done.returncode == 0, done.stderr
    assert "add would change nothing" in done.stdout


def test_check_lists_every_finding_with_its_fix(
    poor_clusters: tuple[Cluster, Cluster], remote_db: str
) -> None:
    _low_wal, few_slots = poor_clusters
    source = few_slots.conninfo("nova_memory")
    done = run_cli("replicate", "check", "--one-way", "--source", source, "--target", remote_db)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("replicate add would stop: 2 problem(s) with ")
    for fragment in (
        "  replication_slots: source has 2 free replication slots",
        "    fix: raise max_replication_slots on the source",
        "  wal_senders: source has 2 free wal senders",
        "    fix: raise max_wal_senders on the source",
    ):
        assert fragment in done.stdout, done.stdout
    done = run_cli(
        "replicate", "check", "--one-way", "--source", source, "--target", remote_db, "--json"
    )
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert [f["check"] for f in result["findings"]] == ["replication_slots", "wal_senders"]
    assert all(f["fix"] for f in result["findings"])
    assert execute(remote_db, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_check_names_what_add_would_refuse_later(
    hub: Cluster, installed_db: str, installed_db2: str, remote_db: str, tmp_path: Path
) -> None:
    """A target subscribing elsewhere, and a topology file that names another source."""
    db, db2 = installed_db, installed_db2
    config = ["--config", str(tmp_path / "agentchat.toml")]
    done = run_cli("replicate", "add", "--one-way", "--source", db, "--target", remote_db, *config)
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "replicate", "check", "--one-way", "--source", db2, "--target", remote_db, *config
    )
    assert done.returncode == 1, done.stderr
    assert "  topology: " in done.stdout and "describes another source" in done.stdout
    assert "  target_subscription: " in done.stdout and "already subscribes" in done.stdout
    assert "    fix: remove it first: agentchat replicate remove" in done.stdout


def test_check_of_a_missing_target_creates_nothing(hub: Cluster, installed_db: str) -> None:
    missing = hub.conninfo("ac_check_missing")
    done = run_cli(
        "replicate", "check", "--one-way", "--source", installed_db, "--target", missing, "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plan"]["steps"][0] == "role"
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_database WHERE datname = 'ac_check_missing'"
    ) == [(0,)]


def test_check_refuses_an_insecure_remote_source_like_add() -> None:
    done = invoke("replicate", "check", "--one-way", "--source", "host=db.example.com dbname=nova",
                  "--target", "dbname=x")  # fmt: skip
    one_line_error(done, "--sslmode require", 2)


def test_two_way_add_check_and_remove(installed_db: str, installed_db2: str) -> None:
    config = ("--config", "topo.toml")
    done = run_cli("replicate", "check", "--source", installed_db, "--target", installed_db2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("replicate add would proceed: ") and "(two-way)" in done.stdout
    done = run_cli("replicate", "add", "--source", installed_db, "--target", installed_db2,
                   "--json", *config)  # fmt: skip
    result = json.loads(ok(done))
    hub, spoke = result["nodes"].values()
    assert result["links"] == [f"agent_chat_{hub}_to_{spoke}", f"agent_chat_{spoke}_to_{hub}"]
    assert 'mode = "two-way"' in Path("topo.toml").read_text()
    again = run_cli("replicate", "add", "--source", installed_db, "--target", installed_db2,
                    *config)  # fmt: skip
    assert ok(again).endswith("are linked already: nothing changed\n")
    done = run_cli("replicate", "remove", "--target", installed_db2, "--json", *config)
    removed = json.loads(ok(done))
    assert f"subscription agent_chat_{hub}_to_{spoke}" in removed["removed"]
    assert "two-way" not in Path("topo.toml").read_text()


def test_options_of_one_way_replication_need_one_way(installed_db: str, remote_db: str) -> None:
    for option in (("--role", "r"), ("--name", "n"), ("--no-copy-data",)):
        done = invoke("replicate", "add", "--source", installed_db, "--target", remote_db, *option)
        one_line_error(done, f"{option[0]} is for --one-way replication only", 2)
    done = invoke("replicate", "add", "--one-way", "--source", installed_db, "--target",
                  remote_db, "--back-dsn", "host=x")  # fmt: skip
    one_line_error(done, "--back-dsn is for two-way replication", 2)


def test_mesh_links_each_to_each(
    installed_db: str, installed_db2: str, installed_remote_db: str
) -> None:
    one = invoke("mesh", installed_db)
    one_line_error(one, "a mesh needs at least two DSNs", 2)
    done = run_cli("mesh", installed_db, installed_db2, installed_remote_db, "--json")
    result = json.loads(ok(done))
    assert len(set(result["nodes"].values())) == 3
    assert len(result["links"]) == 6
    done = run_cli("mesh", installed_db, installed_db2, installed_remote_db)
    assert ok(done).endswith("are linked already: nothing changed\n")
