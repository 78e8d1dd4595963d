"""The finite network of a checked `Network`: a `torch.nn.Module` in the NTK parameterisation
whose infinite-width NNGP and NTK are exactly the kernels ntkc compiles for it.

Every layer is built from what its rule states, as the kernels are, so a user's rule works here
too (docs/finite.md):

- a window with weights of its own (`fresh_weights`: conv, dense) draws weights W ~ N(0, 1) of shape
  [out, C, k_rows, k_cols] and a bias beta ~ N(0, 1) [out], and computes
  sqrt(weight / C) conv(x, W) + sqrt(bias) beta, where `weight` and `bias` are its window's
  (w_std^2 / k^2 and b_std^2 for conv: the familiar w_std / sqrt(C k^2)); `trainable=false`
  layers get requires_grad=False. Positions, strides, dilations and padding (zeros, or wrapping
  for circular) come from the window's per-axis offsets and taps; `out` is `width`, and
  `out_dim` at the last weighted layer.
- a fixed window (pooling, lap, gap, flatten) whose terms are every pair of taps is the sum over
  the taps times sqrt(weight) (an average for avgpool, lap and gap); one whose terms pair each
  tap with itself stacks the taps as channels, times sqrt(weight x taps) (flatten: a reshape).
- an activation applies its rule's `phi(p, ops, x)` with the torch ops handler.
- after a readout a tensor is [N, D, 1, 1], so a dense layer is a 1 x 1 convolution.
- augmentations (`flip`): the network is f_bar(x) = mean over the transforms g (identity
  included) of f(g x). Where every layer commutes with the mirror, which `flip` checks, the
  kernels of f_bar are exactly the flip-augmented kernels (ntkc/rules/builtin/flip.py).

Weights are drawn on the CPU in float64 from `torch.Generator().manual_seed(seed)`, layer by
layer in order, then cast and moved: one seed gives the same network on every device and in
every precision, and the hidden layers do not depend on `out_dim`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.torch.ops import TorchOps
from ..engine.inputs import resolve_device
from ..errors import ArchError, InputError
from ..lang.network import Layer, Network
from ..rules.base import AxisWindow, states

_OPS = TorchOps()


class _Refusal(Exception):
    """A layer this module cannot realise; becomes an ArchError at the layer's line."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


# ----------------------------------------------------------------------------------------------
# one axis of a window, as padding + a strided, dilated stencil


@dataclass(frozen=True)
class AxisGeometry:
    """One axis of a window as a stencil: k taps `dilation` apart at stride `stride`, read from
    the input padded by `lo` before and `hi` after (negative: cropped), with zeros or, when
    `wrap`, the map repeated; `kind` is 'diagonal' (each tap with itself), 'pairs' (every pair of
    taps) or 'single' (one tap, either)."""

    kind: str
    taps: int
    dilation: int
    stride: int
    lo: int
    hi: int
    wrap: bool
    n_in: int
    n_out: int


def axis_geometry(ax: AxisWindow) -> AxisGeometry:
    terms = list(ax.terms)
    firsts = [e for e, _ in terms]
    if all(e == f for e, f in terms) and len(set(firsts)) == len(firsts):
        taps = sorted(firsts)
        kind = "single" if len(taps) == 1 else "diagonal"
    else:
        taps = sorted(set(firsts))
        if len(terms) != len(taps) ** 2 or set(terms) != {(e, f) for e in taps for f in taps}:
            raise _Refusal("its window terms are neither each tap with itself nor every pair of taps, "
                           "which is what a finite layer can realise",
                           "write the window with terms ((e, e), ...) (independent taps) or every (e, f) pair")
        kind = "pairs"
    steps = {b - a for a, b in zip(taps, taps[1:])}
    if len(steps) > 1:
        raise _Refusal(f"its taps {taps} are not evenly spaced, so they are not a dilated stencil",
                       "use taps d * dilation for d in range(size)")
    dilation = steps.pop() if steps else 1
    k = len(taps)
    lo = -(ax.offset + taps[0])  # padded index 0 is input index offset + first tap
    length = ax.stride * (ax.n_out - 1) + dilation * (k - 1) + 1
    return AxisGeometry(kind, k, dilation, ax.stride, lo, length - lo - ax.n_in, ax.wrap, ax.n_in, ax.n_out)


