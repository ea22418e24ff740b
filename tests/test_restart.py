"""Restart required: real Python processes in real venvs, their distributions and maps changed.

Each process runs in a venv made by ``python -m venv --without-pip`` and imports
``fakepkg._queue``, a copy of this interpreter's ``_queue`` extension module (see
running_venv.py). Every check reads the process through ProcFS and its files through
a RootFileSystem over ``/proc/<pid>/root`` (its root is ``/`` here, so the paths are
the test's own); some through the host's file system as well.
"""

from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from running_venv import Venv, make_venv, running, started_at, wait_past
from support import FakeEnvironment

from exporter.collectors.installed import InstalledScan, scan_installed
from exporter.filesystem import HOST, FileSystem
from exporter.sources.discovery.procfs import ProcFS
from exporter.sources.discovery.restart import (
    START_SLACK,
    Change,
    StaleFile,
    changed_distributions,
    check_restart,
    read_mappings,
    stale_files,
)
from exporter.sources.discovery.rootfs import RootFileSystem

IMPORT = "import fakepkg._queue"


def far_future() -> float:
    """A clock an hour ahead: every listing it times is old enough to be reused."""
    return time.time() + 3600.0


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    """A venv holding fakepkg 1.0 with its extension module."""
    return make_venv(tmp_path)


@pytest.fixture
def service(venv: Venv) -> Iterator[subprocess.Popen[str]]:
    """A real Python of the venv that imported fakepkg._queue, killed after the test."""
    with running(venv.python, IMPORT) as child:
        yield child


def root_of(pid: int) -> RootFileSystem:
    """The process's root, as discovery reads every target's files."""
    return RootFileSystem(ProcFS().root(pid))


def scan(venv: Venv, fs: FileSystem) -> InstalledScan:
    """The venv's site-packages scanned through ``fs``."""
    return scan_installed([str(venv.site)], fs=fs)


def maps_text(pid: int) -> str:
    """The process's maps as the kernel writes them."""
    return Path(f"/proc/{pid}/maps").read_text()


# -- nothing changed ----------------------------------------------------------------------


@pytest.mark.parametrize("through", ["root", "host"])
def test_nothing_changed_requires_no_restart(
    venv: Venv, service: subprocess.Popen[str], through: str
) -> None:
    """A process whose venv is as it was at its start needs no restart; nothing is listed."""
    procfs = ProcFS()
    mapped = read_mappings(procfs, [service.pid])
    assert str(venv.extension) in {m.path for m in mapped.mappings}  # it maps the extension
    assert (mapped.read, mapped.gone) == (1, 0)
    start = started_at(service.pid)
    with root_of(service.pid) as root:
        fs: FileSystem = root if through == "root" else HOST
        result = check_restart(scan(venv, fs), start, mapped, fs)
    assert result.required is False
    assert (result.changed, result.stale) == ((), ())
    assert result.distributions.listed == 0


# -- distributions changed after the start ------------------------------------------------


def test_upgrade_install_and_removal_after_the_start(venv: Venv) -> None:
    """Renamed to a new version: upgraded; a new dist-info: installed; one deleted: removed."""
    env = FakeEnvironment(venv.site)
    env.install("leaving", "3.0")
    with running(venv.python, IMPORT) as service, root_of(service.pid) as fs:
        start = started_at(service.pid)
        # The modules as the previous snapshot saw them: a moment after the start.
        before = scan(venv, fs).distributions()
        assert before == {"fakepkg": "1.0", "leaving": "3.0"}
        wait_past(start + START_SLACK)
        venv.rename_version("fakepkg", "1.0", "2.0")
        env.install("Newcomer_Pkg", "0.1")
        env.remove("leaving")
        mapped = read_mappings(ProcFS(), [service.pid])
        first = check_restart(
            scan(venv, fs), start, mapped, fs, previous_modules=before, clock=far_future
        )
        assert first.required is True
        assert first.changed == (
            Change("fakepkg", "2.0", "upgraded"),
            Change("leaving", "3.0", "removed"),
            Change("newcomer-pkg", "0.1", "installed"),
        )
        assert first.stale == ()  # the extension module itself was not touched
        assert first.distributions.listed == 1

        # The next refresh: the previous snapshot already holds the new versions; the
        # kinds stay, and the unchanged directory is not listed again.
        now = scan(venv, fs).distributions()
        second = check_restart(
            scan(venv, fs), start, mapped, fs, previous=first, previous_modules=now
        )
        assert second.changed == first.changed
        assert second.distributions.listed == 0
        # The same, when the caller kept only the triples of the last result.
        triples = tuple((c.name, c.version, c.change) for c in first.changed)
        third = check_restart(
            scan(venv, fs), start, mapped, fs, previous_modules=now, previous_changes=triples
        )
        assert third.changed == first.changed


