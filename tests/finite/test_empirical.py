"""`k.empirical`: Monte Carlo NNGP and empirical NTK of finite networks against the compiled
kernels, and their convergence at the 1/sqrt(width) rate.

Agreement (`test_mean_matches_the_kernel`): networks whose finite-width mean equals the
infinite-width kernel exactly (one nonlinearity, on the first layer's output, which is exactly
Gaussian given the image, then linear layers only; the argument is in
tests/exactness/test_montecarlo.py), so every entry must satisfy |mean - K| <= Z * SE with SE
the standard error over the nets and no bias term. Z = 5: a correct entry's t statistic (9 dof)
exceeds 5 with probability < 1e-3, and the seeds are fixed, so the outcome is deterministic.
The same check is run on networks broken on purpose (the standard parameterisation, frozen
layers trained) and must fail.

Rate (`test_both_kernels_converge_at_one_over_sqrt_width`): a two-relu network, whose per-net
relative error e = ||K_net - K||_F / ||K||_F has E[e^2] ~ c / width. The slope of
log sqrt(mean e^2) against log width is fitted by weighted least squares, with each width's
standard error from the spread of e^2 over its nets (delta method); it must be -1/2 within 4
standard errors, and the standard error must be small enough (< 0.15) to tell -1/2 from 0 and -1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntkc
import ntkc.finite.empirical as empirical_module
from ntkc.finite.network import FiniteNetwork, WeightedWindow
from support.checks import images
from support.nets import SINE

Z = 5.0
pytestmark = pytest.mark.slow

EXACT = {
    # frozen circular stride-2 conv, relu, pooling that drops a column, trainable 1x1 conv, flatten
    "frozen_circular_pool": """input height=7 width=6 channels=3
conv stride=2 padding=circular w_std=1.3 b_std=0.3 trainable=false
relu
avgpool size=2
conv size=1 b_std=0.2
flatten
dense b_std=0.5
""",
    "flip_lap_flatten": """input height=4 width=5 channels=2
flip
conv w_std=1.4
relu
lap size=3
flatten
dense
""",
    "user_sine_dilated": f"""use "{SINE}"
input height=5 width=4 channels=2
conv w_std=0.8 dilation=2
sine freq=0.9
conv size=1 w_std=0.7
flatten
dense
""",
    "gelu_gap_frozen_dense": """input height=5 width=5 channels=2
conv b_std=0.1 size=4
gelu
avgpool size=2 stride=1
gap
dense trainable=false w_std=1.2
""",
    # residual blocks, linear: exact at any width (a scaled branch after a frozen conv, a block on
    # the readout's features)
    "residual_linear": """input height=5 width=4 channels=2
