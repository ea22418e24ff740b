"""The platform facts of ``platform.uname()``, as the original status API reported them."""

from __future__ import annotations

import platform as _platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """The six ``uname`` fields, in the original API's order."""

    system: str
    node: str
    release: str
    version: str
    machine: str
    processor: str

    def as_dict(self) -> dict[str, str]:
        """The fields as an ordered dict, for JSON and labels."""
        return {
            "system": self.system,
            "node": self.node,
            "release": self.release,
            "version": self.version,
            "machine": self.machine,
            "processor": self.processor,
        }


def collect_platform(uname: Callable[[], Any] = _platform.uname) -> PlatformInfo:
    """Return the platform facts; ``uname`` is injectable and returns a uname_result-like object."""
    u = uname()
    return PlatformInfo(
        system=str(u.system),
        node=str(u.node),
        release=str(u.release),
        version=str(u.version),
        machine=str(u.machine),
        processor=str(u.processor),
    )
