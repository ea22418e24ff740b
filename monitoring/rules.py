"""Recording rules and alerts, every one selecting the exporter's series by the selector."""

from __future__ import annotations

from typing import Any

from monitoring.settings import Settings

Rule = dict[str, Any]

# Instances per job, target, module and version: module_info aggregated once per evaluation.
VERSION_INSTANCES = "job_module_version:module_info:count"
# Distinct versions per job, target and module (1 = no drift), read from VERSION_INSTANCES.
MODULE_VERSIONS = "job_module:module_versions:count"


# module_info is read in shards, one rule group each, by the last character of the module
# name (a canonical name: lower case). Prometheus evaluates groups side by side, each at
# its own offset within the interval, so each reads a tenth of the series instead of one
# group reading them all: at 300,000 module_info series one group took seconds
# (bench/fleet.py). Each class has one digit (the fleet benchmark's synthetic names end in
# one) and letters balanced on real names: the last characters of the 664 packages of the
# PyPA advisory database put 63 to 80 names in each. The last shard takes every name the
# others do not match ("9fpy", upper case, anything else), so that each series is read
# exactly once.
MODULE_SHARDS = ("0e", "1s", "2giv", "3akuz", "4cdl", "5jqr", "6box", "7mt", "8hnw")


def module_shard_matchers() -> list[str]:
    """The module label matcher of each shard, the last one matching what no other does.

    Every one is a positive match: Prometheus answers ``module!~"..."`` by merging the
    postings of every value the regex matches (nine tenths of the series here) to take
    them away, which made that shard the slowest by far. A name with a line break is not
    matched by ``.*`` in any shard; the exporter refuses one (control characters)."""
    matchers = [f'module=~".*[{c}]"' for c in MODULE_SHARDS]
    matchers.append(f'module=~".*[^{"".join(MODULE_SHARDS)}]"')
    return matchers


def rule_groups(s: Settings) -> list[dict[str, Any]]:
    """The rule groups of ``rules.yml`` and of the PrometheusRule."""
    shards = module_shard_matchers()
    return [
        {"name": "status-exporter.fleet", "rules": recording_rules(s)},
        *(
            {
                "name": f"status-exporter.modules-{i}-of-{len(shards)}",
                "rules": module_rules(s, m, str(i)),
            }
            for i, m in enumerate(shards, 1)
        ),
        {"name": "status-exporter.alerts", "rules": fleet_alerts(s)},
        {"name": "status-exporter.security", "rules": security_alerts(s)},
    ]


def module_rules(s: Settings, shard: str, number: str) -> list[Rule]:
    """Instances per job, target, module and version, for the modules ``shard`` matches.

    ``module_info`` is by far the largest series set (one per module, target and instance):
    the shards' rules are the only ones that read it, and every other rule, alert and panel
    about modules reads their output (a series per version, not per instance). The series
    carry ``module_shard="<number>"``: promtool's lint takes two rules recording one name
    with the same static labels for a mistake. Every reader aggregates it away.
    """
    return [
        {
            "record": VERSION_INSTANCES,
            "expr": f"count by (job, target, module, version) (module_info{s.matchers(shard)})",
            "labels": {"module_shard": number},
        },
    ]


def recording_rules(s: Settings) -> list[Rule]:
    """Fleet aggregates that the drift alerts and the dashboard read (the module versions
    are recorded by the shards' groups: ``module_rules``).

    Drift is counted per job and target: target "web" on two hosts are replicas, "web" and
    "worker" on one host are not. Series of a daemon without targets have no ``target``
    label, and grouping by an absent label gives the same series as not grouping by it.
    """
    m = s.matchers()
    return [
        {
            # Distinct versions per module, from the shards' latest evaluations (each at
            # most one interval old; a version gone from a shard is marked stale at once).
            "record": MODULE_VERSIONS,
            "expr": f"count by (job, target, module) ({VERSION_INSTANCES})",
        },
        {
            # One target_modules_info series per target in every modules.publish mode: drift
            # between replicas stays visible where module_info is partial or absent.
            "record": "job:module_fingerprints:count",
            "expr": "count by (job, target) "
            f"(count by (job, target, fingerprint) (target_modules_info{m}))",
        },
        {
            "record": "job:python_versions:count",
            "expr": f"count by (job, target) (count by (job, target, version) (python_info{m}))",
        },
        {
            "record": "job:build_commits:count",
            "expr": f"count by (job, target) (count by (job, target, commit) (build_info{m}))",
        },
        {"record": "job:status_exporter_up:sum", "expr": f"sum by (job) (up{m})"},
        {
            "record": "job_severity:module_vulnerabilities:count",
            "expr": f"count by (job, target, severity) (module_vulnerability_info{m})",
        },
    ]