conv b_std=0.2 trainable=false
residual scale=0.6 {
  identity
  conv size=1 w_std=1.3 b_std=0.3
}
gap
residual {
  dense w_std=0.8 b_std=0.1
}
dense
""",
}
WIDTH, NETS = 512, 10
WIDER = {"residual_linear": 1024}  # linear layers multiply their fluctuations: a wider net keeps SE small


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)


def _case(name):
    k = ntkc.compile(EXACT[name])
    s = k.arch.input
    x = images(3, (s.height, s.width, s.channels), seed=11)
    return k, x, k(x, dtype=torch.float64)


def excess(k, x, exact, width=WIDTH, n_nets=NETS, teeth=True):
    """max over entries of |mean - K| / (Z * SE), for the NNGP and the NTK."""
    e = k.empirical(x, width=width, n_nets=n_nets, seed=100, dtype=torch.float64)
    assert e.nngp_samples.shape == (n_nets, len(x), len(x)) and e.width == width
    out = {}
    for kind in ("nngp", "ntk"):
        tol = Z * getattr(e, f"{kind}_se")
        want = getattr(exact, kind)
        out[kind] = float((np.abs(getattr(e, kind) - want) / tol).max())
        # the check has teeth: the tolerance is a fraction of the kernel (5-16% for these cases), and
        # test_broken_networks_fail_the_same_check shows it rejecting real mistakes
        assert not teeth or tol.max() <= 0.2 * np.abs(want).max(), (kind, tol.max(), np.abs(want).max())
    return out


@pytest.mark.parametrize("name", list(EXACT))
def test_mean_matches_the_kernel(name):
    k, x, r = _case(name)
    ex = excess(k, x, r, width=WIDER.get(name, WIDTH))
    assert max(ex.values()) <= 1.0, ex


def _patched_networks(monkeypatch, change):
    def build(*args, **kwargs):
        net = FiniteNetwork(*args, **kwargs)
        change(net)
        return net

    monkeypatch.setattr(empirical_module, "FiniteNetwork", build)


def _standard_parameterisation(net):
    for mod in net.modules():
        if isinstance(mod, WeightedWindow):
            with torch.no_grad():
                mod.weight.mul_(mod.scale)
                if mod.bias is not None:
                    mod.bias.mul_(mod.bias_scale)
            mod.scale = mod.bias_scale = 1.0


def _train_frozen_layers_too(net):
    for p in net.parameters():
        p.requires_grad_(True)


@pytest.mark.parametrize("change", [_standard_parameterisation, _train_frozen_layers_too],
                         ids=["standard_parameterisation", "frozen_layers_trained"])
def test_broken_networks_fail_the_same_check(monkeypatch, change):
    """The standard parameterisation (same function, gradients without the 1/sqrt(fan_in)) and a
    network() that forgets `trainable=false` both keep the NNGP and change the NTK."""
    k, x, r = _case("frozen_circular_pool")
    _patched_networks(monkeypatch, change)
    ex = excess(k, x, r, width=1024, teeth=False)
    assert ex["nngp"] <= 1.0, ex
    assert ex["ntk"] > 1.0, ex


def test_numpy_and_tensor_inputs_and_a_cross_block():
    k, x, _ = _case("gelu_gap_frozen_dense")
    x2 = images(2, (5, 5, 2), seed=12)
    e = k.empirical(x, x2, width=16, n_nets=2, seed=3)
    assert isinstance(e.ntk, np.ndarray) and e.ntk.shape == (3, 2)
    t = k.empirical(torch.as_tensor(x), torch.as_tensor(x2), width=16, n_nets=2, seed=3)
    np.testing.assert_allclose(t.ntk.numpy(), e.ntk, rtol=1e-6)
    full = k.empirical(np.concatenate([x, x2]), width=16, n_nets=2, seed=3)
    np.testing.assert_allclose(full.ntk[:3, 3:], e.ntk, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(full.nngp[:3, 3:], e.nngp, rtol=1e-5, atol=1e-7)
    # chunked Jacobians (one image's rows at a time) give the same matrix
    old = empirical_module.JACOBIAN_BYTES
    try:
        empirical_module.JACOBIAN_BYTES = 1
        chunked = k.empirical(np.concatenate([x, x2]), width=16, n_nets=2, seed=3)
    finally:
        empirical_module.JACOBIAN_BYTES = old
    np.testing.assert_allclose(chunked.ntk, full.ntk, rtol=1e-5, atol=1e-7)


RATE_NET = """input height=5 width=5 channels=2
conv w_std=sqrt(2) b_std=0.2
relu
conv size=1 w_std=sqrt(2)
relu
gap
dense
"""
RATE_WIDTHS, RATE_NETS = (16, 64, 256, 1024), 10


def _slope(widths, m, se_log_m):
    """Weighted least-squares slope of 0.5 log m against log width, and its standard error."""
    x = np.log(widths)
    y = 0.5 * np.log(m)
    w = 1.0 / (0.5 * se_log_m) ** 2
    xb = (w * x).sum() / w.sum()
    slope = (w * (x - xb) * y).sum() / (w * (x - xb) ** 2).sum()
    return float(slope), float(1.0 / math.sqrt((w * (x - xb) ** 2).sum()))


def test_both_kernels_converge_at_one_over_sqrt_width():
    k = ntkc.compile(RATE_NET)
    x = images(3, (5, 5, 2), seed=5)
    r = k(x, dtype=torch.float64)
    found = {}
    for kind in ("nngp", "ntk"):
        m, se = [], []
        for width in RATE_WIDTHS:
            e = k.empirical(x, width=width, n_nets=RATE_NETS, seed=7, dtype=torch.float64)
            want = getattr(r, kind)
            e2 = ((getattr(e, f"{kind}_samples") - want) ** 2).sum(axis=(1, 2)) / (want ** 2).sum()
            m.append(e2.mean())
            se.append(e2.std(ddof=1) / math.sqrt(len(e2)) / e2.mean())  # SE of log mean(e^2)
        slope, err = _slope(np.array(RATE_WIDTHS), np.array(m), np.array(se))
        found[kind] = (slope, err, np.sqrt(m))
        assert err < 0.15, (kind, slope, err)
        assert abs(slope + 0.5) <= 4 * err, (kind, slope, err, np.sqrt(m))
    print({k: (f"slope {s:.3f} +- {e:.3f}", "rms rel error " + ", ".join(f"{v:.3f}" for v in rms))
           for k, (s, e, rms) in found.items()})
