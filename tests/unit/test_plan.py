"""``replicate add``'s plan from made-up facts, its undo stack, and the SQL template helper."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from pathlib import Path

import pytest
from psycopg import conninfo as _conninfo
from psycopg import sql

from agentchat.replication.phases import Undo
from agentchat.replication.plan import (
    CREATE_STEPS,
    FINISH_STEPS,
    Facts,
    ReplicationPlan,
    Subscription,
    default_subscription_name,
    plan,
    points_at,
    slot_name,
    subscription_params,
)
from agentchat.replication.preflight import SourceFacts, TargetFacts
from agentchat.sql import parse_queries, placeholders, queries

SOURCE = SourceFacts(
    version_num=180004, wal_level="logical", max_slots=10, used_slots=0, max_senders=10,
    used_senders=0, is_superuser=True, can_create_role=True, system_id="111", schema_version=5,
    embedding_dimension=384,
)  # fmt: skip
TARGET = TargetFacts(
    version_num=180004, max_workers=4, used_workers=0, is_superuser=True, system_id="222",
    schema_version=5, embedding_dimension=384,
)  # fmt: skip
HUB = {"host": "db1.example", "port": "5432", "dbname": "nova_memory", "sslmode": "require"}
FRESH = Facts(SOURCE, TARGET, "nova_memory", "graybeard_memory", HUB, target_label="t")
SUB = "agent_chat_from_nova"


def rerun(conninfo: str | None, existing: tuple[str, ...] = (SUB,)) -> Facts:
    """A target that subscribes already, through a subscription with *conninfo*."""
    return dataclasses.replace(
        FRESH, existing=existing, named=Subscription(SUB, "slot", True, conninfo)
    )


OWN = "host=db1.example port=5432 dbname=nova_memory user=agent_chat_from_nova_x password=p"
OTHER = "host=db9.example port=5433 dbname=luna_memory user=r password=p"


# -- plan() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "facts", "options", "expect"),
    [
        ("fresh, across clusters", FRESH, {},
         {"already": False, "refusal": None, "same_cluster": False, "new_slot": True,
          "steps": ("role", "publication", "subscription", *FINISH_STEPS), "own_role": True}),
        ("fresh, one cluster: the slot first",
         dataclasses.replace(FRESH, target=dataclasses.replace(TARGET, system_id="111")), {},
         {"same_cluster": True, "steps": (*CREATE_STEPS, *FINISH_STEPS)}),
        ("re-run under the same name", rerun(OWN), {},
         {"already": True, "refusal": None, "steps": FINISH_STEPS, "new_slot": False,
          "role": "agent_chat_from_nova_x", "history": "keep", "check_history": False}),
        ("re-run, conninfo unreadable (not superuser): the name is trusted", rerun(None), {},
         {"already": True, "refusal": None, "steps": FINISH_STEPS}),
        ("re-run with --role: the subscription's own user wins", rerun(OWN), {"role": "shared"},
         {"already": True, "role": "agent_chat_from_nova_x", "own_role": False}),
        ("the same name from another source", rerun(OTHER), {},
         {"already": False, "new_slot": False}),
        ("the target subscribes under another name", rerun(OWN, existing=("elsewhere",)), {},
         {"already": False}),
        ("copy into a target with a schema: its rows are checked", FRESH, {},
         {"check_history": True, "history": "clear", "copy_data": True}),
        ("--no-copy-data: the source's newest id is recorded", FRESH, {"copy_data": False},
         {"check_history": False, "history": "record", "copy_data": False}),
        ("a target without a schema holds no history",
         dataclasses.replace(FRESH, target=dataclasses.replace(TARGET, schema_version=0)), {},
         {"check_history": False, "upgrade_target": True}),
        ("an older target is brought up to the source's schema first",
         dataclasses.replace(FRESH, target=dataclasses.replace(TARGET, schema_version=3)), {},
         {"upgrade_target": True}),
        ("a newer target is fine",
         dataclasses.replace(FRESH, source=dataclasses.replace(SOURCE, schema_version=4)), {},
         {"upgrade_target": False}),
        ("--name and --role and --publication", FRESH,
         {"name": "my_sub", "role": "shared", "publication": "my_pub"},
         {"subscription": "my_sub", "role": "shared", "own_role": False,
          "publication": "my_pub"}),
        ("the default names", FRESH, {},
         {"subscription": SUB, "publication": "agent_chat_pub", "passfile": None}),
    ],
)  # fmt: skip
def test_plan(
    case: str, facts: Facts, options: dict[str, object], expect: dict[str, object]
) -> None:
    planned = plan(facts, **options)  # type: ignore[arg-type]
    got = {key: getattr(planned, key) for key in expect}
    assert got == expect, case


@pytest.mark.parametrize(
    ("facts", "says", "fix"),
    [
        (rerun(OTHER), "t already subscribes to agent_chat (subscription agent_chat_from_nova)",
         "agentchat replicate remove"),
        (rerun(OWN, existing=("a", SUB)), "(subscription a, agent_chat_from_nova)",
         "remove it first"),
        (dataclasses.replace(FRESH, named=Subscription(SUB, "s", True, OWN)),
         "t already has a subscription named 'agent_chat_from_nova' for other tables",
         "choose another --name"),
    ],
)  # fmt: skip
def test_refusals_name_the_target_and_the_fix(facts: Facts, says: str, fix: str) -> None:
    refusal = plan(facts).refusal
    assert refusal is not None
    assert says in refusal.message
    assert fix in refusal.fix


SLOT = slot_name(SUB, "graybeard_memory", "222")


@pytest.mark.parametrize(
    ("facts", "exists", "creates"),
    [
        (FRESH, (),
         (f"role {SLOT}", "publication agent_chat_pub", f"slot {SLOT}", f"subscription {SUB}")),
        (dataclasses.replace(FRESH, publication_exists=True), ("publication agent_chat_pub",),
         (f"role {SLOT}", f"slot {SLOT}", f"subscription {SUB}")),
        (dataclasses.replace(FRESH, role_exists=True, publication_exists=True),
         (f"role {SLOT}", "publication agent_chat_pub"), (f"slot {SLOT}", f"subscription {SUB}")),
        (dataclasses.replace(rerun(OWN), slot_exists=True),
         ("role agent_chat_from_nova_x", "publication agent_chat_pub", f"slot {SLOT}",
          f"subscription {SUB}"), ()),
    ],
)  # fmt: skip
def test_what_exists_and_what_is_made(
    facts: Facts, exists: tuple[str, ...], creates: tuple[str, ...]
) -> None:
    planned = plan(facts)
    assert (planned.exists, planned.creates) == (exists, creates)


@pytest.mark.parametrize(
    ("facts", "refused"),
    [
        (dataclasses.replace(FRESH, slot_exists=True), "already has a replication slot"),
        (dataclasses.replace(rerun(OWN), slot_exists=True), None),  # a re-run: the slot is its own
        (dataclasses.replace(rerun(OTHER), slot_exists=True), "already subscribes"),
    ],
)  # fmt: skip
def test_a_left_over_slot_is_refused_before_anything_is_made(
    facts: Facts, refused: str | None
) -> None:
    refusal = plan(facts).refusal
    if refused is None:
        assert refusal is None
        return
    assert refusal is not None and refused in refusal.message
    if refusal is not None and "slot" in refusal.message:
        assert f"SELECT pg_drop_replication_slot('{SLOT}');" in refusal.fix


def test_the_role_is_named_like_the_slot() -> None:
    planned = plan(FRESH)
    assert planned.role == planned.slot
    assert planned.slot == slot_name(SUB, "graybeard_memory", "222")


@pytest.mark.parametrize(
    ("target_db", "system_id", "subscription"),
    [
        ("graybeard_memory", "222", SUB),
        ("graybeard_memory", "333", SUB),  # the same database on another server
        ("owl_memory", "222", SUB),
        ("Mixed-Case db", "222", SUB),
        ("x" * 63, "222", "s" * 63),
    ],
)
def test_slot_names_derive_from_the_target(
    target_db: str, system_id: str, subscription: str
) -> None:
    slot = slot_name(subscription, target_db, system_id)
    assert re.fullmatch(r"[a-z0-9_]{1,63}", slot)
    assert slot.endswith("_" + slot.rsplit("_", 1)[1]) and len(slot.rsplit("_", 1)[1]) == 8


def test_two_targets_never_share_a_slot() -> None:
    names = {
        slot_name(SUB, db, system)
        for db in ("graybeard_memory", "owl_memory", "Graybeard_Memory")
        for system in ("222", "333")
    }
    assert len(names) == 6


@pytest.mark.parametrize(
    ("source_db", "expected"),
    [("nova_memory", "agent_chat_from_nova"), ("hub", "agent_chat_from_hub"),
     ("memory_memory", "agent_chat_from_memory")],
)  # fmt: skip
def test_default_subscription_name(source_db: str, expected: str) -> None:
    assert default_subscription_name(source_db) == expected


@pytest.mark.parametrize(
    ("publisher", "expected"),
    [
        ({}, HUB),
        ({"host": "10.0.0.5"}, {"host": "10.0.0.5", "port": "5432", "dbname": "nova_memory",
                                "sslmode": "require"}),
        ({"host": "10.0.0.5", "port": "6432", "user": "nobody", "password": "no"},
         {"host": "10.0.0.5", "port": "6432", "dbname": "nova_memory", "sslmode": "require"}),
        ({"sslmode": "verify-full", "sslrootcert": "/ca.pem"},
         {"host": "db1.example", "port": "5432", "dbname": "nova_memory",
          "sslmode": "verify-full", "sslrootcert": "/ca.pem"}),
    ],
)  # fmt: skip
def test_publisher_dsn_says_how_the_target_reaches_the_source(
    publisher: dict[str, str], expected: dict[str, str]
) -> None:
    planned = plan(FRESH, publisher=publisher)
    assert dict(planned.connection) == {**expected, "user": planned.role}


def test_only_connection_and_tls_keys_of_the_source_carry_over() -> None:
    source = {**HUB, "application_name": "agentchat", "password": "secret", "sslkey": "/k"}
    params = subscription_params(source, "r", {})
    assert params == {**HUB, "sslkey": "/k", "user": "r"}


@pytest.mark.parametrize(("passfile", "has_password"), [(None, True), (Path("/srv/pgpass"), False)])
def test_the_subscriptions_conninfo_holds_the_password_or_the_passfile(
    passfile: Path | None, has_password: bool
) -> None:
    planned = plan(FRESH, passfile=passfile)
    params = _conninfo.conninfo_to_dict(planned.conninfo("s3cret"))
    assert ("password" in params) is has_password
    assert params.get("passfile") == (str(passfile) if passfile else None)
    assert params["user"] == planned.role
    assert planned.passfile_line == ("db1.example", "5432", "nova_memory", planned.role)


@pytest.mark.parametrize(
    ("conninfo", "points"),
    [
        (None, True),
        ("host=elsewhere port=5432 dbname=nova_memory", True),  # same database and port
        ("port=5432 dbname=luna_memory", False),
        ("port=6543 dbname=nova_memory", False),
    ],
)
def test_points_at(conninfo: str | None, points: bool) -> None:
    assert points_at(conninfo, {"port": "5432", "dbname": "nova_memory"}) is points


def test_the_plan_is_frozen() -> None:
    planned = plan(FRESH)
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.slot = "other"  # type: ignore[misc]
    assert isinstance(planned, ReplicationPlan)


# -- the undo stack -------------------------------------------------------------------------


def test_undo_runs_in_reverse() -> None:
    done: list[str] = []
    undo = Undo()
    for step in ("role", "publication", "slot", "subscription"):
        undo.push(step, functools.partial(done.append, step))
    assert undo.pending == ["subscription", "slot", "publication", "role"]
    undo.run()
    assert done == ["subscription", "slot", "publication", "role"]
    assert undo.pending == [] and undo.failures == []


def test_a_failing_undo_is_collected_and_the_rest_still_runs() -> None:
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("source unreachable")

    undo = Undo()
    undo.push("role r", lambda: done.append("role"))
    undo.push("slot s", broken)
    undo.push("subscription x", lambda: done.append("subscription"))
    undo.run()
    assert done == ["subscription", "role"]
    assert undo.failures == ["could not undo slot s: source unreachable"]


def test_undo_runs_once() -> None:
    done: list[str] = []
    undo = Undo()
    undo.push("x", lambda: done.append("x"))
    undo.run()
    undo.run()
    assert done == ["x"]


# -- the template helper --------------------------------------------------------------------

TEMPLATES = sorted(name for name, q in queries.items() if placeholders(q.as_string(None)))


def test_every_ddl_statement_is_a_template() -> None:
    assert {
        "create_subscription", "drop_subscription", "disable_subscription",
        "detach_subscription_slot", "enable_subscription", "subscription_retries_errors",
        "subscription_connection", "create_replication_role", "set_role_password",
        "drop_owned_by", "drop_replication_role", "create_publication", "drop_publication",
        "grant_published", "create_database", "drop_database", "trigger_mode_origin",
        "trigger_mode_always", "trigger_mode_replica", "trigger_mode_disabled",
    } <= set(TEMPLATES)  # fmt: skip


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_composes_with_identifiers(name: str) -> None:
    wanted = placeholders(queries[name].as_string(None))
    text = queries.compose(name, **{p: sql.Identifier(f"v_{p}") for p in wanted}).as_string(None)
    assert "{" not in text and not text.endswith(";") and not text.startswith("--")
    assert all(f'"v_{p}"' in text for p in wanted)


@pytest.mark.parametrize(
    ("values", "error"),
    [({}, "missing \\['subscription'\\]"),
     ({"subscription": sql.Identifier("s"), "extra": sql.Literal(1)}, "unknown \\['extra'\\]")],
)  # fmt: skip
def test_compose_refuses_missing_and_unknown_placeholders(
    values: dict[str, sql.Composable], error: str
) -> None:
    with pytest.raises(KeyError, match=error):
        queries.compose("drop_subscription", **values)


def test_compose_quotes_names_and_values() -> None:
    statement = queries.compose(
        "create_replication_role",
        role=sql.Identifier('we"ird'),
        password=sql.Literal("it's"),
    )
    assert statement.as_string(None) == (
        """CREATE ROLE "we""ird" LOGIN REPLICATION PASSWORD 'it''s'"""
    )


def test_compose_leaves_a_queries_comment_out() -> None:
    found = parse_queries("-- name: x\n-- what it is for\n-- more\nDROP TABLE {t};\n")
    assert found["x"].as_string(None).startswith("-- what")
    assert placeholders(found["x"].as_string(None)) == {"t"}


# -- the former module paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("agentchat.preflight", "agentchat.replication.preflight"),
        ("agentchat.replication_role", "agentchat.replication.role"),
        ("agentchat.passfile", "agentchat.replication.passfile"),
        ("agentchat.replication", "agentchat.replication.lifecycle"),
    ],
)
def test_former_module_paths_re_export_the_same_objects(old: str, new: str) -> None:
    shim, module = importlib.import_module(old), importlib.import_module(new)
    assert shim.__all__
    for name in shim.__all__:
        value = getattr(shim, name)
        if hasattr(module, name):
            assert getattr(module, name) is value, name