# Go templates for annotations: empty for a series without a target label.
IN_TARGET = "{{ with $labels.target }} (target {{ . }}){{ end }}"
TARGET_MATCHER = '{{ with $labels.target }}, target="{{ . }}"{{ end }}'
_WHERE = "{{ $labels.instance }}" + IN_TARGET
# For descriptions: "... of django in target web for 30m."
_IN_TARGET_TEXT = "{{ with $labels.target }} in target {{ . }}{{ end }}"
# "django 3.2.0 on b:8393 (target web)": the module of a finding, where it runs.
_MODULE_WHERE = "{{ $labels.module }} {{ $labels.version }} on " + _WHERE
# OSV's page of the advisory: every id the exporter matches (PYSEC, GHSA, MAL...) has one.
ADVISORY_LINK = "https://osv.dev/vulnerability/{{ $labels.id }}"
# Where a discovered target's processes run, from target_info's identity labels.
_PROCESS_WHERE = (
    "{{ with $labels.unit }} (unit {{ . }}){{ end }}"
    "{{ with $labels.container }} (container {{ . }}"
    "{{ with $labels.pod }} of pod {{ $labels.namespace }}/{{ . }}{{ end }}){{ end }}"
)
# A finding's labels on module_vulnerability_info, but the instance's (and whether it is
# loaded, which is the instance's too): what a finding is in a job and target.
FINDING_LABELS = "job, target, module, version, id, aliases, severity, fixed"
# The identity labels of target_info that PythonRestartRequired copies onto its alert.
PROCESS_IDENTITY = ("unit", "namespace", "pod", "container")


def _alert(
    name: str, expr: str, duration: str, severity: str, summary: str, description: str, runbook: str
) -> Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook": runbook},
    }


def fleet_alerts(s: Settings) -> list[Rule]:
    """The exporter's health and its targets', and drift within a job (per target)."""
    m = s.matchers()
    return [
        _alert(
            "StatusExporterDown",
            f"up{m} == 0",
            s.exporter_down_for,
            "warning",
            "status-exporter on {{ $labels.instance }} is down",
            f"Prometheus has not scraped {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) "
            f"for {s.exporter_down_for}; its Python, commit and module versions are unknown.",
            "Check the process (systemctl status status-exporter, or the container), its log (a "
            "config error exits with status 2 and names the key), and that the port is reachable "
            "from Prometheus. /healthz answers while it runs.",
        ),
        _alert(
            "StatusExporterRefreshFailing",
            f"increase(status_exporter_refresh_errors_total{m}[15m]) > 0",
            s.refresh_failing_for,
            "warning",
            "status-exporter on {{ $labels.instance }} fails to refresh",
            "{{ $value | humanize }} refreshes of {{ $labels.instance }} (job {{ $labels.job }}) "
            "failed in 15 minutes; the published data is the last good snapshot and may be out "
            "of date.",
            "Read the exporter's log for 'refresh failed' (the reason is in error=...). Typical "
            "causes: modules.paths or commit.git_dir on a volume that went away.",
        ),
        _alert(
            "StatusExporterRefreshStale",
            f"time() - status_exporter_last_refresh_timestamp_seconds{m} > "
            f"{s.stale_refresh_intervals} * status_exporter_refresh_interval_seconds{m}",
            s.refresh_stale_for,
            "warning",
            "status-exporter on {{ $labels.instance }} has stale data",
            "The last successful refresh of {{ $labels.instance }} was "
            "{{ $value | humanizeDuration }} ago, more than "
            f"{s.stale_refresh_intervals} refresh intervals.",
            "A refresh may be stuck on a slow file system, or every refresh fails (see "
            "StatusExporterRefreshFailing). Restarting the exporter is safe.",
        ),
        _alert(
            "ModuleVersionDrift",
            "job_module:module_versions:count > 1",
            s.module_drift_for,
            "info",
            "{{ $labels.module }} runs in {{ $value }} versions in job {{ $labels.job }}"
            + IN_TARGET,
            "Instances of job {{ $labels.job }} disagree on the version of {{ $labels.module }}"
            f"{_IN_TARGET_TEXT} for {s.module_drift_for}.",
            'List the versions: count by (version, instance) (module_info{job="{{ $labels.job }}"'
            + TARGET_MATCHER
            + ', module="{{ $labels.module }}"}). Finish or roll back the deploy, or rebuild '
            "the odd hosts.",
        ),
        _alert(
            "ModuleSetDrift",
            # Only where no published module explains it: ModuleVersionDrift names the module.
            "job:module_fingerprints:count > 1 "
            "unless on (job, target) job_module:module_versions:count > 1",
            s.module_set_drift_for,
            "info",
            "Job {{ $labels.job }}" + IN_TARGET + " runs {{ $value }} different module sets",
            "Instances of job {{ $labels.job }} disagree on their modules (names and versions)"
            f"{_IN_TARGET_TEXT} for {s.module_set_drift_for}, by the fingerprint of their "
            "module sets (target_modules_info). No module_info series shows which module: "
            "modules.publish is vulnerable or none, or a module is installed on some "
            "instances only.",
            "See which instances share a set: max by (instance, fingerprint) "
            '(target_modules_info{job="{{ $labels.job }}"'
            + TARGET_MATCHER
            + "}). Compare two of them on their status pages (the module list), then finish "
            "the deploy or rebuild the odd hosts.",
        ),
        _alert(
            "PythonVersionDrift",
            "job:python_versions:count > 1",
            s.python_drift_for,
            "info",
            "Job {{ $labels.job }}" + IN_TARGET + " runs {{ $value }} Python versions",
            "Instances of job {{ $labels.job }} run different Python versions"
            f"{_IN_TARGET_TEXT} for {s.python_drift_for}.",
            'See which: count by (version, instance) (python_info{job="{{ $labels.job }}"'
            + TARGET_MATCHER
            + "}). Align base images or interpreters.",
        ),
        _alert(
            "CommitDrift",
            "job:build_commits:count > 1",
            s.commit_drift_for,
            "warning",
            "Job {{ $labels.job }}" + IN_TARGET + " runs {{ $value }} different commits",
            "Instances of job {{ $labels.job }} have been on different commits"
            f"{_IN_TARGET_TEXT} for longer than a deploy window ({s.commit_drift_for}).",
            'See which: count by (commit, instance) (build_info{job="{{ $labels.job }}"'
            + TARGET_MATCHER
            + "}). A deploy stalled or a host was missed; redeploy it.",
        ),
        _alert(
            "StatusExporterMetadataSkipped",
            f"status_exporter_modules_skipped{m} > 0",
            s.metadata_skipped_for,
            "info",
            "{{ $value }} distributions on " + _WHERE + " have unreadable metadata",
            "status-exporter on {{ $labels.instance }} could not read their metadata"
            f"{_IN_TARGET_TEXT}; their versions are not reported.",
            'The exporter logs each skipped path once with the reason (msg="metadata skipped"). '
            "Reinstall the broken distributions.",
        ),
        _alert(
            "StatusExporterTargetUnreadable",
            f"increase(status_exporter_target_errors_total{m}[15m]) > 0",
            s.target_unreadable_for,
            "warning",
            "status-exporter on {{ $labels.instance }} cannot read target {{ $labels.target }}",
            "{{ $value | humanize }} refreshes of {{ $labels.instance }} in 15 minutes could not "
            "read the paths of target {{ $labels.target }}; the last facts read from it stay "
            "published and may be out of date (none, if it was never read).",
            "Check that the target's paths (targets.environments in the exporter's config) still "
            "exist and that the exporter's user can read them: a virtual environment that was "
            "removed, or rebuilt elsewhere, is the usual cause.",
        ),
        _restart_required(s),
    ]


def _restart_required(s: Settings) -> Rule:
    """PythonRestartRequired, with the unit, pod and container of target_info where known."""
    m = s.matchers()
    stale = f"(target_restart_required{m} == 1)"
    # The join adds the identity labels; "or on" keeps a target that has no target_info.
    expr = (
        f"{stale} * on (job, instance, target) group_left ({', '.join(PROCESS_IDENTITY)}) "
        f"target_info{m} or on (job, instance, target) {stale}"
    )
    return _alert(
        "PythonRestartRequired",
        expr,
        s.restart_required_for,
        "warning",
        "Target {{ $labels.target }} on {{ $labels.instance }}"
        + _PROCESS_WHERE
        + " needs a restart",
        "The processes of target {{ $labels.target }} on {{ $labels.instance }} (job "
        "{{ $labels.job }}) have run code that changed on disk for "
        f"{s.restart_required_for}: distributions installed, upgraded or removed after they "
        "started, or files they map deleted or replaced. An upgrade (a security fix "
        "included) is not in force until they restart.",
        "Restart its processes{{ with $labels.unit }} (systemctl restart {{ . }}){{ end }}"
        "{{ with $labels.pod }} (roll out the owner of pod {{ $labels.namespace }}/{{ . }})"
        "{{ end }}. What changed (distributions, stale files): restart_required in "
        "/api/v1/targets/{{ $labels.target }}/status/ on {{ $labels.instance }}.",
    )


