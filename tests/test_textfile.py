"""--print metrics for node_exporter's textfile collector, with the README's atomic recipe."""

from __future__ import annotations

import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, tool, wait_until


def test_node_exporter_publishes_the_printed_metrics_without_error(tmp_path, fake_env):
    """A cron-style write (temp file, then rename) is read by a real node_exporter, no error."""
    node_exporter = tool("prometheus-node-exporter")
    fake_env.install("Django", "4.2.1")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"modules": {"paths": [str(fake_env.path)]}, "commit": {"value": "abc1234"}})
    )
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    target = textfiles / "status_exporter.prom"
    # The README's recipe: write beside the target, then rename (atomic on one file system).
    command = (
        f"{shlex.quote(sys.executable)} -m exporter --config.file {shlex.quote(str(config))} "
        f"--print metrics > {shlex.quote(str(target))}.$$ "
        f"&& mv {shlex.quote(str(target))}.$$ {shlex.quote(str(target))}"
    )
    subprocess.run(["sh", "-c", command], check=True, timeout=60)
    assert [p.name for p in textfiles.iterdir()] == ["status_exporter.prom"]
    port = free_port()
    server = subprocess.Popen(
        [
            node_exporter,
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                return None

        text = wait_until(scrape, "node_exporter to answer", 20)
    finally:
        server.terminate()
        server.wait(10)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (error,) = families["node_textfile_scrape_error"].samples
    assert error.value == 0
    modules = {s.labels["module"]: s.labels["version"] for s in families["module_info"].samples}
    assert modules == {"django": "4.2.1"}
    assert families["build_info"].samples[0].labels["commit"] == "abc1234"
    mtimes = families["node_textfile_mtime_seconds"].samples
    assert Path(mtimes[0].labels["file"]).name == "status_exporter.prom"
