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
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from contextlib import suppress
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Generic, TypeVar

from exporter.advisories.database import release_gradually
from exporter.config import Config
from exporter.host import Host, take_host
from exporter.snapshot import Identity, Snapshot, Sources
from exporter.target import Target

log = logging.getLogger(__name__)

# "excluded"/"included": still installed, but a reload's modules.include/exclude (or
# modules.max) stopped or started publishing it; not an install or a removal.
CHANGE_KINDS = ("added", "removed", "upgraded", "downgraded", "changed", "excluded", "included")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModuleChange:
    """One module that appeared, disappeared or changed version between two snapshots."""

    kind: str
    module: str
    old: str | None
    new: str | None
    target: str | None = None  # None: the exporter's own environment


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

    host: Host
    stats: RefreshStats
    product: T

    @property
    def snapshot(self) -> Snapshot:
        """The exporter's own environment: the only one when no targets are configured."""
        return self.host.own


def diff_modules(
    old: Mapping[str, str],
    new: Mapping[str, str],
    *,
    old_unpublished: AbstractSet[str] = frozenset(),
    new_unpublished: AbstractSet[str] = frozenset(),
) -> list[ModuleChange]:
    """The changes from ``old`` to ``new``, sorted by module name.

    ``*_unpublished`` name the modules found but not published (filtered out, or past
    modules.max): one that leaves ``new`` but is still found was excluded, not removed.
    """
    changes = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            kind = "included" if name in old_unpublished else "added"
            changes.append(ModuleChange(kind, name, None, after))
        elif after is None:
            kind = "excluded" if name in new_unpublished else "removed"
            changes.append(ModuleChange(kind, name, before, None))
        else:
            changes.append(ModuleChange(_direction(before, after), name, before, after))
    return changes


def _direction(before: str, after: str) -> str:
    from packaging.version import InvalidVersion, Version  # only needed once a version changes

    try:
        return "upgraded" if Version(after) > Version(before) else "downgraded"
    except InvalidVersion:
        return "changed"  # versions that PEP 440 cannot order


_CHANGE_MESSAGES = {
    "excluded": "module %s: still installed, no longer published (modules.include/exclude/max)",
    "included": "module %s: published again (modules.include/exclude/max)",
}


def _log_news(
    previous: Published[T] | None, published: Published[T], changes: list[ModuleChange]
) -> None:
    """Log each module change, and each skipped entry the previous refresh did not skip, once."""
    for change in changes:
        where = {"target": change.target} if change.target is not None else {}
        log.info(
            _CHANGE_MESSAGES.get(change.kind, "module %s"),
            change.kind,
            extra={"package": change.module, "old": change.old, "new": change.new, **where},
        )
    _log_targets(previous.host if previous else None, published.host)
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


def _log_targets(previous: Host | None, host: Host) -> None:
    """Log each target that cannot be read, once per new reason, and its recovery; a
    discovered target's coming and going, and when its processes come to need a restart."""
    before = {t.name: t for t in previous.targets} if previous else {}
    now = {t.name for t in host.targets}
    for name, gone in before.items():
        if name not in now and gone.spec.kind != "environment":
            log.info("target gone: its processes exited", extra={"target": name})
    _log_discovery(host)
    for target in host.targets:
        earlier = before.get(target.name)
        if earlier is None and previous is not None and target.spec.kind != "environment":
            log.info(
                "target discovered",
                extra={"target": target.name, "paths": ",".join(target.spec.paths)},
            )
        _log_restart(earlier, target)
        old_error = earlier.last_error if earlier else None
        if target.last_error is not None and target.last_error != old_error:
            log.error(
                "target not readable; its last good facts stay published",
                extra={"target": target.name, "error": target.last_error},
            )
        elif target.last_error is None and old_error is not None:
            log.info("target readable again", extra={"target": target.name})
        if target.snapshot is None:
            continue
        already = set(earlier.snapshot.skipped) if earlier and earlier.snapshot else set()
        for skipped in target.snapshot.skipped:
            if skipped not in already:
                log.warning(
                    "metadata skipped",
                    extra={"target": target.name, "path": skipped.path, "reason": skipped.reason},
                )


