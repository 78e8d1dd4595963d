"""The paper's preprocessing: class-balanced subsets, per-channel standardisation with training
statistics, and ZCA whitening."""
from __future__ import annotations


import numpy as np

from .dataset import DataError, Dataset


# ---------------------------------------------------------------------------------------------
# subsets and preprocessing


def balanced_indices(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced random subset of size `n`, in shuffled order.

    Each class present in `y` gets n // K items; the n % K left over go to classes picked at
    random. Fixed by `seed`. Raises DataError if a class has too few items.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    k = len(classes)
    if n < 0 or k == 0:
        raise DataError(f"cannot take a subset of {n} from {len(y)} labels")
    rng = np.random.default_rng(seed)
    per = np.full(k, n // k)
    per[rng.permutation(k)[: n % k]] += 1
    short = [(c, int(have), int(want)) for c, have, want in zip(classes, counts, per) if have < want]
    if short:
        listed = ", ".join(f"class {c}: has {h}, needs {w}" for c, h, w in short)
        raise DataError(f"balanced subset of {n} over {k} classes: too few examples ({listed})",
                        f"ask for at most {k * counts.min()} examples, or use more data")
    picks = [rng.choice(np.flatnonzero(y == c), size=m, replace=False) for c, m in zip(classes, per)]
    return rng.permutation(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def balanced_subset(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x[idx], y[idx]) for `idx = balanced_indices(y, n, seed)`."""
    idx = balanced_indices(y, n, seed)
    return x[idx], y[idx]


def subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """Class-balanced subsets of the train and/or test split (None keeps a split whole)."""
    out = ds
    if n_train is not None:
        x, y = balanced_subset(ds.x_train, ds.y_train, n_train, seed)
        out = out._with(f"class-balanced train subset n={n_train} seed={seed}", x_train=x, y_train=y)
    if n_test is not None:
        # a different stream than the train draw, so train and test choices are independent
        x, y = balanced_subset(ds.x_test, ds.y_test, n_test, seed + 1_000_003)
        out = out._with(f"class-balanced test subset n={n_test} seed={seed}", x_test=x, y_test=y)
    return out


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float64, shape [C]) of NCHW images."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


def standardize(ds: Dataset) -> Dataset:
    """Subtract the training set's per-channel mean and divide by its std, on both splits.

    A constant channel (std 0) is only centred.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = channel_stats(ds.x_train)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        peak = float(np.abs(ds.x_train).max())
        raise DataError(f"x_train holds values up to {peak:.3g}, whose per-channel mean and spread overflow "
                        "float64, so the images cannot be standardised",
                        "rescale the images before saving them (e.g. divide by their largest value)")
    # A channel whose values are all equal (exactly: a std computed around a rounded mean is not
    # 0 for values near 1e30) is only centred, on its own value, to exactly 0.
    constant = ds.x_train.max(axis=(0, 2, 3)) == ds.x_train.min(axis=(0, 2, 3)) if len(ds.x_train) else \
        np.zeros(len(mean), bool)
    if constant.all() and len(ds.x_train):
        raise DataError("every channel of x_train is constant, so standardised images would all be zero "
                        "and every kernel entry 0",
                        "check the data: values near 1e30 that differ only in their last digits are equal in "
                        "float32; rescale them, or pass standardise=False")
    mean = np.where(constant, ds.x_train.min(axis=(0, 2, 3)) if len(ds.x_train) else mean, mean)
    std = np.where(constant | ~(std > 0), 1.0, std)
    dtype = ds.x_train.dtype

    def f(x: np.ndarray, name: str) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            out = ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(dtype)
        bad = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1)) if out.size else []
        if len(bad):
            raise DataError(f"standardising {name} overflows {np.dtype(dtype).name} in images {bad[:5].tolist()}: "
                            "they lie far outside the training images' range",
                            "rescale the data, or compute in float64 (--dtype float64)")
        return out

    return ds._with("per-channel standardised with train mean/std", x_train=f(ds.x_train, "x_train"),
                    x_test=f(ds.x_test, "x_test"), meta={"channel_mean": mean, "channel_std": std})


def fit_zca(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Fit ZCA whitening on images [N, ...]: returns (mean [D], W [D, D]) with D = C*H*W.

    W = U diag(1 / sqrt(lam + eps * mean(lam))) U^T from the eigendecomposition of the
    training covariance; `eps` is a fraction of the mean eigenvalue (Li et al. 2019 use 0.1).
    """
    if not eps >= 0:
        raise DataError(f"ZCA eps must be >= 0, got {eps}",
                        "eps is a fraction of the mean eigenvalue, e.g. 0.1")
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    mean = flat.mean(axis=0)
    centred = flat - mean
    cov = centred.T @ centred / max(len(flat), 1)
    lam, u = np.linalg.eigh(cov)
    lam = np.clip(lam, 0.0, None)
    reg = eps * lam.mean()
    if not (lam + reg > 0).all():
        raise DataError(
            f"ZCA with eps={eps}: the training covariance is singular ({int((lam <= 0).sum())} "
            f"zero eigenvalues of {len(lam)}, {len(flat)} training images)",
            "use eps > 0, e.g. 0.1",
        )
    return mean, (u / np.sqrt(lam + reg)) @ u.T


def apply_zca(x: np.ndarray, mean: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Whiten images [N, ...] with a fitted (mean, W); keeps their shape."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return ((flat - mean) @ w).reshape(x.shape)


def zca_whiten(ds: Dataset, eps: float = 0.1) -> Dataset:
    """ZCA-whiten both splits with whitening fitted on the training split."""
    mean, w = fit_zca(ds.x_train, eps)
    dtype = ds.x_train.dtype
    return ds._with(
        f"ZCA whitened (eps={eps} x mean eigenvalue, fitted on train)",
        x_train=apply_zca(ds.x_train, mean, w).astype(dtype),
        x_test=apply_zca(ds.x_test, mean, w).astype(dtype),
        meta={"zca_mean": mean, "zca_matrix": w, "zca_eps": eps},
    )

