"""Every module imports first, on its own: no import cycle hides behind the order in which the
suite happens to import them (a cycle broke `agentchat demo` once, and no test saw it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

PROBE = """
import importlib, pkgutil, sys
import agentchat
names = ["agentchat"] + [m.name for m in pkgutil.walk_packages(agentchat.__path__, "agentchat.")]
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "agentchat" or m.startswith("agentchat.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first_on_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    count, *failed = done.stdout.splitlines()
    assert int(count) > 60
    assert [line for line in failed if line] == []
