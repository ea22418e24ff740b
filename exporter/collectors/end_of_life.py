"""When a CPython minor version stops getting security fixes.

From the release-schedule PEPs (the devguide's "Status of Python versions"
gathers them). A PEP that names only a month is read as that month's last
day, as the devguide does once the date is final. Vendors that support a
Python longer (distributions, paid builds) set ``python.end_of_life`` in
config.yaml, which wins over this table.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from exporter.collectors.python import PythonInfo

# minor version: (end of life, source)
CPYTHON_END_OF_LIFE: Mapping[str, tuple[str, str]] = {
    "2.7": ("2020-04-20", "PEP 373"),
    "3.5": ("2020-09-30", "PEP 478"),
    "3.6": ("2021-12-23", "PEP 494"),
    "3.7": ("2023-06-27", "PEP 537"),
    "3.8": ("2024-10-07", "PEP 569"),
    "3.9": ("2025-10-31", "PEP 596"),
    "3.10": ("2026-10-31", "PEP 619"),
    "3.11": ("2027-10-31", "PEP 664"),
    "3.12": ("2028-10-31", "PEP 693"),
    "3.13": ("2029-10-31", "PEP 719"),
    "3.14": ("2030-10-31", "PEP 745"),
    "3.15": ("2031-10-31", "PEP 790"),
}


def python_end_of_life(
    python: PythonInfo, overrides: Mapping[str, object] | None = None
) -> datetime.date | None:
    """The end-of-life date of ``python``'s minor version; None when unknown.

    ``overrides`` (``python.end_of_life``) applies to any implementation; the
    shipped table only to CPython, whose schedule it is.
    """
    minor = f"{python.major}.{python.minor}"
    if overrides and minor in overrides:
        day = overrides[minor]  # validated by the config loader: a date or its ISO text
        return day if isinstance(day, datetime.date) else datetime.date.fromisoformat(str(day))
    if python.implementation != "CPython" or minor not in CPYTHON_END_OF_LIFE:
        return None
    return datetime.date.fromisoformat(CPYTHON_END_OF_LIFE[minor][0])
