"""The one in-root path resolver: every read of a target's files goes through it.

A discovered process is read through its root, ``/proc/<pid>/root``. Plain
``open("/proc/<pid>/root/" + path)`` is not enough: the kernel follows the
magic link to the target's root, then resolves every symlink found below it
against *this* process's root, so a link ``-> /etc/x`` in a container reads
the host's ``/etc/x``. :class:`RootFileSystem` resolves paths as the target
itself would, with the semantics of ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS)``: an absolute link restarts at the root, ``..`` stops
at the root, procfs magic links (``/proc/<pid>/root``, ``/proc/<pid>/fd/*``,
``exe``, ``cwd``, ``ns/*``) are refused with ELOOP, at most 40 links per
path.

Two implementations give the same answers:

* ``openat2(2)`` through ctypes, where the kernel has it (Linux 5.6+) and no
  seccomp filter refuses it (probed once: ENOSYS or EPERM mean "absent");
* a resolver of its own, component by component: every component opened with
  ``O_PATH | O_NOFOLLOW`` relative to the directory before it, every link read
  with ``readlinkat`` and its text pushed back onto the components still to
  walk (an absolute one restarting at the root), ``..`` taken lexically from
  the components walked so far and re-walked from the root, so that nothing
  the kernel follows by itself ever leaves the root. A component swapped for a
  link while it is walked makes the call fail (ENOTDIR, ELOOP), never escape.

A RootFileSystem holds one ``O_PATH`` descriptor of its root, opened when it is
made and closed by :meth:`RootFileSystem.close` (or ``with``): the root of a
process that exits or whose pid is reused stays the one it was opened on, and
each operation opens and closes at most two descriptors of its own.

Paths are absolute as the target sees them; a relative path is taken from the
root. Only reads: :meth:`RootFileSystem.open` refuses flags that write or
create (ValueError).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import stat
import warnings
from typing import Final

from exporter.filesystem import HOST, FileSystem, NotRegularFile

__all__ = [
    "HOST",
    "MAXSYMLINKS",
    "FileSystem",
    "FileTooLarge",
    "NotRegularFile",
    "RootFileSystem",
    "openat2_available",
    "read_bounded",
]

# The kernel's limit (include/linux/namei.h): the 41st link of one resolution is ELOOP.
MAXSYMLINKS: Final = 40
_PATH_MAX: Final = 4096  # bytes, the terminating NUL included

RESOLVE_NO_MAGICLINKS: Final = 0x02  # include/uapi/linux/openat2.h
RESOLVE_IN_ROOT: Final = 0x10
_RESOLVE: Final = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

# __NR_openat2, only where checked against the kernel's headers: 437 in
# asm/unistd_64.h (x86_64), asm/unistd_32.h (i386) and asm-generic/unistd.h
# (aarch64, riscv64, loongarch64). A wrong number would call another syscall,
# so any other machine (and x32, whose number differs) uses the fallback.
_OPENAT2_NR: Final = {
    ("x86_64", 8): 437,
    ("amd64", 8): 437,
    ("i386", 4): 437,
    ("i686", 4): 437,
    ("aarch64", 8): 437,
    ("arm64", 8): 437,
    ("riscv64", 8): 437,
    ("loongarch64", 8): 437,
}

_PROC_SUPER_MAGIC: Final = 0x9FA0  # include/uapi/linux/magic.h
_PROC_ROOT_INO: Final = 1  # fs/proc/internal.h: the inode of a procfs mount's root
_WRITE_FLAGS: Final = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_EXCL
_TMPFILE: Final = getattr(os, "O_TMPFILE", 0)
_PATH_FLAGS: Final = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
_WALK_DIR: Final = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_EAGAIN_RETRIES: Final = 4
_AT_FDCWD: Final = -100


class FileTooLarge(OSError):
    """A file longer than the limit its reader accepts (errno EFBIG); nothing of it is returned."""


class _OpenHow(ctypes.Structure):
    """``struct open_how`` (include/uapi/linux/openat2.h)."""

    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


class _Libc:
    """The two libc entry points used: ``syscall`` (for openat2) and ``fstatfs``."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long
        self.syscall.argtypes = (
            ctypes.c_long,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
        )
        self.fstatfs = libc.fstatfs
        self.fstatfs.restype = ctypes.c_int
        self.fstatfs.argtypes = (ctypes.c_int, ctypes.c_void_p)


