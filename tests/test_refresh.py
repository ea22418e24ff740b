"""The refresher: diffs, counters, failures that keep the last good snapshot, the timer."""

from __future__ import annotations

import asyncio
import logging
import platform
import threading

from support import env_config, quiet_sources

from exporter.refresh import ModuleChange, Refresher, diff_modules
from exporter.snapshot import Sources


def test_diff_classifies_every_change():
    """Added, removed, upgraded, downgraded and unorderable changes are told apart."""
    old = {"a": "1.0", "b": "2.0", "c": "1.0", "d": "3.0", "e": "weird-1"}
    new = {"b": "2.1", "c": "0.9", "d": "3.0", "e": "weird-2", "f": "1"}
    assert diff_modules(old, new) == [
        ModuleChange("removed", "a", "1.0", None),
        ModuleChange("upgraded", "b", "2.0", "2.1"),
        ModuleChange("downgraded", "c", "1.0", "0.9"),
        ModuleChange("changed", "e", "weird-1", "weird-2"),
        ModuleChange("added", "f", None, "1"),
    ]


def snapshot_only(host, stats, previous):
    """A publish function that renders nothing, to test the refresher alone."""
    return (host.own.modules, stats.refreshes)


async def test_changes_are_counted_and_logged_once(fake_env, caplog):
    """Each change between refreshes is counted by kind and logged once with old and new."""
    fake_env.install("keep", "1.0")
    fake_env.install("old", "1.0")
    refresher = Refresher(env_config(fake_env), publish=snapshot_only, sources=quiet_sources())
    assert await refresher.refresh_now()
    fake_env.upgrade("keep", "1.1")
    fake_env.remove("old")
    fake_env.install("new", "0.1")
    caplog.set_level(logging.INFO, logger="exporter.refresh")
    assert await refresher.refresh_now()
    assert await refresher.refresh_now()
    assert dict(refresher.stats.changes) == {
        "added": 1,
        "removed": 1,
        "upgraded": 1,
        "downgraded": 0,
        "changed": 0,
        "excluded": 0,
        "included": 0,
    }
    changes = [
        (r.getMessage(), r.package, r.old, r.new) for r in caplog.records if hasattr(r, "package")
    ]
    assert sorted(changes) == [
        ("module added", "new", None, "0.1"),
        ("module removed", "old", "1.0", None),
        ("module upgraded", "keep", "1.0", "1.1"),
    ]
    assert refresher.published.product == ({"keep": "1.1", "new": "0.1"}, 3)
    refresher.close()


async def test_failed_refresh_keeps_the_last_good_snapshot(fake_env, caplog):
    """A refresh that raises is counted, logged, and the previous snapshot stays published."""
    fake_env.install("pkg", "1.0")
    broken = threading.Event()

    def uname():
        if broken.is_set():
            raise OSError("uname exploded")
        return platform.uname()

    refresher = Refresher(
        env_config(fake_env), publish=snapshot_only, sources=Sources(environ={}, uname=uname)
    )
    assert await refresher.refresh_now()
    good = refresher.published
    broken.set()
    fake_env.install("other", "2.0")
    assert not await refresher.refresh_now()
    assert refresher.published.snapshot is good.snapshot
    assert refresher.published.stats.errors == 1
    # Re-published with the old modules but the new stats, so the error count is served.
    assert refresher.published.product == ({"pkg": "1.0"}, 2)
    assert "uname exploded" in refresher.stats.last_error
    assert any("refresh failed" in r.getMessage() for r in caplog.records)
    broken.clear()
    assert await refresher.refresh_now()
    assert dict(refresher.published.snapshot.modules) == {"other": "2.0", "pkg": "1.0"}
    refresher.close()


async def test_refresh_runs_off_the_event_loop(fake_env):
    """The snapshot is taken in a worker thread, never on the loop's thread."""
    threads = []

    def uname():
        threads.append(threading.current_thread())
        return platform.uname()

    refresher = Refresher(
        env_config(fake_env), publish=snapshot_only, sources=Sources(environ={}, uname=uname)
    )
    assert await refresher.refresh_now()
    assert threads
    assert threads[0] is not threading.main_thread()
    refresher.close()


async def test_timer_refreshes_on_its_interval_and_on_request(fake_env):
    """run() refreshes every interval, and request_refresh() wakes it early."""
    config = env_config(fake_env, refresh={"interval_seconds": 0.05})
    refresher = Refresher(config, publish=snapshot_only, sources=quiet_sources())
    task = asyncio.create_task(refresher.run())
    try:
        await asyncio.wait_for(refresher.wait_ready(), 5)
        for _ in range(100):
            if refresher.stats.refreshes >= 3:
                break
            await asyncio.sleep(0.02)
        assert refresher.stats.refreshes >= 3
    finally:
        task.cancel()
    slow = Refresher(env_config(fake_env), publish=snapshot_only, sources=quiet_sources())
    task = asyncio.create_task(slow.run())
    try:
        await asyncio.wait_for(slow.wait_ready(), 5)
        slow.request_refresh()
        for _ in range(100):
            if slow.stats.refreshes >= 2:
                break
            await asyncio.sleep(0.02)
        assert slow.stats.refreshes == 2
    finally:
        task.cancel()
        refresher.close()
        slow.close()


async def test_a_reload_recorded_during_a_refresh_is_not_lost(fake_env):
    """The reload outcome survives a refresh that was already rendering when it was recorded."""
    rendering, release = threading.Event(), threading.Event()
    release.set()

    def slow_publish(host, stats, previous):
        rendering.set()
        release.wait(10)
        return snapshot_only(host, stats, previous)

    refresher = Refresher(env_config(fake_env), publish=slow_publish, sources=quiet_sources())
    assert await refresher.refresh_now()
    release.clear()
    rendering.clear()
    running = asyncio.create_task(refresher.refresh_now())
    await asyncio.get_running_loop().run_in_executor(None, rendering.wait, 10)
    refresher.record_reload(successful=False)
    release.set()
    assert await running
    assert refresher.stats.config_reload_successful is False
    assert await refresher.refresh_now()
    assert refresher.published.stats.config_reload_successful is False
    refresher.close()


async def test_a_module_excluded_by_a_reload_is_not_called_removed(fake_env, caplog):
    """A reload that excludes an installed module logs and counts it as excluded, and as
    included when a later reload publishes it again; nothing is counted as removed."""
    fake_env.install("keep", "1.0")
    fake_env.install("hidden", "2.0")
    refresher = Refresher(env_config(fake_env), publish=snapshot_only, sources=quiet_sources())
    assert await refresher.refresh_now()
    caplog.set_level(logging.INFO, logger="exporter.refresh")
    refresher.reconfigure(
        env_config(fake_env, modules={"paths": [str(fake_env.path)], "exclude": ["hid*"]})
    )
    assert await refresher.refresh_now()
    assert dict(refresher.published.snapshot.modules) == {"keep": "1.0"}
    refresher.reconfigure(env_config(fake_env))
    assert await refresher.refresh_now()
    counts = dict(refresher.stats.changes)
    assert (counts["excluded"], counts["included"], counts["removed"], counts["added"]) == (
        1,
        1,
        0,
        0,
    )
    messages = [r.getMessage() for r in caplog.records if getattr(r, "package", None) == "hidden"]
    assert messages == [
        "module excluded: still installed, no longer published (modules.include/exclude/max)",
        "module included: published again (modules.include/exclude/max)",
    ]
