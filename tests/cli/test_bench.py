"""`agentchat bench --quick` runs and reports every figure of every benchmark (never a time: how
fast this machine is right now is not a test; the figures' presence and shape are)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentchat.bench import BENCHMARKS
from agentchat.bench.report import TARGETS, floor_key, is_floor, ratio_key, render, split_unit
from tests.helpers import run_cli

pytestmark = pytest.mark.slow  # embedded clusters and every benchmark at small sizes


def test_bench_quick_reports_every_figure_with_its_floor_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_cli("bench", "--quick", "--json", str(out), timeout=900)  # a loaded machine
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    context = done.stdout + done.stderr
    figures: dict[str, float | None] = document["figures"]
    assert document["quick"] is True and document["pg_version"] == 18

    for name in BENCHMARKS:  # every benchmark reported
        assert any(key.startswith(f"{name}_") for key in figures), (name, sorted(figures))
    for key, target in TARGETS.items():  # every target's figure, where its benchmark exists
        if key.split("_")[0] in BENCHMARKS:
            assert key in figures, (key, context)
            assert document["targets"][key]["target"] == str(target), (key, context)

    for key, value in figures.items():
        assert value is not None and math.isfinite(value), (key, value, context)
        assert key in document["units"]
        if is_floor(key):  # a floor: its figure and the ratio beside it
            figure = key.replace("_floor", "", 1)
            assert figure in figures and ratio_key(figure) in figures, key
        elif floor_key(key) in figures:
            assert ratio_key(key) in figures, key

    table = done.stdout.splitlines()
    assert table[0].split() == ["figure", "value", "floor", "ratio", "target", "met"]
    shown = {line.split()[0] for line in table[1:]}
    for key in figures:  # each figure has a row, or joins its figure's row
        assert key in shown or is_floor(key) or split_unit(key)[1] == "_ratio", key
    assert done.stdout.strip() == render({k: float(v or 0) for k, v in figures.items()}).strip()
    assert done.stderr == ""  # progress only on a terminal


def test_bench_unknown_name_is_one_line_and_exit_2() -> None:
    done = run_cli("bench", "--only", "nonsense")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("agentchat: error: unknown benchmark nonsense"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
