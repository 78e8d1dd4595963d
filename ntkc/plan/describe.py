"""`describe(plan)`: the plan as text (`ntkc compile --emit plan`): stages, the planes each layer
produces and the work per pair and per image."""
from __future__ import annotations

from .lower import Demand, Plan, Program


def describe(plan: Plan) -> str:
    """A readable account of a plan: stages, layers, planes demanded, work per pair."""
    net = plan.network
    lines = [
        f"plan for {net.filename}: input {net.input}, {len(net.layers)} layers, "
        f"{len(plan.pair.stages)} stage(s)",
        f"  work per pair  ~{plan.pair.flops():.3g} flops; per image (variance maps) ~{plan.image.flops():.3g} flops",
    ]
    copies = net.augment_copies
    if copies > 1:
        names = " ".join(a.rule.name for a in net.augment)
        lines.append(f"  augmented ({names}): the pair program runs {copies} times per pair, ~{copies * plan.pair.flops():.3g} "
                     f"flops in all; the image program {copies} times per image")
    lines += [
        "",
        f"pair program (runs on every pair of images); input covariance planes rows {_band(plan.pair.input_demand, 0)}"
        f" x cols {_band(plan.pair.input_demand, 1)}",
    ]
    lines += _describe_program(plan.pair)
    lines.append("")
    if plan.image.steps or plan.image.variance_at:
        lines.append(f"image program (runs once per image; variance maps at {len(plan.image.variance_at)} activation(s))"
                     f"; input planes rows {_band(plan.image.input_demand, 0)} x cols {_band(plan.image.input_demand, 1)}")
        lines += _describe_program(plan.image)
    else:
        lines.append("image program: none (no activations)")
    return "\n".join(lines)


def _band(d: Demand | None, axis: int) -> str:
    return "-" if d is None else str(d[axis])


def _describe_program(prog: Program) -> list[str]:
    out = []
    for stage in prog.stages:
        opener = stage.opener
        head = f"  stage {stage.index}"
        head += f" (opened by plane-mixing `{opener.layer.name}`)" if opener else " (from the input covariance)"
        out.append(head)
        for s in stage.steps:
            d = s.demand_out
            planes = f"planes {_band(d, 0)} x {_band(d, 1)}"
            entries = d[0].entries() * d[1].entries()
            line = (f"    line {s.layer.span.line:<4} {s.layer.describe():<36} "
                    f"{str(s.layer.in_shape):>8} -> {str(s.layer.out_shape):<8} {planes:<22} {entries:>9} entries")
            out.append(line.rstrip())
    return out
