"""Configured environments as targets: a venv root or site-packages directories, by name."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config import AppConfig, Config, EnvironmentTargetConfig, TargetCommitConfig

KIND_ENVIRONMENT = "environment"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What a source says of one target: its name and where its facts are."""

    name: str
    kind: str
    paths: tuple[str, ...]  # as configured: venv roots or site-packages directories
    commit: TargetCommitConfig
    app: AppConfig


class TargetUnreadable(Exception):
    """A target whose configured paths cannot be read; the message says which and why."""


def environment_targets(config: Config) -> tuple[TargetSpec, ...]:
    """The targets of ``targets.environments``, in configured order."""
    return tuple(_spec(target) for target in config.targets.environments)


def _spec(target: EnvironmentTargetConfig) -> TargetSpec:
    return TargetSpec(target.name, KIND_ENVIRONMENT, target.paths, target.commit, target.app)


def site_directories(paths: Sequence[str]) -> tuple[str, ...]:
    """The directories to scan for ``paths``: a venv root (it holds ``pyvenv.cfg``) becomes
    its ``lib/python*/site-packages`` and ``lib64/...`` (once each, ``lib64`` is often a
    link to ``lib``); any other directory is scanned as it is.

    Raise TargetUnreadable when a path does not exist, is not a directory, cannot be
    listed, or is a venv root without site-packages.
    """
    found: list[str] = []
    seen: set[str] = set()
    for path in paths:
        try:
            is_venv = os.path.isfile(os.path.join(path, "pyvenv.cfg"))
            os.scandir(path).close()  # listable: the scan would otherwise skip it silently
        except OSError as exc:
            raise TargetUnreadable(f"{path}: {exc.strerror or exc}") from None
        directories = _venv_site_packages(path) if is_venv else [path]
        if not directories:
            raise TargetUnreadable(f"{path}: a virtual environment without site-packages")
        for directory in directories:
            real = os.path.realpath(directory)
            if real not in seen:
                seen.add(real)
                found.append(directory)
    return tuple(found)


def _venv_site_packages(root: str) -> list[str]:
    escaped = glob.escape(root)
    return sorted(
        p
        for lib in ("lib", "lib64")
        for p in glob.glob(os.path.join(escaped, lib, "python*", "site-packages"))
        if os.path.isdir(p)
    )
