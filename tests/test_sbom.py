"""The live SBOM: strict CycloneDX 1.6, the same components and dependency graph as
cyclonedx-py, SPDX licences, revisions."""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import FakeEnvironment, env_config, refresh

from exporter.collectors.platform import collect_platform
from exporter.collectors.python import collect_python
from exporter.config import Config, ModulesConfig
from exporter.render.dependencies import marker_environment
from exporter.render.sbom import CONTENT_TYPE, SbomDocument, purl
from exporter.snapshot import Identity, Snapshot, Sources, take_snapshot

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


def install_requiring(env: FakeEnvironment, name: str, version: str, *requires: str) -> None:
    """Install ``name`` with these Requires-Dist lines in its METADATA header."""
    install_with_license(env, name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))


def sbom_of(snapshot: Snapshot) -> dict:
    """The snapshot's SBOM, validated."""
    return validate(SbomDocument(snapshot).body)


def graph_of(sbom: dict) -> dict[str, set[str]]:
    """Library component name -> the names of the components its entry depends on."""
    names = {c["bom-ref"]: c["name"] for c in sbom["components"] if c["type"] == "library"}
    return {
        names[entry["ref"]]: {names[ref] for ref in entry.get("dependsOn", ())}
        for entry in sbom["dependencies"]
        if entry["ref"] in names
    }


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
    assert components["Django"]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
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


# name, version, Requires-Dist: extras, true markers, a URL requirement, a requirement on
# itself, names written unnormalised, requirements not installed, and a cycle.
REAL_VENV = [
    ("Django", "4.2.1", ["asgiref<4,>=3.6.0", "sqlparse>=0.3.1", 'bcrypt; extra == "bcrypt"']),
    (
        "asgiref",
        "3.7.2",
        ['typing_extensions>=4; python_version >= "3"', "pytest; extra == 'tests'"],
    ),
    ("sqlparse", "0.4.4", []),
    ("typing_extensions", "4.9.0", []),
    ("zope.interface", "6.1", ["setuptools"]),
    (
        "Foo.Bar_baz",
        "1.0+local.1",
        [
            "ZOPE.Interface>=5",
            "not-installed>=1",
            'foo-bar-baz[all]; extra == "everything"',
            "certifi @ https://example.invalid/certifi-1.tar.gz ; python_version >= '3'",
        ],
    ),
    (
        "requests",
        "2.31.0",
        [
            "charset-normalizer<4,>=2",
            "idna<4,>=2.5",
            "urllib3<3,>=1.21.1",
            "certifi>=2017.4.17",
            'PySocks!=1.5.7,>=1.5.6; extra == "socks"',
            'chardet<6,>=3.0.2; extra == "use-chardet-on-py3"',
        ],
    ),
    ("charset-normalizer", "3.3.2", []),
    ("idna", "3.6", []),
    (
        "urllib3",
        "2.1.0",
        ['brotli>=1.0.9; platform_python_implementation == "CPython" and extra == "brotli"'],
    ),
    ("certifi", "2023.11.17", []),
    ("PySocks", "1.7.1", []),
    ("cycle-a", "1.0", ["cycle-b"]),
    ("cycle-b", "1.0", ["cycle-a>=1"]),
]


