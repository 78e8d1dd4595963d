"""Lowering a `Network` to a `Plan`: demanded displacement planes, stages and the image program.

Every entry S[p, q] of a covariance is filed under its displacement D = p - q, per axis. A window
layer maps output displacement D to input displacements s D + (e - e') (and D +- n when it wraps);
an activation keeps D. Walking back from the readout, which needs D = 0 of a 1x1 map, gives the
band of displacements each layer must produce (`Band`, per axis). Layers whose window reads only
s D (conv with zero padding, flatten, dense, activations) keep planes independent: a run of them
is a `Stage`, and a plane-mixing layer (pooling, gap, circular conv) opens the next stage.

Two programs are lowered: the *pair* program, run on every pair of images, and the *image*
program, run once per image on the self pair, which yields the variance maps v = S_aa[p, p] at
every activation's input (plane 0, plus whatever planes a later pool or readout needs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..rules.base import AxisWindow, Shape, Window

if TYPE_CHECKING:
    from ..lang.network import Layer, Network


@dataclass(frozen=True)
class Band:
    """Displacements D in [lo, hi] along an axis of size n (so |D| <= n - 1)."""

    n: int
    lo: int
    hi: int

    @property
    def full(self) -> bool:
        return self.lo <= -(self.n - 1) and self.hi >= self.n - 1

    @property
    def count(self) -> int:
        return self.hi - self.lo + 1

    def entries(self) -> int:
        """Number of real (p, q) pairs with p - q in the band (a closed form of
        sum over D of n - |D|)."""
        def up_to(k: int) -> int:  # 1 + 2 + ... + k
            return k * (k + 1) // 2

        if self.lo >= 0:
            total_abs = up_to(self.hi) - up_to(self.lo - 1)
        elif self.hi <= 0:
            total_abs = up_to(-self.lo) - up_to(-self.hi - 1)
        else:
            total_abs = up_to(-self.lo) + up_to(self.hi)
        return self.count * self.n - total_abs

    def union(self, other: "Band | None") -> "Band":
        if other is None:
            return self
        return Band(self.n, min(self.lo, other.lo), max(self.hi, other.hi))

    def __str__(self) -> str:
        if self.full and self.n > 1:
            return f"all {2 * self.n - 1}"
        return f"[{self.lo},{self.hi}]" if self.lo != self.hi else f"{self.lo}"


Demand = tuple[Band, Band]


def zero_demand(shape: Shape) -> Demand:
    return (Band(shape.height, 0, 0), Band(shape.width, 0, 0))


def union(a: Demand | None, b: Demand | None) -> Demand | None:
    if a is None:
        return b
    if b is None:
        return a
    return (a[0].union(b[0]), a[1].union(b[1]))


def needed_input(axis: AxisWindow, band: Band) -> Band:
    """The band of input displacements an axis window reads to produce `band` (the window
    computes it in closed form, whatever the sizes)."""
    found = axis.reads(band.lo, band.hi)
    if found is None:  # cannot happen for a well-formed window; keep plane 0 to stay defined
        return Band(axis.n_in, 0, 0)
    return Band(axis.n_in, *found)


@dataclass(frozen=True)
class Step:
    """One layer in a program, with the planes it reads and produces."""

    index: int
    layer: "Layer"
    window: Window | None
    demand_in: Demand
    demand_out: Demand

    @property
    def kind(self) -> str:
        return self.layer.rule.kind

    @property
    def mixes(self) -> bool:
        return self.window is not None and self.window.mixes


@dataclass(frozen=True)
class Stage:
    """A run of steps that keep displacement planes independent, opened by a mixing step."""

    index: int
    steps: tuple[Step, ...]

    @property
    def opener(self) -> Step | None:
        """The plane-mixing step that reads the previous stage's planes (None for stage 0)."""
        return self.steps[0] if self.steps and self.steps[0].mixes else None


