"""Ray as the distributed engine of a Gram store: each unit of tiles is a Ray task.

A task compiles the architecture from its source (once per worker process), computes the unit's
tiles that are not yet stored and writes them to the store folder itself, so the store must be on
a file system every node sees (NFS, a cluster file system, or one machine). A task that dies with
its worker is retried by Ray (`retries` times); its tiles already written are skipped on retry.
With the triton backend each task asks for one GPU; with the torch backend,
one CPU. The driver resolves the backend, so run it where the workers' kind of device is (a GPU
node for triton). Ray is an optional dependency: `pip install 'ntkc[ray]'`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from .gramstore import BLOCKS, GramStore, StoreError
from .work import run_unit, units

_KERNELS: dict = {}  # per worker process: (source, file) -> CompiledKernel


def _import_ray(address: str | None = None):
    if address and "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules:
        # Ray 2.59+ turns on token authentication for a cluster started by `ray start --head`
        # when a token file exists, but a client joining it with ray.init(address=...) sends
        # the token only in RAY_AUTH_MODE=token (ray-project/ray#64755), which Ray reads when it
        # is imported.
        token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        if token.exists():
            os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise StoreError("--executor ray needs Ray, which is not installed",
                         hint="pip install 'ntkc[ray]' (or pip install ray), or use the default local executor") from None
    return ray


def _work(root: str, source: str, filename: str, rows, cols, unit, settings, same_images: bool) -> int:
    """The body of one Ray task (runs in a worker process)."""
    import numpy as np
    import torch

    from ..engine.kernel import compile_kernel

    key = (source, filename)
    if key not in _KERNELS:
        _KERNELS[key] = compile_kernel(source, filename)
    kernel = _KERNELS[key]
    device = torch.device("cuda") if settings.backend == "triton" else torch.device("cpu")
    store = GramStore.open(root)
    backend = kernel.backend(settings.backend, settings.torch_dtype, device)
    r_side, c_side, _ = BLOCKS[unit[0].block]
    images = {r_side: torch.as_tensor(np.asarray(rows)).to(device)}
    images[c_side] = images[r_side] if same_images else torch.as_tensor(np.asarray(cols)).to(device)
    return run_unit(store, backend, images, unit, settings)


def fill_ray(store: GramStore, kernel, images: dict, todo: list, settings, done0: int, total: int,
             progress: Callable[[int, int], None] | None, address: str | None, retries: int,
             log: Callable[[str], None]) -> None:
    ray = _import_ray(address)

    started_here = False
    if not ray.is_initialized():
        _connect(ray, address)
        started_here = True
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = settings.backend == "triton"
        if use_gpu and gpus == 0:
            raise StoreError("the triton backend needs GPUs, and this Ray cluster has none",
                             hint="use --backend torch for CPU workers")
        remote = ray.remote(_work).options(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=retries,
                                           retry_exceptions=False, name="ntkc_tiles")
        log(f"ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, {gpus:.0f} GPUs; "
            f"{len(todo)} tiles as tasks on {'GPUs' if use_gpu else 'CPUs'}")
        refs = {side: ray.put(x.cpu().numpy()) for side, x in images.items()}
        pending = {}
        for unit in units(todo):
            r_side, c_side, _ = BLOCKS[unit[0].block]
            ref = remote.remote(str(store.root), kernel.arch.source, kernel.arch.filename,
                                refs[r_side], refs[c_side], unit, settings, r_side == c_side)
            pending[ref] = unit
        done = done0
        if progress is not None:
            progress(done, total)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as err:  # noqa: BLE001
                    for other in pending:
                        ray.cancel(other)
                    raise StoreError(f"a Ray task computing {unit[0]} failed after {retries} retries: "
                                     f"{_first_line(err)}",
                                     hint="the tiles already stored are safe; fix the cause and rerun the same command") from None
                done += sum(t.pairs for t in unit)
                if progress is not None:
                    progress(done, total)
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, address: str | None) -> None:
    """ray.init, for a local cluster or an existing one at `address`."""
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", log_to_driver=False, include_dashboard=False)
    except Exception as err:  # noqa: BLE001  (Ray raises several kinds for a bad address)
        raise StoreError(f"cannot connect to Ray{' at ' + address if address else ''}: {_first_line(err)}",
                         hint="start a cluster with `ray start --head` and pass the address it prints (or `auto` "
                              "on a node of the cluster), or omit --address to start a local one; a cluster with "
                              "token authentication needs RAY_AUTH_MODE=token and its token") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
