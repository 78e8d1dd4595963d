"""The records the v2 kernels are rendered from: a covered stage as tiles, layer ops and loops.

"Data then text": `circulant_plan` and `epilogue_plan` turn a stage that `coverage` accepted into
frozen records; `circulant.py` and `epilogue.py` render them. Nothing here writes source.

The circulant packing: for an H x W stage, tile r = (ry, rx) holds
S[(y, x), ((y - ry) mod H, (x - rx) mod W)] for every (y, x), so the H W tiles hold the (H W)^2
entries with no padding. Rows y >= ry of tile ry carry displacement ry and rows y < ry carry
ry - H (the same per column): the demanded planes D of a band [lo, hi] per axis are the tiles
r = D mod n (`AxisTiles.of_band`). GAP needs every tile; a flatten readout needs plane 0, which
is tile (0, 0) exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...plan.lower import Band, Stage
from . import schedule
from .activations import ActivationFn, render_activation
from .coverage import Sink, conv_taps, is_diag_readout, is_scalar_window
from .drafts import _find_run, _signature


@dataclass(frozen=True)
class AxisTiles:
    """The tiles of one axis: r = (start + i) mod n for i < count (the demanded band mod n)."""

    n: int
    start: int
    count: int

    @staticmethod
    def of_band(band: Band) -> "AxisTiles":
        n = band.n
        count = min(n, band.hi - band.lo + 1)
        return AxisTiles(n, band.lo % n if count < n else 0, count)

    @property
    def static(self) -> int | None:
        """The one tile when it is known at compile time."""
        return self.start if self.count == 1 else None


@dataclass(frozen=True)
class ConvOp:
    """A same-size, stride-1, zero-padded window: a box sum over `taps_y` x `taps_x` inside a tile."""

    line: int
    text: str
    taps_y: tuple[int, ...]
    taps_x: tuple[int, ...]
    weight: float
    bias: float
    trainable: bool
    t_in: bool          # T live before the step
    t_out: bool


@dataclass(frozen=True)
class ActOp:
    line: int
    text: str
    fn: str             # the rendered activation function
    ordinal: int        # which activation (its variance maps in the packed rows)
    t_live: bool
    scalar: bool        # on a 1x1 map (after the readout)


@dataclass(frozen=True)
class ReadoutOp:
    """A readout to one number per pair (flatten inside a tile; gap in the epilogue), then w, b."""

    line: int
    text: str
    weight: float
    bias: float
    trainable: bool
    t_in: bool
    t_out: bool


@dataclass(frozen=True)
class ScalarOp:
    """A window on 1x1 maps: S' = w S + b, T' = w T (+ S' when trainable)."""

    line: int
    text: str
    weight: float
    bias: float
    trainable: bool
    t_in: bool
    t_out: bool


@dataclass(frozen=True)
class ForkOp:
    """The start of `residual scale=c { f }`: keep x's S (and T, when live) as shortcut `depth`."""

    line: int
    text: str
    depth: int
    t_live: bool


@dataclass(frozen=True)
class JoinOp:
    """The end of a residual block: S = S_x + c^2 S_f, T = T_x + c^2 T_f (T_x is 0 when T was
    not live at the fork)."""

    line: int
    text: str
    depth: int
    scale2: float
    t_live: bool        # T live at the join
    t_at_fork: bool     # T live at the fork


@dataclass(frozen=True)
class Loop:
    """`reps` repetitions of `body` as one run-time loop; activation k of repetition `rep` reads
    the maps of activation k + rep * acts_per_rep."""

    reps: int
    body: tuple
    acts_per_rep: int
    lines: tuple[int, int]


@dataclass(frozen=True)
class CirculantPlan:
    name: str
    index: int
    height: int
    width: int
    channels: int
    input_line: int
    tiles_y: AxisTiles
    tiles_x: AxisTiles
    ops: tuple                  # ConvOp / ActOp / ReadoutOp / ScalarOp / ForkOp / JoinOp / Loop
    sink: Sink
    t_out: bool

    @property
    def tiles_per_pair(self) -> int:
        return self.tiles_y.count * self.tiles_x.count


@dataclass(frozen=True)
class EpiloguePlan:
    name: str
    index: int
    opener: ReadoutOp
    ops: tuple                  # ScalarOp / ActOp (scalar) / ForkOp / JoinOp
    t_in: bool
    t_out: bool


class Activations:
    """The activation functions a module renders, one per (rule, parameters, need_dfactor)."""

    def __init__(self, plan):
        self.fns: dict[tuple, ActivationFn] = {}
        self.ordinal = {layer: k for k, layer in enumerate(plan.activations)}

    def get(self, step, need_dfactor: bool) -> str:
        layer = step.layer
        key = (layer.rule.name, layer.params, need_dfactor)
        if key not in self.fns:
            name = f"act{len(self.fns)}_{layer.rule.name}" + ("" if need_dfactor else "_nngp")
            doc = (f"{layer.describe()} (first at line {layer.span.line}): NNGP"
                   + (" and derivative factor" if need_dfactor else "") + ", traced from the rule's `maps`.")
            self.fns[key] = render_activation(layer.rule, layer.params, need_dfactor, name, doc)
        return self.fns[key].name


class _OpBuilder:
    """Walks a stage's steps into ops, tracking whether T is live and the open residual blocks."""

    def __init__(self, acts: Activations):
        self.acts = acts
        self.forks: list[bool] = []     # T live at each open fork

    def step(self, step, t_live: bool, reduced: bool):
        layer, w = step.layer, step.window
        text, line = layer.describe(), layer.span.line
        if step.kind == "fork":
            op = ForkOp(line, text, len(self.forks), t_live)
            self.forks.append(t_live)
            return op, t_live, reduced
        if step.kind == "join":
            at_fork = self.forks.pop()
            return JoinOp(line, text, len(self.forks), layer.params.scale ** 2, t_live, at_fork), t_live, reduced
        if w is None:
            fn = self.acts.get(step, t_live)
            return ActOp(line, text, fn, self.acts.ordinal[step.index], t_live, reduced), t_live, reduced
        t_out = t_live or w.trainable
        if reduced or is_scalar_window(w):
            return ScalarOp(line, text, w.weight, w.bias, w.trainable, t_live, t_out), t_out, reduced
        if is_diag_readout(w):
            return ReadoutOp(line, text, w.weight, w.bias, w.trainable, t_live, t_out), t_out, True
        ty, tx = conv_taps(w)
        return ConvOp(line, text, ty, tx, w.weight, w.bias, w.trainable, t_live, t_out), t_out, reduced

    def ops(self, steps, t_live: bool, reduced: bool = False):
        """(ops, T live after, reduced after); a block of steps repeated LOOP_MIN_REPEATS times or
        more before the readout becomes one `Loop`."""
        sig = [_signature(s, (1, 1)) for s in steps]
        out = []
        i = 0
        while i < len(steps):
            length, reps = _find_run(sig, i)
            block = steps[i:i + length]
            if reps >= schedule.LOOP_MIN_REPEATS and not t_live and any(
                    s.window is not None and s.window.trainable for s in block):
                reps = 1  # the first repetition brings T to life: on its own, then a loop over the rest
            if (reps >= schedule.LOOP_MIN_REPEATS and not reduced
                    and not any(is_diag_readout(s.window) for s in block)):
                body, t_after, _ = self.ops(block, t_live, reduced)
                assert t_after == t_live, "T must be live through a loop, or dead through it"
                n_acts = sum(1 for s in block if s.kind == "activation")
                out.append(Loop(reps, body, n_acts, (block[0].layer.span.line, block[-1].layer.span.line)))
                i += length * reps
                continue
            op, t_live, reduced = self.step(steps[i], t_live, reduced)
            out.append(op)
            i += 1
        return tuple(out), t_live, reduced


def circulant_plan(stage: Stage, sink: Sink, plan, index: int, acts: Activations) -> CirculantPlan:
    """The records of a CIRCULANT stage (stage 0, from the images)."""
    net = plan.network
    h, w = net.input.height, net.input.width
    # every full-map step demands the same band (stride 1, no mixing): the tiles are its planes
    full = [s for s in stage.steps if s.layer.out_shape.height == h and s.layer.out_shape.width == w
            and not s.layer.out_shape.reduced]
    band = full[0].demand_in if full else plan.pair.input_demand
    ops, t_out, _ = _OpBuilder(acts).ops(stage.steps, False)
    return CirculantPlan(f"stage{index}_kernel", index, h, w, net.input.channels, net.input_span.line,
                         AxisTiles.of_band(band[0]), AxisTiles.of_band(band[1]), ops, sink, t_out)


def epilogue_plan(stage: Stage, index: int, t_in: bool, acts: Activations) -> EpiloguePlan:
    """The records of an EPILOGUE stage (opened by a full sum of the previous kernel's partial sums)."""
    op = stage.opener
    w = op.window
    opener = ReadoutOp(op.layer.span.line, op.layer.describe(), w.weight, w.bias, w.trainable, t_in,
                       t_in or w.trainable)
    ops, t_out, _ = _OpBuilder(acts).ops(stage.steps[1:], opener.t_out, reduced=True)
    return EpiloguePlan(f"stage{index}_kernel", index, opener, ops, t_in, t_out)


@dataclass(frozen=True)
class SeamTable:
    """The vertical seam factors a circulant kernel reads: for each offset a in `offsets`, entry
    [copy, a, ry, y] is 1 where row y's neighbour y - a lies in the map on the a-side (y - a >= 0)
    and on the b-side ((y - ry) mod H - a >= 0), else 0. The `copies` are equal: one per loop
    repetition, so that the compiler does not hoist the factors out of the loop into 2H registers."""

    height: int
    offsets: tuple[int, ...]
    copies: int

    def values(self) -> list[float]:
        h = self.height
        out = []
        for _ in range(self.copies):
            for a in self.offsets:
                for ry in range(h):
                    out += [1.0 if (y - a >= 0 and (y - ry) % h - a >= 0) else 0.0 for y in range(h)]
        return out


def count_activations(ops) -> int:
    """Activations on the map (not after the readout) executed per pair, loops unrolled."""
    n = 0
    for op in ops:
        if isinstance(op, Loop):
            n += op.reps * count_activations(op.body)
        elif isinstance(op, ActOp) and not op.scalar:
            n += 1
    return n


def conv_layers_per_rep(ops) -> int:
    """Conv layers per repetition of the (last) run-time loop: the hot loop's layers."""
    layers = 0
    for op in ops:
        if isinstance(op, Loop):
            layers = sum(1 for o in op.body if isinstance(o, ConvOp))
    return layers


__all__ = ["AxisTiles", "ConvOp", "ActOp", "ReadoutOp", "ScalarOp", "ForkOp", "JoinOp", "Loop", "CirculantPlan",
           "EpiloguePlan", "Activations", "SeamTable", "circulant_plan", "epilogue_plan"]
