"""`agentchat embed-worker` and `agentchat search` as users run them: real subprocesses.

The HTTP embedder talks to tests/embedding_stub.py (real HTTP on 127.0.0.1, deterministic
vectors); the real all-MiniLM-L6-v2 is loaded by the CLI in one test only (two processes, about
8 s each). Every command runs with OPENAI_API_KEY set to a secret that must never be printed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentchat import install, messaging, replication, topology
from agentchat.embeddings import OpenAIEmbedder, Worker
from agentchat.server import Cluster
from tests import helpers
from tests.embedding_stub import Stub, serve, stub_vector
from tests.helpers import EXE, execute, ok, one_line_error, wait_for

SECRET = "some-secret-value"
#: a variable no test sets: --api-key-env naming it means "no key"
UNSET_KEY_ENV = "AGENTCHAT_TEST_NO_SUCH_KEY"
WORKER_KEYS = {"mode", "embedded", "failed", "batches", "backlog", "retrying", "failing",
               "seconds", "rate"}  # fmt: skip
HIT_KEYS = {"id", "channel", "sender", "mentions", "reply_to", "created_at", "message", "score"}
PENDING = "SELECT count(*) FROM memory_embeddings WHERE embedding IS NULL"
EMBEDDED = "SELECT count(*) FROM memory_embeddings WHERE embedding IS NOT NULL"
SUMMARY = re.compile(
    r"embedded (\d+) row\(s\) in \d+\.\d s \(\d+\.\d/s\); failed attempts (\d+);"
    r" left: (\d+) due, (\d+) waiting to retry"
)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `agentchat ARGS` with OPENAI_API_KEY=SECRET; the secret must never be printed."""
    done = helpers.run_cli(
        *args, env={"OPENAI_API_KEY": SECRET, **(env or {})}, timeout=timeout,
        unset=(UNSET_KEY_ENV,),
    )  # fmt: skip
    assert SECRET not in done.stdout and SECRET not in done.stderr, done.stdout + done.stderr
    return done


def openai(stub: Stub | str) -> list[str]:
    url = stub.url if isinstance(stub, Stub) else stub
    return ["--embedder", "openai", "--base-url", url, "--model", "m"]


def worker_once(dsn: str, stub: Stub, *extra: str) -> tuple[int, dict[str, Any], str]:
    """`embed-worker --once --json` against the stub: exit code, its JSON, its stderr."""
    done = cli("embed-worker", "--dsn", dsn, "--once", "--json", *openai(stub), *extra)
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)  # stdout is the JSON and nothing else
    assert set(report) == WORKER_KEYS, report
    return done.returncode, report, done.stderr


def count(conninfo: str, query: str) -> int:
    return int(str(execute(conninfo, query)[0][0]))


def is_embedded(conninfo: str, chat_id: int) -> bool:
    query = "SELECT embedding IS NOT NULL FROM memory_embeddings WHERE source_id = %s"
    return execute(conninfo, query, (chat_id,)) == [(True,)]


def search_json(dsn: str, *args: str) -> list[dict[str, Any]]:
    hits = json.loads(ok(cli("search", "--dsn", dsn, "--json", *args)))
    assert isinstance(hits, list)
    return hits


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def prometheus(done: subprocess.CompletedProcess[str]) -> dict[str, dict[tuple[str, str], float]]:
    """agentchat_embeddings_* samples: {metric: {(database, mode): value}}."""
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}
    return {
        name: {(s.labels["database"], s.labels["mode"]): s.value for s in families[name].samples}
        for name in ("agentchat_embeddings_rows", "agentchat_embeddings_queued",
                     "agentchat_embeddings_failing")
    }  # fmt: skip


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serve() as running:
        yield running


@pytest.fixture
def chatdb(installed_db: str) -> str:
    return installed_db


@dataclass
class Topo:
    source: str
    replica: str  # on the remote cluster ("another host")


@pytest.fixture
def topo(installed_db: str, remote_db: str, tmp_path: Path) -> Topo:
    """db replicated to remote_db; the topology is ./agentchat.toml (status's default)."""
    db = installed_db
    replication.add(
        db, remote_db, topology=topology.Topology(tmp_path / "agentchat.toml"), timeout=60
    )
    return Topo(db, remote_db)


