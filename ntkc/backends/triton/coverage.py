"""Which stages the v2 kernels cover: a pure function of a stage, where its result goes and the
input map, with the reason kept for the report and the generated header.

- CIRCULANT (`circulant.py`): stage 0, formed from the images, on an H x W map with H and W powers
  of two of at most 32; every window before the readout a same-size, stride-1, zero-padded,
  plane-keeping window (a conv of any size or dilation, an identity); activations and residual
  blocks anywhere; an optional diagonal readout (`flatten`) followed by scalar windows (`dense`)
  and activations; the stage ends in the outputs (after a readout) or in partial sums (when a
  full sum, `gap`, opens the next stage).
- EPILOGUE (`epilogue.py`): a stage opened by a full sum whose other steps are scalar windows,
  activations and residual blocks on 1x1 maps.
- LEGACY: everything else runs on the v1 generator's kernels, in the same module: strided, valid
  or circular convs, pooling and `lap` stages (gathers), maps that are not powers of two or wider
  than 32, and stage 0 when it feeds a gathering stage (v2 has no band-layout `planes` sink yet).

Nothing here knows a layer by name: windows are recognised by their structure.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ...plan.lower import Stage
from ...rules.base import Window
from .windows import is_full_sum

MAX_ROWS = 32   # rows of a tile held as registers per thread (float32 S and T: 64 registers)
MAX_COLS = 32   # columns: one lane each, so a tile row is one warp (or a part of one)


class Kind(Enum):
    """Which generator writes a stage's kernel."""

    CIRCULANT = "circulant"    # stage 0 on the whole map: circulant tiles in registers
    EPILOGUE = "epilogue"      # a stage opened by a full sum: scalars per pair
    LEGACY = "legacy"          # the v1 generator's kernel


class Sink(Enum):
    """Where a stage kernel's result goes."""

    OUTPUTS = "outputs"        # NNGP and NTK per pair
    PARTIALS = "partials"      # sums of parts of each pair, for the full sum that opens the next stage
    PLANES = "planes"          # planes in the v1 band layout, for a gathering window


@dataclass(frozen=True)
class Decision:
    kind: Kind
    reason: str


def _pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def conv_taps(w: Window | None) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Tap offsets per axis (input position p + d) of a same-size, stride-1, zero-padded,
    plane-keeping window (a conv or an identity), or None for any other window."""
    if w is None:
        return None
    out = []
    for ax in (w.rows, w.cols):
        if ax.wrap or ax.stride != 1 or ax.n_in != ax.n_out or any(a != b for a, b in ax.terms):
            return None
        taps = tuple(sorted({ax.offset + e for e, _ in ax.terms}))
        if len(taps) != len(ax.terms):
            return None
        out.append(taps)
    return out[0], out[1]


def is_diag_readout(w: Window | None) -> bool:
    """A readout to one number reading every diagonal entry (p, p) once (`flatten`)."""
    if w is None:
        return False
    for ax in (w.rows, w.cols):
        if ax.n_out != 1 or ax.wrap or ax.stride != 1 or ax.offset != 0:
            return False
        if sorted(ax.terms) != [(e, e) for e in range(ax.n_in)]:
            return False
    return True


def is_scalar_window(w: Window | None) -> bool:
    """A window on a 1x1 map (`dense`)."""
    return (w is not None and w.rows.n_in == w.rows.n_out == 1 and w.cols.n_in == w.cols.n_out == 1
            and w.rows.terms == ((0, 0),) and w.cols.terms == ((0, 0),) and not w.mixes)


def coverage(stage: Stage, sink: Sink, input_shape: tuple[int, int], source_images: bool) -> Decision:
    """Does v2 run this stage, and how: `sink` is where its result goes (decided by the next
    stage's opener), `input_shape` the network's input map, `source_images` whether the stage
    starts from the images."""
    steps = stage.steps
    if stage.opener is not None:
        if is_full_sum(stage.opener.window):
            bad = [s for s in steps[1:] if s.window is not None and not is_scalar_window(s.window)]
            if bad:
                return Decision(Kind.LEGACY, f"after the full sum, `{bad[0].layer.name}` is not a scalar window")
            if sink is not Sink.OUTPUTS:
                return Decision(Kind.LEGACY, "a full-sum stage that feeds another stage")
            return Decision(Kind.EPILOGUE, "full sum (gap) of the previous kernel's partial sums, then scalars")
        return Decision(Kind.LEGACY, f"opened by the plane-mixing `{stage.opener.layer.name}` (a gather)")
    if not source_images:
        return Decision(Kind.LEGACY, "does not start from the images")
    h, w = input_shape
    if not (_pow2(h) and _pow2(w)):
        return Decision(Kind.LEGACY, f"map {h}x{w} is not a power of two per axis")
    if h > MAX_ROWS or w > MAX_COLS:
        return Decision(Kind.LEGACY, f"map {h}x{w} exceeds {MAX_ROWS}x{MAX_COLS} (rows in registers, a column per lane)")
    reduced = False
    for s in steps:
        if s.window is None:  # activations, and the ends of residual blocks
            continue
        if reduced:
            if not is_scalar_window(s.window):
                return Decision(Kind.LEGACY, f"`{s.layer.name}` after the readout is not a scalar window")
        elif conv_taps(s.window) is not None:
            continue
        elif is_diag_readout(s.window):
            reduced = True
        else:
            return Decision(Kind.LEGACY, f"`{s.layer.name}` (line {s.layer.span.line}) is not a same-size stride-1 "
                                         "zero-padded window (strided, valid, circular or pooling)")
    if sink is Sink.PLANES:
        return Decision(Kind.LEGACY, "the next stage gathers planes (a band-layout sink is not in v2 yet)")
    if sink is Sink.OUTPUTS and not reduced:
        return Decision(Kind.LEGACY, "the stage ends on a map without a readout")
    if sink is Sink.PARTIALS and reduced:
        return Decision(Kind.LEGACY, "a readout inside a stage that feeds a full sum")
    return Decision(Kind.CIRCULANT, f"{h}x{w} map, same-size stride-1 convs and activations"
                                    + (", diagonal readout" if reduced else ""))
