"""A host and its targets: the immutable result of one refresh, and the function that takes it.

The host's own facts (identity, platform, the advisory database, the exporter's own
environment as the default target) are gathered once; each target (a configured
environment, a discovered process group) is a :class:`~exporter.target.Target` of its
own, taken with the host's platform and advisory database (``exporter.target``); the
targets never see each other's failures.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.config import Config
from exporter.snapshot import Identity, Snapshot, Sources, take_snapshot
from exporter.sources.environments import environment_targets
from exporter.target import Target, take_target, target_identity

if TYPE_CHECKING:
    from exporter.sources.discovery.processes import Discovery

__all__ = ["Host", "Target", "take_host", "target_identity"]


@dataclass(frozen=True, slots=True)
class Host:
    """Everything one refresh gathered: the exporter's own environment and the targets.

    With no targets configured, ``own`` is the only environment and every output is
    what a single-environment daemon publishes.
    """

    own: Snapshot
    targets: tuple[Target, ...] = ()
    max_module_series: int = 200_000  # targets.max_module_series: over all targets
    # The latest listing of processes when targets.discover.processes is on (its counts
    # are published; it caches what a process's facts were for the next refresh).
    discovery: Discovery | None = None

    def facts(self) -> tuple[object, ...]:
        """Everything the targets' metrics publish (timings aside): equal facts, equal bytes."""
        if not self.targets:
            return self.own.facts()
        own = self.own
        return (
            own.published_platform,
            own.refresh_interval_seconds,
            own.advisory_paths,
            self.max_module_series,
            tuple((t.spec, t.snapshot.facts() if t.snapshot else None) for t in self.targets),
        )

    @classmethod
    def of(cls, snapshot: Snapshot) -> Host:
        """A host of one environment (library use, one-shot output)."""
        return cls(own=snapshot)

    @property
    def has_targets(self) -> bool:
        """Whether targets are configured or discovered: the outputs then label each
        target's series (a discovering host with no process found yet has none)."""
        return bool(self.targets) or self.discovery is not None

    def target(self, name: str) -> Target | None:
        """The target called ``name``, if any."""
        return next((t for t in self.targets if t.name == name), None)


def take_host(
    config: Config,
    identity: Identity,
    previous: Host | None = None,
    sources: Sources | None = None,
) -> Host:
    """Gather the host's facts and each target's; ``previous`` lets unchanged ones be reused."""
    # A first scan makes tens of thousands of objects that all live on (distributions,
    # their licences, the modules mappings): the cyclic collector, which would walk them
    # again and again and free nothing (they hold no cycles), is paused while the host is
    # taken (when it was on) and takes them in once at the end, here rather than at some
    # later allocation (so that the refresh pays for it, and its duration says so).
    pause = gc.isenabled()
    if pause:
        gc.disable()
    try:
        return _take_host(config, identity, previous, sources or Sources())
    finally:
        if pause:
            gc.enable()
            if gc.get_count()[0] > gc.get_threshold()[0]:
                gc.collect(0)


def _take_host(config: Config, identity: Identity, previous: Host | None, sources: Sources) -> Host:
    own = take_snapshot(config, identity, previous.own if previous else None, sources)
    specs = environment_targets(config)
    discover_config = config.targets.discover
    if not specs and not discover_config.processes:
        return Host(own=own)
    earlier = {t.name: t for t in previous.targets} if previous else {}
    targets = [
        take_target(spec, config, identity, own, earlier.get(spec.name), sources) for spec in specs
    ]
    discovery = None
    if discover_config.processes:
        # Imported here: a daemon that does not discover never loads the discovery code.
        from exporter.process_target import take_process_target
        from exporter.sources.discovery.processes import discover
        from exporter.sources.discovery.procfs import ProcFS

        procfs = ProcFS(discover_config.procfs)
        discovery = discover(
            procfs,
            discover_config,
            previous.discovery if previous else None,
            commit_env=config.commit.env,
        )
        taken = {t.name for t in targets}
        me = os.getpid()
        for found in discovery.targets:
            if any(pid == me for pid, _ in found.processes):
                continue  # this exporter (and its advisory child): reported as its own

            name = unique_name(found.name, taken)
            taken.add(name)
            target = take_process_target(
                found,
                name,
                config,
                identity,
                own,
                earlier.get(name),
                sources,
                procfs,
            )
            if target is not None:
                targets.append(target)
    return Host(
        own=own,
        targets=tuple(targets),
        max_module_series=config.targets.max_module_series,
        discovery=discovery,
    )


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... when a configured environment has it."""
    if name not in taken:
        return name
    n = 2
    while f"{name[:60]}-{n}" in taken:
        n += 1
    return f"{name[:60]}-{n}"
