"""Recipients against the registry of agents: the judging, without a database."""

from __future__ import annotations

import pytest

from agentchat import errors
from agentchat.agents.protocol import Delivery
from agentchat.agents.recipients import (
    KnownAgents,
    check_recipients,
    closest,
    refused_names,
    unknown_error,
    unknown_names,
)

KNOWN = frozenset({"graybeard", "nova", "owl", "nova-2"})


def test_no_registry_checks_nothing() -> None:
    check_recipients(["anyone", "*"], None)
    assert unknown_names(["anyone"], None) == []


def test_everyone_and_registered_names_pass() -> None:
    check_recipients(["*", "nova", "graybeard"], KNOWN)
    check_recipients([], KNOWN)


def test_an_unknown_name_is_named_with_the_closest_known_ones() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        check_recipients(["nova", "graybaerd"], KNOWN)
    exc = caught.value
    assert exc.message == 'unknown agent "graybaerd" (did you mean graybeard?)'
    assert exc.exit_code == 2
    assert exc.fix is not None and "--allow-unknown" in exc.fix and "agent list" in exc.fix
    assert "\n" not in str(exc)


def test_several_unknown_names_each_with_their_suggestions() -> None:
    exc = unknown_error(["nvoa", "zzzzzz"], KNOWN)
    assert exc.message.startswith("unknown agents ")
    assert '"nvoa" (did you mean nova or nova-2?)' in exc.message
    assert exc.message.endswith('"zzzzzz"')  # nothing close: the name alone


def test_many_unknown_names_are_cut_short() -> None:
    names = [f"x{i}" for i in range(9)]
    exc = unknown_error(names, KNOWN)
    assert exc.message.endswith("and 4 more")
    assert '"x4"' in exc.message and '"x5"' not in exc.message


def test_closest_is_best_first_and_at_most_three() -> None:
    known = {"nova", "nova1", "nova2", "nova3", "owl"}
    assert closest("novaa", known)[:1] == ["nova"]
    assert len(closest("nova", known)) == 3


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_reads_once_per_ttl_and_again_for_a_name_it_does_not_know() -> None:
    clock = Clock()
    known = KnownAgents(ttl=10, clock=clock)
    assert not known.needs_read([])
    assert not known.needs_read(["*"])  # everyone: nothing to look up
    assert known.needs_read(["nova"])  # never read
    known.store(KNOWN)
    assert not known.needs_read(["nova", "*"])
    assert known.needs_read(["newcomer"])  # maybe added since: read again before refusing
    clock.now = 10
    assert known.needs_read(["nova"])  # stale
    known.store(None)
    assert not known.needs_read(["anyone"])  # no registry: no check until the TTL is over
    known.check(["anyone"])
    clock.now = 25
    assert known.needs_read(["anyone"])


def test_the_cache_checks_what_it_read() -> None:
    known = KnownAgents()
    known.store(KNOWN)
    known.check(["nova"])
    with pytest.raises(errors.InvalidInput, match="did you mean owl"):
        known.check(["owls"])


@pytest.mark.parametrize(
    ("to", "allow_unknown", "checked"),
    [
        (None, False, []),  # to the sender: not checked
        ([], False, []),
        (["nova", "*"], False, ["nova"]),
        (["nova"], True, []),
    ],
)
def test_which_recipients_of_a_reply_are_checked(
    to: list[str] | None, allow_unknown: bool, checked: list[str]
) -> None:
    params = {"mentions": ["nova", "*"] if to else ["boss"]}
    assert Delivery.reply_checks(params, to, allow_unknown) == checked


def test_the_databases_refusal_is_read_back_into_names() -> None:
    refusal = errors.InvalidInput("unknown agent(s): ghost, graybaerd", fix="hint")
    assert refused_names(refusal) == ["ghost", "graybaerd"]
    assert refused_names(errors.InvalidInput('invalid mention "x y"')) is None
    assert refused_names(ValueError("unknown agent(s): x")) is None
