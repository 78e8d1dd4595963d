"""Image datasets for kernel regression, preprocessed as in Arora et al. 2019.

Every loader returns a `Dataset` whose images are float NCHW arrays scaled to [0, 1]; the
preprocessing of the paper (per-channel standardisation with training-set statistics, optional
ZCA whitening) is applied by `standardize` and `zca_whiten`, and `load_dataset` chains it all.

Sources: scikit-learn's built-in digits, CIFAR-10 in the "python version" batch folder, MNIST /
Fashion-MNIST IDX files, and a user's `.npz`. A missing or malformed file raises `DataError`
naming the file, what was wrong and how to fix it.

Reference: S. Arora, S. S. Du, W. Hu, Z. Li, R. Salakhutdinov, R. Wang, "On Exact Computation
with an Infinitely Wide Neural Net", NeurIPS 2019.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import validate
from .dataset import DataError, Dataset, _find_folder, default_data_dirs
from .formats import load_cifar10, load_digits, load_mnist, load_npz, read_cifar_pickle, read_idx
from .preprocess import (apply_zca, balanced_indices, balanced_subset, channel_stats, fit_zca, standardize, subset,
                         zca_whiten)

__all__ = [
    "DataError",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_cifar10",
    "load_mnist",
    "load_npz",
    "read_idx",
    "read_cifar_pickle",
    "balanced_indices",
    "balanced_subset",
    "subset",
    "channel_stats",
    "standardize",
    "fit_zca",
    "apply_zca",
    "zca_whiten",
    "default_data_dirs",
]



# ---------------------------------------------------------------------------------------------
# one entry point

_GET_CIFAR = ("put the extracted cifar-10-batches-py folder in data_dir, or set $NTKC_DATA_DIR; "
              "download from https://www.cs.toronto.edu/~kriz/cifar.html")
_GET_MNIST = ("put the four IDX files (train-images-idx3-ubyte[.gz], ...) in data_dir, "
              "data_dir/{0} or data_dir/{1}/raw")


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    zca: float | None = None,
    layout: str = "NCHW",
    standardise: bool = True,
    dtype: Any = np.float64,
) -> Dataset:
    """Load a dataset and preprocess it as in Arora et al. 2019.

    name:
        "digits"                 scikit-learn's 8x8 digits (split 75/25 by `seed`)
        "cifar10"                `cifar-10-batches-py` under `data_dir`
        "mnist", "fashion-mnist" IDX files in `data_dir`, `data_dir/<name>` or the
                                 torchvision folder `data_dir/MNIST/raw`, `FashionMNIST/raw`
        "npz:PATH" or "PATH.npz" a user's arrays (see `load_npz`); `layout` says whether its
                                 images are "NCHW" or "NHWC"
    data_dir: where to look; None searches `default_data_dirs()` ($NTKC_DATA_DIR, ./data,
        ../shared/data next to the repository).
    n_train, n_test: class-balanced random subsets of these sizes (None keeps all), by `seed`.
    zca: None for no whitening, else the regulariser eps as a fraction of the mean eigenvalue.
    standardise: per-channel standardisation with the (subset) training set's mean and std.
    dtype: float dtype of the returned images.

    Steps, in order: scale to [0, 1], subsets, per-channel standardisation, ZCA; statistics
    come from the training images actually returned. `Dataset.description` lists them.
    """
    validate.request(n_train, n_test, seed)
    if not isinstance(name, (str, Path)):
        raise DataError(f"a dataset is named by a string, got {type(name).__name__}")
    name = str(name)
    key = name.lower()
    if key.startswith("npz:") or key.endswith(".npz"):
        ds = load_npz(name[4:] if key.startswith("npz:") else name, layout=layout)
    elif key == "digits":
        ds = load_digits(seed=seed)
    elif key in ("cifar10", "cifar-10"):
        folder = _find_folder(data_dir, ["cifar-10-batches-py", ""], "cifar10", _GET_CIFAR)
        ds = load_cifar10(folder)
    elif key in ("mnist", "fashion-mnist", "fashion_mnist", "fashionmnist"):
        canon = "mnist" if key == "mnist" else "fashion-mnist"
        tv = "MNIST" if canon == "mnist" else "FashionMNIST"
        folder = _find_folder(data_dir, ["", canon, f"{tv}/raw"], "mnist",
                              _GET_MNIST.format(canon, tv))
        ds = load_mnist(folder, canon)
    else:
        raise DataError(f"unknown dataset {name!r}",
                        "known: digits, cifar10, mnist, fashion-mnist, npz:PATH or PATH.npz")
    validate.split(ds, ds.name)
    ds = subset(ds, n_train, n_test, seed)
    with np.errstate(over="ignore"):
        ds = replace(ds, x_train=ds.x_train.astype(dtype), x_test=ds.x_test.astype(dtype))
    for name in ("x_train", "x_test"):
        validate.finite_images(getattr(ds, name), name, ds.name, f"holds values too large for {np.dtype(dtype).name}",
                               "rescale the images, or load them in float64")
    if standardise:
        ds = standardize(ds)
    if zca is not None:
        ds = zca_whiten(ds, zca)
    return ds
