"""Known vulnerabilities: matching real advisories, and what every output says of them."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from support import env_config, fetch_metrics, refresh

from exporter.advisories.database import load_advisories
from exporter.advisories.matching import match_vulnerabilities, natural_key, vulnerable_modules
from exporter.collectors.end_of_life import CPYTHON_END_OF_LIFE, python_end_of_life
from exporter.collectors.python import collect_python

DATA = Path(__file__).resolve().parent / "data" / "osv"


@pytest.fixture(scope="module")
def database():
    return load_advisories([str(DATA)])


def test_aliases_are_one_vulnerability_with_the_highest_severity(database):
    """PYSEC-2021-76 and the GHSA naming it are one finding, PYSEC's id, GHSA's CVSS band."""
    (finding,) = match_vulnerabilities({"aiohttp": "3.7.3"}, database)
    assert finding.id == "PYSEC-2021-76"
    assert finding.aliases == ("CVE-2021-21330", "GHSA-v6wp-4m6f-gcjg")
    assert finding.severity == "medium"  # CVSS 6.1 from the GHSA record; PYSEC's is unknown
    assert finding.fixed == "3.7.4"
    assert finding.url.startswith("https://")
    assert match_vulnerabilities({"aiohttp": "3.7.4"}, database) == ()


@pytest.mark.parametrize(
    ("module", "version", "fixed"),
    [
        ("accesscontrol", "4.1", "4.3"),
        ("accesscontrol", "5.1", "5.2"),
        ("ansible-core", "2.15.3", "2.15.9"),
        ("ansible-core", "2.13.0", "2.14.4"),
        ("py", "1.11.0", ""),
        ("evil-pkg", "1.0.1", ""),
        ("limited", "1.5", ""),
        ("weird", "2013b-custom", ""),
        ("four-score", "1.1", "1.2"),
    ],
)
def test_real_and_handmade_records_match(database, module, version, fixed):
    """Each record matches its affected versions, with the lowest fix above the installed one."""
    (finding,) = match_vulnerabilities({module: version}, database)
    assert finding.fixed == fixed


@pytest.mark.parametrize(
    ("module", "version"),
    [
        ("accesscontrol", "4.3"),
        ("ansible-core", "2.15.9"),
        ("py", "1.11.1"),
        ("limited", "2.0"),
        ("evil-pkg", "1.0.2"),
        ("loguru", "0.1"),
        ("binderhub", "0.1"),
    ],
)
def test_unaffected_versions_withdrawn_and_skipped_records_match_nothing(database, module, version):
    """Fixed versions, versions past a limit, withdrawn and unreadable records give nothing."""
    assert match_vulnerabilities({module: version}, database) == ()


def test_severities_and_ignore(database):
    """MAL is critical, CVSS v4 scores, and an ignored alias hides the whole vulnerability."""
    modules = {"evil-pkg": "1.0.0", "four-score": "1.0", "aiohttp": "3.0.0"}
    found = {f.module: f for f in match_vulnerabilities(modules, database)}
    assert found["evil-pkg"].severity == "critical"
    assert found["four-score"].severity == "critical"
    ignored = match_vulnerabilities(modules, database, ignore=["CVE-2021-21330"])
    assert {f.module for f in ignored} == {"evil-pkg", "four-score"}


def test_one_version_fixes_every_finding_of_a_module(database):
    """Django 3.2.0's four findings, each fixed in its own 3.2.x, are fixed together only by
    3.2.25: every finding carries it, and each keeps its own lowest fix."""
    findings = match_vulnerabilities({"django": "3.2.0"}, database)
    assert [(f.id, f.fixed) for f in findings] == [
        ("PYSEC-2021-7", "3.2.1"),
        ("PYSEC-2021-109", "3.2.5"),
        ("PYSEC-2021-439", "3.2.10"),
        ("PYSEC-2024-47", "3.2.25"),
    ]
    assert {f.module_fixed for f in findings} == {"3.2.25"}
    (module,) = vulnerable_modules(findings)
    assert (module.module, module.version, module.fixed) == ("django", "3.2.0", "3.2.25")
    assert module.severity == "unknown"
    assert match_vulnerabilities({"django": "3.2.25"}, database) == ()


def test_a_fix_that_another_finding_affects_is_not_offered(database):
    """Past 3.2.10 only the 2024 finding is left, so its fix is the one offered; on the 4.x
    line the fix is 4.2.15 (what PYSEC-2024-47 names for 4.2), not a 3.2 release."""
    assert {f.module_fixed for f in match_vulnerabilities({"django": "3.2.12"}, database)} == {
        "3.2.25"
    }
    (finding,) = match_vulnerabilities({"django": "4.2.0"}, database)
    assert finding.id == "PYSEC-2024-47"
    assert finding.module_fixed == finding.fixed
    assert finding.fixed.startswith("4.2.")


def test_no_single_fix_when_one_finding_has_none(database):
    """A malicious package has no fixed version, so no version fixes its module."""
    (finding,) = match_vulnerabilities({"evil-pkg": "1.0.0"}, database)
    assert finding.fixed == ""
    assert finding.module_fixed == ""
    assert finding.as_dict()["module_fixed"] is None


def test_ids_sort_by_their_numbers():
    """PYSEC-2021-7 sorts before PYSEC-2021-109, and 2021 before 2022, whatever the length."""
    ids = ["PYSEC-2022-1", "PYSEC-2021-109", "GHSA-aaaa", "PYSEC-2021-7", "PYSEC-2021-98"]
    assert sorted(ids, key=natural_key) == [
        "GHSA-aaaa",
        "PYSEC-2021-7",
        "PYSEC-2021-98",
        "PYSEC-2021-109",
        "PYSEC-2022-1",
    ]


async def test_the_fix_reaches_the_json_and_the_metrics(fake_env, start_client):
    """module_fix_info and the JSON's vulnerable_modules name the one version to upgrade to."""
    fake_env.install("Django", "3.2.0")
    fake_env.install("aiohttp", "3.7.3")
    client = await start_client(advisory_config(fake_env))
    fixes = {
        s.labels["module"]: s.labels
        for s in (await fetch_metrics(client))["module_fix_info"].samples
    }
    assert fixes == {
        "aiohttp": {
            "module": "aiohttp",
            "version": "3.7.3",
            "fixed": "3.7.4",
            "severity": "medium",
        },
        "django": {
            "module": "django",
            "version": "3.2.0",
            "fixed": "3.2.25",
            "severity": "unknown",
        },
    }
    status = await (await client.get("/api/v1/status/")).json()
    assert status["vulnerable_modules"] == [
        {
            "module": "aiohttp",
            "version": "3.7.3",
            "fixed": "3.7.4",
            "severity": "medium",
            "findings": ["PYSEC-2021-76"],
        },
        {
            "module": "django",
            "version": "3.2.0",
            "fixed": "3.2.25",
            "severity": "unknown",
            "findings": ["PYSEC-2021-7", "PYSEC-2021-109", "PYSEC-2021-439", "PYSEC-2024-47"],
        },
    ]
    assert {f["module_fixed"] for f in status["vulnerabilities"] if f["module"] == "django"} == {
        "3.2.25"
    }


