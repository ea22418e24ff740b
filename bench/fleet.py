"""The fleet benchmark: N daemons of T targets of M distributions, scraped by a real
Prometheus with the generated rules; is the mixin fast enough at fleet scale?

Usage: python bench/fleet.py [--daemons 40] [--targets 25] [--distributions 300]
       [--scrape-interval 15s] [--history 15m] [--history-gap 5m] [--duration 3m]
       [--warmup 1m] [--rounds 3]
       [--modes all,vulnerable,none] [--mode-scrapes 4]

Starts ``--daemons`` status-exporter processes on 127.0.0.1, each its own instance, each with
``--targets`` targets (targets.environments) of ``--distributions`` dist-info trees (the trees
are shared between daemons: bench/fleet_parts.py), and a real Prometheus scraping them as job
python-status with the rules ``monitoring`` generates for it. It reports, side by side:

- Prometheus's head series and resident memory, and the daemons' memory;
- ``scrape_duration_seconds`` p99 over every scrape of the live window;
- each rule group's ``prometheus_rule_group_last_duration_seconds`` (the most seen while
  sampling it every evaluation of the live window after its first ``--warmup``, 1m: a
  Prometheus just started creates every series of the fleet in its head in its first
  scrapes, which production sees only after a restart; the most including the warm-up is
  printed beside it), target <= 1 s, and its health;
- the latency of every dashboard panel's query and every variable's, over the dashboard's
  default range (6 h), variables at their defaults (All), target <= 2 s, the slowest of
  ``--rounds`` rounds counting.

History: Prometheus would need 15 minutes of real time to hold 15 minutes of data. Instead,
one scrape of each daemon is repeated into the past (``--history``, at the scrape interval)
and written as TSDB blocks by ``promtool tsdb create-blocks-from openmetrics`` before
Prometheus starts; then Prometheus scrapes live for ``--duration``. The history ends
``--history-gap`` (default 5m, Prometheus's lookback delta) before the live window: an
instant query or a rule looks back that far for each series' latest sample, and in a
Prometheus that has run for a while that window lies in the head (the head keeps the last
hour or more after each compaction). Without the gap, every rule evaluation of the short live
window would also read and merge the backfilled block, a cost production never pays
(``--history-gap 0s`` measures it). The range queries run over
the full default range with whatever data exists, and the report says how many minutes of
samples the range held (counted by Prometheus: ``count_over_time(up[6h])``).

Per ``modules.publish`` mode (``--modes``; only the modes exporter/config.py knows are run),
a fresh fleet and a fresh Prometheus without history scrape ``--mode-scrapes`` times, and the
head series and Prometheus memory are compared with mode all's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: it may pick another exporter tree

from fleet_backfill import create_blocks, samples, write_openmetrics  # noqa: E402
from fleet_parts import (  # noqa: E402
    JOB,
    Process,
    Processes,
    Size,
    build_trees,
    fleet_configs,
    http_get,
    machine_cpu_seconds,
    prometheus_config,
    start_daemons,
    start_prometheus,
    wait_until,
)
from fleet_queries import (  # noqa: E402
    Macros,
    PromAPI,
    dashboard_range,
    defaults,
    metric_values,
    panel_queries,
    seconds,
    substitute,
    timed,
    variable_queries,
)

from exporter.config import ModulesConfig  # noqa: E402
from monitoring.render import rendered_files  # noqa: E402
from monitoring.settings import Settings  # noqa: E402

RULE_BUDGET_S = 1.0
PANEL_BUDGET_S = 2.0
MODES = ("all", "vulnerable", "none")


class Table:
    """A markdown table: what, measured, context, target; rows echoed as they come."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, measured: str, context: str, target: str) -> None:
        """Add a row, and print it to stderr."""
        self.rows.append((what, measured, context, target))
        print(f"  {what}: {measured} ({context}) {target}", file=sys.stderr, flush=True)

    def render(self) -> str:
        """The table as markdown."""
        head = ("what", "measured", "context", "target")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    """How a target fared."""
    return "holds" if ok else "MISSED"


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else float("nan")


