"""One procfs, read from its mount point: every per-process reader is a method of ProcFS.

``ProcFS("/proc")`` on the host, ``ProcFS("/host/proc")`` in a container that mounts
the host's, ``ProcFS(tmp_path / "proc")`` over a fixture tree in tests: nothing here
names ``/proc`` but the default.

Reading another process is a security boundary, so every read is bounded (a process
with a huge ``cmdline`` or ``maps`` costs one truncated read, never a large buffer
per byte it holds), only regular files are read (``O_NONBLOCK``: a FIFO planted in a
fixture tree cannot block a scan), and :meth:`ProcFS.environ` keeps only the
variables asked for: the others are skipped where they lie in one read buffer, never
copied, and that buffer is zeroed before the call returns.

A pid is not an identity, pids are reused: a process is (pid, ``starttime``), see
:meth:`ProcFS.identity`. Callers read a process's facts between two identity checks.

Errors: every failure is a :class:`ProcError`, never a raw OSError. A process that
exited (ENOENT, ESRCH) raises :class:`ProcessGone`, one this process may not read
(EACCES, EPERM) :class:`ProcessDenied`, so a scan can count both and go on. A file
missing from a process directory that still exists, any other errno, and a file
that does not parse raise the plain ProcError. No exception carries a file's
content, only its path and why.

Text: arguments, paths and values are decoded as ``os.fsdecode`` does (the file
system encoding, ``surrogateescape``), as ``os.readlink`` and ``os.environ``
already do: a path read from ``cmdline`` round-trips through ``os.fsencode`` to the
bytes the process used, so it can be opened in the target's root. A renderer must
encode such text with ``errors="backslashreplace"`` (or similar) before it leaves
the process.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CMDLINE_LIMIT",
    "ENVIRON_LIMIT",
    "MAPS_LIMIT",
    "Executable",
    "Mapping",
    "ProcError",
    "ProcFS",
    "ProcStat",
    "ProcessDenied",
    "ProcessGone",
    "Uids",
]

CMDLINE_LIMIT: Final = 64 * 1024
ENVIRON_LIMIT: Final = 256 * 1024
MAPS_LIMIT: Final = 4 * 1024 * 1024
_STAT_LIMIT: Final = 8 * 1024  # /proc/<pid>/stat is < 1 KiB: comm is at most 64 bytes
_STATUS_LIMIT: Final = 64 * 1024  # ~1.5 KiB; Groups: can list many groups
_CGROUP_LIMIT: Final = 64 * 1024  # a dozen v1 hierarchies of deep paths
_SYSTEM_STAT_LIMIT: Final = 4 * 1024 * 1024  # /proc/stat: one cpu line per CPU, a long intr line
_CHUNK: Final = 64 * 1024

_DELETED: Final = " (deleted)"
# Paths in maps that name kernel-internal objects rather than files anyone can
# replace (shared anonymous memory, System V and POSIX shm, memfd, aio rings, huge
# pages, GPU buffers): needrestart skips the same families.
_PSEUDO_PREFIXES: Final = (
    "/memfd:",
    "/SYSV",
    "/dev/zero (deleted)",
    "/[aio]",
    "/anon_hugepage",
    "/drm mm object",
    "/i915",
)

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_GONE: Final = frozenset({errno.ENOENT, errno.ESRCH})
_DENIED: Final = frozenset({errno.EACCES, errno.EPERM})


class ProcError(Exception):
    """A procfs file that could not be read or parsed: ``path`` says which, ``reason`` why."""

    def __init__(
        self, path: str, reason: str, *, pid: int | None = None, errno: int | None = None
    ) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.pid = pid
        self.errno = errno


class ProcessGone(ProcError):
    """The process exited (or its pid directory vanished) before or while it was read."""


class ProcessDenied(ProcError):
    """This process may not read that file of the other process (EACCES or EPERM)."""


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that name a process and say when it started.

    ``starttime`` is the kernel's, in clock ticks since boot; ``start_time`` is the
    same instant as Unix time (``btime`` + ticks / ``SC_CLK_TCK``, to about a second,
    since ``btime`` is whole seconds).
    """

    pid: int
    comm: str
    state: str
    ppid: int
    starttime: int
    start_time: float


@dataclass(frozen=True, slots=True)
class Executable:
    """What ``/proc/<pid>/exe`` points at, as the process sees it (inside its own root).

    ``deleted``: the kernel appended `` (deleted)``: the file the process runs was
    removed or replaced since it started (``path`` is without the suffix).
    """

    path: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class Uids:
    """The four user ids of the ``Uid:`` line of ``/proc/<pid>/status``."""

    real: int
    effective: int
    saved: int
    filesystem: int