def test_without_an_earlier_module_list_a_new_version_is_changed(
    venv: Venv, service: subprocess.Popen[str]
) -> None:
    """On a first look, a dist-info written after the start is changed: no kind is guessed."""
    with root_of(service.pid) as fs:
        start = started_at(service.pid)
        wait_past(start + START_SLACK)
        venv.rename_version("fakepkg", "1.0", "2.0")
        result = changed_distributions(scan(venv, fs), start, fs)
    assert result.changes == (Change("fakepkg", "2.0", "changed"),)


def test_changes_of_other_processes_are_not_carried(tmp_path: Path) -> None:
    """A previous result for another start time gives its listings, never its changes."""
    env = FakeEnvironment(tmp_path / "site-packages")
    env.install("pkg", "1")
    an_hour_ago = time.time() - 3600
    first = changed_distributions(scan_installed([str(env.path)]), an_hour_ago, HOST)
    assert first.changes == (Change("pkg", "1", "changed"),)
    now = time.time()
    later = changed_distributions(scan_installed([str(env.path)]), now, HOST, previous=first)
    assert later.changes == ()


def test_unchanged_directories_cost_no_system_call(tmp_path: Path) -> None:
    """A directory not modified since the start is neither listed nor stat'ed, whatever it holds."""
    env = FakeEnvironment(tmp_path / "site-packages")
    for n in range(50):
        env.install(f"pkg{n}", "1.0")
    found = scan_installed([str(env.path)])
    counting = CountingFS()
    result = changed_distributions(found, time.time(), counting)
    assert result.changes == ()
    assert counting.calls == 0
    # Started before the installs: the directory is listed once, each entry stat'ed once...
    past = changed_distributions(found, time.time() - 60, counting, clock=far_future)
    assert len(past.changes) == 50
    assert counting.calls == 51
    # ...and not again while the directory's mtime stays.
    again = changed_distributions(found, time.time() - 60, counting, previous=past)
    assert again.changes == past.changes
    assert (again.listed, counting.calls) == (0, 51)


def test_a_shadowed_distribution_does_not_count(tmp_path: Path) -> None:
    """A distribution installed after the start, shadowed earlier on the path, is not counted."""
    first = FakeEnvironment(tmp_path / "first" / "site-packages")
    first.install("pkg", "1.0")
    start = time.time() - 60
    os.utime(first.path, (start - 60, start - 60))
    second = FakeEnvironment(tmp_path / "second" / "site-packages")
    second.install("pkg", "2.0")
    second.install("other", "1.0")
    found = scan_installed([str(first.path), str(second.path)])
    result = changed_distributions(found, start, HOST, previous_modules={"pkg": "1.0"})
    # pkg 1.0 (first) is the one imported, and its directory's mtime says nothing was
    # added to it since the start; pkg 2.0 (second) is shadowed by it.
    assert result.changes == (Change("other", "1.0", "installed"),)


def test_egg_info_and_a_zipped_egg_count(tmp_path: Path) -> None:
    """An .egg-info directory and a zipped egg on the path written after the start are changes."""
    env = FakeEnvironment(tmp_path / "site-packages")
    env.install("legacy", "0.9", kind="egg-info")
    egg = tmp_path / "zipped-1.2-py3.11.egg"
    shutil.make_archive(str(tmp_path / "egg"), "zip", root_dir=write_egg_info(tmp_path / "egg"))
    os.rename(tmp_path / "egg.zip", egg)
    found = scan_installed([str(env.path), str(egg)])
    assert found.distributions() == {"legacy": "0.9", "zipped": "1.2"}
    result = changed_distributions(found, time.time() - 60, HOST, previous_modules={})
    assert result.changes == (
        Change("legacy", "0.9", "installed"),
        Change("zipped", "1.2", "installed"),
    )


