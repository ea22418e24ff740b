"""The exposition of a host with targets: every per-target series labelled ``target``.

Used only when ``targets`` are configured; a host without targets renders as a
single environment (``exporter.render.prometheus``), byte for byte as before.
The host's own facts (``platform_info``, the refresh and advisory health) appear
once, without a ``target`` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.advisories.matching import count_by_severity, vulnerable_modules
from exporter.host import Host, Target
from exporter.render.module_sets import info_count, info_modules, publish_mode
from exporter.render.prometheus import (
    MODULE_HELP,
    MODULES_FOUND_HELP,
    escape_label,
    every_text,
    unix_day,
)
from exporter.snapshot import Snapshot

# Restart causes published per target and family: the JSON lists them all.
MAX_CAUSES = 50

# A target's module_info sample lines, kept while its modules and findings are the same
# objects (under modules.publish: vulnerable the findings choose the lines).
ModuleLines = dict[str, tuple[Mapping[str, str], object, bytes]]


def _read(host: Host) -> list[tuple[Target, Snapshot]]:
    """The targets with facts (a target never read has none yet), in configured order."""
    return [(t, t.snapshot) for t in host.targets if t.snapshot is not None]


def module_allowance(host: Host, cap: int) -> dict[str, int]:
    """How many module series each target may publish under the overall ``cap``: all that
    its modules.publish selects, in configured order, until the cap is reached.

    The latest answer is kept with what it was computed from (the cap and what
    :func:`_identities` gives) and returned again while that is the same."""
    global _last_allowance
    held, key = _identities(host)
    key = (cap, *key)
    cached = _last_allowance
    if cached is not None and cached[1] == key:
        _last_allowance = (cached[0], cached[1], cached[2], host.targets)
        return cached[2]
    left = cap
    allowed: dict[str, int] = {}
    for target, snapshot in _read(host):
        count = info_count(snapshot, publish_mode(target, snapshot))
        allowed[target.name] = min(count, left)
        left -= allowed[target.name]
    _last_allowance = (held, key, allowed, host.targets)
    return allowed


# The latest answers, with the objects they were made from (held, so that their ids, in
# the keys, stay theirs). The allowance is kept with the targets it was last given for:
# the health block, made with it for the same targets, need not compute its key again.
_last_allowance: (
    tuple[list[object], tuple[object, ...], dict[str, int], tuple[Target, ...]] | None
) = None
_last_health: tuple[list[object], tuple[object, ...], list[Metric]] | None = None


def _identities(host: Host) -> tuple[list[object], tuple[object, ...]]:
    """What the module counts of the targets are computed from: each target's name and
    modules.publish, and its snapshot's modules, findings and redaction (the very objects:
    an unchanged target keeps them from refresh to refresh, while a snapshot and a spec are
    made again) and plain values; with the objects held, so that their ids stay theirs
    while the key is kept."""
    held: list[object] = []
    key: list[object] = []
    for target in host.targets:
        s = target.snapshot
        key.append(target.spec.name)
        if s is None:
            key.append(None)
            continue
        held += (s.modules, s.vulnerabilities, s.redaction)
        key.append(target.spec.publish)
        key.append(s.module_publish)
        key.append(s.modules_dropped)
        key.append(len(s.skipped))
    key += map(id, held)
    return held, tuple(key)


class TargetFactsCollector(Collector):
    """The facts of every target, and the host's platform once.

    Sample exposition::

        target_info{kind="environment",path="/srv/web/.venv",target="web"} 1.0
        build_info{api_version="1",commit="178d2ea",target="web",version="2.3.0"} 1.0
        python_info{implementation="CPython",major="3",...,target="web",version="3.11.7"} 1.0
    """

    def __init__(self, host: Host) -> None:
        self._host = host

    def collect(self) -> Iterable[Metric]:
        """target, build, python, platform, end of life and vulnerability families."""
        host, read = self._host, _read(self._host)
        every = every_text(host.own)
        targets = InfoMetricFamily(
            "target",
            "One series per target: where its facts come from. " + every,
            labels=("target", "kind", "path"),
        )
        for target in host.targets:
            # A discovered target's identity labels (unit, container_id, pod...) where known.
            targets.add_metric(
                (target.name, target.spec.kind, ",".join(target.spec.paths)),
                dict(target.spec.labels),
            )
        yield targets
        yield from _process_families(read)
        build = InfoMetricFamily(
            "build",
            "Each target's API version, commit and application version. " + every,
            labels=("target", "api_version", "commit", "version"),
        )
        python = InfoMetricFamily(
            "python",
            "Each target's Python implementation and version.",
            labels=("target", "implementation", "major", "minor", "patchlevel", "version"),
        )
        end_of_life = GaugeMetricFamily(
            "python_end_of_life_timestamp_seconds",
            "When each target's Python minor version stops getting security fixes (Unix time).",
            labels=("target", "version"),
        )
        for target, s in read:
            build.add_metric((target.name, str(s.api_version), s.commit.value, s.app_version), {})
            p = s.python
            python.add_metric(
                (target.name, p.implementation, p.major, p.minor, p.patchlevel, p.version), {}
            )
            if s.python_end_of_life is not None:
                end_of_life.add_metric(
                    (target.name, f"{p.major}.{p.minor}"), unix_day(s.python_end_of_life)
                )
        yield build
        yield python
        yield InfoMetricFamily(
            "platform",
            "The platform.uname() fields of the host. " + every,
            value=host.own.published_platform.as_dict(),
        )
        if end_of_life.samples:
            yield end_of_life
        yield from self._vulnerabilities(read, every)

    def _vulnerabilities(self, read: list[tuple[Target, Snapshot]], every: str) -> Iterable[Metric]:
        if not self._host.own.advisory_paths:
            return
        vulnerable = InfoMetricFamily(
            "module_vulnerability",
            "One series per target, installed module and known vulnerability; fixed is the "
            "lowest fixed version above the installed one. " + every,
            labels=("target", "module", "version", "id", "aliases", "severity", "fixed"),
        )
        fixes = InfoMetricFamily(
            "module_fix",
            "One series per target and module with known vulnerabilities; fixed is the lowest "
            "version that fixes all of them (empty when none is known), severity the worst. "
            + every,
            labels=("target", "module", "version", "fixed", "severity"),
        )
        for target, s in read:
            findings = s.published_vulnerabilities("metrics")
            if findings is None:
                continue
            for f in findings:
                vulnerable.add_metric(
                    (
                        target.name,
                        f.module,
                        f.version,
                        f.id,
                        ",".join(f.aliases),
                        f.severity,
                        f.fixed,
                    ),
                    _loaded_label(s, f.module),
                )
            for m in vulnerable_modules(findings):
                fixes.add_metric((target.name, m.module, m.version, m.fixed, m.severity), {})
        yield vulnerable
        yield fixes


def _loaded_label(snapshot: Snapshot, module: str) -> dict[str, str]:
    """``loaded="true"`` when a discovered target's processes map the module's native files,
    ``"unknown"`` otherwise (pure Python is not seen in maps); nothing for a configured
    environment, which has no processes to look at."""
    if snapshot.process is None:
        return {}
    return {"loaded": "true" if module in snapshot.process.loaded else "unknown"}


def _process_families(read: list[tuple[Target, Snapshot]]) -> Iterable[Metric]:
    """What discovered targets' processes add: their count, the oldest start, and whether
    (and why) they need a restart. Nothing when no target is a discovered one."""
    found = [(t, s, s.process) for t, s in read if s.process is not None]
    if not found:
        return
    processes = GaugeMetricFamily(
        "target_processes", "Running processes of each discovered target.", labels=("target",)
    )
    started = GaugeMetricFamily(
        "target_process_start_time_seconds",
        "When each discovered target's oldest process started (Unix time).",
        labels=("target",),
    )
    restart = GaugeMetricFamily(
        "target_restart_required",
        "1 when a discovered target's processes run code changed on disk since they "
        "started: distributions installed, upgraded or removed after the oldest process "
        "started, or mapped files deleted or replaced; else 0.",
        labels=("target",),
    )
    changed = InfoMetricFamily(
        "target_changed_module",
        "Distributions installed, upgraded or removed after a discovered target's oldest "
        f"process started (at most {MAX_CAUSES} per target); version is the one on disk.",
        labels=("target", "module", "version", "change"),
    )
    stale = InfoMetricFamily(
        "target_stale_file",
        "Files a discovered target's processes map that were deleted or replaced on disk "
        f"(at most {MAX_CAUSES} per target).",
        labels=("target", "path", "reason"),
    )
    for target, _, p in found:
        processes.add_metric((target.name,), p.processes)
        started.add_metric((target.name,), p.started_at)
        restart.add_metric((target.name,), 1 if p.restart_required else 0)
        for module, version, change in p.changed[:MAX_CAUSES]:
            changed.add_metric((target.name, module, version or "", change), {})
        for path, reason in p.stale[:MAX_CAUSES]:
            stale.add_metric((target.name, path, reason), {})
    yield from (processes, started, restart, changed, stale)


def render_target_module_info(
    host: Host, allowance: Mapping[str, int], previous: ModuleLines, *, openmetrics: bool
) -> tuple[bytes, ModuleLines]:
    """module_info over every target, written directly, of the modules each target's
    modules.publish selects; each target's lines are reused while its modules and findings
    are the very same objects (an unchanged target renders nothing)."""
    name, kind = ("module", "info") if openmetrics else ("module_info", "gauge")
    help_text = (MODULE_HELP + every_text(host.own)).replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        help_text = help_text.replace('"', r"\"")
    parts = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()]
    lines: ModuleLines = {}
    for target, s in _read(host):
        modules, findings = s.published_modules("metrics"), s.vulnerabilities
        mode = publish_mode(target, s)
        key = f"{target.name}\0{allowance.get(target.name, 0)}\0{mode}"
        cached = previous.get(key)
        if cached is not None and cached[0] is modules and cached[1] is findings:
            body = cached[2]
        else:
            label = escape_label(target.name)
            limit = allowance.get(target.name, 0)
            body = "".join(
                f'module_info{{module="{escape_label(module)}",target="{label}",'
                f'version="{escape_label(version)}"}} 1.0\n'
                for index, (module, version) in enumerate(info_modules(s, mode).items())
                if index < limit
            ).encode("utf-8")
        lines[key] = (modules, findings, body)
        parts.append(body)
    return b"".join(parts), lines


class TargetHealthCollector(Collector):
    """The per-target health families, and the target count.

    Sample exposition::

        status_exporter_targets 5.0
        status_exporter_modules{target="web"} 301.0
        status_exporter_target_errors_total{target="cron"} 2.0
    """

    def __init__(self, host: Host, allowance: Mapping[str, int]) -> None:
        self._host = host
        self._allowance = allowance

    def collect(self) -> Iterable[Metric]:
        """status_exporter_targets and the per-target module, skip, drop and error families.

        The latest families are kept with what they were made from (the allowance, what
        :func:`_identities` gives, each target's error count, the discovery's counts) and
        given again while those are the same: an unchanged refresh builds no samples."""
        global _last_health
        host = self._host
        d = host.discovery
        allowance = _last_allowance
        if (
            allowance is not None
            and allowance[2] is self._allowance
            and allowance[3] is host.targets
        ):
            held, ids = allowance[0], allowance[1]  # the very answer for these targets
        else:
            held, ids = _identities(host)
        key = (
            tuple(self._allowance.items()),
            None if d is None else (d.processes, d.python_processes, d.denied, d.gone),
            tuple([t.errors for t in host.targets]),
            ids,
        )
        cached = _last_health
        if cached is not None and cached[1] == key:
            return cached[2]
        families = list(self._families())
        _last_health = (held, key, families)
        return families

    def _families(self) -> Iterable[Metric]:
        host = self._host
        yield GaugeMetricFamily(
            "status_exporter_targets", "Targets configured or discovered.", value=len(host.targets)
        )
        if host.discovery is not None:
            yield from _discovery_health(host)
        modules = GaugeMetricFamily(
            "status_exporter_modules", "Modules published in module_info.", labels=("target",)
        )
        dropped = GaugeMetricFamily(
            "status_exporter_modules_dropped",
            "Modules left out because there were more than modules.max (per target) or "
            "targets.max_module_series (over all targets).",
            labels=("target",),
        )
        found = GaugeMetricFamily(
            "status_exporter_modules_found", MODULES_FOUND_HELP, labels=("target",)
        )
        skipped = GaugeMetricFamily(
            "status_exporter_modules_skipped",
            "Distributions whose metadata could not be read in the latest refresh.",
            labels=("target",),
        )
        errors = CounterMetricFamily(
            "status_exporter_target_errors",
            "Refreshes in which the target's paths could not be read; its last good facts "
            "stay published.",
            labels=("target",),
        )
        by_severity = GaugeMetricFamily(
            "status_exporter_vulnerabilities",
            "Known vulnerabilities of each target's modules, by severity.",
            labels=("target", "severity"),
        )
        for target in host.targets:
            errors.add_metric((target.name,), target.errors)
            s = target.snapshot
            if s is None:
                continue
            published = self._allowance.get(target.name, 0)
            over_cap = info_count(s, publish_mode(target, s)) - published
            modules.add_metric((target.name,), published)
            dropped.add_metric((target.name,), s.modules_dropped + over_cap)
            found.add_metric((target.name,), len(s.modules))
            skipped.add_metric((target.name,), len(s.skipped))
            if s.vulnerabilities is not None:
                for severity, count in count_by_severity(s.vulnerabilities).items():
                    by_severity.add_metric((target.name, severity), count)
        yield from (modules, dropped, found, skipped, errors)
        if by_severity.samples:
            yield by_severity


def _discovery_health(host: Host) -> Iterable[Metric]:
    """What the latest listing of processes saw: how many, how many Python, and those it
    could not read (another user's process without CAP_SYS_PTRACE) or that exited mid-read."""
    d = host.discovery
    assert d is not None
    for name, help_text, value in (
        ("status_exporter_processes", "Processes listed in the latest refresh.", d.processes),
        (
            "status_exporter_python_processes",
            "Python processes found in the latest refresh (grouped into targets).",
            d.python_processes,
        ),
        (
            "status_exporter_processes_denied",
            "Processes this exporter may not read (it lacks CAP_SYS_PTRACE or "
            "CAP_DAC_READ_SEARCH for them), in the latest refresh.",
            d.denied,
        ),
        (
            "status_exporter_processes_gone",
            "Processes that exited while the latest refresh read them.",
            d.gone,
        ),
    ):
        yield GaugeMetricFamily(name, help_text, value=value)
