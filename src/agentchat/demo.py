"""The demo's conversation moved to :mod:`agentchat.cli._conversation` (it is the CLI demo's);
this old path stays importable."""

from agentchat.cli._conversation import Conversation as Conversation
from agentchat.cli._conversation import Script as Script
from agentchat.cli._conversation import Timeline as Timeline
from agentchat.cli._conversation import scripted as scripted
from agentchat.cli._conversation import wait_for as wait_for

__all__ = ["Conversation", "Script", "Timeline", "scripted", "wait_for"]
