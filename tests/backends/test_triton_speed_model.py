"""The static speed model (sass.py, speed_model.py, report.py, `ntkc compile F --emit report`):
counting a hand-written SASS listing with nested loops, the prediction's arithmetic from its
stated rates, and the command's JSON for a tiny network (ahead-of-time compiles, no GPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ntkc.backends.triton import sass
from ntkc.backends.triton.speed_model import EFFICIENCY, GPUS, KernelCount, predict
from support.paths import ROOT
from support.triton_cases import cuda_backend

# one FFMA before the loops; an outer loop (3 trips) holding a MUFU and an inner loop (5 trips)
# of two FFMAs and a SHFL, then an LDG, the outer branch and EXIT
LISTING = """
        /*0000*/                   FFMA R1, R2, R3, R4 ;
.L_x_0:
        /*0010*/                   MUFU.RSQ R5, R6 ;
.L_x_1:
        /*0020*/              @P0  FFMA R1, R2, R3, R4 ;
        /*0030*/                   FFMA R1, R2, R3, R4 ;
        /*0040*/                   SHFL.IDX PT, R7, R8, R9, R10 ;
        /*0050*/              @!P1 BRA `(.L_x_1) ;
        /*0060*/                   LDG.E R11, desc[UR4][R12.64] ;
        /*0070*/                   BRA `(.L_x_0) ;
        /*0080*/                   EXIT ;
"""
SOURCE = """
def k(x_ptr, N_REP: tl.constexpr):
    a = 1
    for r in range(3):
        b = 2
        for q in range(N_REP):
            c = 3
"""


def test_loops_are_weighted_by_their_trip_counts():
    instrs, labels = sass.parse(LISTING)
    assert [i.op for i in instrs] == ["FFMA", "MUFU", "FFMA", "FFMA", "SHFL", "BRA", "LDG", "BRA", "EXIT"]
    roots = sass.sass_loops(instrs, labels)
    assert [(r.start, r.end) for r in roots] == [(1, 7)] and [(c.start, c.end) for c in roots[0].children] == [(2, 5)]
    src = sass.source_loops(SOURCE, "k", {"N_REP": 5})
    problems: list = []
    pairs = sass.match(roots, src, problems)
    assert not problems and [p[1].trips for p in pairs] == [3, 5]
    counts = sass.weighted_counts(instrs, pairs, {}, problems)
    # fp32: 1 + 3 x 5 x 2; mufu 3; shfl 3 x 5; lsu 3; branch: 3 x 5 (inner) + 3 (outer) + 1 (exit)
    assert counts == {"fp32": 31, "mufu": 3, "shfl": 15, "lsu": 3, "branch": 19}
    hot = sass.hot_loop(instrs, roots)
    assert hot["instructions"] == 4 and hot["classes"] == {"fp32": 2, "shfl": 1, "branch": 1}


def test_a_loop_missing_from_the_source_is_reported_not_guessed():
    instrs, labels = sass.parse(LISTING)
    problems: list = []
    sass.match(sass.sass_loops(instrs, labels), sass.source_loops(SOURCE.replace("for q", "q = 0  #"), "k", {}),
               problems)
    assert problems


def _count(**per_pair) -> KernelCount:
    return KernelCount("k", "circulant", "sm_90", "float32", 4, 100, 0, 0, per_pair, 0.0, 1024, 1, None, 1, 1, [])


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_the_prediction_is_the_slowest_resource_at_the_stated_rates(arch):
    g = GPUS[arch]
    fp_heavy = predict([_count(fp32=8000.0, alu=1000.0)], arch)
    cycles = {"issue": 9000 / g["rates"]["issue"], "fp32": 8000 / g["rates"]["fp32"], "alu": 1000 / g["rates"]["alu"]}
    limit = max(cycles, key=cycles.get)
    assert fp_heavy["limit"] == limit
    bound = g["sms"] * g["clock_ghz"] * 1e9 / cycles[limit]
    assert fp_heavy["pairs_per_s_at_bound"] == pytest.approx(bound)
    assert fp_heavy["pairs_per_s"] == pytest.approx(bound * EFFICIENCY)
    # MUFU issues at an eighth of the rate: a few of them limit before the issue slots do
    assert predict([_count(mufu=2000.0, fp32=1000.0)], arch)["limit"] == "mufu"
    # two kernels per pair add up
    two = predict([_count(fp32=8000.0, alu=1000.0), _count(fp32=8000.0, alu=1000.0)], arch)
    assert two["pairs_per_s"] == pytest.approx(fp_heavy["pairs_per_s"] / 2)


@pytest.mark.slow
@pytest.mark.skipif(not cuda_backend(), reason="this triton has no CUDA backend to compile for")
def test_emit_report_json_has_the_predictions_and_says_it_is_a_model(tmp_path):
    arch = tmp_path / "tiny.arch"
    arch.write_text("input height=4 width=4 channels=2\nconv w_std=sqrt(2)\nrelu\nconv w_std=sqrt(2)\nrelu\n"
                    "flatten\ndense\n")
    p = subprocess.run([sys.executable, "-c", "import sys; from ntkc.cli import main; sys.exit(main())", "compile",
                        str(arch), "--emit", "report", "--json"], capture_output=True, text=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads(p.stdout)
    assert "not a measurement" in m["model"]
    for target in ("sm_90", "sm_80"):
        for dtype in ("float32", "float64"):
            assert m["predicted_pairs_per_s"][target][dtype] > 0
            assert m["predicted_pairs_per_s_at_bound"][target][dtype] >= m["predicted_pairs_per_s"][target][dtype]
    assert {k["kind"] for k in m["kernels"]} == {"circulant"}
    assert all(k["registers"] > 0 and not k["problems"] for k in m["kernels"])
