"""The advisory database: folders, files and zips; reuse, failures and hostile input."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from exporter.advisories import database as advisories_module
from exporter.advisories.database import load_advisories

DATA = Path(__file__).resolve().parent / "data" / "osv"
PYPA_RECORDS = 12  # one withdrawn, one unparseable
HANDMADE_RECORDS = 5


def as_json_zip(target: Path, *folders: Path) -> Path:
    """An OSV export zip (one <ID>.json per record at the root) of the records in folders."""
    import yaml

    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            for file in sorted(folder.iterdir()):
                if file.suffix == ".yaml":
                    data = yaml.safe_load(file.read_text())
                    archive.writestr(f"{file.stem}.json", json.dumps(data, default=str))
                elif file.suffix == ".json":
                    archive.writestr(file.name, file.read_text())
    return target


def test_a_folder_of_yaml_and_json_loads_skipping_bad_records():
    """A clone-like folder loads: the bad record is skipped and counted, the withdrawn dropped."""
    db = load_advisories([str(DATA)])
    assert db.advisories == PYPA_RECORDS + HANDMADE_RECORDS - 2
    assert db.skipped == 1
    assert "PYSEC-2021-371" in db.skipped_examples[0]
    assert "loguru" not in db.by_package
    assert {"aiohttp", "accesscontrol", "py", "ansible-core", "evil-pkg"} <= set(db.by_package)
    assert db.load_errors == 0
    assert db.loaded_at is not None
    assert db.newest_modified is not None


def test_an_osv_zip_export_loads_like_the_folder(tmp_path):
    """OSV's all.zip layout gives the same advisories as the YAML folder."""
    archive = as_json_zip(tmp_path / "all.zip", DATA / "pypa", DATA / "handmade")
    from_zip = load_advisories([str(archive)])
    from_folder = load_advisories([str(DATA)])
    assert from_zip.advisories == from_folder.advisories
    assert set(from_zip.by_package) == set(from_folder.by_package)
    assert from_zip.newest_modified == from_folder.newest_modified


def test_unchanged_files_are_not_read_again(tmp_path):
    """The same files give back the very same database object."""
    folder = tmp_path / "db"
    shutil.copytree(DATA / "handmade", folder)
    first = load_advisories([str(folder)])
    assert load_advisories([str(folder)], first) is first
    (folder / "MAL-2024-0001.json").unlink()
    second = load_advisories([str(folder)], first)
    assert second is not first
    assert "evil-pkg" not in second.by_package


def test_a_corrupt_zip_keeps_the_previous_database_and_counts_once(tmp_path):
    """An unreadable zip fails the load: the last good one stays, not retried until it changes."""
    archive = as_json_zip(tmp_path / "all.zip", DATA / "handmade")
    good = load_advisories([str(archive)])
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    failed = load_advisories([str(archive)], good)
    assert failed.by_package is good.by_package
    assert failed.load_errors == 1
    assert str(archive) in (failed.last_error or "")
    assert load_advisories([str(archive)], failed) is failed
    as_json_zip(archive, DATA / "handmade")
    os.utime(archive, ns=(1, 1))
    recovered = load_advisories([str(archive)], failed)
    assert recovered.load_errors == 1
    assert recovered.last_error is None
    assert recovered.advisories == good.advisories


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.txt", "hello", "not an OSV file"),
        ("record.json", "{not json", "not an OSV record"),
        ("record.json", '{"no": "id"}', "not an OSV record"),
        ("missing.json", None, "no such file"),
    ],
)
def test_a_named_file_that_is_not_osv_fails_the_load(tmp_path, name, content, reason):
    """A path in advisories.paths that is not an OSV record is a load error naming it."""
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    db = load_advisories([str(path)])
    assert db.load_errors == 1
    assert reason in (db.last_error or "")
    assert str(path) in (db.last_error or "")


