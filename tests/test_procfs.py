"""ProcFS: against fixture trees written here, and against the real /proc with real children.

The fixture files copy the shape of this machine's own (Linux 6.18, x86_64):
``/proc/<pid>/stat``, ``status``, ``maps`` and ``/proc/stat`` as ``cat`` showed
them, with the values that matter changed per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.sources.discovery.procfs import (
    CMDLINE_LIMIT,
    Executable,
    Mapping,
    ProcError,
    ProcessDenied,
    ProcessGone,
    ProcFS,
    Uids,
)

BTIME = 1796154945
# /proc/stat of this machine, its intr and softirq lines shortened.
SYSTEM_STAT = f"""\
cpu  416717 2400 69710 89282 4185 0 5762 5003 0 0
cpu0 204586 1136 33302 50614 1748 0 2516 2462 0 0
cpu1 212130 1263 36407 38667 2437 0 3245 2540 0 0
intr 9833871 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 9 0 0 0 0 1226 543
ctxt 26358209
btime {BTIME}
processes 91411
procs_running 5
procs_blocked 0
softirq 26032702 0 433399 4 22736198 1148123 0 3 451671 391417 871887
"""
# /proc/self/stat of `cat` here; pid, comm, state, ppid and starttime are filled in.
STAT = (
    "{pid} ({comm}) {state} {ppid} 13929 13253 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 "
    "{starttime} 3133440 358 18446744073709551615 93945921454080 93945921473961 "
    "140720554477600 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 93945921489968 93945921491584 "
    "93946857672704 140720554482393 140720554482413 140720554482413 140720554483691 0\n"
)
STATUS = """\
Name:\tpython3
Umask:\t0022
State:\tS (sleeping)
Tgid:\t123
Ngid:\t0
Pid:\t123
PPid:\t1
TracerPid:\t0
Uid:\t1000\t1001\t1002\t1003
Gid:\t1000\t1000\t1000\t1000
FDSize:\t256
Groups:\t
"""


def maps_line(header: str, path: str = "") -> str:
    """A maps line as the kernel writes it: the header, then the path from column 74."""
    if not path:
        return header + " \n"  # no name: the header's trailing space, no padding
    return f"{header} ".ljust(73) + path + "\n"


# This machine's /proc/self/maps of `cat`, and the cases it did not show: a deleted
# library, a path with spaces and one with a newline (the kernel writes \012), memfd
# and System V shm, a large device number, the anonymous and bracketed kinds.
LIB = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
MAPS = "".join(
    maps_line(header, path)
    for header, path in [
        ("55cb72fb0000-55cb72fb2000 r--p 00000000 fe:00 260131", "/usr/bin/cat"),
        ("55cb72fb2000-55cb72fb7000 r-xp 00002000 fe:00 260131", "/usr/bin/cat"),
        ("55cb72fb7000-55cb72fba000 r--p 00007000 fe:00 260131", "/usr/bin/cat"),
        ("55cb72fba000-55cb72fbb000 r--p 00009000 fe:00 260131", "/usr/bin/cat"),
        ("55cb72fbb000-55cb72fbc000 rw-p 0000a000 fe:00 260131", "/usr/bin/cat"),
        ("55cb83f19000-55cb83f3a000 rw-p 00000000 00:00 0", "[heap]"),
        ("7f72320eb000-7f723210d000 rw-p 00000000 00:00 0", ""),
        ("7f723210d000-7f7232164000 r--p 00000000 fe:00 329635", "/usr/lib/locale/C.utf8/LC_CTYPE"),
        ("7f7232164000-7f7232165000 r--p 00000000 fe:00 329642", LIB + " (deleted)"),
        ("7f7232165000-7f7232166000 r-xp 00001000 fe:00 329642", LIB + " (deleted)"),
        ("7f7232166000-7f7232167000 r--p 00000000 103:02 17", "/srv/my app/lib (v2).so"),
        ("7f7232167000-7f7232168000 r--p 00000000 fe:00 18", "/srv/odd\\012name.so"),
        ("7f7232168000-7f7232169000 rw-s 00000000 00:01 1043", "/memfd:wayland (deleted)"),
        ("7f7232169000-7f723216a000 rw-s 00000000 00:01 5", "/SYSV00000000 (deleted)"),
        ("7f723216a000-7f723216b000 rw-s 00000000 00:01 6", "/dev/zero (deleted)"),
        ("7f723216b000-7f723216c000 r--p 00000000 00:00 0", "[vvar]"),
        ("7f723216c000-7f723216e000 r-xp 00000000 00:00 0", "[vdso]"),
        ("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0", "[vsyscall]"),
    ]
)
READY = "import sys, time; print('ready', flush=True); time.sleep(30)"


def make_proc(tmp_path: Path, system_stat: str = SYSTEM_STAT) -> Path:
    """A fixture procfs root holding only /proc/stat."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text(system_stat)
    return proc


