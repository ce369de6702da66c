"""The demo's conversation: agents on three databases talking through replication, timed.

    with Conversation(homes={"nova": hub, "graybeard": gray, ...}, scripts=...) as talk:
        for line in talk.say("nova", "The backup failed, can you look?", to=["graybeard"]):
            ...

Every agent runs a real :class:`agentchat.Agent` listener on its own database, answering by a
script, and writes where its ``Agent`` sends: its own database when that is linked both ways
(a one-way replica's agents send to its source). A bare LISTEN connection on each database
times when each message arrived there (the notify trigger fires when the apply worker commits
it). :meth:`Conversation.say` sends one message from the sender's database and returns once it
and every reply it causes have been handled, with the timings of each: where it was written,
when it reached each database, when each addressee's listener handled it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from agentchat import _db, errors
from agentchat.agents.agent import Agent
from agentchat.agents.message import Message
from agentchat.agents.notices import parse_notification
from agentchat.sql import queries

#: a scripted agent's answer to a message: the reply's text, or None for no reply
Script = Callable[[Message], "str | None"]


@dataclass
class Timeline:
    """One message: who wrote it where, and when (ms after its commit) it got where."""

    id: int
    sender: str
    to: tuple[str, ...]
    text: str
    written_on: str
    reply_to: int | None = None
    committed: float = 0.0
    arrived: dict[str, float] = field(default_factory=dict)  # database -> ms
    handled: dict[str, float] = field(default_factory=dict)  # agent -> ms
    finished: set[str] = field(default_factory=set)  # agents whose handler (and reply) is done


class Conversation:
    """Listeners for every agent in *homes* (agent name -> its database's conninfo), answering
    by *scripts* (agent name -> script); each agent writes where its ``Agent`` sends (on a
    two-way node, its own database)."""

    def __init__(
        self,
        homes: Mapping[str, str],
        scripts: Mapping[str, Script],
        *,
        timeout: float = 20.0,
    ) -> None:
        self.homes = dict(homes)
        self.scripts = dict(scripts)
        self.timeout = timeout
        self.databases = sorted(set(self.homes.values()), key=list(self.homes.values()).index)
        self._lock = threading.Condition()
        self._lines: dict[int, Timeline] = {}
        self._early: list[tuple[int, str, str, float]] = []  # events before their send returned
        self._agents: list[Agent] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._errors: list[BaseException] = []

    # -- running ---------------------------------------------------------------------------

    def __enter__(self) -> Conversation:
        for conninfo in self.databases:
            conn = _db.connect(conninfo, long_lived=True)
            with _db.wrap_errors(conninfo):
                conn.execute(queries["listen"])
            self._spawn(self._watch, conn, _db.describe(conninfo))
        for name, home in self.homes.items():
            agent = Agent(name, home, poll_interval=1.0)
            agent._connect()  # listening before the first message is sent
            self._agents.append(agent)
            self._spawn(agent.run, self._handler(agent))
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for agent in self._agents:
            agent.stop()
        for thread in self._threads:
            thread.join(10)
        for agent in self._agents:
            agent.close()

    def _spawn(self, target: Callable[..., object], *args: object) -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # surfaced by say()
                with self._lock:
                    self._errors.append(exc)
                    self._lock.notify_all()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self, conn: _db.Connection, database: str) -> None:
        with _db.wrap_errors(), conn:
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    notice = parse_notification(note.payload)
                    if notice is not None and notice.id is not None:
                        self._event(notice.id, "arrived", database)

    def _handler(self, agent: Agent) -> Callable[[Message], str | None]:
        script: Script = self.scripts.get(agent.name) or _silent

        def handle(msg: Message) -> None:
            self._event(msg.id, "handled", agent.name)
            answer = script(msg)
            if answer:
                started = time.perf_counter()
                reply_id = msg.reply(answer)
                self._record(reply_id, agent.name, (msg.sender,), answer,
                             agent.send_conninfo, msg.id, started)  # fmt: skip
            self._event(msg.id, "finished", agent.name)

        return handle

    # -- bookkeeping -----------------------------------------------------------------------

    def _record(
        self,
        msg_id: int,
        sender: str,
        to: Sequence[str],
        text: str,
        written_on: str,
        reply_to: int | None,
        committed: float,
    ) -> None:
        with self._lock:
            line = Timeline(msg_id, sender, tuple(to), text, _db.describe(written_on), reply_to)
            line.committed = committed
            self._lines[msg_id] = line
            early, self._early = self._early, []
            for event in early:
                self._apply(*event)
            self._lock.notify_all()

    def _event(self, msg_id: int, kind: str, where: str) -> None:
        with self._lock:
            self._apply(msg_id, kind, where, time.perf_counter())
            self._lock.notify_all()

    def _apply(self, msg_id: int, kind: str, where: str, at: float) -> None:
        line = self._lines.get(msg_id)
        if line is None:
            self._early.append((msg_id, kind, where, at))
            return
        if kind == "finished":
            line.finished.add(where)
            return
        ms = max(0.0, (at - line.committed) * 1000)
        if kind == "handled":
            line.handled.setdefault(where, ms)
            # a listener cannot be handed a message before it reached its database; the
            # watcher thread may just have been scheduled later
            where = _db.describe(self.homes[where])
        line.arrived[where] = min(line.arrived.get(where, ms), ms)

    def _complete(self, line: Timeline) -> bool:
        everyone = [a for a in self.homes if a != line.sender] if "*" in line.to else line.to
        return all(a in line.finished for a in everyone if a in self.homes) and all(
            _db.describe(d) in line.arrived for d in self.databases
        )

    # -- the conversation ------------------------------------------------------------------

    def say(self, sender: str, text: str, *, to: Sequence[str]) -> list[Timeline]:
        """*sender* posts *text* from its own database; return its timeline and those of the
        replies it caused, once every addressee (of it and of the replies) has handled them."""
        with Agent(sender, self.homes[sender]) as writer:
            written_on = writer.send_conninfo
            started = time.perf_counter()
            msg_id = writer.send(text, to=to)
        self._record(msg_id, sender, to, text, written_on, None, started)
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while True:
                if self._errors:
                    raise self._errors[0]
                thread = self._thread_of(msg_id)
                if all(self._complete(line) for line in thread):
                    return thread
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.TimedOut(f"the demo's message #{msg_id} was not delivered")
                self._lock.wait(min(left, 0.3))

    def _thread_of(self, root: int) -> list[Timeline]:
        """*root* and its replies, and theirs, in the order they were written (ids written on
        two nodes in one millisecond sort by node, not by time)."""
        found = {root: self._lines[root]}
        grew = True
        while grew:
            grew = False
            for line in self._lines.values():
                if line.id not in found and line.reply_to in found:
                    found[line.id] = line
                    grew = True
        return sorted(found.values(), key=lambda x: x.committed)


def _silent(msg: Message) -> str | None:
    return None


def scripted(answers: Mapping[str, str]) -> Script:
    """A script answering the first message containing each key with its answer (once)."""
    pending = dict(answers)

    def script(msg: Message) -> str | None:
        for key, answer in list(pending.items()):
            if key.lower() in msg.message.lower():
                del pending[key]
                return answer
        return None

    return script


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise errors.TimedOut(f"the demo timed out waiting for {what}")
        time.sleep(0.05)
