"""The schema, as a running database sees it: tables, constraints, triggers, send_agent_message."""

from __future__ import annotations

import hashlib
import json
import threading

import psycopg
import pytest

from agentchat import errors, install, schema
from agentchat.sql import Migration, load_migrations, queries
from tests.helpers import execute

ALL_MIGRATIONS = [f"{m.version:04d}_{m.name}" for m in load_migrations()]


@pytest.fixture
def installed(installed_db: str) -> str:
    """A database at the current schema: a clone of the hub's installed template."""
    return installed_db


def test_tables_and_indexes(installed: str) -> None:
    columns = dict(
        execute(
            installed,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'agent_chat'",
        )
    )
    assert columns == {
        "id": "bigint",
        "channel": "text",
        "sender": "text",
        "message": "text",
        "mentions": "ARRAY",
        "reply_to": "bigint",
        "created_at": "timestamp with time zone",
        "reply_key": "text",
        "expires_at": "timestamp with time zone",
    }
    marks = dict(
        execute(
            installed,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'agent_chat_processed'",
        )
    )
    assert marks == {
        "chat_id": "bigint",
        "agent": "text",
        "status": "text",
        "received_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
        "error_message": "text",
        "routed_at": "timestamp with time zone",
        "responded_at": "timestamp with time zone",
        "error": "text",
    }
    indexes = {
        name: definition
        for name, definition in execute(
            installed,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename IN ('agent_chat', 'memory_embeddings', 'agent_chat_processed')",
        )
    }
    assert "USING gin (mentions)" in indexes["agent_chat_mentions_idx"]
    assert "(channel, created_at)" in indexes["agent_chat_channel_created_idx"]
    assert "(sender, created_at)" in indexes["agent_chat_sender_created_idx"]
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["memory_embeddings_embedding_idx"]
    assert "UNIQUE" in indexes["agent_chat_reply_key_idx"]
    assert "WHERE (reply_key IS NOT NULL)" in indexes["agent_chat_reply_key_idx"]
    assert "UNIQUE" in indexes["memory_embeddings_source_key"]
    assert "(source_type, source_id)" in indexes["memory_embeddings_source_key"]
    assert execute(installed, "SELECT count(*) FROM agentchat_migrations") == [
        (len(load_migrations()),)
    ]


def test_outcome_columns_are_one_source_of_truth(installed: str) -> None:
    """Schema version 8: routed_at / responded_at are stamped for every writer, error is
    error_message (generated), and NOVA's statuses expired and skipped are accepted."""
    chat_id = execute(installed, "SELECT send_agent_message('graybeard', 'hi', ARRAY['nova'])")[0][
        0
    ]
    execute(
        installed,
        "INSERT INTO agent_chat_processed (chat_id, agent, status) VALUES (%s, 'nova', 'received')",
        (chat_id,),
    )
    stamps = "SELECT status, routed_at IS NOT NULL, responded_at IS NOT NULL, error, error_message"
    where = " FROM agent_chat_processed WHERE chat_id = %s"
    assert execute(installed, stamps + where, (chat_id,)) == [
        ("received", False, False, None, None)
    ]
    # agentchat's own outcome statement (it names neither timestamp)
    execute(
        installed,
        "UPDATE agent_chat_processed SET status = 'responded' WHERE chat_id = %s",
        (chat_id,),
    )
    assert execute(installed, stamps + where, (chat_id,)) == [
        ("responded", False, True, None, None)
    ]
    # the seed plugin's failure statement names error_message; error reads the same text
    execute(
        installed,
        "UPDATE agent_chat_processed SET status = 'failed', error_message = 'boom'"
        " WHERE chat_id = %s",
        (chat_id,),
    )
    assert execute(installed, stamps + where, (chat_id,)) == [
        ("failed", False, True, "boom", "boom")
    ]
    for status in ("expired", "skipped"):
        execute(
            installed,
            "UPDATE agent_chat_processed SET status = %s WHERE chat_id = %s",
            (status, chat_id),
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        execute(
            installed,
            "UPDATE agent_chat_processed SET status = 'lost' WHERE chat_id = %s",
            (chat_id,),
        )
    with pytest.raises(psycopg.errors.GeneratedAlways):
        execute(
            installed,
            "UPDATE agent_chat_processed SET error = 'x' WHERE chat_id = %s",
            (chat_id,),
        )


def test_migrate_twice_applies_nothing(installed: str) -> None:
    with psycopg.connect(installed, autocommit=True) as conn:
        assert schema.migrate(conn) == []
        assert schema.schema_version(conn) == len(load_migrations())


def test_concurrent_installers_apply_each_migration_once(hub, db: str) -> None:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(install.install(db))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, install.InstallReport) for r in results), results
    applied = [r.applied for r in results if isinstance(r, install.InstallReport)]
    # installers take turns per migration: together they applied each one exactly once
    assert sorted(m for done in applied for m in done) == ALL_MIGRATIONS
    assert [v for (v,) in execute(db, "SELECT version FROM agentchat_migrations")] == [
        m.version for m in load_migrations()
    ]


