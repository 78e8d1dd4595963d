"""The v2 Triton kernels (circulant tiles, the epilogue after gap) in Triton's interpreter against
the torch backend in float64, on awkward cases: non-square maps (8x4, 4x16, 1x8), a loop of 18
repetitions, same-padded convs of sizes 1, 2, 3 and 5 and dilation 2, bias, frozen layers,
erf / gelu / abrelu / identity / leaky relu, a user rule, activations and dense layers after the
readout, residual blocks (nested, scaled, repeated, after the readout), self pairs and an exact
duplicate (the diagonal, entry by entry in float32), and the schedule (results must not depend
on BLOCK_P / BLOCK_X beyond summation order). Also: which generator runs each example's stages,
with the reason, and the structure of the generated source.

The stages v2 does not cover run on the v1 kernels, tested in test_triton_backend.py (where
several cases mix v1 stages with the v2 epilogue). Cases run in two worker processes.
"""
from __future__ import annotations

import pytest
import torch

import ntkc
from ntkc.backends.triton import codegen as tc
from ntkc.backends.triton.coverage import Kind
from support.nets import RESIDUAL_NETS
from support.paths import EXAMPLES
from support.triton_cases import case_result, run_interpreted

TOL = {"float64": 1e-12, "float32": 1e-5}

GAP = """input height={h} width={w} channels=3
conv size=3 padding=same w_std=sqrt(2) trainable=false
relu
repeat {r} {{
  conv size=3 padding=same w_std=sqrt(2)
  relu
}}
gap
dense trainable=false
"""
V = """input height={h} width={w} channels=3
repeat {r} {{
  conv size=3 padding=same w_std=sqrt(2)
  relu
}}
flatten
dense
"""
SINE = EXAMPLES / "user_rules" / "sine.py"

NETS = {
    "gap_d3_8x8": GAP.format(h=8, w=8, r=1),
    "gap_d21_4x4_loop": GAP.format(h=4, w=4, r=19),
    "gap_8x4": GAP.format(h=8, w=4, r=2),
    "gap_4x16": GAP.format(h=4, w=16, r=1),
    "v_d6_8x8": V.format(h=8, w=8, r=5),
    "v_4x16": V.format(h=4, w=16, r=2),
    "v_1x8": V.format(h=1, w=8, r=2),
    "bias_frozen_v": "input height=8 width=4 channels=2\nconv size=3 w_std=1.3 b_std=0.4 trainable=false\nrelu\n"
                     "conv size=3 w_std=sqrt(2) b_std=0.2\nrelu\nconv w_std=1.1 trainable=false\nrelu\n"
                     "flatten\ndense w_std=0.9 b_std=0.3 trainable=false\n",
    "gap_bias_trainable_dense": "input height=4 width=8 channels=2\nconv size=3 w_std=sqrt(2) b_std=0.3\nrelu\n"
                                "conv size=3 w_std=sqrt(2)\nrelu\ngap\ndense w_std=1.2 b_std=0.5\n",
    "erf_gelu": "input height=8 width=4 channels=2\nconv size=3 w_std=1.5\nerf\nconv size=3 w_std=1.2\ngelu\n"
                "conv size=3\nrelu\ngap\ndense\n",
    "abrelu_identity_leaky": "input height=4 width=4 channels=2\nconv size=3 w_std=1.4\nabrelu a=-0.3 b=1.1\n"
                             "conv size=3\nidentity\nconv size=3\nleaky_relu slope=0.2\nflatten\ndense\n",
    "user_sine": f'use "{SINE}"\ninput height=4 width=8 channels=3\nconv w_std=sqrt(2)\nsine freq=0.7\n'
                 "conv w_std=sqrt(2)\nsine freq=0.7\nconv w_std=sqrt(2)\nrelu\nflatten\ndense\n",
    "dilated_sizes_1_2_5": "input height=8 width=8 channels=2\nconv size=3 dilation=2 w_std=sqrt(2)\nrelu\n"
                           "conv size=5 w_std=sqrt(2)\nrelu\nconv size=2 w_std=sqrt(2)\nrelu\nconv size=1\nrelu\n"
                           "gap\ndense\n",
    "after_readout_scalar_acts": V.format(h=4, w=4, r=2).replace("flatten\ndense\n",
                                                                 "flatten\ndense w_std=1.5\nrelu\ndense b_std=0.1\n"),
    "gap_then_scalar_acts": GAP.format(h=4, w=4, r=1).replace("gap\ndense trainable=false\n",
                                                              "gap\ndense w_std=1.5\nerf\ndense\n"),
    # residual blocks (the shapes of support.nets.RESIDUAL_NETS on power-of-two maps)
    "residual_wrn_block_gap": "input height=4 width=8 channels=2\n" + RESIDUAL_NETS["wrn_block_gap"].split("\n", 1)[1],
    "residual_repeat_scaled_nested_flatten": """input height=8 width=4 channels=1
conv w_std=1.4 trainable=false
repeat 2 {
  residual scale=0.6 {
    erf
    conv size=1
    residual scale=1.3 {
      relu
      conv dilation=2 b_std=0.3
    }
    identity
    conv size=3 trainable=false
  }
}
relu
flatten
residual scale=0.5 {
  relu
  dense w_std=1.5 b_std=0.1
}
dense b_std=0.2
""",
    "residual_loop_then_dense_block": """input height=4 width=4 channels=2
conv w_std=sqrt(2) trainable=false
repeat 4 {
  residual {
    relu
    conv w_std=sqrt(2)
    relu
    conv w_std=sqrt(2)
  }
}
relu
gap
residual scale=0.5 {
  relu
  dense w_std=1.5 b_std=0.1
}
dense trainable=false
""",
}
F32 = ["gap_d3_8x8", "gap_8x4", "v_d6_8x8", "erf_gelu", "residual_wrn_block_gap",
       "residual_repeat_scaled_nested_flatten", "gap_then_scalar_acts"]


