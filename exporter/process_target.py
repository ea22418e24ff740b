"""A discovered process group as a target: its environment read through its root, and what
its running processes add (restart required, loaded native code).

Discovery (``exporter.sources.discovery.processes``) says where a group's environment is
as the processes see it; this module takes that environment with the same
:func:`~exporter.target.take_target` as a configured one, through a
:class:`~exporter.sources.discovery.rootfs.RootFileSystem` over the oldest process's
root, then checks the processes against it. Nothing of a process is run; of its
environment only the commit variables discovery kept are used.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from exporter.collectors.python import PythonInfo, collect_python
from exporter.config import AppConfig, Config, TargetCommitConfig
from exporter.filesystem import FileSystem
from exporter.snapshot import Identity, ProcessFacts, Snapshot, Sources
from exporter.sources.discovery.loaded import loaded_distributions
from exporter.sources.discovery.processes import KIND_PROCESS, ProcessTarget
from exporter.sources.discovery.procfs import ProcFS
from exporter.sources.discovery.restart import check_restart, read_mappings
from exporter.sources.discovery.rootfs import RootFileSystem
from exporter.sources.environments import TargetSpec
from exporter.target import Target, take_target

log = logging.getLogger(__name__)

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def process_spec(found: ProcessTarget, name: str, config: Config, fs: FileSystem) -> TargetSpec:
    """The spec of a discovered group: its directories, its identity labels, and its commit
    from the top-level ``commit.env`` names (the values discovery kept) and the git
    directory of its working directory, when that holds one."""
    git_dir = None
    if found.cwd and (fs.is_dir(f"{found.cwd}/.git") or fs.is_file(f"{found.cwd}/.git")):
        git_dir = found.cwd
    return TargetSpec(
        name=name,
        kind=KIND_PROCESS,
        paths=found.paths,
        commit=TargetCommitConfig(env=config.commit.env, git_dir=git_dir),
        app=AppConfig(),
        labels=found.labels,
    )


def take_process_target(
    found: ProcessTarget,
    name: str,
    config: Config,
    identity: Identity,
    own: Snapshot,
    previous: Target | None,
    sources: Sources,
    procfs: ProcFS,
) -> Target | None:
    """The target of one discovered group, or None when its root is gone (every process
    exited since discovery listed them: it disappears with the next refresh's listing)."""
    try:
        fs = RootFileSystem(found.root)
    except OSError as exc:
        log.debug("target %s: root %s not readable: %s", name, found.root, exc)
        return None
    with fs:
        spec = process_spec(found, name, config, fs)
        here = dataclasses.replace(sources, environ=dict(found.commit_env))
        target = take_target(
            spec,
            config,
            identity,
            own,
            previous,
            here,
            fs=fs,
            python_hint=_python_hint(found),
        )
        snapshot = target.snapshot
        if snapshot is None or target.last_error is not None:
            return target
        earlier = previous.snapshot if previous is not None else None
        facts = _process_facts(found, snapshot, earlier, procfs, fs)
    return dataclasses.replace(target, snapshot=dataclasses.replace(snapshot, process=facts))


def _process_facts(
    found: ProcessTarget,
    snapshot: Snapshot,
    earlier: Snapshot | None,
    procfs: ProcFS,
    fs: FileSystem,
) -> ProcessFacts:
    """Restart required and loaded native code, for the processes as they are now."""
    mappings = read_mappings(procfs, [pid for pid, _ in found.processes])
    same_processes = (
        earlier is not None
        and earlier.process is not None
        and earlier.process.started_at == found.oldest_start
    )
    # For the same processes, what an earlier refresh found stays found: an upgrade seen
    # once stays an upgrade, and the earlier module list tells an install from an upgrade.
    restart = check_restart(
        snapshot.installed_scan,
        found.oldest_start,
        mappings,
        fs,
        previous_modules=earlier.modules if same_processes and earlier is not None else None,
        previous_changes=(
            earlier.process.changed
            if same_processes and earlier is not None and earlier.process is not None
            else ()
        ),
    )
    vulnerable = {f.module for f in snapshot.vulnerabilities or ()}
    loaded = (
        loaded_distributions(mappings, snapshot.installed_scan, vulnerable, fs)
        if vulnerable and snapshot.installed_scan is not None
        else frozenset()
    )
    return ProcessFacts(
        processes=len(found.processes),
        started_at=found.oldest_start,
        changed=tuple((c.name, c.version, c.change) for c in restart.changed),
        stale=tuple((s.path, s.reason) for s in restart.stale),
        loaded=frozenset(loaded),
    )


def _python_hint(found: ProcessTarget) -> PythonInfo | None:
    """The interpreter's version as discovery read it (from its file, never by running it)."""
    if not found.python_version:
        return None
    match = _VERSION.match(found.python_version)
    if match is None:
        return None
    major, minor, patch = match.groups()
    implementation = "PyPy" if "pypy" in found.executable.rsplit("/", 1)[-1] else "CPython"
    if patch is None:  # the path said 3.11, not which 3.11
        return PythonInfo(
            version_string=f"{major}.{minor} ({implementation}, {found.executable})",
            implementation=implementation,
            major=major,
            minor=minor,
            patchlevel="unknown",
            version=f"{major}.{minor}",
        )
    version = f"{major}.{minor}.{patch}"
    return collect_python(
        sys_version=f"{version} ({implementation}, {found.executable})",
        implementation=implementation,
        version=version,
    )
