"""The exceptions agentchat raises.

Every error a user can cause is an :class:`AgentchatError`; its message is one line that says what
went wrong, and :attr:`AgentchatError.fix` (when known) what to do about it. The library raises,
only the CLI turns errors into messages and exit codes.
"""

from __future__ import annotations


class AgentchatError(Exception):
    """Root of every error agentchat raises on purpose."""

    #: process exit code the CLI uses for this kind of error
    exit_code: int = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class InvalidInput(AgentchatError):
    """An argument is malformed (a name too long, an empty message, ...)."""

    exit_code = 2


class ConfigError(AgentchatError):
    """The local setup is wrong (missing optional dependency, unusable directory, ...)."""


class DatabaseError(AgentchatError):
    """A database operation failed.

    :attr:`sqlstate` and :attr:`constraint` are the server's (``None`` when the server did not
    say, e.g. for a connection that broke); the driver's exception stays on the chain as
    ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        sqlstate: str | None = None,
        constraint: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.sqlstate = sqlstate
        self.constraint = constraint

    @property
    def transient(self) -> bool:
        """Worth a retry on a new connection or transaction: the connection broke or the server
        is going away (classes 08, 57P), a serialization failure or deadlock (class 40), or too
        many connections (53300)."""
        return is_transient(self.sqlstate) or isinstance(self, ConnectionFailed)


class ConnectionFailed(DatabaseError):
    """The server could not be reached."""


class AuthenticationFailed(ConnectionFailed):
    """The server refused the credentials."""

    @property
    def transient(self) -> bool:
        return False


class ConnectionLost(ConnectionFailed):
    """An open connection broke (the server restarted, the network dropped it)."""


class DatabaseMissing(DatabaseError):
    """The database does not exist (and we were told not to create it)."""


class ExtensionMissing(DatabaseError):
    """A required extension (pgvector) is not available on the server."""


class MigrationError(DatabaseError):
    """A schema migration failed; its transaction was rolled back."""


class ReplicationError(AgentchatError):
    """Setting up, waiting for or tearing down replication could not finish."""


class DeliveryError(AgentchatError):
    """The agent API was used in a way delivery cannot honour (``reply`` outside a delivery,
    the sync call on an async agent, ...)."""


class TimedOut(AgentchatError):
    """Something awaited did not happen in time."""


class ServerError(AgentchatError):
    """An embedded PostgreSQL cluster could not be initialised, started or stopped."""


#: SQLSTATE classes and codes after which the same work may succeed when tried again
_TRANSIENT_CLASSES = ("08", "40", "57P")
_TRANSIENT_CODES = ("53300",)


def is_transient(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE is worth a retry (:attr:`DatabaseError.transient`)."""
    if not sqlstate:
        return False
    return sqlstate.startswith(_TRANSIENT_CLASSES) or sqlstate in _TRANSIENT_CODES
