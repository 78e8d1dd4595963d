"""A static speed model of the generated kernels: SASS counted per class, loops weighted by their
trip counts, divided by the GPU's issue and pipe rates. A MODEL, not a measurement; no GPU has
calibrated it yet (benchmarks/gpu_check.py prints measured beside predicted).

How it counts (every input is printed by `ntkc compile F --emit report`, and is in its JSON):
1. Each kernel is compiled ahead of time for sm_80 / sm_90 in float32 / float64 with the program
   shape the launcher uses on a GPU (`aot.gpu_shape`), fp fusion on, and disassembled with the
   wheel's nvdisasm; `ptxas -v` on the same PTX gives registers and spills.
2. Loops are matched with the source's run-time loops and weighted by their trips (`sass`).
3. Per pair: warp-instructions x warps per program x programs per pair (v2: tiles per pair /
   tiles per program; epilogue: 1 / BLOCK_P; v1: item blocks per pair, counting the body of its
   persistent loop once per item block).
4. Time per pair on one SM = max over resources of count / rate: issue (every instruction), FP32,
   FP64, MUFU, ALU, IMAD, SHFL, LSU, conversions (warp-instructions per SM per clock), and L2
   bytes (v2: variance maps and images once per program, the warps of a program share lines in
   L1; v1: per-pair copies once per item). pairs/s = SMs x clock / that time, at the bound and at
   an assumed sustained EFFICIENCY (80%): latencies, occupancy, barrier and shared-memory stalls
   are not modelled, so the figure is optimistic wherever they matter (Triton 3.6's layout
   conversions, float64 spills).
"""
from __future__ import annotations

import collections
import time
from dataclasses import asdict, dataclass

from ...plan.lower import Stage, _entries
from . import aot, sass
from .coverage import Kind
from .records import conv_layers_per_rep, count_activations

GPUS = {
    "sm_90": {"name": "H100 SXM5", "sms": 132, "clock_ghz": 1.98, "l2_tb_s": 5.5,
              # warp-instructions per SM per clock, by pipe (CUDA C++ Programming Guide, arithmetic
              # instruction throughput, compute capability 9.0; LSU: 32 lanes of 32 bits per clock)
              "rates": {"issue": 4.0, "fp32": 4.0, "fp64": 2.0, "mufu": 0.5, "alu": 2.0, "imad": 2.0,
                        "shfl": 1.0, "lsu": 1.0, "conv": 0.5, "uniform": 4.0, "branch": 4.0}},
    "sm_80": {"name": "A100 SXM4", "sms": 108, "clock_ghz": 1.41, "l2_tb_s": 4.0,
              "rates": {"issue": 4.0, "fp32": 2.0, "fp64": 1.0, "mufu": 0.5, "alu": 2.0, "imad": 2.0,
                        "shfl": 1.0, "lsu": 1.0, "conv": 0.5, "uniform": 4.0, "branch": 4.0}},
}
EFFICIENCY = 0.80
ASSUMPTIONS = {
    "label": "a static model from counted SASS, not a measurement (no GPU has calibrated it)",
    "efficiency": EFFICIENCY,
    "counting": "each warp-instruction once per execution (predicated-off ones too); loops x trip counts "
                "matched with the source's run-time loops; per pair = per warp x warps x programs per pair",
    "time": "max over issue, pipes and L2 bytes of count / rate; pairs/s = SMs x clock / time x efficiency",
    "not_modelled": "latency, occupancy, barrier and shared-memory stalls, spill traffic beyond its "
                    "instructions, launch overheads, the image program (variance maps)",
    "l2": "variance maps and images once per program (v2), per-pair copies once per item (v1)",
}


@dataclass
class KernelCount:
    """One kernel compiled for one target and dtype: resources, counts per pair, the hot loop."""

    kernel: str
    kind: str
    arch: str
    dtype: str
    num_warps: int
    registers: int
    spills: int
    shared: int
    warp_instr_per_pair: dict        # class -> warp-instructions per pair
    l2_bytes_per_pair: float
    entries: int                     # demanded entries per pair of the stage's maps (0 after a full sum)
    layers: int                      # conv layers of the stage (unrolled)
    hot: dict | None                 # the hot loop's body by class
    hot_entries: int                 # entries per lane-instruction of the hot loop body (its rows)
    hot_layers: int                  # conv layers per hot-loop repetition
    problems: list
    notes: str = ""
    compile_s: float = 0.0

    def per_entry_layer(self) -> dict | None:
        """Lane-instructions per pair / (entries x conv layers), by class: the whole kernel."""
        if not self.entries or not self.layers:
            return None
        n = self.entries * self.layers / 32.0
        d = {k: round(v / n, 2) for k, v in sorted(self.warp_instr_per_pair.items(), key=lambda kv: -kv[1])}
        d["total"] = round(sum(self.warp_instr_per_pair.values()) / n, 2)
        return d

    def hot_per_entry_layer(self) -> dict | None:
        """The hot loop's body per entry and conv+activation layer, by class."""
        if not self.hot or not self.hot_layers:
            return None
        n = self.hot_entries * self.hot_layers
        d = {k: round(v / n, 2) for k, v in sorted(self.hot["classes"].items(), key=lambda kv: -kv[1])}
        d["total"] = round(self.hot["instructions"] / n, 2)
        return d


