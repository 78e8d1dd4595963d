"""The generated module for a Plan: v2 kernels (circulant, epilogue) for the stages `coverage`
accepts, the v1 generator's kernels for the others, in launch order.

    gen = build(plan)      # Generated: source text, one KernelInfo per kernel, map layouts
    print(gen.source)      # what `ntkc compile F --emit triton` prints

Kernels hand data on as v1's do: a kernel feeding a full sum stores one partial sum per (pair,
part) ([pairs, n_parts]); a gathering stage reads planes in v1's band layout. v2 kernels read
images and variance maps per *image* through pair indices (ia, ib), the maps with their rows
doubled (`var_layout`); legacy kernels read per-pair copies in v1's layout, which the launcher
gathers only when the module has such a kernel. A plan that v2 does not cover anywhere gets the
v1 generator's module unchanged.
"""
from __future__ import annotations

from ...plan.lower import Plan, Stage
from .circulant import CirculantWriter
from .coverage import Decision, Kind, Sink, coverage
from .drafts import _drafts
from .epilogue import EpilogueWriter
from .helpers import fast_helper_sources, helper_sources
from .kernels import Generated, KernelInfo
from .legacy_module import build_legacy, module_name, var_layout as legacy_var_layout
from .records import Activations, circulant_plan, epilogue_plan
from .render import CodeBuffer
from .tile_helpers import part_helpers, row_helpers
from .writer import _KernelWriter

GENERATOR_VERSION = 2


def var_layout(plan: Plan) -> tuple[tuple[int, ...], int]:
    """The v2 layout of a packed row of variance maps per image: each activation's h x w map
    with its rows doubled ([2h, w]: rows y and y + h are equal), back to back. Doubling lets
    tile row ry read b-side row (y - ry) mod h at y + h - ry, a constant offset per row."""
    offsets, total = [], 0
    for layer_index in plan.activations:
        shape = plan.network.layers[layer_index].in_shape
        offsets.append(total)
        total += 2 * shape.height * shape.width
    return tuple(offsets), total


def decide(plan: Plan) -> list[tuple[object, Decision]]:
    """The v1 drafts (stages with their sources and sinks) and the v2 decision for each."""
    net = plan.network
    out = []
    for d in _drafts(plan.pair, net):
        if not d.steps:  # a kernel of its own that only forms the input covariance (gap on the input)
            out.append((d, Decision(Kind.LEGACY, "forms the input covariance for a full sum")))
            continue
        dec = coverage(Stage(0, d.steps), Sink(d.sink), (net.input.height, net.input.width), d.source == "images")
        if dec.kind is Kind.EPILOGUE and d.source != "partials":
            dec = Decision(Kind.LEGACY, "full sum without partial sums before it")
        out.append((d, dec))
    for i in range(len(out) - 1):  # a v1 kernel reads what a v1 kernel wrote
        if out[i][1].kind is Kind.CIRCULANT and out[i + 1][1].kind is Kind.LEGACY:
            out[i] = (out[i][0], Decision(Kind.LEGACY, "feeds a v1 kernel"))
    return out


