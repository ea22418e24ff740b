"""Not checked is not clean: a configured advisory database that did not load never reads as
"no vulnerabilities", in the command line, the JSON and the metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import env_config, fetch_metrics, refresh

DATA = Path(__file__).resolve().parent / "data" / "osv"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60
    )


def write_config(tmp_path: Path, site: Path, advisories: list[str]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"modules": {"paths": [str(site)]}, "advisories": {"paths": advisories}})
    )
    return path


def truncated_zip(tmp_path: Path) -> Path:
    """A real zip of records cut in half, as an interrupted download leaves it."""
    whole = shutil.make_archive(str(tmp_path / "all"), "zip", DATA / "handmade")
    data = Path(whole).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_config_check_names_an_advisory_path_that_does_not_exist(tmp_path, fake_env):
    """--config.check exits non-zero and names a configured advisory path that is missing."""
    missing = tmp_path / "osv" / "does-not-exist.zip"
    config = write_config(tmp_path, fake_env.path, [str(missing)])
    done = run_cli("--config.file", str(config), "--config.check")
    assert done.returncode == 1
    assert f"advisories.paths: {missing}: No such file or directory" in done.stderr
    assert "configuration is valid" not in done.stdout


def test_config_check_names_an_advisory_path_that_cannot_be_read(tmp_path, fake_env):
    """--config.check names a configured advisory path it cannot open (a file as a folder)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = write_config(tmp_path, fake_env.path, [str(blocker / "all.zip")])
    done = run_cli("--config.file", str(config), "--config.check")
    assert done.returncode == 1
    assert f"{blocker / 'all.zip'}: Not a directory" in done.stderr


def test_config_check_passes_with_a_readable_database(tmp_path, fake_env):
    """A readable advisory folder passes --config.check with exit 0."""
    config = write_config(tmp_path, fake_env.path, [str(DATA / "handmade")])
    done = run_cli("--config.file", str(config), "--config.check")
    assert done.returncode == 0, done.stderr
    assert "configuration is valid" in done.stdout


@pytest.mark.parametrize("broken", ["missing", "truncated"])
def test_print_status_and_sbom_fail_when_the_database_does_not_load(tmp_path, fake_env, broken):
    """--print status and sbom exit 1 with the reason on stderr, and claim no findings: null
    vulnerabilities with the reason in the JSON, no vulnerabilities in the SBOM."""
    fake_env.install("aiohttp", "3.7.3")
    path = tmp_path / "gone.zip" if broken == "missing" else truncated_zip(tmp_path)
    config = write_config(tmp_path, fake_env.path, [str(path)])
    status = run_cli("--config.file", str(config), "--print", "status")
    assert status.returncode == 1
    assert f"advisories not loaded: {path}" in status.stderr
    document = json.loads(status.stdout)
    assert document["vulnerabilities"] is None
    assert document["vulnerable_modules"] is None
    assert document["advisories"]["loaded"] is False
    assert str(path) in document["advisories"]["error"]
    sbom = run_cli("--config.file", str(config), "--print", "sbom")
    assert sbom.returncode == 1
    assert "advisories not loaded" in sbom.stderr
    assert "vulnerabilities" not in json.loads(sbom.stdout)


def test_print_metrics_says_nothing_was_checked(tmp_path, fake_env):
    """--print metrics exits 1 and publishes advisories_loaded 0 and no counts by severity."""
    fake_env.install("aiohttp", "3.7.3")
    config = write_config(tmp_path, fake_env.path, [str(tmp_path / "gone.zip")])
    done = run_cli("--config.file", str(config), "--print", "metrics")
    assert done.returncode == 1
    assert "status_exporter_advisories_loaded 0.0" in done.stdout
    assert "status_exporter_vulnerabilities" not in done.stdout
    assert "module_vulnerability_info" not in done.stdout


