"""Installed distributions, read cheaply from the metadata ``importlib.metadata`` would find.

Each path entry is searched as ``importlib.metadata`` searches it: a directory's
top-level ``*.dist-info`` and ``*.egg-info`` entries (and its ``EGG-INFO`` when
it is an ``.egg`` directory); a zip file's, the same way (a zipped egg, see
eggs.py). A site directory's ``.pth`` files add the paths their path lines name,
right after it, as site.py adds them to ``sys.path`` (see pth.py): this finds
eggs named in ``easy-install.pth`` and develop installs, whose project directory
``setup.py develop`` names there. Its ``.egg-link`` file is not read, as
``importlib.metadata`` does not read it either. When the paths are an
interpreter's ``sys.path``, site.py has added those paths already: a path given
twice is scanned once, where it first appears.

importlib.metadata parses every METADATA file whole (twice, for name and
version); here only the header lines up to ``Version`` are read, which is what
makes a refresh of thousands of distributions cost milliseconds.

A path entry whose mtime has not changed since the last scan is not read again:
installing, upgrading or removing a distribution adds or renames an entry in
it, which changes its mtime (a zip is rewritten whole). A ``.pth`` file is
stat'ed on every scan as well, since easy_install rewrites one in place without
changing its directory's mtime. An entry changed less than ``RACY_SECONDS``
before it was scanned is read again next time, since a change within the
file system's timestamp granularity would otherwise go unseen. A directory whose
mtime changed while it was read (a pip install meanwhile) is listed again, so that
a scan does not report an entry removed before its read as skipped, nor miss the
one that replaced it.

Every file is read through a :class:`~exporter.filesystem.FileSystem` (``fs``,
the host's own by default): given a process's root, the paths are as the process
sees them and nothing outside its root is read. Paths in the results (skipped
entries, ``.pth`` paths) are as the target sees them too.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter.collectors.eggs import (
    ArchiveError,
    NotAZip,
    is_egg,
    metadata_members,
    open_archive,
)
from exporter.collectors.packages import PackageInfo, licence_stretch, requires_stretch
from exporter.collectors.pth import read_pth
from exporter.filesystem import HOST, FileSystem

if TYPE_CHECKING:
    import zipfile

RACY_SECONDS = 2.0
# A directory that changed while it was read (pip installing or removing meanwhile) may
# have been read half before and half after: an entry listed and gone before its read, a
# new one not listed. Its mtime after the reads tells; a changed one is listed again, at
# most this many times (one that keeps changing is taken as last read: it stays racy, so
# the next refresh lists it again).
_RELISTS = 2
MAX_NAME_LENGTH = 200
MAX_VERSION_LENGTH = 200
_HEAD_BYTES = 4096  # most headers end within it, classifiers included
MAX_HEADER_BYTES = 256 * 1024
_GC_PAUSE_ENTRIES = 64  # a directory with more entries is scanned with the cyclic GC paused
# Where site.py reads .pth files: the site directories, named so on every platform.
SITE_DIRECTORY_NAMES = frozenset({"site-packages", "dist-packages"})
_NORMALIZE = re.compile(r"[-_.]+")
# The top every build backend writes: Metadata-Version, Name and Version, in this order,
# each value printable ASCII with no blank around it and within its length limit. A header
# that starts so is read by _common_distribution, the same as _distribution reads it (a
# property test holds them equal) with fewer searches; any other goes the general way.
_COMMON_TOP = re.compile(
    rb"Metadata-Version: [0-9.]{1,10}\n"
    rb"Name: ([!-~](?:[ -~]{0,%d}[!-~])?)\n"
    rb"Version: ([!-~](?:[ -~]{0,%d}[!-~])?)\n" % (MAX_NAME_LENGTH - 2, MAX_VERSION_LENGTH - 2)
).match


@dataclass(frozen=True, slots=True)
class Distribution:
    """One installed distribution: its canonical (PEP 503) name, version and what an SBOM
    says of it (its name as written, its licence)."""

    name: str
    version: str
    info: PackageInfo | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A metadata entry that was passed over, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class DirectoryScan:
    """What one path entry (a directory or a zip) held when it was scanned, and whether
    that can be reused; ``pth_names`` are a site directory's ``.pth`` files, sorted."""

    path: str
    mtime_ns: int
    reusable: bool
    distributions: tuple[Distribution, ...]
    skipped: tuple[Skipped, ...]
    pth_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PthScan:
    """The paths one ``.pth`` file named when it was read, and whether that can be reused."""

    path: str
    mtime_ns: int
    reusable: bool
    paths: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True, slots=True)