# -- embed-worker --once -------------------------------------------------------------------------


def test_embed_worker_once_json_drains_the_queue(chatdb: str, stub: Stub) -> None:
    db = chatdb
    ids = [messaging.send(db, sender="nova", message=f"fact {i}", to=["*"]) for i in range(5)]
    code, report, err = worker_once(db, stub, "--batch-size", "2")
    assert code == 0 and err == ""
    assert report["mode"] == "local"
    counts = ("embedded", "failed", "batches", "backlog", "retrying", "failing")
    assert [report[k] for k in counts] == [5, 0, 3, 0, 0, 0]
    assert report["seconds"] > 0 and report["rate"] > 0
    rows = execute(
        db,
        "SELECT source_id, content, embedding::text, model, attempts, last_error"
        " FROM memory_embeddings ORDER BY source_id",
    )
    assert [r[0] for r in rows] == ids
    for _id, content, vector, model, attempts, error in rows:
        assert json.loads(str(vector)) == pytest.approx(stub_vector(str(content), 384), abs=1e-6)
        assert (model, attempts, error) == ("m", 0, None)
    del stub.embedded["dimension probe"]
    assert stub.embedded == {f"fact {i}": 1 for i in range(5)}  # each text once
    # nothing due: a second run embeds nothing and still exits 0
    code, again, err = worker_once(db, stub)
    assert code == 0 and err == "" and (again["embedded"], again["batches"]) == (0, 0)


@pytest.mark.slow
def test_a_poisoned_row_exits_1_is_recorded_and_degrades_status(chatdb: str, stub: Stub) -> None:
    db = chatdb
    # each poisoned request costs the embedder's own retries (1.5 s): one poisoned row, in a
    # batch with good ones (the batch fails, then its rows are tried one by one)
    good = [messaging.send(db, sender="nova", message=f"fine {i}") for i in range(2)]
    bad = [messaging.send(db, sender="nova", message="poison pill")]
    good += [messaging.send(db, sender="nova", message=f"fine {i}") for i in range(2, 4)]
    code, report, err = worker_once(db, stub, "--retry-base", "60", "--batch-size", "8")
    assert code == 1
    assert (
        report["embedded"],
        report["failed"],
        report["retrying"],
        report["failing"],
        report["backlog"],
    ) == (4, 1, 1, 1, 0)
    # the failure is a warning on stderr (one line), and the good rows went on
    [warning] = err.splitlines()
    assert warning.startswith("agentchat: warning: 1 row(s) failed to embed, will retry: ")
    assert "HTTP 500" in warning and "poisoned input" in warning
    rows = execute(
        db,
        "SELECT source_id, attempts, last_error,"
        " next_attempt_at > now() + interval '50 s' FROM memory_embeddings"
        " WHERE embedding IS NULL ORDER BY source_id",
    )
    assert [(r[0], r[1], r[3]) for r in rows] == [(i, 1, True) for i in bad]
    for row in rows:
        assert str(row[2]).startswith(f"embedding endpoint {stub.url}/embeddings answered HTTP 500")
        assert "stub: poisoned input" in str(row[2])
    assert count(db, EMBEDDED) == len(good)

    # not due yet: a second run leaves it alone, and still exits 1 (a row is left failing)
    requests = stub.requests
    code, again, _ = worker_once(db, stub, "--retry-base", "60")
    assert code == 1 and (again["failed"], again["retrying"]) == (0, 1)
    assert stub.requests == requests + 1  # the dimension probe only

    # status: an embeddings DEGRADED line, exit 1; JSON and Prometheus say the same
    done = cli("status", db)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "  DEGRADED embeddings: local (embedded here, where messages are written); 4 embedded,"
        " 1 queued, model m; 1 failing (retried with backoff)"
    ) in done.stdout.splitlines()
    assert "fix: SELECT source_id, attempts, last_error FROM memory_embeddings" in done.stdout
    assert done.stdout.splitlines()[-1] == "verdict: DEGRADED"
    data = json.loads(cli("status", "--json", db).stdout)
    assert data["verdict"] == "degraded"
    assert data["databases"][0]["embeddings"] == {
        "mode": "local", "embedded": 4, "queued": 1, "failing": 1, "models": ["m"],
    }  # fmt: skip
    [check] = [c for c in data["checks"] if c["check"] == "embeddings"]
    assert (check["verdict"], check["subject"]) == ("degraded", "local")
    metrics = prometheus(cli("status", "--format", "prometheus", db))
    name = helpers.dbname(db)
    assert metrics == {
        "agentchat_embeddings_rows": {(name, "local"): 4.0},
        "agentchat_embeddings_queued": {(name, "local"): 1.0},
        "agentchat_embeddings_failing": {(name, "local"): 1.0},
    }


