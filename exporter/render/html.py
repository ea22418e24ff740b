"""The landing page at ``/``: what this is, the key facts, and where the data is."""

from __future__ import annotations

import base64
import datetime
import hashlib
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
        ("Host", s.published_platform.node),
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


_STATUS_SCRIPT = """
const filter = document.getElementById("filter");
const rows = Array.from(document.querySelectorAll("#modules tbody tr"));
const shown = document.getElementById("shown");
function apply() {
  const q = filter.value.trim().toLowerCase();
  let n = 0;
  for (const row of rows) {
    const hit = !q || row.dataset.key.includes(q);
    row.hidden = !hit;
    if (hit) n++;
  }
  shown.textContent = n + " of " + rows.length;
}
filter.addEventListener("input", apply);
apply();
const up = document.getElementById("uptime");
const started = Date.parse(up.dataset.started);
function tick() {
  let s = Math.max(0, Math.floor((Date.now() - started) / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  up.textContent = (d ? d + "d " : "") + h + "h " + m + "m " + s + "s";
}
tick();
setInterval(tick, 1000);
"""
# The page runs only this script: the CSP names its hash, so nothing injected could run.
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_STATUS_SCRIPT.encode()).digest()).decode()
STATUS_SCRIPT_CSP = (
    f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'"
)

_STATUS_STYLE = (
    _STYLE
    + """
body{max-width:60rem}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.6rem;
margin:1rem 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .8rem}
.card b{display:block;font-size:.8rem;color:#57606a;font-weight:600}
input{font:inherit;padding:.35rem .6rem;width:18rem;border:1px solid #d0d7de;border-radius:6px;
background:transparent;color:inherit}
#modules td{vertical-align:baseline}#modules td:last-child{font:13px ui-monospace,monospace}
@media (prefers-color-scheme:dark){.card,input{border-color:#30363d}.card b{color:#8d96a0}}
"""
)


def render_status_page(
    snapshot: Snapshot, stats: RefreshStats, *, metrics_path: str | None
) -> bytes:
    """The status as a page for people: summary, a filterable module table, links to the data.

    Self-contained (no external assets, works offline); every value is escaped.
    """
    s = snapshot
    started = datetime.datetime.fromtimestamp(s.identity.started_at, tz=datetime.UTC)
    cards = [
        ("Commit", s.commit.value),
        ("API version", str(s.api_version)),
        ("Application version", s.app_version),
        ("Python", f"{s.python.implementation} {s.python.version}"),
        ("Platform", f"{s.platform.system} {s.platform.release} {s.platform.machine}"),
        ("Host", s.published_platform.node),
        ("Last refresh", _utc(s.taken_at)),
        ("Refresh errors", str(stats.errors)),
    ]
    summary = "".join(f'<div class="card"><b>{escape(k)}</b>{escape(v)}</div>' for k, v in cards)
    uptime = (
        f'<div class="card"><b>Uptime</b><span id="uptime" data-started="'
        f'{started.isoformat()}">since {escape(_utc(s.identity.started_at))}</span></div>'
    )
    rows = "\n".join(
        f'<tr data-key="{escape((name + " " + version).lower())}"><td>{escape(name)}</td>'
        f"<td>{escape(version)}</td></tr>"
        for name, version in s.published_modules("json").items()
    )
    metrics_link = (
        f' &middot; <a href="{escape(metrics_path)}">Prometheus metrics</a>' if metrics_path else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Status of {escape(s.published_platform.node)}</title><style>{_STATUS_STYLE}</style></head>
<body><h1>Status of {escape(s.published_platform.node)}</h1>
<p class="sub">{escape(s.python.version_string)}</p>
<p><a href="?format=json">JSON</a> &middot;
<a href="?format=json&amp;pretty">JSON, indented</a>{metrics_link}</p>
<div class="summary">{summary}{uptime}</div>
<h2>Modules <small>(<span id="shown">{len(s.published_modules("json"))}</span>)</small></h2>
<p><label>Filter <input id="filter" type="search" placeholder="name or version"
autocomplete="off"></label></p>
<table id="modules"><thead><tr><th>Module</th><th>Version</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p class="sub">Server id {escape(s.identity.server_id)};
status-exporter {escape(s.identity.exporter_version)}.</p>
<script>{_STATUS_SCRIPT}</script>
</body></html>
"""
    return page.encode("utf-8")
