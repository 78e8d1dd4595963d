"""Parsing `.arch` text into syntax records (frozen dataclasses with source spans).

The grammar lives in `arch.lark`; this module turns Lark's tree into `LayerSyntax` and
`RepeatSyntax` records and Lark's exceptions into `ArchSyntaxError`s a user can act on.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import ArchSyntaxError, Span, source_lines

MAX_NESTING = 100  # blocks inside each other; deeper is refused before parsing
MAX_DIGITS = 100  # a number written with more digits is read as too large (never converted exactly)


@dataclass(frozen=True)
class Value:
    """A parameter value as written: `kind` is 'number', 'word' or 'sqrt'."""

    kind: str
    value: float | int | str
    text: str
    span: Span


@dataclass(frozen=True)
class ParamSyntax:
    name: str
    value: Value
    span: Span


@dataclass(frozen=True)
class LayerSyntax:
    name: str
    params: tuple[ParamSyntax, ...]
    span: Span


@dataclass(frozen=True)
class RepeatSyntax:
    count: int
    body: tuple["LayerSyntax | RepeatSyntax | ResidualSyntax", ...]
    span: Span


@dataclass(frozen=True)
class ResidualSyntax:
    """`residual key=value ... { ... }`: y = x + scale * f(x), f the block's statements."""

    params: tuple[ParamSyntax, ...]
    body: tuple["LayerSyntax | RepeatSyntax | ResidualSyntax", ...]
    span: Span        # of the word `residual`
    end: Span         # of the closing `}`


