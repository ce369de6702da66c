"""Kept for compatibility: verify lives in :mod:`agentchat.ops.verify`; new code imports it
from there."""

from __future__ import annotations

from agentchat.ops.verify import VerifyResult as VerifyResult
from agentchat.ops.verify import verify as verify

__all__ = ["VerifyResult", "verify"]