def _cases() -> list[dict]:
    cases = []
    for name, arch in NETS.items():
        for dtype in ["float64"] + (["float32"] if name in F32 else []):
            sym = len(name) % 2 == 0  # both kinds of call, fixed per case
            cases.append({"id": f"{name}-{dtype}", "name": f"{name}.arch", "arch": arch, "dtype": dtype,
                          "seed": len(name), "n1": 3, "n2": None if sym else 2, "dups": True})
    for name in ("v_d6_8x8", "gap_8x4", "residual_wrn_block_gap"):  # the diagonal of self pairs, entry by entry
        cases.append({"id": f"diag-{name}-float32", "name": f"{name}.arch", "arch": NETS[name], "dtype": "float32",
                      "seed": 5, "n1": 3, "n2": None, "dups": True, "diag": True})
    for tag, extra in (("default", {}), ("narrow", {"circulant": [1, 1]}), ("wide", {"circulant": [2, 2]})):
        cases.append({"id": f"schedule-{tag}", "name": "gap_8x4.arch", "arch": NETS["gap_8x4"], "dtype": "float64",
                      "seed": 9, "n1": 3, "n2": None, "values": True, **extra})
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def results():
    return run_interpreted(CASES, workers=2)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if not c["id"].startswith(("diag-", "schedule-"))],
                         ids=lambda c: c["id"])
def test_v2_equals_torch(results, case):
    r = case_result(results, case["id"])
    assert r["kinds"][0] == "circulant", r["kinds"]
    for key in ("nngp", "ntk"):
        tol = TOL[case["dtype"]] if case["dtype"] == "float64" else max(TOL["float32"], 4 * r[f"torch32_{key}"])
        assert r[key] <= tol, f"{key} off by {r[key]:.3g} relative to the largest entry (allowed {tol:.3g})"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["v_d6_8x8", "gap_8x4", "residual_wrn_block_gap"])
def test_v2_self_pair_diagonal_keeps_float32_digits(results, name):
    r = case_result(results, f"diag-{name}-float32")
    assert r["diag"] <= 2e-6 and r["diag_ntk"] <= 2e-6, r


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["narrow", "wide"])
def test_v2_schedule_does_not_change_results(results, tag):
    a = case_result(results, "schedule-default")["values"]
    b = case_result(results, f"schedule-{tag}")["values"]
    for x, y in zip(a, b):
        xt, yt = torch.tensor(x), torch.tensor(y)
        assert (xt - yt).abs().max().item() <= 1e-14 * yt.abs().max().item()


