"""A Gram store against hostile edits (issue 15): tiles bound to their store and position, the
manifest's schema checked on open, damaged matrices, old formats, and two processes on one
store (a lock: the second waits, then finds the tiles done)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import ntkc
from ntkc.learn.data import load_dataset
from ntkc.store.gramstore import GramStore, StoreError
from ntkc.store.job import fill, open_store

from support.paths import ROOT
from support.storecase import GAP_ARCH, TILE, V_ARCH, assert_same, reference


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits", n_train=24, n_test=8, seed=5)


@pytest.fixture(scope="module")
def kernels():
    return ntkc.compile(V_ARCH), ntkc.compile(GAP_ARCH)


def _filled(root, kernel, ds):
    store, settings = open_store(root, kernel, ds.x_train, ds.x_test, description=ds.description,
                                 y_train=ds.y_train, y_test=ds.y_test, dtype="float64", tile=TILE)
    fill(store, kernel, ds.x_train, ds.x_test, settings)
    return store, settings


def _tile(store, block, i, j):
    (path,) = (store.root / "tiles" / block).glob(f"{i:05d}_{j:05d}.*.npy")
    return path


@pytest.mark.parametrize("source", ["another architecture", "the same computation elsewhere", "another position"])
def test_a_foreign_or_moved_tile_is_found_reported_and_recomputed(tmp_path, kernels, ds, source):
    v, gap = kernels
    store, settings = _filled(tmp_path / "a", v, ds)
    ref = reference(v, ds, settings)
    if source == "another position":
        donor = _tile(store, "train_train", 0, 2)
    else:
        other, _ = _filled(tmp_path / "b", gap if source == "another architecture" else v, ds)
        donor = _tile(other, "train_train", 0, 1)
    victim = _tile(store, "train_train", 0, 1)
    victim.unlink()
    moved = victim.parent / ("00000_00001." + donor.name.split(".", 1)[1])
    moved.write_bytes(donor.read_bytes())
    logs = []
    again, s2 = open_store(store.root, v, ds.x_train, ds.x_test, description=ds.description, dtype="float64",
                           tile=TILE)
    stats = fill(again, v, ds.x_train, ds.x_test, s2, verify=True, log=logs.append)
    assert any(moved.name in m and "copied from another store" in m for m in logs), logs
    assert not logs[-1].endswith("no problem(s) found")
    assert stats["tiles_computed"] == 1
    assert_same(again, ref)


def _edit(store, change):
    path = store.root / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


@pytest.mark.parametrize("change, message", [
    (lambda m: m["data"]["train"].__setitem__("n", 30), "data.train.shape"),
    (lambda m: m["data"]["train"].__setitem__("n", "24"), "data.train.n"),
    (lambda m: m.__setitem__("fuse", "no"), "fuse"),
    (lambda m: m.__setitem__("batch", 0), "batch"),
    (lambda m: m.__setitem__("blocks", 5), "blocks"),
    (lambda m: m.__setitem__("blocks", ["train_train", "val_val"]), "blocks"),
    (lambda m: m.pop("arch"), "arch"),
    (lambda m: m["arch"].__setitem__("source", m["arch"]["source"] + "relu\n"), "arch.sha256"),
    (lambda m: m.__setitem__("tile", 2.5), "tile"),
    (lambda m: m.__setitem__("dtype", "float16"), "dtype"),
], ids=["n", "n-str", "fuse", "batch", "blocks-int", "blocks-unknown", "no-arch", "arch-hash", "tile", "dtype"])
def test_a_manifest_edited_by_hand_is_refused_with_what_is_wrong(tmp_path, kernels, ds, change, message):
    store, _ = _filled(tmp_path / "s", kernels[0], ds)
    _edit(store, change)
    for how in (lambda: GramStore.open(store.root),
                lambda: ntkc.gram_store(kernels[0], store.root, ds.x_train, ds.x_test, dtype="float64", tile=TILE)):
        with pytest.raises(StoreError) as info:
            how()
        assert "edited by hand" in info.value.message and f"`{message}" in info.value.message, info.value.message


def test_an_old_format_store_is_refused_with_a_clear_message(tmp_path, kernels, ds):
    store, _ = _filled(tmp_path / "s", kernels[0], ds)
    _edit(store, lambda m: m.__setitem__("version", 1))
    with pytest.raises(StoreError, match="version 1 store") as info:
        GramStore.open(store.root)
    assert "numpy.load" in info.value.hint


def test_an_object_array_in_place_of_a_matrix(tmp_path, kernels, ds):
    store, settings = _filled(tmp_path / "s", kernels[0], ds)
    np.save(store.matrix_path("train_train", "ntk"), np.array([None] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(StoreError, match="damaged"):
        GramStore.open(store.root).matrices("train_train")
    logs = []
    again, s2 = open_store(store.root, kernels[0], ds.x_train, ds.x_test, description=ds.description,
                           dtype="float64", tile=TILE)
    fill(again, kernels[0], ds.x_train, ds.x_test, s2, verify=True, log=logs.append)
    assert any("cannot be read" in m for m in logs), logs
    assert_same(again, reference(kernels[0], ds, settings))


def test_a_second_caller_waits_for_the_lock_then_finds_the_tiles_done(tmp_path, kernels, ds):
    root = tmp_path / "shared"
    first = ntkc.gram_store(kernels[0], root, ds.x_train, ds.x_test, dtype="float64", tile=TILE)
    for p in (root / "tiles").rglob("*.npy"):
        p.unlink()
    for p in root.glob("*.npy"):
        p.unlink()
    held = threading.Event()
    release = threading.Event()

    def holder():
        with GramStore.open(root).lock():
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    logs = []
    threading.Timer(1.0, release.set).start()
    start = time.perf_counter()
    st = ntkc.gram_store(kernels[0], root, ds.x_train, ds.x_test, dtype="float64", tile=TILE, log=logs.append)
    t.join()
    assert time.perf_counter() - start >= 0.9
    assert any("is being filled by process" in m and "waiting" in m for m in logs), logs
    assert np.array_equal(st.matrices("train_train")[1], first.matrices("train_train")[1])


@pytest.mark.slow
def test_two_processes_on_one_store_compute_each_tile_once(tmp_path):
    code = (
        "import sys, ntkc\n"
        "from ntkc.learn.data import load_dataset\n"
        f"ds = load_dataset('digits', n_train=64, n_test=16, seed=2)\n"
        f"k = ntkc.compile({str(GAP_ARCH)!r})\n"
        "st = ntkc.gram_store(k, sys.argv[1], ds.x_train, ds.x_test, dtype='float64', tile=8, log=print)\n"
        "print('computed', st.last_run['tiles_computed'])\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = tmp_path / "both"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    computed = [int(o[0].split("computed")[-1]) for o in outs]
    total = 8 * 9 // 2 + 2 * 8
    assert sorted(computed) == [0, total], outs
