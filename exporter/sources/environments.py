"""Configured environments as targets: a venv root or site-packages directories, by name."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config import (
    AppConfig,
    Config,
    EnvironmentTargetConfig,
    ModulePublish,
    TargetCommitConfig,
)
from exporter.filesystem import HOST, FileSystem

KIND_ENVIRONMENT = "environment"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What a source says of one target: its name and where its facts are."""

    name: str
    kind: str
    paths: tuple[str, ...]  # as configured: venv roots or site-packages directories
    commit: TargetCommitConfig
    app: AppConfig
    # What names the target beyond its name: (label, value) pairs for target_info, in a
    # fixed order (a discovered process's unit, container, pod, exe); none when configured.
    labels: tuple[tuple[str, str], ...] = ()
    # The target's own modules.publish; None keeps the host's (configured environments only).
    publish: ModulePublish | None = None


class TargetUnreadable(Exception):
    """A target whose configured paths cannot be read; the message says which and why."""


def environment_targets(config: Config) -> tuple[TargetSpec, ...]:
    """The targets of ``targets.environments``, in configured order."""
    global _last_specs
    last = _last_specs
    if last is not None and last[0] is config:
        return last[1]  # every refresh asks again with the same (immutable) config
    specs = tuple(_spec(target) for target in config.targets.environments)
    _last_specs = (config, specs)
    return specs


_last_specs: tuple[Config, tuple[TargetSpec, ...]] | None = None


def _spec(target: EnvironmentTargetConfig) -> TargetSpec:
    return TargetSpec(
        target.name,
        KIND_ENVIRONMENT,
        target.paths,
        target.commit,
        target.app,
        publish=target.modules.publish,
    )


def site_directories(paths: Sequence[str], *, fs: FileSystem = HOST) -> tuple[str, ...]:
    """The directories to scan for ``paths``: a venv root (it holds ``pyvenv.cfg``) becomes
    its ``lib/python*/site-packages`` and ``lib64/...`` (once each, ``lib64`` is often a
    link to ``lib``); any other directory is scanned as it is.

    Everything is looked at through ``fs``: the paths, and those returned, are as the
    target sees them. Raise TargetUnreadable when a path does not exist, is not a
    directory, cannot be listed, or is a venv root without site-packages.
    """
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for path in paths:
        try:
            is_venv = fs.is_file(os.path.join(path, "pyvenv.cfg"))
            # Listable, as opendir() checks it without reading an entry: the scan would
            # otherwise skip it silently.
            os.close(fs.open(path, os.O_RDONLY | os.O_DIRECTORY))
        except OSError as exc:
            raise TargetUnreadable(f"{path}: {exc.strerror or exc}") from None
        directories = _venv_site_packages(path, fs) if is_venv else [path]
        if not directories:
            raise TargetUnreadable(f"{path}: a virtual environment without site-packages")
        for directory in directories:
            try:
                info = fs.stat(directory)  # one stat, not realpath's lstat of every part
            except OSError as exc:  # it went away since
                raise TargetUnreadable(f"{directory}: {exc.strerror or exc}") from None
            if (info.st_dev, info.st_ino) not in seen:  # the same directory by another name
                seen.add((info.st_dev, info.st_ino))
                found.append(directory)
    return tuple(found)


def _venv_site_packages(root: str, fs: FileSystem) -> list[str]:
    """``glob(root/lib*/python*/site-packages)`` for ``lib`` and ``lib64``, directories only."""
    found = []
    for lib in ("lib", "lib64"):
        directory = os.path.join(root, lib)
        try:
            names = fs.listdir(directory)
        except OSError:
            continue
        for name in fnmatch.filter(names, "python*"):
            site = os.path.join(directory, name, "site-packages")
            if fs.is_dir(site):
                found.append(site)
    return sorted(found)
