"""Message rules checked before a connection opens, and the pieces of delivery without a server."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from agentchat import _db, errors
from agentchat.agent import Agent, Backoff, failure_text
from agentchat.messaging import (
    Catchup,
    Message,
    UnreadableMessage,
    check_agent_settings,
    check_channel,
    check_limits,
    check_mentions,
    check_name,
    check_text,
    notification_concerns,
    notified_id,
    read_claimed,
    reply_params,
    send_params,
)


@pytest.mark.parametrize("name", ["nova", "Graybeard", " sage ", "a", "x" * 63, "r2-d2.v1_b"])
def test_valid_names_are_lowercased(name: str) -> None:
    assert check_name(name) == name.strip().lower()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 64, "invalid agent name"),
        ("no spaces", "invalid agent name"),
        ("a;b", "invalid agent name"),
        ("-dash-first", "invalid agent name"),
        ("émile", "invalid agent name"),
        ("nul\x00byte", "NUL byte"),
    ],
)
def test_invalid_names(name: str, reason: str) -> None:
    with pytest.raises(errors.InvalidInput, match=reason) as info:
        check_name(name)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_mentions_are_checked_and_deduplicated() -> None:
    assert check_mentions(["Nova", "nova", " * ", "sage"]) == ["nova", "*", "sage"]
    with pytest.raises(errors.InvalidInput, match="recipient"):
        check_mentions(["ok", "not ok"])
    with pytest.raises(errors.InvalidInput, match="too many recipients"):
        check_mentions([f"agent{i}" for i in range(65)])
    assert len(check_mentions([f"agent{i}" for i in range(64)])) == 64


def test_channels_and_texts() -> None:
    assert check_channel("ops/alerts:eu-1") == "ops/alerts:eu-1"
    for bad in ("", "has space", "x" * 64, "nul\x00"):
        with pytest.raises(errors.InvalidInput):
            check_channel(bad)
    assert check_text("x" * 1_048_576) == "x" * 1_048_576  # any length: NOTIFY carries the id
    with pytest.raises(errors.InvalidInput, match="must not be empty"):
        check_text(" \n\t")
    with pytest.raises(errors.InvalidInput, match="NUL byte"):
        check_text("a\x00b")


def test_send_params() -> None:
    params = send_params("Nova", "hi", ["Sage"], "general", 7)
    assert params == {"sender": "nova", "message": "hi", "mentions": ["sage"],
                      "channel": "general", "reply_to": 7}  # fmt: skip
    for bad in (0, -1, True):
        with pytest.raises(errors.InvalidInput, match="reply_to"):
            send_params("nova", "hi", reply_to=bad)


def payload(sender: str = "nova", mentions: list[str] | None = None, channel: str = "c") -> str:
    return json.dumps({"id": 1, "channel": channel, "sender": sender, "mentions": mentions or []})


def test_which_notifications_wake_an_agent() -> None:
    assert notification_concerns(payload(mentions=["sage"]), "sage", None)
    assert notification_concerns(payload(mentions=["*"]), "sage", None)
    assert not notification_concerns(payload(mentions=["atlas"]), "sage", None)
    assert not notification_concerns(payload(mentions=[]), "sage", None)  # addressed to nobody
    assert not notification_concerns(payload("sage", ["*"]), "sage", None)  # its own
    assert not notification_concerns(payload(mentions=["sage"], channel="x"), "sage", "c")
    assert notification_concerns("not json", "sage", None)  # the table decides, not the payload


def test_message_json_shape() -> None:
    when = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    msg = Message.from_row((5, "general", "nova", ["sage"], None, when, "héllo"))
    assert json.loads(msg.to_json()) == {
        "id": 5, "channel": "general", "sender": "nova", "mentions": ["sage"],
        "reply_to": None, "created_at": "2026-11-24T12:00:00+00:00", "message": "héllo",
    }  # fmt: skip
    with pytest.raises(errors.AgentchatError, match="not being delivered"):
        msg.reply("too late")


def test_retarget_keeps_credentials_for_the_same_server_only() -> None:
    mine = "host=/run/pg port=5432 dbname=sage_memory user=sage password=pw sslmode=disable"
    same = _db.retarget(mine, "host=/run/pg port=5432 dbname=hub")
    assert _db.conninfo_params(same) | {"password": "pw"} == {
        "host": "/run/pg", "port": "5432", "dbname": "hub", "user": "sage",
        "sslmode": "disable", "password": "pw",
    }  # fmt: skip
    assert "password=pw" in same
    other = _db.retarget(mine, "host=db.example port=5433 dbname=hub")
    assert "password" not in other and "user=sage" in other and "host=db.example" in other


def test_backoff_grows_to_its_maximum_and_resets() -> None:
    backoff = Backoff(first=0.1, maximum=2.0)
    delays = [backoff.delay() for _ in range(8)]
    assert delays[0] <= 0.12 and max(delays) <= 2.4 and delays[-1] >= 1.6
    backoff.reset()
    assert backoff.delay() <= 0.12


def test_failure_text_is_one_bounded_line() -> None:
    assert failure_text(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert failure_text(RuntimeError()) == "RuntimeError"
    assert len(failure_text(ValueError("x" * 5000))) == 2000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_catchup_claims_notified_ids_and_still_catches_up_every_interval() -> None:
    clock = Clock()
    catchup = Catchup(poll_interval=5, clock=clock)
    assert catchup.plan() is None  # at the start: the full catch-up
    catchup.caught_up(found=3, batch_size=100)
    assert not catchup.has_work and catchup.wait_time() == 5
    assert catchup.note(payload(mentions=["sage"]), "sage", None)
    assert not catchup.note(payload(mentions=["atlas"]), "sage", None)
    assert catchup.has_work and catchup.plan() == [1]  # the id, claimed directly
    assert catchup.plan() == [] and not catchup.has_work
    clock.now += 5
    assert catchup.plan() is None  # a lost notification costs at most one interval
    catchup.caught_up(found=100, batch_size=100)
    assert catchup.has_work and catchup.plan() is None  # a full batch: there may be more
    catchup.caught_up(found=0, batch_size=100)
    catchup.note("garbage", "sage", None)
    assert catchup.plan() is None  # unreadable: the table decides
    catchup.caught_up(found=0, batch_size=100)
    catchup.lost_connection()
    assert catchup.plan() is None  # notifications sent while away are gone


def test_notified_id_reads_the_payload() -> None:
    assert notified_id(payload(mentions=["sage"]), "sage", None) == (True, 1)
    assert notified_id(payload(mentions=["atlas"]), "sage", None) == (False, None)
    forged = json.dumps({"id": "1; DROP", "channel": "c", "sender": "x", "mentions": ["*"]})
    assert notified_id(forged, "sage", None) == (True, None)  # odd id: full catch-up instead


def test_any_notification_payload_is_read_without_an_error() -> None:
    """Anyone may NOTIFY agent_chat: no payload may raise (one nested too deep for the JSON
    decoder raised RecursionError and stopped the listener)."""
    for hostile in (
        "[" * 3900 + "]" * 3900,
        '{"id": 1, "channel": "c", "sender": "x", "mentions": "sage"}',
        '{"id": 1, "channel": "c", "sender": "x", "mentions": [null, "sage"]}',
        '{"id": 1, "channel": "c", "sender": "x", "mentions": [["sage"]]}',
        "[1, 2]",
        "null",
        "",
    ):
        concerns, msg_id = notified_id(hostile, "sage", None)
        assert concerns is True or msg_id is None
    for odd_id in (2**63, 0, -1, True, 1.5):
        odd = json.dumps({"id": odd_id, "channel": "c", "sender": "x", "mentions": ["sage"]})
        assert notified_id(odd, "sage", None) == (True, None)


WHEN = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ((1, "general", "nova", [None, "owl"], None, WHEN, "x"), "its mentions hold NULL"),
        ((1, "general", "nova", [["owl"]], None, WHEN, "x"), "its mentions are not a list"),
        ((1, "general", "nova", "owl", None, WHEN, "x"), "its mentions are not a list"),
        ((1, "general", "nova", ["Owl Bot"], None, WHEN, "x"), "invalid mention 'Owl Bot'"),
        ((1, "ops\nroom", "nova", ["owl"], None, WHEN, "x"), "invalid channel 'ops\\nroom'"),
        ((1, "general", None, ["owl"], None, WHEN, "x"), "invalid sender None"),
        ((1, "general", "nova\n", ["owl"], None, WHEN, "x"), "invalid sender 'nova\\n'"),
        ((1, "general", "x" * 99, ["owl"], None, WHEN, "x"), "invalid sender 'xxxxx"),
        ((1, "general", "nova", ["owl"], "2", WHEN, "x"), "invalid reply_to '2'"),
        ((1, "general", "nova", ["owl"], None, "now", "x"), "invalid created_at 'now'"),
        ((1, "general", "nova", ["owl"], None, WHEN, None), "its text is not text"),
    ],
)
def test_a_row_that_is_not_a_message_is_unreadable(row: tuple[object, ...], problem: str) -> None:
    with pytest.raises(UnreadableMessage) as info:
        Message.from_row(row)
    assert str(info.value).startswith(f"message 1 cannot be read: {problem}")
    assert "\n" not in str(info.value) and len(str(info.value)) < 120
    with pytest.raises(UnreadableMessage, match="message 9 cannot be read: timestamp too large"):
        read_claimed(9, ValueError("timestamp too large (after year 10K): 'infinity'\nmore"))


def test_recipients_are_a_list_of_names() -> None:
    """A string is refused (it used to address its letters), so is anything but a name."""
    with pytest.raises(errors.InvalidInput) as info:
        check_mentions("owl")
    assert str(info.value) == (
        "recipients must be a list of names, not the string 'owl' (pass a list, e.g. to=['owl'])"
    )
    for bad, error in (([None], "not None"), ([b"owl"], "not b'owl'"), (None, "not None"),
                       (7, "not 7"), (b"owl", "not the string 'owl'")):  # fmt: skip
        with pytest.raises(errors.InvalidInput, match=error):
            check_mentions(bad)  # type: ignore[arg-type]
    msg = Message.from_row((5, "ops", "nova", ["owl"], None, WHEN, "q"))
    assert reply_params("owl", msg, "a", None, 1)["mentions"] == ["nova"]
    assert reply_params("owl", msg, "a", ["atlas"], 1)["mentions"] == ["atlas"]
    for bad_to in ("nova", "", [None]):
        with pytest.raises(errors.InvalidInput, match="recipient"):
            reply_params("owl", msg, "a", bad_to, 1)  # type: ignore[arg-type]
    # 200,000 names are counted, not compared with each other (that was quadratic)
    with pytest.raises(errors.InvalidInput, match=r"too many recipients \(200000; at most 64\)"):
        check_mentions(f"a{i}" for i in range(200_000))


def test_numbers_an_agent_takes() -> None:
    for reply_to in (2**63, "5", 1.0):
        with pytest.raises(errors.InvalidInput, match="reply_to must be a message id"):
            send_params("nova", "hi", reply_to=reply_to)  # type: ignore[arg-type]
    assert send_params("nova", "hi", reply_to=2**63 - 1)["reply_to"] == 2**63 - 1
    for limit, idle in ((0, None), (-1, None), (True, None), (None, -1), (None, math.nan),
                        (None, math.inf), (None, "5")):  # fmt: skip
        with pytest.raises(errors.InvalidInput):
            check_limits(limit, idle)  # type: ignore[arg-type]
    check_limits(None, None)
    check_limits(1, 0)
    for poll in (0, -1, math.nan, math.inf, 1e300):
        with pytest.raises(errors.InvalidInput, match="poll_interval"):
            check_agent_settings(poll, 100)
    with pytest.raises(errors.InvalidInput, match="batch_size"):
        check_agent_settings(5, 0)
    for name, channel in ((7, None), ("nova", 7)):
        with pytest.raises(errors.InvalidInput, match=r"must be a name \(str\)"):
            Agent(name, "dbname=x", channel=channel)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput, match="poll_interval"):
        Agent("nova", "dbname=x", poll_interval=math.nan)