def security_alerts(s: Settings) -> list[Rule]:
    """Known vulnerabilities, Python's end of life, and the advisory data they rest on."""
    m = s.matchers()
    vulnerable = _MODULE_WHERE + " has {{ $labels.id }}"
    advisory = (
        " is affected by {{ $labels.id }}"
        "{{ with $labels.aliases }} (aliases: {{ . }}){{ end }}. "
        "Fixed in {{ with $labels.fixed }}{{ . }}{{ else }}no released version yet{{ end }}. "
        f"Advisory: {ADVISORY_LINK}"
    )
    fix = _MODULE_WHERE + advisory
    on_instances = (
        "{{ $labels.module }} {{ $labels.version }} in job {{ $labels.job }}"
        + IN_TARGET
        + ", on {{ $value }} instance(s),"
    )
    list_them = (
        ' List the instances: module_vulnerability_info{job="{{ $labels.job }}"'
        + TARGET_MATCHER
        + ', id="{{ $labels.id }}"}.'
    )
    runbook = (
        "Upgrade the module past the fixed version and redeploy; the series disappears at the "
        "exporter's next refresh. An accepted risk goes in advisories.ignore (by id or alias). "
        "Details: the status page (/api/v1/status/) links the advisory."
    )
    warning_seconds = s.end_of_life_warning_days * 86400
    stale_seconds = s.advisories_stale_days * 86400
    return [
        _alert(
            "ModuleVulnerabilityCritical",
            "module_vulnerability_info" + s.matchers('severity="critical"') + " == 1",
            s.critical_vulnerability_for,
            "critical",
            vulnerable + " (critical)",
            fix,
            runbook,
        ),
        _alert(
            "ModuleVulnerabilityHigh",
            "module_vulnerability_info" + s.matchers('severity="high"') + " == 1",
            s.high_vulnerability_for,
            "warning",
            vulnerable + " (high)",
            fix,
            runbook,
        ),
        # One alert per finding and target, not per instance: the lower severities are the
        # many (PYSEC records carry none), and Prometheus expands every active alert's
        # templates at every evaluation, pending ones included (for a day here). Per
        # instance, 3,520 findings of a 40-host fleet took this group 1.8 s to evaluate
        # (bench/fleet.py); the instances are counted in the value and listed by a query.
        _alert(
            "ModuleVulnerability",
            f"count by ({FINDING_LABELS}) (module_vulnerability_info"
            + s.matchers('severity=~"medium|low|unknown"')
            + " == 1)",
            s.other_vulnerability_for,
            "info",
            "{{ $labels.module }} {{ $labels.version }} has {{ $labels.id }}"
            " ({{ $labels.severity }} severity) on {{ $value }} instance(s) of job"
            " {{ $labels.job }}" + IN_TARGET,
            on_instances + advisory,
            runbook + list_them,
        ),
        _alert(
            "PythonEndOfLife",
            f"time() > python_end_of_life_timestamp_seconds{m}",
            s.end_of_life_for,
            "warning",
            "Python {{ $labels.version }} on " + _WHERE + " is past its end of life",
            "Python {{ $labels.version }} on " + _WHERE + " gets no security fixes any more.",
            "Move the application to a supported Python (see python_info for the exact version). "
            "A vendor build supported longer can say so in python.end_of_life.",
        ),
        _alert(
            "PythonEndOfLifeSoon",
            f"python_end_of_life_timestamp_seconds{m} - time() < {warning_seconds} "
            f"and python_end_of_life_timestamp_seconds{m} - time() > 0",
            s.end_of_life_for,
            "info",
            "Python {{ $labels.version }} on " + _WHERE + " reaches its end of life in "
            "{{ $value | humanizeDuration }}",
            "Python {{ $labels.version }} on "
            + _WHERE
            + f" has less than {s.end_of_life_warning_days} days of security fixes left.",
            "Plan the move to a newer Python before the date.",
        ),
        _alert(
            "AdvisoryDataStale",
            f"time() - status_exporter_advisories_newest_timestamp_seconds{m} > {stale_seconds}",
            s.advisories_stale_for,
            "warning",
            "Advisory data on {{ $labels.instance }} is {{ $value | humanizeDuration }} old",
            "No advisory in the database loaded by {{ $labels.instance }} was modified in "
            f"{s.advisories_stale_days} days: "
            "the download that refreshes it has stopped. An empty vulnerability list from stale "
            "data is not a clean bill of health.",
            "Check the job that downloads OSV's PyPI export (cron or CronJob, see the README) and "
            "that advisories.paths points at the file it writes.",
        ),
        _alert(
            "AdvisoryDataFailing",
            f"increase(status_exporter_advisories_load_errors_total{m}[1h]) > 0 "
            f"or status_exporter_advisories_load_timestamp_seconds{m} == 0",
            s.advisories_failing_for,
            "warning",
            "status-exporter on {{ $labels.instance }} cannot load its advisory database",
            "The last load on {{ $labels.instance }} failed (or none ever succeeded); the "
            "previous database stays in force.",
            'The exporter logs the path and the reason (msg="advisory database not loaded"). '
            "A half-written download is the usual cause: write to a temporary file and rename.",
        ),
    ]
