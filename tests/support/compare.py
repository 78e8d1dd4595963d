"""The package against the independent reference: run a network's text through `ntkc.compile` on
one backend and compare both precisions with `reference.reference_kernels`."""
from __future__ import annotations

import numpy as np
import torch

from support import reference as R
from support.checks import DEGENERATE_F32_TOL, DEGENERATE_F64_TOL, F32_TOL, F64_TOL, assert_close
from support.reference import parse_arch, reference_kernels


def run_package(text, x1, x2=None, dtype=torch.float64, backend="torch"):
    import ntkc  # the package must be importable: a failure here is a test failure, not a skip

    tdtype = torch.float32 if dtype == torch.float32 else torch.float64
    t1 = torch.tensor(x1, dtype=tdtype)
    t2 = None if x2 is None else torch.tensor(x2, dtype=tdtype)
    r = ntkc.compile(text)(t1, t2, dtype=dtype, backend=backend)
    for K in (r.nngp, r.ntk):
        assert isinstance(K, torch.Tensor), type(K)
        assert K.dtype == dtype, K.dtype
        assert tuple(K.shape) == (len(x1), len(x1) if x2 is None else len(x2))
    return r.nngp.detach().cpu().double().numpy(), r.ntk.detach().cpu().double().numpy()


def check_package(text, x1, x2=None, what="", backend="torch", dtypes=(torch.float64, torch.float32)):
    """Compare float64 (1e-10) and float32 (1e-5) package results with the reference (the
    precisions in `dtypes`: both unless a caller narrows it).

    The tolerance is relative to the largest |entry|, or, where that is larger, to the largest
    entry of the same network on |x|: a kernel entry is a sum of terms whose magnitudes the
    |x| kernel bounds (every term is >= 0 there), so this is the scale of the rounding errors.
    It only matters when the terms cancel, e.g. `gap` right after the input, where the kernel
    is mean(a) mean(b) and can be 1e-5 of the pixel products it sums (float32 then keeps only
    ~3 digits of it, in any implementation)."""
    shape, layers = parse_arch(text)
    want = reference_kernels(layers, x1, x2)
    magnitude = reference_kernels(layers, np.abs(x1), None if x2 is None else np.abs(x2))
    tols = ((torch.float64, F64_TOL), (torch.float32, F32_TOL))
    if R.min_relu_decorrelation(layers, x1, x2) < 1e-9:
        # exactly collinear features at a relu: only ~sqrt(eps) is attainable in ANY
        # implementation (see reference.min_relu_decorrelation and test_degenerate_relu_inputs)
        tols = ((torch.float64, DEGENERATE_F64_TOL), (torch.float32, DEGENERATE_F32_TOL))
    for dtype, tol in tols:
        if dtype not in dtypes:
            continue
        got = run_package(text, x1, x2, dtype, backend)
        for kind, g, w, m in zip(("nngp", "ntk"), got, want, magnitude):
            assert_close(g, w, tol, f"{what} {kind} {dtype}\n{text}", scale=max(np.abs(w).max(), np.abs(m).max()))