def write_pid(
    proc: Path,
    pid: int,
    *,
    comm: str = "python3",
    state: str = "S",
    ppid: int = 1,
    starttime: int = 297059,
    **files: bytes | str,
) -> Path:
    """A fixture process directory: its stat, and any other file given by name."""
    directory = proc / str(pid)
    directory.mkdir(exist_ok=True)
    line = STAT.format(pid=pid, comm=comm, state=state, ppid=ppid, starttime=starttime)
    (directory / "stat").write_text(line)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return directory


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """An empty fixture procfs root."""
    return make_proc(tmp_path)


@pytest.fixture
def fs(proc: Path) -> ProcFS:
    """A ProcFS over the fixture root, with Linux's 100 clock ticks a second."""
    return ProcFS(str(proc), clock_ticks=100)


def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start a real child that prints ready once Python is up, and wait for that line."""
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **kwargs)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def stop(child: subprocess.Popen[str]) -> None:
    """Kill and reap a child started by start."""
    child.kill()
    child.wait()
    if child.stdout is not None:
        child.stdout.close()


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real sleeping Python whose environment holds a secret and a commit."""
    env = {"SECRET": "hunter2", "COMMIT": "abc", "PATH": os.environ.get("PATH", "")}
    child = start([sys.executable, "-c", READY], env=env, cwd=tmp_path)
    yield child
    stop(child)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll condition until it holds, failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def every_reader(fs: ProcFS) -> list[Callable[[int], object]]:
    """Every reader of one pid that ``fs`` has, each called with the pid alone."""
    return [
        fs.stat,
        fs.identity,
        fs.exe,
        fs.cwd,
        fs.cmdline,
        fs.cgroup,
        fs.status_uids,
        fs.maps,
        lambda pid: fs.environ(pid, ["PATH"]),
    ]


# -- fixture trees ---------------------------------------------------------------------


def test_pids_lists_numeric_entries_only(proc: Path, fs: ProcFS) -> None:
    """pids() returns the numeric entries in order, not self, sys, or other digits."""
    for pid in (123, 1, 40000):
        write_pid(proc, pid)
    for name in ("sys", "12a", "\u0661\u0662"):  # the last: Arabic-Indic digits
        (proc / name).mkdir()
    (proc / "self").symlink_to("123")
    assert fs.pids() == [1, 123, 40000]


def test_pids_of_a_missing_mount_is_a_proc_error(tmp_path: Path) -> None:
    """A mount point that does not exist raises ProcError, not a raw OSError."""
    with pytest.raises(ProcError) as caught:
        ProcFS(str(tmp_path / "nowhere")).pids()
    assert not isinstance(caught.value, ProcessGone)


def test_stat_parses_a_comm_with_spaces_and_parentheses(proc: Path, fs: ProcFS) -> None:
    """A comm like `py (x) y` is read up to the last ')' and the fields after it are right."""
    write_pid(proc, 123, comm="py (x) y", state="S", ppid=77, starttime=297059)
    stat = fs.stat(123)
    assert (stat.pid, stat.comm, stat.state, stat.ppid) == (123, "py (x) y", "S", 77)
    assert stat.starttime == 297059
    assert stat.start_time == pytest.approx(BTIME + 2970.59)


def test_stat_resists_a_comm_that_imitates_the_fields(proc: Path, fs: ProcFS) -> None:
    """A comm holding `) R 1 2 (` cannot shift the fields: the last ')' ends it."""
    write_pid(proc, 123, comm=") R 1 2 (", state="T", ppid=5, starttime=42)
    stat = fs.stat(123)
    assert (stat.comm, stat.state, stat.ppid, stat.starttime) == (") R 1 2 (", "T", 5, 42)


def test_start_time_uses_the_clock_ticks(proc: Path) -> None:
    """start_time is btime plus starttime divided by the clock ticks per second."""
    write_pid(proc, 123, starttime=5000)
    assert ProcFS(str(proc), clock_ticks=1000).stat(123).start_time == BTIME + 5


