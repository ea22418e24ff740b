"""Every layout importlib.metadata knows, built for real in a venv, found by the installed scan.

The venv is made by ``python -m venv``. Into it go: a wheel installed by the venv's pip
(a dist-info); a zipped egg and an ``.egg`` directory, both named in ``easy-install.pth``,
and a develop install (an ``.egg-link`` plus its ``easy-install.pth`` line), all three by
the venv's own setuptools (``setup.py install`` / ``setup.py develop``) when it has them,
else written by hand the way setuptools writes them; an egg-info directory and an egg-info
file; a ``.pth`` with a relative line to an extra directory that pip installed a wheel
into (``--target``); vendored metadata inside a package; an ``.egg-link`` that no ``.pth``
names. importlib.metadata, run inside the venv, is the reference.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from exporter.collectors.installed import canonical_name, scan_installed

PY_TAG = f"py{sys.version_info.major}.{sys.version_info.minor}"
REPORT = """
import importlib.metadata, json, sys
dists = [[d.metadata["Name"], d.version] for d in importlib.metadata.distributions()]
print(json.dumps({"path": sys.path, "dists": dists}))
"""


def build_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, written by hand: a module, METADATA, WHEEL and RECORD."""
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def egg_info_files(name: str, version: str, package: str) -> dict[str, str]:
    """The EGG-INFO (or .egg-info) files setuptools' egg_info command writes."""
    return {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n",
        "SOURCES.txt": f"setup.py\n{package}/__init__.py\n",
        "dependency_links.txt": "\n",
        "top_level.txt": f"{package}\n",
    }


def setup_py(directory: Path, name: str, version: str, package: str, **options: bool) -> Path:
    """A setuptools project with one package, as its author would have written it."""
    (directory / package).mkdir(parents=True)
    (directory / package / "__init__.py").write_text(f'__version__ = "{version}"\n')
    extra = "".join(f", {key}={value!r}" for key, value in options.items())
    (directory / "setup.py").write_text(
        "from setuptools import setup\n"
        f"setup(name={name!r}, version={version!r}, packages=[{package!r}]{extra})\n"
    )
    return directory


def run(*args: str | Path, cwd: Path | None = None) -> None:
    """Run a command of the venv, offline and bounded; its output only on failure."""
    subprocess.run([str(a) for a in args], cwd=cwd, check=True, capture_output=True, timeout=180)


def has_egg_commands(python: Path) -> bool:
    """Whether the venv's setuptools still has ``setup.py install`` of eggs and ``develop``."""
    probe = "import setuptools.command.bdist_egg, setuptools.command.develop"
    return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0


def add_pth_line(pth: Path, line: str) -> None:
    """Append a path line to a .pth file, as easy_install does."""
    with pth.open("a") as file:
        file.write(line + "\n")


