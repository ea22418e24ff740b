"""modules.publish (all, vulnerable, none) and the target_modules_info fingerprint series."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import FakeEnvironment, env_config, fetch_metrics, make_config, quiet_sources

from exporter.config import ConfigError, load_config
from exporter.host import take_host
from exporter.refresh import RefreshStats
from exporter.render.prometheus import Fragment, MetricsPages
from exporter.snapshot import Identity, take_snapshot

DATA = Path(__file__).resolve().parent / "data" / "osv"
# aiohttp 3.7.3 and django 3.2.0 have advisories in DATA; six and attrs have none.
MODULES = {"aiohttp": "3.7.3", "django": "3.2.0", "six": "1.16.0", "attrs": "23.1.0"}
VULNERABLE = {"aiohttp": "3.7.3", "django": "3.2.0"}
EXPECTED_INFO = {"all": MODULES, "vulnerable": VULNERABLE, "none": {}}


def fingerprint_of(modules: dict[str, str]) -> str:
    """The README's recipe, written out here on its own: sha256 of the sorted lines."""
    text = "".join(sorted(f"{name}=={version}\n" for name, version in modules.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def install(env: FakeEnvironment, modules: dict[str, str]) -> FakeEnvironment:
    for name, version in modules.items():
        env.install(name, version)
    return env


def samples(body: bytes) -> dict[str, list]:
    """Family name -> samples, parsed with prometheus_client's text parser."""
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def render(host_or_snapshot, previous: MetricsPages | None = None) -> MetricsPages:
    return MetricsPages(host_or_snapshot, RefreshStats(refreshes=1), previous)


def body_of(pages: MetricsPages) -> bytes:
    return pages.body(Fragment(b"", b""), (False, False))


def module_info(families: dict[str, list], target: str | None = None) -> dict[str, str]:
    return {
        s.labels["module"]: s.labels["version"]
        for s in families.get("module_info", [])
        if target is None or s.labels["target"] == target
    }


def by_target(families: dict[str, list], name: str) -> dict[str, object]:
    return {
        s.labels["target"]: s.labels.get("fingerprint", s.value) for s in families.get(name, [])
    }


def test_the_recipe_is_sha256_of_sorted_lines():
    """The test's own recipe gives the value of sha256sum over a hand-written file."""
    text = b"aiohttp==3.7.3\nattrs==23.1.0\ndjango==3.2.0\nsix==1.16.0\n"
    assert fingerprint_of(MODULES) == hashlib.sha256(text).hexdigest()[:16]


def test_lines_are_sorted_not_names(fake_env):
    """The fingerprint sorts the name==version lines, not the names: zope-interface== comes
    before zope== ('-' < '='), whatever order the environment lists them in."""
    install(fake_env, {"zope": "5.0", "zope-interface": "6.1"})
    snapshot = take_snapshot(env_config(fake_env), Identity.new(), sources=quiet_sources())
    lines = [f"{name}=={version}\n" for name, version in snapshot.modules.items()]
    assert lines != sorted(lines)  # the environment's own order is not the recipe's
    text = b"zope-interface==6.1\nzope==5.0\n"
    (series,) = samples(body_of(render(snapshot)))["target_modules_info"]
    assert series.labels["fingerprint"] == hashlib.sha256(text).hexdigest()[:16]


@pytest.mark.parametrize("mode", ["all", "vulnerable", "none"])
async def test_each_mode_publishes_its_module_info_and_every_finding(fake_env, start_client, mode):
    """On the daemon's /metrics, module_info holds the mode's modules, the findings and the
    fingerprint of every module are there in each mode, and the counts say published vs found."""
    install(fake_env, MODULES)
    config = env_config(
        fake_env,
        modules={"paths": [str(fake_env.path)], "publish": mode},
        advisories={"paths": [str(DATA)]},
    )
    client = await start_client(config)
    families = await fetch_metrics(client)
    info = families.get("module_info")
    published = {s.labels["module"]: s.labels["version"] for s in info.samples} if info else {}
    assert published == EXPECTED_INFO[mode]
    findings = {s.labels["module"] for s in families["module_vulnerability_info"].samples}
    assert findings == set(VULNERABLE)
    fixes = {s.labels["module"]: s.labels["fixed"] for s in families["module_fix_info"].samples}
    assert fixes == {"aiohttp": "3.7.4", "django": "3.2.25"}
    (fingerprint,) = families["target_modules_info"].samples
    assert fingerprint.labels == {"fingerprint": fingerprint_of(MODULES)}
    assert fingerprint.value == 1
    assert families["status_exporter_modules"].samples[0].value == len(EXPECTED_INFO[mode])
    assert families["status_exporter_modules_found"].samples[0].value == len(MODULES)
    assert families["status_exporter_modules_dropped"].samples[0].value == 0
    status = await (await client.get("/api/v1/status/")).json()
    assert status["modules"] == MODULES  # the JSON always lists every module


@pytest.mark.parametrize("advisories", [None, "missing"])
def test_vulnerable_without_a_loaded_database_publishes_no_module_info(
    fake_env, tmp_path, advisories
):
    """With no advisory database configured, or one that did not load, nothing was checked:
    no module_info, and (configured) status_exporter_advisories_loaded says 0."""
    install(fake_env, MODULES)
    sections: dict[str, object] = {
        "modules": {"paths": [str(fake_env.path)], "publish": "vulnerable"}
    }
    if advisories:
        sections["advisories"] = {"paths": [str(tmp_path / "no-such-database")]}
    snapshot = take_snapshot(
        env_config(fake_env, **sections), Identity.new(), sources=quiet_sources()
    )
    families = samples(body_of(render(snapshot)))
    assert module_info(families) == {}
    assert families["status_exporter_modules"][0].value == 0
    assert families["status_exporter_modules_found"][0].value == len(MODULES)
    assert "module_vulnerability_info" not in families
    if advisories:
        assert families["status_exporter_advisories_loaded"][0].value == 0
    (fingerprint,) = families["target_modules_info"]
    assert fingerprint.labels["fingerprint"] == fingerprint_of(MODULES)


def test_the_new_family_follows_module_info(fake_env):
    """Under the default (all) every module has its module_info series, and
    target_modules_info comes between module_info and the health block, so the bytes
    before it are as they were (test_render_prometheus pins those against prometheus_client)."""
    install(fake_env, MODULES)
    snapshot = take_snapshot(env_config(fake_env), Identity.new(), sources=quiet_sources())
    text = body_of(render(snapshot)).decode()
    assert snapshot.module_publish == "all"
    assert module_info(samples(text.encode())) == MODULES
    where = text.index("# HELP target_modules_info ")
    assert text.rindex("\nmodule_info{") < where < text.index("# HELP status_exporter_build_info")


def test_equal_module_sets_have_equal_fingerprints_across_processes(tmp_path):
    """Two environments with the same modules, installed in another order and read in two
    processes, give the same fingerprint, the recipe's; one version changed gives another."""
    first = install(FakeEnvironment(tmp_path / "a"), MODULES)
    second = install(FakeEnvironment(tmp_path / "b"), dict(reversed(MODULES.items())))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"modules: {{paths: [{first.path}], publish: none}}\ncommit: {{value: x, env: []}}\n"
    )
    printed = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config_file), "--print", "metrics"],
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "1"},  # another hash seed than this process's
    )
    (elsewhere,) = samples(printed.stdout)["target_modules_info"]
    here = take_snapshot(env_config(second), Identity.new(), sources=quiet_sources())
    (local,) = samples(body_of(render(here)))["target_modules_info"]
    assert elsewhere.labels == local.labels == {"fingerprint": fingerprint_of(MODULES)}
    second.upgrade("six", "1.17.0")
    changed = take_snapshot(env_config(second), Identity.new(), sources=quiet_sources())
    (other,) = samples(body_of(render(changed)))["target_modules_info"]
    assert other.labels["fingerprint"] == fingerprint_of({**MODULES, "six": "1.17.0"})
    assert other.labels["fingerprint"] != local.labels["fingerprint"]


