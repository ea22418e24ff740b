"""A real venv with a fake distribution holding a real extension module, and a Python running in it.

Shared by test_restart.py and test_loaded_native.py. The extension module is a copy of
this interpreter's ``_queue`` (``importlib.util.find_spec("_queue").origin``: lib-dynload on
this machine's CPython 3.11), installed as ``fakepkg/_queue<EXT_SUFFIX>``: importing
``fakepkg._queue`` calls its ``PyInit__queue``, as any extension module is loaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.sources.discovery.procfs import ProcFS

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
READY_TIMEOUT = 20.0


def extension_origin() -> Path:
    """The file of _queue, a stdlib extension module built as a file on every CPython these
    tests run on (Debian builds _csv and _json into the interpreter)."""
    for name in ("_queue",):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".so"):
            return Path(spec.origin)
    pytest.fail("this Python has _queue built in: no extension module file to copy")


@dataclass
class Venv:
    """A venv made by ``python -m venv --without-pip`` and its site-packages."""

    root: Path
    site: Path

    @property
    def python(self) -> Path:
        """The venv's interpreter (a link to the base one)."""
        return self.root / "bin" / "python"

    @property
    def extension(self) -> Path:
        """Where fakepkg's extension module lies."""
        return self.site / "fakepkg" / f"_queue{EXT_SUFFIX}"

    def dist_info(self, name: str, version: str, record: list[str] | None = None) -> Path:
        """Write ``<name>-<version>.dist-info`` with METADATA and, if given, RECORD lines."""
        folder = self.site / f"{name}-{version}.dist-info"
        folder.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n"
        (folder / "METADATA").write_text(metadata)
        if record is not None:
            (folder / "RECORD").write_text("".join(f"{line}\n" for line in record))
        return folder

    def rename_version(self, name: str, old: str, new: str) -> Path:
        """Upgrade in place as a rename: the dist-info directory renamed, its METADATA rewritten."""
        folder = self.site / f"{name}-{new}.dist-info"
        os.rename(self.site / f"{name}-{old}.dist-info", folder)
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {new}\n\n"
        (folder / "METADATA").write_text(metadata)
        return folder


def make_venv(tmp_path: Path) -> Venv:
    """A venv in ``tmp_path`` with fakepkg: its extension module, fakepkg-1.0.dist-info."""
    root = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (site,) = (root / "lib").glob("python*/site-packages")
    venv = Venv(root, site)
    venv.extension.parent.mkdir()
    (venv.extension.parent / "__init__.py").write_text("")
    shutil.copyfile(extension_origin(), venv.extension)
    record = [
        "fakepkg/__init__.py,,",
        f"fakepkg/{venv.extension.name},,",
        "fakepkg-1.0.dist-info/METADATA,,",
        "fakepkg-1.0.dist-info/RECORD,,",
    ]
    venv.dist_info("fakepkg", "1.0", record)
    return venv


@contextlib.contextmanager
def running(python: Path, code: str, **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    """A real ``python -c code`` child that prints ``ready`` once ``code`` ran, killed on exit.

    ``code`` runs first, then the child prints ready and sleeps; the wait for ready is
    bounded by READY_TIMEOUT.
    """
    script = f"{code}\nimport time\nprint('ready', flush=True)\ntime.sleep(120)\n"
    child = subprocess.Popen(
        [str(python), "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], READY_TIMEOUT)
        line = child.stdout.readline() if ready else ""
        if line != "ready\n":
            child.kill()
            _, err = child.communicate(timeout=10)
            pytest.fail(f"the child did not start: {line!r} {err[-2000:]}")
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


# File times come from the kernel's coarse clock, up to a tick (1 to 10 ms) behind
# time.time(): a file changed right after time.time() passed an instant can be stamped
# before it (seen once in CI, on Debian testing's Python, in a container).
FILE_CLOCK_LAG = 0.05


def wait_past(instant: float) -> None:
    """Sleep until the wall clock is past ``instant``, and the file system's clock too
    (bounded: at most 5 s from now)."""
    deadline = time.monotonic() + 5
    while time.time() <= instant + FILE_CLOCK_LAG:
        assert time.monotonic() < deadline, "the clock did not reach the instant"
        time.sleep(0.02)


def started_at(pid: int) -> float:
    """The start time of ``pid`` as discovery reads it (ProcFS over /proc)."""
    return ProcFS().stat(pid).start_time
