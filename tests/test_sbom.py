"""The live SBOM: strict CycloneDX 1.6, the same components as cyclonedx-py, revisions."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import FakeEnvironment, env_config, refresh

from exporter.config import Config, ModulesConfig
from exporter.render.sbom import CONTENT_TYPE, purl
from exporter.snapshot import Identity, take_snapshot

OSV = Path(__file__).resolve().parent / "data" / "osv"


def validate(document: bytes | str) -> dict:
    """Validate strictly against the CycloneDX 1.6 JSON schema; return the parsed document."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = document.decode() if isinstance(document, bytes) else document
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error
    return json.loads(text)


def install_with_license(env: FakeEnvironment, name: str, version: str, headers: str) -> None:
    env.install_raw(
        f"{name}-{version}",
        f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n{headers}\nBody\n".encode(),
    )


async def test_the_sbom_is_strict_cyclonedx_with_components_and_licences(fake_env, start_client):
    """Components carry name, version, purl and licences; the interpreter has its CPE."""
    install_with_license(fake_env, "Django", "4.2.1", "License-Expression: BSD-3-Clause")
    install_with_license(
        fake_env, "zope.interface", "6.1", "Classifier: License :: OSI Approved :: MIT License"
    )
    install_with_license(fake_env, "oddlib", "1.0+local.1", "License: Custom Licence v2")
    client = await start_client(
        env_config(fake_env, app={"distribution": "django"}, commit={"value": "abc1234"})
    )
    response = await client.get("/api/v1/sbom")
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    sbom = validate(await response.read())
    components = {c["name"]: c for c in sbom["components"]}
    assert components["Django"]["purl"] == "pkg:pypi/django@4.2.1"
    assert components["Django"]["licenses"] == [{"expression": "BSD-3-Clause"}]
    assert components["zope.interface"]["licenses"] == [{"license": {"id": "MIT"}}]
    assert components["oddlib"]["purl"] == "pkg:pypi/oddlib@1.0%2Blocal.1"
    assert components["oddlib"]["licenses"] == [{"license": {"name": "Custom Licence v2"}}]
    interpreter = next(c for c in sbom["components"] if c["type"] == "platform")
    assert interpreter["cpe"].startswith(f"cpe:2.3:a:python:python:{interpreter['version']}:")
    application = sbom["metadata"]["component"]
    assert (application["name"], application["version"]) == ("django", "4.2.1")
    assert {"name": "status-exporter:commit", "value": "abc1234"} in application["properties"]
    assert sbom["serialNumber"].startswith("urn:uuid:")
    assert "vulnerabilities" not in sbom


async def test_vulnerabilities_are_embedded_with_ratings_and_fixes(fake_env, start_client):
    """With advisories, the SBOM carries each vulnerability, its CVSS rating and its fix."""
    fake_env.install("aiohttp", "3.7.3")
    fake_env.install("evil-pkg", "1.0.0")
    client = await start_client(env_config(fake_env, advisories={"paths": [str(OSV)]}))
    sbom = validate(await (await client.get("/api/v1/sbom")).read())
    by_id = {v["id"]: v for v in sbom["vulnerabilities"]}
    aiohttp = by_id["PYSEC-2021-76"]
    assert aiohttp["ratings"] == [
        {
            "severity": "medium",
            "method": "CVSSv31",
            "score": 6.1,
            "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
        }
    ]
    assert aiohttp["affects"] == [
        {"ref": "pkg:pypi/aiohttp@3.7.3", "versions": [{"version": "3.7.3", "status": "affected"}]}
    ]
    assert "aiohttp 3.7.4" in aiohttp["recommendation"]
    assert {r["id"] for r in aiohttp["references"]} == {"CVE-2021-21330", "GHSA-v6wp-4m6f-gcjg"}
    assert by_id["MAL-2024-0001"]["ratings"] == [{"severity": "critical"}]


async def test_hostile_metadata_stays_valid_and_escaped(fake_env, start_client, tmp_path):
    """Quotes, angle brackets and backslashes in names, licences and advisories stay data."""
    install_with_license(fake_env, 'evil"<pkg>\\', "1.0", 'License: "</script>\\')
    record = {
        "id": 'X-"1"</script>',
        "summary": '"\\<b>',
        "affected": [
            {"package": {"ecosystem": "PyPI", "name": 'evil"<pkg>\\'}, "versions": ["1.0"]}
        ],
    }
    (tmp_path / "x.json").write_text(json.dumps(record))
    config = env_config(fake_env, advisories={"paths": [str(tmp_path)]}, commit={"value": 'c"<\\'})
    client = await start_client(config)
    sbom = validate(await (await client.get("/api/v1/sbom")).read())
    (component,) = [c for c in sbom["components"] if c["type"] == "library"]
    assert component["name"] == 'evil"<pkg>\\'
    assert component["licenses"] == [{"license": {"name": '"</script>\\'}}]
    assert sbom["vulnerabilities"][0]["id"] == 'X-"1"</script>'


