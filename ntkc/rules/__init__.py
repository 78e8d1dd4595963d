"""The public API for writing layer rules: everything a user's rule module imports.

    from ntkc.rules import ActivationRule, Param, register

    @register
    class Softplus(ActivationRule):   # see docs/rules.md and examples/user_rules/
        ...

A rule module is loaded by a `use "my_rules.py"` line in a `.arch` file (path relative to that
file, or a dotted module name), or from Python with `ntkc.load_rules("my_rules.py")`.

This package owns the rules: `base` (what a rule states: parameters, shapes, windows, math),
`registry` (the table of rules and the checks at registration), `loader` (user modules),
`ops` (the vocabulary rule math is written in, and its tracer) and `builtin/` (every built-in
layer, one file each, written with this API). The names exported here are the stable API;
importing it loads neither torch nor triton.
"""
from .ops import OPS
from .base import (ActivationRule, AugmentRule, AxisWindow, LayerError, LayerRule, Param, Params,
                                  Shape, Window, WindowRule, conv_axis, pool_axis, require_map)
from .loader import load_rules
from .registry import check_math, get_rule, known_rules, register
from ..errors import RuleError

__all__ = ["ActivationRule", "AugmentRule", "AxisWindow", "LayerError", "LayerRule", "OPS", "Param", "Params",
           "RuleError", "Shape", "Window", "WindowRule", "check_math", "conv_axis", "get_rule", "known_rules",
           "load_rules", "pool_axis", "register", "require_map"]
