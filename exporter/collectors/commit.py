"""Find the commit a deployment runs: config value, environment, a file, or a git directory.

The file and the git directory are read through a :class:`~exporter.filesystem.FileSystem`,
so that a target's are read inside its root; the file's first line only, from its first
``MAX_COMMIT_FILE_BYTES``, opened with ``O_NONBLOCK`` and only when a regular file.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.collectors.git import GitError, read_head_commit
from exporter.filesystem import HOST, FileSystem, read_regular

UNKNOWN = "unknown"
ABBREV_LENGTH = 7
MAX_COMMIT_LENGTH = 128
MAX_COMMIT_FILE_BYTES = 4096  # the first line is cut to MAX_COMMIT_LENGTH characters anyway


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit and where it came from: ``config``, ``env:NAME``, ``file``, ``git`` or ``none``."""

    value: str
    source: str
    problem: str | None = None


def collect_commit(
    *,
    value: str | None,
    env_names: Sequence[str],
    environ: Mapping[str, str],
    file: str | None,
    git_dir: str | None,
    fs: FileSystem = HOST,
) -> Commit:
    """Return the first commit found in value, env_names, file, git_dir; else ``unknown``.

    A source that is configured but unreadable is passed over and its reason
    kept in ``problem``, so the result still comes from the next source. ``file``
    and ``git_dir`` are read through ``fs``.
    """
    problems: list[str] = []
    if value and value.strip():
        return Commit(_clean(value), "config")
    for name in env_names:
        found = environ.get(name, "").strip()
        if found:
            return Commit(_clean(found), f"env:{name}")
    if file:
        try:
            first_line = _first_line(file, fs)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"commit.file {file}: {exc}")
        else:
            if first_line:
                return Commit(_clean(first_line), "file")
            problems.append(f"commit.file {file}: empty")
    if git_dir:
        try:
            return Commit(read_head_commit(git_dir, fs=fs)[:ABBREV_LENGTH], "git")
        except GitError as exc:
            problems.append(f"commit.git_dir: {exc}")
    return Commit(UNKNOWN, "none", "; ".join(problems) or None)


def _first_line(file: str, fs: FileSystem) -> str:
    """The first line of ``file``, stripped, as ``open(file).readline()`` reads it (universal
    newlines, UTF-8) from its first ``MAX_COMMIT_FILE_BYTES``."""
    data = read_regular(fs, file, MAX_COMMIT_FILE_BYTES)
    lines = data.splitlines()  # bytes split at \n, \r and \r\n alone, as readline does
    line = lines[0] if lines else b""
    if len(line) == len(data) == MAX_COMMIT_FILE_BYTES:
        # Cut by the bound: a character cut in two at the end is dropped, not an error.
        return codecs.getincrementaldecoder("utf-8")().decode(line, final=False).strip()
    return line.decode("utf-8").strip()


def _clean(text: str) -> str:
    # A commit is one short token; anything longer or multi-line is cut, never passed on whole.
    first = text.strip().splitlines()[0] if text.strip() else UNKNOWN
    return "".join(c for c in first if c.isprintable())[:MAX_COMMIT_LENGTH] or UNKNOWN
