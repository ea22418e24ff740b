"""``python -m monitoring [--selector S] [--out DIR]``: write the rules and dashboards.

Without ``--out`` it rewrites the committed defaults in place: ``prometheus/rules.yml``,
``grafana/dashboards/python-fleet.json`` and ``deploy/kubernetes/base/prometheusrule.yaml``.
With ``--out DIR``: ``DIR/rules.yml``, ``DIR/prometheusrule.yaml`` and
``DIR/dashboards/python-fleet.json``. ``--check`` writes nothing and exits 1 when a
committed file differs from what would be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitoring.render import rendered_files
from monitoring.settings import DEFAULT_SELECTOR, Settings

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Write (or check) the generated files; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    parser.add_argument("--selector", default=DEFAULT_SELECTOR, help="PromQL label matchers")
    parser.add_argument("--out", type=Path, default=None, help="a folder for the files")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    files = rendered_files(
        Settings(selector=args.selector), args.out or REPO, committed=args.out is None
    )
    stale = []
    for path, text in files.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    for path in stale:
        print(
            f"{path} differs from what monitoring/ generates: run make monitoring", file=sys.stderr
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
