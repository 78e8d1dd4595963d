"""Triton code generation: the generated source (golden files, structure) and the code cache.
(Ahead-of-time compiles and the speed model: test_triton_speed_model.py; the v2 generator's
coverage and source: test_triton_v2.py.)

Set NTKC_REGEN_GOLDEN=1 to rewrite tests/golden/triton/*.py after an intended change (then
review the diff). small_pool is all v1 (v2 covers none of its stages), small_gap is v1 with the
v2 epilogue after its gap, small_residual_v2 is all v2.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

import ntkc
from ntkc.backends.triton import codegen as tc
from ntkc.plan.lower import Band
from ntkc.backends.triton import codecache

from support.paths import GOLDEN as _GOLDEN, ROOT  # noqa: E402

GOLDEN = _GOLDEN / "triton"
REGEN = os.environ.get("NTKC_REGEN_GOLDEN") == "1"
EXAMPLES = sorted((ROOT / "examples").glob("*.arch"))

SMALL = {
    "small_gap": """# a small CNTK-GAP: frozen first conv, a repeated block (a run-time loop), gap, dense
input height=5 width=4 channels=2
conv w_std=sqrt(2) trainable=false
relu
repeat 4 {
  conv w_std=sqrt(2) b_std=0.1
  relu
}
gap
dense trainable=false
""",
    "small_pool": """# pooling, circular padding, erf, a strided valid conv, flatten, scalar layers
input height=8 width=6 channels=3
conv w_std=sqrt(2)
relu
avgpool size=2
conv w_std=sqrt(2) padding=circular
erf
conv stride=2 padding=valid
relu
flatten
dense b_std=0.2
relu
dense
""",
    "small_residual_v2": """# v2 throughout: residual blocks (one repeated: a run-time loop), gap, a residual dense block
input height=8 width=4 channels=2
conv w_std=sqrt(2) trainable=false
repeat 4 {
  residual scale=0.8 {
    relu
    conv w_std=sqrt(2) b_std=0.1
  }
}
relu
gap
dense w_std=1.2
residual {
  relu
  dense
}
""",
}


# -- golden source ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generated_source_golden(name):
    text = tc.generate(ntkc.compile(SMALL[name], f"{name}.arch").plan)
    path = GOLDEN / f"{name}.py"
    if REGEN or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not REGEN:
            pytest.fail(f"golden file {path.name} was missing and has been written; review it")
    assert text == path.read_text(), f"generated source differs from {path} (NTKC_REGEN_GOLDEN=1 to accept)"


def test_source_is_deterministic_and_compiles_as_python():
    plan = ntkc.compile(SMALL["small_pool"], "small_pool.arch").plan
    a, b = tc.generate(plan), tc.generate(ntkc.compile(SMALL["small_pool"], "small_pool.arch").plan)
    assert a == b
    compile(a, "small_pool_generated.py", "exec")


def test_source_names_file_stages_and_every_layer_line():
    k = ntkc.compile(SMALL["small_pool"], "small_pool.arch")
    gen = tc.build(k.plan)
    head = gen.source.split('"""')[1]
    assert "small_pool.arch" in head
    for spec in gen.kernels:
        assert f"{spec.name}:" in head
        assert f"def {spec.name}(" in gen.source
    for layer in k.arch.layers:
        assert f"# line {layer.span.line}: {layer.describe()}" in gen.source
    # one kernel per stage; the conv/activation chain of stage 0 is one kernel
    assert len(gen.kernels) == len(k.plan.pair.stages)
    assert [s.sink for s in gen.kernels] == ["planes", "planes", "outputs"]


def test_gap_is_folded_into_partial_sums_and_an_epilogue():
    k = ntkc.compile(SMALL["small_gap"], "small_gap.arch")
    gen = tc.build(k.plan)
    assert [(s.source, s.sink) for s in gen.kernels] == [("images", "partials"), ("partials", "outputs")]
    assert gen.kernels[0].legacy.planes == 9 * 7  # every displacement plane of a 5x4 map (v1: not a power of two)
    assert gen.kernels[1].kind.value == "epilogue" and gen.kernels[1].legacy is None


def test_repeated_blocks_become_one_loop():
    src = tc.generate(ntkc.compile(SMALL["small_gap"], "small_gap.arch").plan)
    assert src.count("for rep in range(") == 1
    deep = ntkc.compile(SMALL["small_gap"].replace("repeat 4", "repeat 30"), "deep.arch").plan
    assert len(tc.generate(deep).splitlines()) == len(src.splitlines())  # code size independent of depth