def _pad(x: torch.Tensor, rows: AxisGeometry, cols: AxisGeometry) -> torch.Tensor:
    """x [N, C, H, W] padded (or cropped) as both axes ask: zeros, or wrapped indices."""
    for dim, g in ((2, rows), (3, cols)):
        if g.lo == 0 and g.hi == 0:
            continue
        if g.wrap:
            idx = (torch.arange(-g.lo, g.n_in + g.hi, device=x.device) % g.n_in)
            x = x.index_select(dim, idx)
        else:
            pads = (0, 0, g.lo, g.hi) if dim == 2 else (g.lo, g.hi, 0, 0)
            x = F.pad(x, pads)
    return x


def _kind(rows: AxisGeometry, cols: AxisGeometry) -> str:
    kinds = {rows.kind, cols.kind} - {"single"}
    if len(kinds) > 1:
        raise _Refusal("one axis of its window pairs each tap with itself and the other every pair of taps",
                       "give both axes the same kind of terms")
    return kinds.pop() if kinds else "single"


# ----------------------------------------------------------------------------------------------
# the layers


class WeightedWindow(nn.Module):
    """A conv or dense layer: sqrt(weight / C) conv(pad(x), W) + sqrt(bias) beta."""

    def __init__(self, layer: Layer, window, rows: AxisGeometry, cols: AxisGeometry, c_in: int, c_out: int,
                 gen: torch.Generator):
        super().__init__()
        if _kind(rows, cols) == "pairs":
            raise _Refusal("a weighted layer's window must pair each tap with itself (independent weights "
                           "per tap), but it sums every pair of taps",
                           "set `fresh_weights = False` for a fixed map, or give the window terms ((e, e), ...)")
        self.layer, self.rows, self.cols = layer, rows, cols
        self.scale = math.sqrt(window.weight / c_in)
        self.bias_scale = math.sqrt(window.bias)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, rows.taps, cols.taps, generator=gen,
                                               dtype=torch.float64), requires_grad=window.trainable)
        if window.bias > 0:
            self.bias = nn.Parameter(torch.randn(c_out, generator=gen, dtype=torch.float64),
                                     requires_grad=window.trainable)
        else:
            self.register_parameter("bias", None)

    def forward(self, x, unit: int | None = None):
        """y [N, out, H', W'], or its channel `unit` alone [N, 1, H', W']."""
        r, c = self.rows, self.cols
        w, b = self.weight, self.bias
        if unit is not None:
            w, b = w[unit: unit + 1], (None if b is None else b[unit: unit + 1])
        # the scales multiply the (small) parameters, not the (large) output: the same function and
        # the same gradients, d y / d W = scale * x, which is what makes this the NTK parameterisation
        weight = self.scale * w
        bias = None if b is None else self.bias_scale * b
        if r.lo == r.hi >= 0 and c.lo == c.hi >= 0 and not (r.wrap or c.wrap):  # conv2d pads it itself
            return F.conv2d(x, weight, bias, stride=(r.stride, c.stride), padding=(r.lo, c.lo),
                            dilation=(r.dilation, c.dilation))
        return F.conv2d(_pad(x, r, c), weight, bias, stride=(r.stride, c.stride), dilation=(r.dilation, c.dilation))

    def extra_repr(self) -> str:
        return f"{self.layer.describe()} (line {self.layer.span.line}), scale={self.scale:.4g}"


