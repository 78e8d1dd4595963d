"""Demand analysis and stages of the Plan."""
from __future__ import annotations

from pathlib import Path

import pytest

import ntkc
from ntkc.plan import Band, describe

from support.paths import EXAMPLES  # noqa: E402


def plan(text):
    return ntkc.compile(text).plan


def test_cntk_v_needs_plane_zero_only():
    p = ntkc.compile(EXAMPLES / "cntk_v_d21.arch").plan
    for step in p.pair.steps:
        for band in step.demand_in + step.demand_out:
            assert (band.lo, band.hi) == (0, 0)
    assert p.pair.input_demand == (Band(32, 0, 0), Band(32, 0, 0))
    assert len(p.pair.stages) == 1


def test_gap_needs_every_plane():
    p = ntkc.compile(EXAMPLES / "cntk_gap_d3.arch").plan
    assert all(b.full for b in p.pair.input_demand)
    # ... but the image program (variance maps only) needs plane 0 alone.
    assert all((b.lo, b.hi) == (0, 0) for b in p.image.input_demand)


def test_pool_then_flatten_demands_a_band():
    p = plan("input height=8 width=6 channels=1\nconv\nrelu\navgpool size=2\nconv\nrelu\nflatten\n")
    pool = [s for s in p.pair.steps if s.layer.name == "avgpool"][0]
    assert pool.demand_out == (Band(4, 0, 0), Band(3, 0, 0))
    assert pool.demand_in == (Band(8, -1, 1), Band(6, -1, 1))
    assert [len(s.steps) for s in p.pair.stages] == [2, 4]
    assert p.pair.stages[1].opener is pool


def test_stride_scales_displacements():
    p = plan("input height=9 width=9 channels=1\nconv\nconv stride=2\navgpool size=3 stride=1\nflatten\n")
    conv2 = p.pair.steps[1]
    assert conv2.demand_out == (Band(5, -2, 2), Band(5, -2, 2))
    assert conv2.demand_in == (Band(9, -4, 4), Band(9, -4, 4))


def test_circular_conv_reads_wrapped_planes():
    p = plan("input height=5 width=5 channels=1\nconv padding=circular\navgpool size=2 stride=1\nflatten\n")
    conv = p.pair.steps[0]
    # planes -1..1 of the output wrap to 5 - 1 = 4 and -4: the whole range.
    assert all(b.full for b in conv.demand_in)
    assert conv.mixes


def test_image_program_stops_before_the_last_activation():
    p = plan("input height=4 width=4 channels=1\nconv\nrelu\nconv\nerf\ngap\ndense\nrelu\ndense\n")
    assert [s.layer.name for s in p.image.steps] == ["conv", "relu", "conv", "erf", "gap", "dense"]
    assert p.image.variance_at == (1, 3, 6)


def test_describe_mentions_stages_planes_and_work():
    text = describe(ntkc.compile(EXAMPLES / "myrtle5.arch").plan)
    assert "stage 1 (opened by plane-mixing `avgpool`)" in text
    assert "work per pair" in text and "planes" in text and "line 10" in text


@pytest.mark.parametrize("f", sorted(EXAMPLES.glob("*.arch")), ids=lambda f: f.stem)
def test_examples_compile(f):
    k = ntkc.compile(f)
    assert k.arch.output.reduced
    assert k.plan.pair.flops() > 0


def test_describe_counts_augmented_copies():
    import ntkc

    k = ntkc.compile(EXAMPLES / "enhanced_cntk_d11.arch")
    text = k.describe()
    assert f"runs 2 times per pair, ~{2 * k.plan.pair.flops():.3g} flops" in text
    plain = ntkc.compile("input height=8 width=8 channels=1\nconv\nrelu\nflatten\ndense\n")
    assert "augmented" not in plain.describe()
