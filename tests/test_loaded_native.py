"""Loaded native code: a real process maps an extension module, and RECORD says whose it is.

The process runs in a venv made by ``python -m venv --without-pip`` and imports
``fakepkg._queue`` (a copy of this interpreter's ``_queue``, see running_venv.py) and, in
some tests, more copies; each distribution's RECORD names its files. Checks run
through a RootFileSystem over ``/proc/<pid>/root`` (``/`` here) and through the host's
file system, with hostile RECORDs beside the honest ones.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from running_venv import EXT_SUFFIX, Venv, extension_origin, make_venv, running

from exporter.collectors.installed import scan_installed
from exporter.filesystem import HOST, FileSystem
from exporter.sources.discovery.loaded import (
    RECORD_LIMIT,
    find_loaded,
    loaded_distributions,
)
from exporter.sources.discovery.procfs import ProcFS
from exporter.sources.discovery.restart import read_mappings
from exporter.sources.discovery.rootfs import RootFileSystem

IMPORT = "import fakepkg._queue"


def copy_extension(venv: Venv, relative: str) -> Path:
    """A copy of the stdlib extension module at ``relative`` to site-packages."""
    path = venv.site / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(extension_origin(), path)
    return path


def load_by_path(path: Path) -> str:
    """Code that loads the extension module file ``path`` (its module is _queue)."""
    return (
        "import importlib.util as u\n"
        f"s = u.spec_from_file_location('_queue', {str(path)!r})\n"
        "s.loader.exec_module(u.module_from_spec(s))\n"
    )


def check(pid: int, venv: Venv, names: set[str], through: str = "root") -> frozenset[str]:
    """loaded_distributions of ``names`` for process ``pid``, through its root or the host."""
    procfs = ProcFS()
    mapped = read_mappings(procfs, [pid])
    with RootFileSystem(procfs.root(pid)) as root:
        fs: FileSystem = root if through == "root" else HOST
        scan = scan_installed([str(venv.site)], fs=fs)
        return loaded_distributions(mapped, scan, names, fs)


@pytest.mark.parametrize("through", ["root", "host"])
def test_the_mapped_extension_makes_its_distribution_loaded(tmp_path: Path, through: str) -> None:
    """fakepkg, whose RECORD lists the mapped .so, is loaded; one listing an unmapped .so is not."""
    venv = make_venv(tmp_path)
    unmapped = copy_extension(venv, f"otherpkg/_native{EXT_SUFFIX}")
    venv.dist_info("otherpkg", "1.0", [f"otherpkg/{unmapped.name},,", "otherpkg/__init__.py,,"])
    venv.dist_info("purepkg", "1.0", ["purepkg/__init__.py,,"])
    with running(venv.python, IMPORT) as child:
        names = {"fakepkg", "otherpkg", "purepkg", "absent"}
        assert check(child.pid, venv, names, through) == {"fakepkg"}
        # Only the names asked for are looked at.
        assert check(child.pid, venv, {"otherpkg"}, through) == frozenset()


def test_wheel_spellings_and_paths_out_of_site_packages(tmp_path: Path) -> None:
    """A dist-info spelt with underscores, and a RECORD path climbing out with .., are found."""
    venv = make_venv(tmp_path)
    underscored = copy_extension(venv, f"my_pkg/_queue{EXT_SUFFIX}")
    (underscored.parent / "__init__.py").write_text("")
    venv.dist_info("My_Pkg", "2.0", [f"my_pkg/{underscored.name},,"])
    # As data files installed to the prefix: ../../../native/lib.so from site-packages.
    outside = venv.root / "native" / f"_queue{EXT_SUFFIX}"
    outside.parent.mkdir()
    shutil.copyfile(extension_origin(), outside)
    venv.dist_info("prefixlib", "1.0", [f"../../../native/{outside.name},,"])
    code = f"{IMPORT}\nimport my_pkg._queue\n{load_by_path(outside)}"
    with running(venv.python, code) as child:
        mapped = {m.path for m in read_mappings(ProcFS(), [child.pid]).mappings}
        assert {str(underscored), str(outside)} <= mapped
        assert check(child.pid, venv, {"my-pkg", "prefixlib"}) == {"my-pkg", "prefixlib"}


def test_hostile_records_cost_one_entry_each(tmp_path: Path) -> None:
    """Absolute and root-climbing paths, a huge RECORD, a FIFO: passed over, without a hang."""
    venv = make_venv(tmp_path)
    mapped_path = str(venv.extension)
    venv.dist_info("absolute", "1.0", [f"{mapped_path},,"])
    climbing = "../" * 40 + mapped_path.lstrip("/")  # far above the root, then the mapped file
    venv.dist_info("climbing", "1.0", [f"{climbing},,"])
    huge = venv.dist_info("huge", "1.0")
    with open(huge / "RECORD", "wb") as file:
        file.truncate(1 << 30)  # 1 GiB, sparse
    fifo = venv.dist_info("fifo", "1.0")
    os.mkfifo(fifo / "RECORD")
    names = {"fakepkg", "absolute", "climbing", "huge", "fifo"}
    with running(venv.python, IMPORT) as child:
        procfs = ProcFS()
        mapped = read_mappings(procfs, [child.pid])
        results = []
        with RootFileSystem(procfs.root(child.pid)) as fs:
            scan = scan_installed([str(venv.site)], fs=fs)
            # Bounded: a read that blocked on the FIFO would fail the test, not hang it.
            worker = threading.Thread(
                target=lambda: results.append(find_loaded(mapped, scan, names, fs)), daemon=True
            )
            worker.start()
            worker.join(timeout=20)
            assert not worker.is_alive(), "find_loaded blocked"
    (found,) = results
    assert found.names == {"fakepkg"}
    reasons = {Path(s.path).parent.name: s.reason for s in found.skipped}
    assert set(reasons) == {"huge-1.0.dist-info", "fifo-1.0.dist-info"}
    assert str(RECORD_LIMIT) in reasons["huge-1.0.dist-info"]
    assert "regular file" in reasons["fifo-1.0.dist-info"]


def test_a_record_linked_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    """A RECORD that is a link to a file outside the target's root is resolved inside the root."""
    venv = make_venv(tmp_path)
    outside = tmp_path / "outside" / "RECORD"
    outside.parent.mkdir()
    outside.write_text(f"fakepkg/{venv.extension.name},,\n")
    # The target's root: a directory holding the venv's site-packages at the same path,
    # with its RECORD an absolute link to the file above (a path outside this root).
    root = tmp_path / "root"
    site = root / str(venv.site).lstrip("/")
    shutil.copytree(venv.site, site, symlinks=True)
    record = site / "fakepkg-1.0.dist-info" / "RECORD"
    record.unlink()
    record.symlink_to(outside)
    with running(venv.python, IMPORT) as child:
        mapped = read_mappings(ProcFS(), [child.pid])
        with RootFileSystem(str(root)) as fs:
            scan = scan_installed([str(venv.site)], fs=fs)
            inside = find_loaded(mapped, scan, {"fakepkg"}, fs)
        # The same tree read plainly follows the link out: what the root prevents.
        host_scan = scan_installed([str(site)])
        plain = find_loaded(mapped, host_scan, {"fakepkg"}, HOST)
    assert inside.names == frozenset()
    assert [s.reason for s in inside.skipped] == ["cannot read: No such file or directory"]
    assert plain.skipped == ()  # read, but its paths are joined to the copy: not mapped
    assert plain.names == frozenset()


