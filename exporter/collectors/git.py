"""Read the commit a git repository has checked out, straight from its files.

No ``git`` binary is needed: HEAD is followed through loose refs and
``packed-refs``; a detached HEAD, a ``.git`` file (worktrees, submodules) and a
worktree's ``commondir`` are understood.

Every file is read through a :class:`~exporter.filesystem.FileSystem`, so that a
target's repository is read inside its root (a ``gitdir:`` or ``commondir``
naming an absolute path names it as the target sees it), and read as hostile
input: opened with ``O_NONBLOCK``, only when a regular file, and bounded
(``MAX_REF_FILE_BYTES``, ``MAX_PACKED_REFS_BYTES``).
"""

from __future__ import annotations

import re
from pathlib import Path

from exporter.filesystem import HOST, FileSystem, read_regular

_HASH = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_SYMREF_DEPTH = 5
MAX_REF_FILE_BYTES = 64 * 1024  # HEAD, a loose ref, .git, commondir: a line each
MAX_PACKED_REFS_BYTES = 16 * 1024 * 1024  # a ref a line: some 150,000 refs and tags


class GitError(Exception):
    """The directory is not a readable git repository, or HEAD cannot be resolved."""


def read_head_commit(path: str | Path, *, fs: FileSystem = HOST) -> str:
    """Return the full hash HEAD points at in the repository or work tree at ``path``,
    read through ``fs``."""
    git_dir = find_git_dir(Path(path), fs=fs)
    common_dir = _common_dir(git_dir, fs)
    ref = "HEAD"
    for _ in range(_MAX_SYMREF_DEPTH):
        target = _read_ref(git_dir, common_dir, ref, fs)
        if target is None:
            raise GitError(f"{ref} does not point at a commit in {git_dir}")
        if target.startswith("ref:"):
            ref = target[4:].strip()
            continue
        if not _HASH.match(target):
            raise GitError(f"{ref} in {git_dir} holds {target[:50]!r}, not a commit hash")
        return target
    raise GitError(f"HEAD in {git_dir} is a chain of more than {_MAX_SYMREF_DEPTH} symbolic refs")


def find_git_dir(path: Path, *, fs: FileSystem = HOST) -> Path:
    """Return the git directory of ``path``: itself, its ``.git`` dir, or where ``.git`` points
    (looked at through ``fs``: a path as the target sees it)."""
    is_bare_or_git_dir = fs.is_file(str(path / "HEAD")) and fs.is_dir(str(path / "objects"))
    if is_bare_or_git_dir or fs.is_file(str(path / "commondir")):
        return path
    dot_git = path / ".git"
    if fs.is_dir(str(dot_git)):
        return dot_git
    if fs.is_file(str(dot_git)):
        text = _read_text(dot_git, fs)
        if not text.startswith("gitdir:"):
            raise GitError(f"{dot_git} does not start with 'gitdir:'")
        return _relative_to(path, text[len("gitdir:") :].strip(), fs)
    raise GitError(f"{path} is not a git repository (no .git, no HEAD)")


def _common_dir(git_dir: Path, fs: FileSystem) -> Path:
    commondir = git_dir / "commondir"
    if not fs.is_file(str(commondir)):
        return git_dir
    return _relative_to(git_dir, _read_text(commondir, fs).strip(), fs)


def _relative_to(base: Path, named: str, fs: FileSystem) -> Path:
    """The directory a git file names: an absolute path as it is, a relative one from
    ``base`` with its links resolved (``Path.resolve``, through ``fs``)."""
    target = Path(named)
    if target.is_absolute():
        return target
    try:
        return Path(fs.realpath(str(base / target)))
    except OSError as exc:  # a strict realpath (a process's root) refuses a missing path
        raise GitError(f"cannot resolve {base / target}: {exc.strerror or exc}") from None


def _read_ref(git_dir: Path, common_dir: Path, ref: str, fs: FileSystem) -> str | None:
    # Per-worktree refs (HEAD) live in the worktree's git dir; shared ones in the common dir.
    for base in (git_dir, common_dir):
        loose = base / ref
        if fs.is_file(str(loose)):
            return _read_text(loose, fs).strip()
    packed = common_dir / "packed-refs"
    if fs.is_file(str(packed)):
        for line in _read_text(packed, fs, MAX_PACKED_REFS_BYTES).splitlines():
            if line.startswith(("#", "^")):
                continue
            hash_, _, name = line.partition(" ")
            if name.strip() == ref:
                return hash_.strip()
    return None


def _read_text(path: Path, fs: FileSystem, limit: int = MAX_REF_FILE_BYTES) -> str:
    """The whole of the git file ``path``, at most ``limit`` bytes, as UTF-8."""
    try:
        data = read_regular(fs, str(path), limit + 1)
        if len(data) > limit:
            raise GitError(f"cannot read {path}: longer than {limit} bytes")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GitError(f"cannot read {path}: {exc}") from None
