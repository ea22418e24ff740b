"""Benchmark status-exporter against baselines run side by side, and print ratios.

Usage: python bench/run.py [--distributions 1000] [--duration 8] [--rounds 3]

Everything runs on 127.0.0.1 in one go, bounded in time, and every process
started is stopped. Machines here are shared and noisy, so the figures that
matter are the ratios: each load test alternates the daemon and its floor
round by round, and a ratio is the median of the per-round ratios.

Baselines:
- floor: an aiohttp handler returning the daemon's own body as constant bytes
  (and the same with uvloop, and the gzip body with Content-Encoding);
- prometheus_client's start_http_server publishing the same module series;
- Debian's Go node_exporter, when installed;
- refresh floors: a directory listing, reading the first KB of each METADATA,
  and importlib.metadata.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import free_port  # noqa: E402
from harness import (  # noqa: E402
    CONNECTIONS,
    PY,
    Processes,
    Server,
    Table,
    alternate,
    compare,
    daemon_args,
    http_get,
    med,
    median_time,
    peer_row,
    run_load,
    touching,
    verdict,
    wait_ready,
    write_config,
)

from exporter.collectors.installed import scan_installed  # noqa: E402
from exporter.config import config_from_mapping  # noqa: E402
from exporter.refresh import RefreshStats  # noqa: E402
from exporter.render.pages import render_pages  # noqa: E402
from exporter.snapshot import Identity, Sources, take_snapshot  # noqa: E402

OPENMETRICS = "application/openmetrics-text;version=1.0.0"


# ---------------------------------------------------------------- environment


def build_environment(path: Path, count: int) -> None:
    """Write ``count`` distributions with realistic METADATA (headers, classifiers, a body)."""
    path.mkdir(parents=True)
    classifiers = "".join(f"Classifier: Topic :: Software Development :: {i}\n" for i in range(15))
    body = "A description paragraph of realistic length. " * 60
    for i in range(count):
        folder = path / f"package_{i:05d}-{i % 7}.{i % 13}.{i}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: package-{i:05d}\nVersion: {i % 7}.{i % 13}.{i}\n"
            f"Summary: synthetic package {i}\nLicense: MIT\n{classifiers}"
            f"Requires-Dist: other-{i % 50}>=1.0\n\n{body}\n"
        )
        (folder / "RECORD").write_text(f"package_{i}/__init__.py,,\n")
    past = time.time() - 3600
    os.utime(path, (past, past))  # old enough that the daemon's cache may trust it


def refresh_costs(site: Path, repeat: int) -> dict[str, float]:
    """Seconds per refresh for the daemon's scanner and the floors, interleaved."""

    def listing() -> None:
        with os.scandir(site) as entries:
            [e.name for e in entries]

    def header_only() -> None:
        with os.scandir(site) as entries:
            for e in entries:
                if e.name.endswith(".dist-info"):
                    with open(os.path.join(e.path, "METADATA"), "rb") as f:
                        f.read(1024)

    def importlib_metadata() -> None:
        for d in importlib.metadata.distributions(path=[str(site)]):
            (d.metadata["Name"], d.version)

    def cold() -> None:
        scan_installed([str(site)])

    warm_start = scan_installed([str(site)])

    def warm() -> None:
        scan_installed([str(site)], warm_start)

    config = config_from_mapping({"modules": {"paths": [str(site)]}})
    identity = Identity.new()
    snapshot = take_snapshot(config, identity, sources=Sources(environ={}))

    def render() -> None:
        render_pages(snapshot, RefreshStats(), None)

    first = render_pages(snapshot, RefreshStats(), None)

    def render_unchanged() -> None:
        render_pages(snapshot, RefreshStats(), first)

    results: dict[str, list[float]] = {}
    cases = {
        "listing": listing,
        "header_only": header_only,
        "cold": cold,
        "warm": warm,
        "render": render,
        "render_unchanged": render_unchanged,
        "importlib": importlib_metadata,
    }
    for _ in range(3):
        for name, fn in cases.items():
            reps = 1 if name == "importlib" else repeat
            results.setdefault(name, []).append(median_time(fn, reps))
    return {name: statistics.median(values) for name, values in results.items()}