class InstalledScan:
    """The scan of every path entry, in search order; the input of the next scan.

    ``directories_read`` counts the path entries listed or opened, ``pth_read``
    the ``.pth`` files read; both are 0 when nothing changed.
    """

    directories: tuple[DirectoryScan, ...]
    directories_read: int
    pth_files: tuple[PthScan, ...] = field(default=())
    pth_read: int = 0

    def distributions(self) -> dict[str, str]:
        """Name -> version; a name in several directories takes the first, as on sys.path."""
        return {name: dist.version for name, dist in self.winners().items()}

    def winners(self) -> dict[str, Distribution]:
        """Name -> the distribution published for it: the first, as on sys.path."""
        found: dict[str, Distribution] = {}
        for directory in self.directories:
            for dist in directory.distributions:
                found.setdefault(dist.name, dist)
        return found

    def skipped(self) -> tuple[Skipped, ...]:
        """Every entry passed over, over all directories and ``.pth`` files."""
        found = [s for d in self.directories for s in d.skipped]
        found.extend(s for p in self.pth_files for s in p.skipped)
        return tuple(found)


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of ``-_.`` become one ``-``."""
    lowered = name.lower()  # lower() makes no "-", "_" or "." and removes none
    if "_" in lowered or "." in lowered or "--" in lowered:
        return _NORMALIZE.sub("-", lowered)
    return lowered  # already canonical: most names are


def scan_installed(
    paths: Sequence[str],
    previous: InstalledScan | None = None,
    *,
    clock: Callable[[], float] = time.time,
    fs: FileSystem = HOST,
) -> InstalledScan:
    """Scan ``paths`` for distributions, reusing ``previous`` for unchanged entries.

    Each given site directory's ``.pth`` files add the paths they name right
    after it (the paths they add add nothing more, as with site.py). Every file
    is read through ``fs``; ``previous`` must come from a scan through the same
    file system (an entry is reused on its path and mtime alone).
    """
    if previous is not None and not previous.pth_files and _unchanged(paths, previous, fs):
        if previous.directories_read == 0:
            return previous
        return InstalledScan(previous.directories, 0)
    scanner = _Scanner(previous, clock, fs)
    for path in paths:
        scan = scanner.entry(os.path.abspath(path or os.curdir))
        if scan is not None and scan.pth_names:
            for name in scan.pth_names:
                for named in scanner.pth(f"{scan.path}{os.sep}{name}").paths:
                    scanner.entry(named)
    return InstalledScan(
        directories=tuple(scanner.directories),
        directories_read=scanner.read,
        pth_files=tuple(scanner.pth_files),
        pth_read=scanner.pth_read,
    )


def _unchanged(paths: Sequence[str], previous: InstalledScan, fs: FileSystem) -> bool:
    """Whether ``paths`` are the directories ``previous`` found, one each and in order (so
    each is absolute and normalised already, as a scan records them), every one reusable,
    without ``.pth`` files, and with the same mtime: then this scan is ``previous``'s."""
    if len(paths) != len(previous.directories):
        return False
    stat_ = fs.stat
    for path, before in zip(paths, previous.directories, strict=True):
        if path != before.path or not before.reusable or before.pth_names:
            return False
        try:
            if stat_(path).st_mtime_ns != before.mtime_ns:
                return False
        except (OSError, ValueError):
            return False
    return True