def test_flatten_network_needs_plane_zero_only():
    k = ntkc.compile((ROOT / "examples" / "cntk_v_d21.arch") if EXAMPLES else SMALL["small_pool"])
    gen = tc.build(k.plan)
    assert gen.kernels[0].plan.tiles_per_pair == 1 and len(gen.kernels) == 1


def test_window_shapes_are_recognised_by_structure():
    k = ntkc.compile(SMALL["small_pool"])
    windows = {s.layer.name: s.window for s in k.plan.pair.steps if s.window is not None}
    assert tc._classify(windows["conv"].rows.terms).kind == "diag"
    assert tc._classify(windows["avgpool"].rows.terms).kind == "product"
    assert tc._classify(((0, 1), (2, 0))).kind == "list"
    gap = next(s.window for s in ntkc.compile(SMALL["small_gap"]).plan.pair.steps if s.layer.name == "gap")
    assert tc.is_full_sum(gap) and not tc.is_full_sum(windows["avgpool"])
    assert tc._reduce_range(windows["flatten"].rows) == (0, 0)  # flatten of a 1x1 map


def test_band_size_has_no_empty_slots():
    for n in range(1, 7):
        assert tc.band_size(Band(n, -(n - 1), n - 1)) == n * n
        assert tc.band_size(Band(n, 0, 0)) == n
        if n > 1:
            assert tc.band_size(Band(n, -1, 1)) == 3 * n - 2


def test_custom_activation_math_renders(monkeypatch):
    """A rule using every op of the vocabulary renders; constant subgraphs fold."""
    from ntkc.rules.ops import OPS, TraceOps, Node
    from ntkc.backends.triton.render import CodeBuffer, MathRenderer

    ops = TraceOps()
    u, v1, v2 = (Node("input", (n,)) for n in ("u", "v1", "v2"))
    terms = []
    for name, arity in OPS.items():
        if name in ("lt", "le", "gt", "ge"):
            continue
        args = [u, v1, v2][:arity]
        if name == "where":
            args = [ops.lt(u, v1), v1, v2]
        terms.append(getattr(ops, name)(*args))
    expr = terms[0]
    for t in terms[1:]:
        expr = expr + t
    buf = CodeBuffer()
    r = MathRenderer(buf, "m_")
    out = r.render({"a": expr, "b": ops.sqrt(4.0) * 1.5 + u * 0.0}, {"u": "u", "v1": "v1", "v2": "v2"}, like="u")
    assert "3.0" in out["b"] and "sqrt(4.0)" not in out["b"]
    assert {"atan2", "asin", "acos", "atan", "tanh", "sqrt", "rsqrt"} <= r.helpers
    const = r.render({"c": ops.atan2(1.0, 1.0)}, {"u": "u"}, like="u")["c"]
    assert const.startswith("tl.full(u.shape, 0.785398")


# -- the code cache -------------------------------------------------------------------------------


def test_codecache_writes_atomically_and_imports_from_the_real_path(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKC_CACHE_DIR", str(tmp_path))
    src = "import triton\nimport triton.language as tl\n\n\n@triton.jit\ndef k(x_ptr):\n    pass\n"
    path = codecache.write(src, "probe")
    assert path.parent == tmp_path and path.read_text() == src
    assert codecache.write(src, "probe") == path  # same source, same file
    assert codecache.write(src + "\n", "probe") != path  # the hash covers the source
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    mod = codecache.load(src, "probe")
    assert Path(mod.__file__) == path
    assert Path(inspect.getsourcefile(mod.k.fn)) == path
    assert codecache.load(src, "probe") is mod


def test_codecache_hash_covers_versions(monkeypatch):
    a = codecache.source_hash("x")
    monkeypatch.setattr(codecache, "versions", lambda: "other versions")
    assert codecache.source_hash("x") != a


def test_source_is_generated_without_triton_installed():
    """Printing the kernels (`--emit triton`) reads the helpers (v1 and v2) as text: it needs no triton."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['triton'] = None\n"  # any `import triton` now fails
            "from ntkc.cli import main\n"
            "sys.exit(main(['compile', 'examples/cntk_gap_d3.arch', '--emit', 'triton']))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "def stage0_kernel(" in run.stdout and "def atan2_affine(" in run.stdout and "def fms2(" in run.stdout


def test_cli_emits_the_module(capsys):
    from ntkc.cli import main

    assert main(["compile", str(ROOT / "examples" / "digits_v.arch"), "--emit", "triton"]) == 0
    assert "def stage0_kernel(" in capsys.readouterr().out
