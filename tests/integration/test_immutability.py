"""Schema version 5 on real clusters: names checked for every writer, messages immutable, a
replica that cannot be written to, and replicated rows that are already there skipped."""

from __future__ import annotations

import psycopg
import pytest

from agentchat import install, policy, schema
from agentchat.server import Cluster
from agentchat.sql import load_migrations, queries
from tests.helpers import dbname, execute, seed_subscribe, wait_for


@pytest.fixture
def installed(installed_db: str) -> str:
    """A database at the current schema: a clone of the hub's installed template."""
    return installed_db


@pytest.fixture
def pair(hub: Cluster, installed_db: str, installed_db2: str) -> tuple[str, str]:
    """A source and a same-cluster replica (both installed: clones of the hub's template),
    subscribed as the seed does, then installed again (which makes db2 a replica)."""
    db, db2 = installed_db, installed_db2
    seed_subscribe(db, db2, f"sub_{dbname(db2)}", source_cluster=hub, same_cluster=True)
    # the chat's embeddings travel too, as agentchat's own publication carries them
    execute(db, "ALTER PUBLICATION agent_chat_pub ADD TABLE memory_embeddings"
            " (source_type, source_id, content, content_hash, embedding, model, created_at,"
            " updated_at) WHERE (source_type = 'agent_chat')")  # fmt: skip
    execute(db2, f"ALTER SUBSCRIPTION sub_{dbname(db2)} REFRESH PUBLICATION"
            " WITH (copy_data = false)")  # fmt: skip
    install.install(db2)
    return db, db2


def raw_insert(conninfo: str, mentions: object, sender: str = "nova") -> int:
    rows = execute(
        conninfo,
        "INSERT INTO agent_chat (sender, message, mentions) VALUES (%s, 'x', %s) RETURNING id",
        (sender, mentions),
    )
    return int(str(rows[0][0]))


def error_of(conninfo: str, statement: str, params: tuple[object, ...] = ()) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        execute(conninfo, statement, params)
    return caught.value


# -- names: normalised and checked for every writer ----------------------------------------


def test_raw_insert_is_normalised_like_send(installed: str) -> None:
    msg = raw_insert(installed, ["NOVA", " Owl ", "owl", "*"], sender=" Graybeard ")
    assert execute(installed, "SELECT sender, mentions FROM agent_chat WHERE id = %s", (msg,)) == [
        ("graybeard", ["*", "nova", "owl"])
    ]


@pytest.mark.parametrize(
    ("mentions", "sqlstate", "text"),
    [
        ([None, "owl"], "22023", "mentions must not contain NULL"),
        (["owl", "bad name"], "22023", 'invalid mention "bad name"'),
        ([f"agent{i}" for i in range(65)], "22023", "too many mentions (65; at most 64)"),
        (["é" * 63] * 64, "22023", "invalid mention"),  # the payload bound a raw INSERT broke
    ],
)
def test_bad_mentions_are_refused_for_raw_inserts_and_send(
    installed: str, mentions: list[str | None], sqlstate: str, text: str
) -> None:
    for statement in (
        "INSERT INTO agent_chat (sender, message, mentions) VALUES ('nova', 'x', %s)",
        "SELECT send_agent_message('nova', 'x', %s)",
    ):
        exc = error_of(installed, statement, (mentions,))
        assert exc.sqlstate == sqlstate
        assert text in str(exc)
    assert execute(installed, "SELECT count(*) FROM agent_chat") == [(0,)]


def test_check_constraint_holds_without_the_trigger(installed: str) -> None:
    execute(installed, "ALTER TABLE agent_chat DISABLE TRIGGER trg_admit_agent_chat")
    exc = error_of(installed, "INSERT INTO agent_chat (sender, message, mentions)"
                   " VALUES ('nova', 'x', ARRAY[NULL, 'owl'])")  # fmt: skip
    assert exc.sqlstate == "23514"
    assert "agent_chat_mentions_valid" in str(exc)


