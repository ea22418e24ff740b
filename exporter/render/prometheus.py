"""Prometheus exposition of a snapshot: text 0.0.4 and OpenMetrics 1.0.0, plain and gzip.

The only module that imports prometheus_client. The snapshot's series are
rendered once per refresh. The process and GC metrics change on every scrape;
they are rendered at most once per ``PROCESS_MAX_AGE_SECONDS`` and appended to
the cached body, before the OpenMetrics ``# EOF``. Their gzip form is spliced
onto the cached compressed body (deflate blocks after a sync flush, with a
combined CRC), so a scrape never recompresses the large part.
"""

from __future__ import annotations

import datetime
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import Collector

from exporter.advisories.matching import count_by_severity, vulnerable_modules
from exporter.host import Host
from exporter.refresh import CHANGE_KINDS, RefreshStats
from exporter.render.exposition import FamilyCache, write_families
from exporter.render.module_sets import Fingerprints, fingerprints, info_count, info_modules
from exporter.snapshot import Snapshot

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROCESS_MAX_AGE_SECONDS = 1.0
_OM_EOF = b"# EOF\n"
_GZIP_LEVEL = 6
# magic, deflate, no flags, mtime 0, no extra flags, OS unknown (RFC 1952)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# prometheus_client leaves this one function without annotations.
_generate_openmetrics: Callable[[CollectorRegistry], bytes] = openmetrics_format.generate_latest


class FactsCollector(Collector):
    """The application's facts from one snapshot, as new metric families on every ``collect()``.

    Sample exposition::

        build_info{api_version="1",commit="178d2ea",version="2.3.0"} 1.0
        platform_info{machine="x86_64",node="web-1",processor="",release="6.1.0",...} 1.0
        module_info{module="django",version="4.2.1"} 1.0
    """

    def __init__(
        self, snapshot: Snapshot, *, with_modules: bool = True, with_python: bool = True
    ) -> None:
        self._snapshot = snapshot
        self._with_modules = with_modules
        self._with_python = with_python

    def collect(self) -> Iterable[Metric]:
        """build, python, platform and (unless left out) module info families."""
        s = self._snapshot
        every = every_text(s)
        yield InfoMetricFamily(
            "build",
            "The monitored application's API version, commit and version. " + every,
            value={
                "api_version": str(s.api_version),
                "commit": s.commit.value,
                "version": s.app_version,
            },
        )
        if self._with_python:
            yield InfoMetricFamily(
                "python",
                "The Python implementation and version of the environment.",
                value=s.python.labels(),
            )
        yield InfoMetricFamily(
            "platform",
            "The platform.uname() fields of the host. " + every,
            value=s.published_platform.as_dict(),
        )
        if s.python_end_of_life is not None:
            end_of_life = GaugeMetricFamily(
                "python_end_of_life_timestamp_seconds",
                "When this Python's minor version stops getting security fixes (Unix time).",
                labels=("version",),
            )
            end_of_life.add_metric(
                (f"{s.python.major}.{s.python.minor}",), unix_day(s.python_end_of_life)
            )
            yield end_of_life
        findings = s.published_vulnerabilities("metrics")
        if findings is not None:
            vulnerable = InfoMetricFamily(
                "module_vulnerability",
                "One series per installed module and known vulnerability; fixed is the lowest "
                "fixed version above the installed one. " + every,
                labels=("module", "version", "id", "aliases", "severity", "fixed"),
            )
            for f in findings:
                vulnerable.add_metric(
                    (f.module, f.version, f.id, ",".join(f.aliases), f.severity, f.fixed), {}
                )
            yield vulnerable
            fixes = InfoMetricFamily(
                "module_fix",
                "One series per module with known vulnerabilities; fixed is the lowest version "
                "that fixes all of them (empty when none is known), severity the worst. " + every,
                labels=("module", "version", "fixed", "severity"),
            )
            for m in vulnerable_modules(findings):
                fixes.add_metric((m.module, m.version, m.fixed, m.severity), {})
            yield fixes
        if not self._with_modules:
            return
        modules = InfoMetricFamily("module", MODULE_HELP + every, labels=("module", "version"))
        for name, version in info_modules(s, s.module_publish).items():
            modules.add_metric((name, version), {})
        yield modules


MODULE_HELP = "One series per installed module and its version. "
MODULE_SET_HELP = (
    "One series per environment: the fingerprint of its module set, the first 16 hex digits "
    "of the SHA-256 of its name==version lines (sorted, one per module, each ending in a "
    "newline), published whatever modules.publish leaves out of module_info. "
)


