"""Soak: a fixed number of requests while refreshes run back to back and the environment changes.

Usage: python bench/soak.py [--requests 1000000] [--concurrency 32] [--max-seconds 1800]

Loopback only, bounded in count and time; it stops every process it started.
Reports errors (must be 0), the daemon's RSS after warm-up and at the end
(growth must stay under 5%) and its open file descriptors (must come back to
the count before the load). Exits 1 when a bound is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from common import daemon_command, free_port

ROOT = Path(__file__).resolve().parent.parent
WARM_UP_SHARE = 0.05


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` keeps open: the fewest of ten looks over half a second.

    The refresher opens METADATA files all the time when refreshes run back to
    back, so one look may catch one of those.
    """
    counts = []
    for _ in range(10):
        counts.append(len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(0.05)
    return min(counts)


def install(site: Path, name: str, version: str) -> None:
    """Write a distribution's metadata as pip would."""
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(exist_ok=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def churn(site: Path, stop: threading.Event) -> None:
    """Install, upgrade and remove a distribution every 0.2 s until told to stop."""
    step = 0
    while not stop.wait(0.2):
        step += 1
        shutil.rmtree(site / f"churn-{step - 1}.0.dist-info", ignore_errors=True)
        install(site, "churn", f"{step}.0")


async def load(
    base: str, total: int, concurrency: int, deadline: float, warmed: asyncio.Event, warm_at: int
) -> tuple[int, list[str]]:
    """Send ``total`` requests over ``concurrency`` keep-alive connections; return sent, errors."""
    sent = 0
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def worker() -> None:
            nonlocal sent
            while sent < total and time.monotonic() < deadline:
                path = "/metrics" if sent % 2 else "/api/v1/status/"
                sent += 1
                if sent == warm_at:
                    warmed.set()
                try:
                    async with session.get(base + path) as response:
                        body = await response.read()
                    if response.status != 200:
                        errors.append(f"{path}: HTTP {response.status}")
                    elif path == "/metrics" and b"module_info{" not in body:
                        errors.append("/metrics: no module_info")
                    elif path != "/metrics" and "modules" not in json.loads(body):
                        errors.append("/api/v1/status/: no modules")
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    errors.append(f"{path}: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent, errors


def main() -> int:
    """Run the soak and print its report; non-zero exit when a bound is broken."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--distributions", type=int, default=300)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="status-exporter-soak-"))
    stop = threading.Event()
    daemon = None
    try:
        site = tmp / "site-packages"
        site.mkdir()
        for i in range(args.distributions):
            install(site, f"package-{i}", f"1.{i}")
        config = tmp / "config.json"
        config.write_text(
            json.dumps(
                {
                    "modules": {"paths": [str(site)]},
                    "refresh": {"interval_seconds": 0.01},  # back to back
                    "commit": {"value": "soak"},
                }
            )
        )
        port = free_port()
        daemon = subprocess.Popen(
            daemon_command(config, port, log_level="error"),
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("the daemon did not start") from None
                time.sleep(0.05)
        time.sleep(0.5)
        fds_before = open_fds(daemon.pid)
        changer = threading.Thread(target=churn, args=(site, stop), daemon=True)
        changer.start()

        async def run() -> tuple[int, list[str], int]:
            warmed = asyncio.Event()
            task = asyncio.create_task(
                load(
                    base,
                    args.requests,
                    args.concurrency,
                    time.monotonic() + args.max_seconds,
                    warmed,
                    max(1, int(args.requests * WARM_UP_SHARE)),
                )
            )
            await asyncio.wait(
                [asyncio.create_task(warmed.wait()), task], return_when=asyncio.FIRST_COMPLETED
            )
            rss_warm = rss_kib(daemon.pid)
            sent, errors = await task
            return sent, errors, rss_warm

        started = time.monotonic()
        sent, errors, rss_start = asyncio.run(run())
        elapsed = time.monotonic() - started
        stop.set()
        changer.join(5)
        rss_end = rss_kib(daemon.pid)
        # Let the closed client connections go, and the last change leave the racy window
        # (RACY_SECONDS, 2 s): until then every refresh lists the changed directory again,
        # holding its descriptor while it reads the directory's files.
        time.sleep(3.0)
        fds_after = open_fds(daemon.pid)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            text = b"".join(iter(lambda: sock.recv(65536), b"")).decode(errors="replace")
        refreshes = next(
            (
                line.split()[1]
                for line in text.splitlines()
                if line.startswith("status_exporter_refreshes_total ")
            ),
            "?",
        )
        growth = (rss_end - rss_start) / rss_start * 100
        print(
            f"requests: {sent:,} in {elapsed:.0f} s ({sent / elapsed:,.0f}/s), "
            f"concurrency {args.concurrency}, refreshes during the run: {refreshes}"
        )
        print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        print(
            f"rss: {rss_start / 1024:.1f} MiB after warm-up, {rss_end / 1024:.1f} MiB at the end "
            f"({growth:+.2f}%)"
        )
        print(f"open fds: {fds_before} before, {fds_after} after")
        ok = not errors and growth < 5.0 and fds_after <= fds_before and sent == args.requests
        print("result: " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        stop.set()
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
