"""What a layer rule is: typed parameters, a shape rule, a demand rule and its math.

Two kinds of rule cover the CNTK recursion:

- `WindowRule`: a linear map on the covariance, `S'[p,q] = weight * sum over a window of
  S[s p + e + o, s q + e' + o] + bias`, and on the NTK `T' = weight * (same window of T)
  (+ S' when trainable)`. Conv, pooling, readouts and dense layers are all windows; the window,
  stated per axis as an `AxisWindow`, is at once the rule's shape rule (`n_out`), its demand rule
  (output displacement D reads input displacements `s D + e - e'`) and its math.
- `ActivationRule`: a pointwise map given by E[phi(X) phi(Y)] (NNGP) and E[phi'(X) phi'(Y)]
  (the derivative factor), stated once, as `maps` or as `nngp` + `dfactor`, in the ops
  vocabulary (`ntkc.rules.ops`), where (X, Y) is centred Gaussian with covariance
  [[v1, u], [u, v2]]. An activation may also state its elementwise function `phi(p, ops, x)`
  in the same vocabulary, which is what a finite network (`k.network(...)`) applies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .axis import AxisWindow

REQUIRED = object()


class LayerError(Exception):
    """Raised by a rule for a bad parameter or shape; the compiler adds file:line:col."""

    def __init__(self, message: str, hint: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param


@dataclass(frozen=True)
class Param:
    """A typed layer parameter. `type` is 'int', 'float', 'bool' or 'choice'."""

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    exclusive_minimum: bool = False
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        kind = "|".join(self.choices) if self.type == "choice" else self.type
        default = "required" if self.required else f"default {_fmt(self.default)}"
        return f"{self.name}=<{kind}> ({default})"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Params:
    """A layer's parameter values, read as attributes (`p.size`); hashable."""

    def __init__(self, values: dict[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, *_):
        raise AttributeError("Params are read-only")

    def items(self):
        return self._values.items()

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __eq__(self, other):
        return isinstance(other, Params) and self._values == other._values

    def __hash__(self):
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self):
        return " ".join(f"{k}={_fmt(v)}" for k, v in self._values.items())


@dataclass(frozen=True)
class Shape:
    """The map a layer sees: height x width, channels at the input, `reduced` after a readout."""

    height: int
    width: int
    channels: int | None = None
    reduced: bool = False

    def __str__(self):
        if self.reduced:
            return "scalar"
        c = f"x{self.channels}" if self.channels else ""
        return f"{self.height}x{self.width}{c}"


@dataclass(frozen=True)
class Window:
    """A whole window map: two axes, a scalar weight, a bias variance and the NTK rule."""

    rows: AxisWindow
    cols: AxisWindow
    weight: float
    bias: float = 0.0
    trainable: bool = False
    readout: bool = False

    @property
    def mixes(self) -> bool:
        return self.rows.mixes or self.cols.mixes

    @property
    def identity(self) -> bool:
        return all(a.n_in == a.n_out and a.stride == 1 and a.offset == 0 and a.count == 1
                   and a.terms == ((0, 0),) and not a.wrap for a in (self.rows, self.cols))