class FixedWindow(nn.Module):
    """Pooling, lap, gap (a scaled sum over every pair's taps) or flatten (taps stacked as channels)."""

    def __init__(self, layer: Layer, window, rows: AxisGeometry, cols: AxisGeometry, c_in: int):
        super().__init__()
        if window.trainable or window.bias > 0:
            raise _Refusal("a window without weights of its own (`fresh_weights = False`) cannot have a bias or "
                           "an NTK term of its own in a finite network",
                           "set `fresh_weights = True` on the rule, or give its window no bias and trainable=False")
        if window.weight < 0:
            raise _Refusal(f"its window weight {window.weight} is negative", "a window weight is a variance factor")
        self.layer, self.rows, self.cols = layer, rows, cols
        self.kind = _kind(rows, cols)
        taps = rows.taps * cols.taps
        self.scale = math.sqrt(window.weight * (taps if self.kind == "diagonal" else 1.0))
        self.register_buffer("ones", torch.ones(c_in, 1, rows.taps, cols.taps, dtype=torch.float64),
                             persistent=False)
        self.c_out = c_in * taps if self.kind == "diagonal" else c_in
        self.whole = all(g.n_out == 1 and g.taps == g.n_in and g.dilation == 1 and g.lo == 0 and g.hi == 0
                         for g in (rows, cols))

    def forward(self, x):
        if self.whole:  # one window over the whole map (gap, flatten): no stencil needed
            y = x.reshape(x.shape[0], -1, 1, 1) if self.kind == "diagonal" else x.sum(dim=(2, 3), keepdim=True)
            return self.scale * y
        xp = _pad(x, self.rows, self.cols)
        stride, dilation = (self.rows.stride, self.cols.stride), (self.rows.dilation, self.cols.dilation)
        if self.kind == "diagonal":
            cols = F.unfold(xp, (self.rows.taps, self.cols.taps), dilation=dilation, stride=stride)
            y = cols.reshape(x.shape[0], -1, self.rows.n_out, self.cols.n_out)
        else:
            y = F.conv2d(xp, self.ones, stride=stride, dilation=dilation, groups=x.shape[1])
        return self.scale * y

    def extra_repr(self) -> str:
        return f"{self.layer.describe()} (line {self.layer.span.line}), {self.kind}, scale={self.scale:.4g}"


class Activation(nn.Module):
    """phi(x) of an activation rule, evaluated by the torch ops handler (so autograd works)."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer.rule.phi(self.layer.params, _OPS, x)

    def extra_repr(self) -> str:
        return f"{self.layer.describe()} (line {self.layer.span.line})"


class Residual(nn.Module):
    """A residual block, y = x + scale * f(x), f its branch's layers."""

    def __init__(self, fork: Layer, branch: list):
        super().__init__()
        self.fork, self.scale = fork, fork.params.scale
        self.branch = nn.ModuleList(branch)

    def forward(self, x):
        y = x
        for mod in self.branch:
            y = mod(y)
        return x + self.scale * y

    def extra_repr(self) -> str:
        return f"residual scale={self.scale:g} (line {self.fork.span.line})"


@dataclass(frozen=True)
class _Block:
    """A residual block of the flat layer list: its fork and the items of its branch."""

    fork: Layer
    branch: list


def _blocks(layers) -> list:
    """The flat layer list (residual blocks as fork ... join entries) as a tree of items."""
    stack: list = [[]]
    forks: list = []
    for lay in layers:
        if lay.rule.kind == "fork":
            forks.append(lay)
            stack.append([])
        elif lay.rule.kind == "join":
            branch = stack.pop()
            stack[-1].append(_Block(forks.pop(), branch))
        else:
            stack[-1].append(lay)
    return stack[0]


def _weighted(item) -> bool:
    return isinstance(item, Layer) and item.rule.kind == "window" and item.rule.fresh_weights


# ----------------------------------------------------------------------------------------------
# the network


def _refuse(layer: Layer, message: str, hint: str):
    return ArchError(f"`{layer.describe()}` has no finite network: {message}", layer.span, hint)


