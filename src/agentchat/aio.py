"""Moved to :mod:`agentchat.agents.aio`; this path stays importable."""

from agentchat.agents.aio import AsyncAgent as AsyncAgent
from agentchat.agents.aio import AsyncHandler as AsyncHandler

__all__ = ["AsyncAgent", "AsyncHandler"]
