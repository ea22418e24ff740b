"""The status page for people: content negotiation, escaping, and a real browser."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time

from browser import ARTIFACTS, Browser, readme_screenshot
from support import env_config, tool
from test_pages_advisories import copy_records, install_vulnerable

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_browsers_get_html_and_everything_else_gets_the_same_json(fake_env, start_client):
    """A browser's Accept gets HTML; curl, */* and JSON clients get byte-identical JSON."""
    fake_env.install("django", "4.2.1")
    client = await start_client(env_config(fake_env))
    plain = await (await client.get("/api/v1/status/")).read()
    for accept in ("*/*", "application/json", "application/json, text/html", "text/*"):
        response = await client.get("/api/v1/status/", headers={"Accept": accept})
        assert response.content_type == "application/json", accept
        assert await response.read() == plain, accept
    page = await client.get("/api/v1/status/", headers={"Accept": BROWSER_ACCEPT})
    assert page.content_type == "text/html"
    assert page.headers["Vary"] == "Accept"
    assert "django" in await page.text()


async def test_format_parameter_overrides_accept(fake_env, start_client):
    """?format=json and ?format=html choose outright; an unknown format is a 400."""
    client = await start_client(env_config(fake_env))
    as_json = await client.get("/api/v1/status/?format=json", headers={"Accept": BROWSER_ACCEPT})
    assert as_json.content_type == "application/json"
    as_html = await client.get("/api/v1/status/?format=html")
    assert as_html.content_type == "text/html"
    bad = await client.get("/api/v1/status/?format=xml")
    assert bad.status == 400
    assert "format" in (await bad.json())["error"]


async def test_page_escapes_everything_and_runs_only_its_own_script(fake_env, start_client):
    """Hostile names are escaped, and the CSP allows exactly the page's one inline script."""
    fake_env.install_raw("x1", b'Name: <script>alert("x")</script>\nVersion: 1.0"<b>\n')
    client = await start_client(env_config(fake_env, commit={"value": "<img src=x>"}))
    response = await client.get("/api/v1/status/?format=html")
    page = await response.text()
    assert "<script>alert" not in page
    assert html.escape('<script>alert("x")</script>') in page
    assert "<img src=x>" not in page
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = response.headers["Content-Security-Policy"]
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp
    assert "http" not in page.split("<body>")[1].replace('href="/metrics"', "")


async def test_filter_box_narrows_the_table_in_a_real_browser(fake_env, start_client):
    """In headless Chromium, typing in the filter hides the rows that do not match."""
    chromium = tool("chromium")
    for name, version in [
        ("django", "4.2.1"),
        ("django-filter", "23.5"),
        ("flask", "3.0.0"),
        ("requests", "2.31.0"),
        ("urllib3", "2.2.1"),
        ("six", "1.16.0"),
    ]:
        fake_env.install(name, version)
    client = await start_client(env_config(fake_env))
    url = str(client.make_url("/api/v1/status/"))
    visible = "[...document.querySelectorAll('#modules tbody tr')].filter(r => !r.hidden).length"
    async with Browser(chromium) as browser:
        await browser.open(url)
        assert await browser.evaluate("document.contentType") == "text/html"
        assert await browser.evaluate(visible) == 6
        await browser.type_into("#filter", "djan")
        assert await browser.evaluate(visible) == 2
        assert await browser.evaluate("document.getElementById('shown').textContent") == "2 of 6"
        await browser.screenshot(readme_screenshot("status-page.png"))
        await browser.evaluate("document.getElementById('filter').value = ''")
        await browser.type_into("#filter", "2.31")
        assert await browser.evaluate(visible) == 1  # a version matches too: requests 2.31.0
        uptime = await browser.evaluate("document.getElementById('uptime').textContent")
        assert re.fullmatch(r"(\d+d )?\d+h \d+m \d+s", uptime), uptime
        await browser.evaluate("document.getElementById('filter').value = ''")
        await browser.type_into("#filter", " ")
        await browser.screenshot(ARTIFACTS / "status-page-all.png")
        await browser.send(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": "dark"}],
        )
        background = "getComputedStyle(document.body).backgroundColor"
        assert await browser.evaluate(background) == "rgb(13, 17, 23)"
        await browser.screenshot(ARTIFACTS / "status-page-dark.png")
    assert (ARTIFACTS / "status-page-all.png").stat().st_size > 10_000


async def test_vulnerable_modules_are_marked_and_filterable_in_a_real_browser(
    fake_env, start_client, tmp_path
):
    """Chromium shows each vulnerable module's worst severity and its one upgrade, opens it
    to its findings with their own fixes, and can list only the vulnerable modules."""
    chromium = tool("chromium")
    install_vulnerable(fake_env)
    records = copy_records(tmp_path / "records", modified=time.time() - 3600)  # fresh data
    client = await start_client(env_config(fake_env, advisories={"paths": [str(records)]}))
    url = str(client.make_url("/api/v1/status/"))
    visible = "[...document.querySelectorAll('#modules tbody tr')].filter(r => !r.hidden)"
    row = "document.querySelector(\"#modules tr[data-key^='aiohttp ']\")"
    async with Browser(chromium) as browser:
        await browser.open(url)
        marks = await browser.evaluate(
            "[...document.querySelectorAll('tr[data-vulnerable] summary .sev')]"
            ".map(e => e.textContent)"
        )
        assert marks == ["medium", "unknown", "critical", "unknown"]  # aiohttp ... sqlparse
        assert await browser.evaluate(f"{row}.querySelector('summary').innerText") == (
            "medium 1 finding: upgrade to 3.7.4"
        )
        await browser.click("#modules tr[data-key^='aiohttp '] summary")
        finding = await browser.evaluate(f"{row}.querySelector('li').innerText")
        assert finding.startswith("medium PYSEC-2021-76 fixed in 3.7.4"), finding
        assert await browser.evaluate(f"{visible}.length") == 6
        await browser.click("#vulnerable-only")
        names = await browser.evaluate(f"{visible}.map(r => r.cells[0].textContent)")
        assert names == ["aiohttp", "django", "evil-pkg", "sqlparse"]
        assert await browser.evaluate("document.getElementById('shown').textContent") == "4 of 6"
        await browser.click("#modules tr[data-key^='django '] summary")
        assert await browser.evaluate("document.querySelectorAll('details[open]').length") == 2
        await browser.evaluate("document.activeElement.blur()")
        await browser.screenshot(readme_screenshot("status-page-vulnerable.png"), full_page=True)
