"""The offline advisory database: OSV files, folders of them, or OSV's zip exports.

``load_advisories(paths, previous)`` stats every file first and returns
``previous`` itself when no size or mtime changed, so an unchanged database
costs a walk of stats per refresh and no parsing. A load that fails (a path
that is gone, a corrupt zip, a named file that is not OSV) keeps the previous
good database in force and counts the failure; the same files are not tried
again until they change. A bad record inside a folder or zip is skipped and
counted; it never fails the load.

Hostile input is bounded: a record over ``MAX_RECORD_BYTES`` is skipped, a
zip is read for at most ``MAX_TOTAL_BYTES`` and ``MAX_MEMBERS`` members
whatever its headers claim, and nesting too deep to parse skips the record.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from exporter.collectors.osv import Advisory, Affected, RecordError, parse_record

MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
MAX_MEMBERS = 500_000
MAX_SKIPPED_EXAMPLES = 10
_RECORD_SUFFIXES = (".json", ".yaml", ".yml")

Entry = tuple[Advisory, Affected]


class LoadError(Exception):
    """A database that cannot be read as a whole; the message names the path and the reason."""


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A file's identity for change detection; size and mtime -1 when it is missing."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class AdvisoryDatabase:
    """The advisories in force, by PEP 503 package name, and the loads that led to them."""

    stamps: tuple[FileStamp, ...] = ()
    by_package: Mapping[str, tuple[Entry, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    advisories: int = 0
    skipped: int = 0
    skipped_examples: tuple[str, ...] = ()
    newest_modified: float | None = None
    loaded_at: float | None = None
    load_seconds: float = 0.0
    load_errors: int = 0
    last_error: str | None = None
    failed_stamps: tuple[FileStamp, ...] | None = None


EMPTY_DATABASE = AdvisoryDatabase()


def load_advisories(
    paths: Sequence[str],
    previous: AdvisoryDatabase | None = None,
    *,
    clock: Callable[[], float] = time.time,
    perf_counter: Callable[[], float] = time.perf_counter,
) -> AdvisoryDatabase:
    """The database for ``paths``: ``previous`` when nothing changed, else loaded anew."""
    if not paths:
        return EMPTY_DATABASE
    previous = previous or EMPTY_DATABASE
    stamps = stamp_files(paths)
    if stamps == previous.stamps or stamps == previous.failed_stamps:
        return previous
    started = perf_counter()
    try:
        loaded = _load(paths)
    except LoadError as exc:
        return replace(
            previous,
            load_errors=previous.load_errors + 1,
            last_error=str(exc),
            failed_stamps=stamps,
        )
    return replace(
        loaded,
        stamps=stamps,
        loaded_at=clock(),
        load_seconds=perf_counter() - started,
        load_errors=previous.load_errors,
        last_error=None,
        failed_stamps=None,
    )


def stamp_files(paths: Sequence[str]) -> tuple[FileStamp, ...]:
    """Size and mtime of every file the paths name or hold (missing paths stamped -1)."""
    stamps: list[FileStamp] = []
    for path in paths:
        if os.path.isdir(path):
            stamps.extend(_stamp(p) for p in _record_files(path))
        else:
            stamps.append(_stamp(path))
    return tuple(stamps)


def _stamp(path: str) -> FileStamp:
    try:
        info = os.stat(path)
    except OSError:
        return FileStamp(path, -1, -1)
    return FileStamp(path, info.st_size, info.st_mtime_ns)


def _record_files(root: str) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, .github
        found.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(_RECORD_SUFFIXES))
    return found


class _Builder:
    """Collects parsed records into the by-package index; the first record of an id wins."""

    def __init__(self) -> None:
        self.by_package: dict[str, list[Entry]] = {}
        self.ids: set[str] = set()
        self.skipped = 0
        self.examples: list[str] = []
        self.newest: float | None = None

    def add(self, where: str, data: bytes, *, strict: bool = False) -> None:
        """Index one record; a bad one is skipped, or fails the load when ``strict``."""
        try:
            advisory = parse_record(_decode(where, data))
        except RecordError as exc:
            if strict:
                raise LoadError(f"{where}: not an OSV record: {exc}") from None
            self.skip(where, str(exc))
            return
        if advisory is None or advisory.id in self.ids:
            return
        self.ids.add(advisory.id)
        if advisory.modified is not None and (
            self.newest is None or advisory.modified > self.newest
        ):
            self.newest = advisory.modified
        for name, entries in advisory.affected.items():
            self.by_package.setdefault(name, []).extend((advisory, e) for e in entries)

    def skip(self, where: str, reason: str) -> None:
        """Count a record passed over, keeping the first few reasons for the log."""
        self.skipped += 1
        if len(self.examples) < MAX_SKIPPED_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def build(self) -> AdvisoryDatabase:
        """The database of every record added."""
        return AdvisoryDatabase(
            by_package=MappingProxyType({k: tuple(v) for k, v in self.by_package.items()}),
            advisories=len(self.ids),
            skipped=self.skipped,
            skipped_examples=tuple(self.examples),
            newest_modified=self.newest,
        )


def _load(paths: Sequence[str]) -> AdvisoryDatabase:
    builder = _Builder()
    for path in paths:
        if not os.path.exists(path):
            raise LoadError(f"{path}: no such file or directory")
        if os.path.isdir(path):
            for file in _record_files(path):
                _add_file(builder, file, named=False)
        elif path.endswith(".zip"):
            for where, data in _zip_records(path):
                if data is None:
                    builder.skip(where, f"larger than {MAX_RECORD_BYTES} bytes")
                else:
                    builder.add(where, data)
        elif path.endswith(_RECORD_SUFFIXES):
            _add_file(builder, path, named=True)
        else:
            raise LoadError(f"{path}: not an OSV file (expected .json, .yaml, .yml or .zip)")
    return builder.build()


def _add_file(builder: _Builder, path: str, *, named: bool) -> None:
    """Read one record file: a named one that is not OSV fails the load, others are skipped."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        if named:
            raise LoadError(f"{path}: cannot read: {exc.strerror or exc}") from None
        builder.skip(path, f"cannot read: {exc.strerror or exc}")
        return
    if len(data) > MAX_RECORD_BYTES:
        if named:
            raise LoadError(f"{path}: larger than {MAX_RECORD_BYTES} bytes")
        builder.skip(path, f"larger than {MAX_RECORD_BYTES} bytes")
        return
    builder.add(path, data, strict=named)