@dataclass(frozen=True)
class Program:
    """Steps with demands. `variance_at` lists the steps (by position) before which the image
    program records a variance map; `len(steps)` stands for 'after the last step'."""

    name: str
    input_demand: Demand | None
    steps: tuple[Step, ...]
    stages: tuple[Stage, ...]
    variance_at: tuple[int, ...] = ()

    def flops(self) -> int:
        """A rough count of floating-point operations per pair (or image), S and T together."""
        total = 0
        if self.input_demand is not None:
            total += 2 * _entries(self.input_demand)
        for s in self.steps:
            out = _entries(s.demand_out)
            if s.window is not None:
                terms = s.window.rows.count + s.window.cols.count
                total += out * (2 * terms + 4)
            elif s.kind == "activation":
                total += out * ACTIVATION_FLOPS
            elif s.kind == "join":
                total += out * JOIN_FLOPS
        return total

    def largest_state(self) -> tuple[int, "Step | None"]:
        """(numbers, step) of the largest covariance state this program holds for one pair (or
        image), as the backends store it (all planes: n^2 per axis; a band: planes x n); the
        step is None for the input covariance."""
        best = (0 if self.input_demand is None else _slots(self.input_demand), None)
        for s in self.steps:
            size = _slots(s.demand_out)
            if size > best[0]:
                best = (size, s)
        return best


ACTIVATION_FLOPS = 40  # a relu map with atan2 and sqrt, NNGP and derivative, S and T
JOIN_FLOPS = 4  # the end of a residual block: S = S_x + c^2 S_f, the same for T


def _slots(d: Demand) -> int:
    return math.prod(b.n * b.n if b.full else b.count * b.n for b in d)


def _entries(d: Demand) -> int:
    return d[0].entries() * d[1].entries()


@dataclass(frozen=True)
class Plan:
    """What the backends execute: the network, its pair program and its image program."""

    network: "Network"
    pair: Program
    image: Program

    @property
    def activations(self) -> tuple[int, ...]:
        """Layer indices of the activations; the variance maps come in this order."""
        return tuple(i for i, l in enumerate(self.network.layers) if l.rule.kind == "activation")


def _windows(network: "Network") -> list[Window | None]:
    return [l.rule.window(l.params, l.in_shape) if l.rule.kind == "window" else None
            for l in network.layers]


def _analyse(name: str, input_shape: Shape, layers, windows, out_demand: Demand | None,
             variance_at: set[int]) -> Program:
    count = len(layers)
    demands: list[Demand | None] = [None] * (count + 1)
    demands[count] = out_demand
    if count in variance_at:
        demands[count] = union(demands[count], zero_demand(layers[count - 1].out_shape if count else input_shape))
    shortcuts: list[Demand | None] = []  # what the shortcut of each open residual block needs
    for i in reversed(range(count)):
        d = demands[i + 1]
        kind = layers[i].rule.kind
        if d is not None and windows[i] is not None:
            w = windows[i]
            d = (needed_input(w.rows, d[0]), needed_input(w.cols, d[1]))
        elif kind == "join":  # y = x + c f(x): x (through the shortcut) and f's output need the same planes
            shortcuts.append(d)
        elif kind == "fork":  # x feeds the branch and the shortcut (none if the block ends after the program)
            d = union(d, shortcuts.pop() if shortcuts else None)
        if i in variance_at:
            d = union(d, zero_demand(layers[i].in_shape))
        demands[i] = d
    steps = tuple(Step(i, layers[i], windows[i], demands[i], demands[i + 1]) for i in range(count))
    return Program(name, demands[0], steps, _stages(steps),
                   tuple(sorted(variance_at)))


def _stages(steps: tuple[Step, ...]) -> tuple[Stage, ...]:
    groups: list[list[Step]] = []
    for s in steps:
        if not groups or s.mixes:
            groups.append([])
        groups[-1].append(s)
    return tuple(Stage(i, tuple(g)) for i, g in enumerate(groups))


def lower(network: "Network") -> Plan:
    """Lower a validated network to a Plan (demand analysis for both programs, stages)."""
    layers = network.layers
    windows = _windows(network)
    final = network.output
    pair = _analyse("pair", network.input, layers, windows, zero_demand(final), set())
    acts = [i for i, l in enumerate(layers) if l.rule.kind == "activation"]
    if acts:
        last = acts[-1]
        image = _analyse("image", network.input, layers[:last], windows[:last], None, set(acts))
    else:
        image = Program("image", None, (), (), ())
    return Plan(network, pair, image)
