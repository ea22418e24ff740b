"""A host and its targets: configured environments, each labelled, each failing alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import REFERENCE_TYPES, FakeEnvironment, make_config, quiet_sources, refresh

from exporter.config import ConfigError
from exporter.host import take_host
from exporter.refresh import RefreshStats
from exporter.render.pages import render_pages
from exporter.render.prometheus import Fragment, MetricsPages
from exporter.snapshot import Identity
from exporter.web import REFRESHER

DATA = Path(__file__).resolve().parent / "data" / "osv"


@pytest.fixture(scope="module")
def venv_root(tmp_path_factory) -> Path:
    """A real virtual environment made by ``python -m venv`` (without pip: nothing to fetch)."""
    root = tmp_path_factory.mktemp("venvs") / "web"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return root


def site_packages(venv: Path) -> FakeEnvironment:
    (site,) = venv.glob("lib/python*/site-packages")
    return FakeEnvironment(site)


def targets_config(*environments: dict[str, object], **more: dict[str, object]):
    return make_config(targets={"environments": list(environments)}, **more)


def metrics_of(host) -> dict[str, list]:
    body = MetricsPages(host, RefreshStats()).body(Fragment(b"", b""), (False, False))
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def test_a_venv_root_is_its_site_packages_and_its_python(venv_root):
    """A venv root is scanned as its lib/python*/site-packages, its Python from pyvenv.cfg."""
    site_packages(venv_root).install("Django", "4.2.1")
    config = targets_config({"name": "web", "paths": [str(venv_root)]})
    host = take_host(config, Identity.new(), sources=quiet_sources())
    (target,) = host.targets
    assert target.snapshot is not None
    assert dict(target.snapshot.modules) == {"django": "4.2.1"}
    major, minor = sys.version_info[:2]
    assert target.snapshot.python.version.startswith(f"{major}.{minor}")
    assert "virtual environment" in target.snapshot.python.version_string


def test_site_packages_without_a_venv_takes_the_python_from_the_path(tmp_path):
    """A bare lib/python3.9/site-packages says Python 3.9, patch level unknown, never the
    exporter's own Python."""
    env = FakeEnvironment(tmp_path / "usr" / "lib" / "python3.9" / "site-packages")
    env.install("requests", "2.0.0")
    config = targets_config({"name": "old", "paths": [str(env.path)]})
    (target,) = take_host(config, Identity.new(), sources=quiet_sources()).targets
    assert target.snapshot is not None
    python = target.snapshot.python
    assert (python.major, python.minor, python.patchlevel) == ("3", "9", "unknown")


def test_every_per_target_series_carries_its_target(tmp_path):
    """module_info, build_info, python_info and the findings carry target=; platform_info and
    the refresh health do not; target_info says kind and path."""
    web, worker = FakeEnvironment(tmp_path / "web"), FakeEnvironment(tmp_path / "worker")
    web.install("aiohttp", "3.7.3")
    worker.install("aiohttp", "3.7.4")
    config = targets_config(
        {"name": "web", "paths": [str(web.path)], "commit": {"value": "aaa1111"}},
        {"name": "worker", "paths": [str(worker.path)]},
        advisories={"paths": [str(DATA)]},
    )
    families = metrics_of(take_host(config, Identity.new(), sources=quiet_sources()))
    assert {(s.labels["target"], s.labels["version"]) for s in families["module_info"]} == {
        ("web", "3.7.3"),
        ("worker", "3.7.4"),
    }
    assert {s.labels["target"]: s.labels["commit"] for s in families["build_info"]} == {
        "web": "aaa1111",
        "worker": "unknown",
    }
    assert {s.labels["target"] for s in families["python_info"]} == {"web", "worker"}
    (finding,) = families["module_vulnerability_info"]
    assert (finding.labels["target"], finding.labels["id"]) == ("web", "PYSEC-2021-76")
    assert [s.labels for s in families["target_info"]] == [
        {"target": "web", "kind": "environment", "path": str(web.path)},
        {"target": "worker", "kind": "environment", "path": str(worker.path)},
    ]
    assert families["status_exporter_targets"][0].value == 2
    assert "target" not in families["platform_info"][0].labels
    assert "target" not in families["status_exporter_refreshes"][0].labels
    counts = {s.labels["target"]: s.value for s in families["status_exporter_modules"]}
    assert counts == {"web": 1, "worker": 1}


