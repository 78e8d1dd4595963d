"""The public rule API (`ntkc.rules`, `use` lines, `ntkc.load_rules`) and the rules written with
it: abrelu / leaky_relu, gelu, conv dilation, lap, flip, and the user example `sine`.

The new layers are compared with the independent float64 reference (tests/support/reference.py) in
float64 (1e-10) and float32 (1e-5), like every other layer in test_reference.py; activations also
against quadrature and against Price's theorem (d NNGP / du = derivative factor).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import ntkc
from support import reference as R
from ntkc.backends.torch.ops import TorchOps
from ntkc.rules.base import Params
from ntkc.errors import ArchError, RuleError
from ntkc.rules import (ActivationRule, AxisWindow, Param, Window, WindowRule, get_rule, known_rules, load_rules,
                        register)
from support.reference import parse_arch, reference_kernels
from support.checks import F32_TOL, F64_TOL, assert_close, images

from support.nets import NETS, SINE
from support.paths import ROOT


def check_against_reference(text, n=3, seed=0, x2=False):
    shape, layers = parse_arch(text)
    x1 = images(n, shape, seed)
    xb = images(2, shape, seed + 1) if x2 else None
    want = reference_kernels(layers, x1, xb)
    k = ntkc.compile(text)
    for dtype, tol in ((torch.float64, F64_TOL), (torch.float32, F32_TOL)):
        got = k(torch.tensor(x1, dtype=dtype), None if xb is None else torch.tensor(xb, dtype=dtype),
                dtype=dtype, backend="torch")
        for kind, g, w in zip(("nngp", "ntk"), got, want):
            assert_close(g.double().numpy(), w, tol, f"{kind} {dtype}\n{text}")


# -- the API and loading user modules -----------------------------------------------------------


def test_public_names_are_importable_from_stable_places():
    import ntkc.rules as api
    for name in api.__all__:
        assert getattr(api, name) is not None
    assert ntkc.load_rules is not None
    assert {"abrelu", "leaky_relu", "gelu", "lap", "flip"} <= set(known_rules())
    assert [p.name for p in get_rule("conv").params][:3] == ["size", "stride", "dilation"]


def test_use_line_loads_a_user_module_relative_to_the_arch_file(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "cube.py").write_text(textwrap.dedent('''
        from ntkc.rules import ActivationRule, register

        @register
        class Cube(ActivationRule):
            """cube_id: the identity written as a user rule (u, 1)."""
            name = "cube_id"
            def nngp(self, p, ops, u, v1, v2):
                return u
            def dfactor(self, p, ops, u, v1, v2):
                return u * 0.0 + 1.0
    '''))
    arch = tmp_path / "net.arch"
    arch.write_text('use "rules/cube.py"\ninput height=3 width=3 channels=1\nconv\ncube_id\nflatten\n')
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    got = ntkc.compile(arch)(x, dtype=torch.float64)
    want = ntkc.compile("input height=3 width=3 channels=1\nconv\nidentity\nflatten\n")(x, dtype=torch.float64)
    assert torch.allclose(got.nngp, want.nngp) and torch.allclose(got.ntk, want.ntk)
    assert ntkc.compile(arch).arch.uses == ("rules/cube.py",)
    ntkc.compile(arch)  # loading twice is harmless
    assert load_rules(tmp_path / "rules" / "cube.py") is load_rules(str(tmp_path / "rules" / "cube.py"))


def test_use_line_with_a_dotted_module_name(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "acts.py").write_text(
        "from ntkc.rules import ActivationRule, register\n"
        "@register\nclass Half(ActivationRule):\n    '''half: x / 2'''\n    name = 'half_id'\n"
        "    def nngp(self, p, ops, u, v1, v2): return 0.25 * u\n"
        "    def dfactor(self, p, ops, u, v1, v2): return u * 0.0 + 0.25\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = ntkc.compile('use "mypkg.acts"\ninput height=2 width=2 channels=1\nhalf_id\nflatten\n')
    assert net.arch.layers[0].name == "half_id"


@pytest.mark.parametrize("target, message", [
    ("missing_rules.py", "rule module 'missing_rules.py' not found"),
    ("no.such.module", "rule module 'no.such.module' not found"),
    ("broken.py", "failed to import: ZeroDivisionError"),
    ("bad_op.py", "uses `ops.softplus`, which is not in the ops vocabulary"),
])
def test_use_errors_point_at_the_line(tmp_path, target, message):
    (tmp_path / "broken.py").write_text("x = 1\ny = x / 0\n")
    (tmp_path / "bad_op.py").write_text(
        "from ntkc.rules import ActivationRule, register\n"
        "@register\nclass Soft(ActivationRule):\n    name = 'soft_bad'\n"
        "    def nngp(self, p, ops, u, v1, v2): return ops.softplus(u)\n"
        "    def dfactor(self, p, ops, u, v1, v2): return u\n")
    arch = tmp_path / "net.arch"
    arch.write_text(f'# rules\nuse "{target}"\ninput height=2 width=2 channels=1\nflatten\n')
    with pytest.raises(ArchError) as info:
        ntkc.compile(arch)
    text = str(info.value)
    assert text.startswith(f"{arch}:2:5: "), text
    assert message in text and "hint:" in text and "^" in text
    if target == "broken.py":
        assert "broken.py:2" in text  # where in the module


def test_math_stated_once_in_maps_registers_and_derives_nngp_and_dfactor():
    @register
    class HalfMaps(ActivationRule):
        """half_maps: x / 2, stated in `maps` alone."""
        name = "half_maps"

        def maps(self, p, ops, u, v1, v2, need_dfactor=True):
            return 0.25 * u, (u * 0.0 + 0.25 if need_dfactor else None)

    rule = get_rule("half_maps")
    assert rule.nngp(Params({}), TorchOps(), torch.tensor(2.0), 1.0, 1.0).item() == 0.5
    assert rule.dfactor(Params({}), TorchOps(), torch.tensor(2.0), 1.0, 1.0).item() == 0.25
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    got = ntkc.compile("input height=3 width=3 channels=1\nconv\nhalf_maps\nflatten\n")(x, dtype=torch.float64)
    base = ntkc.compile("input height=3 width=3 channels=1\nconv\nidentity\nflatten\n")(x, dtype=torch.float64)
    assert torch.allclose(got.nngp, 0.25 * base.nngp) and torch.allclose(got.ntk, 0.25 * base.ntk)


@pytest.mark.parametrize("methods, message", [
    ((), "states no math"),
    (("nngp",), "states only `nngp`"),
    (("dfactor",), "states only `dfactor`"),
])
def test_a_rule_that_states_too_little_math_is_refused(methods, message):
    body = {m: (lambda self, p, ops, u, v1, v2: u) for m in methods}
    cls = type("Partial", (ActivationRule,), {"name": "partial_math", **body})
    with pytest.raises(RuleError, match=message) as info:
        register(cls)
    assert "maps(self, p, ops, u, v1, v2" in info.value.hint
    assert "partial_math" not in known_rules()


def test_a_maps_rule_that_forgets_the_factor_is_refused():
    with pytest.raises(RuleError, match="returned no derivative factor"):
        @register
        class NoFactor(ActivationRule):
            name = "no_factor"

            def maps(self, p, ops, u, v1, v2, need_dfactor=True):
                return u, None


def test_presets_are_abrelu_with_parameters():
    """relu and leaky_relu are abrelu with fixed slopes: the same math, not copies of it."""
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    def k(act):
        return ntkc.compile(f"input height=4 width=5 channels=2\nconv\n{act}\nconv\n{act}\ngap\n")(x, dtype=torch.float64)
    for preset, general in (("relu", "abrelu a=0 b=1"), ("leaky_relu slope=0.3", "abrelu a=0.3 b=1"),
                            ("leaky_relu", "abrelu a=0.01 b=1")):
        a, b = k(preset), k(general)
        assert torch.equal(a.nngp, b.nngp) and torch.equal(a.ntk, b.ntk), preset
    from ntkc.rules.builtin.abrelu import ABRelu
    assert isinstance(get_rule("relu"), ABRelu) and isinstance(get_rule("leaky_relu"), ABRelu)


def test_the_readme_sine_example_is_the_shipped_file():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\n", 2)[1].split("```", 1)[0]
    shipped = SINE.read_text()
    body = block[block.index("@register"):].rstrip()
    assert body in shipped, "README's Sine example differs from examples/user_rules/sine.py"


def test_registration_rejects_ill_formed_rules():
    with pytest.raises(RuleError, match="not in the ops vocabulary"):
        @register
        class UsesNumpy(ActivationRule):
            name = "bad_vocab"

            def nngp(self, p, ops, u, v1, v2):
                return ops.logaddexp(u, v1)

            def dfactor(self, p, ops, u, v1, v2):
                return u

    with pytest.raises(RuleError, match="cannot be traced"):
        @register
        class Branches(ActivationRule):
            name = "bad_branch"

            def nngp(self, p, ops, u, v1, v2):
                return u if u > 0 else -u

            def dfactor(self, p, ops, u, v1, v2):
                return u

    with pytest.raises(RuleError, match="cannot be traced"):
        @register
        class UsesMath(ActivationRule):
            name = "bad_math"

            def nngp(self, p, ops, u, v1, v2):
                return math.sqrt(u)

            def dfactor(self, p, ops, u, v1, v2):
                return u

    with pytest.raises(RuleError, match="default"):
        @register
        class BadDefault(ActivationRule):
            name = "bad_default"
            params = (Param("k", "int", 0.5),)

    with pytest.raises(RuleError, match="already registered"):
        @register
        class Relu2(ActivationRule):
            name = "relu"

    with pytest.raises(RuleError, match="identifier"):
        @register
        class Reserved(ActivationRule):
            name = "use"
    assert not {"bad_vocab", "bad_branch", "bad_math", "bad_default"} & set(known_rules())


def test_inconsistent_window_shapes_fail_at_compile_time_with_the_line():
    @register(replace=True)
    class Liar(WindowRule):
        """liar_pool: says it keeps the size but reads a map of the wrong size."""
        name = "liar_pool"

        def window(self, p, shape):
            ax = AxisWindow(shape.height + 1, shape.height)
            return Window(ax, AxisWindow(shape.width, shape.width), weight=1.0)

    with pytest.raises(ArchError) as info:
        ntkc.compile("input height=3 width=3 channels=1\nconv\nliar_pool\nflatten\n")
    text = str(info.value)
    assert text.startswith("<arch>:3:1: rule `liar_pool` declares inconsistent shapes"), text
    assert "hint:" in text


# -- activations: closed forms ---------------------------------------------------------------


def _maps(name, params, u, v1, v2):
    t = lambda a: torch.tensor([a], dtype=torch.float64)  # noqa: E731
    n, f = get_rule(name).maps(Params(params), TorchOps(), t(u), t(v1), t(v2))
    return n.item(), f.item()


POINTS = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (3.0, 0.2, 0.95), (1.3, 1.1, -0.999), (0.1, 0.1, 0.0), (2.0, 2.0, 1.0)]


@pytest.mark.parametrize("v1,v2,rho", POINTS)
def test_gelu_and_sine_closed_forms_match_quadrature(v1, v2, rho):
    load_rules(SINE)
    u = rho * math.sqrt(v1 * v2)
    for name, params, ref in (("gelu", {}, R._gelu), ("sine", {"freq": 0.8}, lambda *a: R._sine(*a, freq=0.8))):
        value, factor = _maps(name, params, u, v1, v2)
        want_value, want_factor = ref(np.float64(u), np.float64(v1), np.float64(v2))
        assert abs(value - want_value) <= 1e-12 * max(v1, v2), name
        assert abs(factor - want_factor) <= 1e-12, name


@pytest.mark.parametrize("v1,v2,rho", POINTS[:5])
def test_abrelu_matches_the_four_quadrant_form_and_its_special_cases(v1, v2, rho):
    u = rho * math.sqrt(v1 * v2)
    for a, b in ((-0.3, 1.7), (0.2, 1.0), (0.0, 1.0), (1.0, 1.0), (-1.0, 1.0)):
        value, factor = _maps("abrelu", {"a": a, "b": b}, u, v1, v2)
        want = R._abrelu_with(a, b)(np.float64(u), v1, v2)
        assert value == pytest.approx(want[0], rel=1e-12, abs=1e-14)
        assert factor == pytest.approx(want[1], rel=1e-12, abs=1e-14)
    assert _maps("abrelu", {"a": 1.0, "b": 1.0}, u, v1, v2) == pytest.approx((u, 1.0), abs=1e-15)
    assert _maps("abrelu", {"a": 0.0, "b": 1.0}, u, v1, v2) == pytest.approx(_maps("relu", {}, u, v1, v2), abs=1e-15)
    assert _maps("leaky_relu", {"slope": 0.2}, u, v1, v2) == pytest.approx(
        _maps("abrelu", {"a": 0.2, "b": 1.0}, u, v1, v2), abs=1e-15)


@pytest.mark.parametrize("name, params", [("gelu", {}), ("abrelu", {"a": -0.3, "b": 1.7}),
                                          ("leaky_relu", {"slope": 0.1}), ("sine", {"freq": 1.3})])
def test_derivative_factor_is_the_u_derivative_of_the_nngp(name, params):
    """Price's theorem: d/du E[phi(X) phi(Y)] = E[phi'(X) phi'(Y)]; catches a mismatched pair."""
    load_rules(SINE)
    for v1, v2, rho in POINTS[:5]:
        u, h = rho * math.sqrt(v1 * v2) * 0.99, 1e-6
        slope = (_maps(name, params, u + h, v1, v2)[0] - _maps(name, params, u - h, v1, v2)[0]) / (2 * h)
        assert slope == pytest.approx(_maps(name, params, u, v1, v2)[1], rel=1e-6, abs=1e-8)