def write_egg_info(folder: Path) -> Path:
    """A folder holding EGG-INFO/PKG-INFO of zipped 1.2, to zip as an egg."""
    (folder / "EGG-INFO").mkdir(parents=True)
    (folder / "EGG-INFO" / "PKG-INFO").write_text(
        "Metadata-Version: 1.1\nName: zipped\nVersion: 1.2\n"
    )
    return folder


def test_a_venv_written_just_before_its_start_is_no_upgrade(tmp_path: Path) -> None:
    """A dist-info written less than START_SLACK before the computed start is not a change."""
    env = FakeEnvironment(tmp_path / "site-packages")
    env.install("pkg", "1.0")
    written = (env.path / "pkg-1.0.dist-info").stat().st_ctime
    # btime is whole seconds: a start computed up to a second before the real one.
    result = changed_distributions(scan_installed([str(env.path)]), written - 0.9, HOST)
    assert result.changes == ()
    assert changed_distributions(
        scan_installed([str(env.path)]), written - 0.9, HOST, slack=0.0
    ).changes == (Change("pkg", "1.0", "changed"),)


# -- stale mapped files -------------------------------------------------------------------


@pytest.mark.parametrize("through", ["root", "host"])
def test_extension_replaced_under_a_running_process_is_deleted(
    venv: Venv, service: subprocess.Popen[str], through: str
) -> None:
    """A new copy of the extension module moved over it (os.replace) leaves the mapping deleted."""
    new = venv.extension.with_name("new.tmp")
    shutil.copyfile(venv.extension, new)
    os.replace(new, venv.extension)
    assert f"{venv.extension} (deleted)" in maps_text(service.pid)
    with root_of(service.pid) as root:
        fs: FileSystem = root if through == "root" else HOST
        mapped = read_mappings(ProcFS(), [service.pid])
        assert stale_files(mapped, fs) == (StaleFile(str(venv.extension), "deleted"),)
        result = check_restart(scan(venv, fs), started_at(service.pid), mapped, fs)
    assert result.required is True
    assert result.changed == ()


def test_extension_rewritten_in_place_is_not_seen(
    venv: Venv, service: subprocess.Popen[str]
) -> None:
    """Bytes rewritten into the mapped file keep its inode: maps and stat agree, nothing is stale.

    What happens: the kernel lets the file be written (only a running executable is
    ETXTBSY), the mapping keeps its path and inode without ``(deleted)``, and the
    process runs on (the same bytes were written, so nothing it runs changed).
    A restart check that compares inodes, as needrestart does, cannot see it.
    """
    before = venv.extension.stat().st_ino
    data = venv.extension.read_bytes()
    with open(venv.extension, "r+b") as file:
        file.write(data)
    assert venv.extension.stat().st_ino == before
    mapped = read_mappings(ProcFS(), [service.pid])
    with root_of(service.pid) as fs:
        assert stale_files(mapped, fs) == ()
    assert f"{venv.extension} (deleted)" not in maps_text(service.pid)
    assert service.poll() is None


def test_another_file_at_the_mapped_path_is_replaced(
    venv: Venv, service: subprocess.Popen[str], tmp_path: Path
) -> None:
    """A file bind-mounted over the mapped path is another inode there: replaced, not deleted."""
    other = tmp_path / "other.so"
    shutil.copyfile(venv.extension, other)
    done = subprocess.run(
        ["mount", "--bind", str(other), str(venv.extension)], capture_output=True, timeout=30
    )
    if done.returncode:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode(errors='replace').strip()}")
    try:
        mapped = read_mappings(ProcFS(), [service.pid])
        assert f"{venv.extension} (deleted)" not in maps_text(service.pid)
        with root_of(service.pid) as fs:
            assert stale_files(mapped, fs) == (StaleFile(str(venv.extension), "replaced"),)
    finally:
        subprocess.run(["umount", str(venv.extension)], check=True, timeout=30)


