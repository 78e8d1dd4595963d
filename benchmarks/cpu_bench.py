"""CPU benchmark: the numba backend, the torch backend (eager and torch.compile) and
neural-tangents, in one run.

    python benchmarks/cpu_bench.py                    # the standard set, markdown tables
    python benchmarks/cpu_bench.py --quick            # 3 repeats, no compile-time table
    python benchmarks/cpu_bench.py --fused            # also torch.compile (fuse=True), slow to warm up
    python benchmarks/cpu_bench.py --only digits      # configurations whose example contains this
    python benchmarks/cpu_bench.py --nt-python /work/venv-nt/bin/python   # where neural-tangents is

Each configuration computes a kernel block with `CompiledKernel.__call__` (the tiling engine,
variance maps included): `n x n` is K(x1, x2) with x1 != x2, `sym n` the symmetric Gram matrix
of n images (each unordered pair once). The backends run round-robin, one run each per repeat,
after a warm-up that compiles (numba from its disk cache when present, torch.compile), so drift
on a shared machine hits all of them alike; the table reports medians, and only ratios within
one run mean much. neural-tangents is never imported here: it runs in a child process of the
Python given by --nt-python (its own virtual environment; skipped where that does not exist), on
the same images, jitted, with `jax_enable_x64` for float64; its network is the example's
CNTK-GAP without the frozen layers (which change nothing in its cost).

"numba-copies" is the numba backend fed the old way (per-pair copies of images and maps,
`gather_pairs`, before the indexed `Backend.pairs` of issue 14), to measure what the indexed
protocol saves. The compile-time table builds each example's numba backend in a fresh process
with an empty cache folder (cold: generate, compile, write the cache) and then again in a second
fresh process on the same folder (cached: load), numba's import included.

The x-neural-tangents columns are ratios of medians in the same run: against neural-tangents
in the same precision, and against its fastest precision on this machine (float64 here; the
issue's baseline is neural-tangents in its fastest CPU mode). For a symmetric block it computes
all n x n entries and ntkc the n(n+1)/2 of the triangle: both give the Gram matrix.

"peak used" is the pair program's count of flops (`plan.pair.flops()`) times pairs/s against the
arithmetic peak of the machine class (2 cores x 2.6 GHz x 32 single / 16 double precision flops
per cycle without FMA: 166 / 83 GFLOP/s).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK_FLOPS = {"float32": 2 * 2.6e9 * 32, "float64": 2 * 2.6e9 * 16}

# (label, example, mode, n, backends, conv layers of the neural-tangents network or None)
CONFIGS = [
    ("CNTK-GAP d3 32x32, 8x8", "cntk_gap_d3", "x2", 8, ("numba", "torch", "torch-fused", "nt"), 2),
    ("digits GAP d4, sym 96", "digits_gap", "sym", 96, ("numba", "torch", "nt"), 3),
    # 524,800 pairs: a pair of this network costs 1e4 flops, so a smaller block measures fixed costs
    ("digits V d4, sym 1024", "digits_v", "sym", 1024, ("numba", "numba-copies", "torch"), None),
    ("CNTK-V d21 32x32, sym 96", "cntk_v_d21", "sym", 96, ("numba", "torch"), None),
]

NT_CHILD = r'''
import json, sys, time
import numpy as np
import jax
args = json.loads(sys.argv[1])
if args["dtype"] == "float64":
    jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
import neural_tangents
layers = []
for _ in range(args["convs"]):
    layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=2 ** 0.5), stax.Relu()]
layers += [stax.GlobalAvgPool(), stax.Dense(1)]
_, _, kernel_fn = stax.serial(*layers)
kernel_fn = jax.jit(kernel_fn, static_argnames="get")
data = np.load(args["data"])
x1 = data["x1"].transpose(0, 2, 3, 1).astype(args["dtype"])
x2 = data["x2"].transpose(0, 2, 3, 1).astype(args["dtype"])
jax.block_until_ready(kernel_fn(x1, x2, get=("nngp", "ntk")))  # compile for these shapes
runs = []
for _ in range(args["repeats"]):
    t = time.perf_counter()
    k = kernel_fn(x1, x2, get=("nngp", "ntk"))
    jax.block_until_ready(k)
    runs.append(time.perf_counter() - t)
print(json.dumps({"runs": runs, "ntk00": float(np.asarray(k.ntk)[0, 0]), "jax": jax.__version__,
                  "neural_tangents": neural_tangents.__version__}))
'''


def _images(n, shape, seed):
    import numpy as np

    h, w, c = shape
    rng = np.random.default_rng(seed)
    return (0.5 * rng.standard_normal((1, c, h, w)) + rng.standard_normal((n, c, h, w))).astype("float32")


def _runner(k, backend, dtype, threads):
    import torch

    tdt = getattr(torch, dtype)
    name = {"torch-fused": "torch", "numba-copies": "numba"}.get(backend, backend)
    fuse = backend == "torch-fused"

    def run(x1, x2):
        if backend != "numba-copies":
            return k(x1, x2, dtype=tdt, backend=name, fuse=fuse, threads=threads)
        from ntkc.backends.base import gather_pairs
        from ntkc.backends.numba.backend import NumbaBackend

        indexed = NumbaBackend.pairs

        def copies(self, x_rows, x_cols, maps_rows, maps_cols, i, j, same, fused=False):
            xa, xb, va, vb = gather_pairs(x_rows, x_cols, maps_rows, maps_cols, i, j)
            ident = torch.arange(len(i), dtype=torch.int64)
            return indexed(self, xa, xb, va, vb, ident, ident, same)
        NumbaBackend.pairs = copies
        try:
            return k(x1, x2, dtype=tdt, backend=name, threads=threads)
        finally:
            NumbaBackend.pairs = indexed
    return run


def _nt_runner(nt_python, convs, dtype, x1, x2, repeats):
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npz")
        np.savez(path, x1=x1, x2=x2)
        arg = json.dumps({"convs": convs, "dtype": dtype, "data": path, "repeats": repeats})
        out = subprocess.run([nt_python, "-c", NT_CHILD, arg], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "neural-tangents failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _config(args, label, example, mode, n, backends, nt_convs, dtype, repeats, have_nt, nt_versions):
    import torch

    import ntkc

    k = ntkc.compile(ROOT / "examples" / f"{example}.arch")
    net = k.arch.input
    shape = (net.height, net.width, net.channels)
    x1 = _images(n, shape, 1)
    x2 = _images(n, shape, 2) if mode == "x2" else None
    t1, t2 = torch.from_numpy(x1), None if x2 is None else torch.from_numpy(x2)
    pairs = n * n if mode == "x2" else n * (n + 1) // 2
    runners, warm = {}, {}
    for b in backends:
        if b == "nt" or (b == "torch-fused" and not args.fused):
            continue
        t = time.perf_counter()
        run = _runner(k, b, dtype, args.threads)
        run(t1[:2], None if t2 is None else t2[:2])  # warm-up (and compile)
        if b == "torch-fused":
            run(t1, t2)  # the compiled program for these shapes
        warm[b] = time.perf_counter() - t
        runners[b] = run
    times = {b: [] for b in runners}
    for _ in range(repeats):
        for b, run in runners.items():
            t = time.perf_counter()
            r = run(t1, t2)
            times[b].append(time.perf_counter() - t)
            expect = name_of(b)
            if r.backend != expect:
                raise SystemExit(f"{label}: asked for {expect}, ran on {r.backend}")
    if "nt" in backends and have_nt:
        try:
            # neural-tangents' symmetric call computes the full n x n block, as ours does its triangle
            res = _nt_runner(args.nt_python, nt_convs, dtype, x1, x2 if x2 is not None else x1, repeats)
            times["neural-tangents"] = res["runs"]
            nt_versions.update(jax=res["jax"], neural_tangents=res["neural_tangents"])
        except Exception as err:  # report it, and go on with the other rows
            print(f"neural-tangents failed: {err}", file=sys.stderr)
    base_nt = statistics.median(times["neural-tangents"]) if "neural-tangents" in times else None
    base_torch = statistics.median(times["torch"]) if "torch" in times else None
    flops = k.plan.pair.flops()
    rows = []
    for b, ts in times.items():
        med = statistics.median(ts)
        rows.append({"config": label, "example": example, "dtype": dtype, "backend": b, "pairs": pairs,
                     "median_s": med, "pairs_per_s": pairs / med, "runs": ts, "warmup_s": warm.get(b),
                     "vs_nt": base_nt / med if base_nt else None, "vs_torch": base_torch / med if base_torch else None,
                     "peak_fraction": pairs / med * flops / PEAK_FLOPS[dtype] if b != "neural-tangents" else None})
        print(f"{label} {dtype} {b}: {med:.3f} s median, {pairs / med:.1f} pairs/s "
              f"(runs {', '.join(f'{x:.3f}' for x in ts)})", file=sys.stderr, flush=True)
    return rows


def name_of(b: str) -> str:
    """The backend a benchmark row runs on."""
    return {"torch-fused": "torch", "numba-copies": "numba"}.get(b, b)


COMPILE_CHILD = r'''
import sys, time
import torch, ntkc
k = ntkc.compile(sys.argv[1])
t = time.perf_counter()
b = k.backend("numba", getattr(torch, sys.argv[2]))
assert b.name == "numba", b.name
print(time.perf_counter() - t)
'''


def compile_times(example: str, dtype: str) -> tuple[float, float]:
    """Seconds to build the numba backend of `example` in a fresh process: with an empty cache
    folder (cold), then again on that folder (cached)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NTKC_CACHE_DIR=tmp)
        out = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", COMPILE_CHILD, str(ROOT / "examples" / f"{example}.arch"), dtype],
                               env=env, capture_output=True, text=True, check=True)
            out.append(float(r.stdout.split()[-1]))
    return out[0], out[1]


