"""The numba backend as a `Backend`: what "auto" picks, thread counts (results bitwise the same
for any of them), the fallback to torch with one warning line, the disk cache, the command
line's --threads / --backend numba / --emit numba, and user rules with every op."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import ntkc
from ntkc import backends
from ntkc.backends.base import Backend
from ntkc.cli import main
from ntkc.errors import BackendError
from ntkc.rules import ActivationRule, Param, register
from ntkc.util import threads as T
from support.checks import F32_TOL, F64_TOL, assert_close, images
from support.paths import EXAMPLES, ROOT

CPU = torch.device("cpu")
DIGITS_V = EXAMPLES / "digits_v.arch"


def _gram(k, x1, x2=None, dtype=torch.float64, backend="numba", threads=None):
    r = k(torch.as_tensor(x1, dtype=dtype), None if x2 is None else torch.as_tensor(x2, dtype=dtype),
          dtype=dtype, backend=backend, threads=threads)
    return r.nngp.double().numpy(), r.ntk.double().numpy()


# -- what auto picks ------------------------------------------------------------------------------

def test_auto_picks_numba_on_a_cpu_for_runs_that_repay_the_compile():
    k = ntkc.compile(EXAMPLES / "digits_gap.arch")
    work = backends.run_work(k.plan, 160_000, 600)   # the README's main job: train x train + test x train
    assert work > backends.NUMBA_WORK
    assert backends.resolve("auto", CPU, work) == "numba"
    assert backends.resolve("auto", CPU, backends.NUMBA_WORK / 10) == "torch"
    assert backends.resolve("auto", CPU, None) == "torch"          # unknown work: a small run
    assert backends.resolve("auto", torch.device("meta"), work) == "torch"
    # a test-sized call stays on torch, so it pays no compile
    assert backends.run_work(k.plan, 6, 3) < backends.NUMBA_WORK
    r = k(np.zeros((3, 1, 8, 8)) + 0.5)
    assert r.backend == "torch"


def test_the_rule_depends_only_on_the_plan_and_the_sizes():
    """So a resumed Gram store resolves to the backend of its first run."""
    k = ntkc.compile(EXAMPLES / "cntk_gap_d3.arch")
    n = int((backends.NUMBA_WORK / k.plan.pair.flops()) ** 0.5 * 1.5)  # pairs ~ n^2 / 2 above the line
    picks = {k.backend("auto", torch.float64, CPU, pairs=n * (n + 1) // 2, images=n).name for _ in range(3)}
    assert picks == {"numba"}
    assert k.backend("auto", torch.float64, CPU, pairs=10, images=4).name == "torch"


def test_a_store_records_the_backend_auto_picked(tmp_path):
    from ntkc.store.job import open_store

    k = ntkc.compile(EXAMPLES / "digits_v.arch")
    x = images(4, (8, 8, 1), 0)
    store, settings = open_store(tmp_path / "s", k, x, None, description="t", dtype="float64")
    assert settings.backend == store.manifest["backend"] == "torch"   # 10 pairs: no compile


def test_numba_on_a_gpu_is_refused_with_a_hint():
    with pytest.raises(BackendError, match="runs on the CPU"):
        backends.resolve("numba", torch.device("cuda"))


def test_the_backend_implements_the_protocol():
    k = ntkc.compile(DIGITS_V)
    b = k.backend("numba", torch.float32)
    assert isinstance(b, Backend) and b.name == "numba"
    assert b.preferred_batch() >= 1 and b.bytes_per_pair() > 0 and not b.fusion_pays(10 ** 9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_indexed_pairs_give_the_bits_of_per_pair_copies(dtype):
    """`pairs` reads each image and its maps by pair index: bitwise what the old protocol's
    per-pair copies (`gather_pairs`, identity indices) give, self pairs and repeats included."""
    from ntkc.backends.base import gather_pairs

    k = ntkc.compile(DIGITS_V)
    b = k.backend("numba", dtype)
    rows = torch.as_tensor(images(4, (8, 8, 1), 5, float32=True), dtype=dtype)
    cols = torch.cat([rows[1:2], torch.as_tensor(images(3, (8, 8, 1), 6, float32=True), dtype=dtype)])
    mr, mc = b.variance_maps(rows), b.variance_maps(cols)
    i = torch.tensor([0, 3, 1, 1, 2, 0, 3], dtype=torch.int64)
    j = torch.tensor([1, 0, 0, 3, 2, 0, 1], dtype=torch.int64)
    same = torch.tensor([False, False, True, False, False, False, False])
    got = b.pairs(rows, cols, mr, mc, i, j, same)
    xa, xb, va, vb = gather_pairs(rows, cols, mr, mc, i, j)
    ident = torch.arange(len(i), dtype=torch.int64)
    want = b.pairs(xa, xb, va, vb, ident, ident, same)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    t = k.backend("torch", torch.float64)
    ref = t.pairs(rows.double(), cols.double(), [m.double() for m in t.variance_maps(rows.double())],
                  [m.double() for m in t.variance_maps(cols.double())], i, j, same)
    for g, w in zip(got, ref):
        assert_close(g.double().numpy(), w.numpy(), F64_TOL if dtype == torch.float64 else F32_TOL, "indexed")


# -- threads --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["digits_gap", "cntk_v_d3", pytest.param("myrtle5", marks=[pytest.mark.slow, pytest.mark.skipif(
    os.environ.get("NTKC_NUMBA_EXHAUSTIVE") != "1", reason="a large compile: NTKC_NUMBA_EXHAUSTIVE=1 runs it")])])
def test_bitwise_identical_for_any_thread_count(name, monkeypatch):
    from ntkc.backends.numba import backend as nb

    k = ntkc.compile(EXAMPLES / f"{name}.arch")
    net = k.arch.input
    shape = (net.height, net.width, net.channels)
    x1, x2 = images(5, shape, 1), images(3, shape, 2)
    runs = []
    for dtype in (torch.float32, torch.float64):
        for threads, chunks in ((1, 4), (2, 4), (3, 1), (4, 7)):
            monkeypatch.setattr(nb, "CHUNKS_PER_THREAD", chunks)
            runs.append((dtype, _gram(k, x1, dtype=dtype, threads=threads) + _gram(k, x1, x2, dtype=dtype, threads=threads)))
    for dtype, run in runs:
        first = next(r for d, r in runs if d == dtype)
        for a, b in zip(first, run):
            assert np.array_equal(a, b), dtype


def test_thread_count_resolution(monkeypatch):
    monkeypatch.delenv("NTKC_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert T.thread_count() == 3
    monkeypatch.setenv("NTKC_NUM_THREADS", "2")
    assert T.thread_count() == 2
    assert T.thread_count(5) == 5
    with T.using(4):
        assert T.thread_count() == 4 and torch.get_num_threads() == 4
    monkeypatch.delenv("NTKC_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert T.thread_count() == T.cores()
    with pytest.raises(ntkc.InputError, match="thread count"):
        ntkc.compile(DIGITS_V)(np.zeros((2, 1, 8, 8)), threads=0)


@pytest.fixture
def process_threads():
    """--threads sets the process default (and torch's pool): put both back afterwards."""
    before = torch.get_num_threads()
    yield
    T.set_threads(None)
    torch.set_num_threads(before)


def test_the_cli_gives_the_same_bits_for_any_thread_count(tmp_path, capsys, process_threads):
    outs = []
    for n in ("1", "2"):
        out = tmp_path / f"k{n}.npz"
        assert main(["gram", str(DIGITS_V), "--n-train", "30", "--n-test", "10", "--backend", "numba",
                     "--threads", n, "--out", str(out), "--quiet"]) == 0
        outs.append(np.load(out))
    for key in ("nngp_train", "ntk_train", "nngp_test", "ntk_test"):
        assert np.array_equal(outs[0][key], outs[1][key]), key
    assert '"backend": "numba"' in str(outs[0]["meta"])


def test_the_cli_emits_the_numba_source(capsys):
    path = EXAMPLES / "cntk_v_d21.arch"
    conv_line = next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith("conv"))
    assert main(["compile", str(path), "--emit", "numba"]) == 0
    out = capsys.readouterr().out
    assert "def pair_stage0(" in out and "19 times over: a run-time loop" in out and f"# line {conv_line}: conv" in out
    assert "fastmath" not in out.split("def pair_stage0(")[1].split("\n", 2)[0]


