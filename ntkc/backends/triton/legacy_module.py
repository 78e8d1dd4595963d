"""The v1 generator's module: every stage kernel of a plan written by `writer._KernelWriter`, the
helpers they use and a header that says what each kernel does. `module.build` uses it as it is
when v2 covers no stage of a plan, and its kernel writer for the stages v2 does not cover."""
from __future__ import annotations

from ...plan.lower import Plan
from .drafts import _Draft, _drafts
from .kernels import KernelSpec, LegacyModule
from .helpers import helper_sources
from .render import CodeBuffer
from .writer import _KernelWriter

GENERATOR_VERSION = 1


def var_layout(plan: Plan) -> tuple[tuple[int, ...], int]:
    """The v1 layout of a packed row of variance maps: each activation's h x w map once."""
    offsets = []
    total = 0
    for layer_index in plan.activations:
        shape = plan.network.layers[layer_index].in_shape
        offsets.append(total)
        total += shape.height * shape.width
    return tuple(offsets), total


def module_name(plan: Plan) -> str:
    """The name of a plan's generated module (from its file name)."""
    import re
    stem = plan.network.filename.rsplit("/", 1)[-1]
    stem = stem[:-5] if stem.endswith(".arch") else stem
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "arch"
    return f"ntkc_{stem}"


def build_legacy(plan: Plan) -> LegacyModule:
    """The v1 generator's Triton module for `plan`'s pair program, with a spec of each kernel."""
    net = plan.network
    var_offsets, var_size = var_layout(plan)
    drafts = _drafts(plan.pair, net)
    kernels: list[KernelSpec] = []
    texts: list[str] = []
    helpers: set[str] = set()
    prev_out = 0
    for i, draft in enumerate(drafts):
        writer = _KernelWriter(draft, i, plan, var_offsets, prev_out)
        text, spec = writer.write()
        helpers |= writer.helpers
        kernels.append(spec)
        texts.append(text)
        prev_out = spec.out_per_pair
    head = CodeBuffer()
    head.line(f'"""ntkc generated Triton kernels for {net.filename} (generator v{GENERATOR_VERSION}).')
    head.line("")
    head.line(f"input {net.input}; {len(net.layers)} layers; pair program in {len(kernels)} kernel(s):")
    for spec, draft in zip(kernels, drafts):
        head.line(f"  {spec.name}: {_describe_kernel(spec, draft)}")
    head.line("")
    head.line("Launched by ntkc.backends.triton.backend; see ntkc.backends.triton.codegen for the design.")
    head.line('"""')
    head.line("import triton")
    head.line("import triton.language as tl")
    parts = [head.text()]
    if helpers:
        parts.append("# -- helpers (copied from ntkc.backends.triton.mathlib) " + "-" * 40 + "\n\n\n" + helper_sources(helpers))
    parts += texts
    source = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
    return LegacyModule(source, tuple(kernels), var_offsets, var_size, module_name(plan))


def _describe_kernel(spec: KernelSpec, draft: _Draft) -> str:
    steps = ", ".join(f"{s.layer.name} (line {s.layer.span.line})" for s in draft.steps) or "input covariance"
    by, bx = draft.out_band
    return (f"{steps}; {spec.planes} plane(s) per pair (rows {by}, cols {bx}); "
            f"{spec.source} -> {spec.sink}")