@functools.cache
def _libc() -> _Libc | None:
    try:
        return _Libc()
    except (OSError, AttributeError):
        return None


@functools.cache
def _how(flags: int) -> _OpenHow:
    # Built once per set of flags: the kernel only reads it, so threads share it.
    return _OpenHow(flags, 0, _RESOLVE)


_HOW_SIZE: Final = ctypes.sizeof(_OpenHow)


def _openat2_nr() -> int | None:
    return _OPENAT2_NR.get((platform.machine().lower(), ctypes.sizeof(ctypes.c_void_p)))


def _openat2(libc: _Libc, nr: int, dirfd: int, raw: bytes, flags: int, path: str) -> int:
    """openat2(dirfd, raw, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS); OSError on failure."""
    how = _how(flags)
    for _ in range(_EAGAIN_RETRIES):
        fd: int = libc.syscall(nr, dirfd, raw, ctypes.byref(how), _HOW_SIZE)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:  # EAGAIN: a rename or mount raced a "..": try again
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


@functools.cache
def openat2_available() -> bool:
    """Whether openat2(2) with RESOLVE_IN_ROOT works here (probed once, on the first call).

    False on kernels before 5.6 (ENOSYS), under a seccomp filter that refuses it
    (ENOSYS or EPERM, as some container runtimes do), on machines whose syscall
    number is not known here, or without a loadable libc.
    """
    libc, nr = _libc(), _openat2_nr()
    if libc is None or nr is None:
        return False
    try:
        fd = _openat2(libc, nr, _AT_FDCWD, b"/", _WALK_DIR, "/")
    except OSError:
        return False
    os.close(fd)
    return True


def _on_procfs(fd: int) -> bool:
    """Whether ``fd`` lies on a procfs (fstatfs's f_type); False when it cannot tell."""
    libc = _libc()
    if libc is None:
        return False
    buf = ctypes.create_string_buffer(256)  # struct statfs: 120 bytes on 64-bit, f_type first
    if libc.fstatfs(fd, buf) != 0:
        return False
    return bool(ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF == _PROC_SUPER_MAGIC)


def _is_magic_link_dir(fd: int) -> bool:
    """Whether links in the directory ``fd`` are procfs magic links.

    procfs keeps its ordinary links (``self``, ``thread-self``, ``mounts``,
    ``net``) at its root; the links below it (``<pid>/root``, ``fd/*``,
    ``exe``, ``cwd``, ``ns/*``, ``map_files/*``) are magic: the kernel jumps to
    an object instead of reading a path, which RESOLVE_NO_MAGICLINKS refuses.
    """
    return _on_procfs(fd) and os.fstat(fd).st_ino != _PROC_ROOT_INO


def _eloop(path: str) -> OSError:
    return OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


