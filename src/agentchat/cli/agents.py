"""``agentchat send``, ``agentchat listen`` and ``agentchat prune``: agents from the shell."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from agentchat import _db, errors, topology
from agentchat.agents import message as messages
from agentchat.agents import protocol
from agentchat.agents import send as sending
from agentchat.agents.agent import Agent
from agentchat.agents.message import Message
from agentchat.cli import _options, _output

#: the longest --exec-timeout: a week (a longer wait overflows the operating system's timers)
MAX_EXEC_TIMEOUT = 604_800.0


class _Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes every comparison)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _send_dsn(func: _options.F) -> _options.F:
    return click.option(
        "--send-dsn", metavar="DSN",
        help="Where sends go [default: this database, or its recorded source if it is a replica].",
    )(func)  # fmt: skip


@click.command()
@_options.connection
@click.option("--as", "sender", required=True, metavar="NAME", help="The sending agent.")
@click.option(
    "--to", "recipients", multiple=True, metavar="NAME",
    help="A recipient (repeat it, or NAME,NAME; * for everyone). None: addressed to nobody.",
)  # fmt: skip
@click.option("--channel", default="general", show_default=True, help="The channel.")
@click.option(
    "--reply-to", type=click.IntRange(min=1, max=messages.MAX_ID), metavar="ID",
    help="Answer message ID.",
)  # fmt: skip
@click.option(
    "--allow-unknown", is_flag=True,
    help="Send to names the registry of agents does not know (normally refused).",
)  # fmt: skip
@_send_dsn
@_options.output_format
@click.argument("message", required=False)
def send(
    dsn: str | None,
    database: str | None,
    sender: str,
    recipients: tuple[str, ...],
    channel: str,
    reply_to: int | None,
    allow_unknown: bool,
    send_dsn: str | None,
    fmt: str,
    message: str | None,
) -> None:
    """Post MESSAGE (or standard input) as agent --as; print the new message's id.

    When agents are registered (agentchat agent add), each --to must be * or one of them.
    """
    as_json = fmt == "json"
    if message is not None:
        message = _typed_text(message)
    else:
        if sys.stdin is None or sys.stdin.isatty():  # no stdin at all (`<&-`), or a terminal
            raise errors.InvalidInput("give the message as an argument or on standard input")
        try:
            message = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.InvalidInput(f"standard input is not UTF-8 text ({exc.reason})") from exc
        if message.endswith("\n"):  # `echo hi | agentchat send`: the line, not its newline
            message = message[:-2] if message.endswith("\r\n") else message[:-1]
    names = [n for item in recipients for n in item.split(",") if n.strip()]
    msg_id = sending.send(
        _db.make_conninfo(dsn, dbname=database), sender=sender, message=message, to=names,
        channel=channel, reply_to=reply_to, send_dsn=send_dsn, allow_unknown=allow_unknown,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({"id": msg_id}))
    else:
        click.echo(msg_id)


def _typed_text(value: str) -> str:
    """A command-line argument as the UTF-8 text that was typed, whatever the locale: in a
    legacy (ASCII) locale Python keeps the bytes it cannot decode as surrogates."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            return os.fsencode(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.InvalidInput("the message argument is not UTF-8 text") from exc


def _utf8_stdout() -> bool:
    return (sys.stdout.encoding or "").lower().replace("-", "").replace("_", "") == "utf8"


def _render(msg: Message) -> str:
    to = ",".join(msg.mentions) or "-"
    reply = f" (reply to #{msg.reply_to})" if msg.reply_to else ""
    return f"#{msg.id} [{msg.channel}] {msg.sender} -> {to}{reply}: {msg.message}"