def test_text_output_summary_on_stdout_progress_on_stderr(chatdb: str, stub: Stub) -> None:
    db = chatdb
    for i in range(3):
        messaging.send(db, sender="nova", message=f"note {i}")
    done = cli("embed-worker", "--dsn", db, "--once", *openai(stub))
    [line] = ok(done).splitlines()  # stdout: the summary and nothing else
    match = SUMMARY.fullmatch(line)
    assert match is not None, line
    assert match.groups() == ("3", "0", "0", "0")
    progress = done.stderr.splitlines()
    assert progress, "no progress line"
    for entry in progress:
        assert re.fullmatch(
            r"agentchat: embedded \d+ \(\d+\.\d/s\), backlog \d+, retrying \d+,"
            r" failed attempts \d+", entry
        ), entry  # fmt: skip
    # --quiet: neither a progress line nor the summary
    messaging.send(db, sender="nova", message="one more")
    quiet = cli("embed-worker", "--dsn", db, "--once", "--quiet", *openai(stub))
    assert ok(quiet) == "" and quiet.stderr == ""
    assert count(db, PENDING) == 0


def test_long_running_worker_wakes_on_notify_and_stops_on_sigterm(
    chatdb: str, stub: Stub, tmp_path: Path
) -> None:
    db = chatdb
    errfile = tmp_path / "worker.err"
    with errfile.open("w") as err:
        worker = subprocess.Popen(
            [EXE, "embed-worker", "--dsn", db, "--poll-interval", "300", *openai(stub)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "OPENAI_API_KEY": SECRET},
        )
    try:
        # its first progress line is printed after it LISTENs
        wait_for(
            lambda: "agentchat: embedded 0" in errfile.read_text(),
            timeout=20,
            what="the worker listening",
        )
        assert count(db, EMBEDDED) == 0
        for text in ("wake up", "and again"):
            msg_id = int(ok(cli("send", "--dsn", db, "--as", "nova", text)))
            # poll interval 300 s: only the NOTIFY can wake it this soon
            embedded = functools.partial(is_embedded, db, msg_id)
            wait_for(embedded, timeout=5, what=f"{msg_id} embedded")
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
    match = SUMMARY.fullmatch(out.strip())
    assert match is not None and match.groups() == ("2", "0", "0", "0"), out
    err_text = errfile.read_text()
    assert SECRET not in out + err_text and "Traceback" not in err_text
    assert all(line.startswith("agentchat: embedded ") for line in err_text.splitlines())
    del stub.embedded["dimension probe"]
    assert stub.embedded == {"wake up": 1, "and again": 1}


# -- bad input -----------------------------------------------------------------------------------


@dataclass
class BadDbs:
    installed: str  # 384 dimensions, one message queued
    small: str  # installed with --dimension 8, one message queued
    bare: str  # no agentchat
    missing: str  # no such database
    stub: Stub


@pytest.fixture(scope="module")
def bad(hub: Cluster, hub_template: str) -> Iterator[BadDbs]:
    names = [f"t_emb_{kind}_{os.getpid()}_{hub.version}" for kind in ("ok", "dim8", "bare")]
    for name in names:
        helpers.drop_database(hub, name)
        helpers.create_database(hub, name, hub_template if name == names[0] else None)
    installed, small, bare = (hub.conninfo(n) for n in names)
    install.install(small, dimension=8)
    for dsn in (installed, small):
        messaging.send(dsn, sender="nova", message="queued")
    missing = hub.conninfo("t_emb_no_such_database")
    with serve() as running:
        yield BadDbs(installed, small, bare, missing, running)
    for name in names:
        helpers.drop_database(hub, name)


