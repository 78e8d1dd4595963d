"""The one validation layer for data: what every loader and `load_dataset` check, stated once.

- `read_npz`: a user's `.npz` read without trusting it: a zip that is not one (truncated,
  bit-flipped: bad CRC), a `.npy` under a `.npz` name, a member whose header declares more data
  than it holds (never allocated), object arrays (never unpickled);
- `labels`: integer class labels 0..K-1, one per image, checked on the values as stored (so a
  uint64 or float label never wraps) and before any class name or one-hot column is made;
- `class_names`: a list of K names, whatever a metadata file holds instead;
- `finite_images`: the raw images, so that a NaN is blamed on the array and the images that hold
  it, before standardisation spreads it to every image;
- `split`: a training set that is not empty, test images of the training images' shape;
- `request`: subset sizes and seeds a user asks for.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .dataset import DataError

MAX_CLASSES = 100_000  # labels 0..K-1 with K above this are refused (K names, K one-hot columns)
_NPZ_HINT = "write it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a `.npz` file, checked member by member before it is read."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist", "check the path after 'npz:'") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if head == b"\x93NUMPY":
        raise DataError(f"{path}: this is a .npy file (one array), not a .npz archive of named arrays", _NPZ_HINT)
    try:
        with zipfile.ZipFile(path) as z:
            return {Path(info.filename).stem: _member(z, info, path) for info in z.infolist()
                    if not info.is_dir()}
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
            NotImplementedError) as err:  # truncated, flipped bits (bad CRC), unsupported compression
        raise DataError(f"{path}: not a readable .npz ({type(err).__name__}: {err})",
                        "the file is truncated or damaged; " + _NPZ_HINT) from None


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    where = f"{path}: member {info.filename}"
    if not info.filename.endswith(".npy"):
        raise DataError(f"{where} is not a .npy array", _NPZ_HINT)
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy format version {version}")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except (ValueError, TypeError, SyntaxError) as err:
            raise DataError(f"{where} has no valid .npy header ({err})", _NPZ_HINT) from None
        if dtype.hasobject:
            raise DataError(f"{where} holds Python objects ({dtype}), which are never unpickled",
                            "store numbers: images as float or uint8 arrays, labels as integers")
        header = f.tell()
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = info.file_size - header
        if declared != held:
            raise DataError(f"{where} declares shape {list(shape)} of {dtype} ({declared} bytes) but holds {held} "
                            "bytes of data", "the file is damaged or was not written by numpy.savez")
        try:
            data = f.read(held)
        except MemoryError:
            raise DataError(f"{where}: {held} bytes do not fit in memory") from None
    if len(data) != held:
        raise DataError(f"{where} is truncated ({len(data)} of {held} bytes)", _NPZ_HINT)
    arr = np.frombuffer(data, dtype=dtype)
    return (arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)).copy()


def labels(values, n: int | None, where: str) -> np.ndarray:
    """Class labels as int64, after checking them as stored: a 1-D sequence of integers (or
    integral floats) in 0..MAX_CLASSES-1, `n` of them when `n` is given."""
    try:
        y = np.asarray(values)
    except (ValueError, TypeError) as err:  # ragged lists and the like
        raise DataError(f"{where} is not a flat list of integer labels ({err})",
                        "labels are one integer 0..K-1 per image") from None
    if y.ndim != 1 or (n is not None and len(y) != n):
        raise DataError(f"{where} must be 1-D with one label per image"
                        + (f" ({n})" if n is not None else "") + f"; found shape {list(y.shape)} of {y.dtype}",
                        "labels are one integer 0..K-1 per image")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{where} must hold integer labels, found {y.dtype}", "labels are integers 0..K-1")
    if y.size == 0:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and not (np.isfinite(y).all() and np.all(y == np.round(y))):
        raise DataError(f"{where} must hold integer labels, found {y.dtype} values that are not whole numbers")
    low, high = y.min(), y.max()  # compared in the stored type: no wrap-around, no overflow
    if low < 0:
        raise DataError(f"{where} has negative labels (down to {low})", "labels are 0..K-1")
    if high >= MAX_CLASSES:
        raise DataError(f"{where} has a label of {high}, which means at least {int(high) + 1} classes; at most "
                        f"{MAX_CLASSES} are supported",
                        "number the classes 0..K-1, e.g. with numpy.unique(y, return_inverse=True)")
    return y.astype(np.int64)


def class_names(raw, k: int, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """K class names from a metadata entry (a list of str or bytes); None keeps `default`."""
    if raw is None:
        return default
    if isinstance(raw, np.ndarray) and raw.ndim == 1:
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in raw):
        raise DataError(f"{where}: class names must be a list of strings, found {type(raw).__name__}",
                        "the file is damaged; re-extract it (or remove it to use numbered classes)")
    if len(raw) < k:
        raise DataError(f"{where}: {len(raw)} class names for labels 0..{k - 1}")
    try:
        return tuple(n.decode() if isinstance(n, bytes) else n for n in raw)
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: a class name is not UTF-8 ({err})") from None


def finite_images(x: np.ndarray, name: str, where: str, what: str = "contains NaN or inf",
                  hint: str = "clean or drop those images") -> None:
    """Raw images free of NaN and inf; the error names the array and its first bad images."""
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return
    flat = x.reshape(len(x), -1)
    bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    if bad.size:
        more = f"... ({bad.size} in all)" if bad.size > 5 else ""
        raise DataError(f"{where}: {name} {what} in images {bad[:5].tolist()}{more}", hint)


def split(ds, where: str) -> None:
    """A usable split: training images present, test images shaped like the training images."""
    if len(ds.x_train) == 0:
        raise DataError(f"{where}: the training set is empty", "give --n-train a positive number "
                        "(or leave it out), and check that the file holds training images")
    if len(ds.x_test) and ds.x_test.shape[1:] != ds.x_train.shape[1:]:
        raise DataError(f"{where}: train and test images differ in shape: {list(ds.x_train.shape[1:])} vs "
                        f"{list(ds.x_test.shape[1:])}")


def request(n_train, n_test, seed) -> None:
    """Subset sizes (None or an integer, at least 1 for training, 0 allowed for test) and a
    seed (a non-negative integer)."""
    for name, value, least in (("n_train", n_train, 1), ("n_test", n_test, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < least):
            raise DataError(f"{name} must be an integer >= {least}, got {value!r}",
                            "leave it out to use the whole split")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"the seed must be an integer >= 0, got {seed!r}")
