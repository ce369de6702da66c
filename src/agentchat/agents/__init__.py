"""Agents: the delivery protocol shared by the sync and asyncio agents, and their I/O.

- :mod:`~agentchat.agents.message`: :class:`Message`, its JSON shape, the input rules;
- :mod:`~agentchat.agents.protocol`: every decision of delivery, no I/O (settings, one
  delivery, one loop, backoff, lost connections), with :mod:`~agentchat.agents.notices` (the
  NOTIFY payload, catch-up) and :mod:`~agentchat.agents.route` (where an agent sends);
- :mod:`~agentchat.agents.agent`: :class:`Agent` (threads); :mod:`~agentchat.agents.aio`:
  :class:`AsyncAgent` (asyncio), with the same method names;
- :mod:`~agentchat.agents.send`: ``send`` without an agent, ``send_target``, ``prune``.
- :mod:`~agentchat.agents.recipients`: recipients checked against the registry of agents.
"""

from agentchat.agents.agent import Agent
from agentchat.agents.aio import AsyncAgent
from agentchat.agents.message import Message

__all__ = ["Agent", "AsyncAgent", "Message"]
