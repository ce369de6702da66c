"""`agentchat send`, `listen` and `prune` as users run them: real subprocesses, real clusters.

Every command here is the installed console script, except refusals decided from the arguments
alone, which run :func:`agentchat.cli.main` (what the console script runs) in this process
(:func:`tests.helpers.invoke`); the database is checked directly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agentchat import messaging, replication, topology
from agentchat.server import Cluster
from tests import helpers
from tests.helpers import EXE, execute, invoke, marks, ok, one_line_error, pg_env, run_cli, wait_for
from tests.integration.test_agents import assert_poison_failed, let_anything_in

PY = f"{shlex.quote(sys.executable)} -S -E"  # a Python handler without site: quick to start
KEYS = {"id", "channel", "sender", "mentions", "reply_to", "created_at", "message"}


def cli(
    *args: str,
    input: str | bytes | None = "",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `agentchat ARGS` in its own process, *input* (text or raw bytes) on
    stdin (an empty one by default); output decoded."""
    return run_cli(*args, input=input, env=env, cwd=cwd)


def assert_one_line_error(
    done: subprocess.CompletedProcess[str], fragment: str, code: int = 2
) -> str:
    """Exit *code*, nothing on stdout, one `agentchat: error: ` line with *fragment*, no
    traceback."""
    assert "Traceback" not in done.stderr
    return one_line_error(done, fragment, code)


def chat(conninfo: str) -> list[tuple[object, ...]]:
    return execute(
        conninfo,
        "SELECT id, channel, sender, mentions, reply_to, message FROM agent_chat ORDER BY id",
    )


def json_lines(text: str) -> list[dict[str, object]]:
    """JSON Lines: split on newlines only (str.splitlines would split inside U+2028 too)."""
    assert text == "" or text.endswith("\n"), text[-100:]
    return [json.loads(line) for line in text.split("\n")[:-1]]


def once(conninfo: str, agent: str, *extra: str) -> list[dict[str, object]]:
    """`agentchat listen --once --json --as AGENT`: the messages it printed."""
    return json_lines(ok(cli("listen", "--dsn", conninfo, "--as", agent, "--once", "--json",
                             *extra)))  # fmt: skip


def listening(conninfo: str, app: str) -> bool:
    """Whether the listener started with PGAPPNAME=*app* LISTENs on the database (its
    SIGTERM handler is installed by then)."""
    [(n,)] = execute(
        conninfo,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND query LIKE '%%LISTEN agent_chat%%'",
        (app,),
    )
    return int(str(n)) >= 1


def count(conninfo: str, query: str = "SELECT count(*) FROM agent_chat") -> int:
    return int(str(execute(conninfo, query)[0][0]))


@pytest.fixture
def chatdb(installed_db: str) -> str:
    """A fresh database with agentchat installed (a copy of the installed template)."""
    return installed_db


@pytest.fixture
def replica(chatdb: str, remote_db: str, tmp_path: Path) -> str:
    """remote_db, a replica of chatdb on another cluster; the topology is ./agentchat.toml."""
    replication.add(chatdb, remote_db, topology=topology.Topology(tmp_path / "agentchat.toml"),
                    timeout=60)  # fmt: skip
    return remote_db


def wait_replicated(source: str, target: str) -> None:
    wait_for(lambda: chat(target) == chat(source), timeout=30, what="replication")


# -- send ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_send_prints_the_id_and_stores_the_message(chatdb: str, hub: Cluster) -> None:
    db = chatdb
    first = ok(cli("send", "--dsn", db, "--as", "nova", "--to", "graybeard", "hello"))
    assert first.endswith("\n") and first.strip().isdigit()
    first_id = int(first)
    as_json = json.loads(ok(cli("send", "--dsn", db, "--as", "Nova", "--to", "graybeard",
                                "--json", "again")))  # fmt: skip
    assert set(as_json) == {"id"} and isinstance(as_json["id"], int) and as_json["id"] > first_id
    formatted = json.loads(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "graybeard",
                                  "--format", "json", "and again")))  # fmt: skip
    assert set(formatted) == {"id"} and formatted["id"] > as_json["id"]
    from_stdin = int(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "sage",
                            input="from stdin: ünïcode ✓")))  # fmt: skip
    repeated = int(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "graybeard",
                          "--to", "SAGE", "two")))  # fmt: skip
    comma = int(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "sage,graybeard,sage",
                       "two, commas")))  # fmt: skip
    everyone = int(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "*", "all")))
    reply = int(ok(cli("send", "--dsn", db, "--as", "graybeard", "--to", "nova", "--reply-to",
                       str(first_id), "--channel", "ops:deploy/1", "yes")))  # fmt: skip
    # connection by libpq's environment and --database, as the README says
    by_env = int(ok(cli("send", "--database", helpers.dbname(db), "--as", "sage", "psst",
                        env=pg_env(hub))))  # fmt: skip
    nobody = int(ok(cli("send", "--dsn", db, "--as", "nova", "note to self")))
    assert chat(db) == [
        (first_id, "general", "nova", ["graybeard"], None, "hello"),
        (as_json["id"], "general", "nova", ["graybeard"], None, "again"),
        (formatted["id"], "general", "nova", ["graybeard"], None, "and again"),
        (from_stdin, "general", "nova", ["sage"], None, "from stdin: ünïcode ✓"),
        (repeated, "general", "nova", ["graybeard", "sage"], None, "two"),
        (comma, "general", "nova", ["graybeard", "sage"], None, "two, commas"),
        (everyone, "general", "nova", ["*"], None, "all"),
        (reply, "ops:deploy/1", "graybeard", ["nova"], first_id, "yes"),
        (by_env, "general", "sage", [], None, "psst"),
        (nobody, "general", "nova", [], None, "note to self"),
    ]

    # nobody's listener receives the messages addressed to nobody
    delivered = {
        agent: [m["id"] for m in once(db, agent)] for agent in ("graybeard", "sage", "nova", "echo")
    }
    assert delivered == {
        "graybeard": [first_id, as_json["id"], formatted["id"], repeated, comma, everyone],
        "sage": [from_stdin, repeated, comma, everyone],
        "nova": [reply],  # its own "*" message is not for it
        "echo": [everyone],
    }
    assert not {by_env, nobody} & {i for ids in delivered.values() for i in ids}


