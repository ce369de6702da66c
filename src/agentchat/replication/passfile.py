"""libpq password files (~/.pgpass format): where a replication role's password can live.

Each line is ``host:port:dbname:user:password``; ``:`` and ``\\`` inside a field are escaped
with a backslash. libpq ignores a file readable by group or others, so it is kept at 0600.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


def _prefix(host: str, port: str, dbname: str, role: str) -> str:
    host_field = "*" if not host or host.startswith("/") else host
    return ":".join(_escape(f) for f in (host_field, port, dbname, role)) + ":"


def remove_passfile_line(path: Path, host: str, port: str, dbname: str, role: str) -> None:
    """Remove the role's line again (the undo of :func:`write_passfile` on a new line)."""
    prefix = _prefix(host, port, dbname, role)
    with contextlib.suppress(FileNotFoundError):
        lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(prefix)]
        path.write_text("".join(f"{ln}\n" for ln in lines))


def write_passfile(path: Path, host: str, port: str, dbname: str, role: str, password: str) -> None:
    """Add (or replace) the role's line in a libpq password file, mode 0600."""
    prefix = _prefix(host, port, dbname, role)
    lines = []
    with contextlib.suppress(FileNotFoundError):
        lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(prefix)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("\n".join([*lines, prefix + _escape(password)]) + "\n")


def read_passfile(path: Path, role: str) -> str | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = re.split(r"(?<!\\):", line, maxsplit=4)
        if len(fields) == 5 and fields[3].replace("\\:", ":") == role:
            return fields[4].replace("\\:", ":").replace("\\\\", "\\")
    return None
