"""CPU benchmark of the torch backend: pairs per second and peak memory.

    python benchmarks/cpu_bench.py                 # the standard set, prints a markdown table
    python benchmarks/cpu_bench.py --quick         # fewer images and repeats

Each configuration runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its
own. A run computes the symmetric Gram matrix of N random 32x32x3 images (each unordered pair
once, variance maps included), after one warm-up run on fewer images. The table reports the
median over repeats. The reference on this machine class (2 cores) is neural-tangents: depth-3
CNTK-GAP at about 5.6 pairs/s in float64 with jit, 4.4 GB peak (DESIGN.md section 3).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [  # (example, images, dtype)
    ("cntk_gap_d3", 12, "float32"),
    ("cntk_gap_d3", 12, "float64"),
    ("cntk_gap_d11", 6, "float32"),
    ("cntk_gap_d11", 6, "float64"),
    ("cntk_v_d21", 96, "float32"),
    ("cntk_v_d21", 96, "float64"),
]


def child(example: str, n: int, dtype: str, repeats: int, memory: int | None, fuse: bool) -> None:
    import resource

    import torch

    import ntkc

    dt = getattr(torch, dtype)
    k = ntkc.compile(ROOT / "examples" / f"{example}.arch")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    start = time.perf_counter()
    k(x[: max(2, n // 4)], dtype=dt, backend="torch", memory=memory, fuse=fuse)  # warm-up (and compile)
    warmup = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        r = k(x, dtype=dt, backend="torch", memory=memory, fuse=fuse)
        rates.append(r.pairs / (time.perf_counter() - start))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"example": example, "n": n, "dtype": dtype, "pairs": r.pairs, "rates": rates,
                      "peak_bytes": peak, "threads": torch.get_num_threads(), "fuse": fuse,
                      "warmup_s": warmup}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="run only examples whose name contains this")
    ap.add_argument("--memory", type=int, help="working memory in bytes for pair batches")
    ap.add_argument("--fuse", choices=("both", "eager", "compiled"), default="both",
                    help="run eagerly, with the torch.compile'd pair program, or both (default)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--child-fuse", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], args.repeats, args.memory, args.child_fuse)
        return
    rows = []
    modes = {"both": (False, True), "eager": (False,), "compiled": (True,)}[args.fuse]
    for (example, n, dtype), fuse in ((c, f) for c in CONFIGS for f in modes):
        if args.only and args.only not in example:
            continue
        if args.quick:
            n = max(2, n // 2)
        cmd = [sys.executable, __file__, "--child", example, str(n), dtype,
               "--repeats", str(1 if args.quick else args.repeats)]
        if args.memory:
            cmd += ["--memory", str(args.memory)]
        if fuse:
            cmd.append("--child-fuse")
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(f"{example} {dtype} failed")
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(res)
        print(f"{example} {dtype} {'compiled' if fuse else 'eager'}: {statistics.median(res['rates']):.1f} pairs/s "
              f"(runs: {', '.join(f'{r:.1f}' for r in res['rates'])}), peak {res['peak_bytes'] / 2**30:.2f} GiB",
              file=sys.stderr)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {rows[0]['threads'] if rows else '?'} threads, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    print("| network | dtype | mode | images (pairs) | pairs/s (median) | runs | peak memory | warm-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mode = "torch.compile" if r["fuse"] else "eager"
        print(f"| {r['example']} | {r['dtype']} | {mode} | {r['n']} ({r['pairs']}) | {statistics.median(r['rates']):.1f} | "
              f"{', '.join(f'{x:.1f}' for x in r['rates'])} | {r['peak_bytes'] / 2**30:.2f} GiB | {r['warmup_s']:.0f} s |")


if __name__ == "__main__":
    main()