class LayerRule:
    """Base of all rules: a name, typed parameters and a docstring with the closed form."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # True when the layer's output is a fresh zero-mean random projection of its input (a conv,
    # a dense layer): uncorrelated with anything before it, so it may end a residual branch.
    fresh_weights: ClassVar[bool] = False

    def check(self, p: Params, shape: Shape) -> None:
        """Raise LayerError if the layer cannot follow a map of this shape."""

    def out_shape(self, p: Params, shape: Shape) -> Shape:
        raise NotImplementedError

    def summary(self) -> str:
        doc = (self.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


class WindowRule(LayerRule):
    """A linear map on the covariance, stated by its `window`.

    `fresh_weights` also says what the layer is in a finite network (`ntkc.finite`): True for a
    layer with its own Gaussian weights (conv, dense), which maps C channels to new ones with
    weights N(0, 1) scaled by sqrt(window.weight / C) and a bias N(0, 1) scaled by
    sqrt(window.bias); its terms must pair each tap with itself (independent weights per tap).
    False (pooling, lap, readouts) is a fixed linear map realised from the window itself: a sum
    over the taps scaled by sqrt(weight) when the terms are every pair of taps, a stacking of the
    taps as channels scaled by sqrt(weight x taps) when they are the diagonal (flatten).
    """

    kind = "window"

    def window(self, p: Params, shape: Shape) -> Window:
        raise NotImplementedError

    def out_shape(self, p: Params, shape: Shape) -> Shape:
        w = self.window(p, shape)
        return Shape(w.rows.n_out, w.cols.n_out, None, shape.reduced or w.readout)


class ActivationRule(LayerRule):
    """A pointwise nonlinearity phi, stated by its two Gaussian expectations.

    A rule states its math once, in one of two ways:

    - `maps(p, ops, u, v1, v2, need_dfactor)` returning `(nngp, dfactor or None)` together
      (the natural form when both share work, as the arc-cosine kernels do), or
    - `nngp(p, ops, u, v1, v2)` and `dfactor(p, ops, u, v1, v2)` separately.

    Whichever is not given is derived from the other; registration checks the one that is.

    `phi(p, ops, x)`, optional, is the function itself, elementwise on a tensor x, in the same
    vocabulary; a finite network (`k.network(...)`, `ntkc.finite`) evaluates it with the torch
    handler, so autograd differentiates it. Without it the kernels work and `network()` refuses.
    """

    kind = "activation"

    def maps(self, p: Params, ops, u, v1, v2, need_dfactor: bool = True):
        """(E[phi(X) phi(Y)], E[phi'(X) phi'(Y)] or None) for (X, Y) ~ N(0, [[v1, u], [u, v2]])."""
        if not states_pointwise(self):
            raise NotImplementedError(f"rule `{self.name}` states neither maps() nor nngp() and dfactor()")
        return self.nngp(p, ops, u, v1, v2), (self.dfactor(p, ops, u, v1, v2) if need_dfactor else None)

    def nngp(self, p: Params, ops, u, v1, v2):
        """E[phi(X) phi(Y)]; derived from `maps` unless a rule states it."""
        return self.maps(p, ops, u, v1, v2, False)[0]

    def dfactor(self, p: Params, ops, u, v1, v2):
        """E[phi'(X) phi'(Y)]; derived from `maps` unless a rule states it."""
        return self.maps(p, ops, u, v1, v2, True)[1]

    def phi(self, p: Params, ops, x):
        """phi(x), elementwise; rules that a finite network can use state it."""
        raise NotImplementedError(f"rule `{self.name}` states no elementwise function phi(p, ops, x)")

    def out_shape(self, p: Params, shape: Shape) -> Shape:
        return Shape(shape.height, shape.width, None, shape.reduced)


def states(rule: ActivationRule, method: str) -> bool:
    """True when `rule`'s class (or a base below ActivationRule) defines `method` itself."""
    return getattr(type(rule), method) is not getattr(ActivationRule, method)


def states_pointwise(rule: ActivationRule) -> bool:
    """True when the rule states `nngp` and `dfactor` (both) rather than `maps`."""
    return states(rule, "nngp") and states(rule, "dfactor")


class AugmentRule(LayerRule):
    """A data augmentation of the kernel, written as a statement right after `input`.

    The kernel becomes the average of K(x, g x') over a finite group of image transforms g
    (the identity included). `transforms(p)` lists the transforms other than the identity, each a
    function of an NCHW tensor; `check_network(p, network)` raises LayerError where the averaged
    kernel is not what the statement promises (for instance not symmetric). Layers are unchanged:
    the engine wraps the backend (`ntkc.engine.augment`).
    """

    kind = "augment"

    def transforms(self, p: Params) -> tuple:
        raise NotImplementedError

    def check_network(self, p: Params, network) -> None:
        """Raise LayerError if the augmentation does not make sense for this network."""

    def out_shape(self, p: Params, shape: Shape) -> Shape:
        return shape


