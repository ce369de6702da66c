"""Moved to :mod:`agentchat.replication.preflight`; this path keeps working."""

from __future__ import annotations

from agentchat.replication.preflight import (
    MIN_VERSION_NUM,
    PUBLISHED_TABLES,
    STRICT_SSLMODES,
    Finding,
    PreflightFailed,
    SourceFacts,
    TargetFacts,
    check_transport,
    judge,
    source_facts,
    target_facts,
)

__all__ = [
    "MIN_VERSION_NUM",
    "PUBLISHED_TABLES",
    "STRICT_SSLMODES",
    "Finding",
    "PreflightFailed",
    "SourceFacts",
    "TargetFacts",
    "check_transport",
    "judge",
    "source_facts",
    "target_facts",
]
