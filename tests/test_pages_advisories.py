"""What the landing and status pages say of the advisory data, as a person sees them in
Chromium: not checked is not clean, a failing reload keeps the old findings and says since
when, stale data is marked, and a module's findings are one row that opens to them."""

from __future__ import annotations

import datetime
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
from browser import ARTIFACTS, Browser, readme_screenshot
from support import FakeEnvironment, env_config, refresh, tool

from exporter.config import Config

DATA = Path(__file__).resolve().parent / "data" / "osv"
WARN_RED = "rgb(207, 34, 46)"  # .warn in the light theme
PAGES = ("/", "/api/v1/status/?format=html")
# Innertext of the element with an id, or null when there is none.
TEXT_OF = "(id => {{ const e = document.getElementById(id); return e && e.innerText; }})({!r})"
COLOR_OF = "getComputedStyle(document.getElementById({!r})).color"
# The text where the pages give the number of findings: a row of the landing page's table,
# a card of the status page.
COUNT_TEXT = (
    "[...document.querySelectorAll('tr, .card')].find(e => e.firstElementChild.textContent"
    " === 'Known vulnerabilities').innerText.replace('Known vulnerabilities', '').trim()"
)
VISIBLE_NAMES = (
    "[...document.querySelectorAll('#modules tbody tr')]"
    ".filter(r => r.checkVisibility()).map(r => r.cells[0].textContent)"
)


