"""The driver-error boundary: psycopg errors become agentchat errors, SQLSTATE and cause kept."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from agentchat import _db, errors


@pytest.mark.parametrize(
    ("driver_error", "kind", "sqlstate", "transient"),
    [
        (psycopg.errors.UniqueViolation("dup"), errors.DatabaseError, "23505", False),
        (psycopg.errors.UndefinedTable("no table"), errors.DatabaseError, "42P01", False),
        (psycopg.errors.SerializationFailure("retry"), errors.DatabaseError, "40001", True),
        (psycopg.errors.DeadlockDetected("deadlock"), errors.DatabaseError, "40P01", True),
        (psycopg.errors.TooManyConnections("full"), errors.DatabaseError, "53300", True),
        (psycopg.errors.ReadOnlySqlTransaction("replica"), errors.DatabaseError, "25006", False),
        (psycopg.errors.AdminShutdown("bye"), errors.ConnectionLost, "57P01", True),
        (psycopg.errors.CannotConnectNow("starting"), errors.ConnectionLost, "57P03", True),
        (
            psycopg.OperationalError("server closed the connection"),
            errors.ConnectionLost,
            None,
            True,
        ),
        (psycopg.errors.CheckViolation("bad"), errors.InvalidInput, None, False),
        (psycopg.errors.InvalidParameterValue("bad"), errors.InvalidInput, None, False),
    ],
)
def test_translate(
    driver_error: psycopg.Error, kind: type, sqlstate: str | None, transient: bool
) -> None:
    error = _db.translate(driver_error)
    assert type(error) is kind
    if isinstance(error, errors.DatabaseError):
        assert error.sqlstate == sqlstate
        assert error.transient is transient


def test_lost_connection_names_the_database_without_password() -> None:
    error = _db.translate(
        psycopg.OperationalError("server closed the connection unexpectedly"),
        "host=db.example port=5433 dbname=nova_memory user=nova password=s3cret",
    )
    assert isinstance(error, errors.ConnectionLost)
    assert "nova_memory" in str(error) and "db.example" in str(error)
    assert "s3cret" not in str(error)


def test_wrap_errors_keeps_the_cause() -> None:
    cause = psycopg.errors.UniqueViolation("duplicate key")
    with pytest.raises(errors.DatabaseError) as info, _db.wrap_errors():
        raise cause
    assert info.value.__cause__ is cause
    assert info.value.sqlstate == "23505"
    assert info.value.message == "duplicate key"


def test_wrap_errors_lets_agentchat_errors_and_others_through() -> None:
    mine = errors.InvalidInput("no")
    with pytest.raises(errors.InvalidInput) as info, _db.wrap_errors():
        raise mine
    assert info.value is mine
    with pytest.raises(KeyError), _db.wrap_errors():
        raise KeyError("x")


def test_wrap_exceptions_sync_and_async() -> None:
    @_db.wrap_exceptions
    def sync() -> int:
        raise psycopg.errors.DeadlockDetected("deadlock")

    @_db.wrap_exceptions
    async def coro() -> int:
        await asyncio.sleep(0)
        raise psycopg.errors.AdminShutdown("terminating")

    with pytest.raises(errors.DatabaseError) as info:
        sync()
    assert info.value.sqlstate == "40P01" and info.value.transient
    with pytest.raises(errors.ConnectionLost) as lost:
        asyncio.run(coro())
    assert lost.value.sqlstate == "57P01"


def test_wrapped_functions_keep_their_results_and_names() -> None:
    @_db.wrap_exceptions
    def answer() -> int:
        """The answer."""
        return 42

    assert answer() == 42
    assert answer.__name__ == "answer" and answer.__doc__ == "The answer."


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        (None, False),
        ("", False),
        ("08006", True),
        ("08001", True),
        ("40001", True),
        ("57P01", True),
        ("53300", True),
        ("53100", False),
        ("23505", False),
        ("57014", False),
        ("42501", False),
    ],
)
def test_is_transient(sqlstate: str | None, transient: bool) -> None:
    assert errors.is_transient(sqlstate) is transient


def test_authentication_failure_is_not_worth_a_retry() -> None:
    assert errors.ConnectionFailed("refused").transient
    assert not errors.AuthenticationFailed("wrong password").transient


def test_new_kinds_are_agentchat_errors_with_exit_code_1() -> None:
    for kind in (errors.ReplicationError, errors.DeliveryError, errors.TimedOut):
        error = kind("x", fix="y")
        assert isinstance(error, errors.AgentchatError)
        assert error.exit_code == 1 and str(error) == "x (y)"
