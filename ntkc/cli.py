"""The `ntkc` command line: compile, gram, regress, compare, run, layers.

A thin argparse layer: every command parses its options and calls library functions
(`ntkc.compile`, `ntkc.learn.tasks`, `ntkc.learn.experiment`, the Triton generator and report);
nothing in the package imports this module."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ._version import __version__
from .engine.sizes import TILE, memory_bytes
from .errors import NtkcError
from .util.atomic import check_writable as _output, write_text
from .util.precision import PRECISIONS

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ntkc",
        description="Exact infinite-width CNN kernels (NNGP and CNTK) from .arch descriptions, "
                    "and kernel regression with them.",
        epilog="Examples:\n"
               "  ntkc compile examples/cntk_gap_d3.arch --emit plan\n"
               "  ntkc regress examples/digits_v.arch examples/digits_gap.arch --dataset digits\n"
               "  ntkc gram examples/cntk_v_d3.arch --dataset cifar10 --n-train 100 --n-test 50 --out k.npz\n"
               "  ntkc regress examples/digits_v.arch --dataset digits --times 1,10,100,inf\n"
               "  ntkc compare examples/digits_finite.arch --dataset digits --widths 64,128,256\n"
               "  ntkc run experiments/digits_size.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ntkc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def rules_arg(q):
        q.add_argument("--no-user-rules", action="store_true",
                       help="refuse .arch files with `use` lines (they import Python modules, running their "
                            "code): for files from elsewhere")

    def threads_arg(q):
        q.add_argument("--threads", type=_count_arg(1), metavar="N",
                       help="CPU threads to compute with (default: $NTKC_NUM_THREADS, $OMP_NUM_THREADS, "
                            "else every core); results do not depend on it")

    c = sub.add_parser("compile", help="check an architecture and print its plan or generated Triton source",
                       description="Parse and check a .arch file, then print what it compiles to.")
    c.add_argument("file", help="the .arch file")
    c.add_argument("--emit", choices=("plan", "triton", "numba", "report"), default="plan",
                   help="plan: stages, demanded planes and work per pair (default); triton: the generated "
                        "kernel source; numba: the generated CPU kernels (float64); report: the kernels compiled "
                        "ahead of time for sm_80 and sm_90 in float32 and float64 (no GPU needed): registers, spills, "
                        "instructions per entry-layer and the predicted pairs/s of the static speed model (a model, "
                        "not a measurement)")
    c.add_argument("--json", action="store_true", help="with --emit report: print the report as JSON")
    rules_arg(c)
    c.set_defaults(func=cmd_compile)

    def data_args(q):
        q.add_argument("--dataset", default="digits",
                       help="digits (built in, default), cifar10, mnist, fashion-mnist, or a .npz file")
        q.add_argument("--data-dir", help="folder holding the dataset's files (cifar10, mnist)")
        q.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW", help="image layout of a .npz")
        q.add_argument("--n-train", type=_count_arg(1), help="class-balanced training subset size (default: all)")
        q.add_argument("--n-test", type=_count_arg(0), help="class-balanced test subset size (default: all)")
        q.add_argument("--seed", type=_count_arg(0), default=0, help="seed for subsets and splits (>= 0)")
        q.add_argument("--zca", type=float, help="ZCA whitening with this regulariser (fraction of the mean eigenvalue)")
        q.add_argument("--dtype", choices=PRECISIONS, default="float64", help="kernel precision")
        q.add_argument("--backend", choices=("auto", "torch", "triton", "numba"), default="auto",
                       help="auto (default): triton on a GPU; on a CPU the fused numba kernels for runs "
                            "that repay compiling them, else torch")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        threads_arg(q)
        rules_arg(q)

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
        q.add_argument("--tile", type=_count_arg(1), default=TILE,
                       help=f"images per tile side in a store (default {TILE})")
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
    r.add_argument("--times", help="also report accuracy and loss of the infinitely wide networks trained by "
                                   "gradient flow for these times, e.g. 1,10,100,inf (inf = kernel regression)")
    r.add_argument("--lr", type=float, default=1.0, help="with --times: the learning rate of the flow (default 1)")
    r.add_argument("--plot", default="regress_times.png", help="with --times: where to draw accuracy and loss "
                                                               "against t (default regress_times.png)")
    store_args(r)
    r.set_defaults(func=cmd_regress)

    m = sub.add_parser("compare", help="train finite networks of several widths and compare them with the "
                                       "infinite-width prediction at the same training time",
                       description="Train the finite networks of FILE.arch (NTK parameterisation, centred: "
                                   "f - f_0) by full-batch gradient descent on the squared loss, and report test "
                                   "accuracy and the distance to the infinitely wide network's prediction after "
                                   "the same steps, against width and time (table, plot and results.json).")
    m.add_argument("file", help="the .arch file")
    data_args(m)
    m.add_argument("--widths", default="64,128,256", help="hidden widths, comma separated (default 64,128,256)")
    m.add_argument("--steps", type=_count_arg(1), default=200, help="gradient-descent steps (default 200)")
    m.add_argument("--lr", default="auto", help="learning rate, or 'auto' for 1 / (largest NTK eigenvalue), half "
                                                "the stability limit (default)")
    m.add_argument("--seeds", default="2", help="network seeds: a count N (seeds 0..N-1) or a list 0,5,7 (default 2)")
    m.add_argument("--times", help="steps at which to compare, comma separated (default: 8 geometrically spaced)")
    m.add_argument("--device", default="cpu", help="torch device of the networks and kernels, e.g. cuda (default cpu)")
    m.add_argument("--net-dtype", choices=PRECISIONS, default="float32", help="precision of the finite networks")
    m.add_argument("--out", help="output folder (default out/compare_<arch name>)")
    m.set_defaults(func=cmd_compare)

    e = sub.add_parser("run", help="run an experiment described by a YAML file",
                       description="Run the experiment in CONFIG.yaml; write results.json, a copy of the "
                                   "config and a plot to its output folder.")
    e.add_argument("config", help="experiment YAML file")
    e.add_argument("--quiet", action="store_true")
    threads_arg(e)
    rules_arg(e)
    e.set_defaults(func=cmd_run)

    l = sub.add_parser("layers", help="list the layers the .arch language knows, with their parameters",
                       description="List the built-in layers, and those of the rule modules that the given "
                                   ".arch files load with `use`, or that --rules names.")
    l.add_argument("files", nargs="*", help=".arch files whose `use` lines load user rules")
    l.add_argument("--rules", action="append", default=[], metavar="MODULE",
                   help="a rule module to load (a .py path or a dotted module name); repeatable")
    rules_arg(l)
    l.set_defaults(func=cmd_layers)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        if getattr(args, "threads", None):
            from .util.threads import set_threads

            set_threads(args.threads)
        if getattr(args, "no_user_rules", False):
            _refuse_user_rules(args)
        return args.func(args) or 0
    except NtkcError as err:
        print(f"ntkc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ntkc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one line each, `ntkc: warning: ...` (no source line)."""
    text = " ".join(str(message).split())
    print(f"ntkc: warning: {text}", file=file or sys.stderr)