def _item(dtype: str) -> int:
    return 4 if dtype == "float32" else 8


def _stage_size(info, draft) -> tuple[int, int]:
    """(entries per pair on the stage's maps, conv layers) of a kernel's stage."""
    steps = [s for s in draft.steps if s.window is not None and not s.window.mixes
             and not s.layer.out_shape.reduced and s.layer.out_shape.height * s.layer.out_shape.width > 1]
    if not steps:
        return 0, 0
    return _entries(steps[0].demand_out), len(steps)


def count_kernel(gen, module, info, draft, dtype: str, arch: int) -> KernelCount:
    """Compile, disassemble and count one kernel of a generated module."""
    problems: list[str] = []
    t0 = time.perf_counter()
    compiled, shape = aot.compile_info(module, gen, info, dtype, arch)
    seconds = time.perf_counter() - t0
    res = aot.resources(compiled, arch)
    instrs, labels = sass.parse(aot.disassemble(compiled))
    roots = sass.sass_loops(instrs, labels)
    src = sass.source_loops(gen.source, info.name, dict(shape.constexprs))
    pairs = sass.match(roots, src, problems)
    window = None
    hot_entries, hot_layers = 1, 1
    item = _item(dtype)
    if info.kind is Kind.LEGACY:
        persistent = [(a, b) for a, b in pairs if b.trips == "n_iters"]
        if persistent:
            window = (persistent[0][0].start, persistent[0][0].end)
        else:
            problems.append("no persistent loop found: the whole kernel counted once per item block")
        spec = info.legacy
        l2 = spec.planes * spec.positions * 4 * item
    elif info.kind is Kind.CIRCULANT:
        p = info.plan
        l2 = shape.programs_per_pair * (count_activations(p.ops) * 2 + 2 * p.channels) * p.height * p.width * item
        hot_entries, hot_layers = p.height, conv_layers_per_rep(p.ops)
    else:
        l2 = 2 * shape.constexprs["N_PARTS"] * item
    counts = sass.weighted_counts(instrs, pairs, {"n_iters": 1}, problems, window)
    per_pair = {k: v * shape.num_warps * shape.programs_per_pair for k, v in counts.items()}
    hot = sass.hot_loop(instrs, roots) if info.kind is Kind.CIRCULANT else None
    entries, layers = _stage_size(info, draft)
    return KernelCount(info.name, info.kind.value, f"sm_{arch}", dtype, shape.num_warps, res["registers"],
                       res["spill_stores"] + res["spill_loads"], res["shared"], per_pair, l2, entries, layers, hot,
                       hot_entries, hot_layers, problems, shape.notes, round(seconds, 2))


def predict(counts: list[KernelCount], arch: str) -> dict:
    """Cycles per pair per SM by resource, the limiting one, and pairs/s at the bound and at EFFICIENCY."""
    g = GPUS[arch]
    rates = g["rates"]
    total: collections.Counter = collections.Counter()
    l2 = 0.0
    for c in counts:
        total.update(c.warp_instr_per_pair)
        l2 += c.l2_bytes_per_pair
    cycles = {"issue": sum(total.values()) / rates["issue"]}
    for cls, n in total.items():
        if cls in rates and cls != "issue":
            cycles[cls] = cycles.get(cls, 0.0) + n / rates[cls]
    clock = g["clock_ghz"] * 1e9
    cycles["l2"] = l2 / (g["l2_tb_s"] * 1e12 / g["sms"] / clock)
    limit = max(cycles, key=cycles.get)
    peak = g["sms"] * clock / cycles[limit]
    return {"pairs_per_s_at_bound": peak, "pairs_per_s": peak * EFFICIENCY, "limit": limit,
            "cycles_per_pair_per_sm": cycles, "warp_instr_per_pair": dict(total), "l2_bytes_per_pair": l2}


GENERATORS = ("v2", "v1")  # v2: the product's module (v1 kernels where v2 does not cover); v1: v1 only


def _module(plan, generator: str):
    from .module import build, build_v1
    return build(plan) if generator == "v2" else build_v1(plan)


def jobs(plan, archs=(90, 80), dtypes=("float32", "float64"), generator: str = "v2") -> list[tuple[int, str, int]]:
    """(kernel index, dtype, arch) of every compile the model needs."""
    n = len(_module(plan, generator).kernels)
    return [(k, d, a) for a in archs for d in dtypes for k in range(n)]


def count_job(source: str, filename: str, index: int, dtype: str, arch: int, generator: str = "v2") -> KernelCount:
    """One compile of the model, from an architecture's source (for worker processes)."""
    from ...lang.network import build as build_network
    from ...plan.lower import lower
    from . import codecache
    from .drafts import _drafts
    plan = lower(build_network(source, filename))
    gen = _module(plan, generator)
    module = codecache.load(gen.source, gen.module_name)
    draft = _drafts(plan.pair, plan.network)[index]
    return count_kernel(gen, module, gen.kernels[index], draft, dtype, arch)


def _run_job(job) -> KernelCount:
    return count_job(*job)


def count_many(work: list[tuple], workers: int = 2) -> list[KernelCount]:
    """`count_job` over (source, filename, index, dtype, arch) jobs, in `workers` processes (spawned
    without TRITON_INTERPRET, so this works from a process that runs the interpreter)."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    old = os.environ.pop("TRITON_INTERPRET", None)
    try:
        if workers <= 1 and old is None:
            return [_run_job(j) for j in work]
        with ProcessPoolExecutor(max(1, workers), mp_context=mp.get_context("spawn")) as pool:
            return list(pool.map(_run_job, work))
    finally:
        if old is not None:
            os.environ["TRITON_INTERPRET"] = old


def model(source: str, filename: str, archs=(90, 80), dtypes=("float32", "float64"), workers: int = 2,
          counts: list[KernelCount] | None = None, generator: str = "v2") -> dict:
    """The model of one architecture (its `.arch` source): every kernel counted for every target
    and dtype, and the predictions; a JSON-ready dict."""
    import triton

    from ...lang.network import build as build_network
    from ...plan.lower import lower
    plan = lower(build_network(source, filename))
    if counts is None:
        counts = count_many([(source, filename, k, d, a, generator)
                             for k, d, a in jobs(plan, archs, dtypes, generator)], workers)
    out = {"file": filename, "generator": generator, "model": ASSUMPTIONS["label"], "triton": triton.__version__,
           "assumptions": {**ASSUMPTIONS, "gpus": GPUS}, "kernels": [], "predicted_pairs_per_s": {},
           "predicted_pairs_per_s_at_bound": {}, "limits": {}, "totals": {}}
    for arch in archs:
        name = f"sm_{arch}"
        for key in ("predicted_pairs_per_s", "predicted_pairs_per_s_at_bound", "limits", "totals"):
            out[key][name] = {}
        for dtype in dtypes:
            mine = [c for c in counts if c.arch == name and c.dtype == dtype]
            pred = predict(mine, name)
            out["predicted_pairs_per_s"][name][dtype] = round(pred["pairs_per_s"])
            out["predicted_pairs_per_s_at_bound"][name][dtype] = round(pred["pairs_per_s_at_bound"])
            out["limits"][name][dtype] = {
                "limit": pred["limit"], "l2_bytes_per_pair": round(pred["l2_bytes_per_pair"]),
                "cycles_per_pair_per_sm": {k: round(v, 1) for k, v in pred["cycles_per_pair_per_sm"].items()}}
            out["totals"][name][dtype] = _totals(mine)
            for c in mine:
                d = asdict(c)
                d["per_entry_layer"] = c.per_entry_layer()
                d["hot_per_entry_layer"] = c.hot_per_entry_layer()
                out["kernels"].append(d)
    return out


def _totals(counts: list[KernelCount]) -> dict:
    """The whole program: largest register count, all spills, instructions per entry-layer."""
    total: collections.Counter = collections.Counter()
    for c in counts:
        total.update(c.warp_instr_per_pair)
    n = sum(c.entries * c.layers for c in counts) / 32.0
    per = ({k: round(v / n, 2) for k, v in sorted(total.items(), key=lambda kv: -kv[1])} if n else None)
    if per is not None:
        per["total"] = round(sum(total.values()) / n, 2)
    return {"registers": max((c.registers for c in counts), default=0), "spills": sum(c.spills for c in counts),
            "warp_instr_per_pair": round(sum(total.values())), "per_entry_layer": per}