def test_identity_includes_the_start_time(proc: Path, fs: ProcFS) -> None:
    """A pid reused by a later process gives another identity: (pid, starttime)."""
    write_pid(proc, 123, starttime=1000)
    first = fs.identity(123)
    write_pid(proc, 123, starttime=2000)  # the same pid, a new process
    assert first == (123, 1000)
    assert fs.identity(123) == (123, 2000)


def test_malformed_stat_is_a_proc_error(proc: Path, fs: ProcFS) -> None:
    """A stat without its parentheses or fields raises the plain ProcError."""
    (write_pid(proc, 123) / "stat").write_text("123 python S 1\n")
    with pytest.raises(ProcError) as caught:
        fs.stat(123)
    assert type(caught.value) is ProcError


def test_a_missing_btime_is_a_proc_error(tmp_path: Path) -> None:
    """A /proc/stat without btime raises ProcError when a start time is asked for."""
    proc = make_proc(tmp_path, system_stat="cpu  1 2 3\n")
    write_pid(proc, 123)
    with pytest.raises(ProcError, match="btime"):
        ProcFS(str(proc)).stat(123)


def test_a_vanished_pid_is_process_gone(fs: ProcFS) -> None:
    """Every reader of a pid whose directory does not exist raises ProcessGone."""
    for read in every_reader(fs):
        with pytest.raises(ProcessGone) as caught:
            read(4242)
        assert caught.value.pid == 4242


def test_a_missing_file_of_a_live_pid_is_not_process_gone(proc: Path, fs: ProcFS) -> None:
    """A file absent from a pid directory that exists raises ProcError, not ProcessGone."""
    write_pid(proc, 123)
    with pytest.raises(ProcError, match="process directory exists") as caught:
        fs.cmdline(123)
    assert type(caught.value) is ProcError


def test_pids_must_be_positive_integers(fs: ProcFS) -> None:
    """A pid that is not a positive int is refused before any path is built from it."""
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="not a pid"):
            fs.root(bad)
    with pytest.raises(TypeError):
        fs.stat("../../etc")  # type: ignore[arg-type]


def test_exe_reports_a_deleted_executable(proc: Path, fs: ProcFS) -> None:
    """An exe link ending in ` (deleted)` gives the path without it and deleted=True."""
    directory = write_pid(proc, 123)
    (directory / "exe").symlink_to("/usr/bin/python3.11 (deleted)")
    assert fs.exe(123) == Executable("/usr/bin/python3.11", deleted=True)
    (directory / "exe").unlink()
    (directory / "exe").symlink_to("/usr/bin/python3.11")
    assert fs.exe(123) == Executable("/usr/bin/python3.11", deleted=False)


def test_exe_of_a_process_without_one_is_none(proc: Path, fs: ProcFS) -> None:
    """A live pid without an exe link (a kernel thread, a zombie) gives None."""
    write_pid(proc, 2, comm="kthreadd")
    assert fs.exe(2) is None
    assert fs.cwd(2) is None


def test_root_is_the_unresolved_link_path(proc: Path, fs: ProcFS) -> None:
    """root() returns <mount>/<pid>/root without touching the file system."""
    assert fs.root(123) == os.path.join(str(proc), "123", "root")


def test_cmdline_splits_on_nul(proc: Path, fs: ProcFS) -> None:
    """cmdline() splits NUL-terminated arguments, keeping empty and spaced ones."""
    write_pid(proc, 123, cmdline=b"/usr/bin/python3\0-m\0my app\0\0last\0")
    assert fs.cmdline(123) == ["/usr/bin/python3", "-m", "my app", "", "last"]


def test_cmdline_rewritten_by_setproctitle(proc: Path, fs: ProcFS) -> None:
    """A process that wrote its title over its arguments gives one string."""
    write_pid(proc, 123, cmdline=b"gunicorn: worker [app:wsgi]")
    assert fs.cmdline(123) == ["gunicorn: worker [app:wsgi]"]


def test_cmdline_of_a_kernel_thread_is_empty(proc: Path, fs: ProcFS) -> None:
    """An empty cmdline file gives no arguments."""
    write_pid(proc, 2, cmdline=b"")
    assert fs.cmdline(2) == []


