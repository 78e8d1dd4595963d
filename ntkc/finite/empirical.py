"""Monte Carlo kernels of finite networks: what `k.empirical(x1, x2, width=, n_nets=)` returns.

Net i is `k.network(width, seed=seed + i, out_dim=out_dim)`. Per net:

- the NNGP sample is the mean over its output units j of f_j(x1) f_j(x2)^T. The units share the
  hidden layers, and given those they are independent draws of the last weighted layer, so with
  out_dim = width (the default) the sample is the hidden layers' own kernel up to O(1/sqrt(width))
  and its spread over nets shrinks like 1/sqrt(width), as the NTK's does;
- the NTK sample is the empirical tangent kernel of output unit 0,
  sum over trainable parameters theta of df_0(x1)/dtheta df_0(x2)/dtheta, with the Jacobians by
  `torch.func.jacrev` (frozen layers are not differentiated).

The estimates are the means over nets, with standard errors std / sqrt(n_nets) (ddof = 1). At
finite width the mean differs from the infinite-width kernel by O(1/width) and a single net by
O(1/sqrt(width)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, jacrev

from ..engine.inputs import check_images, resolve_device
from ..errors import InputError
from .network import FiniteNetwork

#: bytes of Jacobian rows held at once (images x parameters); more images are done in chunks
JACOBIAN_BYTES = 1 << 30


@dataclass(frozen=True, eq=False)
class EmpiricalKernels:
    """Monte Carlo NNGP and NTK of finite networks, each [n1, n2]: the means over `n_nets` nets
    of width `width` and their standard errors (`*_se`); `*_samples` [n_nets, n1, n2] hold every
    net's sample. NumPy arrays for NumPy inputs, else tensors."""

    nngp: object
    ntk: object
    nngp_se: object
    ntk_se: object
    nngp_samples: object
    ntk_samples: object
    width: int
    n_nets: int
    out_dim: int

    def __iter__(self):
        return iter((self.nngp, self.ntk))


def _jacobian(net: FiniteNetwork, params: dict, fixed: dict, x: torch.Tensor) -> torch.Tensor:
    """[n, P]: d f_0(x_i) / d theta over the trainable parameters, concatenated."""
    def f0(p):
        return functional_call(net, {**fixed, **p}, (x,), {"unit": 0})[:, 0]

    jac = jacrev(f0)(params)
    return torch.cat([j.reshape(len(x), -1) for j in jac.values()], dim=1)


def _ntk(net: FiniteNetwork, x1: torch.Tensor, x2: torch.Tensor | None) -> torch.Tensor:
    params = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    fixed = {k: v.detach() for k, v in net.named_parameters() if not v.requires_grad}
    fixed.update(dict(net.named_buffers()))
    for name in (f"layers.{net.last_weighted}.weight", f"layers.{net.last_weighted}.bias"):
        if name in params:  # f_0 reads row 0 of the output layer only: no Jacobian of zeros for the rest
            params[name] = params[name][:1]
    n1, n2 = len(x1), len(x1 if x2 is None else x2)
    if not params:
        return torch.zeros(n1, n2, dtype=x1.dtype, device=x1.device)
    size = sum(p.numel() for p in params.values()) * x1.element_size()
    chunk = max(1, JACOBIAN_BYTES // max(size, 1))

    def jac(x):
        return _jacobian(net, params, fixed, x)

    if x2 is None and n1 <= chunk:
        j = jac(x1)
        return j @ j.T
    other = x1 if x2 is None else x2
    out = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
    for a in range(0, n1, chunk):
        ja = jac(x1[a: a + chunk])
        for b in range(0, n2, chunk):
            jb = ja if (x2 is None and a == b) else jac(other[b: b + chunk])
            out[a: a + chunk, b: b + chunk] = ja @ jb.T
    return out


def empirical_kernels(arch, x1, x2=None, width: int = 256, n_nets: int = 8, seed: int = 0,
                      out_dim: int | None = None, dtype=torch.float32, device=None) -> EmpiricalKernels:
    """Monte Carlo NNGP and empirical NTK of `n_nets` finite networks of `arch` (module docstring)."""
    from ..util.precision import torch_dtype

    if not (isinstance(n_nets, int) and n_nets >= 1):
        raise InputError(f"n_nets must be a positive integer, got {n_nets!r}")
    dtype = torch_dtype(dtype)
    as_numpy = isinstance(x1, np.ndarray)
    device = resolve_device(device) or (x1.device if isinstance(x1, torch.Tensor) else torch.device("cpu"))
    s = arch.input
    want = (s.channels, s.height, s.width)
    t1 = check_images(x1, "x1", want, dtype, device, arch.filename)
    t2 = None if x2 is None else check_images(x2, "x2", want, dtype, device, arch.filename)
    out_dim = width if out_dim is None else out_dim
    nngps, ntks = [], []
    for i in range(n_nets):
        net = FiniteNetwork(arch, width, seed + i, out_dim, dtype, device)
        with torch.no_grad():
            f1 = net(t1)
            f2 = f1 if t2 is None else net(t2)
        nngps.append(f1 @ f2.T / f1.shape[1])
        ntks.append(_ntk(net, t1, t2))
    nngp_s, ntk_s = torch.stack(nngps), torch.stack(ntks)

    def se(s):
        if n_nets == 1:
            return torch.full_like(s[0], float("nan"))
        return s.std(0, unbiased=True) / n_nets ** 0.5

    parts = (nngp_s.mean(0), ntk_s.mean(0), se(nngp_s), se(ntk_s), nngp_s, ntk_s)
    if as_numpy:
        parts = tuple(p.cpu().numpy() for p in parts)
    return EmpiricalKernels(*parts, width=width, n_nets=n_nets, out_dim=out_dim)
