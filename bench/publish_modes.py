"""Measure what ``modules.publish`` saves: /metrics size and series per mode, from real daemons.

Usage: python bench/publish_modes.py [--distributions 300] [--targets 0]

Builds one site-packages of ``--distributions`` distributions, four of them with advisories
in the test suite's OSV records (aiohttp 3.7.3, django 3.2.0, py 1.11.0, ansible-core
2.16.0; the rest made-up names), and for each mode (all, vulnerable, none) starts the
daemon on 127.0.0.1 with that database, GETs /metrics once plain and once gzip, and parses
the plain body with prometheus_client's parser. With ``--targets N`` the daemon reports N
targets that all scan the same directory (the figures are then per daemon of N targets).

Printed per mode: the body's bytes (plain and gzip), its series (every sample, process and
GC metrics included), the module_info series, and the series and bytes saved against all.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
import urllib.request
from pathlib import Path

from common import free_port
from harness import Processes, daemon_args
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
ADVISORIES = ROOT / "tests" / "data" / "osv"
VULNERABLE = {"aiohttp": "3.7.3", "django": "3.2.0", "py": "1.11.0", "ansible-core": "2.16.0"}
MODES = ("all", "vulnerable", "none")


def build_site(root: Path, count: int) -> Path:
    """A site-packages of ``count`` distributions, the four vulnerable ones among them."""
    site = root / "site-packages"
    site.mkdir(parents=True)
    modules = dict(VULNERABLE)
    for index in range(count - len(modules)):
        modules[f"bench-package-{index:04d}"] = f"1.{index % 17}.{index % 5}"
    for name, version in modules.items():
        folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: bench\n"
        )
    old = time.time() - 3600  # older than the racy window: the scanner may trust them
    for path in (site, *site.iterdir()):
        os.utime(path, (old, old))
    return site


def write_config(path: Path, site: Path, mode: str, targets: int) -> Path:
    """A daemon config (JSON is YAML) for ``mode``, the site as itself or as ``targets``."""
    data: dict[str, object] = {
        "modules": {"publish": mode, **({} if targets else {"paths": [str(site)]})},
        "commit": {"value": "bench00"},
        "advisories": {"paths": [str(ADVISORIES)]},
        "web": {"uvloop": False},
    }
    if targets:
        data["targets"] = {
            "environments": [{"name": f"t{i:03d}", "paths": [str(site)]} for i in range(targets)]
        }
    path.write_text(json.dumps(data))
    return path


def get(url: str, headers: dict[str, str]) -> bytes:
    """The raw body of a GET (gzip left compressed)."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return bytes(r.read())


def measure(url: str) -> dict[str, int]:
    """Bytes, gzip bytes, series and module_info series of one /metrics."""
    plain = get(url, {})
    zipped = get(url, {"Accept-Encoding": "gzip"})
    assert gzip.decompress(zipped).count(b"\n") > 0
    families = {f.name: f for f in text_string_to_metric_families(plain.decode())}
    module_info = families.get("module_info")
    return {
        "bytes": len(plain),
        "gzip_bytes": len(zipped),
        "series": sum(len(f.samples) for f in families.values()),
        "module_info": len(module_info.samples) if module_info else 0,
        "findings": len(families["module_vulnerability_info"].samples),
        "fingerprints": len(families["target_modules_info"].samples),
    }


def main() -> None:
    """Start one daemon per mode, measure its /metrics, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distributions", type=int, default=300)
    parser.add_argument("--targets", type=int, default=0)
    args = parser.parse_args()
    processes = Processes()
    results: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        root = Path(tmp)
        site = build_site(root, args.distributions)
        try:
            for mode in MODES:
                config = write_config(root / f"{mode}.json", site, mode, args.targets)
                port = free_port()
                server = processes.start(mode, daemon_args(config, port), port)
                results[mode] = measure(server.url)
                processes.stop(server)
        finally:
            processes.stop_all()
    print(
        f"{platform.node()} {platform.machine()} Python {platform.python_version()}: "
        f"{args.distributions} distributions ({len(VULNERABLE)} with findings), "
        f"{args.targets or 'no'} targets"
    )
    header = ("mode", "bytes", "gzip bytes", "series", "module_info", "findings", "saved")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    base = results["all"]
    for mode, r in results.items():
        saved = f"{base['series'] - r['series']} series, {base['bytes'] - r['bytes']} bytes"
        row = (mode, r["bytes"], r["gzip_bytes"], r["series"], r["module_info"], r["findings"])
        print("| " + " | ".join(str(v) for v in row) + f" | {saved} |")


if __name__ == "__main__":
    main()
