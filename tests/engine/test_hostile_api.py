"""The Python API under bad arguments (issue 15): every one is an `NtkcError` saying what to do,
and `ntkc.gram_store` checks its images as `k(x)` does, before it writes anything."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ntkc
from ntkc.engine.tiling import gram
from ntkc.errors import BackendError, InputError

ARCH = "input height=6 width=6 channels=2\nconv w_std=sqrt(2)\nrelu\nflatten\ndense\n"


@pytest.fixture(scope="module")
def k():
    return ntkc.compile(ARCH)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((5, 2, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("tile", [0, -4, 2.5, "8", True])
def test_a_bad_tile_size_is_refused_before_a_store_is_made(tmp_path, k, x, tile):
    with pytest.raises(InputError, match="tile size"):
        ntkc.gram_store(k, tmp_path / "s", x, tile=tile)
    assert not (tmp_path / "s").exists()
    with pytest.raises(InputError, match="tile size"):
        gram(k.backend(), torch.as_tensor(x), None, 1 << 26, tile=tile)


def test_gram_store_checks_its_images_as_k_does(tmp_path, k, x):
    bad = x.copy()
    bad[3, 1, 2, 2] = np.nan
    with pytest.raises(InputError, match=r"x_train contains NaN or inf \(images \[3\]\)"):
        ntkc.gram_store(k, tmp_path / "nan", bad, tile=2)
    with pytest.raises(InputError, match=r"x_test has images of shape \(2, 6, 5\)"):
        ntkc.gram_store(k, tmp_path / "shape", x, x[:, :, :, :5], tile=2)
    with pytest.raises(InputError, match="y_train has 4 labels for 5 images"):
        ntkc.gram_store(k, tmp_path / "labels", x, y_train=np.zeros(4, int), tile=2)
    assert not any((tmp_path / d).exists() for d in ("nan", "shape", "labels"))


def test_large_finite_images_are_refused_where_the_covariance_would_overflow(k):
    big = np.full((2, 2, 6, 6), 1e20, np.float32)
    with pytest.raises(InputError) as info:
        k(big)
    assert "x1" in info.value.message and "overflows float32" in info.value.message
    assert "float64" in info.value.hint
    r = k(big, dtype=torch.float64)  # 1e40 fits float64: the exact kernel, no overflow
    assert np.isfinite(r.nngp).all() and r.nngp[0, 0] > 1e39
    with pytest.raises(InputError, match="float32 cannot hold"):
        k(np.full((2, 2, 6, 6), 1e39), dtype=torch.float32)
    with pytest.raises(InputError, match=r"x2 holds values up to 1e\+20.*images \[1\]"):
        ok = np.ones((2, 2, 6, 6), np.float32)
        k(ok, np.stack([ok[0], big[0]]))


def test_overflow_inside_the_network_is_an_error_not_a_kernel_of_infs():
    k = ntkc.compile("input height=4 width=4 channels=1\nconv w_std=1e30\nrelu\nconv w_std=1e30\nrelu\nflatten\n")
    with pytest.raises(InputError, match="overflowed float32"):
        k(np.ones((2, 1, 4, 4), np.float32))


@pytest.mark.parametrize("memory, ok", [("2G", True), ("512m", True), (1 << 28, True), ("abc", False),
                                        (float("inf"), False), ("1e999G", False), (0, False), (-5, False)])
def test_memory_takes_bytes_or_a_size(k, x, memory, ok):
    if ok:
        assert k(x, memory=memory).nngp.shape == (5, 5)
    else:
        with pytest.raises(InputError):
            k(x, memory=memory)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:3", "gpu"])
def test_a_device_that_is_not_here_is_a_backend_error(k, x, device):
    with pytest.raises(BackendError):
        k(x, device=device)


def test_dtypes_in_every_spelling(tmp_path, k, x):
    a = k(x, dtype=np.dtype("float64")).nngp
    b = k(x, dtype="float64").nngp
    assert a.dtype == np.float64 and np.array_equal(a, b)
    st = ntkc.gram_store(k, tmp_path / "s", x, dtype=np.dtype("float64"), tile=2)
    assert st.matrices("train_train")[0].dtype == np.float64
