"""The finite network (`k.network`), layer by layer and exactly, against the independent
reference's geometry (tests/support/reference.py), and its plumbing.

Exactness without Monte Carlo: a layer with weights is linear in its weights and bias, which
are independent N(0, 1), so for one output channel o

    E_W[y_o(a)[P] y_o(b)[Q]] = sum over its parameters t of dy_o(a)[P]/dt * dy_o(b)[Q]/dt,

and that very sum is the layer's own contribution to the NTK. Computed by autograd it must
equal the conv (or dense) map of the input covariance S, w^2/k^2 sum_d S[...] + b^2, for every
pair of positions: the NNGP step and the NTK parameterisation in one exact check (the standard
parameterisation, the same function with the scale moved into the weights, fails it by a factor
fan_in / w^2). A layer without weights is deterministic: (1/C) sum_c y_c(a)[P] y_c(b)[Q] must be
the pooling / lap / readout map of S.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntkc
from ntkc.backends.torch.ops import TorchOps
from ntkc.errors import ArchError, InputError
from ntkc.finite.network import Activation, FixedWindow, LimitWarning, Residual, WeightedWindow
from ntkc.rules import ActivationRule, Params, get_rule, load_rules, register
from support import reference as R
from support.nets import SINE

rng = np.random.default_rng(3)


def _input_kernel(xa, xb):
    return np.einsum("cij,ckl->ijkl", xa, xb) / xa.shape[0]


def _conv_map(S, p):
    ah = R.conv_taps(S.shape[0], p["size"], p["stride"], p["padding"], p["dilation"])
    aw = R.conv_taps(S.shape[1], p["size"], p["stride"], p["padding"], p["dilation"])
    return (p["w_std"] ** 2 / p["size"] ** 2 * np.einsum("xai,ybj,xcl,yem,ijlm->abce", ah, aw, ah, aw, S, optimize=True)
            + p["b_std"] ** 2)


def _first_layer(text, shape):
    h, w, c = shape
    k = ntkc.compile(f"input height={h} width={w} channels={c}\n{text}\ngap\ndense\n")
    return k.network(3, seed=1, out_dim=1, dtype=torch.float64).layers[0]


def weighted_layer_kernel(mod: WeightedWindow, xa, xb) -> np.ndarray:
    """sum over the parameters of output channel 0 of dy(a)[P]/dt dy(b)[Q]/dt, [P1, P2, Q1, Q2]."""
    from torch.func import functional_call, jacrev

    names = ["weight"] + (["bias"] if mod.bias is not None else [])
    params = {n: getattr(mod, n).detach() for n in names}

    def jac(x):
        y0 = lambda p: functional_call(mod, p, (torch.as_tensor(x[None]),))[0, 0]  # noqa: E731
        j = jacrev(y0)(params)  # only channel 0's weights and bias move y_0: keep those rows
        shape = j["weight"].shape[:2]
        rows = [j["weight"][:, :, 0].reshape(shape.numel(), -1)]
        if "bias" in j:
            rows.append(j["bias"][:, :, :1].reshape(shape.numel(), 1))
        return torch.cat(rows, dim=1), tuple(shape)

    ja, shape = jac(xa)
    jb, _ = jac(xb)
    return (ja @ jb.T).numpy().reshape(shape + shape)


CONVS = [
    dict(size=3, stride=1, padding="same", dilation=1, w_std=1.3, b_std=0.4),
    dict(size=4, stride=2, padding="same", dilation=1, w_std=1.0, b_std=0.0),   # even: extra pad high
    dict(size=3, stride=2, padding="same", dilation=2, w_std=0.7, b_std=0.2),
    dict(size=2, stride=3, padding="valid", dilation=1, w_std=1.5, b_std=0.1),
    dict(size=3, stride=1, padding="valid", dilation=2, w_std=1.1, b_std=0.0),
    dict(size=3, stride=2, padding="circular", dilation=1, w_std=1.2, b_std=0.3),
    dict(size=2, stride=1, padding="circular", dilation=3, w_std=0.9, b_std=0.0),
    dict(size=5, stride=1, padding="same", dilation=1, w_std=1.0, b_std=0.0),   # wider than the map
]


@pytest.mark.parametrize("p", CONVS, ids=lambda p: f"k{p['size']}s{p['stride']}{p['padding']}r{p['dilation']}")
def test_conv_layer_is_exactly_the_kernel_map_in_the_ntk_parameterisation(p):
    shape = (7, 5, 2)
    text = " ".join(f"{k}={v}" for k, v in p.items())
    mod = _first_layer(f"conv {text}", shape)
    assert isinstance(mod, WeightedWindow)
    xa, xb = rng.standard_normal((2, shape[2], shape[0], shape[1]))
    got = weighted_layer_kernel(mod, xa, xb)
    want = _conv_map(_input_kernel(xa, xb), R.layer("conv", **p)[1])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def _standard_parameterisation(mod: WeightedWindow) -> None:
    """The same function with the scales moved into the weights: y = conv(x, W') + beta',
    W' ~ N(0, scale^2): the NNGP is unchanged, the gradients (and the NTK) are not."""
    with torch.no_grad():
        mod.weight.mul_(mod.scale)
        if mod.bias is not None:
            mod.bias.mul_(mod.bias_scale)
    mod.scale = mod.bias_scale = 1.0


def test_the_exact_layer_check_rejects_the_standard_parameterisation():
    p = CONVS[0]
    shape = (7, 5, 2)
    mod = _first_layer("conv " + " ".join(f"{k}={v}" for k, v in p.items()), shape)
    xa, xb = rng.standard_normal((2, shape[2], shape[0], shape[1]))
    x = torch.as_tensor(xa[None])
    before = mod(x).detach()
    _standard_parameterisation(mod)
    torch.testing.assert_close(mod(x).detach(), before, rtol=1e-12, atol=1e-12)  # the same function
    got = weighted_layer_kernel(mod, xa, xb)
    want = _conv_map(_input_kernel(xa, xb), R.layer("conv", **p)[1])
    assert np.abs(got - want).max() > 0.5 * np.abs(want).max()


def test_dense_layer_after_a_readout_is_exact():
    k = ntkc.compile("input height=3 width=4 channels=2\nconv\ngap\ndense w_std=1.7 b_std=0.6\n")
    mod = k.network(5, seed=2, dtype=torch.float64).layers[-1]
    assert isinstance(mod, WeightedWindow)
    za, zb = rng.standard_normal((2, 5, 1, 1))  # a 5-wide feature vector, [C, 1, 1]
    got = weighted_layer_kernel(mod, za, zb)
    want = 1.7 ** 2 * float(za.ravel() @ zb.ravel()) / 5 + 0.6 ** 2
    assert got.shape == (1, 1, 1, 1) and abs(got.item() - want) < 1e-12


def _pool_map(S, m_rows, m_cols):
    return np.einsum("ai,bj,cl,em,ijlm->abce", m_rows, m_cols, m_rows, m_cols, S, optimize=True)


FIXED = [
    ("avgpool size=2", lambda S: _pool_map(S, R.pool_matrix(7, 2, 2), R.pool_matrix(6, 2, 2))),
    ("avgpool size=3 stride=1", lambda S: _pool_map(S, R.pool_matrix(7, 3, 1), R.pool_matrix(6, 3, 1))),
    ("avgpool size=2 stride=3", lambda S: _pool_map(S, R.pool_matrix(7, 2, 3), R.pool_matrix(6, 2, 3))),
    ("lap size=3", lambda S: _pool_map(S, R.lap_matrix(7, 3, "same"), R.lap_matrix(6, 3, "same"))),
    ("lap size=2", lambda S: _pool_map(S, R.lap_matrix(7, 2, "same"), R.lap_matrix(6, 2, "same"))),
    ("lap size=4 padding=circular", lambda S: _pool_map(S, R.lap_matrix(7, 4, "circular"), R.lap_matrix(6, 4, "circular"))),
    ("gap", lambda S: S.mean()),
    ("flatten", lambda S: np.einsum("ijij->ij", S).mean()),
]


@pytest.mark.parametrize("text, ref", FIXED, ids=[t for t, _ in FIXED])
def test_fixed_windows_are_exactly_the_kernel_map(text, ref):
    shape = (7, 6, 3)
    k = ntkc.compile(f"input height=7 width=6 channels=3\n{text}\n" + ("" if text in ("gap", "flatten") else "gap\n")
                     + "dense\n")
    mod = k.network(2, dtype=torch.float64).layers[0]
    assert isinstance(mod, FixedWindow)
    xa, xb = rng.standard_normal((2, shape[2], shape[0], shape[1]))
    ya, yb = (mod(torch.as_tensor(x[None]))[0].numpy() for x in (xa, xb))
    got = np.einsum("cij,ckl->ijkl", ya, yb) / ya.shape[0]
    want = ref(_input_kernel(xa, xb))
    got = got.reshape(np.shape(want)) if np.ndim(want) == 0 else got
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


# -- activations: phi, the function itself, against the rule's kernels -------------------------------


ACTIVATIONS = [("relu", {}), ("erf", {}), ("identity", {}), ("gelu", {}), ("abrelu", {"a": -0.4, "b": 1.3}),
               ("leaky_relu", {"slope": 0.2}), ("sine", {"freq": 0.8})]


def _gauss_2d(v1, v2, u, n=96):
    """Nodes (x, y) and weights of a centred Gaussian with covariance [[v1, u], [u, v2]]."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    rho = u / math.sqrt(v1 * v2)
    x = math.sqrt(v1) * z1
    y = math.sqrt(v2) * (rho * z1 + math.sqrt(1 - rho ** 2) * z2)
    return x.ravel(), y.ravel(), np.outer(w, w).ravel()


@pytest.mark.parametrize("name, params", ACTIVATIONS, ids=[a for a, _ in ACTIVATIONS])
def test_every_activation_states_a_phi_whose_gaussian_moments_are_its_kernels(name, params):
    """E[phi(X) phi(Y)] and E[phi'(X) phi'(Y)] by 2-D Gauss-Hermite quadrature (phi' by autograd)
    equal the rule's NNGP map and derivative factor: phi and the kernels are one function."""
    load_rules(SINE)
    rule = get_rule(name)
    p = Params({**{q.name: q.default for q in rule.params}, **params})
    ops = TorchOps()
    kinked = name in ("relu", "abrelu", "leaky_relu")
    for v1, v2, rho in ((1.0, 1.0, 0.3), (0.5, 2.0, -0.6), (1.5, 0.7, 0.9)):
        u = rho * math.sqrt(v1 * v2)
        x, y, w = _gauss_2d(v1, v2, u)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.tensor(y, requires_grad=True)
        fx, fy = rule.phi(p, ops, tx), rule.phi(p, ops, ty)
        dx, = torch.autograd.grad(fx.sum(), tx)
        dy, = torch.autograd.grad(fy.sum(), ty)
        nngp = float((w * (fx * fy).detach().numpy()).sum())
        factor = float((w * (dx * dy).numpy()).sum())
        t = lambda a: torch.tensor([a], dtype=torch.float64)  # noqa: E731
        want_n, want_f = (v.item() for v in rule.maps(p, ops, t(u), t(v1), t(v2)))
        # quadrature is exact to ~1e-12 for smooth phi; the kink of relu costs it a few digits, and
        # its step derivative more (a 96-point rule resolves the jump to ~1/96)
        tol_n, tol_f = (2e-3, 3e-2) if kinked else (1e-9, 1e-9)
        assert abs(nngp - want_n) <= tol_n * max(1.0, abs(want_n)), (name, v1, v2, rho, nngp, want_n)
        assert abs(factor - want_f) <= tol_f * max(1.0, abs(want_f)), (name, v1, v2, rho, factor, want_f)


def test_an_activation_without_phi_is_refused_at_its_line():
    @register
    class Cube(ActivationRule):
        """cube-ish: kernels only (no phi)."""

        name = "kernel_only"

        def nngp(self, p, ops, u, v1, v2):
            return u

        def dfactor(self, p, ops, u, v1, v2):
            return u * 0.0 + 1.0

    k = ntkc.compile("input height=4 width=4 channels=1\nconv\nkernel_only\ngap\ndense\n")
    k(np.ones((1, 1, 4, 4)))  # the kernels work without it
    with pytest.raises(ArchError) as err:
        k.network(8)
    text = str(err.value)
    assert ":3:1:" in text and "phi" in text and "def phi(self, p, ops, x)" in text


def test_phi_outside_the_ops_vocabulary_is_refused_at_registration():
    from ntkc.errors import RuleError

    with pytest.raises(RuleError, match="phi"):
        @register
        class Bad(ActivationRule):
            name = "bad_phi"

            def nngp(self, p, ops, u, v1, v2):
                return u

            def dfactor(self, p, ops, u, v1, v2):
                return u * 0.0 + 1.0

            def phi(self, p, ops, x):
                return ops.softplus(x)


def test_networks_that_cannot_be_finite_are_refused_with_a_hint():
    with pytest.raises(ArchError, match="features per image") as err:
        ntkc.compile("input height=4 width=4 channels=1\nconv\nrelu\nflatten\n").network(4)
    assert "dense" in str(err.value)
    with pytest.raises(ArchError, match="weights of its own"):
        ntkc.compile("input height=4 width=4 channels=1\ngap\n").network(4)


def test_a_nonlinearity_on_a_non_gaussian_input_warns():
    with pytest.warns(LimitWarning, match=":4:1:"):
        ntkc.compile("input height=4 width=4 channels=1\nconv\nrelu\nrelu\ngap\ndense\n").network(4)
    with pytest.warns(LimitWarning, match="since the input"):
        ntkc.compile("input height=4 width=4 channels=1\nerf\nconv\ngap\ndense\n").network(4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # linear layers keep the input Gaussian: no warning
        ntkc.compile("input height=4 width=4 channels=1\nconv\nidentity\nlap\nabrelu a=2 b=2\nrelu\ngap\ndense\n"
                     "erf\ndense\n").network(4)


# -- plumbing -----------------------------------------------------------------------------------------


def test_shapes_seeds_dtypes_and_frozen_layers():
    k = ntkc.compile("examples/digits_gap.arch")
    net = k.network(16, seed=5, out_dim=3)
    x = torch.randn(4, 1, 8, 8)
    assert net(x).shape == (4, 3) and net(x).dtype == torch.float32
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"layers.0.weight", "layers.7.weight"}  # the frozen conv and dense of the file
    assert set(net.trainable()) == {n for n, _ in net.named_parameters()} - frozen
    same = k.network(16, seed=5, out_dim=3)
    torch.testing.assert_close(net(x), same(x), rtol=0, atol=0)
    wide = k.network(16, seed=5, out_dim=7, dtype=torch.float64)  # hidden layers independent of out_dim
    torch.testing.assert_close(wide.layers[2].weight.float(), net.layers[2].weight)
    torch.testing.assert_close(wide(x.double())[:, :3].float(), net(x), rtol=1e-4, atol=1e-5)
    other = k.network(16, seed=6, out_dim=3)
    assert not torch.allclose(other(x), net(x))
    with pytest.raises(InputError, match="NCHW"):
        net(torch.randn(4, 8, 8, 1))
    with pytest.raises(InputError, match="width"):
        k.network(0)


def test_device_plumbing_on_cpu_and_a_clear_device_mismatch():
    k = ntkc.compile("examples/digits_v.arch")
    net = k.network(8, device="cpu")
    assert net.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in net.parameters())
    e = k.empirical(torch.randn(3, 1, 8, 8), width=8, n_nets=2, device="cpu")
    assert isinstance(e.nngp, torch.Tensor) and e.nngp.device.type == "cpu"
    if torch.cuda.is_available():
        g = k.network(8, device="cuda")
        with pytest.raises(InputError, match="on cpu but the network is on cuda"):
            g(torch.randn(3, 1, 8, 8))
        torch.testing.assert_close(g(torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)).cuda()).cpu(),
                                   net(torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))))


