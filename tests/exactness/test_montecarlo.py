"""Tie the kernel conventions to real finite-width networks (Monte Carlo).

A finite CNN in the NTK parameterisation, built here with plain torch ops:
  conv:    y = (w_std / sqrt(C_in k^2)) conv(pad(x), W) + b_std * beta,  W, beta ~ N(0, 1)
  dense:   y = (w_std / sqrt(fan_in)) W x + b_std * beta
  gap:     mean over positions;  flatten: reshape (the next dense has fan-in C*H*W)
  avgpool: F.avg_pool2d (windows inside the map only)
  same:    explicit zero padding (lo, pad_total - lo), TF/JAX 'SAME' sizes; for stride 1 we let
           torch's own padding="same" do it, an independent statement of the same rule
  circular: indices modulo n
  residual scale=c { f }: y = x + c f(x), f built the same way; its last layer gives as many
           channels (or units) as x has
Empirical NNGP of one seed: mean over the output units of f(a) f(b) (a final dense with many
outputs); empirical NTK of one seed: sum over all trainable parameters of grad f_0(a) . grad
f_0(b) by autograd (frozen layers' parameters are left out of the gradient). Both are averaged
over seeds and compared with the float64 reference in tests/support/reference.py, and with the package.

Tolerance, entry by entry:  |mean - analytic| <= Z * SE + bias
  SE   = sample standard deviation across seeds / sqrt(seeds).
  Z    = 5: with >= 16 seeds the t statistic of a correct entry exceeds 5 with probability
         < 2e-4 (t with 15 dof), so ~200 compared entries give < 5% family-wise chance of a
         false alarm, and the seeds are fixed, so the outcome is deterministic anyway.
  bias = 0 for networks whose finite-width mean is EXACTLY the infinite-width kernel:
         (i) every layer linear (identity activations): each layer's conditional expectation
         is linear in the previous layer's empirical covariance; (ii) one nonlinearity, acting
         on a first-layer quantity (the first conv's output or its gap) that is exactly
         Gaussian given the input with the analytic covariance, followed only by linear layers;
         the NTK terms then factor into independent upstream and downstream parts, each exact.
       = C_BIAS * max|K| / width otherwise: the mean of a finite net's NNGP/NTK deviates from
         the limit by O(1/width) (a nonlinearity applied to an empirical, fluctuating
         covariance). We measured it on the two biased cases below at widths 32 and 64 with
         400-600 seeds: |mean - analytic| * width / max|K| <= 0.6 for every entry (the
         measurement was itself noise-limited at ~0.4), so C_BIAS = 2 leaves a 3x margin.
`test_wrong_conventions_are_rejected` shows the same tolerance rejects plausible mistakes.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support.reference import arch_text, layer as L, output_shape, reference_kernels

Z = 5.0
C_BIAS = 2.0


# ----------------------------------------------------------------------------------------------
# the finite network


def _pads(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(output size, low pad, high pad) along one axis."""
    if padding == "valid":
        return (n - k) // s + 1, 0, 0
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