def test_another_root_holding_other_files_makes_them_replaced(
    venv: Venv, service: subprocess.Popen[str], tmp_path: Path
) -> None:
    """Through a root whose paths hold other files, a mapped code file there is replaced."""
    mapped = read_mappings(ProcFS(), [service.pid])
    other_root = tmp_path / "root"
    copied = [str(venv.extension), "/usr/lib/locale/C.utf8/LC_CTYPE"]
    for path in copied:
        if Path(path).exists():
            target = other_root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    with RootFileSystem(str(other_root)) as fs:
        stale = stale_files(mapped, fs)
    # Only the extension exists in that root (and a locale file, which is no code).
    assert stale == (StaleFile(str(venv.extension), "replaced"),)


def test_pseudo_and_data_mappings_are_not_stale(tmp_path: Path) -> None:
    """memfd, a POSIX semaphore, shared /dev/zero, deleted data files are not stale; code is."""
    data, shared, code = tmp_path / "data.bin", tmp_path / "shared.bin", tmp_path / "code.bin"
    for path in (data, shared, code):
        path.write_bytes(b"\0" * mmap.PAGESIZE)
    script = f"""
import mmap, multiprocessing, os
keep = []
fd = os.memfd_create("jit")
os.ftruncate(fd, mmap.PAGESIZE)
keep.append(mmap.mmap(fd, mmap.PAGESIZE))
keep.append(multiprocessing.Semaphore())
with open("/dev/zero", "r+b") as zero:
    keep.append(mmap.mmap(zero.fileno(), mmap.PAGESIZE))
for path, flags, prot in (
    ({str(data)!r}, mmap.MAP_PRIVATE, mmap.PROT_READ),
    ({str(shared)!r}, mmap.MAP_SHARED, mmap.PROT_READ),
    ({str(code)!r}, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_EXEC),
):
    with open(path, "rb") as file:
        keep.append(mmap.mmap(file.fileno(), mmap.PAGESIZE, flags=flags, prot=prot))
    os.unlink(path)
"""
    with running(Path(sys.executable), script) as child:
        text = maps_text(child.pid)
        for shown in ("/memfd:jit (deleted)", "/dev/zero (deleted)", f"{data} (deleted)"):
            assert shown in text
        assert "/dev/shm/sem." in text
        mapped = read_mappings(ProcFS(), [child.pid])
        with root_of(child.pid) as fs:
            stale = stale_files(mapped, fs)
    # The one file mapped executable and deleted is code gone from disk: stale.
    assert stale == (StaleFile(str(code), "deleted"),)


def test_processes_gone_are_skipped(venv: Venv, service: subprocess.Popen[str]) -> None:
    """A process that exited is counted gone; the live one's maps are still read."""
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait(timeout=30)
    mapped = read_mappings(ProcFS(), [exited.pid, service.pid])
    assert (mapped.read, mapped.gone) == (1, 1)
    assert str(venv.extension) in {m.path for m in mapped.mappings}


def test_workers_sharing_files_map_each_once(venv: Venv) -> None:
    """A parent and its forked workers, which map the same files, give each file once."""
    code = f"{IMPORT}\nimport os\nchildren = [os.fork() or os.pause() for _ in range(3)]"
    with running(venv.python, code) as parent:
        deadline = time.monotonic() + 10
        while len(workers := children_of(parent.pid)) < 3:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.02)
        pids = [parent.pid, *workers]
        try:
            mapped = read_mappings(ProcFS(), pids)
        finally:
            for pid in workers:
                os.kill(pid, 9)
    assert mapped.read == 4
    paths = [m.path for m in mapped.mappings]
    assert len(paths) == len(set(paths))
    assert str(venv.extension) in paths


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, from /proc/<pid>/task/<pid>/children."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(n) for n in text.split()]


class CountingFS:
    """The host's file system, counting the calls that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(HOST, name)

        def counted(*args: Any) -> Any:
            self.calls += 1
            return method(*args)

        return counted