@pytest.fixture(scope="module")
def real_venv(tmp_path_factory) -> tuple[dict, dict]:
    """A real venv holding REAL_VENV: (cyclonedx-py environment's SBOM of it, ours)."""
    cyclonedx_py = shutil.which("cyclonedx-py", path=str(Path(sys.executable).parent))
    assert cyclonedx_py, "cyclonedx-bom is a test dependency"
    venv = tmp_path_factory.mktemp("sbom") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    env = FakeEnvironment(site)
    for name, version, requires in REAL_VENV:
        install_requiring(env, name, version, *requires)
    done = subprocess.run(
        [cyclonedx_py, "environment", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # the venv's path only
    )
    return json.loads(done.stdout), sbom_of(take_snapshot(env_config(env), Identity.new()))


def test_components_equal_what_cyclonedx_py_reports(real_venv):
    """For one real venv, (name, version, purl) of our components equal cyclonedx-py's."""
    theirs_doc, ours_doc = real_venv
    theirs = {(c["name"], c["version"], c["purl"]) for c in theirs_doc["components"]}
    ours = {
        (c["name"], c["version"], c["purl"])
        for c in ours_doc["components"]
        if c["type"] == "library"
    }
    assert ours == theirs
    assert purl("Foo.Bar_baz", "1.0+local.1") == "pkg:pypi/foo.bar-baz@1.0%2Blocal.1"


def test_the_dependency_graph_equals_what_cyclonedx_py_reports(real_venv):
    """For one real venv, component -> the components it requires equals cyclonedx-py's graph:
    installed requirements only, extras' included, none on itself."""
    theirs_doc, ours_doc = real_venv
    theirs = graph_of(theirs_doc)
    ours = graph_of(ours_doc)
    assert ours == theirs
    assert ours["requests"] == {"charset-normalizer", "idna", "urllib3", "certifi", "PySocks"}
    assert ours["Foo.Bar_baz"] == {"zope.interface", "certifi"}


def test_every_component_has_one_entry_reachable_from_the_application(real_venv):
    """Each component has exactly one dependencies entry, every ref names a component, and
    every component is reachable from metadata.component (the cycle included)."""
    _, sbom = real_venv
    refs = {c["bom-ref"] for c in sbom["components"]} | {"application"}
    entries = [entry["ref"] for entry in sbom["dependencies"]]
    assert sorted(entries) == sorted(refs)
    graph = {e["ref"]: e.get("dependsOn", []) for e in sbom["dependencies"]}
    assert all(ref in refs for deps in graph.values() for ref in deps)
    seen, stack = set(), ["application"]
    while stack:
        ref = stack.pop()
        if ref not in seen:
            seen.add(ref)
            stack.extend(graph[ref])
    assert seen == refs
    assert graph["application"][0] == "python-interpreter"
    top = {ref.split("/")[-1] for ref in graph["application"][1:]}
    assert top == {"django@4.2.1", "foo.bar-baz@1.0%2Blocal.1", "requests@2.31.0", "cycle-a@1.0"}


MARKED = [
    'tomli>=1; python_version < "3.11"',
    'colorama; sys_platform == "win32"',
    'uvloop; sys_platform != "win32" and platform_python_implementation == "CPython"',
    'speedups; extra == "fast" and sys_platform == "win32"',
    'extras-only; extra == "fast"',
    'kept; python_version <<< "3"',  # cannot be parsed: kept, as cyclonedx-py keeps every one
    'url-dep @ https://example.invalid/a;b/url-dep-1.tar.gz ; python_version < "3"',
]


def install_marked(env: FakeEnvironment) -> None:
    """``app`` requiring MARKED, and every requirement installed."""
    install_requiring(env, "app", "1.0", *MARKED)
    for name in ("tomli", "colorama", "uvloop", "speedups", "extras-only", "kept", "url-dep"):
        env.install(name, "1.0")


def windows_uname() -> platform.uname_result:
    """A Windows host's uname."""
    return platform.uname_result("Windows", "host", "10", "10.0.19045", "AMD64")


@pytest.mark.parametrize(
    ("python", "uname", "expected"),
    [
        ("this", None, {"uvloop", "extras-only", "kept"}),
        ("3.9.18", None, {"tomli", "uvloop", "extras-only", "kept"}),
        ("this", windows_uname, {"colorama", "speedups", "extras-only", "kept"}),
    ],
)
def test_markers_are_evaluated_for_the_inspected_python_and_host(tmp_path, python, uname, expected):
    """A requirement whose marker is false for the inspected venv's Python (its pyvenv.cfg's
    version, not the exporter's) or for the host's platform is no dependency."""
    if python == "this":
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (site,) = venv.glob("lib/python3*/site-packages")
    else:  # another Python's venv, as test_other_environment lays one out
        site = tmp_path / "venv39" / "lib" / "python3.9" / "site-packages"
        site.mkdir(parents=True)
        (tmp_path / "venv39" / "pyvenv.cfg").write_text(
            f"home = /usr/local/bin\nversion = {python}\nexecutable = /usr/local/bin/python3.9\n"
        )
    env = FakeEnvironment(site)
    install_marked(env)
    sources = Sources(environ={}, **({"uname": uname} if uname else {}))
    snapshot = take_snapshot(env_config(env), Identity.new(), sources=sources)
    assert snapshot.python.version == (python if python != "this" else platform.python_version())
    assert graph_of(sbom_of(snapshot))["app"] == expected


def test_the_marker_environment_of_this_python_is_packagings():
    """For the running interpreter and host, the marker environment equals packaging's own."""
    from packaging.markers import default_environment

    ours = marker_environment(collect_python(), collect_platform())
    assert ours == {**default_environment(), "extra": ""}


def test_requirements_come_from_the_header_only(fake_env):
    """Requires-Dist lines of the header are kept as written; one in the body is not one."""
    fake_env.install_raw(
        "lib-1.0",
        b"Metadata-Version: 2.1\nName: lib\nVersion: 1.0\nRequires-Dist: Dep[x] >=1 ; "
        b'extra == "y"\nSummary: s\nRequires-Dist: other\nRequires-Dist: bad\xff\n\n'
        b"Requires-Dist: in-the-body\n",
    )
    snapshot = take_snapshot(env_config(fake_env), Identity.new())
    assert snapshot.packages["lib"].requires == ('Dep[x] >=1 ; extra == "y"', "other")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("License-Expression: mit", [{"license": {"id": "MIT"}}]),
        ("License-Expression: bsd-3-clause OR mit", [{"expression": "BSD-3-Clause OR MIT"}]),
        (
            "License-Expression: Apache-2.0 WITH llvm-exception",
            [{"expression": "Apache-2.0 WITH LLVM-exception"}],
        ),
        ("License-Expression: LicenseRef-Proprietary", [{"expression": "LicenseRef-Proprietary"}]),
        ("License-Expression: MIT OR", [{"license": {"name": "MIT OR"}}]),
        (
            "License-Expression: MIT\nLicense: Custom\nClassifier: License :: Other",
            [{"license": {"id": "MIT"}}],
        ),
        ("License: MIT", [{"license": {"id": "MIT"}}]),
        ("License: apache-2.0", [{"license": {"id": "Apache-2.0"}}]),
        ("License: GPL-2.0-or-later OR MIT", [{"expression": "GPL-2.0-or-later OR MIT"}]),
        ("License: GPL-2.0+", [{"expression": "GPL-2.0+"}]),
        ("License: Apache 2.0", [{"license": {"name": "Apache 2.0"}}]),
        ("License: MIT License", [{"license": {"name": "MIT License"}}]),
        ("License: BSD", [{"license": {"name": "BSD"}}]),
        (
            "Classifier: License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)\n"
            "Classifier: License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)\n"
            "Classifier: License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication\n"
            "Classifier: License :: OSI Approved :: The Unlicense (Unlicense)\n"
            "Classifier: License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)",
            [
                {"license": {"id": "MPL-2.0"}},
                {"license": {"id": "EPL-2.0"}},
                {"license": {"id": "CC0-1.0"}},
                {"license": {"id": "Unlicense"}},
                {"license": {"id": "BSL-1.0"}},
            ],
        ),
        (
            "Classifier: License :: OSI Approved :: MIT License\n"
            "Classifier: License :: OSI Approved :: ISC License (ISCL)\n"
            "Classifier: License :: OSI Approved :: Python Software Foundation License\n"
            "Classifier: License :: OSI Approved :: zlib/libpng License",
            [
                {"license": {"id": "MIT"}},
                {"license": {"id": "ISC"}},
                {"license": {"id": "PSF-2.0"}},
                {"license": {"id": "Zlib"}},
            ],
        ),
        (
            "Classifier: License :: OSI Approved :: Apache Software License\n"
            "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)\n"
            "Classifier: License :: OSI Approved :: MIT License\n"
            "Classifier: License :: OSI Approved :: MIT No Attribution License (MIT-0)",
            [
                {"license": {"name": "Apache Software License"}},
                {"license": {"name": "GNU General Public License v3 (GPLv3)"}},
                {"license": {"id": "MIT"}},
                {"license": {"id": "MIT-0"}},
            ],
        ),
    ],
)
def test_licences_are_spdx_ids_or_expressions_when_valid_else_names(fake_env, headers, expected):
    """Valid SPDX (any case) is an id or an expression in the list's spelling; classifiers
    map where they name one SPDX licence; anything else stays a name."""
    install_with_license(fake_env, "lib", "1.0", headers)
    (component,) = [
        c
        for c in sbom_of(take_snapshot(env_config(fake_env), Identity.new()))["components"]
        if c["type"] == "library"
    ]
    assert component["licenses"] == expected


