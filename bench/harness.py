"""The benchmark harness: processes under test, load generation (wrk, or a Python
fallback), ABBA comparisons, and the report table. Shared by run.py and security.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common import daemon_command

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CONNECTIONS = 32


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    """A started server process and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    path: str = "/metrics"

    @property
    def url(self) -> str:
        """The URL under load: /metrics unless ``path`` says otherwise."""
        return f"http://127.0.0.1:{self.port}{self.path}"

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


def write_config(
    path: Path, site: Path, interval: float, uvloop: bool, advisories: Path | None = None
) -> Path:
    """A daemon config (JSON is YAML) scanning ``site``, with an advisory database or not."""
    data: dict[str, object] = {
        # Every distribution is published, past the default modules.max of 5,000.
        "modules": {"paths": [str(site)], "max": 1_000_000},
        "refresh": {"interval_seconds": interval},
        "web": {"uvloop": uvloop},
        "commit": {"value": "bench00"},
    }
    if advisories:
        data["advisories"] = {"paths": [str(advisories)]}
    path.write_text(json.dumps(data))
    return path


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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
