"""The installer on real clusters: fresh, again, dry runs, and the seed's replication setups."""

from __future__ import annotations

import json

import psycopg
import pytest

from agentchat import errors, install, policy
from agentchat.policy import Mode
from agentchat.sql import load_migrations
from tests import helpers
from tests.helpers import execute

ALL_MIGRATIONS = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
PLAIN_MODES = {
    "trg_notify_agent_chat": "ALWAYS",
    "trg_embed_chat_message": "ORIGIN",
    "trg_guard_replica_writes": "DISABLED",
    "trg_guard_replica_truncate": "DISABLED",
    "trg_forget_processed": "ALWAYS",
    "trg_forget_embedding": "ORIGIN",
    "trg_admit_agent_chat": "ALWAYS",
    "trg_immutable_agent_chat": "ORIGIN",
    "trg_immutable_agent_chat_truncate": "ORIGIN",
}
REPLICA_MODES = {
    **PLAIN_MODES,
    "trg_guard_replica_writes": "ORIGIN",
    "trg_guard_replica_truncate": "ORIGIN",
}

SEED_INSERT = (
    "INSERT INTO agent_chat (channel, sender, message, mentions)"
    " VALUES ('test', 'system', 'Test replication message', ARRAY['graybeard'])"
)


def modes(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        return {name: mode.name for name, mode in policy.trigger_modes(conn).items()}


def test_fresh_install_then_nothing_changes(hub, db: str) -> None:
    name = helpers.dbname(db)
    helpers.drop_database(hub, name)  # let the installer create it
    first = install.install(hub.conninfo(), database=name)
    assert first.created
    assert first.applied == ALL_MIGRATIONS
    assert first.kind is policy.NodeKind.PLAIN
    assert first.changes == []
    assert modes(db) == PLAIN_MODES

    second = install.install(hub.conninfo(), database=name)
    assert (second.created, second.applied, second.changes) == (False, [], [])
    assert not second.changed_anything
    assert second.schema_version == first.schema_version == len(ALL_MIGRATIONS)


def test_dry_run_changes_nothing(hub, db: str) -> None:
    report = install.install(db, dry_run=True)
    assert report.applied == ALL_MIGRATIONS
    assert any("CREATE TABLE public.agent_chat" in s for s in report.statements)
    assert execute(db, "SELECT to_regclass('public.agent_chat')") == [(None,)]

    missing = f"{helpers.dbname(db)}_missing"
    report = install.install(hub.conninfo(), database=missing, dry_run=True)
    assert report.created and report.statements[0] == f'CREATE DATABASE "{missing}";'
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_database WHERE datname = %s", (missing,)
    ) == [(0,)]


def test_no_create_refuses_missing_database(hub) -> None:
    with pytest.raises(errors.DatabaseMissing, match='database "nowhere_db" does not exist'):
        install.install(hub.conninfo(), database="nowhere_db", create=False)
    assert execute(
        hub.conninfo(), "SELECT count(*) FROM pg_database WHERE datname = 'nowhere_db'"
    ) == [(0,)]


def test_source_detected_from_publication(db: str) -> None:
    install.install(db)
    execute(db, "CREATE PUBLICATION whatever_name FOR TABLE agent_chat")
    report = install.install(db)
    assert report.kind is policy.NodeKind.SOURCE
    assert report.facts.publications == ("whatever_name",)


def test_role_comes_from_catalogs_not_names(hub, db: str, db2: str) -> None:
    """A subscription named like the seed's but carrying another table is not an agent_chat one."""
    install.install(db)
    install.install(db2)
    for conninfo in (db, db2):
        execute(conninfo, "CREATE TABLE other (id int PRIMARY KEY)")
    execute(db, "CREATE PUBLICATION other_pub FOR TABLE other")
    execute(db, "SELECT pg_create_logical_replication_slot('agent_chat_from_nova', 'pgoutput')")
    execute(
        db2,
        f"CREATE SUBSCRIPTION agent_chat_from_nova CONNECTION '{hub.conninfo(helpers.dbname(db))}'"
        " PUBLICATION other_pub WITH (create_slot = false, slot_name = 'agent_chat_from_nova')",
    )
    assert install.install(db2).kind is policy.NodeKind.PLAIN
    assert install.install(db).kind is policy.NodeKind.PLAIN


@pytest.fixture(params=["one-cluster", "two-clusters"])
def seed_pair(request, hub, db: str, db2: str, remote_db: str) -> tuple[str, str]:
    """nova (source) and graybeard (target) installed, then subscribed by the seed's steps 1-2."""
    same = request.param == "one-cluster"
    source, target = db, (db2 if same else remote_db)
    install.install(source)
    install.install(target)
    helpers.seed_subscribe(
        source, target, "agent_chat_from_nova", source_cluster=hub, same_cluster=same
    )
    return source, target


