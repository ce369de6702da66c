"""Connection-string handling: libpq conventions, and passwords never shown."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agentchat import _db, errors


def test_database_override_keeps_the_rest() -> None:
    info = _db.make_conninfo("postgresql://u@h:5433/a?sslmode=require", dbname="b")
    params = psycopg.conninfo.conninfo_to_dict(info)
    assert params == {"user": "u", "host": "h", "port": "5433", "dbname": "b", "sslmode": "require"}


def test_describe_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    text = _db.describe("postgresql://u:s3cret@db.example:5433/nova?sslmode=require")
    assert text == 'database "nova" on db.example:5433'
    assert "s3cret" not in text


def test_describe_uses_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "/run/pg")
    monkeypatch.setenv("PGPORT", "6543")
    assert _db.describe("dbname=x") == 'database "x" on socket /run/pg:6543'


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "must not be empty"), ("a\x00b", "NUL"), ("é" * 32, "at most 63")],
)
def test_identifiers_postgres_would_mangle_are_refused(name: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        _db.validate_identifier(name, "database")


def test_odd_but_legal_identifiers_pass() -> None:
    for name in ['we"ird', "semi;colon", "with space", "メモリ"]:
        assert _db.validate_identifier(name) == name


def test_malformed_dsn_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput, match="invalid connection string"):
        _db.make_conninfo("host = = nonsense")


def test_long_lived_connections_get_keepalives_unless_the_dsn_sets_them() -> None:
    plain = conninfo_to_dict(_db.prepare("dbname=x"))
    assert "keepalives" not in plain and plain["application_name"] == "agentchat"
    agent = conninfo_to_dict(_db.prepare("dbname=x keepalives_idle=60", long_lived=True))
    assert agent["keepalives"] == "1" and agent["tcp_user_timeout"] == "10000"
    assert agent["keepalives_idle"] == "60"  # the user's choice wins
    named = conninfo_to_dict(_db.prepare("dbname=x application_name=nova"))
    assert named["application_name"] == "nova"