class _Exec:
    """``--exec CMD``: CMD (through /bin/sh) gets the message's JSON on stdin; its stdout is
    the reply; a non-zero exit or a timeout is a failure."""

    def __init__(self, command: str, timeout: float, agent: str, as_json: bool) -> None:
        self.command, self.timeout, self.agent, self.as_json = command, timeout, agent, as_json

    def __call__(self, msg: Message) -> None:
        env = {**os.environ, "AGENTCHAT_AGENT": self.agent, "AGENTCHAT_MESSAGE_ID": str(msg.id)}
        # its own process group: on a timeout (or Ctrl-C) the command and everything it started
        # is killed; a background child must not hold its output pipe open forever
        proc = subprocess.Popen(
            self.command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, encoding="utf-8", errors="replace", env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(msg.to_json(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return self._failed(msg, f"timed out after {self.timeout:g} s")
        except BaseException:
            _kill_group(proc)
            raise
        if proc.returncode != 0:
            last = (stderr.strip().splitlines() or [""])[-1]
            status = f"exit status {proc.returncode}"
            return self._failed(msg, f"{status}: {last}" if last else status)
        reply = stdout.strip()
        try:
            reply_id = msg.reply(reply) if reply else None
        except errors.ConnectionFailed:
            raise  # the delivery is rolled back and tried again
        except (errors.InvalidInput, errors.DatabaseError) as exc:
            return self._failed(msg, f"the reply was refused: {exc}")
        self._report(msg, "responded" if reply_id else "routed", reply_id=reply_id)

    def _failed(self, msg: Message, error: str) -> None:
        """Recorded as the outcome (status failed, *error*) with the delivery, and said."""
        msg.fail(error)
        self._report(msg, "failed", error=error)
        _output.warning(f"{self.agent}: message {msg.id} failed: {error}")

    def _report(
        self, msg: Message, status: str, *, reply_id: int | None = None, error: str | None = None
    ) -> None:
        if self.as_json:
            line = json.dumps({"id": msg.id, "sender": msg.sender, "status": status,
                               "reply_id": reply_id, "error": error})  # fmt: skip
        else:
            detail = f" #{reply_id}" if reply_id else (f": {error}" if error else "")
            line = f"#{msg.id} from {msg.sender}: {status}{detail}"
        click.echo(line)
        sys.stdout.flush()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill a --exec command's process group and reap it."""
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


@click.command()
@_options.connection
@click.option("--as", "agent_name", required=True, metavar="NAME", help="The listening agent.")
@click.option("--channel", default=None, help="Only this channel's messages [default: all].")
@_send_dsn
@_options.output_format
@click.option(
    "--exec", "command", metavar="CMD",
    help="Run CMD per message (message JSON on stdin); its stdout is posted as the reply.",
)  # fmt: skip
@click.option(
    "--exec-timeout", type=_Finite(min=0, min_open=True, max=MAX_EXEC_TIMEOUT), default=300.0,
    show_default=True, metavar="SECONDS", help="A --exec command running longer has failed.",
)  # fmt: skip
@click.option("--once", is_flag=True, help="Handle what is waiting, then exit.")
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Exit after N messages.")
@click.option(
    "--idle-timeout", type=_Finite(min=0, max=protocol.MAX_IDLE_TIMEOUT), metavar="SECONDS",
    help="Exit after this long without a message.",
)  # fmt: skip
@click.option(
    "--poll-interval", type=_Finite(min=0.01, max=protocol.MAX_POLL_INTERVAL), default=5.0,
    show_default=True,
    metavar="SECONDS", help="Catch up by query at least this often (NOTIFY may be lost).",
)  # fmt: skip
def listen(
    dsn: str | None,
    database: str | None,
    agent_name: str,
    channel: str | None,
    send_dsn: str | None,
    fmt: str,
    command: str | None,
    exec_timeout: float,
    once: bool,
    count: int | None,
    idle_timeout: float | None,
    poll_interval: float,
) -> None:
    """Deliver every message addressed to agent --as, in order, exactly once.

    Messages sent while it was not running are delivered when it starts. Each is recorded in
    agent_chat_processed when handled (printed, or --exec run and its reply posted).
    """
    as_json = fmt == "json"
    agent = Agent(
        agent_name, _db.make_conninfo(dsn, dbname=database), send_dsn=send_dsn, channel=channel,
        poll_interval=poll_interval,
    )  # fmt: skip
    _output.log_warnings("agentchat.agent")
    _output.stop_on_sigterm(agent.stop)
    with agent:
        idle = 0.0 if once else idle_timeout
        if command is not None:
            agent.run(_Exec(command, exec_timeout, agent.name, as_json),
                      limit=count, idle_timeout=idle)  # fmt: skip
            return
        try:
            for msg in agent.messages(limit=count, idle_timeout=idle):
                click.echo(msg.to_json(ascii_only=not _utf8_stdout()) if as_json else _render(msg))
                sys.stdout.flush()  # printed before it is recorded: a closed pipe records nothing
        except BrokenPipeError:  # the reader went away (`| head`): that message stays pending
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@click.command()
@_options.connection
@_options.config
@click.option(
    "--older-than", type=_Finite(min=0, max=sending.MAX_PRUNE_DAYS), required=True,
    metavar="DAYS",
    help="Delete messages older than this many days (fractions work).",
)  # fmt: skip
@click.option(
    "--batch-size", type=click.IntRange(min=1, max=sending.MAX_PRUNE_BATCH), default=5000,
    show_default=True,
    help="Messages deleted per transaction.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@_options.output_format
def prune(
    dsn: str | None,
    database: str | None,
    config: Path | None,
    older_than: float,
    batch_size: int,
    dry_run: bool,
    fmt: str,
) -> None:
    """Delete old messages at the source; the deletions replicate.

    Their delivery marks and embedding rows go with them on every database. Without --dsn or
    --database, the topology file's source is pruned.
    """
    target = dsn
    if dsn is None and database is None:
        target = topology.load(config, required=config is not None).source
    result = sending.prune(
        _db.make_conninfo(target, dbname=database), older_than=dt.timedelta(days=older_than),
        batch_size=batch_size, dry_run=dry_run,
    )  # fmt: skip
    if fmt == "json":
        _output.emit_json(result.as_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    noun = "message" if result.deleted == 1 else "messages"
    cutoff = result.cutoff.isoformat(sep=" ", timespec="seconds")
    click.echo(f"{verb} {result.deleted} {noun} older than {cutoff} from {result.database}")