def test_flip_makes_the_mirror_averaged_network():
    k = ntkc.compile("input height=5 width=5 channels=1\nflip\nconv\nrelu\ngap\ndense\n")
    plain = ntkc.compile("input height=5 width=5 channels=1\nconv\nrelu\ngap\ndense\n")
    net, f = k.network(6, seed=3, dtype=torch.float64), plain.network(6, seed=3, dtype=torch.float64)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(net(x), (f(x) + f(x.flip(-1))) / 2)
    torch.testing.assert_close(net(x), net(x.flip(-1)))  # mirror invariant


def test_every_builtin_layer_and_the_user_rule_build():
    load_rules(SINE)
    k = ntkc.compile(f"""use "{SINE}"
input height=9 width=8 channels=2
flip
conv size=3 stride=1 padding=same w_std=1.2 b_std=0.1
leaky_relu slope=0.2
conv size=3 dilation=2 padding=circular
gelu
avgpool size=2
conv size=3 padding=valid trainable=false
sine freq=0.9
lap size=3
conv size=1
abrelu a=0.1 b=0.9
gap
dense w_std=1.1 b_std=0.2
erf
dense trainable=false
identity
""")
    net = k.network(8, seed=0, out_dim=2)
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds.count("Activation") == 6 and kinds.count("FixedWindow") == 3
    out = net(torch.randn(3, 2, 9, 8))
    assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_residual_blocks_add_the_scaled_branch_to_the_shortcut():
    k = ntkc.compile("examples/digits_wrn_d10.arch")
    net = k.network(6, seed=2, out_dim=3, dtype=torch.float64)
    blocks = [m for m in net.layers if isinstance(m, Residual)]
    assert len(blocks) == 4 and all(b.scale == 1.0 for b in blocks)
    x = torch.randn(5, 6, 8, 8, dtype=torch.float64)
    y = x
    for mod in blocks[0].branch:
        y = mod(y)
    torch.testing.assert_close(blocks[0](x), x + y)
    torch.testing.assert_close(net(torch.randn(2, 1, 8, 8, dtype=torch.float64), unit=2).shape, (2, 1))
    # a block after the output layer: the outputs mix again, and unit= still picks one of them
    k2 = ntkc.compile("input height=4 width=4 channels=1\nconv\ngap\ndense\nresidual scale=0.5 {\n  dense\n}\n")
    net2 = k2.network(5, seed=1, out_dim=3, dtype=torch.float64)
    z = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    assert net2(z).shape == (4, 3)
    torch.testing.assert_close(net2(z, unit=1)[:, 0], net2(z)[:, 1])
