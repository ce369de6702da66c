"""Moved to :mod:`agentchat.replication.role`; this path keeps working."""

from __future__ import annotations

from agentchat.replication.role import (
    create_role,
    drop_role,
    ensure_role,
    find_password,
    give_own_role,
    new_password,
    no_statement_logging,
    password_fails,
    restore_passfile,
    role_of,
    set_password,
)

__all__ = [
    "create_role",
    "drop_role",
    "ensure_role",
    "find_password",
    "give_own_role",
    "new_password",
    "no_statement_logging",
    "password_fails",
    "restore_passfile",
    "role_of",
    "set_password",
]