class _Scanner:
    """One scan's state: what the previous scan found, what this one has seen so far."""

    def __init__(
        self, previous: InstalledScan | None, clock: Callable[[], float], fs: FileSystem
    ) -> None:
        self.fs = fs
        self.stat = fs.stat  # bound once: an unchanged entry costs this call and nothing more
        self.earlier = {d.path: d for d in previous.directories} if previous else {}
        self.earlier_pth = {p.path: p for p in previous.pth_files} if previous else {}
        self.clock = clock
        self.seen: set[str] = set()
        self.directories: list[DirectoryScan] = []
        self.pth_files: list[PthScan] = []
        self.read = 0
        self.pth_read = 0

    def entry(self, path: str) -> DirectoryScan | None:
        """Scan one path entry once (the first time it appears), reused when unchanged."""
        if path in self.seen:
            return None
        self.seen.add(path)
        try:
            info = self.stat(path)
        except (OSError, ValueError):
            return None  # sys.path names zip files and folders that need not exist
        before = self.earlier.get(path)
        if before is not None and before.reusable and before.mtime_ns == info.st_mtime_ns:
            self.directories.append(before)
            return before
        scanned_at = self.clock()
        if stat.S_ISDIR(info.st_mode):
            scan = _scan_directory(path, info.st_mtime_ns, scanned_at, self.fs, self.clock)
        elif stat.S_ISREG(info.st_mode) or is_egg(path):
            scan = _scan_archive(path, info.st_mtime_ns, scanned_at, self.fs)
        else:
            return None
        if scan is not None:
            self.directories.append(scan)
            self.read += 1
        return scan

    def pth(self, path: str) -> PthScan:
        """Read one ``.pth`` file, or reuse its last reading when its mtime is unchanged."""
        try:
            mtime_ns = self.stat(path).st_mtime_ns
        except OSError as exc:
            mtime_ns = -1
            reason = f"cannot read: {exc.strerror or exc}"
            scan = PthScan(path, mtime_ns, False, (), (Skipped(path, reason),))
        else:
            before = self.earlier_pth.get(path)
            if before is not None and before.reusable and before.mtime_ns == mtime_ns:
                scan = before
            else:
                scanned_at = self.clock()
                lines = read_pth(path, fs=self.fs)
                self.pth_read += 1
                reusable = not lines.retry and scanned_at - mtime_ns / 1e9 > RACY_SECONDS
                skipped = (Skipped(path, lines.problem),) if lines.problem else ()
                scan = PthScan(path, mtime_ns, reusable, lines.paths, skipped)
        self.pth_files.append(scan)
        return scan


def _scan_directory(
    path: str, mtime_ns: int, scanned_at: float, fs: FileSystem, clock: Callable[[], float]
) -> DirectoryScan | None:
    for _ in range(_RELISTS + 1):
        try:
            with _Listing(path, fs) as listing:
                scan = _scan_listing(path, listing, mtime_ns, scanned_at, fs)
        except (NotADirectoryError, FileNotFoundError):
            return None
        except OSError as exc:
            reason = f"cannot list: {exc}"
            return DirectoryScan(path, mtime_ns, False, (), (Skipped(path, reason),))
        try:
            now = fs.stat(path).st_mtime_ns
        except (OSError, ValueError):
            return scan  # gone meanwhile: the next scan's stat of it finds that
        if now == mtime_ns:
            return scan
        mtime_ns, scanned_at = now, clock()
    return scan


