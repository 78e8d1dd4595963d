"""`ntkc compile F --emit report [--json]`: the generated kernels compiled ahead of time for sm_80
and sm_90 in float32 and float64 (no GPU needed), with registers, spills, instructions per
entry-layer by class and the predicted pairs/s of the static speed model (`speed_model`), its
inputs and assumptions stated. Every figure of it is a model, not a measurement.
"""
from __future__ import annotations

import json

from .speed_model import EFFICIENCY, GPUS, model

ARCHS = (90, 80)


def build_report(network, archs=ARCHS, dtypes=("float32", "float64"), workers: int = 2) -> dict:
    """The model of a checked `Network` (what `--emit report --json` prints)."""
    return model(network.source, network.filename, archs, dtypes, workers)


def to_json(m: dict) -> str:
    return json.dumps(m, indent=1, default=str)


def _classes(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['total']:.1f} (" + ", ".join(f"{k} {v}" for k, v in d.items() if k != "total") + ")"


def format_report(m: dict) -> str:
    """The report as text: inputs and assumptions, one row per kernel, target and dtype, totals."""
    out = [f"{m['file']}: static speed model (triton {m['triton']}): A MODEL FROM COUNTED SASS, NOT A MEASUREMENT",
           "",
           "inputs and assumptions:",
           "  each kernel compiled ahead of time with the launcher's GPU program shape, fp fusion on; registers and",
           "  spills from ptxas -v; SASS from nvdisasm; loops weighted by their trip counts; each warp-instruction",
           "  counted once per execution (predicated-off ones too)",
           f"  time per pair = max over issue, pipes and L2 bytes of count / rate; pairs/s = SMs x clock / time x "
           f"{EFFICIENCY:.0%} (assumed sustained efficiency)"]
    for arch, g in GPUS.items():
        r = g["rates"]
        out.append(f"  {arch} = {g['name']}: {g['sms']} SMs x {g['clock_ghz']} GHz, L2 {g['l2_tb_s']} TB/s; "
                   "warp-instructions / SM / clock: " + ", ".join(f"{k} {v:g}" for k, v in r.items()))
    out.append("  not modelled: latency, occupancy, barrier and shared-memory stalls, spill traffic, the image program")
    out.append("  'instr / entry-layer': lane-instructions per pair / (entries of the stage x its conv layers), by class")
    out.append("")
    head = (f"  {'kernel':<14} {'kind':<10} {'target':<6} {'dtype':<8} {'warps':>5} {'regs':>4} {'spill B':>7} "
            f"{'compile s':>9}  instr / entry-layer (whole kernel; hot loop)")
    out.append(head)
    for k in m["kernels"]:
        out.append(f"  {k['kernel']:<14} {k['kind']:<10} {k['arch']:<6} {k['dtype']:<8} {k['num_warps']:>5} "
                   f"{k['registers']:>4} {k['spills']:>7} {k['compile_s']:>9}  {_classes(k['per_entry_layer'])}")
        if k["hot_per_entry_layer"]:
            out.append(f"  {'':<14} {'':<10} {'':<6} {'':<8} {'':>5} {'':>4} {'':>7} {'':>9}  hot loop: "
                       f"{_classes(k['hot_per_entry_layer'])}")
        out.append(f"  {'':<14} {'':<10} {'':<6} {'':<8}   ({k['notes']})")
        for p in k["problems"]:
            out.append(f"      ! {p}")
    out.append("")
    out.append("total per pair (all kernels), predicted by the model:")
    for arch, per in m["predicted_pairs_per_s"].items():
        for dtype, v in per.items():
            lim = m["limits"][arch][dtype]
            tot = m["totals"][arch][dtype]
            cyc = ", ".join(f"{c} {n:,}" for c, n in lim["cycles_per_pair_per_sm"].items())
            out.append(f"  {arch} {dtype}: {v:,} pairs/s (model; {m['predicted_pairs_per_s_at_bound'][arch][dtype]:,} "
                       f"at the bound, limited by {lim['limit']}); registers <= {tot['registers']}, "
                       f"spills {tot['spills']} B; instr / entry-layer {_classes(tot['per_entry_layer'])}")
            out.append(f"      cycles per pair per SM: {cyc}")
    return "\n".join(out)
