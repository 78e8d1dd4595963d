"""The interface every backend implements: what the tiling engine asks of it.

A backend executes one `Plan` in one precision on one device. The engine (`ntkc.engine.tiling`)
computes variance maps per image, then hands the backend batches of pairs as indices into a
tile's images and maps, with which of them are self pairs; memory and batch sizes are the
backend's to estimate. Nothing else of a backend is used outside its own folder.

Changed in issue 14 (GPU kernels v2): `pairs` takes the tile's images and maps once per image
and the pair indices (i, j), instead of per-pair copies of them. The generated v2 kernels read
images and maps by index, so the copies were pure overhead there. To port a backend written
against the old form `pairs(xa, xb, va, vb, same, fused)`, gather first:

    def pairs(self, x_rows, x_cols, maps_rows, maps_cols, i, j, same, fused=False):
        xa, xb, va, vb = gather_pairs(x_rows, x_cols, maps_rows, maps_cols, i, j)
        return self._old_pairs(xa, xb, va, vb, same, fused)

which gives bitwise the inputs the engine passed before (the torch backend does exactly this).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from ..plan import Plan


@runtime_checkable
class Backend(Protocol):
    """One Plan, compiled for one dtype (torch.float32 / float64) and one torch device."""

    name: ClassVar[str]          # the name users pass as backend="..."
    plan: "Plan"
    dtype: "torch.dtype"
    device: "torch.device"

    def variance_maps(self, x: "torch.Tensor") -> "list[torch.Tensor]":
        """Per-image variance maps v = S_xx[p, p], one [N, h, w] tensor per activation of the plan
        (in `plan.activations` order), at that activation's input."""

    def pairs(self, x_rows: "torch.Tensor", x_cols: "torch.Tensor", maps_rows: "list[torch.Tensor]",
              maps_cols: "list[torch.Tensor]", i: "torch.Tensor", j: "torch.Tensor", same: "torch.Tensor",
              fused: bool = False) -> "tuple[torch.Tensor, torch.Tensor]":
        """NNGP and NTK [B] of the pairs (x_rows[i[b]], x_cols[j[b]]), b < B.

        Inputs are per image, not per pair: `x_rows` [R, C, H, W] and `x_cols` [Q, C, H, W] are
        the images of a tile's rows and columns, `maps_rows` / `maps_cols` their variance maps
        (as `variance_maps` returns them: one [R, h, w] / [Q, h, w] tensor per activation), and
        `i`, `j` [B] (int64, on the images' device) index the pairs into them. `same[b]` is True
        when the two images of pair b are the same image (its diagonal is then exact by
        construction). `fused` asks for the backend's compiled form where it has one; results
        agree with the plain form to rounding. A backend that works on per-pair copies gathers
        them itself: `gather_pairs` below does it exactly as the engine used to.
        """

    def bytes_per_pair(self) -> int:
        """A generous estimate of the working memory one pair of a batch needs."""

    def preferred_batch(self) -> int:
        """Pairs per batch the backend runs best at (the engine also bounds it by memory)."""

    def fusion_pays(self, pairs: int) -> bool:
        """Whether compiling the fused form repays itself over a run of `pairs` pairs."""


def gather_pairs(x_rows, x_cols, maps_rows, maps_cols, i, j):
    """Per-pair copies (xa, xb, va, vb) of the per-image inputs of `Backend.pairs`: xa[b] =
    x_rows[i[b]], xb[b] = x_cols[j[b]] and the same for every variance map."""
    return (x_rows.index_select(0, i), x_cols.index_select(0, j),
            [m.index_select(0, i) for m in maps_rows], [m.index_select(0, j) for m in maps_cols])
