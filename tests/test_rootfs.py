"""The in-root resolver: a target's files read as the target sees them, never the host's.

Every case runs through both implementations (openat2 and the pure-Python
resolver) over a real chroot-like tree; the exhaustive case also asks the
kernel itself, from a process chrooted into that tree.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.filesystem import HOST
from exporter.sources.discovery.rootfs import (
    MAXSYMLINKS,
    FileTooLarge,
    NotRegularFile,
    RootFileSystem,
    openat2_available,
    read_bounded,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")

HOST_MARKER = b"HOST-MARKER: the host's file, which a target must never read\n"
TREE_MARKER = b"TREE-MARKER: the target's own file\n"


@dataclass(frozen=True)
class Tree:
    """A chroot-like tree and, outside it, a host file that links in it name."""

    root: Path
    host_file: Path  # exists on the host and, at the same path, inside the root


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """The tree every case walks: links absolute, relative, climbing, looping, dangling."""
    host_file = tmp_path / "host" / "etc" / "x"
    host_file.parent.mkdir(parents=True)
    host_file.write_bytes(HOST_MARKER)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "x").write_bytes(TREE_MARKER)
    inside = root / host_file.relative_to("/")
    inside.parent.mkdir(parents=True)
    inside.write_bytes(TREE_MARKER)
    (root / "f").write_bytes(b"file\n")
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"in d\n")
    (root / "d" / "sub" / "g").write_bytes(b"in sub\n")
    links = {
        "abs": "/etc/x",
        "leak": str(host_file),
        "rel": "d/sub",
        "up": "../../../..",
        "loop": "loop2",
        "loop2": "loop",
        "dang": "nowhere",
        "dlink": "/d",
        "c1": "c2",
        "c2": "c3",
        "c3": "d/sub/g",
        "d/back": "../..",
        "d/abs": "/etc/x",
        "d/sub/top": "../../../../../f",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    os.mkfifo(root / "fifo")
    return Tree(root, host_file)


IMPLEMENTATIONS = ("openat2", "resolver")
MakeFs = Callable[[Path | str], RootFileSystem]


@pytest.fixture(params=IMPLEMENTATIONS)
def make_fs(request: pytest.FixtureRequest) -> Iterator[MakeFs]:
    """A factory of RootFileSystems of one implementation, each closed after the test."""
    use_openat2 = request.param == "openat2"
    if use_openat2 and not openat2_available():
        pytest.skip("openat2 is not available here")
    made: list[RootFileSystem] = []

    def make(root: Path | str) -> RootFileSystem:
        fs = RootFileSystem(str(root), use_openat2=use_openat2)
        assert fs.uses_openat2 is use_openat2
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.close()


@pytest.fixture
def fs(make_fs: MakeFs, tree: Tree) -> RootFileSystem:
    """A RootFileSystem over the tree."""
    return make_fs(tree.root)


def read(fs: RootFileSystem, path: str) -> bytes:
    return read_bounded(fs, path, 1 << 16)


def errno_of(call: Callable[[], object]) -> int | None:
    try:
        call()
    except OSError as e:
        return e.errno
    pytest.fail("no OSError")


# -- links and the root -------------------------------------------------------------


def test_an_absolute_link_resolves_inside_the_root(fs, tree):
    """A link -> /etc/x reads <root>/etc/x, and a link to a host path reads the tree's copy."""
    assert read(fs, "/abs") == TREE_MARKER
    assert read(fs, "/leak") == TREE_MARKER
    assert (tree.root / "leak").read_bytes() == HOST_MARKER  # what plain open() does
    assert fs.realpath("/leak") == str(tree.host_file)


def test_dotdot_and_climbing_links_stop_at_the_root(fs):
    """Neither `..` in a path nor a `../../..` link leaves the root."""
    assert read(fs, "/../../../../etc/x") == TREE_MARKER
    assert read(fs, "up/up/../etc/x") == TREE_MARKER
    assert read(fs, "d/back/../../f") == b"file\n"
    assert read(fs, "d/sub/top") == b"file\n"
    assert fs.realpath("/..") == "/"
    assert fs.realpath("up") == "/"
    assert fs.realpath("d/back") == "/"
    assert sorted(fs.listdir("/../..")) == sorted(fs.listdir("/"))


