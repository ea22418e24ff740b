"""Metric families written out directly, byte for byte as prometheus_client writes them.

prometheus_client's writers escape every label name character by character and check
every name on every sample: the health block of 50 targets (a few hundred samples) took
about 4 ms a refresh there. This writer handles the families the health block uses
(gauges, counters and infos of plain names, without units, timestamps or exemplars) and
reuses a family's lines while its samples are equal to the previous rendering's; a family
it does not handle makes :func:`write_families` return None, and the caller renders with
prometheus_client instead. tests/test_exposition.py compares both on every family kind.

It reads the families duck-typed (``name``, ``type``, ``documentation``, ``unit``,
``samples`` of ``name``, ``labels``, ``value``, ``timestamp``, ``exemplar``,
``native_histogram``), so that render/prometheus.py stays the only importer of
prometheus_client.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

# Names both writers leave as they are: valid as metric names and as label names (the
# OpenMetrics writer escapes sample names with the label-name rule, which has no ':').
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INF = float("inf")


class Written(NamedTuple):
    """One family as written: what it was written from, and its lines in both formats."""

    kind: str
    documentation: str
    samples: list[Any]
    text: str
    openmetrics: str


FamilyCache = Mapping[str, Written]


def write_families(
    families: Iterable[Any], previous: FamilyCache | None = None
) -> tuple[bytes, bytes, dict[str, Written]] | None:
    """The text 0.0.4 and OpenMetrics 1.0.0 exposition of ``families`` (the latter without
    ``# EOF``), and what to pass as ``previous`` next time; None when a family needs
    something this writer does not do."""
    previous = previous or {}
    written: dict[str, Written] = {}
    text: list[str] = []
    openmetrics: list[str] = []
    for family in families:
        name, kind, documentation = family.name, family.type, family.documentation
        samples = family.samples
        old = previous.get(name)
        if (
            old is not None
            and old.kind == kind
            and old.documentation == documentation
            and old.samples == samples
        ):
            done = old
        else:
            lines = _family(name, kind, documentation, family.unit, samples)
            if lines is None:
                return None
            done = Written(kind, documentation, samples, *lines)
        if name in written:
            return None  # two families of one name: leave it to prometheus_client
        written[name] = done
        text.append(done.text)
        openmetrics.append(done.openmetrics)
    return "".join(text).encode("utf-8"), "".join(openmetrics).encode("utf-8"), written


def _family(
    name: str, kind: str, documentation: str, unit: str, samples: list[Any]
) -> tuple[str, str] | None:
    if unit or not _PLAIN_NAME.fullmatch(name):
        return None
    if kind == "gauge":
        text_name, text_kind = name, "gauge"
    elif kind == "counter":
        text_name, text_kind = f"{name}_total", "counter"
    elif kind == "info":
        text_name, text_kind = f"{name}_info", "gauge"
    else:
        return None
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    help_om = help_text.replace('"', r"\"")
    lines = []
    for sample in samples:
        line = _sample(name, sample)
        if line is None:
            return None
        lines.append(line)
    body = "".join(lines)
    return (
        f"# HELP {text_name} {help_text}\n# TYPE {text_name} {text_kind}\n{body}",
        f"# HELP {name} {help_om}\n# TYPE {name} {kind}\n{body}",
    )


def _sample(family: str, sample: Any) -> str | None:
    """One sample's line, the same in both formats for what this writer handles."""
    name = sample.name
    if (
        sample.timestamp is not None
        or sample.exemplar is not None
        or sample.native_histogram is not None
        or sample.value is None
        or not _PLAIN_NAME.fullmatch(name)
        or name in (f"{family}_created", f"{family}_gsum", f"{family}_gcount")
    ):
        return None  # the text writer moves these to families of their own
    labels = sample.labels
    if not labels:
        return f"{name} {go_float(sample.value)}\n"
    pairs = []
    for key, value in sorted(labels.items()):
        if not _PLAIN_NAME.fullmatch(key):
            return None
        if "\\" in value or '"' in value or "\n" in value:
            value = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        pairs.append(f'{key}="{value}"')
    return f"{name}{{{','.join(pairs)}}} {go_float(sample.value)}\n"


def go_float(number: float) -> str:
    """A sample value as prometheus_client writes it (its ``floatToGoString``)."""
    d = float(number)
    if d == _INF:
        return "+Inf"
    if d == -_INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