# -- what runs where ---------------------------------------------------------------------------

EXPECT = {
    "cntk_gap_d3": "circulant+epilogue", "cntk_gap_d4": "circulant+epilogue", "cntk_gap_d6": "circulant+epilogue",
    "cntk_gap_d11": "circulant+epilogue", "cntk_gap_d21": "circulant+epilogue", "cntk_v_d3": "circulant",
    "cntk_v_d4": "circulant", "cntk_v_d6": "circulant", "cntk_v_d11": "circulant", "cntk_v_d21": "circulant",
    "digits_v": "circulant", "digits_gap": "circulant+epilogue", "digits_gap_d10": "circulant+epilogue",
    "digits_wrn_d10": "circulant+epilogue", "wrn_gap_d10": "circulant+epilogue", "user_sine": "circulant",
    "myrtle5": "legacy+legacy+legacy+legacy+epilogue", "myrtle7": "legacy+legacy+legacy+legacy+legacy+epilogue",
    "myrtle10": "legacy+legacy+legacy+legacy+legacy+epilogue", "enhanced_cntk_d11": "legacy+legacy",
    "digits_finite": "legacy",  # stage 0 holds a stride-2 conv
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.arch")), ids=lambda p: p.stem)
def test_which_generator_runs_each_example(path):
    """The table in benchmarks/RESULTS.md ("what each example runs on") is this one."""
    gen = tc.build(ntkc.compile(path).plan)
    assert "+".join(k.kind.value for k in gen.kernels) == EXPECT[path.stem]
    assert all(k.decision.reason for k in gen.kernels)
    assert gen.v2 == any(k.kind is not Kind.LEGACY for k in gen.kernels)


@pytest.mark.parametrize("text, words", [
    ("input height=6 width=6 channels=1\nconv\nrelu\nflatten\ndense\n", "power of two"),
    ("input height=8 width=8 channels=1\nconv stride=2\nrelu\nflatten\ndense\n", "stride"),
    ("input height=64 width=64 channels=1\nconv\nrelu\nflatten\ndense\n", "exceeds"),
    ("input height=8 width=8 channels=1\nconv padding=circular\nrelu\nflatten\ndense\n", "plane-mixing `conv`"),
    ("input height=8 width=8 channels=1\nconv\nrelu\navgpool\nflatten\ndense\n", "gathers planes"),
])
def test_uncovered_stages_say_why(text, words):
    first = tc.build(ntkc.compile(text).plan).kernels[0]
    assert first.kind is Kind.LEGACY and words in first.decision.reason


def test_v2_source_has_no_scratch_or_barrier_and_one_loop():
    gen = tc.build(ntkc.compile(EXAMPLES / "cntk_gap_d21.arch").plan)
    src = gen.source
    stage0 = src[src.index("def stage0_kernel("):src.index("def stage1_kernel(")]
    assert "debug_barrier" not in stage0 and "scratch" not in stage0
    assert stage0.count("for rep in range(18):") == 1
    assert "# line 6: conv" in stage0 and "# line 10: relu" in stage0
    assert "fms2(v1, v2, u, u)" in src and "atan2_affine(" in src and "enable_fp_fusion=True" in src
    assert len(src.splitlines()) < 700
    deep = ntkc.compile((EXAMPLES / "cntk_gap_d21.arch").read_text().replace("repeat 19", "repeat 40"))
    assert len(tc.generate(deep.plan).splitlines()) == len(src.splitlines())  # code size independent of depth


def test_v_d21_is_one_tile_per_pair():
    (info,) = tc.build(ntkc.compile(EXAMPLES / "cntk_v_d21.arch").plan).kernels
    assert info.plan.tiles_per_pair == 1 and info.sink == "outputs"


def test_seam_table_marks_neighbours_inside_the_map_on_both_sides():
    from ntkc.backends.triton.records import SeamTable

    h = 4
    t = SeamTable(h, (1, 2), 2).values()
    assert len(t) == 2 * 2 * h * h and t[:2 * h * h] == t[2 * h * h:]
    for ai, a in enumerate((1, 2)):
        for ry in range(h):
            for y in range(h):
                inside = y - a >= 0 and (y - ry) % h - a >= 0
                assert t[(ai * h + ry) * h + y] == float(inside)
