"""The Grafana fleet dashboard: every query selects the exporter's series by the selector.

Panels are built from small helpers so that a new panel is a few lines; the
layout flows left to right in rows of 24 grid units.

A daemon reports one environment, or several targets (``targets.environments``): the
per-target series carry ``target`` and are filtered by the ``$target`` variable, whose
"All" is ``.*`` so that it also matches the series of daemons without targets (no
``target`` label: the empty value). The daemon's own series (``up``, ``platform_info``,
the refresh and advisory database health, module changes) carry no target and are never
filtered by it.
"""

from __future__ import annotations

from typing import Any

from monitoring.rules import MODULE_VERSIONS, VERSION_INSTANCES
from monitoring.settings import Settings

Panel = dict[str, Any]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_HOST_FILTERS = ('job=~"$job"', 'instance=~"$instance"')
_TARGET_FILTERS = (*_HOST_FILTERS, 'target=~"$target"')


def on_instances(expr: str, sel: str) -> str:
    """``expr``, a recorded series of job and target, for the targets that run on the
    selected instances (``target_modules_info{sel}``: one series per target and instance,
    in every ``modules.publish`` mode), so that ``$instance`` applies to it too."""
    return f"{expr} and on (job, target) target_modules_info{sel}"


def drifting_modules(sel: str, in_target: str, in_module: str) -> str:
    """Modules in more than one version within a job and target (the recorded
    ``job_module:module_versions:count`` matching ``in_module``); and, where no published
    module explains it, a target whose replicas' module sets differ by fingerprint (the
    recorded ``job:module_fingerprints:count`` matching ``in_target``, as
    ``module="(module set)"``): drift shows in every ``modules.publish`` mode.

    Both read recorded series (a few per target), never ``module_info`` (one per module of
    every instance). Drift is counted over all replicas of a job and target, as for the
    alerts; ``$instance`` (``sel``) picks the targets that run on the selected instances.
    """
    by_module = f"max by (job, target, module) ({MODULE_VERSIONS}{in_module}) > 1"
    by_set = (
        f"max by (job, target) (job:module_fingerprints:count{in_target}) > 1 "
        f"unless on (job, target) {MODULE_VERSIONS} > 1"
    )
    drift = f'{by_module} or label_replace({by_set}, "module", "{MODULE_SET}", "", "")'
    return on_instances(f"({drift})", sel)


# The module column of a drift row found by fingerprint only.
MODULE_SET = "(module set)"


class _Layout:
    """Places panels left to right, wrapping to a new row at 24 units."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.panels: list[Panel] = []

    def add(self, panel: Panel, width: int, height: int) -> None:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0


def _target(expr: str, ref: str = "A", *, table: bool = True, legend: str | None = None) -> Any:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": expr,
        "range": not table,
        "instant": table,
        "format": "table" if table else "time_series",
    }
    if legend:
        target["legendFormat"] = legend
    return target


def _panel(kind: str, title: str, description: str, targets: list[Any], **extra: Any) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        **extra,
    }


def _stat(title: str, description: str, expr: str, *, warn_at: float | None = None) -> Panel:
    target = _target(expr)
    target["format"] = "time_series"
    extra: dict[str, Any] = {
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
        }
    }
    if warn_at is not None:
        steps = [{"color": "green", "value": None}, {"color": "orange", "value": warn_at}]
        extra["fieldConfig"] = {
            "defaults": {"thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        }
    return _panel("stat", title, description, [target], **extra)


def _table(title: str, description: str, targets: list[Any], *transforms: Any) -> Panel:
    return _panel(
        "table",
        title,
        description,
        targets,
        transformations=list(transforms),
        options={"showHeader": True},
    )


def _timeseries(
    title: str, description: str, expr: str, legend: str, unit: str | None = None
) -> Panel:
    extra: dict[str, Any] = {
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    }
    if unit:
        extra["fieldConfig"] = {"defaults": {"unit": unit}, "overrides": []}
    return _panel(
        "timeseries", title, description, [_target(expr, table=False, legend=legend)], **extra
    )


def _organize(exclude: tuple[str, ...] = ("Time",), rename: dict[str, str] | None = None) -> Any:
    return {
        "id": "organize",
        "options": {"excludeByName": dict.fromkeys(exclude, True), "renameByName": rename or {}},
    }


def _variable(name: str, label: str, query: str, all_value: str = ".+") -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "options": [],
    }


def fleet_dashboard(s: Settings) -> dict[str, Any]:
    """The fleet dashboard: instances, drift, modules, security, the exporter's health."""
    host = s.matchers(*_HOST_FILTERS)
    sel = s.matchers(*_TARGET_FILTERS)
    in_job = s.matchers('job=~"$job"')
    in_job_target = s.matchers('job=~"$job"', 'target=~"$target"')
    # Recorded series keep job and target only: the variables that apply to them.
    recorded = '{job=~"$job", target=~"$target"}'
    recorded_module = '{job=~"$job", target=~"$target", module=~"$module"}'
    layout = _Layout()
    _overview(layout, host, sel, recorded)
    _modules(layout, host, sel, recorded, recorded_module)
    _security(layout, s, host, sel)
    _health(layout, host, sel)
    return {
        "uid": s.dashboard_uid,
        "title": s.dashboard_title,
        "description": "Which hosts run which Python, which commit, which version of each module, "
        "what drifted, and what has known vulnerabilities.",
        "tags": ["python", "status-exporter"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": s.dashboard_refresh,
        "time": {"from": "now-6h", "to": "now"},
        "links": [],
        "annotations": {"list": []},
        "panels": layout.panels,
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "options": [],
                    "refresh": 1,
                },
                _variable(
                    "job", "Job", f"label_values(status_exporter_build_info{s.matchers()}, job)"
                ),
                _variable(
                    "instance",
                    "Instance",
                    f"label_values(status_exporter_build_info{in_job}, instance)",
                ),
                _variable(
                    "target",
                    "Target",
                    f"label_values(target_info{host}, target)",
                    # All must match the series of daemons without targets too: "" (no label).
                    all_value=".*",
                ),
                _variable(
                    "module",
                    "Module",
                    f"label_values(module_info{in_job_target}, module)",
                ),
            ]
        },
    }


