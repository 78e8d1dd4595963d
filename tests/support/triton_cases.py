"""Helpers for the Triton tests: run cases in interpreter worker processes (see triton_worker.py).

Not a test module. Cases are split over `workers` processes that run at once (the machine has
two cores), each started with TRITON_INTERPRET=1 so that triton is imported in interpreter mode.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("triton_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def cuda_backend() -> bool:
    """True when this triton can compile for NVIDIA GPUs (ahead of time, without one)."""
    import importlib

    try:
        importlib.import_module("triton.backends.nvidia.compiler")
        return True
    except Exception:
        return False


def run_interpreted(cases: list[dict], workers: int = 2, timeout: float = 600) -> dict[str, dict]:
    """Results by case id; a case that raised carries its traceback under "error"."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # spread the expensive cases: deal them round-robin, longest first as given
    shares = [cases[i::workers] for i in range(workers)]
    procs = []
    for share in shares:
        if not share:
            continue
        p = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        p.stdin.write(json.dumps(share))
        p.stdin.close()
        procs.append(p)
    results: dict[str, dict] = {}
    for p in procs:
        out = p.stdout.read()
        err = p.stderr.read()
        p.wait(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"interpreter worker failed ({p.returncode}):\n{err[-4000:]}")
        results.update(json.loads(out))
    return results


def case_result(results: dict[str, dict], key: str) -> dict:
    """The interpreter's result of one case, failing the test with the worker's error if it had one."""
    r = results[key]
    assert "error" not in r, r["error"]
    return r