def test_seed_subscriber_is_detected_and_hears_replicated_rows(seed_pair: tuple[str, str]) -> None:
    source, target = seed_pair
    report = install.install(target)
    assert report.kind is policy.NodeKind.SUBSCRIBER
    assert report.facts.subscriptions == ("agent_chat_from_nova",)
    assert modes(target) == REPLICA_MODES
    assert install.install(source).kind is policy.NodeKind.SOURCE

    with psycopg.connect(target, autocommit=True) as listener:
        listener.execute("LISTEN agent_chat")
        [(msg_id,)] = execute(source, SEED_INSERT + " RETURNING id")
        notes = list(listener.notifies(timeout=15, stop_after=1))
    assert notes, "no NOTIFY on the subscriber for a replicated row"
    assert json.loads(notes[0].payload)["id"] == msg_id
    assert execute(target, "SELECT message FROM agent_chat WHERE id = %s", (msg_id,)) == [
        ("Test replication message",)
    ]
    # the embedding is queued where the message was written, never for the replicated copy
    assert execute(source, "SELECT source_id FROM memory_embeddings") == [(msg_id,)]
    assert execute(target, "SELECT count(*) FROM memory_embeddings") == [(0,)]


def test_seed_literal_replica_advice_is_repaired(seed_pair: tuple[str, str]) -> None:
    source, target = seed_pair
    # the seed's "Manual Trigger Configuration", verbatim
    execute(target, "ALTER TABLE agent_chat ENABLE ALWAYS TRIGGER trg_notify_agent_chat")
    execute(target, "ALTER TABLE agent_chat ENABLE REPLICA TRIGGER trg_embed_chat_message")

    # what that advice does: the embed trigger now fires for replicated rows (only)
    [(first,)] = execute(source, SEED_INSERT + " RETURNING id")
    helpers.wait_for(
        lambda: execute(target, "SELECT count(*) FROM agent_chat WHERE id = %s", (first,))[0][0],
        what="replicated row",
    )
    assert execute(target, "SELECT source_id FROM memory_embeddings") == [(first,)]

    report = install.install(target)
    assert [(c.trigger, c.old, c.new) for c in report.changes] == [
        ("trg_embed_chat_message", Mode.REPLICA, Mode.ORIGIN),
        # now known as a replica
        ("trg_guard_replica_truncate", Mode.DISABLED, Mode.ORIGIN),
        ("trg_guard_replica_writes", Mode.DISABLED, Mode.ORIGIN),
    ]
    assert "REPLICA" in report.changes[0].reason
    assert modes(target)["trg_embed_chat_message"] == "ORIGIN"

    [(second,)] = execute(source, SEED_INSERT + " RETURNING id")
    helpers.wait_for(
        lambda: execute(target, "SELECT count(*) FROM agent_chat WHERE id = %s", (second,))[0][0],
        what="replicated row",
    )
    assert execute(target, "SELECT source_id FROM memory_embeddings") == [(first,)]
    assert install.install(target).changes == []


def test_dry_run_shows_the_repair_without_doing_it(db: str) -> None:
    install.install(db)
    execute(db, "ALTER TABLE agent_chat ENABLE REPLICA TRIGGER trg_embed_chat_message")
    execute(db, "ALTER TABLE agent_chat DISABLE TRIGGER trg_notify_agent_chat")
    report = install.install(db, dry_run=True)
    assert report.statements == [
        'ALTER TABLE public.agent_chat ENABLE TRIGGER "trg_embed_chat_message";',
        'ALTER TABLE public.agent_chat ENABLE ALWAYS TRIGGER "trg_notify_agent_chat";',
    ]
    assert modes(db) == {**PLAIN_MODES, "trg_notify_agent_chat": "DISABLED",
                         "trg_embed_chat_message": "REPLICA"}  # fmt: skip


def test_install_into_an_open_connection(db: str) -> None:
    """install_into does what install does, on the caller's connection, and leaves it open."""
    with psycopg.connect(db, autocommit=True) as conn:
        dry = install.install_into(conn, dry_run=True)
        assert dry.applied == ALL_MIGRATIONS and dry.dry_run
        assert execute(db, "SELECT to_regclass('public.agent_chat')") == [(None,)]
        report = install.install_into(conn, dimension=16)
        assert not conn.closed
        assert (report.database, report.created, report.applied) == (
            helpers.dbname(db), False, ALL_MIGRATIONS,
        )  # fmt: skip
        assert install.install_into(conn).changed_anything is False
        with pytest.raises(errors.InvalidInput, match="fixed at 16"):
            install.install_into(conn, dimension=384)
    assert install.install(db).as_dict() == {**report.as_dict(), "applied": []}