def test_upgrade_keeps_old_rows_and_the_guard_mode(hub: Cluster, db: str, db2: str) -> None:
    """A database at version 4 holding a poison row, and a replica, upgrade to 5: the old row
    stays (NOT VALID), and the replica's guard never lapses."""
    before = [m for m in load_migrations() if m.version <= 4]
    install.install(db, migrations=before)
    install.install(db2, migrations=before)
    poison = raw_insert(db, [None, "owl"])
    seed_subscribe(db, db2, f"sub_{dbname(db2)}", source_cluster=hub, same_cluster=True)
    install.install(db2, migrations=before)
    assert execute(db2, "SELECT tgenabled FROM pg_trigger WHERE tgname = %s",
                   (policy.GUARD_TRIGGER,)) == [("O",)]  # fmt: skip

    with psycopg.connect(db2, autocommit=True) as conn:  # the migration alone, no policy step
        schema.migrate(conn)
    found = execute(
        db2,
        "SELECT tgname, tgenabled::text FROM pg_trigger"
        " WHERE tgrelid = 'agent_chat'::regclass AND NOT tgisinternal",
    )
    modes = {str(name): str(mode) for name, mode in found}
    assert modes[policy.GUARD_TRIGGER] == "O"
    assert modes[policy.GUARD_TRUNCATE_TRIGGER] == "O"
    assert modes[policy.ADMIT_TRIGGER] == "A"
    # replicas are upgraded first: a row the old source still accepts must not stop replication
    # on the new replica (the CHECK would refuse it): it arrives, made readable
    late = raw_insert(db, [None, "OWL", "bad name"])
    wait_for(lambda: execute(db2, "SELECT mentions FROM agent_chat WHERE id = %s", (late,))
             == [(["owl"],)], what="the old source's row on the new replica")  # fmt: skip

    report = install.install(db)
    assert report.schema_version == len(load_migrations())
    assert execute(db, "SELECT mentions FROM agent_chat WHERE id = %s", (poison,)) == [
        ([None, "owl"],)
    ]
    assert execute(db, "SELECT tgenabled FROM pg_trigger WHERE tgname = %s",
                   (policy.GUARD_TRIGGER,)) == [("D",)]  # fmt: skip
    install.install(db2)
    assert execute(db2, "SELECT count(*) FROM agent_chat") == [(2,)]


# -- immutable messages ---------------------------------------------------------------------


def test_messages_are_immutable_where_written(installed: str) -> None:
    first = raw_insert(installed, ["owl"])
    sent = execute(
        installed, "SELECT send_agent_message('owl', 'hi', '{}', 'general', %s)", (first,)
    )
    reply = int(str(sent[0][0]))
    for statement in (
        "UPDATE agent_chat SET message = 'forged'",
        "UPDATE agent_chat SET sender = 'nova'",
        "UPDATE agent_chat SET mentions = '{mallory}'",
        "UPDATE agent_chat SET channel = 'elsewhere'",
        "UPDATE agent_chat SET created_at = now() - interval '1 day'",
        "DELETE FROM agent_chat",
        "TRUNCATE agent_chat CASCADE",
    ):
        exc = error_of(installed, statement)
        assert exc.sqlstate == "55000", statement
        assert "agent_chat messages are immutable" in str(exc)
    assert execute(installed, "SELECT count(*) FROM agent_chat WHERE message = 'x'") == [(1,)]

    # bookkeeping that says nothing new is still allowed: a delivery's reply key
    execute(installed, "UPDATE agent_chat SET reply_key = 'k' WHERE id = %s", (reply,))

    # maintenance (what prune does): the deletion goes through, and so do its marks
    execute(installed, "INSERT INTO agent_chat_processed (chat_id, agent) VALUES (%s, 'owl')",
            (first,))  # fmt: skip
    with psycopg.connect(installed) as conn, conn.transaction():
        conn.execute(queries["allow_maintenance"])
        conn.execute("DELETE FROM agent_chat WHERE id = %s", (first,))
    assert execute(installed, "SELECT id, reply_to FROM agent_chat") == [(reply, None)]
    assert execute(installed, "SELECT count(*) FROM agent_chat_processed") == [(0,)]
    # the permission lasts for that transaction only
    assert error_of(installed, "DELETE FROM agent_chat").sqlstate == "55000"


# -- a replica refuses every local write; replication itself is unaffected -----------------


