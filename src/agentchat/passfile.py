"""Moved to :mod:`agentchat.replication.passfile`; this path keeps working."""

from __future__ import annotations

from agentchat.replication.passfile import (
    read_passfile,
    remove_passfile_line,
    write_passfile,
)

__all__ = [
    "read_passfile",
    "remove_passfile_line",
    "write_passfile",
]