async def test_version_grows_only_when_the_content_changes(fake_env, start_client):
    """Refreshes that change nothing keep version and bytes; an install is a new revision."""
    fake_env.install("requests", "2.31.0")
    client = await start_client(env_config(fake_env))
    first = await (await client.get("/api/v1/sbom")).read()
    await refresh(client)
    assert await (await client.get("/api/v1/sbom")).read() == first
    fake_env.install("flask", "3.0.0")
    await refresh(client)
    second = json.loads(await (await client.get("/api/v1/sbom")).read())
    assert second["version"] == json.loads(first)["version"] + 1 == 2
    assert second["serialNumber"] == json.loads(first)["serialNumber"]
    assert "flask" in {c["name"] for c in second["components"]}


async def test_gzip_head_and_redaction(fake_env, start_client):
    """gzip when accepted, HEAD works, and redact.modules withholds the SBOM with a 404."""
    fake_env.install("requests", "2.31.0")
    client = await start_client(env_config(fake_env))
    plain = await (await client.get("/api/v1/sbom", headers={"Accept-Encoding": "identity"})).read()
    zipped = await client.get(
        "/api/v1/sbom", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == plain
    head = await client.head("/api/v1/sbom")
    assert head.status == 200
    redacted = await start_client(env_config(fake_env, redact={"modules": "json"}))
    withheld = await redacted.get("/api/v1/sbom")
    assert withheld.status == 404
    assert "redact.modules" in (await withheld.json())["error"]


def test_components_equal_what_cyclonedx_py_reports(tmp_path):
    """For one real venv, (name, version, purl) of our components equal cyclonedx-py's."""
    cyclonedx_py = shutil.which("cyclonedx-py", path=str(Path(sys.executable).parent))
    assert cyclonedx_py, "cyclonedx-bom is a test dependency"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    env = FakeEnvironment(site)
    for name, version in [
        ("Django", "4.2.1"),
        ("typing_extensions", "4.9.0"),
        ("zope.interface", "6.1"),
        ("Foo.Bar_baz", "1.0+local.1"),
        ("requests", "2.31.0"),
    ]:
        env.install(name, version)
    done = subprocess.run(
        [cyclonedx_py, "environment", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    theirs = {(c["name"], c["version"], c["purl"]) for c in json.loads(done.stdout)["components"]}
    snapshot = take_snapshot(env_config(env), Identity.new())
    from exporter.render.sbom import SbomDocument

    ours_doc = validate(SbomDocument(snapshot).body)
    ours = {
        (c["name"], c["version"], c["purl"])
        for c in ours_doc["components"]
        if c["type"] == "library"
    }
    assert ours == theirs
    assert purl("Foo.Bar_baz", "1.0+local.1") == "pkg:pypi/foo.bar-baz@1.0%2Blocal.1"


def test_loaded_modules_get_a_purl_only_where_the_distribution_is_known():
    """In loaded mode, a module whose distribution is certain has a purl; others do not."""
    import yaml  # noqa: F401 - loaded on purpose: PyYAML provides it

    config = Config(modules=ModulesConfig(source="loaded"))
    from exporter.render.sbom import SbomDocument

    sbom = validate(SbomDocument(take_snapshot(config, Identity.new())).body)
    components = {c["name"]: c for c in sbom["components"] if c["type"] == "library"}
    assert components["yaml"]["purl"].startswith("pkg:pypi/pyyaml@")
    without = [c for c in components.values() if "purl" not in c]
    assert all(c["bom-ref"].startswith("module:") for c in without)


@pytest.mark.parametrize("body", ["metrics", "status", "sbom"])
def test_print_writes_one_body_and_exits_0(tmp_path, fake_env, body):
    """--print takes one snapshot and writes the body: exposition, status JSON or SBOM."""
    fake_env.install("requests", "2.31.0")
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"modules": {"paths": [str(fake_env.path)]}, "commit": {"value": "abc1234"}})
    )
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--print", body],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if body == "metrics":
        from prometheus_client.parser import text_string_to_metric_families

        families = {f.name: f for f in text_string_to_metric_families(done.stdout.decode())}
        assert families["module_info"].samples[0].labels["module"] == "requests"
        assert not any(name.startswith(("process_", "python_gc")) for name in families)
    elif body == "status":
        assert json.loads(done.stdout)["modules"] == {"requests": "2.31.0"}
    else:
        assert validate(done.stdout)["components"][1]["name"] == "requests"


def test_print_with_a_bad_config_exits_2(tmp_path):
    """A bad config makes --print exit 2 with the key named, writing nothing to stdout."""
    config = tmp_path / "config.yaml"
    config.write_text("modules: {source: pip}\n")
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--print", "sbom"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "modules.source" in done.stderr
    assert done.stdout == ""


def test_the_daemon_never_imports_cyclonedx(tmp_path):
    """Rendering an SBOM does not load cyclonedx-python-lib (it costs most of a second)."""
    code = (
        "import sys; from exporter.config import Config; from exporter.snapshot import "
        "take_snapshot, Identity; from exporter.render.pages import render_pages; "
        "from exporter.refresh import RefreshStats; "
        "render_pages(take_snapshot(Config(), Identity.new()), RefreshStats(), None); "
        "print(any(m.startswith('cyclonedx') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