@pytest.mark.parametrize(
    ("layout", "prefix"),
    [
        ("lib/python3.12/site-packages", ""),
        ("lib64/python3.12/site-packages", ""),
        ("lib/python3/dist-packages", ""),
        ("Lib/site-packages", ""),
        ("vendor", "vendor"),
    ],
)
def test_without_a_distribution_the_application_is_the_environment(tmp_path, layout, prefix):
    """Without app.distribution, metadata.component is python-environment:<the environment's
    directory>, the same on every refresh and host, with no version unless app.version."""
    env = FakeEnvironment(tmp_path / "env" / layout)
    env.install("requests", "2.31.0")
    config = env_config(env)
    first = sbom_of(take_snapshot(config, Identity.new()))["metadata"]["component"]
    expected = f"python-environment:{os.path.abspath(tmp_path / 'env' / prefix)}"
    assert first["name"] == expected
    assert "version" not in first
    assert "purl" not in first
    assert first["description"].endswith(f" environment at {expected.partition(':')[2]}")
    other_host = Sources(environ={}, uname=windows_uname)
    again = sbom_of(take_snapshot(config, Identity.new(), sources=other_host))
    assert again["metadata"]["component"]["name"] == expected
    versioned = env_config(env, app={"version": "2.0"})
    component = sbom_of(take_snapshot(versioned, Identity.new()))["metadata"]["component"]
    assert (component["name"], component["version"]) == (expected, "2.0")


