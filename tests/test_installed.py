"""Scanning installed distributions: formats, names, broken metadata, the mtime cache."""

from __future__ import annotations

import importlib.metadata
import io
import os
import struct
import sys
import time
import zipfile

import pytest
from support import FakeEnvironment, RecordingFileSystem

from exporter.collectors.installed import (
    RACY_SECONDS,
    canonical_name,
    read_distribution,
    scan_installed,
)
from exporter.collectors.pth import MAX_PTH_BYTES, MAX_PTH_LINES


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


def test_a_directory_changed_between_its_listing_and_its_reads_is_listed_again(fake_env):
    """An upgrade that lands between the listing and the read of the old entry (listed, gone
    when read; the new one not listed) is seen as the upgrade, with nothing skipped."""
    fake_env.install("Django", "4.2.0")
    fake_env.install("six", "1.16.0")
    age(fake_env.path)  # last changed an hour ago, whatever the file system's clock grain

    def upgrade_once(operation, path):
        old = path.endswith("Django-4.2.0.dist-info/METADATA")
        if operation == "open" and old and not upgraded:
            upgraded.append(path)
            fake_env.upgrade("Django", "4.2.1")

    upgraded: list[str] = []
    fs = RecordingFileSystem(upgrade_once)
    scan = scan_installed([str(fake_env.path)], fs=fs)
    assert upgraded
    assert scan.distributions() == {"django": "4.2.1", "six": "1.16.0"}
    assert scan.skipped() == ()
    assert len(fs.paths("listdir")) == 2


def test_a_directory_that_keeps_changing_is_listed_a_bounded_number_of_times(fake_env):
    """A directory changed on every listing is read three times, then taken as last read,
    and read again by the next scan."""
    fake_env.install("six", "1.16.0")

    def change(operation, path):
        if operation == "listdir":
            mtime = 1_000_000_000 + len(fs.calls)  # a different one at each listing
            os.utime(path, (mtime, mtime))

    fs = RecordingFileSystem(change)
    scan = scan_installed([str(fake_env.path)], fs=fs)
    assert len(fs.paths("listdir")) == 3
    assert scan.distributions() == {"six": "1.16.0"}
    scan_installed([str(fake_env.path)], scan, fs=fs)
    assert len(fs.paths("listdir")) == 6


# ------------------------------------------------ eggs, .pth files, develop installs


def make_egg(path, name="eggpkg", version="1.0", *, metadata=None):
    """A zipped egg as bdist_egg writes it: EGG-INFO/PKG-INFO (deflated) and a package."""
    text = metadata if metadata is not None else f"Name: {name}\nVersion: {version}\n\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as egg:
        egg.writestr("EGG-INFO/PKG-INFO", text)
        egg.writestr(f"{name}/__init__.py", "")
    return path


def importlib_finds(paths):
    """What importlib.metadata finds over ``paths``, as the scan names it (first one wins)."""
    found = {}
    for dist in importlib.metadata.distributions(path=[str(p) for p in paths]):
        found.setdefault(canonical_name(dist.metadata["Name"]), dist.version)
    return found


def test_zipped_egg_in_easy_install_pth_is_found(fake_env):
    """A setup.py-installed egg: a zip named by a relative easy-install.pth line."""
    fake_env.install("plain", "1.0")
    make_egg(fake_env.path / "sqlparse-0.4.1-py3.11.egg", "sqlparse", "0.4.1")
    (fake_env.path / "easy-install.pth").write_text("./sqlparse-0.4.1-py3.11.egg\n")
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {"plain": "1.0", "sqlparse": "0.4.1"}
    assert scan.skipped() == ()


