"""Reading an environment through a FileSystem: HOST reads as before, and nothing is read around it.

A recording FileSystem wraps HOST and logs every path it is asked for; an audit
hook (``sys.addaudithook``) sees every ``open``, ``os.listdir`` and ``os.scandir``
the process makes, so a read that bypasses the FileSystem shows up as an audited
path the wrapper did not log.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from support import FakeEnvironment, RecordingFileSystem, git, tool

from exporter.collectors.commit import MAX_COMMIT_FILE_BYTES, collect_commit
from exporter.collectors.git import read_head_commit
from exporter.collectors.installed import scan_installed
from exporter.collectors.python import collect_environment_python, find_environment_config
from exporter.filesystem import HOST, NotRegularFile, read_regular
from exporter.sources.environments import site_directories

LATER = 3600.0  # a clock this far ahead makes every scanned entry old enough to be reused


class Audit:
    """The paths this thread opened or listed, as the interpreter's audit events report them."""

    _installed = False
    recording: list[tuple[str, str]] | None = None
    thread = 0

    @classmethod
    def hook(cls, event: str, args: tuple[object, ...]) -> None:
        """Note an audited open or listing of this thread's, while recording."""
        if cls.recording is None or threading.get_ident() != cls.thread:
            return
        if event in ("open", "os.listdir", "os.scandir", "glob.glob") and args:
            where = args[0]
            if isinstance(where, (str, os.PathLike)):  # an int is an fd already open
                cls.recording.append((event, os.fsdecode(where)))

    @classmethod
    def start(cls) -> list[tuple[str, str]]:
        """Record from now on (installing the hook once): the list that fills."""
        if not cls._installed:
            sys.addaudithook(cls.hook)  # for the rest of the process; idle when not recording
            cls._installed = True
        cls.recording, cls.thread = [], threading.get_ident()
        return cls.recording

    @classmethod
    def stop(cls) -> None:
        """Stop recording."""
        cls.recording = None


def read_through(fs: RecordingFileSystem, read):
    """``read()``'s result, checking that every file it opened or listed went through ``fs``."""
    audited = Audit.start()
    try:
        result = read()
    finally:
        Audit.stop()
    opened = set(fs.paths("open"))
    listed = set(fs.paths("listdir"))
    for event, path in audited:
        assert path in (opened if event == "open" else listed), f"{event} {path} bypassed the fs"
    return result


def under(path: str, directory: Path) -> bool:
    """Whether ``path`` is ``directory`` or lies below it (lexically, as the fs was asked)."""
    return os.path.commonpath([path, str(directory)]) == str(directory)


def make_egg(path: Path, name: str, version: str) -> Path:
    """A zipped egg as bdist_egg writes it: EGG-INFO/PKG-INFO and a package."""
    text = f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as egg:
        egg.writestr("EGG-INFO/PKG-INFO", text)
        egg.writestr(f"{name}/__init__.py", "")
    return path


DIST_INFOS = [f"pkg{i}" for i in range(5)]


def build_venv(tmp_path: Path) -> tuple[Path, FakeEnvironment]:
    """A venv root with a pyvenv.cfg and a site-packages holding every kind of metadata: five
    dist-info folders, an egg-info folder and file, a zipped egg named by easy-install.pth
    and a develop install named by another .pth."""
    venv = tmp_path / "venv"
    site = FakeEnvironment(venv / "lib" / "python3.12" / "site-packages")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.12.1\n")
    for name in DIST_INFOS:
        site.install(name, "1.0")
    site.install("legacy", "0.9", kind="egg-info")
    site.install("oldthing", "0.1", kind="egg-info-file")
    make_egg(site.path / "zipped-2.0-py3.12.egg", "zipped", "2.0")
    (site.path / "easy-install.pth").write_text("import os\n./zipped-2.0-py3.12.egg\n")
    project = tmp_path / "project"
    (project / "devproj.egg-info").mkdir(parents=True)
    (project / "devproj.egg-info" / "PKG-INFO").write_text("Name: devproj\nVersion: 3.0\n")
    (site.path / "devproj.pth").write_text(f"{project}\n")
    return venv, site


EXPECTED = {
    **dict.fromkeys(DIST_INFOS, "1.0"),
    "legacy": "0.9",
    "oldthing": "0.1",
    "zipped": "2.0",
    "devproj": "3.0",
}


