"""The static speed model's figures for benchmarks/RESULTS.md: per example, precision and target,
for the product's module (v2, with v1 kernels where v2 does not cover a stage) and for the v1
generator alone ("before"). A MODEL from counted SASS, not a measurement.

    python benchmarks/model_table.py [--examples cntk_gap_d3,...] [--generators v2,v1] [--out DIR]
    python benchmarks/model_table.py --table DIR     # the markdown tables from saved JSON

Each (example, generator) is what `ntkc compile examples/E.arch --emit report --json` prints
(v1: the same model run on the v1 generator's module); the JSON goes to DIR/model_<gen>_<E>.json.
No GPU is needed (ahead-of-time compiles); it runs under whatever triton is importable, e.g.
PYTHONPATH=/path/to/unpacked/triton-3.6:. for Triton 3.6 (the JSON records the version).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["cntk_gap_d3", "cntk_gap_d11", "cntk_gap_d21", "cntk_v_d21", "wrn_gap_d10"]
TARGETS = {("cntk_gap_d21", "float32", "sm_90"): "≥ 20,000 (aim 30,000)", ("cntk_gap_d21", "float64", "sm_90"): "≥ 5,000"}


def run(examples, generators, out: Path, workers: int) -> None:
    sys.path.insert(0, str(ROOT))
    from ntkc.backends.triton.speed_model import model
    out.mkdir(parents=True, exist_ok=True)
    for name in examples:
        path = ROOT / "examples" / f"{name}.arch"
        for gen in generators:
            t0 = time.perf_counter()
            m = model(path.read_text(), f"examples/{name}.arch", workers=workers, generator=gen)
            (out / f"model_{gen}_{name}.json").write_text(json.dumps(m, indent=1, default=str))
            print(f"{name} {gen}: {m['predicted_pairs_per_s']} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)


def _load(folder: Path, gen: str, name: str):
    p = folder / f"model_{gen}_{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _stage0(m, arch, dtype):
    ks = [k for k in m["kernels"] if k["arch"] == arch and k["dtype"] == dtype]
    return ks[0] if ks else None


def _classes(d) -> str:
    if not d:
        return "- (no loop)"
    return f"{d['total']}: " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "total")


def table(folder: Path, examples) -> str:
    out = ["| example | dtype, target | target | v1 pairs/s (bound) | v2 pairs/s (bound) | v2 limit | instr / entry-layer, "
           "whole program, v1 → v2 | v2 stage 0 hot loop / entry-layer | v2 stage 0 regs / spill B | kernels (v2) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name in examples:
        m2, m1 = _load(folder, "v2", name), _load(folder, "v1", name)
        if not m2:
            continue
        kinds = "+".join(dict.fromkeys(k["kind"] for k in m2["kernels"]))
        for arch in m2["predicted_pairs_per_s"]:
            for dtype in m2["predicted_pairs_per_s"][arch]:
                p2 = m2["predicted_pairs_per_s"][arch][dtype]
                b2 = m2["predicted_pairs_per_s_at_bound"][arch][dtype]
                t2 = m2["totals"][arch][dtype]["per_entry_layer"]
                k0 = _stage0(m2, arch, dtype)
                if m1:
                    p1 = m1["predicted_pairs_per_s"][arch][dtype]
                    b1 = m1["predicted_pairs_per_s_at_bound"][arch][dtype]
                    t1 = m1["totals"][arch][dtype]["per_entry_layer"]
                    before = f"{p1:,} ({b1:,})"
                    w1 = f"{t1['total']:.0f}" if t1 else "-"
                else:
                    before, w1 = "-", "-"
                w2 = f"{t2['total']:.1f}" if t2 else "-"
                out.append(f"| {name} | {dtype} {arch} | {TARGETS.get((name, dtype, arch), '')} | {before} | "
                           f"**{p2:,}** ({b2:,}) | {m2['limits'][arch][dtype]['limit']} | {w1} → {w2} | "
                           f"{_classes(k0['hot_per_entry_layer'])} | {k0['registers']} / {k0['spills']} | {kinds} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", default=",".join(EXAMPLES))
    ap.add_argument("--generators", default="v2,v1")
    ap.add_argument("--out", default="model_results", help="folder for the JSON (default ./model_results)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--table", help="print the markdown table from the JSON in this folder, and stop")
    a = ap.parse_args(argv)
    examples = a.examples.split(",")
    if a.table:
        print(table(Path(a.table), examples))
        return 0
    run(examples, a.generators.split(","), Path(a.out), a.workers)
    print(table(Path(a.out), examples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
