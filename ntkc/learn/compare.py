"""`ntkc compare`: finite networks of one `.arch` file trained by full-batch gradient descent,
against the infinitely wide network's prediction at the same training time.

For every width and seed, the finite network `k.network(width, seed, out_dim=classes)` is
trained on the squared loss 1/2 sum_i ||g(x_i) - y_i||^2 (one-hot minus 0.1 targets, the
paper's) with step `lr` (`ntkc.finite.train`); the infinite-width prediction after the same
number of steps is `gradient_descent` with the exact NTK, the same loss and the same lr.

What is centred, and why: each finite network is trained as g = f_theta - f_theta0, its output
minus its own output at initialisation. The infinitely wide networks' prediction is the mean of
an ensemble whose members start at f_0 ~ GP(0, NNGP); one finite network carries its own f_0,
of size O(1) at every width, through training, so it would stay O(1) away from the mean however
wide it is, and only an average over many seeds would approach it. Centred, a network starts at
exactly 0, as the mean does, and its distance to the prediction measures what the limit leaves
out (the fluctuation of its NTK and the change of its features during training), which shrinks
like 1/sqrt(width). The distance reported is the root mean square over test images and outputs
of g_test(t) - f_inf,test(t); `agreement` is the share of test images where both predict the
same class.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import scipy.linalg

from ..errors import NtkcError
from .predict import GradientFlow
from .regression import targets

DEFAULT_POINTS = 8  # recorded steps, geometrically spaced from 1 to --steps, when none are given


def record_steps(steps: int, times=None) -> list[int]:
    """The step counts at which networks are compared: `times` (within [1, steps]) or ~8 points
    geometrically spaced from 1 to `steps`."""
    if times:
        out = sorted({int(t) for t in times})
        if out[0] < 0 or out[-1] > steps:
            raise NtkcError(f"--times must lie in [0, --steps={steps}], got {out}")
        return out
    return sorted({int(round(s)) for s in np.geomspace(1, steps, DEFAULT_POINTS)})


def compare(file: str, ds, widths, steps: int, lr, seeds=(0,), times=None, device: str = "cpu",
            net_dtype: str = "float32", kernel_dtype: str = "float64", backend: str = "auto",
            quiet: bool = False) -> dict:
    """Train the finite networks and compare them with the infinite-width prediction; returns the
    results as a JSON-ready dict (`rows` per width, seed and step; `infinite` per step; `rates`,
    the fitted slope of log distance against log width at each step)."""
    import torch

    from ..engine.kernel import compile_kernel
    from ..finite.train import train
    from ..util.precision import torch_dtype
    from .progress import progress_bar

    if steps < 1:
        raise NtkcError(f"--steps must be at least 1, got {steps}")
    from ..engine.inputs import resolve_device

    dev = resolve_device(device) or torch.device("cpu")  # BackendError where the device is not there
    k = compile_kernel(file)
    k.network(1, 0, 1)  # refuse an architecture with no finite network before any kernel work
    started = time.perf_counter()
    kd = torch_dtype(kernel_dtype)
    tr = k(ds.x_train, dtype=kd, backend=backend, device=dev)
    te = k(ds.x_test, ds.x_train, dtype=kd, backend=backend, device=dev)
    kernel_seconds = time.perf_counter() - started
    y, classes = targets(ds.y_train)
    top = float(scipy.linalg.eigvalsh(np.asarray(tr.ntk, dtype=np.float64), subset_by_index=[len(y) - 1] * 2)[0])
    lr = 1.0 / top if lr in (None, "auto") else float(lr)  # auto: half the stability limit 2 / lambda_max
    if not 0 < lr < 2.0 / top:
        raise NtkcError(f"--lr {lr:g}: gradient descent on this training set diverges for lr >= "
                        f"{2 / top:.4g} (2 / the NTK's largest eigenvalue {top:.4g})",
                        hint=f"use --lr auto ({1 / top:.4g}) or a smaller value")
    flow = GradientFlow(tr.ntk, y, lr, discrete=True)
    record = record_steps(steps, times)
    f_inf = flow.test(te.ntk, record)                                   # [S, m, k]
    y_test = np.asarray(ds.y_test)
    infinite = [{"step": s, "accuracy": float(np.mean(classes[f.argmax(1)] == y_test)),
                 "rms": float(np.sqrt(np.mean(f ** 2)))} for s, f in zip(record, f_inf)]
    x_train = torch.as_tensor(np.asarray(ds.x_train))
    x_test = torch.as_tensor(np.asarray(ds.x_test))
    y_t = torch.as_tensor(y)
    rows, seconds = [], {}
    for width in widths:
        t0 = time.perf_counter()
        for seed in seeds:
            net = k.network(int(width), int(seed), out_dim=len(classes), dtype=torch_dtype(net_dtype), device=dev)
            update, close = progress_bar(f"width {width} seed {seed}", quiet)
            try:
                traj = train(net, x_train, y_t, steps, lr, record, x_test, centre=True, progress=update)
            except FloatingPointError as err:
                raise NtkcError(str(err), hint="use a smaller --lr") from None
            finally:
                close()
            for i, s in enumerate(record):
                g, f = traj.test[i], f_inf[i]
                rows.append({"width": int(width), "seed": int(seed), "step": s,
                             "accuracy": float(np.mean(classes[g.argmax(1)] == y_test)),
                             "distance": float(np.sqrt(np.mean((g - f) ** 2))),
                             "agreement": float(np.mean(g.argmax(1) == f.argmax(1))),
                             "train_loss": float(traj.loss[i] / len(y))})
        seconds[int(width)] = time.perf_counter() - t0
    return {"arch": str(file), "dataset": ds.name, "description": ds.description, "n_train": len(y),
            "n_test": len(y_test), "steps": steps, "lr": lr, "max_stable_lr": flow.max_stable_lr,
            "widths": [int(w) for w in widths], "seeds": [int(s) for s in seeds], "record": record,
            "device": str(dev), "net_dtype": net_dtype, "kernel_dtype": kernel_dtype, "centred": True,
            "infinite": infinite, "rows": rows, "rates": rates(rows, record),
            "seconds": {"kernels": kernel_seconds, "train_by_width": seconds,
                        "total": time.perf_counter() - started},
            "machine": {"platform": platform.platform(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()}}


def summary(rows: list[dict]) -> dict:
    """(width, step) -> mean and standard deviation over seeds of each measured quantity."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["width"], r["step"]), []).append(r)
    keys = ("accuracy", "distance", "agreement", "train_loss")
    return {wk: {key: (float(np.mean([r[key] for r in rs])), float(np.std([r[key] for r in rs])))
                 for key in keys} for wk, rs in out.items()}


