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

import gc
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser is imported by the load itself: start-up does not pay for it
    from exporter.advisories.osv import Advisory, Affected

MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
MAX_MEMBERS = 500_000
MAX_SKIPPED_EXAMPLES = 10
# Advisory data older than this is stale: the pages mark it, and the mixin's
# AdvisoryDataStale alert uses the same default (monitoring/settings.py).
STALE_AFTER_DAYS = 7
RELEASE_BATCH = 100  # packages freed between two GIL releases
PAUSE_EVERY_SECONDS = 0.001  # parsing between two GIL releases (each costs ~75 us)
_RECORD_SUFFIXES = (".json", ".yaml", ".yml")

Entry = tuple["Advisory", "Affected"]


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
    # A dict typed read-only: release_gradually() alone empties it, once it is replaced.
    by_package: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    advisories: int = 0
    skipped: int = 0
    skipped_examples: tuple[str, ...] = ()
    newest_modified: float | None = None
    loaded_at: float | None = None
    load_seconds: float = 0.0
    load_errors: int = 0
    last_error: str | None = None
    failed_stamps: tuple[FileStamp, ...] | None = None
    # When the failures since the last good load began: since then, that load is in force.
    failing_since: float | None = None

    @property
    def loaded(self) -> bool:
        """Whether any load has succeeded: until one has, nothing was checked."""
        return self.loaded_at is not None


EMPTY_DATABASE = AdvisoryDatabase()


def load_advisories(
    paths: Sequence[str],
    previous: AdvisoryDatabase | None = None,
    *,
    clock: Callable[[], float] = time.time,
    perf_counter: Callable[[], float] = time.perf_counter,
    load: Callable[[Sequence[str]], AdvisoryDatabase] | None = None,
) -> AdvisoryDatabase:
    """The database for ``paths``: ``previous`` when nothing changed, else loaded anew.

    ``load`` does the reading and parsing: in this thread by default, or in a
    child process (:func:`exporter.advisories.worker.load_in_child`).
    """
    if not paths:
        return EMPTY_DATABASE
    previous = previous or EMPTY_DATABASE
    stamps = stamp_files(paths)
    if (previous.loaded and stamps == previous.stamps) or stamps == previous.failed_stamps:
        return previous  # an empty folder is never loaded: it is tried once, and fails
    started = perf_counter()
    try:
        loaded = (load or load_in_this_process)(paths)
    except LoadError as exc:
        return replace(
            previous,
            load_errors=previous.load_errors + 1,
            last_error=str(exc),
            failed_stamps=stamps,
            failing_since=previous.failing_since or clock(),
        )
    return replace(
        loaded,
        stamps=stamps,
        loaded_at=clock(),
        load_seconds=perf_counter() - started,
        load_errors=previous.load_errors,
        last_error=None,
        failed_stamps=None,
        failing_since=None,
    )


def release_gradually(replaced: AdvisoryDatabase, current: AdvisoryDatabase) -> None:
    """Free a database that ``current`` replaced, a hundred packages at a time.

    Freed at once, 20,000 advisories are one deallocation of 16 ms (measured) with the GIL
    held, which every request in flight would wait for. Nothing else may use
    ``replaced`` afterwards: it is left empty. A failed load's database shares
    its packages with the one before it, which is then left alone.
    """
    if replaced.by_package is current.by_package or not isinstance(replaced.by_package, dict):
        return
    packages = replaced.by_package
    while packages:
        for _ in range(min(RELEASE_BATCH, len(packages))):
            packages.popitem()
        _let_others_run()


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


def _let_others_run() -> None:
    """Release the GIL for a moment.

    A load parses for about a second, in small steps that never block, so the
    interpreter would hand the GIL to the event loop only every switch interval
    (5 ms) and every request in flight would wait that long. A sleep of zero
    lets a waiting thread in at once, for a microsecond's cost.
    """
    time.sleep(0)


class _Builder:
    """Collects parsed records into the by-package index; the first record of an id wins."""

    def __init__(self, pause: Callable[[], None] = lambda: None) -> None:
        self._pause = pause
        self._paused_at = time.perf_counter()
        self.by_package: dict[str, list[Entry]] = {}
        self.ids: set[str] = set()
        self.skipped = 0
        self.examples: list[str] = []
        self.newest: float | None = None

    def add(self, where: str, data: bytes, *, strict: bool = False) -> None:
        """Index one record; a bad one is skipped, or fails the load when ``strict``."""
        from exporter.advisories.osv import RecordError, parse_record

        now = time.perf_counter()
        if now - self._paused_at >= PAUSE_EVERY_SECONDS:
            self._pause()
            self._paused_at = now
        try:
            record = parse_record(_decode(where, data))
        except RecordError as exc:
            if strict:
                raise LoadError(f"{where}: not an OSV record: {exc}") from None
            self.skip(where, str(exc))
            return
        if record is None or record.advisory.id in self.ids:
            return
        advisory = record.advisory
        self.ids.add(advisory.id)
        if advisory.modified is not None and (
            self.newest is None or advisory.modified > self.newest
        ):
            self.newest = advisory.modified
        for name, entries in record.affected.items():
            self.by_package.setdefault(name, []).extend((advisory, e) for e in entries)

    def skip(self, where: str, reason: str) -> None:
        """Count a record passed over, keeping the first few reasons for the log."""
        self.skipped += 1
        if len(self.examples) < MAX_SKIPPED_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def build(self) -> AdvisoryDatabase:
        """The database of every record added."""
        return AdvisoryDatabase(
            by_package={k: tuple(v) for k, v in self.by_package.items()},
            advisories=len(self.ids),
            skipped=self.skipped,
            skipped_examples=tuple(self.examples),
            newest_modified=self.newest,
        )


def load_in_this_process(paths: Sequence[str]) -> AdvisoryDatabase:
    """Read and parse every record of ``paths``; raise LoadError when the whole cannot be."""
    # Every record adds objects that live on: the cyclic GC would traverse all of them
    # again and again as they pile up (a sixth of the load, measured), and then at every full
    # collection for as long as the database is in force (33 ms with the GIL held, for
    # 20,000 advisories). They hold no cycles: keep them out of its sight (gc.freeze:
    # reference counting still frees them when a newer database replaces this one). The
    # freeze takes every object alive at that moment: a reference cycle already garbage
    # then is never collected, a small cost paid once per load.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_all(paths)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _load_all(paths: Sequence[str]) -> AdvisoryDatabase:
    builder = _Builder(pause=_let_others_run)
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
    if not builder.ids:
        # A folder or zip with no usable record checks nothing: never a clean bill.
        where = ", ".join(paths)
        skipped = f" ({builder.skipped} skipped as unusable)" if builder.skipped else ""
        raise LoadError(f"{where}: no usable PyPI advisory records{skipped}")
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
    from exporter.advisories.osv_zip import ZipError, read_members

    members = read_members(
        path,
        _RECORD_SUFFIXES,
        max_member=MAX_RECORD_BYTES,
        max_total=MAX_TOTAL_BYTES,
        max_members=MAX_MEMBERS,
    )
    try:
        for name, data in members:
            yield f"{path}:{name}", data
    except ZipError as exc:
        raise LoadError(f"{path}: {exc}") from None


def _decode(where: str, data: bytes) -> object:
    from exporter.advisories.osv import RecordError

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
