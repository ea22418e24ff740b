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
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import daemon_command, free_port  # noqa: E402

from exporter.collectors.installed import scan_installed  # noqa: E402
from exporter.config import config_from_mapping  # noqa: E402
from exporter.refresh import RefreshStats  # noqa: E402
from exporter.render.pages import render_pages  # noqa: E402
from exporter.snapshot import Identity, Sources, take_snapshot  # noqa: E402

PY = sys.executable
CONNECTIONS = 32
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


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    """A started server process and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        """The server's /metrics URL."""
        return f"http://127.0.0.1:{self.port}/metrics"

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory of the process now, in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> bytes:
    """GET ``url`` and return the (decoded by urllib: never gzip) body."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


def wait_ready(url: str, deadline_s: float = 30.0) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        with contextlib.suppress(OSError):
            http_get(url, timeout=1)
            return time.perf_counter() - started
        time.sleep(0.002)
    raise RuntimeError(f"{url} not ready after {deadline_s} s")


class Processes:
    """Starts servers and guarantees they are all stopped."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def start(self, name: str, args: list[str], port: int, ready_path: str = "/metrics") -> Server:
        """Start ``args`` and wait until ``ready_path`` answers 200."""
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        server = Server(name, process, port)
        self.started.append(server)
        wait_ready(f"http://127.0.0.1:{port}{ready_path}")
        return server

    def stop(self, server: Server) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(5)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(5)

    def stop_all(self) -> None:
        """Stop every process started."""
        for server in self.started:
            self.stop(server)


def daemon_args(config: Path, port: int) -> list[str]:
    """The command line of the daemon under test."""
    return daemon_command(config, port)


def write_config(path: Path, site: Path, interval: float, uvloop: bool) -> Path:
    """A daemon config (JSON is YAML) scanning ``site``."""
    path.write_text(
        json.dumps(
            {
                # Every distribution is published, past the default modules.max of 5,000.
                "modules": {"paths": [str(site)], "max": 1_000_000},
                "refresh": {"interval_seconds": interval},
                "web": {"uvloop": uvloop},
                "commit": {"value": "bench00"},
            }
        )
    )
    return path


# ---------------------------------------------------------------- load


@dataclass
class Load:
    """One load run's throughput, tail latency, request count and server CPU per request."""

    rps: float
    p99_ms: float
    requests: int
    cpu_us: float = float("nan")


_WRK_LATENCY = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def run_load(url: str, seconds: float, headers: dict[str, str] | None = None) -> Load:
    """Drive ``url`` with wrk (-t1 -c32), or the bounded Python generator when wrk is missing."""
    headers = headers or {}
    if shutil.which("wrk"):
        args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
        for key, value in headers.items():
            args += ["-H", f"{key}: {value}"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        value, unit = _WRK_LATENCY.search(out).groups()  # type: ignore[union-attr]
        p99 = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        return Load(rps, p99, requests)
    return python_load(url, seconds, headers)


def python_load(url: str, seconds: float, headers: dict[str, str]) -> Load:
    """A bounded keep-alive load generator: CONNECTIONS threads, each for ``seconds``."""
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = port_path.split("/", 1)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        mine = []
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            reader = sock.makefile("rb")
            while time.monotonic() < deadline:
                started = time.perf_counter()
                sock.sendall(request)
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                reader.read(length)
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else float("nan")
    return Load(len(latencies) / seconds, p99, len(latencies))


def measured_load(server: Server, seconds: float, headers: dict[str, str] | None = None) -> Load:
    """Run the load on ``server`` and add the CPU it spent per request."""
    before = server.cpu_seconds()
    load = run_load(server.url, seconds, headers)
    spent = server.cpu_seconds() - before
    return Load(load.rps, load.p99_ms, load.requests, spent / max(load.requests, 1) * 1e6)


def alternate(
    a: Server, b: Server, seconds: float, rounds: int, headers: dict[str, str] | None = None
) -> tuple[list[Load], list[Load]]:
    """Run the load on ``a`` and ``b`` ``rounds`` times each, in ABBA order to cancel drift."""
    loads_a, loads_b = [], []
    for index in range(rounds):
        if index % 2 == 0:
            loads_a.append(measured_load(a, seconds, headers))
            loads_b.append(measured_load(b, seconds, headers))
        else:
            loads_b.append(measured_load(b, seconds, headers))
            loads_a.append(measured_load(a, seconds, headers))
    return loads_a, loads_b


def compare(
    table: Table, what: str, ours: list[Load], base: list[Load], floor: str = "floor"
) -> None:
    """Add the throughput, p99 and CPU-per-request rows of one side-by-side comparison."""
    rps, p99, cpu = (ratio(ours, base, attr) for attr in ("rps", "p99_ms", "cpu_us"))
    table.add(
        f"{what}, req/s",
        f"{med([o.rps for o in ours]):,.0f}",
        f"{floor} {med([b.rps for b in base]):,.0f}",
        f"{rps:.3f}x",
        f">= 0.95x: {verdict(rps >= 0.95)}",
    )
    table.add(
        f"{what}, p99 at c{CONNECTIONS}",
        f"{med([o.p99_ms for o in ours]):.2f} ms",
        f"{floor} {med([b.p99_ms for b in base]):.2f} ms",
        f"{p99:.2f}x",
        f"<= 1.5x: {verdict(p99 <= 1.5)}",
    )
    table.add(
        f"{what}, server CPU per request",
        f"{med([o.cpu_us for o in ours]):.1f} us",
        f"{floor} {med([b.cpu_us for b in base]):.1f} us",
        f"{cpu:.3f}x",
        "informative: steadier than req/s on a shared machine",
    )


def peer_row(table: Table, what: str, ours: list[Load], peer: Load, target: str) -> None:
    """A row comparing the daemon's req/s with another server's single run."""
    ours_rps = med([o.rps for o in ours])
    table.add(
        what,
        f"{ours_rps:,.0f}",
        f"{peer.rps:,.0f} (p99 {peer.p99_ms:.0f} ms)",
        f"{ours_rps / peer.rps:.0f}x",
        target,
    )


def med(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def ratio(ours: list[Load], floor: list[Load], attr: str) -> float:
    """Median over rounds of ours/floor for ``attr``."""
    return med([getattr(o, attr) / getattr(f, attr) for o, f in zip(ours, floor, strict=True)])


# ---------------------------------------------------------------- report


class Table:
    """A markdown table of figures, baselines, ratios and targets."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, ours: str, baseline: str, ratio_text: str, target: str) -> None:
        """Add a row and echo it to stderr as it is measured."""
        self.rows.append((what, ours, baseline, ratio_text, target))
        print(f"  {what}: {ours} vs {baseline} -> {ratio_text} ({target})", file=sys.stderr)

    def render(self) -> str:
        """The table as markdown."""
        head = ("what", "status-exporter", "baseline", "ratio", "target")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    """How a target fared."""
    return "holds" if ok else "MISSED"


@contextlib.contextmanager
def touching(path: Path, every: float) -> Iterator[None]:
    """Keep changing ``path``'s mtime so that every refresh must read it again."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            os.utime(path)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


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
