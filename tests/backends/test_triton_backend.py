"""The Triton backend in Triton's interpreter against the torch backend (float64 reference).

Every layer rule, padding, stride, pooling, readout, bias, frozen layers, non-square maps,
activation-first and readout-first networks, repeated blocks (the generated run-time loop),
duplicate images (self pairs off the diagonal), a few seeded random architectures, and the
schedule (results must not depend on BLOCK_I or the grid). Inputs are tiny: the interpreter is
~400x slower than torch. All cases run in two worker processes at once (see triton_cases.py).
"""
from __future__ import annotations

import random

import pytest
import torch

import ntkc
from ntkc.errors import ArchError, BackendError
from support.nets import RESIDUAL_NETS
from support.triton_cases import case_result, run_interpreted

TOL = {"float64": 1e-12, "float32": 1e-5}

NETS = {
    "gap_frozen_bias": """input height=5 width=4 channels=2
conv w_std=sqrt(2) trainable=false
relu
conv w_std=sqrt(2) b_std=0.3
relu
gap
dense trainable=false
""",
    "v_flatten": """input height=6 width=5 channels=1
conv w_std=sqrt(2)
relu
conv w_std=1.3 b_std=0.2
relu
flatten
dense b_std=0.1
""",
    "pool_circular_erf_valid_stride": """input height=8 width=6 channels=3
conv w_std=sqrt(2) b_std=0.1
relu
avgpool size=2
conv w_std=sqrt(2) padding=circular
erf
conv stride=2 padding=valid
relu
flatten
dense b_std=0.2
relu
dense
""",
    "valid_strides_even": """input height=6 width=6 channels=2
conv size=3 stride=2 padding=valid w_std=1.5
relu
conv size=2 padding=valid
relu
flatten
dense b_std=0.3
""",
    "same_stride2_size5": """input height=5 width=6 channels=1
conv stride=2 w_std=sqrt(2)
relu
conv size=5 b_std=0.4
relu
gap
dense
""",
    "circular_even_and_stride": """input height=4 width=5 channels=2
conv size=2 padding=circular w_std=1.2
erf
conv padding=circular stride=2
relu
gap
dense
""",
    "identity_activations": """input height=4 width=4 channels=1
conv
identity
conv b_std=0.5
identity
flatten
dense
""",
    "pool3_stride1_and_pool2_stride3": """input height=5 width=5 channels=1
conv w_std=sqrt(2)
relu
avgpool size=3 stride=1
relu
avgpool size=2 stride=3
conv w_std=sqrt(2)
relu
gap
dense
""",
    "activation_first": """input height=4 width=3 channels=2
relu
conv w_std=sqrt(2)
relu
flatten
dense
relu
dense
""",
    "dense_chain_scalar_activations": """input height=3 width=3 channels=1
conv size=1 w_std=sqrt(2)
relu
gap
dense b_std=0.5
erf
dense trainable=false
relu
dense
""",
    "gap_on_input": """input height=3 width=4 channels=2
gap
dense
relu
dense b_std=0.1
""",
    "pool_first": """input height=6 width=4 channels=1
avgpool size=2
conv w_std=sqrt(2)
relu
flatten
dense
""",
    "circular_first": """input height=4 width=4 channels=2
conv padding=circular w_std=sqrt(2)
relu
gap
dense
""",
    "repeat_loop_gap": """input height=5 width=6 channels=2
conv w_std=sqrt(2) trainable=false
relu
repeat 4 {
  conv w_std=sqrt(2) b_std=0.1
  relu
}
gap
dense trainable=false
""",
    "repeat_two_convs_per_block": """input height=4 width=3 channels=1
conv w_std=sqrt(2)
relu
repeat 4 {
  conv w_std=sqrt(2)
  relu
  conv w_std=1.2 b_std=0.2
  erf
}
gap
dense
""",
    "repeat_loop_flatten": """input height=4 width=4 channels=1
repeat 5 {
  conv w_std=sqrt(2)
  relu
}
flatten
dense
""",
    "myrtle_small": """input height=6 width=6 channels=1
conv w_std=sqrt(2)
relu
conv w_std=sqrt(2)
relu
avgpool size=2
conv w_std=sqrt(2)
relu
avgpool size=2
gap
dense
""",
    "small_loop_gap": """input height=3 width=4 channels=1
conv w_std=sqrt(2) trainable=false
relu
repeat 3 {
  conv w_std=sqrt(2) b_std=0.1
  relu
}
gap
dense
""",
    "nonsquare_valid_to_column": """input height=5 width=3 channels=1
conv size=3 padding=valid w_std=sqrt(2)
relu
conv size=1 b_std=0.2
erf
flatten
dense
""",
    "big_kernel_small_map": """input height=3 width=3 channels=2
conv size=5 w_std=sqrt(2)
relu
conv size=3 stride=3 b_std=0.1
relu
flatten
dense
""",
}

# float32 runs for a representative subset (each interpreted case costs about a second)
F32 = ["gap_frozen_bias", "v_flatten", "pool_circular_erf_valid_stride", "repeat_loop_gap", "myrtle_small",
       "circular_even_and_stride", "dense_chain_scalar_activations"]


