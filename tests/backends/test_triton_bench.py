"""benchmarks/gpu_bench.py stays runnable without a GPU: its --smoke mode (Triton's interpreter,
6x6 maps) goes through every step, correctness check included, for one network."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.paths import ROOT  # noqa: E402


def test_gpu_bench_smoke_runs_end_to_end():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--smoke", "--only", "cntk_v_d21",
                           "--dtypes", "float64", "--check", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| cntk_v_d21")]
    assert len(rows) == 1
    err = float(rows[0].split("|")[-2])
    assert err < 1e-12
