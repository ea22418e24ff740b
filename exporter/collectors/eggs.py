"""Zip files on the path: zipped eggs (``setup.py install``) and any zip ``importlib.metadata``
would look into.

``importlib.metadata`` lists a zip path entry's top-level names and takes
metadata from its ``*.dist-info`` and ``*.egg-info`` entries, and from its
``EGG-INFO`` when the zip's name ends in ``.egg``; so does this module.

A zip is hostile input like any file on the path: it is opened with
``O_NONBLOCK`` and only when a regular file, and its central directory (which
``zipfile`` reads and parses whole on opening) is sized from the end record
first and refused above ``MAX_ZIP_DIRECTORY_BYTES``. Members are read through
``zipfile`` with a byte count, so a compressed bomb inflates no further than
the caller asks. The zip is opened through a :class:`~exporter.filesystem.FileSystem`,
so that a target's eggs are read inside its root.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from exporter.filesystem import HOST, FileSystem

MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024  # 40,000 members of 100-byte names
_END = struct.Struct("<4s4H2LH")  # zipfile's structEndArchive, 22 bytes
_END_MAGIC = b"PK\x05\x06"
_ZIP64_LOCATOR_MAGIC = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_MAX_COMMENT = 0xFFFF


class NotAZip(Exception):
    """A file with no zip end record: ``importlib.metadata`` passes it over silently."""


class ArchiveError(Exception):
    """A zip that cannot be read; the message says why. ``retry`` is true when the file
    could not be opened or read (it may be readable next time with the same mtime)."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


def is_egg(path: str) -> bool:
    """Whether ``path`` is named as an egg, which ``importlib.metadata`` reads ``EGG-INFO`` of."""
    return path.lower().endswith(".egg")


@contextmanager
def open_archive(path: str, *, fs: FileSystem = HOST) -> Iterator[zipfile.ZipFile]:
    """The zip at ``path`` (opened through ``fs``), its central directory read and bounded.

    Raises NotAZip for a file without a zip end record, ArchiveError for a file
    that is not regular, cannot be read, or is a zip that is too large or broken.
    """
    try:
        fd = fs.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ArchiveError(f"cannot open: {exc.strerror or exc}", retry=True) from None
    try:
        info = os.fstat(fd)
        file = os.fdopen(fd, "rb") if stat.S_ISREG(info.st_mode) else None
    except OSError as exc:
        os.close(fd)
        raise ArchiveError(f"cannot read: {exc.strerror or exc}", retry=True) from None
    if file is None:
        os.close(fd)
        raise ArchiveError("not a regular file")
    with file:
        try:
            size = _directory_size(file, info.st_size)
        except OSError as exc:
            raise ArchiveError(f"cannot read: {exc.strerror or exc}", retry=True) from None
        if size > MAX_ZIP_DIRECTORY_BYTES:
            raise ArchiveError(f"central directory larger than {MAX_ZIP_DIRECTORY_BYTES} bytes")
        try:
            archive = zipfile.ZipFile(file)
        except Exception as exc:  # zipfile raises many kinds on a hostile archive
            raise ArchiveError(f"not a readable zip: {exc}") from None
        with archive:
            yield archive


def metadata_members(names: Iterable[str], egg: bool) -> list[str]:
    """The members ``importlib.metadata`` takes metadata from, given a zip's member names.

    ``x.dist-info/METADATA``; ``x.egg-info/PKG-INFO``, or ``x.egg-info`` itself
    when it is a file; and ``EGG-INFO/PKG-INFO`` when the zip is an ``egg``.
    Only top-level entries count: metadata vendored deeper inside is not an
    installed distribution. A member named here may be missing from the zip.
    """
    members = set(names)
    tops = sorted({name.partition("/")[0] for name in members})
    found = []
    for top in tops:
        low = top.lower()
        if low.endswith(".dist-info"):
            found.append(f"{top}/METADATA")
        elif low.endswith(".egg-info"):
            found.append(top if top in members else f"{top}/PKG-INFO")
        elif egg and low == "egg-info":
            found.append(f"{top}/PKG-INFO")
    return found


def _directory_size(file: BinaryIO, file_size: int) -> int:
    """The central directory's size, from the end record zipfile itself would find."""
    if file_size < _END.size:
        raise NotAZip
    file.seek(file_size - _END.size)
    tail = file.read(_END.size)
    at = file_size - _END.size
    if not (tail.startswith(_END_MAGIC) and tail.endswith(b"\0\0")):
        # A comment follows the end record: zipfile takes the last magic in the last 64 KiB.
        start = max(file_size - _MAX_COMMENT - _END.size, 0)
        file.seek(start)
        tail = file.read(file_size - start)
        found = tail.rfind(_END_MAGIC)
        if found < 0 or len(tail) - found < _END.size:
            raise NotAZip
        at = start + found
        tail = tail[found : found + _END.size]
    if at >= _ZIP64_LOCATOR_SIZE:
        file.seek(at - _ZIP64_LOCATOR_SIZE)
        if file.read(4) == _ZIP64_LOCATOR_MAGIC:
            raise ArchiveError("zip64 archives are not read")
    directory_size: int = _END.unpack(tail)[5]
    return directory_size