def test_one_unreadable_target_is_its_own_error(tmp_path):
    """A target whose path vanished keeps its last good facts and counts the error; the
    other target is untouched."""
    web, gone = FakeEnvironment(tmp_path / "web"), FakeEnvironment(tmp_path / "gone")
    web.install("django", "4.2.1")
    gone.install("flask", "2.0.0")
    config = targets_config(
        {"name": "web", "paths": [str(web.path)]}, {"name": "gone", "paths": [str(gone.path)]}
    )
    identity = Identity.new()
    first = take_host(config, identity, sources=quiet_sources())
    for entry in gone.path.iterdir():
        for file in entry.iterdir():
            file.unlink()
        entry.rmdir()
    gone.path.rmdir()
    second = take_host(config, identity, first, sources=quiet_sources())
    failing = second.target("gone")
    assert failing is not None
    assert failing.snapshot is not None
    assert dict(failing.snapshot.modules) == {"flask": "2.0.0"}
    assert failing.errors == 1
    assert f"{gone.path}: No such file or directory" == failing.last_error
    healthy = second.target("web")
    assert healthy is not None
    assert (healthy.errors, healthy.last_error) == (0, None)
    families = metrics_of(second)
    errors = {s.labels["target"]: s.value for s in families["status_exporter_target_errors"]}
    assert errors == {"web": 0, "gone": 1}


def test_an_unchanged_target_reuses_its_modules_and_its_rendering(tmp_path):
    """Nothing changed: the same modules object, no directory read, the same metrics bytes."""
    web = FakeEnvironment(tmp_path / "web")
    web.install("django", "4.2.1")
    config = targets_config({"name": "web", "paths": [str(web.path)]})
    identity = Identity.new()
    first = take_host(config, identity, sources=quiet_sources())
    # The directory's mtime must be older than the racy window for its scan to be reused.
    import os

    old = first.targets[0].snapshot.taken_at - 10
    os.utime(web.path, (old, old))
    first = take_host(config, identity, first, sources=quiet_sources())
    second = take_host(config, identity, first, sources=quiet_sources())
    assert second.targets[0].snapshot.modules is first.targets[0].snapshot.modules
    assert second.targets[0].snapshot.installed_scan.directories_read == 0
    pages = MetricsPages(first, RefreshStats())
    again = MetricsPages(second, RefreshStats(), pages)
    assert again.facts_rendering is pages.facts_rendering


def test_the_module_series_cap_applies_over_all_targets(tmp_path):
    """targets.max_module_series publishes that many module series in all, dropping the rest
    and counting them per target."""
    envs = [FakeEnvironment(tmp_path / name) for name in ("a", "b")]
    for env in envs:
        for i in range(3):
            env.install(f"pkg{i}", "1.0")
    config = make_config(
        targets={
            "environments": [{"name": e.path.name, "paths": [str(e.path)]} for e in envs],
            "max_module_series": 4,
        }
    )
    families = metrics_of(take_host(config, Identity.new(), sources=quiet_sources()))
    assert len(families["module_info"]) == 4
    dropped = {s.labels["target"]: s.value for s in families["status_exporter_modules_dropped"]}
    assert dropped == {"a": 0, "b": 2}


def test_a_removed_target_leaves_no_series(tmp_path):
    """A target taken out of the config is gone from the next rendering."""
    a, b = FakeEnvironment(tmp_path / "a"), FakeEnvironment(tmp_path / "b")
    a.install("one", "1.0")
    b.install("two", "1.0")
    both = targets_config(
        {"name": "a", "paths": [str(a.path)]}, {"name": "b", "paths": [str(b.path)]}
    )
    identity = Identity.new()
    first = take_host(both, identity, sources=quiet_sources())
    pages = render_pages(first, RefreshStats(), None)
    only_a = targets_config({"name": "a", "paths": [str(a.path)]})
    second = take_host(only_a, identity, first, sources=quiet_sources())
    again = render_pages(second, RefreshStats(), pages)
    body = again.metrics.body(Fragment(b"", b""), (False, False)).decode()
    assert 'target="b"' not in body
    assert set(again.targets) == {"a"}


def test_targets_have_stable_serial_numbers_of_their_own(tmp_path):
    """Each target's SBOM has its own serial number, stable across refreshes."""
    a, b = FakeEnvironment(tmp_path / "a"), FakeEnvironment(tmp_path / "b")
    a.install("one", "1.0")
    b.install("two", "1.0")
    config = targets_config(
        {"name": "a", "paths": [str(a.path)]}, {"name": "b", "paths": [str(b.path)]}
    )
    identity = Identity.new()
    first = render_pages(take_host(config, identity, sources=quiet_sources()), RefreshStats(), None)
    host = take_host(config, identity, sources=quiet_sources())
    second = render_pages(host, RefreshStats(), first)
    import json

    serial = {n: json.loads(p.sbom.body)["serialNumber"] for n, p in second.targets.items()}
    assert serial["a"] != serial["b"]
    assert serial["a"] == json.loads(first.targets["a"].sbom.body)["serialNumber"]
    assert identity.server_id not in serial.values()


