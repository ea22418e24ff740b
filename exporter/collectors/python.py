"""The running interpreter's version, as a string and as prometheus_client's python_info labels."""

from __future__ import annotations

import platform as _platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_VENV_DEPTH = 5  # <venv>/lib/pythonX.Y/site-packages is three levels down; allow a little more


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


def find_environment_config(paths: Sequence[str]) -> Path | None:
    """The ``pyvenv.cfg`` of the one virtual environment every path lies in, else None."""
    found = set()
    for path in paths:
        config = next(
            (
                p / "pyvenv.cfg"
                for p in [Path(path), *Path(path).parents][:_VENV_DEPTH]
                if (p / "pyvenv.cfg").is_file()
            ),
            None,
        )
        if config is None:
            return None
        found.add(config)
    return found.pop() if len(found) == 1 else None


def collect_environment_python(pyvenv_cfg: Path) -> PythonInfo | None:
    """Describe the Python of another virtual environment from its ``pyvenv.cfg``.

    Its interpreter is never run (a sidecar may not be able to): the version
    comes from ``version`` (venv, virtualenv) or ``version_info`` (uv), the
    implementation from ``implementation`` or the interpreter's path. None when
    the file names no version.
    """
    try:
        text = pyvenv_cfg.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
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
