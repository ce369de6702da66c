"""Figures of a benchmark run, the issue's targets beside them, as a table or JSON.

A figure's key is ``<bench>_<case>_<stat>`` ending in its unit (``_ms``, ``_s``, ``_per_s``;
none for counts). A figure compared with a floor measured in the same run has the floor beside
it, ``_floor`` before the unit, and the ratio figure / floor as ``_ratio``::

    delivery_200_p50_ms  delivery_200_p50_floor_ms  delivery_200_p50_ratio

Speed is judged by ratios (machines are noisy); :data:`TARGETS` holds the issue's targets.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: unit suffixes of figure keys, longest first, and how the table shows them
UNITS: dict[str, str] = {"_per_s": "/s", "_ratio": "x", "_ms": "ms", "_s": "s"}


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet: ``value <op> bound``."""

    op: str  # "<=" or ">="
    bound: float

    def met(self, value: float) -> bool:
        compare: Callable[[float, float], bool] = operator.le if self.op == "<=" else operator.ge
        return compare(value, self.bound)

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


#: the issue's targets (issue 15), by figure key; a benchmark's keys start with its name
TARGETS: dict[str, Target] = {
    "delivery_200_p50_ratio": Target("<=", 2.0),
    "delivery_200_p99_ms": Target("<=", 5.0),
    "throughput_agent_per_s": Target(">=", 5000.0),
    "throughput_agent_exactly_once": Target(">=", 1.0),
    "throughput_bulk_ratio": Target("<=", 1.5),
    "fanout_widest_p99_ratio": Target("<=", 4.0),
    "catchup_rate_per_s": Target(">=", 10000.0),
    "embeddings_worker_ratio": Target(">=", 0.8),
    "search_hnsw_p99_ms": Target("<=", 20.0),
    "search_hnsw_recall_at_10": Target(">=", 0.95),
}


def split_unit(key: str) -> tuple[str, str]:
    """``("delivery_200_p50", "_ms")`` for ``delivery_200_p50_ms``; no unit: ``(key, "")``."""
    for suffix in UNITS:
        if key.endswith(suffix):
            return key.removesuffix(suffix), suffix
    return key, ""


def floor_key(key: str) -> str:
    stem, unit = split_unit(key)
    return f"{stem}_floor{unit}"


def ratio_key(key: str) -> str:
    return f"{split_unit(key)[0]}_ratio"


def is_floor(key: str) -> bool:
    return split_unit(key)[0].endswith("_floor")


class Figures(dict[str, float]):
    """A flat ``{key: value}`` of one run (units in the keys: :func:`unit`)."""

    def add(self, key: str, value: float) -> None:
        self[key] = float(value)

    def compare(self, key: str, value: float, floor: float) -> None:
        """*key* = *value*, its floor and the ratio value / floor (nan when the floor is 0)."""
        self.add(key, value)
        self.add(floor_key(key), floor)
        self.add(ratio_key(key), value / floor if floor else math.nan)

    @property
    def units(self) -> dict[str, str]:
        return {key: unit(key) for key in self}


def unit(key: str) -> str:
    """The unit a key names: ``ms``, ``s``, ``/s``, ``x`` (a ratio) or ``""``."""
    return UNITS.get(split_unit(key)[1], "")


def _number(value: float, unit_text: str) -> str:
    if math.isnan(value):
        return "-"
    if unit_text == "x":
        return f"{value:.2f}x"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit_text}".rstrip()


def rows(figures: Mapping[str, float]) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, value, floor, ratio, target, met) per figure; floors and ratios join their row."""
    out = []
    for key, value in figures.items():
        if is_floor(key):
            continue
        stem, suffix = split_unit(key)
        if suffix == "_ratio" and any(
            split_unit(k)[0] == stem and k != key and not is_floor(k) for k in figures
        ):
            continue  # shown in its figure's row
        floor = figures.get(floor_key(key)) if suffix != "_ratio" else None
        ratio = figures.get(ratio_key(key)) if suffix != "_ratio" else None
        target_key = key if key in TARGETS else ratio_key(key)
        target = TARGETS.get(target_key)
        judged = figures.get(target_key)
        met = "" if target is None or judged is None else ("yes" if target.met(judged) else "NO")
        target_text = ""
        if target is not None:
            target_text = str(target) if target_key == key else f"ratio {target}"
        out.append((
            key,
            _number(value, unit(key)),
            "" if floor is None else _number(floor, unit(key)),
            "" if ratio is None else _number(ratio, "x"),
            target_text,
            met,
        ))  # fmt: skip
    return out


def render(figures: Mapping[str, float]) -> str:
    """The figures as a plain-text table (what ``agentchat bench`` prints)."""
    header = ("figure", "value", "floor", "ratio", "target", "met")
    table = [header, *rows(figures)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [
            cell.ljust(width) if i == 0 or i >= 4 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def as_json(figures: Mapping[str, float], **meta: object) -> str:
    """``{"figures": ..., "units": ..., "targets": {key: {"target", "met"}}, **meta}``; a nan
    (a ratio over a zero floor) is written as null."""
    targets = {
        key: {"target": str(target), "met": target.met(figures[key])}
        for key, target in TARGETS.items()
        if key in figures and not math.isnan(figures[key])
    }
    document = {
        **meta,
        "figures": {k: (None if math.isnan(v) else v) for k, v in figures.items()},
        "units": {k: unit(k) for k in figures},
        "targets": targets,
    }
    return json.dumps(document, indent=2)