def _overview(layout: _Layout, host: str, sel: str, recorded: str) -> None:
    layout.add(
        _stat(
            "Instances up",
            "Instances whose status-exporter Prometheus scrapes successfully.",
            f"sum(up{host})",
        ),
        6,
        4,
    )
    layout.add(
        _stat(
            "Python versions",
            "Distinct Python versions across the selected instances and targets.",
            f"count(count by (version) (python_info{sel}))",
            warn_at=2,
        ),
        6,
        4,
    )
    layout.add(
        _stat(
            "Commits",
            "Distinct commits across the selected instances and targets: more than one within "
            "a target outside a deploy is drift.",
            f"count(count by (commit) (build_info{sel}))",
            warn_at=2,
        ),
        6,
        4,
    )
    layout.add(
        _stat(
            "Drifting modules",
            "Modules installed in more than one version within a job and target (a target's "
            "replicas on different hosts; two targets of one host may differ), plus the "
            "targets whose replicas' module sets differ where no published module shows it "
            "(modules.publish: vulnerable or none). From the recorded drift series: not "
            "filtered by instance.",
            f"count({drifting_modules(sel, recorded, recorded)}) or vector(0)",
            warn_at=1,
        ),
        6,
        4,
    )
    targets = [
        _target(
            "max by (job, instance, target, commit, app_version) (label_replace("
            f'build_info{sel}, "app_version", "$1", "version", "(.*)"))',
            "A",
        ),
        _target(
            "max by (job, instance, target, python) (label_replace("
            f'python_info{sel}, "python", "$1", "version", "(.*)"))',
            "B",
        ),
        _target(f"max by (job, instance, system, release, machine) (platform_info{host})", "C"),
        _target(f"max by (job, instance) (time() - process_start_time_seconds{host})", "D"),
        _target(
            "max by (job, instance) "
            f"(time() - status_exporter_last_refresh_timestamp_seconds{host})",
            "E",
        ),
    ]
    # Merged on job and instance: the host's platform, uptime and data age go on each of
    # its targets' rows (a daemon without targets has one row, as before targets).
    instances = _table(
        "Instances",
        "One row per instance, or per instance and target: commit, application version, "
        "Python, platform, uptime and the age of its data.",
        targets,
        {"id": "merge", "options": {}},
        _organize(
            ("Time",),
            {
                "Value #D": "uptime",
                "Value #E": "data age",
                "app_version": "version",
            },
        ),
    )
    instances["fieldConfig"] = {
        "defaults": {},
        "overrides": [
            {
                "matcher": {"id": "byName", "options": name},
                "properties": [{"id": "unit", "value": "s"}],
            }
            for name in ("uptime", "data age")
        ]
        + [
            {
                "matcher": {"id": "byRegexp", "options": "Value #[ABC]"},
                "properties": [{"id": "custom.hidden", "value": True}],
            }
        ],
    }
    layout.add(instances, 24, 8)
    layout.add(
        _table(
            "Targets",
            "The targets each instance reports (targets.environments in its config): kind and "
            "path. Empty for daemons without targets, which report their own environment.",
            [_target(f"max by (job, instance, target, kind, path) (target_info{sel})")],
            _organize(("Time", "Value")),
        ),
        24,
        6,
    )


