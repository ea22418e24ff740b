"""The landing page at ``/``: what this is, the key facts, and where the data is."""

from __future__ import annotations

import datetime
from html import escape

from exporter.refresh import RefreshStats
from exporter.snapshot import Snapshot

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1b1f24;background:#fff}
h1{font-size:1.4rem;margin-bottom:.2rem}p.sub{margin-top:0;color:#57606a}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;
border-bottom:1px solid #d0d7de;vertical-align:top}th{width:11rem;font-weight:600}
code{font:13px ui-monospace,monospace}a{color:#0969da}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}
p.sub{color:#8d96a0}th,td{border-color:#30363d}a{color:#4493f8}}
"""


def render_landing(snapshot: Snapshot, stats: RefreshStats) -> bytes:
    """A small self-contained HTML page; every value is escaped."""
    s = snapshot
    rows = [
        ("Commit", s.commit.value),
        ("Application version", s.app_version),
        ("API version", str(s.api_version)),
        ("Python", s.python.version_string),
        ("Platform", f"{s.platform.system} {s.platform.release} ({s.platform.machine})"),
        ("Host", s.platform.node),
        ("Modules", f"{len(s.modules)} published, {len(s.skipped)} skipped"),
        ("Last refresh", f"{_utc(s.taken_at)} (every {s.refresh_interval_seconds:g} s)"),
        ("Refresh errors", str(stats.errors)),
        ("Server id", s.identity.server_id),
    ]
    table = "\n".join(
        f"<tr><th>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>" for k, v in rows
    )
    version = escape(s.identity.exporter_version)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>status-exporter</title><style>{_STYLE}</style></head>
<body><h1>status-exporter</h1>
<p class="sub">version {version}: what this Python server runs.</p>
<p><a href="metrics">Metrics</a> (Prometheus) &middot;
<a href="api/v1/status/?pretty">Status</a> (JSON) &middot;
<a href="healthz">Health</a> &middot; <a href="readyz">Readiness</a></p>
<table>
{table}
</table>
</body></html>
"""
    return page.encode("utf-8")


def _utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
