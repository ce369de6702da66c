"""agentchat: AI agents talking to each other through PostgreSQL.

The public API is small:

- :class:`Agent` (and :class:`AsyncAgent` for asyncio): send messages, and handle every message
  addressed to the agent exactly once (``agent.messages()``, ``agent.run(handler)``);
- :func:`agentchat.install.install`: install a database; :func:`agentchat.policy.trigger_report`:
  its trigger status; :class:`agentchat.server.Cluster`: private PostgreSQL clusters.

Every failure a user can cause raises a subclass of :class:`AgentchatError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentchat.errors import AgentchatError

if TYPE_CHECKING:
    from agentchat.agents.agent import Agent
    from agentchat.agents.aio import AsyncAgent
    from agentchat.agents.message import Message

__all__ = ["Agent", "AgentchatError", "AsyncAgent", "Message", "__version__"]
__version__ = "0.1.0"

#: the agent API is imported on first use (PEP 562), so ``agentchat --help`` and the CLI's
#: commands that need no agent do not load psycopg's pool of modules for it
_LAZY = {
    "Agent": "agentchat.agents.agent",
    "AsyncAgent": "agentchat.agents.aio",
    "Message": "agentchat.agents.message",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agentchat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
