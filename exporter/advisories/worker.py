"""Loading the advisory database in a child process, for the daemon.

Parsing 20,000 records takes most of a second of pure Python. In a thread it
competes with the event loop for the GIL, which shows in every request's
latency; and the parsed documents, freed as it goes, leave the heap
fragmented, so the process keeps twice the database's size after a reload.
A child process parses, then sends the reduced database back as pickled
chunks of a few hundred packages; the parent unpickles one chunk at a time,
letting the event loop in between, and holds only the compact result.

``python -m exporter.advisories.worker PATH...`` is the child: it
writes the frames to standard output, or the LoadError's message to standard
error with exit status 3.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import BinaryIO

from exporter.advisories.database import (
    AdvisoryDatabase,
    Entry,
    LoadError,
    load_in_this_process,
)

CHUNK_ENTRIES = 250  # advisory entries per frame: well under 1 ms of unpickling
CHILD_TIMEOUT_SECONDS = 600.0
CHILD_NICENESS = 19
_EXIT_LOAD_ERROR = 3


def load_in_child(paths: Sequence[str]) -> AdvisoryDatabase:
    """Load ``paths`` in a child Python; raise LoadError as the in-process load would."""
    # The child writes to a temporary file, not a pipe: reading a pipe would end in one
    # 16 MB join with the GIL held; a file is read frame by frame. Where no temporary
    # file can be made (a read-only container without a writable /tmp), a pipe it is.
    try:
        frames = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the with below
    except OSError:
        frames = None
    with frames if frames is not None else contextlib.nullcontext():
        try:
            done = subprocess.run(
                [sys.executable, "-m", __name__, "--", *paths],
                stdin=subprocess.DEVNULL,
                stdout=frames if frames is not None else subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=CHILD_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LoadError(f"the loader process failed: {exc}") from None
        if done.returncode != 0:
            message = done.stderr[-65536:].decode("utf-8", "replace").strip().splitlines()
            if done.returncode == _EXIT_LOAD_ERROR and message:
                raise LoadError(message[-1])
            raise LoadError(
                f"the loader process exited with status {done.returncode}: "
                f"{message[-1] if message else 'no message'}"
            )
        if frames is None:
            return _receive(io.BytesIO(done.stdout))
        frames.seek(0)
        return _receive(frames)


def _receive(stream: BinaryIO) -> AdvisoryDatabase:
    """Unpickle the frames one at a time, releasing the GIL between them."""
    enabled = gc.isenabled()
    gc.disable()  # the same reasons as the in-process load: see load_in_this_process
    try:
        advisories, skipped, examples, newest, chunks = pickle.load(stream)
        by_package: dict[str, tuple[Entry, ...]] = {}
        for _ in range(chunks):
            by_package.update(pickle.load(stream))
            time.sleep(0)  # let the event loop in between two chunks
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as exc:
        raise LoadError(f"the loader process sent something unreadable: {exc!r}") from None
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return AdvisoryDatabase(
        by_package=by_package,
        advisories=advisories,
        skipped=skipped,
        skipped_examples=tuple(examples),
        newest_modified=newest,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The child: load the paths given and write the frames to standard output."""
    args = list(sys.argv[1:] if argv is None else argv)
    paths = args[1:] if args[:1] == ["--"] else args
    with contextlib.suppress(OSError):
        # Background work: the scheduler should run the daemon's event loop first.
        os.nice(CHILD_NICENESS)
    try:
        database = load_in_this_process(paths)
    except LoadError as exc:
        print(str(exc), file=sys.stderr)
        return _EXIT_LOAD_ERROR
    chunks: list[list[tuple[str, tuple[Entry, ...]]]] = [[]]
    size = 0
    for item in database.by_package.items():
        if size >= CHUNK_ENTRIES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item[1])
    header = (
        database.advisories,
        database.skipped,
        database.skipped_examples,
        database.newest_modified,
        len(chunks),
    )
    out = sys.stdout.buffer
    pickle.dump(header, out, protocol=pickle.HIGHEST_PROTOCOL)
    for chunk in chunks:
        pickle.dump(dict(chunk), out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
