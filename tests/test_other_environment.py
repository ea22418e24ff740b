"""Inspecting another environment: a real second venv, and the Python its pyvenv.cfg names."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import Daemon, make_config

from exporter.collectors.python import collect_environment_python, find_environment_config
from exporter.snapshot import Identity, Sources, take_snapshot


def build_wheel(directory: Path, name: str, version: str) -> Path:
    """Build a minimal pure-Python wheel by hand: a module, METADATA, WHEEL and RECORD."""
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n',
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def app_venv(tmp_path_factory) -> Path:
    """A real virtual environment with a tiny local package installed by its own pip, offline."""
    base = tmp_path_factory.mktemp("appenv")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = build_wheel(base, "tiny_app_pkg", "3.1.4")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--quiet", str(wheel)],
        check=True,
        timeout=120,
    )
    return venv


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def test_daemon_reports_the_other_environment_not_its_own(app_venv, tmp_path):
    """Pointed at another venv's site-packages, the daemon lists that venv's distributions."""
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"modules": {"paths": [str(site_packages(app_venv))]}}))
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        status = json.loads(daemon.get("/api/v1/status/")[1])
        daemon.stop()
    modules = status["modules"]
    assert modules["tiny-app-pkg"] == "3.1.4"
    assert "pip" in modules
    assert "aiohttp" not in modules  # the exporter's own environment is not reported
    assert "virtual environment" in status["python_version"]
    assert str(app_venv) in status["python_version"]


def test_python_of_the_other_environment_comes_from_pyvenv_cfg(app_venv):
    """The real venv's pyvenv.cfg names this interpreter's version and implementation."""
    cfg = find_environment_config([str(site_packages(app_venv))])
    assert cfg == app_venv / "pyvenv.cfg"
    python = collect_environment_python(cfg)
    assert python is not None
    assert python.version == ".".join(map(str, sys.version_info[:3]))
    assert python.implementation == sys.implementation.name.replace("cpython", "CPython")


def test_another_python_version_is_reported(tmp_path):
    """A venv made by another Python (3.12.1 here) is described as that Python, not this one."""
    venv = tmp_path / "venv312"
    site = venv / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(
        "home = /usr/local/bin\ninclude-system-site-packages = false\n"
        "version = 3.12.1\nexecutable = /usr/local/bin/python3.12\n"
    )
    snapshot = take_snapshot(
        make_config(modules={"paths": [str(site)]}), Identity.new(), sources=Sources(environ={})
    )
    assert snapshot.python.labels() == {
        "implementation": "CPython",
        "major": "3",
        "minor": "12",
        "patchlevel": "1",
        "version": "3.12.1",
    }
    assert snapshot.python.version_string.startswith("3.12.1 (CPython, virtual environment")


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ("version_info = 3.13.0.final.0\nimplementation = CPython\n", ("CPython", "3.13.0")),
        ("home = /opt/pypy3.10/bin\nversion = 3.10.14\n", ("PyPy", "3.10.14")),
        ("home = /usr/bin\n", None),
    ],
)
def test_pyvenv_cfg_variants(tmp_path, cfg, expected):
    """uv's version_info, PyPy homes, and a cfg with no version (this Python is reported)."""
    (tmp_path / "pyvenv.cfg").write_text(cfg)
    python = collect_environment_python(tmp_path / "pyvenv.cfg")
    got = (python.implementation, python.version) if python else None
    assert got == expected


def test_paths_in_no_venv_or_two_venvs_report_this_python(tmp_path):
    """Without one common pyvenv.cfg, the exporter's own Python is reported."""
    a, b = tmp_path / "a", tmp_path / "b"
    for venv in (a, b):
        (venv / "lib").mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text("version = 3.9.1\n")
    assert find_environment_config([str(a / "lib"), str(b / "lib")]) is None
    assert find_environment_config([str(tmp_path)]) is None
    assert find_environment_config([str(a / "lib"), str(a)]) == a / "pyvenv.cfg"
