"""Kept for compatibility: status' facts, judges and report live in :mod:`agentchat.ops`.

``agentchat.health`` re-exports them (:mod:`agentchat.ops.facts`, :mod:`agentchat.ops.judge`,
:mod:`agentchat.ops.report`); new code imports from there.
"""

from __future__ import annotations

from agentchat.ops.facts import FINGERPRINT_BATCH as FINGERPRINT_BATCH
from agentchat.ops.facts import HEALED_AFTER as HEALED_AFTER
from agentchat.ops.facts import HISTORY_FROM as HISTORY_FROM
from agentchat.ops.facts import ROWS_SETTLE as ROWS_SETTLE
from agentchat.ops.facts import DatabaseFacts as DatabaseFacts
from agentchat.ops.facts import EmbeddingFacts as EmbeddingFacts
from agentchat.ops.facts import RowCounts as RowCounts
from agentchat.ops.facts import SlotFacts as SlotFacts
from agentchat.ops.facts import SubscriptionFacts as SubscriptionFacts
from agentchat.ops.facts import count_rows as count_rows
from agentchat.ops.facts import foreign_rows as foreign_rows
from agentchat.ops.facts import gather as gather
from agentchat.ops.facts import settled_rows as settled_rows
from agentchat.ops.judge import DEFAULT_WAL_THRESHOLD as DEFAULT_WAL_THRESHOLD
from agentchat.ops.judge import Check as Check
from agentchat.ops.judge import Verdict as Verdict
from agentchat.ops.judge import judge as judge
from agentchat.ops.judge import judge_listed as judge_listed
from agentchat.ops.judge import judge_rows as judge_rows
from agentchat.ops.judge import judge_topology as judge_topology
from agentchat.ops.report import Report as Report
from agentchat.ops.report import status as status

__all__ = [
    "DEFAULT_WAL_THRESHOLD",
    "FINGERPRINT_BATCH",
    "HEALED_AFTER",
    "HISTORY_FROM",
    "ROWS_SETTLE",
    "Check",
    "DatabaseFacts",
    "EmbeddingFacts",
    "Report",
    "RowCounts",
    "SlotFacts",
    "SubscriptionFacts",
    "Verdict",
    "count_rows",
    "foreign_rows",
    "gather",
    "judge",
    "judge_listed",
    "judge_rows",
    "judge_topology",
    "settled_rows",
    "status",
]