class RootFileSystem:
    """A FileSystem inside a root directory: ``/proc/<pid>/root``, or any directory for tests.

    ``use_openat2=False`` forces the pure-Python resolver even where openat2
    works (tests run every case through both); :attr:`uses_openat2` says which
    one is used. Raises OSError when ``root`` cannot be opened as a directory.
    """

    __slots__ = ("_fd", "_libc", "_nr", "root")

    def __init__(self, root: str, *, use_openat2: bool = True) -> None:
        self.root = root
        self._fd = -1
        self._libc: _Libc | None = None
        self._nr = 0
        if use_openat2 and openat2_available():
            self._libc, self._nr = _libc(), _openat2_nr() or 0
        # Follows /proc/<pid>/root, the one magic link meant: it names the target's root.
        self._fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    @property
    def uses_openat2(self) -> bool:
        """Whether operations go through openat2(2) rather than the pure-Python resolver."""
        return self._libc is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._fd < 0

    def close(self) -> None:
        """Close the root's descriptor; idempotent. No operation may be running."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> RootFileSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        how = "openat2" if self.uses_openat2 else "resolver"
        return f"RootFileSystem({self.root!r}, {how}{', closed' if self.closed else ''})"

    # -- the FileSystem protocol ------------------------------------------------

    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        """An fd for ``path`` resolved inside the root, opened with ``flags``; the caller closes it.

        ``O_NONBLOCK``, ``O_NOFOLLOW``, ``O_DIRECTORY``, ``O_PATH`` and the like are
        passed through (with ``O_PATH``, as open(2) does, only ``O_DIRECTORY`` and
        ``O_NOFOLLOW`` count); ``O_CLOEXEC``, and ``O_NOCTTY`` without ``O_PATH``, are
        always added. Flags that
        write or create raise ValueError. Raises OSError (ELOOP for a loop, more than
        40 links or a magic link; FileNotFoundError for a dangling link).
        """
        if flags & _WRITE_FLAGS or (_TMPFILE and flags & _TMPFILE == _TMPFILE):
            raise ValueError(f"a target's files are only read: flags {flags:#o} write")
        if flags & os.O_PATH:
            # open(2) ignores the other flags beside O_PATH; openat2(2) refuses them (EINVAL).
            return self._open(path, flags & _PATH_FLAGS | os.O_CLOEXEC)
        return self._open(path, flags | os.O_CLOEXEC | os.O_NOCTTY)

    def stat(self, path: str) -> os.stat_result:
        """``path``'s status, every link followed inside the root."""
        fd = self._open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result:
        """``path``'s status, a final link not followed (the links before it are)."""
        fd = self._open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        """The names in the directory ``path`` (not ``.`` nor ``..``), in no particular order."""
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        """What the link ``path`` holds, as written, links before it followed; EINVAL if none."""
        fd = self._open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            return os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): the link fd names
        finally:
            os.close(fd)

    def realpath(self, path: str) -> str:
        """The absolute path inside the root, as the target sees it, with every link resolved.

        Strict: raises OSError when a component is missing (FileNotFoundError), not a
        directory, or a loop (ELOOP). Always the pure-Python resolver: the kernel
        gives an fd, not its name inside another mount namespace.
        """
        parts, name, dirfd = self._walk(self._encode(path), path, follow=True)
        self._release(dirfd)
        if name != b".":
            parts.append(name)
        return "/" + "/".join(os.fsdecode(p) for p in parts)

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a directory, links followed in the root; False on any OSError."""
        try:
            return stat.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is a regular file, links followed in the root; False on any OSError."""
        try:
            return stat.S_ISREG(self.stat(path).st_mode)
        except OSError:
            return False

    # -- resolution ---------------------------------------------------------------

    def _encode(self, path: str) -> bytes:
        if self._fd < 0:
            raise ValueError(f"operation on a closed {self!r}")
        raw = os.fsencode(path)
        if b"\0" in raw:
            raise ValueError("embedded null byte")
        if not raw:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if len(raw) >= _PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
        return raw

    def _open(self, path: str, flags: int) -> int:
        raw = self._encode(path)
        libc = self._libc
        if libc is not None:
            try:
                return _openat2(libc, self._nr, self._fd, raw, flags, path)
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
                # Renames kept racing a "..": the resolver gives the same answer.
        _, name, dirfd = self._walk(raw, path, follow=not flags & os.O_NOFOLLOW)
        try:
            # O_NOFOLLOW: the walk left a final link only when the caller asked not to
            # follow it; if one was swapped in since, this fails instead of following.
            return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dirfd)
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None
        finally:
            self._release(dirfd)

    def _release(self, fd: int) -> None:
        if fd != self._fd:
            os.close(fd)

    def _reopen(self, parts: list[bytes]) -> int:
        """A fresh O_PATH fd of the directory ``parts`` walks to from the root, links refused."""
        cur = self._fd
        try:
            for part in parts:
                nxt = os.open(part, _WALK_DIR, dir_fd=cur)
                self._release(cur)
                cur = nxt
        except BaseException:
            self._release(cur)
            raise
        return cur

    def _walk(self, raw: bytes, path: str, *, follow: bool) -> tuple[list[bytes], bytes, int]:
        """Resolve ``raw`` inside the root up to its last component.

        Returns the components from the root to the last component's directory,
        the last component's name (``.`` when the path ends at a directory: a
        root, a ``..``, a trailing slash) and an O_PATH fd of that directory
        (the root's own fd or one the caller releases). The last component exists
        and, when ``follow``, is no link.
        """
        pending = raw.split(b"/")
        pending.reverse()  # popped from the end: the next component is pending[-1]
        parts: list[bytes] = []
        cur = self._fd
        links = 0
        try:
            while pending:
                name = pending.pop()
                last = not pending
                if name in (b"", b"."):
                    if last:
                        return parts, b".", cur
                    continue
                if name == b"..":
                    if parts:
                        parts.pop()
                        self._release(cur)
                        cur = self._fd  # the root until _reopen succeeds
                        cur = self._reopen(parts)
                    if last:
                        return parts, b".", cur
                    continue
                if last:
                    if not follow:
                        os.lstat(name, dir_fd=cur)  # it must exist
                        return parts, name, cur
                    try:
                        text = os.readlink(name, dir_fd=cur)
                    except OSError as e:
                        if e.errno != errno.EINVAL:
                            raise
                        return parts, name, cur  # exists, and is no link
                else:
                    try:
                        nxt = os.open(name, _WALK_DIR, dir_fd=cur)
                    except OSError as e:
                        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                            raise
                        try:
                            text = os.readlink(name, dir_fd=cur)
                        except OSError as e2:
                            if e2.errno == errno.EINVAL:  # no link: a file where a directory goes
                                raise NotADirectoryError(
                                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), path
                                ) from None
                            raise
                    else:
                        self._release(cur)
                        cur = nxt
                        parts.append(name)
                        continue
                # A link to follow: its text goes back onto the components to walk.
                links += 1
                if links > MAXSYMLINKS or _is_magic_link_dir(cur):
                    raise _eloop(path)
                if text.startswith(b"/"):
                    parts.clear()
                    self._release(cur)
                    cur = self._fd
                pending.extend(reversed(text.split(b"/")))
            return parts, b".", cur  # not reached: the last component returns
        except OSError as e:
            self._release(cur)
            raise OSError(e.errno, e.strerror, path) from None  # the whole path, not a component
        except BaseException:
            self._release(cur)
            raise