class _Listing:
    """A directory's names, sorted, and how to open a file in it: on the host, relative to
    the directory, opened once (the kernel then walks two names per file, not the whole
    path: 7% of a read of the header, measured; and the names and files are of one
    directory, even if its path is replaced meanwhile); elsewhere, by the file system's
    ``open`` of the whole path."""

    def __init__(self, path: str, fs: FileSystem) -> None:
        self.fd = -1
        if fs is HOST:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                self.names = sorted(os.listdir(self.fd))
            except BaseException:
                os.close(self.fd)
                raise
            self.prefix = ""
            self.open: Callable[[str, int], int] | None = None  # os.open(name, dir_fd=fd)
        else:
            self.names = sorted(fs.listdir(path))
            self.prefix = f"{path}{os.sep}"
            self.open = fs.open

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def _scan_listing(
    path: str, listing: _Listing, mtime_ns: int, scanned_at: float, fs: FileSystem
) -> DirectoryScan:
    names = listing.names
    site = os.path.basename(path) in SITE_DIRECTORY_NAMES
    egg = is_egg(path)
    dists: list[Distribution] = []
    skipped: list[Skipped] = []
    pth_names: list[str] = []
    read, open_, prefix, dir_fd = _read_metadata, listing.open, listing.prefix, listing.fd
    # Thousands of objects made at once, all kept: the cyclic collector would walk them
    # again and again and find nothing to free (none of them is in a cycle). Paused here
    # (when it was on and take_host has not paused it already, as it does for a host).
    pause = len(names) > _GC_PAUSE_ENTRIES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        for name in names:
            # importlib.metadata matches these suffixes in any case: the usual spelling
            # first, then the name without a dot (an import package: half of every listing),
            # and lower() for the rest only.
            if name.endswith(".dist-info"):
                metadata = f"{name}{os.sep}METADATA"
            elif "." not in name:
                if not egg or name.lower() != "egg-info":
                    continue
                metadata = f"{name}{os.sep}PKG-INFO"
            else:
                low = name.lower()
                if low.endswith(".dist-info"):
                    metadata = f"{name}{os.sep}METADATA"
                elif low.endswith(".egg-info"):
                    entry = os.path.join(path, name)
                    metadata = os.path.join(name, "PKG-INFO") if fs.is_dir(entry) else name
                elif site and name.endswith(".pth"):
                    pth_names.append(name)
                    continue
                else:
                    continue
            try:
                dists.append(read(prefix + metadata, open_, dir_fd))
            except MetadataError as exc:
                skipped.append(Skipped(f"{path}{os.sep}{metadata}", str(exc)))
    finally:
        if pause:
            gc.enable()
    reusable = scanned_at - mtime_ns / 1e9 > RACY_SECONDS
    return DirectoryScan(path, mtime_ns, reusable, tuple(dists), tuple(skipped), tuple(pth_names))


def _scan_archive(path: str, mtime_ns: int, scanned_at: float, fs: FileSystem) -> DirectoryScan:
    """A zip path entry's distributions; a broken egg is one Skipped entry."""
    dists: list[Distribution] = []
    skipped: list[Skipped] = []
    reusable = scanned_at - mtime_ns / 1e9 > RACY_SECONDS
    try:
        with open_archive(path, fs=fs) as archive:
            for member in metadata_members(archive.namelist(), is_egg(path)):
                where = f"{path}{os.sep}{member}"
                try:
                    dists.append(_read_member(archive, member))
                except MetadataError as exc:
                    skipped.append(Skipped(where, str(exc)))
    except NotAZip:
        # importlib.metadata passes over a file that is no zip, silently; so does the scan,
        # unless the file is named as an egg. Either way the next scan costs a stat.
        skipped = [Skipped(path, "not a zip file")] if is_egg(path) else []
    except ArchiveError as exc:
        skipped = [Skipped(path, str(exc))]
        reusable = reusable and not exc.retry
    return DirectoryScan(path, mtime_ns, reusable, tuple(dists), tuple(skipped))


def _read_member(archive: zipfile.ZipFile, member: str) -> Distribution:
    """``read_distribution`` for a zip member: the header only, bounded."""
    try:
        with archive.open(member) as file:
            header = _header_of(file.read)
    except KeyError:
        raise MetadataError("cannot read: not in the archive") from None
    except Exception as exc:  # zipfile raises many kinds on a hostile member
        raise MetadataError(f"cannot read: {exc}") from None
    return _distribution(header)


class MetadataError(Exception):
    """A metadata file that cannot give a usable name and version."""


