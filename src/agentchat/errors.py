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
    """A database operation failed."""


class ConnectionFailed(DatabaseError):
    """The server could not be reached."""


class AuthenticationFailed(ConnectionFailed):
    """The server refused the credentials."""


class DatabaseMissing(DatabaseError):
    """The database does not exist (and we were told not to create it)."""


class ExtensionMissing(DatabaseError):
    """A required extension (pgvector) is not available on the server."""


class MigrationError(DatabaseError):
    """A schema migration failed; its transaction was rolled back."""


class ServerError(AgentchatError):
    """An embedded PostgreSQL cluster could not be initialised, started or stopped."""
