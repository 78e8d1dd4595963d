"""The `@triton.jit` math helpers (ntkc.backends.triton.mathlib) against torch, in Triton's
interpreter, in float32 and float64: many points, edge cases, exact special values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ntkc.backends.triton.helpers import band_base_py
from support.triton_cases import run_interpreted

EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
ULPS = 4.0  # largest error allowed, in units of the working precision


# 1, -1, +0, -0 first (checked exactly), then points near the ends, then outside (NaN)
UNIT_EDGES = [1.0, -1.0, 0.0, -0.0, 1 - 1e-12, -1 + 1e-12, 1 - 2.0 ** -30, 0.9999999, 0.5, -0.5, 1e-300,
              -1e-30, 0.70710678, 1 - 2.0 ** -52, 1 - 2.0 ** -23, 1.5, -2.0, 1 + 2.0 ** -20]


def _points():
    rng = np.random.default_rng(7)
    unit = np.concatenate([rng.uniform(-1, 1, 6000), UNIT_EDGES])
    wide = rng.standard_normal(6000) * 10.0 ** rng.integers(-8, 9, 6000)
    wide = np.concatenate([wide, [0.0, -0.0, math.inf, -math.inf, 1e-300, 1e300, 1.0, -1.0,
                                  0.13165249758739586, 0.41421356237309503, 0.7673269879789604]])
    ys = rng.standard_normal(6000) * 10.0 ** rng.integers(-5, 6, 6000)
    xs = rng.standard_normal(6000) * 10.0 ** rng.integers(-5, 6, 6000)
    special_y = [0.0, 0.0, -0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.inf, 0.0, math.nan, 1.0, 0.0, 3.0]
    special_x = [1.0, -1.0, 1.0, -1.0, 0.0, -0.0, math.inf, math.inf, -math.inf, 0.0, 1.0, math.nan, 2.5, 3.0]
    return unit, wide, np.concatenate([ys, special_y]), np.concatenate([xs, special_x])


UNIT, WIDE, YS, XS = _points()
POS = np.abs(WIDE[np.isfinite(WIDE) & (WIDE != 0)])
FNS = {"asin": UNIT, "acos": UNIT, "atan": WIDE, "tanh": WIDE, "sqrt": POS, "rsqrt": POS}


@pytest.fixture(scope="module")
def results():
    cases = []
    for dtype in ("float32", "float64"):
        for fn, x in FNS.items():
            cases.append({"kind": "math", "id": f"{fn}-{dtype}", "fn": fn, "dtype": dtype, "x": x.tolist()})
        cases.append({"kind": "math", "id": f"atan2-{dtype}", "fn": "atan2", "dtype": dtype,
                      "x": XS.tolist(), "y": YS.tolist()})
    cases.append({"kind": "math", "id": "band_base", "fn": "band_base", "dtype": "float64", "n": 7,
                  "x": list(range(-6, 8))})
    out = run_interpreted(cases, workers=1)
    for key, r in out.items():
        assert "error" not in r, f"{key}:\n{r['error']}"
    return out


def _reference(fn: str, dtype: str, x, y=None) -> tuple[torch.Tensor, torch.Tensor]:
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    xt = torch.tensor(x, dtype=torch.float64).to(dt).double()  # the points as the kernel saw them
    if fn == "atan2":
        yt = torch.tensor(y, dtype=torch.float64).to(dt).double()
        return torch.atan2(yt, xt), xt
    f = {"asin": torch.asin, "acos": torch.acos, "atan": torch.atan, "tanh": torch.tanh,
         "sqrt": torch.sqrt, "rsqrt": torch.rsqrt}[fn]
    return f(xt), xt


def _ulps(got: torch.Tensor, ref: torch.Tensor, dtype: str) -> float:
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(got), nan), "NaN where torch has none, or the other way round"
    g, r = got[~nan], ref[~nan]
    inf = torch.isinf(r)
    assert torch.equal(g[inf], r[inf])
    g, r = g[~inf], r[~inf]
    # relative to the result, with the smallest normal number as the floor
    tiny = {"float32": 1.2e-38, "float64": 2.3e-308}[dtype]
    return ((g - r).abs() / r.abs().clamp_min(tiny)).max().item() / EPS[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", list(FNS))
def test_unary_helper_within_a_few_ulps(results, fn, dtype):
    got = torch.tensor(results[f"{fn}-{dtype}"]["values"], dtype=torch.float64)
    ref, _ = _reference(fn, dtype, FNS[fn])
    assert _ulps(got, ref.to({"float32": torch.float32, "float64": torch.float64}[dtype]).double(), dtype) <= ULPS


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_atan2_within_a_few_ulps_with_ieee_special_cases(results, dtype):
    got = torch.tensor(results[f"atan2-{dtype}"]["values"], dtype=torch.float64)
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    ref, _ = _reference("atan2", dtype, XS, YS)
    ref = ref.to(dt).double()
    assert _ulps(got, ref, dtype) <= ULPS
    tail = got[-14:]
    pi = float(torch.tensor(math.pi, dtype=dt))
    # the relu angle on a self pair: atan2(+0, u > 0) is exactly +0, atan2(+0, u < 0) exactly pi
    assert tail[0].item() == 0.0 and not math.copysign(1.0, tail[0].item()) < 0
    assert tail[1].item() == pi
    assert tail[2].item() == 0.0 and math.copysign(1.0, tail[2].item()) < 0  # atan2(-0, 1) = -0
    assert tail[3].item() == -pi                                          # atan2(-0, -1) = -pi
    assert torch.equal(torch.signbit(tail), torch.signbit(ref[-14:]))
    assert math.isnan(tail[10].item()) and math.isnan(tail[11].item())
    assert tail[12].item() == 0.0 and tail[13].item() == float(torch.tensor(math.pi / 4, dtype=dt))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_asin_acos_exact_at_the_ends_and_nan_outside(results, dtype):
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    asin = torch.tensor(results[f"asin-{dtype}"]["values"], dtype=torch.float64)
    acos = torch.tensor(results[f"acos-{dtype}"]["values"], dtype=torch.float64)
    n = len(UNIT) - len(UNIT_EDGES)  # the edge points follow the random ones
    half_pi = float(torch.tensor(math.pi / 2, dtype=dt))
    assert asin[n].item() == half_pi and asin[n + 1].item() == -half_pi
    assert acos[n].item() == 0.0 and acos[n + 1].item() == float(torch.tensor(math.pi, dtype=dt))
    assert asin[n + 2].item() == 0.0 and math.copysign(1.0, asin[n + 3].item()) < 0
    assert torch.isnan(asin[-3:]).all() and torch.isnan(acos[-3:]).all()


def test_band_base_counts_the_entries_of_the_planes_before():
    for n in range(1, 8):
        for d in range(-(n - 1), n + 1):
            assert band_base_py(d, n) == sum(n - abs(e) for e in range(-(n - 1), d))


def test_band_base_jit_matches_python(results):
    got = results["band_base"]["values"]
    assert got == [band_base_py(d, 7) for d in range(-6, 8)]
