"""The benchmark harness runs end to end (``python -m bench --quick``). Nothing here is about speed: performance
figures come from ``make bench``, as ratios measured in one run, never from timed tests."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The figures of the benchmark issues, in run order (bench.BENCHMARKS).
BENCHMARKS = ("litellm_chat", "litellm_stream", "mock_chat", "local_adapter", "async_throughput", "cold_start", "emulator",
              "fast_stream", "fast_chat", "async_streams")


@pytest.mark.slow
def test_quick_bench_runs_and_reports_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "benchmark" in proc.stdout and "median" in proc.stdout  # the table

    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    for key in ("date", "cores", "python", "litellm", "modal", "git_commit", "settings"):
        assert key in report, key
    assert list(report["benchmarks"]) == list(BENCHMARKS)

    for name, bench in report["benchmarks"].items():
        assert "error" not in bench, (name, bench)
        if "skipped" in bench:
            assert isinstance(bench["skipped"], str) and bench["skipped"].strip(), name
            continue
        assert bench["figures"], name
        for key, fig in bench["figures"].items():
            assert isinstance(fig["n"], int) and fig["n"] > 0, (name, key)
            medians = [k for k in fig if k.startswith("median_")]
            p90s = [k for k in fig if k.startswith("p90_")]
            assert len(medians) == 1 and len(p90s) == 1, (name, key, fig)
            for k in medians + p90s:
                assert isinstance(fig[k], (int, float)) and math.isfinite(fig[k]), (name, key, k, fig[k])
        assert "ratio" in bench and "target" in bench and "met" in bench, name
        for check in bench.get("checks", []):
            assert {"name", "value", "target", "met"} <= set(check), (name, check)
            assert isinstance(check["met"], bool), (name, check)