def random_arch(seed: int) -> str:
    """A seeded random network on a small map that the compiler accepts."""
    rnd = random.Random(seed)
    while True:
        h, w, c = rnd.randint(3, 6), rnd.randint(3, 6), rnd.randint(1, 2)
        lines = [f"input height={h} width={w} channels={c}"]
        for _ in range(rnd.randint(1, 3)):
            pad = rnd.choice(["same", "same", "valid", "circular"])
            size = rnd.choice([1, 3] if pad == "same" else [1, 2, 3])
            stride = rnd.choice([1, 1, 2])
            parts = [f"conv size={size} stride={stride} padding={pad} w_std={rnd.uniform(0.8, 1.6):.3f}"]
            if rnd.random() < 0.5:
                parts.append(f"b_std={rnd.uniform(0, 0.5):.3f}")
            if rnd.random() < 0.3:
                parts.append("trainable=false")
            lines.append(" ".join(parts))
            lines.append(rnd.choice(["relu", "relu", "erf", "identity"]))
            if rnd.random() < 0.3:
                lines.append(f"avgpool size={rnd.choice([1, 2])} stride={rnd.choice([1, 2])}")
        lines.append(rnd.choice(["gap", "flatten"]))
        lines.append(f"dense b_std={rnd.uniform(0, 0.3):.3f}")
        if rnd.random() < 0.5:
            lines += [rnd.choice(["relu", "erf"]), "dense"]
        text = "\n".join(lines) + "\n"
        try:
            ntkc.compile(text)
        except ArchError:
            continue
        return text


RANDOM = {f"random_{s}": random_arch(s) for s in (11, 12, 13, 14)}
RESIDUAL = {f"residual_{name}": text for name, text in RESIDUAL_NETS.items()}


def _cases() -> list[dict]:
    cases = []
    for name, arch in {**NETS, **RANDOM, **RESIDUAL}.items():
        dtypes = ["float64", "float32"] if name in F32 or name.startswith(("random", "residual_wrn")) else ["float64"]
        for dtype in dtypes:
            sym = len(name) % 2 == 0  # both kinds of call, fixed per case
            cases.append({"id": f"{name}-{dtype}", "name": f"{name}.arch", "arch": arch, "dtype": dtype,
                          "seed": len(name), "n1": 3, "n2": None if sym else 2, "dups": True})
    # self pairs in float32: the diagonal must keep every digit (determinant form of the relu)
    cases.append({"id": "diag-v-float32", "name": "v.arch", "arch": NETS["v_flatten"], "dtype": "float32",
                  "seed": 5, "n1": 3, "n2": None, "diag": True})
    cases.append({"id": "diag-gap-float32", "name": "gap.arch", "arch": NETS["repeat_loop_gap"],
                  "dtype": "float32", "seed": 6, "n1": 2, "n2": None, "diag": True})
    # the schedule must not change results: one item per program, three programs
    for name in ("small_loop_gap", "pool_circular_erf_valid_stride"):
        for tag, extra in (("default", {}), ("narrow", {"block_items": 2, "programs": 3})):
            cases.append({"id": f"schedule-{name}-{tag}", "name": f"{name}.arch", "arch": NETS[name],
                          "dtype": "float64", "seed": 9, "n1": 3, "n2": None, "values": True, **extra})
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def results():
    return run_interpreted(CASES, workers=2)


@pytest.mark.parametrize("case", [c for c in CASES if not c["id"].startswith(("diag-", "schedule-"))],
                         ids=lambda c: c["id"])
def test_triton_equals_torch(results, case):
    r = case_result(results, case["id"])
    for key in ("nngp", "ntk"):
        # float32: 1e-5, or a few times what the torch backend's own float32 misses by where a
        # net is worse conditioned than that (a relu on nearly parallel scalars, say)
        tol = TOL[case["dtype"]] if case["dtype"] == "float64" else max(TOL["float32"], 4 * r[f"torch32_{key}"])
        assert r[key] <= tol, f"{key} off by {r[key]:.3g} relative to the largest entry (allowed {tol:.3g})"


@pytest.mark.parametrize("key", ["diag-v-float32", "diag-gap-float32"])
def test_self_pair_diagonal_keeps_float32_digits(results, key):
    r = case_result(results, key)
    assert r["diag"] <= 2e-6 and r["diag_ntk"] <= 2e-6, r


@pytest.mark.parametrize("name", ["small_loop_gap", "pool_circular_erf_valid_stride"])
def test_schedule_does_not_change_results(results, name):
    a = case_result(results, f"schedule-{name}-default")["values"]
    b = case_result(results, f"schedule-{name}-narrow")["values"]
    for x, y in zip(a, b):
        xt, yt = torch.tensor(x), torch.tensor(y)
        assert (xt - yt).abs().max().item() <= 1e-14 * yt.abs().max().item()


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    k = ntkc.compile(NETS["v_flatten"])
    x = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError):
        k(x, backend="triton")
    # asking for the interpreter after triton was imported without it cannot work: say so
    from ntkc.backends.triton import codecache
    if not codecache.interpreting():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        with pytest.raises(BackendError, match="before the process imports triton"):
            k(x, backend="triton")