@dataclass(frozen=True, slots=True)
class Mapping:
    """One file-backed mapping of ``/proc/<pid>/maps`` (the first of those sharing a file).

    ``dev`` is (major, minor) of the device holding the file, ``inode`` its inode when
    it was mapped: a file at ``path`` with another device or inode today is not the one
    the process runs. ``deleted``: the kernel appended `` (deleted)`` (``path`` is
    without it). ``path`` is as the process sees it, inside its own root.
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: tuple[int, int]
    inode: int
    path: str
    deleted: bool


class ProcFS:
    """A procfs mounted at ``mount``; each method reads one fact of one process.

    ``clock_ticks`` defaults to ``os.sysconf("SC_CLK_TCK")`` (injectable for fixture
    trees made on another machine). ``btime`` is read from ``<mount>/stat`` on first
    use and kept.
    """

    __slots__ = ("_boot_time", "_clock_ticks", "mount")

    def __init__(self, mount: str = "/proc", *, clock_ticks: int | None = None) -> None:
        self.mount = os.fspath(mount)
        ticks = os.sysconf("SC_CLK_TCK") if clock_ticks is None else clock_ticks
        if ticks <= 0:
            raise ValueError(f"clock_ticks must be positive, not {ticks}")
        self._clock_ticks: int = ticks
        self._boot_time: int | None = None

    def __repr__(self) -> str:
        return f"ProcFS({self.mount!r})"

    # -- the process list and the system-wide file ------------------------------------

    def pids(self) -> list[int]:
        """The pids listed in the mount (its numeric entries), in ascending order."""
        try:
            with os.scandir(self.mount) as entries:
                names = [entry.name for entry in entries]
        except OSError as exc:
            raise ProcError(self.mount, _strerror(exc), errno=exc.errno) from None
        return sorted(int(name) for name in names if name.isascii() and name.isdigit())

    def boot_time(self) -> int:
        """``btime`` of ``<mount>/stat``: the boot time, in whole seconds of Unix time."""
        if self._boot_time is None:
            path = os.path.join(self.mount, "stat")
            data, _ = self._read(path, _SYSTEM_STAT_LIMIT, None)
            for line in data.split(b"\n"):
                if line.startswith(b"btime "):
                    try:
                        self._boot_time = int(line[6:])
                    except ValueError:
                        break
                    return self._boot_time
            raise ProcError(path, "no btime line")
        return self._boot_time

    # -- per process ------------------------------------------------------------------

    def stat(self, pid: int) -> ProcStat:
        """Parse ``<mount>/<pid>/stat``.

        ``comm`` may hold spaces and parentheses (a process names itself), so it is
        what lies between the first ``(`` and the *last* ``)``; the fields follow that.
        """
        # The hot path of a listing (one call per pid per refresh): the path built
        # without os.path.join, and one read, since the kernel gives the whole line
        # (< 1 KiB) in one; a file longer than the limit is still told by its size.
        if type(pid) is int and pid > 0:
            path = f"{self.mount}/{pid}/stat"
        else:
            path = self._path(pid, "stat")  # validates, or raises ValueError
        fd = self._open(path, pid)
        try:
            data = os.read(fd, _STAT_LIMIT + 1)
        except OSError as exc:
            raise self._error(path, pid, exc) from None
        finally:
            os.close(fd)
        truncated = len(data) > _STAT_LIMIT
        opening, closing = data.find(b"("), data.rfind(b")")
        fields = data[closing + 2 :].split()
        if truncated or opening < 0 or closing < opening or len(fields) < 20:
            raise ProcError(path, "not a /proc/<pid>/stat line", pid=pid)
        try:
            ppid = int(fields[1])  # field 4 of proc(5); field 3 is the state
            starttime = int(fields[19])  # field 22
        except ValueError:
            raise ProcError(path, "not a /proc/<pid>/stat line", pid=pid) from None
        return ProcStat(
            pid=pid,
            comm=os.fsdecode(data[opening + 1 : closing]),
            state=fields[0].decode("ascii", "replace"),
            ppid=ppid,
            starttime=starttime,
            start_time=self.boot_time() + starttime / self._clock_ticks,
        )

    def identity(self, pid: int) -> tuple[int, int]:
        """(pid, starttime in clock ticks): what names one process, since pids are reused."""
        return (pid, self.stat(pid).starttime)

    def exe(self, pid: int) -> Executable | None:
        """Where ``<mount>/<pid>/exe`` points, with its `` (deleted)`` suffix as a flag.

        None for a process that exists but runs no file: a kernel thread, a zombie.
        """
        target = self._readlink(pid, "exe")
        if target is None:
            return None
        if target.endswith(_DELETED):
            return Executable(target[: -len(_DELETED)], deleted=True)
        return Executable(target, deleted=False)

    def cwd(self, pid: int) -> str | None:
        """Where ``<mount>/<pid>/cwd`` points (inside the process's root); None for a zombie."""
        return self._readlink(pid, "cwd")

    def root(self, pid: int) -> str:
        """The path ``<mount>/<pid>/root``, unresolved, for a root-confined file system.

        No I/O: open it with the in-root resolver, never by following it.
        """
        return self._path(pid, "root")

    def cmdline(self, pid: int, limit: int = CMDLINE_LIMIT) -> list[str]:
        """The arguments of ``<mount>/<pid>/cmdline`` (NUL-separated), reading ``limit`` bytes.

        Past ``limit`` the last, cut argument is dropped: only whole arguments are
        returned. A process that rewrote its arguments into one string (setproctitle)
        gives one element. Empty for a kernel thread or a zombie.
        """
        data, truncated = self._read(self._path(pid, "cmdline"), limit, pid)
        if not data:
            return []
        parts = data.split(b"\0")
        if data.endswith(b"\0") or truncated:
            parts.pop()  # the empty string after the last NUL, or a cut argument
        return [os.fsdecode(part) for part in parts]

    def environ(
        self, pid: int, names: Collection[str], limit: int = ENVIRON_LIMIT
    ) -> dict[str, str]:
        """The variables of ``<mount>/<pid>/environ`` whose names are in ``names``, only those.

        A process's environment holds secrets: the variables not asked for are never
        decoded, copied or kept. The file is read into one buffer of ``limit`` bytes,
        each entry compared in place as its NUL arrives; only a match's value is
        copied out, and the buffer is zeroed before returning. Entries past ``limit``
        are not seen. A name set twice keeps its first value, as ``getenv`` does. A
        zombie's environment is gone with its memory: ProcessGone (the kernel's ESRCH).
        """
        if isinstance(names, str):  # a str is a Collection[str] of its letters
            raise TypeError("names must be a collection of names, not one str")
        wanted = [(name, os.fsencode(name) + b"=") for name in names]
        for name, _ in wanted:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"not an environment variable name: {name!r}")
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        path = self._path(pid, "environ")
        found: dict[str, str] = {}
        if not wanted:
            return found
        fd = self._open(path, pid)
        buffer = bytearray(limit)
        filled = 0
        try:
            with memoryview(buffer) as view:
                start = 0  # where the first entry not yet compared begins
                at_end = False
                while filled < limit:
                    try:
                        count = os.readv(fd, [view[filled:]])
                    except OSError as exc:
                        raise self._error(path, pid, exc) from None
                    if count == 0:
                        at_end = True
                        break
                    filled += count
                    start = _match(buffer, start, filled, wanted, found)
                if at_end and start < filled:  # a last entry without its NUL
                    _compare(buffer, start, filled, wanted, found)
                # else, full: a cut last entry is never compared
        finally:
            os.close(fd)
            buffer[:filled] = bytes(filled)
        return found

    def cgroup(self, pid: int) -> list[str]:
        """The lines of ``<mount>/<pid>/cgroup`` (``id:controllers:path``), bounded."""
        data, truncated = self._read(self._path(pid, "cgroup"), _CGROUP_LIMIT, pid)
        return _lines(data, truncated)

    def status_uids(self, pid: int) -> Uids:
        """The real, effective, saved and file-system uids of ``<mount>/<pid>/status``."""
        path = self._path(pid, "status")
        data, _ = self._read(path, _STATUS_LIMIT, pid)
        for line in data.split(b"\n"):
            if line.startswith(b"Uid:"):
                try:
                    real, effective, saved, filesystem = (int(v) for v in line[4:].split())
                except ValueError:
                    break
                return Uids(real, effective, saved, filesystem)
        raise ProcError(path, "no Uid line of four ids", pid=pid)

    def maps(self, pid: int, limit: int = MAPS_LIMIT) -> list[Mapping]:
        """The file-backed mappings of ``<mount>/<pid>/maps``, one per (dev, inode, path).

        Lines are ``start-end perms offset major:minor inode path``; anonymous
        mappings, ``[heap]``-like ones and kernel-internal objects (memfd, shm,
        shared anonymous memory) are left out; of several mappings of one file the
        first (lowest address) is kept. Past ``limit`` bytes the cut last line is
        dropped. Newlines in a path are shown by the kernel as ``\\012``: turned back.
        """
        path = self._path(pid, "maps")
        data, truncated = self._read(path, limit, pid)
        seen: set[tuple[tuple[int, int], int, str, bool]] = set()
        mappings: list[Mapping] = []
        for line in _raw_lines(data, truncated):
            mapping = _mapping(line)
            if mapping is None:
                continue
            key = (mapping.dev, mapping.inode, mapping.path, mapping.deleted)
            if key not in seen:
                seen.add(key)
                mappings.append(mapping)
        return mappings

    # -- reading ----------------------------------------------------------------------

    def _path(self, pid: int, name: str) -> str:
        number = operator.index(pid)
        if isinstance(pid, bool) or number <= 0:
            raise ValueError(f"not a pid: {pid!r}")
        return os.path.join(self.mount, str(number), name)

    def _pid_exists(self, pid: int) -> bool:
        return os.path.lexists(os.path.join(self.mount, str(pid)))

    def _error(self, path: str, pid: int | None, exc: OSError) -> ProcError:
        """The ProcError for ``exc`` met reading ``path`` of ``pid``."""
        code = exc.errno
        reason = _strerror(exc)
        if pid is not None and code in _GONE:
            if code == errno.ESRCH or not self._pid_exists(pid):
                return ProcessGone(path, reason, pid=pid, errno=code)
            reason = f"{reason} (the process directory exists)"
        elif pid is not None and code in _DENIED:
            return ProcessDenied(path, reason, pid=pid, errno=code)
        return ProcError(path, reason, pid=pid, errno=code)

    def _open(self, path: str, pid: int | None) -> int:
        """Open ``path`` to read, refusing anything but a regular file."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise self._error(path, pid, exc) from None
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            os.close(fd)
            raise self._error(path, pid, exc) from None
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise ProcError(path, "not a regular file", pid=pid)
        return fd

    def _read(self, path: str, limit: int, pid: int | None) -> tuple[bytes, bool]:
        """At most ``limit`` bytes of ``path``, and whether there was more."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        fd = self._open(path, pid)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                # One byte past the limit tells a cut file from one of exactly limit bytes.
                want = min(_CHUNK, limit + 1 - size)
                try:
                    chunk = os.read(fd, want)
                except BlockingIOError:
                    break  # a file that says "later" (none in procfs) has said all for now
                except OSError as exc:
                    raise self._error(path, pid, exc) from None
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
        finally:
            os.close(fd)
        data = b"".join(chunks)
        return data[:limit], size > limit

    def _readlink(self, pid: int, name: str) -> str | None:
        """The target of ``<mount>/<pid>/<name>``; None when the process exists without one."""
        path = self._path(pid, name)
        try:
            return os.readlink(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT and self._pid_exists(pid):
                return None  # a kernel thread's exe, a zombie's exe and cwd
            raise self._error(path, pid, exc) from None


def _match(
    buffer: bytearray,
    start: int,
    end: int,
    wanted: list[tuple[str, bytes]],
    found: dict[str, str],
) -> int:
    """Compare each NUL-terminated entry of ``buffer[start:end]`` with ``wanted``, in place.

    Return where the first entry whose NUL has not arrived yet begins.
    """
    while (nul := buffer.find(b"\0", start, end)) >= 0:
        _compare(buffer, start, nul, wanted, found)
        start = nul + 1
    return start


def _compare(
    buffer: bytearray,
    start: int,
    end: int,
    wanted: list[tuple[str, bytes]],
    found: dict[str, str],
) -> None:
    """Keep the entry ``buffer[start:end]`` in ``found`` if it sets a wanted name not yet set.

    Only a match's value is copied out of the buffer.
    """
    for name, prefix in wanted:
        if name not in found and buffer.startswith(prefix, start, end):
            found[name] = os.fsdecode(bytes(buffer[start + len(prefix) : end]))
            return


def _raw_lines(data: bytes, truncated: bool) -> list[bytes]:
    lines = data.split(b"\n")
    if truncated or not lines[-1]:
        lines.pop()  # a cut last line, or the empty string after the last newline
    return lines


def _lines(data: bytes, truncated: bool) -> list[str]:
    return [os.fsdecode(line) for line in _raw_lines(data, truncated) if line]


def _mapping(line: bytes) -> Mapping | None:
    """One line of maps as a Mapping, or None for one that names no file."""
    fields = line.split(b" ", 5)
    if len(fields) < 6:
        return None
    raw_path = fields[5].lstrip(b" ")
    if not raw_path.startswith(b"/"):
        return None  # anonymous, [heap], [stack], [vdso], [anon:name]...
    try:
        start_text, _, end_text = fields[0].partition(b"-")
        major, _, minor = fields[3].partition(b":")
        start, end = int(start_text, 16), int(end_text, 16)
        offset = int(fields[2], 16)
        dev = (int(major, 16), int(minor, 16))
        inode = int(fields[4])
    except ValueError:
        return None
    path = os.fsdecode(raw_path).replace("\\012", "\n")
    if inode == 0 or path.startswith(_PSEUDO_PREFIXES):
        return None
    deleted = path.endswith(_DELETED)
    if deleted:
        path = path[: -len(_DELETED)]
    return Mapping(
        start=start,
        end=end,
        perms=fields[1].decode("ascii", "replace"),
        offset=offset,
        dev=dev,
        inode=inode,
        path=path,
        deleted=deleted,
    )


def _strerror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
