"""The Gram-store suites' shared cases: small digits networks, a tile size that makes several
tiles, and the uninterrupted in-memory matrices a store must equal bitwise."""
from __future__ import annotations

import numpy as np
import torch

from ntkc.engine.tiling import gram
from ntkc.store.gramstore import GramStore
from support.paths import EXAMPLES

V_ARCH = EXAMPLES / "digits_v.arch"
GAP_ARCH = EXAMPLES / "digits_gap.arch"
TILE = 8


def reference(kernel, ds, settings):
    """Uninterrupted in-memory matrices with the store's tile size and pair batch."""
    ex = kernel.backend(settings.backend, settings.torch_dtype, torch.device("cpu"))
    xtr = torch.as_tensor(ds.x_train, dtype=settings.torch_dtype)
    xte = torch.as_tensor(ds.x_test, dtype=settings.torch_dtype)
    a, b, _ = gram(ex, xtr, None, settings.memory, tile=TILE)
    c, d, _ = gram(ex, xte, xtr, settings.memory, tile=TILE)
    return [m.numpy() for m in (a, b, c, d)]


def assert_same(store: GramStore, ref) -> None:
    got = list(store.matrices("train_train")) + list(store.matrices("test_train"))
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        assert np.array_equal(g, r), "store differs from the uninterrupted computation"
