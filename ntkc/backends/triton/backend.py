"""The Triton backend: runs a Plan's pair program as the generated kernels of `codegen`.

Per batch of pairs, the kernels run in order; each reads what the one before stored (the planes
a pooling layer gathers, or one partial sum per item before `gap`) and the last one writes NNGP
and NTK per pair. The image program (variance maps, O(N) work against the pairs' O(N^2)) runs
through the torch backend on the same device; its maps are packed into one [B, sum(h w)] row per
side for the kernels.

CUDA tensors run compiled kernels. CPU tensors run in Triton's interpreter, which must be chosen
before triton is first imported (`TRITON_INTERPRET=1` in the environment of the process).
"""
from __future__ import annotations

import torch

from . import schedule
from ...plan.lower import Plan
from .codegen import Generated, build
from .kernels import bind
from ...errors import BackendError
from ...util.precision import precision_name
from . import codecache
from ..base import gather_pairs
from ..torch import TorchBackend

_MAX_ITEMS = 2 ** 31 - 1  # item indices are int32 inside the kernels


class TritonBackend:
    """Runs a Plan's pair program with generated Triton kernels on one device and dtype.

    `launches` (one `schedule.Launch` per kernel) may be replaced to run another schedule;
    results do not depend on it beyond summation order.
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
        precision = precision_name(dtype)
        self.generated: Generated = build(plan)
        self.module = codecache.load(self.generated.source, self.generated.module_name)
        self.functions = [getattr(self.module, k.name) for k in self.generated.kernels]
        programs = schedule.max_programs(self.device)
        self.launches = [schedule.launch(k.positions, precision, programs, interpret, k.reduce_only)
                         for k in self.generated.kernels]
        self._torch = TorchBackend(plan, dtype, self.device)
        self._scratch: dict[int, torch.Tensor] = {}

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
        xa, xb, va, vb = gather_pairs(x_rows, x_cols, maps_rows, maps_cols, i, j)
        n = xa.shape[0]
        nngp = torch.empty(n, dtype=self.dtype, device=self.device)
        ntk = torch.empty(n, dtype=self.dtype, device=self.device)
        if n == 0:
            return nngp, ntk
        xa = xa.to(device=self.device, dtype=self.dtype).contiguous()
        xb = xb.to(device=self.device, dtype=self.dtype).contiguous()
        pa, pb = self._pack(va, n), self._pack(vb, n)
        if same is None:
            flags = torch.zeros(n, dtype=torch.int8, device=self.device)
        else:
            flags = same.to(device=self.device, dtype=torch.int8).contiguous()
        most = max(k.planes for k in self.generated.kernels)
        chunk = max(1, _MAX_ITEMS // most)
        for i in range(0, n, chunk):
            j = min(n, i + chunk)
            self._run(xa[i:j], xb[i:j], pa[i:j], pb[i:j], flags[i:j], nngp[i:j], ntk[i:j])
        return nngp, ntk

    def fusion_pays(self, pairs: int) -> bool:
        """The generated kernels are fused already: there is no other form to compile."""
        return False

    def preferred_batch(self) -> int:
        """As many pairs as memory allows: one launch per kernel per batch."""
        return 1 << 30

    def bytes_per_pair(self) -> int:
        """A generous estimate of the device memory one pair needs in `pairs` (with gram's copies)."""
        item = torch.tensor([], dtype=self.dtype).element_size()
        shape = self.plan.network.input
        images = 2 * (shape.channels or 1) * shape.height * shape.width
        maps = 4 * self.generated.var_size  # gram's gathered lists and the packed rows
        boundary = max([2 * (k.in_per_pair + k.out_per_pair) for k in self.generated.kernels] + [0])
        return (2 * images + maps + boundary + 4) * item + 1

    # -- pieces ---------------------------------------------------------------------------------

    def _pack(self, maps: list[torch.Tensor], n: int) -> torch.Tensor:
        if not maps:
            return torch.zeros(n, 1, dtype=self.dtype, device=self.device)
        rows = [m.to(device=self.device, dtype=self.dtype).reshape(n, -1) for m in maps]
        packed = torch.cat(rows, dim=1).contiguous()
        assert packed.shape[1] == self.generated.var_size, "variance maps do not match the plan"
        return packed

    def _scratch_for(self, index: int, numel: int) -> torch.Tensor:
        buf = self._scratch.get(index)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, 1), dtype=self.dtype, device=self.device)
            self._scratch[index] = buf
        return buf

    def _run(self, xa, xb, pa, pb, flags, nngp, ntk) -> None:
        n = xa.shape[0]
        prev: dict[str, torch.Tensor] = {}
        for spec, fn, launch in zip(self.generated.kernels, self.functions, self.launches):
            items = n * spec.planes
            blocks = -(-items // launch.block_items)
            grid = (max(1, min(blocks, launch.max_programs)),)
            iters = -(-blocks // grid[0])
            tensors = {"xa": xa, "xb": xb, "same": flags, "va": pa, "vb": pb, "nngp": nngp, "ntk": ntk}
            if spec.scratch_row:
                tensors["scratch"] = self._scratch_for(spec.index, grid[0] * 4 * launch.block_items * spec.scratch_row)
            if "s_in_ptr" in spec.args:
                tensors["s_in"] = prev["s"]
            if "t_in_ptr" in spec.args:
                tensors["t_in"] = prev["t"]
            out: dict[str, torch.Tensor] = {}
            if "s_out_ptr" in spec.args:
                out["s"] = tensors["s_out"] = torch.empty(n * spec.out_per_pair, dtype=self.dtype, device=self.device)
            if "t_out_ptr" in spec.args:
                out["t"] = tensors["t_out"] = torch.empty(n * spec.out_per_pair, dtype=self.dtype, device=self.device)
            args = bind(spec.args, tensors, {"n_pairs": n, "n_iters": iters})
            if self.device.type == "cuda":
                with torch.cuda.device(self.device):
                    fn[grid](*args, BLOCK_I=launch.block_items, num_warps=launch.num_warps)
            else:
                fn[grid](*args, BLOCK_I=launch.block_items, num_warps=launch.num_warps)
            prev = out