def test_failing_migration_rolls_back_whole(db: str) -> None:
    latest = len(load_migrations())
    broken = Migration(
        latest + 1,
        "broken",
        "CREATE TABLE public.half_made (id int); SELECT 1/0;",
    )
    with psycopg.connect(db, autocommit=True) as conn:
        with pytest.raises(
            errors.MigrationError, match=f"{latest + 1:04d}_broken failed and was rolled back"
        ):
            schema.migrate(conn, migrations=[*load_migrations(), broken])
        assert schema.schema_version(conn) == latest
        assert execute(db, "SELECT to_regclass('public.half_made')") == [(None,)]


def test_a_tampered_checksum_is_refused_with_its_fix(installed: str) -> None:
    """A database whose recorded migration is not the shipped file is not migrated further."""
    execute(installed, "UPDATE agentchat_migrations SET checksum = 'abc' WHERE version = 2")
    with pytest.raises(errors.MigrationError, match="0002_replication differs") as caught:
        install.install(installed)
    assert "agentchat_migrations" in (caught.value.fix or "")
    with (
        psycopg.connect(installed, autocommit=True) as conn,
        pytest.raises(errors.MigrationError, match="built from other SQL"),
    ):
        schema.migrate(conn)


def test_a_missing_checksum_is_backfilled_not_refused(installed: str) -> None:
    execute(installed, "UPDATE agentchat_migrations SET checksum = '' WHERE version IN (1, 3)")
    report = install.install(installed)
    assert report.applied == []
    shipped = {m.version: m.checksum for m in load_migrations()}
    rows = execute(installed, "SELECT version, checksum FROM agentchat_migrations")
    assert {row[0]: row[1] for row in rows} == shipped


def test_dimension_fixed_at_install(db: str) -> None:
    install.install(db, dimension=768)
    with psycopg.connect(db) as conn:
        assert schema.embedding_dimension(conn) == 768
    with pytest.raises(errors.InvalidInput, match="out of range"):
        install.install(db, dimension=4096)
    assert install.install(db, dimension=768).applied == []  # the same size: fine
    assert install.install(db).applied == []  # no size given: keeps the fixed one
    with pytest.raises(errors.InvalidInput, match="fixed at 768 when it was installed"):
        install.install(db, dimension=384)


def test_template_databases_are_refused(hub) -> None:
    with pytest.raises(errors.InvalidInput, match="template database"):
        install.install(hub.conninfo(), database="template1")


def test_send_agent_message_normalises(installed: str) -> None:
    [(msg_id,)] = execute(
        installed,
        "SELECT send_agent_message(' Nova ', 'hello', ARRAY['GrayBeard', 'graybeard', '*'])",
    )
    row = execute(
        installed, "SELECT sender, mentions, channel FROM agent_chat WHERE id = %s", (msg_id,)
    )
    assert row == [("nova", ["*", "graybeard"], "general")]
    [(reply,)] = execute(
        installed, "SELECT send_agent_message('graybeard', 'hi', '{nova}', 'ops', %s)", (msg_id,)
    )
    assert execute(installed, "SELECT reply_to FROM agent_chat WHERE id = %s", (reply,)) == [
        (msg_id,)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "hello"), "sender must not be empty"),
        (("nova", "   "), "message must not be empty"),
        (("no va", "x"), 'invalid sender name "no va"'),
        (("nova", "x", ["bad name"]), 'invalid mention "bad name"'),
        (("nova", "x", [f"a{i}" for i in range(65)]), "too many mentions"),
        (("nova", "x", [], "bad channel!"), "invalid channel name"),
        (("nova", "x", [], "general", 999999), "reply_to 999999 is not a message"),
        (("x" * 64, "hello"), "invalid sender name"),
    ],
)
def test_send_agent_message_rejects(installed: str, args: tuple[object, ...], message: str) -> None:
    placeholders = ", ".join(["%s"] * len(args))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        execute(installed, f"SELECT send_agent_message({placeholders})", args)
    assert execute(installed, "SELECT count(*) FROM agent_chat") == [(0,)]