@pytest.fixture(scope="module")
def bad_input_db(hub: Cluster, hub_template: str) -> Iterator[str]:
    """One installed database for all the bad-input cases (each leaves agent_chat empty)."""
    name = f"t_bad_{os.getpid()}_{hub.version}"
    helpers.drop_database(hub, name)
    helpers.create_database(hub, name, hub_template)
    yield hub.conninfo(name)
    helpers.drop_database(hub, name)


BAD_SENDS: list[tuple[str, list[str], str | bytes | None, str]] = [
    ("empty argument", ["--as", "nova", ""], None, "message must not be empty"),
    ("empty stdin", ["--as", "nova"], "", "message must not be empty"),
    ("blank", ["--as", "nova", " \t\n "], None, "message must not be empty"),
    ("long sender", ["--as", "x" * 64, "hi"], None, "invalid sender"),
    ("semicolon sender", ["--as", "a;b", "hi"], None, "invalid sender 'a;b'"),
    ("space sender", ["--as", "nova prime", "hi"], None, "invalid sender"),
    ("accented sender", ["--as", "émile", "hi"], None, "invalid sender 'émile'"),
    ("semicolon recipient", ["--as", "nova", "--to", "a;b", "hi"], None, "invalid recipient"),
    ("65 recipients", ["--as", "nova", "--to", ",".join(f"r{i}" for i in range(65)), "hi"], None,
     "too many recipients (65; at most 64)"),
    ("NUL on stdin", ["--as", "nova"], "before\x00after", "NUL byte"),
    ("not UTF-8", ["--as", "nova"], b"caf\xe9 latin-1", "standard input is not UTF-8"),
    ("channel with a space", ["--as", "nova", "--channel", "a b", "hi"], None, "invalid channel"),
    ("reply-to nothing", ["--as", "nova", "--reply-to", "987654", "hi"], None,
     "reply_to 987654 is not a message"),
    ("reply-to zero", ["--as", "nova", "--reply-to", "0", "hi"], None, "--reply-to"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"), [c[1:] for c in BAD_SENDS], ids=[c[0] for c in BAD_SENDS]
)
def test_bad_input_is_one_line_exit_2_and_stores_nothing(
    bad_input_db: str, args: list[str], stdin: str | bytes | None, fragment: str
) -> None:
    """A refusal that reads standard input is made by the console script in its own process;
    one decided from the arguments alone by the command's function in this process
    (:func:`agentchat.cli.main`, what the console script runs: the same line and exit code)."""
    if stdin is None:
        done = invoke("send", "--dsn", bad_input_db, *args, input="x")
    else:
        done = cli("send", "--dsn", bad_input_db, *args, input=stdin)
    assert_one_line_error(done, fragment, code=2)
    assert count(bad_input_db) == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["listen", "--as", "a;b", "--once"], "invalid agent name 'a;b'"),
        (["listen", "--as", "nova", "--channel", "a b", "--once"], "invalid channel"),
        (["prune", "--older-than", "-1"], "--older-than"),
    ],
    ids=["listen name", "listen channel", "prune negative"],
)
def test_bad_listen_and_prune_arguments(bad_input_db: str, args: list[str], fragment: str) -> None:
    assert_one_line_error(invoke(*args, "--dsn", bad_input_db), fragment, code=2)
    assert count(bad_input_db, "SELECT count(*) FROM agent_chat_processed") == 0


def test_stdin_loses_its_final_newline_only(chatdb: str) -> None:
    for text in ("one line\n", "windows line\r\n", "two\nlines\n\n", "no newline"):
        ok(cli("send", "--dsn", chatdb, "--as", "nova", input=text))
    assert [r[5] for r in chat(chatdb)] == [
        "one line",
        "windows line",
        "two\nlines\n",
        "no newline",
    ]


def test_a_megabyte_message_on_stdin_is_stored_and_delivered_intact(chatdb: str) -> None:
    db = chatdb
    text = ("line of text with ünïcödé ✓ and 'quotes' \"too\"\n" * 30000)[:1_048_576]
    assert len(text) == 1_048_576
    msg_id = int(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "graybeard", input=text)))
    [(stored, length)] = execute(
        db, "SELECT message = %s, char_length(message) FROM agent_chat WHERE id = %s",
        (text, msg_id),
    )  # fmt: skip
    assert stored is True and length == 1_048_576
    [delivered] = once(db, "graybeard")
    assert delivered["id"] == msg_id and delivered["message"] == text
    assert marks(db) == [(msg_id, "graybeard", "routed")]