def test_a_relative_chain_of_links_is_followed(fs):
    """c1 -> c2 -> c3 -> d/sub/g reads g, and realpath names it."""
    assert read(fs, "c1") == b"in sub\n"
    assert fs.realpath("/c1") == "/d/sub/g"
    assert fs.readlink("c1") == "c2"


def test_a_loop_is_eloop(fs):
    """A link loop fails with ELOOP for every operation that follows it."""
    for call in (
        lambda: fs.open("loop"),
        lambda: fs.stat("loop/x"),
        lambda: fs.realpath("loop"),
        lambda: fs.listdir("loop"),
    ):
        assert errno_of(call) == errno.ELOOP
    assert stat.S_ISLNK(fs.lstat("loop").st_mode)
    assert fs.is_dir("loop") is False
    assert fs.is_file("loop") is False


def test_forty_links_are_followed_and_the_forty_first_is_eloop(make_fs, tmp_path):
    """A chain of 40 links resolves and one of 41 is ELOOP, as the kernel's own resolution."""
    (tmp_path / "end").write_bytes(b"end\n")
    for n in range(MAXSYMLINKS + 1):
        (tmp_path / f"l{n}").symlink_to("end" if n == 0 else f"l{n - 1}")
    fs = make_fs(tmp_path)
    assert read(fs, f"l{MAXSYMLINKS - 1}") == b"end\n"
    assert errno_of(lambda: fs.open(f"l{MAXSYMLINKS}")) == errno.ELOOP
    assert errno_of(lambda: os.open(tmp_path / f"l{MAXSYMLINKS}", os.O_RDONLY)) == errno.ELOOP


def test_a_dangling_link_is_file_not_found(fs):
    """A dangling link is FileNotFoundError when followed, and still a link when not."""
    with pytest.raises(FileNotFoundError):
        fs.open("dang")
    with pytest.raises(FileNotFoundError):
        fs.realpath("/dang")
    assert fs.readlink("dang") == "nowhere"
    assert stat.S_ISLNK(fs.lstat("/dang").st_mode)
    with pytest.raises(FileNotFoundError):
        fs.stat("/no/such/thing")


def test_a_fifo_opened_nonblocking_returns_and_is_refused(fs):
    """A FIFO opened with O_NONBLOCK does not block, fstat tells it, and read_bounded refuses it."""
    opened: list[int] = []
    opener = threading.Thread(
        target=lambda: opened.append(fs.open("/fifo", os.O_RDONLY | os.O_NONBLOCK)), daemon=True
    )
    opener.start()
    opener.join(10)
    assert opened, "open(O_NONBLOCK) of a FIFO blocked"
    try:
        assert stat.S_ISFIFO(os.fstat(opened[0]).st_mode)
    finally:
        os.close(opened[0])
    assert stat.S_ISFIFO(fs.stat("fifo").st_mode)  # O_PATH: stat never opens it
    with pytest.raises(NotRegularFile):
        read_bounded(fs, "/fifo", 10)
    assert fs.is_file("fifo") is False


def test_a_directory_link_in_the_middle_of_a_path_is_followed(fs):
    """Directory links in the middle of a path are followed inside the root."""
    assert read(fs, "dlink/sub/g") == b"in sub\n"
    assert read(fs, "/rel/g") == b"in sub\n"
    assert read(fs, "dlink/abs") == TREE_MARKER
    assert fs.stat("dlink/f").st_ino == os.stat(fs.root + "/d/f").st_ino


def test_realpath_of_a_path_through_links_is_the_in_root_path(fs):
    """realpath resolves every link and `..` to the absolute path the target sees."""
    assert fs.realpath("dlink/sub/../f") == "/d/f"
    assert fs.realpath("/rel/../../abs") == "/etc/x"
    assert fs.realpath("rel/") == "/d/sub"
    assert fs.realpath("//d/./sub//g") == "/d/sub/g"
    assert fs.realpath("/") == "/"


def test_listdir_through_a_link_to_a_directory(fs):
    """listdir follows a link to a directory, and refuses a file."""
    assert sorted(fs.listdir("rel")) == ["g", "top"]
    assert sorted(fs.listdir("/dlink/")) == ["abs", "back", "f", "sub"]
    with pytest.raises(NotADirectoryError):
        fs.listdir("f")


