"""The landing page of a host with targets: a table of the targets, each linked to its
documents, and a search that says where a module runs and at which version. Without
targets the landing page is, byte for byte, what it was before targets existed."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from browser import ARTIFACTS, Browser, readme_screenshot
from support import FakeEnvironment, StartClient, make_config, quiet_sources, tool
from test_pages_advisories import copy_records

from exporter.advisories.database import AdvisoryDatabase
from exporter.advisories.matching import Finding
from exporter.collectors.commit import Commit
from exporter.collectors.platform import PlatformInfo
from exporter.collectors.python import PythonInfo
from exporter.config import AppConfig, TargetCommitConfig
from exporter.host import Host, Target, take_host
from exporter.refresh import RefreshStats
from exporter.render.html import LANDING_SCRIPT_CSP, render_landing
from exporter.render.pages import render_pages
from exporter.render.targets import target_urls
from exporter.snapshot import Identity, Snapshot
from exporter.sources.environments import KIND_ENVIRONMENT, TargetSpec

TAKEN_AT = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
WARN_RED = "rgb(207, 34, 46)"  # .warn in the light theme
NO_SCRIPT_CSP = "default-src 'none'; style-src 'unsafe-inline'"  # the page without targets
SEARCH_ROWS = (
    "[...document.querySelectorAll('#where tbody tr')]"
    ".map(r => [...r.cells].map(c => c.textContent))"
)
MODULE_FETCHES = (
    "performance.getEntriesByType('resource')"
    ".filter(e => new URL(e.name).pathname === '/api/v1/modules').length"
)
WIDTH = "document.documentElement.scrollWidth"

# The landing page of fixed_snapshot(), as rendered before the targets table and the module
# search were added: a host without targets must still be served exactly this.
GOLDEN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>status-exporter</title><style>
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
</style></head>
<body><h1>status-exporter</h1>
<p class="sub">version 1.2.3: what this Python server runs.</p>
<p><a href="metrics">Metrics</a> (Prometheus) &middot;
<a href="api/v1/status/?pretty">Status</a> (JSON) &middot;
<a href="api/v1/status/?format=html">Status page</a> &middot;
<a href="api/v1/sbom">SBOM</a> (CycloneDX) &middot;
<a href="healthz">Health</a> &middot; <a href="readyz">Readiness</a></p>
<table>
<tr><th>Commit</th><td><code>&lt;img src=x&gt;</code></td></tr>
<tr><th>Application version</th><td><code>2.0</code></td></tr>
<tr><th>API version</th><td><code>1</code></td></tr>
<tr><th>Python</th><td><code>3.12.1 (main)</code></td></tr>
<tr><th>Python end of life</th><td><code>2028-10-31</code></td></tr>
<tr><th>Platform</th><td><code>Linux 6.1.0 (x86_64)</code></td></tr>
<tr><th>Host</th><td><code>web-1</code></td></tr>
<tr><th>Known vulnerabilities</th><td><code>1 high</code></td></tr>
<tr><th>Advisory data</th><td><code>7 advisories loaded; newest advisory <span class="unit">2025-12-29</span>, 3 days old</code></td></tr>
<tr><th>Modules</th><td><code>2 published, 0 skipped</code></td></tr>
<tr><th>Last refresh</th><td><code>2026-01-01 00:00:00 UTC (every 15 s)</code></td></tr>
<tr><th>Refresh errors</th><td><code>2</code></td></tr>
<tr><th>Server id</th><td><code>6f1c8a52-0000-4000-8000-000000000001</code></td></tr>
</table>
</body></html>
"""  # noqa: E501 (the page as it is served)


