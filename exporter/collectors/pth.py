"""The path lines of a ``.pth`` file, read as site.py reads them and never executed.

site.py appends to ``sys.path`` each line of a site directory's ``.pth`` files
that names an existing path (relative lines are relative to the ``.pth``'s own
directory) and executes each line that starts with ``import``. Here the path
lines are returned in order and the ``import`` lines are passed over: nothing
in a ``.pth`` file is ever run or interpreted beyond that. Whether a named path
exists is left to the caller, which stats every path it scans anyway.

Reads are bounded (``MAX_PTH_BYTES``, ``MAX_PTH_LINES``) and safe against
hostile files: opened with ``O_NONBLOCK`` (a FIFO cannot block the refresh) and
read only when a regular file. The file is opened through a
:class:`~exporter.filesystem.FileSystem`, so that a target's ``.pth`` files are
read inside its root.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from exporter.filesystem import HOST, FileSystem

MAX_PTH_BYTES = 64 * 1024  # easy-install.pth naming a hundred eggs is under 8 KiB
MAX_PTH_LINES = 1000


@dataclass(frozen=True, slots=True)
class PthLines:
    """What a ``.pth`` file names: absolute paths in file order, and what was passed over.

    ``problem`` says why part or all of the file was not used, or is empty;
    ``retry`` is true when opening or reading it failed (it may be
    readable next time without its mtime changing, e.g. after a ``chmod``).
    """

    paths: tuple[str, ...]
    problem: str = ""
    retry: bool = False


def read_pth(path: str, *, fs: FileSystem = HOST) -> PthLines:
    """The path lines of the ``.pth`` file at ``path`` (read through ``fs``), made absolute
    as site.py makes them: paths as the target sees them."""
    try:
        fd = fs.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return PthLines((), "not a regular file")
            data = _read_bounded(fd, MAX_PTH_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return PthLines((), f"cannot read: {exc.strerror or exc}", retry=True)
    problem = ""
    if len(data) > MAX_PTH_BYTES:
        # Use the whole lines within the bound; a line cut in two names nothing.
        data = data[: data.rfind(b"\n", 0, MAX_PTH_BYTES) + 1]
        problem = f"longer than {MAX_PTH_BYTES} bytes: the rest is ignored"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return PthLines((), "not valid UTF-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # universal newlines
    if lines and not lines[-1]:
        lines.pop()
    if len(lines) > MAX_PTH_LINES:
        lines = lines[:MAX_PTH_LINES]
        problem = f"more than {MAX_PTH_LINES} lines: the rest is ignored"
    return PthLines(_path_lines(os.path.dirname(path), lines), problem)


def _read_bounded(fd: int, limit: int) -> bytes:
    parts = []
    size = 0
    while size < limit and (chunk := os.read(fd, limit - size)):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _path_lines(sitedir: str, lines: list[str]) -> tuple[str, ...]:
    """site.addpackage's reading of ``lines``, without its ``exec``."""
    paths = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(("import ", "import\t")):
            continue  # site.py executes these; an exporter never does
        line = line.rstrip()
        if "\0" in line:
            continue  # os.path.exists is false for it, so site.py adds nothing
        paths.append(os.path.abspath(os.path.join(sitedir, line)))
    return tuple(paths)
