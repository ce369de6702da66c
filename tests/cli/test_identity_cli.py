"""agentchat agent add / list / remove as users run them: text, JSON, exit codes, one-line
errors, the password shown once or kept in a passfile."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from agentchat.replication.passfile import read_passfile
from tests import helpers
from tests.helpers import execute, run_cli


def test_add_list_remove_as_a_user_runs_them(installed_db: str, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    try:
        out = helpers.ok(run_cli("agent", "add", "owl", "--dsn", installed_db,
                                 "--channel", "ops", "--passfile", str(passfile)))  # fmt: skip
        assert out.splitlines()[0] == "agent owl: role ac_owl (created)"
        assert "channels   ops" in out
        assert f"password   written to {passfile}" in out
        assert stat.S_IMODE(os.stat(passfile).st_mode) == 0o600
        password = read_passfile(passfile, "ac_owl")
        assert password and password not in out
        again = json.loads(helpers.ok(run_cli("agent", "add", "owl", "--dsn", installed_db,
                                              "--json", "--passfile", str(passfile))))  # fmt: skip
        assert again["created"] is False and again["passfile"] is None
        assert (again["agent"], again["role"], again["channels"]) == ("owl", "ac_owl", ["ops"])
        assert "password" not in again
        listed = helpers.ok(run_cli("agent", "list", "--dsn", installed_db))
        assert "owl" in listed and "ac_owl" in listed and "(1 row)" in listed
        gone = json.loads(helpers.ok(run_cli("agent", "remove", "owl", "--dsn", installed_db,
                                             "--json", "--passfile", str(passfile))))  # fmt: skip
        assert gone == {"agent": "owl", "role": "ac_owl", "removed": True}
        assert read_passfile(passfile, "ac_owl") is None
        assert helpers.ok(run_cli("agent", "list", "--dsn", installed_db)).strip() == (
            "no agents registered"
        )
    finally:
        run_cli("agent", "remove", "owl", "--dsn", installed_db, "--passfile", str(passfile))


def test_show_password_prints_it_once(installed_db: str) -> None:
    try:
        out = helpers.ok(run_cli("agent", "add", "jay", "--dsn", installed_db, "--show-password"))
        line = next(ln for ln in out.splitlines() if ln.startswith("password"))
        assert "shown once" in line
        assert len(line.split()[1]) >= 24
    finally:
        run_cli("agent", "remove", "jay", "--dsn", installed_db)


def test_bad_usage_is_one_line(installed_db: str, db: str, tmp_path: Path) -> None:
    done = run_cli("agent", "add", "owl", "--dsn", installed_db, "--show-password",
                   "--passfile", str(tmp_path / "p"))  # fmt: skip
    helpers.one_line_error(done, "choose one", 2)
    done = run_cli("agent", "add", "owl", "--dsn", installed_db, "--channel", "bad channel")
    helpers.one_line_error(done, "invalid channel name", 2)
    done = run_cli("agent", "add", "owl", "--dsn", db, "--show-password")
    helpers.one_line_error(done, "no agent registry", 1)
    done = run_cli("agent", "remove", "owl", "--dsn", installed_db)
    helpers.one_line_error(done, "no agent owl is registered", 2)
    assert execute(installed_db, "SELECT count(*) FROM agentchat_agents") == [(0,)]
    assert execute(installed_db, "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_owl'") == [(0,)]
    assert not (tmp_path / "p").exists()