def machine() -> str:
    """CPU model, cores and memory of this machine."""
    model = platform.processor() or platform.machine()
    mem = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        with open("/proc/meminfo") as fh:
            kib = int(next(line.split()[1] for line in fh if line.startswith("MemTotal")))
        mem = f", {kib / 2 ** 20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{model}, {os.cpu_count()} cores{mem}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 repeats, no compile-time table")
    ap.add_argument("--fused", action="store_true", help="also time the torch backend with torch.compile")
    ap.add_argument("--only", help="run only configurations whose example contains this")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    ap.add_argument("--nt-python", default=os.environ.get("NT_PYTHON", "/work/venv-nt/bin/python"),
                    help="a Python with neural-tangents installed (skipped where it does not exist)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    repeats = 3 if args.quick else args.repeats
    have_nt = os.path.exists(args.nt_python)
    load = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    rows, nt_versions, compiles = [], {}, []
    dtypes = args.dtypes.split(",")
    configs = [c for c in CONFIGS if not args.only or args.only in c[1]]
    for label, example, mode, n, backends, nt_convs in configs:
        for dtype in dtypes:
            rows += _config(args, label, example, mode, n, backends, nt_convs, dtype, repeats, have_nt, nt_versions)
    if not args.quick:
        for example in dict.fromkeys(c[1] for c in configs):
            for dtype in dtypes:
                cold, cached = compile_times(example, dtype)
                compiles.append((example, dtype, cold, cached))
                print(f"compile {example} {dtype}: {cold:.1f} s cold, {cached:.1f} s cached", file=sys.stderr, flush=True)
    # neural-tangents' fastest mode on this machine (float64 in our runs: its float32 is slower)
    for r in rows:
        nt_meds = [q["median_s"] for q in rows if q["config"] == r["config"] and q["backend"] == "neural-tangents"]
        r["vs_nt_best"] = min(nt_meds) / r["median_s"] if nt_meds else None
    import numba
    import numpy
    import torch

    from ntkc import __version__ as ntkc_version

    threads = args.threads or os.cpu_count()
    nt = (f", jax {nt_versions['jax']}, neural-tangents {nt_versions['neural_tangents']}" if nt_versions
          else ", neural-tangents not run")
    print(f"\nmachine: {machine()}; {threads} threads; python {platform.python_version()}, ntkc {ntkc_version}, "
          f"torch {torch.__version__}, numba {numba.__version__}, numpy {numpy.__version__}{nt}; "
          f"started {started}; load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"medians of {repeats} runs\n")
    print("| configuration | dtype | backend | pairs | median s | pairs/s | x neural-tangents (same dtype) | "
          "x neural-tangents (its fastest dtype) | x torch eager | peak used | runs (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def f(v, fmt):
            return "-" if v is None else fmt.format(v)
        print(f"| {r['config']} | {r['dtype']} | {r['backend']} | {r['pairs']} | {r['median_s']:.3f} | "
              f"{r['pairs_per_s']:.1f} | {f(r['vs_nt'], '{:.1f}x')} | {f(r['vs_nt_best'], '{:.1f}x')} | "
              f"{f(r['vs_torch'], '{:.1f}x')} | "
              f"{f(r['peak_fraction'], '{:.0%}')} | {', '.join(f'{x:.3f}' for x in r['runs'])} |")
    if compiles:
        print("\n| example | dtype | numba backend, cold cache (s) | cached (s) |")
        print("|---|---|---|---|")
        for example, dtype, cold, cached in compiles:
            print(f"| {example} | {dtype} | {cold:.1f} | {cached:.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "compile": compiles}, fh, indent=1)


if __name__ == "__main__":
    main()
