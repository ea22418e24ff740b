"""Benchmark process discovery on a host of ~1,000 processes against a floor run side by side.

Usage: python bench/discovery.py [--processes 1000] [--python 100] [--environments 10]
       [--rounds 41] [--no-rss | --rss-only] [--services 30] [--distributions 300]
       [--timeout 300]

Starts ``--processes`` processes in all (bounded, every one killed at the end):
``--python`` of them Python, sleeping, spread over ``--environments`` virtual
environments (``python -m venv --without-pip``, a fake dist-info in each), the rest
``sleep``. Then measures, in rounds that alternate their order (ABBA):

- the floor: list the procfs and read every ``/proc/<pid>/stat`` (``os.open``,
  one ``os.read``, ``os.close``: the least a listing of processes can cost);
- ``discover()`` when nothing changed (given the previous call's result), target <= 3x
  the floor;
- the plain pass (informative): the floor plus reading the Python processes'
  ``cmdline``, ``environ``, ``cgroup`` and ``maps`` (Python told by ``comm``), the
  work a discovery without its cache would repeat on every refresh;
- a first ``discover()`` (no previous: every process examined), informative.

The figure that matters is the ratio: the median over rounds of each round's ratio.

Then (``--rss``, on by default; ``--rss-only`` skips the timing above) the memory of one
agent against the daemons it replaces: ``--services`` Python processes sleeping, each in
its own venv (``python -m venv --without-pip``) holding ``--distributions`` fake
dist-info directories (METADATA headers as bench/targets.py writes them, mtimes an hour
old), a marker on their command lines. Side by side:

- one agent, ``targets.discover.processes: true`` with an include matcher on the marker and
  the name ``{venv}``, once ``/api/v1/targets`` lists every service as a process target;
- ``--services`` single-environment daemons, each ``modules.paths: [<its site-packages>]``,
  all running at once.

Each daemon is measured after it has published, two refresh intervals more and a few
scrapes in each format: ``VmRSS`` of its whole process tree (an advisory child included,
had it one: neither side configures advisories). Target: the agent's RSS <= 1/10 of the
sum of the daemons'. PSS (``smaps_rollup``, shared pages split between the processes
sharing them) is informative.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_distributions  # noqa: E402
from harness import Table, verdict  # noqa: E402

from exporter.config import DiscoverConfig  # noqa: E402
from exporter.sources.discovery.processes import (  # noqa: E402
    KIND_PROCESS,
    SETTLE_SECONDS,
    Discovery,
    discover,
)
from exporter.sources.discovery.procfs import ProcFS  # noqa: E402

PROC = "/proc"
BUDGET = 3.0  # discover() unchanged <= 3x the floor
RSS_BUDGET = 0.1  # one agent's RSS <= 1/10 of the single-environment daemons' sum
RSS_INTERVAL_S = 5.0  # refresh.interval_seconds, the same on both sides
_PYTHON_COMMS = (b"(python", b"(pypy")


def _stats(mount: str) -> Iterator[tuple[str, bytes]]:
    """(pid, its ``stat``) of every pid listed in ``mount`` whose ``stat`` could be read:
    ``os.open``, one ``os.read``, ``os.close``."""
    for name in os.listdir(mount):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{mount}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            line = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        yield name, line


def floor(mount: str = PROC) -> int:
    """List ``mount`` and read every pid's ``stat``: the least a process listing costs.

    ``_stats``' loop written out: the generator costs about 2% (measured), and a floor that
    is slower than it needs to be makes the ratio against it look better."""
    read = 0
    for name in os.listdir(mount):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{mount}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            read += len(os.read(fd, 4096))
        except OSError:
            pass
        finally:
            os.close(fd)
    return read


def _read_all(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0
    size = 0
    try:
        while chunk := os.read(fd, 65536):
            size += len(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    return size


def plain_pass(mount: str = PROC) -> int:
    """The floor, plus the Python processes' cmdline, environ, cgroup and maps read whole."""
    read = 0
    for name, line in _stats(mount):
        read += len(line)
        if line[line.find(b"(") :].startswith(_PYTHON_COMMS):
            for file in ("cmdline", "environ", "cgroup", "maps"):
                read += _read_all(f"{mount}/{name}/{file}")
    return read


