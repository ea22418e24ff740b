"""One target of a host: the facts of one environment, taken with the host's platform and
advisory database, reusing its previous facts where its directories did not change.

A target whose paths cannot be read keeps its last good snapshot and counts the error.
Its files are read through a :class:`~exporter.filesystem.FileSystem`: the host's own
for a configured environment, a process's root for a discovered one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from exporter.collectors.installed import RACY_SECONDS
from exporter.collectors.python import (
    PythonInfo,
    collect_environment_python,
    find_environment_config,
)
from exporter.config import CommitConfig, Config
from exporter.filesystem import HOST, FileSystem
from exporter.snapshot import Identity, Snapshot, Sources, take_snapshot
from exporter.sources.environments import TargetSpec, TargetUnreadable, site_directories

UNKNOWN_PYTHON = PythonInfo("unknown", "unknown", "unknown", "unknown", "unknown", "unknown")
_PYTHON_IN_PATH = re.compile(r"(?:^|/)(pypy|python)(\d+)\.(\d+)(?:/|$)")


class PythonStamp(NamedTuple):
    """The ``pyvenv.cfg`` a target's Python was read from, for the given directories."""

    directories: tuple[str, ...]
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the host: where it is, its last good facts, and its failures."""

    spec: TargetSpec
    snapshot: Snapshot | None  # None until its paths could be read once
    directories: tuple[str, ...] = ()  # what was scanned: site-packages directories
    errors: int = 0  # refreshes in which its paths could not be read
    last_error: str | None = None  # the latest refresh's failure; None when it succeeded
    python_stamp: PythonStamp | None = None  # what the Python was read from, to reuse it
    # Reused while they hold, so that an unchanged target costs its stats:
    layout: Layout | None = None  # what its directories were found from
    base_config: Config | None = None  # the host's config the next three were made with
    target_config: Config | None = None
    identity: Identity | None = None

    @property
    def name(self) -> str:
        """The target's name, as in the ``target`` label."""
        return self.spec.name


def take_target(
    spec: TargetSpec,
    config: Config,
    identity: Identity,
    own: Snapshot,
    previous: Target | None,
    sources: Sources,
    *,
    fs: FileSystem = HOST,
    python_hint: PythonInfo | None = None,
) -> Target:
    """One target's facts, its files read through ``fs``; ``python_hint`` is the Python a
    source found when the target's directories do not say (a process's interpreter)."""
    if previous is not None and previous.spec != spec:
        previous = None  # reconfigured under the same name: nothing carries over
    layout = previous.layout if previous is not None else None
    if layout is not None and layout.holds(sources.clock(), fs):
        directories = previous.directories if previous is not None else ()
    else:
        try:
            directories = site_directories(spec.paths, fs=fs)
        except TargetUnreadable as exc:
            return Target(
                spec,
                previous.snapshot if previous else None,
                previous.directories if previous else (),
                errors=(previous.errors if previous else 0) + 1,
                last_error=str(exc),
                python_stamp=previous.python_stamp if previous else None,
            )
        layout = Layout.of(spec.paths, directories, fs)
    python, stamp = _target_python(directories, previous, fs, python_hint)
    if (
        previous is not None
        and previous.base_config is config
        and previous.target_config is not None
        and previous.identity is not None
        and previous.directories == directories
    ):
        target_config, identity_here = previous.target_config, previous.identity
    else:
        target_config = dataclasses.replace(
            config,
            modules=dataclasses.replace(config.modules, source="installed", paths=directories),
            commit=CommitConfig(
                value=spec.commit.value,
                env=spec.commit.env,
                file=spec.commit.file,
                git_dir=spec.commit.git_dir,
            ),
            app=spec.app,
        )
        identity_here = target_identity(identity, spec.name)
    earlier = previous.snapshot if previous and previous.directories == directories else None
    snapshot = take_snapshot(
        target_config,
        identity_here,
        earlier,
        sources,
        advisories=own.advisories if config.advisories.paths else None,
        host_platform=own.platform,
        python=python,
        fs=fs,
    )
    return Target(
        spec,
        snapshot,
        directories,
        errors=previous.errors if previous else 0,
        last_error=None,
        python_stamp=stamp,
        layout=layout,
        base_config=config,
        target_config=target_config,
        identity=identity_here,
    )