# -- fallback -------------------------------------------------------------------------------------

def _one_warning(record):
    msgs = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert "\n" not in msgs[0] and "using the torch backend" in msgs[0]
    return msgs[0]


def test_a_failed_compile_falls_back_to_torch_with_one_line(monkeypatch):
    from ntkc.backends.numba import backend as nb

    def broken(plan, dtype):
        raise SyntaxError("generated code does not parse\n  (a second line that must not be shown)")

    monkeypatch.setattr(nb, "build", broken)
    k = ntkc.compile(DIGITS_V)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        b = k.backend("numba", torch.float64)
    msg = _one_warning(record)
    assert "SyntaxError" in msg and "second line" not in msg and b.name == "torch"
    x = images(2, (8, 8, 1), 3)
    got = k(x, dtype=torch.float64, backend="numba")
    want = k(x, dtype=torch.float64, backend="torch")
    assert got.backend == "torch" and np.array_equal(got.nngp, want.nngp)


def test_a_numba_typing_error_falls_back(monkeypatch):
    """An op rendered into nonsense: numba refuses to type the generated kernel."""
    from ntkc.backends.numba import render

    monkeypatch.setitem(render.NUMBA_OPS, "atan2", "_atan2({0}, {1}, {1})")
    k = ntkc.compile("input height=3 width=3 channels=1\nconv\nrelu\nflatten\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        b = k.backend("numba", torch.float32)
    assert "numba backend unavailable" in _one_warning(record) and b.name == "torch"


def test_without_numba_auto_is_torch_and_numba_is_refused(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    assert backends.resolve("auto", CPU, 1e20) == "torch"
    with pytest.raises(BackendError, match="needs the `numba` package"):
        backends.resolve("numba", CPU)


def test_the_cli_prints_a_fallback_as_one_line(monkeypatch, tmp_path, capsys):
    from ntkc.backends.numba import backend as nb

    monkeypatch.setattr(nb, "build", lambda plan, dtype: (_ for _ in ()).throw(ImportError("No module named 'numba'")))
    assert main(["gram", str(DIGITS_V), "--n-train", "10", "--n-test", "0", "--backend", "numba",
                 "--out", str(tmp_path / "k.npz"), "--quiet"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "numba" in line]
    assert lines == ["ntkc: warning: numba backend unavailable (ImportError: No module named 'numba'); "
                     "using the torch backend"], err
    assert "Traceback" not in err


# -- the disk cache -------------------------------------------------------------------------------

def test_modules_and_machine_code_are_cached(tmp_path, monkeypatch):
    from ntkc.backends.numba import codecache

    monkeypatch.setenv("NTKC_CACHE_DIR", str(tmp_path))
    k = ntkc.compile(DIGITS_V)
    b = k.backend("numba", torch.float32)
    folder = tmp_path / "numba"
    py = [f for f in os.listdir(folder) if f.endswith(".py")]
    assert len(py) == 1 and py[0].startswith("digits_v_float32_")
    assert (folder / py[0]).read_text() == b.generated.source
    cached = os.listdir(folder / "__pycache__")
    assert any(f.endswith(".nbi") for f in cached) and any(f.endswith(".nbc") for f in cached)
    assert codecache.write(b.generated.source, "digits_v_float32") == folder / py[0]


def test_the_same_source_reuses_its_module_and_a_changed_arch_does_not(tmp_path, monkeypatch):
    from ntkc.backends.numba import codecache

    monkeypatch.setenv("NTKC_CACHE_DIR", str(tmp_path))
    tiny = "input height=3 width=4 channels=1\nconv w_std={}\nrelu\nflatten\n"
    first = ntkc.compile(tiny.format(1.5)).backend("numba", torch.float64)
    folder = tmp_path / "numba"
    files = sorted(f for f in os.listdir(folder) if f.endswith(".py"))
    stamp = os.stat(folder / files[0]).st_mtime_ns
    again = ntkc.compile(tiny.format(1.5)).backend("numba", torch.float64)
    assert again.module is first.module and again.generated.source == first.generated.source
    assert sorted(f for f in os.listdir(folder) if f.endswith(".py")) == files
    assert os.stat(folder / files[0]).st_mtime_ns == stamp            # not written again
    changed = ntkc.compile(tiny.format(2.0)).backend("numba", torch.float64)
    assert changed.module is not first.module
    now = sorted(f for f in os.listdir(folder) if f.endswith(".py"))
    assert len(now) == 2 and set(files) < set(now)
    assert codecache.source_hash(changed.generated.source) != codecache.source_hash(first.generated.source)


def test_a_second_process_loads_the_cached_kernels(tmp_path):
    env = dict(os.environ, NTKC_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    script = ("import time, torch, ntkc\n"
              f"k = ntkc.compile({str(DIGITS_V)!r})\n"
              "t = time.perf_counter(); b = k.backend('numba', torch.float32)\n"
              "assert b.name == 'numba'\n"
              "print(time.perf_counter() - t)\n")
    times = [float(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                  check=True, timeout=300).stdout.split()[-1]) for _ in range(2)]
    assert times[1] < times[0] / 2 and times[1] < 3.0, times


# -- user rules -----------------------------------------------------------------------------------

class _EveryOp(ActivationRule):
    """everyop: a made-up activation that uses every op of the vocabulary (not a real kernel;
    only the two backends' agreement matters)."""

    name = "everyop_numba_test"
    params = (Param("s", "float", 0.5),)

    def maps(self, p, ops, u, v1, v2, need_dfactor=True):
        q = ops.rsqrt(1.0 + v1 * v2) * u
        a = ops.asin(ops.tanh(q)) + ops.acos(0.5 * ops.tanh(q)) + ops.atan(q) + ops.atan2(u, -v1)
        b = ops.exp(-ops.abs(u)) * ops.cos(u) + ops.sin(u) * ops.erf(q) + ops.log(1.0 + v1) * ops.sqrt(v2)
        c = ops.where(ops.lt(u, 0.0), ops.minimum(u, -p.s), ops.maximum(u, p.s))
        c = c + ops.where(ops.ge(u, v1), 1.0, 0.0) + ops.where(ops.le(u, 0.1), 2.0, 1.0) + ops.where(ops.gt(v2, 1.0), v2, 1.0)
        return a + b + c, ((1.0 + q * q) * 0.25 if need_dfactor else None)


def test_a_user_rule_using_every_op_agrees_with_torch():
    register(_EveryOp)
    k = ntkc.compile("input height=5 width=6 channels=2\nconv w_std=1.3\neveryop_numba_test s=0.4\nconv\nrelu\ngap\ndense\n")
    x1, x2 = images(2, (5, 6, 2), 1), images(3, (5, 6, 2), 2)
    want = _gram(k, x1, x2, backend="torch")
    assert np.isfinite(want[0]).all()
    for dtype, tol in ((torch.float64, F64_TOL), (torch.float32, F32_TOL)):
        for g, w in zip(_gram(k, x1, x2, dtype=dtype), want):
            assert_close(g, w, tol, f"everyop {dtype}")
