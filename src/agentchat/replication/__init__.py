"""Replication of agent_chat from a source database to replicas: ``replicate add``, ``check``
and ``remove``.

The package's modules, each with one job:

- :mod:`~agentchat.replication.preflight`: facts from both sides, judged into findings with fixes;
- :mod:`~agentchat.replication.plan`: every name and step of an add, decided from facts (pure);
- :mod:`~agentchat.replication.phases`: one function per step, each pushing its undo;
- :mod:`~agentchat.replication.lifecycle`: ``add``, ``check`` and ``remove`` (one way);
- :mod:`~agentchat.replication.links`: node numbers in ids, the links of a tree or a mesh and
  their row filters (pure);
- :mod:`~agentchat.replication.twoway`: ``join``, ``leave`` and ``mesh`` (two-way links);
- :mod:`~agentchat.replication.role`: the replication roles on the source and their passwords;
- :mod:`~agentchat.replication.passfile`: libpq password files.

The names below are the package's public API (and those of the former module
``agentchat/replication.py``, which this package replaces).
"""

from __future__ import annotations

from agentchat.replication.lifecycle import (
    SKIPS_KNOWN_ROWS,
    AddResult,
    CheckResult,
    RemoveResult,
    add,
    check,
    remove,
)
from agentchat.replication.passfile import read_passfile, write_passfile
from agentchat.replication.phases import (
    Progress,
    drop_slot,
    drop_subscription,
    publication_shape,
    wait_for_sync,
)
from agentchat.replication.plan import (
    DEFAULT_PUBLICATION,
    Facts,
    ReplicationPlan,
    default_subscription_name,
    gather,
    plan,
    slot_name,
    subscription_params,
)
from agentchat.replication.preflight import (
    Finding,
    PreflightFailed,
    SourceFacts,
    TargetFacts,
    check_transport,
    judge,
    source_facts,
    target_facts,
)
from agentchat.replication.role import (
    drop_role,
    ensure_role,
    no_statement_logging,
    restore_passfile,
    role_of,
)
from agentchat.replication.twoway import (
    LinkResult,
    check_join,
    has_links,
    join,
    leave,
    mesh,
)

__all__ = [
    "DEFAULT_PUBLICATION",
    "SKIPS_KNOWN_ROWS",
    "AddResult",
    "CheckResult",
    "Facts",
    "Finding",
    "LinkResult",
    "PreflightFailed",
    "Progress",
    "RemoveResult",
    "ReplicationPlan",
    "SourceFacts",
    "TargetFacts",
    "add",
    "check",
    "check_join",
    "check_transport",
    "default_subscription_name",
    "drop_role",
    "drop_slot",
    "drop_subscription",
    "ensure_role",
    "gather",
    "has_links",
    "join",
    "judge",
    "leave",
    "mesh",
    "no_statement_logging",
    "plan",
    "publication_shape",
    "read_passfile",
    "remove",
    "restore_passfile",
    "role_of",
    "slot_name",
    "source_facts",
    "subscription_params",
    "target_facts",
    "wait_for_sync",
    "write_passfile",
]
