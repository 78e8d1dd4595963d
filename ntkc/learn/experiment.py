"""`ntkc run CONFIG.yaml`: an experiment over architectures, training-set sizes and seeds.

A config names `architectures` (paths, relative to the config file), a `dataset` (and
`data_dir`), `n_train` (a number or a list), `n_test`, `seeds`, `dtype`, `backend`, `ridge`
('auto' or a number), `zca` and an `output` folder. With `store: DIR` every kernel is computed
into a resumable Gram store under DIR (one per architecture, size and seed; `executor: ray` and
`address` farm its tiles out to Ray), so an interrupted experiment resumes where it stopped. Results go to `output/results.json`, next to
a copy of the config, with a plot `output/accuracy.png` (accuracy against training-set size when
several sizes are run, else against architecture).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from ..errors import NtkcError
from ..util.atomic import check_writable, write_text

KEYS = {"name", "architectures", "dataset", "data_dir", "n_train", "n_test", "seeds", "dtype", "backend",
        "ridge", "zca", "output", "layout", "published", "published_band", "store", "executor", "address"}


class ConfigError(NtkcError, ValueError):
    """An experiment file that cannot be run as written."""


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read experiment file {str(path)!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    unknown = set(cfg) - KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}",
                          hint=f"known settings: {', '.join(sorted(KEYS))}")
    if not cfg.get("architectures"):
        raise ConfigError(f"{path}: `architectures` must list at least one .arch file")
    base = path.parent
    cfg["architectures"] = [str((base / a) if not Path(a).is_absolute() else Path(a)) for a in cfg["architectures"]]
    for a in cfg["architectures"]:
        if not Path(a).exists():
            raise ConfigError(f"{path}: architecture file {a!r} does not exist")
    sizes = cfg.get("n_train")
    cfg["n_train"] = sizes if isinstance(sizes, list) else [sizes]
    cfg["seeds"] = cfg.get("seeds", [0]) if isinstance(cfg.get("seeds", [0]), list) else [cfg["seeds"]]
    cfg.setdefault("dataset", "digits")
    cfg.setdefault("dtype", "float64")
    cfg.setdefault("backend", "auto")
    cfg.setdefault("ridge", "auto")
    cfg["output"] = str(base / cfg.get("output", f"out/{path.stem}"))
    cfg["name"] = cfg.get("name", path.stem)
    if cfg.get("store"):
        cfg["store"] = str(base / cfg["store"])
    if cfg.get("executor", "local") not in ("local", "ray"):
        raise ConfigError(f"{path}: `executor` must be local or ray, got {cfg['executor']!r}")
    if cfg.get("executor", "local") == "ray" and not cfg.get("store"):
        raise ConfigError(f"{path}: `executor: ray` needs a `store` folder", hint="add `store: out/store`")
    return cfg


def run_experiment(config: str | Path, quiet: bool = False) -> dict:
    from .data import load_dataset
    from .tasks import regress_one

    cfg = load_config(config)
    folder = Path(cfg["output"])
    check_writable(folder / "results.json", f"{config}: `output`")
    shutil.copyfile(config, folder / "config.yaml")
    rows = []
    started = time.time()
    for seed in cfg["seeds"]:
        for n in cfg["n_train"]:
            ds = load_dataset(cfg["dataset"], data_dir=cfg.get("data_dir"), n_train=n, n_test=cfg.get("n_test"),
                              seed=seed, zca=cfg.get("zca"), layout=cfg.get("layout", "NCHW"))
            for arch in cfg["architectures"]:
                store = None
                if cfg.get("store"):
                    store = {"dir": str(Path(cfg["store"]) / f"{Path(arch).stem}_n{n}_seed{seed}"),
                             "executor": cfg.get("executor", "local"), "address": cfg.get("address")}
                for row in regress_one(arch, ds, cfg["dtype"], cfg["backend"], cfg["ridge"], quiet, store):
                    row["seed"] = seed
                    rows.append(row)
                _write(folder, cfg, rows, started)
    _write(folder, cfg, rows, started)
    plot(rows, folder / "accuracy.png", cfg)
    return {"rows": rows, "folder": str(folder)}


def _write(folder: Path, cfg: dict, rows: list[dict], started: float) -> None:
    import platform

    import torch

    doc = {"name": cfg["name"], "config": cfg, "rows": rows, "wall_seconds": time.time() - started,
           "machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "cpus": __import__("os").cpu_count(), "torch": torch.__version__}}
    write_text(folder / "results.json", json.dumps(doc, indent=2))


def plot(rows: list[dict], path: Path, cfg: dict) -> None:
    """Accuracy against training-set size (several sizes) or against architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in rows:
        series.setdefault((r["arch"], r["kernel"]), {}).setdefault(r["n_train"], []).append(100 * r["accuracy"])
    sizes = sorted({r["n_train"] for r in rows})
    if len(sizes) > 1:
        for (arch, kern), pts in series.items():
            xs = sorted(pts)
            ax.errorbar(xs, [np.mean(pts[x]) for x in xs], yerr=[np.std(pts[x]) for x in xs], marker="o",
                        capsize=3, label=f"{Path(arch).stem} {kern}")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("training-set size")
    else:
        archs = list(dict.fromkeys(r["arch"] for r in rows))
        for k, kern in enumerate(("NNGP", "NTK")):
            vals = [np.mean(series.get((a, kern), {}).get(sizes[0], [np.nan])) for a in archs]
            ax.bar(np.arange(len(archs)) + 0.4 * k - 0.2, vals, width=0.4, label=kern)
        ax.set_xticks(np.arange(len(archs)), [Path(a).stem for a in archs], rotation=20, ha="right")
    for label, pts in (cfg.get("published") or {}).items():
        if isinstance(pts, dict):
            xs = sorted(int(x) for x in pts)
            ax.plot(xs, [pts[x] if x in pts else pts[str(x)] for x in xs], "k--", marker="x", label=f"published: {label}")
    band = cfg.get("published_band")
    if band:  # [low, high, label]: a published range of accuracies, drawn as a shaded band
        ax.axhspan(float(band[0]), float(band[1]), color="grey", alpha=0.25,
                   label=f"published: {band[2] if len(band) > 2 else ''}".rstrip(": "))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{cfg['name']}: {cfg['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
