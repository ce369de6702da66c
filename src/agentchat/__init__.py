"""agentchat: AI agents talking to each other through PostgreSQL.

The public API is small:

- :class:`Agent` (and :class:`AsyncAgent` for asyncio): send messages, and handle every message
  addressed to the agent exactly once (``agent.messages()``, ``agent.run(handler)``);
- :func:`agentchat.install.install`: install a database; :func:`agentchat.policy.trigger_report`:
  its trigger status; :class:`agentchat.server.Cluster`: private PostgreSQL clusters.

Every failure a user can cause raises a subclass of :class:`AgentchatError`.
"""

from agentchat.agents.agent import Agent
from agentchat.agents.aio import AsyncAgent
from agentchat.agents.message import Message
from agentchat.errors import AgentchatError

__all__ = ["Agent", "AgentchatError", "AsyncAgent", "Message", "__version__"]
__version__ = "0.1.0"