def test_egg_and_zip_path_entries_match_importlib_metadata(tmp_path):
    """Egg zips, egg directories and wheel zips on the path are read as importlib reads them."""
    zipped = make_egg(tmp_path / "zipped-1.0-py3.11.egg", "zipped", "1.0")
    folder = tmp_path / "folder-2.0-py3.11.egg"
    (folder / "EGG-INFO").mkdir(parents=True)
    (folder / "EGG-INFO" / "PKG-INFO").write_text("Name: folder\nVersion: 2.0\n")
    not_an_egg = tmp_path / "plain-dir"  # EGG-INFO counts only in a path entry named *.egg
    (not_an_egg / "EGG-INFO").mkdir(parents=True)
    (not_an_egg / "EGG-INFO" / "PKG-INFO").write_text("Name: nope\nVersion: 3\n")
    wheel = tmp_path / "wheely-4.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("wheely-4.0.dist-info/METADATA", "Name: wheely\nVersion: 4.0\n")
        archive.writestr("wheely/_vendor/inner-9.dist-info/METADATA", "Name: inner\nVersion: 9\n")
    paths = [zipped, folder, not_an_egg, wheel]
    found = scan_installed([str(p) for p in paths]).distributions()
    assert found == importlib_finds(paths)
    assert found == {"zipped": "1.0", "folder": "2.0", "wheely": "4.0"}


def test_develop_install_is_found_through_its_pth_line_not_its_egg_link(fake_env, tmp_path):
    """setup.py develop's easy-install.pth line finds the project; an .egg-link alone does not."""
    for name in ("devproj", "orphan"):
        info = tmp_path / name / f"{name}.egg-info"
        info.mkdir(parents=True)
        (info / "PKG-INFO").write_text(f"Name: {name}\nVersion: 1.0\n")
        (fake_env.path / f"{name}.egg-link").write_text(f"{tmp_path / name}\n.")
    (fake_env.path / "easy-install.pth").write_text(f"{tmp_path / 'devproj'}\n")
    assert scan_installed([str(fake_env.path)]).distributions() == {"devproj": "1.0"}


def test_pth_lines_are_relative_to_the_pth_file_and_missing_ones_ignored(
    fake_env, tmp_path, monkeypatch
):
    """Relative lines start at the .pth's directory, not the working one; missing paths add none."""
    extra = FakeEnvironment(tmp_path / "extra")
    extra.install("extra-pkg", "0.7")
    monkeypatch.chdir(extra.path)  # were lines taken from here, "missing" below would not be
    (fake_env.path / "a.pth").write_text(
        "# comment\n\n../extra\n../missing\n/no/such/dir\nsqlparse.egg\n"
    )
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {"extra-pkg": "0.7"}
    assert scan.skipped() == ()
    assert [d.path for d in scan.directories] == [str(fake_env.path), str(extra.path)]


def test_import_lines_in_a_pth_are_never_run(fake_env, tmp_path):
    """An 'import' line is neither executed nor taken as a path; the lines after it still count."""
    marker = tmp_path / "ran"
    extra = FakeEnvironment(tmp_path / "extra")
    extra.install("after-import", "1")
    (fake_env.path / "hook.pth").write_text(
        f"import os; os.mkdir({str(marker)!r})\n"
        f"import\tos; os.mkdir({str(marker)!r})\n"
        f"{extra.path}\n"
    )
    scan = scan_installed([str(fake_env.path)])
    assert not marker.exists()
    assert scan.distributions() == {"after-import": "1"}
    assert len(scan.directories) == 2


def test_pth_paths_come_right_after_their_site_directory_and_once(fake_env, tmp_path):
    """Named paths follow their site directory (first wins); a path given again is not rescanned."""
    named = FakeEnvironment(tmp_path / "named")
    named.install("six", "2.0")
    later = FakeEnvironment(tmp_path / "later")
    later.install("six", "1.0")
    (fake_env.path / "x.pth").write_text(f"{named.path}\n{named.path}\n")
    scan = scan_installed([str(fake_env.path), str(later.path), str(named.path)])
    assert scan.distributions() == {"six": "2.0"}
    assert [d.path for d in scan.directories] == [
        str(p) for p in (fake_env.path, named.path, later.path)
    ]


def test_pth_in_a_directory_not_named_as_a_site_directory_is_not_read(tmp_path):
    """Only site-packages and dist-packages have their .pth files read, as site.py does."""
    named = FakeEnvironment(tmp_path / "named")
    named.install("named", "1")
    plain = FakeEnvironment(tmp_path / "lib")
    (plain.path / "x.pth").write_text(f"{named.path}\n")
    debian = FakeEnvironment(tmp_path / "dist-packages")
    (debian.path / "x.pth").write_text(f"{named.path}\n")
    assert scan_installed([str(plain.path)]).distributions() == {}
    assert scan_installed([str(debian.path)]).distributions() == {"named": "1"}


