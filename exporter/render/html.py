"""The landing page at ``/``: what this is, the key facts, and where the data is."""

from __future__ import annotations

import base64
import datetime
import hashlib
from html import escape

from exporter.refresh import RefreshStats
from exporter.snapshot import Snapshot
from exporter.vulnerabilities import Finding, count_by_severity

END_OF_LIFE_WARNING_DAYS = 90

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
    end_of_life = s.python_end_of_life.isoformat() if s.python_end_of_life else None
    findings = _landing_count(s.vulnerabilities) if s.vulnerabilities is not None else None
    optional_rows = [
        ("Commit", s.commit.value),
        ("Application version", s.app_version),
        ("API version", str(s.api_version)),
        ("Python", s.python.version_string),
        ("Python end of life", end_of_life),
        ("Platform", f"{s.platform.system} {s.platform.release} ({s.platform.machine})"),
        ("Host", s.published_platform.node),
        ("Known vulnerabilities", findings),
        ("Modules", f"{len(s.modules)} published, {len(s.skipped)} skipped"),
        ("Last refresh", f"{_utc(s.taken_at)} (every {s.refresh_interval_seconds:g} s)"),
        ("Refresh errors", str(stats.errors)),
        ("Server id", s.identity.server_id),
    ]
    rows = [(k, v) for k, v in optional_rows if v is not None]  # None: not known here
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
<a href="api/v1/status/?format=html">Status page</a> &middot;
<a href="api/v1/sbom">SBOM</a> (CycloneDX) &middot;
<a href="healthz">Health</a> &middot; <a href="readyz">Readiness</a></p>
<table>
{table}
</table>
</body></html>
"""
    return page.encode("utf-8")


def _landing_count(findings: tuple[Finding, ...]) -> str:
    if not findings:
        return "none in the loaded advisories"
    counts = count_by_severity(findings)
    return ", ".join(
        f"{n} of unknown severity" if severity == "unknown" else f"{n} {severity}"
        for severity, n in counts.items()
        if n
    )


def _utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


_STATUS_SCRIPT = """
const filter = document.getElementById("filter");
const vulnerableOnly = document.getElementById("vulnerable-only");
const rows = Array.from(document.querySelectorAll("#modules tbody tr"));
const shown = document.getElementById("shown");
function apply() {
  const q = filter.value.trim().toLowerCase();
  const onlyVulnerable = vulnerableOnly !== null && vulnerableOnly.checked;
  let n = 0;
  for (const row of rows) {
    const hit = (!q || row.dataset.key.includes(q)) &&
      (!onlyVulnerable || row.dataset.vulnerable === "1");
    row.hidden = !hit;
    if (hit) n++;
  }
  shown.textContent = n + " of " + rows.length;
}
filter.addEventListener("input", apply);
if (vulnerableOnly !== null) vulnerableOnly.addEventListener("change", apply);
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
#modules td{vertical-align:baseline}#modules td.v{font:13px ui-monospace,monospace}
.sev{display:inline-block;border-radius:4px;padding:0 .35rem;font-size:.8rem;font-weight:600;
color:#fff;background:#6e7781}.sev-critical{background:#a40e26}.sev-high{background:#cf222e}
.sev-medium{background:#9a6700}.sev-low{background:#0969da}
.finding{display:block;font-size:.9rem}.warn{color:#cf222e;font-weight:600}
input[type=checkbox]{width:auto;margin:0 .3rem 0 1rem}
@media (prefers-color-scheme:dark){.card,input{border-color:#30363d}.card b{color:#8d96a0}
.warn{color:#ff7b72}}
"""
)


def _module_row(name: str, version: str, findings: list[Finding], *, checked: bool) -> str:
    """One module's row; with a database, a cell of its findings, worst first."""
    key = escape((name + " " + version).lower())
    cells = f'<td>{escape(name)}</td><td class="v">{escape(version)}</td>'
    if checked:
        marks = "".join(
            f'<span class="finding"><span class="sev sev-{escape(f.severity)}">'
            f"{escape(f.severity)}</span> {_advisory_link(f)}"
            f"{' fixed in ' + escape(f.fixed) if f.fixed else ' no fix known'}</span>"
            for f in findings
        )
        cells += f"<td>{marks}</td>"
    vulnerable = ' data-vulnerable="1"' if findings else ""
    return f'<tr data-key="{key}"{vulnerable}>{cells}</tr>'


def _advisory_link(finding: Finding) -> str:
    title = escape(finding.summary)
    if finding.url.startswith(("https://", "http://")):
        return f'<a href="{escape(finding.url)}" title="{title}">{escape(finding.id)}</a>'
    return f'<span title="{title}">{escape(finding.id)}</span>'


def _end_of_life_card(s: Snapshot) -> str:
    """The Python's end of life: marked when past or within 90 days."""
    end = s.python_end_of_life
    if end is None:
        return ""
    today = datetime.datetime.fromtimestamp(s.taken_at, tz=datetime.UTC).date()
    days = (end - today).days
    if days < 0:
        note = f'<span class="warn" id="eol-warning">past its end of life ({-days} days)</span>'
    elif days <= END_OF_LIFE_WARNING_DAYS:
        note = f'<span class="warn" id="eol-warning">end of life in {days} days</span>'
    else:
        note = f"in {days} days"
    return f'<div class="card"><b>Python end of life</b>{end.isoformat()}: {note}</div>'


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
    summary += _end_of_life_card(s)
    findings = s.published_vulnerabilities("json")
    by_module: dict[str, list[Finding]] = {}
    for finding in findings or ():
        by_module.setdefault(finding.module, []).append(finding)
    if findings is not None:
        summary += (
            f'<div class="card"><b>Known vulnerabilities</b>{len(findings)} in '
            f"{len(by_module)} modules ({s.advisories.advisories} advisories loaded)</div>"
        )
    uptime = (
        f'<div class="card"><b>Uptime</b><span id="uptime" data-started="'
        f'{started.isoformat()}">since {escape(_utc(s.identity.started_at))}</span></div>'
    )
    rows = "\n".join(
        _module_row(name, version, by_module.get(name, []), checked=findings is not None)
        for name, version in s.published_modules("json").items()
    )
    vulnerability_head = "<th>Known vulnerabilities</th>" if findings is not None else ""
    vulnerable_filter = (
        '<label><input id="vulnerable-only" type="checkbox"> only vulnerable modules</label>'
        if findings is not None
        else ""
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
<a href="?format=json&amp;pretty">JSON, indented</a> &middot;
<a href="/api/v1/sbom">SBOM</a> (CycloneDX){metrics_link}</p>
<div class="summary">{summary}{uptime}</div>
<h2>Modules <small>(<span id="shown">{len(s.published_modules("json"))}</span>)</small></h2>
<p><label>Filter <input id="filter" type="search" placeholder="name or version"
autocomplete="off"></label> {vulnerable_filter}</p>
<table id="modules"><thead><tr><th>Module</th><th>Version</th>{vulnerability_head}</tr></thead>
<tbody>
{rows}
</tbody></table>
<p class="sub">Server id {escape(s.identity.server_id)};
status-exporter {escape(s.identity.exporter_version)}.</p>
<script>{_STATUS_SCRIPT}</script>
</body></html>
"""
    return page.encode("utf-8")