def test_replica_refuses_update_delete_truncate(pair: tuple[str, str]) -> None:
    source, replica = pair
    msg = raw_insert(source, ["graybeard"])
    wait_for(lambda: execute(replica, "SELECT count(*) FROM agent_chat")[0][0] == 1)
    for statement in (
        "INSERT INTO agent_chat (sender, message) VALUES ('nova', 'x')",
        "UPDATE agent_chat SET message = 'forged', sender = 'nova'",
        "UPDATE agent_chat SET reply_key = 'x'",
        "DELETE FROM agent_chat",
        "TRUNCATE agent_chat CASCADE",
    ):
        exc = error_of(replica, statement)
        assert exc.sqlstate == "25006", statement
        assert "is a replica" in str(exc)
    # maintenance does not open a replica: pruning happens where messages are written
    with pytest.raises(psycopg.Error) as caught, psycopg.connect(replica) as conn:
        conn.execute(queries["allow_maintenance"])
        conn.execute("DELETE FROM agent_chat")
    assert caught.value.sqlstate == "25006"
    assert execute(replica, "SELECT id, message FROM agent_chat") == [(msg, "x")]

    # what the source does still arrives: a reply key set, a prune
    execute(source, "UPDATE agent_chat SET reply_key = 'k' WHERE id = %s", (msg,))
    wait_for(lambda: execute(replica, "SELECT reply_key FROM agent_chat") == [("k",)])
    with psycopg.connect(source) as conn, conn.transaction():
        conn.execute(queries["allow_maintenance"])
        conn.execute("DELETE FROM agent_chat")
    wait_for(lambda: execute(replica, "SELECT count(*) FROM agent_chat") == [(0,)])


def test_replicated_row_already_here_is_skipped_a_different_one_is_not(
    pair: tuple[str, str], hub: Cluster
) -> None:
    source, replica = pair
    insert = (
        "INSERT INTO agent_chat (id, sender, channel, message, mentions, created_at)"
        " VALUES (%s, 'nova', 'general', %s, '{graybeard}', '2026-01-01 00:00:00+00')"
    )

    def plant(conninfo: str, msg_id: int, text: str) -> None:
        """What a re-copied history or a diverged replica holds: written in replica mode."""
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(insert, (msg_id, text))

    # the same message, already on the replica (and its embedding row): skipped, merged
    plant(replica, 1000, "same")
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("INSERT INTO memory_embeddings (source_type, source_id, content, content_hash)"
                     " VALUES ('agent_chat', 1000, 'stale', 'stale')")  # fmt: skip
    execute(source, insert, (1000, "same"))
    after = raw_insert(source, ["graybeard"])
    wait_for(lambda: execute(replica, "SELECT count(*) FROM agent_chat WHERE id = %s", (after,)),
             what="the next message")  # fmt: skip
    assert execute(replica, "SELECT id, message FROM agent_chat ORDER BY id") == sorted(
        [(after, "x"), (1000, "same")]
    )
    assert execute(replica, "SELECT content FROM memory_embeddings WHERE source_id = 1000") == [
        ("same",)
    ]
    sub = f"sub_{dbname(replica)}"
    assert execute(replica, "SELECT apply_error_count FROM pg_stat_subscription_stats"
                   " WHERE subname = %s", (sub,)) == [(0,)]  # fmt: skip

    # a different message under the same id: a true conflict, loud, and nothing lost
    plant(replica, 2000, "diverged")
    log_start = hub.log.stat().st_size
    execute(source, insert, (2000, "original"))
    later = raw_insert(source, ["graybeard"])
    wait_for(lambda: "replicated message 2000 conflicts" in hub.log.read_text()[log_start:],
             what="the conflict in the log")  # fmt: skip
    assert execute(replica, "SELECT count(*) FROM agent_chat WHERE id = %s", (later,)) == [(0,)]
    # the repair doctor prescribes: remove the local row; apply resumes by itself
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM agent_chat WHERE id = 2000")
    wait_for(lambda: execute(replica, "SELECT count(*) FROM agent_chat WHERE id = %s", (later,))
             == [(1,)], timeout=30, what="apply to resume")  # fmt: skip
    assert execute(replica, "SELECT message FROM agent_chat WHERE id = 2000") == [("original",)]