# -- the new layers against the float64 reference -------------------------------------------------



@pytest.mark.parametrize("name", list(NETS))
def test_new_layers_match_the_reference(name):
    check_against_reference(NETS[name], x2=name.startswith("flip"))


def test_dilated_conv_geometry_and_plan():
    k = ntkc.compile("input height=9 width=8 channels=1\nconv size=3 dilation=3 padding=valid\nrelu\n"
                     "conv size=2 dilation=2 stride=2\nrelu\nflatten\n")
    shapes = [(l.in_shape.height, l.in_shape.width, l.out_shape.height, l.out_shape.width) for l in k.arch.layers[:3]]
    assert shapes[0] == (9, 8, 3, 2) and shapes[2] == (3, 2, 2, 1)
    with pytest.raises(ArchError, match="valid` window of 7 does not fit"):
        ntkc.compile("input height=6 width=6 channels=1\nconv dilation=3 padding=valid\nflatten\n")


def test_lap_demands_a_band_of_planes_and_circular_all():
    same = ntkc.compile("input height=8 width=8 channels=1\nconv\nrelu\nlap size=3\nflatten\n").plan
    circ = ntkc.compile("input height=8 width=8 channels=1\nconv\nrelu\nlap size=3 padding=circular\nflatten\n").plan
    relu_same = same.pair.steps[1].demand_out
    assert (relu_same[0].lo, relu_same[0].hi) == (-2, 2)
    assert circ.pair.steps[1].demand_out[0].full
    assert len(same.pair.stages) == 2  # lap mixes planes: it opens a stage


