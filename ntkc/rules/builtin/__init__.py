"""Imports every built-in rule, which registers it. The rules after the first line are written
with the public API of `ntkc.rules` only, as a user's rule module would be."""
from . import avgpool, conv, dense, erf, flatten, gap, identity  # noqa: F401
from . import abrelu, flip, gelu, lap  # noqa: F401  (abrelu also registers relu and leaky_relu)
from ..base import InputRule
from ..registry import register

register(InputRule)
