"""The pages for people: the landing page at ``/`` (what this is, the key facts, where the
data is) and the status page (a summary, and a filterable table of the modules and their
findings)."""

from __future__ import annotations

import base64
import datetime
import hashlib
from html import escape

from exporter.advisories.database import STALE_AFTER_DAYS
from exporter.advisories.matching import (
    Finding,
    VulnerableModule,
    count_by_severity,
    vulnerable_modules,
)
from exporter.host import Host, Target
from exporter.refresh import RefreshStats
from exporter.render.targets import target_urls
from exporter.snapshot import Snapshot

END_OF_LIFE_WARNING_DAYS = 90

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1b1f24;background:#fff}
h1{font-size:1.4rem;margin-bottom:.2rem}p.sub{margin-top:0;color:#57606a}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;
border-bottom:1px solid #d0d7de;vertical-align:top}th{width:11rem;font-weight:600}
code{font:13px ui-monospace,monospace}a{color:#0969da}
td,h1,p,.card{overflow-wrap:anywhere}.warn{color:#cf222e;font-weight:600}
.unit{display:inline-block;max-width:100%}
@media (max-width:30rem){body{margin:1rem auto}th{width:auto}}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}
p.sub{color:#8d96a0}th,td{border-color:#30363d}a{color:#4493f8}.warn{color:#ff7b72}}
"""


def render_landing(snapshot: Snapshot, stats: RefreshStats, host: Host | None = None) -> bytes:
    """A small self-contained HTML page; every value is escaped.

    ``host``, when it has targets, makes it the host's page: a table of the targets (each
    linked to its status page, JSON and SBOM) and a search over every target's modules
    (the one script, :data:`LANDING_SCRIPT_CSP`), above the exporter's own facts. Without
    targets the page is the single environment's, as it always was (and needs no script).
    """
    s = snapshot
    end_of_life = s.python_end_of_life.isoformat() if s.python_end_of_life else None
    optional_rows = [
        ("Commit", s.commit.value),
        ("Application version", s.app_version),
        ("API version", str(s.api_version)),
        ("Python", s.python.version_string),
        ("Python end of life", end_of_life),
        ("Platform", f"{s.platform.system} {s.platform.release} ({s.platform.machine})"),
        ("Host", s.published_platform.node),
    ]
    # Values already escaped (None: not known here, no row).
    cells = [(k, None if v is None else escape(v)) for k, v in optional_rows]
    cells += [
        ("Known vulnerabilities", _vulnerability_count(s, modules_known=False)),
        ("Advisory data", _advisory_data(s)),
    ]
    cells += [
        (k, escape(v))
        for k, v in [
            ("Modules", f"{len(s.modules)} published, {len(s.skipped)} skipped"),
            ("Last refresh", f"{_utc(s.taken_at)} (every {s.refresh_interval_seconds:g} s)"),
            ("Refresh errors", str(stats.errors)),
            ("Server id", s.identity.server_id),
        ]
    ]
    table = "\n".join(
        f"<tr><th>{escape(k)}</th><td><code>{v}</code></td></tr>" for k, v in cells if v is not None
    )
    version = escape(s.identity.exporter_version)
    if host is not None and host.has_targets:
        return _host_landing(host, version, table)
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


# The landing page of a host with targets: "where does module X run, and at which version?"
# The index is fetched once, on the first keystroke, from a relative URL (a proxy's path
# prefix holds); rows are built as text nodes, so no name or version is ever markup.
_LANDING_SCRIPT = """
const box = document.getElementById("module-search");
const found = document.getElementById("where");
const rows = found.tBodies[0];
const note = document.getElementById("where-note");
const hint = note.textContent;
const LIMIT = 200;
let modules = null;
let loading = null;
function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}
function load() {
  if (loading === null) {
    loading = fetch("api/v1/modules", {headers: {Accept: "application/json"}})
      .then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then((index) => { modules = Object.entries(index.modules); });
    loading.catch(() => { loading = null; });
  }
  return loading;
}
function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
function show() {
  const q = box.value.trim().toLowerCase();
  rows.replaceChildren();
  if (!q) {
    found.hidden = true;
    note.textContent = hint;
    return;
  }
  let total = 0;
  let names = 0;
  const targets = new Set();
  for (const [name, runs] of modules) {
    if (!name.toLowerCase().includes(q)) continue;
    names++;
    for (const run of runs) {
      total++;
      targets.add(run.target);
      if (total > LIMIT) continue;
      const row = rows.insertRow();
      cell(row, name);
      cell(row, run.version, "v");
      const link = document.createElement("a");
      link.href = "api/v1/targets/" + encodeURIComponent(run.target) + "/status/?format=html";
      link.textContent = run.target;
      row.insertCell().append(link);
    }
  }
  found.hidden = total === 0;
  if (total === 0) {
    note.textContent = "No module of any target has \\u201c" + q + "\\u201d in its name.";
    return;
  }
  note.textContent = plural(names, "module") + " in " + plural(targets.size, "target") +
    (total > LIMIT ? ": the first " + LIMIT + " of " + total + " rows shown, " +
      (total - LIMIT) + " more; type more of the name to narrow them" : "");
}
box.addEventListener("input", () => {
  if (modules !== null) {
    show();
    return;
  }
  note.textContent = "Loading the module index\\u2026";
  load().then(show, (error) => {
    note.textContent = "The module index could not be loaded (" + error.message +
      "); type again to retry.";
  });
});
"""
_LANDING_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_LANDING_SCRIPT.encode()).digest()).decode()
# The landing page of a host with targets runs only its search, which reads the module index
# from this origin; without targets the page has no script and needs none of this.
LANDING_SCRIPT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_LANDING_SCRIPT_HASH}'; connect-src 'self'"
)

_HOST_STYLE = (
    _STYLE
    + """
body{max-width:62rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
h2 small{font-weight:400;color:#57606a}.muted{color:#57606a}
#targets th,#where th{width:auto}#targets td,#where td{vertical-align:baseline}
#targets tr.failing td{border-bottom:0}#targets td.name>a{font-weight:600}
#targets td.n{font-variant-numeric:tabular-nums}td.v,#targets td.c{font:13px ui-monospace,monospace}
#where{width:auto;min-width:min(100%,34rem)}#where td,#where th{padding-right:1.6rem}
.links{display:block;font-size:.85rem}
.sev{display:inline-block;border-radius:4px;padding:0 .35rem;margin:0 .2rem .1rem 0;
font-size:.8rem;font-weight:600;color:#fff;background:#6e7781;white-space:nowrap}
.sev-critical{background:#a40e26}.sev-high{background:#cf222e}
.sev-medium{background:#9a6700}.sev-low{background:#0969da}
input{font:inherit;padding:.35rem .6rem;width:22rem;max-width:100%;box-sizing:border-box;
border:1px solid #d0d7de;border-radius:6px;background:transparent;color:inherit}
label{display:block;font-weight:600;margin-bottom:.2rem}
@media (max-width:40rem){#targets thead{display:none}
#targets tr{display:block;padding:.4rem 0;border-bottom:1px solid #d0d7de}
#targets tr.failing{border-bottom:0;padding-bottom:0}
#targets td{display:block;border:0;padding:.05rem .2rem}
#targets td[data-label]::before{content:attr(data-label) ": ";color:#57606a;
font:15px/1.5 system-ui,sans-serif}}
@media (prefers-color-scheme:dark){h2 small,.muted,#targets td[data-label]::before{color:#8d96a0}
input,#targets tr{border-color:#30363d}}
"""
)

_SEARCH = """<p><label for="module-search">Module name, or part of it</label>
<input id="module-search" type="search" placeholder="django" autocomplete="off"
spellcheck="false"></p>
<p id="where-note" class="sub" aria-live="polite">Every target that has a matching module, \
and at which version.</p>
<table id="where" hidden><thead><tr><th>Module</th><th>Version</th><th>Target</th></tr>
</thead><tbody></tbody></table>"""
_SEARCH_REDACTED = """<p id="where-note" class="sub">Nothing to search: \
<code>redact.modules</code> hides the module lists from JSON, and with them the module index.</p>"""


def _host_landing(host: Host, version: str, own_table: str) -> bytes:
    """The landing page of a host with targets: the targets, the module search, then the
    exporter's own environment (``own_table``: its rows, already HTML)."""
    node = escape(host.own.published_platform.node)
    rows = "\n".join(_target_rows(t) for t in host.targets)
    n = len(host.targets)
    if host.own.redaction.modules_hidden_from("json"):  # the index is empty: say why
        search, script = _SEARCH_REDACTED, ""
    else:
        search, script = _SEARCH, f"<script>{_LANDING_SCRIPT}</script>\n"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>status-exporter on {node}</title><style>{_HOST_STYLE}</style></head>
<body><h1>status-exporter</h1>
<p class="sub">version {version}: what the Python environments of {node} run.</p>
<p><a href="metrics">Metrics</a> (Prometheus, every target) &middot;
<a href="api/v1/targets">Targets</a> (JSON) &middot;
<a href="api/v1/modules">Module index</a> (JSON) &middot;
<a href="healthz">Health</a> &middot; <a href="readyz">Readiness</a></p>
<h2>Targets <small>({n})</small></h2>
<table id="targets"><thead><tr><th>Target</th><th>Kind</th><th>Python</th><th>Commit</th>
<th>Modules</th><th>Known vulnerabilities</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Where does a module run?</h2>
{search}
<h2>The exporter's own environment, and this host</h2>
<p><a href="api/v1/status/?pretty">Status</a> (JSON) &middot;
<a href="api/v1/status/?format=html">Status page</a> &middot;
<a href="api/v1/sbom">SBOM</a> (CycloneDX)</p>
<table>
{own_table}
</table>
{script}</body></html>
"""
    return page.encode("utf-8")


def _target_rows(target: Target) -> str:
    """A target's row of the table (HTML), and a row for its error when it cannot be read:
    its last good facts stay, said to be of when they were read."""
    name = escape(target.name)
    urls = {k: escape(v.removeprefix("/")) for k, v in target_urls(target.name).items()}
    s = target.snapshot
    failing = target.last_error is not None
    if s is None:  # never read: nothing is served for it yet, so nothing to link
        head = f'<td class="name"><b>{name}</b></td>'
        facts = [("Python", "—"), ("Commit", "—"), ("Modules", "—")]
        findings = '<span class="muted">not read</span>'
    else:
        head = (
            f'<td class="name"><a href="{urls["page_url"]}">{name}</a>'
            f'<span class="links"><a href="{urls["status_url"]}">JSON</a> &middot; '
            f'<a href="{urls["sbom_url"]}">SBOM</a></span></td>'
        )
        python = s.python
        implementation = f"{python.implementation} " if python.implementation != "unknown" else ""
        facts = [
            ("Python", escape(implementation + python.version)),
            ("Commit", escape(s.commit.value)),
            ("Modules", str(len(s.modules))),
        ]
        findings = _target_findings(s)
        if s.process is not None and s.process.restart_required:
            findings += '<br><span class="warn">restart required</span>'
    classes = {"Python": "", "Commit": ' class="c"', "Modules": ' class="n"'}
    cells = "".join(f'<td data-label="{k}"{classes[k]}>{v}</td>' for k, v in facts)
    marked = ' class="failing"' if failing else ""
    row = (
        f'<tr data-target="{name}"{marked}>{head}'
        f'<td data-label="Kind">{escape(target.spec.kind)}</td>{cells}'
        f'<td data-label="Known vulnerabilities">{findings}</td></tr>'
    )
    if not failing:
        return row
    errors = f"{target.errors} refresh{'es' if target.errors != 1 else ''} failed"
    kept = f"; showing its facts of {_utc(s.taken_at)}" if s is not None else "; never read yet"
    problem = f"cannot be read: {target.last_error} ({errors}{kept})"
    return (
        f'{row}\n<tr class="error" data-error="{name}"><td colspan="6">'
        f'<span class="warn">{escape(problem)}</span></td></tr>'
    )


def _target_findings(s: Snapshot) -> str:
    """A target's findings by severity (HTML): "not checked" without a database, the
    problem while none is loaded (never "none" then), and a failing reload said."""
    if not s.advisory_paths:
        return '<span class="muted">not checked</span>'
    problem = s.advisories_problem
    if s.vulnerabilities is None:
        return f'<span class="warn">{escape(problem or "advisories not loaded")}</span>'
    counts = count_by_severity(s.vulnerabilities)
    badges = " ".join(
        f'<span class="sev sev-{severity}">{n} '
        f"{'of unknown severity' if severity == 'unknown' else severity}</span>"
        for severity, n in counts.items()
        if n
    )
    html = badges or "none known"
    if problem is not None:
        html += f'<br><span class="warn">{escape(problem)}</span>'
    return html


def _vulnerability_count(s: Snapshot, *, modules_known: bool) -> str | None:
    """The findings counted (HTML): a warning while no database is loaded, never "none"
    then; None when no database is configured."""
    if not s.advisory_paths:
        return None
    if s.vulnerabilities is None:  # configured, but nothing checked yet
        problem = s.advisories_problem or "advisories not loaded"
        return f'<span class="warn" id="advisories-problem">{escape(problem)}</span>'
    findings = s.vulnerabilities
    if not findings:
        return "none in the loaded advisories"
    counts = _landing_count(findings)
    if not modules_known:
        return escape(counts)
    modules = len({f.module for f in findings})
    return escape(f"{len(findings)} in {modules} module{'s' if modules != 1 else ''} ({counts})")


def _advisory_data(s: Snapshot) -> str | None:
    """How much advisory data is in force and how old (HTML), marked when stale; and since
    when reloads fail, when they do. None when none is configured or loaded."""
    db = s.advisories
    if not s.advisory_paths or not db.loaded:
        return None
    text = f"{db.advisories} advisories loaded"
    if db.skipped:
        text += f" ({db.skipped} record{'s' if db.skipped != 1 else ''} skipped)"
    if db.newest_modified is None:
        newest = "no advisory carries a date"
    else:
        days = max(0, int((s.taken_at - db.newest_modified) // 86400))
        age = f"{days} day{'s' if days != 1 else ''} old"
        newest = f"newest advisory {_token(_date(db.newest_modified))}, {age}"
    if s.advisories_stale:
        newest = (
            f'<span class="warn" id="advisories-stale">{newest}: stale '
            f"(older than {STALE_AFTER_DAYS} days)</span>"
        )
    html = f"{escape(text)}; {newest}"
    if db.last_error is not None and db.loaded_at is not None:
        since = f" since {_utc(db.failing_since)}" if db.failing_since is not None else ""
        failing = (
            f"advisory data from {_utc(db.loaded_at)}; reloads failing{since}: {db.last_error}"
        )
        html += f'<br><span class="warn" id="advisories-problem">{escape(failing)}</span>'
    return html


def _landing_count(findings: tuple[Finding, ...]) -> str:
    counts = count_by_severity(findings)
    return ", ".join(
        f"{n} of unknown severity" if severity == "unknown" else f"{n} {severity}"
        for severity, n in counts.items()
        if n
    )


def _utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _date(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).date().isoformat()


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
margin:1rem 0;grid-auto-flow:dense}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .8rem}
.card b{display:block;font-size:.8rem;color:#57606a;font-weight:600}.card.wide{grid-column:span 2}
.card.full{grid-column:1/-1}
input{font:inherit;padding:.35rem .6rem;width:20rem;max-width:100%;box-sizing:border-box;
border:1px solid #d0d7de;border-radius:6px;background:transparent;color:inherit}
#modules th{width:auto}#modules th:nth-child(3){width:60%}
#modules td{vertical-align:baseline}#modules td.v{font:13px ui-monospace,monospace}
.sev{display:inline-block;border-radius:4px;padding:0 .35rem;font-size:.8rem;font-weight:600;
color:#fff;background:#6e7781}.sev-critical{background:#a40e26}.sev-high{background:#cf222e}
.sev-medium{background:#9a6700}.sev-low{background:#0969da}
summary{cursor:pointer}ul.findings{margin:.3rem 0 .2rem;padding-left:1.2rem;font-size:.9rem}
ul.findings li{margin:.15rem 0}.aliases{color:#57606a;font-size:.85rem}
label{display:inline-block}
input[type=checkbox]{width:auto;margin:0 .3rem 0 1rem}
@media (max-width:40rem){.summary{grid-template-columns:repeat(auto-fit,minmax(9.5rem,1fr))}
.card.wide{grid-column:1/-1}#modules thead{display:none}
#modules tr{display:grid;grid-template-columns:1fr auto;column-gap:.6rem;padding:.3rem 0;
border-bottom:1px solid #d0d7de}#modules tr[hidden]{display:none}
#modules td{display:block;border:0;padding:0 .2rem}#modules td.f{grid-column:1/-1}
input[type=checkbox]{margin-left:0}label.filter{display:flex;gap:.4rem;align-items:center;
margin-bottom:.3rem}#filter{flex:1;width:auto}}
@media (prefers-color-scheme:dark){.card,input,#modules tr{border-color:#30363d}
.card b,.aliases{color:#8d96a0}}
"""
)


def _module_row(
    name: str, version: str, vulnerable: VulnerableModule | None, *, checked: bool
) -> str:
    """One module's row; with a database, a cell of its findings: a summary (worst severity,
    how many, the one upgrade) that opens to each finding, worst first."""
    words = [name, version]
    cells = f'<td>{escape(name)}</td><td class="v">{escape(version)}</td>'
    if checked:
        cells += f'<td class="f">{_findings_cell(vulnerable) if vulnerable else ""}</td>'
    if vulnerable:
        for f in vulnerable.findings:
            words += [f.id, *f.aliases, f.severity]
    key = escape(" ".join(dict.fromkeys(w.lower() for w in words)))
    flag = ' data-vulnerable="1"' if vulnerable else ""
    return f'<tr data-key="{key}"{flag}>{cells}</tr>'


def _findings_cell(m: VulnerableModule) -> str:
    """A module's findings: a summary line that a native <details> opens to the list."""
    n = len(m.findings)
    fix = _token(f"upgrade to {m.fixed}") if m.fixed else "no single fix known"
    items = "".join(
        f"<li>{_badge(f.severity)} {_advisory_link(f)} "
        f"{_token('fixed in ' + f.fixed) if f.fixed else _token('no fix known')}"
        + (
            f' <span class="aliases">{", ".join(map(_token, f.aliases))}</span>'
            if f.aliases
            else ""
        )
        + "</li>"
        for f in m.findings
    )
    return (
        f"<details><summary>{_badge(m.severity)} {n} finding{'s' if n != 1 else ''}: "
        f'{fix}</summary><ul class="findings">{items}</ul></details>'
    )


def _token(text: str) -> str:
    """Text kept on one line when it fits one (CSS ``.unit``): wrapped only if longer."""
    return f'<span class="unit">{escape(text)}</span>'


def _badge(severity: str) -> str:
    return f'<span class="sev sev-{escape(severity)}">{escape(severity)}</span>'


def _advisory_link(finding: Finding) -> str:
    title = escape(finding.summary)
    if finding.url.startswith(("https://", "http://")):
        return (
            f'<a class="unit" href="{escape(finding.url)}" title="{title}">{escape(finding.id)}</a>'
        )
    return f'<span class="unit" title="{title}">{escape(finding.id)}</span>'


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


def _restart_card(s: Snapshot) -> str:
    """A discovered target's processes: how many, since when, and whether (and why) they
    need a restart; nothing for any other environment."""
    p = s.process
    if p is None:
        return ""
    plural = "es" if p.processes != 1 else ""
    head = f"{p.processes} process{plural}, the oldest started {escape(_utc(p.started_at))}"
    if not p.restart_required:
        return f'<div class="card full"><b>Processes</b>{head}; no restart needed</div>'
    causes = [
        f"{escape(module)} {escape(version or '')} {escape(change)}".replace("  ", " ")
        for module, version, change in p.changed
    ] + [f"{escape(path)} {escape(reason)}" for path, reason in p.stale]
    items = "".join(f"<li>{c}</li>" for c in causes)
    return (
        f'<div class="card full" id="restart"><b>Processes</b>{head}; '
        f'<span class="warn" id="restart-required">restart required</span>: what they run '
        f"changed on disk since they started<ul>{items}</ul></div>"
    )


def render_status_page(
    snapshot: Snapshot,
    stats: RefreshStats,
    *,
    metrics_path: str | None,
    sbom_path: str = "/api/v1/sbom",
    title: str | None = None,
) -> bytes:
    """The status as a page for people: summary, a filterable module table, links to the data.

    Self-contained (no external assets, works offline); every value is escaped. A target's
    page names its own SBOM (``sbom_path``) and says whose it is (``title``).
    """
    s = snapshot
    heading = escape(title or f"Status of {s.published_platform.node}")
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
    summary += _restart_card(s)
    summary += (
        f'<div class="card"><b>Uptime</b><span id="uptime" data-started="'
        f'{started.isoformat()}">since {escape(_utc(s.identity.started_at))}</span></div>'
    )
    modules = s.published_modules("json")
    findings = s.published_vulnerabilities("json")
    count = _vulnerability_count(s, modules_known=bool(modules))
    # The advisory cards come last: the count twice as wide, the data on a row of its own.
    if count is not None:
        summary += f'<div class="card wide"><b>Known vulnerabilities</b>{count}</div>'
    advisory_data = _advisory_data(s)
    if advisory_data is not None:
        summary += f'<div class="card full"><b>Advisory data</b>{advisory_data}</div>'
    by_module = {m.module: m for m in vulnerable_modules(findings or ())}
    rows = "\n".join(
        _module_row(name, version, by_module.get(name), checked=findings is not None)
        for name, version in modules.items()
    )
    vulnerability_head = "<th>Known vulnerabilities</th>" if findings is not None else ""
    vulnerable_filter = (
        '<label><input id="vulnerable-only" type="checkbox"> only vulnerable modules</label>'
        if findings is not None
        else ""
    )
    placeholder = (
        "name, version, advisory or severity" if findings is not None else "name or version"
    )
    metrics_link = (
        f' &middot; <a href="{escape(metrics_path)}">Prometheus metrics</a>' if metrics_path else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{heading}</title><style>{_STATUS_STYLE}</style></head>
<body><h1>{heading}</h1>
<p class="sub">{escape(s.python.version_string)}</p>
<p><a href="?format=json">JSON</a> &middot;
<a href="?format=json&amp;pretty">JSON, indented</a> &middot;
<a href="{escape(sbom_path)}">SBOM</a> (CycloneDX){metrics_link}</p>
<div class="summary">{summary}</div>
<h2>Modules <small>(<span id="shown">{len(modules)}</span>)</small></h2>
<p><label class="filter">Filter <input id="filter" type="search" placeholder="{placeholder}"
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