def test_readlink_reads_the_last_link_and_follows_the_ones_before(fs):
    """readlink returns a link's text as written, follows the links before it, EINVAL on a file."""
    assert fs.readlink("/abs") == "/etc/x"
    assert fs.readlink("dlink/abs") == "/etc/x"
    assert errno_of(lambda: fs.readlink("f")) == errno.EINVAL
    assert errno_of(lambda: fs.readlink("/")) == errno.EINVAL


def test_stat_follows_and_lstat_does_not(fs):
    """stat follows a final link inside the root; lstat stats the link itself."""
    assert stat.S_ISREG(fs.stat("abs").st_mode)
    assert stat.S_ISLNK(fs.lstat("abs").st_mode)
    assert stat.S_ISDIR(fs.lstat("dlink/").st_mode)  # a trailing slash follows
    assert [fs.is_dir("rel"), fs.is_file("rel")] == [True, False]
    assert [fs.is_dir("c1"), fs.is_file("c1")] == [False, True]
    assert [fs.is_dir("dang"), fs.is_file("nowhere")] == [False, False]


def test_a_trailing_slash_wants_a_directory(fs):
    """A path with a trailing slash names a directory: a file there is ENOTDIR."""
    assert errno_of(lambda: fs.open("f/")) == errno.ENOTDIR
    assert errno_of(lambda: fs.stat("c1/.")) == errno.ENOTDIR
    assert errno_of(lambda: fs.stat("f/..")) == errno.ENOTDIR


def test_o_nofollow_refuses_a_final_link_and_o_path_opens_it(fs):
    """O_NOFOLLOW on a final link is ELOOP; with O_PATH it opens the link itself."""
    assert errno_of(lambda: fs.open("abs", os.O_RDONLY | os.O_NOFOLLOW)) == errno.ELOOP
    fd = fs.open("abs", os.O_PATH | os.O_NOFOLLOW | os.O_NONBLOCK)  # O_NONBLOCK ignored
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def test_flags_that_write_are_refused(fs, tree):
    """open refuses flags that write, create or truncate, and the file is left as it was."""
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_CREAT, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(ValueError, match="only read"):
            fs.open("f", flags)
    with pytest.raises(ValueError, match="only read"):
        fs.open("d", os.O_TMPFILE | os.O_RDWR)
    assert (tree.root / "f").read_bytes() == b"file\n"


def test_bad_paths_fail_like_the_kernel(fs):
    """A NUL byte is ValueError, an empty path ENOENT, a path of PATH_MAX bytes ENAMETOOLONG."""
    with pytest.raises(ValueError, match="null"):
        fs.open("f\0/etc/x")
    assert errno_of(lambda: fs.stat("")) == errno.ENOENT
    assert errno_of(lambda: fs.stat("/" + "a/" * 2048)) == errno.ENAMETOOLONG
    assert errno_of(lambda: fs.stat("a" * 256)) == errno.ENAMETOOLONG


def test_procfs_magic_links_are_refused_and_its_plain_links_followed(make_fs):
    """Magic links (/proc/self/root, fd/*, exe) are ELOOP; /proc/self and /proc/mounts are not."""
    fs = make_fs("/")
    for path in (
        "/proc/self/root/etc/hostname",
        "/proc/self/fd/0",
        "/proc/self/exe",
        "/proc/self/cwd",
    ):
        assert errno_of(lambda path=path: fs.stat(path)) == errno.ELOOP, path
    assert stat.S_ISLNK(fs.lstat("/proc/self/exe").st_mode)  # not followed: allowed
    assert fs.realpath("/proc/self") == f"/proc/{os.getpid()}"
    assert fs.realpath("/proc/mounts") == f"/proc/{os.getpid()}/mounts"
    assert b"Pid:" in read_bounded(fs, "/proc/self/status", 1 << 16)


# -- the same answers as the kernel --------------------------------------------------

