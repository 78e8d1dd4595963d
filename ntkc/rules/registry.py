"""The rule table: layer names to rules, with the checks every rule passes at registration."""
from __future__ import annotations

import difflib
import math

from ..errors import RuleError
from .ops import OPS, trace
from .base import (ActivationRule, AugmentRule, InputRule, LayerError, LayerRule, Param, Params, Shape, Window,
                   WindowRule, states, states_pointwise)

_RULES: dict[str, LayerRule] = {}
_TYPES = {"int", "float", "bool", "choice"}
RESERVED = ("repeat", "residual", "sqrt", "use")  # words of the .arch grammar


def register(rule=None, *, replace: bool = False):
    """Register a rule (a `LayerRule` subclass or instance) under its `name`.

    Usable as a class decorator. Raises `RuleError` when the rule is ill-formed: no name, a
    parameter of unknown type, a default that does not fit its type, or (for activations) math
    that uses an operation outside the ops vocabulary (which is exactly what the Triton renderer
    and the torch backend implement). Registering the same class again (a module loaded twice)
    replaces the old entry quietly. Returns what it was given.
    """
    if rule is None:  # @register(replace=True)
        return lambda r: register(r, replace=replace)
    inst = rule() if isinstance(rule, type) else rule
    name = getattr(inst, "name", "")
    where = f"rule {type(inst).__name__}"
    if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
        raise RuleError(f"{where} needs a `name` that is an identifier (not {', '.join(RESERVED)}), got {name!r}",
                        hint="set a class attribute, e.g. name = \"my_layer\"")
    if name in _RULES and not replace and not _same_class(_RULES[name], inst):
        raise RuleError(f"a rule named `{name}` is already registered ({type(_RULES[name]).__name__})",
                        hint="choose another name, or pass replace=True to override it")
    if not isinstance(inst, (WindowRule, ActivationRule, AugmentRule, InputRule)):
        raise RuleError(f"{where} must derive from WindowRule, ActivationRule or AugmentRule",
                        hint="from ntkc.rules import ActivationRule, WindowRule, AugmentRule")
    seen = set()
    for prm in inst.params:
        if not isinstance(prm, Param):
            raise RuleError(f"{where}: parameters must be `Param`s, got {prm!r}")
        if prm.name in seen:
            raise RuleError(f"{where}: parameter `{prm.name}` is declared twice")
        seen.add(prm.name)
        if prm.type not in _TYPES:
            raise RuleError(f"{where}: parameter `{prm.name}` has unknown type {prm.type!r}",
                            hint=f"use one of {sorted(_TYPES)}")
        if prm.type == "choice" and not prm.choices:
            raise RuleError(f"{where}: choice parameter `{prm.name}` lists no choices")
        if not prm.required and not _default_fits(prm):
            raise RuleError(f"{where}: the default {prm.default!r} of `{prm.name}` is not a valid {prm.type}")
    if isinstance(inst, ActivationRule):
        _check_activation_math(inst, where)
    _RULES[name] = inst
    return rule


def _same_class(old: LayerRule, new: LayerRule) -> bool:
    a, b = type(old), type(new)
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def _default_fits(prm: Param) -> bool:
    v = prm.default
    if prm.type == "bool":
        return isinstance(v, bool)
    if prm.type == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if prm.type == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return v in prm.choices


def default_params(rule: LayerRule) -> Params | None:
    """The rule's defaults, or None when a parameter is required."""
    if any(p.required for p in rule.params):
        return None
    return Params({p.name: p.default for p in rule.params})


def _check_activation_math(inst: ActivationRule, where: str) -> None:
    check_form(inst, where)
    params = default_params(inst)
    if params is None:
        return  # traced when a layer gives the required values (see `check_math`)
    check_math(inst, params, where)


def check_form(inst: ActivationRule, where: str) -> None:
    """RuleError unless the rule states its math as `maps` or as both `nngp` and `dfactor`."""
    if states(inst, "maps") or states_pointwise(inst):
        return
    given = [m for m in ("nngp", "dfactor") if states(inst, m)]
    lacks = "states only `" + given[0] + "`" if given else "states no math"
    raise RuleError(f"{where} {lacks}",
                    hint="define maps(self, p, ops, u, v1, v2, need_dfactor=True) returning (nngp, dfactor), "
                         "or both nngp(self, p, ops, u, v1, v2) and dfactor(self, p, ops, u, v1, v2)")


