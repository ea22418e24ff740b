"""The holder of the current snapshot and the timer that rebuilds it off the event loop.

Each refresh runs in a dedicated worker thread: it takes a snapshot, compares
its modules with the last one, and hands the snapshot, the stats and the
previous product to ``publish`` (the renderers, which reuse what did not
change), so that the bytes served are built once per refresh, never on a request.
The event loop then swaps the result in with one assignment. A failed refresh
keeps the last good snapshot, is logged and counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Generic, TypeVar

from exporter.collectors.advisories import release_gradually
from exporter.config import Config
from exporter.snapshot import Identity, Snapshot, Sources, take_snapshot

log = logging.getLogger(__name__)

CHANGE_KINDS = ("added", "removed", "upgraded", "downgraded", "changed")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModuleChange:
    """One module that appeared, disappeared or changed version between two snapshots."""

    kind: str
    module: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """The refresher's own health, as published in ``status_exporter_*`` metrics."""

    refreshes: int = 0
    errors: int = 0
    last_duration_seconds: float = 0.0
    last_success_timestamp: float | None = None
    last_error: str | None = None
    changes: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(CHANGE_KINDS, 0))
    )
    config_reload_successful: bool = True
    config_reload_success_timestamp: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Published(Generic[T]):
    """What the loop swaps in after a refresh: the snapshot, the stats and the rendered product."""

    snapshot: Snapshot
    stats: RefreshStats
    product: T


def diff_modules(old: Mapping[str, str], new: Mapping[str, str]) -> list[ModuleChange]:
    """The changes from ``old`` to ``new``, sorted by module name."""
    changes = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            changes.append(ModuleChange("added", name, None, after))
        elif after is None:
            changes.append(ModuleChange("removed", name, before, None))
        else:
            changes.append(ModuleChange(_direction(before, after), name, before, after))
    return changes


def _direction(before: str, after: str) -> str:
    from packaging.version import InvalidVersion, Version  # only needed once a version changes

    try:
        return "upgraded" if Version(after) > Version(before) else "downgraded"
    except InvalidVersion:
        return "changed"  # versions that PEP 440 cannot order


def _log_news(
    previous: Published[T] | None, published: Published[T], changes: list[ModuleChange]
) -> None:
    """Log each module change, and each skipped entry the previous refresh did not skip, once."""
    for change in changes:
        log.info(
            "module %s",
            change.kind,
            extra={"package": change.module, "old": change.old, "new": change.new},
        )
    dropped = published.snapshot.modules_dropped
    if dropped and not (previous and previous.snapshot.modules_dropped):
        log.warning(
            "more modules than modules.max: the rest are not published",
            extra={"max": len(published.snapshot.modules), "dropped": dropped},
        )
    _log_advisories(previous.snapshot if previous else None, published.snapshot)
    already = set(previous.snapshot.skipped) if previous else set()
    for skipped in published.snapshot.skipped:
        if skipped not in already:
            log.warning("metadata skipped", extra={"path": skipped.path, "reason": skipped.reason})


def _log_advisories(previous: Snapshot | None, snapshot: Snapshot) -> None:
    """Log a load of the advisory database, or its failure, once."""
    db = snapshot.advisories
    if previous is not None and db is previous.advisories:
        return
    before = previous.advisories.load_errors if previous else 0
    if db.load_errors > before:
        log.error(
            "advisory database not loaded; keeping the previous one",
            extra={"error": db.last_error, "advisories": db.advisories},
        )
    elif db.loaded_at is not None:
        log.info(
            "advisory database loaded",
            extra={
                "advisories": db.advisories,
                "skipped": db.skipped,
                "seconds": round(db.load_seconds, 3),
                "vulnerabilities": len(snapshot.vulnerabilities or ()),
            },
        )
        already = set(previous.advisories.skipped_examples) if previous else set()
        for example in db.skipped_examples:
            if example not in already:  # a reload of the same files says nothing new
                log.warning("advisory record skipped", extra={"reason": example})


def _release(garbage: list[Published[T] | None], current: Snapshot) -> None:
    """Drop the replaced snapshot; its advisory database gradually, if it was replaced."""
    replaced = garbage[0]
    if replaced is not None:
        release_gradually(replaced.snapshot.advisories, current.advisories)
    del replaced
    garbage.clear()


