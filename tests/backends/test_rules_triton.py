"""The rules written with the public API through the Triton path: the generated kernels in
Triton's interpreter against the torch backend (itself checked against the float64 reference in
test_rules_api.py), and ahead-of-time compiles for sm_90 without a GPU.

A user's rule module is loaded by the `use` line inside the interpreter's worker process, with no
change to the package: that is the end-to-end path of a user rule (parse, plan, torch, Triton).
"""
from __future__ import annotations


import pytest

import ntkc
from ntkc.backends.triton import codegen as tc
from support.nets import NETS
from support.triton_cases import cuda_backend, run_interpreted

TOL = {"float64": 1e-12, "float32": 1e-5}

TINY = {
    "user_sine": NETS["user_sine"].replace("height=4 width=4", "height=3 width=3"),
    "gelu_leaky_dilated_lap": """input height=4 width=3 channels=1
conv b_std=0.1 dilation=2
gelu
lap size=3
leaky_relu slope=0.2
flatten
dense
""",
    "abrelu_lap_circular_gap": """input height=3 width=4 channels=1
conv size=3 padding=circular
abrelu a=-0.5 b=1.5
lap size=2 padding=circular
relu
gap
""",
    "flip_flatten": NETS["flip_flatten"].replace("height=4 width=5", "height=3 width=3"),
}

CASES = [{"id": f"{name}-{dtype}", "name": f"{name}.arch", "arch": arch, "dtype": dtype, "seed": 3,
          "n1": 3, "n2": None if dtype == "float64" else 2, "dups": True}
         for name, arch in TINY.items() for dtype in ("float64", "float32")]


@pytest.fixture(scope="module")
def results():
    return run_interpreted(CASES, workers=2)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_new_rules_triton_equal_torch(results, case):
    r = results[case["id"]]
    assert "error" not in r, r["error"]
    for key in ("nngp", "ntk"):
        tol = TOL[case["dtype"]] if case["dtype"] == "float64" else max(TOL["float32"], 4 * r[f"torch32_{key}"])
        assert r[key] <= tol, f"{key} off by {r[key]:.3g} (allowed {tol:.3g})"


def test_user_rule_math_is_rendered_into_the_kernel():
    src = tc.generate(ntkc.compile(TINY["user_sine"]).plan)
    assert "tl.exp(" in src and "sine freq=0.9" in src




@pytest.mark.slow
@pytest.mark.skipif(not cuda_backend(), reason="this triton has no CUDA backend to compile for")
def test_new_rules_compile_for_sm90():
    from ntkc.backends.triton.report import build_report
    text = TINY["user_sine"].replace("flatten\ndense\n", "") + "lap size=3\ngelu\nabrelu a=0.1 b=2\ngap\n"
    m = build_report(ntkc.compile(text).arch, archs=(90,), dtypes=("float32",))
    rows = m["kernels"]
    assert rows and all(r["arch"] == "sm_90" and r["registers"] > 0 for r in rows)
    assert m["predicted_pairs_per_s"]["sm_90"]["float32"] > 0