def test_vendored_metadata_inside_a_package_is_not_found(fake_env):
    """setuptools/_vendor and pkg_resources/_vendor dist-infos are not installed distributions."""
    fake_env.install("setuptools", "80.0")
    for vendor in ("setuptools/_vendor", "pkg_resources/_vendor", "pkg/_vendor/deeper"):
        FakeEnvironment(fake_env.path / vendor).install("packaging", "24.0")
    assert scan_installed([str(fake_env.path)]).distributions() == {"setuptools": "80.0"}
    assert importlib_finds([fake_env.path]) == {"setuptools": "80.0"}


def zip_bytes():
    """A valid egg's bytes, for breaking."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as egg:
        egg.writestr("EGG-INFO/PKG-INFO", "Name: broken\nVersion: 1\n")
    return buffer.getvalue()


def patched(data, at, value):
    """``data`` with ``value`` written at offset ``at``."""
    return data[:at] + value + data[at + len(value) :]


def end_record(data):
    """The offset of a zip's end-of-central-directory record."""
    return data.rindex(b"PK\x05\x06")


def unsupported_compression(data):
    """The egg with its member's compression method set to 99 in the central directory."""
    return patched(data, data.rindex(b"PK\x01\x02") + 10, struct.pack("<H", 99))


def huge_directory(data):
    """The egg's end record claiming a 64 MiB central directory."""
    return patched(data, end_record(data) + 12, struct.pack("<L", 64 << 20))


def zip64_locator(data):
    """The egg with a zip64 end locator before its end record."""
    at = end_record(data)
    return data[:at] + b"PK\x06\x07" + bytes(16) + data[at:]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda data: b"not a zip at all", "not a zip file"),
        (lambda data: data[:30], "not a zip file"),
        (lambda data: data.replace(b"PK\x01\x02", b"XX\x01\x02"), "not a readable zip"),
        (lambda data: patched(data, end_record(data) + 16, b"\xff\xff\xff\x7f"), "cannot read"),
        (unsupported_compression, "cannot read"),
        (huge_directory, "central directory larger than"),
        (zip64_locator, "zip64"),
        (
            lambda data: data.replace(b"EGG-INFO/PKG-INFO", b"EGG-INFO/OTHER-AA"),
            "not in the archive",
        ),
    ],
)
def test_broken_zipped_egg_is_one_skipped_entry(fake_env, make, reason):
    """A broken egg named in easy-install.pth is skipped with its reason, once per change."""
    fake_env.install("good", "1.0")
    egg = fake_env.path / "broken-1-py3.11.egg"
    egg.write_bytes(make(zip_bytes()))
    (fake_env.path / "easy-install.pth").write_text(f"./{egg.name}\n")
    later = time.time() + 10
    scan = scan_installed([str(fake_env.path)], clock=lambda: later)
    assert scan.distributions() == {"good": "1.0"}
    (skipped,) = scan.skipped()
    assert reason in skipped.reason
    assert skipped.path.startswith(str(egg))
    again = scan_installed([str(fake_env.path)], scan, clock=lambda: later)
    assert (again.directories_read, again.skipped()) == (0, (skipped,))  # a stat, not a reread


def test_an_egg_that_is_a_fifo_does_not_hang_the_scan(fake_env):
    """A named pipe planted as an egg (a plain open would block) is skipped at once."""
    os.mkfifo(fake_env.path / "trap-1.egg")
    (fake_env.path / "easy-install.pth").write_text("./trap-1.egg\n")
    (skipped,) = scan_installed([str(fake_env.path)]).skipped()
    assert skipped.reason == "not a regular file"


def test_a_file_on_the_path_that_is_no_zip_is_passed_over_as_importlib_does(tmp_path):
    """A non-zip file not named as an egg is no distribution and no skipped entry."""
    (tmp_path / "notes.txt").write_text("hello\n")
    scan = scan_installed([str(tmp_path / "notes.txt")])
    assert (scan.distributions(), scan.skipped()) == ({}, ())
    assert importlib_finds([tmp_path / "notes.txt"]) == {}


