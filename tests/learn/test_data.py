"""Dataset loaders and preprocessing: shapes, errors on bad files, statistics after transforms."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from ntkc.learn.data import (
    DataError,
    balanced_indices,
    balanced_subset,
    load_cifar10,
    load_dataset,
    load_mnist,
    load_npz,
    read_cifar_pickle,
    read_idx,
    standardize,
    zca_whiten,
)

from support.paths import SHARED_DATA  # noqa: E402

SHARED_CIFAR = SHARED_DATA / "cifar-10-batches-py"


# --- digits -----------------------------------------------------------------------------------


def test_digits_shapes_and_split_is_deterministic():
    ds = load_dataset("digits", seed=3)
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_test.shape[1:] == (1, 8, 8)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.y_train) == len(ds.x_train) and ds.y_train.dtype == np.int64
    assert ds.n_classes == 10 and ds.image_shape == (1, 8, 8)
    assert ds.x_train.dtype == np.float64
    again = load_dataset("digits", seed=3)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = load_dataset("digits", seed=4)
    assert not np.array_equal(ds.y_test, other.y_test)


def test_digits_raw_scale_is_unit_interval():
    ds = load_dataset("digits", standardise=False)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert "standardised" not in ds.description


# --- CIFAR-10: the shared folder ----------------------------------------------------------------


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(),
                    reason=f"shared CIFAR-10 test data not present at {SHARED_CIFAR}")
def test_shared_cifar_loads_counts_batches_and_standardises():
    ds = load_dataset("cifar10", data_dir=SHARED_CIFAR.parent, n_train=500, n_test=100, seed=1)
    found = ds.meta["batches_found"]
    assert 1 <= len(found) <= 5 and found[0].startswith("data_batch_")
    assert f"{len(found)} of 5 training batches found" in ds.description
    assert ds.x_train.shape == (500, 3, 32, 32) and ds.x_test.shape == (100, 3, 32, 32)
    assert np.bincount(ds.y_train, minlength=10).tolist() == [50] * 10
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-10)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-10)
    # test images use the train statistics, so they are only roughly standard
    assert np.all(np.abs(ds.x_test.mean(axis=(0, 2, 3))) < 0.3)


# --- CIFAR-10: a fake folder --------------------------------------------------------------------


def _write_batch(path: Path, n: int, seed: int, **extra) -> None:
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"fake", b"labels": [int(v) for v in rng.integers(0, 10, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    d.update(extra)
    path.write_bytes(pickle.dumps(d, protocol=4))


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    _write_batch(root / "data_batch_1", 20, 0)
    _write_batch(root / "data_batch_3", 10, 1)
    _write_batch(root / "test_batch", 10, 2)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def test_fake_cifar_accepts_the_batches_present(fake_cifar: Path):
    ds = load_cifar10(fake_cifar.parent)
    assert ds.meta["batches_found"] == ("data_batch_1", "data_batch_3")
    assert "2 of 5 training batches" in ds.description
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert ds.class_names == tuple(f"c{i}" for i in range(10))
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # pixel layout: row = 1024 red, 1024 green, 1024 blue values, each 32x32 row-major
    raw = read_cifar_pickle(fake_cifar / "data_batch_1")[b"data"]
    np.testing.assert_allclose(ds.x_train[0, 1, 2, 5], raw[0, 1024 + 2 * 32 + 5] / 255, rtol=1e-6)


def test_protocol5_pickles_are_accepted(fake_cifar: Path):
    d = {b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)}
    (fake_cifar / "data_batch_3").write_bytes(pickle.dumps(d, protocol=5))
    assert len(load_cifar10(fake_cifar).x_train) == 22


def test_fake_cifar_missing_folder(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_cifar10(tmp_path / "nowhere")
    assert "hint:" in str(e.value)
    with pytest.raises(DataError, match="no data folder found"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_fake_cifar_no_training_batch(fake_cifar: Path):
    (fake_cifar / "data_batch_1").unlink()
    (fake_cifar / "data_batch_3").unlink()
    with pytest.raises(DataError, match="no training batch") as e:
        load_cifar10(fake_cifar)
    assert "test_batch" in str(e.value)  # lists what it did find


def test_fake_cifar_truncated_pickle_names_the_file(fake_cifar: Path):
    path = fake_cifar / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="data_batch_3.*not a readable pickle"):
        load_cifar10(fake_cifar)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_forbidden_global_is_refused(fake_cifar: Path):
    path = fake_cifar / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=4))
    with pytest.raises(DataError, match=r"refused to unpickle global (posix|os|nt)\.system") as e:
        load_cifar10(fake_cifar)
    assert "data_batch_1" in str(e.value)


def test_pickle_with_builtin_eval_is_refused(tmp_path: Path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x04cbuiltins\neval\n(V1+1\ntR.")
    with pytest.raises(DataError, match="builtins.eval"):
        read_cifar_pickle(path)


def test_fake_cifar_wrong_shape(fake_cifar: Path):
    d = {b"labels": [0], b"data": np.zeros((1, 100), np.uint8)}
    (fake_cifar / "test_batch").write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match=r"test_batch: 'data' must be uint8 \[N, 3072\]"):
        load_cifar10(fake_cifar)


# --- IDX ---------------------------------------------------------------------------------------


def _idx_bytes(a: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[a.dtype.type]
    head = bytes([0, 0, code, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in files.items():
        data = _idx_bytes(a)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, dtype, gz: bool):
    a = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = _idx_bytes(a)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == a.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, a)


def test_idx_bad_magic_and_size(tmp_path: Path):
    good = _idx_bytes(np.zeros((3, 2), np.uint8))
    (tmp_path / "magic").write_bytes(b"\x01" + good[1:])
    with pytest.raises(DataError, match="magic.*bad IDX magic|bad IDX magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(DataError, match=r"short: IDX size mismatch: header says shape \[3, 2\]"):
        read_idx(tmp_path / "short")
    (tmp_path / "gz").write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(DataError, match="gz: corrupt gzip"):
        read_idx(tmp_path / "gz")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_folder(tmp_path: Path, gz: bool):
    _write_mnist(tmp_path / "fashion-mnist", gz)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    assert ds.class_names[-1] == "Ankle boot"
    raw = load_mnist(tmp_path / "fashion-mnist")
    assert raw.x_train.max() <= 1.0


def test_mnist_missing_and_mismatched_files(tmp_path: Path):
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="5 images but .*t10k-labels-idx1-ubyte has 4 labels"):
        load_mnist(tmp_path)


# --- npz ---------------------------------------------------------------------------------------


def test_npz_missing_keys_lists_what_was_found(tmp_path: Path):
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.zeros((4, 1, 5, 5)), y_train=np.zeros(4, int))
    with pytest.raises(DataError, match=r"missing key\(s\) x_test, y_test; found x_train \[4, 1, 5, 5\]"):
        load_dataset(f"npz:{path}")


def test_npz_nhwc_layout(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)  # N H W C
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x, y_train=np.arange(6) % 3, x_test=x[:2], y_test=np.array([0, 2]))
    ds = load_npz(path, layout="NHWC")
    assert ds.x_train.shape == (6, 3, 5, 7)
    np.testing.assert_allclose(ds.x_train[1, 2, 3, 4], x[1, 3, 4, 2] / 255, rtol=1e-6)
    assert ds.class_names == ("0", "1", "2")
    via_name = load_dataset(str(path), layout="NHWC", standardise=False)
    np.testing.assert_array_equal(via_name.x_train, ds.x_train)


def test_npz_inconsistent_shapes(tmp_path: Path):
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.zeros((4, 3, 8, 8)), y_train=np.zeros(4, int),
             x_test=np.zeros((2, 8, 8, 3)), y_test=np.zeros(2, int))
    with pytest.raises(DataError, match="train and test images differ in shape") as e:
        load_npz(path)
    assert "x_test [2, 8, 8, 3]" in str(e.value)
    np.savez(path, x_train=np.zeros((4, 3, 8, 8)), y_train=np.zeros(3, int),
             x_test=np.zeros((2, 3, 8, 8)), y_test=np.zeros(2, int))
    with pytest.raises(DataError, match="y_train must be 1-D with one label per image"):
        load_npz(path)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'") as e:
        load_dataset("imagenet")
    assert "digits, cifar10" in str(e.value)


# --- subsets and preprocessing -----------------------------------------------------------------


def test_balanced_subset_counts_and_determinism():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    x = np.arange(len(y))
    xs, ys = balanced_subset(x, y, 20, seed=5)
    assert np.bincount(ys).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(y[xs], ys)  # x and y stay paired
    assert len(set(xs.tolist())) == 20
    np.testing.assert_array_equal(balanced_indices(y, 20, seed=5), xs)
    assert not np.array_equal(balanced_indices(y, 20, seed=6), xs)
    counts = np.bincount(y[balanced_indices(y, 22, seed=0)])
    assert sorted(counts.tolist()) == [5, 5, 6, 6]


def test_balanced_subset_too_few_in_a_class():
    y = np.repeat(np.arange(3), [2, 10, 10])
    with pytest.raises(DataError, match="class 0: has 2, needs 4") as e:
        balanced_indices(y, 12, seed=0)
    assert "at most 6" in str(e.value)


def test_standardize_uses_train_statistics_only():
    ds = load_dataset("digits", standardise=False)
    st = standardize(ds)
    assert abs(st.x_train.mean()) < 1e-10 and abs(st.x_train.std() - 1) < 1e-10
    mean, std = st.meta["channel_mean"], st.meta["channel_std"]
    np.testing.assert_allclose(st.x_test, (ds.x_test - mean[0]) / std[0], atol=1e-12)


def test_zca_makes_train_covariance_near_identity():
    ds = load_dataset("digits", n_train=900, seed=0)
    # digits has 64 pixels, some of them always 0, so eps must be > 0; a small one suffices
    wz = zca_whiten(ds, eps=1e-6)
    flat = wz.x_train.reshape(len(wz.x_train), -1)
    cov = np.cov(flat, rowvar=False, bias=True)
    live = ds.x_train.reshape(len(ds.x_train), -1).std(axis=0) > 0
    # whitened directions with real variance get variance ~1 and no correlations
    sub = cov[np.ix_(live, live)]
    evals = np.linalg.eigvalsh(sub)
    assert evals.max() < 1.0 + 1e-9 and np.median(evals) > 0.99
    assert "ZCA" in wz.description and wz.x_test.shape == ds.x_test.shape
    # the same whitening is applied to test images
    mean, w = wz.meta["zca_mean"], wz.meta["zca_matrix"]
    np.testing.assert_allclose(wz.x_test.reshape(len(wz.x_test), -1),
                               (ds.x_test.reshape(len(ds.x_test), -1) - mean) @ w, atol=1e-10)


def test_zca_rejects_bad_eps_and_singular_covariance():
    ds = load_dataset("digits", n_train=100)
    with pytest.raises(DataError, match="eps must be >= 0"):
        zca_whiten(ds, eps=-1.0)
    with pytest.raises(DataError, match="covariance is singular"):
        zca_whiten(ds, eps=0.0)


def test_default_data_dirs_end_with_the_shared_folder_beside_the_repository():
    from ntkc.learn.data import default_data_dirs

    assert default_data_dirs()[-1].resolve() == SHARED_DATA.resolve()
