"""Measures PostgreSQL's trigger-mode truth table from real inserts, and holds the docs to it.

docs/trigger-policy.md shows the table; this test derives it from a replicated insert and a local
insert on a real subscriber (in one cluster and across two), so the docs cannot drift from what
PostgreSQL does.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tests import helpers
from tests.helpers import execute

DOC = Path(__file__).parents[2] / "docs" / "trigger-policy.md"
MODES = {
    "ORIGIN": "ENABLE",
    "REPLICA": "ENABLE REPLICA",
    "ALWAYS": "ENABLE ALWAYS",
    "DISABLED": "DISABLE",
}


def documented_table() -> dict[str, tuple[str, str]]:
    """``{mode: (replicated, local)}`` from the markdown table in docs/trigger-policy.md."""
    rows: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in DOC.read_text().splitlines():
        cells = [c.strip().strip("`*") for c in line.strip().strip("|").split("|")]
        if "row arriving by replication" in line:
            in_table = True
            continue
        if in_table:
            if not line.strip().startswith("|"):
                break
            if set(line.strip()) <= set("|-: "):
                continue
            mode = re.sub(r"\s*\(.*\)", "", cells[0]).strip("` ").upper()
            rows[mode] = (cells[1], cells[2])
    return rows


def measure(
    source: str, target: str, source_conn_for_subscriber: str, same_cluster: bool
) -> dict[str, tuple[str, str]]:
    for conninfo in (source, target):
        execute(conninfo, "CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY)")
    execute(target, "CREATE TABLE fired (trigger name, id int)")
    execute(
        target,
        "CREATE FUNCTION public.log_fired() RETURNS trigger LANGUAGE plpgsql"
        " SET search_path = pg_catalog AS $$ BEGIN"
        " INSERT INTO public.fired VALUES (TG_NAME, NEW.id); RETURN NULL; END $$",
    )
    for mode, clause in MODES.items():
        trigger = f"probe_{mode.lower()}"
        execute(
            target,
            f"CREATE TRIGGER {trigger} AFTER INSERT ON probe"
            " FOR EACH ROW EXECUTE FUNCTION log_fired()",
        )
        execute(target, f"ALTER TABLE probe {clause} TRIGGER {trigger}")

    execute(source, "CREATE PUBLICATION probe_pub FOR TABLE probe")
    options = ""
    if same_cluster:
        execute(source, "SELECT pg_create_logical_replication_slot('probe_sub', 'pgoutput')")
        options = "WITH (create_slot = false, slot_name = 'probe_sub')"
    execute(
        target,
        f"CREATE SUBSCRIPTION probe_sub CONNECTION '{source_conn_for_subscriber}'"
        f" PUBLICATION probe_pub {options}",
    )
    execute(source, "INSERT INTO probe VALUES (1)")  # arrives by replication
    helpers.wait_for(
        lambda: execute(target, "SELECT count(*) FROM probe WHERE id = 1")[0][0],
        what="replicated row",
    )
    execute(target, "INSERT INTO probe VALUES (2)")  # written locally on the subscriber

    fired = set(execute(target, "SELECT trigger, id FROM fired"))
    word = {True: "fires", False: "does not fire"}
    return {
        mode: (
            word[(f"probe_{mode.lower()}", 1) in fired],
            word[(f"probe_{mode.lower()}", 2) in fired],
        )
        for mode in MODES
    }


@pytest.mark.parametrize("layout", ["one-cluster", "two-clusters"])
def test_truth_table_matches_the_docs(layout: str, hub, db: str, db2: str, remote_db: str) -> None:
    same = layout == "one-cluster"
    target = db2 if same else remote_db
    if same:
        reach = hub.conninfo(helpers.dbname(db))
    else:
        helpers.ensure_replication_user(db)
        reach = psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=hub.port, dbname=helpers.dbname(db),
            user="replication_user", password=helpers.REPLICATION_PASSWORD,
        )  # fmt: skip
        execute(db, "CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY)")
        execute(db, "GRANT SELECT ON probe TO replication_user")
    measured = measure(db, target, reach, same)
    assert measured == {
        "ORIGIN": ("does not fire", "fires"),
        "REPLICA": ("fires", "does not fire"),
        "ALWAYS": ("fires", "fires"),
        "DISABLED": ("does not fire", "does not fire"),
    }
    assert documented_table() == measured, f"{DOC} disagrees with PostgreSQL"