def test_end_of_life_table_and_override():
    """3.11 ends on 2027-10-31 by PEP 664; config overrides; PyPy is unknown by default."""
    cpython = collect_python(version="3.11.7", implementation="CPython")
    assert python_end_of_life(cpython) == datetime.date(2027, 10, 31)
    assert python_end_of_life(cpython, {"3.11": "2030-01-01"}) == datetime.date(2030, 1, 1)
    assert python_end_of_life(collect_python(version="3.10.1", implementation="PyPy")) is None
    assert python_end_of_life(collect_python(version="4.0.0", implementation="CPython")) is None
    assert all(source.startswith("PEP ") for _, source in CPYTHON_END_OF_LIFE.values())


def advisory_config(env, **more):
    return env_config(env, advisories={"paths": [str(DATA)], **more})


async def test_metrics_json_and_page_show_the_findings(fake_env, start_client):
    """module_vulnerability_info, the counts, the JSON list and the page all show the finding."""
    fake_env.install("aiohttp", "3.7.3")
    fake_env.install("requests", "2.31.0")
    client = await start_client(advisory_config(fake_env))
    families = await fetch_metrics(client)
    (sample,) = families["module_vulnerability_info"].samples
    assert sample.labels == {
        "module": "aiohttp",
        "version": "3.7.3",
        "id": "PYSEC-2021-76",
        "aliases": "CVE-2021-21330,GHSA-v6wp-4m6f-gcjg",
        "severity": "medium",
        "fixed": "3.7.4",
    }
    counts = {
        s.labels["severity"]: s.value for s in families["status_exporter_vulnerabilities"].samples
    }
    assert counts == {"critical": 0, "high": 0, "medium": 1, "low": 0, "unknown": 0}
    assert families["status_exporter_advisories"].samples[0].value == 15
    assert families["status_exporter_advisories_skipped"].samples[0].value == 1
    assert families["status_exporter_advisories_load_errors"].samples[0].value == 0
    newest = families["status_exporter_advisories_newest_timestamp_seconds"].samples[0].value
    assert newest == datetime.datetime(2024, 10, 1, tzinfo=datetime.UTC).timestamp()
    om = await fetch_metrics(client, openmetrics=True)
    assert om["module_vulnerability"].type == "info"
    status = await (await client.get("/api/v1/status/")).json()
    (entry,) = status["vulnerabilities"]
    assert entry["id"] == "PYSEC-2021-76"
    assert entry["fixed"] == "3.7.4"
    page = await (await client.get("/api/v1/status/?format=html")).text()
    assert 'data-vulnerable="1"' in page
    assert "fixed in 3.7.4" in page
    assert 'href="/api/v1/sbom"' in page  # absolute: the page is served with or without a /
    landing = await (await client.get("/")).text()
    assert "<code>1 medium</code>" in landing
    assert 'href="api/v1/sbom"' in landing


