"""The shared options and the output helper, on a throwaway command: no database."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from agentchat.cli import _options, _output


@click.command()
@_options.dsns(positional=True)
@_options.output_format("prometheus", help="Output format.")
def several(dsns: tuple[str, ...], fmt: str) -> None:
    _output.emit(fmt, {"dsns": list(dsns)}, lambda: " ".join(dsns), prometheus=lambda: "up 1\n")


@click.command()
@_options.dsns
@_options.output_format
def plain(dsns: tuple[str, ...], fmt: str) -> None:
    _output.emit(fmt, list(dsns), lambda: "")


def run(command: click.Command, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(command, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "out"),
    [
        ([], ""),  # an empty text prints nothing
        (["a", "b"], "a b\n"),
        (["--dsn", "x", "--dsn", "y"], "x y\n"),
        (["a", "--dsn", "x", "b"], "a b x\n"),  # the arguments first, then the options
        (["--format", "text", "a"], "a\n"),
        (["--format", "prometheus"], "up 1\n"),  # ends with a newline: none added
    ],
)
def test_dsns_and_text_formats(args: list[str], out: str) -> None:
    assert run(several, *args) == (0, out)


@pytest.mark.parametrize(
    "args",
    [
        ["--json"],
        ["--format", "json"],
        ["--format", "text", "--json"],
        ["--json", "--format", "text"],
    ],
)
def test_json_and_its_alias(args: list[str]) -> None:
    code, out = run(several, "a", *args)
    assert code == 0 and json.loads(out) == {"dsns": ["a"]}


@pytest.mark.parametrize(
    ("args", "code", "out"),
    [
        ([], 0, ""),
        (["--dsn", "x", "--format", "json"], 0, '[\n  "x"\n]\n'),
        (["--format", "prometheus"], 2, "'prometheus' is not one of 'text', 'json'"),
        (["a"], 2, "Got unexpected extra argument (a)"),  # no positional DSNs here
    ],
)
def test_plain_command(args: list[str], code: int, out: str) -> None:
    got_code, got = run(plain, *args)
    assert got_code == code and out in got


def test_help_shows_the_formats_once() -> None:
    _, out = run(several, "--help")
    assert out.count("--format [text|json|prometheus]") == 1 and "--json" in out
    assert "[DSN]..." in out and "--dsn DSN" in out
