"""History without waiting for it: one scrape of each daemon, repeated into the past as
Prometheus TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``.

Every backfilled sample is the value the daemon served in that one scrape (counters flat,
gauges constant), at the scrape interval, labelled with the job and instance Prometheus gives
the live series, so that the history and the live head join into one series each.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path


def with_target_labels(line: str, job: str, instance: str) -> tuple[str, str]:
    """A text-format sample line as (series with job and instance, value)."""
    series, _, value = line.rpartition(" ")
    added = f'job="{job}",instance="{instance}"'
    if series.endswith("}"):
        name, _, labels = series.partition("{")
        series = f"{name}{{{added},{labels}" if labels != "}" else f"{name}{{{added}}}"
    else:
        series = f"{series}{{{added}}}"
    return series, value


def samples(exposition: str, job: str, instance: str) -> list[str]:
    """The series and value of every sample of a text-format exposition, plus ``up``."""
    lines = [
        " ".join(with_target_labels(line, job, instance))
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    ]
    lines.append(f'up{{job="{job}",instance="{instance}"}} 1')
    return lines


def write_openmetrics(path: Path, series: list[str], timestamps: Iterable[float]) -> int:
    """Write every series at every timestamp, time-major (each series' samples in order);
    return the number of samples written."""
    written = 0
    with path.open("w") as out:
        for ts in timestamps:
            suffix = f" {ts:.3f}\n"
            out.write(suffix.join(series) + suffix)
            written += len(series)
        out.write("# EOF\n")
    return written


def create_blocks(promtool: str, openmetrics: Path, data: Path, timeout: float = 1200) -> None:
    """Turn ``openmetrics`` into TSDB blocks in ``data`` (Prometheus's data directory)."""
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