def publish_modes(requested: list[str]) -> tuple[list[str], str]:
    """The requested modes the exporter's config knows, and a note on any left out."""
    fields = {f.name for f in dataclasses.fields(ModulesConfig)}
    if "publish" not in fields:
        return ["all"], "modules.publish is not in exporter/config.py yet: mode all only"
    return requested, ""


@dataclass
class Run:
    """One fleet and its Prometheus."""

    daemons: list[Process]
    prometheus: Process
    api: PromAPI

    def up(self) -> int:
        """Targets up now."""
        return len(self.api.query(f'up{{job="{JOB}"}} == 1'))

    def own(self, name: str) -> dict[str, float]:
        """A metric of Prometheus's own /metrics."""
        return metric_values(self.api.own_metrics(), name)


def generate(workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The rules and dashboard as ``monitoring`` generates them for job python-status."""
    files = rendered_files(Settings(selector=f'job="{JOB}"'), workdir, committed=False)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    dashboard = json.loads((workdir / "dashboards" / "python-fleet.json").read_text())
    return workdir / "rules.yml", dashboard


def start_fleet(
    processes: Processes,
    work: Path,
    size: Size,
    roots: dict[str, list[Path]],
    publish: str | None,
    rules: Path,
    interval: str,
    history: float,
    gap: float,
    promtool: str,
    prometheus: str,
) -> tuple[Run, dict[str, float]]:
    """Daemons, history backfilled when ``history`` > 0, then Prometheus; wait until all up."""
    figures: dict[str, float] = {}
    started = time.monotonic()
    daemons = start_daemons(processes, fleet_configs(work, size, roots, publish), timeout=600)
    figures["daemons_start_s"] = time.monotonic() - started
    data = work / "data"
    if history > 0:
        started = time.monotonic()
        series = []
        for daemon in daemons:
            body = http_get(f"http://{daemon.address}/metrics").decode()
            series += samples(body, JOB, daemon.address)
        step = seconds(interval)
        end = time.time() - step - gap
        stamps = [end - history + step * i for i in range(int(history / step) + 1)]
        backfill = work / "history.om"
        figures["backfilled_samples"] = write_openmetrics(backfill, series, stamps)
        create_blocks(promtool, backfill, data)
        backfill.unlink()
        figures["backfill_s"] = time.monotonic() - started
        figures["history_start"] = stamps[0]
    config = prometheus_config(
        work / "prometheus.yml",
        [d.address for d in daemons],
        rules,
        interval=interval,
        timeout=interval,
    )
    server, url = start_prometheus(processes, prometheus, config, data, timeout=600)
    run = Run(daemons, server, PromAPI(url, timeout=120))
    wait_until(lambda: run.up() == size.daemons, "every daemon up", 300)
    return run, figures


def cpu_rows(
    table: Table,
    run: Run,
    before: tuple[float, float, tuple[float, float]],
    elapsed: float,
) -> None:
    """How busy Prometheus, the daemons and the whole machine were in the live window: a
    rule group's duration is wall time, and grows when the cores are shared."""
    prometheus, daemons, (busy, total) = before
    busy_now, total_now = machine_cpu_seconds()
    cores = os.cpu_count() or 1
    table.add(
        "CPU in the live window: Prometheus",
        f"{(run.prometheus.cpu_seconds() - prometheus) / elapsed:.2f} cores",
        f"the {len(run.daemons)} daemons"
        f" {(sum(d.cpu_seconds() for d in run.daemons) - daemons) / elapsed:.2f} cores;"
        f" the machine {(busy_now - busy) / max(total_now - total, 1e-9):.0%} busy of"
        f" {cores} cores",
        "informative",
    )


def sample_rule_groups(
    run: Run, seconds_left: float, every: float
) -> dict[str, list[tuple[float, float]]]:
    """``(seconds since the start, prometheus_rule_group_last_duration_seconds)`` of every
    group, read every ``every`` seconds for ``seconds_left`` seconds."""
    seen: dict[str, list[tuple[float, float]]] = {}
    started = time.monotonic()
    deadline = started + seconds_left
    while time.monotonic() < deadline:
        at = time.monotonic() - started
        for labels, value in run.own("prometheus_rule_group_last_duration_seconds").items():
            group = labels.split(";", 1)[-1].rstrip('"}')
            seen.setdefault(group, []).append((at, value))
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
    return seen


def measure_queries(
    run: Run, dashboard: dict[str, Any], macros: Macros, rounds: int
) -> list[tuple[str, str, list[float], int]]:
    """(name, kind, seconds per round, results) of every panel and variable query, the order
    reversed every other round."""
    variables = defaults(dashboard)
    end = time.time()
    start = end - macros.range_seconds
    step = macros.interval_seconds
    cases: list[tuple[str, str, Any]] = []
    for q in panel_queries(dashboard):
        expr = substitute(q.expr, variables, macros)
        if q.instant:
            cases.append((q.name, "instant", lambda e=expr: run.api.query(e, end)))
        else:
            cases.append((q.name, "range", lambda e=expr: run.api.query_range(e, start, end, step)))
    for v in variable_queries(dashboard):
        selector = substitute(v.selector, variables, macros)
        cases.append(
            (
                f"variable ${v.name}",
                "label values",
                lambda s=selector, v=v: run.api.label_values(v.label, s, start, end),
            )
        )
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    counts: dict[str, int] = {}
    for index in range(rounds):
        for name, _, fn in cases if index % 2 == 0 else list(reversed(cases)):
            elapsed, result = timed(fn)
            times[name].append(elapsed)
            counts[name] = len(result)
    return [(name, kind, times[name], counts[name]) for name, kind, _ in cases]


def main_run(
    args: argparse.Namespace,
    table: Table,
    work: Path,
    roots: dict[str, list[Path]],
    rules: Path,
    dashboard: dict[str, Any],
    publish: str | None,
) -> None:
    """The fleet with history: memory, scrapes, rule groups and every dashboard query."""
    size = Size(args.daemons, args.targets, args.distributions)
    interval = seconds(args.scrape_interval)
    run_dir = work / "main"
    run_dir.mkdir()
    with_processes = Processes(run_dir / "logs")
    try:
        log(f"starting {size}, backfilling {args.history}")
        run, figures = start_fleet(
            with_processes,
            run_dir,
            size,
            roots,
            publish,
            rules,
            args.scrape_interval,
            seconds(args.history),
            seconds(args.history_gap),
            args.promtool,
            args.prometheus,
        )
        live_start = time.time()
        log(f"scraping live for {args.duration}")
        cpu_before = (
            run.prometheus.cpu_seconds(),
            sum(d.cpu_seconds() for d in run.daemons),
            machine_cpu_seconds(),
        )
        groups = sample_rule_groups(run, seconds(args.duration), interval)
        live_end = time.time()
        cpu_rows(table, run, cpu_before, live_end - live_start)
        head = run.own("prometheus_tsdb_head_series")[""]
        module_series = len(run.api.query(f'module_info{{job="{JOB}"}}'))
        scraped = sum(
            float(r["value"][1]) for r in run.api.query(f'scrape_samples_scraped{{job="{JOB}"}}')
        )
        daemon_rss = [d.rss_mb() for d in run.daemons]
        table.add(
            "daemons started and first refresh published",
            f"{figures['daemons_start_s']:.1f} s",
            f"{size.daemons} processes at once; RSS median {statistics.median(daemon_rss):.1f}"
            f" MB, max {max(daemon_rss):.1f} MB, total {sum(daemon_rss) / 1024:.2f} GB",
            "informative",
        )
        table.add(
            "history backfilled (promtool tsdb create-blocks-from openmetrics)",
            f"{figures['backfilled_samples']:,.0f} samples in {figures['backfill_s']:.0f} s",
            f"one scrape of each daemon repeated every {args.scrape_interval} over {args.history}",
            "informative",
        )
        table.add(
            "module_info series (query)",
            f"{module_series:,}",
            f"expected {size.module_series:,} = {size.daemons} x {size.targets} x"
            f" {size.distributions}",
            verdict(module_series == size.module_series),
        )
        table.add(
            "Prometheus head series (prometheus_tsdb_head_series)",
            f"{head:,.0f}",
            f"samples per scrape round {scraped:,.0f} + {5 * size.daemons} scrape series +"
            " rule outputs",
            "informative",
        )
        table.add(
            "Prometheus RSS after the live window",
            f"{run.prometheus.rss_mb():,.0f} MB",
            f"peak {run.prometheus.peak_rss_mb():,.0f} MB (VmHWM)",
            "informative",
        )
        durations = [
            float(v)
            for series in run.api.query_range(
                f'scrape_duration_seconds{{job="{JOB}"}}', live_start, live_end, interval
            )
            for _, v in series["values"]
        ]
        table.add(
            "scrape_duration_seconds p99 (every scrape of the live window)",
            f"{p99(durations) * 1e3:.0f} ms",
            f"{len(durations)} scrapes, max {max(durations) * 1e3:.0f} ms, median"
            f" {statistics.median(durations) * 1e3:.0f} ms",
            f"< scrape interval {args.scrape_interval}: {verdict(max(durations) < interval)}",
        )
        health = {
            g["name"]: [r for r in g["rules"] if r["health"] != "ok"] for g in run.api.rule_groups()
        }
        warmup = seconds(args.warmup)
        for group, timed_values in sorted(groups.items()):
            bad = health.get(group, [])
            values = [v for _, v in timed_values]
            steady = [v for at, v in timed_values if at >= warmup] or values
            table.add(
                f"rule group {group}",
                f"{max(steady) * 1e3:.0f} ms",
                f"most of {len(steady)} samples after the first {args.warmup} (with it:"
                f" {max(values) * 1e3:.0f} ms of {len(values)}), median"
                f" {statistics.median(steady) * 1e3:.0f} ms; {len(bad)} rules not ok",
                f"<= 1 s: {verdict(max(steady) <= RULE_BUDGET_S and not bad)}",
            )
        range_s = dashboard_range(dashboard)
        macros = Macros.for_range(range_s, interval)
        up_samples = run.api.query(f'min(count_over_time(up{{job="{JOB}"}}[{int(range_s)}s]))')
        minutes = float(up_samples[0]["value"][1]) * interval / 60 if up_samples else 0.0
        table.add(
            f"data in the dashboard's default range ({dashboard['time']['from']})",
            f"{minutes:.1f} min",
            f"{args.history} backfilled + {(live_end - live_start) / 60:.1f} min live; step"
            f" {macros.interval_seconds:g} s, $__rate_interval {macros.rate_interval_seconds:g} s",
            f">= 15 min: {verdict(minutes >= 15)}",
        )
        log(f"timing every dashboard query, {args.rounds} rounds")
        for name, kind, times, count in measure_queries(run, dashboard, macros, args.rounds):
            table.add(
                f"{name}, {kind}",
                f"{max(times) * 1e3:,.0f} ms",
                f"slowest of {len(times)}, median {statistics.median(times) * 1e3:,.0f} ms;"
                f" {count:,} results",
                f"<= 2 s: {verdict(max(times) <= PANEL_BUDGET_S)}",
            )
        table.add(
            "Prometheus RSS after the queries",
            f"{run.prometheus.rss_mb():,.0f} MB",
            f"peak {run.prometheus.peak_rss_mb():,.0f} MB (VmHWM)",
            "informative",
        )
    finally:
        with_processes.stop_all()
        shutil.rmtree(run_dir / "data", ignore_errors=True)


def mode_runs(
    args: argparse.Namespace,
    table: Table,
    work: Path,
    roots: dict[str, list[Path]],
    rules: Path,
    modes: list[str],
) -> None:
    """A fresh fleet and Prometheus per mode: head series and memory after a few scrapes."""
    size = Size(args.daemons, args.targets, args.distributions)
    interval = seconds(args.scrape_interval)
    measured: dict[str, tuple[float, float]] = {}
    for mode in modes:
        run_dir = work / f"mode-{mode}"
        run_dir.mkdir()
        processes = Processes(run_dir / "logs")
        try:
            log(f"modules.publish {mode}: {size}, {args.mode_scrapes} scrapes")
            run, _ = start_fleet(
                processes,
                run_dir,
                size,
                roots,
                mode,
                rules,
                args.scrape_interval,
                0,
                0,
                args.promtool,
                args.prometheus,
            )
            time.sleep(args.mode_scrapes * interval)
            head = run.own("prometheus_tsdb_head_series")[""]
            measured[mode] = (head, run.prometheus.rss_mb())
        finally:
            processes.stop_all()
            shutil.rmtree(run_dir / "data", ignore_errors=True)
    base_head, base_rss = measured.get("all", (math.nan, math.nan))
    for mode, (head, rss) in measured.items():
        table.add(
            f"modules.publish {mode}: head series, Prometheus RSS",
            f"{head:,.0f} series, {rss:,.0f} MB",
            f"saved against all: {base_head - head:,.0f} series"
            f" ({1 - head / base_head:.0%}), {base_rss - rss:,.0f} MB",
            f"after {args.mode_scrapes} scrapes, no history; informative",
        )


def main() -> None:
    """Build the trees, run the fleet, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=40)
    parser.add_argument("--targets", type=int, default=25, help="per daemon")
    parser.add_argument("--distributions", type=int, default=300, help="per target")
    parser.add_argument("--scrape-interval", default="15s", help="and evaluation interval")
    parser.add_argument("--history", default="15m", help="backfilled before Prometheus starts")
    parser.add_argument(
        "--history-gap", default="5m", help="between the history and the live window"
    )
    parser.add_argument("--duration", default="3m", help="live scraping before the queries")
    parser.add_argument(
        "--warmup",
        default="1m",
        help="of the live window, not counted in the rule groups' verdict (reported beside)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="of every dashboard query")
    parser.add_argument("--modes", default=",".join(MODES), help="modules.publish modes")
    parser.add_argument("--mode-scrapes", type=int, default=4, help="per mode run")
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    parser.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    requested = [m for m in args.modes.split(",") if m]
    unknown = set(requested) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {sorted(unknown)}")
    modes, modes_note = publish_modes(requested)
    size = Size(args.daemons, args.targets, args.distributions)
    started = time.monotonic()
    table = Table()
    work = Path(tempfile.mkdtemp(prefix="status-exporter-fleet-"))
    try:
        log(f"building {args.targets} x 2 target trees of {args.distributions} dists")
        roots = build_trees(work / "trees", size)
        rules, dashboard = generate(work / "generated")
        publish = (
            "all" if "publish" in {f.name for f in dataclasses.fields(ModulesConfig)} else None
        )
        main_run(args, table, work, roots, rules, dashboard, publish)
        if modes_note:
            log(modes_note)
        mode_runs(args, table, work, roots, rules, modes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    version = subprocess.run(
        [args.prometheus, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"# Fleet benchmark: {size} = {size.module_series:,} module series",
        "",
        f"Machine: {platform.machine()}, nproc {os.cpu_count()}, {memory:.0f} GiB,"
        f" {version[0] if version else 'prometheus'}; Python {platform.python_version()};"
        f" scrape and evaluation every {args.scrape_interval}; {args.history} of history"
        f" backfilled, ending {args.history_gap} before {args.duration} live;"
        f" wall time {time.monotonic() - started:.0f} s.",
        *([f"Note: {modes_note}."] if modes_note else []),
        "",
        table.render(),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)
    if any("MISSED" in row[3] for row in table.rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
