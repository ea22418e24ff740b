"""Benchmark a host with many targets against floors run side by side, and print ratios.

Usage: python bench/targets.py [--environments 50] [--distributions 300] [--duration 5]
       [--rounds 4]

Builds ``--environments`` virtual environments (``<root>/env-NNN/pyvenv.cfg`` and
``lib/python3.11/site-packages/*.dist-info/METADATA``, realistic headers with licence
classifiers and requirements, mtimes an hour old so that the scanner may trust them) and
measures, in one run:

- the first refresh of a host with them as targets (``take_host`` with no previous, in
  process), against reading only the header of each of the same METADATA files; the page
  cache is warm for both (nothing is dropped between runs);
- a refresh when nothing changed: ``take_host`` alone and the full build (``take_host`` and
  ``render_pages``), against ``os.stat`` of each target's directories; the exporter's own
  environment (this process's ``sys.path``, scanned by every ``take_host``) timed apart;
  when 2 ms is missed, a profile says where the time goes, per refresh and per target;
- ``/metrics`` of a daemon with those targets, plain and gzip, against a constant-bytes
  floor serving the same body (wrk, alternating rounds), and the same for a single-target
  daemon (``modules.paths`` on one of the site-packages), with the per-request costs a
  constant-bytes handler does not pay, measured piece by piece in process;
- the RSS of the daemon with the targets against the single-target daemon's.

Machines here are shared and noisy: the figures that matter are the ratios, each the
median of per-round ratios of runs alternated with their floor.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import free_port, write_distributions  # noqa: E402
from harness import (  # noqa: E402
    CONNECTIONS,
    PY,
    Load,
    Processes,
    Server,
    Table,
    alternate,
    compare,
    daemon_args,
    http_get,
    measured_load,
    med,
    ratio,
    verdict,
    write_config,
)

from exporter.config import Config, config_from_mapping  # noqa: E402
from exporter.host import Host, take_host, target_identity  # noqa: E402
from exporter.refresh import RefreshStats  # noqa: E402
from exporter.render.html import render_landing, render_status_page  # noqa: E402
from exporter.render.json import StatusDocument  # noqa: E402
from exporter.render.pages import Pages, render_pages  # noqa: E402
from exporter.render.prometheus import (  # noqa: E402
    PROCESS_MAX_AGE_SECONDS,
    Fragment,
    MetricsPages,
    ProcessMetrics,
)
from exporter.render.sbom import SbomDocument  # noqa: E402
from exporter.render.targets import ModuleIndex, render_targets_index  # noqa: E402
from exporter.snapshot import Identity, Sources, take_snapshot  # noqa: E402
from exporter.sources.environments import environment_targets, site_directories  # noqa: E402

UNCHANGED_BUDGET_S = 2e-3  # the target for a refresh when nothing changed
PYVENV_CFG = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n"


# ---------------------------------------------------------------- environments


def build_environments(base: Path, environments: int, distributions: int) -> list[Path]:
    """``environments`` venv roots of ``distributions`` each, drawn from a shared pool of
    names (overlapping, as a fleet's environments do) at versions that differ between them."""
    past = time.time() - 3600
    roots = []
    for e in range(environments):
        root = base / f"env-{e:03d}"
        site = root / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (root / "pyvenv.cfg").write_text(PYVENV_CFG)
        write_distributions(site, e, distributions)
        # Old enough that the scanner trusts them (it re-reads what changed within 2 s).
        for path in (site, site.parent, site.parent.parent, root, root / "pyvenv.cfg"):
            os.utime(path, (past, past))
        roots.append(root)
    return roots


def targets_mapping(roots: list[Path]) -> dict[str, Any]:
    """The daemon's configuration: every root a target, the own environment as always."""
    return {
        "targets": {"environments": [{"name": r.name, "paths": [str(r)]} for r in roots]},
        "refresh": {"interval_seconds": 3600},
        "web": {"uvloop": False},  # the floor runs on asyncio's loop
        "commit": {"value": "bench00"},
    }


def site_of(root: Path) -> Path:
    """A root's site-packages directory."""
    return root / "lib" / "python3.11" / "site-packages"


# ---------------------------------------------------------------- timing


def sample(fn: Callable[[], object], budget_s: float, most: int = 1000) -> float:
    """Median seconds per call of ``fn``, called once and then until ``budget_s`` is spent."""
    times: list[float] = []
    spent = 0.0
    while not times or (spent < budget_s and len(times) < most):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        spent += times[-1]
    return statistics.median(times)


def interleaved(
    cases: dict[str, Callable[[], object]], rounds: int, budget_s: float
) -> dict[str, list[float]]:
    """Per-round medians of each case, the order rotated every round to cancel drift."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        if index % 2:
            order.reverse()
        for name in order:
            results[name].append(sample(cases[name], budget_s))
    return results


def round_ratio(ours: list[float], floor: list[float]) -> float:
    """The median of per-round ratios."""
    return med([o / f for o, f in zip(ours, floor, strict=True)])


def ms(seconds: float) -> str:
    """Seconds as milliseconds."""
    return f"{seconds * 1e3:.2f} ms"


def us(seconds: float) -> str:
    """Seconds as microseconds."""
    return f"{seconds * 1e6:.1f} us"


# ---------------------------------------------------------------- refresh, in process


def header_floor(sites: list[Path]) -> Callable[[], None]:
    """Read the header of every METADATA: open, the first 4 KiB up to the blank line, close."""
    folders = [str(s) for s in sites]

    def run() -> None:
        for folder in folders:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(".dist-info"):
                        fd = os.open(f"{entry.path}/METADATA", os.O_RDONLY)
                        try:
                            head = os.read(fd, 4096)
                        finally:
                            os.close(fd)
                        head[: head.find(b"\n\n")]

    return run


def stat_floor(roots: list[Path]) -> tuple[Callable[[], None], int]:
    """``os.stat`` of every directory a target has: its root and its site-packages."""
    paths = [str(p) for r in roots for p in (r, site_of(r))]

    def run() -> None:
        for path in paths:
            os.stat(path)

    return run, len(paths)


def own_config(config: Config) -> Config:
    """The configuration without its targets: what the own environment is taken with."""
    return dataclasses.replace(config, targets=dataclasses.replace(config.targets, environments=()))


@dataclasses.dataclass
class Refresh:
    """The in-process measurements, kept for the profile and the report."""

    cold: list[float]
    cold_floor: list[float]
    cold_no_gc: list[float]
    cold_own: float
    unchanged: dict[str, list[float]]
    stats_per_refresh: int
    warm: Host
    pages: Pages
    own_distributions: int
    own_directories: int
    reread: int


def measure_refresh(config: Config, roots: list[Path], rounds: int) -> Refresh:
    """Cold and unchanged refreshes, each alternated with its floor."""
    identity, sources, stats = Identity.new(), Sources(), RefreshStats()
    floor = header_floor([site_of(r) for r in roots])

    def cold_without_gc() -> None:
        gc.disable()
        try:
            take_host(config, identity, None, sources)
        finally:
            gc.enable()

    cold_cases: dict[str, Callable[[], object]] = {
        "cold": lambda: take_host(config, identity, None, sources),
        "floor": floor,
        "no_gc": cold_without_gc,
    }
    floor()  # both read the same files: warm the page cache for both
    cold = interleaved(cold_cases, max(rounds, 5), budget_s=0.3)
    own_only = own_config(config)
    cold_own = med(
        [sample(lambda: take_snapshot(own_only, identity, None, sources), 0.2) for _ in range(3)]
    )

    first = take_host(config, identity, None, sources)
    warm = take_host(config, identity, first, sources)
    reread = sum(
        1
        for t in warm.targets
        if t.snapshot is None
        or t.snapshot.installed_scan is None
        or t.snapshot.installed_scan.directories_read
    )
    pages = render_pages(warm, stats, None)
    following = take_host(config, identity, warm, sources)
    stat_all, stats_per_refresh = stat_floor(roots)

    def build() -> None:
        render_pages(take_host(config, identity, warm, sources), stats, pages)

    unchanged_cases: dict[str, Callable[[], object]] = {
        "stat": stat_all,
        "take_host": lambda: take_host(config, identity, warm, sources),
        "own": lambda: take_snapshot(config, identity, warm.own, sources),
        "render": lambda: render_pages(following, stats, pages),
        "build": build,
    }
    unchanged = interleaved(unchanged_cases, max(rounds, 5), budget_s=0.25)
    scan = warm.own.installed_scan
    return Refresh(
        cold=cold["cold"],
        cold_floor=cold["floor"],
        cold_no_gc=cold["no_gc"],
        cold_own=cold_own,
        unchanged=unchanged,
        stats_per_refresh=stats_per_refresh,
        warm=warm,
        pages=pages,
        own_distributions=len(warm.own.modules),
        own_directories=len(scan.directories) if scan else 0,
        reread=reread,
    )


def refresh_rows(table: Table, r: Refresh, environments: int, distributions: int) -> None:
    """The refresh rows of the table."""
    files = environments * distributions
    cold, cold_floor = med(r.cold), med(r.cold_floor)
    cold_ratio = round_ratio(r.cold, r.cold_floor)
    table.add(
        f"first refresh, {environments} targets x {distributions} dists (cold scan, page cache"
        " warm for both)",
        ms(cold),
        f"header-only read of the {files:,} METADATA {ms(cold_floor)}",
        f"{cold_ratio:.2f}x",
        f"<= 1.5x: {verdict(cold_ratio <= 1.5)}",
    )
    no_gc = med(r.cold_no_gc)
    table.add(
        "  the same with the garbage collector off throughout (take_host pauses it itself and"
        " collects its objects once at the end: this is what that collection costs)",
        ms(no_gc),
        f"header-only read {ms(cold_floor)}",
        f"{round_ratio(r.cold_no_gc, r.cold_floor):.2f}x",
        f"informative: off/on {round_ratio(r.cold_no_gc, r.cold):.2f}x",
    )
    table.add(
        f"  of which the own environment, cold ({r.own_distributions} dists)",
        ms(r.cold_own),
        "-",
        f"{r.cold_own / cold:.1%} of it",
        "informative",
    )
    u = {name: med(values) for name, values in r.unchanged.items()}
    note = "" if not r.reread else f" ({r.reread} targets re-read: not reused!)"
    table.add(
        f"refresh, nothing changed: take_host{note}",
        ms(u["take_host"]),
        f"os.stat x {r.stats_per_refresh} {ms(u['stat'])}",
        f"{round_ratio(r.unchanged['take_host'], r.unchanged['stat']):.1f}x",
        f"<= 2 ms: {verdict(u['take_host'] <= UNCHANGED_BUDGET_S)}",
    )
    table.add(
        f"  of which the own environment ({r.own_directories} sys.path entries)",
        ms(u["own"]),
        "-",
        f"{u['own'] / u['take_host']:.1%} of it",
        "informative",
    )
    per_target = (u["take_host"] - u["own"]) / environments
    per_stat = u["stat"] / environments
    table.add(
        "  per target (take_host less the own environment, / targets)",
        us(per_target),
        f"os.stat x {r.stats_per_refresh // environments} {us(per_stat)}",
        f"{per_target / per_stat:.1f}x",
        "informative: an unchanged target should cost its stats",
    )
    table.add(
        "render_pages, nothing changed",
        ms(u["render"]),
        "-",
        f"{u['render'] / environments * 1e6:.0f} us per target",
        "informative",
    )
    table.add(
        "refresh, nothing changed: take_host + render_pages (the full build)",
        ms(u["build"]),
        f"os.stat x {r.stats_per_refresh} {ms(u['stat'])}",
        f"{round_ratio(r.unchanged['build'], r.unchanged['stat']):.1f}x",
        f"<= 2 ms: {verdict(u['build'] <= UNCHANGED_BUDGET_S)}",
    )


# ---------------------------------------------------------------- where the time goes


def profile_lines(
    fn: Callable[[], object],
    calls: int,
    per: tuple[str, int],
    sort: str = "cumulative",
    limit: int = 14,
) -> list[str]:
    """cProfile ``fn`` ``calls`` times: the costliest functions by ``sort`` (cumulative or own
    time), per call of ``fn`` and per ``per`` (cProfile inflates small functions: read the
    shares, and the pieces timed alone)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    entries = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in entries.values())
    rows = []
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in entries.items():
        key = cumtime if sort == "cumulative" else tottime
        if key < 0.01 * total or function in ("<lambda>", "run", "build", "cold"):
            continue
        where = f"{_short(filename)}:{line}({function})"
        rows.append((key, cumtime, tottime, ncalls, where))
    rows.sort(reverse=True)
    unit, count = per
    lines = [
        f"| function | cumulative per refresh | own time per refresh | {sort} per {unit}"
        " | calls per refresh |",
        "|---|---|---|---|---|",
    ]
    for key, cumtime, tottime, ncalls, where in rows[:limit]:
        lines.append(
            f"| {where} | {cumtime / calls * 1e6:,.0f} us ({cumtime / total:.0%}) "
            f"| {tottime / calls * 1e6:,.0f} us ({tottime / total:.0%}) "
            f"| {key / calls / count * 1e6:,.2f} us | {ncalls / calls:,.0f} |"
        )
    return lines


