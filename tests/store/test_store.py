"""The Gram store: tiles on disk, resume, refusal of a mismatched store, and injected faults
(interruption, SIGKILL of the driver, truncated and corrupt tiles, a full disk).

Every test ends by comparing the store's matrices bit for bit with an uninterrupted in-memory
computation (`kernel.gram` with the same tile size and pair batch), or with a clear refusal.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ntkc
from ntkc.store import gramstore as store_mod
from ntkc.util import atomic as atomic_mod
from ntkc.learn.data import load_dataset
from ntkc.store.job import fill, open_store
from ntkc.engine.tiling import gram
from ntkc.store.gramstore import GramStore, StoreError

from support.paths import ROOT
from support.storecase import GAP_ARCH, TILE, V_ARCH, assert_same, reference


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits", n_train=40, n_test=12, seed=3)


@pytest.fixture(scope="module")
def kernel():
    return ntkc.compile(V_ARCH)


def new_store(tmp_path, kernel, ds, name="s", dtype="float64", **kw):
    return open_store(tmp_path / name, kernel, ds.x_train, ds.x_test, description=ds.description,
                      y_train=ds.y_train, y_test=ds.y_test, dtype=dtype, tile=TILE, **kw)


def tile_files(store: GramStore) -> list[Path]:
    return sorted((store.root / "tiles").rglob("*.npy"))


def test_store_equals_in_memory_bitwise_and_reads_back_memory_mapped(tmp_path, kernel, ds):
    store, settings = new_store(tmp_path, kernel, ds)
    stats = fill(store, kernel, ds.x_train, ds.x_test, settings)
    n_tiles = len(store.all_tiles())
    assert stats["tiles_computed"] == n_tiles and stats["tiles_stored_before"] == 0
    # 40 train images in tiles of 8: 5 x 6 / 2 = 15 upper-triangle tiles; test 2 x 5 = 10.
    assert n_tiles == 15 + 10 and len(tile_files(store)) == n_tiles
    assert_same(store, reference(kernel, ds, settings))
    nngp, ntk = GramStore.open(store.root).matrices("train_train")
    assert isinstance(ntk, np.memmap) and not ntk.flags.writeable
    assert np.array_equal(ntk, ntk.T)
    assert np.array_equal(store.labels()["y_train"], ds.y_train)
    # Rerunning a finished store computes nothing.
    again, s2 = new_store(tmp_path, kernel, ds)
    assert fill(again, kernel, ds.x_train, ds.x_test, s2)["tiles_computed"] == 0


def test_manifest_records_what_decides_the_bits(tmp_path, kernel, ds):
    store, _ = new_store(tmp_path, kernel, ds)
    m = store.manifest
    assert m["arch"]["source"] == V_ARCH.read_text()
    assert m["data"]["train"]["n"] == 40 and m["data"]["test"]["n"] == 12
    assert m["data"]["train"]["sha256"] != m["data"]["test"]["sha256"]
    assert m["dtype"] == "float64" and m["tile"] == TILE and m["backend"] == "torch"
    assert {"ntkc", "torch", "numpy"} <= set(m["versions"])


def test_resume_after_interruption_is_bitwise_identical(tmp_path, kernel, ds, monkeypatch):
    store, settings = new_store(tmp_path, kernel, ds)
    real = store_mod.GramStore.write_tile
    calls = {"n": 0}

    def interrupted(self, tile, a, b):
        if calls["n"] == 7:
            raise KeyboardInterrupt  # Ctrl-C while the 8th tile is in flight
        calls["n"] += 1
        real(self, tile, a, b)

    monkeypatch.setattr(store_mod.GramStore, "write_tile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fill(store, kernel, ds.x_train, ds.x_test, settings)
    monkeypatch.setattr(store_mod.GramStore, "write_tile", real)
    assert len(tile_files(store)) == 7
    assert not list(store.root.rglob("*.tmp"))
    again, s2 = new_store(tmp_path, kernel, ds)
    stats = fill(again, kernel, ds.x_train, ds.x_test, s2)
    assert stats["tiles_stored_before"] == 7 and stats["tiles_computed"] == 25 - 7
    assert_same(again, reference(kernel, ds, s2))


def test_truncated_and_corrupt_tiles_are_detected_and_recomputed(tmp_path, kernel, ds, monkeypatch):
    store, settings = new_store(tmp_path, kernel, ds)
    real = store_mod.GramStore.write_tile

    def stop_after(limit):
        calls = {"n": 0}

        def fake(self, tile, a, b):
            if calls["n"] == limit:
                raise KeyboardInterrupt
            calls["n"] += 1
            real(self, tile, a, b)
        return fake

    monkeypatch.setattr(store_mod.GramStore, "write_tile", stop_after(12))
    with pytest.raises(KeyboardInterrupt):
        fill(store, kernel, ds.x_train, ds.x_test, settings)
    monkeypatch.setattr(store_mod.GramStore, "write_tile", real)
    files = tile_files(store)
    truncated, corrupt = files[2], files[5]
    truncated.write_bytes(truncated.read_bytes()[:-40])
    raw = bytearray(corrupt.read_bytes())
    raw[-3] ^= 0x40  # one flipped bit in the data, same size: only the checksum can tell
    corrupt.write_bytes(bytes(raw))
    logs = []
    again, s2 = new_store(tmp_path, kernel, ds)
    fill(again, kernel, ds.x_train, ds.x_test, s2, log=logs.append)
    assert any(corrupt.name in m and "checksum" in m for m in logs), logs
    assert_same(again, reference(kernel, ds, s2))


def test_store_for_another_computation_is_refused(tmp_path, kernel, ds):
    store, settings = new_store(tmp_path, kernel, ds)
    fill(store, kernel, ds.x_train, ds.x_test, settings)
    before = {p: p.read_bytes() for p in tile_files(store)}
    other = ntkc.compile(GAP_ARCH)
    with pytest.raises(StoreError, match="architecture") as err:
        new_store(tmp_path, other, ds)
    assert "another --store folder" in str(err.value)
    with pytest.raises(StoreError, match="precision: the store has 'float64', this command 'float32'"):
        new_store(tmp_path, kernel, ds, dtype="float32")
    other_data = load_dataset("digits", n_train=40, n_test=12, seed=4)
    with pytest.raises(StoreError, match="training images"):
        new_store(tmp_path, kernel, other_data)
    with pytest.raises(StoreError, match="tile size"):
        open_store(tmp_path / "s", kernel, ds.x_train, ds.x_test, description="", dtype="float64", tile=16)
    # Nothing was touched by the refusals.
    assert {p: p.read_bytes() for p in tile_files(store)} == before


def test_a_folder_that_is_not_a_store_is_refused(tmp_path, kernel, ds):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a Gram store"):
        new_store(tmp_path, kernel, ds)
    assert (tmp_path / "s" / "thesis.tex").read_text() == "precious"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "manifest.json").write_text("{ half a manif")
    with pytest.raises(StoreError, match="cannot be read"):
        GramStore.open(tmp_path / "t")


def test_full_disk_keeps_finished_tiles_and_resumes(tmp_path, kernel, ds, monkeypatch):
    store, settings = new_store(tmp_path, kernel, ds)
    real = atomic_mod._write
    budget = {"bytes": 10_000}  # room for 8 tiles of 1,152 bytes, then ENOSPC as a full disk says

    def small_disk(fd, view):
        if budget["bytes"] < len(view):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        budget["bytes"] -= len(view)
        return real(fd, view)

    monkeypatch.setattr(atomic_mod, "_write", small_disk)
    with pytest.raises(StoreError, match="disk holding .* is full") as err:
        fill(store, kernel, ds.x_train, ds.x_test, settings)
    assert "rerun the same command" in str(err.value)
    kept = tile_files(store)
    assert 0 < len(kept) < 25
    assert not list(store.root.rglob("*.tmp")), "a failed write must not leave a temporary file"
    monkeypatch.setattr(atomic_mod, "_write", real)
    again, s2 = new_store(tmp_path, kernel, ds)
    stats = fill(again, kernel, ds.x_train, ds.x_test, s2)
    assert stats["tiles_stored_before"] == len(kept)
    assert_same(again, reference(kernel, ds, s2))


def test_test_test_block_and_float32(tmp_path, kernel, ds):
    store, settings = new_store(tmp_path, kernel, ds, dtype="float32", test_test=True)
    fill(store, kernel, ds.x_train, ds.x_test, settings)
    nngp, ntk = store.matrices("test_test")
    assert nngp.dtype == np.float32 and nngp.shape == (12, 12)
    direct = kernel(ds.x_test, dtype=torch.float32, memory=settings.memory)
    assert np.array_equal(ntk, direct.ntk)


def _cmd(store_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ntkc.cli", "gram", str(GAP_ARCH), "--n-train", "96", "--n-test", "8",
            "--seed", "1", "--dtype", "float64", "--store", str(store_dir), "--tile", "8", "--quiet", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_driver_killed_with_sigkill_then_rerun_gives_identical_matrices(tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ntkc[ray]'")
    store_dir = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_cmd(store_dir, "--executor", executor), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((store_dir / "tiles").rglob("*.npy"))) >= 8 if (store_dir / "tiles").exists() else False:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((store_dir / "tiles").rglob("*.npy")))
    total = 12 * 13 // 2 + 12
    assert 8 <= partial < total
    done = subprocess.run(_cmd(store_dir, "--executor", executor), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    killed = GramStore.open(store_dir)
    clean_dir = tmp_path / "clean"
    clean = subprocess.run(_cmd(clean_dir), env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    ref = GramStore.open(clean_dir)
    for block in ("train_train", "test_train"):
        for a, b in zip(killed.matrices(block), ref.matrices(block)):
            assert np.array_equal(a, b)


def test_cli_store_round_trip_and_errors(tmp_path, capsys):
    from ntkc.cli import main

    args = ["gram", str(V_ARCH), "--n-train", "20", "--n-test", "6", "--store", str(tmp_path / "st"),
            "--tile", "8", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "k.npz")]) == 0
    with np.load(tmp_path / "k.npz") as f:
        nt = GramStore.open(tmp_path / "st").matrices("train_train")[1]
        assert np.array_equal(f["ntk_train"], nt)
    assert main(args + ["--verify"]) == 0
    assert main(args + ["--dtype", "float32"]) == 2
    assert "made for a different computation" in capsys.readouterr().err
    assert main(["gram", str(V_ARCH), "--n-train", "20", "--n-test", "6"]) == 2
    assert "--out FILE.npz or --store DIR" in capsys.readouterr().err
    assert main(["gram", str(V_ARCH), "--out", str(tmp_path / "x.npz"), "--executor", "ray"]) == 2
    assert "--executor needs --store" in capsys.readouterr().err
    # regress straight from the store, no recomputation
    assert main(["regress", str(V_ARCH), "--n-train", "20", "--n-test", "6", "--store", str(tmp_path / "st"),
                 "--tile", "8", "--quiet"]) == 0
    assert "NTK" in capsys.readouterr().out


def test_python_api_gram_store_resumes(tmp_path, kernel, ds):
    seen = []
    st = ntkc.gram_store(kernel, tmp_path / "api", ds.x_train, ds.x_test, dtype="float64", tile=TILE,
                         progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] == 40 * 41 // 2 + 12 * 40
    victim = tile_files(st)[4]
    victim.unlink()
    for p in (st.root).glob("*.npy"):
        p.unlink()  # as if the run had died before assembling
    again = ntkc.gram_store(kernel, tmp_path / "api", ds.x_train, ds.x_test, dtype="float64", tile=TILE)
    assert victim.exists()
    assert_same(again, reference(kernel, ds, open_store(tmp_path / "api", kernel, ds.x_train, ds.x_test,
                                                        description="", dtype="float64", tile=TILE)[1]))


def test_experiment_with_a_store_keeps_one_store_per_run_and_resumes(tmp_path):
    from ntkc.learn.experiment import run_experiment

    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"architectures: [{V_ARCH}]\ndataset: digits\nn_train: [20, 30]\nn_test: 10\n"
                   "seeds: [0]\ndtype: float64\nridge: 0\nstore: st\noutput: out\n")
    first = run_experiment(cfg, quiet=True)["rows"]
    stores = sorted(p.name for p in (tmp_path / "st").iterdir())
    assert stores == ["digits_v_n20_seed0", "digits_v_n30_seed0"]
    shutil_target = tmp_path / "st" / "digits_v_n30_seed0"
    for p in shutil_target.glob("*.npy"):
        p.unlink()  # the second run resumes from the tiles alone
    second = run_experiment(cfg, quiet=True)["rows"]
    assert [r["accuracy"] for r in first] == [r["accuracy"] for r in second]
    cfg.write_text(cfg.read_text() + "executor: spark\n")
    with pytest.raises(ntkc.NtkcError, match="executor"):
        run_experiment(cfg, quiet=True)


def test_verify_finds_damage_done_after_the_store_was_finished(tmp_path, kernel, ds):
    store, settings = new_store(tmp_path, kernel, ds)
    fill(store, kernel, ds.x_train, ds.x_test, settings)
    ref = reference(kernel, ds, settings)
    # A bit flipped in a finished tile, and a value changed in an assembled matrix elsewhere.
    tile = tile_files(store)[-1]  # a train_train tile
    raw = bytearray(tile.read_bytes())
    raw[-5] ^= 0x01
    tile.write_bytes(bytes(raw))
    m = np.load(store.matrix_path("test_train", "ntk"), mmap_mode="r+")
    m[3, 7] += 1.0
    m.flush()
    del m
    # Without --verify a finished store is trusted: the damaged matrix is what is read.
    again, s2 = new_store(tmp_path, kernel, ds)
    assert fill(again, kernel, ds.x_train, ds.x_test, s2)["tiles_computed"] == 0
    assert not np.array_equal(again.matrices("test_train")[1], ref[3])
    logs = []
    checked, s3 = new_store(tmp_path, kernel, ds)
    stats = fill(checked, kernel, ds.x_train, ds.x_test, s3, verify=True, log=logs.append)
    assert stats["tiles_computed"] == 1
    assert any(tile.name in m and "checksum" in m for m in logs), logs
    assert any("test_train: the assembled matrices differ" in m for m in logs), logs
    assert_same(checked, ref)
    clean = []
    fill(checked, kernel, ds.x_train, ds.x_test, s3, verify=True, log=clean.append)
    assert clean[-1].endswith("no problem(s) found")


def test_local_store_needs_no_ray_and_ray_executor_says_how_to_get_it(tmp_path):
    """With Ray not importable, the default executor works and `--executor ray` explains."""
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now raises ImportError
        "from ntkc.cli import main\n"
        f"args = ['gram', {str(V_ARCH)!r}, '--n-train', '16', '--n-test', '4', '--quiet', '--tile', '8']\n"
        f"assert main(args + ['--store', {str(tmp_path / 'a')!r}]) == 0\n"
        f"sys.exit(main(args + ['--store', {str(tmp_path / 'b')!r}, '--executor', 'ray']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "needs Ray, which is not installed" in run.stderr and "pip install 'ntkc[ray]'" in run.stderr
    assert GramStore.open(tmp_path / "a").missing() == []


def test_full_disk_before_the_manifest_is_a_clear_error(tmp_path, kernel, ds, monkeypatch):
    def no_space(fd, view):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic_mod, "_write", no_space)
    with pytest.raises(StoreError, match="disk holding .* is full: the store's manifest"):
        new_store(tmp_path, kernel, ds)
    assert not list((tmp_path / "s").glob("*")), "no half-written manifest or temporary file"


def test_asking_for_test_test_later_adds_only_that_block(tmp_path, kernel, ds):
    store, settings = new_store(tmp_path, kernel, ds)
    fill(store, kernel, ds.x_train, ds.x_test, settings)
    more, s2 = new_store(tmp_path, kernel, ds, test_test=True)
    assert "test_test" in more.blocks and "test_test" in GramStore.open(more.root).manifest["blocks"]
    stats = fill(more, kernel, ds.x_train, ds.x_test, s2)
    assert stats["tiles_computed"] == 3  # 12 test images in tiles of 8: (0,0), (0,1), (1,1)
    direct = kernel(ds.x_test, dtype=torch.float64, memory=s2.memory)
    assert np.array_equal(more.matrices("test_test")[1], direct.ntk)
