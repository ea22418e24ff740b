"""Helpers shared by the benchmark and the soak scripts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_command(config: Path, port: int, log_level: str = "warn") -> list[str]:
    """The command line that starts the daemon under test on 127.0.0.1:``port``."""
    return [
        sys.executable,
        "-m",
        "exporter",
        "--config.file",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        log_level,
    ]
