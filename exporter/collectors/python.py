"""The running interpreter's version, as a string and as prometheus_client's python_info labels."""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass


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
    major, minor, patchlevel = [*version.split("."), "", "", ""][:3]
    return PythonInfo(
        version_string=sys_version.replace("\n", ""),
        implementation=implementation or _platform.python_implementation(),
        major=major,
        minor=minor,
        patchlevel=patchlevel,
        version=version,
    )