# Runs in a process chrooted into the tree: the kernel's own answers for each path.
ORACLE = r"""
import json, os, sys
paths = json.load(sys.stdin)
proc_fd = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY)  # before chroot: names in-root
os.chroot(sys.argv[1])
os.chdir("/")

def answer(call):
    try:
        return ["ok", call()]
    except OSError as e:
        return ["err", e.errno]

def ino(fd):
    return os.fstat(fd).st_ino

def name(fd):
    return os.readlink(str(fd), dir_fd=proc_fd)

def opened(path, flags, then):
    fd = os.open(path, flags)
    try:
        return then(fd)
    finally:
        os.close(fd)

out = {}
for p in paths:
    out[p] = {
        "stat": answer(lambda: os.stat(p).st_ino),
        "lstat": answer(lambda: os.lstat(p).st_ino),
        "open": answer(lambda: opened(p, os.O_RDONLY | os.O_NONBLOCK, ino)),
        "readlink": answer(lambda: os.readlink(p)),
        "listdir": answer(lambda: sorted(os.listdir(p))),
        "realpath": answer(lambda: opened(p, os.O_PATH, name)),
    }
json.dump(out, sys.stdout)
"""

COMPONENTS = ("d", "f", "..", ".", "", "abs", "rel", "up", "loop", "dang", "fifo", "dlink", "c1")
COMPONENTS += ("sub", "back", "g", "top")


def enumerated_paths() -> list[str]:
    paths = []
    for depth in (1, 2, 3):
        for combo in itertools.product(COMPONENTS, repeat=depth):
            paths.append("/".join(combo))
            paths.append("/" + "/".join(combo))
    return sorted(set(paths))


def answers(fs: RootFileSystem, paths: list[str]) -> dict[str, dict[str, list[object]]]:
    def answer(call: Callable[[], object]) -> list[object]:
        try:
            return ["ok", call()]
        except OSError as e:
            return ["err", e.errno]

    def open_ino(p: str) -> int:
        fd = fs.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def of(p: str) -> dict[str, list[object]]:
        return {
            "stat": answer(lambda: fs.stat(p).st_ino),
            "lstat": answer(lambda: fs.lstat(p).st_ino),
            "open": answer(lambda: open_ino(p)),
            "readlink": answer(lambda: fs.readlink(p)),
            "listdir": answer(lambda: sorted(fs.listdir(p))),
            "realpath": answer(lambda: fs.realpath(p)),
        }

    return {p: of(p) for p in paths}