UNREACHABLE = "http://127.0.0.1:9/v1"  # port 9 (discard): nothing listens
NEEDS = "--embedder openai needs --base-url URL and --model NAME"
NOT_INSTALLED = "agentchat is not installed in database"
MISMATCH = "the embedder m gives 384-dimension vectors, but memory_embeddings in database"
BAD_CASES: list[tuple[str, str, list[str], str, int]] = [
    ("worker openai alone", "installed", ["embed-worker", "--once", "--embedder", "openai"],
     NEEDS, 2),
    ("search no base-url", "installed",
     ["search", "--embedder", "openai", "--model", "m", "hi"], NEEDS, 2),
    ("ftp base-url", "installed", ["embed-worker", "--once", *openai("ftp://x")],
     "--base-url must be an http(s) URL, not 'ftp://x'", 2),
    ("local with base-url", "installed",
     ["search", "--base-url", "STUB", "hi"], "the local embedder is all-MiniLM-L6-v2", 2),
    ("search unreachable", "installed", ["search", *openai(UNREACHABLE), "hi"],
     f"embedding endpoint {UNREACHABLE}/embeddings: ConnectError", 1),
    ("worker dimension", "small", ["embed-worker", "--once", *openai("STUB")], MISMATCH, 1),
    ("search dimension", "small", ["search", *openai("STUB"), "hi"], MISMATCH, 1),
    ("empty query", "installed", ["search", *openai("STUB"), ""],
     "the search query must not be empty", 2),
    ("limit 0", "installed", ["search", *openai("STUB"), "--limit", "0", "hi"],
     "Invalid value for '--limit' / '-k': 0 is not in the range 1<=x<=1000", 2),
    ("bad channel", "installed", ["search", *openai("STUB"), "--channel", "a b", "hi"],
     "invalid channel", 2),
    ("worker not installed", "bare", ["embed-worker", "--once", *openai("STUB")],
     NOT_INSTALLED, 1),
    ("search not installed", "bare", ["search", *openai("STUB"), "hi"], NOT_INSTALLED, 1),
    ("missing database", "missing", ["search", *openai("STUB"), "hi"],
     'database "t_emb_no_such_database" does not exist', 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("where", "args", "fragment", "code"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_is_one_line_without_traceback(
    bad: BadDbs, where: str, args: list[str], fragment: str, code: int
) -> None:
    dsn = getattr(bad, where)
    args = [bad.stub.url if a == "STUB" else a for a in args]
    one_line_error(cli(*args, "--dsn", dsn), fragment, code)
    if where in ("installed", "small"):  # the queued message was not touched
        assert execute(dsn, "SELECT attempts, embedding IS NULL FROM memory_embeddings") == [
            (0, True)
        ]


def test_the_api_key_comes_from_the_named_variable(chatdb: str, stub: Stub) -> None:
    db = chatdb
    messaging.send(db, sender="nova", message="hello")
    # (OPENAI_API_KEY, the default, is sent as a bearer token: see the search test)
    ok(cli("search", "--dsn", db, *openai(stub), "--api-key-env", UNSET_KEY_ENV, "hello"))
    assert stub.auth and set(stub.auth) == {None}  # no Authorization header at all
    stub.auth.clear()
    named = ["--api-key-env", "OTHER_EMBED_KEY"]
    other = {"OTHER_EMBED_KEY": "other-key-value"}
    ok(cli("embed-worker", "--dsn", db, "--once", "--quiet", *openai(stub), *named, env=other))
    assert stub.auth and set(stub.auth) == {"Bearer other-key-value"}
    assert count(db, EMBEDDED) == 1


# -- search --------------------------------------------------------------------------------------


def test_search_json_shape_order_channel_and_limit(chatdb: str, stub: Stub) -> None:
    db = chatdb
    assert search_json(db, *openai(stub), "anything") == []  # nothing embedded yet
    sent = [
        ("general", "nova", ["*"], "deploy finished"),
        ("ops", "sage", ["nova"], "disk almost full"),
        ("ops", "graybeard", [], "rotate the logs"),
        ("general", "sage", ["graybeard"], "lunch at noon"),
        ("ops", "nova", ["sage", "graybeard"], "backup done"),
        ("general", "graybeard", ["*"], "build is green"),
    ]
    ids = [messaging.send(db, sender=s, message=m, to=to, channel=c) for c, s, to, m in sent]
    reply = messaging.send(
        db, sender="nova", message="thanks", to=["sage"], reply_to=ids[1], channel="ops"
    )
    Worker(db, OpenAIEmbedder(stub.url, "m", dimension=384)).run(once=True)
    stub.auth.clear()  # that was the library, without a key
    rows = {int(str(r[0])): r for r in execute(
        db, "SELECT id, channel, sender, mentions, reply_to, message FROM agent_chat")}  # fmt: skip

    query = "disk almost full"
    hits = search_json(db, *openai(stub), query)
    assert len(hits) == 7 and all(set(h) == HIT_KEYS for h in hits)
    assert hits[0]["id"] == ids[1] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    for hit in hits:
        assert tuple(hit[k] for k in ("id", "channel", "sender", "mentions", "reply_to",
                                      "message")) == rows[hit["id"]]  # fmt: skip
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", hit["created_at"])
        # cosine similarity of the stub's (normalised) vectors
        expected = dot(stub_vector(query, 384), stub_vector(hit["message"], 384))
        assert hit["score"] == pytest.approx(expected, abs=1e-5)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert next(h for h in hits if h["id"] == reply)["reply_to"] == ids[1]

    assert search_json(db, *openai(stub), "--limit", "3", query) == hits[:3]
    ops = search_json(db, *openai(stub), "--channel", "ops", query)
    assert [h["id"] for h in ops] == [h["id"] for h in hits if h["channel"] == "ops"]
    assert len(ops) == 4

    # the text rendering: score, id, channel, sender, message
    text = ok(cli("search", "--dsn", db, *openai(stub), "-k", "2", query)).splitlines()
    assert text == [
        f"{h['score']:.3f}  #{h['id']} [{h['channel']}] {h['sender']}: {h['message']}"
        for h in hits[:2]
    ]
    # the key in OPENAI_API_KEY (the default --api-key-env) went as a bearer token
    assert stub.auth and set(stub.auth) == {f"Bearer {SECRET}"}


# -- the real model, source -> replica -----------------------------------------------------------


@pytest.mark.slow
def test_the_real_model_embeds_at_the_source_and_search_works_on_the_replica(
    topo: Topo, stub: Stub
) -> None:
    text = "The nightly backup job failed because the disk was full"
    backup = int(ok(cli("send", "--dsn", topo.source, "--as", "nova", "--to", "*", text)))
    others = [
        messaging.send(topo.source, sender="sage", message=text, to=["*"])
        for text in (
            "Lunch is at noon in the big meeting room",
            "I adopted a kitten from the shelter this weekend",
            "The quarterly sales numbers look strong in Europe",
            "Please review my pull request for the login page",
        )
    ]
    wait_for(
        lambda: count(topo.replica, "SELECT count(*) FROM agent_chat") == 5,
        timeout=30,
        what="replication",
    )
    # the replica's worker leaves the replicated queue rows to the source
    code, report, _ = worker_once(topo.replica, stub)
    assert code == 0 and report["mode"] == "replicated" and report["embedded"] == 0
    assert count(topo.replica, PENDING) == 5

    # the default embedder is the local model (one process load)
    done = cli("embed-worker", "--dsn", topo.source, "--once", "--json")
    report = json.loads(ok(done))
    assert (report["mode"], report["embedded"], report["failed"]) == ("local", 5, 0)
    models = "SELECT DISTINCT vector_dims(embedding), model FROM memory_embeddings"
    assert execute(topo.source, models) == [(384, "all-MiniLM-L6-v2")]
    wait_for(lambda: count(topo.replica, EMBEDDED) == 5, timeout=30, what="embeddings replicated")

    # search on the replica (second process load): the paraphrase finds the backup message
    hits = search_json(topo.replica, "-k", "3", "storage ran out so the backup broke")
    assert hits[0]["id"] == backup, hits
    assert hits[0]["score"] > hits[1]["score"] + 0.1, hits
    assert hits[1]["id"] in others and len(hits) == 3

    # status sees both ends: computed at the source, arrived by replication at the replica
    verbose = ok(cli("status", "-v")).splitlines()
    embeddings = [line.strip() for line in verbose if "embeddings:" in line]
    assert embeddings == [
        "ok       embeddings: local (embedded here, where messages are written); 5 embedded,"
        " 0 queued, model all-MiniLM-L6-v2",
        "ok       embeddings: replicated (embeddings arrive by replication from the source);"
        " 5 embedded, 0 queued, model all-MiniLM-L6-v2",
    ]
    data = json.loads(ok(cli("status", "--json")))
    assert [d["embeddings"]["mode"] for d in data["databases"]] == ["local", "replicated"]
    assert [d["embeddings"]["models"] for d in data["databases"]] == [["all-MiniLM-L6-v2"]] * 2


# -- install --embed-replicated, status ----------------------------------------------------------


def test_embed_replicated_is_refused_on_a_plain_database(chatdb: str) -> None:
    db = chatdb
    refused = f"'{helpers.dbname(db)}' is not a replica (no agent_chat subscription)"
    one_line_error(cli("install", "--dsn", db, "--embed-replicated"), refused, 2)
    assert execute(
        db, "SELECT count(*) FROM agentchat_settings WHERE key = 'embed_replicated'"
    ) == [(0,)]
    data = json.loads(cli("status", "--json", db).stdout)
    assert data["databases"][0]["embeddings"]["mode"] == "local"


@pytest.mark.slow
def test_embed_replicated_on_a_replica_install_worker_and_status(topo: Topo, stub: Stub) -> None:
    source, replica = topo.source, topo.replica
    # refused on the source too: it publishes, it does not subscribe
    one_line_error(cli("install", "--dsn", source, "--embed-replicated"), "is not a replica", 2)
    done = cli("install", "--dsn", replica, "--embed-replicated")
    assert (
        "embeddings embed-replicated: replicated messages are embedded here"
        in ok(done).splitlines()
    )
    ids = [messaging.send(source, sender="nova", message=f"item {i}") for i in range(3)]
    wait_for(
        lambda: count(replica, "SELECT count(*) FROM agent_chat") == 3,
        timeout=30,
        what="replication",
    )
    code, report, err = worker_once(replica, stub)
    assert code == 0 and err == ""
    assert (report["mode"], report["embedded"]) == ("embed-replicated", 3)
    assert execute(replica, "SELECT source_id FROM memory_embeddings WHERE embedding IS NOT NULL"
                            " ORDER BY 1") == [(i,) for i in ids]  # fmt: skip
    assert count(source, PENDING) == 3  # the source runs no worker

    verbose = ok(cli("status", "-v")).splitlines()
    assert [line.strip() for line in verbose if "embeddings:" in line] == [
        "ok       embeddings: local (embedded here, where messages are written); 0 embedded,"
        " 3 queued",
        "ok       embeddings: embed-replicated (replicated messages are embedded here);"
        " 3 embedded, 0 queued, model m",
    ]
    data = json.loads(ok(cli("status", "--json")))
    assert [d["embeddings"]["mode"] for d in data["databases"]] == ["local", "embed-replicated"]
    metrics = prometheus(cli("status", "--format", "prometheus"))
    src, rep = helpers.dbname(source), helpers.dbname(replica)
    assert metrics == {
        "agentchat_embeddings_rows": {(src, "local"): 0.0, (rep, "embed-replicated"): 3.0},
        "agentchat_embeddings_queued": {(src, "local"): 3.0, (rep, "embed-replicated"): 0.0},
        "agentchat_embeddings_failing": {(src, "local"): 0.0, (rep, "embed-replicated"): 0.0},
    }

    # and back: the replica receives the source's embeddings again
    done = cli("install", "--dsn", replica, "--no-embed-replicated")
    assert (
        "embeddings replicated: embeddings arrive by replication from the source"
        in ok(done).splitlines()
    )


# -- regressions: bugs found while writing this file (fixed in src since) ------------------------


@dataclass
class RejectingStub(Stub):
    """The stub, answering HTTP 400 (not retried) for texts containing ``malformed``."""

    def answer(self, body: dict[str, Any], auth: str | None) -> tuple[int, dict[str, Any]]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if any("malformed" in t for t in texts):
            with self.lock:
                self.requests += 1
            return 400, {"error": {"message": "stub: malformed input"}}
        return super().answer(body, auth)


@pytest.fixture
def rejecting() -> Iterator[Stub]:
    with serve(RejectingStub()) as running:
        yield running


def test_a_key_with_a_newline_or_odd_characters_is_never_printed(chatdb: str, stub: Stub) -> None:
    # a key file with CRLF read by $(cat key): httpx used to refuse the header and quote it
    ok(cli("search", "--dsn", chatdb, *openai(stub), "hi", env={"OPENAI_API_KEY": SECRET + "\r\n"}))
    assert set(stub.auth) == {f"Bearer {SECRET}"}  # the trailing newline is not part of the key
    # non-ASCII (it used to be an internal error, exit 70); spaces and controls alike
    done = cli("search", "--dsn", chatdb, *openai(stub), "hi", env={"OPENAI_API_KEY": "sécret"})
    one_line_error(done, "the API key contains spaces, control or non-ASCII characters", 2)
    assert "sécret" not in done.stderr


def test_once_exits_0_when_the_rest_is_held_by_another_worker(chatdb: str, stub: Stub) -> None:
    db = chatdb
    ids = [messaging.send(db, sender="nova", message=f"row {i}") for i in range(3)]
    with psycopg.connect(db) as peer:  # a transaction, like another worker's claimed batch
        peer.execute("SELECT id FROM memory_embeddings WHERE source_id = %s FOR UPDATE", (ids[2],))
        code, report, _ = worker_once(db, stub)
    assert (report["embedded"], report["failed"], report["retrying"]) == (2, 0, 0)
    assert report["backlog"] == 1  # the peer's row, still NULL when this run counted
    assert code == 0, report  # nothing failed: the held row is the peer's to embed


def test_once_with_retry_base_0_tries_a_failing_row_once(chatdb: str, rejecting: Stub) -> None:
    messaging.send(chatdb, sender="nova", message="malformed")
    # it used to claim the row again and again and never return
    args = ["--once", "--json", "--retry-base", "0", *openai(rejecting)]
    done = cli("embed-worker", "--dsn", chatdb, *args, timeout=10)
    assert done.returncode == 1, done.stdout + done.stderr
    assert execute(chatdb, "SELECT attempts FROM memory_embeddings") == [(1,)]
    assert rejecting.requests == 2  # the dimension probe, and one attempt


def test_a_lone_failing_row_is_warned_about(chatdb: str, rejecting: Stub) -> None:
    messaging.send(chatdb, sender="nova", message="malformed")
    done = cli("embed-worker", "--dsn", chatdb, "--once", "--quiet", *openai(rejecting))
    assert done.returncode == 1
    [warning] = done.stderr.splitlines()
    assert warning.startswith("agentchat: warning: 1 row(s) failed to embed, will retry: ")
    assert "HTTP 400" in warning


# -- regression: a --once run outlasting a failed row's backoff still says the row failed -------


def test_once_exits_1_when_a_row_failed_early_in_a_long_run(chatdb: str) -> None:
    db = chatdb
    bad = messaging.send(db, sender="nova", message="malformed")  # first in id order
    for i in range(15):
        messaging.send(db, sender="nova", message=f"fine {i}")
    # the failed row waits 1 s (the minimum); the run goes on for ~1.5 s after it failed
    with serve(RejectingStub(delay=0.1)) as slow:
        code, report, _ = worker_once(db, slow, "--retry-base", "0", "--batch-size", "1")
    assert (report["embedded"], report["failed"], report["failing"]) == (15, 1, 1)
    assert execute(db, "SELECT source_id FROM memory_embeddings WHERE embedding IS NULL") == [
        (bad,)
    ]
    # the row is due again by the end (backlog, not retrying), and still a failure
    assert code == 1, report
