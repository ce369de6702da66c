"""`agentchat soak` as operators run it: a short run on two embedded clusters, and bad input.

The run is half a minute with 8 agents at 50 messages/s (the defaults, 20 agents at 200/s, are
for a soak on a machine of its own: their start-up and the embedding backlog would double the
suite's time on two shared cores). Every kind of fault still happens once, and the assertions
are on the report's counts, never on its times.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from agentchat import soak
from tests.helpers import invoke, run_cli


def agentchat(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout)


@pytest.mark.slow
def test_a_short_soak_loses_nothing_and_records_nothing_twice() -> None:
    done = agentchat("soak", "--minutes", "0.5", "--agents", "8", "--rate", "50", "--json")
    assert done.stderr == ""  # piped: no progress display
    report = json.loads(done.stdout)
    assert done.returncode == 0, report["problems"]
    assert report["verdict"] == "ok" and report["problems"] == []
    # what was sent was delivered, once, to every agent it was addressed to
    assert report["sent"] > 500
    agents = report["agents"]
    assert len(agents) == 8
    assert {a["database"] for a in agents} == {"soak_source"} | {
        f"soak_replica_{i}" for i in (1, 2, 3)
    }
    assert all(a["delivered"] == a["expected"] > 0 for a in agents)
    assert report["delivered"] == report["expected"] == sum(a["expected"] for a in agents)
    assert report["duplicates"] == 0 and report["undelivered"] == 0
    assert all(a["recorded_twice"] == 0 and a["handled_again"] <= a["cuts"] for a in agents)
    assert report["missing_on_replicas"] == {f"soak_replica_{i}": 0 for i in (1, 2, 3)}
    # every fault, once; the walsender kill found every replica's walsender back
    assert [f["kind"] for f in report["faults"]] == list(soak.FAULTS)
    assert report["faults"][1]["detail"] == "3 walsender(s) terminated"
    subs = report["subscriptions"]
    assert len(subs) == 3 and all(s["enabled"] and s["running"] for s in subs)
    sent = report["sent"]
    assert report["embeddings"] == {db: [sent, sent] for db in report["embeddings"]}
    assert len(report["embeddings"]) == 4
    for when in ("start", "end"):
        rss = report["rss_kib"][when]
        assert rss["listener_mean"] > 0 and rss["worker"] > 0 and rss["listeners_total"] > 0
    assert report["kept"] is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--minutes", "0"], "--minutes must be more than 0"),
        (["--minutes", "nan"], "--minutes must be more than 0"),
        (["--minutes", "1", "--databases", "1"], "--databases must be 2 to 10"),
        (["--minutes", "1", "--agents", "3"], "--agents must be 4 to 200"),
        ([], "Missing option '--minutes'"),
    ],
)
# refused before anything starts: run in-process (helpers.invoke), no interpreter to start
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    done = invoke("soak", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentchat: error: "), done.stderr
    assert fragment in lines[0]