# -- listen --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_listen_once_delivers_each_waiting_message_exactly_once(chatdb: str) -> None:
    db = chatdb

    def send(sender: str, text: str, to: list[str], channel: str = "general") -> int:
        return messaging.send(db, sender=sender, message=text, to=to, channel=channel)

    # all sent while no listener runs
    m1 = send("nova", "for graybeard", ["graybeard"])
    m2 = send("nova", "for sage", ["sage"])
    m3 = send("nova", "for everyone", ["*"], channel="ops")
    m4 = send("graybeard", "to myself", ["graybeard"])
    m5 = send("graybeard", "my own broadcast", ["*"])
    m6 = send("sage", "for both", ["graybeard", "sage"])
    reply = messaging.send(db, sender="nova", message="re", to=["graybeard"], reply_to=m1)
    odd = 'two\nlines\r\n\u2028\u2029\x85\x0b\x1c\ttabs "quotes" \\ 🙂 done'
    m8 = messaging.send(db, sender="sage", message=odd, to=["graybeard"], channel="a.b:c/d-e_f")

    got = once(db, "graybeard")
    assert [m["id"] for m in got] == [m1, m3, m6, reply, m8]
    assert got[4]["message"] == odd and got[4]["channel"] == "a.b:c/d-e_f"
    assert all(set(m) == KEYS for m in got)
    rows = {r[0]: r for r in chat(db)}
    for m in got:
        assert (m["id"], m["channel"], m["sender"], m["mentions"], m["reply_to"], m["message"]) == (
            rows[m["id"]]
        )
        assert dt.datetime.fromisoformat(str(m["created_at"])).tzinfo is not None
    assert got[3]["reply_to"] == m1 and got[1]["channel"] == "ops"
    assert m2 not in [m["id"] for m in got] and m4 not in [m["id"] for m in got]
    assert marks(db, "graybeard") == [(i, "graybeard", "routed") for i in (m1, m3, m6, reply, m8)]

    # exactly once: a second run has nothing, and records nothing more
    again = cli("listen", "--dsn", db, "--as", "graybeard", "--once", "--format", "json")
    assert ok(again) == "" and again.stderr == ""
    assert len(marks(db, "graybeard")) == 5

    # a message sent later is the only one the next run delivers
    m7 = send("sage", "later", ["graybeard"])
    assert [m["id"] for m in once(db, "graybeard")] == [m7]

    # the text rendering, and --channel
    assert ok(cli("listen", "--dsn", db, "--as", "sage", "--once", "--channel", "ops")) == (
        f"#{m3} [ops] nova -> *: for everyone\n"
    )
    text = ok(cli("listen", "--dsn", db, "--as", "sage", "--once")).splitlines()
    assert text == [
        f"#{m2} [general] nova -> sage: for sage",
        f"#{m5} [general] graybeard -> *: my own broadcast",
    ]  # m3 was delivered above; m6 is sage's own
    assert [c for c, _a, _s in marks(db, "sage")] == [m2, m3, m5]
    assert [m["id"] for m in once(db, "nova")] == [m5]  # graybeard's broadcast; never its own
    assert [m["id"] for m in once(db, "graybeard", "--count", "1")] == []


# -- listen --exec -------------------------------------------------------------------------------

REPLIER = """\
import json, os, sys
msg = json.load(sys.stdin)
if sorted(msg) != sorted(KEYS):
    sys.exit("bad keys: " + ",".join(sorted(msg)))
if msg["message"] == "fail":
    print("some noise first", file=sys.stderr)
    print("cannot handle 'fail' (#%d)" % msg["id"], file=sys.stderr)
    sys.exit(3)
if msg["message"] == "quiet":
    sys.exit(0)
print("\\n  re: %s (#%d for %s, env %s)  \\n" % (
    msg["message"], msg["id"], os.environ["AGENTCHAT_AGENT"], os.environ["AGENTCHAT_MESSAGE_ID"]))
""".replace("KEYS", repr(sorted(KEYS)))


@pytest.fixture
def replier(tmp_path: Path) -> str:
    """A --exec command: a Python script that answers "re: ..." (see REPLIER)."""
    script = tmp_path / "replier.py"
    script.write_text(REPLIER)
    return f"{PY} {shlex.quote(str(script))}"


def replies(conninfo: str) -> list[tuple[object, ...]]:
    return execute(
        conninfo,
        "SELECT reply_to, sender, mentions, channel, message FROM agent_chat"
        " WHERE reply_to IS NOT NULL ORDER BY reply_to, id",
    )


def test_listen_exec_round_trip(chatdb: str, replier: str) -> None:
    db = chatdb
    hello = messaging.send(db, sender="nova", message="hello", to=["graybeard"], channel="ops")
    fail = messaging.send(db, sender="sage", message="fail", to=["graybeard"])
    quiet = messaging.send(db, sender="nova", message="quiet", to=["*"])
    after = messaging.send(db, sender="sage", message="after", to=["graybeard"])

    done = cli("listen", "--dsn", db, "--as", "graybeard", "--exec", replier, "--once", "--json")
    assert done.returncode == 0, done.stderr
    report = json_lines(done.stdout)
    assert [(r["id"], r["sender"], r["status"]) for r in report] == [
        (hello, "nova", "responded"), (fail, "sage", "failed"),
        (quiet, "nova", "routed"), (after, "sage", "responded"),
    ]  # fmt: skip
    assert report[1]["error"] == f"exit status 3: cannot handle 'fail' (#{fail})"
    assert report[1]["reply_id"] is None and report[2]["reply_id"] is None
    # the failure is a warning on stderr, one line, and the listener carried on
    [warning] = done.stderr.splitlines()
    assert warning.startswith("agentchat: warning: ") and f"message {fail} failed" in warning

    assert replies(db) == [
        (hello, "graybeard", ["nova"], "ops", f"re: hello (#{hello} for graybeard, env {hello})"),
        (after, "graybeard", ["sage"], "general",
         f"re: after (#{after} for graybeard, env {after})"),
    ]  # fmt: skip
    reply_ids = [
        int(str(r[0]))
        for r in execute(db, "SELECT id FROM agent_chat WHERE reply_to IS NOT NULL ORDER BY id")
    ]
    assert [report[0]["reply_id"], report[3]["reply_id"]] == reply_ids
    assert marks(db) == [
        (hello, "graybeard", "responded"), (fail, "graybeard", "failed"),
        (quiet, "graybeard", "routed"), (after, "graybeard", "responded"),
    ]  # fmt: skip
    [(error,)] = execute(db, "SELECT error FROM agent_chat_processed WHERE status = 'failed'")
    assert "exit status 3" in str(error) and f"cannot handle 'fail' (#{fail})" in str(error)
    assert "some noise first" not in str(error)
    # nothing is delivered twice, and the replies went to their senders, not to graybeard
    assert ok(cli("listen", "--dsn", db, "--as", "graybeard", "--exec", replier, "--once")) == ""
    assert [m["reply_to"] for m in once(db, "nova")] == [hello]