def read_bounded(fs: FileSystem, path: str, limit: int) -> bytes:
    """The whole content of the regular file ``path`` read through ``fs``, at most ``limit`` bytes.

    Opened with ``O_NONBLOCK`` and read only when ``fstat`` says it is a regular
    file, so that neither a FIFO nor a device planted in its place can block or
    flood the reader: anything else raises :class:`NotRegularFile`. A file longer
    than ``limit`` raises :class:`FileTooLarge` (errno EFBIG) rather than returning
    a truncated prefix that would parse as something it is not; callers that want
    a prefix use :func:`exporter.filesystem.read_regular`. Both are OSErrors, so a
    collector's ``except OSError`` loses that one fact and goes on. ValueError
    when ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    fd = fs.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, f"not a regular file ({_kind(st.st_mode)})", path)
        if st.st_size > limit:
            raise _too_large(path, limit)
        chunks: list[bytes] = []
        size = 0
        # One byte more than the limit tells a file that grew (or a procfs file,
        # whose st_size is 0) past it; reads stop there whatever the file holds.
        while size <= limit and (chunk := os.read(fd, min(limit + 1 - size, 1 << 20))):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _too_large(path, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: str, limit: int) -> FileTooLarge:
    return FileTooLarge(errno.EFBIG, f"larger than the limit of {limit} bytes", path)


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symlink"),
    ):
        if test(mode):
            return kind
    return f"mode {mode:#o}"


def _conforms(fs: RootFileSystem) -> FileSystem:
    return fs  # mypy checks that a RootFileSystem is a FileSystem
