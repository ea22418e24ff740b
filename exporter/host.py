"""A host and its targets: the immutable result of one refresh, and the function that takes it.

The host's own facts (identity, platform, the advisory database, the exporter's own
environment as the default target) are gathered once; each target (a configured
environment, a discovered process group) is a :class:`~exporter.target.Target` of its
own, taken with the host's platform and advisory database (``exporter.target``); the
targets never see each other's failures.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import Config
from exporter.snapshot import Identity, Snapshot, Sources, take_snapshot
from exporter.sources.environments import environment_targets
from exporter.target import Target, take_target, target_identity

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
        """Whether targets are configured: the outputs then label each target's series."""
        return bool(self.targets)

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
    sources = sources or Sources()
    own = take_snapshot(config, identity, previous.own if previous else None, sources)
    specs = environment_targets(config)
    if not specs:
        return Host(own=own)
    earlier = {t.name: t for t in previous.targets} if previous else {}
    targets = tuple(
        take_target(spec, config, identity, own, earlier.get(spec.name), sources) for spec in specs
    )
    return Host(own=own, targets=targets, max_module_series=config.targets.max_module_series)
