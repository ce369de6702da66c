"""``verify``: the seed's "Test Replication" section as one command.

LISTEN on the target, insert a probe message on the source (channel ``agentchat-verify``,
addressed to nobody), and measure: did it arrive on the target (ms), did the target's listener
get its NOTIFY (ms), how many embedding rows does the probe have there (0 or 1, never 2). The
probe is deleted afterwards on the source, and the deletion replicates.

On a two-way topology (star, relays or mesh) :func:`verify_links` does it from every node: a
probe written on each node must reach every other node exactly once (one NOTIFY there for it,
at most one embedding row), and each probe's deletion must reach them all too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from agentchat import _db, errors
from agentchat.agents.notices import parse_notification
from agentchat.sql import queries


@dataclass
class VerifyResult:
    source: str
    target: str
    probe_id: int | None = None
    arrived: bool = False
    notified: bool = False
    arrival_ms: float | None = None
    notify_ms: float | None = None
    embedding_rows: int = 0
    cleaned_up: bool = False
    error: str | None = None
    #: two-way (:func:`verify_links`): the NOTIFYs heard for the probe here (exactly one, or it
    #: arrived twice); None for a one-way probe
    notifications: int | None = None

    @property
    def ok(self) -> bool:
        once = self.notifications is None or self.notifications == 1
        return (
            self.arrived and self.notified and once and self.embedding_rows <= 1 and not self.error
        )

    def as_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        if self.notifications is None:  # one-way output as it always was
            del data["notifications"]
        return {**data, "ok": self.ok}


@_db.wrap_exceptions
def verify(source_dsn: str, target_dsn: str, *, timeout: float = 10.0) -> VerifyResult:
    """Send a probe through the replication from *source_dsn* to *target_dsn* and time it."""
    source_info, target_info = _db.make_conninfo(source_dsn), _db.make_conninfo(target_dsn)
    result = VerifyResult(_db.describe(source_info), _db.describe(target_info))
    try:  # _db.connection is the driver-error boundary: only agentchat errors come out
        with _db.connection(target_info) as target, _db.connection(source_info) as source:
            _probe(source, target, result, timeout)
    except errors.AgentchatError as exc:
        result.error = exc.message
    return result


def _probe(
    source: _db.Connection, target: _db.Connection, result: VerifyResult, timeout: float
) -> None:
    target.execute(queries["listen"])
    start = time.perf_counter()
    [(probe_id,)] = source.execute(
        queries["insert_probe"], (f"agentchat verify probe {uuid.uuid4()}",)
    ).fetchall()
    result.probe_id = int(probe_id)
    deadline = start + timeout
    try:
        while time.perf_counter() < deadline and not (result.arrived and result.notified):
            for note in target.notifies(timeout=0.005, stop_after=1):
                if _payload_id(note.payload) == result.probe_id and not result.notified:
                    result.notified = True
                    result.notify_ms = round((time.perf_counter() - start) * 1000, 2)
            if not result.arrived:
                row = target.execute(queries["probe_arrived"], (probe_id, probe_id)).fetchone()
                if row and row[0]:
                    result.arrived = True
                    result.arrival_ms = round((time.perf_counter() - start) * 1000, 2)
                    result.embedding_rows = int(row[1])
        if result.arrived:  # the queue row travels in the same transaction; count it again
            row = target.execute(queries["probe_arrived"], (probe_id, probe_id)).fetchone()
            result.embedding_rows = int(row[1]) if row else 0
    finally:
        target.execute(queries["verify_unlisten"])
        with source.transaction():  # messages are immutable outside maintenance (schema 5)
            source.execute(queries["allow_maintenance"])
            source.execute(queries["delete_probe"], (probe_id, probe_id))
        result.cleaned_up = _wait_gone(target, result.probe_id, timeout) if result.arrived else True


def _wait_gone(target: _db.Connection, probe_id: int, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        row = target.execute(queries["probe_arrived"], (probe_id, probe_id)).fetchone()
        if row and not row[0] and not row[1]:
            return True
        time.sleep(0.01)
    return False


def _payload_id(payload: str) -> int | None:
    notice = parse_notification(payload)
    return notice.id if notice else None


#: seconds to keep listening after a two-way probe arrived everywhere (a second copy by a loop)
ECHO_WAIT = 1.0


@_db.wrap_exceptions
def verify_links(dsns: Sequence[str], *, timeout: float = 10.0) -> list[VerifyResult]:
    """Two-way: write a probe on each node of *dsns* in turn, and check that it reaches every
    other node exactly once; one :class:`VerifyResult` per (writer, other node), in order."""
    infos = [_db.make_conninfo(d) for d in dsns]
    results: list[VerifyResult] = []
    for writer in infos:
        others = [i for i in infos if i != writer]
        pairs = [VerifyResult(_db.describe(writer), _db.describe(o), notifications=0)
                 for o in others]  # fmt: skip
        try:
            with contextlib.ExitStack() as stack:
                conns = [stack.enter_context(_db.connection(o)) for o in others]
                source = stack.enter_context(_db.connection(writer))
                _probe_all(source, conns, pairs, timeout)
        except errors.AgentchatError as exc:
            for pair in pairs:
                pair.error = pair.error or exc.message
        results += pairs
    return results


def _probe_all(
    source: _db.Connection,
    targets: Sequence[_db.Connection],
    pairs: Sequence[VerifyResult],
    timeout: float,
) -> None:
    for target in targets:
        target.execute(queries["listen"])
    start = time.perf_counter()
    [(probe_id,)] = source.execute(
        queries["insert_probe"], (f"agentchat verify probe {uuid.uuid4()}",)
    ).fetchall()
    for pair in pairs:
        pair.probe_id = int(probe_id)
    deadline, quiet_until = start + timeout, None
    try:
        while time.perf_counter() < (quiet_until or deadline):
            for target, pair in zip(targets, pairs, strict=True):
                _look(target, pair, int(probe_id), start)
            if quiet_until is None and all(p.arrived and p.notified for p in pairs):
                quiet_until = min(time.perf_counter() + ECHO_WAIT, deadline)
        for target, pair in zip(targets, pairs, strict=True):
            row = target.execute(queries["probe_arrived"], (probe_id, probe_id)).fetchone()
            pair.embedding_rows = int(row[1]) if row else 0
    finally:
        for target in targets:
            target.execute(queries["verify_unlisten"])
        with source.transaction():  # messages are immutable outside maintenance (schema 5)
            source.execute(queries["allow_maintenance"])
            source.execute(queries["delete_probe"], (probe_id, probe_id))
        for target, pair in zip(targets, pairs, strict=True):
            pair.cleaned_up = _wait_gone(target, int(probe_id), timeout) if pair.arrived else True


def _look(target: _db.Connection, pair: VerifyResult, probe_id: int, start: float) -> None:
    """One look at a target: NOTIFYs for the probe (counted), and whether the row is there."""
    for note in target.notifies(timeout=0.005, stop_after=1):
        if _payload_id(note.payload) == probe_id:
            pair.notifications = (pair.notifications or 0) + 1
            if not pair.notified:
                pair.notified = True
                pair.notify_ms = round((time.perf_counter() - start) * 1000, 2)
    if not pair.arrived:
        row = target.execute(queries["probe_arrived"], (probe_id, probe_id)).fetchone()
        if row and row[0]:
            pair.arrived = True
            pair.arrival_ms = round((time.perf_counter() - start) * 1000, 2)
