"""The generated module: every stage kernel of a plan, the helpers they use and a header that
says what each kernel does."""
from __future__ import annotations

from ...plan.lower import Plan
from .drafts import _Draft, _drafts
from .kernels import Generated, KernelSpec
from .helpers import helper_sources
from .render import CodeBuffer
from .writer import _KernelWriter

GENERATOR_VERSION = 1


def _var_layout(plan: Plan) -> tuple[tuple[int, ...], int]:
    offsets = []
    total = 0
    for layer_index in plan.activations:
        shape = plan.network.layers[layer_index].in_shape
        offsets.append(total)
        total += shape.height * shape.width
    return tuple(offsets), total


def _module_name(plan: Plan) -> str:
    import re
    stem = plan.network.filename.rsplit("/", 1)[-1]
    stem = stem[:-5] if stem.endswith(".arch") else stem
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "arch"
    return f"ntkc_{stem}"


def build(plan: Plan) -> Generated:
    """Generate the Triton module for `plan`'s pair program, with a spec of each kernel."""
    net = plan.network
    var_offsets, var_size = _var_layout(plan)
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
    return Generated(source, tuple(kernels), var_offsets, var_size, _module_name(plan))


def _describe_kernel(spec: KernelSpec, draft: _Draft) -> str:
    steps = ", ".join(f"{s.layer.name} (line {s.layer.span.line})" for s in draft.steps) or "input covariance"
    by, bx = draft.out_band
    return (f"{steps}; {spec.planes} plane(s) per pair (rows {by}, cols {bx}); "
            f"{spec.source} -> {spec.sink}")


def generate(plan: Plan) -> str:
    """The generated Triton module for `plan`, as source text."""
    return build(plan).source


