"""Find the commit a deployment runs: config value, environment, a file, or a git directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.collectors.git import GitError, read_head_commit

UNKNOWN = "unknown"
ABBREV_LENGTH = 7
MAX_COMMIT_LENGTH = 128


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
) -> Commit:
    """Return the first commit found in value, env_names, file, git_dir; else ``unknown``.

    A source that is configured but unreadable is passed over and its reason
    kept in ``problem``, so the result still comes from the next source.
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
            with open(file, encoding="utf-8") as handle:
                first_line = handle.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"commit.file {file}: {exc}")
        else:
            if first_line:
                return Commit(_clean(first_line), "file")
            problems.append(f"commit.file {file}: empty")
    if git_dir:
        try:
            return Commit(read_head_commit(git_dir)[:ABBREV_LENGTH], "git")
        except GitError as exc:
            problems.append(f"commit.git_dir: {exc}")
    return Commit(UNKNOWN, "none", "; ".join(problems) or None)


def _clean(text: str) -> str:
    # A commit is one short token; anything longer or multi-line is cut, never passed on whole.
    first = text.strip().splitlines()[0] if text.strip() else UNKNOWN
    return "".join(c for c in first if c.isprintable())[:MAX_COMMIT_LENGTH] or UNKNOWN
