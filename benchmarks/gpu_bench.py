"""GPU benchmark of the Triton backend: pairs per second against the fp32 ceiling, and a
correctness check against the torch backend in float64 on the same GPU.

    python benchmarks/gpu_bench.py               # on a CUDA machine; prints a table last
    python benchmarks/gpu_bench.py --smoke       # anywhere: CPU, Triton's interpreter, 6x6 maps

Networks: examples/cntk_gap_d3, cntk_gap_d11, cntk_gap_d21 and cntk_v_d21 (32x32x3), in float32
and float64. For each, random images; the symmetric Gram matrix (each unordered pair once).

- "kernel pairs/s": the generated kernels alone (`executor.pairs` on one prepared batch of all
  pairs, CUDA-synchronised, median of repeats).
- "API pairs/s": the public call `k(x, backend="triton")`, variance maps and batching included.
- "ceiling pairs/s": peak fp32 FLOP/s divided by `plan.pair.flops()`, the plan's rough count
  (per entry: 40 flops per activation, 2 x window terms + 4 per window, S and T together). The
  peak is SMs x FP32 lanes per SM x 2 x clock (clock from CuPy when present), or --peak-tflops.
  Both dtypes are measured against the fp32 ceiling.
- "err": the largest |triton - torch float64| / max |torch float64| over NNGP and NTK, on
  `--check` images (the torch backend on the same GPU).

--smoke shrinks every input to 6x6 (same depths), uses 3 images and runs on the CPU under
TRITON_INTERPRET=1 (the script restarts itself with it set: it must precede importing triton),
so every step of the benchmark runs end to end without a GPU. Its rates mean nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETS = ["cntk_gap_d3", "cntk_gap_d11", "cntk_gap_d21", "cntk_v_d21"]
DTYPES = ["float32", "float64"]
LANES = {(8, 0): 64, (8, 6): 128, (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128}  # FP32 lanes per SM


def arch_text(name: str, smoke: bool) -> str:
    text = (ROOT / "examples" / f"{name}.arch").read_text()
    if smoke:  # same network, 6x6 maps: the interpreter is ~400x slower than torch
        text = re.sub(r"^input .*$", "input height=6 width=6 channels=3", text, flags=re.M)
    return text


def peak_fp32(device, override: float | None) -> tuple[float, str]:
    """(FLOP/s, how it was found)."""
    if override:
        return override * 1e12, "--peak-tflops"
    import torch
    if device.type != "cuda":
        return 60e12, "assumed 60 TFLOP/s (no GPU)"
    props = torch.cuda.get_device_properties(device)
    lanes = LANES.get((props.major, props.minor), 128)
    clock = None
    try:
        import cupy
        clock = cupy.cuda.runtime.getDeviceProperties(device.index or 0)["clockRate"] * 1e3
    except Exception:
        pass
    if clock is None:
        return 60e12, f"assumed 60 TFLOP/s ({props.name}; pass --peak-tflops)"
    return props.multi_processor_count * lanes * 2 * clock, f"{props.name}: {props.multi_processor_count} SMs x {lanes} lanes x 2 x {clock / 1e9:.2f} GHz"


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(name: str, dtype_name: str, args, device) -> dict:
    import numpy as np
    import torch

    import ntkc

    dtype = getattr(torch, dtype_name)
    k = ntkc.compile(arch_text(name, args.smoke), f"{name}.arch")
    shape = k.arch.input
    gen = torch.Generator().manual_seed(0)
    flops = k.plan.pair.flops()
    ex = k.backend("triton", dtype, device)

    def images(n):
        return torch.randn(n, shape.channels, shape.height, shape.width, generator=gen, dtype=torch.float64)

    # correctness: triton in this dtype against the torch backend in float64, same device
    xc = images(args.check).to(device)
    got = k(xc.to(dtype), dtype=dtype, backend="triton")
    ref = k(xc, dtype=torch.float64, backend="torch")
    err = max(((got.nngp.double() - ref.nngp).abs().max() / ref.nngp.abs().max()).item(),
              ((got.ntk.double() - ref.ntk).abs().max() / ref.ntk.abs().max()).item())

    # size the run: a first estimate from a small batch, then about --seconds of kernel time
    n = args.n or 8
    x = images(n).to(device=device, dtype=dtype)
    rate = kernel_rate(ex, x, device, repeats=1)
    if not args.n and not args.smoke:
        want_pairs = rate * args.seconds
        n = int(min(args.max_images, max(8, (2 * want_pairs) ** 0.5)))
        x = images(n).to(device=device, dtype=dtype)
    rate = kernel_rate(ex, x, device, repeats=args.repeats)
    api = []
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        r = k(x, dtype=dtype, backend="triton")
        sync(device)
        api.append(r.pairs / (time.perf_counter() - t0))
    del np
    return {"net": name, "dtype": dtype_name, "images": n, "pairs": n * (n + 1) // 2, "kernel": rate,
            "api": statistics.median(api), "flops": flops, "err": err,
            "kernels": len(ex.generated.kernels)}


def kernel_rate(ex, x, device, repeats: int) -> float:
    """Pairs per second of `ex.pairs` on the upper triangle of x (one batch, maps precomputed)."""
    import numpy as np
    import torch

    n = x.shape[0]
    ii, jj = np.triu_indices(n)
    i = torch.as_tensor(ii, device=device)
    j = torch.as_tensor(jj, device=device)
    maps = ex.variance_maps(x)
    same = i == j
    ex.pairs(x, x, maps, maps, i[:1], j[:1], same[:1])  # compile / warm up
    rates = []
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        ex.pairs(x, x, maps, maps, i, j, same)
        sync(device)
        rates.append(len(ii) / (time.perf_counter() - t0))
    return statistics.median(rates)


def table(rows: list[dict], peak: float, how: str, device_name: str) -> str:
    out = [f"device: {device_name}; fp32 peak {peak / 1e12:.1f} TFLOP/s ({how}); "
           f"ceiling = peak / plan.pair.flops()", ""]
    head = (f"| {'network':<13} | {'dtype':<7} | {'images':>6} | {'flops/pair':>10} | {'kernel pairs/s':>14} | "
            f"{'API pairs/s':>11} | {'ceiling pairs/s':>15} | {'% ceiling':>9} | {'err vs torch f64':>16} |")
    out += [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['net']:<13} | {r['dtype']:<7} | failed: {r['error']}")
            continue
        ceiling = peak / r["flops"]
        out.append(f"| {r['net']:<13} | {r['dtype']:<7} | {r['images']:>6} | {r['flops']:>10.3g} | {r['kernel']:>14,.0f} | "
                   f"{r['api']:>11,.0f} | {ceiling:>15,.0f} | {100 * r['kernel'] / ceiling:>8.1f}% | {r['err']:>16.2e} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, interpreter, 6x6 maps: checks the script runs")
    ap.add_argument("--only", help="run only networks whose name contains this")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--n", type=int, help="images per run (default: sized for --seconds of kernel time)")
    ap.add_argument("--seconds", type=float, default=2.0, help="target kernel time per measurement")
    ap.add_argument("--max-images", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", type=int, default=6, help="images for the float64 correctness check")
    ap.add_argument("--peak-tflops", type=float, help="fp32 peak of the device, if not detected")
    args = ap.parse_args()
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            env = dict(os.environ, TRITON_INTERPRET="1")
            return subprocess.call([sys.executable, *sys.argv], env=env)
        args.n = args.n or 3
        args.check = min(args.check, 3)
        args.repeats = 1

    import torch
    sys.path.insert(0, str(ROOT))
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --smoke to check the script on a CPU", file=sys.stderr)
        return 2
    peak, how = peak_fp32(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter, smoke run)"
    rows = []
    for net in NETS:
        if args.only and args.only not in net:
            continue
        for dt in args.dtypes.split(","):
            t0 = time.perf_counter()
            try:
                row = bench_one(net, dt, args, device)
            except Exception as err:  # keep going: one failure must not hide the other rows
                import traceback
                traceback.print_exc()
                row = {"net": net, "dtype": dt, "error": f"{type(err).__name__}: {err}"[:200]}
            print(f"{net} {dt}: {row} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
            rows.append(row)
    print(table(rows, peak, how, name))
    bad = [r for r in rows if "error" in r or r["err"] > (1e-10 if r["dtype"] == "float64" else 1e-4)]
    if bad:
        print(f"{len(bad)} configuration(s) failed or disagree with the torch backend", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
