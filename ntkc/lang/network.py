"""From syntax records to a validated `Network`: rules looked up, parameters typed, shapes inferred.

Every user mistake becomes an `ArchError` pointing at the offending name, parameter or value.
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..rules.base import LayerError, LayerRule, Param, Params, ResidualFork, ResidualJoin, Shape
from ..rules.loader import load_rules
from ..rules.registry import check_math, check_window, get_rule, known_rules, suggest
from ..errors import ArchError, RuleError, Span
from .syntax import LayerSyntax, ParamSyntax, RepeatSyntax, ResidualSyntax, UseSyntax, Value, parse

MAX_LAYERS = 100_000
MAX_INT = 2**31 - 1  # integer parameters (sizes, strides) beyond this are refused as too large


@dataclass(frozen=True)
class Layer:
    """One layer of a network: its rule, typed parameters, source span and shapes."""

    rule: LayerRule
    params: Params
    span: Span
    in_shape: Shape
    out_shape: Shape

    @property
    def name(self) -> str:
        return self.rule.name

    def describe(self, defaults: bool = False) -> str:
        """`name key=value ...`; parameters left at their default are shown only if asked."""
        declared = {p.name: p.default for p in self.rule.params}
        if self.rule.kind == "join":
            return "end of residual"
        args = " ".join(f"{k}={_show(v)}" for k, v in self.params.items()
                        if defaults or self.rule.kind == "input" or v != declared.get(k))
        return f"{self.name} {args}".strip()


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@dataclass(frozen=True)
class Network:
    """A validated architecture: the input shape and the layers in order.

    `augment` holds the augmentation statements (such as `flip`), which change how the kernel is
    evaluated, not the layers; `uses` the rule modules the source loaded."""

    source: str
    filename: str
    input: Shape
    input_span: Span
    layers: tuple[Layer, ...]
    augment: tuple[Layer, ...] = ()
    uses: tuple[str, ...] = ()

    @property
    def augment_copies(self) -> int:
        """How many transformed copies of an image the kernel averages over (1: no augmentation)."""
        copies = 1
        for a in self.augment:
            copies *= 1 + len(a.rule.transforms(a.params))
        return copies

    @property
    def output(self) -> Shape:
        return self.layers[-1].out_shape if self.layers else self.input


def load(spec: str | Path | bytes, filename: str | None = None, *, user_rules: bool = True) -> Network:
    """Build a `Network` from a path to a `.arch` file or from `.arch` source text (str, or UTF-8
    bytes). `user_rules=False` refuses `use` lines, which would run a rule module's Python code:
    use it for files from elsewhere."""
    if isinstance(spec, (bytes, bytearray)):
        return build(_decode(bytes(spec), filename or "<arch>"), filename or "<arch>", user_rules=user_rules)
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec and spec.strip().endswith(".arch")):
        path = Path(spec)
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise ArchError(f"cannot read architecture file {str(path)!r}: {err.strerror or err}",
                            hint="pass a path to an existing .arch file, or the .arch text itself") from None
        name = filename or str(path)
        return build(_decode(raw, name), name, user_rules=user_rules)
    if not isinstance(spec, str):
        raise ArchError(f"an architecture is a path to a .arch file or .arch source text, got {type(spec).__name__}",
                        hint='e.g. ntkc.compile("examples/cntk_v_d3.arch")')
    return build(spec, filename or "<arch>", user_rules=user_rules)


def _decode(raw: bytes, filename: str) -> str:
    """`.arch` bytes as text: UTF-8, with or without a byte-order mark; anything else is an error
    located at the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start
        good = raw[:start].decode("utf-8-sig", errors="replace")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        shown = raw.decode("utf-8-sig", errors="replace")
        raise ArchError(f"the file is not UTF-8 text: byte 0x{raw[start]:02x} cannot be decoded", Span(filename, line, column, shown),
                        "save the file as UTF-8 (plain ASCII is UTF-8)") from None


def build(source: str, filename: str = "<arch>", *, user_rules: bool = True) -> Network:
    if source.startswith("\ufeff"):  # a byte-order mark is no part of the text
        source = source[1:]
    statements = parse(source, filename)
    uses = tuple(_use(s, filename, user_rules) for s in statements if isinstance(s, UseSyntax))
    flat = _expand([s for s in statements if not isinstance(s, UseSyntax)])
    if not flat:
        raise ArchError("the architecture is empty", Span(filename, 1, 1, source),
                        "start with `input height=H width=W channels=C`, then layers, then a readout")
    first, rest = flat[0], flat[1:]
    if isinstance(first, (_Open, _Close)) or first.name != "input":
        where = first.syntax.span if isinstance(first, (_Open, _Close)) else first.span
        raise ArchError("the first statement must be the `input` line", where,
                        "start with `input height=H width=W channels=C`")
    in_params = _typed_params(get_rule("input"), first)
    shape = get_rule("input").out_shape(in_params)
    layers: list[Layer] = []
    augment: list[Layer] = []
    blocks: list[tuple[int, _Open]] = []  # open residual blocks: (index of the fork, its statement)
    for stmt in rest:
        if isinstance(stmt, _Open):
            params = _typed_params(ResidualFork(), stmt.syntax)
            blocks.append((len(layers), stmt))
            layers.append(Layer(ResidualFork(), params, stmt.syntax.span, shape, shape))
            continue
        if isinstance(stmt, _Close):
            start, opened = blocks.pop()
            _check_branch(layers, start, opened.syntax)
            fork = layers[start]
            layers.append(Layer(ResidualJoin(), fork.params, stmt.syntax.end, shape, shape))
            continue
        if stmt.name == "input":
            raise ArchError("`input` may appear only once, as the first statement", stmt.span,
                            "remove this line")
        rule = _lookup(stmt)
        params = _typed_params(rule, stmt)
        if rule.kind == "augment":
            if layers:
                raise ArchError(f"`{rule.name}` augments the images, so it must come right after `input`",
                                stmt.span, f"move `{stmt.name}` to the line after `input`")
            augment.append(Layer(rule, params, stmt.span, shape, shape))
            continue
        try:
            if rule.kind == "activation" and not all(not p.required for p in rule.params):
                check_math(rule, params)
            rule.check(params, shape)
            window = check_window(rule, params, shape) if rule.kind == "window" else None
            out = rule.out_shape(params, shape)
        except LayerError as err:
            raise ArchError(err.message, _span_for(stmt, err.param), err.hint) from None
        except RuleError as err:
            raise ArchError(err.message, stmt.span, err.hint) from None
        except Exception as err:  # noqa: BLE001  (a rule's own code failed on this layer)
            raise _rule_failed(rule, err, stmt.span) from None
        if blocks and window is not None and window.mixes:
            raise ArchError(
                f"`{rule.name}` mixes displacement planes, which a residual branch may not do",
                stmt.span, "a residual branch holds convs (same or valid padding, not circular), activations and "
                           "dense layers; put pooling, lap and circular convs outside the block")
        layers.append(Layer(rule, params, stmt.span, shape, out))
        shape = out
    if not shape.reduced:
        where = layers[-1].span if layers else first.span
        raise ArchError(
            f"the network ends on a {shape} map, not on a scalar kernel",
            where, "end with a readout: `gap` (global average pooling) or `flatten`, optionally followed by `dense`",
        )
    net = Network(source, filename, Shape(in_params.height, in_params.width, in_params.channels),
                  first.span, tuple(layers), tuple(augment), uses)
    for aug in augment:
        try:
            aug.rule.check_network(aug.params, net)
        except LayerError as err:
            raise ArchError(err.message, aug.span, err.hint) from None
        except Exception as err:  # noqa: BLE001
            raise _rule_failed(aug.rule, err, aug.span) from None
    return net


def _rule_failed(rule: LayerRule, err: Exception, span: Span) -> ArchError:
    """A located error for an exception raised inside a rule's code (a user rule's bug, or a
    built-in rule's arithmetic overflowing on extreme parameters)."""
    if isinstance(err, MemoryError):
        return ArchError(f"`{rule.name}` ran out of memory on this layer", span,
                         "a parameter or the map is far too large")
    if isinstance(err, (OverflowError, ZeroDivisionError)) and rule.__module__.startswith("ntkc."):
        return ArchError(f"`{rule.name}` cannot be computed with these parameters ({type(err).__name__}: {err})",
                         span, "a parameter is far too large or too small; use values of a sensible size")
    return ArchError(f"rule `{rule.name}` failed on this layer: {type(err).__name__}: {err}", span,
                     f"this is a bug in the rule's code (class {type(rule).__name__} in {rule.__module__}); fix the "
                     "rule, or raise ntkc.rules.LayerError there for parameters it cannot take")


def _use(stmt: UseSyntax, filename: str, allowed: bool = True) -> str:
    """Load the rule module of a `use` line; paths are relative to the .arch file's folder.
    Loading runs the module's Python code, so `allowed=False` refuses it before anything runs."""
    if not allowed:
        raise ArchError(f"this file loads user rules (`use \"{stmt.target}\"`), which would run Python code, "
                        "and user rules are refused here", stmt.span,
                        "load only files you trust; to allow it, drop --no-user-rules (user_rules=False in Python)")
    base = Path(filename).parent if not filename.startswith("<") else Path(".")
    try:
        load_rules(stmt.target, base)
    except RuleError as err:
        raise ArchError(err.message, stmt.span, err.hint) from None
    return stmt.target


@dataclass(frozen=True)
class _Open:
    """Where a residual block starts, in the flattened statement list."""

    syntax: ResidualSyntax


@dataclass(frozen=True)
class _Close:
    """Where a residual block ends, in the flattened statement list."""

    syntax: ResidualSyntax


def _expand(statements) -> list:
    """The statements with every `repeat` unrolled; a residual block becomes _Open, its body
    and _Close."""
    out: list = []

    def visit(stmts, factor):
        for s in stmts:
            if isinstance(s, RepeatSyntax):
                if s.count < 1:
                    raise ArchError(f"`repeat {s.count}` repeats nothing", s.span,
                                    "use a count of at least 1, or delete the block")
                if factor * s.count * max(1, len(s.body)) > MAX_LAYERS:
                    raise ArchError(f"this repeat makes more than {MAX_LAYERS} layers", s.span,
                                    "use a smaller count")
                for _ in range(s.count):
                    visit(s.body, factor * s.count)
            elif isinstance(s, ResidualSyntax):
                out.append(_Open(s))
                visit(s.body, factor)
                out.append(_Close(s))
            else:
                out.append(s)
            if len(out) > MAX_LAYERS:
                raise ArchError(f"more than {MAX_LAYERS} layers", s.span, "use a smaller network")

    visit(statements, 1)
    return out


def _check_branch(layers: list[Layer], start: int, syntax: ResidualSyntax) -> None:
    """A residual branch (the layers after the fork at `start`) must keep the map's shape and end
    in fresh zero-mean weights, which makes it uncorrelated with the shortcut."""
    fork = layers[start]
    branch = layers[start + 1:]
    if not any(l.rule.fresh_weights for l in layers[:start]):
        raise ArchError("a residual block must come after the first `conv`: it adds its branch to a feature map "
                        "of the network's width, and the input's channels are fixed", syntax.span,
                        "put a `conv` between `input` and the block")
    if not branch:
        raise ArchError("this residual block is empty", syntax.span,
                        "put the branch's layers inside the braces, ending in a `conv` (or `dense`)")
    last = branch[-1]
    if not last.rule.fresh_weights:
        what = "another residual block" if last.rule.kind == "join" else f"`{last.name}`"
        raise ArchError(
            f"this residual branch ends in {what}, which is correlated with the shortcut, so the block's kernel "
            "is not the sum of the two", last.span,
            "end the branch with a `conv` (or `dense` after a readout): its fresh zero-mean weights make "
            "x and f(x) uncorrelated, as in a ResNet's residual branch")
    if last.out_shape != fork.in_shape:
        raise ArchError(
            f"a residual branch must keep the map's shape, but this one turns {fork.in_shape} into {last.out_shape}",
            last.span, "use stride 1 and padding=same inside the block (a shortcut with its own conv is not supported)")