def test_listen_exec_on_a_replica_replies_at_the_source(chatdb: str, replica: str,
                                                        replier: str) -> None:  # fmt: skip
    db = chatdb
    asked = [messaging.send(db, sender="nova", message=f"q{i}", to=["graybeard"]) for i in range(3)]
    wait_replicated(db, replica)
    # the replica's user (agentadmin) is no user at the source's server: said at once, one line
    # naming the source and the fix, nothing handled (it used to retry forever, naming the replica)
    done = cli("listen", "--dsn", replica, "--as", "graybeard", "--exec", replier, "--once")
    line = assert_one_line_error(done, f'sends to database "{helpers.dbname(db)}"', code=1)
    assert 'role "agentadmin" does not exist' in line and helpers.dbname(replica) not in line
    assert all(fix in line for fix in ("--send-dsn", "pg_hba.conf", "~/.pgpass"))
    refused = cli("send", "--dsn", replica, "--as", "graybeard", "--to", "nova", "from afar")
    assert_one_line_error(refused, f'sends to database "{helpers.dbname(db)}"', code=1)
    assert marks(replica) == [] and replies(db) == []
    # with --send-dsn, a connection that works there
    done = cli("listen", "--dsn", replica, "--as", "graybeard", "--exec", replier, "--once",
               "--send-dsn", db)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert all(
        line.startswith(f"#{i} from nova: responded #")
        for line, i in zip(lines, asked, strict=True)
    )
    expected = [
        (i, "graybeard", ["nova"], "general", f"re: q{n} (#{i} for graybeard, env {i})")
        for n, i in enumerate(asked)
    ]
    assert replies(db) == expected  # written at the source ...
    wait_for(lambda: replies(replica) == expected, what="replies replicated back")  # ... and back
    assert marks(replica) == [(i, "graybeard", "responded") for i in asked]
    assert marks(db) == []  # marks stay where the agent listens

    # `send` on a replica goes to its source, too
    sent = int(ok(cli("send", "--dsn", replica, "--as", "graybeard", "--to", "nova", "from afar",
                      "--send-dsn", db)))  # fmt: skip
    assert execute(db, "SELECT sender, message FROM agent_chat WHERE id = %s", (sent,)) == [
        ("graybeard", "from afar")
    ]
    wait_replicated(db, replica)


# -- crashes and signals -------------------------------------------------------------------------


def logging_handler(log: Path, pause: float = 0.05) -> str:
    """A --exec command that logs the message id, pauses (if *pause*), then replies "re ID"."""
    wait = f" sleep {pause};" if pause else ""
    return (f'echo "$AGENTCHAT_MESSAGE_ID" >> {shlex.quote(str(log))};{wait}'
            ' echo "re $AGENTCHAT_MESSAGE_ID"')  # fmt: skip


def start_listener(
    conninfo: str, command: str, out: Path, *extra: str, agent: str = "graybeard"
) -> subprocess.Popen[bytes]:
    """`agentchat listen --exec COMMAND --json` in the background, its output in *out*.*;
    its connections' application_name is *out*'s name (see :func:`listening`)."""
    with out.with_suffix(".out").open("ab") as stdout, out.with_suffix(".err").open("ab") as err:
        return subprocess.Popen(
            [EXE, "listen", "--dsn", conninfo, "--as", agent, "--exec", command, "--json",
             "--poll-interval", "0.5", *extra],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=err,
            env={**os.environ, "PGAPPNAME": out.name},
        )  # fmt: skip


