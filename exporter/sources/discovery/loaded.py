"""Which distributions a target's processes have loaded: their native files, from RECORD, in maps.

A distribution is *loaded* when one of the native files its ``RECORD`` lists (an
extension module ``*.so``, a bundled ``libfoo.so.1``, a ``*.pyd``) is mapped by one
of the target's processes. Nothing else can be told from outside the process: a
pure-Python module leaves no trace in maps, so "not mapped" is "unknown", never
"not loaded".

Only the distributions asked for are looked at (the caller passes those with
findings), so only their ``RECORD`` files are read: each through the target's file
system, bounded (:data:`RECORD_LIMIT`), only a regular file (a FIFO or a device in
its place cannot block, see :func:`read_bounded`). Its paths are never opened: each
is joined to the site directory's real path and normalised as a string, then
compared with the mapped paths (which the kernel writes resolved). An absolute
path, one that climbs above the root, or one that is no native file is passed
over; a RECORD that cannot be read costs that distribution and nothing else.

A mapping marked `` (deleted)`` is not counted: the file the process runs was
replaced, so the installed version (the one a finding names) is not what it
runs; the restart check reports that file.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from exporter.collectors.installed import (
    DirectoryScan,
    InstalledScan,
    Skipped,
    canonical_name,
)
from exporter.filesystem import FileSystem
from exporter.sources.discovery.procfs import Mapping
from exporter.sources.discovery.restart import MappedFiles
from exporter.sources.discovery.rootfs import read_bounded

__all__ = [
    "RECORD_LIMIT",
    "LoadedDistributions",
    "find_loaded",
    "loaded_distributions",
    "native_paths",
]

RECORD_LIMIT: Final = 4 * 1024 * 1024  # the largest RECORDs (a CUDA wheel's) are < 1 MiB
_NATIVE: Final = re.compile(r"\.(?:so(?:\.[^/]*)?|pyd)$")


@dataclass(frozen=True, slots=True)
class LoadedDistributions:
    """The distributions asked for whose native files are mapped, and what was passed over."""

    names: frozenset[str]
    skipped: tuple[Skipped, ...] = ()


def loaded_distributions(
    mappings: MappedFiles | Iterable[Mapping],
    scan: InstalledScan | Sequence[DirectoryScan],
    names: Collection[str],
    fs: FileSystem,
) -> frozenset[str]:
    """Of the distributions ``names`` (canonical), those whose native files ``mappings`` map.

    :func:`find_loaded`'s names, without what was passed over.
    """
    return find_loaded(mappings, scan, names, fs).names


def find_loaded(
    mappings: MappedFiles | Iterable[Mapping],
    scan: InstalledScan | Sequence[DirectoryScan],
    names: Collection[str],
    fs: FileSystem,
) -> LoadedDistributions:
    """Of the distributions ``names`` (canonical), those whose native files ``mappings`` map.

    ``mappings`` are the target's (:func:`~.restart.read_mappings`); ``scan`` is the
    target's scan through ``fs`` (or its directories): a name is looked up where it
    is imported from, the first directory holding it, and its
    ``<name>-<version>.dist-info/RECORD`` (or ``.egg-info/installed-files.txt``)
    read there. A name that is not installed, a directory that cannot be listed, a
    RECORD that is missing, too large or not a regular file: that name is not
    loaded (and the last three are in ``skipped``).
    """
    if isinstance(mappings, MappedFiles):
        mappings = mappings.mappings
    wanted = {canonical_name(name) for name in names}
    mapped = {m.path for m in mappings if not m.deleted}
    directories = scan.directories if isinstance(scan, InstalledScan) else tuple(scan)
    if not wanted or not mapped:
        return LoadedDistributions(frozenset())
    where: dict[str, tuple[DirectoryScan, str]] = {}
    for directory in directories:
        for dist in directory.distributions:
            if dist.name in wanted and dist.name not in where:
                where[dist.name] = (directory, dist.version)
    loaded: set[str] = set()
    skipped: list[Skipped] = []
    by_directory: dict[str, list[tuple[str, str]]] = {}
    for name, (directory, version) in where.items():
        by_directory.setdefault(directory.path, []).append((name, version))
    for path, dists in by_directory.items():
        try:
            entries = fs.listdir(path)
            real = fs.realpath(path)
        except (OSError, ValueError) as exc:
            skipped.append(Skipped(path, f"cannot list: {_why(exc)}"))
            continue
        for name, version in dists:
            entry = _metadata_entry(entries, name, version)
            if entry is None:
                continue  # an egg, or metadata named unlike its project
            files = native_paths(fs, f"{path}/{entry}", real)
            if isinstance(files, Skipped):
                skipped.append(files)
            elif not mapped.isdisjoint(files):
                loaded.add(name)
    return LoadedDistributions(frozenset(loaded), tuple(skipped))


def native_paths(fs: FileSystem, metadata: str, site: str) -> frozenset[str] | Skipped:
    """The absolute paths of the native files a metadata directory's file list names.

    ``metadata`` is a ``*.dist-info`` (its ``RECORD``, relative to ``site``) or an
    ``*.egg-info`` directory (its ``installed-files.txt``, relative to itself, as
    ``site``'s real path plus its name); ``site`` is the real path of the directory
    holding it. Skipped when the list cannot be read.
    """
    if metadata.lower().endswith(".egg-info"):
        listing = f"{metadata}/installed-files.txt"
        base = posixpath.join(site, posixpath.basename(metadata))
    else:
        listing = f"{metadata}/RECORD"
        base = site
    try:
        data = read_bounded(fs, listing, RECORD_LIMIT)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if base != site:  # an egg-info file, or one without the list (a develop install)
            return frozenset()
        return Skipped(listing, f"cannot read: {_why(exc)}")
    except (OSError, ValueError) as exc:
        return Skipped(listing, f"cannot read: {_why(exc)}")
    text = data.decode("utf-8", "surrogateescape")
    if listing.endswith("RECORD"):
        relative = (row[0] for row in csv.reader(io.StringIO(text)) if row)
    else:
        relative = (line.strip() for line in text.splitlines())
    found: set[str] = set()
    for entry in relative:
        resolved = _inside(base, entry)
        if resolved is not None and _NATIVE.search(resolved):
            found.add(resolved)
    return frozenset(found)


def _inside(base: str, entry: str) -> str | None:
    """``entry`` joined to ``base`` and normalised, or None: absolute, or above the root."""
    if not entry or entry.startswith("/") or "\0" in entry:
        return None
    depth = base.count("/") - (base == "/")
    for part in entry.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return None
        elif part not in ("", "."):
            depth += 1
    return posixpath.normpath(posixpath.join(base, entry))


def _metadata_entry(entries: Iterable[str], name: str, version: str) -> str | None:
    """The entry of ``entries`` holding the metadata of ``name`` ``version``.

    ``<name>-<version>.dist-info`` with the name in any spelling (wheels write
    underscores); an ``.egg-info`` directory likewise, with or without a version;
    the version matched first, then the name alone.
    """
    fallback = None
    for entry in entries:
        low = entry.lower()
        if not low.endswith((".dist-info", ".egg-info")):
            continue
        stem = entry.rsplit(".", 1)[0]
        # Installers write the name with underscores, but older tools kept its hyphens
        # (evil-pkg-1.0.0.dist-info): try every hyphen as the end of the name.
        parts = stem.split("-")
        for cut in range(1, len(parts) + 1):
            if canonical_name("-".join(parts[:cut])) != name:
                continue
            if cut < len(parts) and parts[cut] == version:
                return entry
            fallback = fallback or entry
    return fallback


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)
