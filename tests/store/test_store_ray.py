"""Ray as the executor of a Gram store, on a local cluster of 2 CPU workers: the same bits as
the in-process run, and a worker killed with SIGKILL mid-run is survived by Ray's retries."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ntkc
from ntkc.learn.data import load_dataset
from ntkc.store.job import fill, open_store
from ntkc.store.gramstore import GramStore

from support.storecase import GAP_ARCH, TILE, V_ARCH, assert_same, reference

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ntkc[ray]'")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_joins_an_existing_cluster_by_address(tmp_path):
    """`ray start --head` in another process, then `ntkc gram --executor ray --address`: the
    tiles are computed by that cluster and equal an in-process store bit for bit."""
    import shutil
    import subprocess
    import sys

    ray_cli = shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the `ray` command is not on PATH")
    port = _free_port()
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        args = ["gram", str(V_ARCH), "--n-train", "24", "--n-test", "8", "--dtype", "float64", "--tile",
                str(TILE), "--quiet"]
        deadline = time.time() + 60
        while True:  # the head takes a few seconds to come up
            run = subprocess.run([sys.executable, "-m", "ntkc.cli", *args, "--store", str(tmp_path / "remote"),
                                  "--executor", "ray", "--address", f"127.0.0.1:{port}"],
                                 capture_output=True, text=True, timeout=180)
            if run.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        head.terminate()
        head.wait(timeout=60)
    from ntkc.cli import main

    assert main(args + ["--store", str(tmp_path / "local")]) == 0
    remote, local = GramStore.open(tmp_path / "remote"), GramStore.open(tmp_path / "local")
    for block in ("train_train", "test_train"):
        for a, b in zip(remote.matrices(block), local.matrices(block)):
            assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _store(tmp_path, kernel, ds, name):
    return open_store(tmp_path / name, kernel, ds.x_train, ds.x_test, description=ds.description,
                      y_train=ds.y_train, y_test=ds.y_test, dtype="float64", tile=TILE)


def test_ray_tiles_equal_the_local_run_bitwise(cluster, tmp_path):
    ds = load_dataset("digits", n_train=40, n_test=12, seed=3)
    kernel = ntkc.compile(V_ARCH)
    store, settings = _store(tmp_path, kernel, ds, "ray")
    logs = []
    stats = fill(store, kernel, ds.x_train, ds.x_test, settings, executor="ray", log=logs.append)
    assert stats["tiles_computed"] == 25
    assert any("2 CPUs" in m for m in logs)
    assert_same(store, reference(kernel, ds, settings))


def _tile_workers() -> list[int]:
    """PIDs of Ray worker processes now running an ntkc tile task (Ray titles them ray::<task>)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::ntkc_tiles"):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_run_is_retried_and_the_result_is_exact(cluster, tmp_path):
    ds = load_dataset("digits", n_train=72, n_test=8, seed=5)
    kernel = ntkc.compile(GAP_ARCH)
    store, settings = _store(tmp_path, kernel, ds, "killed")
    killed = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            tiles = list((store.root / "tiles").rglob("*.npy")) if (store.root / "tiles").exists() else []
            busy = _tile_workers()
            if len(tiles) >= 3 and busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    stats = fill(store, kernel, ds.x_train, ds.x_test, settings, executor="ray", retries=3)
    t.join()
    assert killed, "no worker was caught running a tile task"
    assert stats["tiles_computed"] == len(store.all_tiles())
    assert_same(store, reference(kernel, ds, settings))
    assert GramStore.open(store.root).missing() == []
