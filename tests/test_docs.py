"""The docs are tested: every example in README.md and docs/*.md runs against a real cluster.

Conventions (docs/architecture.md describes them for writers):

``console`` blocks
    Lines ``$ command`` followed by the output expected from it (stdout and stderr, merged in
    order). ``agentchat ...``, ``./agent-install.sh ...`` and ``psql ...`` commands run as real
    subprocesses: the console script next to ``sys.executable``, agent-install.sh from the
    repository root, the psql shipped with the suite's PostgreSQL. The environment points libpq
    at the suite's ``hub`` cluster (PGHOST, PGPORT, PGUSER=postgres); other PG* variables are
    removed, and so are AGENTCHAT_DSN, AGENTCHAT_DATA_DIR and AGENTCHAT_CONFIG. Commands run in
    the document's ``<tmp>`` directory, so a topology file ``./agentchat.toml`` written by
    ``agentchat replicate add`` lands there. Leading ``NAME=value`` words set environment
    variables for that command. The exit
    code must be 0, or N when the command line ends with ``# exit N``. Any other command fails
    the test: mark such a block as skipped.
``sql`` blocks
    Run with psql (each statement in autocommit, as a user pasting it would) against a freshly
    installed database of their own, and must succeed.
``python`` blocks
    Run as a script with ``sys.executable`` (the suite's Python, agentchat importable), in the
    same environment and directory as console blocks, in order with the document's console
    blocks (so they can use the databases those created), and must exit 0: make them check
    themselves with ``assert``, and bound every wait (``idle_timeout``, ``limit``). Their output
    is not compared. The databases they use must be named by the document's console blocks or
    markers, which is what gets them dropped.

Placeholders, in commands, python blocks and expected output:

``<tmp>``     a fresh directory per document (for ``--data-dir``); URL-encoded inside URIs
``<socket>``  the hub cluster's Unix socket directory
``<port>``    in a command, the hub cluster's port; in output, any number
``<pid>``     in output, any number
``<n>``       in output, any number (a count that varies from run to run)
``<hex>``     in output, lowercase hex digits (a hash that depends on the cluster)
``<time>``    in output, a timestamp: ``2026-01-31 12:00:00+00:00``, ``T`` for the space, with
              or without fractions of a second and offset
``<id1>``     a message id (``<id2>``, ... for others): ids carry the time and the node they
              were written on, so they differ from run to run. Where it first appears in a
              command's output it stands for any number, which it then names for the rest of
              the document: later commands, python and sql blocks get that number, and later
              outputs must show it again

An expected line ``...`` matches any number of output lines (none included). Trailing spaces
are ignored.

Markers, an HTML comment on the line just before a block's opening fence:

``<!-- doc-test: skip (reason) -->``        the block (console, sql or python) is not run (the
                                            reason is required)
``<!-- doc-test: database NAME -->``        a sql block runs against database NAME, in order
                                            with the document's console blocks
``<!-- doc-test: error (text) -->``         a sql block must fail with an error containing text
``<!-- doc-test: run-by (tests/x.py) -->``  a console block that the named test runs and matches
                                            with :func:`documented_command` and
                                            :func:`output_matches` (a run that test needs
                                            anyway, such as the demo, is not run twice)

Each document's console blocks, python blocks and database-bound sql blocks run in order as one
test, after dropping every database the document names (``--database``/``-d`` arguments, the
``dbname`` of ``--dsn``/``--source``/``--target`` DSNs and of ``agentchat mesh``'s, and
``database`` markers; python blocks
are not read) and the replication roles its ``agentchat replicate add`` commands create
(``--role``, each one-way replica's own ``agent_chat_from_*`` role and each two-way link's
``agent_chat_<x>_to_<y>_*`` roles), so each document starts from a
clean slate; each other sql block is a test of its own.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from agentchat import install
from agentchat.server import Cluster, find_binaries
from agentchat.sql import load_migrations, queries
from tests import helpers

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SYSTEM_DATABASES = {"postgres", "template0", "template1"}
TIMEOUT = 120
DSN_OPTIONS = ("--dsn", "--source", "--target")
DEFAULT_REPLICATION_ROLE = "agent_chat_replicator"

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
_MARKER_FORMS = re.compile(r"^(skip \(.+\)|database \S+|error \(.+\)|run-by \(tests/\S+\.py\))$")
_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
_ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d(?::?\d\d)?|Z)?"
_PLACEHOLDERS = re.compile(r"(<tmp>|<socket>|<port>|<pid>|<n>|<hex>|<time>|<id\d+>)")
_ID = re.compile(r"<id(\d+)>")
ELLIPSIS = "..."


# -- parsing ----------------------------------------------------------------------------------


@dataclass
class Command:
    line: int  # 1-based line in the document
    text: str  # as written, without the exit comment
    exit_code: int
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    @property
    def skipped(self) -> bool:
        return self.marker is not None and self.marker.startswith("skip")

    @property
    def run_by(self) -> str | None:
        """The test module that runs this block instead of the document's test."""
        if self.marker and self.marker.startswith("run-by ("):
            return self.marker[len("run-by (") : -1]
        return None

    @property
    def database(self) -> str | None:
        if self.marker and self.marker.startswith("database "):
            return self.marker.split(None, 1)[1]
        return None

    @property
    def expected_error(self) -> str | None:
        if self.marker and self.marker.startswith("error ("):
            return self.marker[len("error (") : -1]
        return None

    def commands(self) -> list[Command]:
        """The ``$ command`` lines of a console block, each with its expected output."""
        found: list[Command] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                text = line[2:]
                start = i
                while text.endswith("\\") and i + 1 < len(lines):  # continuation lines
                    i += 1
                    text = text[:-1].rstrip() + " " + lines[i].strip()
                exit_code = 0
                match = _EXIT.search(text)
                if match:
                    exit_code = int(match[1])
                    text = text[: match.start()]
                found.append(Command(self.line + 1 + start, text.strip(), exit_code))
            elif found:
                found[-1].expected.append(line)
            elif line.strip():
                raise AssertionError(f"{self.where}: output before the first `$ command`")
            i += 1
        return found


