"""``agentchat bench``: agentchat's speed against floors measured in the same run.

Each benchmark is a module here with ``run(lab, quick, progress) -> Figures``: it builds what it
needs in the :class:`~agentchat.bench.lab.Lab` (embedded clusters, gone after the run), measures
the product and a bare floor doing only the necessary work, and returns figures named as
:mod:`agentchat.bench.report` says. ``quick`` keeps every figure with small sizes.

:data:`BENCHMARKS` maps each name to its ``run``; a module is imported only when it runs (the
embedding benchmarks load a model), and a name is listed only when its module is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable, Sequence

from agentchat import errors
from agentchat.bench.lab import Lab, Progress, quiet
from agentchat.bench.report import Figures

__all__ = ["BENCHMARKS", "Benchmark", "Figures", "Lab", "Progress", "quiet", "run"]

#: ``run(lab, quick, progress)`` of one benchmark
Benchmark = Callable[[Lab, bool, Progress], Figures]

#: the benchmarks in the order they run (``--only`` picks some)
ORDER = ("delivery", "throughput", "catchup", "fanout", "embeddings", "search")


def _lazy(name: str) -> Benchmark:
    def run_module(lab: Lab, quick: bool, progress: Progress) -> Figures:
        module = importlib.import_module(f"{__name__}.{name}")
        figures = module.run(lab, quick, progress)
        assert isinstance(figures, Figures)
        return figures

    run_module.__name__ = f"run_{name}"
    return run_module


#: name -> ``run(lab, quick, progress)``, for each benchmark module present
BENCHMARKS: dict[str, Benchmark] = {
    name: _lazy(name) for name in ORDER if importlib.util.find_spec(f"{__name__}.{name}")
}


def run(
    names: Sequence[str] = (),
    quick: bool = False,
    progress: Progress = quiet,
    *,
    version: int | None = None,
) -> Figures:
    """Run the benchmarks *names* (all when empty) in one lab; their figures together. Each
    runs in a scope of the lab: its databases are dropped before the next one starts."""
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise errors.InvalidInput(
            f"unknown benchmark {', '.join(unknown)}", fix=f"choose from {', '.join(BENCHMARKS)}"
        )
    chosen = [n for n in BENCHMARKS if not names or n in names]
    figures = Figures()
    with Lab(**({"version": version} if version else {}), progress=progress) as lab:
        for name in chosen:
            progress(f"{name}: starting")
            start = time.perf_counter()
            with lab.scope():
                figures.update(BENCHMARKS[name](lab, quick, progress))
            progress(f"{name}: done in {time.perf_counter() - start:.1f} s")
    return figures