def read_distribution(metadata_path: str, *, fs: FileSystem = HOST) -> Distribution:
    """Read ``Name`` and ``Version`` from the header of a METADATA or PKG-INFO file,
    opened through ``fs``."""
    return _read_metadata(metadata_path, None if fs is HOST else fs.open)


# O_NONBLOCK: a FIFO or a device planted as METADATA must not block the refresh; O_NOCTTY:
# a terminal planted so must not become the exporter's.
_METADATA_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _read_metadata(
    metadata_path: str, open_: Callable[[str, int], int] | None, dir_fd: int = -1
) -> Distribution:
    """``read_distribution`` with the file system's ``open``; None: the host's, ``os.open``,
    relative to ``dir_fd`` when it is one (a keyword that ``functools.partial`` would
    make cost half of what it saves, measured).

    The first read comes before the check that the file is a regular one, to spare that
    ``fstat`` on nearly every file: opened non-blocking, a FIFO or device gives at most
    those 4 KiB at once, and a header it gives whole that starts as build backends write
    it is what the same bytes in a file give. Nothing more is read, and no reason is
    given, before ``fstat`` says it is one.
    """
    try:
        if open_ is not None:
            fd = open_(metadata_path, _METADATA_FLAGS)
        elif dir_fd >= 0:
            fd = os.open(metadata_path, _METADATA_FLAGS, dir_fd=dir_fd)
        else:
            fd = os.open(metadata_path, _METADATA_FLAGS)
        try:
            try:
                head = os.read(fd, _HEAD_BYTES)
            except OSError:
                _require_regular(fd)  # a directory says so, not "Is a directory"
                raise
            top = _COMMON_TOP(head)
            if top is not None:
                version_end = top.end() - 1  # the newline that ends the Version line
                end = head.find(b"\n\n", version_end)
                if end >= 0:
                    return _common_distribution(head, top, version_end, end)
            _require_regular(fd)
            end = _fast_header_end(head)
            if end >= 0:
                header = head[:end]
            else:
                header = _header_block(_read_rest(head, functools.partial(os.read, fd)))
        finally:
            os.close(fd)
    except OSError as exc:
        raise MetadataError(f"cannot read: {exc.strerror or exc}") from None
    return _distribution(header)


def _require_regular(fd: int) -> None:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise MetadataError("not a regular file")


def _common_distribution(head: bytes, top: re.Match[bytes], start: int, end: int) -> Distribution:
    """The distribution of a header that starts with ``_COMMON_TOP`` (matched: ``top``) and
    ends at ``end`` in ``head``; ``start`` is where its Version line ends. The values are
    valid as matched; the licence and requirements are searched for after them only."""
    raw_name, raw_version = top.groups()
    return _made(
        raw_name.decode("ascii"),
        raw_version.decode("ascii"),
        licence_stretch(head, start, end),
        requires_stretch(head, start, end),
    )


def _header_of(read: Callable[[int], bytes]) -> bytes:
    """The header block of a metadata file, from ``read(size)``: what ``_header_block`` makes
    of ``_read_header``'s bytes, with one search for the blank line when the first line ends
    in LF and the blank line is in the first read (nearly always)."""
    head = read(_HEAD_BYTES)
    end = _fast_header_end(head)
    if end >= 0:
        return head[:end]
    return _header_block(_read_rest(head, read))


def _fast_header_end(head: bytes) -> int:
    """Where the header of ``head`` (a first read) ends, when its first line ends in LF and
    its blank line is in it (nearly always); else -1."""
    newline = head.find(b"\n")
    if newline >= 0 and head.find(b"\r", 0, newline) < 0:
        return head.find(b"\n\n")
    return -1


def _read_header(read: Callable[[int], bytes]) -> bytes:
    """The start of a metadata file, through its header's blank line (or about
    ``MAX_HEADER_BYTES``), from ``read(size)``."""
    return _read_rest(read(_HEAD_BYTES), read)