def test_cmdline_keeps_undecodable_bytes_round_trippable(proc: Path, fs: ProcFS) -> None:
    """Bytes that are not UTF-8 decode with surrogateescape and encode back to themselves."""
    raw = b"/srv/caf\xe9/app.py"
    write_pid(proc, 123, cmdline=b"python\0" + raw + b"\0")
    assert os.fsencode(fs.cmdline(123)[1]) == raw


def test_cmdline_past_the_limit_drops_the_cut_argument(proc: Path, fs: ProcFS) -> None:
    """A cmdline longer than the limit returns only the arguments that fit whole."""
    write_pid(proc, 123, cmdline=b"python\0-c\0" + b"x" * 100 + b"\0")
    assert fs.cmdline(123, limit=20) == ["python", "-c"]
    assert fs.cmdline(123, limit=10) == ["python", "-c"]  # ends on a NUL: nothing cut
    assert fs.cmdline(123, limit=9) == ["python"]


def test_a_huge_file_costs_one_bounded_read(proc: Path, fs: ProcFS) -> None:
    """A 1 GiB (sparse) cmdline or environ file is read only up to the limit."""
    directory = write_pid(proc, 123)
    for name in ("cmdline", "environ", "maps"):
        with open(directory / name, "wb") as f:
            f.truncate(1 << 30)
    began = time.monotonic()
    assert len(fs.cmdline(123)) <= CMDLINE_LIMIT
    assert fs.environ(123, ["PATH"]) == {}
    assert fs.maps(123) == []
    assert time.monotonic() - began < 5


def test_a_fifo_is_refused_without_blocking(proc: Path, fs: ProcFS) -> None:
    """A FIFO where a file should be raises ProcError at once instead of waiting for a writer."""
    directory = write_pid(proc, 123)
    os.mkfifo(directory / "cmdline")
    os.mkfifo(directory / "environ")
    with pytest.raises(ProcError, match="not a regular file"):
        fs.cmdline(123)
    with pytest.raises(ProcError, match="not a regular file"):
        fs.environ(123, ["PATH"])


def test_environ_returns_only_the_names_asked_for(proc: Path, fs: ProcFS) -> None:
    """environ() returns the requested variables and nothing of the others."""
    write_pid(
        proc,
        123,
        environ=b"PATH=/usr/bin\0SECRET=hunter2\0COMMIT_SHA=nope\0COMMIT=abc\0EMPTY=\0",
    )
    assert fs.environ(123, ["COMMIT", "EMPTY", "ABSENT"]) == {"COMMIT": "abc", "EMPTY": ""}
    assert fs.environ(123, []) == {}


def test_environ_keeps_the_first_of_a_name_set_twice(proc: Path, fs: ProcFS) -> None:
    """A name that appears twice keeps its first value, as getenv(3) does."""
    write_pid(proc, 123, environ=b"COMMIT=first\0COMMIT=second\0")
    assert fs.environ(123, ["COMMIT"]) == {"COMMIT": "first"}


def test_environ_reads_a_last_entry_without_its_nul(proc: Path, fs: ProcFS) -> None:
    """An environ file whose last entry has no NUL after it still yields that entry."""
    write_pid(proc, 123, environ=b"A=1\0COMMIT=abc")
    assert fs.environ(123, ["COMMIT"]) == {"COMMIT": "abc"}


def test_environ_past_the_limit_never_matches_a_cut_entry(proc: Path, fs: ProcFS) -> None:
    """An entry cut by the limit is not returned, even truncated."""
    write_pid(proc, 123, environ=b"A=1\0COMMIT=abcdef\0")
    assert fs.environ(123, ["A", "COMMIT"], limit=14) == {"A": "1"}  # ends inside COMMIT
    assert fs.environ(123, ["COMMIT"], limit=18) == {"COMMIT": "abcdef"}


def test_environ_refuses_names_that_are_not_names(fs: ProcFS) -> None:
    """Names that are empty or hold '=' or NUL raise ValueError."""
    for bad in ("", "A=B", "A\0"):
        with pytest.raises(ValueError, match="not an environment variable name"):
            fs.environ(123, [bad])


def test_environ_refuses_a_bare_string(fs: ProcFS) -> None:
    """A single str for names raises TypeError rather than asking for each of its letters."""
    with pytest.raises(TypeError, match="not one str"):
        fs.environ(123, "COMMIT")