def check_math(inst: ActivationRule, params: Params, where: str | None = None) -> None:
    """Trace an activation's math as the rule states it (`maps`, or `nngp` and `dfactor`); raise
    RuleError if it states neither or leaves the ops vocabulary."""
    where = where or f"rule `{inst.name}`"
    if states(inst, "maps"):
        parts = (("maps", lambda ops, u, v1, v2: _pair(inst.maps(params, ops, u, v1, v2, True), True)),
                 ("maps(need_dfactor=False)", lambda ops, u, v1, v2: _pair(inst.maps(params, ops, u, v1, v2, False), False)))
    elif states_pointwise(inst):
        parts = (("nngp", lambda ops, u, v1, v2: inst.nngp(params, ops, u, v1, v2)),
                 ("dfactor", lambda ops, u, v1, v2: inst.dfactor(params, ops, u, v1, v2)))
    else:
        check_form(inst, where)
        return
    parts = tuple((part, fn, ("u", "v1", "v2")) for part, fn in parts)
    if states(inst, "phi"):  # the elementwise function of finite networks, in the same vocabulary
        parts += (("phi", lambda ops, x: inst.phi(params, ops, x), ("x",)),)
    for part, fn, inputs in parts:
        try:
            trace(fn, *inputs)
        except AttributeError as err:
            raise RuleError(
                f"{where}: `{part}` uses `ops.{err.args[0] if err.args else '?'}`, which is not in the ops vocabulary",
                hint="available: + - * / and " + ", ".join(f"ops.{n}" for n in sorted(OPS)),
            ) from None
        except TypeError as err:
            raise RuleError(f"{where}: `{part}` cannot be traced: {err}",
                            hint="write the math with + - * / and ops.* on its inputs (not Python's math "
                                 "module, numpy or `if` on their values; use ops.where)") from None


def _pair(result, need_dfactor: bool):
    """The traced value of a `maps` result, checking that it is (nngp, dfactor or None)."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"maps must return a pair (nngp, dfactor), got {type(result).__name__}")
    nngp, factor = result
    if need_dfactor and factor is None:
        raise TypeError("maps(..., need_dfactor=True) returned no derivative factor")
    return nngp if factor is None else nngp + factor


def check_window(rule: WindowRule, p: Params, shape: Shape) -> Window:
    """A window rule's window for this map, checked for consistency with the map and with the
    rule's own `out_shape`; LayerError (with the rule's name) when it is not."""
    w = rule.window(p, shape)
    where = f"rule `{rule.name}`"
    if not isinstance(w, Window):
        raise LayerError(f"{where}: `window` returned {type(w).__name__}, not a Window",
                         hint="return Window(rows=AxisWindow(...), cols=AxisWindow(...), weight=...)")
    for what, value in (("weight", w.weight), ("bias", w.bias)):
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if not finite:
            raise LayerError(f"{where}: the window's {what} is {value!r}, not a finite number",
                             hint="a parameter is too large (its square overflows); use values of a sensible size")
    for axis, ax, n in (("rows", w.rows, shape.height), ("cols", w.cols, shape.width)):
        problem = None
        if ax.n_in != n:
            problem = f"its {axis} window reads a map of {ax.n_in}, but the map is {n}"
        elif ax.n_out < 1:
            problem = f"its {axis} window has {ax.n_out} outputs"
        elif ax.stride < 1:
            problem = f"its {axis} window has stride {ax.stride}"
        elif not ax.count:
            problem = f"its {axis} window has no terms"
        elif w.readout and ax.n_out != 1:
            problem = f"it is a readout but its {axis} window has {ax.n_out} outputs, not 1"
        if problem:
            raise LayerError(f"{where} declares inconsistent shapes: {problem} ({shape} in)",
                             hint="fix the rule: AxisWindow(n_in=<the input size>, n_out=<the output size> >= 1, ...)")
    declared = rule.out_shape(p, shape)
    if (declared.height, declared.width) != (w.rows.n_out, w.cols.n_out):
        raise LayerError(f"{where} declares inconsistent shapes: out_shape says {declared.height}x{declared.width} "
                         f"but its window produces {w.rows.n_out}x{w.cols.n_out}",
                         hint="drop the out_shape override (WindowRule derives it from the window) or make them agree")
    return w


def get_rule(name: str) -> LayerRule:
    """The rule registered under `name`; KeyError with suggestions when there is none."""
    _load_builtins()
    return _RULES[name]


def known_rules() -> dict[str, LayerRule]:
    _load_builtins()
    return dict(sorted(_RULES.items()))


def suggest(name: str) -> list[str]:
    return difflib.get_close_matches(name, list(known_rules()), n=3, cutoff=0.5)


_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import builtin  # noqa: F401  (registers the built-in rules)
