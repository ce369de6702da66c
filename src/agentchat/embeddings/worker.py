"""The embedding worker: drains the queue in ``memory_embeddings`` (rows with embedding NULL).

    stats = Worker("dbname=nova_memory", make_embedder("local")).run(once=True)
    stats.embedded, stats.failed

Each of *concurrency* threads has its own connections and loops: claim a batch with
``FOR UPDATE SKIP LOCKED`` in a transaction, embed it, write the vectors (in pgvector's binary
format, one ``UPDATE`` per batch: :mod:`agentchat.embeddings.vectors`), commit; the write and
commit of one batch overlap the claim and embedding of the next, on a second connection. Rows
another worker holds are skipped, so several workers (threads or processes) never embed a row
twice; a
worker that dies releases its rows with its transaction. A failure is recorded on the row
(attempts, last_error, next_attempt_at with exponential backoff) and the rest of the queue goes
on: a failing batch is retried row by row, so one bad row does not hold back the others.

Workers wake on ``NOTIFY memory_embeddings`` (sent by the embed trigger) and also poll every
*poll_interval* seconds: a lost notification costs at most that.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from agentchat import _db, errors, nodes, policy, schema
from agentchat.embeddings.embedders import Embedder
from agentchat.embeddings.mode import EmbeddingMode, embedding_mode
from agentchat.embeddings.vectors import Vector, register, to_vector
from agentchat.sql import queries

log = logging.getLogger("agentchat.embeddings")


#: rows a worker claims and embeds together by default: one call of the embedder, which the local
#: embedder splits into forward passes of texts of like length (less padding than batches taken in
#: id order), and one ``UPDATE``; a failed batch is tried again row by row
BATCH_SIZE = 128


@dataclass
class WorkerStats:
    """What a worker did, and the queue as it last looked."""

    embedded: int = 0
    #: failed attempts recorded on rows
    failed: int = 0
    batches: int = 0
    #: queued rows due now, waiting for a retry, and with at least one failure (last count)
    due: int = 0
    retrying: int = 0
    failing: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Rows embedded per second since the worker started."""
        return self.embedded / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "embedded": self.embedded, "failed": self.failed, "batches": self.batches,
            "backlog": self.due, "retrying": self.retrying, "failing": self.failing,
            "seconds": round(self.elapsed, 3), "rate": round(self.rate, 1),
        }  # fmt: skip


@dataclass
class _Batch:
    """A claimed batch between its embedding and its write: the open transaction holding its
    rows, the vectors computed and the rows that failed (grouped by error)."""

    transaction: contextlib.ExitStack
    done: list[tuple[int, Vector]]
    failed: dict[str, list[int]]


def check_dimension(conn: _db.Connection, embedder: Embedder, where: str) -> int:
    """The schema's vector dimension, or a clear error if the embedder's differs."""
    fixed = schema.embedding_dimension(conn)
    if fixed is None:
        raise errors.ConfigError(f"agentchat is not installed in {where}", fix="agentchat install")
    produced = embedder.dimension
    if produced != fixed:
        raise errors.ConfigError(
            f"the embedder {embedder.model} gives {produced}-dimension vectors, but"
            f" memory_embeddings in {where} was installed for {fixed}",
            fix=f"use an embedder with {fixed} dimensions, or install a new database with"
            f" --dimension {produced}",
        )
    return fixed