def test_a_targets_own_publish_wins(tmp_path):
    """Each target publishes module_info by its own modules.publish, else the top-level one;
    findings and one fingerprint series per target are there whatever the mode."""
    envs = {name: install(FakeEnvironment(tmp_path / name), MODULES) for name in ("a", "b", "c")}
    envs["c"].upgrade("aiohttp", "3.7.4")  # fixed: c differs from a and b by one version
    config = make_config(
        modules={"publish": "vulnerable"},
        advisories={"paths": [str(DATA)]},
        targets={
            "environments": [
                {"name": "a", "paths": [str(envs["a"].path)], "modules": {"publish": "none"}},
                {"name": "b", "paths": [str(envs["b"].path)]},
                {"name": "c", "paths": [str(envs["c"].path)], "modules": {"publish": "all"}},
            ]
        },
    )
    host = take_host(config, Identity.new(), sources=quiet_sources())
    families = samples(body_of(render(host)))
    assert module_info(families, "a") == {}
    assert module_info(families, "b") == VULNERABLE
    assert module_info(families, "c") == {**MODULES, "aiohttp": "3.7.4"}
    findings = {
        (s.labels["target"], s.labels["module"]) for s in families["module_vulnerability_info"]
    }
    assert findings == {
        ("a", "aiohttp"),
        ("a", "django"),
        ("b", "aiohttp"),
        ("b", "django"),
        ("c", "django"),
    }
    prints = by_target(families, "target_modules_info")
    assert prints == {
        "a": fingerprint_of(MODULES),
        "b": fingerprint_of(MODULES),
        "c": fingerprint_of({**MODULES, "aiohttp": "3.7.4"}),
    }
    assert by_target(families, "status_exporter_modules") == {"a": 0, "b": 2, "c": 4}
    assert by_target(families, "status_exporter_modules_found") == {"a": 4, "b": 4, "c": 4}
    assert by_target(families, "status_exporter_modules_dropped") == {"a": 0, "b": 0, "c": 0}