def fixed_snapshot() -> Snapshot:
    """A snapshot with every fact fixed (and a commit that looks like markup), so that its
    landing page is the same bytes on every machine."""
    finding = Finding("django", "3.2", "PYSEC-2021-1", (), "high", "3.2.1", "s", "https://x", None)
    return Snapshot(
        identity=Identity("6f1c8a52-0000-4000-8000-000000000001", TAKEN_AT - 3600, "1.2.3"),
        api_version=1,
        app_version="2.0",
        commit=Commit("<img src=x>", "config"),
        platform=PlatformInfo("Linux", "web-1", "6.1.0", "#1", "x86_64", "x86_64"),
        python=PythonInfo("3.12.1 (main)", "CPython", "3", "12", "1", "3.12.1"),
        modules={"django": "3.2", "six": "1.16.0"},
        skipped=(),
        refresh_interval_seconds=15.0,
        taken_at=TAKEN_AT,
        python_end_of_life=datetime.date(2028, 10, 31),
        vulnerabilities=(finding,),
        advisories=AdvisoryDatabase(
            advisories=7, newest_modified=TAKEN_AT - 86400 * 3, loaded_at=TAKEN_AT
        ),
        advisory_paths=("/srv/osv",),
    )


def spec(name: str) -> TargetSpec:
    return TargetSpec(name, KIND_ENVIRONMENT, (f"/srv/{name}",), TargetCommitConfig(), AppConfig())