def _modules(layout: _Layout, host: str, sel: str, recorded: str, module: str) -> None:
    # The module panels read the recorded series of job_module_version:module_info:count
    # (instances per job, target, module and version), not module_info: a fleet's every
    # module of every instance is too many rows to read or to send (300,000 at 40 instances
    # of 25 targets of 300 modules); a row per version within a target is what drift needs.
    layout.add(
        _table(
            "Module versions by target",
            "How many versions of each module the replicas of each target run (module x "
            "target; the column is empty for daemons without targets): 1 everywhere is a "
            "converged fleet, 2 or more is drift (Drifting modules, Modules by target). From "
            "the recorded series: filtered by job, target and module, not by instance.",
            [_target(f"max by (module, target) ({on_instances(MODULE_VERSIONS + module, sel)})")],
            {
                "id": "groupingToMatrix",
                "options": {
                    "columnField": "target",
                    "rowField": "module",
                    "valueField": "Value",
                },
            },
        ),
        16,
        12,
    )
    layout.add(
        _table(
            "Drifting modules",
            "Modules with more than one version within a job and target, and how many versions. "
            f"A row with module {MODULE_SET} is a target whose replicas run different module "
            "sets (target_modules_info's fingerprint) while no published module_info shows "
            "which module (modules.publish: vulnerable or none, or a module installed on some "
            "replicas only); its count is the number of sets. From the recorded drift series: "
            "not filtered by instance.",
            [_target(drifting_modules(sel, recorded, module))],
            _organize(("Time",), {"Value": "versions"}),
        ),
        8,
        12,
    )
    by_target = {"module": 0, "version": 1, "target": 2, "instances": 3}
    modules = _table(
        "Modules by target",
        "Every module and version, with the target that runs it and on how many instances "
        "(module x version x target); the target is empty for daemons without targets. Two "
        "rows of one module and target are drift: the instance's status page, or the "
        "ModuleVersionDrift runbook's query, names the instances. From the recorded series: "
        "filtered by job, target and module, not by instance.",
        [
            _target(
                "sum by (module, version, target) "
                f"({on_instances(VERSION_INSTANCES + module, sel)})"
            )
        ],
        _organize(("Time",), {"Value": "instances"}),
    )
    modules["transformations"][0]["options"]["indexByName"] = by_target
    layout.add(modules, 24, 10)
    layout.add(
        _timeseries(
            "Modules per instance",
            "How many modules each instance (and target) publishes; steps are installs and "
            "removals.",
            f"status_exporter_modules{sel}",
            "{{instance}} {{target}}",
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Module changes",
            "Modules added, removed, upgraded or downgraded, as seen between refreshes.",
            "sum by (change) "
            f"(increase(status_exporter_module_changes_total{host}[$__rate_interval]))",
            "{{change}}",
        ),
        12,
        8,
    )