def _lookup(stmt: LayerSyntax) -> LayerRule:
    try:
        return get_rule(stmt.name)
    except KeyError:
        close = suggest(stmt.name)
        hint = f"did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else None
        names = ", ".join(n for n in known_rules() if n != "input")
        hint = (hint + " " if hint else "") + f"known layers: {names}"
        raise ArchError(f"unknown layer `{stmt.name}`", stmt.span, hint) from None


def _span_for(stmt: LayerSyntax, param: str | None) -> Span:
    for p in stmt.params:
        if p.name == param:
            return p.value.span
    return stmt.span


def _typed_params(rule: LayerRule, stmt: LayerSyntax) -> Params:
    declared = {p.name: p for p in rule.params}
    values: dict = {}
    for ps in stmt.params:
        if ps.name not in declared:
            close = difflib.get_close_matches(ps.name, list(declared), n=2, cutoff=0.5)
            listing = ", ".join(p.describe() for p in rule.params) or "none"
            hint = (f"did you mean `{close[0]}`? " if close else "") + f"`{rule.name}` takes: {listing}"
            raise ArchError(f"`{rule.name}` has no parameter `{ps.name}`", ps.span, hint)
        if ps.name in values:
            raise ArchError(f"parameter `{ps.name}` is given twice", ps.span, "keep one of them")
        values[ps.name] = _convert(declared[ps.name], ps, rule)
    missing = [p for p in rule.params if p.required and p.name not in values]
    if missing:
        need = " ".join(f"{p.name}=..." for p in missing)
        raise ArchError(f"`{rule.name}` is missing required parameter(s): {', '.join(p.name for p in missing)}",
                        stmt.span, f"add {need}")
    return Params({p.name: values.get(p.name, p.default) for p in rule.params})


def _clip(text: str, limit: int = 24) -> str:
    """A value as written, shortened for a message (a 400-digit number need not be shown whole)."""
    return text if len(text) <= limit else f"{text[:limit - 8]}...{text[-5:]} ({len(text)} characters)"


def _convert(prm: Param, ps: ParamSyntax, rule: LayerRule):
    v: Value = ps.value
    shown = _clip(v.text)
    bad = lambda what: ArchError(  # noqa: E731
        f"`{prm.name}` of `{rule.name}` must be {what}, got `{shown}`", v.span, f"expected {prm.describe()}")
    if prm.type == "bool":
        if v.kind == "word" and v.value in ("true", "false"):
            return v.value == "true"
        raise bad("true or false")
    if prm.type == "choice":
        if v.kind == "word" and v.value in prm.choices:
            return v.value
        close = difflib.get_close_matches(str(v.text), prm.choices, n=1, cutoff=0.5)
        hint = (f"did you mean `{close[0]}`? " if close else "") + f"choose one of: {', '.join(prm.choices)}"
        raise ArchError(f"`{prm.name}` of `{rule.name}` must be one of {', '.join(prm.choices)}, got `{shown}`",
                        v.span, hint)
    if v.kind == "sqrt":
        if v.value[1] < 0:
            raise ArchError(f"sqrt of a negative number: `{shown}`", v.span, "use sqrt(N) with N >= 0")
        number = math.sqrt(v.value[1])
    elif v.kind == "number":
        number = v.value
    else:
        raise bad("an integer" if prm.type == "int" else "a number")
    if prm.type == "int":
        if isinstance(number, float) and math.isinf(number) or isinstance(number, int) and abs(number) > MAX_INT:
            raise ArchError(f"`{prm.name}` of `{rule.name}` is too large, got `{shown}`", v.span,
                            f"integer parameters are at most {MAX_INT}")
        if isinstance(number, float):
            if v.kind == "number" and number.is_integer() and "." not in v.text and "e" not in v.text.lower():
                number = int(number)
            else:
                raise bad("an integer")
    else:
        number = float(number)
        if not math.isfinite(number):
            raise bad("a finite number")
    if prm.minimum is not None and (number < prm.minimum or (prm.exclusive_minimum and number == prm.minimum)):
        op = ">" if prm.exclusive_minimum else ">="
        raise ArchError(f"`{prm.name}` of `{rule.name}` must be {op} {_show(prm.minimum)}, got `{shown}`",
                        v.span, f"expected {prm.describe()}")
    return number