def build(plan: Plan) -> Generated:
    """Generate the Triton module for `plan`'s pair program, with a KernelInfo per kernel."""
    net = plan.network
    var_offsets, var_size = var_layout(plan)
    legacy_offsets, legacy_size = legacy_var_layout(plan)
    decisions = decide(plan)
    if all(dec.kind is Kind.LEGACY for _, dec in decisions):
        return _legacy_only(plan, decisions, var_offsets, var_size)
    acts = Activations(plan)
    texts, kernels = [], []
    v1_helpers: set[str] = set()
    rows_needed: set[int] = set()
    parts_needed: set[int] = set()
    prev_out = 0
    for i, (draft, dec) in enumerate(decisions):
        lines = tuple(s.layer.span.line for s in draft.steps)
        if dec.kind is Kind.CIRCULANT:
            cp = circulant_plan(Stage(0, draft.steps), Sink(draft.sink), plan, i, acts)
            w = CirculantWriter(cp, var_offsets, var_size)
            texts.append(w.write())
            rows_needed |= w.row_helpers
            parts_needed |= w.part_helpers
            kernels.append(KernelInfo(cp.name, i, dec.kind, dec, lines, tuple(w.args), draft.source, draft.sink,
                                      False, cp.t_out, cp, seam=w.seam_table()))
            prev_out = 0  # partial sums per pair are set at launch (they depend on BLOCK_X)
        elif dec.kind is Kind.EPILOGUE:
            ep = epilogue_plan(Stage(0, draft.steps), i, draft.t_in, acts)
            w = EpilogueWriter(ep, var_offsets)
            texts.append(w.write())
            kernels.append(KernelInfo(ep.name, i, dec.kind, dec, lines, tuple(w.args), draft.source, "outputs",
                                      ep.t_in, ep.t_out, ep))
        else:
            writer = _KernelWriter(draft, i, plan, legacy_offsets, prev_out)
            text, spec = writer.write()
            v1_helpers |= writer.helpers
            texts.append(text)
            kernels.append(KernelInfo(spec.name, i, dec.kind, dec, spec.lines, spec.args, spec.source, spec.sink,
                                      spec.t_in, spec.t_out, legacy=spec))
            prev_out = spec.out_per_pair
    fast, v1_act = set(), set()
    for f in acts.fns.values():
        fast |= f.fast_helpers
        v1_act |= f.v1_helpers
    parts = [_header(net, kernels)]
    if fast:
        parts.append("# -- v2 math helpers (copied from ntkc.backends.triton.fastmath) " + "-" * 30 + "\n\n\n"
                     + fast_helper_sources(fast))
    if v1_helpers | v1_act:
        parts.append("# -- v1 helpers (copied from ntkc.backends.triton.mathlib) " + "-" * 36 + "\n\n\n"
                     + helper_sources(v1_helpers | v1_act))
    parts += [row_helpers(h) for h in sorted(rows_needed)]
    parts += [part_helpers(k) for k in sorted(parts_needed)]
    parts += [f.source for f in acts.fns.values()]
    parts += texts
    source = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
    return Generated(source, tuple(kernels), var_offsets, var_size, legacy_offsets, legacy_size,
                     module_name(plan) + "_v2", True)


def build_v1(plan: Plan) -> Generated:
    """The v1 generator's module for every stage, covered or not (the speed model's "before")."""
    offsets, size = var_layout(plan)
    decisions = [(d, Decision(Kind.LEGACY, "v1 generator requested")) for d in _drafts(plan.pair, plan.network)]
    return _legacy_only(plan, decisions, offsets, size)


def _legacy_only(plan: Plan, decisions, var_offsets, var_size) -> Generated:
    """The v1 generator's module as it is, its kernels described as KernelInfo."""
    mod = build_legacy(plan)
    kernels = tuple(KernelInfo(spec.name, spec.index, Kind.LEGACY, dec, spec.lines, spec.args, spec.source,
                               spec.sink, spec.t_in, spec.t_out, legacy=spec)
                    for spec, (_, dec) in zip(mod.kernels, decisions))
    return Generated(mod.source, kernels, var_offsets, var_size, mod.var_offsets, mod.var_size, mod.module_name,
                     False)


def _header(net, kernels) -> str:
    head = CodeBuffer()
    head.line(f'"""ntkc generated Triton kernels for {net.filename} (generator v{GENERATOR_VERSION}).')
    head.line("")
    head.line(f"input {net.input}; {len(net.layers)} layers; pair program in {len(kernels)} kernel(s):")
    for k in kernels:
        lines = ", ".join(map(str, sorted(set(k.lines)))) or "-"
        head.line(f"  {k.name}: {k.kind.value} ({k.decision.reason}); lines {lines}; {k.source} -> {k.sink}")
    head.line("")
    head.line("circulant / epilogue kernels: ntkc.backends.triton.circulant, .epilogue (v2); legacy: the v1")
    head.line("generator (ntkc.backends.triton.writer). Launched by ntkc.backends.triton.backend with")
    head.line("floating-point contraction on (enable_fp_fusion=True); the self-pair determinant is exact under it")
    head.line("by construction (fms2).")
    head.line('"""')
    head.line("import triton")
    head.line("import triton.language as tl")
    return head.text()


def generate(plan: Plan) -> str:
    """The generated Triton module for `plan`, as source text."""
    return build(plan).source