def _security(layout: _Layout, s: Settings, host: str, sel: str) -> None:
    layout.row("Security: known vulnerabilities and end of life")
    severe = s.matchers(*_TARGET_FILTERS, 'severity=~"critical|high"')
    layout.add(
        _stat(
            "Instances with critical or high vulnerabilities",
            "Instances running a module with a known critical or high vulnerability.",
            f"count(count by (instance) (module_vulnerability_info{severe})) or vector(0)",
            warn_at=1,
        ),
        5,
        4,
    )
    layout.add(
        _stat(
            "Instances past Python's end of life",
            "Instances running a Python (in any selected target) whose minor version gets no "
            "security fixes any more.",
            "count(count by (instance) "
            f"(time() > python_end_of_life_timestamp_seconds{sel})) or vector(0)",
            warn_at=1,
        ),
        5,
        4,
    )
    age = _stat(
        "Advisory data age",
        "Time since the newest advisory in the oldest loaded database was modified: an empty "
        "vulnerability list from stale data is not a clean bill of health.",
        f"time() - min(status_exporter_advisories_newest_timestamp_seconds{host})",
        warn_at=s.advisories_stale_days * 86400,
    )
    age["fieldConfig"]["defaults"]["unit"] = "s"
    layout.add(age, 5, 4)
    layout.add(
        _stat(
            "Advisory load errors",
            "Failed loads of the advisory database in the dashboard's time range.",
            "sum(increase("
            f"status_exporter_advisories_load_errors_total{host}[$__range])) or vector(0)",
            warn_at=1,
        ),
        5,
        4,
    )
    layout.add(
        _stat(
            "Targets needing a restart",
            "Discovered targets (targets.discover) whose processes run code that changed on "
            "disk: distributions changed after they started, or files they map replaced. "
            "PythonRestartRequired names them.",
            f"count(target_restart_required{sel} == 1) or vector(0)",
            warn_at=1,
        ),
        4,
        4,
    )
    layout.add(
        _table(
            "Vulnerabilities by instance and severity",
            "How many known vulnerabilities each instance runs, by severity (over the selected "
            "targets).",
            [_target(f"sum by (instance, severity) (status_exporter_vulnerabilities{sel}) > 0")],
            {
                "id": "groupingToMatrix",
                "options": {
                    "columnField": "severity",
                    "rowField": "instance",
                    "valueField": "Value",
                },
            },
        ),
        8,
        10,
    )
    layout.add(
        _table(
            "Vulnerable modules",
            "Every vulnerable module and version per instance and target, with the advisory "
            "and the lowest fixed version above it.",
            [
                _target(
                    "max by (instance, target, module, version, id, aliases, severity, fixed) "
                    f"(module_vulnerability_info{sel})"
                )
            ],
            _organize(("Time", "Value")),
        ),
        16,
        10,
    )
    layout.add(
        _table(
            "Upgrades that fix every known vulnerability",
            "Per vulnerable module, instance and target: the lowest version that fixes all of "
            "its known vulnerabilities (empty: none known), and the worst severity.",
            [
                _target(
                    "max by (instance, target, module, version, fixed, severity) "
                    f"(module_fix_info{sel})"
                )
            ],
            _organize(("Time", "Value"), {"fixed": "upgrade to"}),
        ),
        12,
        8,
    )
    eol = _table(
        "Python end of life",
        "When each instance's (and target's) Python minor version stops getting security "
        "fixes, and how many days are left (negative: past).",
        [
            _target(
                "max by (instance, target, version) "
                f"(python_end_of_life_timestamp_seconds{sel}) * 1000",
                "A",
            ),
            _target(
                "max by (instance, target, version) "
                f"(python_end_of_life_timestamp_seconds{sel} - time()) / 86400",
                "B",
            ),
        ],
        {"id": "merge", "options": {}},
        _organize(("Time",), {"Value #A": "end of life", "Value #B": "days left"}),
    )
    eol["fieldConfig"] = {
        "defaults": {},
        "overrides": [
            {
                "matcher": {"id": "byName", "options": "end of life"},
                "properties": [{"id": "unit", "value": "dateTimeAsIsoNoDateIfToday"}],
            },
            {
                "matcher": {"id": "byName", "options": "days left"},
                "properties": [{"id": "decimals", "value": 0}],
            },
        ],
    }
    layout.add(eol, 12, 8)


def _health(layout: _Layout, host: str, sel: str) -> None:
    layout.row("The exporter's health")
    layout.add(
        _timeseries(
            "Refresh duration",
            "How long each instance's latest refresh took to gather the facts.",
            f"status_exporter_refresh_duration_seconds{host}",
            "{{instance}}",
            unit="s",
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Refresh errors",
            "Failed refreshes; the last good data stays published.",
            "sum by (instance) "
            f"(increase(status_exporter_refresh_errors_total{host}[$__rate_interval]))",
            "{{instance}}",
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Targets per instance",
            "How many targets each instance reports (0 or absent: its own environment only).",
            f"status_exporter_targets{host}",
            "{{instance}}",
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Target read errors",
            "Refreshes in which a target could not be read, per instance and target.",
            "sum by (instance, target) "
            f"(increase(status_exporter_target_errors_total{sel}[$__rate_interval]))",
            "{{instance}} {{target}}",
        ),
        12,
        8,
    )