def copy_records(dest: Path, *, modified: float | None = None) -> Path:
    """The real OSV records of tests/data/osv in ``dest``, their ``modified`` set to the unix
    time ``modified`` when given."""
    dest.mkdir(parents=True, exist_ok=True)
    stamp = None
    if modified is not None:
        moment = datetime.datetime.fromtimestamp(modified, tz=datetime.UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    for record in sorted(DATA.glob("*/*")):
        if record.suffix not in (".json", ".yaml"):
            continue
        text = record.read_text()
        if stamp is not None and record.suffix == ".json":
            text = json.dumps({**json.loads(text), "modified": stamp})
        elif stamp is not None:
            text = re.sub(r"^modified: .*$", f'modified: "{stamp}"', text, flags=re.M)
        (dest / record.name).write_text(text)
    return dest


def zip_records(folder: Path, target: Path) -> Path:
    """A zip export, as OSV publishes them, of the records in ``folder``."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for record in sorted(folder.iterdir()):
            archive.write(record, record.name)
    return target


def install_vulnerable(env: FakeEnvironment) -> None:
    """Modules the records find vulnerable (django 3.2 four times), and two they do not."""
    for name, version in [
        ("aiohttp", "3.7.3"),
        ("django", "3.2"),
        ("evil-pkg", "1.0.0"),
        ("requests", "2.31.0"),
        ("six", "1.16.0"),
        ("sqlparse", "0.4.1"),
    ]:
        env.install(name, version)


async def set_filter(browser: Browser, text: str) -> None:
    """Replace the filter's text as typed input (a space clears it: the filter trims)."""
    await browser.evaluate("document.getElementById('filter').value = ''")
    await browser.type_into("#filter", text or " ")


@pytest.mark.parametrize("broken", ["missing", "truncated"])
async def test_a_database_that_never_loaded_is_not_loaded_on_both_pages_never_none(
    fake_env, start_client, tmp_path, broken
):
    """A missing or truncated zip: both pages warn "advisories not loaded: <path>: <reason>"
    where the count would be, in the warning colour, and say "none" nowhere."""
    chromium = tool("chromium")
    install_vulnerable(fake_env)
    path = tmp_path / "does-not-exist.zip"
    reason = "no such file or directory"
    if broken == "truncated":
        whole = zip_records(copy_records(tmp_path / "records"), tmp_path / "whole.zip")
        path = tmp_path / "truncated.zip"
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        reason = "not a readable zip"
    client = await start_client(env_config(fake_env, advisories={"paths": [str(path)]}))
    async with Browser(chromium) as browser:
        for page in PAGES:
            await browser.open(str(client.make_url(page)))
            problem = await browser.evaluate(TEXT_OF.format("advisories-problem"))
            assert problem.startswith(f"advisories not loaded: {path}: {reason}"), (page, problem)
            assert await browser.evaluate(COLOR_OF.format("advisories-problem")) == WARN_RED
            count = await browser.evaluate(COUNT_TEXT)
            assert count.startswith("advisories not loaded"), (page, count)
            assert "none" not in count.lower()
            text = await browser.evaluate("document.body.innerText")
            assert "none in the loaded advisories" not in text, page
            assert not re.search(r"\b0 in 0\b", text), page
            assert await browser.evaluate("document.getElementById('advisories-stale')") is None
            await browser.screenshot(ARTIFACTS / f"advisories-{broken}{page.count('html')}.png")
        # Not checked: no findings column and no "only vulnerable" box that would show nothing.
        assert await browser.evaluate("document.getElementById('vulnerable-only')") is None
        assert await browser.evaluate("document.querySelectorAll('#modules th').length") == 2


async def test_the_reason_a_database_did_not_load_is_escaped(fake_env, start_client, tmp_path):
    """A path that looks like markup is shown as text on both pages, never as markup."""
    path = tmp_path / "<b>bad&name.zip"
    client = await start_client(env_config(fake_env, advisories={"paths": [str(path)]}))
    for page in PAGES:
        body = await (await client.get(page)).text()
        assert "<b>bad" not in body
        assert f"advisories not loaded: {tmp_path}/&lt;b&gt;bad&amp;name.zip" in body


async def test_a_failing_reload_keeps_the_findings_and_says_since_when(
    fake_env, start_client, tmp_path
):
    """A good zip rewritten with garbage: the findings of the loaded data stay on both pages,
    which say when that data was loaded and since when the reloads fail, and why."""
    chromium = tool("chromium")
    install_vulnerable(fake_env)
    path = zip_records(copy_records(tmp_path / "records"), tmp_path / "osv.zip")
    client = await start_client(env_config(fake_env, advisories={"paths": [str(path)]}))
    before = await (await client.get("/api/v1/status/")).json()
    assert len(before["vulnerabilities"]) >= 8
    path.write_bytes(b"this is not a zip file\n" * 10)
    await refresh(client)
    status = await (await client.get("/api/v1/status/")).json()
    assert status["vulnerabilities"] == before["vulnerabilities"]
    assert status["advisories"]["failing_since"] is not None

    def shown(rfc3339: str) -> str:  # 2026-12-01T20:04:41.123Z as the pages write it
        return rfc3339[:19].replace("T", " ") + " UTC"

    expected = (
        f"advisory data from {shown(status['advisories']['loaded_at'])}; reloads failing since "
        f"{shown(status['advisories']['failing_since'])}: {path}: not a readable zip"
    )
    severities = [f["severity"] for f in status["vulnerabilities"]]
    assert severities.count("critical") == severities.count("medium") == 1
    counts = f"1 critical, 1 medium, {severities.count('unknown')} of unknown severity"
    async with Browser(chromium) as browser:
        for page in PAGES:
            await browser.open(str(client.make_url(page)))
            problem = await browser.evaluate(TEXT_OF.format("advisories-problem"))
            assert problem.startswith(expected), (page, problem)
            assert await browser.evaluate(COLOR_OF.format("advisories-problem")) == WARN_RED
            text = await browser.evaluate("document.body.innerText")
            assert counts in text, page
            assert "none in the loaded advisories" not in text
            await browser.screenshot(ARTIFACTS / f"advisories-failing{page.count('html')}.png")
        vulnerable = (
            "[...document.querySelectorAll('tr[data-vulnerable]')].map(r => r.cells[0].textContent)"
        )
        assert await browser.evaluate(vulnerable) == ["aiohttp", "django", "evil-pkg", "sqlparse"]


@pytest.mark.parametrize(("days", "stale"), [(30, True), (1, False)])
async def test_the_newest_advisory_date_and_age_are_shown_and_marked_when_stale(
    fake_env, start_client, tmp_path, days, stale
):
    """Both pages give the newest advisory's date and age in days; over seven days old, that
    is marked in the warning colour with the id advisories-stale."""
    chromium = tool("chromium")
    fake_env.install("six", "1.16.0")  # nothing vulnerable: "none" is true here
    newest = time.time() - days * 86400 - 600
    folder = copy_records(tmp_path / "records", modified=newest)
    client = await start_client(env_config(fake_env, advisories={"paths": [str(folder)]}))
    loaded = (await (await client.get("/api/v1/status/")).json())["advisories"]
    assert loaded["skipped"] == 1  # binderhub's record: "record", not "records"
    date = datetime.datetime.fromtimestamp(newest, tz=datetime.UTC).date().isoformat()
    age = f"newest advisory {date}, {days} day{'s' if days != 1 else ''} old"
    async with Browser(chromium) as browser:
        for page in PAGES:
            await browser.open(str(client.make_url(page)))
            text = await browser.evaluate("document.body.innerText")
            assert age in text, page
            assert "none in the loaded advisories" in text, page
            assert f"{loaded['advisories']} advisories loaded (1 record skipped)" in text, page
            mark = await browser.evaluate(TEXT_OF.format("advisories-stale"))
            if stale:
                assert mark == f"{age}: stale (older than 7 days)", page
                assert await browser.evaluate(COLOR_OF.format("advisories-stale")) == WARN_RED
            else:
                assert mark is None, page
            assert await browser.evaluate(TEXT_OF.format("advisories-problem")) is None


def grouping_config(env: FakeEnvironment, tmp_path: Path, *, extra: bool) -> Config:
    """The real records, fresh; ``extra`` adds a high-severity django record of this test's own,
    so that django's findings differ in severity."""
    folder = copy_records(tmp_path / "records", modified=time.time() - 3600)
    if extra:
        record = {
            "id": "TEST-DJANGO-1",
            "modified": "2026-01-01T00:00:00Z",
            "summary": "A high-severity test advisory for django 3.2",
            "references": [{"type": "ADVISORY", "url": "https://example.com/TEST-DJANGO-1"}],
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "django"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": [{"introduced": "3.2"}, {"fixed": "3.2.20"}],
                        }
                    ],
                }
            ],
            "database_specific": {"severity": "HIGH"},
        }
        (folder / "TEST-DJANGO-1.json").write_text(json.dumps(record))
    return env_config(env, advisories={"paths": [str(folder)]})


