"""Parsing, checks and error messages of the .arch language (golden files in tests/golden/).

Set NTKC_REGEN_GOLDEN=1 to rewrite the expected files after an intended change, then review the
diff.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import ntkc
from ntkc.lang import build, load
from ntkc.lang.syntax import parse
from ntkc.errors import ArchError, ArchSyntaxError, NtkcError

from support.paths import GOLDEN  # noqa: E402
REGEN = os.environ.get("NTKC_REGEN_GOLDEN") == "1"


def _check_golden(path: Path, text: str) -> None:
    if REGEN or not path.exists():
        path.write_text(text)
        if not REGEN:
            pytest.fail(f"golden file {path.name} was missing and has been written; review it")
    assert text == path.read_text(), f"output differs from {path}"


def _network_text(net) -> str:
    lines = [f"input {net.input}"]
    for layer in net.layers:
        lines.append(f"{layer.span.line}:{layer.span.column} {layer.describe(defaults=True)} "
                     f"[{layer.in_shape} -> {layer.out_shape}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("src", sorted((GOLDEN / "parse").glob("*.arch")), ids=lambda p: p.stem)
def test_parse_golden(src: Path):
    net = load(src)
    _check_golden(src.with_suffix(".txt"), _network_text(net))


@pytest.mark.parametrize("src", sorted((GOLDEN / "errors").glob("*.arch")), ids=lambda p: p.stem)
def test_error_golden(src: Path):
    with pytest.raises(ArchError) as info:
        build(src.read_text(), src.name)
    message = str(info.value)
    assert message.startswith(f"{src.name}:"), message  # file:line:col first
    assert "\n    " in message and "^" in message  # the source line and a caret
    assert "Traceback" not in message and "lark" not in message.lower()
    _check_golden(src.with_suffix(".txt"), message + "\n")


def test_every_error_class_is_covered():
    names = {p.stem for p in (GOLDEN / "errors").glob("*.arch")}
    wanted = ["syntax_", "unknown_layer", "unknown_parameter", "missing_parameter", "repeated_parameter",
              "ill_typed", "bad_value", "map_shrinks", "conv_after_readout", "missing_input", "no_readout",
              "repeat_zero", "dense_before_readout", "residual_"]
    for w in wanted:
        assert any(n.startswith(w) for n in names), w


def test_syntax_errors_are_arch_errors_and_ntkc_errors():
    with pytest.raises(ArchSyntaxError) as info:
        ntkc.compile("input height=2 width=2 channels=1\nconv size 3\nflatten\n")
    assert isinstance(info.value, NtkcError)
    assert info.value.span.line == 2 and info.value.span.column == 11


def test_unknown_layer_suggests_close_names():
    with pytest.raises(ArchError, match="did you mean `relu`"):
        build("input height=4 width=4 channels=1\nrelux\nflatten\n")


def test_values_numbers_words_and_sqrt():
    net = build("input height=4 width=4 channels=1\nconv w_std=sqrt(2) b_std=1e-1 padding=valid size=1\nflatten\n")
    p = net.layers[0].params
    assert p.w_std == pytest.approx(2 ** 0.5) and p.b_std == pytest.approx(0.1)
    assert p.padding == "valid" and p.size == 1 and p.trainable is True


def test_repeat_expands_nested_blocks_in_order():
    text = "input height=4 width=4 channels=1\nrepeat 2 {\n repeat 3 {\n  conv\n }\n relu\n}\ngap\n"
    names = [l.name for l in build(text).layers]
    assert names == ["conv"] * 3 + ["relu"] + ["conv"] * 3 + ["relu"] + ["gap"]


def test_comments_blank_lines_and_crlf():
    text = "# header\r\n\r\ninput height=3 width=3 channels=1  # trailing\r\n\r\nconv\r\nflatten"
    assert [l.name for l in build(text).layers] == ["conv", "flatten"]


def test_parse_positions_point_at_names():
    (layer,) = parse("  conv size=3\n")
    assert (layer.span.line, layer.span.column) == (1, 3)
    assert (layer.params[0].span.column, layer.params[0].value.span.column) == (8, 13)


def test_compile_accepts_path_and_text(tmp_path):
    text = "input height=3 width=3 channels=1\nconv\nflatten\n"
    f = tmp_path / "net.arch"
    f.write_text(text)
    from_path, from_text = ntkc.compile(f).arch, ntkc.compile(text).arch
    describe = lambda net: [(l.describe(True), l.span.line, l.span.column, l.in_shape, l.out_shape) for l in net.layers]  # noqa: E731
    assert describe(from_path) == describe(from_text) and from_path.source == from_text.source
    assert from_text.filename == "<arch>"
    k = ntkc.compile(str(f))
    assert k.arch.filename == str(f)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ArchError, match="cannot read architecture file"):
        ntkc.compile(str(tmp_path / "nope.arch"))


def test_shapes_for_strides_pools_and_valid_padding():
    net = build("input height=9 width=7 channels=2\nconv stride=2\nconv size=3 padding=valid\n"
                "avgpool size=2 stride=1\ngap\n")
    shapes = [(l.out_shape.height, l.out_shape.width) for l in net.layers]
    assert shapes == [(5, 4), (3, 2), (2, 1), (1, 1)]
    assert net.output.reduced