def logged(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def send_many(conninfo: str, n: int, prefix: str = "m") -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return [
            int(conn.execute("SELECT send_agent_message('nova', %s, ARRAY['graybeard'])",
                             (f"{prefix}{i}",)).fetchone()[0])  # type: ignore[index]
            for i in range(n)
        ]  # fmt: skip


def gone(conninfo: str, app: str) -> bool:
    """Whether every session of the listener started with PGAPPNAME=*app* has ended."""
    return execute(conninfo, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                   (app,)) == [(0,)]  # fmt: skip


def finish(proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    """Wait for *proc* to exit (killing it if it does not in time); its exit code."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        reap(proc)
        raise


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill *proc* unless it has exited already (a failed test leaves no listener behind)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def assert_each_answered_once(source: str, home: str, sent: list[int]) -> None:
    """Every message: one 'responded' mark where the agent listens, one reply at the source."""
    assert marks(home) == [(i, "graybeard", "responded") for i in sent]
    rows = execute(source, "SELECT reply_to, count(*), min(message) FROM agent_chat"
                   " WHERE reply_to IS NOT NULL GROUP BY reply_to ORDER BY reply_to")  # fmt: skip
    assert rows == [(i, 1, f"re {i}") for i in sent], "a reply is missing or was posted twice"


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart(chatdb: str, tmp_path: Path) -> None:
    db, log = chatdb, tmp_path / "handled.log"
    command = logging_handler(log)
    proc = start_listener(db, command, tmp_path / "first")
    try:
        wait_for(lambda: listening(db, "first"), what="the listener")
        sent = send_many(db, 60)
        wait_for(lambda: len(logged(log)) >= 10, timeout=60, what="10 messages handled")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        reap(proc)
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: gone(db, "first"), what="the killed listener's sessions to end")
    at_kill = len(marks(db))
    assert 9 <= at_kill < 60, f"{at_kill} marked: the kill was not mid-stream"
    assert [m[0] for m in marks(db)] == sent[:at_kill]  # in order, nothing half-recorded

    # the rest need no pause (it only made the kill land mid-stream): same log, same replies
    again = start_listener(db, logging_handler(log, pause=0), tmp_path / "second",
                           "--idle-timeout", "1")  # fmt: skip
    assert finish(again) == 0, (tmp_path / "second.err").read_text()
    assert_each_answered_once(db, db, sent)
    seen = Counter(logged(log))
    assert set(seen) == set(sent)  # at least once to the handler ...
    twice = {i: n for i, n in seen.items() if n != 1}
    assert twice in ({}, {sent[at_kill]: 2}), twice  # ... the one in flight at most twice
    second = json_lines((tmp_path / "second.out").read_text())
    assert [r["id"] for r in second] == sent[at_kill:]  # the rest, in order, from where it died


HOLD_KEY = 730_860_411  # an advisory lock the test holds to freeze a delivery before its commit

#: on the listener's database: the delivery of message 'm9' waits for HOLD_KEY before its commit
HOLD = """
CREATE FUNCTION test_hold_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT message FROM public.agent_chat WHERE id = NEW.chat_id) = 'm9' THEN
        PERFORM pg_advisory_xact_lock(HOLD_KEY);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER test_hold_delivery AFTER UPDATE ON agent_chat_processed
    FOR EACH ROW EXECUTE FUNCTION test_hold_delivery();
""".replace("HOLD_KEY", str(HOLD_KEY))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["plain", "replica"])
def test_kill_9_between_the_reply_and_the_mark(
    where: str, chatdb: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The worst moment to die: the reply is posted, the mark not yet committed.

    A trigger on the listener's database makes the 10th delivery wait (before its commit) for
    an advisory lock the test holds; the listener is killed exactly there. On a plain database
    the reply was in the delivery's transaction and is gone with it; on a replica it was
    already committed at the source, and the redelivery must find it instead of posting again.
    """
    if where == "replica":
        source, home = chatdb, request.getfixturevalue("replica")
    else:
        source = home = chatdb
    log = tmp_path / "handled.log"
    command = logging_handler(log)
    with psycopg.connect(home, autocommit=True) as holder:
        holder.execute(HOLD.encode())
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        proc = start_listener(home, command, tmp_path / "first", "--send-dsn", source)
        try:
            wait_for(lambda: listening(home, "first"), what="the listener")
            sent = send_many(source, 25)
            wait_for(
                lambda: execute(home, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                " AND NOT granted AND objid = %s", (HOLD_KEY,)) == [(1,)],
                timeout=60, what="the 10th delivery to wait before its commit",
            )  # fmt: skip
            held = sent[9]
            assert logged(log) == sent[:10]
            posted = [r[0] for r in replies(source)]
            if where == "replica":
                assert posted == sent[:10]  # the reply is at the source already
            else:
                assert posted == sent[:9]  # the reply is not committed
            assert [m[0] for m in marks(home)] == sent[:9]
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            reap(proc)
        holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_KEY,))
    # the dead listener's session finds its client gone once it has the lock: no commit
    wait_for(lambda: gone(home, "first"), what="the killed listener's sessions to end")
    assert [m[0] for m in marks(home)] == sent[:9]
    before = {int(str(r[0])): int(str(r[1])) for r in execute(
        source, "SELECT reply_to, id FROM agent_chat WHERE reply_to IS NOT NULL")}  # fmt: skip
    assert sorted(before) == (sent[:10] if where == "replica" else sent[:9])

    # no pause now (the hold, not a pause, stopped the first run): same log, same replies
    again = start_listener(home, logging_handler(log, pause=0), tmp_path / "second",
                           "--idle-timeout", "1", "--send-dsn", source)  # fmt: skip
    assert finish(again) == 0, (tmp_path / "second.err").read_text()
    assert_each_answered_once(source, home, sent)
    seen = Counter(logged(log))
    assert set(seen) == set(sent)
    assert {i: n for i, n in seen.items() if n != 1} == {held: 2}  # handled again, replied once
    second = json_lines((tmp_path / "second.out").read_text())
    assert [r["id"] for r in second] == sent[9:]
    assert all(r["status"] == "responded" for r in second)
    if where == "replica":
        assert second[0]["reply_id"] == before[held]  # the reply found again, not a new one
        wait_for(lambda: replies(home) == replies(source), what="replies replicated back")