@pytest.mark.parametrize(
    ("environments", "fragment"),
    [
        ([{"name": "bad name", "paths": ["/x"]}], "targets.environments: [0].name: 'bad name'"),
        ([{"name": "a" * 65, "paths": ["/x"]}], "[0].name:"),
        ([{"name": "web", "paths": ["/x"]}, {"name": "web", "paths": ["/y"]}], "used twice"),
        ([{"name": "web"}], "[0].paths: required"),
        ([{"name": "web", "paths": ["/x"], "colour": "red"}], "[0].colour: unknown key"),
        ([{"name": 'x"}\n', "paths": ["/x"]}], "[0].name:"),
        ([{"name": "web", "paths": "/x"}], "[0].paths: expected a list"),
    ],
)
def test_bad_targets_name_the_key(environments, fragment):
    """Hostile or malformed target names and paths are refused with the key named."""
    with pytest.raises(ConfigError) as error:
        targets_config(*environments)
    assert any(fragment in problem for problem in error.value.problems), error.value.problems


def test_without_targets_the_metrics_have_no_target_label(tmp_path):
    """No targets configured: no target label, no target_info, the single-environment body."""
    env = FakeEnvironment(tmp_path / "site")
    env.install("django", "4.2.1")
    config = make_config(modules={"paths": [str(env.path)]})
    host = take_host(config, Identity.new(), sources=quiet_sources())
    families = metrics_of(host)
    assert "target_info" not in families
    assert [s.labels for s in families["module_info"]] == [{"module": "django", "version": "4.2.1"}]
    stats = RefreshStats()
    body = MetricsPages(host, stats).body(Fragment(b"", b""), (False, False))
    same = MetricsPages(host.own, stats).body(Fragment(b"", b""), (False, False))
    assert body == same