class FiniteNet:
    def __init__(self, layers, shape, width, n_out, generator, mirror_same=False, fan=None, branch=False):
        """mirror_same: put the odd extra pad of 'same' at the low end (a WRONG convention).
        branch: a residual branch, whose last layer returns to the input's channels / units."""
        height, wid, chans = shape
        h, w, c = height, wid, chans
        self.ops, self.trainable = [], []
        last_dense = max((i for i, (name, _) in enumerate(layers) if name == "dense"), default=None)
        c_in, fan_in = c, fan

        def randn(*size):
            return torch.randn(*size, generator=generator, dtype=torch.float64)

        for i, (name, p) in enumerate(layers):
            op = dict(p, name=name)
            params = []
            if name == "conv":
                k, s = p["size"], p["stride"]
                out_c = c_in if branch and i == len(layers) - 1 else width
                op["W"], op["beta"] = randn(out_c, c, k, k), randn(out_c)
                op["scale"] = p["w_std"] / math.sqrt(c * k * k)
                geo_h, geo_w = _pads(h, k, s, p["padding"]), _pads(w, k, s, p["padding"])
                if mirror_same:
                    geo_h, geo_w = (geo_h[0], geo_h[2], geo_h[1]), (geo_w[0], geo_w[2], geo_w[1])
                op["geo"] = geo_h, geo_w
                h, w, c = geo_h[0], geo_w[0], out_c
                params = [op["W"], op["beta"]]
            elif name == "avgpool":
                h = (h - p["size"]) // p["stride"] + 1
                w = (w - p["size"]) // p["stride"] + 1
            elif name == "gap":
                fan = c
            elif name == "flatten":
                fan = c * h * w
            elif name == "residual":
                op["body"] = FiniteNet(p["body"], (h, w, c), width, None, generator, mirror_same, fan, branch=True)
                self.trainable += op["body"].trainable
            elif name == "dense":
                out = fan_in if branch and i == len(layers) - 1 else (n_out if i == last_dense and n_out else width)
                op["scale"] = p["w_std"] / math.sqrt(fan)
                if i == last_dense and n_out:
                    # only row 0 (output f_0) gets a gradient; keep the other rows apart so the
                    # NTK's autograd does not materialise their (zero) gradients
                    op["W0"], op["Wrest"], op["beta"] = randn(1, fan), randn(out - 1, fan), randn(out)
                    params = [op["W0"], op["beta"]]
                else:
                    op["W"], op["beta"] = randn(out, fan), randn(out)
                    params = [op["W"], op["beta"]]
                fan = out
            if p.get("trainable", False):
                for t in params:
                    t.requires_grad_(True)
                self.trainable += params
            self.ops.append(op)

    def __call__(self, x):
        for op in self.ops:
            name = op["name"]
            if name == "conv":
                (oh, lh, hh), (ow, lw, hw) = op["geo"]
                k, s = op["size"], op["stride"]
                if op["padding"] == "circular":
                    rows = torch.arange(-lh, (oh - 1) * s + k - lh) % x.shape[2]
                    cols = torch.arange(-lw, (ow - 1) * s + k - lw) % x.shape[3]
                    y = F.conv2d(x[:, :, rows][:, :, :, cols], op["W"], stride=s)
                elif op["padding"] == "same" and s == 1 and (lh, lw) == ((k - 1) // 2,) * 2:
                    y = F.conv2d(x, op["W"], padding="same")  # torch: low pad = total // 2
                elif op["padding"] == "same":
                    y = F.conv2d(F.pad(x, (lw, hw, lh, hh)), op["W"], stride=s)
                else:
                    y = F.conv2d(x, op["W"], stride=s)
                x = op["scale"] * y + op["b_std"] * op["beta"][:, None, None]
            elif name == "relu":
                x = torch.relu(x)
            elif name == "erf":
                x = torch.erf(x)
            elif name == "identity":
                pass
            elif name == "avgpool":
                x = F.avg_pool2d(x, op["size"], op["stride"])
            elif name == "gap":
                x = x.mean(dim=(2, 3))
            elif name == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif name == "residual":
                x = x + op["scale"] * op["body"](x)
            elif name == "dense":
                if "W" in op:
                    y = x @ op["W"].T
                else:
                    y = torch.cat([x @ op["W0"].T, x.detach() @ op["Wrest"].T], dim=1)
                x = op["scale"] * y + op["b_std"] * op["beta"]
            else:
                raise ValueError(name)
        return x


def sample_kernels(layers, shape, x, width, n_out, seeds, mirror_same=False):
    """Per-seed empirical (NNGP, NTK) Gram matrices of the images x: two arrays [seeds, n, n]."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead (and stall on a busy machine)
    try:
        return _sample_kernels(layers, shape, x, width, n_out, seeds, mirror_same)
    finally:
        torch.set_num_threads(threads)


def _sample_kernels(layers, shape, x, width, n_out, seeds, mirror_same):
    nngp, ntk = [], []
    for seed in range(seeds):
        net = FiniteNet(layers, shape, width, n_out, torch.Generator().manual_seed(1000 + seed), mirror_same)
        outs, grads = [], []
        for i in range(len(x)):
            out = net(x[i: i + 1])[0]
            outs.append(out.detach())
            if net.trainable:
                g = torch.autograd.grad(out[0], net.trainable)
                grads.append(torch.cat([t.reshape(-1) for t in g]))
            else:
                grads.append(torch.zeros(1, dtype=torch.float64))
        f, g = torch.stack(outs), torch.stack(grads)
        nngp.append((f @ f.T / f.shape[1]).numpy())
        ntk.append((g @ g.T).numpy())
    return np.array(nngp), np.array(ntk)


# ----------------------------------------------------------------------------------------------
# the cases


@dataclass(frozen=True)
class Case:
    shape: tuple  # (height, width, channels)
    layers: tuple
    width: int
    n_out: int
    seeds: int
    exact: bool  # finite-width mean equals the limit exactly (see the module docstring)
    n_images: int = 3


CASES = {
    # relu, bias in conv and dense, gap, w_std = sqrt(2)
    "relu_gap_bias": Case(
        (6, 6, 3),
        (L("conv", w_std=math.sqrt(2), b_std=0.5), L("relu"), L("gap"), L("dense", b_std=0.3)),
        width=2048, n_out=2048, seeds=16, exact=True),
    # erf, stride 2 on even sizes ('same' pads 0 low, 1 high: TF/JAX), pool, flatten
    "erf_stride2_pool_flatten": Case(
        (6, 4, 2),
        (L("conv", size=3, stride=2, b_std=0.2), L("erf"), L("avgpool", size=2, stride=1),
         L("flatten"), L("dense", w_std=1.2)),
        width=512, n_out=1024, seeds=16, exact=True),
    # even kernel with stride 2 on odd non-square sizes: 'same' pads 1 low, 2 high
    "same_even_kernel": Case(
        (7, 5, 2),
        (L("conv", size=4, stride=2, w_std=1.4, b_std=0.2), L("relu"), L("gap"), L("dense")),
        width=2048, n_out=2048, seeds=16, exact=True),
    # circular with stride 2, frozen conv, pooling (default stride = size) that leaves a column out
    "circular_frozen_conv": Case(
        (7, 6, 3),
        (L("conv", stride=2, padding="circular", w_std=1.3, trainable=False), L("relu"),
         L("avgpool", size=2), L("flatten"), L("dense", b_std=0.5)),
        width=1024, n_out=1024, seeds=16, exact=True),
    # valid 3x3 with stride 3 (8 and 7 not divisible by 3), frozen dense readout
    "valid_stride3_frozen_dense": Case(
        (8, 7, 2),
        (L("conv", size=3, stride=3, padding="valid", w_std=1.5, b_std=0.1), L("relu"), L("gap"),
         L("dense", b_std=0.4, trainable=False)),
        width=2048, n_out=2048, seeds=16, exact=True),
    # linear deep net: exact at any width; strides, circular, valid, pooling, frozen middle conv
    "linear_deep": Case(
        (8, 7, 3),
        (L("conv", stride=2, b_std=0.3), L("identity"), L("conv", size=3, padding="circular"),
         L("avgpool", size=2, stride=1), L("conv", size=2, padding="valid", trainable=False),
         L("flatten"), L("dense", b_std=0.2)),
        width=256, n_out=512, seeds=48, exact=True),
    # activation directly on the gap output (exactly Gaussian), then dense
    "gap_erf_head": Case(
        (5, 4, 3),
        (L("conv", w_std=2.0, b_std=0.2), L("gap"), L("erf"), L("dense", b_std=0.3)),
        width=2048, n_out=2048, seeds=16, exact=True),
    # two relu conv layers: finite-width bias O(1/width)
    "deep_relu": Case(
        (6, 6, 3),
        (L("conv", w_std=math.sqrt(2), b_std=0.2), L("relu"), L("conv", stride=2, w_std=math.sqrt(2)),
         L("relu"), L("gap"), L("dense")),
        width=128, n_out=1024, seeds=128, exact=False),
    # residual blocks, linear: exact at any width (a scaled branch after a frozen conv, a block
    # after the readout whose dense returns to the units it was given)
    "residual_linear": Case(
        (6, 5, 2),
        (L("conv", b_std=0.2, trainable=False), L("residual", scale=0.6, body=[L("identity"), L("conv", w_std=1.3, b_std=0.3)]),
         L("gap"), L("residual", body=[L("dense", w_std=0.8, b_std=0.1)]), L("dense")),
        width=512, n_out=1024, seeds=48, exact=True),
    # a WideResNet-style block: relu conv relu conv around a shortcut, then relu and gap; biased
    "residual_relu": Case(
        (6, 6, 3),
        (L("conv", w_std=math.sqrt(2), b_std=0.2),
         L("residual", scale=0.7, body=[L("relu"), L("conv", w_std=math.sqrt(2)), L("relu"),
                                        L("conv", w_std=1.2, b_std=0.1)]),
         L("relu"), L("gap"), L("dense")),
        width=128, n_out=1024, seeds=128, exact=False),
    # dense - erf - dense head after the readout: biased too
    "dense_head": Case(
        (5, 5, 3),
        (L("conv", w_std=math.sqrt(2)), L("relu"), L("gap"), L("dense", w_std=1.5, b_std=0.2), L("erf"),
         L("dense")),
        width=1024, n_out=1024, seeds=24, exact=False),
}


def _images(case: Case) -> np.ndarray:
    """Correlated random images (a shared component) so the off-diagonal entries are sizeable."""
    h, w, c = case.shape
    rng = np.random.default_rng(7)
    common = rng.standard_normal((1, c, h, w))
    return 0.6 * common + 0.8 * rng.standard_normal((case.n_images, c, h, w))


@dataclass
class Estimate:
    mean: dict  # kind -> [n, n]
    sem: dict
    ref: dict
    tol: dict


@functools.lru_cache(maxsize=None)
def estimate(name: str, mirror_same: bool = False) -> Estimate:
    case = CASES[name]
    x = _images(case)
    nngp, ntk = sample_kernels(case.layers, case.shape, torch.from_numpy(x), case.width, case.n_out,
                               case.seeds, mirror_same)
    ref = dict(zip(("nngp", "ntk"), reference_kernels(case.layers, x)))
    est = Estimate({}, {}, ref, {})
    for kind, samples in (("nngp", nngp), ("ntk", ntk)):
        est.mean[kind] = samples.mean(0)
        est.sem[kind] = samples.std(0, ddof=1) / math.sqrt(case.seeds)
        bias = 0.0 if case.exact else C_BIAS * np.abs(ref[kind]).max() / case.width
        est.tol[kind] = Z * est.sem[kind] + bias
    return est


def _report(kind, mean, target, tol):
    return (f"{kind}: empirical\n{mean}\nanalytic\n{target}\n"
            f"|diff| / tol\n{np.abs(mean - target) / tol}")


# ----------------------------------------------------------------------------------------------
# tests

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_finite_networks(name):
    est = estimate(name)
    for kind in ("nngp", "ntk"):
        ref = est.ref[kind]
        if kind == "ntk" and not np.any(ref):
            continue
        assert np.all(np.abs(est.mean[kind] - ref) <= est.tol[kind]), _report(kind, est.mean[kind], ref, est.tol[kind])
        # the test has teeth: the tolerance is a small fraction of the kernel
        assert est.tol[kind].max() <= 0.10 * np.abs(ref).max(), (kind, est.tol[kind], ref)


@pytest.mark.parametrize("name", list(CASES))
def test_package_matches_finite_networks(name):
    import ntkc  # the package must be importable: a failure here is a failure, not a skip

    case = CASES[name]
    h, w, c = case.shape
    x = torch.from_numpy(_images(case))
    r = ntkc.compile(arch_text(case.layers, h, w, c))(x, None, dtype=torch.float64, backend="torch")
    est = estimate(name)
    for kind in ("nngp", "ntk"):
        got = np.asarray(getattr(r, kind).detach().cpu(), dtype=np.float64)
        assert np.all(np.abs(est.mean[kind] - got) <= est.tol[kind]), _report(kind, est.mean[kind], got, est.tol[kind])
        np.testing.assert_allclose(got, est.ref[kind], rtol=0, atol=1e-10 * np.abs(est.ref[kind]).max())


def _flip(x):
    return x[:, :, ::-1, ::-1].copy()


def _kernels(layers, x):
    return dict(zip(("nngp", "ntk"), reference_kernels(layers, x)))


def _replace(layers, i, **params):
    out = list(layers)
    out[i] = L(out[i][0], **{**out[i][1], **params})
    return out


def _flatten_sum(layers, x):
    """Flatten summing over the diagonal instead of averaging: the kernel entering the dense is
    multiplied by the number of positions, i.e. the dense's w_std by sqrt(positions)."""
    h, w = output_shape(layers, x.shape[2], x.shape[3])
    i = [name for name, _ in layers].index("dense")
    return _kernels(_replace(layers, i, w_std=layers[i][1]["w_std"] * math.sqrt(h * w)), x)


def _erf_factor_at_zero(layers, x):
    """... gap -> erf -> dense with the erf derivative factor frozen at its zero-variance value 4/pi."""
    names = [name for name, _ in layers]
    before = layers[: names.index("erf")]
    _, t0 = reference_kernels(before, x)
    s1, _ = reference_kernels(layers[: len(before) + 1], x)
    dense = layers[len(before) + 1][1]
    ntk = dense["w_std"] ** 2 * (4 / math.pi) * t0 + dense["w_std"] ** 2 * s1 + dense["b_std"] ** 2
    return {"nngp": _kernels(layers, x)["nngp"], "ntk": ntk}


def wrong_conventions(name):
    """[(description, {"nngp": ..., "ntk": ...})]: analytic kernels under broken conventions."""
    case = CASES[name]
    x = _images(case)
    lays = list(case.layers)
    if name == "relu_gap_bias":
        return [("input without the 1/C", _kernels(lays, x * math.sqrt(case.shape[2]))),
                ("conv without b^2", _kernels(_replace(lays, 0, b_std=0.0), x)),
                ("readout dense without b^2", _kernels(_replace(lays, 3, b_std=0.0), x))]
    if name == "erf_stride2_pool_flatten":
        # the pads here fit the windows exactly and the rest of the net is flip-symmetric, so the
        # mirrored 'same' convention (the odd extra pad at the low end) is the right convention
        # applied to flipped images; test_mirrored_same_padding_is_rejected checks this directly
        return [("'same' with the extra pad low", _kernels(lays, _flip(x))),
                ("gap instead of flatten", _kernels(lays[:3] + [L("gap")] + lays[4:], x))]
    if name == "circular_frozen_conv":
        return [("circular treated as zero padding", _kernels(_replace(lays, 0, padding="same"), x)),
                ("trainable=false ignored (conv)", _kernels(_replace(lays, 0, trainable=True), x)),
                ("avgpool stride defaulting to 1", _kernels(_replace(lays, 2, stride=1), x))]
    if name == "same_even_kernel":
        # pads fit the windows exactly (7 + 3 = 3*2 + 4, 5 + 3 = 2*2 + 4): flip trick as above
        return [("'same' with the extra pad low", _kernels(lays, _flip(x)))]
    if name == "valid_stride3_frozen_dense":
        return [("trainable=false ignored (dense)", _kernels(_replace(lays, 3, trainable=True), x)),
                ("valid taps centred like 'same'", _kernels(_replace(lays, 0, padding="same"), x))]
    if name == "linear_deep":
        return [("flatten as a sum over positions", _flatten_sum(lays, x)),
                ("stride ignored", _kernels(_replace(lays, 0, stride=1), x))]
    if name == "gap_erf_head":
        return [("erf NTK factor without its variance term", _erf_factor_at_zero(lays, x))]
    if name in ("residual_linear", "residual_relu"):
        i = [n for n, _ in lays].index("residual")
        block = lays[i][1]
        body = list(block["body"])
        *head, (last, lp) = body
        scaled = L(last, **{**lp, "w_std": lp["w_std"] * block["scale"], "b_std": lp["b_std"] * block["scale"]})
        return [("branch scale not squared", _kernels(_replace(lays, i, scale=math.sqrt(block["scale"])), x)),
                ("shortcut left out", _kernels(lays[:i] + head + [scaled] + lays[i + 1:], x))]
    if name == "dense_head":
        return [("hidden dense frozen (no + S')", _kernels(_replace(lays, 3, trainable=False), x))]
    return []


@pytest.mark.parametrize("name", [n for n in CASES if n != "deep_relu"])
def test_wrong_conventions_are_rejected(name):
    """Each broken convention is rejected (in the NNGP or the NTK) by the very same tolerance."""
    est = estimate(name)
    wrongs = wrong_conventions(name)
    assert wrongs
    for what, wrong in wrongs:
        excess = {kind: (np.abs(est.mean[kind] - wrong[kind]) / est.tol[kind]).max() for kind in ("nngp", "ntk")}
        assert max(excess.values()) > 1.0, (
            f"the wrong convention '{what}' passes the tolerance: max |diff|/tol = {excess}\n"
            + _report("nngp", est.mean["nngp"], wrong["nngp"], est.tol["nngp"])
            + "\n" + _report("ntk", est.mean["ntk"], wrong["ntk"], est.tol["ntk"]))


def test_mirrored_same_padding_is_rejected():
    """Run the finite net itself with the mirrored 'same' convention: the reference rejects it,
    and the reference on flipped images (the mirrored convention's kernel) accepts it."""
    name = "erf_stride2_pool_flatten"
    wrong = estimate(name, mirror_same=True)
    flipped = _kernels(CASES[name].layers, _flip(_images(CASES[name])))
    excess = [(np.abs(wrong.mean[k] - wrong.ref[k]) / wrong.tol[k]).max() for k in ("nngp", "ntk")]
    assert max(excess) > 1.0, excess
    for kind in ("nngp", "ntk"):
        assert np.all(np.abs(wrong.mean[kind] - flipped[kind]) <= wrong.tol[kind]), kind
