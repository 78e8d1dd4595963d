"""`CompiledKernel`: a compiled architecture you call on images to get NNGP and NTK matrices."""
from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..plan.lower import Plan, describe
from ..errors import BackendError, InputError

DEFAULT_MEMORY = 2 << 30  # bytes of working memory for pair batches
FUSE_FLOPS = 3e11  # work above which the torch backend compiles its pair program (~a minute eager)


@dataclass
class KernelResult:
    """NNGP and NTK matrices, each [n1, n2]; numpy arrays for numpy inputs, else tensors."""

    nngp: object
    ntk: object
    seconds: float = 0.0
    pairs: int = 0
    backend: str = ""

    def __iter__(self):
        return iter((self.nngp, self.ntk))

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("inf")


class CompiledKernel:
    """The exact infinite-width kernels of one architecture.

    Call it as `k(x1, x2=None, dtype=torch.float32, backend="auto")` with NCHW arrays (numpy or
    torch). With `x2` omitted the symmetric Gram matrix of `x1` is computed, each unordered pair
    once. Working memory is bounded by `memory` bytes whatever the number of images; pass
    `out=(nngp, ntk)` numpy arrays (np.memmap for matrices larger than RAM) to receive the results. `backend` is "torch", "triton" or "auto" (triton on a CUDA device when available, else
    torch).
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.network = plan.network
        self._executors: dict = {}

    def __deepcopy__(self, memo):
        # Immutable once compiled (the executors only cache tables): scikit-learn's clone
        # deep-copies estimator parameters, which need not copy those.
        return self

    def __repr__(self) -> str:
        net = self.network
        return f"CompiledKernel({net.filename!r}, input {net.input}, {len(net.layers)} layers)"

    def describe(self) -> str:
        return describe(self.plan)

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, x1, x2=None, dtype: torch.dtype = torch.float32, backend: str = "auto",
                 device=None, memory: int | None = None,
                 progress: Callable[[int, int], None] | None = None, fuse: bool | None = None,
                 out=None) -> KernelResult:
        as_numpy = isinstance(x1, np.ndarray)
        dtype = _check_dtype(dtype)
        t1 = self._check_images(x1, "x1", dtype, device)
        dev = t1.device
        t2 = None if x2 is None else self._check_images(x2, "x2", dtype, dev)
        if t2 is not None and isinstance(x2, np.ndarray) != as_numpy:
            as_numpy = False
        executor = self.executor(backend, dtype, dev)
        start = time.perf_counter()
        if fuse is None:
            n1 = t1.shape[0]
            fuse = self.fuse_by_default(executor, dev, n1 * (n1 + 1) // 2 if t2 is None else n1 * t2.shape[0])
        nngp, ntk, npairs = gram(executor, t1, t2, memory or DEFAULT_MEMORY, progress, fuse, out)
        seconds = time.perf_counter() - start
        if as_numpy and out is None:
            nngp, ntk = nngp.cpu().numpy(), ntk.cpu().numpy()
        return KernelResult(nngp, ntk, seconds, npairs, executor.name)

    def fuse_by_default(self, executor, device: torch.device, pairs: int) -> bool:
        """torch.compile the pair program when a run of `pairs` pairs is long enough to repay
        compiling it."""
        env = os.environ.get("NTKC_TORCH_COMPILE")
        if env is not None:
            return env == "1"
        if executor.name != "torch" or device.type != "cpu":
            return False
        # Fusion pays where a pair's state is large (all planes, as in GAP networks); a plane-0
        # network (CNTK-V) runs as fast eagerly in large batches.
        if executor.preferred_batch() > 64:
            return False
        return pairs * self.plan.pair.flops() > FUSE_FLOPS

    def executor(self, backend: str, dtype: torch.dtype, device: torch.device):
        backend = resolve_backend(backend, device)
        key = (backend, dtype, str(device))
        if key not in self._executors:
            if backend == "torch":
                from ..backends.torch.backend import TorchExecutor
                ex = TorchExecutor(self.plan, dtype, device)
            else:
                from ..backends.triton.backend import TritonExecutor
                ex = TritonExecutor(self.plan, dtype, device)
            ex.name = backend
            from .augment import augmented  # `flip` and other augmentation statements
            ex = augmented(ex, self.network)
            self._executors[key] = ex
        return self._executors[key]

    def _check_images(self, x, name: str, dtype: torch.dtype, device) -> torch.Tensor:
        shape = self.network.input
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
                raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
            t = torch.from_numpy(np.ascontiguousarray(x))
        elif isinstance(x, torch.Tensor):
            if x.is_complex() or x.dtype == torch.bool:
                raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
            t = x
        else:
            raise InputError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
        want = (shape.channels, shape.height, shape.width)
        if t.dim() != 4:
            hint = ("add a batch axis: x[None]" if t.dim() == 3 and tuple(t.shape) == want else
                    f"pass images as [N, {want[0]}, {want[1]}, {want[2]}] (NCHW)")
            raise InputError(f"{name} must be a 4-D batch [N, C, H, W], got shape {tuple(t.shape)}", hint)
        if tuple(t.shape[1:]) != want:
            hint = f"the `input` line of {self.network.filename} says channels={want[0]} height={want[1]} width={want[2]}"
            if tuple(t.shape[1:]) == (want[1], want[2], want[0]):
                hint += "; these look like NHWC images: use x.transpose(0, 3, 1, 2)"
            raise InputError(f"{name} has images of shape {tuple(t.shape[1:])} (C, H, W), expected {want}", hint)
        if t.shape[0] == 0:
            raise InputError(f"{name} holds no images")
        if device is not None:
            t = t.to(device)
        t = t.to(dtype)
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).nonzero().flatten()[:5].tolist()
            raise InputError(f"{name} contains NaN or inf (images {bad}{'...' if len(bad) == 5 else ''})",
                             "clean or drop those images before computing kernels")
        return t.contiguous()


def _check_dtype(dtype) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64, "fp32": torch.float32, "fp64": torch.float64,
             np.float32: torch.float32, np.float64: torch.float64}
    dtype = table.get(dtype, dtype)
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto", "torch", "triton"):
        raise BackendError(f"unknown backend {backend!r}", "use 'auto', 'torch' or 'triton'")
    if backend == "auto":
        return "triton" if device.type == "cuda" and _triton_available() else "torch"
    if backend == "triton":
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise BackendError(
                "the triton backend needs a CUDA GPU (got tensors on the CPU)",
                "use backend='torch' on a CPU, move the inputs to a GPU, or set TRITON_INTERPRET=1 "
                "(slow; for tests) to run the generated kernels in Triton's interpreter",
            )
        if not _triton_available():
            raise BackendError("the triton backend needs the `triton` package", "pip install triton")
    return backend


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    try:
        from ..backends.triton import backend  # noqa: F401
    except ImportError:
        return False
    return True


def fingerprints(x: torch.Tensor) -> list[bytes]:
    """A hash per image: equal images get equal fingerprints (to find exact self pairs)."""
    flat = x.detach().reshape(x.shape[0], -1).cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


TILE = 1024  # images per tile side: variance maps are held for two tiles at a time


def gram(executor, x1: torch.Tensor, x2: torch.Tensor | None, memory: int,
         progress: Callable[[int, int], None] | None = None, fuse: bool = False, out=None,
         tile: int = TILE):
    """NNGP and NTK [n1, n2], tile by tile, in pair batches that fit `memory` bytes.

    Variance maps are computed once per tile of images and kept in a cache bounded by a quarter
    of `memory`, so working memory does not grow with the number of images; `out=(nngp, ntk)` (numpy arrays, e.g. np.memmap)
    receives the results instead of new tensors. With `x2` None each unordered pair is computed
    once. Each tile is computed by `compute_tile`, the same unit a Gram store saves, so a matrix
    assembled from a store is bitwise the one computed here with the same tile size and batch.
    """
    symmetric = x2 is None
    xb = x1 if symmetric else x2
    n1, n2 = x1.shape[0], xb.shape[0]
    batch = pair_batch(executor, memory)
    dev = x1.device
    if out is None:
        nngp = torch.empty(n1, n2, dtype=x1.dtype, device=dev)
        ntk = torch.empty(n1, n2, dtype=x1.dtype, device=dev)
    else:
        nngp, ntk = out
        if tuple(nngp.shape) != (n1, n2) or tuple(ntk.shape) != (n1, n2):
            raise InputError(f"out arrays must both have shape {(n1, n2)}, got {tuple(nngp.shape)} and {tuple(ntk.shape)}")
    total = n1 * (n1 + 1) // 2 if symmetric else n1 * n2
    done = 0
    cache = MapCache(memory // 4)  # in a symmetric matrix, column tile b's maps are row tile b's
    for a0 in range(0, n1, tile):
        a1 = min(n1, a0 + tile)
        va = cache.get(("rows", a0), lambda: variance_maps(executor, x1[a0:a1], memory))
        for b0 in range(a0 if symmetric else 0, n2, tile):
            b1 = min(n2, b0 + tile)
            diagonal = symmetric and b0 == a0
            side = "rows" if symmetric else "cols"
            vb = cache.get((side, b0), lambda: variance_maps(executor, xb[b0:b1], memory))

            def tick(count: int, base=done) -> None:
                if progress is not None:
                    progress(base + count, total)

            s, t = compute_tile(executor, x1[a0:a1], xb[b0:b1], va, vb, diagonal, batch, fuse, tick)
            done += tile_pairs(a1 - a0, b1 - b0, diagonal)
            _put(nngp, a0, b0, s)
            _put(ntk, a0, b0, t)
            if symmetric and not diagonal:
                _put(nngp, b0, a0, s.T)
                _put(ntk, b0, a0, t.T)
    return nngp, ntk, total


def tile_pairs(rows: int, cols: int, diagonal: bool) -> int:
    """Pairs a tile computes: all of them, or the upper triangle of a diagonal tile."""
    return rows * (rows + 1) // 2 if diagonal else rows * cols


def compute_tile(executor, xa: torch.Tensor, xb: torch.Tensor, va: list[torch.Tensor], vb: list[torch.Tensor],
                 diagonal: bool, batch: int, fuse: bool = False,
                 progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """NNGP and NTK of one tile, [len(xa), len(xb)], as tensors on the images' device.

    `va`, `vb` are the variance maps of `xa`, `xb`. A `diagonal` tile (xa is xb, in a symmetric
    Gram matrix) computes its upper triangle and mirrors it. The pairs go to the executor in
    batches of `batch`, in a fixed order, so the same tile always gives the same bits.
    """
    ra, rb = xa.shape[0], xb.shape[0]
    dev = xa.device
    fa = fingerprints(xa)
    fb = fa if diagonal else fingerprints(xb)
    if diagonal:
        ii, jj = np.triu_indices(ra)
    else:
        ii, jj = (g.reshape(-1) for g in np.meshgrid(np.arange(ra), np.arange(rb), indexing="ij"))
    s_tile = torch.zeros(ra, rb, dtype=xa.dtype, device=dev)
    t_tile = torch.zeros(ra, rb, dtype=xa.dtype, device=dev)
    extra = {"fused": True} if fuse and executor.name == "torch" else {}
    for start in range(0, len(ii), batch):
        bi, bj = ii[start:start + batch], jj[start:start + batch]
        count = len(bi)
        if extra and count < batch:  # a compiled program keeps one shape: pad, then drop
            bi = np.concatenate([bi, np.repeat(bi[:1], batch - count)])
            bj = np.concatenate([bj, np.repeat(bj[:1], batch - count)])
        i, j = torch.as_tensor(bi, device=dev), torch.as_tensor(bj, device=dev)
        same = torch.as_tensor([fa[p] == fb[q] for p, q in zip(bi, bj)], device=dev)
        s, t = executor.pairs(xa.index_select(0, i), xb.index_select(0, j),
                              [m.index_select(0, i) for m in va], [m.index_select(0, j) for m in vb],
                              same, **extra)
        r, c = i[:count], j[:count]
        s_tile[r, c] = s[:count]
        t_tile[r, c] = t[:count]
        if progress is not None:
            progress(start + count)
    if diagonal:
        lower = torch.tril_indices(ra, ra, -1, device=dev)
        s_tile[lower[0], lower[1]] = s_tile[lower[1], lower[0]]
        t_tile[lower[0], lower[1]] = t_tile[lower[1], lower[0]]
    return s_tile, t_tile


def _put(dest, r0: int, c0: int, block: torch.Tensor) -> None:
    r1, c1 = r0 + block.shape[0], c0 + block.shape[1]
    if isinstance(dest, torch.Tensor):
        dest[r0:r1, c0:c1] = block
    else:
        dest[r0:r1, c0:c1] = block.detach().cpu().numpy()


def pair_batch(executor, memory: int) -> int:
    """Pairs per batch: what the backend prefers, within the memory budget."""
    batch = max(1, int(memory // max(1, executor.bytes_per_pair())))
    preferred = getattr(executor, "preferred_batch", None)
    return min(batch, preferred()) if preferred is not None else batch


class MapCache:
    """Variance maps per key (e.g. a tile index), least recently used out first, within a byte
    budget (the two newest entries are always kept: a tile needs its row's and column's maps)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        maps = make()
        self.items[key] = maps
        while len(self.items) > 2 and sum(_nbytes(m) for m in self.items.values()) > self.budget:
            self.items.popitem(last=False)
        return maps


def _nbytes(maps: list[torch.Tensor]) -> int:
    return sum(m.numel() * m.element_size() for m in maps)


def variance_maps(executor, x: torch.Tensor, memory: int) -> list[torch.Tensor]:
    """The variance maps of images `x`, computed in batches that fit `memory` bytes."""
    batch = max(1, int(memory // max(1, executor.bytes_per_pair())))
    parts = [executor.variance_maps(x[i:i + batch]) for i in range(0, x.shape[0], batch)]
    if not parts or not parts[0]:
        return []
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]
