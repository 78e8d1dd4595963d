"""Gram-store throughput on this machine: tiles and pairs per second, in memory, into a store in
this process, and into a store through Ray (a local cluster with one worker per core).

    python benchmarks/store_bench.py            # prints a markdown table
    python benchmarks/store_bench.py --no-ray   # without Ray

Each configuration computes the symmetric Gram matrix of N random 32x32x3 images with the torch
backend in float32, three times, into a fresh store each time (assembly of the memory-mappable
matrices included). Ray's cluster start is paid once, before the timed runs, and reported apart.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [  # (example, images, tile)
    ("cntk_v_d3", 512, 128),
    ("cntk_v_d21", 256, 64),
    ("cntk_gap_d3", 24, 8),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="run only configurations whose example name contains this")
    args = ap.parse_args()

    import torch

    import ntkc

    modes = ["memory", "store (local)"] + ([] if args.no_ray else ["store (ray)"])
    ray_start = None
    if not args.no_ray:
        import ray
        t = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t
    rows = []
    for example, n, tile in CONFIGS:
        if args.only and args.only not in example:
            continue
        k = ntkc.compile(ROOT / "examples" / f"{example}.arch")
        x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).numpy()
        k(x[:4], dtype=torch.float32, backend="torch")  # warm-up
        pairs = n * (n + 1) // 2
        tiles = (n // tile) * (n // tile + 1) // 2
        for mode in modes:
            rates = []
            for _ in range(args.repeats):
                folder = Path(tempfile.mkdtemp(prefix="ntkc-bench-"))
                try:
                    start = time.perf_counter()
                    if mode == "memory":
                        k(x, dtype=torch.float32, backend="torch")
                    else:
                        ntkc.gram_store(k, folder / "s", x, dtype="float32", backend="torch", tile=tile,
                                        executor="ray" if "ray" in mode else "local")
                    rates.append(pairs / (time.perf_counter() - start))
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
            med = statistics.median(rates)
            rows.append((example, n, tile, tiles, mode, med, med * tiles / pairs, rates))
            print(f"{example} {mode}: {med:.1f} pairs/s", flush=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {time.strftime('%Y-%m-%d')}"
          + (f"; Ray local cluster start {ray_start:.1f} s (not in the rates)" if ray_start else ""))
    print("\n| network | images (pairs) | tile (tiles) | mode | pairs/s (median) | tiles/s | runs |")
    print("|---|---|---|---|---|---|---|")
    for example, n, tile, tiles, mode, med, tps, rates in rows:
        runs = ", ".join(f"{r:.0f}" if r >= 100 else f"{r:.1f}" for r in rates)
        print(f"| {example} | {n} ({n * (n + 1) // 2}) | {tile} ({tiles}) | {mode} | {med:.1f} | "
              f"{tps:.2f} | {runs} |" if mode != "memory" else
              f"| {example} | {n} ({n * (n + 1) // 2}) | - | {mode} | {med:.1f} | - | {runs} |")


if __name__ == "__main__":
    main()
