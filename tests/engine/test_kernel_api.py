"""The Python API: input checks, symmetry, schedule invariance, output types."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ntkc
from ntkc.errors import BackendError, InputError

NET = "input height=5 width=4 channels=2\nconv b_std=0.2\nrelu\navgpool size=2 stride=1\nconv\nrelu\ngap\ndense\n"


@pytest.fixture(scope="module")
def k():
    return ntkc.compile(NET)


@pytest.fixture(scope="module")
def x():
    return torch.randn(5, 2, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_symmetric_equals_explicit_x2_and_is_symmetric(k, x):
    a = k(x, dtype=torch.float64)
    b = k(x, x, dtype=torch.float64)
    assert torch.equal(a.nngp, a.nngp.T) and torch.equal(a.ntk, a.ntk.T)
    torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-12, atol=0)
    assert a.pairs == 15 and b.pairs == 25


def test_results_do_not_depend_on_the_batch_size(k, x):
    """The memory budget is a schedule: it must not change a single number."""
    per_pair = k.backend("torch", torch.float64, torch.device("cpu")).bytes_per_pair()
    base = k(x, dtype=torch.float64)
    for pairs in (1, 2, 7):
        other = k(x, dtype=torch.float64, memory=per_pair * pairs)
        torch.testing.assert_close(other.nngp, base.nngp, rtol=1e-13, atol=0)
        torch.testing.assert_close(other.ntk, base.ntk, rtol=1e-13, atol=0)


def test_blocks_agree_with_the_full_matrix(k, x):
    full = k(x, dtype=torch.float64)
    block = k(x[3:], x[:2], dtype=torch.float64)
    torch.testing.assert_close(block.ntk, full.ntk[3:, :2], rtol=1e-12, atol=0)


def test_numpy_in_numpy_out_and_float32(k, x):
    r = k(x.numpy().astype(np.float32))
    assert isinstance(r.nngp, np.ndarray) and r.nngp.dtype == np.float32 and r.nngp.shape == (5, 5)
    ref = k(x, dtype=torch.float64)
    scale = ref.ntk.abs().max().item()
    assert np.abs(r.ntk - ref.ntk.numpy()).max() <= 1e-5 * scale


@pytest.mark.parametrize("readout", ["gap\ndense", "avgpool size=2\nflatten\ndense"])
def test_self_pair_diagonal_is_exact_in_float32(readout):
    """K(a, a) in float32 must match float64 closely although its correlation is exactly 1.

    The pair program stores these networks in another layout than the image program, so u and
    the variance maps differ by rounding; without using v itself at p = q the relu angle would
    come out near sqrt(eps) instead of 0 (relative errors of about 4e-5 here)."""
    k = ntkc.compile("input height=6 width=6 channels=3\nrepeat 6 {\nconv w_std=sqrt(2) b_std=0.3\nrelu\n}\n"
                     + readout + "\n")
    x = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r32 = k(x, dtype=torch.float32)
    r64 = k(x, dtype=torch.float64)
    rel = (torch.diagonal(r32.ntk).double() - torch.diagonal(r64.ntk)).abs() / torch.diagonal(r64.ntk)
    assert rel.max() < 2e-6, rel


def test_duplicate_images_across_x1_and_x2_count_as_self_pairs():
    k = ntkc.compile("input height=4 width=4 channels=1\nrepeat 4 {\nconv w_std=sqrt(2)\nrelu\n}\ngap\n")
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cross = k(x, x.clone(), dtype=torch.float64)
    sym = k(x, dtype=torch.float64)
    # Batches differ, so allow rounding; a missed self pair is off by about 1e-9 relative.
    torch.testing.assert_close(torch.diagonal(cross.ntk), torch.diagonal(sym.ntk), rtol=1e-13, atol=0)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 4, 5, 2)), "expected \\(2, 5, 4\\)"),
    (np.zeros((2, 5, 4)), "4-D batch"),
    (np.zeros((0, 2, 5, 4)), "no images"),
    ("images", "numpy array or a torch tensor"),
])
def test_bad_shapes_are_input_errors(k, bad, match):
    with pytest.raises(InputError, match=match):
        k(bad)


def test_nhwc_gets_a_hint(k):
    with pytest.raises(InputError, match="NHWC"):
        k(np.zeros((1, 5, 4, 2)))


def test_nan_and_inf_are_refused(k, x):
    bad = x.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(InputError, match="NaN or inf \\(images \\[1\\]"):
        k(bad)
    bad[1, 0, 2, 2] = float("inf")
    with pytest.raises(InputError):
        k(x, bad)


def test_bad_dtype_and_backend(k, x):
    with pytest.raises(InputError, match="float32 or float64"):
        k(x, dtype=torch.float16)
    with pytest.raises(BackendError, match="unknown backend"):
        k(x, backend="cuda")


def test_triton_on_cpu_without_interpreter_is_a_clear_error(k, x, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        k(x, backend="triton")


def test_progress_reports_pairs(k, x):
    seen = []
    k(x, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (15, 15)


@pytest.mark.slow
def test_torch_compiled_pair_program_equals_eager(k, x):
    """`fuse=True` (torch.compile of the pair program, used for long runs) changes no result."""
    eager = k(x, dtype=torch.float64, fuse=False)
    fused = k(x, x[:3], dtype=torch.float64, fuse=True)
    torch.testing.assert_close(fused.ntk, eager.ntk[:, :3], rtol=1e-12, atol=0)
    torch.testing.assert_close(fused.nngp, eager.nngp[:, :3], rtol=1e-12, atol=0)


def test_tiles_and_memmap_output(k, x, tmp_path, monkeypatch):
    """Small tiles (variance maps recomputed per tile) and numpy/memmap outputs change nothing."""
    from ntkc.engine import tiling as kmod

    base = k(x, dtype=torch.float64)
    ex = k.backend("torch", torch.float64, torch.device("cpu"))
    mm = [np.lib.format.open_memmap(tmp_path / f"{n}.npy", mode="w+", dtype=np.float64, shape=(5, 5))
          for n in ("nngp", "ntk")]
    nngp, ntk, pairs = kmod.gram(ex, x, None, 1 << 30, tile=2, out=mm)
    assert pairs == 15
    np.testing.assert_allclose(np.load(tmp_path / "ntk.npy"), base.ntk.numpy(), rtol=1e-12, atol=0)
    cross = kmod.gram(ex, x[:3], x, 1 << 30, tile=2)
    torch.testing.assert_close(cross[1], base.ntk[:3], rtol=1e-12, atol=0)
