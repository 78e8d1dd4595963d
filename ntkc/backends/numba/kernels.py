"""The numba backend's kernel records: a Plan's programs as a list of kernels, as data.

A program (the pair program, or the image program for the variance maps) becomes kernels run
one after another:

- *fused* kernels, generated (`writer.py`): one per stage. An item is one pair times one tile
  (`layout.py`): the real rows of one y-plane and the columns of one x-plane (or, packed, two
  x-planes in one full row). The whole chain of conv, activation and residual steps of the
  stage runs on the item's tile in a few KiB of scratch that stays in L1, from its source to
  its sink.
- *mixing* kernels, not generated (`mix.mix`): a plane-mixing window (avgpool, lap, circular
  conv; a readout that is not preceded by a fused kernel) as two sparse passes over the stored
  states of the previous kernel.

Sources: the two images (the input covariance formed on the fly); stored planes (a mixing
kernel's output); partial sums. Sinks: stored planes (for a mixing kernel), partial sums (one per
item, for a readout window such as `gap` that follows: each item adds its tile with the
readout's per-state weights, the next kernel adds a pair's partial sums in a fixed order), the
outputs, or nothing. Nothing here knows a layer by name: windows come from each step's `Window`.
The choices that never change a result (unrolling, repeat detection) are `SCHEDULE`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ...plan.lower import Plan, Program, Step
from ...rules.base import Window
from .layout import AxisStore, TileSet, is_readout, mix_axis, readout_weights, tile_columns, tile_rows, tiles_for


@dataclass(frozen=True)
class Schedule:
    """Choices that never change a result: unrolling and repeat detection."""

    unroll_taps: int = 9          # window taps per axis written out one by one (else a loop)
    unroll_channels: int = 4      # input channels written out one by one
    loop_min_repeats: int = 3     # a block of layers repeated this often becomes a run-time loop
    max_block: int = 16           # the longest block looked for


SCHEDULE = Schedule()


class Source(Enum):
    IMAGES = "images"       # the input covariance, from the two images
    PLANES = "planes"       # stored states of a mixing kernel
    PARTIALS = "partials"   # partial sums of the previous fused kernel, through a readout window


class Sink(Enum):
    OUTPUTS = "outputs"
    PLANES = "planes"
    PARTIALS = "partials"
    NONE = "none"


@dataclass(frozen=True)
class Geom:
    """A map as a tile sees it: size, plane multiplier (plane = mult * the item's displacement)
    per axis, and whether its columns are packed."""

    ny: int
    nx: int
    my: int
    mx: int
    packed: bool

    @property
    def scalar(self) -> bool:
        return self.ny == 1 and self.nx == 1 and not self.packed

    @property
    def tag(self) -> str:
        return f"g{self.ny}x{self.nx}{'p' if self.packed else 'c'}{self.my}_{self.mx}"


@dataclass
class FusedKernel:
    """One generated stage kernel (the text is rendered from these fields)."""

    name: str
    stage: int
    source: Source
    steps: list                    # [(Step, Geom in, Geom out)]
    tiles: TileSet
    g_first: Geom
    g_last: Geom
    t_in: bool = False
    t_out: bool = False
    opener: Step | None = None     # the readout window applied to the partial sums (PARTIALS source)
    sink: Sink = Sink.NONE
    in_store: tuple | None = None  # (AxisStore y, AxisStore x) read (PLANES source)
    out_store: tuple | None = None  # written (PLANES sink)
    sink_window: Window | None = None  # the readout the partial sums are for (PARTIALS sink)
    prev_tiles: int = 0            # tiles per pair of the kernel whose partial sums are read
    records: dict = field(default_factory=dict)  # step position in `steps` -> activation ordinal
    record_end: int | None = None
    tables: dict = field(default_factory=dict)   # host-side tile tables (numpy)
    args: tuple = ()                             # the generated function's arguments, in order
    width: int = 1                               # its packed row width (the W argument)
    uniform_partials: bool = True


@dataclass
class MixKernel:
    """A plane-mixing window over stored states (run by mix.mix)."""

    name: str
    step: Step
    in_store: tuple
    out_store: tuple
    csr_y: tuple
    csr_x: tuple
    t_in: bool
    t_out: bool


@dataclass(frozen=True)
class VarLayout:
    """Where each activation's variance map sits in a row of packed maps: `factor` 2 stores every
    map row twice (v | v), so that the b-side of a packed tile row is one contiguous slice."""

    factor: int
    offsets: tuple
    size: int


@dataclass
class ProgramKernels:
    """A program as kernels, and the layouts of the a-side and b-side variance maps it reads
    (the image program writes and reads one doubled layout)."""

    name: str
    kernels: list
    var_a: VarLayout
    var_b: VarLayout


# ---------------------------------------------------------------------------------------------
# records: from a Program to its kernels


def var_layout(plan: Plan, factor: int) -> VarLayout:
    """Offsets of each activation's variance map in a packed row (rows stored `factor` times)."""
    offsets, total = [], 0
    for i in plan.activations:
        s = plan.network.layers[i].in_shape
        offsets.append(total)
        total += s.height * factor * s.width
    return VarLayout(factor, tuple(offsets), total)


def _needs_doubled_b(kernels) -> bool:
    """b-side rows must be doubled only where a packed tile has a seam (rx > 0): plane-0
    programs (CNTK-V) then copy half as much per pair."""
    return any(isinstance(k, FusedKernel) and k.tiles.packed and any(x != 0 for x in k.tiles.x)
               and any(s.window is None for s, _, _ in k.steps) for k in kernels)


def _mults(steps) -> list[tuple[int, int]]:
    """Plane multiplier of each step's output relative to the stage's final plane."""
    out = [(1, 1)] * len(steps)
    m = (1, 1)
    for i in reversed(range(len(steps))):
        out[i] = m
        w = steps[i].window
        if w is not None and not w.mixes:
            m = (m[0] * w.rows.stride, m[1] * w.cols.stride)
    return out


def _in_mult(step: Step, m) -> tuple[int, int]:
    w = step.window
    if w is not None and not w.mixes:
        return (m[0] * w.rows.stride, m[1] * w.cols.stride)
    return m


def is_reduce(w: Window | None) -> bool:
    return w is not None and not w.mixes and w.rows.n_out == 1 and w.cols.n_out == 1 and not w.identity


def _fused(name, stage_idx, source, steps, in_shape, in_mult, out_band, t_in, opener=None) -> FusedKernel:
    """Geometry of every step of a fused stage, and whether its columns can be packed."""
    mults = _mults(steps)
    shapes = [(in_shape, in_mult)]
    for s, m in zip(steps, mults):
        shapes.append(((s.layer.out_shape.height, s.layer.out_shape.width), m))
    # spatial geometries: up to (not including) the output of the first reduce window
    spatial = len(shapes)
    for i, s in enumerate(steps):
        if is_reduce(s.window):
            spatial = i + 1
            break
    width = shapes[0][0][1]
    # packed columns: every spatial map of the stage as wide as the first, on the same x-plane
    packed = width > 1 and all(sh[1] == width and m[1] == 1 for sh, m in shapes[:spatial])
    geoms = []
    for k, (sh, m) in enumerate(shapes):
        p = packed and k < spatial
        geoms.append(Geom(sh[0], sh[1], m[0] if sh[0] > 1 else 1, m[1] if sh[1] > 1 else 1, p))
    tiles = tiles_for(out_band[0], out_band[1], packed, width)
    if any(is_reduce(s.window) for s in steps):
        assert len(tiles) == 1 and tiles.dy == (0,) and tiles.x == (0,), "a reduce window reads plane 0 only"
    t_out = t_in
    for s in steps:
        if s.window is not None and s.window.trainable:
            t_out = True
    k = FusedKernel(name, stage_idx, source, [(s, geoms[i], geoms[i + 1]) for i, s in enumerate(steps)],
                    tiles, geoms[0], geoms[-1], t_in, t_out, opener)
    return k


def lower_program(plan: Plan, prog: Program, image: bool) -> ProgramKernels:
    """The kernels of one program (data only)."""
    doubled = var_layout(plan, 2)
    kernels: list = []
    inp = plan.network.input
    if prog.input_demand is None:
        return ProgramKernels(prog.name, [], doubled, doubled)
    if not prog.stages:  # an image program before a first activation right after the input
        k = _fused(f"{'image' if image else 'pair'}_stage0", 0, Source.IMAGES, [], (inp.height, inp.width), (1, 1),
                   prog.input_demand, False)
        k.sink = Sink.NONE
        k.record_end = 0
        _tables(k)
        return ProgramKernels(prog.name, [k], doubled, doubled)
    t = False
    act_ordinal = {layer: k for k, layer in enumerate(plan.activations)}
    prefix = "image" if image else "pair"

    def name(kind):
        return f"{prefix}_{kind}{len(kernels)}"

    for stage in prog.stages:
        opener = stage.opener
        rest = list(stage.steps[1:] if opener is not None else stage.steps)
        if opener is None:
            m = _mults(rest)
            m_in = _in_mult(rest[0], m[0]) if rest else (1, 1)
            kernels.append(_fused(name("stage"), stage.index, Source.IMAGES, rest, (inp.height, inp.width), m_in,
                                  rest[-1].demand_out if rest else prog.input_demand, t))
        else:
            w = opener.window
            if not kernels:  # a mixing window right after the input: form the input planes first
                kernels.append(_fused(name("stage"), stage.index, Source.IMAGES, [], (inp.height, inp.width), (1, 1),
                                      prog.input_demand, False))
            prev = kernels[-1]
            out_shape = (opener.layer.out_shape.height, opener.layer.out_shape.width)
            readout = is_readout(w.rows) and is_readout(w.cols)
            if readout and isinstance(prev, FusedKernel):
                prev.sink = Sink.PARTIALS
                prev.sink_window = w
                t_open = prev.t_out or w.trainable
                k = _fused(name("stage"), stage.index, Source.PARTIALS, rest, out_shape, (1, 1),
                           rest[-1].demand_out if rest else opener.demand_out, prev.t_out, opener)
                k.prev_tiles = len(prev.tiles)
                k.t_in = prev.t_out
                k.t_out = t_open or any(s.window is not None and s.window.trainable for s in rest)
                kernels.append(k)
            else:
                store_in = _store(opener.demand_in)
                if isinstance(prev, FusedKernel):
                    prev.sink = Sink.PLANES
                    prev.out_store = store_in
                store_out = _store(opener.demand_out)
                t_in = _t_out(prev)
                mk = MixKernel(name("mix"), opener, store_in, store_out,
                               mix_axis(w.rows, store_in[0], store_out[0]), mix_axis(w.cols, store_in[1], store_out[1]),
                               t_in, t_in or w.trainable)
                kernels.append(mk)
                if rest:
                    m = _mults(stage.steps)
                    k = _fused(name("stage"), stage.index, Source.PLANES, rest, out_shape, m[0],
                               rest[-1].demand_out, mk.t_out)
                    k.in_store = store_out
                    kernels.append(k)
    last = kernels[-1]
    if isinstance(last, MixKernel):  # the program ends on a mixing window: read its states out
        sh = (last.step.layer.out_shape.height, last.step.layer.out_shape.width)
        k = _fused(name("stage"), last.step.index, Source.PLANES, [], sh, (1, 1), last.step.demand_out, last.t_out)
        k.in_store = last.out_store
        kernels.append(k)
        last = k
    last.sink = Sink.NONE if image else Sink.OUTPUTS
    if image:  # variance maps need S alone
        for k in kernels:
            k.t_in = k.t_out = False
        _place_records(prog, kernels, act_ordinal)
    for k in kernels:
        if isinstance(k, FusedKernel):
            _tables(k)
    if image:
        return ProgramKernels(prog.name, kernels, doubled, doubled)
    return ProgramKernels(prog.name, kernels, var_layout(plan, 1), doubled if _needs_doubled_b(kernels) else var_layout(plan, 1))


def _t_out(k) -> bool:
    return k.t_out


def _store(demand) -> tuple[AxisStore, AxisStore]:
    return AxisStore.of(demand[0]), AxisStore.of(demand[1])


def _place_records(prog: Program, kernels, act_ordinal) -> None:
    """Image program: which fused kernel records each variance map, and where. A map is
    recorded at its activation's input; the last one (that activation is not in the image
    program) after the last step."""
    for pos in prog.variance_at:
        if pos == len(prog.steps):
            kernels[-1].record_end = len(act_ordinal) - 1
            continue
        layer_index = prog.steps[pos].index
        for k in kernels:
            if isinstance(k, FusedKernel):
                for j, (s, _, _) in enumerate(k.steps):
                    if s.index == layer_index:
                        k.records[j] = act_ordinal[layer_index]


def _tables(k: FusedKernel) -> None:
    """Host-side tile tables: where each tile's rows and columns live in stored states, and the
    readout weights of a partial-sum sink."""
    tiles = k.tiles
    if k.source == Source.PLANES:
        sy, sx = k.in_store
        g = k.g_first
        k.tables["SROWB"] = tile_rows(tiles, sy, g.my)
        k.tables["SCOL"] = tile_columns(tiles, sx, g.mx, g.nx, g.nx)
        assert (k.tables["SROWB"] >= 0).all()
    g = k.g_last
    if k.sink == Sink.PLANES:
        sy, sx = k.out_store
        k.tables["DROWB"] = tile_rows(tiles, sy, g.my)
        k.tables["DCOL"] = tile_columns(tiles, sx, g.mx, g.nx, g.nx)
        assert (k.tables["DROWB"] >= 0).all()
    if k.sink == Sink.PARTIALS:
        w = k.sink_window
        band_y = _full_store(g.ny, tiles.dy)
        band_x = _full_store(g.nx, _tile_x_planes(tiles, g))
        wy = readout_weights(w.rows, band_y)
        wx = readout_weights(w.cols, band_x)
        rows = np.zeros((len(tiles), g.ny))
        cols = np.zeros((len(tiles), g.nx))
        rb = tile_rows(tiles, band_y, g.my)
        cb = tile_columns(tiles, band_x, g.mx, g.nx, g.nx)
        for t in range(len(tiles)):
            n_rows = g.ny - abs(g.my * tiles.dy[t])
            rows[t, :n_rows] = wy[rb[t]:rb[t] + n_rows]
            ok = cb[t] >= 0
            cols[t, ok] = wx[cb[t][ok]]
        k.tables["PWY"] = rows
        k.tables["PWX"] = cols
        # a plain sum where every weight is 1 (gap): no tables read in the loop
        full_rows = all((rows[t, :g.ny - abs(g.my * tiles.dy[t])] == 1).all() for t in range(len(tiles)))
        full_cols = all((cols[t, (cb[t] >= 0)] == 1).all() and (cb[t][:_tile_width(tiles, t, g)] >= 0).all()
                        for t in range(len(tiles)))
        k.uniform_partials = bool(full_rows and full_cols)


def _tile_width(tiles: TileSet, t: int, g: Geom) -> int:
    return g.nx if g.packed else g.nx - abs(g.mx * tiles.x[t])


def _tile_x_planes(tiles: TileSet, g: Geom) -> list[int]:
    if g.packed:
        return [d for x in tiles.x for d in (x, x - g.nx) if -g.nx < d < g.nx]
    return [g.mx * x for x in tiles.x]


def _full_store(n: int, planes) -> AxisStore:
    planes = list(planes)
    return AxisStore(n, min(planes), max(planes))

