"""The `ntkc` command line: compile, gram, regress, run, layers."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import NtkcError

RIDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ntkc",
        description="Exact infinite-width CNN kernels (NNGP and CNTK) from .arch descriptions, "
                    "and kernel regression with them.",
        epilog="Examples:\n"
               "  ntkc compile examples/cntk_gap_d3.arch --emit plan\n"
               "  ntkc regress examples/digits_v.arch examples/digits_gap.arch --dataset digits\n"
               "  ntkc gram examples/cntk_v_d3.arch --dataset cifar10 --n-train 100 --n-test 50 --out k.npz\n"
               "  ntkc run experiments/digits_size.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compile", help="check an architecture and print its plan or generated Triton source",
                       description="Parse and check a .arch file, then print what it compiles to.")
    c.add_argument("file", help="the .arch file")
    c.add_argument("--emit", choices=("plan", "triton", "report"), default="plan",
                   help="plan: stages, demanded planes and work per pair (default); triton: the generated "
                        "kernel source; report: registers, shared memory and spills per kernel (sm_80, sm_90)")
    c.set_defaults(func=cmd_compile)

    def data_args(q):
        q.add_argument("--dataset", default="digits",
                       help="digits (built in, default), cifar10, mnist, fashion-mnist, or a .npz file")
        q.add_argument("--data-dir", help="folder holding the dataset's files (cifar10, mnist)")
        q.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW", help="image layout of a .npz")
        q.add_argument("--n-train", type=int, help="class-balanced training subset size (default: all)")
        q.add_argument("--n-test", type=int, help="class-balanced test subset size (default: all)")
        q.add_argument("--seed", type=int, default=0, help="seed for subsets and splits")
        q.add_argument("--zca", type=float, help="ZCA whitening with this regulariser (fraction of the mean eigenvalue)")
        q.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="kernel precision")
        q.add_argument("--backend", choices=("auto", "torch", "triton"), default="auto")
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    def store_args(q):
        q.add_argument("--store", metavar="DIR",
                       help="compute into a resumable Gram store in DIR (tiles written atomically with "
                            "checksums); rerunning the same command resumes an interrupted run")
        q.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="with --store: compute tiles in this process (default) or as Ray tasks")
        q.add_argument("--address", help="with --executor ray: address of a running Ray cluster "
                                         "(default: start a local one)")
        q.add_argument("--memory", type=_bytes_arg, help="working memory for pair batches (with or without "
                                                          "--store), e.g. 512M or 4G (default 2G)")
        q.add_argument("--tile", type=int, default=256, help="images per tile side in a store (default 256)")
        q.add_argument("--verify", action="store_true",
                       help="with --store: first check every stored tile's checksum and the assembled "
                            "matrices against the tiles; recompute and reassemble what is damaged")

    g = sub.add_parser("gram", help="compute train x train and test x train kernels to a .npz file",
                       description="Compute NNGP and NTK blocks of a dataset and save them.")
    g.add_argument("file", help="the .arch file")
    data_args(g)
    g.add_argument("--out", help="output .npz (written atomically); needed unless --store is given")
    store_args(g)
    g.add_argument("--test-test", action="store_true", help="with --store, also compute the test x test block")
    g.set_defaults(func=cmd_gram)

    r = sub.add_parser("regress", help="kernel regression with NNGP and NTK; prints an accuracy table",
                       description="Classify a dataset by kernel regression (one-hot minus 0.1 targets) with "
                                   "the NNGP and the NTK of each architecture.")
    r.add_argument("files", nargs="+", help="one or more .arch files")
    data_args(r)
    r.add_argument("--ridge", default="auto",
                   help="relative ridge (times the mean diagonal), or 'auto' to choose it on a held-out "
                        "part of the training set (default)")
    r.add_argument("--json", help="also write the results to this JSON file")
    store_args(r)
    r.set_defaults(func=cmd_regress)

    e = sub.add_parser("run", help="run an experiment described by a YAML file",
                       description="Run the experiment in CONFIG.yaml; write results.json, a copy of the "
                                   "config and a plot to its output folder.")
    e.add_argument("config", help="experiment YAML file")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_run)

    l = sub.add_parser("layers", help="list the layers the .arch language knows, with their parameters",
                       description="List the built-in layers, and those of the rule modules that the given "
                                   ".arch files load with `use`, or that --rules names.")
    l.add_argument("files", nargs="*", help=".arch files whose `use` lines load user rules")
    l.add_argument("--rules", action="append", default=[], metavar="MODULE",
                   help="a rule module to load (a .py path or a dotted module name); repeatable")
    l.set_defaults(func=cmd_layers)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except NtkcError as err:
        print(f"ntkc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ntkc: interrupted", file=sys.stderr)
        return 130


# -- commands ---------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    import ntkc

    k = ntkc.compile(args.file)
    if args.emit == "plan":
        print(k.describe())
    elif args.emit == "triton":
        from .backends.triton.codegen import generate
        print(generate(k.plan))
    else:
        from .backends.triton.report import format_report, report
        rows = report(k.plan)
        print(format_report(rows))
        return 1 if any(r.spill_stores or r.spill_loads for r in rows) else 0
    return 0


def cmd_layers(args) -> int:
    import ntkc
    from .lang.network import load
    from .rules.registry import known_rules

    for spec in args.rules:
        ntkc.load_rules(spec, os.getcwd())
    for f in args.files:
        load(f)

    for name, rule in known_rules().items():
        params = " ".join(p.describe() for p in rule.params)
        print(f"{name:<10} {rule.summary()}")
        if params:
            print(f"{'':<10} {params}")
    return 0


def _load(args):
    from .learn.data import load_dataset

    return load_dataset(args.dataset, data_dir=args.data_dir, n_train=args.n_train, n_test=args.n_test,
                        seed=args.seed, zca=args.zca, layout=args.layout)


def _progress(label: str, quiet: bool):
    """A tqdm bar fed with (done, total) pair counts; None when quiet or not a terminal-less run."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = {"b": None}

    def update(done: int, total: int) -> None:
        if bar["b"] is None:
            bar["b"] = tqdm(total=total, desc=label, unit="pair", unit_scale=True, leave=False,
                            file=sys.stderr, mininterval=0.5)
        bar["b"].n = done
        bar["b"].refresh()

    def close():
        if bar["b"] is not None:
            bar["b"].close()

    return update, close


def kernels(file: str, ds, dtype: str, backend: str, quiet: bool, store: dict | None = None,
            memory: int | None = None):
    """Train x train and test x train NNGP / NTK for one architecture, with timings.

    With `store` (a dict of `dir`, `executor`, `address`, `memory`, `tile`, `test_test`) the
    kernels are computed into (or resumed from) a Gram store and returned memory-mapped."""
    import torch

    import ntkc

    k = ntkc.compile(file)
    if store is not None:
        return (k,) + _store_kernels(k, ds, dtype, backend, quiet, store)
    dt = torch.float64 if dtype == "float64" else torch.float32
    name = Path(file).stem
    update, close = _progress(f"{name} train", quiet)
    try:
        tr = k(ds.x_train, dtype=dt, backend=backend, progress=update, memory=memory)
    finally:
        close()
    if len(ds.x_test) == 0:  # --n-test 0: the training block only
        from .engine.kernel import KernelResult

        empty = np.zeros((0, len(ds.x_train)), dtype=tr.nngp.dtype)
        return k, tr, KernelResult(empty, empty.copy(), 0.0, 0, tr.backend)
    update, close = _progress(f"{name} test", quiet)
    try:
        te = k(ds.x_test, ds.x_train, dtype=dt, backend=backend, progress=update, memory=memory)
    finally:
        close()
    return k, tr, te


def _store_kernels(k, ds, dtype: str, backend: str, quiet: bool, opts: dict):
    from .store.job import gram_store
    from .engine.kernel import KernelResult
    from .store.gramstore import GramStore

    update, close = _progress(f"{Path(k.network.filename).stem} store", quiet)
    try:
        store = gram_store(k, opts["dir"], ds.x_train, ds.x_test, y_train=ds.y_train, y_test=ds.y_test,
                           dtype=dtype, backend=backend, executor=opts.get("executor") or "local",
                           address=opts.get("address"), memory=opts.get("memory"), tile=opts.get("tile") or 256,
                           test_test=bool(opts.get("test_test")), description=ds.description,
                           progress=update, verify=bool(opts.get("verify")),
                           log=None if quiet else (lambda m: print(f"ntkc: {m}", file=sys.stderr)),
                           warn=lambda m: print(f"ntkc: warning: {m}", file=sys.stderr))
    except KeyboardInterrupt:
        close()
        if (Path(opts["dir"]) / "manifest.json").exists():
            print(f"ntkc: interrupted; the store {opts['dir']} keeps {GramStore.open(opts['dir']).status()}; "
                  "rerun the same command to finish", file=sys.stderr)
        raise
    finally:
        close()
    run, backend_used = store.last_run, store.manifest["backend"]
    tr = KernelResult(*store.matrices("train_train"), run["seconds"], run["pairs"], backend_used)
    te = KernelResult(*store.matrices("test_train"), 0.0, 0, backend_used)
    return tr, te


def _store_opts(args) -> dict | None:
    if not getattr(args, "store", None):
        for flag in ("executor", "address"):
            if getattr(args, flag, None) not in (None, "local"):
                raise NtkcError(f"--{flag} needs --store DIR", hint="tiles are farmed out into a Gram store folder")
        return None
    return {"dir": args.store, "executor": args.executor, "address": args.address, "memory": args.memory,
            "tile": args.tile, "test_test": getattr(args, "test_test", False), "verify": args.verify}


def _bytes_arg(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 512M or 4G") from None


def cmd_gram(args) -> int:
    store = _store_opts(args)
    if store is None and not args.out:
        raise NtkcError("ntkc gram needs --out FILE.npz or --store DIR (or both)")
    ds = _load(args)
    k, tr, te = kernels(args.file, ds, args.dtype, args.backend, args.quiet, store, args.memory)
    if args.out is None:
        print(f"store {args.store} complete: train x train {tr.nngp.shape}, test x train {te.nngp.shape}; "
              f"{tr.seconds:.1f} s in this run")
        return 0
    meta = {"arch": k.network.source, "arch_file": args.file, "dataset": ds.name,
            "description": ds.description, "dtype": args.dtype, "backend": tr.backend,
            "seconds": tr.seconds + te.seconds, "pairs": tr.pairs + te.pairs}
    _save_npz(args.out, nngp_train=tr.nngp, ntk_train=tr.ntk, nngp_test=te.nngp, ntk_test=te.ntk,
              y_train=ds.y_train, y_test=ds.y_test, meta=np.array(json.dumps(meta)))
    if store is not None:
        print(f"wrote {args.out} from the store {args.store}: train {tr.nngp.shape}, test {te.nngp.shape}")
    else:
        print(f"wrote {args.out}: train {tr.nngp.shape}, test {te.nngp.shape}, {meta['pairs']} pairs in "
              f"{meta['seconds']:.1f} s ({meta['pairs'] / max(meta['seconds'], 1e-9):.0f} pairs/s)")
    return 0


def _save_npz(path: str, **arrays) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ridge_arg(text) -> tuple[float | None, tuple[float, ...] | None]:
    if text in ("auto", None):
        return None, RIDGES
    try:
        return float(text), None
    except ValueError:
        raise NtkcError(f"--ridge must be a number or 'auto', got {text!r}") from None


def regress_one(file: str, ds, dtype: str, backend: str, ridge, quiet: bool, store: dict | None = None,
                memory: int | None = None) -> list[dict]:
    from .learn.regression import kernel_regression

    if len(ds.y_test) == 0:
        raise NtkcError("regression needs test images to score, and this dataset selection has none",
                        hint="give --n-test a positive number (or leave it out to use all test images)")
    fixed, ridges = _ridge_arg(ridge)
    if ridges is not None and np.unique(ds.y_train, return_counts=True)[1].min() < 2:
        # One image of some class: nothing can be held out to choose a ridge; use none.
        fixed, ridges = 0.0, None
    k, tr, te = kernels(file, ds, dtype, backend, quiet, store, memory)
    rows = []
    for which in ("nngp", "ntk"):
        res = kernel_regression(getattr(tr, which), ds.y_train, getattr(te, which), ds.y_test,
                                ridge=fixed or 0.0, ridges=ridges, jitter="auto")
        rows.append({"arch": Path(file).name, "kernel": which.upper(), "n_train": len(ds.y_train),
                     "n_test": len(ds.y_test), "ridge": res.ridge, "jitter": res.jitter,
                     "accuracy": res.accuracy, "seconds": tr.seconds + te.seconds,
                     "pairs": tr.pairs + te.pairs, "backend": tr.backend})
    return rows


def _table(rows: list[dict]) -> str:
    head = f"{'architecture':<24} {'kernel':<6} {'train':>6} {'test':>6} {'ridge':>8} {'accuracy':>9} {'kernel time':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ridge = f"{r['ridge']:.0e}" if r["ridge"] else "0"
        if r.get("jitter"):
            ridge += "*"
        lines.append(f"{r['arch']:<24} {r['kernel']:<6} {r['n_train']:>6} {r['n_test']:>6} {ridge:>8} "
                     f"{100 * r['accuracy']:>8.2f}% {r['seconds']:>10.1f} s")
    if any(r.get("jitter") for r in rows):
        lines.append("* a small jitter was added to make the kernel matrix positive definite")
    return "\n".join(lines)


def cmd_regress(args) -> int:
    ds = _load(args)
    print(f"dataset: {ds.name}: {len(ds.y_train)} train, {len(ds.y_test)} test images of shape "
          f"{ds.image_shape}; {ds.description}")
    print(f"kernels in {args.dtype}; ridge {'chosen on a held-out 20% of the training set' if args.ridge == 'auto' else args.ridge}")
    rows = []
    store = _store_opts(args)
    if store is not None and len(args.files) > 1:
        raise NtkcError("--store holds the kernels of one architecture; give one .arch file with it",
                        hint="or use `ntkc run` with a `store:` folder, which keeps one store per architecture")
    for f in args.files:
        rows += regress_one(f, ds, args.dtype, args.backend, args.ridge, args.quiet, store, args.memory)
    print(_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_run(args) -> int:
    from .learn.experiment import run_experiment

    out = run_experiment(args.config, quiet=args.quiet)
    print(_table(out["rows"]))
    print(f"results in {out['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