class InputRule(LayerRule):
    """input: the images, `height` x `width` with `channels` channels (NCHW arrays)."""

    name = "input"
    kind = "input"
    params = (
        Param("height", "int", minimum=1, doc="image height in pixels"),
        Param("width", "int", minimum=1, doc="image width in pixels"),
        Param("channels", "int", minimum=1, doc="number of channels"),
    )

    def out_shape(self, p: Params, shape: Shape | None = None) -> Shape:
        return Shape(p.height, p.width, p.channels)


class ResidualRule(LayerRule):
    """The two ends of a `residual scale=c { f }` block, y = x + c f(x): not layers a user names,
    but statements of the language that the network builder places around the branch f.

    `kind` "fork" keeps (S, T) of x; "join" adds them back: S_y = S_x + c^2 S_f and
    T_y = T_x + c^2 T_f, exact when f ends in fresh zero-mean weights (then x and f(x) are
    uncorrelated in the infinite-width limit, and so are their gradients)."""

    name = "residual"
    params = (Param("scale", "float", 1.0, minimum=0, doc="branch scale c: y = x + c f(x)"),)

    def out_shape(self, p: Params, shape: Shape) -> Shape:
        return shape


class ResidualFork(ResidualRule):
    """residual: y = x + scale * f(x) over the block's statements."""

    kind = "fork"


class ResidualJoin(ResidualRule):
    """the end of a residual block: y = x + scale * f(x)."""

    kind = "join"


# Helpers for rule writers: the per-axis windows of the common layer kinds.

def require_map(name: str, shape: Shape) -> None:
    if shape.reduced:
        raise LayerError(
            f"`{name}` needs a spatial map, but the map was already reduced to a scalar by a readout",
            hint="put spatial layers before `gap` / `flatten`; after a readout use `dense`",
        )


def conv_axis(n: int, size: int, stride: int, padding: str, dilation: int = 1, axis: str = "",
              pairs: bool = False) -> AxisWindow:
    """A conv window along one axis, with TF/JAX 'SAME' padding (pad_lo = total // 2).

    The taps are d * dilation for d in [0, size). `pairs=False` (a conv: independent weights per
    tap) sums the same tap on both sides, terms (e, e); `pairs=True` (a fixed average over the
    window, as in pooling) sums every pair of taps, terms (e, f). Taps that can never land
    inside the map are left out (they read zeros), so the window's size beyond the map costs
    nothing.
    """
    span = dilation * (size - 1) + 1
    if padding == "valid":
        if span > n:
            raise LayerError(
                f"a `valid` window of {span} does not fit the map {axis} {n}: the map would shrink below 1x1",
                hint="use padding=same, a smaller size, or fewer shrinking layers before this one",
                param="size",
            )
        n_out, lo = (n - span) // stride + 1, 0
    else:
        n_out = -(-n // stride)
        lo = max((n_out - 1) * stride + span - n, 0) // 2
    window = AxisWindow(n, n_out, stride, -lo, wrap=(padding == "circular"),
                        taps=range(0, dilation * size, dilation), pairs=pairs)
    return _landing(window)


def _landing(window: AxisWindow) -> AxisWindow:
    """The window with only the taps that can land inside the map: the others read zeros, so
    a window far wider than the map costs what one as wide as the map does."""
    taps = window.effective_taps()
    if not isinstance(taps, range) or len(taps) == len(window.taps):
        return window
    if not len(taps):  # every tap reads padding: keep one, the layer still adds its zeros
        taps = window.taps[:1]
    return AxisWindow(window.n_in, window.n_out, window.stride, window.offset, wrap=window.wrap,
                      taps=taps, pairs=window.pairs)


def pool_axis(n: int, size: int, stride: int, axis: str = "") -> AxisWindow:
    """An average-pooling window along one axis: windows inside the map only."""
    if size > n:
        raise LayerError(
            f"a pooling window of {size} does not fit the map {axis} {n}: the map would shrink below 1x1",
            hint="use a smaller pooling size, or remove a shrinking layer before this one",
            param="size",
        )
    return AxisWindow(n, (n - size) // stride + 1, stride, 0, taps=range(size), pairs=True)

