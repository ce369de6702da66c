"""agentchat.compat: the nova layer's install, its refs, its refusals (NOVA's own statements are
run in test_nova_statements.py, their plugin's loop in test_nova_plugin_loop.py)."""

from __future__ import annotations

import psycopg
import pytest

from agentchat import compat, errors, install
from agentchat.sql import load_migrations
from tests.helpers import execute, invoke, one_line_error

LEGACY_REFS_BELOW = 2**30


def nova_role(conninfo: str, name: str) -> None:
    """A login role with NOVA's usual grants (their register-agent.sh's), cluster-wide once."""
    execute(
        conninfo,
        f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    execute(conninfo, f"GRANT SELECT, INSERT, UPDATE, DELETE ON agent_chat TO {name}")
    execute(conninfo, f"GRANT SELECT, INSERT, UPDATE, DELETE ON agent_chat_processed TO {name}")


def test_install_twice_keeps_refs_and_adds_roles(installed_db: str) -> None:
    db = installed_db
    nova_role(db, "compat_nova")
    nova_role(db, "compat_graybeard")
    # a NOVA database moved here keeps its serial ids: legacy ids, their own refs
    execute(db, "INSERT INTO agent_chat (id, sender, message, mentions) VALUES (42, 'nova', 'old',"
            " '{graybeard}')")  # fmt: skip
    first = execute(db, "SELECT send_agent_message('graybeard', 'new', ARRAY['nova'])")[0][0]
    install.install(db, compat=["nova"], compat_roles=["compat_nova"])
    refs = execute(db, "SELECT chat_id, ref FROM agentchat_nova.chat_refs ORDER BY chat_id")
    assert refs == [(42, 42), (first, LEGACY_REFS_BELOW)]
    report = install.install(db, compat=["nova"], compat_roles=["compat_graybeard"])
    assert [c.as_dict() for c in report.compat] == [
        {"name": "nova", "schema": "agentchat_nova", "roles": ["compat_graybeard", "compat_nova"]}
    ]
    assert execute(db, "SELECT chat_id, ref FROM agentchat_nova.chat_refs ORDER BY chat_id") == refs
    second = execute(db, "SELECT send_agent_message('graybeard', 'next', ARRAY['nova'])")[0][0]
    assert execute(db, "SELECT ref FROM agentchat_nova.chat_refs WHERE chat_id = %s",
                   (second,)) == [(LEGACY_REFS_BELOW + 1,)]  # fmt: skip
    with psycopg.connect(db, autocommit=True) as conn:
        assert compat.installed(conn) == ["nova"]
        assert compat.roles(conn) == ["compat_graybeard", "compat_nova"]
    # a message deleted (here: NOVA's reaper) takes its ref with it
    execute(db, "SELECT agentchat_nova.expire_old_chat(0)")
    assert execute(db, "SELECT count(*) FROM agentchat_nova.chat_refs") == [(0,)]


def test_a_plain_install_brings_the_layer_back(installed_db: str) -> None:
    db = installed_db
    install.install(db, compat=["nova"])
    execute(db, "DROP FUNCTION agentchat_nova.expire_old_chat(integer)")
    report = install.install(db)
    assert [c.name for c in report.compat] == ["nova"]
    assert execute(db, "SELECT agentchat_nova.expire_old_chat()") == [(0,)]


def test_refusals_leave_nothing(installed_db: str) -> None:
    db = installed_db
    with pytest.raises(errors.InvalidInput, match="role 'nobody_here' does not exist"):
        install.install(db, compat=["nova"], compat_roles=["nobody_here"])
    assert execute(db, "SELECT to_regnamespace('agentchat_nova')") == [(None,)]
    with pytest.raises(errors.InvalidInput, match="unknown compatibility layer 'nova2'"):
        install.install(db, compat=["nova2"])
    execute(db, "CREATE TABLE public.schema_version (version text, owner text)")
    with pytest.raises(errors.InvalidInput, match="not NOVA's"):
        install.install(db, compat=["nova"])
    assert execute(db, "SELECT to_regnamespace('agentchat_nova')") == [(None,)]


def test_the_layer_needs_schema_8(db: str) -> None:
    install.install(db, migrations=load_migrations()[:7])
    with psycopg.connect(db, autocommit=True) as conn, pytest.raises(errors.MigrationError):
        compat.install_compat(conn, "nova")


def test_cli_refusals_are_one_line(installed_db: str) -> None:
    one_line_error(invoke("install", "--dsn", installed_db, "--compat-role", "nova"),
                   "--compat-role names a role for a compatibility layer", 2)  # fmt: skip
    one_line_error(invoke("install", "--dsn", installed_db, "--compat", "nova", "--compat-role",
                          "nobody_here"), "role 'nobody_here' does not exist", 2)  # fmt: skip
    assert execute(installed_db, "SELECT to_regnamespace('agentchat_nova')") == [(None,)]


def test_an_agent_role_sees_the_layer_adds_no_right_and_can_be_removed(installed_db: str) -> None:
    """--compat-role for an agent's role: NOVA's reaper is refused to it (it may not delete
    messages), and agent remove still drops the role (the layer granted it nothing)."""
    from agentchat import identity

    db = installed_db
    added = identity.add(db, "novacompat", show_password=True)
    role = added.entry.role
    try:
        install.install(db, compat=["nova"], compat_roles=[role])
        as_agent = psycopg.conninfo.make_conninfo(db, user=role, password=added.password)
        with psycopg.connect(as_agent, autocommit=True) as conn:
            assert conn.execute("SHOW search_path").fetchone() == ("agentchat_nova, public",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="agent_chat"):
                conn.execute("SELECT expire_old_chat()")
    finally:
        identity.remove(db, "novacompat")
    assert execute(db, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [(0,)]