def rates(rows: list[dict], record: list[int]) -> dict:
    """Least-squares slope of log(mean distance) against log(width) at each recorded step
    (-0.5 is the 1/sqrt(width) rate); empty with fewer than two widths."""
    s = summary(rows)
    widths = sorted({w for w, _ in s})
    if len(widths) < 2:
        return {}
    out = {}
    for step in record:
        d = np.array([s[(w, step)]["distance"][0] for w in widths])
        if (d > 0).all():
            out[str(step)] = float(np.polyfit(np.log(widths), np.log(d), 1)[0])
    return out


def format_table(res: dict) -> str:
    """One line per (width, step): accuracy, distance to the infinite-width prediction, agreement
    and training loss (mean +- sd over seeds), with the infinite network's accuracy beside."""
    s = summary(res["rows"])
    inf = {r["step"]: r for r in res["infinite"]}
    head = (f"{'width':>6} {'step':>6} {'test acc':>15} {'inf acc':>8} {'distance':>17} {'|f_inf|':>7} "
            f"{'agree':>7} {'train loss':>11}")
    lines = [f"{res['arch']}: {res['n_train']} train / {res['n_test']} test ({res['dataset']}), lr {res['lr']:.4g} "
             f"(stable below {res['max_stable_lr']:.4g}), seeds {res['seeds']}, centred (f - f_0)",
             head, "-" * len(head)]
    for (width, step), m in sorted(s.items()):
        acc, dist = m["accuracy"], m["distance"]
        lines.append(f"{width:>6} {step:>6} {100 * acc[0]:>7.2f} +-{100 * acc[1]:>5.2f}% {100 * inf[step]['accuracy']:>7.2f}% "
                     f"{dist[0]:>8.4f} +-{dist[1]:>6.4f} {inf[step]['rms']:>7.4f} {100 * m['agreement'][0]:>6.1f}% "
                     f"{m['train_loss'][0]:>11.4f}")
    if res["rates"]:
        lines.append("distance ~ width^slope, slope at each step (-0.5 is 1/sqrt(width)): "
                     + ", ".join(f"{k}: {v:.2f}" for k, v in res["rates"].items()))
    sec = res["seconds"]
    lines.append(f"time: kernels {sec['kernels']:.1f} s, training "
                 + ", ".join(f"width {w}: {t:.1f} s" for w, t in sec["train_by_width"].items())
                 + f"; total {sec['total']:.1f} s on {res['device']}")
    return "\n".join(lines)


def plot(res: dict, path) -> None:
    """Three panels: test accuracy against step (each width, and the infinite network), distance
    to the infinite-width prediction against step, and distance against width (log-log) with the
    1/sqrt(width) slope for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(res["rows"])
    widths, record = res["widths"], res["record"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours = plt.cm.viridis(np.linspace(0.15, 0.85, len(widths)))
    for w, c in zip(widths, colours):
        acc = np.array([s[(w, t)]["accuracy"] for t in record])
        dist = np.array([s[(w, t)]["distance"] for t in record])
        axes[0].errorbar(record, 100 * acc[:, 0], yerr=100 * acc[:, 1], color=c, marker="o", ms=3, capsize=2,
                         label=f"width {w}")
        axes[1].errorbar(record, dist[:, 0], yerr=dist[:, 1], color=c, marker="o", ms=3, capsize=2,
                         label=f"width {w}")
    axes[0].plot(record, [100 * r["accuracy"] for r in res["infinite"]], "k--", label="infinite width")
    axes[1].plot(record, [r["rms"] for r in res["infinite"]], "k:", label="|f_inf| (rms)")
    for ax, ylabel in ((axes[0], "test accuracy (%)"), (axes[1], "rms distance to f_inf")):
        ax.set_xscale("log")
        ax.set_xlabel("gradient-descent step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    ax = axes[2]
    tcol = plt.cm.plasma(np.linspace(0.1, 0.8, len(record)))
    for t, c in zip(record, tcol):
        d = [s[(w, t)]["distance"][0] for w in widths]
        ax.plot(widths, d, marker="o", ms=3, color=c, label=f"step {t}")
    ref = s[(widths[0], record[-1])]["distance"][0]
    ax.plot(widths, [ref * (w / widths[0]) ** -0.5 for w in widths], "k--", label="~ 1/sqrt(width)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("width")
    ax.set_ylabel("rms distance to f_inf")
    ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{Path(res['arch']).name}: finite networks (centred) against the infinite-width prediction, "
                 f"{res['dataset']} {res['n_train']}/{res['n_test']}, lr {res['lr']:.3g}", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
