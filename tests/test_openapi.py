"""The written contract: the OpenAPI 3.1 document, and schemathesis against the live daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from support import Daemon, env_config

DOCUMENT = Path(__file__).resolve().parent.parent / "exporter" / "openapi.json"
OSV = Path(__file__).resolve().parent / "data" / "osv"


def test_document_is_valid_openapi_3_1():
    """openapi-spec-validator accepts the document."""
    spec = json.loads(DOCUMENT.read_text())
    assert spec["openapi"].startswith("3.1")
    validate(spec)


async def test_served_document_is_the_repository_file_and_covers_every_route(
    fake_env, start_client
):
    """/api/v1/openapi.json serves the file in the repository, which documents each route."""
    client = await start_client(env_config(fake_env))
    response = await client.get("/api/v1/openapi.json")
    assert await response.read() == DOCUMENT.read_bytes()
    documented = set(json.loads(DOCUMENT.read_text())["paths"])
    routes = {r.resource.canonical for r in client.app.router.routes()}
    assert routes - {"/"} == documented  # the landing page is for people, not the API


@pytest.mark.parametrize("advisories", ["none", "loaded", "missing"])
async def test_status_responses_match_the_schema(fake_env, start_client, tmp_path, advisories):
    """The JSON status validates against the document's Status schema, hostile data included,
    without a database, with findings, and with a database that did not load."""
    from jsonschema import Draft202012Validator

    fake_env.install_raw("x", b'Name: we"ird\\name\nVersion: 1.0<b>\n')
    fake_env.install("aiohttp", "3.7.3")
    document = json.loads(DOCUMENT.read_text())
    # The Status schema, its references resolved within the whole document.
    status_schema = {"$ref": "#/components/schemas/Status", "components": document["components"]}
    sections = {
        "none": {},
        "loaded": {"advisories": {"paths": [str(OSV)]}},
        "missing": {"advisories": {"paths": [str(tmp_path / "gone.zip")]}},
    }[advisories]
    client = await start_client(env_config(fake_env, **sections))
    body = await (await client.get("/api/v1/status/")).json()
    if advisories == "loaded":
        assert body["vulnerabilities"]
    Draft202012Validator(
        status_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    ).validate(body)


def test_schemathesis_finds_no_issue_against_the_live_daemon(fake_env, tmp_path):
    """schemathesis, with every check, finds no response that breaks the contract."""
    fake_env.install("django", "4.2.1")
    config = tmp_path / "config.yaml"
    targets = {"environments": [{"name": "web", "paths": [str(fake_env.path)]}]}
    config.write_text(json.dumps({"modules": {"paths": [str(fake_env.path)]}, "targets": targets}))
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is a test dependency"
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        done = subprocess.run(
            [
                schemathesis,
                "run",
                f"{daemon.url}/api/v1/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "30",
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        daemon.stop()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout
