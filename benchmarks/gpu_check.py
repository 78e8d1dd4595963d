"""One command for a GPU machine: check the Triton backend on every example against the torch
backend in float64 on the same GPU, then measure pairs/s beside the static speed model.

    python benchmarks/gpu_check.py [--json gpu_check.json]    # CUDA; meant to take under ~8 min
    python benchmarks/gpu_check.py --smoke                      # CPU, Triton's interpreter, tiny maps

1. Agreement: every examples/*.arch (or --examples) on `--images` random images plus an exact
   duplicate of the first, through the public call `k(x, backend="triton")` (the engine's
   symmetric Gram path: self pairs and the duplicate flagged as the same image), against
   `k(x, dtype=float64, backend="torch")` on the same device and the same (float32-representable)
   images. Errors are relative to the largest reference entry, over all entries and over the
   diagonal alone (self pairs and the duplicate pair). Allowed: 1e-10 in float64, 1e-5 in float32.
2. Speed: cntk_gap_d3, cntk_gap_d11, cntk_gap_d21 and cntk_v_d21 in float32 and float64: the
   backend's `pairs` on all N x N pairs of N images by index (the launcher's per-call packing of
   the maps included, variance maps not), CUDA-synchronised, median of repeats, N doubled until
   a call takes 0.1 s. Beside it the static speed model's prediction for this GPU's architecture
   (`ntkc compile F --emit report --json`: counted SASS, a MODEL) and measured / model.

Everything goes to --json (device, versions, date, every row) so the run can be recorded in
benchmarks/RESULTS.md. Exit status 1 when a check fails.

Requirements: torch and triton as installed (written for torch 2.11 / triton 3.6), this checkout
(imported from the folder above this script, not from site-packages), no network. Without lark,
carry its wheel (pure Python) and either `pip install --no-index lark-*.whl`, or pass
--lark-wheel PATH / put lark-*.whl beside this script (imported from the zip), or put an unpacked
lark on PYTHONPATH. `--jobs` splits the agreement checks over processes sharing the GPU (their
compiles dominate); the model's compiles run meanwhile in processes of their own.

--smoke: CPU, TRITON_INTERPRET=1 (the script restarts itself with it), maps shrunk to 4x4 (8x8
or 16x16 where pooling needs it; examples that fit none are skipped and listed), 2 images plus
the duplicate, tiny timings that mean nothing and no model unless --model. --inject E multiplies
one diagonal NTK entry of the Triton result by (1 + E) to show that the check catches it.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ["cntk_gap_d3", "cntk_gap_d11", "cntk_gap_d21", "cntk_v_d21"]
DTYPES = ("float64", "float32")
TOL = {"float64": 1e-10, "float32": 1e-5}
SMOKE_SIZES = (4, 8, 16)


def bootstrap(lark_wheel: str | None) -> None:
    """This checkout first on sys.path; lark from a carried wheel when it is not installed. The
    same paths go to PYTHONPATH for the worker processes."""
    extra = [str(ROOT)]
    try:
        import lark  # noqa: F401
    except ImportError:
        wheels = [lark_wheel] if lark_wheel else sorted(glob.glob(str(ROOT / "benchmarks" / "lark-*.whl")))
        if not wheels:
            sys.exit("lark is not installed: pip install --no-index lark-*.whl, pass --lark-wheel PATH, "
                     "or put lark-*.whl beside this script")
        extra.append(str(Path(wheels[0]).resolve()))  # a pure-Python wheel imports from its zip
    for p in reversed(extra):
        if p not in sys.path:
            sys.path.insert(0, p)
    os.environ["PYTHONPATH"] = os.pathsep.join(extra + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def shrink(text: str, size: int) -> str:
    """The same network on size x size maps (the interpreter is hundreds of times slower)."""
    return re.sub(r"^input .*channels=(\d+)", lambda m: f"input height={size} width={size} channels={m.group(1)}",
                  text, count=1, flags=re.M)


def compile_example(path: Path, smoke: bool):
    """(kernel, map size) of an example; in --smoke the smallest size it fits, else None."""
    import ntkc
    from ntkc.errors import NtkcError
    if not smoke:
        return ntkc.compile(path), None
    for size in SMOKE_SIZES:
        try:
            return ntkc.compile(shrink(path.read_text(), size), str(path)), size
        except NtkcError:  # a map too small for its pooling windows
            continue
    return None, None


def images(k, n: int, seed: int, device):
    """n random images and an exact copy of the first, float32-representable, float64 on device."""
    import torch
    net = k.arch.input
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, net.channels, net.height, net.width, generator=g, dtype=torch.float64)
    x = torch.cat([x, x[:1]]).float().double()
    return x.to(device)


def compare(nngp, ntk, ref_nngp, ref_ntk) -> dict:
    """Largest errors relative to the largest reference entry, over everything and over the
    diagonal (self pairs, and the last image, a copy of the first, against the first)."""
    import torch
    out = {}
    n = ref_nngp.shape[0]
    diag = torch.eye(n, dtype=torch.bool)
    diag[0, n - 1] = diag[n - 1, 0] = True
    for key, got, ref in (("nngp", nngp, ref_nngp), ("ntk", ntk, ref_ntk)):
        got, ref = (torch.as_tensor(a).detach().to("cpu", torch.float64) for a in (got, ref))
        err = (got - ref).abs() / (ref.abs().max().item() or 1.0)
        out[f"err_{key}"] = err.max().item()
        out[f"diag_{key}"] = err[diag].max().item()
    return out


def check_examples(names, device, smoke: bool, n: int, inject: float) -> list[dict]:
    import torch
    from ntkc.backends.triton.module import build
    rows = []
    for name in names:
        path = ROOT / "examples" / f"{name}.arch"
        k, size = compile_example(path, smoke)
        if k is None:
            rows.append({"example": name, "skipped": f"does not fit maps of {SMOKE_SIZES} in --smoke"})
            print(f"  {name:<20} skipped: {rows[-1]['skipped']}", flush=True)
            continue
        kinds = "+".join(g.kind.value for g in build(k.plan).kernels)
        x = images(k, n, 0, device)
        ref = k(x, dtype=torch.float64, backend="torch", device=device)
        for dtype in DTYPES:
            t0 = time.perf_counter()
            got = k(x.to(getattr(torch, dtype)), dtype=getattr(torch, dtype), backend="triton", device=device)
            ntk = torch.as_tensor(got.ntk).clone()
            if inject:
                ntk[0, 0] *= 1 + inject
            r = {"example": name, "dtype": dtype, "kernels": kinds, "map": size or k.arch.input.height,
                 "images": x.shape[0], **compare(got.nngp, ntk, ref.nngp, ref.ntk),
                 "seconds": round(time.perf_counter() - t0, 2), "tol": TOL[dtype]}
            r["ok"] = max(r["err_nngp"], r["err_ntk"], r["diag_nngp"], r["diag_ntk"]) <= TOL[dtype]
            rows.append(r)
            print(f"  {name:<20} {dtype:<8} {'ok ' if r['ok'] else 'BAD'} all {r['err_nngp']:.1e}/{r['err_ntk']:.1e} "
                  f"diagonal {r['diag_nngp']:.1e}/{r['diag_ntk']:.1e} (nngp/ntk)  [{kinds}] {r['seconds']} s", flush=True)
    return rows


def check_in_parallel(names, args) -> list[dict]:
    """The checks split over `args.jobs` processes of this script on the same GPU. Compiling the
    kernels dominates, so the examples are dealt longest first by the length of their generated
    source, each to the process with the least so far."""
    import ntkc
    from ntkc.backends.triton.module import build
    cost = {n: len(build(ntkc.compile(ROOT / "examples" / f"{n}.arch").plan).source) for n in names}
    shares: list[list[str]] = [[] for _ in range(args.jobs)]
    load = [0] * args.jobs
    for n in sorted(names, key=lambda n: -cost[n]):
        k = load.index(min(load))
        shares[k].append(n)
        load[k] += cost[n]
    procs, parts = [], []
    for part, share in enumerate(shares):
        if not share:
            continue
        out = Path(args.json).with_suffix(f".part{part}.json")
        cmd = [sys.executable, __file__, "--examples", ",".join(share), "--jobs", "1", "--no-bench", "--json", str(out),
               "--images", str(args.images)] + (["--smoke"] if args.smoke else []) + \
              (["--inject", str(args.inject)] if args.inject else [])
        procs.append(subprocess.Popen(cmd))
        parts.append(out)
    for p in procs:
        p.wait()
    rows = []
    for out in parts:
        rows += json.loads(out.read_text())["checks"] if out.exists() else []
        out.unlink(missing_ok=True)
    missing = set(names) - {r["example"] for r in rows}
    rows += [{"example": m, "dtype": "-", "ok": False, "error": "its worker failed"} for m in sorted(missing)]
    return rows


def start_model(names, arch: int) -> dict:
    """One process per benchmark network computing the model's prediction (AOT compiles of the
    full-size example, so in --smoke the ratio means nothing), never in the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return {name: subprocess.Popen([sys.executable, __file__, "--model-only", name, "--arch", str(arch)],
                                   stdout=subprocess.PIPE, text=True, env=env) for name in names}


