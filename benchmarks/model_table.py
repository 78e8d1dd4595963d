"""The static speed model's figures for benchmarks/RESULTS.md: per example, precision and target,
for the product's module (v2, with v1 kernels where v2 does not cover a stage) and for the v1
generator alone ("before"). A MODEL from counted SASS, not a measurement.

    python benchmarks/model_table.py [--examples cntk_gap_d3,...] [--generators v2,v1] [--out DIR]
    python benchmarks/model_table.py --table DIR     # the markdown tables from saved JSON
    python benchmarks/model_table.py --table DIR --scale 50000,10000 --gpus 1,8,64   # docs/scale.md

The tables: which generator runs each example's stages and why (from the module's coverage
decisions, no compile); the model before (v1) and after (v2) with the count's breakdown; with
--scale, the model's time for a Gram matrix of N_TRAIN training and N_TEST test images on each
number of GPUs (train x train counted once per unordered pair, plus test x train).

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
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.arch"))
SCALE = ["cntk_gap_d3", "cntk_gap_d11", "cntk_gap_d21", "cntk_v_d21", "wrn_gap_d10", "myrtle5", "myrtle7", "myrtle10"]
TARGETS = {("cntk_gap_d21", "float32", "sm_90"): "≥ 20,000 (aim 30,000)", ("cntk_gap_d21", "float64", "sm_90"): "≥ 5,000"}


def run(examples, generators, out: Path, workers: int, archs=(90, 80)) -> None:
    sys.path.insert(0, str(ROOT))
    from ntkc.backends.triton.speed_model import model
    out.mkdir(parents=True, exist_ok=True)
    for name in examples:
        path = ROOT / "examples" / f"{name}.arch"
        for gen in generators:
            t0 = time.perf_counter()
            m = model(path.read_text(), f"examples/{name}.arch", archs=archs, workers=workers, generator=gen)
            (out / f"model_{gen}_{name}.json").write_text(json.dumps(m, indent=1, default=str))
            print(f"{name} {gen}: {m['predicted_pairs_per_s']} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)


def _load(folder: Path, gen: str, name: str):
    p = folder / f"model_{gen}_{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _stage0(m, arch, dtype):
    ks = [k for k in m["kernels"] if k["arch"] == arch and k["dtype"] == dtype]
    return ks[0] if ks else None


def _classes(d, empty: str = "- (no loop)") -> str:
    if not d:
        return empty
    return f"{d['total']}: " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "total")


def kinds_table(examples) -> str:
    """Which generator each stage of each example runs on, and the coverage rule's reason."""
    sys.path.insert(0, str(ROOT))
    import ntkc
    from ntkc.backends.triton.module import build
    out = ["| example | input map | kernels (one per stage) | why |", "|---|---|---|---|"]
    for name in examples:
        k = ntkc.compile(ROOT / "examples" / f"{name}.arch")
        kernels = build(k.plan).kernels
        why = "; ".join(dict.fromkeys(f"{g.kind.value}: {g.decision.reason}" for g in kernels))
        net = k.arch.input
        out.append(f"| {name} | {net.height}x{net.width}x{net.channels} | "
                   f"{'+'.join(g.kind.value for g in kernels)} | {why} |")
    return "\n".join(out)


