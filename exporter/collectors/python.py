"""The running interpreter's version, as a string and as prometheus_client's python_info labels.

Another environment's Python is read from its ``pyvenv.cfg`` through a
:class:`~exporter.filesystem.FileSystem`, so that a target's is read inside its root.
"""

from __future__ import annotations

import platform as _platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exporter.filesystem import HOST, FileSystem, read_regular

_VENV_DEPTH = 5  # <venv>/lib/pythonX.Y/site-packages is three levels down; allow a little more
MAX_PYVENV_CFG_BYTES = 64 * 1024  # a few hundred bytes in practice


@dataclass(frozen=True, slots=True)
class PythonInfo:
    """``sys.version`` without newlines, plus the parts that label ``python_info``."""

    version_string: str
    implementation: str
    major: str
    minor: str
    patchlevel: str
    version: str

    def labels(self) -> dict[str, str]:
        """The ``python_info`` label set."""
        return {
            "implementation": self.implementation,
            "major": self.major,
            "minor": self.minor,
            "patchlevel": self.patchlevel,
            "version": self.version,
        }


def collect_python(
    *,
    sys_version: str = sys.version,
    implementation: str | None = None,
    version: str | None = None,
) -> PythonInfo:
    """Describe an interpreter; by default this one. ``version`` is ``X.Y.Z``."""
    version = version or _platform.python_version()
    major, minor, patchlevel = [*version.split("."), "0", "0"][:3]
    return PythonInfo(
        version_string=sys_version.replace("\n", ""),
        implementation=implementation or _platform.python_implementation(),
        major=major,
        minor=minor,
        patchlevel=patchlevel,
        version=version,
    )


def find_environment_config(paths: Sequence[str], *, fs: FileSystem = HOST) -> Path | None:
    """The ``pyvenv.cfg`` of the one virtual environment every path lies in, else None.

    Each path and its parents are looked at through ``fs``; the result is a path
    as the target sees it.
    """
    found = set()
    for path in paths:
        config = next(
            (
                p / "pyvenv.cfg"
                for p in [Path(path), *Path(path).parents][:_VENV_DEPTH]
                if fs.is_file(str(p / "pyvenv.cfg"))
            ),
            None,
        )
        if config is None:
            return None
        found.add(config)
    return found.pop() if len(found) == 1 else None


def collect_environment_python(pyvenv_cfg: Path, *, fs: FileSystem = HOST) -> PythonInfo | None:
    """Describe the Python of another virtual environment from its ``pyvenv.cfg``.

    Its interpreter is never run (a sidecar may not be able to): the version
    comes from ``version`` (venv, virtualenv) or ``version_info`` (uv), the
    implementation from ``implementation`` or the interpreter's path. None when
    the file names no version, or cannot be read through ``fs`` as a regular file
    (its first ``MAX_PYVENV_CFG_BYTES`` are read, in whole lines).
    """
    try:
        data = read_regular(fs, str(pyvenv_cfg), MAX_PYVENV_CFG_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_PYVENV_CFG_BYTES:
        data = data[: data.rfind(b"\n", 0, MAX_PYVENV_CFG_BYTES) + 1]  # no line cut in two
    text = data.decode("utf-8", errors="replace")
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    raw = values.get("version") or values.get("version_info") or ""
    parts = [p for p in raw.split(".")[:3] if p.isdigit()]
    if len(parts) < 2:
        return None
    version = ".".join(parts)
    where = (values.get("executable", "") + values.get("home", "")).lower()
    implementation = values.get("implementation") or ("PyPy" if "pypy" in where else "CPython")
    return collect_python(
        sys_version=f"{version} ({implementation}, virtual environment {pyvenv_cfg.parent})",
        implementation=implementation,
        version=version,
    )