class FiniteNetwork(nn.Module):
    """f(x): NCHW images [N, C, H, W] -> [N, out_dim], the finite network of a `.arch` file in the
    NTK parameterisation (see the module docstring). Build it with `k.network(width, seed)`.

    `arch` is the checked Network; `width`, `out_dim` and `seed` are as built; `transforms` the
    augmentation's image transforms (identity first) that the output averages over.
    """

    def __init__(self, arch: Network, width: int, seed: int = 0, out_dim: int = 1,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        if not (isinstance(width, int) and width >= 1):
            raise InputError(f"width must be a positive integer, got {width!r}")
        if not (isinstance(out_dim, int) and out_dim >= 1):
            raise InputError(f"out_dim must be a positive integer, got {out_dim!r}")
        self.arch, self.width, self.out_dim, self.seed = arch, width, out_dim, seed
        gen = torch.Generator().manual_seed(int(seed))
        items = _blocks(arch.layers)
        if not any(_weighted(it) for it in items):
            raise ArchError("a finite network needs a layer with weights of its own (conv or dense) to produce "
                            "its outputs, and this architecture has none", arch.input_span,
                            "add a conv before the readout or a dense after it")
        modules, c = self._build(items, arch.input.channels, out_dim, gen)
        _warn_non_gaussian(items, modules, False, "the input")
        if c != out_dim:
            last = arch.layers[-1]
            raise ArchError(f"the finite network would end with {c} features per image, not out_dim={out_dim} "
                            "outputs: a layer after the last conv/dense stacks positions as features",
                            last.span, "end with a `dense` layer after `flatten`")
        self.layers = nn.ModuleList(modules)
        self.last_weighted = max(i for i, it in enumerate(items) if _weighted(it))
        # one output unit alone is computable when only channel-wise layers follow the output layer
        self._unit_ok = not any(isinstance(m, Residual) for m in modules[self.last_weighted:])
        self.transforms = _group(arch)
        self.to(dtype=dtype, device=resolve_device(device))

    def _build(self, items: list, c: int, c_last: int, gen) -> tuple[list, int]:
        """Modules of `items` (layers and residual blocks) reading c channels; the last layer with
        weights at this level writes c_last channels (out_dim, or a block's own input channels)."""
        last = max((i for i, it in enumerate(items) if _weighted(it)), default=None)
        modules = []
        for i, it in enumerate(items):
            if isinstance(it, _Block):
                branch, c_branch = self._build(it.branch, c, c, gen)
                if c_branch != c:  # (the language keeps shapes; the channel count is this module's)
                    raise _refuse(it.fork, f"its branch ends with {c_branch} channels, not the {c} it started from",
                                  "end the branch with a conv or dense layer")
                modules.append(Residual(it.fork, branch))
                continue
            try:
                mod, c = self._layer(it, c, c_last if i == last else self.width, gen)
            except _Refusal as why:
                raise _refuse(it, why.message, why.hint) from None
            modules.append(mod)
        return modules, c

    @staticmethod
    def _layer(lay: Layer, c: int, c_out: int, gen):
        rule = lay.rule
        if rule.kind == "activation":
            if not states(rule, "phi"):
                raise _Refusal(f"rule `{rule.name}` states its kernels but not its function phi",
                               f"add `def phi(self, p, ops, x): return ...` to the `{rule.name}` rule, "
                               "written in the ops vocabulary (docs/rules.md)")
            return Activation(lay), c
        if rule.kind != "window":
            raise _Refusal(f"layers of kind `{rule.kind}` have no finite form", "remove the layer")
        window = rule.window(lay.params, lay.in_shape)
        rows, cols = axis_geometry(window.rows), axis_geometry(window.cols)
        if rule.fresh_weights:
            return WeightedWindow(lay, window, rows, cols, c, c_out, gen), c_out
        mod = FixedWindow(lay, window, rows, cols, c)
        return mod, mod.c_out

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def body(self, x: torch.Tensor, unit: int | None = None) -> torch.Tensor:
        """f(x) without the augmentation average: [N, out_dim] (or [N, 1] for one output `unit`)."""
        if unit is not None and not self._unit_ok:
            return self.body(x)[:, unit: unit + 1]
        for i, mod in enumerate(self.layers):
            x = mod(x, unit) if i == self.last_weighted else mod(x)
        return x.reshape(x.shape[0], -1)

    def forward(self, x: torch.Tensor, unit: int | None = None) -> torch.Tensor:
        """f(x) [N, out_dim]; with `unit`, output unit `unit` alone [N, 1], computed without the other
        rows of the last weighted layer (the layers after it act channel by channel)."""
        self._check(x)
        x = x.to(self.dtype)
        if len(self.transforms) == 1:
            return self.body(x, unit)
        copies = torch.cat([g(x) for g in self.transforms])
        return self.body(copies, unit).reshape(len(self.transforms), x.shape[0], -1).mean(0)

    def _check(self, x) -> None:
        shape = self.arch.input
        want = (shape.channels, shape.height, shape.width)
        if not isinstance(x, torch.Tensor):
            raise InputError(f"a finite network takes a torch tensor [N, {want[0]}, {want[1]}, {want[2]}], "
                             f"got {type(x).__name__}", "torch.as_tensor(x)")
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise InputError(f"a finite network of {self.arch.filename} takes images [N, {want[0]}, {want[1]}, "
                             f"{want[2]}] (NCHW), got shape {tuple(x.shape)}")
        if x.device != self.device:
            raise InputError(f"the images are on {x.device} but the network is on {self.device}",
                             "move one of them: x.to(net.device) or k.network(..., device=x.device)")

    def trainable(self) -> dict[str, nn.Parameter]:
        """The parameters gradient descent trains (frozen layers left out), by name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def extra_repr(self) -> str:
        aug = f", averaged over {len(self.transforms)} transformed copies" if len(self.transforms) > 1 else ""
        return f"{self.arch.filename}, width={self.width}, out_dim={self.out_dim}, seed={self.seed}{aug}"


class LimitWarning(UserWarning):
    """The kernels ntkc computes are not this finite network's infinite-width limit."""


def _linear(mod: "Activation") -> bool:
    x = torch.tensor([-2.1, -0.7, 0.0, 0.4, 1.3], dtype=torch.float64)
    y = mod(x)
    return bool(torch.allclose(y, mod(torch.ones((), dtype=torch.float64)) * x, rtol=1e-12, atol=1e-12))


def _warn_non_gaussian(items: list, modules: list, gaussian: bool, since: str) -> bool:
    """Warn where a nonlinearity's input is not Gaussian even at infinite width; returns whether
    the map after `items` is Gaussian.

    The kernel recursion evaluates an activation as if its input were a centred Gaussian with
    the covariance S, which holds for the outputs of a layer with random weights, for fixed
    linear maps of them, and for a residual block's sum of a Gaussian shortcut and a branch
    ending in fresh weights. It fails for an activation reached from the images, or from another
    nonlinearity, through fixed layers only (`relu, lap, relu`): the finite networks are well
    defined, but the kernels are not their limit there."""
    import warnings

    for it, mod in zip(items, modules):
        if isinstance(mod, Residual):
            _warn_non_gaussian(it.branch, list(mod.branch), gaussian, since)
            continue  # x + c f(x), f ending in fresh weights: as Gaussian as the shortcut x
        if isinstance(mod, WeightedWindow):
            gaussian = True
        elif isinstance(mod, Activation) and not _linear(mod):
            if not gaussian:
                warnings.warn(f"{it.span}: `{it.describe()}` acts on a map that no random-weight layer has mixed "
                              f"since {since}, so its input is not Gaussian even at infinite width: the compiled "
                              "kernels treat it as Gaussian and are not this finite network's limit",
                              LimitWarning, stacklevel=5)
            gaussian, since = False, "the previous nonlinearity"
    return gaussian


def _identity(x):
    return x


def _group(arch: Network) -> tuple:
    """Every composition of one transform (or the identity) per augmentation statement: the
    copies whose mean output is the augmented network; the identity first."""
    choices = [(_identity,) + tuple(a.rule.transforms(a.params)) for a in arch.augment]
    out = []
    for combo in itertools.product(*choices):
        def g(x, combo=combo):
            for t in combo:
                x = t(x)
            return x
        out.append(g)
    return tuple(out) if out else (_identity,)


def network(arch: Network, width: int, seed: int = 0, out_dim: int = 1, dtype=torch.float32,
            device=None) -> FiniteNetwork:
    """The finite network of `arch` (what `CompiledKernel.network` returns)."""
    from ..util.precision import torch_dtype

    return FiniteNetwork(arch, width, seed, out_dim, torch_dtype(dtype), device)
