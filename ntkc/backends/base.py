"""The interface every backend implements: what the tiling engine asks of it.

A backend executes one `Plan` in one precision on one device. The engine (`ntkc.engine.tiling`)
computes variance maps per image, then hands the backend batches of pairs with their images,
their maps and which of them are self pairs; memory and batch sizes are the backend's to
estimate. Nothing else of a backend is used outside its own folder.
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

    def pairs(self, xa: "torch.Tensor", xb: "torch.Tensor", va: "list[torch.Tensor]",
              vb: "list[torch.Tensor]", same: "torch.Tensor", fused: bool = False) -> "tuple[torch.Tensor, torch.Tensor]":
        """NNGP and NTK [B] of the pairs (xa[i], xb[i]) with their variance maps; `same[i]` is
        True when xa[i] and xb[i] are the same image (its diagonal is then exact by
        construction). `fused` asks for the backend's compiled form where it has one; results
        agree with the plain form to rounding."""

    def bytes_per_pair(self) -> int:
        """A generous estimate of the working memory one pair of a batch needs."""

    def preferred_batch(self) -> int:
        """Pairs per batch the backend runs best at (the engine also bounds it by memory)."""

    def fusion_pays(self, pairs: int) -> bool:
        """Whether compiling the fused form repays itself over a run of `pairs` pairs."""
