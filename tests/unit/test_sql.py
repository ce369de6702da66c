"""The SQL loader: named blocks and migrations, no database needed."""

from __future__ import annotations

import pytest
from psycopg import sql

from agentchat import schema
from agentchat.sql import (
    Migration,
    load_migrations,
    parse_queries,
    placeholders,
    queries,
    statement_text,
)


def test_named_blocks_are_split() -> None:
    found = parse_queries("-- name: a\n-- first\nSELECT 1;\n\n-- name: b\nSELECT 2;\n")
    assert list(found) == ["a", "b"]
    assert found["b"].as_string() == "SELECT 2;"


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_shipped_queries_and_migrations_load() -> None:
    assert {"trigger_status", "node_kind", "migration_lock"} <= set(queries)
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert len(migrations[0].checksum) == 64


@pytest.mark.parametrize(
    ("block", "statement"),
    [
        ("-- what it is for\nDROP ROLE {role};", "DROP ROLE {role}"),
        ("-- one\n-- two\nSELECT 1;\n", "SELECT 1"),
        ("SELECT '--not a comment';", "SELECT '--not a comment'"),
        ("  -- indented comment\nSELECT 2", "SELECT 2"),
    ],
)
def test_statement_text_drops_comments_and_the_semicolon(block: str, statement: str) -> None:
    assert statement_text(block) == statement


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("CREATE ROLE {role} PASSWORD {password}", {"role", "password"}),
        ("SELECT '{}'::int[]", set()),
        ("SELECT {{literal}}", set()),
        ("SELECT %s", set()),
    ],
)
def test_placeholders(text: str, found: set[str]) -> None:
    assert placeholders(text) == found


def test_compose_fills_a_shipped_template() -> None:
    statement = queries.compose("drop_database", database=sql.Identifier("a b"))
    assert statement.as_string(None) == 'DROP DATABASE IF EXISTS "a b"'


def test_every_block_has_a_description_line() -> None:
    for name, query in queries.items():
        assert query.as_string(None).startswith("--"), name


M1, M2, M3 = (Migration(v, f"m{v}", f"SELECT {v};") for v in (1, 2, 3))


@pytest.mark.parametrize(
    ("applied", "mismatched", "backfilled"),
    [
        ({}, [], []),  # a new database
        ({1: M1.checksum, 2: M2.checksum}, [], []),  # as shipped
        ({1: M1.checksum, 2: "0" * 64}, [2], []),  # tampered
        ({1: "", 2: M2.checksum}, [], [1]),  # recorded without a checksum: backfilled
        ({1: "   ", 2: "", 3: "x"}, [3], [1, 2]),
        ({1: M1.checksum, 9: "unknown"}, [], []),  # newer than this agentchat: not judged here
    ],
)
def test_compare_checksums(
    applied: dict[int, str], mismatched: list[int], backfilled: list[int]
) -> None:
    mismatches, backfill = schema.compare_checksums(applied, [M1, M2, M3])
    assert [m.version for m in mismatches] == mismatched
    assert [m.version for m in backfill] == backfilled


def test_a_mismatch_names_the_migration_and_the_fix() -> None:
    [mismatch], _ = schema.compare_checksums({2: "bad"}, [M1, M2])
    error = schema.mismatch_error([mismatch])
    assert "0002_m2" in error.message
    assert error.fix is not None and "UPDATE agentchat_migrations" in error.fix