def install_eggs_by_hand(site: Path, work: Path) -> None:
    """What ``setup.py install`` (zip_safe true, then false) and ``setup.py develop`` leave.

    A zipped egg (deflated, EGG-INFO inside), an .egg directory, and a develop install:
    the project's own .egg-info, an .egg-link naming the project and an easy-install.pth
    line naming it too.
    """
    pth = site / "easy-install.pth"
    zipped = f"sqlparse-0.4.1-{PY_TAG}.egg"
    with zipfile.ZipFile(site / zipped, "w", zipfile.ZIP_DEFLATED) as egg:
        for name, text in egg_info_files("sqlparse", "0.4.1", "sqlparse").items():
            egg.writestr(f"EGG-INFO/{name}", text)
        egg.writestr("EGG-INFO/zip-safe", "\n")
        egg.writestr("sqlparse/__init__.py", '__version__ = "0.4.1"\n')
    add_pth_line(pth, f"./{zipped}")
    directory = site / f"Dir_Egg.Pkg-2.0-{PY_TAG}.egg"
    (directory / "direggpkg").mkdir(parents=True)
    (directory / "direggpkg" / "__init__.py").write_text("")
    (directory / "EGG-INFO").mkdir()
    for name, text in egg_info_files("Dir-Egg.Pkg", "2.0", "direggpkg").items():
        (directory / "EGG-INFO" / name).write_text(text)
    (directory / "EGG-INFO" / "not-zip-safe").write_text("\n")
    add_pth_line(pth, f"./{directory.name}")
    project = work / "devproj"
    (project / "devpkg").mkdir(parents=True)
    (project / "devpkg" / "__init__.py").write_text("")
    (project / "devproj.egg-info").mkdir()
    for name, text in egg_info_files("devproj", "3.0.dev1", "devpkg").items():
        (project / "devproj.egg-info" / name).write_text(text)
    (site / "devproj.egg-link").write_text(f"{project}\n.")
    add_pth_line(pth, str(project))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> dict[str, Path]:
    """A real venv holding every layout; returns its python, site-packages and extra dir."""
    base = tmp_path_factory.mktemp("layouts")
    root = base / "venv"
    run(sys.executable, "-m", "venv", root)
    python = root / "bin" / "python"
    (site,) = root.glob("lib/python3*/site-packages")
    run(python, "-m", "pip", "install", "--no-index", "-q", build_wheel(base, "tiny_wheel", "1.5"))
    if has_egg_commands(python):
        # setuptools' own egg installs: deprecated, still offline and exact.
        install = ("setup.py", "-q", "install")
        run(
            python,
            *install,
            cwd=setup_py(base / "sqlparse", "sqlparse", "0.4.1", "sqlparse", zip_safe=True),
        )
        egg_dir = setup_py(base / "diregg", "Dir_Egg.Pkg", "2.0", "direggpkg", zip_safe=False)
        run(python, *install, cwd=egg_dir)
        run(
            python,
            "setup.py",
            "-q",
            "develop",
            cwd=setup_py(base / "devproj", "devproj", "3.0.dev1", "devpkg"),
        )
    else:
        install_eggs_by_hand(site, base)
    assert (site / f"sqlparse-0.4.1-{PY_TAG}.egg").is_file()
    assert (site / f"Dir_Egg.Pkg-2.0-{PY_TAG}.egg" / "EGG-INFO" / "PKG-INFO").is_file()
    assert (site / "devproj.egg-link").is_file()
    # An extra directory with a dist-info in it, named by a relative .pth line.
    extra = base / "extra"
    wheel = build_wheel(base, "extra_pkg", "0.7")
    run(python, "-m", "pip", "install", "--no-index", "-q", "--target", extra, wheel)
    (site / "zz-extra.pth").write_text(
        f"# a comment\n\n{os.path.relpath(extra, site)}\n{base / 'does-not-exist'}\n"
    )
    # egg-info as a directory and as a file (distutils' install_egg_info, Debian's packages).
    (site / f"legacy_dir-0.9-{PY_TAG}.egg-info").mkdir()
    (site / f"legacy_dir-0.9-{PY_TAG}.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.1\nName: legacy_dir\nVersion: 0.9\n"
    )
    (site / f"legacy_file-1.1-{PY_TAG}.egg-info").write_text(
        "Metadata-Version: 1.1\nName: legacy_file\nVersion: 1.1\n"
    )
    # Vendored metadata inside a package, as setuptools >= 70 ships it: not installed.
    vendored = site / "vendoring" / "_vendor" / "vendored_dep-9.9.dist-info"
    vendored.mkdir(parents=True)
    (vendored / "METADATA").write_text("Metadata-Version: 2.1\nName: vendored_dep\nVersion: 9.9\n")
    (site / "vendoring" / "__init__.py").write_text("")
    # A develop install whose .pth line is gone: importlib.metadata does not see it.
    orphan = base / "orphan"
    (orphan / "orphan.egg-info").mkdir(parents=True)
    (orphan / "orphan.egg-info" / "PKG-INFO").write_text("Name: orphan\nVersion: 1\n")
    (site / "orphan.egg-link").write_text(f"{orphan}\n.")
    return {"python": python, "site": site, "extra": extra, "base": base}


def inside(python: Path, *flags: str, prelude: str = "", **environ: str) -> dict[str, list]:
    """sys.path and importlib.metadata's distributions, as the venv's own python sees them."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environ}
    out = subprocess.run(
        [str(python), "-P", *flags, "-c", prelude + REPORT],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def expected(report: dict[str, list]) -> dict[str, str]:
    """importlib.metadata's answer as the scan gives it: PEP 503 names, the first one wins."""
    found: dict[str, str] = {}
    for name, version in report["dists"]:
        if name:
            found.setdefault(canonical_name(name), version)
    return found