async def test_an_upgrade_removes_the_series_at_the_next_refresh(fake_env, start_client):
    """Upgrading past the fix leaves no vulnerability series and zero counts."""
    fake_env.install("aiohttp", "3.7.3")
    client = await start_client(advisory_config(fake_env))
    fake_env.upgrade("aiohttp", "3.7.4")
    await refresh(client)
    families = await fetch_metrics(client)
    assert families["module_vulnerability_info"].samples == []
    assert sum(s.value for s in families["status_exporter_vulnerabilities"].samples) == 0
    assert (await (await client.get("/api/v1/status/")).json())["vulnerabilities"] == []


async def test_a_new_database_is_loaded_at_the_next_refresh(fake_env, start_client, tmp_path):
    """Adding a record to an empty database folder makes its finding appear without a
    restart; the empty folder checked nothing, so it had no findings (null), not none."""
    folder = tmp_path / "db"
    folder.mkdir()
    fake_env.install("evil-pkg", "1.0.0")
    client = await start_client(env_config(fake_env, advisories={"paths": [str(folder)]}))
    status = await (await client.get("/api/v1/status/")).json()
    assert status["vulnerabilities"] is None
    assert "no usable PyPI advisory records" in status["advisories"]["error"]
    (folder / "MAL.json").write_bytes((DATA / "handmade" / "MAL-2024-0001.json").read_bytes())
    await refresh(client)
    found = (await (await client.get("/api/v1/status/")).json())["vulnerabilities"]
    assert [f["id"] for f in found] == ["MAL-2024-0001"]


async def test_without_a_database_nothing_claims_a_clean_bill(fake_env, start_client):
    """No advisories.paths: vulnerabilities is null and no vulnerability family is served."""
    fake_env.install("aiohttp", "3.7.3")
    client = await start_client(env_config(fake_env))
    families = await fetch_metrics(client)
    assert not {"module_vulnerability_info", "status_exporter_vulnerabilities"} & set(families)
    status = await (await client.get("/api/v1/status/")).json()
    assert status["vulnerabilities"] is None
    assert status["python_end_of_life"] == python_end_of_life(collect_python()).isoformat()
    (eol,) = families["python_end_of_life_timestamp_seconds"].samples
    assert eol.labels == {"version": "{}.{}".format(*collect_python().version.split(".")[:2])}


async def test_redacted_modules_hide_findings_but_keep_counts(fake_env, start_client):
    """redact.modules hides which module is vulnerable, not how many findings there are."""
    fake_env.install("aiohttp", "3.7.3")
    config = env_config(fake_env, advisories={"paths": [str(DATA)]}, redact={"modules": "both"})
    client = await start_client(config)
    families = await fetch_metrics(client)
    assert families["module_vulnerability_info"].samples == []
    assert sum(s.value for s in families["status_exporter_vulnerabilities"].samples) == 1
    assert (await (await client.get("/api/v1/status/")).json())["vulnerabilities"] == []


async def test_hostile_advisory_text_is_escaped(fake_env, start_client, tmp_path):
    """An advisory's id, summary and url cannot break the page, the JSON or the exposition."""
    record = {
        "id": 'EVIL-"1"\\',
        "summary": "<script>alert(1)</script>",
        "references": [{"type": "ADVISORY", "url": 'https://x/"><script>'}],
        "affected": [{"package": {"ecosystem": "PyPI", "name": "evil-pkg"}, "versions": ["1.0"]}],
    }
    (tmp_path / "evil.json").write_text(json.dumps(record))
    fake_env.install("evil-pkg", "1.0")
    client = await start_client(env_config(fake_env, advisories={"paths": [str(tmp_path)]}))
    (sample,) = (await fetch_metrics(client))["module_vulnerability_info"].samples
    assert sample.labels["id"] == 'EVIL-"1"\\'
    status = await (await client.get("/api/v1/status/")).json()
    assert status["vulnerabilities"][0]["summary"] == "<script>alert(1)</script>"
    page = await (await client.get("/api/v1/status/?format=html")).text()
    assert "<script>alert(1)" not in page
    assert '"><script>' not in page