def test_the_series_cap_counts_only_what_publish_selects(tmp_path):
    """targets.max_module_series is spent on the selected modules only: a target under none
    leaves the whole allowance to the next one."""
    envs = [install(FakeEnvironment(tmp_path / name), MODULES) for name in ("a", "b")]
    config = make_config(
        targets={
            "environments": [
                {"name": "a", "paths": [str(envs[0].path)], "modules": {"publish": "none"}},
                {"name": "b", "paths": [str(envs[1].path)]},
            ],
            "max_module_series": 3,
        }
    )
    families = samples(body_of(render(take_host(config, Identity.new(), sources=quiet_sources()))))
    assert module_info(families, "a") == {}
    assert len(module_info(families, "b")) == 3
    assert by_target(families, "status_exporter_modules_dropped") == {"a": 0, "b": 1}


def test_the_fingerprint_is_computed_once_per_module_set(fake_env):
    """A refresh whose facts changed but whose modules did not (another commit) keeps the very
    fingerprint pair of the previous rendering; a changed module set gets a new one."""
    install(fake_env, MODULES)
    identity = Identity.new()
    first = take_snapshot(env_config(fake_env), identity, sources=quiet_sources())
    old = first.taken_at - 10  # older than the racy window: the next scan reuses the directory
    os.utime(fake_env.path, (old, old))
    first = take_snapshot(env_config(fake_env), identity, first, sources=quiet_sources())
    pages = render(first)
    recommitted = env_config(fake_env, commit={"value": "def5678", "env": []})
    second = take_snapshot(recommitted, identity, first, sources=quiet_sources())
    assert second.modules is first.modules
    again = render(second, pages)
    assert again.facts_rendering is not pages.facts_rendering  # the commit did change
    assert again.module_fingerprints[""] is pages.module_fingerprints[""]
    fake_env.upgrade("six", "1.17.0")
    third = take_snapshot(recommitted, identity, second, sources=quiet_sources())
    later = render(third, again)
    assert later.module_fingerprints[""][1] == fingerprint_of({**MODULES, "six": "1.17.0"})


def test_a_changed_publish_setting_renders_anew(fake_env):
    """A reload that changes only modules.publish (directories unchanged, the scan reused)
    changes module_info in the next rendering."""
    install(fake_env, MODULES)
    identity = Identity.new()
    advisories = {"paths": [str(DATA)]}
    config = env_config(fake_env, advisories=advisories)
    first = take_snapshot(config, identity, sources=quiet_sources())
    old = first.taken_at - 10
    os.utime(fake_env.path, (old, old))
    first = take_snapshot(config, identity, first, sources=quiet_sources())
    pages = render(first)
    narrowed = env_config(
        fake_env,
        modules={"paths": [str(fake_env.path)], "publish": "vulnerable"},
        advisories=advisories,
    )
    second = take_snapshot(narrowed, identity, first, sources=quiet_sources())
    assert second.module_publish == "vulnerable"
    assert module_info(samples(body_of(render(second, pages)))) == VULNERABLE


def test_redacted_modules_publish_a_redacted_fingerprint(fake_env):
    """redact.modules hides the module list from metrics, and so its fingerprint, which would
    confirm a guessed list; the series stays, and the JSON-only redaction keeps it."""
    install(fake_env, MODULES)
    for redact, expected in (("metrics", "<redacted>"), ("json", fingerprint_of(MODULES))):
        config = env_config(fake_env, redact={"modules": redact})
        snapshot = take_snapshot(config, Identity.new(), sources=quiet_sources())
        (series,) = samples(body_of(render(snapshot)))["target_modules_info"]
        assert series.labels == {"fingerprint": expected}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "modules: {publish: some}\n",
            "modules.publish: must be one of 'all', 'vulnerable', 'none'",
        ),
        ("modules: {publish: true}\n", "modules.publish: must be one of"),
        (
            "targets: {environments: [{name: web, paths: [/x], modules: {publish: everything}}]}\n",
            "targets.environments: [0].modules.publish: must be one of",
        ),
        (
            "targets: {environments: [{name: web, paths: [/x], modules: {max: 3}}]}\n",
            "[0].modules.max: unknown key (known keys here: publish)",
        ),
    ],
)
def test_a_bad_publish_value_names_the_key(tmp_path, text, fragment):
    """A value other than all, vulnerable or none is refused naming the file and the key."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert any(p.startswith(f"{path}: ") and fragment in p for p in error.value.problems), (
        error.value.problems
    )


def test_the_shipped_example_of_a_target_publish_loads(tmp_path):
    """The per-target key as config.yaml documents it loads, and null keeps the top level."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "modules: {publish: none}\n"
        "targets:\n  environments:\n"
        "    - {name: web, paths: [/srv/web], modules: {publish: vulnerable}}\n"
        "    - {name: cron, paths: [/srv/cron], modules: {publish: null}}\n"
    )
    config = load_config(path)
    assert config.modules.publish == "none"
    web, cron = config.targets.environments
    assert (web.modules.publish, cron.modules.publish) == ("vulnerable", None)
