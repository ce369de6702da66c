"""The command group: every command listed once by task, imported only when used."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from agentchat.cli import SECTIONS, cli

ROWS = [row for rows in SECTIONS.values() for row in rows]


@pytest.mark.parametrize(("name", "where", "text"), ROWS, ids=[row[0] for row in ROWS])
def test_each_row_names_a_command_of_that_name(name: str, where: str, text: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert len(name) + len(text) <= 74, "the help line fits 80 columns without wrapping"


def test_every_command_listed_once() -> None:
    names = [name for name, _, _ in ROWS]
    assert len(names) == len(set(names))
    assert set(cli.list_commands(click.Context(cli))) == set(names)


def test_help_lists_the_commands_by_task() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    titles = [f"{title}:" for title in SECTIONS]
    assert [line for line in out.splitlines() if line in titles] == titles
    for name, _, text in ROWS:
        assert f"  {name}" in out and text in out


def test_importing_the_group_imports_no_command() -> None:
    code = (
        "import sys, agentchat.cli;"
        " print(sorted(m for m in sys.modules if m.startswith('agentchat.cli.')"
        " or m in ('rich', 'httpx', 'agentchat.embeddings', 'agentchat.health')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['agentchat.cli._output']"