def _zip_records(path: str) -> Iterator[tuple[str, bytes | None]]:
    """Each record member's name and bytes (None when over the size limit), bounded in total."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise LoadError(f"{path}: not a readable zip: {exc}") from None
    total = 0
    with archive:
        members = [m for m in archive.infolist() if m.filename.endswith(_RECORD_SUFFIXES)]
        if len(members) > MAX_MEMBERS:
            raise LoadError(f"{path}: more than {MAX_MEMBERS} records")
        for member in members:
            where = f"{path}:{member.filename}"
            if member.file_size > MAX_RECORD_BYTES:
                yield where, None
                continue
            try:
                with archive.open(member) as f:
                    data = f.read(MAX_RECORD_BYTES + 1)  # headers can lie: never trust file_size
            except (OSError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                raise LoadError(f"{where}: cannot read: {exc}") from None
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise LoadError(f"{path}: more than {MAX_TOTAL_BYTES} bytes uncompressed")
            yield where, (data if len(data) <= MAX_RECORD_BYTES else None)


def _decode(where: str, data: bytes) -> object:
    try:
        if where.endswith(".json"):
            return json.loads(data)
        import yaml  # the PyPA database's own format

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(data, Loader=loader)  # a safe loader, C or pure Python
    except RecursionError:
        raise RecordError("nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    except Exception as exc:  # yaml.YAMLError and friends: yaml is imported lazily
        raise RecordError(f"not YAML: {type(exc).__name__}") from None