def _venv(venv: Path) -> Path:
    """Make ``venv`` with this Python's venv module, without pip; return its site-packages."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    (site,) = venv.glob("lib/python*/site-packages")
    return site


def make_venvs(base: Path, count: int) -> list[Path]:
    """``count`` venvs (no pip), each with one fake distribution."""
    venvs = []
    for index in range(count):
        venv = base / f"service-{index:02d}" / ".venv"
        dist = _venv(venv) / f"service{index}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: service{index}\nVersion: 1.0\n"
        )
        venvs.append(venv)
    return venvs


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ---------------------------------------------------------------- RSS: one agent vs N daemons


def fill_site(site: Path, index: int, distributions: int) -> None:
    """``distributions`` fake dist-info directories with realistic METADATA headers
    (bench/common.py's, as bench/targets.py writes them), from a shared pool of names at
    versions that differ between services; every mtime an hour old, so that the scanner
    trusts them."""
    past = time.time() - 3600
    for package, info in write_distributions(site, index, distributions):
        for path in (info / "METADATA", info, package):
            os.utime(path, (past, past))
    for path in (site, site.parent, site.parent.parent):
        os.utime(path, (past, past))


def make_service_venvs(base: Path, count: int, distributions: int) -> list[tuple[Path, Path]]:
    """``count`` venvs (no pip) of ``distributions`` fake distributions: (venv, site)."""
    made = []
    past = time.time() - 3600
    for index in range(count):
        venv = base / f"svc-{index:02d}"
        site = _venv(venv)
        fill_site(site, index, distributions)
        os.utime(venv / "pyvenv.cfg", (past, past))
        made.append((venv, site))
    return made


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it (an advisory child, say)."""
    parents: dict[int, list[int]] = {}
    for name, stat in _stats(PROC):
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _status_kib(pid: int, path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"{PROC}/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def memory_kib(root: int) -> tuple[int, int, int]:
    """(VmRSS, Pss, processes) of ``root``'s process tree, in KiB."""
    pids = _tree(root)
    rss = sum(_status_kib(pid, "status", "VmRSS:") for pid in pids)
    pss = sum(_status_kib(pid, "smaps_rollup", "Pss:") for pid in pids)
    return rss, pss, len(pids)


def kill_all(children: list[subprocess.Popen[bytes]], *, groups: bool) -> None:
    """SIGKILL every child (with ``groups``, its whole process group), then reap each
    (bounded wait)."""
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if groups:
                os.killpg(child.pid, signal.SIGKILL)
            else:
                child.send_signal(signal.SIGKILL)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)


class Daemon:
    """``python -m exporter`` on 127.0.0.1:0 in its own process group, its log in a file."""

    _LISTENING = re.compile(r"listening.*?(127\.0\.0\.1:\d+)")

    def __init__(self, name: str, config: dict[str, object], tmp: Path) -> None:
        self.name = name
        self.config = tmp / f"{name}.json"
        self.config.write_text(json.dumps(config))
        self.log = tmp / f"{name}.log"
        self.address = ""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "--config.file",
                    str(self.config),
                    "--web.listen-address",
                    "127.0.0.1:0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=ROOT,
                start_new_session=True,
            )

    def tail(self) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-2000:]

    def listening(self) -> str | None:
        """Its address once it has logged it; raises if it exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.tail()}")
        found = self._LISTENING.search(self.log.read_text(errors="replace"))
        if found:
            self.address = found.group(1)
        return self.address or None

    def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        """GET ``path`` on it (loopback, bounded)."""
        request = urllib.request.Request(f"http://{self.address}{path}", headers=headers or {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def process_targets(self) -> list[int]:
        """The module counts of the process targets /api/v1/targets lists (none before the
        first refresh)."""
        try:
            body = json.loads(self.get("/api/v1/targets"))
        except (OSError, ValueError):
            return []
        return [
            t.get("module_count") or 0 for t in body["targets"] if t.get("kind") == KIND_PROCESS
        ]

    def published(self) -> bool:
        """Whether /metrics answers with modules (its first refresh is published)."""
        with contextlib.suppress(OSError):
            return b"module_info" in self.get("/metrics")
        return False

    def module_series(self) -> int:
        """How many ``module_info`` series its /metrics has."""
        lines = self.get("/metrics").splitlines()
        return sum(1 for line in lines if line.startswith(b"module_info{"))

    def scrape_a_few(self) -> None:
        """A few scrapes in each format, as Prometheus would make, and the targets index."""
        for headers in (
            {},
            {"Accept-Encoding": "gzip"},
            {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"},
        ):
            for _ in range(3):
                self.get("/metrics", headers)
        self.get("/api/v1/targets")

    def kill(self) -> None:
        """SIGKILL its process group (bounded wait)."""
        kill_all([self.process], groups=True)


def wait_until(check: Callable[[], object], what: str, timeout: float) -> object:
    """Call ``check`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def _common_config() -> dict[str, object]:
    return {
        "refresh": {"interval_seconds": RSS_INTERVAL_S},
        "web": {"uvloop": False},
        "commit": {"value": "bench00"},
        # Every distribution is published on both sides, past the default modules.max.
        "modules": {"max": 1_000_000},
    }


def settle(daemons: list[Daemon]) -> None:
    """Two refresh intervals more, then a few scrapes of each: the state RSS is read in."""
    time.sleep(2 * RSS_INTERVAL_S + 0.5)
    for daemon in daemons:
        daemon.scrape_a_few()
    time.sleep(0.5)


def measure_rss(table: Table, services: int, distributions: int, timeout: float) -> str:
    """One agent discovering ``services`` processes against as many single-environment
    daemons, side by side; add the rows, return a one-line summary."""
    tmp = Path(tempfile.mkdtemp(prefix="status-exporter-discovery-rss-"))
    marker = f"rss-bench-service-{uuid.uuid4().hex[:12]}"
    children: list[subprocess.Popen[bytes]] = []
    daemons: list[Daemon] = []
    try:
        print(
            f"building {services} service venvs x {distributions} distributions",
            file=sys.stderr,
        )
        venvs = make_service_venvs(tmp / "services", services, distributions)
        for venv, _ in venvs:
            children.append(
                subprocess.Popen(
                    [str(venv / "bin" / "python"), "-c", "import time; time.sleep(600)", marker],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    cwd=venv,
                    start_new_session=True,
                )
            )
        time.sleep(SETTLE_SECONDS + 0.5)  # settled: looked at once, as a long-lived service
        agent_config = _common_config()
        agent_config["targets"] = {
            "discover": {
                "processes": True,
                "include": [{"cmdline": re.escape(marker)}],
                "name": "{venv}",
            }
        }
        print("starting the agent", file=sys.stderr)
        agent = Daemon("agent", agent_config, tmp)
        daemons.append(agent)
        wait_until(agent.listening, "the agent to listen", timeout)
        wait_until(
            lambda: len(agent.process_targets()) >= services,
            f"the agent to list {services} process targets",
            timeout,
        )
        settle([agent])
        modules = agent.process_targets()
        found = len(modules)
        if found != services or min(modules) < distributions:
            raise RuntimeError(f"the agent lists {found} process targets, modules {modules}")
        agent_rss, agent_pss, agent_tree = memory_kib(agent.process.pid)
        agent.kill()
        daemons.remove(agent)

        print(f"starting {services} single-environment daemons", file=sys.stderr)
        for index, (_, site) in enumerate(venvs):
            config = _common_config()
            config["modules"] = {"paths": [str(site)], "max": 1_000_000}
            daemons.append(Daemon(f"single-{index:02d}", config, tmp))
        for daemon in daemons:
            wait_until(daemon.listening, f"{daemon.name} to listen", timeout)
        for daemon in daemons:
            wait_until(daemon.published, f"{daemon.name} to publish", timeout)
        settle(daemons)
        singles = [memory_kib(d.process.pid) for d in daemons]
        series = [d.module_series() for d in daemons]
        if min(series) < distributions:
            raise RuntimeError(f"single-environment daemons publish {series} module series")
    finally:
        for daemon in daemons:
            daemon.kill()
        kill_all(children, groups=True)
        shutil.rmtree(tmp, ignore_errors=True)
    rss_sum = sum(r for r, _, _ in singles)
    pss_sum = sum(p for _, p, _ in singles)
    trees = sum(n for _, _, n in singles)
    rss_ratio = agent_rss / rss_sum
    mib = 1024
    table.add(
        f"RSS: one agent discovering {found} services ({min(modules)}-{max(modules)} modules"
        f" each; {agent_tree} process in its tree)",
        f"{agent_rss / mib:.1f} MB",
        f"{len(singles)} single-environment daemons (modules.paths;"
        f" {min(series)}-{max(series)} module_info series each), sum"
        f" {rss_sum / mib:.1f} MB (mean {rss_sum / len(singles) / mib:.1f} MB, {trees}"
        " processes)",
        f"{rss_ratio:.3f}x",
        f"<= {RSS_BUDGET:g}x: {verdict(rss_ratio <= RSS_BUDGET)}",
    )
    table.add(
        "  PSS (smaps_rollup: shared pages split between their sharers), the same processes",
        f"{agent_pss / mib:.1f} MB",
        f"sum {pss_sum / mib:.1f} MB (mean {pss_sum / len(singles) / mib:.1f} MB)",
        f"{agent_pss / pss_sum:.3f}x",
        "informative",
    )
    return (
        f"RSS section: {services} services x {distributions} distributions, refresh every"
        f" {RSS_INTERVAL_S:g} s, read after publishing, two more refreshes and 10 requests"
    )


def main() -> None:
    """Start the processes, measure, print the table, kill them all."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000, help="started in all")
    parser.add_argument("--python", type=int, default=100, help="of them Python")
    parser.add_argument("--environments", type=int, default=10, help="venvs they run in")
    parser.add_argument("--rounds", type=int, default=41, help="alternated rounds")
    parser.add_argument(
        "--rss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one agent's RSS against single-environment daemons (default: on)",
    )
    parser.add_argument("--rss-only", action="store_true", help="skip the discovery timing")
    parser.add_argument("--services", type=int, default=30, help="RSS: services watched")
    parser.add_argument(
        "--distributions", type=int, default=300, help="RSS: distributions per service"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="RSS: seconds any one wait may take"
    )
    args = parser.parse_args()
    if not 0 < args.python <= args.processes or args.environments < 1:
        parser.error("need 0 < --python <= --processes and --environments >= 1")
    if args.services < 1 or args.distributions < 1:
        parser.error("need --services >= 1 and --distributions >= 1")
    started = time.monotonic()
    table = Table()
    summaries = []
    if not args.rss_only:
        summaries.append(measure_timing(args, table))
    if args.rss or args.rss_only:
        summaries.append(measure_rss(table, args.services, args.distributions, args.timeout))
    machine = (
        f"{platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()},"
        f" Linux {platform.release()}"
    )
    print(
        f"{'; '.join(summaries)}; {machine}; took {time.monotonic() - started:.0f} s"
        f"\n\n{table.render()}\n"
    )


def measure_timing(args: argparse.Namespace, table: Table) -> str:
    """The discovery timing against its floor: start the processes, measure, kill them."""
    children: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="status-exporter-discovery-"))
    procfs = ProcFS(PROC)
    config = DiscoverConfig(processes=True)
    try:
        print(f"building {args.environments} venvs", file=sys.stderr)
        venvs = make_venvs(tmp, args.environments)
        print(f"starting {args.processes} processes ({args.python} Python)", file=sys.stderr)
        for index in range(args.python):
            python = str(venvs[index % len(venvs)] / "bin" / "python")
            children.append(
                subprocess.Popen(
                    [python, "-c", "import time; time.sleep(3600)"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    cwd=tmp,
                )
            )
        for _ in range(args.processes - args.python):
            children.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL, cwd=tmp))
        # Past the settling time, no process is looked at again for a late libpython.
        time.sleep(SETTLE_SECONDS + 1.5)
        cold_started = time.perf_counter()
        first = discover(procfs, config)
        cold = time.perf_counter() - cold_started
        ours = {c.pid for c in children[: args.python]}
        found = [t for t in first.targets if any(pid in ours for pid, _ in t.processes)]
        counts = sorted(len(t.processes) for t in found)
        print(
            f"listed {first.processes} processes, {first.python_processes} Python in"
            f" {len(first.targets)} targets; ours: {len(found)} targets of {counts} processes",
            file=sys.stderr,
        )
        state: list[Discovery] = [discover(procfs, config, first)]

        def unchanged() -> None:
            state[0] = discover(procfs, config, state[0])

        floors: list[float] = []
        ours_t: list[float] = []
        plains: list[float] = []
        colds: list[tuple[float, float]] = []
        for index in range(args.rounds):
            pair: list[tuple[list[float], Callable[[], object]]] = [
                (floors, floor),
                (ours_t, unchanged),
                (plains, plain_pass),
            ]
            if index % 2:
                pair.reverse()
            for times, fn in pair:
                times.append(timed(fn))
        for _ in range(5):
            fl = timed(floor)
            colds.append((timed(lambda: discover(procfs, config)), fl))
        ratio = statistics.median(o / f for o, f in zip(ours_t, floors, strict=True))
        plain = statistics.median(p / f for p, f in zip(plains, floors, strict=True))
        cold_ratio = statistics.median(c / f for c, f in colds)
        med = statistics.median
        listed = state[0].processes
        table.add(
            f"floor: list {PROC} and read every stat ({listed} processes)",
            f"{med(floors) * 1e3:.2f} ms",
            "-",
            "1x",
            "the baseline",
        )
        table.add(
            "discover() when nothing changed",
            f"{med(ours_t) * 1e3:.2f} ms",
            f"floor {med(floors) * 1e3:.2f} ms",
            f"{ratio:.2f}x",
            f"<= {BUDGET:g}x: {verdict(ratio <= BUDGET)}",
        )
        table.add(
            "plain pass: floor + Python processes' cmdline, environ, cgroup, maps",
            f"{med(plains) * 1e3:.2f} ms",
            f"floor {med(floors) * 1e3:.2f} ms",
            f"{plain:.2f}x",
            "informative (the issue measured 1.8x)",
        )
        table.add(
            "first discover() (every process examined, venvs resolved)",
            f"{med(c for c, _ in colds) * 1e3:.2f} ms",
            f"floor {med(f for _, f in colds) * 1e3:.2f} ms",
            f"{cold_ratio:.1f}x",
            f"informative (first call took {cold * 1e3:.1f} ms)",
        )
    finally:
        kill_all(children, groups=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return (
        f"{args.processes} processes started ({args.python} Python in {args.environments}"
        f" venvs), {args.rounds} alternated rounds"
    )


if __name__ == "__main__":
    main()
