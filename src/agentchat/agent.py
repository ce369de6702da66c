"""Moved to :mod:`agentchat.agents.agent` (the I/O) and :mod:`agentchat.agents.protocol` (the
decisions); this path stays importable."""

from agentchat.agents.agent import Agent as Agent
from agentchat.agents.agent import Handler as Handler
from agentchat.agents.protocol import Backoff as Backoff
from agentchat.agents.protocol import failure_text as failure_text
from agentchat.agents.protocol import lost as lost

__all__ = ["Agent", "Backoff", "Handler", "failure_text", "lost"]
