"""Scanning installed distributions: formats, names, broken metadata, the mtime cache."""

from __future__ import annotations

import importlib.metadata
import os
import sys

import pytest
from support import FakeEnvironment

from exporter.collectors.installed import (
    RACY_SECONDS,
    canonical_name,
    read_distribution,
    scan_installed,
)


def age(path, seconds=3600):
    """Set a path's mtime into the past, so that its scan may be reused."""
    past = os.stat(path).st_mtime - seconds
    os.utime(path, (past, past))


def test_dist_info_and_egg_info_are_read(fake_env):
    """dist-info folders, egg-info folders and egg-info files all count."""
    fake_env.install("Django", "4.2.1")
    fake_env.install("legacy_pkg", "0.9", kind="egg-info")
    fake_env.install("Old.Thing", "1.0", kind="egg-info-file")
    assert scan_installed([str(fake_env.path)]).distributions() == {
        "django": "4.2.1",
        "legacy-pkg": "0.9",
        "old-thing": "1.0",
    }


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("Django", "django"), ("zope.interface", "zope-interface"), ("A__B--c", "a-b-c")],
)
def test_names_are_pep503_normalised(raw, canonical):
    """Names are lower-cased and runs of -_. become one dash."""
    assert canonical_name(raw) == canonical


def test_first_directory_wins(tmp_path, fake_env):
    """A distribution in two directories reports the first, as sys.path would import it."""
    fake_env.install("six", "1.16.0")
    later = FakeEnvironment(tmp_path / "later")
    later.install("six", "1.0.0")
    later.install("only-later", "2")
    scan = scan_installed([str(fake_env.path), str(later.path), str(tmp_path / "missing")])
    assert scan.distributions() == {"six": "1.16.0", "only-later": "2"}


def test_matches_importlib_metadata_for_this_interpreter():
    """On this interpreter's sys.path the scan agrees with importlib.metadata."""
    expected = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            expected.setdefault(canonical_name(name), dist.version)
    found = scan_installed(sys.path).distributions()
    assert found == expected
    assert "aiohttp" in found


def test_name_and_version_after_a_long_header(fake_env):
    """Fields past the first read block are still found."""
    padding = "".join(f"Classifier: Topic :: {i}\n" for i in range(400))
    text = f"Metadata-Version: 2.1\n{padding}Name: late\nVersion: 3.0\n\nbody\n"
    fake_env.install_raw("late-3.0", text.encode())
    assert scan_installed([str(fake_env.path)]).distributions() == {"late": "3.0"}


def test_headers_stop_at_the_body(fake_env):
    """A 'Version:' line in the description body is not taken as the version."""
    fake_env.install_raw("nov-1", b"Metadata-Version: 2.1\nName: nov\n\nVersion: 9\n")
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {}
    assert [s.reason for s in scan.skipped()] == ["no Version"]


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (b"Metadata-Version: 2.1\nName: nover\n", "no Version"),
        (b"Metadata-Version: 2.1\nVersion: 1\n", "no Name"),
        (b"Name: bad\nVersion: 1.0\xff\xfe\n", "not valid UTF-8"),
        (b"Name: bad\nVersion: 1.0\x00\n", "control characters"),
        (b"Name: bad\nVersion: 1.0\x1b[31m\n", "control characters"),
        (b"Name: bad\nVersion: " + b"9" * 100_000 + b"\n", "longer than"),
        (b"\xff\xfe\x00garbage", "no Name"),
    ],
)
def test_broken_metadata_is_skipped_and_counted(fake_env, metadata, reason):
    """Broken metadata is passed over with its reason; the good entries still count."""
    fake_env.install("good", "1.0")
    fake_env.install_raw("bad-1", metadata)
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {"good": "1.0"}
    (skipped,) = scan.skipped()
    assert reason in skipped.reason
    assert skipped.path.endswith("METADATA")