@needs_root
def test_every_path_resolves_as_in_a_real_chroot(make_fs, tree):
    """Every path of up to three components answers each operation as the kernel in a chroot."""
    paths = enumerated_paths()
    oracle = subprocess.run(
        [sys.executable, "-c", ORACLE, str(tree.root)],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    kernel = json.loads(oracle.stdout)
    ours = answers(make_fs(tree.root), paths)
    differences = {p: (ours[p], kernel[p]) for p in paths if ours[p] != kernel[p]}
    assert not differences, f"{len(differences)} of {len(paths)}: {list(differences.items())[:5]}"
    # Not all errors: many paths resolve, and every kind of failure is met.
    assert sum(a["open"][0] == "ok" for a in kernel.values()) > 500
    met = {a[op][1] for a in kernel.values() for op in a if a[op][0] == "err"}
    assert {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL} <= met


# -- descriptors ------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_thousand_operations_leak_no_descriptor(make_fs, tree):
    """1,000 operations, failing ones included, leave the process's open fds as they were."""
    fs = make_fs(tree.root)
    calls: list[Callable[[], object]] = [
        lambda: os.close(fs.open("c1")),
        lambda: fs.stat("dlink/sub/g"),
        lambda: fs.lstat("abs"),
        lambda: fs.listdir("rel"),
        lambda: fs.readlink("d/back"),
        lambda: fs.realpath("up/d/back/../f"),
        lambda: fs.is_dir("loop"),
        lambda: fs.open("dang"),
        lambda: fs.stat("f/x"),
        lambda: fs.readlink("f"),
        lambda: read_bounded(fs, "fifo", 1),
        lambda: read_bounded(fs, "/leak", 10),
    ]
    before = open_fds()
    for n in range(1000):
        with contextlib.suppress(OSError):
            calls[n % len(calls)]()
    assert open_fds() == before


def test_close_releases_the_root_and_operations_after_it_fail(make_fs, tree):
    """close frees the root's one fd, twice is harmless, and operations after it are ValueError."""
    before = open_fds()
    fs = make_fs(tree.root)
    assert open_fds() == before + 1
    fs.close()
    fs.close()
    assert open_fds() == before
    assert fs.closed
    with pytest.raises(ValueError, match="closed"):
        fs.stat("f")
    with RootFileSystem(str(tree.root)) as other:
        assert other.is_file("/f")
    assert other.closed


def test_an_unclosed_filesystem_warns_and_closes_its_root_when_collected(tree):
    """A RootFileSystem dropped unclosed emits a ResourceWarning and its fd is closed."""
    before = open_fds()
    fs = RootFileSystem(str(tree.root))
    with pytest.warns(ResourceWarning, match="unclosed"):
        del fs  # the last reference: CPython finalizes it here
    assert open_fds() == before


def test_the_root_is_the_directory_it_was_opened_on(make_fs, tree, tmp_path):
    """A root renamed away and replaced is still read where it was opened, as a pid's root."""
    fs = make_fs(tree.root)
    tree.root.rename(tmp_path / "moved")
    tree.root.mkdir()
    assert read(fs, "/abs") == TREE_MARKER
    assert fs.listdir("/") != []


def test_an_unopenable_root_is_an_oserror(make_fs, tree):
    """A root that does not exist, or is not a directory, raises when the FileSystem is made."""
    with pytest.raises(FileNotFoundError):
        make_fs(tree.root / "none")
    with pytest.raises(NotADirectoryError):
        make_fs(tree.root / "f")


# -- real processes ------------------------------------------------------------------


def test_the_root_of_a_child_process_on_the_host_is_the_hosts(make_fs, tree):
    """/proc/<pid>/root of a child sharing this root reads the host's files by their paths."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        fs = make_fs(f"/proc/{child.pid}/root")
        assert read(fs, str(tree.host_file)) == HOST_MARKER
        assert read(fs, str(tree.root / "leak")) == HOST_MARKER  # its root is the host's /
        assert fs.realpath(str(tree.root / "c1")) == str(tree.root / "d/sub/g")
    finally:
        child.kill()
        child.wait()


# Chroots itself (Python is loaded before, so the tree needs no files of its own) and waits.
CHROOTED = (
    "import os, sys; os.chroot(sys.argv[1]); os.chdir('/');"
    " print('ready', flush=True); sys.stdin.read()"
)


@needs_root
def test_a_chrooted_process_is_read_inside_its_root_where_plain_open_leaks(make_fs, tree):
    """Via a chrooted child's /proc/<pid>/root, open() follows a link to the host; we do not."""
    with subprocess.Popen(
        [sys.executable, "-c", CHROOTED, str(tree.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            proc_root = f"/proc/{child.pid}/root"
            assert os.path.samefile(proc_root, tree.root)
            with open(f"{proc_root}/leak", "rb") as plain:  # the measured leak
                assert plain.read() == HOST_MARKER
            fs = make_fs(proc_root)
            assert read(fs, "/leak") == TREE_MARKER
            assert read(fs, "/abs") == TREE_MARKER
            assert fs.realpath("/leak") == str(tree.host_file)
            assert fs.realpath("up/rel") == "/d/sub"
        finally:
            child.kill()
    assert read(fs, "/leak") == TREE_MARKER  # the root stays pinned after the child is gone


# -- read_bounded -----------------------------------------------------------------


def test_read_bounded_reads_up_to_the_limit_and_refuses_more(fs, tree):
    """A file of exactly the limit is read whole; one byte more raises FileTooLarge (EFBIG)."""
    size = len(TREE_MARKER)
    assert read_bounded(fs, "/abs", size) == TREE_MARKER
    with pytest.raises(FileTooLarge) as info:
        read_bounded(fs, "/abs", size - 1)
    assert info.value.errno == errno.EFBIG
    assert isinstance(info.value, OSError)
    (tree.root / "empty").touch()
    assert read_bounded(fs, "empty", 0) == b""
    with pytest.raises(ValueError, match="limit"):
        read_bounded(fs, "empty", -1)


def test_read_bounded_refuses_what_is_not_a_regular_file(fs):
    """A directory or a FIFO raises NotRegularFile, an OSError."""
    with pytest.raises(NotRegularFile, match="directory"):
        read_bounded(fs, "/dlink", 100)
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_bounded(fs, "fifo", 100)


def test_read_bounded_bounds_files_whose_size_says_nothing(make_fs):
    """A procfs file (st_size 0) longer than the limit raises; with room enough it is read."""
    fs = make_fs("/")
    with pytest.raises(FileTooLarge):
        read_bounded(fs, "/proc/self/status", 16)
    assert read_bounded(HOST, "/proc/self/status", 1 << 16).startswith(b"Name:")
