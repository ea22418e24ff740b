"""Installed distributions, read cheaply from ``*.dist-info`` and ``*.egg-info`` metadata.

importlib.metadata parses every METADATA file whole (twice, for name and
version); here only the header lines up to ``Version`` are read, which is what
makes a refresh of thousands of distributions cost milliseconds.

A directory whose mtime has not changed since the last scan is not read again:
installing, upgrading or removing a distribution adds or renames an entry in
it, which changes its mtime. A directory changed less than ``RACY_SECONDS``
before it was scanned is read again next time, since a change within the
file system's timestamp granularity would otherwise go unseen.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from exporter.collectors.packages import PackageInfo, package_info

RACY_SECONDS = 2.0
MAX_NAME_LENGTH = 200
MAX_VERSION_LENGTH = 200
_HEAD_BYTES = 4096  # most headers end within it, classifiers included
MAX_HEADER_BYTES = 256 * 1024
_NORMALIZE = re.compile(r"[-_.]+")


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
    """What one directory held when it was scanned, and whether that can be reused."""

    path: str
    mtime_ns: int
    reusable: bool
    distributions: tuple[Distribution, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True, slots=True)
class InstalledScan:
    """The scan of every directory, in search order; the input of the next scan."""

    directories: tuple[DirectoryScan, ...]
    directories_read: int

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
        """Every entry passed over, over all directories."""
        return tuple(s for d in self.directories for s in d.skipped)


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of ``-_.`` become one ``-``."""
    return _NORMALIZE.sub("-", name).lower()


def scan_installed(
    paths: Sequence[str],
    previous: InstalledScan | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> InstalledScan:
    """Scan ``paths`` for distributions, reusing ``previous`` for unchanged directories."""
    earlier = {d.path: d for d in previous.directories} if previous else {}
    directories: list[DirectoryScan] = []
    read = 0
    for path in _unique(paths):
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError:
            continue  # sys.path names zip files and folders that need not exist
        before = earlier.get(path)
        if before is not None and before.reusable and before.mtime_ns == mtime_ns:
            directories.append(before)
            continue
        scanned_at = clock()
        scan = _scan_directory(path, mtime_ns, scanned_at)
        if scan is not None:
            directories.append(scan)
            read += 1
    return InstalledScan(directories=tuple(directories), directories_read=read)


def _unique(paths: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for p in paths:
        p = os.path.abspath(p or os.curdir)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _scan_directory(path: str, mtime_ns: int, scanned_at: float) -> DirectoryScan | None:
    try:
        with os.scandir(path) as entries:
            names = sorted(e.name for e in entries)
    except (NotADirectoryError, FileNotFoundError):
        return None
    except OSError as exc:
        return DirectoryScan(path, mtime_ns, False, (), (Skipped(path, f"cannot list: {exc}"),))
    dists: list[Distribution] = []
    skipped: list[Skipped] = []
    for name in names:
        if name.endswith(".dist-info"):
            metadata = f"{path}{os.sep}{name}{os.sep}METADATA"
        elif name.endswith(".egg-info"):
            entry = os.path.join(path, name)
            metadata = os.path.join(entry, "PKG-INFO") if os.path.isdir(entry) else entry
        else:
            continue
        try:
            dists.append(read_distribution(metadata))
        except MetadataError as exc:
            skipped.append(Skipped(metadata, str(exc)))
    reusable = scanned_at - mtime_ns / 1e9 > RACY_SECONDS
    return DirectoryScan(path, mtime_ns, reusable, tuple(dists), tuple(skipped))


class MetadataError(Exception):
    """A metadata file that cannot give a usable name and version."""


def read_distribution(metadata_path: str) -> Distribution:
    """Read ``Name`` and ``Version`` from the header of a METADATA or PKG-INFO file."""
    try:
        # O_NONBLOCK: a FIFO planted as METADATA must not block the refresh forever.
        fd = os.open(metadata_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise MetadataError("not a regular file")
            head = os.read(fd, _HEAD_BYTES)
            if len(head) == _HEAD_BYTES and b"\n\n" not in head and b"\n\r\n" not in head:
                # The header goes on (classifiers): read on to its blank line, bounded.
                parts = [head]
                size = len(head)
                while size < MAX_HEADER_BYTES and (chunk := os.read(fd, 16384)):
                    parts.append(chunk)
                    size += len(chunk)
                    if b"\n\n" in parts[-2][-1:] + chunk:  # a blank line, maybe across reads
                        break
                head = b"".join(parts)
            header = _header_block(head)
            fields = _header_fields(header)
        finally:
            os.close(fd)
    except OSError as exc:
        raise MetadataError(f"cannot read: {exc.strerror or exc}") from None
    name = _field(fields, "Name", MAX_NAME_LENGTH)
    version = _field(fields, "Version", MAX_VERSION_LENGTH)
    return Distribution(canonical_name(name), version, package_info(header, name))


def _header_block(data: bytes) -> bytes:
    """The header: everything before the first blank line, with CRLF line ends made LF."""
    if b"\r" in data[: data.find(b"\n")]:
        crlf = data.find(b"\n\r\n")
        return (data[:crlf] if crlf >= 0 else data).replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    return data[:end] if end >= 0 else data


def _header_fields(data: bytes) -> dict[str, bytes]:
    """The first ``Name`` and ``Version`` lines of an RFC 822 style header block."""
    fields: dict[str, bytes] = {}
    start, end = 0, len(data)
    while start < end:  # in practice Name and Version are lines 2 and 3: stop once both are seen
        stop = data.find(b"\n", start)
        if stop < 0:
            stop = end
        line = data[start:stop].rstrip(b"\r")
        start = stop + 1
        if not line:
            break  # the header ends at the first empty line; a "Version:" in the body is not one
        if line.startswith((b"Name:", b"Version:")):
            key, _, value = line.partition(b":")
            fields.setdefault(key.decode(), value.strip())
            if len(fields) == 2:
                break
    return fields


def _field(fields: dict[str, bytes], key: str, limit: int) -> str:
    raw = fields.get(key)
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