def startup_times(processes: Processes, args_of: Callable[[int], list[str]], runs: int) -> float:
    """Median seconds from spawn to the first 200 on /metrics."""
    times = []
    for _ in range(runs):
        port = free_port()
        started = time.perf_counter()
        process = subprocess.Popen(
            args_of(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        server = Server("startup", process, port)
        processes.started.append(server)
        try:
            wait_ready(server.url)
            times.append(time.perf_counter() - started)
        finally:
            processes.stop(server)
    return med(times)


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distributions", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds per comparison")
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    started = time.monotonic()
    table = Table()
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="status-exporter-bench-"))
    try:
        site = tmp / "site-packages"
        print(f"building {args.distributions} distributions in {site}", file=sys.stderr)
        build_environment(site, args.distributions)

        print("refresh cost (in-process, medians)", file=sys.stderr)
        costs = refresh_costs(site, repeat=5)
        ms = {k: f"{v * 1e3:.2f} ms" for k, v in costs.items()}
        table.add(
            f"refresh, {args.distributions} dists, cold (full read)",
            ms["cold"],
            f"header-only floor {ms['header_only']}",
            f"{costs['cold'] / costs['header_only']:.2f}x",
            f"<= 1.5x: {verdict(costs['cold'] <= 1.5 * costs['header_only'])}",
        )
        table.add(
            "refresh, unchanged directory (mtime cache)",
            ms["warm"],
            f"directory listing {ms['listing']}",
            f"{costs['warm'] / costs['listing']:.2f}x",
            "about a listing",
        )
        table.add(
            "refresh, cold, vs importlib.metadata",
            ms["cold"],
            f"importlib.metadata {ms['importlib']}",
            f"{costs['cold'] / costs['importlib']:.3f}x",
            "informative",
        )
        table.add("render every body, facts changed", ms["render"], "-", "-", "informative")
        table.add(
            "render every body, facts unchanged", ms["render_unchanged"], "-", "-", "informative"
        )

        config = write_config(tmp / "config.json", site, 3600, uvloop=False)
        config_uv = write_config(tmp / "config-uv.json", site, 3600, uvloop=True)
        port = free_port()
        daemon = processes.start("daemon", daemon_args(config, port), port)
        own = http_get(daemon.url).decode()
        own_match = re.search(r"^status_exporter_refresh_duration_seconds ([\d.e-]+)$", own, re.M)
        own_refresh = float(own_match.group(1)) if own_match else float("nan")
        series = len(re.findall(r"^module_info\{", own, re.M))
        table.add(
            "daemon's own status_exporter_refresh_duration_seconds (first, cold)",
            f"{own_refresh * 1e3:.2f} ms",
            f"header-only floor {ms['header_only']}",
            f"{own_refresh / costs['header_only']:.2f}x",
            "informative (cold process)",
        )

        plain = http_get(daemon.url)
        zipped_request = urllib.request.Request(daemon.url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(zipped_request) as response:
            zipped = response.read()
        (tmp / "body").write_bytes(plain)
        (tmp / "body.gz").write_bytes(zipped)
        floor_port, floor_gz_port = free_port(), free_port()
        floor = processes.start(
            "floor",
            [PY, "bench/floor.py", "--port", str(floor_port), "--body", str(tmp / "body")],
            floor_port,
        )
        floor_gz = processes.start(
            "floor-gz",
            [
                PY,
                "bench/floor.py",
                "--port",
                str(floor_gz_port),
                "--body",
                str(tmp / "body.gz"),
                "--content-encoding",
                "gzip",
            ],
            floor_gz_port,
        )
        print(
            f"body: {len(plain)} bytes plain, {len(zipped)} gzip; {series} module series",
            file=sys.stderr,
        )

        print("load: /metrics plain vs floor", file=sys.stderr)
        ours, base = alternate(daemon, floor, args.duration, args.rounds)
        compare(table, f"/metrics plain ({len(plain) // 1024} KB, {series} series)", ours, base)
        idle_p99 = med([o.p99_ms for o in ours])
        daemon_requests = sum(o.requests for o in ours)
        floor_requests = sum(b.requests for b in base)

        print("load: /metrics gzip vs gzip floor", file=sys.stderr)
        gz = {"Accept-Encoding": "gzip"}
        ours_gz, base_gz = alternate(daemon, floor_gz, args.duration, args.rounds, gz)
        compare(table, f"/metrics gzip ({len(zipped) // 1024} KB)", ours_gz, base_gz)
        daemon_requests += sum(o.requests for o in ours_gz)
        floor_requests += sum(b.requests for b in base_gz)

        om = run_load(daemon.url, args.duration, {"Accept": OPENMETRICS})
        table.add("/metrics OpenMetrics, req/s", f"{om.rps:,.0f}", "-", "-", "informative")
        daemon_requests += om.requests

        try:
            import uvloop  # noqa: F401
        except ImportError:
            table.add("uvloop", "not installed", "-", "-", "skipped: pip install uvloop")
        else:
            uv_port, floor_uv_port = free_port(), free_port()
            daemon_uv = processes.start("daemon-uv", daemon_args(config_uv, uv_port), uv_port)
            floor_uv = processes.start(
                "floor-uv",
                [
                    PY,
                    "bench/floor.py",
                    "--port",
                    str(floor_uv_port),
                    "--body",
                    str(tmp / "body"),
                    "--uvloop",
                ],
                floor_uv_port,
            )
            print("load: uvloop daemon vs uvloop floor", file=sys.stderr)
            ours_uv, base_uv = alternate(daemon_uv, floor_uv, args.duration, args.rounds)
            compare(table, "/metrics plain on uvloop", ours_uv, base_uv, "uvloop floor")
            processes.stop(daemon_uv)
            processes.stop(floor_uv)

        client_port = free_port()
        client = processes.start(
            "start_http_server",
            [
                PY,
                "bench/client_server.py",
                "--port",
                str(client_port),
                "--site-packages",
                str(site),
            ],
            client_port,
        )
        print("load: prometheus_client start_http_server", file=sys.stderr)
        client_load = run_load(client.url, args.duration)
        processes.stop(client)
        peer_row(
            table, "prometheus_client start_http_server, req/s", ours, client_load, "about 100x"
        )

        node = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
        if node:
            node_port = free_port()
            node_server = processes.start(
                "node_exporter", [node, f"--web.listen-address=127.0.0.1:{node_port}"], node_port
            )
            print("load: node_exporter", file=sys.stderr)
            node_load = run_load(node_server.url, args.duration)
            processes.stop(node_server)
            peer_row(
                table,
                "Go node_exporter (collects per scrape), req/s",
                ours,
                node_load,
                "informative",
            )

        daemon_rss, floor_rss = daemon.rss_mb(), floor.rss_mb()
        table.add(
            f"RSS after {daemon_requests:,} requests (floor: {floor_requests:,})",
            f"{daemon_rss:.1f} MB",
            f"floor {floor_rss:.1f} MB",
            f"+{daemon_rss - floor_rss:.1f} MB",
            f"<= floor + 5 MB: {verdict(daemon_rss <= floor_rss + 5)}",
        )
        processes.stop(daemon)

        busy_config = write_config(tmp / "busy.json", site, 0.001, uvloop=False)
        busy_port = free_port()
        busy = processes.start("daemon-busy", daemon_args(busy_config, busy_port), busy_port)
        print("load: /metrics while refreshes run back to back", file=sys.stderr)
        with touching(site, 0.05):
            busy_load = run_load(busy.url, args.duration)
        refreshes = re.search(
            r"^status_exporter_refreshes_total ([\d.e+]+)$", http_get(busy.url).decode(), re.M
        )
        processes.stop(busy)
        count = refreshes.group(1) if refreshes else "?"
        table.add(
            f"p99 during back-to-back full refreshes ({count} refreshes)",
            f"{busy_load.p99_ms:.2f} ms",
            f"idle {idle_p99:.2f} ms",
            f"{busy_load.p99_ms / idle_p99:.2f}x",
            f"<= 2x: {verdict(busy_load.p99_ms <= 2 * idle_p99)}",
        )

        print("start-up time", file=sys.stderr)
        ours_start = startup_times(processes, lambda p: daemon_args(config, p), 5)
        floor_start = startup_times(
            processes,
            lambda p: [PY, "bench/floor.py", "--port", str(p), "--body", str(tmp / "body")],
            5,
        )
        table.add(
            "start to first 200 on /metrics",
            f"{ours_start * 1e3:.0f} ms",
            f"floor {floor_start * 1e3:.0f} ms",
            f"{ours_start / floor_start:.2f}x",
            f"<= 1.2x: {verdict(ours_start <= 1.2 * floor_start)}",
        )
    finally:
        processes.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {'wrk' if shutil.which('wrk') else 'python load generator'}"
        f" -t1 -c{CONNECTIONS} -d{args.duration:g}s x {args.rounds} alternating rounds"
    )
    report = (
        f"{args.distributions} distributions; {machine}; "
        f"took {time.monotonic() - started:.0f} s\n\n{table.render()}\n"
    )
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
