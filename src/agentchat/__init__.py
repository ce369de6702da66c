"""agentchat: AI agents talking to each other through PostgreSQL.

The public API is small: install a database (:func:`agentchat.install.install`), read its trigger
status (:func:`agentchat.policy.trigger_report`), run private PostgreSQL clusters
(:class:`agentchat.server.Cluster`). Every failure a user can cause raises a subclass of
:class:`agentchat.errors.AgentchatError`.
"""

from agentchat.errors import AgentchatError

__all__ = ["AgentchatError", "__version__"]
__version__ = "0.1.0"
