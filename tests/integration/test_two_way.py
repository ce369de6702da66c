"""Two-way replication on real clusters: a star, a relay tree and a mesh (issue 13)."""

from __future__ import annotations

import pytest

from agentchat import replication
from agentchat.replication.links import node_of
from tests import helpers

pytestmark = pytest.mark.slow


def _send(dsn: str, sender: str, text: str, to: list[str]) -> int:
    [(msg_id,)] = helpers.execute(
        dsn,
        "INSERT INTO agent_chat (sender, message, mentions) VALUES (%s, %s, %s) RETURNING id",
        (sender, text, to),
    )
    return int(msg_id)


def _ids(dsn: str) -> list[int]:
    return [r[0] for r in helpers.execute(dsn, "SELECT id FROM agent_chat ORDER BY id")]


def _converged(dsns: list[str], want: set[int]) -> bool:
    return all(set(_ids(d)) == want for d in dsns)


def test_a_star_carries_every_message_to_every_database_once(
    installed_db: str, installed_db2: str, installed_remote_db: str
) -> None:
    hub, near, far = installed_db, installed_db2, installed_remote_db
    first = replication.join(hub, near, timeout=60)
    second = replication.join(hub, far, timeout=60)
    numbers = {**first.nodes, **second.nodes}
    assert len(set(numbers.values())) == 3, numbers
    sent = {
        _send(d, name, f"hello from {name}", ["*"])
        for d, name in ((hub, "nova"), (near, "graybeard"), (far, "sage"))
    }
    helpers.wait_for(lambda: _converged([hub, near, far], sent), what="convergence")
    for dsn in (hub, near, far):
        errors = helpers.execute(
            dsn,
            "SELECT coalesce(sum(apply_error_count + sync_error_count), 0)"
            " FROM pg_stat_subscription_stats",
        )
        assert errors == [(0,)]
    assert {node_of(i) for i in sent} == set(numbers.values())
