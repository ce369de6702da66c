"""Test helpers: database teardown, seed-style subscriptions, waiting for replication."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import sql

from agentchat.server import Cluster

T = TypeVar("T")
REPLICATION_PASSWORD = "test-only-replication-password"


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def wait_for(predicate: Callable[[], T], timeout: float = 20, what: str = "condition") -> T:
    """Poll until *predicate* returns something truthy; fail the test after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def dbname(conninfo: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"])


def execute(conninfo: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params or None)  # tests may use plain strings
        return cur.fetchall() if cur.description else []


def marks(conninfo: str, agent: str | None = None) -> list[tuple[int, str, str]]:
    """The delivery marks (chat_id, agent, status), of one agent or all, in order."""
    rows = execute(
        conninfo,
        "SELECT chat_id, agent, status FROM agent_chat_processed"
        " WHERE %s::text IS NULL OR agent = %s ORDER BY chat_id, agent",
        (agent, agent),
    )
    return [(int(str(c)), str(a), str(s)) for c, a, s in rows]


def drop_database(cluster: Cluster, name: str) -> None:
    """Drop a test database, first its subscriptions and any replication slots in it."""
    try:
        with psycopg.connect(cluster.conninfo(name), autocommit=True) as conn:
            for (sub,) in conn.execute(
                "SELECT subname FROM pg_subscription"
                " WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchall():
                ident = sql.Identifier(sub)
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    except psycopg.OperationalError:
        pass
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            slots = conn.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                (name,),
            ).fetchall()
            if not slots:
                break
            for slot, pid in slots:
                if pid:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                except psycopg.Error:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def ensure_replication_user(conninfo: str) -> None:
    """The seed's `replication_user` (LOGIN REPLICATION), created once per cluster."""
    execute(
        conninfo,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replication_user')"
        " THEN CREATE ROLE replication_user LOGIN REPLICATION"
        f" PASSWORD '{REPLICATION_PASSWORD}'; END IF; END $$",
    )


def seed_subscribe(
    source: str, target: str, name: str, *, source_cluster: Cluster, same_cluster: bool
) -> None:
    """The seed's steps 1 and 2, by hand: a publication on the source, a subscription on target.

    In one cluster the seed's plain CREATE SUBSCRIPTION hangs forever, so (as the facts sheet
    says) the slot is created first and the subscription uses create_slot = false.
    """
    execute(source, "CREATE PUBLICATION agent_chat_pub FOR TABLE agent_chat")
    if same_cluster:
        conn_source = source_cluster.conninfo(dbname(source))
        execute(source, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
        options = f"WITH (create_slot = false, slot_name = '{name}')"
    else:
        # another "host": over TCP as a replication role, as the seed's conninfo does
        ensure_replication_user(source)
        execute(source, "GRANT SELECT ON agent_chat TO replication_user")
        conn_source = psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=source_cluster.port, dbname=dbname(source),
            user="replication_user", password=REPLICATION_PASSWORD,
        )  # fmt: skip
        options = ""
    execute(
        target,
        f"CREATE SUBSCRIPTION {name} CONNECTION '{conn_source}' PUBLICATION agent_chat_pub"
        f" {options}",
    )
    wait_for(
        lambda: execute(
            target,
            "SELECT count(*) = count(*) FILTER (WHERE srsubstate = 'r') AND count(*) > 0"
            " FROM pg_subscription_rel",
        )[0][0],
        what="initial sync",
    )


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the real `agentchat` console script, as a user would."""
    import os
    import sys

    exe = Path(sys.executable).with_name("agentchat")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, **(env or {})}, input=input, cwd=cwd,
    )  # fmt: skip