@dataclass(frozen=True)
class UseSyntax:
    """`use "target"`: load a rule module (a .py path or a dotted module name)."""

    target: str
    span: Span  # of the quoted target


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files(__package__).joinpath("arch.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _number(text: str) -> float | int:
    """The value of a SIGNED_NUMBER token; an integer too long to be meant (or to convert: Python
    caps int() at 4,300 digits) reads as +-inf, so that the checks report it as too large."""
    digits = text.lstrip("+-")
    if len(digits) > MAX_DIGITS and digits.isdigit():
        return float("-inf") if text.startswith("-") else float("inf")
    try:
        return int(text)
    except ValueError:
        return float(text)


def _count(text: str) -> int:
    """A repeat count; one too long to convert is kept as a count too large for any network."""
    return int(text) if len(text) <= MAX_DIGITS else 10 ** MAX_DIGITS


class _ToSyntax(Transformer):
    def __init__(self, filename: str, source: str):
        super().__init__()
        self.filename = filename
        self.source = source

    def _span(self, meta_or_token, length: int | None = None) -> Span:
        line, col = meta_or_token.line, meta_or_token.column
        if length is None:
            end = getattr(meta_or_token, "end_column", None)
            end_line = getattr(meta_or_token, "end_line", line)
            length = (end - col) if (end is not None and end_line == line) else 1
        return Span(self.filename, line, col, self.source, max(1, length))

    @v_args(meta=True)
    def number(self, meta, children):
        (tok,) = children
        return Value("number", _number(str(tok)), str(tok), self._span(tok))

    @v_args(meta=True)
    def sqrt(self, meta, children):
        (tok,) = children
        return Value("sqrt", ("sqrt", _number(str(tok))), f"sqrt({tok})", self._span(meta))

    @v_args(meta=True)
    def word(self, meta, children):
        (tok,) = children
        return Value("word", str(tok), str(tok), self._span(tok))

    @v_args(meta=True)
    def param(self, meta, children):
        name, value = children
        return ParamSyntax(str(name), value, self._span(name))

    @v_args(meta=True)
    def layer(self, meta, children):
        name, *params = children
        return LayerSyntax(str(name), tuple(params), self._span(name))

    @v_args(meta=True)
    def repeat(self, meta, children):
        count, *body = children
        return RepeatSyntax(_count(str(count)), tuple(body), self._span(meta, length=len("repeat")))

    @v_args(meta=True)
    def residual(self, meta, children):
        *items, close = children
        params = tuple(c for c in items if isinstance(c, ParamSyntax))
        body = tuple(c for c in items if not isinstance(c, ParamSyntax))
        return ResidualSyntax(params, body, self._span(meta, length=len("residual")), self._span(close, 1))

    @v_args(meta=True)
    def use(self, meta, children):
        (tok,) = children
        return UseSyntax(str(tok)[1:-1], self._span(tok))

    def start(self, children):
        return tuple(children)


# Common slips, named: Lark matches a failing text against these to pick the message.
_SLIPS = {
    "expected `=` between a parameter's name and its value": [
        "conv size 3\n", "conv size 3", "dense w_std 1.0\n", "conv size",
    ],
    "a parameter has `=` but no value after it": [
        "conv size=\n", "conv size=", "conv size= stride=2\n", "conv size=sqrt\n",
    ],
    "a `repeat` or `residual` block is not closed with `}`": [
        "repeat 2 {\nconv\n", "repeat 2 {\n", "repeat 2 {\nrepeat 3 {\nrelu\n}\n",
        "residual {\nconv\n", "residual {\n",
    ],
    "`residual` needs its `{` on the same line: `residual {` or `residual scale=S {`": [
        "residual\n{\nconv\n}\n", "residual conv\n",
    ],
    "`repeat` needs a count and a `{` on the same line: `repeat N {`": [
        "repeat {\nconv\n}\n", "repeat 2\n{\nconv\n}\n", "repeat x {\n}\n", "repeat 2 conv\n",
    ],
    "a `}` closes no block": ["conv\n}\n", "}\n", "}"],
}

_HINTS = {
    "expected `=` between a parameter's name and its value":
        "write parameters as `name=value`, for example `size=3`",
    "a parameter has `=` but no value after it": "give a number, a word such as `same`, or `sqrt(2)`",
    "a `repeat` or `residual` block is not closed with `}`": "add a line with `}` after the block's last statement",
    "`residual` needs its `{` on the same line: `residual {` or `residual scale=S {`":
        "for example:  residual {   (newline)  conv  (newline)  relu  (newline)  conv  (newline)  }",
    "`repeat` needs a count and a `{` on the same line: `repeat N {`":
        "for example:  repeat 3 {   (newline)  conv  (newline)  relu  (newline)  }",
    "a `}` closes no block": "remove it, or open the block with `repeat N {` or `residual {`",
}


# The parser's state differs at the first statement and later ones: try the slips at both.
_SLIPS = {label: examples + ["x\n" + e for e in examples] + ["x\nrepeat 2 {\n" + e for e in examples]
          for label, examples in _SLIPS.items()}


def parse(source: str, filename: str = "<arch>") -> tuple[LayerSyntax | RepeatSyntax | UseSyntax, ...]:
    """Parse `.arch` text into syntax records; raise `ArchSyntaxError` on a syntax error.

    `use` statements may appear at the top level only (not inside a block)."""
    if source.startswith("\ufeff"):  # a UTF-8 byte-order mark is no part of the text
        source = source[1:]
    if not source.endswith("\n"):
        source += "\n"
    _check_nesting(source, filename)
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as err:
        raise _syntax_error(err, source, filename) from None
    return _ToSyntax(filename, source).transform(tree)


def _syntax_error(err: UnexpectedInput, source: str, filename: str) -> ArchSyntaxError:
    line = max(1, err.line if err.line and err.line > 0 else source.count("\n"))
    column = max(1, err.column if err.column and err.column > 0 else 1)
    if isinstance(err, UnexpectedToken) and err.token.type == "$END":
        # Point just past the last non-blank line instead of at the end of the file.
        lines = source_lines(source)
        line = max((i + 1 for i, l in enumerate(lines) if l.strip()), default=1)
        column = len(lines[line - 1]) + 1 if lines else 1
    span = Span(filename, line, column, source)
    label = None
    all_lines = source_lines(source)
    text_line = all_lines[line - 1] if 0 < line <= len(all_lines) else ""
    if isinstance(err, UnexpectedToken) and err.token.type == "USE":
        return ArchSyntaxError("`use` is allowed only at the top level, not inside a `repeat` or `residual` block", span,
                               "move the `use` line to the top of the file")
    if isinstance(err, (UnexpectedToken, UnexpectedCharacters)) and text_line.split()[:1] == ["use"]:
        return ArchSyntaxError("`use` takes one quoted path or module name", span,
                               'write  use "my_rules.py"  (relative to this file) or  use "package.module"')
    if isinstance(err, UnexpectedToken) and err.token.type == "$END" and _open_blocks(source) > 0:
        label = "a `repeat` or `residual` block is not closed with `}`"
        return ArchSyntaxError(label, span, _HINTS[label])
    try:
        label = err.match_examples(_parser().parse, _SLIPS, use_accepts=True)
    except Exception:  # match_examples re-parses; never let that mask the real error
        label = None
    if label is not None:
        return ArchSyntaxError(label, span, _HINTS[label])
    if isinstance(err, UnexpectedCharacters):
        char = text_line[column - 1] if column <= len(text_line) else "?"
        return ArchSyntaxError(
            f"unexpected character {char!r}", span,
            "statements are `NAME key=value ...`, one per line; values are numbers, words or sqrt(N)",
        )
    if isinstance(err, UnexpectedEOF):
        return ArchSyntaxError("the file ends in the middle of a statement", span)
    token = getattr(err, "token", None)
    shown = "end of file" if token is None or token.type == "$END" else repr(str(token))
    if token is not None and token.type == "_NL":
        shown = "end of line"
    return ArchSyntaxError(
        f"unexpected {shown}", span,
        "statements are `NAME key=value ...`, one per line; blocks are `repeat N {` ... `}` and `residual {` ... `}`",
    )


def _open_blocks(source: str) -> int:
    text = "\n".join(line.split("#", 1)[0] for line in source_lines(source))
    return text.count("{") - text.count("}")


def _check_nesting(source: str, filename: str) -> None:
    """Refuse blocks (`repeat`, `residual`) nested deeper than MAX_NESTING before parsing (the tree would be
    too deep to transform), at the brace that goes too deep."""
    depth = 0
    for number, line in enumerate(source_lines(source), 1):
        code = line.split("#", 1)[0]
        for column, char in enumerate(code, 1):
            if char == "{":
                depth += 1
                if depth > MAX_NESTING:
                    raise ArchSyntaxError(f"blocks are nested more than {MAX_NESTING} deep",
                                          Span(filename, number, column, source),
                                          "nest fewer blocks; a block that holds only another block is one "
                                          "block with the product of the counts")
            elif char == "}":
                depth = max(0, depth - 1)
