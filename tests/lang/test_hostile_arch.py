"""Hostile `.arch` input (issue 15): odd encodings, huge numbers, deep nesting, strange line
breaks, user rules that raise. Each must end in a located `ArchError`, never another exception."""
from __future__ import annotations

import pytest

import ntkc
from ntkc.errors import ArchError, NtkcError
from ntkc.lang import build, load

HEAD = "input height=8 width=8 channels=1\n"
TAIL = "relu\nflatten\n"


def _located(src, filename="<arch>") -> ArchError:
    with pytest.raises(ArchError) as info:
        build(src, filename)
    err = info.value
    assert err.span is not None and err.span.line >= 1, str(err)
    text = str(err)
    assert text.startswith(f"{filename}:{err.span.line}:{err.span.column}: "), text
    return err


def test_a_utf8_bom_is_accepted_in_text_and_in_files(tmp_path):
    net = build("\ufeff" + HEAD + "conv\n" + TAIL)
    assert net.input.height == 8 and net.layers[0].span.line == 2
    f = tmp_path / "bom.arch"
    f.write_bytes(b"\xef\xbb\xbf" + (HEAD + "conv\n" + TAIL).encode())
    assert load(f).layers[0].span.column == 1


def test_a_file_that_is_not_utf8_is_located_at_the_bad_byte(tmp_path):
    f = tmp_path / "latin1.arch"
    f.write_bytes((HEAD + "conv # caf").encode() + b"\xe9\n" + TAIL.encode())
    with pytest.raises(ArchError) as info:
        load(f)
    err = info.value
    assert err.span is not None and (err.span.line, err.span.column) == (2, 11)
    assert "UTF-8" in err.message and "0xe9" in err.message


@pytest.mark.parametrize("value", ["1e300", "1e200", "sqrt(" + "9" * 400 + ")", "9" * 400, "1e400"],
                         ids=["1e300", "1e200", "sqrt400digits", "400digits", "1e400"])
def test_huge_weights_are_located_errors(value):
    err = _located(HEAD + f"conv w_std={value}\n" + TAIL)
    assert err.span.line == 2
    assert len(str(err).splitlines()[0]) < 300, "a 400-digit value is shortened in the message"


def test_a_5000_digit_repeat_count_is_a_located_error():
    err = _located(HEAD + "repeat " + "9" * 5000 + " {\nrelu\n}\nflatten\n")
    assert err.span.line == 2 and "layers" in err.message


def test_a_5000_digit_int_parameter_says_too_large():
    err = _located(HEAD + "conv size=" + "9" * 5000 + "\n" + TAIL)
    assert "too large" in err.message


def test_deeply_nested_repeats_are_a_located_error():
    depth = 500
    src = HEAD + "repeat 1 {\n" * depth + "relu\n" + "}\n" * depth + "flatten\n"
    err = _located(src)
    assert "nest" in err.message
    # moderate nesting still works
    ok = HEAD + "repeat 1 {\n" * 20 + "conv\nrelu\n" + "}\n" * 20 + "flatten\n"
    assert len(build(ok).layers) == 3


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085", "\x0c", "\x1c"], ids=["2028", "2029", "0085", "0c", "1c"])
def test_unicode_line_separators_do_not_break_the_error_reporter(sep):
    err = _located(HEAD + f"conv{sep} size=\n" + TAIL)
    assert err.span.line == 2
    assert "conv" in str(err).splitlines()[1]  # the caret line shows the real line 2


def test_use_of_a_file_that_is_not_python_is_a_located_error(tmp_path):
    err = _located('use "/etc/passwd"\n' + HEAD + "flatten\n")
    assert err.span.line == 1 and ".py" in err.message


def test_a_user_rule_whose_window_raises_is_located(tmp_path):
    mod = tmp_path / "broken_rules.py"
    mod.write_text(
        "from ntkc.rules import WindowRule, register\n"
        "@register\n"
        "class Broken(WindowRule):\n"
        "    '''broken: a window rule that fails.'''\n"
        "    name = 'broken_window'\n"
        "    def window(self, p, shape):\n"
        "        raise ZeroDivisionError('oops')\n")
    arch = tmp_path / "b.arch"
    arch.write_text(f'use "{mod.name}"\n' + HEAD + "broken_window\nflatten\n")
    with pytest.raises(ArchError) as info:
        load(arch)
    err = info.value
    assert err.span.line == 3 and "ZeroDivisionError" in err.message and "broken_window" in err.message


def test_user_rules_can_be_refused(tmp_path):
    mod = tmp_path / "side_effect.py"
    marker = tmp_path / "ran"
    mod.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    arch = tmp_path / "u.arch"
    arch.write_text(f'use "{mod.name}"\n' + HEAD + "conv\n" + TAIL)
    with pytest.raises(ArchError) as info:
        ntkc.compile(arch, user_rules=False)
    assert info.value.span.line == 1 and "user rules" in info.value.message
    assert not marker.exists(), "the module must not run when user rules are refused"
    ntkc.compile(arch)  # allowed by default
    assert marker.exists()


@pytest.mark.parametrize("spec", [None, 3, 2.5, ["a.arch"], b"\xff\xfe"])
def test_compile_of_a_non_text_argument_is_a_clear_error(spec):
    with pytest.raises(NtkcError) as info:
        ntkc.compile(spec)
    assert "path" in info.value.message or "UTF-8" in info.value.message


def test_compile_accepts_utf8_bytes():
    k = ntkc.compile((HEAD + "conv\n" + TAIL).encode())
    assert k.arch.input.width == 8


@pytest.mark.parametrize("target", ["a\x00b.py", "", "  ", "rules\x1b.py"], ids=["nul", "empty", "blank", "esc"])
def test_use_of_an_unusable_name_is_a_located_error(target):
    err = _located(f'use "{target}"\n' + HEAD + "flatten\n")
    assert err.span.line == 1 and "rule module" in err.message
