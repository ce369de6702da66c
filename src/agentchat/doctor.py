"""Kept for compatibility: doctor lives in :mod:`agentchat.ops.doctor`; new code imports it
from there."""

from __future__ import annotations

from agentchat.ops.doctor import Diagnosis as Diagnosis
from agentchat.ops.doctor import diagnose as diagnose
from agentchat.ops.doctor import fix as fix
from agentchat.ops.doctor import repair_text as repair_text

__all__ = ["Diagnosis", "diagnose", "fix", "repair_text"]