def test_cgroup_returns_the_lines(proc: Path, fs: ProcFS) -> None:
    """cgroup() returns the file's lines without their newlines."""
    write_pid(proc, 123, cgroup="1:name=systemd:/system.slice/app.service\n0::/x.service\n")
    assert fs.cgroup(123) == ["1:name=systemd:/system.slice/app.service", "0::/x.service"]


def test_status_uids(proc: Path, fs: ProcFS) -> None:
    """status_uids() reads the real, effective, saved and file-system uids in that order."""
    write_pid(proc, 123, status=STATUS)
    assert fs.status_uids(123) == Uids(real=1000, effective=1001, saved=1002, filesystem=1003)


def test_status_without_uids_is_a_proc_error(proc: Path, fs: ProcFS) -> None:
    """A status file without a Uid line raises ProcError."""
    write_pid(proc, 123, status="Name:\tpython3\n")
    with pytest.raises(ProcError, match="Uid"):
        fs.status_uids(123)


def test_maps_keeps_file_backed_mappings_once_each(proc: Path, fs: ProcFS) -> None:
    """maps() keeps one mapping per file, with dev, inode and the deleted flag parsed."""
    write_pid(proc, 123, maps=MAPS)
    mappings = fs.maps(123)
    assert [(m.path, m.deleted) for m in mappings] == [
        ("/usr/bin/cat", False),
        ("/usr/lib/locale/C.utf8/LC_CTYPE", False),
        ("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", True),
        ("/srv/my app/lib (v2).so", False),
        ("/srv/odd\nname.so", False),
    ]
    assert mappings[0] == Mapping(
        start=0x55CB72FB0000,
        end=0x55CB72FB2000,
        perms="r--p",
        offset=0,
        dev=(0xFE, 0),
        inode=260131,
        path="/usr/bin/cat",
        deleted=False,
    )
    assert (mappings[3].dev, mappings[3].inode) == ((0x103, 2), 17)


def test_maps_past_the_limit_drops_the_cut_line(proc: Path, fs: ProcFS) -> None:
    """A maps file longer than the limit yields the whole lines before it only."""
    write_pid(proc, 123, maps=MAPS)
    first_line = len(MAPS.splitlines()[0])
    assert [m.path for m in fs.maps(123, limit=first_line + 10)] == ["/usr/bin/cat"]
    assert fs.maps(123, limit=first_line - 1) == []


# -- the real /proc ----------------------------------------------------------------------


def test_real_environ_returns_only_what_was_asked_and_keeps_no_secret(
    sleeper: subprocess.Popen[str],
) -> None:
    """The secret in a real child's environment is in no return value and no attribute."""
    fs = ProcFS()
    pid = sleeper.pid
    assert b"SECRET=hunter2" in Path(f"/proc/{pid}/environ").read_bytes()  # it is there
    assert fs.environ(pid, ["COMMIT"]) == {"COMMIT": "abc"}
    returned = [
        fs.environ(pid, ["COMMIT", "ABSENT"]),
        fs.stat(pid),
        fs.identity(pid),
        fs.exe(pid),
        fs.cwd(pid),
        fs.root(pid),
        fs.cmdline(pid),
        fs.cgroup(pid),
        fs.status_uids(pid),
        fs.maps(pid),
    ]
    assert "hunter2" not in repr(returned)
    assert not hasattr(fs, "__dict__")
    state = {name: getattr(fs, name) for name in ProcFS.__slots__}
    assert "hunter2" not in repr(state)
    assert "hunter2" not in repr(fs)


def test_real_environ_is_bounded(tmp_path: Path) -> None:
    """A variable past the limit of a real child's environment is not read."""
    env = {f"BIG{n}": "x" * 100_000 for n in range(3)}
    env["COMMIT"] = "abc"  # after 300 kB of others
    child = start([sys.executable, "-c", READY], env=env)
    try:
        fs = ProcFS()
        assert fs.environ(child.pid, ["COMMIT"]) == {}
        assert fs.environ(child.pid, ["COMMIT"], limit=512 * 1024) == {"COMMIT": "abc"}
    finally:
        stop(child)


def test_real_stat_and_start_time(sleeper: subprocess.Popen[str], tmp_path: Path) -> None:
    """A real child's stat names it, its parent and a start time of a moment ago."""
    fs = ProcFS()
    stat = fs.stat(sleeper.pid)
    assert stat.comm == Path(f"/proc/{sleeper.pid}/comm").read_text().strip()
    assert stat.ppid == os.getpid()
    assert stat.state in {"S", "R"}
    assert abs(stat.start_time - time.time()) < 5
    assert fs.identity(sleeper.pid) == (sleeper.pid, stat.starttime)
    assert fs.cwd(sleeper.pid) == os.path.realpath(tmp_path)
    assert sleeper.pid in fs.pids()


