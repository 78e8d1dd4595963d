"""The rules written with the public API against finite networks (Monte Carlo), as
test_montecarlo.py does for the original layers: leaky_relu / abrelu, gelu, dilated conv, lap
(both paddings), flip and the user example `sine`.

Each finite network is built here with plain torch ops, independently of the package:
  conv:  (w_std / sqrt(C k^2)) conv2d(pad(x), W, dilation=r) + b_std beta, 'SAME' pads from the
         dilated span r (k - 1) + 1 (low pad = total // 2), or indices modulo n for circular
  lap:   avg_pool2d(pad(x), k, stride=1) over zero padding (divisor k^2) or wrapped indices
  flip:  the network (f(x) + f(mirror x)) / 2, the definition of the flip-augmented kernel
Every case has one nonlinearity, on the first conv's output (exactly Gaussian given the input),
followed by linear layers only, so the finite-width mean equals the infinite-width kernel exactly
(see test_montecarlo.py): the tolerance is Z = 5 standard errors over the seeds, no bias term.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ntkc
from ntkc.rules import load_rules
from support.reference import parse_arch, reference_kernels
from support.nets import SINE

Z = 5.0
pytestmark = pytest.mark.slow

ACT = {
    "relu": lambda x, p: torch.relu(x),
    "leaky_relu": lambda x, p: torch.where(x > 0, x, p["slope"] * x),
    "abrelu": lambda x, p: p["a"] * torch.clamp(x, max=0) + p["b"] * torch.clamp(x, min=0),
    "gelu": lambda x, p: F.gelu(x),  # exact erf form (approximate='none')
    "sine": lambda x, p: torch.sin(p["freq"] * x),
}


def _index(n, k_span, lo, hi):
    return torch.arange(-lo, n + hi) % n


def _same_pads(n, span, stride):
    out = -(-n // stride)
    total = max((out - 1) * stride + span - n, 0)
    return total // 2, total - total // 2


class Net:
    def __init__(self, layers, channels, width, gen):
        self.layers, self.params = [], []
        c = channels
        randn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
        for name, p in layers:
            op = dict(p, name=name)
            if name == "conv":
                op["W"] = randn(width, c, p["size"], p["size"]).requires_grad_(p["trainable"])
                op["beta"] = randn(width).requires_grad_(p["trainable"])
                op["scale"] = p["w_std"] / math.sqrt(c * p["size"] ** 2)
                c = width
                if p["trainable"]:
                    self.params += [op["W"], op["beta"]]
            elif name in ("gap", "flatten"):
                op["fan_from"] = c
            elif name == "dense":
                op["W"] = randn(1, 1).requires_grad_(False)  # shape fixed at the first call
            self.layers.append(op)
        self.gen, self.randn = gen, randn

    def _pad(self, x, span, stride, padding):
        if padding == "valid":
            return x
        lo_h, hi_h = _same_pads(x.shape[2], span, stride)
        lo_w, hi_w = _same_pads(x.shape[3], span, stride)
        if padding == "circular":
            return x[:, :, _index(x.shape[2], span, lo_h, hi_h)][:, :, :, _index(x.shape[3], span, lo_w, hi_w)]
        return F.pad(x, (lo_w, hi_w, lo_h, hi_h))

    def __call__(self, x):
        for op in self.layers:
            name = op["name"]
            if name == "conv":
                r, k = op["dilation"], op["size"]
                y = F.conv2d(self._pad(x, r * (k - 1) + 1, op["stride"], op["padding"]), op["W"],
                             stride=op["stride"], dilation=r)
                x = op["scale"] * y + op["b_std"] * op["beta"][:, None, None]
            elif name in ACT:
                x = ACT[name](x, op)
            elif name == "lap":
                x = F.avg_pool2d(self._pad(x, op["size"], 1, op["padding"]), op["size"], stride=1)
            elif name == "gap":
                x = x.mean(dim=(2, 3))
            elif name == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif name == "dense":
                if op["W"].shape[1] != x.shape[1]:  # the readout: many outputs, only row 0 trained
                    op["W"] = self.randn(op["n_out"], x.shape[1])
                    op["W0"] = op["W"][:1].clone().requires_grad_(op["trainable"])
                    op["beta"] = self.randn(op["n_out"])
                    op["beta0"] = op["beta"][:1].clone().requires_grad_(op["trainable"])
                    if op["trainable"]:
                        self.params += [op["W0"], op["beta0"]]
                scale = op["w_std"] / math.sqrt(x.shape[1])
                y = torch.cat([x @ op["W0"].T + op["b_std"] / scale * op["beta0"],
                               x.detach() @ op["W"][1:].T + op["b_std"] / scale * op["beta"][1:]], dim=1)
                x = scale * y
            else:
                raise ValueError(name)
        return x


CASES = {
    "gelu_dilated_lap_flatten": ("""input height=4 width=4 channels=2
