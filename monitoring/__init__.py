"""The monitoring mixin: status-exporter's recording rules, alerts and Grafana dashboard.

One source in plain Python, configured by :class:`monitoring.settings.Settings`
(the selector that picks the exporter's series, thresholds, dashboard title),
rendered to plain files by ``python -m monitoring`` (``make monitoring``).
The committed ``prometheus/rules.yml``, ``grafana/dashboards/*.json`` and
``deploy/kubernetes/base/prometheusrule.yaml`` are its output for the
defaults; ``make test`` fails when they differ from what it generates.
"""