class _Rows(HTMLParser):
    """The body rows of the table with id ``table``: attributes, cell texts, link targets."""

    def __init__(self, page: bytes, table: str) -> None:
        super().__init__()
        self._table, self._inside, self._in_cell = table, False, False
        self.rows: list[dict[str, Any]] = []
        self.feed(page.decode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._inside = attributes.get("id") == self._table
        elif self._inside and tag == "tr":
            self.rows.append({"attrs": attributes, "cells": [], "links": [], "warn": []})
        elif self._inside and tag == "td":
            self.rows[-1]["cells"].append("")
            self._in_cell = True
        elif self._inside and tag == "a":
            self.rows[-1]["links"].append(attributes["href"])
        elif self._inside and tag == "span" and attributes.get("class") == "warn":
            self.rows[-1]["warn"].append(len(self.rows[-1]["cells"]) - 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._inside = False
        if tag in ("td", "tr", "table"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1]["cells"][-1] += data

    def by(self, attribute: str) -> dict[str, dict[str, Any]]:
        """The rows that carry ``attribute``, by its value."""
        return {r["attrs"][attribute]: r for r in self.rows if attribute in r["attrs"]}


def page_scripts(page: bytes) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", page.decode(), re.S)


def script_hash(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


# --- rendered pages ------------------------------------------------------------------------


def test_without_targets_the_landing_page_is_unchanged_byte_for_byte() -> None:
    """With no host, with a host of no targets, and through render_pages as the daemon
    renders it, the landing page is exactly the page of before the targets: no script."""
    snapshot, stats = fixed_snapshot(), RefreshStats(errors=2)
    assert render_landing(snapshot, stats) == GOLDEN.encode()
    assert render_landing(snapshot, stats, Host.of(snapshot)) == GOLDEN.encode()
    assert render_pages(Host.of(snapshot), stats, None).landing == GOLDEN.encode()
    assert "<script" not in GOLDEN


def test_the_table_lists_each_target_with_its_facts_and_links(tmp_path: Path) -> None:
    """Each target in configured order: its name linked to its status page, its JSON and
    SBOM linked (relative, so a proxy's path prefix holds), kind, Python, commit, module
    count and findings by severity; "not checked" where no database is configured."""
    web = FakeEnvironment(tmp_path / "web" / "lib" / "python3.12" / "site-packages")
    web.install("aiohttp", "3.7.3")  # PYSEC-2021-76, medium
    web.install("six", "1.16.0")
    worker = FakeEnvironment(tmp_path / "worker")
    worker.install("six", "1.16.0")
    environments = [
        {"name": "web", "paths": [str(web.path)], "commit": {"value": "a1b2c3d"}},
        {"name": "worker", "paths": [str(worker.path)]},
    ]
    records = copy_records(tmp_path / "records", modified=time.time() - 3600)
    checked = make_config(
        targets={"environments": environments}, advisories={"paths": [str(records)]}
    )
    host = take_host(checked, Identity.new(), sources=quiet_sources())
    page = render_landing(host.own, RefreshStats(), host)
    table = _Rows(page, "targets")
    assert list(table.by("data-target")) == ["web", "worker"]
    rows = table.by("data-target")
    assert rows["web"]["cells"][1:] == ["environment", "CPython 3.12", "a1b2c3d", "2", "1 medium"]
    assert rows["worker"]["cells"][1:] == ["environment", "unknown", "unknown", "1", "none known"]
    for name, row in rows.items():
        assert row["cells"][0] == f"{name}JSON · SBOM"
        urls = target_urls(name)
        wanted = [urls["page_url"], urls["status_url"], urls["sbom_url"]]
        assert [urlsplit(urljoin("http://h/", link)) for link in row["links"]] == [
            urlsplit("http://h" + url) for url in wanted
        ]
        behind_a_proxy = [urljoin("http://h/exporter/", link) for link in row["links"]]
        assert behind_a_proxy == ["http://h/exporter" + url for url in wanted]
    assert not table.by("data-error")  # every target was read
    unchecked = make_config(targets={"environments": environments})
    host = take_host(unchecked, Identity.new(), sources=quiet_sources())
    rows = _Rows(render_landing(host.own, RefreshStats(), host), "targets").by("data-target")
    assert [row["cells"][-1] for row in rows.values()] == ["not checked", "not checked"]


def test_a_hostile_target_error_and_name_are_escaped_and_marked_as_warnings() -> None:
    """An error (and even a name) that looks like markup is text: its own row says it in the
    warning style, with how many refreshes failed and whether older facts are shown; a
    target never read links to nothing. The page's one script is the one the CSP allows."""
    snapshot = fixed_snapshot()
    hostile = '<script>alert(1)</script> "&" <img src=x onerror=alert(2)>'
    host = Host(
        own=snapshot,
        targets=(
            Target(spec('<b>"evil&'), None, errors=3, last_error=hostile),
            Target(spec("web"), snapshot, errors=1, last_error="/srv/web: <i>gone</i>"),
        ),
    )
    page = render_landing(snapshot, RefreshStats(), host)
    text = page.decode()
    for markup in ("<script>alert", "<img src=x", "<i>gone", '<b>"evil', "<b>&quot;evil"):
        assert markup not in text
    table = _Rows(page, "targets")
    assert list(table.by("data-target")) == ['<b>"evil&', "web"]
    never, later = table.by("data-error")['<b>"evil&'], table.by("data-error")["web"]
    assert never["cells"] == [f"cannot be read: {hostile} (3 refreshes failed; never read yet)"]
    assert never["warn"] == [0]
    assert later["cells"] == [
        "cannot be read: /srv/web: <i>gone</i> "
        "(1 refresh failed; showing its facts of 2026-01-01 00:00:00 UTC)"
    ]
    assert later["warn"] == [0]
    rows = table.by("data-target")
    assert rows['<b>"evil&']["links"] == []  # nothing is served for it yet
    assert rows['<b>"evil&']["cells"][1:] == ["environment", "—", "—", "—", "not read"]
    assert rows["web"]["links"][0] == "api/v1/targets/web/status/?format=html"
    (script,) = page_scripts(page)
    assert f"script-src 'sha256-{script_hash(script)}'" in LANDING_SCRIPT_CSP
    assert 'fetch("api/v1/modules"' in script  # relative: a proxy's path prefix holds
    assert "innerHTML" not in script  # rows are text nodes: no module name becomes markup


def test_findings_are_never_none_while_the_advisories_are_not_loaded(tmp_path: Path) -> None:
    """A database that never loaded says so, in the warning style, where a target's
    findings would be; one whose reload fails keeps its findings and says so too."""
    web = FakeEnvironment(tmp_path / "web")
    web.install("aiohttp", "3.7.3")
    missing = tmp_path / "osv.zip"
    config = make_config(
        targets={"environments": [{"name": "web", "paths": [str(web.path)]}]},
        advisories={"paths": [str(missing)]},
    )
    host = take_host(config, Identity.new(), sources=quiet_sources())
    row = _Rows(render_landing(host.own, RefreshStats(), host), "targets").by("data-target")["web"]
    assert row["cells"][-1] == f"advisories not loaded: {missing}: no such file or directory"
    assert row["warn"] == [5]
    failing = dataclasses.replace(
        fixed_snapshot(),
        vulnerabilities=(),
        advisories=AdvisoryDatabase(
            advisories=7, loaded_at=TAKEN_AT, last_error="osv.zip: truncated"
        ),
    )
    host = Host(own=failing, targets=(Target(spec("web"), failing),))
    row = _Rows(render_landing(failing, RefreshStats(), host), "targets").by("data-target")["web"]
    assert row["cells"][-1] == "none knownadvisories not reloaded: osv.zip: truncated"
    assert row["warn"] == [5]


@pytest.mark.parametrize("redacted", ["none", "metrics", "json", "both"])
def test_modules_redacted_from_json_leave_nothing_to_search_and_the_page_says_so(
    tmp_path: Path, redacted: str
) -> None:
    """With ``redact.modules`` hiding the modules from JSON the module index is empty: the
    page says why instead of offering a search that finds nothing (and runs no script);
    the targets and their module counts stay. Hidden from the metrics only, it searches."""
    env = FakeEnvironment(tmp_path / "web")
    env.install("six", "1.16.0")
    config = make_config(
        targets={"environments": [{"name": "web", "paths": [str(env.path)]}]},
        redact={"modules": redacted},
    )
    host = take_host(config, Identity.new(), sources=quiet_sources())
    page = render_landing(host.own, RefreshStats(), host)
    hidden = redacted in ("json", "both")
    assert ("hides the module lists from JSON" in page.decode()) is hidden
    assert (b'id="module-search"' in page) is not hidden
    assert len(page_scripts(page)) == (0 if hidden else 1)
    assert _Rows(page, "targets").by("data-target")["web"]["cells"][4] == "1"


# --- a real daemon, a real browser -------------------------------------------------------------


def three_targets(tmp_path: Path) -> tuple[dict[str, object], ...]:
    """Three environments that share some modules at different versions."""
    installs = {
        "web": (
            "3.12",
            [
                ("django", "4.2.1"),
                ("django-filter", "23.5"),
                ("requests", "2.31.0"),
                ("gunicorn", "21.2.0"),
                ("urllib3", "2.2.1"),
                ("aiohttp", "3.7.3"),
            ],
        ),
        "worker": (
            "3.11",
            [
                ("celery", "5.3.6"),
                ("django", "3.2"),
                ("kombu", "5.3.4"),
                ("requests", "2.28.0"),
                ("urllib3", "1.26.18"),
            ],
        ),
        "reports": (
            "3.9",
            [
                ("numpy", "1.26.2"),
                ("pandas", "2.1.4"),
                ("requests", "2.31.0"),
                ("urllib3", "2.2.1"),
            ],
        ),
    }
    environments: list[dict[str, object]] = []
    for name, (python, modules) in installs.items():
        env = FakeEnvironment(tmp_path / name / "lib" / f"python{python}" / "site-packages")
        for module, version in modules:
            env.install(module, version)
        environments.append({"name": name, "paths": [str(env.path)]})
    environments[0]["commit"] = {"value": "4f9c2e1"}
    environments[1]["commit"] = {"value": "b71d0a3"}
    return tuple(environments)


async def search(browser: Browser, text: str, rows: list[list[str]]) -> None:
    """Type ``text`` into the module search (replacing what is there) and wait, bounded,
    until the results are ``rows`` (module, version, target)."""
    await browser.evaluate("document.getElementById('module-search').value = ''")
    await browser.type_into("#module-search", text)
    deadline = time.monotonic() + 10
    while (shown := await browser.evaluate(SEARCH_ROWS)) != rows:
        assert time.monotonic() < deadline, f"searching {text!r}: {shown}"
        await asyncio.sleep(0.05)


async def follow(browser: Browser, selector: str) -> None:
    """Click a link as a person would and wait until the page it opens has loaded."""
    before = await browser.evaluate("location.href")
    await browser.click(selector)
    deadline = time.monotonic() + 10
    while await browser.evaluate("location.href") == before or (
        await browser.evaluate("document.readyState") != "complete"
    ):
        assert time.monotonic() < deadline, f"{selector} opened nothing"
        await asyncio.sleep(0.05)


async def screenshot_down_to(browser: Browser, selector: str, path: Path) -> None:
    """Save a PNG of the page from its top down to just below ``selector``, the viewport
    made as tall as the page first so that no scrollbar shows."""
    height = await browser.evaluate("document.documentElement.scrollHeight")
    await browser.set_viewport(1000, height)
    bottom = await browser.evaluate(
        f"document.querySelector({selector!r}).getBoundingClientRect().bottom + scrollY"
    )
    clip = {"x": 0, "y": 0, "width": 1000, "height": int(bottom) + 24, "scale": 1}
    result = await browser.send("Page.captureScreenshot", format="png", clip=clip)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(result["data"]))


async def test_the_landing_header_allows_the_search_only_when_there_are_targets(
    tmp_path: Path, start_client: StartClient
) -> None:
    """``/`` with targets sends the CSP that lets its search script run and fetch the
    module index from this origin; without targets it sends the no-script policy as before."""
    env = FakeEnvironment(tmp_path / "web")
    env.install("six", "1.16.0")
    config = make_config(targets={"environments": [{"name": "web", "paths": [str(env.path)]}]})
    with_targets = await (await start_client(config)).get("/")
    assert with_targets.headers["Content-Security-Policy"] == LANDING_SCRIPT_CSP
    assert "connect-src 'self'" in LANDING_SCRIPT_CSP
    (script,) = page_scripts(await with_targets.read())
    assert f"'sha256-{script_hash(script)}'" in LANDING_SCRIPT_CSP
    without = await (await start_client(make_config(modules={"paths": [str(env.path)]}))).get("/")
    assert without.headers["Content-Security-Policy"] == NO_SCRIPT_CSP
    assert page_scripts(await without.read()) == []


async def test_the_search_says_where_a_module_runs_in_a_real_browser(
    tmp_path: Path, start_client: StartClient
) -> None:
    """In Chromium: the table shows each target; typing part of a module's name (any case)
    lists every (module, version, target) across the targets, the index fetched once and
    only on the first keystroke; a target's link opens its status page; nothing scrolls
    sideways at 390 pixels."""
    chromium = tool("chromium")
    records = copy_records(tmp_path / "records", modified=time.time() - 3600)
    config = make_config(
        targets={"environments": list(three_targets(tmp_path))},
        advisories={"paths": [str(records)]},
    )
    client = await start_client(config)
    async with Browser(chromium) as browser:
        await browser.open(str(client.make_url("/")))
        targets = await browser.evaluate(
            "[...document.querySelectorAll('#targets tr[data-target]')]"
            ".map(r => [...r.cells].slice(1, 5).map(c => c.textContent))"
        )
        assert targets == [
            ["environment", "CPython 3.12", "4f9c2e1", "6"],
            ["environment", "CPython 3.11", "b71d0a3", "5"],
            ["environment", "CPython 3.9", "unknown", "4"],
        ]
        assert await browser.evaluate(MODULE_FETCHES) == 0  # nothing fetched before a search
        await search(
            browser,
            "REQ",
            [
                ["requests", "2.31.0", "web"],
                ["requests", "2.28.0", "worker"],
                ["requests", "2.31.0", "reports"],
            ],
        )
        note = "document.getElementById('where-note').textContent"
        assert await browser.evaluate(note) == "1 module in 3 targets"
        await search(
            browser,
            "djan",
            [
                ["django", "4.2.1", "web"],
                ["django", "3.2", "worker"],
                ["django-filter", "23.5", "web"],
            ],
        )
        assert await browser.evaluate(note) == "2 modules in 2 targets"
        await search(browser, "zzz", [])
        assert await browser.evaluate(note) == "No module of any target has “zzz” in its name."
        assert await browser.evaluate("document.getElementById('where').hidden") is True
        await search(browser, " ", [])  # cleared: the hint again
        assert (await browser.evaluate(note)).startswith("Every target that has")
        assert await browser.evaluate(MODULE_FETCHES) == 1
        await browser.set_viewport(390, 844, mobile=True, scale=2)
        await search(
            browser,
            "urllib3",
            [
                ["urllib3", "2.2.1", "web"],
                ["urllib3", "1.26.18", "worker"],
                ["urllib3", "2.2.1", "reports"],
            ],
        )
        assert await browser.evaluate("window.innerWidth") == 390
        assert await browser.evaluate(WIDTH) <= 390
        await browser.screenshot(ARTIFACTS / "landing-targets-phone.png", full_page=True)
        await browser.set_viewport(1000, 760)
        await search(
            browser,
            "requests",
            [
                ["requests", "2.31.0", "web"],
                ["requests", "2.28.0", "worker"],
                ["requests", "2.31.0", "reports"],
            ],
        )
        await browser.evaluate("document.activeElement.blur()")
        await screenshot_down_to(browser, "#where", readme_screenshot("landing-targets.png"))
        await follow(browser, "#where tbody tr:nth-child(2) a")  # worker, from the search
        assert await browser.evaluate("location.pathname + location.search") == (
            "/api/v1/targets/worker/status/?format=html"
        )
        assert (await browser.evaluate("document.querySelector('h1').textContent")).startswith(
            "worker on "
        )
        modules = (
            "[...document.querySelectorAll('#modules tbody tr')].map(r => r.cells[0].textContent)"
        )
        assert await browser.evaluate(modules) == [
            "celery",
            "django",
            "kombu",
            "requests",
            "urllib3",
        ]
        await browser.open(str(client.make_url("/")))
        await follow(browser, "#targets tr[data-target='reports'] td.name > a")  # from the table
        assert (await browser.evaluate("document.querySelector('h1').textContent")).startswith(
            "reports on "
        )


async def test_the_search_shows_at_most_200_rows_and_counts_the_rest(
    tmp_path: Path, start_client: StartClient
) -> None:
    """240 matching rows: the first 200 are shown and the rest counted; a narrower search
    shows all of its rows. A target that cannot be read is a warning row, and the page
    still fits 390 pixels."""
    chromium = tool("chromium")
    environments: list[dict[str, object]] = []
    for name in ("blue", "green"):
        env = FakeEnvironment(tmp_path / name)
        for n in range(120):
            env.install(f"pkg-{n:03}", f"1.{n}")
        environments.append({"name": name, "paths": [str(env.path)]})
    missing = tmp_path / "a" / "directory" / "that" / "was" / "never" / "there" / "site-packages"
    environments.append({"name": "gone", "paths": [str(missing)]})
    client = await start_client(make_config(targets={"environments": environments}))
    rows = "document.querySelectorAll('#where tbody tr').length"
    note = "document.getElementById('where-note').textContent"
    async with Browser(chromium) as browser:
        await browser.set_viewport(390, 844, mobile=True, scale=2)
        await browser.open(str(client.make_url("/")))
        error = "document.querySelector('#targets tr[data-error=gone] .warn')"
        assert (await browser.evaluate(f"{error}.textContent")).startswith(
            f"cannot be read: {missing}"
        )
        assert await browser.evaluate(f"getComputedStyle({error}).color") == WARN_RED
        assert await browser.evaluate(WIDTH) <= 390
        await browser.type_into("#module-search", "PKG")
        deadline = time.monotonic() + 10
        while await browser.evaluate(rows) != 200:
            assert time.monotonic() < deadline, await browser.evaluate(note)
            await asyncio.sleep(0.05)
        assert await browser.evaluate(note) == (
            "120 modules in 2 targets: the first 200 of 240 rows shown, 40 more;"
            " type more of the name to narrow them"
        )
        assert await browser.evaluate(WIDTH) <= 390
        await search(
            browser,
            "pkg-11",
            [
                [f"pkg-{n}", f"1.{n}", target]
                for n in range(110, 120)
                for target in ("blue", "green")
            ],
        )
        assert await browser.evaluate(note) == "10 modules in 2 targets"
        await browser.send(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": "dark"}],
        )
        label = "getComputedStyle(document.querySelector('#targets td[data-label]'), '::before')"
        assert await browser.evaluate(f"{label}.content") == '"Kind: "'  # labelled cells
        assert await browser.evaluate(f"{label}.color") == "rgb(141, 150, 160)"  # dark, legible
        await browser.screenshot(ARTIFACTS / "landing-targets-phone-dark.png", full_page=True)