def _closed_pipe() -> int:
    """The reader of stdout went away (`ntkc compile F | head -1`): stop quietly, as Unix tools
    do, with the status of a process ended by SIGPIPE. Point stdout at /dev/null first, so the
    interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 128 + 13


# -- checks made before any work ----------------------------------------------------------------

def _count_arg(least: int):
    """An argparse type: an integer >= `least`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is too small: give an integer >= {least}")
        return value
    parse.__name__ = "integer"
    return parse


def _refuse_user_rules(args) -> None:
    """--no-user-rules: load every .arch file the command names with user rules refused, before
    anything else reads them (a `use` line would import Python, running it)."""
    from .lang.network import load

    files = list(getattr(args, "files", None) or []) + ([args.file] if getattr(args, "file", None) else [])
    if getattr(args, "config", None):
        from .learn.experiment import load_config

        files += load_config(args.config)["architectures"]
    if getattr(args, "rules", None):
        raise NtkcError("--rules loads user rules, and --no-user-rules refuses them", hint="give one of the two")
    for f in files:
        load(Path(f), user_rules=False)


# -- commands ---------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    import ntkc

    if args.json and args.emit != "report":
        print(f"ntkc: error: --json goes with --emit report (not --emit {args.emit})", file=sys.stderr)
        return 2
    k = ntkc.compile(Path(args.file))
    if args.emit == "plan":
        print(k.describe())
    elif args.emit == "triton":
        from .backends.triton.codegen import generate
        print(generate(k.plan))
    elif args.emit == "numba":
        from .backends.numba.codegen import build
        print(build(k.plan, "float64").source, end="")
    else:
        from .backends.triton.report import build_report, format_report, to_json
        m = build_report(k.arch)
        print(to_json(m) if args.json else format_report(m))
    return 0


def cmd_layers(args) -> int:
    import ntkc
    from .lang.network import load
    from .rules.registry import known_rules

    for spec in args.rules:
        ntkc.load_rules(spec, os.getcwd())
    for f in args.files:
        load(Path(f))

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


def _store_opts(args) -> dict | None:
    if not getattr(args, "store", None):
        for flag in ("executor", "address"):
            if getattr(args, flag, None) not in (None, "local"):
                raise NtkcError(f"--{flag} needs --store DIR", hint="tiles are farmed out into a Gram store folder")
        return None
    return {"dir": args.store, "executor": args.executor, "address": args.address, "memory": args.memory,
            "tile": args.tile, "test_test": getattr(args, "test_test", False), "verify": args.verify}


