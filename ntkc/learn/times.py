"""`ntkc regress ... --times 1,10,100,inf`: the infinitely wide network's accuracy and loss over
training time, for the NNGP and the NTK of each architecture.

At each time t the predictions are those of gradient flow df/dt = -lr (K + ridge) (f - y) from
f = 0 on the squared loss 1/2 sum_i ||f(x_i) - y_i||^2 (`ntkc.learn.predict.GradientFlow`, one
eigendecomposition for every t). With the NTK that is the whole infinitely wide network trained
by gradient descent; with the NNGP, the same network with only its readout trained. The ridge
is the one kernel regression uses (chosen on a held-out part of the training set with
`--ridge auto`), so the t = inf row is the kernel-regression result. The loss reported is
1/2 ||f(x) - y||^2 averaged over images (the training objective divided by n), on the training
and on the test set.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import NtkcError
from .predict import GradientFlow
from .regression import targets


def parse_times(text: str) -> list[float]:
    """'1,10,100,inf' -> [1.0, 10.0, 100.0, inf]."""
    try:
        out = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise NtkcError(f"--times must be numbers separated by commas (inf allowed), got {text!r}") from None
    if not out or any(math.isnan(t) or t < 0 for t in out):
        raise NtkcError(f"--times must be non-negative numbers (inf allowed), got {text!r}")
    return sorted(set(out))


def time_rows(file: str, ds, tr, te, rows: list[dict], times: list[float], lr: float = 1.0) -> list[dict]:
    """Accuracy and loss at each time for each kernel; `rows` are the regression rows of the same
    kernels (their ridge, plus any jitter, is used)."""
    y, classes = targets(ds.y_train)
    y_test, _ = targets(ds.y_test, classes)
    out = []
    for row in rows:
        which = row["kernel"].lower()
        flow = GradientFlow(getattr(tr, which), y, lr, row["ridge"] + row.get("jitter", 0.0))
        f_test, f_train = flow.test(getattr(te, which), times), flow.train(times)
        for t, ft, fr in zip(times, f_test, f_train):
            out.append({"arch": Path(file).name, "kernel": row["kernel"], "t": t, "lr": lr, "ridge": row["ridge"],
                        "test_accuracy": float(np.mean(classes[ft.argmax(1)] == ds.y_test)),
                        "train_accuracy": float(np.mean(classes[fr.argmax(1)] == ds.y_train)),
                        "test_loss": float(0.5 * np.mean(np.sum((ft - y_test) ** 2, axis=1))),
                        "train_loss": float(0.5 * np.mean(np.sum((fr - y) ** 2, axis=1)))})
    return out


def regress_times(file: str, ds, dtype: str, backend: str, ridge, quiet: bool, times: list[float], lr: float = 1.0,
                  store: dict | None = None, memory: int | None = None) -> tuple[list[dict], list[dict]]:
    """(regression rows, time rows) of one architecture, its kernels computed once."""
    from .tasks import check_regression_inputs, dataset_kernels, regression_rows

    check_regression_inputs(ds, ridge)
    if not lr > 0:
        raise NtkcError(f"--lr must be > 0, got {lr}")
    _, tr, te = dataset_kernels(file, ds, dtype, backend, quiet, store, memory)
    rows = regression_rows(file, ds, tr, te, ridge)
    return rows, time_rows(file, ds, tr, te, rows, times, lr)


def format_times(trows: list[dict]) -> str:
    head = (f"{'architecture':<24} {'kernel':<6} {'t':>8} {'train acc':>9} {'test acc':>9} "
            f"{'train loss':>10} {'test loss':>10}")
    lines = [f"gradient flow from f = 0, lr {trows[0]['lr']:g} (t in steps of lr; inf = kernel regression)" if trows
             else "", head, "-" * len(head)]
    for r in trows:
        lines.append(f"{r['arch']:<24} {r['kernel']:<6} {r['t']:>8g} {100 * r['train_accuracy']:>8.2f}% "
                     f"{100 * r['test_accuracy']:>8.2f}% {r['train_loss']:>10.4f} {r['test_loss']:>10.4f}")
    return "\n".join(lines)


def plot_times(trows: list[dict], path) -> None:
    """Test accuracy, and training and test loss, against t (log axis; inf drawn at the right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = sorted({r["t"] for r in trows if math.isfinite(r["t"]) and r["t"] > 0})
    lo, hi = (finite[0], finite[-1]) if finite else (1.0, 1.0)
    pos_inf = hi * 10 if finite else 1.0
    pos_zero = lo / 10 if finite else 0.1

    def x(t):
        return pos_inf if math.isinf(t) else (pos_zero if t == 0 else t)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in dict.fromkeys((r["arch"], r["kernel"]) for r in trows):
        rs = [r for r in trows if (r["arch"], r["kernel"]) == key]
        xs = [x(r["t"]) for r in rs]
        label = f"{Path(key[0]).stem} {key[1]}"
        a1.plot(xs, [100 * r["test_accuracy"] for r in rs], marker="o", label=label)
        line, = a2.plot(xs, [max(r["test_loss"], 1e-8) for r in rs], marker="o", label=f"{label} test")
        a2.plot(xs, [max(r["train_loss"], 1e-8) for r in rs], marker=".", ls="--", color=line.get_color(),
                label=f"{label} train")  # (an interpolating fit's 0 drawn at 1e-8 on the log axis)
    ticks = ([pos_zero] if any(r["t"] == 0 for r in trows) else []) + finite + [pos_inf]
    labels = (["0"] if any(r["t"] == 0 for r in trows) else []) + [f"{t:g}" for t in finite] + ["inf"]
    for ax, ylabel in ((a1, "test accuracy (%)"), (a2, "loss: 1/2 ||f - y||^2 per image")):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ticks, labels)
        ax.set_xlabel("training time t (gradient flow)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    a2.set_yscale("log")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