def test_host_is_the_os_calls(tmp_path):
    """HOST answers as the os functions do: files, links, listings, and False, not errors."""
    (tmp_path / "file").write_text("data")
    (tmp_path / "dir").mkdir()
    os.symlink("file", tmp_path / "link")
    fd = HOST.open(str(tmp_path / "link"))
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
    assert HOST.stat(str(tmp_path / "link")).st_ino == os.stat(tmp_path / "file").st_ino
    assert HOST.lstat(str(tmp_path / "link")).st_ino == os.lstat(tmp_path / "link").st_ino
    assert sorted(HOST.listdir(str(tmp_path))) == ["dir", "file", "link"]
    assert HOST.readlink(str(tmp_path / "link")) == "file"
    assert HOST.realpath(str(tmp_path / "link")) == str(tmp_path / "file")
    assert HOST.is_file(str(tmp_path / "link"))
    assert HOST.is_dir(str(tmp_path / "dir"))
    assert not HOST.is_dir(str(tmp_path / "file"))
    assert not HOST.is_file(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        HOST.stat(str(tmp_path / "missing"))


def test_reading_through_host_is_reading_as_before(tmp_path, git_repo):
    """Every collector given HOST finds what it finds by default."""
    venv, site = build_venv(tmp_path)
    paths = [str(site.path)]
    assert scan_installed(paths, fs=HOST).distributions() == EXPECTED
    assert scan_installed(paths).distributions() == EXPECTED
    assert site_directories([str(venv)], fs=HOST) == site_directories([str(venv)]) == tuple(paths)
    cfg = find_environment_config(paths, fs=HOST)
    assert cfg == find_environment_config(paths) == venv / "pyvenv.cfg"
    assert collect_environment_python(cfg, fs=HOST) == collect_environment_python(cfg)
    head = git(git_repo, "rev-parse", "HEAD")
    assert read_head_commit(git_repo, fs=HOST) == read_head_commit(git_repo) == head
    args = {"value": None, "env_names": (), "environ": {}, "file": None, "git_dir": str(git_repo)}
    assert collect_commit(**args, fs=HOST) == collect_commit(**args)


def test_the_audit_catches_a_read_that_bypasses_the_fs(tmp_path):
    """An open or a listing made around the fs fails the check, naming the path."""
    (tmp_path / "file").write_text("data")
    fs = RecordingFileSystem()
    with pytest.raises(AssertionError, match="bypassed the fs"):
        read_through(fs, lambda: (tmp_path / "file").read_text())
    with pytest.raises(AssertionError, match="bypassed the fs"):
        read_through(fs, lambda: os.scandir(tmp_path).close())
    assert read_through(fs, lambda: os.close(fs.open(str(tmp_path / "file")))) is None


def test_a_scan_reads_every_file_through_the_fs_and_nothing_outside(tmp_path):
    """A site-packages with dist-info, egg-info, .pth files and a zipped egg is read through
    the fs alone, one open per metadata file, and only below the directories given."""
    _, site = build_venv(tmp_path)
    fs = RecordingFileSystem()
    clock = lambda: time.time() + LATER  # noqa: E731
    scan = read_through(fs, lambda: scan_installed([str(site.path)], clock=clock, fs=fs))
    assert scan.distributions() == EXPECTED
    assert scan.skipped() == ()
    assert all(under(path, tmp_path) for path in fs.paths()), fs.calls
    opened = fs.paths("open")
    assert sum(p.endswith("/METADATA") for p in opened) == len(DIST_INFOS)
    assert sum(p.endswith("/PKG-INFO") for p in opened) == 2  # legacy's folder, devproj's
    assert sum(p.endswith(".egg-info") for p in opened) == 1  # oldthing's file
    assert sum(p.endswith(".egg") for p in opened) == 1  # zipped's members come from its fd
    assert sum(p.endswith(".pth") for p in opened) == 2
    assert len(opened) == len(EXPECTED) + 2  # a file a distribution (the egg's: the zip), the .pth
    assert len(opened) == len(set(opened))


def test_an_unchanged_rescan_through_the_fs_is_one_stat_an_entry(tmp_path):
    """Rescanning unchanged entries asks the fs for one stat each and opens or lists nothing."""
    _, site = build_venv(tmp_path)
    clock = lambda: time.time() + LATER  # noqa: E731
    first = scan_installed([str(site.path)], clock=clock)
    fs = RecordingFileSystem()
    again = read_through(fs, lambda: scan_installed([str(site.path)], first, clock=clock, fs=fs))
    assert again.directories_read == 0
    assert again.pth_read == 0
    assert again.distributions() == EXPECTED
    # The site directory, its two .pth files, and the two entries they name: the egg, project.
    assert [op for op, _ in fs.calls] == ["stat"] * 5
    assert len(set(fs.paths())) == 5


def test_a_venv_root_and_its_pyvenv_cfg_are_read_through_the_fs(tmp_path):
    """site_directories, find_environment_config and collect_environment_python ask the fs
    for paths in the venv alone, and open pyvenv.cfg once."""
    venv, site = build_venv(tmp_path)
    fs = RecordingFileSystem()
    directories = read_through(fs, lambda: site_directories([str(venv)], fs=fs))
    assert directories == (str(site.path),)
    fs.calls.clear()
    cfg = read_through(fs, lambda: find_environment_config(directories, fs=fs))
    assert cfg == venv / "pyvenv.cfg"
    looked_at = [site.path, site.path.parent, site.path.parent.parent, venv]  # up to the venv
    assert fs.calls == [("is_file", str(p / "pyvenv.cfg")) for p in looked_at]
    python = read_through(fs, lambda: collect_environment_python(cfg, fs=fs))
    assert python is not None
    assert python.version == "3.12.1"
    assert all(under(path, venv) for path in fs.paths()), fs.calls
    assert fs.paths("open").count(str(venv / "pyvenv.cfg")) == 1


def test_a_commit_file_and_a_worktree_are_read_through_the_fs(tmp_path, git_repo):
    """The commit file, and a linked worktree's .git file, commondir and refs, are read
    through the fs alone, below the directories given."""
    first = git(git_repo, "rev-parse", "HEAD~1")
    git(git_repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), first)
    git(git_repo, "pack-refs", "--all", "--prune")
    (tmp_path / "REVISION").write_text("fromfile\nsecond line\n")
    fs = RecordingFileSystem()
    head = read_through(fs, lambda: read_head_commit(tmp_path / "wt", fs=fs))
    assert head == first
    main = read_through(fs, lambda: read_head_commit(git_repo, fs=fs))
    assert main == git(git_repo, "rev-parse", "HEAD")
    assert any(p.endswith("packed-refs") for p in fs.paths("open"))
    args = {"value": None, "env_names": (), "environ": {}, "git_dir": str(git_repo)}
    from_file = read_through(
        fs, lambda: collect_commit(**args, file=str(tmp_path / "REVISION"), fs=fs)
    )
    assert (from_file.value, from_file.source) == ("fromfile", "file")
    assert all(under(path, tmp_path) for path in fs.paths()), fs.calls