class Refresher(Generic[T]):
    """Rebuilds the snapshot every ``refresh.interval_seconds`` and publishes it whole."""

    def __init__(
        self,
        config: Config,
        *,
        publish: Callable[[Snapshot, RefreshStats, T | None], T],
        identity: Identity | None = None,
        sources: Sources | None = None,
    ) -> None:
        self.config = config
        self.identity = identity or Identity.new()
        self._publish = publish
        self._sources = sources or Sources()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="refresh"
        )
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._stats = RefreshStats()
        # Written only by record_reload (on the loop) and read by every build, so that a
        # refresh already running when a reload is recorded cannot write the old outcome back.
        self._reload = (
            self._stats.config_reload_successful,
            self._stats.config_reload_success_timestamp,
        )
        self.published: Published[T] | None = None

    @property
    def stats(self) -> RefreshStats:
        """The health counters as of the latest attempt."""
        return self._stats

    async def wait_ready(self) -> Published[T]:
        """Wait until the first snapshot has been published, and return it."""
        await self._ready.wait()
        assert self.published is not None
        return self.published

    def request_refresh(self) -> None:
        """Make the running timer refresh now instead of at its next tick."""
        self._wake.set()

    async def refresh_now(self) -> bool:
        """Refresh once, off the event loop; return whether it succeeded."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            previous = self.published
            try:
                result = await loop.run_in_executor(self._executor, self._build, previous)
            except Exception as exc:
                await self._record_failure(loop, previous, exc)
                return False
            published, changes = result
            self.published = published
            self._stats = self._with_reload(published.stats)
            _log_news(previous, published, changes)
            self._ready.set()
            # The last reference to the old snapshot may be this one: free it off the event
            # loop, and a replaced advisory database (tens of MB of objects) bit by bit.
            garbage = [previous]
            del previous, result
            with suppress(RuntimeError):  # the executor is shut down: free it here then
                loop.run_in_executor(self._executor, _release, garbage, published.snapshot)
            return True

    def reconfigure(self, config: Config) -> None:
        """Use ``config`` from the next refresh on (a reload), and refresh now."""
        self.config = config
        self.request_refresh()

    def record_reload(self, *, successful: bool) -> None:
        """Count a configuration reload in the health stats, and republish them now."""
        stamp = time.time() if successful else self._reload[1]
        self._reload = (successful, stamp)
        self._stats = self._with_reload(self._stats)
        self.request_refresh()

    def _with_reload(self, stats: RefreshStats) -> RefreshStats:
        successful, stamp = self._reload
        return replace(
            stats, config_reload_successful=successful, config_reload_success_timestamp=stamp
        )

    async def run(self) -> None:
        """Refresh now and then every interval, until cancelled."""
        while True:
            interval = self.config.refresh.interval_seconds
            started = time.monotonic()
            await self.refresh_now()
            self._wake.clear()
            delay = max(0.0, interval - (time.monotonic() - started))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def close(self) -> None:
        """Stop the worker thread; a refresh still running is abandoned."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _build(self, previous: Published[T] | None) -> tuple[Published[T], list[ModuleChange]]:
        sources = self._sources
        started = sources.perf_counter()
        snapshot = take_snapshot(
            self.config, self.identity, previous.snapshot if previous else None, sources
        )
        changes = diff_modules(previous.snapshot.modules, snapshot.modules) if previous else []
        counts = dict(self._stats.changes)
        for change in changes:
            counts[change.kind] += 1
        stats = replace(
            self._stats,
            refreshes=self._stats.refreshes + 1,
            last_duration_seconds=sources.perf_counter() - started,
            last_success_timestamp=snapshot.taken_at,
            last_error=None,
            changes=MappingProxyType(counts),
        )
        product = self._publish(snapshot, stats, previous.product if previous else None)
        return Published(snapshot, stats, product), changes

    async def _record_failure(
        self, loop: asyncio.AbstractEventLoop, previous: Published[T] | None, exc: Exception
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("refresh failed; keeping the last good snapshot", extra={"error": reason})
        log.debug("refresh failure", exc_info=exc)
        self._stats = replace(
            self._stats,
            refreshes=self._stats.refreshes + 1,
            errors=self._stats.errors + 1,
            last_error=reason,
        )
        if previous is None:
            return
        stats = self._stats
        try:
            product = await loop.run_in_executor(
                self._executor, self._publish, previous.snapshot, stats, previous.product
            )
        except Exception as render_exc:
            log.error("publishing the failure count failed", extra={"error": repr(render_exc)})
            return
        self.published = Published(previous.snapshot, stats, product)
