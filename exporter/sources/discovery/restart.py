"""Does a discovered target need a restart? Its distributions and its maps against its start.

Two checks, both pure (the procfs, the target's file system and the clock injected):

* :func:`changed_distributions`: the distributions installed, upgraded or removed
  after the target's oldest process started. A ``*.dist-info`` (or ``*.egg-info``)
  entry whose change time is after the start was written since: pip removes the old
  version's directory and creates the new one, which also moves the site directory's
  mtime. A directory whose mtime is not after the start is skipped without a
  system call (its :class:`~exporter.collectors.installed.DirectoryScan` says so);
  one that is is listed once and the change times of its entries kept until its
  mtime moves again. Removals leave nothing on disk: they are the names of an
  earlier module list of the same processes that are gone now.
* :func:`stale_files`: the files the processes map that were deleted or replaced on
  disk, the check needrestart makes: the kernel marks a mapping `` (deleted)`` when
  its file was unlinked (``os.replace`` of a new copy over it included), and a file
  at the mapped path with another inode (or, where both devices are real block
  devices, another device) is not the one mapped.

Only what matters for a Python service is checked: the executables, the files mapped
executable, and shared objects (``*.so``, ``*.so.<n>``: extension modules,
libpython, OpenSSL). :meth:`ProcFS.maps` keeps the first mapping of each file,
which for a shared object is its read-only header (``r--p``), not its code
(``r-xp``): so shared objects are recognised by name, the executable by
``/proc/<pid>/exe``, and the permissions only add files mapped executable first.
Mappings shared between processes (``r--s``, ``rw-s``: POSIX semaphores in
``/dev/shm``, libffi's trampolines, ``gconv-modules.cache``) and devices are
never code loaded by the dynamic linker, and are left out, as needrestart leaves
``/dev/`` out; procfs already leaves out memfd, System V shm and shared
``/dev/zero``.

Measured on this machine (Linux 6.18, Docker 20.10 with overlay2 on ext4): a
container's maps show the overlay's own device (``00:28``, major 0) and the inode
that ``stat`` through ``/proc/<pid>/root`` shows, before and after a copy-up; a file
renamed over inside the container is marked `` (deleted)``; a file changed in place
(which copies it up) keeps its inode number and is not seen, as on any file
system. Device numbers with major 0 are anonymous (overlayfs, btrfs subvolumes,
tmpfs) and may differ between maps and ``stat`` for the same file (btrfs does, as
needrestart notes): they are not compared, only inodes are.

The start time (:attr:`ProcStat.start_time`) is ``btime``, whole seconds, plus the
process's ticks: up to a second *before* the real start. A change counts only
:data:`START_SLACK` seconds after it, so a venv written just before its service
started is not taken for an upgrade.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, get_args

from exporter.collectors.installed import (
    RACY_SECONDS,
    DirectoryScan,
    InstalledScan,
    canonical_name,
)
from exporter.filesystem import FileSystem
from exporter.sources.discovery.procfs import Mapping, ProcessGone, ProcFS

__all__ = [
    "START_SLACK",
    "Change",
    "ChangedDistributions",
    "Listing",
    "MappedFiles",
    "Restart",
    "StaleFile",
    "changed_distributions",
    "check_restart",
    "is_code",
    "read_mappings",
    "restart_from",
    "stale_files",
]

START_SLACK: Final = 1.0  # seconds: btime is whole seconds, so start_time is up to 1 s early

ChangeKind = Literal["installed", "upgraded", "reinstalled", "removed", "changed"]
StaleReason = Literal["deleted", "replaced"]

# A shared object's file name: libssl.so.3, _csv.cpython-311-x86_64-linux-gnu.so,
# ld-linux-x86-64.so.2, libpython3.11.so.1.0.
_SHARED_OBJECT: Final = re.compile(r"\.so(?:\.[^/]*)?$")
_METADATA_SUFFIXES: Final = (".dist-info", ".egg-info")


@dataclass(frozen=True, slots=True)
class MappedFiles:
    """The file-backed mappings of a target's processes, each file once.

    ``executables`` are the paths of the processes' ``/proc/<pid>/exe`` (without a
    `` (deleted)`` suffix); ``read`` counts the processes whose maps were read,
    ``gone`` those that exited before or while they were read.
    """

    mappings: tuple[Mapping, ...]
    executables: frozenset[str] = frozenset()
    read: int = 0
    gone: int = 0


@dataclass(frozen=True, slots=True)
class StaleFile:
    """A file a process maps that is no longer the one at its path: ``deleted`` or ``replaced``."""

    path: str
    reason: StaleReason


class Change(NamedTuple):
    """A distribution that changed after the target's oldest process started.

    ``change``: ``installed`` (absent from an earlier module list of the same
    processes), ``upgraded`` (another version there, a downgrade included),
    ``reinstalled`` (the same version there), ``removed`` (there, gone now; ``version``
    is the one that was there) or ``changed`` (installed or upgraded: no earlier
    module list says which, as on the first look at a process). ``version`` is None
    when neither its metadata nor its directory name gives one. A tuple, so that
    ``(name, version, change)`` triples kept elsewhere compare equal to it.
    """

    name: str
    version: str | None
    change: ChangeKind


@dataclass(frozen=True, slots=True)
class Listing:
    """The metadata entries of one directory when it was last listed, with their change times.

    ``entries`` are (entry name, change time in ns), sorted; ``reusable`` is False
    when the directory changed so shortly before it was listed that another change
    within the file system's timestamp granularity could go unseen.
    """

    path: str
    mtime_ns: int
    reusable: bool
    entries: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ChangedDistributions:
    """What changed since ``started_at``, and what the next call may reuse.

    ``listings``: the directories listed because their mtime was after the start
    (reused while their mtime stays); ``listed`` counts the directories this call
    listed (0 when nothing changed since the last call).
    """

    started_at: float
    changes: tuple[Change, ...] = ()
    listings: tuple[Listing, ...] = field(default=(), repr=False)
    listed: int = 0


@dataclass(frozen=True, slots=True)
class Restart:
    """Whether a target needs a restart, and why: changed distributions, stale mapped files.

    ``distributions`` is the state the next check of the same processes takes as
    ``previous`` (its directory listings and the changes seen so far).
    """

    required: bool
    changed: tuple[Change, ...]
    stale: tuple[StaleFile, ...]
    distributions: ChangedDistributions = field(compare=False, repr=False)


# -- mapped files -------------------------------------------------------------------------


def read_mappings(procfs: ProcFS, pids: Iterable[int]) -> MappedFiles:
    """The file-backed mappings of the processes ``pids``, each file (dev, inode, path) once.

    Each process's maps are read bounded (:data:`procfs.MAPS_LIMIT`); a process
    that exits before or while it is read is skipped and counted in ``gone``. A
    process this one may not read raises :class:`ProcessDenied` (a
    :class:`ProcError`), as any other procfs failure does: the check is then
    unknown, not clean.
    """
    seen: set[tuple[tuple[int, int], int, str, bool]] = set()
    mappings: list[Mapping] = []
    executables: set[str] = set()
    read = gone = 0
    for pid in pids:
        try:
            exe = procfs.exe(pid)
            found = procfs.maps(pid)
        except ProcessGone:
            gone += 1
            continue
        read += 1
        if exe is not None:
            executables.add(exe.path)
        for mapping in found:
            key = (mapping.dev, mapping.inode, mapping.path, mapping.deleted)
            if key not in seen:
                seen.add(key)
                mappings.append(mapping)
    return MappedFiles(tuple(mappings), frozenset(executables), read, gone)


def is_code(mapping: Mapping, executables: frozenset[str] = frozenset()) -> bool:
    """Whether ``mapping`` is code a restart would reload: an executable or a shared object.

    Shared (``s``) mappings and devices are not (see the module's docstring).
    """
    if mapping.perms.endswith("s") or mapping.path.startswith("/dev/"):
        return False
    return (
        mapping.path in executables
        or "x" in mapping.perms
        or _SHARED_OBJECT.search(mapping.path) is not None
    )


def stale_files(mapped: MappedFiles, fs: FileSystem) -> tuple[StaleFile, ...]:
    """The code files of ``mapped`` deleted or replaced on disk, sorted by path.

    ``fs`` is the target's root (a RootFileSystem over ``/proc/<pid>/root``): each
    mapped path is stat'ed there, once. ``deleted``: the kernel marks the mapping
    so. ``replaced``: the path now holds another inode (or another device, where
    both are real block devices). A path that cannot be stat'ed without being
    marked deleted (a mount this root does not see, EACCES) is not counted: the
    kernel would have said if it were unlinked.
    """
    found: dict[str, StaleReason] = {}
    checked: set[tuple[tuple[int, int], int, str]] = set()
    for mapping in mapped.mappings:
        if not is_code(mapping, mapped.executables):
            continue
        if mapping.deleted:
            found[mapping.path] = "deleted"
            continue
        key = (mapping.dev, mapping.inode, mapping.path)
        if key in checked or mapping.path in found:
            continue
        checked.add(key)
        try:
            st = fs.stat(mapping.path)
        except (OSError, ValueError):
            continue
        if st.st_ino != mapping.inode or not _same_device(mapping.dev, st.st_dev):
            found[mapping.path] = "replaced"
    return tuple(StaleFile(path, reason) for path, reason in sorted(found.items()))


def _same_device(mapped: tuple[int, int], st_dev: int) -> bool:
    """Whether maps' (major, minor) and a stat's st_dev may name the same file system.

    Major 0 is an anonymous device (overlayfs, btrfs, tmpfs): not comparable.
    """
    major, minor = os.major(st_dev), os.minor(st_dev)
    if mapped[0] == 0 or major == 0:
        return True
    return mapped == (major, minor)


# -- changed distributions ----------------------------------------------------------------


def changed_distributions(
    scan: InstalledScan,
    started_at: float,
    fs: FileSystem,
    *,
    previous: ChangedDistributions | None = None,
    previous_modules: MappingOf[str, str] | None = None,
    previous_changes: Iterable[tuple[str, str | None, str]] = (),
    slack: float = START_SLACK,
    clock: Callable[[], float] = time.time,
) -> ChangedDistributions:
    """The distributions of ``scan`` installed, upgraded or removed after ``started_at``.

    ``scan`` is this refresh's scan of the target (through ``fs``); ``started_at``
    the Unix time its oldest process started. ``previous`` is the last result for
    the same target: its listings are reused while their directory's mtime stays,
    and, when its ``started_at`` is the same (the same processes), the changes it
    found are kept, as are ``previous_changes`` (the same triples, kept by the
    caller for the same processes): an upgrade stays an upgrade, a removal a removal.
    ``previous_modules`` is the name -> version list of an earlier snapshot of the
    same processes: it tells an install from an upgrade, and its names gone from
    ``scan`` are ``removed``. Without it, a new metadata entry is ``changed`` and
    removals are not seen.

    Only a directory whose mtime is after the start is listed (and each of its
    metadata entries stat'ed); a distribution shadowed by the same name earlier on
    the path is not counted, as it is not the one imported.
    """
    threshold_ns = int((started_at + slack) * 1e9)
    cache = {listing.path: listing for listing in previous.listings} if previous else {}
    carried = {
        name: Change(name, version, _known(kind)) for name, version, kind in previous_changes
    }
    if previous is not None and previous.started_at == started_at:
        carried.update((change.name, change) for change in previous.changes)
    winners: dict[str, int] = {}  # name -> index of the directory it is imported from
    for index, directory in enumerate(scan.directories):
        for dist in directory.distributions:
            winners.setdefault(dist.name, index)

    fresh: dict[str, str | None] = {}
    listings: list[Listing] = []
    listed = 0
    for index, directory in enumerate(scan.directories):
        if directory.mtime_ns < threshold_ns:
            continue  # nothing was added to it or removed from it since the start
        listing = cache.get(directory.path)
        if listing is None or not listing.reusable or listing.mtime_ns != directory.mtime_ns:
            listing = _list(directory, fs, clock)
            listed += 1
        listings.append(listing)
        versions = {dist.name: dist.version for dist in directory.distributions}
        for entry, changed_ns in listing.entries:
            if changed_ns < threshold_ns:
                continue
            name, version = _entry_name(entry, directory.path)
            if winners.get(name, index) != index:
                continue  # shadowed by an earlier directory
            fresh[name] = versions.get(name, version)

    changes: dict[str, Change] = {}
    for name, version in fresh.items():
        earlier = carried.get(name)
        if earlier is not None and earlier.change != "removed":
            changes[name] = Change(name, version, earlier.change)
        elif earlier is not None:  # removed since the start, and back
            changes[name] = Change(name, version, _kind(version, earlier.version))
        elif previous_modules is None:
            changes[name] = Change(name, version, "changed")
        elif name in previous_modules:
            changes[name] = Change(name, version, _kind(version, previous_modules[name]))
        else:
            changes[name] = Change(name, version, "installed")
    for name, earlier in carried.items():
        if name in changes:
            continue
        if name in winners:
            changes[name] = earlier  # installed or upgraded since the start, still there
        else:
            changes[name] = Change(name, earlier.version, "removed")
    for name, version in (previous_modules or {}).items():
        if name not in winners and name not in changes:
            changes[name] = Change(name, version, "removed")
    return ChangedDistributions(
        started_at=started_at,
        changes=tuple(changes[name] for name in sorted(changes)),
        listings=tuple(listings),
        listed=listed,
    )


def _kind(version: str | None, earlier: str | None) -> ChangeKind:
    return "reinstalled" if version == earlier else "upgraded"


def _known(kind: str) -> ChangeKind:
    for known in get_args(ChangeKind):
        if kind == known:
            return known  # type: ignore[no-any-return]
    return "changed"


def _list(directory: DirectoryScan, fs: FileSystem, clock: Callable[[], float]) -> Listing:
    """List ``directory``'s metadata entries with their change times (ctime or mtime, the later).

    A zip on the path (an egg) is one entry, itself: it is rewritten whole.
    """
    path = directory.path
    listed_at = clock()
    reusable = listed_at - directory.mtime_ns / 1e9 > RACY_SECONDS
    try:
        names = fs.listdir(path)
    except NotADirectoryError:
        return Listing(path, directory.mtime_ns, reusable, ((_ZIP, directory.mtime_ns),))
    except (OSError, ValueError):
        return Listing(path, directory.mtime_ns, False, ())
    egg = path.lower().endswith(".egg")
    entries: list[tuple[str, int]] = []
    for name in names:
        low = name.lower()
        if not (low.endswith(_METADATA_SUFFIXES) or (egg and low == "egg-info")):
            continue
        try:
            st = fs.stat(f"{path}{os.sep}{name}")
        except (OSError, ValueError):
            continue
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            entries.append((name, max(st.st_ctime_ns, st.st_mtime_ns)))
    return Listing(path, directory.mtime_ns, reusable, tuple(sorted(entries)))


_ZIP: Final = ""  # the entry name standing for a zip path entry as a whole


def _entry_name(entry: str, directory: str) -> tuple[str, str | None]:
    """The canonical name and the version a metadata entry's name spells.

    ``name-version.dist-info``, ``name-version[-pyX.Y].egg-info``, ``name.egg-info``;
    ``EGG-INFO`` and a zip stand for the egg ``name-version-pyX.Y.egg`` they are in.
    """
    if entry in (_ZIP, "EGG-INFO") or entry.lower() == "egg-info":
        stem = os.path.basename(directory)
        stem = stem[: -len(".egg")] if stem.lower().endswith(".egg") else stem
    else:
        stem = entry.rsplit(".", 1)[0]
    name, _, rest = stem.partition("-")
    version = rest.split("-", 1)[0] or None
    return canonical_name(name), version


# -- both ---------------------------------------------------------------------------------


def restart_from(changed: ChangedDistributions, stale: Iterable[StaleFile]) -> Restart:
    """The Restart result of both checks: required when anything changed or is stale."""
    files = tuple(stale)
    return Restart(
        required=bool(changed.changes or files),
        changed=changed.changes,
        stale=files,
        distributions=changed,
    )


def check_restart(
    scan: InstalledScan | None,
    started_at: float,
    mapped: MappedFiles,
    fs: FileSystem,
    *,
    previous: Restart | None = None,
    previous_modules: MappingOf[str, str] | None = None,
    previous_changes: Iterable[tuple[str, str | None, str]] = (),
    slack: float = START_SLACK,
    clock: Callable[[], float] = time.time,
) -> Restart:
    """Both checks of one target: :func:`changed_distributions` and :func:`stale_files`.

    ``scan`` None (the environment could not be scanned) checks the mapped files
    only. ``previous`` is this target's last Restart (its listings and, for the same
    start, its changes are reused); ``previous_modules`` and ``previous_changes``
    come from an earlier snapshot of the same processes (see
    :func:`changed_distributions`).
    """
    earlier = previous.distributions if previous is not None else None
    if scan is None:
        changed = ChangedDistributions(started_at)
    else:
        changed = changed_distributions(
            scan,
            started_at,
            fs,
            previous=earlier,
            previous_modules=previous_modules,
            previous_changes=previous_changes,
            slack=slack,
            clock=clock,
        )
    return restart_from(changed, stale_files(mapped, fs))