def test_a_distribution_not_installed_names_the_application_without_a_version(fake_env):
    """app.distribution names the application; with no version known, none is written."""
    fake_env.install("requests", "2.31.0")
    sbom = sbom_of(
        take_snapshot(env_config(fake_env, app={"distribution": "myapp"}), Identity.new())
    )
    assert sbom["metadata"]["component"]["name"] == "myapp"
    assert "version" not in sbom["metadata"]["component"]


def test_loaded_modules_get_a_purl_only_where_the_distribution_is_known():
    """In loaded mode, a module whose distribution is certain has a purl; others do not."""
    import yaml  # noqa: F401 - loaded on purpose: PyYAML provides it

    config = Config(modules=ModulesConfig(source="loaded"))
    sbom = validate(SbomDocument(take_snapshot(config, Identity.new())).body)
    components = {c["name"]: c for c in sbom["components"] if c["type"] == "library"}
    assert components["yaml"]["purl"].startswith("pkg:pypi/pyyaml@")
    without = [c for c in components.values() if "purl" not in c]
    assert all(c["bom-ref"].startswith("module:") for c in without)
    assert "dependencies" not in sbom  # loaded modules carry no requirements: unknown, not none
    assert sbom["metadata"]["component"]["name"] == f"python-environment:{sys.prefix}"


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


def test_the_daemon_imports_no_spdx_list_or_marker_parser_until_an_sbom_needs_them():
    """Starting up (the web app, the CLI) loads neither packaging.licenses nor packaging.markers;
    rendering an SBOM with a licence and a marker does."""
    code = (
        "import sys, exporter.web, exporter.cli, exporter.render.sbom as s\n"
        "wanted = ('packaging.licenses', 'packaging.markers')\n"
        "print(any(m in sys.modules for m in wanted))\n"
        "from exporter.collectors.packages import package_info\n"
        "s._licenses(package_info(b'License: MIT', 'x'))\n"
        "from exporter.render.dependencies import dependency_graph\n"
        "dependency_graph({'a': b'Requires-Dist: b; os_name == \"nt\"', 'b': b''}, {})\n"
        "print(all(m in sys.modules for m in wanted))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
