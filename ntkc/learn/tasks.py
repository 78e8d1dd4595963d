"""Tasks over a dataset that the command line and experiments share: the kernels of one
architecture on a dataset (in memory or through a Gram store), kernel regression with both
kernels, the accuracy table, and saving kernel blocks to a `.npz` file."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..engine.kernel import KernelResult
from ..engine.tiling import TILE
from ..errors import NtkcError
from ..util.atomic import atomic_file
from ..util.precision import torch_dtype
from .progress import progress_bar
from .regression import DEFAULT_RIDGES


def dataset_kernels(file: str, ds, dtype: str, backend: str, quiet: bool, store: dict | None = None,
                    memory: int | None = None):
    """Train x train and test x train NNGP / NTK for one architecture, with timings.

    With `store` (a dict of `dir`, `executor`, `address`, `memory`, `tile`, `test_test`) the
    kernels are computed into (or resumed from) a Gram store and returned memory-mapped."""
    from ..engine.kernel import compile_kernel

    k = compile_kernel(Path(file))  # a path, whatever its name ends in (never .arch text)
    if store is not None:
        return (k,) + _store_kernels(k, ds, dtype, backend, quiet, store)
    dt = torch_dtype(dtype)
    name = Path(file).stem
    update, close = progress_bar(f"{name} train", quiet)
    try:
        tr = k(ds.x_train, dtype=dt, backend=backend, progress=update, memory=memory)
    finally:
        close()
    if len(ds.x_test) == 0:  # --n-test 0: the training block only
        empty = np.zeros((0, len(ds.x_train)), dtype=tr.nngp.dtype)
        return k, tr, KernelResult(empty, empty.copy(), 0.0, 0, tr.backend)
    update, close = progress_bar(f"{name} test", quiet)
    try:
        te = k(ds.x_test, ds.x_train, dtype=dt, backend=backend, progress=update, memory=memory)
    finally:
        close()
    return k, tr, te


def _store_kernels(k, ds, dtype: str, backend: str, quiet: bool, opts: dict):
    from ..store.gramstore import GramStore
    from ..store.job import gram_store

    update, close = progress_bar(f"{Path(k.arch.filename).stem} store", quiet)
    try:
        store = gram_store(k, opts["dir"], ds.x_train, ds.x_test, y_train=ds.y_train, y_test=ds.y_test,
                           dtype=dtype, backend=backend, executor=opts.get("executor") or "local",
                           address=opts.get("address"), memory=opts.get("memory"), tile=opts.get("tile") or TILE,
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


def save_npz(path: str, **arrays) -> None:
    """Write arrays to a `.npz` file atomically (a reader sees the old file or the whole new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        np.savez(f, **arrays)


def ridge_setting(text) -> tuple[float | None, tuple[float, ...] | None]:
    if text in ("auto", None):
        return None, DEFAULT_RIDGES
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not (0.0 <= value < float("inf")):
        raise NtkcError(f"--ridge must be a number >= 0 or 'auto', got {text!r}",
                        hint="the ridge is relative to the kernel's mean diagonal, e.g. 1e-4")
    return value, None


def regress_one(file: str, ds, dtype: str, backend: str, ridge, quiet: bool, store: dict | None = None,
                memory: int | None = None) -> list[dict]:
    check_regression_inputs(ds, ridge)
    k, tr, te = dataset_kernels(file, ds, dtype, backend, quiet, store, memory)
    return regression_rows(file, ds, tr, te, ridge)


def check_regression_inputs(ds, ridge) -> None:
    """Refuse, before any kernel is computed, what regression cannot score."""
    if len(ds.y_test) == 0:
        raise NtkcError("regression needs test images to score, and this dataset selection has none",
                        hint="give --n-test a positive number (or leave it out to use all test images)")
    ridge_setting(ridge)


def regression_rows(file: str, ds, tr, te, ridge) -> list[dict]:
    """Kernel regression with the NNGP and the NTK of computed kernels: one row for each."""
    from .regression import kernel_regression

    fixed, ridges = ridge_setting(ridge)
    if ridges is not None and np.unique(ds.y_train, return_counts=True)[1].min() < 2:
        # One image of some class: nothing can be held out to choose a ridge; use none.
        fixed, ridges = 0.0, None
    train_classes = set(np.unique(ds.y_train).tolist())
    unseen = sorted(set(np.unique(ds.y_test).tolist()) - train_classes)
    rows = []
    for which in ("nngp", "ntk"):
        res = kernel_regression(getattr(tr, which), ds.y_train, getattr(te, which), ds.y_test,
                                ridge=fixed or 0.0, ridges=ridges, jitter="auto")
        rows.append({"arch": Path(file).name, "kernel": which.upper(), "n_train": len(ds.y_train),
                     "n_test": len(ds.y_test), "ridge": res.ridge, "jitter": res.jitter,
                     "accuracy": res.accuracy, "seconds": tr.seconds + te.seconds,
                     "pairs": tr.pairs + te.pairs, "backend": tr.backend,
                     "train_classes": len(train_classes), "unseen_test_classes": unseen})
    return rows


def format_table(rows: list[dict]) -> str:
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
    lines += coverage_warnings(rows)
    return "\n".join(lines)


def coverage_warnings(rows: list[dict]) -> list[str]:
    """Warnings for accuracies that measure little: one class to learn from, or test classes the
    training set never shows (those images cannot be classified right)."""
    out = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        if any(r.get("train_classes", 2) < 2 for r in mine):
            out.append(f"warning: {arch}: the training set holds one class only, so every test image is given "
                       "that class; the accuracy measures nothing about the kernel")
        unseen = sorted({c for r in mine for c in r.get("unseen_test_classes", ())})
        if unseen:
            out.append(f"warning: {arch}: test classes {unseen} never occur in the training set, "
                       "so their images are always misclassified")
    return out