LAYOUTS = {
    "tiny-wheel": "1.5",
    "sqlparse": "0.4.1",
    "dir-egg-pkg": "2.0",
    "devproj": "3.0.dev1",
    "extra-pkg": "0.7",
    "legacy-dir": "0.9",
    "legacy-file": "1.1",
}


def test_importlib_metadata_in_the_venv_sees_every_layout(venv):
    """The reference itself holds every layout built, and neither vendored nor orphan metadata."""
    found = expected(inside(venv["python"]))
    assert found.items() >= LAYOUTS.items()
    assert "pip" in found
    assert "vendored-dep" not in found
    assert "orphan" not in found


def test_scan_of_the_venvs_sys_path_equals_importlib_metadata(venv):
    """Over the venv's sys.path (already expanded by site.py) the scan equals importlib's."""
    report = inside(venv["python"])
    scan = scan_installed(report["path"])
    assert scan.distributions() == expected(report)
    assert scan.skipped() == ()
    paths = [d.path for d in scan.directories]
    assert len(paths) == len(set(paths))  # the .pth lines site.py added are not scanned twice


def test_scan_of_site_packages_alone_equals_importlib_metadata(venv):
    """Given only site-packages (modules.paths), the scan expands its .pth files itself."""
    scan = scan_installed([str(venv["site"])])
    assert scan.distributions() == expected(inside(venv["python"]))
    assert scan.distributions().items() >= LAYOUTS.items()


def test_setup_py_install_egg_is_found(venv):
    """The user's report: a zipped sqlparse egg named in easy-install.pth is in the scan."""
    scan = scan_installed([str(venv["site"])])
    assert scan.distributions()["sqlparse"] == "0.4.1"
    dist = scan.winners()["sqlparse"]
    assert dist.info is not None
    assert dist.info.name == "sqlparse"


def test_vendored_metadata_is_not_an_installed_distribution(venv):
    """A dist-info inside a package's _vendor folder is found by neither importlib nor the scan."""
    assert "vendored-dep" not in scan_installed([str(venv["site"])]).distributions()


def test_unchanged_venv_rescan_reads_nothing(venv):
    """A second scan of an unchanged venv lists no directory, opens no egg, reads no .pth."""
    later = time.time() + 10  # every entry is then older than the racy window
    first = scan_installed([str(venv["site"])], clock=lambda: later)
    assert first.directories_read >= 5  # site-packages, two eggs, the project, the extra dir
    second = scan_installed([str(venv["site"])], first, clock=lambda: later)
    assert (second.directories_read, second.pth_read) == (0, 0)
    assert second.distributions() == first.distributions()


def test_pth_in_a_directory_that_is_no_site_directory_is_not_read(venv, tmp_path):
    """site.py reads .pth files in site directories only, not in a PYTHONPATH directory."""
    hidden = tmp_path / "hidden"
    (hidden / "hidden_pkg-1.dist-info").mkdir(parents=True)
    (hidden / "hidden_pkg-1.dist-info" / "METADATA").write_text("Name: hidden_pkg\nVersion: 1\n")
    pythonpath = tmp_path / "pythonpath"
    (pythonpath / "on_pythonpath-2.dist-info").mkdir(parents=True)
    (pythonpath / "on_pythonpath-2.dist-info" / "METADATA").write_text(
        "Name: on_pythonpath\nVersion: 2\n"
    )
    (pythonpath / "names-hidden.pth").write_text(f"{hidden}\n")
    report = inside(venv["python"], PYTHONPATH=str(pythonpath))
    assert expected(report)["on-pythonpath"] == "2"
    assert "hidden-pkg" not in expected(report)
    assert scan_installed(report["path"]).distributions() == expected(report)


def test_eggs_written_by_hand_are_found_as_site_py_finds_them(venv, tmp_path):
    """The by-hand layouts (for venvs without setuptools) agree with site.addsitedir + importlib."""
    site = tmp_path / "site-packages"
    site.mkdir()
    install_eggs_by_hand(site, tmp_path)
    prelude = f"import site\nsite.addsitedir({str(site)!r})\n"
    report = inside(venv["python"], "-S", prelude=prelude)  # -S: the venv's own site is not read
    assert expected(report) == {"sqlparse": "0.4.1", "dir-egg-pkg": "2.0", "devproj": "3.0.dev1"}
    assert scan_installed([str(site)]).distributions() == expected(report)
    assert scan_installed(report["path"]).distributions() == expected(report)
