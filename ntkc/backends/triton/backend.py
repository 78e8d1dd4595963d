"""The Triton backend: runs a Plan's pair program as the generated kernels of `module.build`.

Per batch of pairs the kernels run in order; each reads what the one before stored (planes for a
gathering stage, partial sums before `gap`) and the last one writes NNGP and NTK per pair. The
image program (variance maps, O(N) work against the pairs' O(N^2)) runs through the torch
backend on the same device.

What a launch needs:
- v2 kernels (circulant, epilogue) read the images of a tile's rows and columns per image, NCHW
  in the compute dtype with any strides, the variance maps packed per image with their rows
  doubled (`pack`: [N, var_size]), the pair indices ia, ib (int32) and the self-pair flags
  (int8). A circulant kernel's grid is ceil(P / BLOCK_P) x tiles_y x tiles_x / BLOCK_X programs
  of BLOCK_P x BLOCK_X tiles, one warp per tile (`schedule.circulant_launch`), no scratch; its
  partial sums, when it feeds a gap, are [P, n_parts] with n_parts = tiles_y x tiles_x / BLOCK_X.
  An epilogue's grid is ceil(P / BLOCK_P) (`schedule.epilogue_launch`).
- legacy (v1) kernels read per-pair copies of the images and of the maps in the v1 layout,
  gathered here only when the module has such a kernel, and a per-program scratch buffer.
- floating-point contraction is stated at every launch (`schedule.FP_FUSION`); the kernels are
  exact on self pairs under it (see `fastmath.fms2`).

CUDA tensors run compiled kernels. CPU tensors run in Triton's interpreter, which must be chosen
before triton is first imported (`TRITON_INTERPRET=1` in the environment of the process).
"""
from __future__ import annotations

import torch

from . import codecache, schedule
from ...errors import BackendError
from ...plan.lower import Plan
from ...util.precision import precision_name
from ..torch import TorchBackend
from .coverage import Kind
from .kernels import Generated, bind
from .module import build

_MAX_INDEX = 2 ** 31 - 1  # items, pairs and partial sums are indexed with int32 inside the kernels


