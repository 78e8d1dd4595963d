"""The rule table: layer names to rules, with the checks every rule passes at registration."""
from __future__ import annotations

import difflib

from ...errors import RuleError
from ..ops import OPS, trace
from .base import ActivationRule, InputRule, LayerRule, Param, Params, WindowRule

_RULES: dict[str, LayerRule] = {}
_TYPES = {"int", "float", "bool", "choice"}


def register(rule, *, replace: bool = False):
    """Register a rule (a `LayerRule` subclass or instance) under its `name`.

    Usable as a class decorator. Raises `RuleError` when the rule is ill-formed: no name, a
    parameter of unknown type, a default that does not fit its type, or (for activations) math
    that uses an operation outside the ops vocabulary. Returns what it was given.
    """
    inst = rule() if isinstance(rule, type) else rule
    name = getattr(inst, "name", "")
    where = f"rule {type(inst).__name__}"
    if not name or not name.isidentifier() or name in ("repeat", "sqrt"):
        raise RuleError(f"{where} needs a `name` that is an identifier (not `repeat` or `sqrt`), got {name!r}")
    if name in _RULES and not replace:
        raise RuleError(f"a rule named `{name}` is already registered ({type(_RULES[name]).__name__})",
                        hint="choose another name, or pass replace=True to override it")
    if not isinstance(inst, (WindowRule, ActivationRule, InputRule)):
        raise RuleError(f"{where} must derive from WindowRule or ActivationRule")
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
    params = default_params(inst)
    if params is None:
        return  # checked when a layer gives the required values (see `check_math`)
    check_math(inst, params, where)


def check_math(inst: ActivationRule, params: Params, where: str | None = None) -> None:
    """Trace an activation's math; raise RuleError if it leaves the ops vocabulary."""
    where = where or f"rule `{inst.name}`"
    for part in ("nngp", "dfactor"):
        fn = getattr(inst, part)
        try:
            trace(lambda ops, u, v1, v2: fn(params, ops, u, v1, v2), "u", "v1", "v2")
        except AttributeError as err:
            raise RuleError(
                f"{where}: `{part}` uses `ops.{err.args[0] if err.args else '?'}`, which is not in the ops vocabulary",
                hint="available: + - * / and " + ", ".join(f"ops.{n}" for n in sorted(OPS)),
            ) from None
        except TypeError as err:
            raise RuleError(f"{where}: `{part}` cannot be traced: {err}") from None


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
