"""Read the commit a git repository has checked out, straight from its files.

No ``git`` binary is needed: HEAD is followed through loose refs and
``packed-refs``; a detached HEAD, a ``.git`` file (worktrees, submodules) and a
worktree's ``commondir`` are understood.
"""

from __future__ import annotations

import re
from pathlib import Path

_HASH = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_SYMREF_DEPTH = 5


class GitError(Exception):
    """The directory is not a readable git repository, or HEAD cannot be resolved."""


def read_head_commit(path: str | Path) -> str:
    """Return the full hash HEAD points at in the repository or work tree at ``path``."""
    git_dir = find_git_dir(Path(path))
    common_dir = _common_dir(git_dir)
    ref = "HEAD"
    for _ in range(_MAX_SYMREF_DEPTH):
        target = _read_ref(git_dir, common_dir, ref)
        if target is None:
            raise GitError(f"{ref} does not point at a commit in {git_dir}")
        if target.startswith("ref:"):
            ref = target[4:].strip()
            continue
        if not _HASH.match(target):
            raise GitError(f"{ref} in {git_dir} holds {target[:50]!r}, not a commit hash")
        return target
    raise GitError(f"HEAD in {git_dir} is a chain of more than {_MAX_SYMREF_DEPTH} symbolic refs")


def find_git_dir(path: Path) -> Path:
    """Return the git directory of ``path``: itself, its ``.git`` dir, or where ``.git`` points."""
    is_bare_or_git_dir = (path / "HEAD").is_file() and (path / "objects").is_dir()
    if is_bare_or_git_dir or (path / "commondir").is_file():
        return path
    dot_git = path / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        text = _read_text(dot_git)
        if not text.startswith("gitdir:"):
            raise GitError(f"{dot_git} does not start with 'gitdir:'")
        target = Path(text[len("gitdir:") :].strip())
        return target if target.is_absolute() else (path / target).resolve()
    raise GitError(f"{path} is not a git repository (no .git, no HEAD)")


def _common_dir(git_dir: Path) -> Path:
    commondir = git_dir / "commondir"
    if not commondir.is_file():
        return git_dir
    target = Path(_read_text(commondir).strip())
    return target if target.is_absolute() else (git_dir / target).resolve()


def _read_ref(git_dir: Path, common_dir: Path, ref: str) -> str | None:
    # Per-worktree refs (HEAD) live in the worktree's git dir; shared ones in the common dir.
    for base in (git_dir, common_dir):
        loose = base / ref
        if loose.is_file():
            return _read_text(loose).strip()
    packed = common_dir / "packed-refs"
    if packed.is_file():
        for line in _read_text(packed).splitlines():
            if line.startswith(("#", "^")):
                continue
            hash_, _, name = line.partition(" ")
            if name.strip() == ref:
                return hash_.strip()
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GitError(f"cannot read {path}: {exc}") from None