class Worker:
    """Embeds the queued rows of one database (see the module's docstring).

    *progress*: called about every *report_interval* seconds, and at the end, with the stats.
    *retry_base* / *retry_cap*: a failed row waits ``retry_base * 2**attempts`` seconds, at most
    *retry_cap*, before it is tried again.
    """

    def __init__(
        self,
        dsn: str | None,
        embedder: Embedder,
        *,
        batch_size: int = BATCH_SIZE,
        concurrency: int = 1,
        poll_interval: float = 5.0,
        retry_base: float = 5.0,
        retry_cap: float = 3600.0,
        report_interval: float = 2.0,
        progress: Callable[[WorkerStats], None] | None = None,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise errors.InvalidInput("--batch-size and --concurrency must be at least 1")
        if poll_interval <= 0:
            raise errors.InvalidInput("--poll-interval must be positive")
        if retry_base < 0 or retry_cap <= 0:
            raise errors.InvalidInput("--retry-base must not be negative")
        self.conninfo = _db.make_conninfo(dsn)
        self.embedder = embedder
        self.batch_size, self.concurrency = batch_size, concurrency
        self.poll_interval = poll_interval
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.report_interval = report_interval
        self.progress = progress
        self.stats = WorkerStats()
        self.mode = EmbeddingMode.LOCAL
        #: on a two-way node, which chat rows were written here (see :func:`_origin_rows`)
        self._origin: dict[str, object] = {"node": None, "legacy": True}
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._errors: list[BaseException] = []
        self._due_by: datetime | None = None  # a --once run: its start (the database clock)

    @property
    def claims_chat_rows(self) -> bool:
        """Whether this database's chat rows are embedded here (not on a replica, unless it
        embeds replicated rows)."""
        return self.mode is not EmbeddingMode.REPLICATED

    def stop(self) -> None:
        """Make :meth:`run` return after the batches in hand (thread-safe)."""
        self._stopping.set()
        self._bump()

    def run(self, *, once: bool = False) -> WorkerStats:
        """Embed until :meth:`stop` (or, with *once*, until nothing is due); return the stats."""
        where = _db.describe(self.conninfo)
        with _db.connection(self.conninfo) as conn:
            check_dimension(conn, self.embedder, where)
            facts = policy.read_kind(conn)
            self.mode = embedding_mode(conn, facts)
            self._origin = _origin_rows(conn, facts)
            clock = conn.execute(queries["embed_clock"]).fetchone()
            self._due_by = clock[0] if once and clock else None
            self.stats = WorkerStats()
            threads = [
                threading.Thread(target=self._work, args=(once,), name=f"embed-{i}", daemon=True)
                for i in range(self.concurrency)
            ]
            for thread in threads:
                thread.start()
            try:
                if once:  # nothing sleeps, so nothing to wake: report until the threads end
                    self._report_until(threads, conn)
                else:
                    self._listen_until(lambda: not any(t.is_alive() for t in threads))
            finally:
                self._stopping.set()
                self._bump()
                for thread in threads:
                    thread.join()
            if not self._errors:
                self._count(conn)
        self._report()
        if self._errors:
            raise self._errors[0]
        return self.stats

    # -- the work threads ------------------------------------------------------------------

    def _work(self, once: bool) -> None:
        """Batches, two at a time: while one batch's vectors are written and committed (on the
        server: an UPDATE and an insert into the HNSW index per row), the next batch is claimed
        on a second connection and embedded. At most one write is in flight; its errors are
        raised here before the next one starts."""
        conns: list[_db.Connection | None] = [None, None]
        turn = 0
        backoff = 0.1
        writer = ThreadPoolExecutor(1, thread_name_prefix=f"{threading.current_thread().name}-w")
        writing: Future[None] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    with _db.wrap_errors(self.conninfo):
                        conn = conns[turn]
                        if conn is None or conn.closed:
                            conn = conns[turn] = _db.connect(self.conninfo, long_lived=True)
                            register(conn)  # vectors go in binary
                        generation = self._generation
                        batch = self._claim(conn)
                        if writing is not None:
                            previous, writing = writing, None
                            previous.result()  # the previous batch committed (or its error)
                        if batch is not None:
                            writing = writer.submit(self._write, conn, batch)
                            turn = 1 - turn
                            backoff = 0.1
                            continue
                    if once:
                        return
                    self._sleep(generation)
                except errors.DatabaseError as exc:
                    if writing is not None:  # wait for it: no connection used by two threads
                        with contextlib.suppress(BaseException):
                            writing.result()
                        writing = None
                    if not exc.transient:
                        raise
                    for i, one in enumerate(conns):  # an open batch rolls back, its rows free
                        if one is not None:
                            one.close()
                        conns[i] = None
                    log.warning("%s: connection lost (%s); retrying in %.1f s",
                                _db.describe(self.conninfo), exc, backoff)  # fmt: skip
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
        except BaseException as exc:  # a bug or a database error: stop every thread, re-raise
            with self._lock:
                self._errors.append(exc)
            self._stopping.set()
            self._bump()
        finally:
            if writing is not None:
                with contextlib.suppress(BaseException):
                    writing.result()
            writer.shutdown(wait=True)
            for one in conns:
                if one is not None:
                    one.close()

    def _claim(self, conn: _db.Connection) -> _Batch | None:
        """Open a transaction, claim a batch in it and embed it (the write is :meth:`_write`'s);
        None, and no transaction left open, when nothing is due."""
        transaction = contextlib.ExitStack()
        with transaction:  # closed here unless handed over (pop_all) with the batch
            transaction.enter_context(conn.transaction())
            rows = conn.execute(
                queries["embed_claim"],
                {
                    "chat_rows": self.claims_chat_rows,
                    "batch": self.batch_size,
                    "due_by": self._due_by,
                    **self._origin,
                },
            ).fetchall()
            if not rows:
                return None
            done, failed = self._embed([int(r[0]) for r in rows], [str(r[1]) for r in rows])
            return _Batch(transaction.pop_all(), done, failed)

    def _write(self, conn: _db.Connection, batch: _Batch) -> None:
        """Store a claimed batch's vectors and failures, and commit (rolled back on an error)."""
        with _db.wrap_errors(self.conninfo), batch.transaction:
            if batch.done:
                conn.execute(
                    queries["embed_store"],
                    {"ids": [i for i, _ in batch.done], "vectors": [v for _, v in batch.done],
                     "model": self.embedder.model},
                )  # fmt: skip
            for error, ids in batch.failed.items():
                conn.execute(
                    queries["embed_failed"],
                    {"ids": ids, "error": error, "base": self.retry_base, "cap": self.retry_cap},
                )
        with self._lock:
            self.stats.embedded += len(batch.done)
            self.stats.failed += sum(len(ids) for ids in batch.failed.values())
            self.stats.batches += 1

    def _embed(
        self, ids: list[int], texts: list[str]
    ) -> tuple[list[tuple[int, Vector]], dict[str, list[int]]]:
        """Vectors for the rows that could be embedded; the others grouped by their error."""
        done: list[tuple[int, Vector]] = []
        failed: dict[str, list[int]] = {}
        try:
            pairs = list(zip(ids, self.embedder.embed(texts), strict=True))
        except Exception as exc:
            pairs = []
            if len(ids) == 1:
                failed.setdefault(_error_line(exc), []).append(ids[0])
            else:
                log.info("a batch of %d failed (%s): trying its rows one by one", len(ids), exc)
                for one_id, text in zip(ids, texts, strict=True):
                    try:
                        pairs.append((one_id, self.embedder.embed([text])[0]))
                    except Exception as one_exc:
                        failed.setdefault(_error_line(one_exc), []).append(one_id)
        dimension = self.embedder.dimension
        for one_id, vector in pairs:
            try:
                if len(vector) != dimension:
                    raise ValueError(
                        f"the embedder returned {len(vector)} dimensions, not {dimension}"
                    )
                done.append((one_id, to_vector(vector)))
            except (ValueError, TypeError) as exc:  # one odd vector fails its row, not the worker
                failed.setdefault(_error_line(exc), []).append(one_id)
        for error, where in failed.items():
            log.warning("%d row(s) failed to embed, will retry: %s", len(where), error)
        return done, failed

    # -- waking, progress ------------------------------------------------------------------

    def _sleep(self, generation: int) -> None:
        """Until a wake-up newer than *generation*, a stop, or the poll interval."""
        with self._wake:
            self._wake.wait_for(lambda: self._generation != generation, self.poll_interval)

    def _bump(self) -> None:
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def _listen_until(self, finished: Callable[[], bool]) -> None:
        """LISTEN for wake-ups and report progress until *finished* (or stopped)."""
        conn: _db.Connection | None = None
        last_report = 0.0
        while not finished() and not self._stopping.is_set():
            try:
                with _db.wrap_errors(self.conninfo):
                    if conn is None or conn.closed:
                        conn = _db.connect(self.conninfo, long_lived=True)
                        conn.execute(queries["embed_listen"])
                        if self.mode is EmbeddingMode.EMBED_REPLICATED:
                            conn.execute(queries["embed_listen_chat"])
                        self._bump()  # something may have arrived while not listening
                    for _note in conn.notifies(timeout=0.1 if self._due_by else 0.5, stop_after=1):
                        self._bump()
                    if time.monotonic() - last_report >= self.report_interval:
                        self._count(conn)
                        self._report()
                        last_report = time.monotonic()
            except errors.DatabaseError as exc:
                _dropped(conn, exc)
                conn = None
                self._stopping.wait(1.0)
        if conn is not None:
            conn.close()

    def _report_until(self, threads: list[threading.Thread], conn: _db.Connection) -> None:
        """Until *threads* end: progress every *report_interval* seconds (counted on *conn*)."""
        due = time.monotonic() + self.report_interval
        for thread in threads:
            while thread.is_alive():
                thread.join(max(0.0, due - time.monotonic()))
                if thread.is_alive() and time.monotonic() >= due:
                    with contextlib.suppress(errors.DatabaseError), _db.wrap_errors(self.conninfo):
                        self._count(conn)
                    self._report()
                    due = time.monotonic() + self.report_interval

    def _count(self, conn: _db.Connection) -> None:
        row = conn.execute(
            queries["embed_backlog"], {"chat_rows": self.claims_chat_rows, **self._origin}
        ).fetchone()
        if row is not None:
            with self._lock:
                self.stats.due, self.stats.retrying, self.stats.failing = (int(x) for x in row)

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.stats)


def _error_line(exc: BaseException) -> str:
    """What a failed row records: one line, bounded, and text PostgreSQL can store (an error
    carrying a NUL byte, from an endpoint's answer say, must not stop the worker)."""
    text = " ".join(str(exc).replace("\x00", "\\0").split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return (text or type(exc).__name__)[:1000]


def _origin_rows(conn: _db.Connection, facts: policy.NodeFacts) -> dict[str, object]:
    """Which queued chat rows this worker embeds on a two-way node: those written here (the
    node number in their message id), and legacy ids (from before two-way replication) only on a
    node without a parent, where they were written; elsewhere they arrive with their vector.
    Everywhere else every queued row is the worker's (``node`` None)."""
    if facts.kind is not policy.NodeKind.PEER:
        return {"node": None, "legacy": True}
    mine = nodes.own(conn)
    return {"node": nodes.number(conn), "legacy": mine is None or mine.parent is None}


def _dropped(conn: _db.Connection | None, exc: errors.DatabaseError) -> None:
    """After *exc*: re-raise it unless it is transient, else close the broken connection (the
    caller connects again)."""
    if not exc.transient:
        raise exc
    if conn is not None:
        conn.close()