async def test_every_target_answers_the_original_status_document(tmp_path, start_client):
    """/api/v1/targets lists the targets; each target's status document has every original
    field with its type; /api/v1/status/ still answers for the exporter's own environment."""
    web, worker = FakeEnvironment(tmp_path / "web"), FakeEnvironment(tmp_path / "worker")
    web.install("Django", "4.2.1")
    worker.install("celery", "5.3.0")
    (tmp_path / "REVISION").write_text("178d2ea\n")
    own = FakeEnvironment(tmp_path / "own")
    own.install("aiohttp", "3.9.0")
    config = make_config(
        modules={"paths": [str(own.path)]},
        commit={"value": "own1234", "env": []},
        targets={
            "environments": [
                {
                    "name": "web",
                    "paths": [str(web.path)],
                    "commit": {"file": str(tmp_path / "REVISION")},
                },
                {"name": "worker", "paths": [str(worker.path)]},
            ]
        },
    )
    client = await start_client(config)
    listing = await (await client.get("/api/v1/targets")).json()
    assert [(t["name"], t["kind"], t["module_count"], t["commit"]) for t in listing["targets"]] == [
        ("web", "environment", 1, "178d2ea"),
        ("worker", "environment", 1, "unknown"),
    ]
    for target in listing["targets"]:
        response = await client.get(target["status_url"])
        assert response.status == 200
        body = await response.json()
        for name, kind in REFERENCE_TYPES.items():
            assert isinstance(body[name], kind), name
        assert body["server_address"] == f"{client.host}:{client.port}"
    web_status = await (await client.get("/api/v1/targets/web/status")).json()
    assert web_status["modules"] == {"django": "4.2.1"}
    assert web_status["commit"] == "178d2ea"
    own_status = await (await client.get("/api/v1/status/")).json()
    assert own_status["modules"] == {"aiohttp": "3.9.0"}
    assert own_status["commit"] == "own1234"
    index = await (await client.get("/api/v1/modules")).json()
    assert index["modules"] == {
        "celery": [{"target": "worker", "version": "5.3.0"}],
        "django": [{"target": "web", "version": "4.2.1"}],
    }
    sbom = await (await client.get("/api/v1/targets/web/sbom")).json()
    assert [c["name"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:pypi")] == [
        "Django"
    ]
    page = await (await client.get("/api/v1/targets/web/status/?format=html")).text()
    assert 'href="/api/v1/targets/web/sbom"' in page
    assert "web on " in page


async def test_an_unknown_or_unread_target_is_a_json_error(tmp_path, start_client):
    """An unknown name is a 404 with a JSON error; a target never readable is a 503 saying why."""
    config = make_config(
        targets={"environments": [{"name": "gone", "paths": [str(tmp_path / "missing")]}]}
    )
    client = await start_client(config)
    for path in ("/api/v1/targets/nope/status/", "/api/v1/targets/nope/sbom"):
        response = await client.get(path)
        assert response.status == 404
        assert "no target named 'nope'" in (await response.json())["error"]
    response = await client.get("/api/v1/targets/gone/status/")
    assert response.status == 503
    assert "No such file or directory" in (await response.json())["error"]
    (entry,) = (await (await client.get("/api/v1/targets")).json())["targets"]
    assert (entry["errors"], entry["module_count"]) == (1, None)


async def test_a_reload_adds_and_removes_targets(tmp_path, start_client):
    """Reconfiguring adds a target's series and routes, and removing it leaves nothing behind."""
    a, b = FakeEnvironment(tmp_path / "a"), FakeEnvironment(tmp_path / "b")
    a.install("one", "1.0")
    b.install("two", "2.0")
    only_a = make_config(targets={"environments": [{"name": "a", "paths": [str(a.path)]}]})
    both = make_config(
        targets={
            "environments": [
                {"name": "a", "paths": [str(a.path)]},
                {"name": "b", "paths": [str(b.path)]},
            ]
        }
    )
    client = await start_client(only_a)
    refresher = client.app[REFRESHER]
    refresher.reconfigure(both)
    await refresh(client)
    body = await (await client.get("/metrics")).text()
    assert 'module_info{module="two",target="b",version="2.0"} 1.0' in body
    assert (await client.get("/api/v1/targets/b/status/")).status == 200
    refresher.reconfigure(only_a)
    await refresh(client)
    body = await (await client.get("/metrics")).text()
    assert 'target="b"' not in body
    assert (await client.get("/api/v1/targets/b/status/")).status == 404


def test_print_chooses_a_target_and_names_the_choices(tmp_path):
    """--print status prints the own environment, --print.target NAME that target's; an
    unknown name exits 2 naming the targets; --print metrics covers every target."""
    import json as json_module

    web = FakeEnvironment(tmp_path / "web")
    web.install("Django", "4.2.1")
    own = FakeEnvironment(tmp_path / "own")
    own.install("aiohttp", "3.9.0")
    config = tmp_path / "config.yaml"
    config.write_text(
        json_module.dumps(
            {
                "modules": {"paths": [str(own.path)]},
                "targets": {"environments": [{"name": "web", "paths": [str(web.path)]}]},
            }
        )
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exporter", "--config.file", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert json_module.loads(run("--print", "status").stdout)["modules"] == {"aiohttp": "3.9.0"}
    chosen = run("--print", "status", "--print.target", "web")
    assert json_module.loads(chosen.stdout)["modules"] == {"django": "4.2.1"}
    unknown = run("--print", "sbom", "--print.target", "nope")
    assert unknown.returncode == 2
    assert "no target named 'nope' (targets: web)" in unknown.stderr
    metrics = run("--print", "metrics")
    assert 'module_info{module="django",target="web",version="4.2.1"} 1.0' in metrics.stdout


def test_an_unchanged_status_document_is_reused_with_the_new_refresh_time(tmp_path):
    """The same facts reuse the serialised document, and only refreshed_at moves; a changed
    module gives a new document."""
    import json as json_module

    web = FakeEnvironment(tmp_path / "web")
    web.install("django", "4.2.1")
    config = targets_config({"name": "web", "paths": [str(web.path)]})
    identity = Identity.new()
    clock = iter(range(1_000_000, 2_000_000, 100))
    sources = quiet_sources()
    sources = type(sources)(environ={}, clock=lambda: float(next(clock)))
    first_host = take_host(config, identity, sources=sources)
    first = render_pages(first_host, RefreshStats(), None)
    second = render_pages(
        take_host(config, identity, first_host, sources=sources), RefreshStats(), first
    )
    a = json_module.loads(first.targets["web"].status.body("h:1"))
    b = json_module.loads(second.targets["web"].status.body("h:1", pretty=True))
    assert second.targets["web"].status._compact is first.targets["web"].status._compact
    assert a["refreshed_at"] != b["refreshed_at"]
    assert {k: v for k, v in a.items() if k != "refreshed_at"} == {
        k: v for k, v in b.items() if k != "refreshed_at"
    }
    web.upgrade("django", "5.0.0")
    third_host = take_host(config, identity, first_host, sources=sources)
    third = render_pages(third_host, RefreshStats(), second)
    assert json_module.loads(third.targets["web"].status.body("h:1"))["modules"] == {
        "django": "5.0.0"
    }