conv w_std=1.3 b_std=0.3 dilation=2
gelu
lap size=3
flatten
dense b_std=0.2
""", 1024, 16),
    "leaky_lap_circular_gap": ("""input height=5 width=4 channels=2
conv w_std=1.5 padding=circular size=3 dilation=2
leaky_relu slope=0.2
lap size=2 padding=circular
gap
dense
""", 2048, 16),
    "flip_abrelu_gap": ("""input height=4 width=5 channels=2
flip
conv w_std=1.2 b_std=0.2
abrelu a=-0.4 b=1.3
gap
dense
""", 2048, 16),
    "user_sine_flatten": (f"""use "{SINE}"
input height=4 width=4 channels=2
conv w_std=1.1 size=3 dilation=2
sine freq=1.3
flatten
dense b_std=0.3
""", 1024, 16),
}


def _images(shape, n=3):
    h, w, c = shape
    rng = np.random.default_rng(11)
    return 0.6 * rng.standard_normal((1, c, h, w)) + 0.8 * rng.standard_normal((n, c, h, w))


@functools.lru_cache(maxsize=None)
def estimate(name):
    text, width, seeds = CASES[name]
    shape, layers = parse_arch(text)
    flip = bool(layers) and layers[0][0] == "flip"
    body = [(n, dict(p)) for n, p in layers if n != "flip"]
    for n, p in body:
        if n == "dense":
            p["n_out"] = width
    x = torch.from_numpy(_images(shape))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    nngp, ntk = [], []
    try:
        for seed in range(seeds):
            net = Net(body, shape[2], width, torch.Generator().manual_seed(500 + seed))
            fn = (lambda z: (net(z) + net(z.flip(-1))) / 2) if flip else net
            outs, grads = [], []
            for i in range(len(x)):
                out = fn(x[i:i + 1])[0]
                outs.append(out.detach())
                g = torch.autograd.grad(out[0], net.params)
                grads.append(torch.cat([t.reshape(-1) for t in g]))
            f, g = torch.stack(outs), torch.stack(grads)
            nngp.append((f @ f.T / f.shape[1]).numpy())
            ntk.append((g @ g.T).numpy())
    finally:
        torch.set_num_threads(threads)
    return x.numpy(), text, layers, {"nngp": np.array(nngp), "ntk": np.array(ntk)}


@pytest.mark.parametrize("name", list(CASES))
def test_new_rules_match_finite_networks(name):
    load_rules(SINE)
    x, text, layers, samples = estimate(name)
    ref = dict(zip(("nngp", "ntk"), reference_kernels(layers, x)))
    got = ntkc.compile(text)(torch.from_numpy(x), dtype=torch.float64)
    pkg = {"nngp": got.nngp.numpy(), "ntk": got.ntk.numpy()}
    for kind in ("nngp", "ntk"):
        s = samples[kind]
        mean, sem = s.mean(0), s.std(0, ddof=1) / math.sqrt(len(s))
        tol = Z * sem
        assert np.all(np.abs(mean - ref[kind]) <= tol), f"{name} {kind}\n{mean}\n{ref[kind]}\n{np.abs(mean - ref[kind]) / tol}"
        assert np.allclose(pkg[kind], ref[kind], rtol=1e-9, atol=1e-12 * np.abs(ref[kind]).max())
        print(f"{name} {kind}: max |mean - analytic| / SE = {np.max(np.abs(mean - ref[kind]) / sem):.2f}")


def test_a_wrong_kernel_is_rejected():
    """The same tolerance catches a plausible mistake: lap wrapping around instead of zeros."""
    x, text, layers, samples = estimate("gelu_dilated_lap_flatten")
    wrong_layers = [(n, dict(p, padding="circular") if n == "lap" else p) for n, p in layers]
    wrong = reference_kernels(wrong_layers, x)
    for kind, w in zip(("nngp", "ntk"), wrong):
        s = samples[kind]
        tol = Z * s.std(0, ddof=1) / math.sqrt(len(s))
        assert np.any(np.abs(s.mean(0) - w) > tol), kind