def _log_restart(earlier: Target | None, target: Target) -> None:
    """Warn once when a discovered target's processes come to need a restart."""
    p = target.snapshot.process if target.snapshot is not None else None
    was = earlier.snapshot.process if earlier and earlier.snapshot else None
    if p is None or not p.restart_required or (was is not None and was.restart_required):
        return
    log.warning(
        "restart required: what the processes run changed on disk since they started",
        extra={
            "target": target.name,
            "changed": ",".join(f"{m}:{change}" for m, _, change in p.changed[:10]),
            "stale": ",".join(path for path, _ in p.stale[:10]),
        },
    )


def _log_discovery(host: Host) -> None:
    """Warn when processes cannot be read (the exporter lacks the capabilities for them),
    each pid once; never what they are beyond their pids."""
    d = host.discovery
    if d is None or not d.new_denied:
        return
    log.warning(
        "processes not readable: give the exporter CAP_SYS_PTRACE and "
        "CAP_DAC_READ_SEARCH to read them",
        extra={"denied": d.denied, "new": ",".join(map(str, d.new_denied[:20]))},
    )


def host_changes(previous: Host, host: Host) -> list[ModuleChange]:
    """The module changes of the own environment and of every target present in both."""
    changes = _changes(previous.own, host.own, None)
    before = {t.name: t.snapshot for t in previous.targets}
    for target in host.targets:
        earlier = before.get(target.name)
        if earlier is not None and target.snapshot is not None:
            changes.extend(_changes(earlier, target.snapshot, target.name))
    return changes


def _changes(old: Snapshot, new: Snapshot, target: str | None) -> list[ModuleChange]:
    if old.modules is new.modules:
        return []
    found = diff_modules(
        old.modules,
        new.modules,
        old_unpublished=old.unpublished,
        new_unpublished=new.unpublished,
    )
    return found if target is None else [replace(c, target=target) for c in found]


def _log_advisories(previous: Snapshot | None, snapshot: Snapshot) -> None:
    """Log a load of the advisory database, or its failure, once."""
    db = snapshot.advisories
    if previous is not None and db is previous.advisories:
        return
    before = previous.advisories.load_errors if previous else 0
    if db.load_errors > before:
        if db.loaded:
            log.error(
                "advisory database not reloaded; the previous one stays in force",
                extra={
                    "error": db.last_error,
                    "advisories": db.advisories,
                    "loaded_at": _iso(db.loaded_at),
                },
            )
        else:
            log.error(
                "advisory database not loaded: no module is checked until one loads",
                extra={"error": db.last_error},
            )
    elif db.loaded_at is not None:
        age = _age_days(snapshot)
        log.log(
            logging.WARNING if snapshot.advisories_stale else logging.INFO,
            "advisory database loaded" + (" (stale)" if snapshot.advisories_stale else ""),
            extra={
                "advisories": db.advisories,
                "skipped": db.skipped,
                "seconds": round(db.load_seconds, 3),
                "vulnerabilities": len(snapshot.vulnerabilities or ()),
                "newest": _iso(db.newest_modified),
                "age_days": age,
            },
        )
        already = set(previous.advisories.skipped_examples) if previous else set()
        for example in db.skipped_examples:
            if example not in already:  # a reload of the same files says nothing new
                log.warning("advisory record skipped", extra={"reason": example})


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat(timespec="seconds")


def _age_days(snapshot: Snapshot) -> float | None:
    """How old the newest advisory in force is, in days."""
    newest = snapshot.advisories.newest_modified
    return None if newest is None else round((snapshot.taken_at - newest) / 86400, 1)


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
        publish: Callable[[Host, RefreshStats, T | None], T],
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
        host = take_host(self.config, self.identity, previous.host if previous else None, sources)
        snapshot = host.own
        changes = host_changes(previous.host, host) if previous else []
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
        product = self._publish(host, stats, previous.product if previous else None)
        return Published(host, stats, product), changes

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
                self._executor, self._publish, previous.host, stats, previous.product
            )
        except Exception as render_exc:
            log.error("publishing the failure count failed", extra={"error": repr(render_exc)})
            return
        self.published = Published(previous.host, stats, product)