def _bytes_arg(text: str) -> int:
    try:
        return memory_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_gram(args) -> int:
    store = _store_opts(args)
    if store is None and not args.out:
        raise NtkcError("ntkc gram needs --out FILE.npz or --store DIR (or both)")
    _output(args.out, "--out")
    from .learn.tasks import dataset_kernels, save_npz

    ds = _load(args)
    k, tr, te = dataset_kernels(args.file, ds, args.dtype, args.backend, args.quiet, store, args.memory)
    if args.out is None:
        print(f"store {args.store} complete: train x train {tr.nngp.shape}, test x train {te.nngp.shape}; "
              f"{tr.seconds:.1f} s in this run")
        return 0
    meta = {"arch": k.arch.source, "arch_file": args.file, "dataset": ds.name,
            "description": ds.description, "dtype": args.dtype, "backend": tr.backend,
            "seconds": tr.seconds + te.seconds, "pairs": tr.pairs + te.pairs}
    save_npz(args.out, nngp_train=tr.nngp, ntk_train=tr.ntk, nngp_test=te.nngp, ntk_test=te.ntk,
             y_train=ds.y_train, y_test=ds.y_test, meta=np.array(json.dumps(meta)))
    if store is not None:
        print(f"wrote {args.out} from the store {args.store}: train {tr.nngp.shape}, test {te.nngp.shape}")
    else:
        print(f"wrote {args.out}: train {tr.nngp.shape}, test {te.nngp.shape}, {meta['pairs']} pairs in "
              f"{meta['seconds']:.1f} s ({meta['pairs'] / max(meta['seconds'], 1e-9):.0f} pairs/s)")
    return 0


def cmd_regress(args) -> int:
    from .learn.tasks import format_table, regress_one

    _output(args.json, "--json")
    if args.times:
        from .learn.times import parse_times

        parse_times(args.times)
        _output(args.plot, "--plot")
    ds = _load(args)
    print(f"dataset: {ds.name}: {len(ds.y_train)} train, {len(ds.y_test)} test images of shape "
          f"{ds.image_shape}; {ds.description}")
    print(f"kernels in {args.dtype}; ridge {'chosen on a held-out 20% of the training set' if args.ridge == 'auto' else args.ridge}")
    rows = []
    store = _store_opts(args)
    if store is not None and len(args.files) > 1:
        raise NtkcError("--store holds the kernels of one architecture; give one .arch file with it",
                        hint="or use `ntkc run` with a `store:` folder, which keeps one store per architecture")
    if args.times:
        return _regress_times(args, ds, store)
    for f in args.files:
        rows += regress_one(f, ds, args.dtype, args.backend, args.ridge, args.quiet, store, args.memory)
    print(format_table(rows))
    if args.json:
        write_text(args.json, json.dumps(rows, indent=2))
    return 0


def _regress_times(args, ds, store) -> int:
    from .learn.tasks import format_table
    from .learn.times import format_times, parse_times, plot_times, regress_times

    times = parse_times(args.times)
    rows, trows = [], []
    for f in args.files:
        r, t = regress_times(f, ds, args.dtype, args.backend, args.ridge, args.quiet, times, args.lr, store,
                             args.memory)
        rows += r
        trows += t
    print(format_table(rows))
    print(format_times(trows))
    plot_times(trows, args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        write_text(args.json, json.dumps({"regression": rows, "times": trows}, indent=2))
    return 0


def cmd_compare(args) -> int:
    from .learn.compare import compare, format_table, plot

    widths = _int_list(args.widths, "--widths")
    seeds = _int_list(args.seeds, "--seeds")
    seeds = list(range(seeds[0])) if "," not in args.seeds else seeds
    times = _int_list(args.times, "--times") if args.times else None
    if any(w < 1 for w in widths) or not seeds:
        raise NtkcError("--widths must be positive and --seeds at least 1")
    lr = args.lr
    if lr != "auto":
        try:
            lr = float(lr)
        except ValueError:
            raise NtkcError(f"--lr must be a number or 'auto', got {args.lr!r}") from None
    out = Path(args.out or f"out/compare_{Path(args.file).stem}")
    _output(str(out / "results.json"), "--out")
    ds = _load(args)
    print(f"dataset: {ds.name}: {len(ds.y_train)} train, {len(ds.y_test)} test images of shape "
          f"{ds.image_shape}; {ds.description}")
    res = compare(args.file, ds, widths, args.steps, lr, seeds, times, args.device, args.net_dtype,
                  args.dtype, args.backend, args.quiet)
    write_text(out / "results.json", json.dumps(res, indent=2))
    plot(res, out / "compare.png")
    print(format_table(res))
    print(f"results in {out}/results.json, plot {out}/compare.png")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise NtkcError(f"{flag} must be integers separated by commas, got {text!r}") from None


def cmd_run(args) -> int:
    from .learn.experiment import run_experiment
    from .learn.tasks import format_table

    out = run_experiment(args.config, quiet=args.quiet)
    print(format_table(out["rows"]))
    print(f"results in {out['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
