"""The platform benchmarks still run against the engine as it is now, at a
small size (their figures are in bench/RESULTS.md; speed is judged there, not
here). A benchmark that no longer runs was how an engine change went unseen."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

SMALL = [("bench_langbot.py", ["--quick"], "met: plan reads 2 requests at every size"),
         ("bench_vapi.py", ["--assistants", "40", "--plan-size", "100"],
          "met: plan of 100 assistants in at most 3 requests"),
         ("bench_check.py", ["--endpoints", "10", "--runs", "1"], "")]


@pytest.mark.long
@pytest.mark.parametrize("script, args, expected", SMALL, ids=[s for s, _, _ in SMALL])
def test_benchmark_runs_at_a_small_size(script: str, args: list[str],
                                                              expected: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert expected in out.stdout  # a request count: timing targets are judged in RESULTS.md
