"""Helpers shared by the benchmark and the soak scripts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

# The METADATA of the synthetic distributions: licence classifiers and a description body
# of realistic length.
CLASSIFIERS = "".join(
    [
        "Classifier: Development Status :: 5 - Production/Stable\n",
        "Classifier: Intended Audience :: Developers\n",
        "Classifier: License :: OSI Approved :: MIT License\n",
        "Classifier: Operating System :: OS Independent\n",
        "Classifier: Programming Language :: Python :: 3\n",
        "Classifier: Programming Language :: Python :: 3.11\n",
        *(f"Classifier: Topic :: Software Development :: {i}\n" for i in range(15)),
    ]
)
BODY = "A description paragraph of realistic length. " * 60


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


def write_distributions(site: Path, index: int, distributions: int) -> list[tuple[Path, Path]]:
    """Write ``distributions`` fake distributions into ``site``, environment ``index``'s: each
    an import package beside its dist-info, with realistic METADATA headers (licence
    classifiers, requirements, a description), drawn from a shared pool of names (overlapping,
    as a fleet's environments do) at versions that differ between environments. Returns
    (package, dist-info) of each."""
    pool = max(1000, 2 * distributions)
    written = []
    for j in range(distributions):
        k = (index * 37 + j) % pool
        name, version = f"package-{k:05d}", f"{k % 7}.{(k + index) % 13}.{k}"
        package = site / f"package_{k:05d}"
        package.mkdir()  # the import package beside its metadata
        info = site / f"package_{k:05d}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Summary: synthetic package {k}\nHome-page: https://example.org/{name}\n"
            "Author: Example Author\nAuthor-email: author@example.org\nLicense: MIT\n"
            f"{CLASSIFIERS}Requires-Python: >=3.8\nRequires-Dist: other-{k % 50}>=1.0\n"
            f'Requires-Dist: extra-{k % 11}; extra == "test"\n\n{BODY}\n'
        )
        written.append((package, info))
    return written
