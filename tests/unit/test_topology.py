"""The topology file and libpq passfiles, no database needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentchat import errors, passfile, topology


def test_round_trip_without_passwords(tmp_path: Path) -> None:
    topo = topology.load(tmp_path / "agentchat.toml")
    assert not topo.exists and topo.databases() == []
    topo.add_replica(
        "postgresql://postgres:s3cret@db1:5432/nova_memory", "agent_chat_pub",
        "agent_chat_from_nova", "host=db2 dbname=graybeard_memory password=other",
    )  # fmt: skip
    topo.save()
    text = topo.path.read_text()
    assert "s3cret" not in text and "other" not in text
    again = topology.load(topo.path)
    assert again.source == "user=postgres dbname=nova_memory host=db1 port=5432"
    assert [r.name for r in again.replicas] == ["agent_chat_from_nova"]
    assert again.replica(dsn="dbname=graybeard_memory host=db2") is not None
    assert again.remove_replica("host=db2 dbname=graybeard_memory")
    assert again.replicas == []


def test_a_second_source_needs_its_own_file(tmp_path: Path) -> None:
    topo = topology.Topology(tmp_path / "agentchat.toml")
    topo.add_replica("host=a dbname=nova", "p", "s", "host=b dbname=x")
    with pytest.raises(errors.ConfigError, match="another source"):
        topo.add_replica("host=c dbname=nova", "p", "s", "host=b dbname=y")


def test_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert topology.locate() == tmp_path / "agentchat.toml"  # conftest's private cwd
    monkeypatch.setenv("AGENTCHAT_CONFIG", "/etc/agentchat.toml")
    assert topology.locate() == Path("/etc/agentchat.toml")
    assert topology.locate("x.toml") == Path("x.toml")
    with pytest.raises(errors.ConfigError, match="does not exist"):
        topology.load(tmp_path / "missing.toml", required=True)
    (tmp_path / "bad.toml").write_text("[[replicas]]\nname = 1\n")
    with pytest.raises(errors.ConfigError, match="malformed"):
        topology.load(tmp_path / "bad.toml")


def test_passfile_lines_are_escaped_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    passfile.write_passfile(path, "/run/pg", "5432", "nova", "replicator", "a:b\\c")
    passfile.write_passfile(path, "db1", "5432", "nova", "other", "x")
    assert path.stat().st_mode & 0o777 == 0o600
    assert passfile.read_passfile(path, "replicator") == "a:b\\c"
    passfile.write_passfile(path, "/run/pg", "5432", "nova", "replicator", "new")
    assert path.read_text().splitlines() == ["db1:5432:nova:other:x", "*:5432:nova:replicator:new"]


def test_two_way_children_relays_and_a_mesh_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "agentchat.toml"
    topo = topology.Topology(path)
    topo.record_link("host=h dbname=hub password=p", "host=a dbname=a", "agent_chat_1_to_2")
    topo.record_link("host=a dbname=a", "host=b dbname=b password=q", "agent_chat_2_to_3")
    topo.record_mesh(["host=m dbname=x", "host=n dbname=y password=r"])
    assert "password=" not in path.read_text()
    dsn = topology.strip_password
    again = topology.load(path)
    assert again.source == dsn("host=h dbname=hub")
    assert [(r.dsn, r.mode, r.parent) for r in again.replicas] == [
        (dsn("host=a dbname=a"), "two-way", None),
        (dsn("host=b dbname=b"), "two-way", dsn("host=a dbname=a")),
    ]
    assert again.mesh == [dsn("host=m dbname=x"), dsn("host=n dbname=y")]
    assert again.databases()[-2:] == again.mesh
    with pytest.raises(errors.ConfigError, match="has neither"):
        again.add_link("host=z dbname=z", "host=c dbname=c", "agent_chat_9_to_4")
    assert again.forget_link("host=n dbname=y") and again.forget_link("host=b dbname=b")
    assert [r.dsn for r in topology.load(path).replicas] == [dsn("host=a dbname=a")]
