"""Connections across a routine restart: a server that says it is restarting is waited for."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from agentchat import _db, errors
from agentchat.server import Cluster, free_port
from tests.helpers import wait_for


def test_connect_waits_for_a_restarting_server(cluster_root: Path, pg_version: int) -> None:
    cluster = Cluster(cluster_root / f"restart-{uuid.uuid4().hex[:6]}", version=pg_version,
                      ephemeral=True)  # fmt: skip
    cluster.start()
    try:
        holder = psycopg.connect(cluster.conninfo(), autocommit=True)
        stopping = threading.Thread(target=cluster.stop, args=("smart",))
        stopping.start()  # a smart shutdown waits for the holder: "shutting down" meanwhile

        def says_shutting_down() -> bool:
            try:
                psycopg.connect(cluster.conninfo()).close()
            except psycopg.OperationalError as exc:
                return "shutting down" in str(exc)
            return False

        wait_for(says_shutting_down, what="the server to say it is shutting down")

        def restart() -> None:
            holder.close()
            stopping.join()
            cluster.start()

        restarting = threading.Timer(1.0, restart)
        restarting.start()
        try:
            with _db.connect(cluster.conninfo()) as conn:  # waits through stop and start
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            restarting.join()

        async def connect_async() -> None:
            conn = await _db.connect_async(cluster.conninfo())
            await conn.close()

        asyncio.run(connect_async())
    finally:
        cluster.destroy()


def test_a_wrong_address_still_fails_at_once() -> None:
    wrong = f"host=127.0.0.1 port={free_port()} dbname=x user=x connect_timeout=2"
    with pytest.raises(errors.ConnectionFailed, match="Connection refused"):
        _db.connect(wrong)


def test_settings_on_a_database_without_and_with_the_schema(db: str) -> None:
    from agentchat import install, settings

    with _db.connection(db) as conn:
        assert settings.get(conn, settings.SOURCE_CONNINFO) is None  # no agentchat_settings yet
    install.install(db)
    with _db.connection(db) as conn:
        assert settings.get(conn, settings.HISTORY_FROM) is None
        settings.put(conn, settings.HISTORY_FROM, "42")
        settings.put(conn, settings.HISTORY_FROM, "43")
        assert settings.get(conn, settings.HISTORY_FROM) == "43"
        settings.delete(conn, settings.HISTORY_FROM)
        settings.delete(conn, settings.HISTORY_FROM)
        assert settings.get(conn, settings.HISTORY_FROM) is None


def test_a_query_error_carries_its_sqlstate_and_constraint(installed_db: str) -> None:
    with pytest.raises(errors.DatabaseError) as info, _db.connection(installed_db) as conn:
        conn.execute("CREATE TABLE t (id int CONSTRAINT t_pk PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")
    assert info.value.sqlstate == "23505" and info.value.constraint == "t_pk"
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