async def test_a_module_with_several_findings_is_one_row_that_opens_to_them_in_order(
    fake_env, start_client, tmp_path
):
    """django 3.2's five findings are one row (worst severity, count, the one upgrade) that a
    click opens to each finding, worst first and then by id numerically, with its fix and
    aliases."""
    chromium = tool("chromium")
    install_vulnerable(fake_env)
    client = await start_client(grouping_config(fake_env, tmp_path, extra=True))
    django = (
        "[...document.querySelectorAll('#modules tbody tr')]"
        ".filter(r => r.cells[0].textContent === 'django')"
    )
    items = f"[...{django}[0].querySelectorAll('li')]"
    async with Browser(chromium) as browser:
        await browser.open(str(client.make_url("/api/v1/status/")))
        assert await browser.evaluate(f"{django}.length") == 1
        summary = await browser.evaluate(f"{django}[0].querySelector('summary').innerText")
        assert summary == "high 5 findings: upgrade to 3.2.25"
        assert await browser.evaluate(f"{django}[0].querySelector('details').open") is False
        assert await browser.evaluate(f"{items}.filter(i => i.checkVisibility()).length") == 0
        await browser.click("#modules tr[data-key^='django '] summary")
        assert await browser.evaluate(f"{django}[0].querySelector('details').open") is True
        shown = await browser.evaluate(
            f"{items}.filter(i => i.checkVisibility()).map(i => i.innerText)"
        )
        assert [line.split()[:2] for line in shown] == [
            ["high", "TEST-DJANGO-1"],
            ["unknown", "PYSEC-2021-7"],
            ["unknown", "PYSEC-2021-109"],
            ["unknown", "PYSEC-2021-439"],
            ["unknown", "PYSEC-2024-47"],
        ]
        assert shown[0] == "high TEST-DJANGO-1 fixed in 3.2.20"
        assert shown[1] == "unknown PYSEC-2021-7 fixed in 3.2.1 CVE-2021-31542, GHSA-rxjp-mfm9-w4wr"
        link = await browser.evaluate(
            f"(a => [a.href, a.title])({django}[0].querySelector('li a'))"
        )
        assert link == [
            "https://example.com/TEST-DJANGO-1",
            "A high-severity test advisory for django 3.2",
        ]
        evil = await browser.evaluate(
            "document.querySelector(\"#modules tr[data-key^='evil-pkg '] summary\").innerText"
        )
        assert evil == "critical 1 finding: no single fix known"


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("PYSEC-2021-439", ["django"]),  # an advisory id
        ("ghsa-v6wp-4m6f-gcjg", ["aiohttp"]),  # an alias, in any case
        ("CVE-2023-30608", ["sqlparse"]),
        ("critical", ["evil-pkg"]),  # a severity
        ("medium", ["aiohttp"]),
    ],
)
async def test_the_filter_finds_modules_by_advisory_alias_and_severity(
    fake_env, start_client, tmp_path, query, names
):
    """Typing an advisory id, an alias or a severity in the filter leaves the modules with
    such a finding, and the "only vulnerable" box still narrows the table."""
    chromium = tool("chromium")
    install_vulnerable(fake_env)
    client = await start_client(grouping_config(fake_env, tmp_path, extra=False))
    async with Browser(chromium) as browser:
        await browser.open(str(client.make_url("/api/v1/status/")))
        await set_filter(browser, query)
        assert await browser.evaluate(VISIBLE_NAMES) == names
        assert await browser.evaluate("document.getElementById('shown').textContent") == (
            f"{len(names)} of 6"
        )
        await set_filter(browser, "")
        await browser.click("#vulnerable-only")
        assert await browser.evaluate(VISIBLE_NAMES) == [
            "aiohttp",
            "django",
            "evil-pkg",
            "sqlparse",
        ]