def test_real_identities_differ_between_processes(sleeper: subprocess.Popen[str]) -> None:
    """Two live processes never share an identity, and it carries the start time."""
    fs = ProcFS()
    mine, theirs = fs.identity(os.getpid()), fs.identity(sleeper.pid)
    assert mine != theirs
    assert mine[1] <= theirs[1]  # this process started first


def test_real_exe_and_maps_show_the_python_that_runs(sleeper: subprocess.Popen[str]) -> None:
    """A real Python child's exe is its interpreter, mapped with that file's device and inode."""
    fs = ProcFS()
    interpreter = os.path.realpath(sys.executable)
    assert fs.exe(sleeper.pid) == Executable(interpreter, deleted=False)
    mappings = {m.path: m for m in fs.maps(sleeper.pid)}
    found = os.stat(interpreter)
    assert mappings[interpreter].dev == (os.major(found.st_dev), os.minor(found.st_dev))
    assert mappings[interpreter].inode == found.st_ino
    # The child maps libpython exactly when this same interpreter does (Debian's python3 is
    # linked statically although sysconfig says Py_ENABLE_SHARED; pyenv's is shared).
    own = {m.path for m in fs.maps(os.getpid())}
    own_libpython = sorted(p for p in own if os.path.basename(p).startswith("libpython"))
    child_libpython = sorted(p for p in mappings if os.path.basename(p).startswith("libpython"))
    assert child_libpython == own_libpython
    assert all(not m.path.startswith("[") for m in mappings.values())


def test_real_cmdline_is_bounded() -> None:
    """A real child with a 100 kB argument costs one 64 KiB read, its whole arguments kept."""
    child = start([sys.executable, "-c", READY, "x" * 100_000])
    try:
        assert ProcFS().cmdline(child.pid) == [sys.executable, "-c", READY]
    finally:
        stop(child)


def test_real_cgroup_is_this_process_file() -> None:
    """cgroup() of this process gives the lines of its /proc/self/cgroup."""
    assert ProcFS().cgroup(os.getpid()) == Path("/proc/self/cgroup").read_text().splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process as another user needs root")
def test_real_status_uids_of_another_user() -> None:
    """A real child started as nobody reports uid 65534 four times."""
    child = subprocess.Popen(["sleep", "30"], user=65534, group=65534)
    try:
        assert ProcFS().status_uids(child.pid) == Uids(65534, 65534, 65534, 65534)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_real_reads_another_user_may_not_make_are_process_denied(
    sleeper: subprocess.Popen[str],
) -> None:
    """A reader running as nobody gets ProcessDenied for a root process's environ and exe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report by name, exit
        outcome = []
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            fs = ProcFS()
            for read in (lambda: fs.environ(sleeper.pid, ["COMMIT"]), lambda: fs.exe(sleeper.pid)):
                try:
                    read()
                    outcome.append("read")
                except BaseException as exc:
                    outcome.append(type(exc).__name__)
            os.write(write_end, " ".join(outcome).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    os.waitpid(pid, 0)
    assert report == f"{ProcessDenied.__name__} {ProcessDenied.__name__}"


def test_real_process_that_exits_after_listing_is_gone() -> None:
    """A real child listed, then reaped before it is read, raises ProcessGone on every read."""
    fs = ProcFS()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert child.pid in fs.pids()  # listed: running, or a zombie until reaped
    child.wait()
    for read in every_reader(fs):
        with pytest.raises(ProcessGone):
            read(child.pid)


def test_real_zombie_has_no_executable_and_no_arguments() -> None:
    """A real unreaped child is state Z, with no exe, cwd, arguments or maps, its environ gone."""
    fs = ProcFS()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: fs.stat(child.pid).state == "Z")  # never poll(): it would reap
        assert fs.exe(child.pid) is None
        assert fs.cwd(child.pid) is None
        assert fs.cmdline(child.pid) == []
        assert fs.maps(child.pid) == []
        with pytest.raises(ProcessGone):  # its memory is gone: the kernel says ESRCH
            fs.environ(child.pid, ["PATH"])
    finally:
        child.wait()
