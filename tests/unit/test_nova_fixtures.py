"""The fixtures of NOVA's clients' SQL (tests/fixtures/nova/) and their runner's parsing and
parameter conversion; no database. Where a copy of NOVA's repositories is on the machine (not
in CI), each block is also checked against its source, byte-for-byte."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import nova_clients
from tests.nova_clients import Statement

#: the commits the fixtures were copied from (issue 16)
COMMITS = {
    "NOVA-Openclaw/nova-mind": {
        "b522b80909d4da4b70c2a14f90c2e77ddde342ac",  # the seed-era plugin and the agents' SQL
        "6a550f21b9efe39a6541404eec4b33a67f0f2d29",  # its scripts, at the head
    },
    "NOVA-Openclaw/agent-chat": {"a1c9e9ba5531a811ce1d624e32738493a5ff5bbe"},
}

#: every statement each client runs, so that a block lost from a file fails here
NAMES = {
    "seed_plugin": {
        "fetch_unprocessed", "mark_received", "mark_routed", "mark_responded", "mark_failed",
        "insert_outbound", "listen", "keep_alive", "unlisten",
    },
    "seed_tools": {
        "skill_send", "skill_check_recent", "skill_example_send", "skill_example_check",
        "protocol_send", "protocol_check_recent", "protocol_send_multiline", "protocol_poll",
        "protocol_send_alias", "protocol_send_multi",
    },
    "plugin": {
        "fetch_unprocessed", "mark_received", "mark_routed", "mark_responded", "mark_failed",
        "send", "listen", "keep_alive", "unlisten",
    },
    "installer": {
        "install_list_databases", "install_connectivity", "install_can_createdb",
        "install_schema_version", "install_drift", "cron_expire_old_chat",
        "register_connectivity", "register_can_createrole", "register_role_exists",
        "register_create_role", "register_set_password", "register_grant_agent_chat",
        "register_grant_processed", "register_grant_sequence", "register_verify_login",
    },
    "scripts": {"daily_log_total", "daily_log_top_senders", "gate_unacknowledged"},
}  # fmt: skip

ALL = nova_clients.load_all()
IDS = [f"{s.file}:{s.name}" for s in ALL]


def test_every_file_has_its_statements() -> None:
    assert set(NAMES) == set(nova_clients.FILES)
    for file, names in NAMES.items():
        assert set(nova_clients.load(file)) == names, file


@pytest.mark.parametrize("stmt", ALL, ids=IDS)
def test_block_header(stmt: Statement) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", stmt.name)
    assert re.fullmatch(r"[0-9a-f]{40}", stmt.commit)
    assert stmt.commit in COMMITS[stmt.repo], stmt.source
    first, last = stmt.lines
    assert 1 <= first <= last
    assert stmt.style in nova_clients.STYLES
    if stmt.file in ("seed_plugin", "plugin"):
        assert stmt.style == "node-pg"
    if stmt.file == "scripts":
        assert stmt.style == "psycopg2"
    for old, new in stmt.substs:
        assert old and new and new in stmt.sql, (old, new)
        said = old.strip('\\"')
        assert any(said in note for note in stmt.notes), "a substitution is said in a -- note:"


@pytest.mark.parametrize("stmt", ALL, ids=IDS)
def test_params_match_placeholders(stmt: Statement) -> None:
    assert len(stmt.params) == stmt.placeholders()
    if stmt.style == "node-pg":
        used = {int(n) for n in re.findall(r"\$(\d+)", stmt.sql)}
        assert used == set(range(1, len(stmt.params) + 1)), "every $n from $1 on, no gap"
        assert "%s" not in stmt.sql
    elif stmt.style == "psycopg2":
        assert not re.search(r"\$\d", stmt.sql)
        assert "%" not in stmt.sql.replace("%s", ""), "a bare % would need %% for psycopg2"
    else:
        assert not stmt.params
        assert not re.search(r"\$\d", stmt.sql) and "%s" not in stmt.sql


def _tokens_outside_literals(sql: str) -> str:
    """The statement with its string literals, quoted identifiers and comments blanked out;
    fails on one left open."""
    out = []
    i = 0
    while i < len(sql):
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
        elif ch in "'\"":
            end = i + 1
            while True:
                end = sql.find(ch, end)
                assert end >= 0, f"unterminated {ch} at {i}"
                if sql.startswith(ch * 2, end):
                    end += 2
                    continue
                break
            out.append(" x ")
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@pytest.mark.parametrize("stmt", ALL, ids=IDS)
def test_block_is_one_whole_statement(stmt: Statement) -> None:
    """A statement of its own: literals closed, parentheses balanced, at most a trailing ``;``
    (the server parses each of them in tests/integration/test_nova_statements.py)."""
    code = _tokens_outside_literals(stmt.sql)
    depth = 0
    for ch in code:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert ";" not in code.rstrip().removesuffix(";")
    keyword = code.split()[0].upper()
    assert keyword in {
        "SELECT",
        "INSERT",
        "UPDATE",
        "LISTEN",
        "UNLISTEN",
        "GRANT",
        "CREATE",
        "ALTER",
    }


def test_fixtures_alone_suffice() -> None:
    """The runner reads only the files under tests/fixtures/nova/ (NOVA's code is not in CI)."""
    root = Path(__file__).resolve().parents[1]
    assert nova_clients.FIXTURES.resolve() == root / "fixtures" / "nova"
    for file in nova_clients.FILES:
        text = (nova_clients.FIXTURES / f"{file}.sql").read_text(encoding="utf-8")
        assert "/work/" not in text and "nova-src" not in text
    source = Path(nova_clients.__file__).read_text(encoding="utf-8")
    assert "/work" not in source and "nova-src" not in source


# -- against the source, where a copy of it is here -----------------------------------------

#: bare copies of their repositories (owner+name/repo), where a session fetched them
MIRRORS = Path(os.environ.get("NOVA_MIRRORS", "/work/.mirror"))


def _source_text(stmt: Statement) -> str | None:
    repo = MIRRORS / stmt.repo.replace("/", "+") / "repo"
    if not repo.is_dir():
        return None
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"{stmt.commit}:{stmt.path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


@pytest.mark.parametrize("stmt", ALL, ids=IDS)
def test_block_is_byte_for_byte_its_source(stmt: Statement) -> None:
    text = _source_text(stmt)
    if text is None:
        pytest.skip(f"no copy of {stmt.repo} at {stmt.commit[:7]} here")
    first, last = stmt.lines
    cited = "\n".join(text.split("\n")[first - 1 : last])
    original = stmt.sql
    for old, new in reversed(stmt.substs):
        original = original.replace(new, old)
    if first == last:  # a one-line statement inside a call: client.query("..."), psql -c "..."
        assert original in cited, f"{stmt.source} does not hold the block"
    else:  # the cited lines, whole
        assert original == cited, f"{stmt.source} differs from the block"


# -- the runner --------------------------------------------------------------------------------


def test_node_pg_values() -> None:
    value = nova_clients.node_pg_value
    assert value(None) is None
    assert value(True) == "true" and value(False) == "false"
    assert value(42) == "42" and value(1.5) == "1.5"
    assert value([]) == "{}"
    assert value(["a", "b"]) == '{"a","b"}'
    assert value(['q"uo\\te', None, ["x"]]) == '{"q\\"uo\\\\te",NULL,{"x"}}'
    assert value([1, True]) == '{"1","true"}'
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert value(when) == "2026-01-02T03:04:05.678+00:00"
    assert value({"a": 1}) == '{"a": 1}'


def test_parse_rejects_malformed_blocks() -> None:
    good = "-- name: a\n-- source: o/r@" + "0" * 40 + " p.ts:1\n-- style: psql\nSELECT 1\n\n"
    parsed = nova_clients._parse("x", "-- file comment\n\n" + good)
    assert parsed["a"].sql == "SELECT 1" and parsed["a"].lines == (1, 1)
    with pytest.raises(ValueError, match="used twice"):
        nova_clients._parse("x", good + good)
    with pytest.raises(ValueError, match="source"):
        nova_clients._parse("x", "-- name: a\n-- style: psql\nSELECT 1\n")
    with pytest.raises(ValueError, match="no statement"):
        nova_clients._parse("x", good.replace("SELECT 1\n", ""))
    with pytest.raises(ValueError, match="OLD => NEW"):
        nova_clients._parse("x", good.replace("-- style", "-- subst: nothing\n-- style"))
    with pytest.raises(ValueError, match="bad source"):
        _ = nova_clients._parse("x", good.replace("0" * 40, "abc1234"))["a"].commit


def test_run_checks_the_number_of_params() -> None:
    stmt = nova_clients.load("seed_plugin")["mark_failed"]
    with pytest.raises(TypeError, match="takes 3 parameters, got 1"):
        nova_clients.run(None, stmt, 1)  # type: ignore[arg-type]


def test_replacing_records_the_substitution() -> None:
    grant = nova_clients.load("installer")["register_grant_agent_chat"]
    other = grant.replacing('"nova"', '"nova_2"')
    assert other.sql.endswith('TO "nova_2";')
    assert other.substs[-1] == ('"nova"', '"nova_2"')
    with pytest.raises(ValueError):
        grant.replacing("absent", "x")
