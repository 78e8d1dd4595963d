"""`AxisWindow` described by its taps (issue 15): the same terms, displacements, demand and
mirror test as a listing, computed without listing, so compile time does not grow with a
window's size beyond the map."""
from __future__ import annotations

import random
import time
import tracemalloc

import numpy as np
import pytest

import ntkc
from ntkc.plan.lower import Band, needed_input
from ntkc.rules import AxisWindow, conv_axis, pool_axis
from ntkc.rules.builtin.flip import mirror_symmetric


# -- the definitions, by enumeration (what the package computed before issue 15) ----------------

def _reads_enumerated(ax: AxisWindow, lo: int, hi: int):
    n = ax.n_in
    wraps = (-n, 0, n) if ax.wrap else (0,)
    found = [ax.stride * d + (a - b) + w for d in range(lo, hi + 1) for a, b in ax.terms for w in wraps]
    found = [d for d in found if -n < d < n]
    return (min(found), max(found)) if found else None


def _mirror_enumerated(ax: AxisWindow) -> bool:
    n, m = ax.n_in, ax.n_out
    pp, qq = (g.reshape(-1) for g in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    rows = []
    for e, f in ax.terms:
        i = ax.stride * pp + e + ax.offset
        j = ax.stride * qq + f + ax.offset
        if ax.wrap:
            i, j = i % n, j % n
        keep = (i >= 0) & (i < n) & (j >= 0) & (j < n)
        rows.append(np.stack([pp[keep], qq[keep], i[keep], j[keep]], axis=1))
    entries = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
    mirrored = np.array([m - 1, m - 1, n - 1, n - 1]) - entries
    a, ca = np.unique(entries, axis=0, return_counts=True)
    b, cb = np.unique(mirrored, axis=0, return_counts=True)
    return a.shape == b.shape and bool(np.array_equal(a, b) and np.array_equal(ca, cb))


def _conv_terms_listed(n, size, stride, padding, dilation, pairs):
    """The terms conv_axis listed before: every tap, landing or not."""
    taps = [dilation * d for d in range(size)]
    return tuple((e, f) for e in taps for f in taps) if pairs else tuple((e, e) for e in taps)


def _random_windows(rng: random.Random, count: int):
    for _ in range(count):
        n = rng.randint(1, 9)
        kind = rng.random()
        if kind < 0.5:
            size, stride, dil = rng.randint(1, 12), rng.randint(1, 4), rng.randint(1, 3)
            padding = rng.choice(["same", "valid", "circular"])
            if padding == "valid" and dil * (size - 1) + 1 > n:
                padding = "same"
            yield conv_axis(n, size, stride, padding, dil, pairs=rng.random() < 0.5)
        elif kind < 0.65:
            size = rng.randint(1, n)
            yield pool_axis(n, size, rng.randint(1, 3))
        else:  # a user's listing, or a description with any offset and step
            m = rng.randint(1, 5)
            stride, offset, wrap = rng.randint(1, 4), rng.randint(-6, 3), rng.random() < 0.3
            if rng.random() < 0.5:
                terms = tuple((rng.randint(0, 7), rng.randint(0, 7)) for _ in range(rng.randint(1, 6)))
                yield AxisWindow(n, m, stride, offset, terms, wrap)
            else:
                start, step = rng.randint(-3, 4), rng.randint(1, 3)
                taps = range(start, start + step * rng.randint(1, 8), step)
                yield AxisWindow(n, m, stride, offset, wrap=wrap, taps=taps, pairs=rng.random() < 0.5)


def test_descriptions_agree_with_their_listings_on_demand_and_mirror():
    rng = random.Random(15)
    for ax in _random_windows(rng, 600):
        listed = AxisWindow(ax.n_in, ax.n_out, ax.stride, ax.offset, ax.terms, ax.wrap)
        assert ax.count == len(ax.terms) == listed.count
        assert ax.displacements() == listed.displacements() == tuple(sorted({a - b for a, b in ax.terms}))
        assert ax.mixes == listed.mixes == (ax.wrap or any(a != b for a, b in ax.terms))
        for _ in range(4):
            m = ax.n_out
            lo = rng.randint(-(m - 1), m - 1)
            hi = rng.randint(lo, m - 1)
            want = _reads_enumerated(ax, lo, hi)
            assert ax.reads(lo, hi) == want == listed.reads(lo, hi), (ax, lo, hi)
        want = _mirror_enumerated(ax)
        assert mirror_symmetric(ax) == want == mirror_symmetric(listed), ax


def test_taps_that_never_land_are_left_out_and_nothing_else_changes():
    rng = random.Random(7)
    for _ in range(400):
        n, size, stride, dil = rng.randint(1, 10), rng.randint(1, 9), rng.randint(1, 3), rng.randint(1, 2)
        padding, pairs = rng.choice(["same", "circular"]), rng.random() < 0.5
        ax = conv_axis(n, size, stride, padding, dil, pairs=pairs)
        old = _conv_terms_listed(n, size, stride, padding, dil, pairs)
        if padding == "circular" or all(ax.tap_lands(e) for t in old for e in t):
            assert ax.terms == old  # ordinary windows: term for term as before
        else:
            assert set(ax.terms) < set(old)
            dropped = set(old) - set(ax.terms)
            assert all(not ax.tap_lands(e) or not ax.tap_lands(f) for e, f in dropped)
            assert _mirror_enumerated(ax) == _mirror_enumerated(AxisWindow(n, ax.n_out, stride, ax.offset, old))


def test_the_plan_of_an_ordinary_network_is_unchanged_in_cost():
    # conv 3x3, pools and a gap on 32x32: the figures docs/rules.md quotes for Myrtle-5
    k = ntkc.compile("examples/myrtle5.arch")
    assert f"{k.plan.pair.flops():.3g}" == "1.25e+08"


def _timed_compile(src: str):
    tracemalloc.start()
    start = time.perf_counter()
    k = ntkc.compile(src)
    text = k.describe()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return k, text, seconds, peak


@pytest.mark.parametrize("layer", ["lap size=3000", "lap size=3000 padding=circular", "conv size=3001",
                                   "conv size=2999 dilation=7", "avgpool size=8"])
def test_a_window_far_wider_than_the_map_compiles_in_no_time(layer):
    src = f"input height=8 width=8 channels=1\nflip\nconv\nrelu\n{layer}\nrelu\nflatten\n"
    k, text, seconds, peak = _timed_compile(src)
    assert seconds < 2.0 and peak < 50e6, (seconds, peak)
    small = _timed_compile(src.replace("3000", "15").replace("3001", "15").replace("2999", "3"))
    assert small[2] < 2.0


def test_a_3000_wide_gap_compiles_describes_and_refuses_to_run_by_its_memory():
    src = "input height=3000 width=3000 channels=1\nconv\nrelu\nconv\nrelu\ngap\ndense\n"
    k, text, seconds, peak = _timed_compile(src)
    assert seconds < 5.0 and peak < 100e6, (seconds, peak)
    assert "all 5999" in text
    x = np.zeros((1, 1, 3000, 3000), np.float32)
    with pytest.raises(ntkc.NtkcError) as info:
        k(x)
    assert "one pair" in info.value.message and "memory" in info.value.message