def parse_blocks(doc: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of a markdown document, with the doc-test marker just before it."""
    lines = (doc.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match[1]
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        marker_match = _MARKER.match(lines[start - 1]) if start > 0 else None
        marker = marker_match[1] if marker_match else None
        blocks.append(Block(doc, start + 1, lang, "\n".join(body), marker))
        i += 1
    return blocks


def doc_id(doc: Path) -> str:
    return str(doc.relative_to(REPO))


# -- running ----------------------------------------------------------------------------------


@dataclass
class Context:
    """What placeholders stand for, and the environment commands run in."""

    hub: Cluster | None  # None: the commands ran elsewhere (a ``run-by`` block's test)
    tmp: Path
    #: message ids seen in outputs so far, by placeholder number (``<id3>`` -> ``ids["3"]``)
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def cluster(self) -> Cluster:
        assert self.hub is not None, "a run-by block's context runs nothing"
        return self.hub

    def substitute(self, text: str, *, strict: bool = True) -> str:
        """*text* with the placeholders' values; an id no output has shown yet is an error
        (*strict*) or left as it is."""

        def bound(match: re.Match[str]) -> str:
            if match[1] in self.ids:
                return self.ids[match[1]]
            if strict:
                raise AssertionError(f"{match[0]} is used before an output shows it")
            return match[0]

        return _ID.sub(
            bound,
            text.replace("<tmp>", str(self.tmp))
            .replace("<socket>", str(self.cluster.socket_dir))
            .replace("<port>", str(self.cluster.port)),
        )

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PG")
            and k not in ("AGENTCHAT_DSN", "AGENTCHAT_DATA_DIR", "AGENTCHAT_CONFIG")
        }
        env.update(
            PGHOST=str(self.cluster.socket_dir),
            PGPORT=str(self.cluster.port),
            PGUSER="postgres",
            COLUMNS="80",
            PYTHONIOENCODING="utf-8",
        )
        return env

    def line_pattern(self, expected: str) -> re.Pattern[str]:
        def either(path: Path) -> str:
            return f"(?:{re.escape(str(path))}|{re.escape(quote(str(path), safe=''))})"

        replacements = {
            "<tmp>": either(self.tmp),
            "<socket>": either(self.hub.socket_dir) if self.hub else r"\S+",
            "<port>": r"\d+",
            "<pid>": r"\d+",
            "<n>": r"\d+",
            "<hex>": r"[0-9a-f]+",
            "<time>": _TIME,
        }
        seen: set[str] = set()

        def part(p: str) -> str:
            if p in replacements:
                return replacements[p]
            number = _ID.fullmatch(p)
            if number is None:
                return re.escape(p)
            if number[1] in self.ids:
                return re.escape(self.ids[number[1]])
            if number[1] in seen:
                return f"(?P=id{number[1]})"
            seen.add(number[1])
            return rf"(?P<id{number[1]}>\d+)"

        parts = _PLACEHOLDERS.split(expected.rstrip())
        return re.compile("".join(part(p) for p in parts) + r"\Z", re.DOTALL)


def output_matches(ctx: Context, expected: list[str], actual: list[str]) -> bool:
    """Does *actual* match *expected* line by line (placeholders, ``...`` for any lines)? When
    it does, the message ids it shows for the first time are bound (``<id1>``, ...)."""
    patterns = [None if e.strip() == ELLIPSIS else ctx.line_pattern(e) for e in expected]
    actual = [a.rstrip() for a in actual]
    while patterns and patterns[-1] is not None and patterns[-1].pattern == r"\Z":
        patterns.pop()  # trailing blank expected lines
    while actual and not actual[-1]:
        actual.pop()
    # table[i][j]: do patterns[i:] match actual[j:]? Filled from the end (no recursion: a
    # long output, such as a dry run's whole schema, would exceed Python's recursion limit)
    table = [[False] * (len(actual) + 1) for _ in range(len(patterns) + 1)]
    table[len(patterns)][len(actual)] = True
    for i in range(len(patterns) - 1, -1, -1):
        pattern = patterns[i]
        for j in range(len(actual), -1, -1):
            if pattern is None:
                table[i][j] = table[i + 1][j] or (j < len(actual) and table[i][j + 1])
            else:
                table[i][j] = (
                    j < len(actual) and bool(pattern.match(actual[j])) and table[i + 1][j + 1]
                )

    def match(i: int, j: int) -> bool:
        return table[i][j]

    if not match(0, 0):
        return False
    found: dict[str, str] = {}
    i = j = 0
    while i < len(patterns):  # walk the match found, binding the ids it shows
        pattern = patterns[i]
        if pattern is None:
            if match(i + 1, j):
                i += 1
            else:
                j += 1
            continue
        line = pattern.match(actual[j])
        assert line is not None
        for name, value in line.groupdict().items():
            if found.setdefault(name[2:], value) != value:
                return False  # one new id, two numbers in two lines
        i, j = i + 1, j + 1
    ctx.ids.update(found)
    return True


def psql_path(ctx: Context) -> Path:
    return find_binaries(ctx.cluster.version).path("psql")


def argv_for(ctx: Context, command: Command) -> tuple[list[str], dict[str, str]]:
    words = shlex.split(ctx.substitute(command.text))
    env = ctx.env()
    while words and _ENV_WORD.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if not words:
        raise AssertionError(f"line {command.line}: empty command")
    program, args = words[0], words[1:]
    if program == "agentchat":
        return [helpers.EXE, *args], env
    if program == "./agent-install.sh":
        script = REPO / "agent-install.sh"
        if not script.exists():
            pytest.fail(f"line {command.line}: {script} does not exist (yet)")
        return [str(script), *args], env
    if program == "psql":
        return [str(psql_path(ctx)), "-X", *args], env
    raise AssertionError(
        f"line {command.line}: doc tests run agentchat, ./agent-install.sh and psql, not"
        f" {program!r}; mark the block <!-- doc-test: skip (reason) -->"
    )


def run_command(ctx: Context, block: Block, command: Command) -> None:
    argv, env = argv_for(ctx, command)
    done = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=ctx.tmp,
        timeout=TIMEOUT,
        check=False,
    )
    actual = done.stdout.splitlines()
    if (
        done.returncode == command.exit_code
        and not output_matches(ctx, command.expected, actual)
        and os.environ.get("AGENTCHAT_DOCS_BLESS")
        and bless(ctx, block, command, actual)
    ):
        return
    if done.returncode != command.exit_code or not output_matches(ctx, command.expected, actual):
        pytest.fail(
            f"{block.doc.relative_to(REPO)}:{command.line}: $ {command.text}\n"
            f"exit code {done.returncode} (documented: {command.exit_code})\n"
            "--- documented output\n" + "\n".join(command.expected) + "\n"
            "--- actual output\n" + "\n".join(actual),
            pytrace=False,
        )


def bless(ctx: Context, block: Block, command: Command, actual: list[str]) -> bool:
    """A maintainer's tool (``AGENTCHAT_DOCS_BLESS=1``): write *actual* into the document as the
    command's documented output, keeping each documented line that still matches (with its
    placeholders) and putting placeholders back into new lines. Never used by the suite; review
    the result with ``git diff``. Outputs with ``...`` are left for a human."""
    if any(e.strip() == ELLIPSIS for e in command.expected):
        return False
    text = block.doc.read_text(encoding="utf-8").split("\n")
    shifts = _BLESS_SHIFTS.setdefault(block.doc, [])
    # 0-based index of the line after the command's last line, after earlier blessings
    first = command.line + sum(n for line, n in shifts if line < command.line)
    while text[first - 1].rstrip().endswith("\\"):
        first += 1
    old = text[first : first + len(command.expected)]
    if [line.rstrip() for line in old] != [e.rstrip() for e in command.expected]:
        return False  # the document changed under us (an earlier bless): leave it
    kept, i = [], 0
    for line in (a.rstrip() for a in actual):
        ahead = [k for k in range(i, min(i + 6, len(old))) if ctx.line_pattern(old[k]).match(line)]
        if ahead:
            kept.append(old[ahead[0]])
            i = ahead[0] + 1
            continue
        for number, value in ctx.ids.items():  # ids the document has shown already
            line = re.sub(rf"\b{value}\b", f"<id{number}>", line)
        kept.append(
            line.replace(str(ctx.tmp), "<tmp>")
            .replace(str(ctx.cluster.socket_dir), "<socket>")
            .replace(str(ctx.cluster.port), "<port>")
        )
    while kept and not kept[-1]:
        kept.pop()
    text[first : first + len(old)] = kept
    block.doc.write_text("\n".join(text), encoding="utf-8")
    shifts.append((command.line, len(kept) - len(old)))
    return True


#: lines added (or removed) by bless() per document, so later commands find their lines
_BLESS_SHIFTS: dict[Path, list[tuple[int, int]]] = {}


def run_sql(ctx: Context, block: Block, dbname: str) -> subprocess.CompletedProcess[str]:
    """Run a sql block with psql, statement by statement, stopping at the first error."""
    return subprocess.run(
        [
            str(psql_path(ctx)), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse",
            "-d", ctx.cluster.conninfo(dbname), "-f", "-",
        ],
        input=ctx.substitute(block.text),
        capture_output=True,
        text=True,
        env=ctx.env(),
        timeout=TIMEOUT,
        check=False,
    )  # fmt: skip


def run_python(ctx: Context, block: Block) -> None:
    """Run a python block as a script of its own; it must exit 0."""
    script = ctx.tmp / f"{block.doc.stem}-{block.line}.py"
    script.write_text(ctx.substitute(block.text) + "\n", encoding="utf-8")
    where = f"{block.doc.relative_to(REPO)}:{block.line}"
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=ctx.env(),
            cwd=ctx.tmp,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: the python block ran longer than {TIMEOUT} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{where}: the python block exited with {done.returncode}"
            f" (line N of {script.name} is line {block.line} + N of the document)\n"
            "--- output\n" + done.stdout,
            pytrace=False,
        )


def databases_named(ctx: Context, blocks: list[Block]) -> list[str]:
    """Every database a document's runnable blocks name, in order of first mention."""
    names: list[str] = []
    for block in blocks:
        if block.skipped:
            continue
        if block.lang == "sql" and block.database:
            names.append(block.database)
        if block.lang != "console":
            continue
        for command in block.commands():
            words = shlex.split(ctx.substitute(command.text, strict=False))
            if words[:2] == ["agentchat", "mesh"]:  # its DSNs are arguments
                words = [w for dsn in words[2:] if "=" in dsn for w in ("--dsn", dsn)]
            for i, word in enumerate(words):
                if word in ("--database", "-d") and i + 1 < len(words):
                    names.append(words[i + 1])
                elif word.startswith("--database="):
                    names.append(word.split("=", 1)[1])
                elif word in DSN_OPTIONS and i + 1 < len(words):
                    try:
                        dsn = psycopg.conninfo.conninfo_to_dict(words[i + 1])
                    except psycopg.ProgrammingError:
                        continue
                    if dsn.get("dbname"):
                        names.append(str(dsn["dbname"]))
    unique = dict.fromkeys(n for n in names if n not in SYSTEM_DATABASES)
    return [n for n in unique if 0 < len(n.encode()) <= 63 and "\x00" not in n]