def table(folder: Path, examples) -> str:
    out = ["| example | dtype, target | target | v1 pairs/s (bound) | v2 pairs/s (bound) | v2 limit | instr / entry-layer, "
           "whole program, v1 → v2 | v2 whole program by class | v2 stage 0 hot loop / entry-layer | "
           "v2 regs (max) / spill B (all kernels) | v1 whole program by class | v1 regs / spill B | kernels (v2) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in examples:
        m2, m1 = _load(folder, "v2", name), _load(folder, "v1", name)
        if not m2:
            out.append(f"| {name} | not counted | | | | | | | | | | | |")
            continue
        kinds = "+".join(dict.fromkeys(k["kind"] for k in m2["kernels"]))
        for arch in m2["predicted_pairs_per_s"]:
            for dtype in m2["predicted_pairs_per_s"][arch]:
                p2 = m2["predicted_pairs_per_s"][arch][dtype]
                b2 = m2["predicted_pairs_per_s_at_bound"][arch][dtype]
                tot2 = m2["totals"][arch][dtype]
                t2 = tot2["per_entry_layer"]
                k0 = _stage0(m2, arch, dtype)
                if m1:
                    p1 = m1["predicted_pairs_per_s"][arch][dtype]
                    b1 = m1["predicted_pairs_per_s_at_bound"][arch][dtype]
                    tot1 = m1["totals"][arch][dtype]
                    t1 = tot1["per_entry_layer"]
                    before = f"{p1:,} ({b1:,})"
                    w1 = f"{t1['total']:.0f}" if t1 else "-"
                    c1, r1 = _classes(t1, "-"), f"{tot1['registers']} / {tot1['spills']}"
                else:
                    before, w1, c1, r1 = "-", "-", "-", "-"
                w2 = f"{t2['total']:.1f}" if t2 else "-"
                out.append(f"| {name} | {dtype} {arch} | {TARGETS.get((name, dtype, arch), '')} | {before} | "
                           f"**{p2:,}** ({b2:,}) | {m2['limits'][arch][dtype]['limit']} | {w1} → {w2} | "
                           f"{_classes(t2, '-')} | {_classes(k0['hot_per_entry_layer'])} | "
                           f"{tot2['registers']} / {tot2['spills']} | {c1} | {r1} | {kinds} |")
    return "\n".join(out)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def scale_table(folder: Path, examples, n_train: int, n_test: int, gpus, arch: str = "sm_90") -> str:
    """The model's wall time for train x train (unordered pairs) + test x train on G GPUs:
    pairs / (G x predicted pairs/s), kernels only (image program, transfers and tile writes not
    included; perfect scaling over GPUs assumed)."""
    pairs = n_train * (n_train + 1) // 2 + n_test * n_train
    out = [f"{pairs:,} pairs ({n_train:,} x {n_train:,} unordered + {n_test:,} x {n_train:,}); model for {arch}",
           "", "| example | dtype | model pairs/s per GPU | GPU-hours | " + " | ".join(f"{g} GPU{'s' * (g > 1)}" for g in gpus)
           + " |", "|---|---|---|---|" + "---|" * len(gpus)]
    for name in examples:
        m = _load(folder, "v2", name)
        if not m or arch not in m["predicted_pairs_per_s"]:
            continue
        for dtype, rate in m["predicted_pairs_per_s"][arch].items():
            t = pairs / rate
            out.append(f"| {name} | {dtype} | {rate:,} | {t / 3600:,.2g} | "
                       + " | ".join(_duration(t / g) for g in gpus) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", default=",".join(EXAMPLES))
    ap.add_argument("--generators", default="v2,v1")
    ap.add_argument("--out", default="model_results", help="folder for the JSON (default ./model_results)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--archs", default="90,80", help="targets to count (default 90,80)")
    ap.add_argument("--table", help="print the markdown tables from the JSON in this folder, and stop")
    ap.add_argument("--scale", help="N_TRAIN,N_TEST: with --table, only the time of such a Gram matrix")
    ap.add_argument("--gpus", default="1,8,64", help="with --scale: numbers of GPUs (default 1,8,64)")
    a = ap.parse_args(argv)
    examples = a.examples.split(",")
    if a.scale:
        n_train, n_test = (int(x) for x in a.scale.split(","))
        gpus = [int(g) for g in a.gpus.split(",")]
        names = [e for e in SCALE if e in examples] if a.examples == ",".join(EXAMPLES) else examples
        print(scale_table(Path(a.table or a.out), names, n_train, n_test, gpus))
        return 0
    if not a.table:
        run(examples, a.generators.split(","), Path(a.out), a.workers, tuple(int(x) for x in a.archs.split(",")))
    folder = Path(a.table or a.out)
    triton = {m["triton"] for e in examples for g in ("v2", "v1") if (m := _load(folder, g, e))}
    print(f"Counted with triton {', '.join(sorted(triton))}. A MODEL from counted SASS, not a measurement.\n")
    print(kinds_table(examples))
    print()
    print(table(folder, examples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
