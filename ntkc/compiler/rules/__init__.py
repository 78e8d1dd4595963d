"""Layer rules: the public API for adding a layer to the `.arch` language.

See `base` for what a rule states, `registry.register` for how it is added, and the built-in
rules (one file each) for examples.
"""
from .base import (ActivationRule, AugmentRule, AxisWindow, LayerError, LayerRule, Param, Params, Shape, Window,
                   WindowRule, conv_axis, pool_axis, require_map)
from .registry import get_rule, known_rules, register

__all__ = ["ActivationRule", "AugmentRule", "AxisWindow", "LayerError", "LayerRule", "Param", "Params", "Shape",
           "Window", "WindowRule", "conv_axis", "pool_axis", "require_map", "register", "get_rule",
           "known_rules"]