@pytest.mark.parametrize(
    ("plant", "reason"),
    [
        (lambda path: os.mkfifo(path), "not a regular file"),
        (lambda path: path.mkdir(), "not a regular file"),
        (lambda path: path.write_bytes(b"/tmp/\xff\xfe\n"), "not valid UTF-8"),
        (lambda path: os.symlink("/dev/zero", path), "not a regular file"),
        (lambda path: os.symlink(path.with_name("gone"), path), "cannot read"),
    ],
)
def test_an_unreadable_pth_is_one_skipped_entry(fake_env, plant, reason):
    """A .pth that is a FIFO, a directory, a device, dangling or not UTF-8 is skipped, not fatal."""
    fake_env.install("good", "1.0")
    plant(fake_env.path / "bad.pth")
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {"good": "1.0"}
    (skipped,) = scan.skipped()
    assert reason in skipped.reason
    assert skipped.path == str(fake_env.path / "bad.pth")


def test_pth_reads_are_bounded_in_bytes_and_lines(fake_env, tmp_path):
    """Past MAX_PTH_LINES lines or MAX_PTH_BYTES bytes a .pth is not read: one skipped entry."""
    first, last = FakeEnvironment(tmp_path / "first"), FakeEnvironment(tmp_path / "last")
    first.install("first", "1")
    last.install("last", "1")
    (fake_env.path / "lines.pth").write_text(
        f"{first.path}\n" + "#\n" * MAX_PTH_LINES + f"{last.path}\n"
    )
    (fake_env.path / "bytes.pth").write_text(
        f"{first.path}\n" + "#" * MAX_PTH_BYTES + f"\n{last.path}\n"
    )
    scan = scan_installed([str(fake_env.path)])
    assert scan.distributions() == {"first": "1"}
    assert sorted(s.reason.split(":")[0] for s in scan.skipped()) == [
        f"longer than {MAX_PTH_BYTES} bytes",
        f"more than {MAX_PTH_LINES} lines",
    ]


def test_unchanged_eggs_and_pth_files_are_not_read_again(fake_env):
    """An old site directory, egg and .pth cost a stat each on a rescan; a rewritten egg is read."""
    egg = make_egg(fake_env.path / "eggpkg-1.0-py3.11.egg")
    (fake_env.path / "easy-install.pth").write_text(f"./{egg.name}\n")
    for path in (egg, fake_env.path / "easy-install.pth", fake_env.path):
        age(path)
    first = scan_installed([str(fake_env.path)])
    assert (first.directories_read, first.pth_read) == (2, 1)
    second = scan_installed([str(fake_env.path)], first)
    assert (second.directories_read, second.pth_read) == (0, 0)
    assert second.distributions() == {"eggpkg": "1.0"}
    make_egg(egg, version="1.1")  # an upgrade in place: the egg's mtime changes
    third = scan_installed([str(fake_env.path)], second)
    assert (third.directories_read, third.pth_read) == (1, 0)
    assert third.distributions() == {"eggpkg": "1.1"}


def test_pth_rewritten_in_place_is_read_again(fake_env, tmp_path):
    """easy_install rewrites easy-install.pth in place (no directory mtime change): still seen."""
    one, two = FakeEnvironment(tmp_path / "one"), FakeEnvironment(tmp_path / "two")
    one.install("one", "1")
    two.install("two", "2")
    pth = fake_env.path / "easy-install.pth"
    pth.write_text(f"{one.path}\n")
    for path in (pth, fake_env.path, one.path, two.path):
        age(path)
    first = scan_installed([str(fake_env.path)])
    directory_mtime = os.stat(fake_env.path).st_mtime_ns
    pth.write_text(f"{one.path}\n{two.path}\n")
    age(pth, 1800)
    assert os.stat(fake_env.path).st_mtime_ns == directory_mtime
    second = scan_installed([str(fake_env.path)], first)
    assert (second.directories_read, second.pth_read) == (1, 1)  # the .pth, and "two" first seen
    assert second.distributions() == {"one": "1", "two": "2"}
