"""`NumbaBackend`: a Plan's programs as generated numba kernels on the CPU (a `Backend`).

    b = NumbaBackend(plan, torch.float32, torch.device("cpu"))
    maps = b.variance_maps(x)                        # [N, h, w] per activation
    nngp, ntk = b.pairs(x, x, maps, maps, i, j, same)  # [B] each: pairs (x[i[b]], x[j[b]])

Every kernel is compiled (or loaded from the disk cache) when the backend is made, so a failure
shows there and not in the middle of a Gram matrix; `create` (the package's factory) turns such
a failure into the torch backend and one warning line.

Threads: `ntkc.util.threads.thread_count()`, read for every batch. A kernel's items are cut into
chunks (a fused kernel's as contiguous runs, so threads never share a cache line of outputs; a
mixing kernel's pairs go to chunk i mod n); the chunks run on a pool of Python threads, each a
compiled function that releases the GIL (`nogil`), so no numba threading layer (and no OpenMP
next to torch's) is involved and compiles stay short. Each item is computed by one thread from
its inputs alone, and partial sums are added in a fixed order, so results are bitwise the same
for any thread count or chunking.
"""
from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ...errors import BackendError
from ...plan.lower import Plan
from ...util.threads import thread_count
from . import codecache
from .codegen import build
from .kernels import MixKernel, ProgramKernels, Sink, Source, VarLayout
from .mix import run_mix

STATE_BYTES = 256 << 20   # stored states of one pair batch: about this much at most
MAX_BATCH = 2048          # pairs per batch when little is stored ...
CHEAP_BATCH = 1 << 15     # ... and up to this many when pairs are cheap:
BATCH_FLOPS = 2e8         # a batch of about this much arithmetic (a tenth of a second or so)
CHUNKS_PER_THREAD = 4     # fixed chunks of items per thread (balance; results do not depend on it)

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class ChunkPool:
    """Runs fn(chunk, nchunks) for every chunk of a kernel's items on `threads` threads."""

    def __init__(self):
        self.threads = 0
        self._pool: ThreadPoolExecutor | None = None

    def run(self, fn, items: int, threads: int) -> None:
        nchunks = max(1, min(items, threads * CHUNKS_PER_THREAD))
        if threads == 1 or nchunks == 1:
            for c in range(nchunks):
                fn(c, nchunks)
            return
        if threads != self.threads:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ntkc-numba")
            self.threads = threads
        for f in [self._pool.submit(fn, c, nchunks) for c in range(nchunks)]:
            f.result()


