"""From a Plan's pair program to the list of kernels to write: one draft per stage (a full-sum
readout folded into its neighbours), with its source, sink and whether T is live, plus the
repeated blocks of layers that become run-time loops."""
from __future__ import annotations

from dataclasses import dataclass

from ...plan.lower import Band, Program, Step
from .windows import is_full_sum


@dataclass
class _Draft:
    steps: tuple[Step, ...]
    source: str
    opener: Step | None
    out_band: tuple[Band, Band]
    out_shape: tuple[int, int]
    in_band: tuple[Band, Band] | None = None
    sink: str = "outputs"
    t_in: bool = False
    t_out: bool = False


def _drafts(prog: Program, network) -> list[_Draft]:
    drafts: list[_Draft] = []
    inp = network.input
    for stage in prog.stages:
        opener = stage.opener
        last = stage.steps[-1]
        out_shape = (last.layer.out_shape.height, last.layer.out_shape.width)
        if opener is not None and is_full_sum(opener.window):
            if not drafts:  # a full sum of the input covariance: a kernel of its own forms it
                drafts.append(_Draft((), "images", None, prog.input_demand, (inp.height, inp.width)))
            drafts[-1].sink = "partials"
            d = _Draft(stage.steps, "partials", opener, last.demand_out, out_shape, opener.demand_in)
        elif opener is not None:
            if drafts:
                drafts[-1].sink = "planes"
                d = _Draft(stage.steps, "planes", opener, last.demand_out, out_shape, opener.demand_in)
            else:
                d = _Draft(stage.steps, "images", opener, last.demand_out, out_shape)
        else:
            d = _Draft(stage.steps, "images", None, last.demand_out, out_shape)
        drafts.append(d)
    t = False
    for d in drafts:
        d.t_in = t if d.source != "images" else False
        t = d.t_in
        for s in d.steps:
            if s.window is not None and s.window.trainable:
                t = True
        d.t_out = t
    return drafts


def _multipliers(steps) -> list[tuple[int, int]]:
    """M per step output: the plane of step l's output is M_l * (the item's final plane)."""
    out = [(1, 1)] * len(steps)
    m = (1, 1)
    for i in reversed(range(len(steps))):
        out[i] = m
        w = steps[i].window
        if w is not None and not w.mixes:
            m = (m[0] * w.rows.stride, m[1] * w.cols.stride)
    return out


def _signature(step: Step, mult) -> tuple:
    layer = step.layer
    return (layer.rule.name, layer.params, step.window, layer.in_shape, layer.out_shape, mult, layer.rule.kind)


_MAX_BLOCK = 32  # the longest block of layers looked for as a repeated unit


def _find_run(sig: list[tuple], i: int) -> tuple[int, int]:
    """The block length and repeat count of the longest run of identical blocks at sig[i]
    (step signatures: same rules, parameters, windows, shapes and planes; (1, 1) if none)."""
    best = (1, 1)
    n = len(sig)
    for length in range(1, min(_MAX_BLOCK, (n - i) // 2) + 1):
        first = sig[i:i + length]
        if first[0][3] != first[-1][4]:  # the block must end on the shape it starts from
            continue
        if not _balanced(first):  # and hold whole residual blocks
            continue
        reps = 1
        while i + (reps + 1) * length <= n and sig[i + reps * length:i + (reps + 1) * length] == first:
            reps += 1
        if reps > 1 and length * reps > best[0] * best[1]:
            best = (length, reps)
    return best


def _balanced(block: list[tuple]) -> bool:
    """True when every residual block that starts in `block` ends in it, and the other way round."""
    depth = 0
    for sig in block:
        depth += {"fork": 1, "join": -1}.get(sig[-1], 0)
        if depth < 0:
            return False
    return depth == 0


def _input_multiplier(steps, mults) -> tuple[int, int]:
    if not steps:
        return (1, 1)
    w = steps[0].window
    m = mults[0]
    if w is not None and not w.mixes:
        return (m[0] * w.rows.stride, m[1] * w.cols.stride)
    return m