class ModuleSetCollector(Collector):
    """``target_modules_info``: one series per environment, the fingerprint of its modules.

    Equal module sets have equal fingerprints on any host and after any restart, so
    replicas that drifted apart show at one series each. Sample exposition::

        target_modules_info{fingerprint="6a0b0c5e23d1f4a9"} 1.0
        target_modules_info{fingerprint="6a0b0c5e23d1f4a9",target="web"} 1.0
    """

    def __init__(self, prints: Fingerprints, every: str, *, labelled: bool) -> None:
        self._prints = prints
        self._every = every
        self._labelled = labelled  # with targets: the names of ``prints`` are target labels

    def collect(self) -> Iterable[Metric]:
        """The target_modules_info family."""
        labels = ("target", "fingerprint") if self._labelled else ("fingerprint",)
        family = InfoMetricFamily("target_modules", MODULE_SET_HELP + self._every, labels=labels)
        for name, (_, fingerprint) in self._prints.items():
            family.add_metric((name, fingerprint) if self._labelled else (fingerprint,), {})
        yield family


def unix_day(day: datetime.date) -> float:
    """Midnight UTC at the start of ``day``."""
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC).timestamp()


def every_text(snapshot: Snapshot) -> str:
    """The help text's note of how often the facts are refreshed."""
    return f"Refreshed every {snapshot.refresh_interval_seconds:g} seconds."


def render_module_info(snapshot: Snapshot, *, openmetrics: bool) -> bytes:
    """The module_info family, written directly: byte for byte what prometheus_client writes.

    prometheus_client validates every label on every sample, which makes a
    thousand series cost milliseconds; this family's label names are fixed, so
    only the values need escaping.
    """
    name, kind = ("module", "info") if openmetrics else ("module_info", "gauge")
    documentation = MODULE_HELP + every_text(snapshot)
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        help_text = help_text.replace('"', r"\"")
    lines = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"]
    lines.extend(
        f'module_info{{module="{escape_label(module)}",version="{escape_label(version)}"}} 1.0\n'
        for module, version in info_modules(snapshot, snapshot.module_publish).items()
    )
    return "".join(lines).encode("utf-8")


