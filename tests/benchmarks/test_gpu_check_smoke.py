"""benchmarks/gpu_check.py --smoke: the GPU machine's one command, run end to end on the CPU in
Triton's interpreter on a few examples (one of each generator's kinds and a user rule), and
its comparison shown to catch a broken result, on the diagonal as well as off it."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from support.paths import ROOT
from support.triton_cases import cuda_backend

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
# circulant+epilogue, circulant, legacy (a stride-2 conv), a user rule
EXAMPLES = "cntk_gap_d3,cntk_v_d3,digits_finite,user_sine"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path, *extra):
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)  # the script must set it itself
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out), *extra], capture_output=True,
                       text=True, env=env, cwd=str(tmp_path), timeout=240)
    return p, (json.loads(out.read_text()) if out.exists() else None)


def test_smoke_checks_every_kind_and_times_a_network(tmp_path):
    p, res = _run(tmp_path, "--examples", EXAMPLES, "--bench", "cntk_v_d3")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert res["smoke"] and res["device"].startswith("cpu")
    checks = {(r["example"], r["dtype"]): r for r in res["checks"]}
    assert set(checks) == {(e, d) for e in EXAMPLES.split(",") for d in ("float64", "float32")}
    kinds = {r["example"]: r["kernels"] for r in res["checks"]}
    assert kinds["cntk_gap_d3"] == "circulant+epilogue" and kinds["digits_finite"] == "legacy"
    for r in checks.values():
        assert r["ok"] and r["images"] == 3, r  # 2 images and the duplicate
        worst = max(r["err_nngp"], r["err_ntk"], r["diag_nngp"], r["diag_ntk"])
        assert worst <= (1e-10 if r["dtype"] == "float64" else 1e-5), r
        assert r["diag_ntk"] <= r["err_ntk"] and r["diag_nngp"] <= r["err_nngp"]
    assert "ok " in p.stdout and "BAD" not in p.stdout
    (b32, b64) = res["bench"]
    assert (b32["dtype"], b64["dtype"]) == ("float32", "float64")
    assert b32["measured_pairs_per_s"] > 0 and b32["model_pairs_per_s"] is None  # no model in --smoke


def test_smoke_catches_a_perturbed_diagonal(tmp_path):
    p, res = _run(tmp_path, "--examples", "cntk_v_d3", "--no-bench", "--inject", "1e-7")
    assert p.returncode == 1 and "BAD" in p.stdout
    r64, r32 = res["checks"]
    assert not r64["ok"] and r64["diag_ntk"] >= 5e-8  # float64 allows 1e-10
    assert r32["ok"]  # 1e-7 is within float32's 1e-5


@pytest.mark.slow
@pytest.mark.skipif(not cuda_backend(), reason="this triton has no CUDA backend to compile for")
def test_smoke_with_the_model_puts_the_prediction_beside_the_measurement(tmp_path):
    """The path a GPU run takes: the model's processes (ahead-of-time compiles, out of the
    interpreter) feed the table. In --smoke the model is of the full-size network, so only the
    plumbing is checked, not the ratio."""
    p, res = _run(tmp_path, "--examples", "cntk_v_d3", "--bench", "cntk_v_d3", "--model")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for r in res["bench"]:
        assert r["model_pairs_per_s"] > 0
        assert r["measured_over_model"] == pytest.approx(r["measured_pairs_per_s"] / r["model_pairs_per_s"], rel=1e-2)
    assert res["model_target"] == "sm_90" and "measured/model" in p.stdout


@pytest.mark.parametrize("where", [(0, 0), (0, 2), (2, 0), (1, 2)])
def test_compare_sees_errors_on_and_off_the_diagonal(where):
    gc = _load()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    ref = a @ a.T
    got = ref.clone()
    got[where] += 1e-3 * ref.abs().max()
    r = gc.compare(ref, got, ref, ref)
    assert r["err_nngp"] == 0 and r["diag_nngp"] == 0
    assert r["err_ntk"] == pytest.approx(1e-3)
    # image 2 is the copy of image 0: (0, 2) and (2, 0) belong to the diagonal, (1, 2) does not
    assert r["diag_ntk"] == (pytest.approx(1e-3) if where != (1, 2) else 0)
