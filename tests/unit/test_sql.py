"""The SQL loader: named blocks and migrations, no database needed."""

from __future__ import annotations

import pytest

from agentchat.sql import load_migrations, parse_queries, queries


def test_named_blocks_are_split() -> None:
    found = parse_queries("-- name: a\n-- first\nSELECT 1;\n\n-- name: b\nSELECT 2;\n")
    assert list(found) == ["a", "b"]
    assert found["b"].as_string() == "SELECT 2;"


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_shipped_queries_and_migrations_load() -> None:
    assert {"trigger_status", "replication_role", "migration_lock"} <= set(queries)
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert len(migrations[0].checksum) == 64
