"""Malformed data files and requests (issue 15): each is a `DataError` naming the file, the array
and what to do, found by the one validation layer (`ntkc.learn.data.validate`) before anything
is allocated on its word."""
from __future__ import annotations

import io
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ntkc.learn.data import DataError, load_cifar10, load_dataset, load_npz

RNG = np.random.default_rng(15)
X = RNG.random((6, 1, 8, 8)).astype(np.float32)
Y = np.arange(6) % 3


def _npz(path: Path, **arrays) -> Path:
    base = dict(x_train=X, y_train=Y, x_test=X[:3], y_test=Y[:3])
    base.update(arrays)
    np.savez(path, **base)
    return path


def test_truncated_and_bit_flipped_archives(tmp_path):
    raw = _npz(tmp_path / "good.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="trunc.npz: not a readable .npz"):
        load_npz(tmp_path / "trunc.npz")
    flipped = bytearray(raw)
    flipped[200] ^= 0xFF  # inside x_train's data: the CRC no longer matches
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="flip.npz: not a readable .npz"):
        load_npz(tmp_path / "flip.npz")


def test_a_npy_file_under_a_npz_name(tmp_path):
    np.save(tmp_path / "one.npy", X)
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(DataError, match="a .npy file"):
        load_npz(tmp_path / "one.npz")


def test_a_member_declaring_a_huge_shape_is_refused_without_allocating(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("x_train.npy", buf.getvalue() + bytes(16))
        for key, value in dict(y_train=Y, x_test=X[:3], y_test=Y[:3]).items():
            b = io.BytesIO()
            np.save(b, value)
            z.writestr(f"{key}.npy", b.getvalue())
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"x_train.npy declares shape \[1000000, 1000000\]"):
        load_npz(tmp_path / "huge.npz")
    assert time.perf_counter() - start < 2


def test_object_members_are_never_unpickled(tmp_path):
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        b = io.BytesIO()
        np.save(b, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        z.writestr("x_train.npy", b.getvalue())
    with pytest.raises(DataError, match="Python objects"):
        load_npz(tmp_path / "obj.npz")


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 2, 0, 1, 10**9]), "label of 1000000000"),
    (np.array([0, 1, 2, 0, 1, 2**64 - 1], np.uint64), "label of 18446744073709551615"),
    (np.array([0, 1, 2, 0, 1, 2.5]), "not whole numbers"),
    (np.array([0, 1, 2, 0, 1, np.nan]), "not whole numbers"),
    (np.array([True, False] * 3), "integer labels"),
    (np.array([0, 1, 2, 0, 1, -1]), "negative"),
])
def test_labels_are_checked_as_stored_before_classes_are_made(tmp_path, labels, message):
    start = time.perf_counter()
    with pytest.raises(DataError, match=message):
        load_npz(_npz(tmp_path / "l.npz", y_train=labels))
    assert time.perf_counter() - start < 2  # no billion class names


def test_an_empty_training_set_and_bad_requests(tmp_path):
    with pytest.raises(DataError, match="training set is empty"):
        load_dataset(str(_npz(tmp_path / "e.npz", x_train=X[:0], y_train=Y[:0])))
    with pytest.raises(DataError, match="n_train must be an integer >= 1"):
        load_dataset("digits", n_train=0)
    with pytest.raises(DataError, match="seed must be an integer >= 0"):
        load_dataset("digits", seed=-1)
    assert len(load_dataset("digits", n_train=20, n_test=0).x_test) == 0


def test_a_nan_is_blamed_on_its_array_and_images_before_standardisation(tmp_path):
    x_test = X[:3].copy()
    x_test[2, 0, 1, 1] = np.inf
    with pytest.raises(DataError, match=r"x_test contains NaN or inf in images \[2\]"):
        load_dataset(str(_npz(tmp_path / "inf.npz", x_test=x_test)))
    x_train = X.copy()
    x_train[4, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"x_train contains NaN or inf in images \[4\]"):
        load_dataset(str(_npz(tmp_path / "nan.npz", x_train=x_train)))


def test_overflow_in_standardisation_is_found_where_it_happens(tmp_path):
    big = (RNG.random((9, 1, 8, 8)) * 1e30) ** 10  # up to 1e300: the variance overflows float64
    with pytest.raises(DataError, match="overflow float64") as info:
        load_dataset(str(_npz(tmp_path / "big.npz", x_train=big[:6], x_test=big[6:])))
    assert "rescale" in info.value.hint
    same = np.full((6, 1, 8, 8), 1e30) + X * 1e10  # all equal in float64: nothing to standardise
    with pytest.raises(DataError, match="every channel of x_train is constant"):
        load_dataset(str(_npz(tmp_path / "same.npz", x_train=same, x_test=same[:3])))
    wide = X.astype(np.float64) * 1e39  # finite in float64, not in float32
    with pytest.raises(DataError, match="too large for float32"):
        load_dataset(str(_npz(tmp_path / "wide.npz", x_train=wide, x_test=wide[:3])), dtype=np.float32)


def _batch(path: Path, labels, n: int = 4) -> None:
    d = {b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": labels}
    path.write_bytes(pickle.dumps(d, protocol=4))


@pytest.mark.parametrize("labels", [b"\x00\x01\x02\x03", None, [[0, 1], [2]], [0, 1, 2, "x"], 7],
                         ids=["bytes", "None", "ragged", "str", "int"])
def test_malformed_cifar_labels(tmp_path, labels):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    _batch(root / "data_batch_1", labels)
    _batch(root / "test_batch", [0, 1, 2, 3])
    with pytest.raises(DataError, match="data_batch_1"):
        load_cifar10(root)


@pytest.mark.parametrize("names", [7, None, "airplane", [1, 2, 3] * 4, [b"a"] * 3],
                         ids=["int", "None", "str", "ints", "short"])
def test_a_batches_meta_without_a_list_of_names(tmp_path, names):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    _batch(root / "data_batch_1", [0, 1, 2, 3])
    _batch(root / "test_batch", [0, 1, 2, 3])
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    if names is None:
        assert load_cifar10(root).class_names == tuple(str(i) for i in range(10))
    else:
        with pytest.raises(DataError, match="batches.meta"):
            load_cifar10(root)