def test_print_says_how_many_records_were_skipped(tmp_path, fake_env):
    """A database that loads with a bad record exits 0 and says on stderr that one was skipped."""
    fake_env.install("aiohttp", "3.7.3")
    config = write_config(tmp_path, fake_env.path, [str(DATA)])
    done = run_cli("--config.file", str(config), "--print", "status")
    assert done.returncode == 0, done.stderr
    assert "1 advisory records skipped" in done.stderr
    assert [f["id"] for f in json.loads(done.stdout)["vulnerabilities"]] == ["PYSEC-2021-76"]


def test_a_folder_without_records_is_not_a_clean_bill(tmp_path, fake_env):
    """An advisory folder holding no usable record fails the load: exit 1, no findings."""
    fake_env.install("aiohttp", "3.7.3")
    empty = tmp_path / "osv"
    empty.mkdir()
    (empty / "notes.json").write_text("{}")  # not a record: skipped
    done = run_cli(
        "--config.file",
        str(write_config(tmp_path, fake_env.path, [str(empty)])),
        "--print",
        "status",
    )
    assert done.returncode == 1
    assert "no usable PyPI advisory records (1 skipped as unusable)" in done.stderr
    assert json.loads(done.stdout)["vulnerabilities"] is None


async def test_a_later_failure_keeps_the_findings_and_says_since_when(
    fake_env, start_client, tmp_path
):
    """After a good load, a broken file keeps the findings in force, and the JSON and metrics
    say the reload fails and since when."""
    fake_env.install("aiohttp", "3.7.3")
    database = tmp_path / "db.json"
    database.write_bytes((DATA / "handmade" / "GHSA-v6wp-4m6f-gcjg.json").read_bytes())
    client = await start_client(env_config(fake_env, advisories={"paths": [str(database)]}))
    before = await (await client.get("/api/v1/status/")).json()
    assert [f["id"] for f in before["vulnerabilities"]] == ["GHSA-v6wp-4m6f-gcjg"]
    assert before["advisories"]["error"] is None
    assert before["advisories"]["failing_since"] is None
    started = time.time()
    database.write_text("{ not json")
    await refresh(client)
    after = await (await client.get("/api/v1/status/")).json()
    assert after["vulnerabilities"] == before["vulnerabilities"]
    assert after["advisories"]["loaded"] is True
    assert after["advisories"]["error"].startswith(f"advisories not reloaded: {database}")
    assert after["advisories"]["loaded_at"] == before["advisories"]["loaded_at"]
    failing_since = after["advisories"]["failing_since"]
    assert failing_since is not None
    assert failing_since >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))
    families = await fetch_metrics(client)
    assert families["status_exporter_advisories_loaded"].samples[0].value == 1
    assert families["status_exporter_advisories_load_errors"].samples[0].value == 1
    assert "status_exporter_vulnerabilities" in families


async def test_the_json_says_how_old_the_data_is(fake_env, start_client, tmp_path):
    """advisories.newest is the newest record's date, and stale is true when it is older than
    the stale threshold, false for a fresh record."""
    fake_env.install("evil-pkg", "1.0.0")
    record = json.loads((DATA / "handmade" / "MAL-2024-0001.json").read_text())
    folder = tmp_path / "db"
    folder.mkdir()
    record["modified"] = "2024-01-02T03:04:05Z"
    (folder / "old.json").write_text(json.dumps(record))
    client = await start_client(env_config(fake_env, advisories={"paths": [str(folder)]}))
    old = (await (await client.get("/api/v1/status/")).json())["advisories"]
    assert old["newest"].startswith("2024-01-02T03:04:05")
    assert old["stale"] is True
    record["modified"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (folder / "old.json").write_text(json.dumps(record))
    await refresh(client)
    fresh = (await (await client.get("/api/v1/status/")).json())["advisories"]
    assert fresh["stale"] is False


async def test_no_database_configured_has_no_advisory_state(fake_env, start_client):
    """Without advisories.paths, advisories and vulnerable_modules are null, no health family."""
    client = await start_client(env_config(fake_env))
    status = await (await client.get("/api/v1/status/")).json()
    assert status["advisories"] is None
    assert status["vulnerable_modules"] is None
    assert "status_exporter_advisories_loaded" not in await fetch_metrics(client)