class TritonBackend:
    """Runs a Plan's pair program with generated Triton kernels on one device and dtype.

    `launches` (one per kernel: `schedule.CirculantLaunch` for a circulant kernel,
    `schedule.Launch` for a legacy one, None for an epilogue, which follows its input) may be
    replaced to run another schedule; results do not depend on it beyond summation order.
    """

    name = "triton"

    def __init__(self, plan: Plan, dtype: torch.dtype, device):
        self.plan = plan
        self.dtype = dtype
        self.device = torch.device(device)
        interpret = codecache.interpreting()
        if self.device.type == "cuda" and interpret:
            raise BackendError("triton was imported in interpreter mode (TRITON_INTERPRET=1) but the tensors are on a GPU",
                               "unset TRITON_INTERPRET to run the compiled kernels, or pass CPU tensors")
        if self.device.type != "cuda" and not interpret:
            raise BackendError(
                "the triton backend runs CPU tensors only in Triton's interpreter, and triton was imported without it",
                "set TRITON_INTERPRET=1 in the environment before the process imports triton (it cannot be "
                "switched on afterwards), or use backend='torch'",
            )
        self.interpret = interpret
        precision = precision_name(dtype)
        self.generated: Generated = build(plan)
        self.module = codecache.load(self.generated.source, self.generated.module_name)
        self.functions = [getattr(self.module, k.name) for k in self.generated.kernels]
        programs = schedule.max_programs(self.device)
        self.launches = []
        for k in self.generated.kernels:
            if k.kind is Kind.CIRCULANT:
                self.launches.append(schedule.circulant_launch(k.plan.tiles_x.count, k.plan.width, precision, interpret))
            elif k.kind is Kind.LEGACY:
                self.launches.append(schedule.launch(k.legacy.positions, precision, programs, interpret,
                                                     k.legacy.reduce_only))
            else:
                self.launches.append(None)
        self._torch = TorchBackend(plan, dtype, self.device)
        self._buffers: dict = {}

    @property
    def source(self) -> str:
        return self.generated.source

    # -- the Backend interface -------------------------------------------------------------------

    def variance_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-image variance maps [N, h, w] at the input of every activation (torch backend)."""
        return self._torch.variance_maps(x)

    def pairs(self, x_rows, x_cols, maps_rows, maps_cols, i, j, same, fused: bool = False):
        """NNGP and NTK [B] of the pairs (x_rows[i[b]], x_cols[j[b]]) (see `base.Backend.pairs`).
        (`fused` asks the torch backend for torch.compile; the kernels here are fused anyway.)"""
        dev, dt = self.device, self.dtype
        n = int(i.shape[0])
        nngp = torch.empty(n, dtype=dt, device=dev)
        ntk = torch.empty(n, dtype=dt, device=dev)
        if n == 0:
            return nngp, ntk
        xr = x_rows.to(device=dev, dtype=dt)
        xc = x_cols.to(device=dev, dtype=dt)
        ia = i.to(device=dev, dtype=torch.int32).contiguous()
        ib = j.to(device=dev, dtype=torch.int32).contiguous()
        flags = (torch.zeros(n, dtype=torch.int8, device=dev) if same is None
                 else same.to(device=dev, dtype=torch.int8).contiguous())
        images = (xr, xc, self.pack(maps_rows, xr.shape[0]), self.pack(maps_cols, xc.shape[0]))
        legacy = None
        if any(k.kind is Kind.LEGACY for k in self.generated.kernels):
            pr = self.pack_legacy(maps_rows, xr.shape[0])
            pc = self.pack_legacy(maps_cols, xc.shape[0])
            legacy = (xr, xc, pr, pc)
        chunk = self._chunk()
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            self._run(images, legacy, ia[a:b], ib[a:b], flags[a:b], nngp[a:b], ntk[a:b])
        return nngp, ntk

    def fusion_pays(self, pairs: int) -> bool:
        """The generated kernels are fused already: there is no other form to compile."""
        return False

    def preferred_batch(self) -> int:
        """As many pairs as memory allows: one launch per kernel per batch."""
        return 1 << 30

    def bytes_per_pair(self) -> int:
        """A generous estimate of the device memory one pair needs in `pairs`: indices, flags and
        outputs, the buffers between kernels, and per-pair copies for legacy kernels."""
        item = torch.tensor([], dtype=self.dtype).element_size()
        total = 16 + 4 * item
        for k in self.generated.kernels:
            if k.kind is Kind.CIRCULANT and k.sink == "partials":
                total += 2 * k.plan.tiles_per_pair * item
            elif k.kind is Kind.LEGACY:
                total += 2 * (k.legacy.in_per_pair + k.legacy.out_per_pair) * item
        if any(k.kind is Kind.LEGACY for k in self.generated.kernels):
            shape = self.plan.network.input
            total += (4 * (shape.channels or 1) * shape.height * shape.width + 4 * self.generated.legacy_var_size) * item
        return total + 1

    # -- inputs -----------------------------------------------------------------------------------

    def pack(self, maps: list[torch.Tensor], count: int) -> torch.Tensor:
        """Variance maps [N, h, w] per activation -> [N, var_size] per image, rows doubled per map."""
        if not maps:
            return torch.zeros(count, 2, dtype=self.dtype, device=self.device)
        rows = [torch.cat([m, m], dim=1).reshape(count, -1)
                for m in (m.to(device=self.device, dtype=self.dtype) for m in maps)]
        packed = torch.cat(rows, dim=1).contiguous()
        assert packed.shape[1] == self.generated.var_size, "variance maps do not match the plan"
        return packed

    def pack_legacy(self, maps: list[torch.Tensor], count: int) -> torch.Tensor:
        """Variance maps per activation -> [N, legacy_var_size], the v1 layout (each map once)."""
        if not maps:
            return torch.zeros(count, 1, dtype=self.dtype, device=self.device)
        rows = [m.to(device=self.device, dtype=self.dtype).reshape(count, -1) for m in maps]
        packed = torch.cat(rows, dim=1).contiguous()
        assert packed.shape[1] == self.generated.legacy_var_size, "variance maps do not match the plan"
        return packed

    def seam_table(self, info) -> torch.Tensor:
        """The vertical seam factors of a circulant kernel (`records.SeamTable`), made once."""
        key = ("seam", info.index)
        if key not in self._buffers:
            values = info.seam.values()
            self._buffers[key] = torch.tensor(values, dtype=self.dtype, device=self.device)
        return self._buffers[key]

    def _chunk(self) -> int:
        """The most pairs per launch that keep every index inside a kernel within int32."""
        most = 1
        for k, launch in zip(self.generated.kernels, self.launches):
            if k.kind is Kind.CIRCULANT:
                most = max(most, k.plan.tiles_per_pair)
            elif k.kind is Kind.LEGACY:
                most = max(most, k.legacy.planes, k.legacy.out_per_pair, k.legacy.in_per_pair)
        return max(1, _MAX_INDEX // most)

    # -- launches ---------------------------------------------------------------------------------

    def _launch(self, fn, grid, args, **meta) -> None:
        meta["enable_fp_fusion"] = schedule.FP_FUSION
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                fn[grid](*args, **meta)
        else:
            fn[grid](*args, **meta)

    def _run(self, images, legacy, ia, ib, flags, nngp, ntk) -> None:
        n = ia.shape[0]
        copies = None
        prev: dict = {}
        for info, fn, launch in zip(self.generated.kernels, self.functions, self.launches):
            if info.kind is Kind.LEGACY:
                if copies is None:
                    xr, xc, pr, pc = legacy
                    ia64, ib64 = ia.long(), ib.long()
                    copies = (xr.index_select(0, ia64).contiguous(), xc.index_select(0, ib64).contiguous(),
                              pr.index_select(0, ia64).contiguous(), pc.index_select(0, ib64).contiguous())
                prev = self._legacy(info, fn, launch, copies, flags, nngp, ntk, prev)
                continue
            xr, xc, pr, pc = images
            tensors = {"xa": xr, "xb": xc, "va": pr, "vb": pc, "ia": ia, "ib": ib, "same": flags,
                       "nngp": nngp, "ntk": ntk}
            if info.kind is Kind.CIRCULANT:
                prev = self._circulant(info, fn, launch, tensors, n)
            else:
                self._epilogue(info, fn, tensors, prev, n)
                prev = {}

    def _circulant(self, info, fn, launch, tensors, n) -> dict:
        p = info.plan
        n_parts = p.tiles_y.count * (p.tiles_x.count // launch.block_x)
        grid = (-(-n // launch.block_p) * n_parts,)
        out = {"n_parts": n_parts}
        if info.seam is not None:
            tensors["seam"] = self.seam_table(info)
        for name in ("s", "t"):
            if f"{name}_out_ptr" in info.args:
                out[name] = tensors[f"{name}_out"] = torch.empty(n * n_parts, dtype=self.dtype, device=self.device)
        args = bind(info.args, tensors, {"n_pairs": n})
        self._launch(fn, grid, args, BLOCK_P=launch.block_p, BLOCK_X=launch.block_x, num_warps=launch.num_warps)
        return out

    def _epilogue(self, info, fn, tensors, prev, n) -> None:
        n_parts = prev["n_parts"]
        bp, br, warps = schedule.epilogue_launch(n_parts, self.interpret)
        tensors["s_in"] = prev["s"]
        if "t_in_ptr" in info.args:
            tensors["t_in"] = prev["t"]
        args = bind(info.args, tensors, {"n_pairs": n})
        self._launch(fn, (-(-n // bp),), args, N_PARTS=n_parts, BLOCK_P=bp, BLOCK_R=br, num_warps=warps)

    def _legacy(self, info, fn, launch, copies, flags, nngp, ntk, prev) -> dict:
        spec = info.legacy
        xa, xb, pa, pb = copies
        n = xa.shape[0]
        items = n * spec.planes
        blocks = -(-items // launch.block_items)
        grid = (max(1, min(blocks, launch.max_programs)),)
        iters = -(-blocks // grid[0])
        tensors = {"xa": xa, "xb": xb, "same": flags, "va": pa, "vb": pb, "nngp": nngp, "ntk": ntk}
        if spec.scratch_row:
            tensors["scratch"] = self._scratch(spec.index, grid[0] * 4 * launch.block_items * spec.scratch_row)
        if "s_in_ptr" in spec.args:
            tensors["s_in"] = prev["s"]
        if "t_in_ptr" in spec.args:
            tensors["t_in"] = prev["t"]
        out = {"n_parts": spec.out_per_pair}
        for name in ("s", "t"):
            if f"{name}_out_ptr" in spec.args:
                out[name] = tensors[f"{name}_out"] = torch.empty(n * spec.out_per_pair, dtype=self.dtype,
                                                                 device=self.device)
        args = bind(spec.args, tensors, {"n_pairs": n, "n_iters": iters})
        self._launch(fn, grid, args, BLOCK_I=launch.block_items, num_warps=launch.num_warps)
        return out

    def _scratch(self, index: int, numel: int) -> torch.Tensor:
        buf = self._buffers.get(("scratch", index))
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, 1), dtype=self.dtype, device=self.device)
            self._buffers[("scratch", index)] = buf
        return buf