def test_hostile_zip_members_are_bounded(tmp_path, monkeypatch):
    """Oversized members (whatever the header says), bombs and deep nesting are skipped."""
    monkeypatch.setattr(advisories_module, "MAX_RECORD_BYTES", 300_000)
    archive = tmp_path / "all.zip"
    good = (DATA / "handmade" / "MAL-2024-0001.json").read_text()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("MAL-2024-0001.json", good)
        z.writestr("BOMB-1.json", '{"id": "BOMB-1", "pad": "' + " " * 5_000_000 + '"}')
        # Deep enough for every Python's JSON decoder to give up (3.13's goes past 4,000).
        z.writestr("DEEP-1.json", "[" * 100_000 + "]" * 100_000)
    db = load_advisories([str(archive)])
    assert db.advisories == 1
    assert db.skipped == 2
    assert any("larger than" in e for e in db.skipped_examples)
    assert any("nested too deeply" in e for e in db.skipped_examples)


def test_the_total_uncompressed_size_is_bounded(tmp_path, monkeypatch):
    """A zip whose members add up past the total limit fails the load, previous kept."""
    monkeypatch.setattr(advisories_module, "MAX_TOTAL_BYTES", 2_000)
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for n in range(10):
            z.writestr(f"X-{n}.json", json.dumps({"id": f"X-{n}", "pad": "y" * 500}))
    db = load_advisories([str(archive)])
    assert db.load_errors == 1
    assert "uncompressed" in (db.last_error or "")


def test_no_paths_is_the_empty_database():
    """With no paths the feature is off: nothing is stat'ed or loaded."""
    db = load_advisories([])
    assert db.advisories == 0
    assert db.loaded_at is None


def test_a_member_whose_bytes_do_not_match_its_crc_fails_the_load(tmp_path):
    """Flipped bytes inside a member are caught by the CRC check: the whole load fails."""
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("MAL-2024-0001.json", (DATA / "handmade" / "MAL-2024-0001.json").read_text())
    data = bytearray(archive.read_bytes())
    at = data.index(b"evil-pkg")
    data[at : at + 4] = b"good"
    archive.write_bytes(bytes(data))
    db = load_advisories([str(archive)])
    assert db.load_errors == 1
    assert "CRC" in (db.last_error or "")


def test_a_header_that_understates_the_size_cannot_inflate_more(tmp_path):
    """A directory claiming 10 bytes for a large member yields a size error, never the bytes."""
    archive = tmp_path / "all.zip"
    body = json.dumps({"id": "X-1", "pad": "z" * 100_000}).encode()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X-1.json", body)
    data = bytearray(archive.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")  # uncompressed size
    archive.write_bytes(bytes(data))
    db = load_advisories([str(archive)])
    assert db.load_errors == 1
    assert "size or CRC" in (db.last_error or "")


@pytest.mark.parametrize("temporary_files", [True, False], ids=["file", "pipe"])
def test_a_child_process_loads_the_same_database(tmp_path, monkeypatch, temporary_files):
    """load_in_child gives what the in-process load does, through a file or else a pipe."""
    from exporter.advisories import worker as advisory_worker
    from exporter.advisories.database import load_in_this_process

    if not temporary_files:

        def no_temporary_file(*args, **kwargs):
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(advisory_worker.tempfile, "TemporaryFile", no_temporary_file)
    archive = as_json_zip(tmp_path / "all.zip", DATA / "pypa", DATA / "handmade")
    child = advisory_worker.load_in_child([str(archive)])
    here = load_in_this_process([str(archive)])
    assert (child.advisories, child.skipped, child.newest_modified) == (
        here.advisories,
        here.skipped,
        here.newest_modified,
    )
    assert {k: [a.id for a, _ in v] for k, v in child.by_package.items()} == {
        k: [a.id for a, _ in v] for k, v in here.by_package.items()
    }


def test_a_child_process_reports_load_errors_as_they_are(tmp_path):
    """A path the child cannot load raises the same LoadError message in the parent."""
    from exporter.advisories.database import LoadError
    from exporter.advisories.worker import load_in_child

    with pytest.raises(LoadError, match="no such file or directory"):
        load_in_child([str(tmp_path / "missing.zip")])


def test_a_replaced_database_is_released_but_a_shared_one_is_not():
    """release_gradually empties a replaced database, never one whose packages are shared."""
    from dataclasses import replace

    from exporter.advisories.database import release_gradually

    old = load_advisories([str(DATA)])
    new = load_advisories([str(DATA / "handmade")])
    failed_reload = replace(old, load_errors=1)
    release_gradually(old, failed_reload)
    assert old.by_package
    release_gradually(old, new)
    assert not old.by_package
    assert new.by_package
