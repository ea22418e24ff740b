"""The commit: its sources in order, and git repositories read without the git binary."""

from __future__ import annotations

import pytest
from support import git

from exporter.collectors.commit import UNKNOWN, collect_commit
from exporter.collectors.git import GitError, read_head_commit


def commit_of(**kwargs):
    args = {"value": None, "env_names": (), "environ": {}, "file": None, "git_dir": None}
    args.update(kwargs)
    return collect_commit(**args)


def test_loose_ref_is_read(git_repo):
    """HEAD -> refs/heads/main as a loose ref gives the full hash git reports."""
    assert read_head_commit(git_repo) == git(git_repo, "rev-parse", "HEAD")


def test_packed_ref_is_read(git_repo):
    """A branch that lives only in packed-refs is found."""
    git(git_repo, "pack-refs", "--all", "--prune")
    assert not (git_repo / ".git/refs/heads/main").exists()
    assert read_head_commit(git_repo) == git(git_repo, "rev-parse", "HEAD")


def test_detached_head_is_read(git_repo):
    """A detached HEAD holds the hash itself."""
    first = git(git_repo, "rev-parse", "HEAD~1")
    git(git_repo, "checkout", "-q", "--detach", first)
    assert read_head_commit(git_repo) == first


def test_git_dir_itself_and_bare_repo(git_repo, tmp_path):
    """Pointing at the .git directory, or at a bare clone, works too."""
    head = git(git_repo, "rev-parse", "HEAD")
    assert read_head_commit(git_repo / ".git") == head
    git(tmp_path, "clone", "-q", "--bare", str(git_repo), "bare.git")
    assert read_head_commit(tmp_path / "bare.git") == head


def test_worktree_with_git_file(git_repo, tmp_path):
    """A linked worktree (.git is a file, refs in the common dir) reports its own HEAD."""
    first = git(git_repo, "rev-parse", "HEAD~1")
    git(git_repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), first)
    assert (tmp_path / "wt/.git").is_file()
    assert read_head_commit(tmp_path / "wt") == first
    git(git_repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "wt2"))
    git(git_repo, "pack-refs", "--all", "--prune")
    assert read_head_commit(tmp_path / "wt2") == git(git_repo, "rev-parse", "HEAD")


def test_unborn_branch_and_non_repo_fail_clearly(tmp_path):
    """A repo with no commit, or a plain directory, raises GitError with a reason."""
    git(tmp_path, "init", "-q", "-b", "main", "empty")
    with pytest.raises(GitError, match="does not point at a commit"):
        read_head_commit(tmp_path / "empty")
    with pytest.raises(GitError, match="not a git repository"):
        read_head_commit(tmp_path)


def test_git_source_is_abbreviated_prefix(git_repo):
    """From git the commit is the first 7 hex characters of the full hash."""
    commit = commit_of(git_dir=str(git_repo))
    assert commit.source == "git"
    assert len(commit.value) == 7
    assert git(git_repo, "rev-parse", "HEAD").startswith(commit.value)


def test_sources_in_order(tmp_path, git_repo):
    """value beats env, env beats file, file beats git; the first env var set wins."""
    rev = tmp_path / "REVISION"
    rev.write_text("fromfile\nsecond line\n")
    everything = {
        "value": "fromvalue",
        "env_names": ("A", "B"),
        "environ": {"A": "", "B": "fromenv"},
        "file": str(rev),
        "git_dir": str(git_repo),
    }
    assert commit_of(**everything).value == "fromvalue"
    assert commit_of(**{**everything, "value": None}).source == "env:B"
    assert commit_of(**{**everything, "value": None, "environ": {}}).value == "fromfile"
    only_git = commit_of(git_dir=str(git_repo))
    assert only_git.source == "git"
    assert commit_of().value == UNKNOWN


def test_unreadable_sources_fall_through_with_a_problem(tmp_path, git_repo):
    """A missing file is passed over to git, and the reason is kept."""
    commit = commit_of(file=str(tmp_path / "missing"), git_dir=str(git_repo))
    assert commit.source == "git"
    nothing = commit_of(file=str(tmp_path / "missing"), git_dir=str(tmp_path))
    assert nothing.value == UNKNOWN
    assert "commit.file" in nothing.problem
    assert "commit.git_dir" in nothing.problem


def test_hostile_commit_text_is_cut_to_one_printable_token():
    """Control characters are dropped and length is capped."""
    commit = commit_of(value="abc\x00\x1b[31m" + "x" * 500)
    assert commit.value.isprintable()
    assert len(commit.value) <= 128