def test_metadata_that_is_a_directory_or_missing_is_skipped(fake_env):
    """A METADATA directory, or a dist-info folder without METADATA, is skipped."""
    (fake_env.path / "dir-1.dist-info" / "METADATA").mkdir(parents=True)
    (fake_env.path / "empty-1.dist-info").mkdir()
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {}
    reasons = {s.path.split("/")[-2]: s.reason for s in scan.skipped()}
    assert reasons["dir-1.dist-info"] == "not a regular file"
    assert reasons["empty-1.dist-info"].startswith("cannot read")


def test_hostile_but_printable_values_are_kept_for_escaping(fake_env):
    """Quotes, backslashes and markup are legal characters: kept, to be escaped by renderers."""
    fake_env.install_raw("evil", b'Name: evil"<script>\nVersion: 1.0"\\<b>\n')
    assert scan_installed([str(fake_env.path)]).distributions() == {'evil"<script>': '1.0"\\<b>'}


def test_unchanged_directory_is_not_read_again(fake_env):
    """An old directory with the same mtime is reused without opening any metadata."""
    dist = fake_env.install("pkg", "1.0")
    age(fake_env.path)
    first = scan_installed([str(fake_env.path)])
    assert first.directories_read == 1
    # Rewrite in place without touching the directory: a reused scan cannot see it.
    (dist / "METADATA").write_text("Name: pkg\nVersion: 2.0\n")
    second = scan_installed([str(fake_env.path)], first)
    assert second.directories_read == 0
    assert second.distributions() == {"pkg": "1.0"}


def test_changed_directory_is_read_again(fake_env):
    """Installing into a directory changes its mtime, and the next scan reads it."""
    fake_env.install("pkg", "1.0")
    age(fake_env.path)
    first = scan_installed([str(fake_env.path)])
    fake_env.install("new", "0.1")
    second = scan_installed([str(fake_env.path)], first)
    assert second.directories_read == 1
    assert second.distributions() == {"new": "0.1", "pkg": "1.0"}


def test_recently_changed_directory_is_not_trusted(fake_env):
    """A directory changed within the racy window is read again even with the same mtime."""
    dist = fake_env.install("pkg", "1.0")
    mtime = os.stat(fake_env.path).st_mtime
    first = scan_installed([str(fake_env.path)], clock=lambda: mtime + RACY_SECONDS / 2)
    (dist / "METADATA").write_text("Name: pkg\nVersion: 2.0\n")
    os.utime(fake_env.path, (mtime, mtime))
    second = scan_installed([str(fake_env.path)], first, clock=lambda: mtime + 10)
    assert second.directories_read == 1
    assert second.distributions() == {"pkg": "2.0"}


def test_read_distribution_reads_crlf_headers(tmp_path):
    """Windows line endings are accepted."""
    path = tmp_path / "METADATA"
    path.write_bytes(b"Name: crlf\r\nVersion: 1.2\r\n\r\n")
    dist = read_distribution(str(path))
    assert (dist.name, dist.version) == ("crlf", "1.2")


def test_a_fifo_or_device_as_metadata_does_not_hang_the_scan(fake_env):
    """A METADATA that is a named pipe (it would block a plain open) is skipped at once."""
    fake_env.install("good", "1.0")
    folder = fake_env.path / "trap-1.dist-info"
    folder.mkdir()
    os.mkfifo(folder / "METADATA")
    (fake_env.path / "dev-1.dist-info").mkdir()
    os.symlink("/dev/zero", fake_env.path / "dev-1.dist-info" / "METADATA")
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {"good": "1.0"}
    assert sorted(s.reason for s in scan.skipped()) == ["not a regular file"] * 2


def test_dist_info_deleted_during_the_scan_is_skipped_not_fatal(fake_env):
    """Entries removed while a scan runs are skipped and counted; the rest are reported."""
    import shutil
    import threading

    for i in range(400):
        fake_env.install(f"p{i}", "1")
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set() and i < 400:
            shutil.rmtree(fake_env.path / f"p{i}-1.dist-info", ignore_errors=True)
            i += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        scan = scan_installed([str(fake_env.path)])
    finally:
        stop.set()
        thread.join()
    assert len(scan.distributions()) + len(scan.skipped()) <= 400
    assert all("cannot read" in s.reason for s in scan.skipped())