@dataclass(frozen=True, slots=True)
class Layout:
    """What decides a target's site-packages directories, stamped: its configured paths,
    their ``lib`` and ``lib64``, and the parents of the directories found. While no stamp
    moves, the directories are the same (an unchanged target costs these stats).

    A path is left out when its parent is stamped and it is missing (making it moves the
    parent's stamp) or is a directory stamped already under another name (``lib64``, a
    link to ``lib``: making it anything else replaces the link, in the parent)."""

    paths: tuple[str, ...]
    stamps: tuple[int, ...]
    newest: float  # the newest change time seen, in seconds

    @classmethod
    def of(
        cls, configured: Sequence[str], directories: Sequence[str], fs: FileSystem = HOST
    ) -> Layout:
        """Stamp the paths that ``site_directories`` looked at for ``configured``."""
        looked_at = dict.fromkeys(
            [
                *configured,
                *(os.path.join(p, lib) for p in configured for lib in ("lib", "lib64")),
                *(os.path.dirname(d) for d in directories),
            ]
        )
        paths: list[str] = []
        stamps: list[int] = []
        seen: set[tuple[int, int]] = set()
        for path in looked_at:
            try:
                info = fs.stat(path)
            except OSError:
                if os.path.dirname(path) in looked_at:
                    continue  # making it moves its parent's stamp, which is taken
                paths.append(path)
                stamps.append(-1)
                continue
            if (info.st_dev, info.st_ino) in seen and os.path.dirname(path) in looked_at:
                # The same directory under another name (lib64, a link to lib): making it
                # something else replaces the link, which moves its parent's stamp.
                continue
            seen.add((info.st_dev, info.st_ino))
            paths.append(path)
            stamps.append(info.st_ctime_ns)
        return cls(tuple(paths), tuple(stamps), max(stamps, default=0) / 1e9)

    def holds(self, now: float, fs: FileSystem = HOST) -> bool:
        """Whether nothing moved, and the last change is older than the racy window."""
        if now - self.newest <= RACY_SECONDS:
            return False
        stat_ = fs.stat
        for path, stamp in zip(self.paths, self.stamps, strict=True):
            try:
                if stat_(path).st_ctime_ns != stamp:
                    return False
            except OSError:
                if stamp != -1:
                    return False
        return True


def target_identity(identity: Identity, name: str) -> Identity:
    """The host's identity as a target's: its own server id (and so its SBOM's serial
    number), derived from the host's and the name, stable for the life of the process."""
    server_id = str(uuid.uuid5(uuid.UUID(identity.server_id), name))
    return dataclasses.replace(identity, server_id=server_id)


def _target_python(
    directories: tuple[str, ...],
    previous: Target | None,
    fs: FileSystem = HOST,
    hint: PythonInfo | None = None,
) -> tuple[PythonInfo, PythonStamp | None]:
    """The target's Python: from its ``pyvenv.cfg`` (reused while that file's size and mtime
    hold), else ``hint``, else from a ``pythonX.Y`` in its paths, else unknown. Never the
    exporter's own."""
    stamp = previous.python_stamp if previous is not None else None
    if (
        previous is not None
        and previous.snapshot is not None
        and stamp is not None
        and stamp.directories == directories
        and _stat(stamp.path, fs) == (stamp.size, stamp.mtime_ns)
    ):
        return previous.snapshot.python, stamp
    pyvenv_cfg = find_environment_config(directories, fs=fs)
    if pyvenv_cfg is not None:
        found = collect_environment_python(pyvenv_cfg, fs=fs)
        if found is not None:
            stat = _stat(str(pyvenv_cfg), fs)
            return found, PythonStamp(directories, str(pyvenv_cfg), *stat)
    return hint or _python_from_paths(directories), None


def _python_from_paths(directories: Sequence[str]) -> PythonInfo:
    """``lib/python3.11/site-packages`` says 3.11, not which 3.11: the patch level is unknown."""
    for directory in directories:
        match = _PYTHON_IN_PATH.search(Path(directory).as_posix())
        if match:
            kind, major, minor = match.groups()
            return PythonInfo(
                version_string=f"{major}.{minor} (from the path {directory})",
                implementation="PyPy" if kind == "pypy" else "CPython",
                major=major,
                minor=minor,
                patchlevel="unknown",
                version=f"{major}.{minor}",
            )
    return UNKNOWN_PYTHON


def _stat(path: str, fs: FileSystem) -> tuple[int, int]:
    try:
        info = fs.stat(path)
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)
