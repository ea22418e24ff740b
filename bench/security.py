"""Benchmark the runtime security view: the advisory database and the SBOM, with ratios.

Usage: python bench/security.py [--advisories 20000] [--distributions 1000]
       [--osv-source ../shared/data/pypa-advisory-database] [--duration 6] [--rounds 4]

The OSV zip is built from the PyPA advisory database snapshot in shared/data
(2,661 records), copied under new ids and package names until it holds
``--advisories`` records, as OSV's PyPI/all.zip lays them out (one <ID>.json
per record at the root). It is cached in bench/results/. Rows:
- loading the zip, against the floor of reading every member and json.loads alone;
- matching the distributions against it when they changed, and a refresh when
  neither they nor the database did (against the same refresh without advisories);
- the daemon's RSS with the database loaded, against the same daemon without it;
- /metrics p99 while the database is reloaded again and again, against idle;
- rendering the SBOM, and /api/v1/sbom req/s against a constant-bytes floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import free_port  # noqa: E402
from harness import (  # noqa: E402
    PY,
    Processes,
    Table,
    alternate,
    compare,
    daemon_args,
    http_get,
    med,
    median_time,
    run_load,
    touching,
    verdict,
    write_config,
)

from exporter.advisories.database import load_advisories  # noqa: E402
from exporter.advisories.matching import match_vulnerabilities  # noqa: E402
from exporter.advisories.worker import load_in_child  # noqa: E402
from exporter.config import config_from_mapping  # noqa: E402
from exporter.render.sbom import CONTENT_TYPE as SBOM_TYPE  # noqa: E402
from exporter.render.sbom import SbomDocument  # noqa: E402
from exporter.snapshot import Identity, Sources, take_snapshot  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def build_zip(source: Path, count: int) -> Path:
    """An OSV export zip of ``count`` records made from the YAML snapshot (cached)."""
    target = RESULTS / f"osv-{count}.zip"
    if target.exists():
        return target
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    records = [
        yaml.load(path.read_text(), Loader=loader)
        for path in sorted((source / "vulns").glob("*/*.yaml"))
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(count):
            copy, record = divmod(index, len(records))
            archive.writestr(*_renamed(records[record], copy))
    partial.rename(target)
    return target


def _renamed(record: dict, copy: int) -> tuple[str, str]:
    """Copy ``copy`` of a record: ids, aliases and package names suffixed (copy 0 as is)."""
    record = json.loads(json.dumps(record, default=str))
    if copy:
        record["id"] = f"{record['id']}-C{copy}"
        record["aliases"] = [f"{a}-C{copy}" for a in record.get("aliases") or []]
        for affected in record.get("affected") or []:
            affected["package"]["name"] = f"{affected['package']['name']}-c{copy}"
    return f"{record['id']}.json", json.dumps(record)


def read_floor(archive: Path) -> None:
    """The floor of a load: every member read and parsed, nothing kept."""
    with zipfile.ZipFile(archive) as z:
        for member in z.infolist():
            json.loads(z.read(member))


def build_site(site: Path, names: list[str], count: int) -> dict[str, str]:
    """``count`` distributions: ``names`` from the database (every other one affected), and
    the rest named so that no advisory names them."""
    site.mkdir(parents=True)
    installed = {}
    for index in range(count):
        if index < len(names):
            name, version = names[index], ("0.1" if index % 2 == 0 else "9999.0")
        else:
            name, version = f"unlisted-package-{index:05d}", "1.0"
        folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n\nBody\n"
        )
        installed[name] = version
    past = time.time() - 3600
    os.utime(site, (past, past))  # old enough that the mtime cache may trust it (RACY_SECONDS)
    return installed


def wait_for_advisories(url: str, deadline_s: float = 120) -> None:
    """Wait until the daemon publishes a loaded advisory database."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        body = http_get(url).decode()
        if "status_exporter_advisories_load_timestamp_seconds " in body and (
            "status_exporter_advisories_load_timestamp_seconds 0.0" not in body
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the daemon never loaded the advisories")


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--advisories", type=int, default=20_000)
    parser.add_argument("--distributions", type=int, default=1000)
    parser.add_argument(
        "--osv-source", type=Path, default=ROOT.parent / "shared/data/pypa-advisory-database"
    )
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    started = time.monotonic()
    table = Table()
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="status-exporter-security-"))
    try:
        print(f"building a zip of {args.advisories} advisories", file=sys.stderr)
        archive = build_zip(args.osv_source, args.advisories)
        load = median_time(lambda: load_advisories([str(archive)]), 3)
        floor = median_time(lambda: read_floor(archive), 3)
        table.add(
            f"load OSV zip, {args.advisories:,} advisories",
            f"{load * 1e3:.0f} ms",
            f"read + json.loads floor {floor * 1e3:.0f} ms",
            f"{load / floor:.2f}x",
            f"<= 1.5x: {verdict(load <= 1.5 * floor)}",
        )
        child = median_time(lambda: load_in_child([str(archive)]), 3)
        table.add(
            "the same in a child process, as the daemon loads it (wall time)",
            f"{child * 1e3:.0f} ms",
            f"in-process {load * 1e3:.0f} ms",
            f"{child / load:.2f}x",
            "informative: the daemon's CPU is spared, not its wait",
        )
        database = load_advisories([str(archive)])
        names = sorted(database.by_package)
        named = args.distributions // 10
        site = tmp / "site-packages"
        installed = build_site(
            site, names[:: max(1, len(names) // named)][:named], args.distributions
        )
        matched = load_advisories([str(archive)])
        started_match = time.perf_counter()
        findings = match_vulnerabilities(installed, matched)
        first_match = time.perf_counter() - started_match
        upgraded = dict(installed) | {next(iter(installed)): "9999.1"}
        matching = median_time(lambda: match_vulnerabilities(upgraded, matched), 7)
        table.add(
            f"match {len(installed):,} dists ({named} named in the database), "
            "after a module change",
            f"{matching * 1e3:.2f} ms",
            f"{len(findings):,} findings",
            "-",
            f"<= 5 ms: {verdict(matching <= 0.005)}",
        )
        table.add(
            "the same, first match after a database load (parses the ranges it meets)",
            f"{first_match * 1e3:.2f} ms",
            f"the load itself {load * 1e3:.0f} ms",
            "-",
            f"<= 5 ms: {verdict(first_match <= 0.005)}",
        )
        everything = {n: ("0.1" if i % 2 == 0 else "9999.0") for i, n in enumerate(names[:1000])}
        worst = load_advisories([str(archive)])
        worst_findings = match_vulnerabilities(everything, worst)
        worst_time = median_time(lambda: match_vulnerabilities(everything, worst), 5)
        table.add(
            "worst case: 1,000 dists all named in the database, every other one affected",
            f"{worst_time * 1e3:.2f} ms",
            f"{len(worst_findings):,} findings",
            "-",
            "informative",
        )
        with_db = config_from_mapping(
            {"modules": {"paths": [str(site)]}, "advisories": {"paths": [str(archive)]}}
        )
        without_db = config_from_mapping({"modules": {"paths": [str(site)]}})
        identity, sources = Identity.new(), Sources(environ={})
        warm = {}
        for name, config in (("with", with_db), ("without", without_db)):
            first = take_snapshot(config, identity, sources=sources)
            again = take_snapshot(config, identity, first, sources)
            warm[name] = median_time(
                lambda c=config, p=again: take_snapshot(c, identity, p, sources), 15
            )
        table.add(
            "refresh, neither modules nor database changed",
            f"{warm['with'] * 1e3:.2f} ms",
            f"without advisories {warm['without'] * 1e3:.2f} ms",
            f"+{(warm['with'] - warm['without']) * 1e3:.2f} ms",
            "about nothing (a stat)",
        )
        snapshot = take_snapshot(with_db, identity, sources=sources)
        render = median_time(lambda: SbomDocument(snapshot), 7)
        table.add(
            f"render the SBOM, {len(snapshot.modules):,} components, "
            f"{len(snapshot.vulnerabilities or ()):,} findings",
            f"{render * 1e3:.2f} ms",
            "-",
            "-",
            f"<= 10 ms: {verdict(render <= 0.010)}",
        )

        plain_port, db_port = free_port(), free_port()
        plain = processes.start(
            "daemon",
            daemon_args(write_config(tmp / "a.json", site, 3600, False), plain_port),
            plain_port,
        )
        with_advisories = processes.start(
            "daemon-advisories",
            daemon_args(write_config(tmp / "b.json", site, 3600, False, archive), db_port),
            db_port,
        )
        wait_for_advisories(with_advisories.url)
        plain_rss, db_rss = plain.rss_mb(), with_advisories.rss_mb()
        table.add(
            f"RSS with {args.advisories:,} advisories loaded",
            f"{db_rss:.1f} MB",
            f"without {plain_rss:.1f} MB",
            f"+{db_rss - plain_rss:.1f} MB",
            f"<= +40 MB: {verdict(db_rss - plain_rss <= 40)}",
        )
        processes.stop(with_advisories)

        reload_port = free_port()
        reloading = processes.start(
            "daemon-reloading",
            daemon_args(write_config(tmp / "c.json", site, 1.0, False, archive), reload_port),
            reload_port,
        )
        wait_for_advisories(reloading.url)
        stamp = "status_exporter_advisories_load_timestamp_seconds"
        before = http_get(reloading.url).decode()
        idle_runs, busy_runs = [], []
        for index in range(args.rounds):  # ABBA: idle and reloading alternate
            for busy in (False, True) if index % 2 == 0 else (True, False):
                if busy:
                    with touching(archive, 1.0):
                        busy_runs.append(run_load(reloading.url, args.duration).p99_ms)
                    settle(reloading.url, stamp)  # an idle run must not see a reload land
                else:
                    idle_runs.append(run_load(reloading.url, args.duration).p99_ms)
        deadline = time.monotonic() + 30  # a reload under load can outlast the window
        after = http_get(reloading.url).decode()
        while _value(after, stamp) <= _value(before, stamp) and time.monotonic() < deadline:
            time.sleep(0.5)
            after = http_get(reloading.url).decode()
        loads = _value(after, stamp) > _value(before, stamp)
        ratios = sorted(b / i for b, i in zip(busy_runs, idle_runs, strict=True))
        p99_ratio = med(ratios)
        table.add(
            "/metrics p99 while the database reloads (child process)"
            + ("" if loads else " (NO RELOAD SEEN)"),
            f"{med(busy_runs):.2f} ms",
            f"idle {med(idle_runs):.2f} ms",
            f"{p99_ratio:.2f}x",
            f"<= 2x: {verdict(p99_ratio <= 2 and loads)}",
        )
        processes.stop(reloading)

        sbom = http_get(f"http://127.0.0.1:{plain_port}/api/v1/sbom")
        (tmp / "sbom.json").write_bytes(sbom)
        floor_port = free_port()
        sbom_floor = processes.start(
            "floor-sbom",
            [
                PY,
                "bench/floor.py",
                "--port",
                str(floor_port),
                "--body",
                str(tmp / "sbom.json"),
                "--content-type",
                SBOM_TYPE,
            ],
            floor_port,
        )
        ours = dataclasses.replace(plain, path="/api/v1/sbom")
        ours_loads, floor_loads = alternate(ours, sbom_floor, args.duration, args.rounds)
        compare(table, f"/api/v1/sbom ({len(sbom) // 1024} KB)", ours_loads, floor_loads)
    finally:
        processes.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{args.advisories} advisories, {args.distributions} distributions; "
        f"took {time.monotonic() - started:.0f} s\n\n{table.render()}\n"
    )


def settle(url: str, metric: str, quiet: float = 2.5, deadline_s: float = 60) -> None:
    """Wait until ``metric`` has not changed for ``quiet`` seconds (a reload has landed)."""
    deadline = time.monotonic() + deadline_s
    last, since = _value(http_get(url).decode(), metric), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.5)
        now = _value(http_get(url).decode(), metric)
        if now != last:
            last, since = now, time.monotonic()


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return math.nan


if __name__ == "__main__":
    main()
