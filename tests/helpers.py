"""Test helpers: databases (created from a template, torn down), seed-style subscriptions,
waiting for replication, and the CLI run as users run it (:func:`run_cli`) or in-process
(:func:`invoke`), with the checks every CLI test makes (:func:`ok`, :func:`one_line_error`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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


def execute(conninfo: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
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


def create_database(cluster: Cluster, name: str, template: str | None = None) -> None:
    """``CREATE DATABASE name TEMPLATE template STRATEGY FILE_COPY`` (template1 by default): the
    template's files copied (PostgreSQL 15+) instead of WAL-logged page by page, and no
    installer run when the template has agentchat installed (tests/conftest.py's
    ``hub_template``): a fraction of the time of ``CREATE DATABASE`` plus ``install``."""
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
        sql.Identifier(name), sql.Identifier(template or "template1")
    )
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(query)


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


#: the installed console script, as users run it
EXE = str(Path(sys.executable).with_name("agentchat"))


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    unset: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the real `agentchat` console script, as a user would: *env* added to the
    environment and the variables in *unset* taken out, *input* (text or raw bytes) on stdin
    (none: an empty stdin), output decoded (an undecodable byte shown as U+FFFD, never an
    exception here)."""
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        [EXE, *args], input=input.encode() if isinstance(input, str) else input,
        stdin=subprocess.DEVNULL if input is None else None, capture_output=True, check=False,
        timeout=timeout, env={**environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )  # fmt: skip


def invoke(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `agentchat ARGS` in this process (click's CliRunner through :func:`agentchat.cli.main`,
    so errors become one line and an exit code as in the console script): no interpreter to
    start, for commands that need no separate process. Same result shape as :func:`run_cli`."""
    from click.testing import CliRunner

    from agentchat.cli import main

    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        code = main(list(args))
    return subprocess.CompletedProcess(
        ["agentchat", *args], code, out.getvalue().decode(errors="replace"),
        err.getvalue().decode(errors="replace"),
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """A command that succeeded: exit 0, no traceback; its stdout."""
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str], fragment: str, code: int) -> str:
    """Exit *code*, nothing on stdout, one `agentchat: error: ` line with *fragment* on stderr."""
    assert done.returncode == code, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agentchat: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    return lines[0]


def pg_env(cluster: Cluster) -> dict[str, str]:
    """libpq's variables pointing at *cluster* as its superuser (for `--database NAME`)."""
    return {"PGHOST": str(cluster.socket_dir), "PGPORT": str(cluster.port), "PGUSER": "postgres"}
