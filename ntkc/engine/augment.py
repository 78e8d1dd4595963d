"""Augmented kernels: K_aug(a, b) = mean over g in G of K(a, g b), by wrapping a backend.

G is the identity plus the transforms of the network's augmentation statements (`flip`; their
products when there are several). The rules check that this one-sided average is the augmented
kernel (the layers commute with G), which also makes it symmetric, so the Gram matrix machinery
(each unordered pair once) is unchanged. Variance maps are computed for every transformed copy
of an image; a transformed pair is never a self pair (`same` is False for it).
"""
from __future__ import annotations

import itertools

import torch


def augmented(backend, network):
    """`backend` itself when the network has no augmentation, else an `AugmentedBackend`."""
    stmts = getattr(network, "augment", ())
    if not stmts:
        return backend
    groups = [(None,) + tuple(a.rule.transforms(a.params)) for a in stmts]
    transforms = []
    for combo in itertools.product(*groups):
        fns = [f for f in combo if f is not None]
        transforms.append(_compose(fns) if fns else None)
    return AugmentedBackend(backend, tuple(transforms))


def _compose(fns):
    def apply(x):
        for f in fns:
            x = f(x)
        return x
    return apply


class AugmentedBackend:
    """The `Backend` interface over an inner backend, averaging over the transforms;
    `transforms[0]` is None, the identity. Other attributes are the inner backend's."""

    def __init__(self, inner, transforms):
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "transforms", transforms)

    def __getattr__(self, name):  # name, launches, generated, ...: those of the backend
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        setattr(self.inner, name, value)

    def variance_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for g in self.transforms:
            maps += self.inner.variance_maps(x if g is None else g(x).contiguous())
        return maps

    def pairs(self, x_rows, x_cols, maps_rows, maps_cols, i, j, same, fused: bool = False):
        """The mean over g of K(a, g b): each transform applied once per column image (the
        pairs index the transformed images as they did the originals)."""
        k = len(maps_rows) // len(self.transforms)
        nngp = ntk = None
        for idx, g in enumerate(self.transforms):
            xg = x_cols if g is None else g(x_cols).contiguous()
            sg = same if g is None else torch.zeros_like(same)
            s, t = self.inner.pairs(x_rows, xg, maps_rows[:k], maps_cols[idx * k:(idx + 1) * k], i, j, sg,
                                    fused=fused)
            nngp = s if nngp is None else nngp + s
            ntk = t if ntk is None else ntk + t
        count = len(self.transforms)
        return nngp / count, ntk / count

    def bytes_per_pair(self) -> int:
        return self.inner.bytes_per_pair()

    def preferred_batch(self) -> int:
        return self.inner.preferred_batch()

    def fusion_pays(self, pairs: int) -> bool:
        return self.inner.fusion_pays(pairs * len(self.transforms))
