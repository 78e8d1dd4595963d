"""Residual blocks, y = x + c f(x): the package against the independent reference (which adds
the branch's covariances to the shortcut's straight from the formula), on the torch backend in
both precisions, including self pairs and duplicates; the plan keeps a block inside its stage.
(Finite residual networks are in test_montecarlo.py; the Triton kernels in
tests/backends/test_triton_backend.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ntkc
from support.checks import images
from support.compare import check_package
from support.nets import RESIDUAL_NETS
from support.reference import parse_arch, reference_kernels


@pytest.mark.parametrize("name", list(RESIDUAL_NETS))
@pytest.mark.parametrize("mode", ["symmetric", "x2"])
def test_residual_networks_match_the_reference(name, mode):
    text = RESIDUAL_NETS[name]
    shape, _ = parse_arch(text)
    x1 = images(3, shape, 11, float32=True)
    x1[2] = x1[0]  # an exact duplicate: a self pair off the diagonal
    x2 = None if mode == "symmetric" else images(2, shape, 12, float32=True)
    check_package(text, x1, x2, name)


def test_the_shortcut_and_the_scale_enter_as_the_formula_says():
    """Against kernels built by hand from the straight parts: S = S_x + c^2 S_f, T likewise."""
    head = "input height=4 width=5 channels=2\nconv w_std=1.3 b_std=0.2\n"
    branch = "relu\nconv w_std=1.1 b_std=0.1\n"
    tail = "gap\n"
    x = images(3, (4, 5, 2), 3)
    c = 0.7
    res = ntkc.compile(head + f"residual scale={c} {{\n{branch}}}\n" + tail)(torch.tensor(x), dtype=torch.float64)
    shortcut = ntkc.compile(head + tail)(torch.tensor(x), dtype=torch.float64)
    branch_only = ntkc.compile(head + branch + tail)(torch.tensor(x), dtype=torch.float64)
    for kind in ("nngp", "ntk"):
        want = getattr(shortcut, kind) + c * c * getattr(branch_only, kind)
        assert torch.allclose(getattr(res, kind), want, rtol=1e-13, atol=0), kind


def test_a_residual_block_stays_inside_its_stage():
    k = ntkc.compile(RESIDUAL_NETS["wrn_block_gap"])
    stages = k.plan.pair.stages
    assert len(stages) == 2 and [s.kind for s in stages[0].steps].count("fork") == 1
    kinds = [s.kind for s in stages[0].steps]
    assert kinds.index("fork") < kinds.index("join")
    # the planes the block needs are the planes the next layer needs: all of them for gap
    fork = next(s for s in stages[0].steps if s.kind == "fork")
    assert fork.demand_in == fork.demand_out and fork.demand_out[0].full
    text = k.describe()
    assert "residual" in text and "end of residual" in text


def test_a_flatten_network_with_blocks_needs_plane_zero_only():
    k = ntkc.compile(RESIDUAL_NETS["repeat_scaled_nested_flatten"])
    for step in k.plan.pair.steps:
        assert (step.demand_out[0].lo, step.demand_out[0].hi) == (0, 0), step.layer.describe()


def test_variance_maps_are_the_diagonal_of_the_self_pair():
    """The image program adds the shortcut's variance to the branch's, like the pair program."""
    text = RESIDUAL_NETS["wrn_block_gap"]
    shape, layers = parse_arch(text)
    x = images(2, shape, 5)
    k = ntkc.compile(text)
    maps = k.backend("torch", torch.float64).variance_maps(torch.tensor(x))
    # the last relu's input, from the reference's own propagation of the self pair
    from support.reference import _pair, layer
    full = [layer(n, **p) for n, p in layers]
    want = _pair(full, x[0], x[0])[2]
    assert len(maps) == len(want)
    for got, w in zip(maps, want):
        np.testing.assert_allclose(got[0].numpy(), w, rtol=1e-12, atol=0)
    assert np.all(np.diag(reference_kernels(layers, x)[0]) > 0)