@pytest.mark.slow
def test_sigterm_stops_listen_after_the_current_message(chatdb: str, tmp_path: Path) -> None:
    db, log = chatdb, tmp_path / "handled.log"
    proc = start_listener(db, logging_handler(log, pause=1.5), tmp_path / "busy")
    try:
        wait_for(lambda: listening(db, "busy"), what="the listener")
        sent = send_many(db, 3)
        wait_for(lambda: logged(log), what="the first message in its handler")
        os.kill(proc.pid, signal.SIGTERM)  # 1.5 s per message: the rest would take 3 s more
        began = time.monotonic()
        assert finish(proc, timeout=30) == 0, (tmp_path / "busy.err").read_text()
        assert time.monotonic() - began < 4
    finally:
        reap(proc)
    handled = logged(log)
    assert handled == sent[:1] or handled == sent[:2]  # 2 only if this test was descheduled
    # the current message was finished (reply and mark), and no other was begun
    assert marks(db) == [(i, "graybeard", "responded") for i in handled]
    assert [r[0] for r in replies(db)] == handled
    assert [r["id"] for r in json_lines((tmp_path / "busy.out").read_text())] == handled
    assert (tmp_path / "busy.err").read_text() == ""

    # an idle listener (a 5 s poll interval, nothing for it) stops promptly, too
    idle = subprocess.Popen(
        [EXE, "listen", "--dsn", db, "--as", "sage"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PGAPPNAME": "idle"},
    )  # fmt: skip
    try:
        wait_for(lambda: listening(db, "idle"), what="the idle listener")
        os.kill(idle.pid, signal.SIGTERM)
        began = time.monotonic()
        out, err = idle.communicate(timeout=30)
        assert time.monotonic() - began < 3
    finally:
        reap(idle)
    assert idle.returncode == 0 and out == b"" and err == b""
    assert len(marks(db)) == len(handled)  # the others wait for graybeard's next run


# -- prune ---------------------------------------------------------------------------------------


def age(conninfo: str, ids: list[int], days: int = 30) -> None:
    """Make messages *days* old (messages are immutable: past the guard, as replication is)."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE agent_chat SET created_at = now() - make_interval(days => %s)"
                     " WHERE id = ANY(%s)", (days, ids))  # fmt: skip


def test_prune_dry_run_json_and_real(chatdb: str) -> None:
    db = chatdb
    old = [messaging.send(db, sender="nova", message=f"old {i}", to=["*"]) for i in range(3)]
    new = [messaging.send(db, sender="nova", message=f"new {i}", to=["*"]) for i in range(2)]
    age(db, old)
    assert len(once(db, "graybeard")) == 5  # marks, which go with their messages

    dry = ok(cli("prune", "--dsn", db, "--older-than", "7", "--dry-run"))
    assert dry.startswith("would delete 3 messages older than ")
    assert f'from database "{helpers.dbname(db)}" on socket ' in dry
    assert count(db) == 5
    report = json.loads(
        ok(cli("prune", "--dsn", db, "--older-than", "7", "--dry-run", "--format", "json"))
    )
    assert set(report) == {"database", "cutoff", "deleted", "dry_run"}
    assert report["deleted"] == 3 and report["dry_run"] is True
    assert helpers.dbname(db) in report["database"]
    cutoff = dt.datetime.fromisoformat(report["cutoff"])
    assert abs(cutoff - (dt.datetime.now(dt.UTC) - dt.timedelta(days=7))) < dt.timedelta(minutes=5)
    assert count(db) == 5

    real = json.loads(ok(cli("prune", "--dsn", db, "--older-than", "7", "--json")))
    assert (real["deleted"], real["dry_run"]) == (3, False)
    assert [r[0] for r in chat(db)] == new
    assert [m[0] for m in marks(db)] == new
    assert count(db, "SELECT count(*) FROM memory_embeddings") == 2

    again = ok(cli("prune", "--dsn", db, "--older-than", "7"))
    assert again.startswith("deleted 0 messages older than ")
    # fractions of a day, batches, and the singular
    age(db, new[:1], days=1)
    assert ok(cli("prune", "--dsn", db, "--older-than", "0.5", "--batch-size", "1")).startswith(
        "deleted 1 message older than "
    )
    age(db, new[1:], days=2)
    assert json.loads(ok(cli("prune", "--dsn", db, "--older-than", "0.5", "--json",
                             "--batch-size", "1")))["deleted"] == 1  # fmt: skip
    assert count(db) == 0


def test_prune_refuses_a_replica_and_uses_the_topology_source(
    chatdb: str, replica: str, tmp_path: Path
) -> None:
    db = chatdb
    old = [messaging.send(db, sender="nova", message=f"old {i}", to=["*"]) for i in range(2)]
    new = [messaging.send(db, sender="nova", message=f"new {i}", to=["*"]) for i in range(2)]
    age(db, old)
    wait_replicated(db, replica)

    done = cli("prune", "--dsn", replica, "--older-than", "7")
    assert_one_line_error(done, "is a replica", code=1)
    assert "prune" in done.stderr and "source" in done.stderr
    assert count(replica) == 4 and count(db) == 4

    assert (tmp_path / "agentchat.toml").exists()
    report = json.loads(ok(cli("prune", "--older-than", "7", "--json", cwd=tmp_path)))
    assert (report["deleted"], report["dry_run"]) == (2, False)
    assert helpers.dbname(db) in report["database"]
    assert [r[0] for r in chat(db)] == new
    wait_for(lambda: [r[0] for r in chat(replica)] == new, what="the deletions replicated")

    # --config from anywhere; a missing --config file is an error
    config = str(tmp_path / "agentchat.toml")
    assert json.loads(ok(cli("prune", "--config", config, "--older-than", "7", "--json",
                             cwd=Path("/"))))["deleted"] == 0  # fmt: skip
    assert_one_line_error(cli("prune", "--config", str(tmp_path / "nope.toml"), "--older-than",
                              "7"), "does not exist", code=1)  # fmt: skip


# -- the environment's corners: no stdin, a legacy locale; a reply the agent posted by hand --------

#: a legacy locale: ASCII, Python's UTF-8 mode and locale coercion off (like LANG=xx.ISO-8859-1)
LEGACY_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def test_send_with_stdin_closed_is_bad_input(bad_input_db: str) -> None:
    done = subprocess.run(
        ["/bin/sh", "-c", 'exec "$EXE" send --dsn "$DSN" --as nova <&-'], capture_output=True,
        text=True, timeout=60, check=False, env={**os.environ, "EXE": EXE, "DSN": bad_input_db},
    )  # fmt: skip
    assert_one_line_error(done, "give the message as an argument or on standard input", code=2)
    assert count(bad_input_db) == 0


def test_text_survives_a_legacy_locale(chatdb: str, tmp_path: Path) -> None:
    db = chatdb
    # a UTF-8 argument is stored as typed; bytes that are not UTF-8 are bad input
    sent = int(ok(cli("send", "--dsn", db, "--as", "nova", "--to", "graybeard", "héllo ✓",
                      env=LEGACY_LOCALE)))  # fmt: skip
    assert [r[5] for r in chat(db)] == ["héllo ✓"]
    for env in (LEGACY_LOCALE, {}):
        raw = subprocess.run(
            [EXE.encode(), b"send", b"--dsn", db.encode(), b"--as", b"nova", b"caf\xe9"],
            capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **env},
        )  # fmt: skip
        assert_one_line_error(raw, "not UTF-8", code=2)
    assert count(db) == 1

    # listen --json prints JSON that decodes to the message, whatever stdout's encoding
    delivered = json_lines(
        ok(cli("listen", "--dsn", db, "--as", "graybeard", "--once", "--json", env=LEGACY_LOCALE))
    )
    assert [(m["id"], m["message"]) for m in delivered] == [(sent, "héllo ✓")]

    # --exec hands CMD UTF-8 and reads its reply as UTF-8
    script = tmp_path / "utf8.py"
    script.write_text(
        "import json, sys\n"
        "msg = json.loads(sys.stdin.buffer.read().decode('utf-8'))\n"
        "sys.stdout.buffer.write(('got: ' + msg['message'] + ' ✓').encode('utf-8'))\n"
    )
    asked = messaging.send(db, sender="nova", message="ünï ✓", to=["sage"])
    ok(cli("listen", "--dsn", db, "--as", "sage", "--once",
           "--exec", f"{PY} {shlex.quote(str(script))}", env=LEGACY_LOCALE))  # fmt: skip
    assert [r[4] for r in replies(db)] == ["got: ünï ✓ ✓"]
    assert marks(db, "sage") == [(asked, "sage", "responded")]


@pytest.mark.parametrize("where", ["plain", "replica"])
def test_exec_replies_even_after_the_agent_answered_by_hand(
    where: str, chatdb: str, replier: str, request: pytest.FixtureRequest
) -> None:
    """A reply the agent posted by other means is not mistaken for an interrupted delivery's."""
    db = chatdb
    home = request.getfixturevalue("replica") if where == "replica" else db
    asked = messaging.send(db, sender="nova", message="question", to=["graybeard"])
    wait_replicated(db, home)
    # graybeard answers by hand first (from its own database), then its listener runs
    ok(cli("send", "--dsn", home, "--as", "graybeard", "--to", "nova", "--reply-to", str(asked),
           "a manual answer", "--send-dsn", db))  # fmt: skip
    wait_replicated(db, home)
    done = cli("listen", "--dsn", home, "--as", "graybeard", "--exec", replier, "--once", "--json",
               "--send-dsn", db)  # fmt: skip
    why = f"listen: exit {done.returncode}, {done.stdout!r}, {done.stderr!r}; marks {marks(home)}"
    report = json_lines(ok(done))
    assert [r[4] for r in replies(db)] == [
        "a manual answer",
        f"re: question (#{asked} for graybeard, env {asked})",
    ], why
    [(last,)] = execute(db, "SELECT max(id) FROM agent_chat")
    assert [r["reply_id"] for r in report] == [last], why


# -- field hardening: rows no listener can read, a source out of reach, hostile input -------------


def test_a_row_listen_cannot_read_is_recorded_as_failed_and_listen_goes_on(chatdb: str) -> None:
    """`listen --as owl` crashed (exit 70) on every start at a NULL mention, and every later
    message to owl was blocked: now each unreadable row is a warning and a failed mark."""
    db = chatdb
    poison = let_anything_in(db)
    good = messaging.send(db, sender="nova", message="after the poison", to=["*"])

    done = cli("listen", "--dsn", db, "--as", "owl", "--once")
    assert ok(done) == f"#{good} [general] nova -> *: after the poison\n"
    warnings = done.stderr.splitlines()
    assert [w.split(" cannot be read: ")[0] for w in warnings] == [
        f"agentchat: warning: owl: message {i}" for i in poison
    ]
    assert [m["id"] for m in once(db, "sage")] == [good]  # --json
    done = cli("listen", "--dsn", db, "--as", "echo", "--exec", "cat >/dev/null; echo re",
               "--once", "--json")  # fmt: skip
    assert [(r["id"], r["status"]) for r in json_lines(ok(done))] == [(good, "responded")]
    for agent in ("owl", "sage", "echo"):
        assert_poison_failed(db, agent, poison)
        assert (good, agent, "routed" if agent != "echo" else "responded") in marks(db, agent)
    again = cli("listen", "--dsn", db, "--as", "owl", "--once")
    assert ok(again) == "" and again.stderr == ""  # a failed row is not tried again


#: an --exec handler that locks its agent's send role out of the source, then replies
LOCKOUT = """\
import os, psycopg
with psycopg.connect(os.environ["ADMIN_DSN"], autocommit=True) as conn:
    conn.execute('ALTER ROLE "%s" NOLOGIN' % os.environ["WRITER"])
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                 (os.environ["WRITER"],))
print("re")
"""


@pytest.mark.slow
def test_a_source_lost_mid_run_is_named_and_once_and_idle_timeout_hold(
    chatdb: str, replica: str, tmp_path: Path
) -> None:
    """The source goes away after listen started (its role locked out by the handler itself):
    the warnings name the source, not the replica, and --once / --idle-timeout still end the
    run (exit 1, the error), where it used to retry forever."""
    db = chatdb
    role = f"writer_{uuid.uuid4().hex[:8]}"
    execute(db, f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    writer = psycopg.conninfo.make_conninfo(db, user=role)
    script = tmp_path / "lockout.py"
    script.write_text(LOCKOUT)
    asked = messaging.send(db, sender="nova", message="question", to=["graybeard"])
    wait_replicated(db, replica)
    source = f'database "{helpers.dbname(db)}"'
    try:
        for extra in (["--once"], ["--idle-timeout", "2"]):
            execute(db, f'ALTER ROLE "{role}" LOGIN')
            done = cli(
                "listen", "--dsn", replica, "--as", "graybeard", "--send-dsn", writer,
                "--exec", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", *extra,
                env={"ADMIN_DSN": db, "WRITER": role},
            )  # fmt: skip
            assert done.returncode == 1, done.stderr
            *warnings, error = done.stderr.splitlines()
            assert error.startswith(f"agentchat: error: graybeard sends to {source}"), error
            assert "the idle timeout" in error and "--send-dsn" in error
            assert all(w.startswith(f"agentchat: warning: {source}") for w in warnings), warnings
            assert (warnings == []) == (extra == ["--once"])
            assert helpers.dbname(replica) not in done.stderr and "Traceback" not in done.stderr
        assert marks(replica) == [] and replies(db) == []  # rolled back, delivered next time
        execute(db, f'ALTER ROLE "{role}" LOGIN')
        done = cli("listen", "--dsn", replica, "--as", "graybeard", "--send-dsn", db,
                   "--exec", "echo fine", "--once")  # fmt: skip
        assert ok(done).startswith(f"#{asked} from nova: responded #")
    finally:
        execute(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,))  # fmt: skip
        wait_for(lambda: gone_role(db, role), what="the role's sessions to end")
        execute(db, f'DROP ROLE "{role}"')


def gone_role(conninfo: str, role: str) -> bool:
    return execute(conninfo, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                   (role,)) == [(0,)]  # fmt: skip


BAD_NUMBERS: list[tuple[list[str], str]] = [
    (["send", "--as", "nova", "--reply-to", "9223372036854775808", "hi"], "--reply-to"),
    (["send", "--as", "nova", "--reply-to", "-1", "hi"], "--reply-to"),
    (["listen", "--as", "owl", "--once", "--poll-interval", "nan"], "--poll-interval"),
    (["listen", "--as", "owl", "--once", "--poll-interval", "inf"], "--poll-interval"),
    (["listen", "--as", "owl", "--once", "--poll-interval", "1e300"], "--poll-interval"),
    (["listen", "--as", "owl", "--once", "--poll-interval", "0"], "--poll-interval"),
    (["listen", "--as", "owl", "--idle-timeout", "nan"], "--idle-timeout"),
    (["listen", "--as", "owl", "--idle-timeout", "-1"], "--idle-timeout"),
    (["listen", "--as", "owl", "--once", "--exec", "true", "--exec-timeout", "nan"],
     "--exec-timeout"),
    (["listen", "--as", "owl", "--once", "--exec", "true", "--exec-timeout", "3000000"],
     "--exec-timeout"),
    (["listen", "--as", "owl", "--once", "--exec", "true", "--exec-timeout", "0"],
     "--exec-timeout"),
    (["listen", "--as", "owl", "--count", "0"], "--count"),
    (["listen", "--as", "owl", "--count", "-5"], "--count"),
    (["prune", "--older-than", "nan"], "--older-than"),
    (["prune", "--older-than", "inf"], "--older-than"),
    (["prune", "--older-than", "1e300"], "--older-than"),
    (["prune", "--older-than", "1", "--batch-size", "0"], "--batch-size"),
    (["prune", "--older-than", "1", "--batch-size", str(10**30)], "--batch-size"),
]  # fmt: skip


def test_numeric_options_out_of_range_are_bad_input(bad_input_db: str) -> None:
    """Each was exit 1 (bigint out of range), 70 (an overflow), a busy loop (nan), or every
    message failing (a timeout the OS cannot wait for): now exit 2, one line, nothing done.
    Refused from the arguments alone: in this process, through :func:`agentchat.cli.main`."""
    for args, option in BAD_NUMBERS:
        done = invoke(*args, "--dsn", bad_input_db)
        assert_one_line_error(done, option, code=2)
    assert count(bad_input_db) == 0
    assert count(bad_input_db, "SELECT count(*) FROM agent_chat_processed") == 0


def test_hostile_input_to_send_and_listen(chatdb: str, tmp_path: Path) -> None:
    db = chatdb
    # 100,000 recipients: refused at once (checking them was quadratic: it never finished)
    many = [f"--to={','.join(f'a{i}-{n}' for n in range(10_000))}" for i in range(10)]
    assert_one_line_error(cli("send", "--dsn", db, "--as", "nova", *many, "hi"),
                          "too many recipients (100000; at most 64)")  # fmt: skip
    # a 10,000-character name or channel, a channel with a newline: one short line each (refused
    # from the arguments: in this process, through agentchat.cli.main)
    for args, fragment in (
        (["--as", "n" * 10_000], "invalid sender 'nnnnnnnn"),
        (["--as", "nova", "--to", "o" * 10_000], "invalid recipient"),
        (["--as", "nova", "--channel", "ops\nroom"], "invalid channel 'ops\\nroom'"),
        (["--as", "nova", "--channel", "c" * 10_000], "invalid channel"),
    ):
        line = assert_one_line_error(invoke("send", "--dsn", db, *args, "hi"), fragment)
        assert len(line) < 300
    assert count(db) == 0

    # --exec: a background child holding the output pipe is killed with the command at the
    # timeout (listen used to wait for it, here ten minutes); a reply PostgreSQL cannot store
    # (a NUL byte) is a failed message with its report line, and listen goes on
    first = messaging.send(db, sender="nova", message="one", to=["owl"])
    second = messaging.send(db, sender="nova", message="two", to=["owl"])
    third = messaging.send(db, sender="nova", message="three", to=["owl"])
    handler = tmp_path / "handler.sh"
    handler.write_text(
        'case "$AGENTCHAT_MESSAGE_ID" in\n'
        f"  {first}) sleep 600 & echo $! > {shlex.quote(str(tmp_path))}/child.pid; echo late;;\n"
        f"  {second}) printf 'bad\\000reply';;\n"
        "  *) echo fine;;\n"
        "esac\n"
    )
    done = cli("listen", "--dsn", db, "--as", "owl", "--once", "--json", "--exec-timeout", "2",
               "--exec", f"sh {shlex.quote(str(handler))}")  # fmt: skip
    report = json_lines(ok(done))
    assert [(r["id"], r["status"], r["error"]) for r in report] == [
        (first, "failed", "timed out after 2 s"),
        (second, "failed", "the reply was refused: the message contains a NUL byte, which"
         " PostgreSQL text cannot store (remove it, or encode binary data (base64) first)"),
        (third, "responded", None),
    ]  # fmt: skip
    assert len(done.stderr.splitlines()) == 2
    assert marks(db) == [(first, "owl", "failed"), (second, "owl", "failed"),
                         (third, "owl", "responded")]  # fmt: skip
    child = int((tmp_path / "child.pid").read_text())
    wait_for(lambda: not alive(child), what="the background child to be killed")


def alive(pid: int) -> bool:
    """Whether process *pid* exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