def _read_rest(head: bytes, read: Callable[[int], bytes]) -> bytes:
    """``head``, the first read, and the rest of the header after it when it goes on."""
    if len(head) == _HEAD_BYTES and b"\n\n" not in head and b"\n\r\n" not in head:
        # The header goes on (classifiers): read on to its blank line, bounded.
        parts = [head]
        size = len(head)
        while size < MAX_HEADER_BYTES and (chunk := read(16384)):
            parts.append(chunk)
            size += len(chunk)
            if b"\n\n" in parts[-2][-1:] + chunk:  # a blank line, maybe across reads
                break
        head = b"".join(parts)
    return head


def _distribution(block: bytes) -> Distribution:
    """The distribution a header block names, or MetadataError saying what is wrong."""
    header = b"\n" + block  # every field's line starts with a newline, the first one too
    name_at, version_at = header.find(b"\nName:"), header.find(b"\nVersion:")
    # The fields end at the header's first empty line: only one before them matters.
    before = max(name_at, version_at)
    if header.find(b"\r", 0, before + 1) < 0:  # no line of nothing but "\r" before them
        end = header.find(b"\n\n", 0, before + 1)
        if end < 0:
            end = before
    else:
        end = _empty_line(header, before)
    name = _field(_value(header, name_at, 6, end), "Name", MAX_NAME_LENGTH)
    version = _field(_value(header, version_at, 9, end), "Version", MAX_VERSION_LENGTH)
    return _made(name, version, licence_stretch(header), requires_stretch(header))


def _made(name: str, version: str, licence: bytes, requires: bytes) -> Distribution:
    """The distribution and its PackageInfo, made field by field through the slots (what a
    frozen dataclass's __init__ does, less its per-field lookups): two objects for each of
    thousands of distributions."""
    info = _new(PackageInfo)
    _set_info_name(info, name)
    _set_licence(info, licence)
    _set_requires(info, requires)
    dist = _new(Distribution)
    _set_name(dist, canonical_name(name))
    _set_version(dist, version)
    _set_info(dist, info)
    return dist


_new = object.__new__
_set_name = vars(Distribution)["name"].__set__  # the slots' member descriptors
_set_version = vars(Distribution)["version"].__set__
_set_info = vars(Distribution)["info"].__set__
_set_info_name = vars(PackageInfo)["name"].__set__
_set_licence = vars(PackageInfo)["licence_block"].__set__
_set_requires = vars(PackageInfo)["requires_block"].__set__


def _header_block(data: bytes) -> bytes:
    """The header: everything before the first blank line, with CRLF line ends made LF."""
    if b"\r" in data[: data.find(b"\n")]:
        crlf = data.find(b"\n\r\n")
        return (data[:crlf] if crlf >= 0 else data).replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    return data[:end] if end >= 0 else data


def _empty_line(header: bytes, before: int) -> int:
    """Where the first empty line of ``header`` (which starts with a newline) starts, if it
    starts before ``before``; else ``before``. A line of nothing but "\\r" is empty too (a
    CRLF blank line in a file whose first line ends in LF)."""
    empty = header.find(b"\n\n", 0, before + 1)
    if empty >= 0:
        before = empty
    at = header.find(b"\n\r", 0, before + 1)
    while at >= 0:
        stop = header.find(b"\n", at + 1)
        if not header[at + 1 : stop if stop >= 0 else len(header)].strip(b"\r"):
            return at
        at = header.find(b"\n\r", at + 1, before + 1)
    return before


def _value(header: bytes, at: int, length: int, end: int) -> bytes | None:
    """The stripped value of the field whose line starts at ``at`` (its newline; -1: none)
    with a key of ``length`` bytes, unless the line is past ``end``."""
    if at < 0 or at > end:
        return None
    stop = header.find(b"\n", at + length)
    return header[at + length : stop if stop >= 0 else len(header)].strip()


def _field(raw: bytes | None, key: str, limit: int) -> str:
    if not raw:
        raise MetadataError(f"no {key}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError(f"{key} is not valid UTF-8") from None
    if len(text) > limit:
        raise MetadataError(f"{key} is longer than {limit} characters")
    if not text.isprintable():
        raise MetadataError(f"{key} contains control characters")
    return text