def test_planted_fifos_and_devices_block_and_flood_no_reader(tmp_path, git_repo):
    """A FIFO or /dev/zero as pyvenv.cfg, commit file or git ref is refused at once, unread."""
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFile):
        read_regular(HOST, str(tmp_path / "fifo"), 10)
    for planted in (tmp_path / "fifo", Path("/dev/zero")):
        assert collect_environment_python(planted) is None
        commit = collect_commit(
            value=None, env_names=(), environ={}, file=str(planted), git_dir=None
        )
        assert commit.source == "none"
        assert "not a regular file" in (commit.problem or "")
    (git_repo / ".git" / "refs" / "heads" / "main").unlink()
    os.symlink("/dev/zero", git_repo / ".git" / "packed-refs")
    commit = collect_commit(value=None, env_names=(), environ={}, file=None, git_dir=str(git_repo))
    assert commit.source == "none"


def test_a_long_commit_file_gives_its_first_line_from_a_bounded_read(tmp_path):
    """A commit file of one huge line is read up to its bound, a character cut in two dropped."""
    big = tmp_path / "REVISION"
    big.write_bytes(b"a" * (MAX_COMMIT_FILE_BYTES - 1) + "é".encode() + b"x" * 10**6)
    commit = collect_commit(value=None, env_names=(), environ={}, file=str(big), git_dir=None)
    assert commit.source == "file"
    assert commit.value == "a" * 128
    (tmp_path / "crlf").write_bytes(b"abc1234\r\nnext\r\n")
    crlf = collect_commit(
        value=None, env_names=(), environ={}, file=str(tmp_path / "crlf"), git_dir=None
    )
    assert crlf.value == "abc1234"


