"""What a user of the mixin may change: the selector, thresholds and dashboard identity."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.advisories.database import STALE_AFTER_DAYS

DEFAULT_SELECTOR = 'job="python-status"'


@dataclass(frozen=True, slots=True)
class Settings:
    """The mixin's configuration; the defaults are what the repository ships."""

    # PromQL label matchers (without braces) that pick the exporter's series.
    selector: str = DEFAULT_SELECTOR
    exporter_down_for: str = "5m"
    refresh_failing_for: str = "15m"
    refresh_stale_for: str = "5m"
    stale_refresh_intervals: int = 3
    module_drift_for: str = "30m"
    # Replicas whose module sets differ (target_modules_info's fingerprint) while no single
    # published module explains it: modules.publish vulnerable or none hides the module.
    module_set_drift_for: str = "30m"
    python_drift_for: str = "30m"
    commit_drift_for: str = "1h"
    metadata_skipped_for: str = "1h"
    # A target (targets.environments) that the exporter could not read in some refresh.
    target_unreadable_for: str = "15m"
    # A discovered target whose processes run code changed on disk (target_restart_required).
    # A deploy that upgrades and then restarts a service is seen at one or two refreshes (60 s
    # each) with the flag set; 15 minutes stays quiet through that and a rolling restart of
    # a few replicas, and still reports a forgotten restart within the quarter hour.
    restart_required_for: str = "15m"
    critical_vulnerability_for: str = "15m"
    high_vulnerability_for: str = "1h"
    # Medium, low and unknown severity: PYSEC records carry no severity, so without GitHub's
    # records (OSV's PyPI export has both) most findings are "unknown" and reach nobody else.
    other_vulnerability_for: str = "1d"
    end_of_life_warning_days: int = 90
    end_of_life_for: str = "1h"
    advisories_stale_days: int = STALE_AFTER_DAYS  # what the exporter's pages mark as stale
    advisories_stale_for: str = "1h"
    advisories_failing_for: str = "10m"
    dashboard_title: str = "Python fleet (status-exporter)"
    dashboard_uid: str = "status-exporter-fleet"
    dashboard_refresh: str = "1m"

    def matchers(self, *more: str) -> str:
        """``{selector, more...}`` for a metric selector."""
        return "{" + ", ".join(m for m in (self.selector, *more) if m) + "}"