async def test_both_pages_fit_a_phone_390_pixels_wide(fake_env, start_client, tmp_path):
    """At 390 CSS pixels, with findings open and then a long name too, neither page scrolls
    sideways, the filter input fits, and filtering still hides rows."""
    chromium = tool("chromium")
    install_vulnerable(fake_env)
    client = await start_client(grouping_config(fake_env, tmp_path, extra=False))
    width = "document.documentElement.scrollWidth"
    async with Browser(chromium) as browser:
        await browser.set_viewport(390, 844, mobile=True, scale=2)
        for long_name in (False, True):
            if long_name:  # one name and version longer than a phone's line
                fake_env.install(
                    "a-distribution-with-a-very-long-name-for-phones", "2024.10.1.post1"
                )
                await refresh(client)
            await browser.open(str(client.make_url("/")))
            assert await browser.evaluate("window.innerWidth") == 390
            assert await browser.evaluate(width) <= 390
            await browser.open(str(client.make_url("/api/v1/status/")))
            assert await browser.evaluate(width) <= 390
            for module in ("aiohttp", "django"):
                await browser.click(f"#modules tr[data-key^='{module} '] summary")
            assert await browser.evaluate("document.querySelectorAll('details[open]').length") == 2
            assert await browser.evaluate(width) <= 390
            right = await browser.evaluate(
                "document.getElementById('filter').getBoundingClientRect().right"
            )
            assert 300 <= right <= 390
            if not long_name:
                await browser.evaluate(
                    "scrollTo(0, document.querySelector('.card.wide').getBoundingClientRect().top"
                    " + scrollY - 6)"
                )
                await browser.screenshot(readme_screenshot("status-page-phone.png"))
            await set_filter(browser, "django")
            assert await browser.evaluate(VISIBLE_NAMES) == ["django"]
            assert await browser.evaluate(width) <= 390