def roles_named(ctx: Context, blocks: list[Block]) -> list[str]:
    """The replication roles a document's ``agentchat replicate add`` commands create."""
    names: list[str] = []
    for block in blocks:
        if block.skipped or block.lang != "console":
            continue
        for command in block.commands():
            words = shlex.split(ctx.substitute(command.text, strict=False))
            if words[:3] != ["agentchat", "replicate", "add"]:
                continue
            role = DEFAULT_REPLICATION_ROLE
            for i, word in enumerate(words):
                if word == "--role" and i + 1 < len(words):
                    role = words[i + 1]
                elif word.startswith("--role="):
                    role = word.split("=", 1)[1]
            names.append(role)
    return list(dict.fromkeys(names))


def drop_role(hub: Cluster, role: str) -> None:
    """Drop a role and whatever it owns or was granted, in every database of the hub."""
    with psycopg.connect(hub.conninfo(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            return
        databases = [
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")
        ]
    for dbname in databases:
        with psycopg.connect(hub.conninfo(dbname), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(hub.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def drop_all(hub: Cluster, names: list[str], roles: Sequence[str] = ()) -> None:
    for name in reversed(names):  # subscribers are usually named after their sources
        helpers.drop_database(hub, name)
    with psycopg.connect(hub.conninfo(), autocommit=True) as conn:
        own = [  # each replica's own role (one-way add without --role), each two-way link's
            str(r[0])
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'agent\\_chat\\_from\\_%'"
                " OR rolname ~ '^agent_chat_[0-9]+_to_[0-9]+_'"
            )
        ]
    for role in dict.fromkeys([*roles, *own]):
        drop_role(hub, role)


@pytest.fixture
def doc_tmp(cluster_root: Path) -> Iterator[Path]:
    """A directory for the document's ``--data-dir``; clusters left in it are destroyed."""
    tmp = Path(tempfile.mkdtemp(prefix="doc-", dir=cluster_root))
    tmp.chmod(0o755)  # the server's unprivileged user must traverse it
    yield tmp
    for meta in tmp.glob("*/cluster.json"):
        Cluster(meta.parent).destroy()
    helpers.rmtree(tmp)


def run_document(ctx: Context, blocks: list[Block]) -> None:
    """Run a document's console blocks, python blocks and database-bound sql blocks in order."""
    names, roles = databases_named(ctx, blocks), roles_named(ctx, blocks)
    drop_all(ctx.cluster, names, roles)
    try:
        for block in blocks:
            if block.skipped or block.run_by:
                continue
            if block.lang == "console":
                for command in block.commands():
                    run_command(ctx, block, command)
            elif block.lang == "python":
                run_python(ctx, block)
            elif block.lang == "sql" and block.database:
                done = run_sql(ctx, block, block.database)
                if done.returncode != 0:
                    pytest.fail(f"{block.where}: {done.stderr.strip()}", pytrace=False)
    finally:
        drop_all(ctx.cluster, names, roles)


def documented_command(doc: Path, prefix: str) -> Command:
    """The command starting with *prefix* in *doc*'s ``run-by`` blocks, for the test that runs
    it (that test names itself in the marker)."""
    for block in parse_blocks(doc):
        for command in block.commands() if block.run_by else ():
            if command.text.startswith(prefix):
                return command
    raise AssertionError(f"{doc_id(doc)}: no run-by block has a command {prefix!r}")


# -- the tests --------------------------------------------------------------------------------


def _runnable_docs() -> list[Path]:
    return [d for d in DOCUMENTS if any(b.lang in ("console", "python") for b in parse_blocks(d))]


def _free_sql_blocks() -> list[Block]:
    return [
        b
        for d in DOCUMENTS
        for b in parse_blocks(d)
        if b.lang == "sql" and not b.skipped and not b.database
    ]


@pytest.mark.parametrize("doc", _runnable_docs(), ids=doc_id)
def test_document_runs(doc: Path, hub: Cluster, doc_tmp: Path) -> None:
    """Every command in the document prints what the document says; every python block runs."""
    run_document(Context(hub, doc_tmp), parse_blocks(doc))


@pytest.mark.parametrize("block", _free_sql_blocks(), ids=lambda b: b.where)
def test_sql_block(block: Block, hub: Cluster, doc_tmp: Path) -> None:
    """Every sql block runs against a freshly installed database (or fails as documented)."""
    ctx = Context(hub, doc_tmp)
    name = f"doc_{uuid.uuid4().hex[:10]}"
    install.install(hub.conninfo(), database=name)
    try:
        done = run_sql(ctx, block, name)
    finally:
        helpers.drop_database(hub, name)
    if block.expected_error is None:
        assert done.returncode == 0, f"{block.where}: {done.stderr.strip()}"
    else:
        assert done.returncode != 0, f"{block.where}: succeeded, documented to fail"
        assert block.expected_error in done.stderr, f"{block.where}: {done.stderr.strip()}"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=doc_id)
def test_markers_are_well_formed(doc: Path) -> None:
    """A misspelt marker would silently change what runs: every one must be known and placed."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        match = _MARKER.match(line)
        if line.lstrip().startswith("<!--") and "doc-test" in line and not match:
            pytest.fail(f"{doc_id(doc)}:{number}: malformed doc-test marker: {line}")
        if not match:
            continue
        assert _MARKER_FORMS.match(match[1]), f"{doc_id(doc)}:{number}: unknown marker {line}"
        assert number < len(lines) and _FENCE.match(lines[number]) and lines[number] != "```", (
            f"{doc_id(doc)}:{number}: a marker must be on the line just before a block"
        )
    for block in parse_blocks(doc):
        if block.database or block.expected_error:
            assert block.lang == "sql", f"{block.where}: database/error markers are for sql"
        if block.run_by:  # the test it names exists and reads this document's block
            assert block.lang == "console", f"{block.where}: run-by is for console blocks"
            runner = REPO / block.run_by
            assert runner.is_file(), f"{block.where}: no test {block.run_by}"
            assert "documented_command(" in runner.read_text(), f"{block.where}: {block.run_by}"
        if block.lang == "console" and not block.skipped:
            assert block.commands(), f"{block.where}: a console block without `$ command`"


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors for a document's headings."""
    found = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("doc", DOCUMENTS, ids=doc_id)
def test_relative_links_resolve(doc: Path) -> None:
    """Links to files and to headings (``file.md#anchor``, ``#anchor``) point somewhere."""
    text = doc.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = doc.parent / target if target else doc
        assert path.exists(), f"{doc_id(doc)}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{doc_id(doc)}: no heading for {target}#{anchor}"


def test_module_map_is_complete() -> None:
    """docs/architecture.md has a line for every module under src/agentchat."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = REPO / "src" / "agentchat"
    for module in sorted(package.rglob("*.py")):
        name = str(module.relative_to(REPO))
        assert f"`{name}`" in text, f"docs/architecture.md does not mention {name}"


def test_readme_starts_with_the_two_commands() -> None:
    """After one paragraph, the README's first block is exactly the demo and test commands."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = parse_blocks(REPO / "README.md")[0]
    assert first.lang == "console" and first.skipped
    assert [c.text for c in first.commands()] == ["scripts/demo", "scripts/test"]
    before = text.split("```", 1)[0].split("\n")
    paragraphs = "\n".join(line for line in before if not line.startswith(("#", "<!--")))
    assert len([p for p in paragraphs.split("\n\n") if p.strip()]) == 1, "one paragraph first"
    for script in ("demo", "test"):
        assert os.access(REPO / "scripts" / script, os.X_OK)


def test_trigger_status_query_is_the_shipped_one() -> None:
    """docs/trigger-policy.md gives the query agentchat runs, verbatim from queries.sql."""
    shipped = queries["trigger_status"].as_string(None)
    body = "\n".join(line for line in shipped.splitlines() if not line.startswith("--"))
    doc = REPO / "docs" / "trigger-policy.md"
    assert any(b.lang == "sql" and b.text.strip() == body.strip() for b in parse_blocks(doc))


def test_every_dependency_is_justified() -> None:
    """docs/dependencies.md has a line for each dependency of pyproject.toml (core, every extra,
    the build backend), and no other."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    wanted = [*project["dependencies"], *extras, *pyproject["build-system"]["requires"]]
    declared = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] for r in wanted}
    text = (REPO / "docs" / "dependencies.md").read_text(encoding="utf-8")
    for listed in re.findall(r"^- `([\w.-]+)", text, re.MULTILINE):
        assert listed in declared, f"docs/dependencies.md justifies {listed}, not a dependency"
    for requirement in wanted:
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0]
        pattern = rf"^- `{re.escape(name)}(\[[^\]]*\])?`"
        assert re.search(pattern, text, re.MULTILINE), f"dependencies.md does not justify {name}"


# -- the harness can fail ---------------------------------------------------------------------

SELF_TEST_DOC = """\
```console
$ agentchat install --database doc_self_test
...
$ agentchat triggers --database doc_self_test
role: plain
 schemaname | tablename  |            triggername            | trigger_mode | verdict
------------+------------+-----------------------------------+--------------+---------
 public     | agent_chat | trg_admit_agent_chat              | ALWAYS       | ok
 public     | agent_chat | trg_embed_chat_message            | {embed}       | ok
 public     | agent_chat | trg_forget_embedding              | ORIGIN       | ok
 public     | agent_chat | trg_forget_processed              | ALWAYS       | ok
 public     | agent_chat | trg_guard_replica_truncate        | DISABLED     | ok
 public     | agent_chat | trg_guard_replica_writes          | DISABLED     | ok
 public     | agent_chat | trg_immutable_agent_chat          | ORIGIN       | ok
 public     | agent_chat | trg_immutable_agent_chat_truncate | ORIGIN       | ok
 public     | agent_chat | trg_notify_agent_chat             | ALWAYS       | ok
(9 rows)
```
"""

SELF_TEST_PYTHON = """\
```console
$ agentchat install --database doc_self_test
...
```

```python
import psycopg

with psycopg.connect("dbname=doc_self_test") as conn:
    [(version,)] = conn.execute("SELECT max(version) FROM agentchat_migrations").fetchall()
assert version == {version}, version
```

<!-- doc-test: skip (never run: it would fail) -->
```python
raise SystemExit(3)
```
"""


def test_matcher_placeholders_and_ellipsis(tmp_path: Path) -> None:
    ctx = Context(Cluster(tmp_path / "none"), tmp_path)
    assert output_matches(ctx, ["pid <pid> on port <port>"], ["pid 12 on port 5432"])
    assert not output_matches(ctx, ["pid <pid> on port <port>"], ["pid x on port 5432"])
    assert output_matches(ctx, ["slot s_<hex>, <n> errors"], ["slot s_0c8b82d4, 2 errors"])
    assert not output_matches(ctx, ["slot s_<hex>"], ["slot s_0C8B"])
    assert not output_matches(ctx, ["<n> errors"], ["two errors"])
    assert output_matches(ctx, ["a", "...", "z"], ["a", "b", "c", "z"])
    assert output_matches(ctx, ["a", "...", "z"], ["a", "z"])
    assert not output_matches(ctx, ["a", "...", "z"], ["a", "b"])
    assert output_matches(ctx, ["dir <tmp>/x"], [f"dir {tmp_path}/x"])
    assert output_matches(
        ctx, ["uri host=<tmp>%2Fx"], [f"uri host={quote(str(tmp_path), safe='')}%2Fx"]
    )
    assert not output_matches(ctx, ["a"], ["a", "b"])
    assert not output_matches(ctx, ["a", "b"], ["a"])
    stamps = ["2026-12-01 20:14:29+00:00", "2026-12-01T20:11:33.85-05:00", "2026-12-01T20:14:29"]
    for stamp in stamps:
        assert output_matches(ctx, ["older than <time> from"], [f"older than {stamp} from"])
    assert not output_matches(ctx, ["at <time>"], ["at yesterday"])


def test_a_wrong_expected_line_fails(hub: Cluster, doc_tmp: Path) -> None:
    """The same command passes with the true output and fails with one wrong cell."""
    ctx = Context(hub, doc_tmp)
    doc = REPO / "self-test.md"
    right = parse_blocks(doc, SELF_TEST_DOC.replace("{embed}       ", "ORIGIN       "))
    wrong = parse_blocks(doc, SELF_TEST_DOC.replace("{embed}       ", "REPLICA      "))
    run_document(ctx, right)
    with pytest.raises(pytest.fail.Exception, match="REPLICA"):
        run_document(ctx, wrong)
    # and a wrong exit code fails too, with otherwise right output
    command = "$ agentchat triggers --database doc_self_test"
    right[0].text = right[0].text.replace(command, command + "  # exit 1")
    with pytest.raises(pytest.fail.Exception, match="documented: 1"):
        run_document(ctx, right)


def test_python_blocks_run_and_can_fail(hub: Cluster, doc_tmp: Path) -> None:
    """A python block that exits 0 passes, one whose assert fails fails; skipped ones never run."""
    ctx = Context(hub, doc_tmp)
    doc = REPO / "self-test.md"
    shipped = load_migrations()[-1].version
    right = parse_blocks(doc, SELF_TEST_PYTHON.replace("{version}", str(shipped)))
    wrong = parse_blocks(doc, SELF_TEST_PYTHON.replace("{version}", "999"))
    run_document(ctx, right)
    with pytest.raises(pytest.fail.Exception, match="AssertionError"):
        run_document(ctx, wrong)
