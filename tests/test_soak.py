"""The soak script in its short form: no errors, no memory growth, no leaked descriptors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def test_short_soak_passes():
    """20,000 requests during back-to-back refreshes and a changing environment: all clean."""
    done = subprocess.run(
        [sys.executable, str(SOAK), "--requests", "20000", "--max-seconds", "120"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "errors: 0" in report
    assert "result: PASS" in report
