"""Where a target's files are read: the host's own file system, or a process's root.

Every collector that reads an environment's files takes a :class:`FileSystem`
and reads through it alone, so that a target running in another mount
namespace (a container) is read through its root with every link resolved
inside it. Paths given to a FileSystem are absolute paths as the target sees
them (``/usr/lib/python3.11/site-packages``), never prefixed with
``/proc/<pid>/root``; what a FileSystem returns (``realpath``, ``readlink``)
is such a path too.

:data:`HOST` reads the host's own files with plain ``os`` calls: its methods
are the ``os`` functions themselves where their signatures allow, so reading
through it costs an attribute lookup more than calling ``os`` directly.

This module imports nothing of the exporter: collectors import it, and never
import from ``exporter.sources``.
"""

from __future__ import annotations

import os
import stat
from typing import Final, Protocol

# What read_regular opens with: O_NONBLOCK, so that a FIFO planted where a file is
# expected cannot block a refresh (a regular file ignores the flag).
READ_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK


class FileSystem(Protocol):
    """Where a target's files are read: the host's own, or a process's root."""

    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        """An fd for ``path`` opened with ``flags``, which the caller closes; raises OSError."""
        ...

    def stat(self, path: str) -> os.stat_result:
        """``path``'s status, links followed (inside the root)."""
        ...

    def lstat(self, path: str) -> os.stat_result:
        """``path``'s status, a final link not followed."""
        ...

    def listdir(self, path: str) -> list[str]:
        """The names in the directory ``path``, in no particular order."""
        ...

    def readlink(self, path: str) -> str:
        """What the link ``path`` holds, as written."""
        ...

    def realpath(self, path: str) -> str:
        """``path`` with every link resolved, as the target sees it.

        May raise OSError when a component is missing or a loop (a process's root
        does: it is strict); HOST is ``os.path.realpath`` and does not. Callers
        handle both.
        """
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a directory, links followed; False on any OSError."""
        ...

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is a regular file, links followed; False on any OSError."""
        ...


class HostFileSystem:
    """The host's own file system: every path is read as this process sees it."""

    __slots__ = ()

    # The os functions themselves: no Python frame between a collector and the syscall.
    stat = staticmethod(os.stat)
    lstat = staticmethod(os.lstat)
    listdir = staticmethod(os.listdir)
    readlink = staticmethod(os.readlink)
    is_dir = staticmethod(os.path.isdir)
    is_file = staticmethod(os.path.isfile)

    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        """``os.open(path, flags)``: an fd the caller closes."""
        return os.open(path, flags)

    def realpath(self, path: str) -> str:
        """``os.path.realpath(path)``."""
        return os.path.realpath(path)

    def __repr__(self) -> str:
        return "HOST"


HOST: Final[HostFileSystem] = HostFileSystem()


class NotRegularFile(OSError):
    """A path that names something other than a regular file (a FIFO, a device, a directory)."""


def read_regular(fs: FileSystem, path: str, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of the regular file ``path``, read through ``fs``.

    Opened with ``O_NONBLOCK`` and read only when ``fstat`` says it is a regular
    file (NotRegularFile otherwise), so that neither a FIFO nor a device planted
    in its place can block or flood the reader. Raises OSError when it cannot be
    opened or read. The caller tells a file longer than it accepts by asking for
    one byte more than that.
    """
    fd = fs.open(path, READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile("not a regular file")
        parts = []
        size = 0
        while size < limit and (chunk := os.read(fd, min(limit - size, 1 << 20))):
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)