def test_flip_equals_the_explicit_average_and_its_errors():
    body = "input height=3 width=5 channels=2\n{}conv\nrelu\ngap\n"
    x = torch.randn(3, 2, 3, 5, dtype=torch.float64)
    y = torch.randn(2, 2, 3, 5, dtype=torch.float64)
    plain, flip = ntkc.compile(body.format("")), ntkc.compile(body.format("flip\n"))
    a, b, c = plain(x, y, dtype=torch.float64), plain(x, y.flip(-1), dtype=torch.float64), flip(x, y, dtype=torch.float64)
    assert torch.allclose(c.nngp, (a.nngp + b.nngp) / 2, rtol=1e-12) and torch.allclose(c.ntk, (a.ntk + b.ntk) / 2, rtol=1e-12)
    g = flip(x, dtype=torch.float64)
    assert torch.allclose(g.nngp, g.nngp.T) and torch.allclose(g.nngp[0, 1], flip(x[:1], x[1:2], dtype=torch.float64).nngp[0, 0])
    with pytest.raises(ArchError, match="must come right after `input`") as info:
        ntkc.compile("input height=3 width=4 channels=1\nconv\nflip\nrelu\ngap\n")
    assert str(info.value).startswith("<arch>:3:1:")
    with pytest.raises(ArchError, match="treats the left and right edges differently") as info:
        ntkc.compile("input height=4 width=4 channels=1\nflip\nconv size=2\nrelu\nflatten\n")
    assert str(info.value).startswith("<arch>:2:1:") and "hint:" in str(info.value)
    with pytest.raises(ArchError, match="given twice"):
        ntkc.compile("input height=4 width=4 channels=1\nflip\nflip\nconv\nrelu\nflatten\n")


def test_layers_listing_and_descriptions():
    listing = {n: r.summary() for n, r in known_rules().items()}
    for name in ("abrelu", "leaky_relu", "gelu", "lap", "flip"):
        assert listing[name].startswith(name + ":")


def test_flip_symmetry_check_is_sparse_and_handles_large_maps():
    """The mirror check lists window entries sparsely: a 224-wide map (a dense check would need
    224^4 numbers) is decided quickly, and both answers occur."""
    from ntkc.rules.base import conv_axis, pool_axis
    from ntkc.rules.builtin.flip import mirror_symmetric

    assert mirror_symmetric(conv_axis(224, 3, 1, "same"))
    assert not mirror_symmetric(conv_axis(224, 3, 2, "same"))  # SAME pads 0 left, 1 right here
    assert not mirror_symmetric(pool_axis(225, 2, 2))  # drops the last column
    assert mirror_symmetric(pool_axis(224, 2, 2))