def test_notify_carries_ids_not_bodies(installed: str) -> None:
    body = "x" * 1_000_000  # far above NOTIFY's 8000-byte payload limit
    with psycopg.connect(installed, autocommit=True) as listener:
        listener.execute("LISTEN agent_chat")
        listener.execute("LISTEN memory_embeddings")
        [(msg_id,)] = execute(
            installed, "SELECT send_agent_message('nova', %s, '{graybeard}')", (body,)
        )
        got = {n.channel: json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=2)}
    assert got["agent_chat"] == {
        "id": msg_id,
        "channel": "general",
        "sender": "nova",
        "mentions": ["graybeard"],
    }
    assert got["memory_embeddings"] == {"source_type": "agent_chat", "source_id": msg_id}


def test_embed_trigger_enqueues_once(installed: str) -> None:
    [(msg_id,)] = execute(installed, "SELECT send_agent_message('nova', 'remember this')")
    rows = execute(
        installed,
        "SELECT source_type, source_id, content, content_hash, embedding FROM memory_embeddings",
    )
    digest = hashlib.sha256(b"remember this").hexdigest()
    assert rows == [("agent_chat", msg_id, "remember this", digest, None)]
    # a message whose embedding row already exists is absorbed (ON CONFLICT DO NOTHING)
    execute(
        installed,
        "INSERT INTO memory_embeddings (source_type, source_id, content, content_hash)"
        " VALUES ('agent_chat', 4242, 'already here', 'h')",
    )
    execute(
        installed,
        "INSERT INTO agent_chat (id, sender, message) OVERRIDING SYSTEM VALUE"
        " VALUES (4242, 'nova', 'late')",
    )
    assert execute(installed, "SELECT content FROM memory_embeddings WHERE source_id = 4242") == [
        ("already here",)
    ]


def test_triggers_work_with_empty_search_path(installed: str) -> None:
    """The apply worker runs with search_path = ''; the trigger functions must not care."""
    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute("SET search_path = ''")
        conn.execute(
            "INSERT INTO public.agent_chat (sender, message, mentions) VALUES ('a', 'b', '{c}')"
        )
        conn.execute("SELECT public.send_agent_message('a', 'again')")
    assert execute(installed, "SELECT count(*) FROM memory_embeddings") == [(2,)]


def test_processed_marks_cascade(installed: str) -> None:
    [(msg_id,)] = execute(installed, "SELECT send_agent_message('nova', 'hello', '{graybeard}')")
    execute(
        installed,
        "INSERT INTO agent_chat_processed (chat_id, agent, status)"
        " VALUES (%s, 'graybeard', 'responded')",
        (msg_id,),
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        execute(
            installed,
            "INSERT INTO agent_chat_processed (chat_id, agent, status) VALUES (%s, 'x', 'bogus')",
            (msg_id,),
        )
    with psycopg.connect(installed) as conn, conn.transaction():
        conn.execute(queries["allow_maintenance"])  # messages are immutable otherwise
        conn.execute("DELETE FROM agent_chat WHERE id = %s", (msg_id,))
    assert execute(installed, "SELECT count(*) FROM agent_chat_processed") == [(0,)]


def test_the_nova_layers_trigger_is_judged_where_it_exists(installed: str) -> None:
    """The compatibility layer's ref trigger must fire ALWAYS; the installer puts it back."""
    from agentchat import install, policy

    with psycopg.connect(installed, autocommit=True) as conn:
        assert policy.NOVA_REFS_TRIGGER not in policy.trigger_modes(conn)
        assert all(row.ok for row in policy.trigger_report(conn))
    install.install(installed, compat=["nova"])
    execute(installed, "ALTER TABLE agent_chat ENABLE TRIGGER trg_nova_refs_agent_chat")
    with psycopg.connect(installed, autocommit=True) as conn:
        [row] = [r for r in policy.trigger_report(conn) if r.trigger == policy.NOVA_REFS_TRIGGER]
        assert (row.mode_name, row.expected_name, row.ok) == ("ORIGIN", "ALWAYS", False)
    report = install.install(installed)
    assert [c.trigger for c in report.changes] == [policy.NOVA_REFS_TRIGGER]
    with psycopg.connect(installed, autocommit=True) as conn:
        assert policy.trigger_modes(conn)[policy.NOVA_REFS_TRIGGER] is policy.Mode.ALWAYS