MARKER = "host-marker-5f3a"  # in files outside the root alone: it must never be read


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "resolver"])
def test_links_out_of_a_process_root_are_read_inside_it(tmp_path, use_openat2):
    """Through RootFileSystem, absolute links to host files outside the root (METADATA, a .pth,
    pyvenv.cfg) resolve inside it: skipped when dangling there, else read there, never outside."""
    rootfs = pytest.importorskip("exporter.sources.discovery.rootfs")
    host = tmp_path / "host"  # outside the root: what a plain open of the links would read
    (host / "inside").mkdir(parents=True)
    leak = f"Metadata-Version: 2.1\nName: {MARKER}\nVersion: 6.6.6\n"
    (host / "METADATA").write_text(leak)
    (host / "inside" / "METADATA").write_text(leak)
    (host / "pyvenv.cfg").write_text(f"version = 3.99.0\nimplementation = {MARKER}\n")
    (host / "project" / f"{MARKER}.egg-info").mkdir(parents=True)
    (host / "project" / f"{MARKER}.egg-info" / "PKG-INFO").write_text(leak)
    (host / "out.pth").write_text(f"{host / 'project'}\n")
    root = tmp_path / "root"
    venv = root / "venv"
    site = FakeEnvironment(venv / "lib" / "python3.11" / "site-packages")
    site.install("good", "1.0")
    for stem, target in (("gone-1.0", host / "METADATA"), ("inside-2.0", host / "inside/METADATA")):
        (site.path / f"{stem}.dist-info").mkdir()
        os.symlink(target, site.path / f"{stem}.dist-info" / "METADATA")
    os.symlink(host / "out.pth", site.path / "out.pth")
    os.symlink(host / "pyvenv.cfg", venv / "pyvenv.cfg")
    # Inside the root, at the paths the links name as the target sees them: two of the files.
    in_root = root / host.relative_to("/")
    (in_root / "inside").mkdir(parents=True)
    (in_root / "inside" / "METADATA").write_text("Name: inside\nVersion: 2.0\n")
    (in_root / "pyvenv.cfg").write_text("version = 3.11.4\n")
    with rootfs.RootFileSystem(str(root), use_openat2=use_openat2) as fs:
        if use_openat2 and not fs.uses_openat2:
            pytest.skip("openat2 is not available here")
        (directory,) = site_directories(["/venv"], fs=fs)
        scan = scan_installed([directory], fs=fs)
        cfg = find_environment_config([directory], fs=fs)
        python = collect_environment_python(cfg, fs=fs) if cfg else None
    assert directory == "/venv/lib/python3.11/site-packages"
    assert scan.distributions() == {"good": "1.0", "inside": "2.0"}
    skipped = {s.path: s.reason for s in scan.skipped()}
    assert set(skipped) == {f"{directory}/gone-1.0.dist-info/METADATA", f"{directory}/out.pth"}
    assert all(reason.startswith("cannot read") for reason in skipped.values())
    assert cfg == Path("/venv/pyvenv.cfg")
    assert python is not None
    assert python.version == "3.11.4"
    for result in (scan, cfg, python):
        assert MARKER not in repr(result)
    # The same links read through HOST do reach the host's files: the test's own control.
    assert MARKER in repr(scan_installed([str(site.path)]).distributions())


def test_a_commit_file_and_a_gitdir_are_read_inside_a_process_root(tmp_path):
    """Through RootFileSystem a commit file linking out of the root is not read, and a .git
    file's absolute gitdir names the repository inside the root, not the host's."""
    rootfs = pytest.importorskip("exporter.sources.discovery.rootfs")
    tool("git")
    (tmp_path / "REVISION").write_text(f"{MARKER}\n")
    root = tmp_path / "root"
    (root / "repo").mkdir(parents=True)
    git(root / "repo", "init", "-q", "-b", "main")
    (root / "repo" / "f").write_text("1")
    git(root / "repo", "add", "f")
    git(root / "repo", "commit", "-q", "-m", "c1")
    (root / "app").mkdir()
    (root / "app" / ".git").write_text("gitdir: /repo/.git\n")  # as the target sees it
    os.symlink(tmp_path / "REVISION", root / "app" / "REVISION")
    with rootfs.RootFileSystem(str(root)) as fs:
        commit = collect_commit(
            value=None, env_names=(), environ={}, file="/app/REVISION", git_dir="/app", fs=fs
        )
    assert commit.source == "git"
    assert git(root / "repo", "rev-parse", "HEAD").startswith(commit.value)
    assert MARKER not in repr(commit)
