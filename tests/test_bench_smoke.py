"""Every benchmark still runs: ``python -m bench --smoke`` at small sizes (issue 9). Two benchmarks
once broke silently after a refactor; this is what notices now. Full-size figures stay in
`make bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS, judged_failures

pytestmark = pytest.mark.stack  # the benchmarks start their own local stacks
REPO = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_at_smoke_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["size"] == "smoke"
    assert set(result["benchmarks"]) == set(BENCHMARKS)
    errors = {name: b["error"] for name, b in result["benchmarks"].items() if "error" in b}
    assert not errors, done.stderr[-3000:]
    for name, bench in result["benchmarks"].items():
        assert bench.get("figures"), f"{name} reported no figures"
    assert not judged_failures(result)  # the figures that count things hold at any size
    assert done.returncode == 0, done.stderr[-3000:]
    assert (REPO / "bench" / "results" / "smoke" / "registration.json").exists()


def test_a_smoke_run_judges_counts_not_timings() -> None:
    figures = [
        {"figure": "wall time", "unit": "s", "pass": False},
        {"figure": "calls per service", "unit": "calls", "pass": False},
        {"figure": "writes", "unit": "writes", "pass": True},
    ]
    smoke = {"size": "smoke", "benchmarks": {"b": {"figures": figures}}}
    assert judged_failures(smoke) == ["b: calls per service"]
    assert judged_failures({**smoke, "size": "full"}) == ["b: wall time", "b: calls per service"]