class NumbaBackend:
    """Runs a Plan's image and pair programs with generated numba kernels on the CPU."""

    name = "numba"

    def __init__(self, plan: Plan, dtype: torch.dtype, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if self.device.type != "cpu":
            raise BackendError(f"the numba backend runs on the CPU (got {self.device})",
                               "use backend='triton' or 'torch' for GPU tensors")
        if dtype not in _DTYPES:
            raise BackendError(f"the numba backend computes in float32 or float64, not {dtype}")
        self.plan = plan
        self.dtype = dtype
        self.np_dtype = np.dtype(_DTYPES[dtype])
        self.threads: int | None = None  # None: thread_count() for every batch
        self.pool = ChunkPool()
        start = time.perf_counter()
        self.generated = build(plan, _DTYPES[dtype])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's performance hints are not the user's business
            self.module = codecache.load(self.generated.source, f"{self.generated.stem}_{_DTYPES[dtype]}")
            self._warm()
        self.compile_seconds = time.perf_counter() - start

    # -- the Backend interface ----------------------------------------------------------------

    def variance_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-image variance maps [N, h, w] at the input of every activation, in order."""
        pk = self.generated.image
        if not pk.kernels:
            return []
        xs = self._np(x)
        n = xs.shape[0]
        var = np.zeros((n, pk.var_a.size), self.np_dtype)
        idx = np.arange(n, dtype=np.int64)
        self._run(pk, n, idx, idx, np.ones(n, np.uint8), xs, _doubled(xs), var, var, image=True)
        maps = []
        for k, layer in enumerate(self.plan.activations):
            s = self.plan.network.layers[layer].in_shape
            off = pk.var_a.offsets[k]
            m = var[:, off:off + s.height * 2 * s.width].reshape(n, s.height, 2 * s.width)[:, :, :s.width]
            maps.append(torch.from_numpy(np.ascontiguousarray(m)))
        return maps

    def pairs(self, x_rows, x_cols, maps_rows, maps_cols, i, j, same, fused: bool = False):
        """NNGP and NTK [B] of the pairs (x_rows[i[b]], x_cols[j[b]]) (`base.Backend.pairs`).

        The images and maps are converted once per image, never copied per pair: the fused
        kernels read image ia[b] and ib[b] by index (`fused` is ignored: this is the fused form)."""
        pk = self.generated.pair
        a, b = self._np(x_rows), self._np(x_cols)
        ia, ib = _indices(i), _indices(j)
        n = len(ia)
        s = _indices(same).astype(np.uint8).reshape(n)
        nngp, ntk = self._run(pk, n, ia, ib, s, a, _doubled(b), self._pack(maps_rows, a.shape[0], pk.var_a),
                              self._pack(maps_cols, b.shape[0], pk.var_b))
        return torch.from_numpy(nngp), torch.from_numpy(ntk)

    def bytes_per_pair(self) -> int:
        """A generous estimate of the memory one pair needs in `pairs`."""
        return 2 * self._stored_bytes(self.generated.pair) + 4 * self.generated.pair.var_b.size * self.np_dtype.itemsize + 4096

    def preferred_batch(self) -> int:
        """MAX_BATCH pairs, more for cheap pairs (a batch's fixed costs, the conversions and the
        thread pool, would dominate 2,048 pairs of an 8x8 CNTK-V), fewer when states are stored."""
        stored = self._stored_bytes(self.generated.pair)
        cheap = int(BATCH_FLOPS // max(1.0, float(self.plan.pair.flops())))
        batch = min(CHEAP_BATCH, max(MAX_BATCH, cheap))
        return int(max(1, min(batch, STATE_BYTES // max(1, stored))))

    def fusion_pays(self, pairs: int) -> bool:
        """Never: the kernels are the fused form (and need no fixed batch shape)."""
        return False

    # -- running a program ----------------------------------------------------------------------

    def _stored_bytes(self, pk: ProgramKernels) -> int:
        item = self.np_dtype.itemsize
        most = 0
        for k in pk.kernels:
            if isinstance(k, MixKernel):
                for st in (k.in_store, k.out_store):
                    most = max(most, 2 * st[0].size * st[1].size * item)
            elif k.sink == Sink.PARTIALS:
                most = max(most, 2 * len(k.tiles) * item)
        return most

    def _np(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().to(self.dtype).contiguous().numpy()
        return np.ascontiguousarray(x, dtype=self.np_dtype)

    def _pack(self, maps, n: int, layout: VarLayout) -> np.ndarray:
        """Variance maps [n, h, w] per activation as one row per image, in `layout` (rows once,
        or twice: v | v)."""
        if not maps:
            return np.zeros((n, 1), self.np_dtype)
        flat = [self._np(m).reshape(n, -1) for m in maps]
        if layout.factor == 1:
            return np.ascontiguousarray(np.concatenate(flat, axis=1))
        out = np.empty((n, layout.size), self.np_dtype)
        for k, m in enumerate(maps):
            h, w = m.shape[1], m.shape[2]
            off = layout.offsets[k]
            view = out[:, off:off + h * 2 * w].reshape(n, h, 2 * w)
            view[:, :, :w] = flat[k].reshape(n, h, w)
            view[:, :, w:] = flat[k].reshape(n, h, w)
        return out

    def _run(self, pk: ProgramKernels, n, ia, ib, same, xa, xb2, vara, varb, image: bool = False):
        dt = self.np_dtype
        threads = thread_count(self.threads)
        d1, d2, d3 = np.zeros(1, dt), np.zeros((1, 1), dt), np.zeros((1, 1, 1), dt)
        i1, i2 = np.zeros(1, np.int64), np.zeros((1, 1), np.int64)
        s_st = t_st = None        # stored states of the last kernel
        ps = pt = None            # partial sums of the last kernel
        nngp, ntk = np.zeros(n, dt), np.zeros(n, dt)
        for k in pk.kernels:
            if isinstance(k, MixKernel):
                s_st, t_st = run_mix(k, s_st, t_st, dt, lambda fn, items: self.pool.run(fn, items, threads))
                continue
            tab = k.tables
            if "PWY" in tab and "PWY_" + dt.name not in tab:
                tab["PWY_" + dt.name] = tab["PWY"].astype(dt)
                tab["PWX_" + dt.name] = tab["PWX"].astype(dt)
            out_s = out_t = d3
            out_ps = out_pt = d1
            if k.sink == Sink.PLANES:
                sy, sx = k.out_store
                out_s = np.empty((n, sy.size, sx.size), dt)
                out_t = np.empty((n, sy.size, sx.size), dt) if k.t_out else d3
            elif k.sink == Sink.PARTIALS:
                out_ps = np.empty(n * len(k.tiles), dt)
                out_pt = np.empty(n * len(k.tiles), dt) if k.t_out else d1
            args = dict(ia=ia, ib=ib, same=same, XA=xa.reshape(-1), XB2=xb2.reshape(-1), VARA=vara.reshape(-1),
                        VARB=varb.reshape(-1),
                        IN_S=s_st if (k.source == Source.PLANES) else d3,
                        IN_T=t_st if (k.source == Source.PLANES and k.t_in and t_st is not None) else d3,
                        IN_PS=ps if k.source == Source.PARTIALS else d1,
                        IN_PT=pt if (k.source == Source.PARTIALS and k.t_in) else d1,
                        OUT_S=out_s, OUT_T=out_t, OUT_PS=out_ps, OUT_PT=out_pt, NNGP=nngp, NTK=ntk,
                        SROWB=tab.get("SROWB", i1), SCOL=tab.get("SCOL", i2), DROWB=tab.get("DROWB", i1),
                        DCOL=tab.get("DCOL", i2), PWY=tab.get("PWY_" + dt.name, d2), PWX=tab.get("PWX_" + dt.name, d2))
            fn = getattr(self.module, k.name)
            table = k.tiles.table()
            phases = [(table, 0)]
            if image and (k.records or k.record_end is not None):
                # phase 1: plane (0, 0) of every image records the maps; phase 2: the other planes read them
                assert table[0, 0] == 0 and table[0, 1] == 0
                phases = [(table[:1], 1), (table[1:], 0)]
            for tiles, record in phases:
                items = n * tiles.shape[0]
                if items == 0:
                    continue
                tiles = np.ascontiguousarray(tiles)
                call = tuple(args[a] if a != "record" else record for a in k.args[5:])
                self.pool.run(lambda c, nc: fn(c, nc, n, tiles, k.width, *call), items, threads)
            if k.sink == Sink.PLANES:
                s_st, t_st = out_s, (out_t if k.t_out else None)
            elif k.sink == Sink.PARTIALS:
                ps, pt = out_ps, (out_pt if k.t_out else None)
        return nngp, ntk

    def _warm(self) -> None:
        """Compile (or load) every kernel now, on one tiny input, so a failure shows here."""
        net = self.plan.network
        c, h, w = net.input.channels, net.input.height, net.input.width
        x = torch.from_numpy(np.zeros((1, c, h, w), self.np_dtype) + 0.5)
        maps = self.variance_maps(x)
        zero = torch.zeros(1, dtype=torch.int64)
        self.pairs(x, x, maps, maps, zero, zero, torch.ones(1, dtype=torch.bool))


def _doubled(x: np.ndarray) -> np.ndarray:
    """Images with every row twice (x | x): the b-side of a packed row is one slice of it."""
    return np.ascontiguousarray(np.concatenate([x, x], axis=-1))


def _indices(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(v).reshape(-1).astype(np.int64, copy=False))