def test_a_deleted_mapping_does_not_make_the_new_version_loaded(tmp_path: Path) -> None:
    """Once the mapped .so is replaced on disk, what the RECORD lists is not what runs."""
    venv = make_venv(tmp_path)
    with running(venv.python, IMPORT) as child:
        assert check(child.pid, venv, {"fakepkg"}) == {"fakepkg"}
        new = venv.extension.with_name("new.tmp")
        shutil.copyfile(venv.extension, new)
        os.replace(new, venv.extension)
        assert check(child.pid, venv, {"fakepkg"}) == frozenset()


def test_only_the_records_asked_for_are_read(tmp_path: Path) -> None:
    """A RECORD of a distribution not asked for is never opened, even when it is a FIFO."""
    venv = make_venv(tmp_path)
    venv.dist_info("trap", "1.0")
    os.mkfifo(venv.site / "trap-1.0.dist-info" / "RECORD")
    with running(venv.python, IMPORT) as child:
        procfs = ProcFS()
        mapped = read_mappings(procfs, [child.pid])
        with RootFileSystem(procfs.root(child.pid)) as fs:
            scan = scan_installed([str(venv.site)], fs=fs)
            asked = find_loaded(mapped, scan, {"fakepkg", "not-installed"}, fs)
            trapped = find_loaded(mapped, scan, {"trap"}, fs)
    assert (asked.names, asked.skipped) == ({"fakepkg"}, ())
    assert [s.reason for s in trapped.skipped] == ["cannot read: not a regular file (FIFO)"]