def model_only(name: str, arch: int) -> None:
    import ntkc
    from ntkc.backends.triton.report import build_report
    m = build_report(ntkc.compile(ROOT / "examples" / f"{name}.arch").arch, archs=(arch,), workers=2)
    print(json.dumps(m["predicted_pairs_per_s"][f"sm_{arch}"]))


def bench(names, device, smoke: bool, seconds: float, model: dict) -> list[dict]:
    import torch
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for name in names:
        path = ROOT / "examples" / f"{name}.arch"
        k, _ = compile_example(path, smoke)
        for dtype in ("float32", "float64"):
            be = k.backend("triton", getattr(torch, dtype), device)
            n = 2 if smoke else 32
            while True:
                x = images(k, n - 1, 1, device).to(be.dtype)
                maps = be.variance_maps(x)
                i = torch.arange(n, device=device).repeat_interleave(n)
                j = torch.arange(n, device=device).repeat(n)
                call = lambda: be.pairs(x, x, maps, maps, i, j, i == j)  # noqa: E731
                call()  # compiles
                sync()
                t0 = time.perf_counter()
                call()
                sync()
                once = time.perf_counter() - t0
                if smoke or once >= 0.1 or n >= 2048:
                    break
                n *= 2
            times = [once]
            end = time.perf_counter() + seconds
            while len(times) < 3 or (time.perf_counter() < end and len(times) < 50):
                t0 = time.perf_counter()
                call()
                sync()
                times.append(time.perf_counter() - t0)
            rate = n * n / statistics.median(times)
            pred = model.get(name, {}).get(dtype)
            r = {"example": name, "dtype": dtype, "images": n, "pairs": n * n, "repeats": len(times),
                 "measured_pairs_per_s": round(rate, 1), "model_pairs_per_s": pred,
                 "measured_over_model": rate / pred if pred else None}
            rows.append(r)
            ratio = f"{r['measured_over_model']:.3g}" if pred else "-"
            model_text = f"{pred:,}" if pred else "-"
            print(f"  {name:<14} {dtype:<8} measured {rate:>14,.0f} pairs/s   model {model_text:>14}   "
                  f"measured/model {ratio}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, Triton's interpreter, tiny maps")
    ap.add_argument("--examples", help="comma-separated example names (default: every examples/*.arch)")
    ap.add_argument("--bench", default=",".join(BENCH), help=f"networks to time (default {','.join(BENCH)})")
    ap.add_argument("--images", type=int, help="random images per check, plus a duplicate (default 4; 2 in --smoke)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per network and dtype (default 2)")
    ap.add_argument("--jobs", type=int, help="processes for the checks (default 6 on a GPU, 1 in --smoke)")
    ap.add_argument("--json", default="gpu_check.json", help="results file (default ./gpu_check.json)")
    ap.add_argument("--lark-wheel", help="a lark-*.whl to import lark from when it is not installed")
    ap.add_argument("--model", action="store_true", help="with --smoke: compute the model anyway (slow)")
    ap.add_argument("--no-bench", action="store_true", help="checks only")
    ap.add_argument("--inject", type=float, default=0.0, help="perturb one diagonal NTK entry by this relative amount")
    ap.add_argument("--model-only", help=argparse.SUPPRESS)
    ap.add_argument("--arch", type=int, default=90, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke and os.environ.get("TRITON_INTERPRET") != "1":
        os.environ["TRITON_INTERPRET"] = "1"  # must precede importing triton: restart with it
        os.execv(sys.executable, [sys.executable, __file__] + (sys.argv[1:] if argv is None else list(argv)))
    bootstrap(args.lark_wheel)
    args.images = args.images or (2 if args.smoke else 4)
    if args.model_only:
        model_only(args.model_only, args.arch)
        return 0
    import torch
    import triton
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: use --smoke to run it on the CPU in Triton's interpreter")
    t_start = time.perf_counter()
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "torch": torch.__version__, "triton": triton.__version__, "smoke": args.smoke,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (Triton interpreter)"}
    arch = 90
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability()
        arch = 90 if major * 10 + minor >= 90 else 80  # the model knows the H100 (sm_90) and the A100 (sm_80)
    info["model_target"] = f"sm_{arch}"
    print(f"{info['device']}; torch {info['torch']}, triton {info['triton']}; ntkc from {ROOT}", flush=True)
    names = args.examples.split(",") if args.examples else sorted(p.stem for p in (ROOT / "examples").glob("*.arch"))
    running = start_model(args.bench.split(","), arch) if not args.no_bench and (not args.smoke or args.model) else {}
    jobs = args.jobs or (1 if args.smoke else 6)
    print(f"1. agreement with the torch backend in float64 on the same device, {args.images} images + a duplicate; "
          f"errors relative to the largest entry", flush=True)
    if jobs > 1 and len(names) > 1:
        args.jobs = jobs
        checks = check_in_parallel(names, args)
    else:
        checks = check_examples(names, device, args.smoke, args.images, args.inject)
    info["checks_s"] = round(time.perf_counter() - t_start, 1)
    rows = []
    if not args.no_bench:
        model = {}
        for name, p in running.items():
            out, _ = p.communicate()
            model[name] = json.loads(out) if p.returncode == 0 and out.strip() else {}
        print(f"2. pairs/s: measured (all pairs by index) beside the static model for {info['model_target']} "
              f"(a model from counted SASS; H100 SXM5 figures for sm_90)", flush=True)
        rows = bench(args.bench.split(","), device, args.smoke, 0.0 if args.smoke else args.seconds, model)
    bad = [r for r in checks if not r.get("ok", True) or "error" in r]
    info["seconds"] = round(time.perf_counter() - t_start, 1)
    Path(args.json).write_text(json.dumps({**info, "checks": checks, "bench": rows}, indent=1))
    print(f"done in {info['seconds']:.0f} s: {len(bad)} failing check(s), "
          f"{sum('skipped' in r for r in checks)} skipped; results in {args.json}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
