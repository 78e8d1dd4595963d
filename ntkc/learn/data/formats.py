"""Readers of the supported sources: scikit-learn's digits, CIFAR-10 python batches (through a
restricted unpickler that admits numpy arrays and plain containers only), MNIST / Fashion-MNIST
IDX files, and a user's `.npz`. Each returns a `Dataset` with float NCHW images in [0, 1]."""
from __future__ import annotations

import gzip
import io
import logging
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import validate
from .dataset import DataError, Dataset

log = logging.getLogger("ntkc.data")


# ---------------------------------------------------------------------------------------------
# digits


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's 1,797 8x8 digits ([N, 1, 8, 8], raw values 0..16), scaled to [0, 1].

    The split is stratified by class and fixed by `seed`.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Dataset(
        x_tr, y_tr, x_te, y_te, "digits", tuple(str(c) for c in bunch.target_names),
        f"sklearn digits, stratified split test_fraction={test_fraction} seed={seed}; "
        "scaled to [0,1] (/16)",
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches

def _allowed_global(module: str, name: str) -> Any:
    import importlib

    for mod in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return None


# The globals a CIFAR batch pickle references: numpy's array reconstruction. The folder here
# (numpy 2, protocol 4) names numpy._core.multiarray._reconstruct, numpy.ndarray and
# numpy.dtype; the official release (numpy 1) spells the module numpy.core.multiarray;
# protocol-5 writers use numeric._frombuffer instead of _reconstruct; Python 3 writing protocol
# 2 (for Python 2 readers) stores bytes as _codecs.encode(str, "latin1"), a pure function.
# Nothing else is needed, so nothing else is admitted.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, ints and numpy arrays; refuses every other global."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            obj = _allowed_global(module, name)
            if obj is not None:
                return obj
        raise DataError(
            f"{self._path}: refused to unpickle global {module}.{name}; a CIFAR-10 batch only "
            "needs numpy arrays",
            "this file is not a CIFAR-10 python batch (or was tampered with); re-download "
            "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
        )


def read_cifar_pickle(path: str | Path) -> dict:
    """Load one CIFAR batch pickle with the restricted unpickler; keys stay bytes."""
    path = Path(path)
    hint = "the file is damaged; re-extract cifar-10-python.tar.gz"
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, path).load()
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})", hint) from e
    except Exception as e:  # truncated or corrupt pickles raise many different types
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})", hint) from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}", hint)
    return obj


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = read_cifar_pickle(path)
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    hint = "the file is damaged or not CIFAR-10; re-extract cifar-10-python.tar.gz"
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; found {sorted(map(str, d))}", hint)
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        found = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be uint8 [N, 3072], found {found}", hint)
    raw = d["labels"]
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: 'labels' must be a list of ints in 0..9, found {type(raw).__name__}", hint)
    labels = validate.labels(raw, data.shape[0], f"{path}: 'labels'")
    if labels.size and labels.max() > 9:
        raise DataError(f"{path}: 'labels' must be ints in 0..9, found {labels.max()}", hint)
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(path: str | Path) -> Dataset:
    """CIFAR-10 from a `cifar-10-batches-py` folder (or its parent), scaled to [0, 1].

    Uses whichever of `data_batch_1..5` are present (at least one is required) plus
    `test_batch`; `meta["batches_found"]` lists them and the description says how many.
    """
    root = Path(path)
    get = "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html " \
          "and extract it"
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise DataError(f"{root}: CIFAR-10 folder does not exist", get)
    found = [f"data_batch_{i}" for i in range(1, 6) if (root / f"data_batch_{i}").is_file()]
    if not found:
        raise DataError(
            f"{root}: no training batch (data_batch_1..data_batch_5) in the folder; found "
            f"{sorted(p.name for p in root.iterdir())}",
            get,
        )
    if not (root / "test_batch").is_file():
        raise DataError(f"{root}/test_batch: missing", get)
    log.info("CIFAR-10: found %d of 5 training batches in %s: %s", len(found), root, found)
    parts = [_cifar_batch(root / name) for name in found]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_batch(root / "test_batch")

    names: tuple[str, ...] = tuple(str(i) for i in range(10))
    if (root / "batches.meta").is_file():
        meta = read_cifar_pickle(root / "batches.meta")
        raw = meta.get(b"label_names", meta.get("label_names"))
        names = validate.class_names(raw, 10, f"{root / 'batches.meta'}: 'label_names'", names)[:10]
    return Dataset(
        (x_tr / np.float32(255)).astype(np.float32), y_tr,
        (x_te / np.float32(255)).astype(np.float32), y_te,
        "cifar10", names,
        f"cifar10 from {root} ({len(found)} of 5 training batches found: {', '.join(found)}); "
        "scaled to [0,1] (/255)",
        {"batches_found": tuple(found), "source": str(root)},
    )


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST IDX files

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not, told apart by content) into a native-endian array.

    Checks the magic number (two zero bytes, a known type code, the number of dimensions) and
    that the payload size matches the dimensions.
    """
    path = Path(path)
    hint = "re-download the file (e.g. from http://yann.lecun.com/exdb/mnist/ or " \
           "https://github.com/zalandoresearch/fashion-mnist)"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})", hint) from e
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt gzip data ({e})", hint) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path}: bad IDX magic number {raw[:4].hex() or '(empty file)'}; expected "
            "00 00 <type 08|09|0b|0c|0d|0e> <ndim>",
            hint,
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dims)", hint)
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX size mismatch: header says shape {list(shape)} ({expected} bytes), "
            f"file has {len(raw)} bytes",
            hint,
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder}: missing {stem} (or {stem}.gz); found {sorted(p.name for p in folder.iterdir())}",
        "put the four standard IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) in this folder",
    )


def load_mnist(path: str | Path, name: str = "mnist") -> Dataset:
    """MNIST or Fashion-MNIST from a folder of the four standard IDX files, scaled to [0, 1].

    Images come out as [N, 1, 28, 28]; `name` ("mnist" or "fashion-mnist") only sets the
    class names.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: {name} folder does not exist",
                        "pass the folder holding the IDX files as data_dir")
    arrays = {}
    for key, stem in _IDX_FILES.items():
        file = _idx_file(folder, stem)
        arr = read_idx(file)
        want_ndim = 3 if key.endswith("x") else 1
        if arr.ndim != want_ndim or arr.dtype != np.uint8:
            raise DataError(
                f"{file}: expected uint8 with {want_ndim} dims, found {arr.dtype} {list(arr.shape)}",
                "images are idx3 (N, H, W) uint8 and labels idx1 (N,) uint8",
            )
        arrays[key] = (file, arr)
    for split in ("train", "test"):
        (fx, x), (fy, y) = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if len(x) != len(y):
            raise DataError(f"{fx}: {len(x)} images but {fy} has {len(y)} labels",
                            "the image and label files come from different releases")
        if y.size and y.max() > 9:
            raise DataError(f"{fy}: labels must be 0..9, found max {y.max()}",
                            "this is not an MNIST-style label file")
    names = _FASHION_NAMES if "fashion" in name else tuple(str(i) for i in range(10))

    def images(a: np.ndarray) -> np.ndarray:
        return (a[:, None, :, :] / np.float32(255)).astype(np.float32)

    return Dataset(
        images(arrays["train_x"][1]), arrays["train_y"][1].astype(np.int64),
        images(arrays["test_x"][1]), arrays["test_y"][1].astype(np.int64),
        name, names, f"{name} IDX files from {folder}; scaled to [0,1] (/255)",
        {"source": str(folder)},
    )


