"""The delivery protocol's decisions from made-up inputs: no database, no I/O, a fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from agentchat import _db, errors
from agentchat.agents.agent import Agent
from agentchat.agents.aio import AsyncAgent
from agentchat.agents.message import MAX_ID, Message, reply_key, reply_params
from agentchat.agents.protocol import (
    MAX_IDLE_TIMEOUT,
    MAX_PAYLOAD,
    MAX_POLL_INTERVAL,
    Backoff,
    Catchup,
    ChatNotice,
    Delivery,
    DeliveryLoop,
    Lost,
    Unloadable,
    Wait,
    check_agent_settings,
    check_limits,
    failure_text,
    is_transient,
    lost,
    notified_id,
    parse_notification,
    redeliver,
    reply_text,
    unreadable_value,
)
from agentchat.agents.route import (
    SendFailed,
    SendRoute,
    not_installed,
    reraise,
    send_destination,
    send_unreachable,
)
from agentchat.agents.send import MAX_PRUNE_BATCH, MAX_PRUNE_DAYS, check_prune

WHEN = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
ROW = (7, "ops", "nova", ["owl"], None, WHEN, "lunch?")
OWN = "host=/run/pg port=5432 dbname=owl_memory user=owl password=pw"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Stop:
    """A stop event that is set after *after* looks (a threading/asyncio Event stand-in)."""

    def __init__(self, after: int = 1_000) -> None:
        self.after = after

    def set(self) -> None:
        self.after = 0

    def is_set(self) -> bool:
        self.after -= 1
        return self.after < 0


def note(**fields: Any) -> str:
    payload = {"id": 1, "channel": "c", "sender": "nova", "mentions": ["owl"]}
    return json.dumps({**payload, **fields})


def loop(
    limit: int | None = None, idle: float | None = None, clock: Clock | None = None
) -> DeliveryLoop:
    agent = Agent("owl", "dbname=owl_memory", channel=None, poll_interval=5, batch_size=10)
    return DeliveryLoop(agent, limit, idle, clock or Clock())


def db_error(sqlstate: str | None, kind: type[errors.DatabaseError] = errors.DatabaseError) -> Any:
    return kind("boom", sqlstate=sqlstate)


# -- the NOTIFY payload -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (note(), ChatNotice(1, "nova", "c", ("owl",))),
        (note(mentions=None), ChatNotice(1, "nova", "c", ())),
        (note(mentions=["*", "owl"]), ChatNotice(1, "nova", "c", ("*", "owl"))),
        (note(mentions=[None, 3, ["owl"], "sage"]), ChatNotice(1, "nova", "c", ("sage",))),
        (note(id=MAX_ID), ChatNotice(MAX_ID, "nova", "c", ("owl",))),
        (note(extra="ignored"), ChatNotice(1, "nova", "c", ("owl",))),
    ],
)
def test_a_trigger_payload_is_read(payload: str, expected: ChatNotice) -> None:
    assert parse_notification(payload) == expected


@pytest.mark.parametrize("odd_id", [0, -1, MAX_ID + 1, True, False, 1.5, "1", "1; DROP", None, [1]])
def test_an_id_that_cannot_be_a_message_id_is_dropped(odd_id: object) -> None:
    notice = parse_notification(note(id=odd_id))
    assert notice is not None and notice.id is None and notice.sender == "nova"


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "null",
        "[1, 2]",
        '"a string"',
        "7",
        "{",
        "[" * 3900 + "]" * 3900,  # nested too deep for the decoder: RecursionError
        "[" * 100_000,
        note(mentions="owl"),
        note(mentions={"owl": 1}),
        note(sender=None),
        note(sender=7),
        note(channel=["c"]),
        json.dumps({"id": 1, "mentions": ["owl"]}),
        note(message="x" * MAX_PAYLOAD),  # longer than any NOTIFY
    ],
)
def test_anything_else_is_no_notice_and_never_an_error(payload: str) -> None:
    assert parse_notification(payload) is None


def test_a_non_string_payload_is_no_notice() -> None:
    assert parse_notification(b"{}") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("notice", "agent", "channel", "concerns"),
    [
        (ChatNotice(1, "nova", "c", ("owl",)), "owl", None, True),
        (ChatNotice(1, "nova", "c", ("*",)), "owl", None, True),
        (ChatNotice(1, "nova", "c", ("sage",)), "owl", None, False),
        (ChatNotice(1, "nova", "c", ()), "owl", None, False),
        (ChatNotice(1, "owl", "c", ("*", "owl")), "owl", None, False),  # its own
        (ChatNotice(1, "nova", "c", ("owl",)), "owl", "c", True),
        (ChatNotice(1, "nova", "c", ("owl",)), "owl", "d", False),
    ],
)
def test_which_notices_concern_an_agent(
    notice: ChatNotice, agent: str, channel: str | None, concerns: bool
) -> None:
    assert notice.concerns(agent, channel) is concerns


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (note(), (True, 1)),
        (note(id="x"), (True, None)),  # mentioned, odd id: a full catch-up instead
        (note(mentions=["sage"]), (False, None)),
        (note(channel="d"), (False, None)),
        ("garbage", (True, None)),  # unreadable: the table decides
        (note(sender=7), (True, None)),
    ],
)
def test_notified_id_is_the_parser_seen_by_one_agent(
    payload: str, expected: tuple[bool, int | None]
) -> None:
    assert notified_id(payload, "owl", "c") == expected


# -- catching up --------------------------------------------------------------------------------


def test_notified_ids_are_claimed_once_each_in_order() -> None:
    clock = Clock()
    catchup = Catchup(5, clock)
    assert catchup.plan() is None
    catchup.caught_up(0, 10)
    for msg_id in (3, 2, 3):
        catchup.note(note(id=msg_id), "owl", None)
    assert catchup.plan() == [3, 2]
    assert catchup.plan() == []


def test_notified_ids_wait_for_the_full_catch_up_when_it_is_due() -> None:
    clock = Clock()
    catchup = Catchup(5, clock)
    catchup.caught_up(0, 10)
    catchup.note(note(id=4), "owl", None)
    clock.now += 5
    assert catchup.plan() is None and catchup.notified == []  # the query finds 4 too


@pytest.mark.parametrize(("elapsed", "left"), [(0, 5.0), (1.5, 3.5), (5, 0.0), (60, 0.0)])
def test_the_wait_until_the_next_full_catch_up(elapsed: float, left: float) -> None:
    clock = Clock()
    catchup = Catchup(5, clock)
    catchup.caught_up(0, 10)
    clock.now += elapsed
    assert catchup.wait_time() == left


def test_a_notice_for_someone_else_adds_no_work() -> None:
    catchup = Catchup(5, Clock())
    catchup.caught_up(0, 10)
    assert catchup.note(note(mentions=["sage"]), "owl", None) is False
    assert not catchup.has_work


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_maximum_then_starts_over() -> None:
    backoff = Backoff(first=0.1, maximum=1.0, jitter=lambda low, high: 1.0)
    assert [backoff.delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.delay() == 0.1


@pytest.mark.parametrize("factor", [0.8, 1.2])
def test_backoff_jitter_is_within_a_fifth(factor: float) -> None:
    seen: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        seen.append((low, high))
        return factor

    assert Backoff(first=0.5, jitter=jitter).delay() == pytest.approx(0.5 * factor)
    assert seen == [(0.8, 1.2)]


# -- settings and limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "idle", "ok"),
    [
        (None, None, True),
        (1, 0, True),
        (10**9, MAX_IDLE_TIMEOUT, True),
        (None, 0.5, True),
        (0, None, False),
        (-1, None, False),
        (True, None, False),
        (2.0, None, False),
        (None, -0.001, False),
        (None, MAX_IDLE_TIMEOUT + 1, False),
        (None, math.nan, False),
        (None, math.inf, False),
        (None, "5", False),
    ],
)
def test_limits_and_idle_timeouts(limit: Any, idle: Any, ok: bool) -> None:
    if ok:
        check_limits(limit, idle)
    else:
        with pytest.raises(errors.InvalidInput, match=r"limit|idle_timeout"):
            check_limits(limit, idle)


@pytest.mark.parametrize(
    ("poll", "batch", "problem"),
    [
        (5, 100, None),
        (0.001, 1, None),
        (MAX_POLL_INTERVAL, 1, None),
        (0, 100, "poll_interval"),
        (MAX_POLL_INTERVAL * 1.001, 100, "poll_interval"),
        (math.nan, 100, "poll_interval"),
        ("5", 100, "poll_interval"),
        (5, 0, "batch_size"),
        (5, True, "batch_size"),
        (5, 1.5, "batch_size"),
    ],
)
def test_agent_settings_bounds(poll: Any, batch: Any, problem: str | None) -> None:
    if problem is None:
        check_agent_settings(poll, batch)
        Agent("owl", "dbname=x", poll_interval=poll, batch_size=batch)
    else:
        with pytest.raises(errors.InvalidInput, match=problem) as info:
            AsyncAgent("owl", "dbname=x", poll_interval=poll, batch_size=batch)
        assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("older_than", "batch", "ok"),
    [
        (dt.timedelta(0), 1, True),
        (dt.timedelta(days=MAX_PRUNE_DAYS), MAX_PRUNE_BATCH, True),
        (dt.timedelta(seconds=-1), 1, False),
        (dt.timedelta(days=MAX_PRUNE_DAYS, seconds=1), 1, False),
        (dt.timedelta(days=1), 0, False),
        (dt.timedelta(days=1), MAX_PRUNE_BATCH + 1, False),
        (dt.timedelta(days=1), True, False),
    ],
)
def test_prune_bounds(older_than: dt.timedelta, batch: int, ok: bool) -> None:
    if ok:
        check_prune(older_than, batch)
    else:
        with pytest.raises(errors.InvalidInput, match=r"--older-than|--batch-size"):
            check_prune(older_than, batch)


def test_both_front_ends_build_the_same_query_parameters() -> None:
    sync = Agent(" Owl ", "dbname=owl_memory", channel="ops", batch_size=7)
    aio = AsyncAgent(" Owl ", "dbname=owl_memory", channel="ops", batch_size=7)
    for agent in (sync, aio):
        run = agent._loop(None, None)
        run.size = 7
        assert run.batch().params == {"agent": "owl", "channel": "ops", "limit": 7,
                                      "scan": 7 + 3 * 7, "after": 0}  # fmt: skip
        assert agent._send_params("hi", to=["Nova"])["channel"] == "ops"  # its own channel
        assert agent._send_params("hi", channel="x")["channel"] == "x"
    assert Agent("owl", "dbname=x")._send_params("hi")["channel"] == "general"


# -- where an agent sends -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replica", "recorded", "expected"),
    [
        (False, None, OWN),
        (False, "host=/run/pg port=5432 dbname=hub", OWN),  # only a replica looks it up
        (True, "host=/run/pg port=5432 dbname=hub", OWN.replace("owl_memory", "hub")),
        (True, "host=db.example port=5433 dbname=hub", None),  # another server: no password
    ],
)
def test_send_destination(replica: bool, recorded: str | None, expected: str | None) -> None:
    found = send_destination(OWN, replica=replica, recorded=recorded)
    if expected is not None:
        assert _db.conninfo_params(found) == _db.conninfo_params(expected)
    else:
        params = _db.conninfo_params(found)
        assert params["host"] == "db.example" and params["user"] == "owl"
        assert "password" not in params


def test_a_replica_whose_source_is_not_recorded_cannot_send() -> None:
    with pytest.raises(errors.ConfigError, match="is a replica and its source is not recorded"):
        send_destination(OWN, replica=True, recorded=None)


@pytest.mark.parametrize(
    ("send_dsn", "found", "route", "local"),
    [
        (None, OWN, OWN, True),
        (None, "dbname=hub", "dbname=hub", False),
        ("dbname=hub", OWN, "dbname=hub", False),  # given: never looked up
    ],
)
def test_the_route_is_settled_once(
    send_dsn: str | None, found: str, route: str, local: bool
) -> None:
    routing = SendRoute(OWN, send_dsn)
    assert routing.is_local(found) is local
    assert routing.settle("dbname=elsewhere") == route  # the first answer stays


def test_an_unreachable_source_is_named_with_the_fix() -> None:
    cause = errors.ConnectionLost("connection lost: server closed\nthe connection")
    error = send_unreachable("owl", "host=db.example port=5433 dbname=hub password=pw", cause)
    assert isinstance(error, SendFailed) and isinstance(error, errors.ConnectionFailed)
    assert error.message.startswith("owl sends to ") and "pw" not in error.message
    assert error.message.endswith("which failed: connection lost: server closed")
    assert "--send-dsn" in (error.fix or "")
    assert error.conninfo.endswith("password=pw")


@pytest.mark.parametrize(
    ("sqlstate", "config"),
    [("42P01", True), ("42883", True), ("23505", False), (None, False)],
)
def test_a_missing_table_or_function_means_not_installed(
    sqlstate: str | None, config: bool
) -> None:
    error = db_error(sqlstate)
    assert (not_installed(error, "dbname=nova_memory") is not None) is config
    with pytest.raises(errors.AgentchatError) as info:
        reraise(error, "dbname=nova_memory")
    if config:
        assert isinstance(info.value, errors.ConfigError) and info.value.__cause__ is error
        assert "agentchat is not installed in" in info.value.message
    else:
        assert info.value is error


# -- errors and results -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (errors.ConnectionLost("gone"), True),
        (errors.ConnectionFailed("down"), True),
        (errors.AuthenticationFailed("refused"), True),  # a restart may be under way
        (SendFailed("x", conninfo="dbname=hub"), True),
        (db_error("40001"), True),
        (db_error("57P01"), True),
        (db_error("53300"), True),
        (db_error("23505"), False),
        (db_error(None), False),
        (psycopg.OperationalError("a handler's own connection"), True),
        (psycopg.errors.UniqueViolation("a handler's own"), False),
        (errors.InvalidInput("bad"), False),
        (errors.ConfigError("setup"), False),
        (ValueError("bug"), False),
    ],
)
def test_which_errors_are_a_lost_connection(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ValueError("bad\nsecond line"), "ValueError: bad"),
        (RuntimeError(), "RuntimeError"),
        (KeyError(""), "KeyError: ''"),
        (OSError("   "), "OSError"),
        (ValueError("x" * 5000), "ValueError: " + "x" * (2000 - len("ValueError: "))),
    ],
)
def test_failure_text(exc: BaseException, text: str) -> None:
    assert failure_text(exc) == text


def test_a_row_that_cannot_be_fetched_is_unreadable_unless_the_connection_broke() -> None:
    value = db_error(None)
    assert unreadable_value(value) is value
    with pytest.raises(errors.ConnectionLost):
        unreadable_value(errors.ConnectionLost("gone"))


@pytest.mark.parametrize(
    ("result", "text"), [(None, None), ("", None), (" \n", None), ("ok", "ok"), (" ok ", " ok ")]
)
def test_what_a_handler_result_posts(result: object, text: str | None) -> None:
    assert reply_text(result) == text


@pytest.mark.parametrize("result", [1, b"bytes", ["a"], True])
def test_a_handler_result_that_is_no_text_is_a_type_error(result: object) -> None:
    with pytest.raises(TypeError, match="a handler returns a reply"):
        reply_text(result)


def test_what_a_handler_exception_means(caplog: pytest.LogCaptureFixture) -> None:
    delivery = Delivery("owl", 7)
    msg = Message.from_row(ROW, delivery)
    assert redeliver("owl", msg, errors.ConnectionLost("gone")) is True
    assert delivery.status == "routed"  # rolled back, not recorded
    with pytest.raises(errors.ConfigError):
        redeliver("owl", msg, errors.ConfigError("no source"))
    with caplog.at_level(logging.WARNING, logger="agentchat.agent"):
        assert redeliver("owl", msg, ValueError("nope")) is False
    assert (delivery.status, delivery.error) == ("failed", "ValueError: nope")
    assert "owl: message 7 failed: nope" in caplog.text


def test_the_idle_timeout_error_names_the_lost_connection() -> None:
    own = errors.ConnectionLost("connection to nova lost")
    assert lost("dbname=nova", own) is own
    assert own.message.endswith("(the idle timeout passed while retrying)")
    other = lost("dbname=nova_memory", OSError("reset"))
    assert "connection lost (OSError: reset)" in other.message
    assert other.message.endswith("the idle timeout passed while reconnecting")


# -- one delivery -------------------------------------------------------------------------------


def test_a_delivery_reads_its_claimed_row(caplog: pytest.LogCaptureFixture) -> None:
    nothing = Delivery("owl", 7)
    assert nothing.read(None) is None and not nothing.claimed
    good = Delivery("owl", 7)
    msg = good.read(ROW)
    assert msg is not None and msg.id == 7 and good.claimed and msg._delivery is good
    with caplog.at_level(logging.WARNING, logger="agentchat.agent"):
        bad = Delivery("owl", 8)
        assert bad.read((8, "ops", None, ["owl"], None, WHEN, "x")) is None
        fetched = Delivery("owl", 9)
        assert fetched.read(ValueError("year 10000 is out of range")) is None
    assert bad.claimed and bad.status == "failed"
    assert bad.error == "message 8 cannot be read: invalid sender None"
    assert fetched.error == "message 9 cannot be read: year 10000 is out of range"
    assert "owl: message 8 cannot be read" in caplog.text


def test_replies_are_counted_into_their_keys_and_recorded_in_the_outcome() -> None:
    posted: list[dict[str, Any]] = []
    checked: list[Sequence[str]] = []

    def post(params: dict[str, Any], check: Sequence[str]) -> int:
        posted.append(params)
        checked.append(check)
        return 100 + len(posted)

    delivery = Delivery("owl", 7, post=post)
    msg = delivery.read(ROW)
    assert msg is not None
    assert delivery.outcome() == {"id": 7, "agent": "owl", "status": "routed", "error": None}
    assert msg.reply("yes") == 101 and msg.reply("and more", to=["*"]) == 102
    assert [p["reply_key"] for p in posted] == ["owl:7:1", "owl:7:2"]
    assert checked == [[], []]  # to the sender, and to everyone: nothing to look up
    assert posted[0]["mentions"] == ["nova"] and posted[1]["mentions"] == ["*"]
    assert {p["channel"] for p in posted} == {"ops"} and {p["reply_to"] for p in posted} == {7}
    assert delivery.outcome()["status"] == "responded"
    msg.fail("x" * 3000)
    assert delivery.outcome()["status"] == "failed" and len(delivery.outcome()["error"]) == 2000


def test_a_refused_reply_is_not_counted() -> None:
    delivery = Delivery("owl", 7, post=lambda params, check: 1)
    msg = delivery.read(ROW)
    assert msg is not None
    with pytest.raises(errors.InvalidInput):
        msg.reply("  ")
    assert delivery.replies == 0 and delivery.status == "routed"


def test_each_front_end_answers_its_own_way() -> None:
    sync_msg = Delivery("owl", 7, post=lambda params, check: 1).read(ROW)

    async def apost(params: dict[str, Any], check: Sequence[str]) -> int:
        return 2

    async_msg = Delivery("owl", 7, apost=apost).read(ROW)
    assert sync_msg is not None and async_msg is not None
    assert asyncio.run(async_msg.areply("hi")) == 2
    with pytest.raises(errors.DeliveryError, match=r"await msg\.areply"):
        async_msg.reply("hi")
    with pytest.raises(errors.DeliveryError, match=r"msg.areply\(\) is for AsyncAgent"):
        asyncio.run(sync_msg.areply("hi"))
    idle = Message.from_row(ROW)
    with pytest.raises(errors.DeliveryError, match="message 7 is not being delivered: use send"):
        idle.reply("hi")
    with pytest.raises(errors.DeliveryError, match=r"message 7 is not being delivered$"):
        idle.fail("x")


@pytest.mark.parametrize(
    ("to", "mentions"), [(None, ["nova"]), ([], ["nova"]), (["Sage", "sage"], ["sage"])]
)
def test_reply_params(to: Sequence[str] | None, mentions: list[str]) -> None:
    msg = Message.from_row(ROW)
    params = reply_params("Owl", msg, "ok", to, 3)
    assert params == {"sender": "owl", "message": "ok", "mentions": mentions, "channel": "ops",
                      "reply_to": 7, "reply_key": "owl:7:3"}  # fmt: skip
    assert reply_key("owl", 7, 3) == params["reply_key"]


# -- one loop -----------------------------------------------------------------------------------


def claimed(chat_id: int, status: str | None = "routed") -> list[Any]:
    """A row of agent_claim_batch: id, the claim's status, the message's columns."""
    return [chat_id, status, *ROW[1:]]


def test_a_full_batch_asks_for_more_past_its_last_id_then_once_from_the_beginning() -> None:
    run = loop()
    first = run.batch()
    assert first.query == "agent_claim_batch" and first.params["after"] == 0
    assert first.params["limit"] == 1 and first.params["scan"] == 1 + 3 * 10  # sizes adapt
    for i in (3, 4):
        first.take(claimed(i))
    assert run.finished(first) is False and run.catchup.has_work  # a full batch: more
    second = run.batch()
    assert second.params["after"] == 4  # past what the last one held, not from the beginning
    second.take(claimed(9))
    run.finished(second)
    third = run.batch()
    assert third.params["after"] == 9
    run.finished(third)  # the end of the run: once more from the beginning
    assert run.catchup.has_work and run.batch().params["after"] == 0
    run.finished(run.batch())
    assert not run.catchup.has_work and run.catchup.plan() == []


def test_a_batch_grows_while_handlers_are_fast_and_is_one_message_when_they_are_slow() -> None:
    clock = Clock()
    run = loop(clock=clock)
    sizes = []
    for _ in range(6):
        batch = run.batch()
        sizes.append(batch.size)
        for i in range(batch.size):
            taken = batch.take(claimed(100 + i))
            assert taken is not None
            with run.handing_over(taken[0]):
                clock.now += 0.001  # 1 ms a message
        run.finished(batch)
    assert sizes == [1, 2, 4, 8, 10, 10]  # doubling, up to batch_size
    batch = run.batch()
    taken = batch.take(claimed(200))
    assert taken is not None
    with run.handing_over(taken[0]):
        clock.now += 0.5  # a slow handler: one message per transaction from now on
    run.finished(batch)
    assert run.size == 1


def test_a_batch_hands_over_claimed_messages_and_records_what_is_not_routed() -> None:
    run = loop()
    batch = run.batch()
    assert batch.take(claimed(5, "expired")) is None  # recorded expired by the claim
    assert batch.take(claimed(6, None)) is None  # recorded by another listener meanwhile
    unreadable = Unloadable(7, "routed", errors.DatabaseError("timestamp too large"))
    assert batch.take(unreadable) is None  # recorded failed
    taken = batch.take(claimed(8))
    assert taken is not None and taken[1].id == 8
    delivery, _message = taken
    answered = batch.take(claimed(9))
    assert answered is not None
    answered[0].replied(42)
    assert batch.locked == 5 and [d.chat_id for d in batch.deliveries] == [7, 8, 9]
    assert batch.outcomes() == {
        "agent": "owl", "ids": [7, 9], "statuses": ["failed", "responded"],
        "errors": ["message 7 cannot be read: timestamp too large", None],
    }  # fmt: skip
    assert delivery.status == "routed"  # the claim's mark says so already


def test_notified_ids_beyond_a_batch_wait_for_the_next_one() -> None:
    run = loop()
    run.finished(run.batch())  # the first full catch-up: nothing
    run.size = 2
    for i in (11, 12, 13):
        run.catchup.note(note(id=i), "owl", None)
    batch = run.batch()
    assert batch.query == "agent_claim_ids" and batch.params["ids"] == [11, 12, 13]
    assert batch.params["limit"] == 2  # the others are candidates: another listener may hold some
    for i in (11, 12):
        batch.take(claimed(i))
    run.finished(batch)
    assert run.batch().params["ids"] == [13]  # not looked at: next time
    run.size = 2
    for i in (14, 15, 16):
        run.catchup.note(note(id=i), "owl", None)
    skipping = run.batch()
    skipping.take(claimed(16))  # 14 and 15 held by another listener (or handled): skipped
    run.finished(skipping)
    assert run.catchup.plan() == []


def test_only_messages_handed_over_count_toward_the_limit() -> None:
    clock = Clock()
    run = loop(limit=2, clock=clock)
    run.size = 10
    batch = run.batch()
    assert batch.size == 2  # never more than the limit leaves
    assert batch.take(claimed(5, "expired")) is None
    taken = batch.take(claimed(6))
    assert taken is not None
    with run.handing_over(taken[0]):
        pass
    clock.now += 1
    assert run.finished(batch) is False and run.delivered == 1
    assert run.batch().size == 1
    assert run.idle_since == clock.now


def test_a_closed_generator_ends_the_loop() -> None:
    run = loop()
    delivery = Delivery("owl", 5)
    with pytest.raises(GeneratorExit), run.handing_over(delivery):
        raise GeneratorExit
    assert run.closing and not delivery.handed_over
    thrown = loop()
    with pytest.raises(errors.ConnectionLost), thrown.handing_over(delivery):
        raise errors.ConnectionLost("redeliver")
    assert not thrown.closing  # run() throws a lost connection in: the loop goes on


def test_a_message_pruned_before_its_claim_is_skipped() -> None:
    run = loop()
    with run.claiming():
        raise psycopg.errors.ForeignKeyViolation("gone")
    with pytest.raises(errors.DatabaseError) as info, run.claiming():
        raise psycopg.errors.UniqueViolation("other")
    assert info.value.sqlstate == "23505"


@pytest.mark.parametrize(
    ("idle", "elapsed", "has_work", "expected"),
    [
        (None, 0, True, 0.0),  # more work: no wait at all
        (None, 0, False, 5.0),  # the poll interval
        (2.0, 0, False, 2.0),  # the idle timeout is sooner
        (10.0, 3, False, 2.0),  # the next full catch-up is sooner
        (10.0, 7, False, 0.0),  # one is overdue (a slow handler): catch up, do not stop
        (2.0, 2, False, None),  # idle long enough: stop
        (0, 0, False, None),  # just catch up
        (0, 0, True, 0.0),  # ... but finish what is waiting first
    ],
)
def test_the_pause_after_a_pass(
    idle: float | None, elapsed: float, has_work: bool, expected: float | None
) -> None:
    clock = Clock()
    run = loop(idle=idle, clock=clock)
    run.finished(run.batch())  # a full catch-up that found nothing
    run.catchup.full_due = has_work
    run.backoff.delay()
    clock.now += elapsed
    wait = run.pause()
    assert (wait.timeout if wait else None) == expected
    assert run.backoff._next == 0  # a pass without errors resets the backoff


def test_a_lost_connection_is_told_apart_from_the_send_connection() -> None:
    run = loop()
    run.finished(run.batch())
    own = run.lost(errors.ConnectionLost("gone"))
    assert own == Lost(run.agent.conninfo, True, own.error) and run.catchup.has_work
    remote = run.lost(SendFailed("x", conninfo="dbname=hub"))
    assert (remote.conninfo, remote.own) == ("dbname=hub", False)


def test_other_errors_end_the_loop() -> None:
    run = loop()
    bug = ValueError("bug")
    with pytest.raises(ValueError) as info:
        run.lost(bug)
    assert info.value is bug
    with pytest.raises(errors.ConfigError, match="not installed"):
        run.lost(db_error("42P01"))


def test_reconnecting_backs_off_until_the_idle_timeout(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    run = loop(idle=10, clock=clock)
    run.backoff.jitter = lambda low, high: 1.0
    gone = run.lost(errors.ConnectionLost("server closed the connection"))
    with caplog.at_level(logging.WARNING, logger="agentchat.agent"):
        assert [run.retry_in(gone) for _ in range(3)] == [0.1, 0.2, 0.4]
    assert "connection lost (ConnectionLost: server closed the connection)" in caplog.text
    clock.now += 10
    with pytest.raises(errors.ConnectionLost, match="the idle timeout passed while retrying"):
        run.retry_in(gone)
    other = run.lost(psycopg.OperationalError("reset"))
    with pytest.raises(errors.ConnectionFailed, match="while reconnecting") as info:
        run.retry_in(other)
    assert info.value.__cause__ is other.error


def test_notes_wake_the_agent_only_for_its_messages() -> None:
    run = loop()
    run.finished(run.batch())
    run.size = 10
    assert run.note([note(mentions=["sage"]), note(sender="owl")]) is False
    assert run.note([note(id=4), note(mentions=["sage"], id=5), note(id=6)]) is True
    assert run.batch().params["ids"] == [4, 6]


@pytest.mark.parametrize(
    ("timeout", "ticks", "stop_after", "expected"),
    [
        (0.0, 0.0, 99, []),  # more work waiting: no wait
        (2.5, 1.0, 99, [1.0, 1.0, 0.5, 0.0]),  # at most a second each, then the probe
        (0.3, 0.3, 99, [0.3, 0.0]),
        (5.0, 1.0, 2, [1.0, 1.0]),  # stopped: no probe
    ],
)
def test_a_wait_listens_in_slices(
    timeout: float, ticks: float, stop_after: int, expected: list[float]
) -> None:
    clock = Clock()
    slices = []
    for left in Wait(timeout, clock).slices(Stop(stop_after)):
        slices.append(round(left, 6))
        clock.now += ticks
    assert slices == expected