def escape_label(value: str) -> str:
    """A label value escaped for the exposition formats (backslash, newline, quote)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class HealthCollector(Collector):
    """The exporter's own health after a refresh.

    Sample exposition::

        status_exporter_refresh_duration_seconds 0.0084
        status_exporter_module_changes_total{change="upgraded"} 2.0
    """

    def __init__(
        self, snapshot: Snapshot, stats: RefreshStats, *, with_environment: bool = True
    ) -> None:
        self._snapshot = snapshot
        self._stats = stats
        # False for a host with targets: they publish their own module and finding counts.
        self._with_environment = with_environment

    def collect(self) -> Iterable[Metric]:
        """The status_exporter_* families."""
        s, stats = self._snapshot, self._stats
        yield InfoMetricFamily(
            "status_exporter_build",
            "The version of status-exporter itself.",
            value={"version": s.identity.exporter_version},
        )
        yield GaugeMetricFamily(
            "status_exporter_refresh_duration_seconds",
            "How long the latest refresh took to gather the facts.",
            value=stats.last_duration_seconds,
        )
        yield GaugeMetricFamily(
            "status_exporter_last_refresh_timestamp_seconds",
            "Unix time of the latest successful refresh.",
            value=stats.last_success_timestamp or 0.0,
        )
        yield GaugeMetricFamily(
            "status_exporter_refresh_interval_seconds",
            "The configured time between refreshes.",
            value=s.refresh_interval_seconds,
        )
        yield CounterMetricFamily(
            "status_exporter_refreshes", "Refreshes attempted.", value=stats.refreshes
        )
        yield CounterMetricFamily(
            "status_exporter_refresh_errors",
            "Refreshes that failed; the last good snapshot stays published.",
            value=stats.errors,
        )
        if self._with_environment:
            yield GaugeMetricFamily(
                "status_exporter_modules",
                "Modules published in module_info.",
                # what modules.publish selects; a redacted list keeps its count
                value=info_count(s, s.module_publish, redacted=False),
            )
            yield GaugeMetricFamily(
                "status_exporter_modules_dropped",
                "Modules left out because there were more than modules.max.",
                value=s.modules_dropped,
            )
            yield GaugeMetricFamily(
                "status_exporter_modules_found",
                MODULES_FOUND_HELP,
                value=len(s.modules),
            )
        yield GaugeMetricFamily(
            "status_exporter_config_last_reload_successful",
            "Whether the last configuration reload (SIGHUP) succeeded.",
            value=1.0 if stats.config_reload_successful else 0.0,
        )
        yield GaugeMetricFamily(
            "status_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=stats.config_reload_success_timestamp,
        )
        if self._with_environment:
            yield GaugeMetricFamily(
                "status_exporter_modules_skipped",
                "Distributions whose metadata could not be read in the latest refresh.",
                value=len(s.skipped),
            )
        yield from _advisory_health(s, with_counts=self._with_environment)
        changes = CounterMetricFamily(
            "status_exporter_module_changes",
            "Module changes seen between refreshes, by kind.",
            labels=("change",),
        )
        for kind in CHANGE_KINDS:
            changes.add_metric((kind,), stats.changes.get(kind, 0))
        yield changes


MODULES_FOUND_HELP = (
    "Modules found (after modules.include, modules.exclude and modules.max), whether or not "
    "modules.publish gives them a module_info series; target_modules_info fingerprints them."
)


def _advisory_health(s: Snapshot, *, with_counts: bool = True) -> Iterable[Metric]:
    """The advisory database's families; none when no database is configured.

    While no database has loaded, the counts by severity are left out (not checked is
    not zero) and ``status_exporter_advisories_loaded`` is 0.
    """
    if not s.advisory_paths:
        return
    db = s.advisories
    if with_counts and s.vulnerabilities is not None:
        by_severity = GaugeMetricFamily(
            "status_exporter_vulnerabilities",
            "Known vulnerabilities of the installed modules, by severity.",
            labels=("severity",),
        )
        for severity, count in count_by_severity(s.vulnerabilities).items():
            by_severity.add_metric((severity,), count)
        yield by_severity
    yield GaugeMetricFamily(
        "status_exporter_advisories_loaded",
        "1 when an advisory database is in force, 0 while none could be loaded (nothing "
        "is checked then).",
        value=1 if db.loaded else 0,
    )
    yield GaugeMetricFamily(
        "status_exporter_advisories", "Advisories in the loaded database.", value=db.advisories
    )
    yield GaugeMetricFamily(
        "status_exporter_advisories_skipped",
        "Advisory records skipped as unusable in the last successful load.",
        value=db.skipped,
    )
    yield CounterMetricFamily(
        "status_exporter_advisories_load_errors",
        "Loads of the advisory database that failed; the previous one stays in force.",
        value=db.load_errors,
    )
    yield GaugeMetricFamily(
        "status_exporter_advisories_load_timestamp_seconds",
        "Unix time of the last successful load of the advisory database (0: never).",
        value=db.loaded_at or 0.0,
    )
    yield GaugeMetricFamily(
        "status_exporter_advisories_newest_timestamp_seconds",
        "The newest 'modified' time among the loaded advisories: how fresh the data is.",
        value=db.newest_modified or 0.0,
    )


@dataclass(frozen=True, slots=True)
class Fragment:
    """One exposition in both formats (the OpenMetrics one without its ``# EOF``)."""

    text: bytes
    openmetrics: bytes

    def select(self, openmetrics: bool) -> bytes:
        """The text or OpenMetrics form."""
        return self.openmetrics if openmetrics else self.text


def _registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _render(registry: CollectorRegistry) -> Fragment:
    openmetrics = _generate_openmetrics(registry)
    assert openmetrics.endswith(_OM_EOF)
    return Fragment(text_format.generate_latest(registry), openmetrics[: -len(_OM_EOF)])


class ProcessMetrics:
    """The exporter process's own metrics, re-rendered at most once per ``max_age`` seconds."""

    def __init__(
        self,
        *,
        max_age: float = PROCESS_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = -float("inf")
        self._current = Fragment(b"", b"")

    def current(self) -> Fragment:
        """The latest rendering, refreshed first if older than ``max_age``."""
        now = self._clock()
        if now - self._stamp >= self._max_age:
            with self._lock:
                if now - self._stamp >= self._max_age:
                    self._current = _render(self._registry)
                    self._stamp = now
        return self._current


@dataclass(frozen=True, slots=True)
class _RenderedFacts:
    """The facts exposition of a host, plain and as gzip heads, reusable while facts hold."""

    facts: tuple[Any, ...]
    plain: Fragment
    gzip_heads: dict[bool, _GzipHead]
    module_lines: dict[bool, Any]  # with targets: each target's module_info lines
    fingerprints: Fingerprints  # each environment's, kept with the modules they are of

    @classmethod
    def of(cls, host: Host, previous: _RenderedFacts | None) -> _RenderedFacts:
        earlier = previous.fingerprints if previous else {}
        if host.has_targets:
            plain, lines = _target_facts(host, previous.module_lines if previous else {})
            prints = fingerprints(
                ((t.name, t.snapshot) for t in host.targets if t.snapshot is not None), earlier
            )
        else:
            snapshot = host.own
            small = _render(_registry_of(FactsCollector(snapshot, with_modules=False)))
            plain = Fragment(
                small.text + render_module_info(snapshot, openmetrics=False),
                small.openmetrics + render_module_info(snapshot, openmetrics=True),
            )
            lines = {}
            prints = fingerprints([("", snapshot)], earlier)
        # After module_info: an addition that leaves the bytes before it as they were.
        module_sets = ModuleSetCollector(prints, every_text(host.own), labelled=host.has_targets)
        tail = _render(_registry_of(module_sets))
        plain = Fragment(plain.text + tail.text, plain.openmetrics + tail.openmetrics)
        heads = {om: _GzipHead.of(plain.select(om)) for om in (False, True)}
        return cls(host.facts(), plain, heads, lines, prints)


def _target_facts(host: Host, previous: dict[bool, Any]) -> tuple[Fragment, dict[bool, Any]]:
    from exporter.render.target_metrics import (  # only a host with targets needs it
        TargetFactsCollector,
        module_allowance,
        render_target_module_info,
    )

    allowance = module_allowance(host, host.max_module_series)
    small = _render(_registry_of(TargetFactsCollector(host)))
    text, text_lines = render_target_module_info(
        host, allowance, previous.get(False, {}), openmetrics=False
    )
    om, om_lines = render_target_module_info(
        host, allowance, previous.get(True, {}), openmetrics=True
    )
    return Fragment(small.text + text, small.openmetrics + om), {False: text_lines, True: om_lines}


def _health(
    host: Host, stats: RefreshStats, previous: FamilyCache | None
) -> tuple[Fragment, FamilyCache | None]:
    """The health block: the exporter's own, and with targets each target's; written
    directly (the families whose samples did not change reused from ``previous``), or by
    prometheus_client when the writer does not handle a family."""
    collectors: list[Collector] = [
        HealthCollector(host.own, stats, with_environment=not host.has_targets)
    ]
    if host.has_targets:
        from exporter.render.target_metrics import TargetHealthCollector, module_allowance

        allowance = module_allowance(host, host.max_module_series)
        collectors.append(TargetHealthCollector(host, allowance))
    written = write_families((f for c in collectors for f in c.collect()), previous)
    if written is not None:
        text, openmetrics, families = written
        return Fragment(text, openmetrics), families
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return _render(registry), None


class MetricsPages:
    """The ``/metrics`` bodies of one host in every format: facts, health, process part.

    The facts (which grow with the module count) are rendered again only when
    they differ from ``previous``'s; the health block is built every time, its
    families written again only where their samples changed.
    """

    __slots__ = ("_assembled", "_facts", "_health", "_health_families")
    _facts: _RenderedFacts
    _health: Fragment
    _health_families: FamilyCache | None
    _assembled: dict[tuple[bool, bool], tuple[Fragment, bytes]]

    def __init__(
        self,
        host: Host | Snapshot,
        stats: RefreshStats,
        previous: MetricsPages | None = None,
    ) -> None:
        host = host if isinstance(host, Host) else Host.of(host)
        earlier = previous._facts if previous is not None else None
        if earlier is not None and earlier.facts == host.facts():
            self._facts = earlier
        else:
            self._facts = _RenderedFacts.of(host, earlier)
        self._health, self._health_families = _health(
            host, stats, previous._health_families if previous is not None else None
        )
        self._assembled = {}

    @property
    def facts_rendering(self) -> Fragment:
        """The facts exposition: the very object of ``previous`` when the facts were reused."""
        return self._facts.plain

    @property
    def module_fingerprints(self) -> Fingerprints:
        """Each environment's ``(modules, fingerprint)`` ("" for the exporter's own, else by
        target): the very pair of ``previous`` while the modules are the same mapping."""
        return self._facts.fingerprints

    def body(self, dynamic: Fragment, variant: tuple[bool, bool]) -> bytes:
        """The full body for ``variant`` (openmetrics, gzip), with ``dynamic`` appended."""
        cached = self._assembled.get(variant)
        if cached is not None and cached[0] is dynamic:
            return cached[1]
        openmetrics, gzip = variant
        tail = b"".join(
            (
                self._health.select(openmetrics),
                dynamic.select(openmetrics),
                _OM_EOF if openmetrics else b"",
            )
        )
        if gzip:
            body = self._facts.gzip_heads[openmetrics].finish(tail)
        else:
            body = self._facts.plain.select(openmetrics) + tail
        self._assembled[variant] = (dynamic, body)
        return body


@dataclass(frozen=True, slots=True)
class _GzipHead:
    """A gzip member's header and deflate blocks ending in a sync flush, awaiting a tail."""

    compressed: bytes
    crc: int
    size: int

    @classmethod
    def of(cls, data: bytes) -> _GzipHead:
        deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        compressed = _GZIP_HEADER + deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
        return cls(compressed, zlib.crc32(data), len(data))

    def finish(self, tail: bytes) -> bytes:
        deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        blocks = deflate.compress(tail) + deflate.flush(zlib.Z_FINISH)
        trailer = struct.pack(
            "<II", zlib.crc32(tail, self.crc), (self.size + len(tail)) & 0xFFFFFFFF
        )
        return self.compressed + blocks + trailer