# ---------------------------------------------------------------------------------------------
# user .npz


def load_npz(path: str | Path, layout: str = "NCHW") -> Dataset:
    """A user's `.npz` with keys x_train, y_train, x_test, y_test (optional: class_names).

    Images are [N, C, H, W] (`layout="NCHW"`), [N, H, W, C] (`layout="NHWC"`) or [N, H, W]
    (one channel). uint8 images are divided by 255; float images are kept as they are, so
    scale them to [0, 1] yourself. Labels are integers 0..K-1.
    """
    path = Path(path)
    if layout not in ("NCHW", "NHWC"):
        raise DataError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    arrays = validate.read_npz(path)
    found = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in arrays.items()) or "nothing"
    need = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; found {found}",
                        "save with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                        "y_test=...)")

    def images(key: str) -> np.ndarray:
        x = arrays[key]
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and layout == "NHWC":
            x = x.transpose(0, 3, 1, 2)
        elif x.ndim != 4:
            raise DataError(f"{path}: {key} must have 3 or 4 dims, found {found}",
                            f"images are [N, C, H, W] or [N, H, W, C] (layout={layout!r})")
        if x.dtype == np.uint8:
            return (x / np.float32(255)).astype(np.float32)
        if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise DataError(f"{path}: {key} must be numeric, found {x.dtype}")
        validate.finite_images(x, key, str(path))
        return np.ascontiguousarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64)

    # Labels first: they decide how many classes (names, one-hot columns) anything allocates.
    for key, images_key in (("y_train", "x_train"), ("y_test", "x_test")):
        if arrays[images_key].ndim == 0:
            raise DataError(f"{path}: {images_key} must have 3 or 4 dims, found {found}")
    y_tr = validate.labels(arrays["y_train"], len(arrays["x_train"]), f"{path}: y_train")
    y_te = validate.labels(arrays["y_test"], len(arrays["x_test"]), f"{path}: y_test")
    x_tr, x_te = images("x_train"), images("x_test")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"{path}: train and test images differ in shape: {list(x_tr.shape[1:])} vs "
            f"{list(x_te.shape[1:])} as (C, H, W) with layout={layout!r}; found {found}",
            "is `layout` right? NCHW puts channels second, NHWC last",
        )
    k = int(max(y_tr.max(initial=-1), y_te.max(initial=-1))) + 1
    names = tuple(str(i) for i in range(k))
    if "class_names" in arrays:
        raw = arrays["class_names"]
        if raw.ndim != 1 or raw.dtype.kind not in "US":
            raise DataError(f"{path}: class_names must be a 1-D array of strings, found {raw.dtype} {list(raw.shape)}")
        names = validate.class_names([str(c) for c in raw.tolist()], k, f"{path}: class_names", names)
    return Dataset(x_tr, y_tr, x_te, y_te, path.stem, names,
                   f"npz {path} (layout {layout})" + ("; uint8 scaled to [0,1] (/255)"
                                                       if arrays["x_train"].dtype == np.uint8 else ""),
                   {"source": str(path)})