def _short(filename: str) -> str:
    for marker in ("/exporter/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename[filename.index(marker) + 1 :]
    return filename


def pieces_lines(config: Config, r: Refresh, rounds: int) -> list[str]:
    """The public pieces of an unchanged refresh timed directly (no profiler), per target."""
    identity, stats, host, previous = Identity.new(), RefreshStats(), r.warm, r.pages
    specs = environment_targets(config)
    read = [t for t in host.targets if t.snapshot is not None]
    n = len(specs)

    def each(fn: Callable[[Any], object], items: list[Any]) -> Callable[[], None]:
        return lambda: [fn(item) for item in items] and None

    cases: dict[str, tuple[Callable[[], object], bool]] = {
        "take_host: site_directories(paths), each target": (
            each(lambda s: site_directories(s.paths), list(specs)),
            True,
        ),
        "take_host: target_identity (uuid5), each target": (
            each(lambda s: target_identity(identity, s.name), list(specs)),
            True,
        ),
        "render_pages: StatusDocument (compact + pretty JSON), each target": (
            each(lambda t: StatusDocument(t.snapshot), read),
            True,
        ),
        "render_pages: SbomDocument (reused: facts compared), each target": (
            each(lambda t: SbomDocument(t.snapshot, previous.targets[t.name].sbom), read),
            True,
        ),
        "render_pages: MetricsPages (facts reused, health rendered)": (
            lambda: MetricsPages(host, stats, previous.metrics),
            False,
        ),
        "render_pages: ModuleIndex, rebuilt (every target's modules)": (
            lambda: ModuleIndex(host),
            False,
        ),
        "render_pages: ModuleIndex, reused (nothing changed)": (
            lambda: ModuleIndex(host, previous.module_index_document),
            False,
        ),
        "render_pages: render_targets_index": (lambda: render_targets_index(host), False),
        "render_pages: own status page (HTML) + landing": (
            lambda: (
                render_status_page(host.own, stats, metrics_path="/metrics"),
                render_landing(host.own, stats),
            ),
            False,
        ),
        "render_pages: own StatusDocument + SbomDocument": (
            lambda: (StatusDocument(host.own), SbomDocument(host.own, previous.sbom)),
            False,
        ),
    }
    timed = interleaved({k: fn for k, (fn, _) in cases.items()}, rounds, budget_s=0.1)
    lines = ["| piece (timed alone) | per refresh | per target |", "|---|---|---|"]
    for name, (_, per_target) in cases.items():
        cost = med(timed[name])
        lines.append(f"| {name} | {ms(cost)} | {us(cost / n) if per_target else '-'} |")
    return lines


def where_the_time_goes(config: Config, r: Refresh, args: argparse.Namespace) -> list[str]:
    """Profiles of each refresh that misses its target (a list of report lines)."""
    notes: list[str] = []
    n, files = args.environments, args.environments * args.distributions
    identity, stats = Identity.new(), RefreshStats()
    if round_ratio(r.cold, r.cold_floor) > 1.5:
        print("profiling the first refresh", file=sys.stderr)
        calls = max(1, min(20, int(1.0 / med(r.cold))))
        notes += [
            "",
            f"Where the first refresh goes (cProfile, {calls} calls, by own time; the floor"
            f" is {us(med(r.cold_floor) / files)} per METADATA):",
            "",
            *profile_lines(
                lambda: take_host(config, identity), calls, ("METADATA", files), sort="tottime"
            ),
        ]
    unchanged = {name: med(values) for name, values in r.unchanged.items()}
    if max(unchanged["take_host"], unchanged["build"]) <= UNCHANGED_BUDGET_S:
        return notes
    print("profiling the unchanged refresh", file=sys.stderr)
    warm, pages = r.warm, r.pages
    following = take_host(config, identity, warm)
    calls = max(3, min(200, int(1.0 / unchanged["take_host"])))
    notes += [
        "",
        f"Where an unchanged take_host goes (cProfile, {calls} calls, {n} targets):",
        "",
        *profile_lines(lambda: take_host(config, identity, warm), calls, ("target", n)),
    ]
    calls = max(3, min(200, int(1.0 / unchanged["render"])))
    notes += [
        "",
        f"Where an unchanged render_pages goes (cProfile, {calls} calls, {n} targets):",
        "",
        *profile_lines(lambda: render_pages(following, stats, pages), calls, ("target", n)),
        "",
        "The pieces of an unchanged refresh, timed alone without the profiler:",
        "",
        *pieces_lines(config, r, args.rounds),
    ]
    return notes


# ---------------------------------------------------------------- serving


def bodies(url: str) -> tuple[bytes, bytes]:
    """The plain body, and the gzip body as sent."""
    plain = http_get(url)
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        zipped = bytes(response.read())
        assert response.headers.get("Content-Encoding") == "gzip", "no gzip body"
    return plain, zipped


def start_floor(processes: Processes, name: str, body: Path, gzip: bool) -> Server:
    """bench/floor.py serving ``body`` as constant bytes."""
    port = free_port()
    args = [PY, "bench/floor.py", "--port", str(port), "--body", str(body)]
    if gzip:
        args += ["--content-encoding", "gzip"]
    return processes.start(name, args, port)


def scrape_a_few(server: Server) -> None:
    """A few scrapes in each format, as Prometheus would make after the first refresh."""
    for headers in (
        {},
        {"Accept-Encoding": "gzip"},
        {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"},
    ):
        for _ in range(3):
            http_get(server.url, headers)


def refresh_seconds(server: Server) -> float:
    """The daemon's own status_exporter_refresh_duration_seconds."""
    found = re.search(
        rb"^status_exporter_refresh_duration_seconds ([\d.e+-]+)$", http_get(server.url), re.M
    )
    return float(found.group(1)) if found else float("nan")


def rotate(
    servers: list[Server], seconds: float, rounds: int, headers: dict[str, str] | None = None
) -> list[list[Load]]:
    """Load each server ``rounds`` times, the order rotated (and reversed) every round."""
    loads: list[list[Load]] = [[] for _ in servers]
    for index in range(rounds):
        order = list(range(len(servers)))
        order = order[index % len(order) :] + order[: index % len(order)]
        if index % 2:
            order.reverse()
        for at in order:
            loads[at].append(measured_load(servers[at], seconds, headers))
    return loads


def load_pair(
    table: Table,
    processes: Processes,
    tmp: Path,
    daemon: Server,
    what: str,
    args: argparse.Namespace,
    constant_args: Callable[[Path, int], list[str]] | None = None,
) -> dict[bool, tuple[list[Load], list[Load]]]:
    """/metrics plain and gzip of ``daemon`` against floors serving its very bodies; with
    ``constant_args``, the plain load also runs the daemon with a constant-bytes route."""
    plain, zipped = bodies(daemon.url)
    series = len(re.findall(rb"^module_info\{", plain, re.M))
    results = {}
    for gzip, body in ((False, plain), (True, zipped)):
        path = tmp / f"{daemon.name}.body{'.gz' if gzip else ''}"
        path.write_bytes(body)
        floor = start_floor(processes, f"floor-{daemon.name}", path, gzip)
        headers = {"Accept-Encoding": "gzip"} if gzip else None
        kind = "gzip" if gzip else "plain"
        label = f"/metrics {kind}, {what} ({len(body) // 1024:,} KB, {series:,} series)"
        if constant_args is None or gzip:
            print(f"load: /metrics {kind} of {what} vs floor", file=sys.stderr)
            ours, base = alternate(daemon, floor, args.duration, args.rounds, headers)
            compare(table, label, ours, base)
        else:
            port = free_port()
            constant = processes.start("constant", constant_args(path, port), port)
            constant.path = "/constant"
            print(f"load: /metrics {kind} of {what} vs floor vs /constant", file=sys.stderr)
            ours, base, middle = rotate([daemon, floor, constant], args.duration, args.rounds)
            processes.stop(constant)
            compare(table, label, ours, base)
            decomposition_rows(table, ours, base, middle)
        processes.stop(floor)
        results[gzip] = (ours, base)
    return results


def decomposition_rows(
    table: Table, ours: list[Load], base: list[Load], middle: list[Load]
) -> None:
    """Split the daemon's gap to the floor: its handler, and the rest of its process."""
    for what, a, b, target in (
        (
            "  the handler: /metrics vs a constant-bytes route in the same daemon",
            ours,
            middle,
            "informative: what the handler costs",
        ),
        (
            "  the process: a constant-bytes route in the daemon vs floor.py",
            middle,
            base,
            "informative: site, middlewares, heap",
        ),
    ):
        cpu = med([x.cpu_us for x in a]) - med([y.cpu_us for y in b])
        table.add(
            what,
            f"{med([x.rps for x in a]):,.0f} req/s",
            f"{med([y.rps for y in b]):,.0f} req/s",
            f"{ratio(a, b, 'rps'):.3f}x, CPU {cpu:+.1f} us/request",
            target,
        )


# ---------------------------------------------------------------- per-request costs


def drive(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (a handler serving bytes) to its result."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine suspended")


def per_call(fn: Callable[[], object], rounds: int) -> float:
    """Seconds per call: the best of ``2 * rounds`` (at least 9) timeit repeats of about 10 ms
    each. The best, as timeit advises for calls of a microsecond: on a shared machine every
    slower repeat is another process's doing, not the code's."""
    number = max(1, int(0.01 / max(timeit.timeit(fn, number=20) / 20, 1e-9)))
    repeats = timeit.repeat(fn, number=number, repeat=max(2 * rounds, 9))
    return min(repeats) / number


def request_costs(config: Config, rps: float, targets_config: Config, rounds: int) -> list[str]:
    """What a /metrics request costs in the daemon's application that the constant-bytes
    floor's does not: the pieces of the handler, the middleware, the connection wrapper."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    from exporter.negotiate import metrics_variant
    from exporter.web import REFRESHER, create_app, setup

    def published_app(cfg: Config, middlewares: bool) -> web.Application:
        if middlewares:
            app = create_app(cfg)
        else:
            app = web.Application()
            setup(app, cfg)
        refresher = app[REFRESHER]
        refresher.published = refresher._build(None)[0]  # what a refresh would publish
        app.freeze()
        return app

    headers = {"Host": "127.0.0.1:9", "User-Agent": "wrk", "Accept-Encoding": "gzip"}
    rows: list[tuple[str, float, float]] = []
    for gzip in (False, True):
        asked = headers if gzip else {k: v for k, v in headers.items() if k != "Accept-Encoding"}
        app = published_app(config, middlewares=True)
        bare = published_app(config, middlewares=False)
        request = make_mocked_request("GET", "/metrics", headers=asked, app=app)
        bare_request = make_mocked_request("GET", "/metrics", headers=asked, app=bare)
        response = drive(app._handle(request))
        body, content_type = response.body, response.headers["Content-Type"]
        floor_headers = {"Content-Type": content_type}
        if gzip:
            floor_headers["Content-Encoding"] = "gzip"

        async def floor_handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers=floor_headers)  # noqa: B023

        floor_app = web.Application()
        floor_app.router.add_get("/metrics", floor_handler)
        floor_app.freeze()
        floor_request = make_mocked_request("GET", "/metrics", headers=asked, app=floor_app)
        kind = "gzip" if gzip else "plain"
        rows.append(
            (
                f"{kind}: app._handle (router, middlewares, handler, Response)",
                per_call(lambda: drive(app._handle(request)), rounds),  # noqa: B023
                per_call(lambda: drive(floor_app._handle(floor_request)), rounds),  # noqa: B023
            )
        )
        rows.append(
            (
                f"{kind}: the same app without its middlewares (_NotFound, guard)",
                per_call(lambda: drive(bare._handle(bare_request)), rounds),  # noqa: B023
                rows[-1][2],
            )
        )
    # The pieces of the handler, on the gzip request (the plain one differs only in body).
    refresher, process = app[REFRESHER], _process_metrics(app)
    published = refresher.published
    assert published is not None
    accept, encoding = "", "gzip"
    variant = metrics_variant(accept, encoding)
    dynamic = process.current()
    metrics_headers = CIMultiDict(response.headers)
    pieces = [
        (
            "request.headers.get x 2 (Accept, Accept-Encoding)",
            lambda: (request.headers.get("Accept", ""), request.headers.get("Accept-Encoding", "")),
            None,
        ),
        (
            "negotiate.metrics_variant (lru_cache hit)",
            lambda: metrics_variant(accept, encoding),
            None,
        ),
        ("ProcessMetrics.current() (cached)", process.current, None),
        (
            "MetricsPages.body (assembled, cached)",
            lambda: published.product.metrics.body(dynamic, variant),
            None,
        ),
        (
            "web.Response(headers=CIMultiDict x 3) vs the floor's dict x 2",
            lambda: web.Response(body=body, headers=metrics_headers),
            lambda: web.Response(body=body, headers=floor_headers),
        ),
    ]
    for name, ours, floor in pieces:
        rows.append(
            (f"handler: {name}", per_call(ours, rounds), per_call(floor, rounds) if floor else 0.0)
        )
    rows.append(_serialize_row(response.headers, floor_headers, len(body), rounds))
    rows.append(_connection_row(rounds))
    lines = [
        "| per /metrics request (in process, best of repeats) | daemon | floor | extra |",
        "|---|---|---|---|",
    ]
    for name, ours_s, floor_s in rows:
        floor_text = us(floor_s) if floor_s else "-"
        lines.append(f"| {name} | {us(ours_s)} | {floor_text} | {us(ours_s - floor_s)} |")
    lines += _amortized_lines(config, targets_config, rps, rounds)
    return lines


def _process_metrics(app: Any) -> ProcessMetrics:
    from exporter.web import PROCESS_METRICS

    return app[PROCESS_METRICS]  # type: ignore[no-any-return]


def _serialize_row(
    headers: Any, floor_headers: dict[str, str], size: int, rounds: int
) -> tuple[str, float, float]:
    """The response head as aiohttp writes it: the daemon's headers against the floor's."""
    from multidict import CIMultiDict

    try:
        from aiohttp.http_writer import _serialize_headers
    except ImportError:  # a private function: another aiohttp may not have it
        return ("response head serialisation (aiohttp private API missing)", 0.0, 0.0)
    common = {"Content-Length": str(size), "Date": "Thu, 01 Jan 2026 00:00:00 GMT"}
    common["Server"] = "Python/3.11 aiohttp/3"
    ours = CIMultiDict({**headers, **common})
    floor = CIMultiDict({**floor_headers, **common})
    status = "HTTP/1.1 200 OK"
    return (
        f"response head: {len(_serialize_headers(status, ours))} bytes vs "
        f"{len(_serialize_headers(status, floor))} (Vary)",
        per_call(lambda: _serialize_headers(status, ours), rounds),
        per_call(lambda: _serialize_headers(status, floor), rounds),
    )


def _connection_row(rounds: int) -> tuple[str, float, float]:
    """GuardedTCPSite's protocol wrapper: data_received before aiohttp's protocol."""
    from exporter.config import WebConfig
    from exporter.guard import ConnectionLimits, _GuardedConnection

    class Inner(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            pass

    inner = Inner()
    guarded = _GuardedConnection(inner, ConnectionLimits(WebConfig()))
    data = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept-Encoding: gzip\r\n\r\n"
    return (
        "connection: _GuardedConnection.data_received (GuardedTCPSite)",
        per_call(lambda: guarded.data_received(data), rounds),
        per_call(lambda: inner.data_received(data), rounds),
    )


def _amortized_lines(config: Config, targets_config: Config, rps: float, rounds: int) -> list[str]:
    """Once per PROCESS_MAX_AGE_SECONDS, not per request: the process metrics are rendered
    again and every body re-assembled; spread over the requests of that second."""
    lines = []
    render = per_call(ProcessMetrics(max_age=0).current, rounds)
    per_second = rps * PROCESS_MAX_AGE_SECONDS
    lines.append(
        f"| once per {PROCESS_MAX_AGE_SECONDS:g} s: ProcessMetrics render ({us(render)}),"
        f" spread over {per_second:,.0f} requests | {us(render / per_second)} | - |"
        f" {us(render / per_second)} |"
    )
    for what, cfg in (("single target", config), ("targets", targets_config)):
        host = take_host(cfg, Identity.new())
        pages = MetricsPages(host, RefreshStats(), None)
        dynamic = ProcessMetrics().current()
        for gzip in (False, True):
            fresh = [Fragment(dynamic.text, dynamic.openmetrics) for _ in range(8)]
            cycle = iter(fresh * 10_000)
            cost = per_call(lambda: pages.body(next(cycle), (False, gzip)), rounds)  # noqa: B023
            kind = "gzip" if gzip else "plain"
            lines.append(
                f"| once per {PROCESS_MAX_AGE_SECONDS:g} s: {what} {kind} body re-assembled"
                f" ({us(cost)}), spread over {per_second:,.0f} requests |"
                f" {us(cost / per_second)} | - | {us(cost / per_second)} |"
            )
    return lines


# ---------------------------------------------------------------- main


def main() -> None:
    """Build the environments, measure, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=50)
    parser.add_argument("--distributions", type=int, default=300, help="per environment")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds per comparison")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--refresh-only", action="store_true", help="only the in-process refresh rows (quick)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    table = Table()
    processes = Processes()
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="status-exporter-targets-"))
    try:
        files = args.environments * args.distributions
        print(f"building {args.environments} environments, {files:,} METADATA", file=sys.stderr)
        roots = build_environments(tmp / "envs", args.environments, args.distributions)
        mapping = targets_mapping(roots)
        config = config_from_mapping(mapping)

        print("refresh (in process, medians of alternated rounds)", file=sys.stderr)
        refresh = measure_refresh(config, roots, args.rounds)
        refresh_rows(table, refresh, args.environments, args.distributions)
        notes += where_the_time_goes(config, refresh, args)
        if args.refresh_only:
            finish(args, started, table, notes)
            return

        config_path = tmp / "targets.json"
        config_path.write_text(json.dumps(mapping))
        single_path = write_config(tmp / "single.json", site_of(roots[0]), 3600, uvloop=False)
        port, single_port = free_port(), free_port()
        daemon = processes.start("targets", daemon_args(config_path, port), port)
        single = processes.start("single", daemon_args(single_path, single_port), single_port)
        scrape_a_few(daemon)
        scrape_a_few(single)
        daemon_rss, single_rss = daemon.rss_mb(), single.rss_mb()
        table.add(
            "daemon's own first refresh (status_exporter_refresh_duration_seconds)",
            ms(refresh_seconds(daemon)),
            f"in process {ms(med(refresh.cold))}",
            "-",
            "informative (a cold process)",
        )
        table.add(
            f"RSS after the first refresh and 10 scrapes, {args.environments} targets",
            f"{daemon_rss:.1f} MB",
            f"single target ({args.distributions} dists, modules.paths) {single_rss:.1f} MB",
            f"{daemon_rss / single_rss:.2f}x",
            f"<= 2x: {verdict(daemon_rss <= 2 * single_rss)}",
        )

        what = f"{args.environments} targets"
        load_pair(table, processes, tmp, daemon, what, args)

        def constant_args(body: Path, port: int) -> list[str]:
            daemon_line = daemon_args(single_path, port)
            assert daemon_line[1:3] == ["-m", "exporter"], daemon_line
            return [PY, "bench/constant_route.py", "--body", str(body), *daemon_line[3:]]

        single_loads = load_pair(
            table, processes, tmp, single, "single target", args, constant_args
        )
        ours, base = single_loads[False]
        extra_cpu = med([o.cpu_us for o in ours]) - med([b.cpu_us for b in base])
        table.add(
            f"RSS after the loads, {args.environments} targets",
            f"{daemon.rss_mb():.1f} MB",
            f"single target {single.rss_mb():.1f} MB",
            f"{daemon.rss_mb() / single.rss_mb():.2f}x",
            "informative",
        )
        processes.stop_all()

        print("per-request costs (in process)", file=sys.stderr)
        single_config = config_from_mapping(json.loads(single_path.read_text()))
        rps = med([o.rps for o in ours])
        notes += [
            "",
            "What a /metrics request of the single-target daemon costs that the floor's does"
            f" not (server CPU per request, plain, measured under wrk: {extra_cpu:+.1f} us):",
            "",
            *request_costs(single_config, rps, config, args.rounds),
        ]
    finally:
        processes.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    finish(args, started, table, notes)


def finish(args: argparse.Namespace, started: float, table: Table, notes: list[str]) -> None:
    """Print the report (and write it to ``--output``)."""
    machine = (
        f"{platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()},"
        f" {'wrk' if shutil.which('wrk') else 'python load generator'}"
        f" -t1 -c{CONNECTIONS} -d{args.duration:g}s x {args.rounds} alternating rounds"
    )
    report = (
        f"{args.environments} environments x {args.distributions} distributions"
        f" ({args.environments * args.distributions:,} METADATA); {machine};"
        f" took {time.monotonic() - started:.0f} s\n\n{table.render()}\n" + "\n".join(notes) + "\n"
    )
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
