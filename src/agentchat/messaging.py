"""Moved to :mod:`agentchat.agents` (:mod:`~agentchat.agents.message`,
:mod:`~agentchat.agents.protocol`, :mod:`~agentchat.agents.send`); this path stays importable:
``from agentchat.messaging import send, prune`` and the rest."""

from agentchat.agents.message import CHANNEL as CHANNEL
from agentchat.agents.message import EVERYONE as EVERYONE
from agentchat.agents.message import MAX_ID as MAX_ID
from agentchat.agents.message import MAX_MENTIONS as MAX_MENTIONS
from agentchat.agents.message import NAME as NAME
from agentchat.agents.message import Message as Message
from agentchat.agents.message import UnreadableMessage as UnreadableMessage
from agentchat.agents.message import check_channel as check_channel
from agentchat.agents.message import check_mentions as check_mentions
from agentchat.agents.message import check_name as check_name
from agentchat.agents.message import check_text as check_text
from agentchat.agents.message import read_claimed as read_claimed
from agentchat.agents.message import reply_params as reply_params
from agentchat.agents.message import row_problem as row_problem
from agentchat.agents.message import send_params as send_params
from agentchat.agents.protocol import MAX_IDLE_TIMEOUT as MAX_IDLE_TIMEOUT
from agentchat.agents.protocol import MAX_POLL_INTERVAL as MAX_POLL_INTERVAL
from agentchat.agents.protocol import NOTIFY_CHANNEL as NOTIFY_CHANNEL
from agentchat.agents.protocol import Catchup as Catchup
from agentchat.agents.protocol import ChatNotice as ChatNotice
from agentchat.agents.protocol import check_agent_settings as check_agent_settings
from agentchat.agents.protocol import check_limits as check_limits
from agentchat.agents.protocol import notification_concerns as notification_concerns
from agentchat.agents.protocol import notified_id as notified_id
from agentchat.agents.protocol import parse_notification as parse_notification
from agentchat.agents.route import SEND_FIX as SEND_FIX
from agentchat.agents.route import SendFailed as SendFailed
from agentchat.agents.route import send_unreachable as send_unreachable
from agentchat.agents.send import MAX_PRUNE_BATCH as MAX_PRUNE_BATCH
from agentchat.agents.send import MAX_PRUNE_DAYS as MAX_PRUNE_DAYS
from agentchat.agents.send import PruneResult as PruneResult
from agentchat.agents.send import prune as prune
from agentchat.agents.send import send as send
from agentchat.agents.send import send_on as send_on
from agentchat.agents.send import send_target as send_target

__all__ = [
    "CHANNEL",
    "EVERYONE",
    "MAX_ID",
    "MAX_IDLE_TIMEOUT",
    "MAX_MENTIONS",
    "MAX_POLL_INTERVAL",
    "MAX_PRUNE_BATCH",
    "MAX_PRUNE_DAYS",
    "NAME",
    "NOTIFY_CHANNEL",
    "SEND_FIX",
    "Catchup",
    "ChatNotice",
    "Message",
    "PruneResult",
    "SendFailed",
    "UnreadableMessage",
    "check_agent_settings",
    "check_channel",
    "check_limits",
    "check_mentions",
    "check_name",
    "check_text",
    "notification_concerns",
    "notified_id",
    "parse_notification",
    "prune",
    "read_claimed",
    "reply_params",
    "row_problem",
    "send",
    "send_on",
    "send_params",
    "send_target",
    "send_unreachable",
]
