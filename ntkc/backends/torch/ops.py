"""`TorchOps`: the torch handler of the ops vocabulary (`ntkc.rules.ops`), which evaluates a rule's
math on tensors; python floats mix in as scalars."""
from __future__ import annotations

import math

import torch


class TorchOps:
    """Evaluates rule math on torch tensors."""

    pi = math.pi
    sqrt = staticmethod(torch.sqrt)
    rsqrt = staticmethod(torch.rsqrt)
    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    sin = staticmethod(torch.sin)
    cos = staticmethod(torch.cos)
    tanh = staticmethod(torch.tanh)
    erf = staticmethod(torch.erf)
    asin = staticmethod(torch.asin)
    acos = staticmethod(torch.acos)
    atan = staticmethod(torch.atan)
    abs = staticmethod(torch.abs)

    @staticmethod
    def _pair(a, b):
        if not isinstance(a, torch.Tensor):
            a = torch.full_like(b, a)
        if not isinstance(b, torch.Tensor):
            b = torch.full_like(a, b)
        return a, b

    def atan2(self, y, x):
        return torch.atan2(*self._pair(y, x))

    def maximum(self, a, b):
        if not isinstance(b, torch.Tensor) and isinstance(a, torch.Tensor):
            return torch.clamp(a, min=b)  # a constant bound: no tensor of it is materialised
        if not isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return torch.clamp(b, min=a)
        return torch.maximum(*self._pair(a, b))

    def minimum(self, a, b):
        if not isinstance(b, torch.Tensor) and isinstance(a, torch.Tensor):
            return torch.clamp(a, max=b)
        if not isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return torch.clamp(b, max=a)
        return torch.minimum(*self._pair(a, b))

    def where(self, cond, a, b):
        return torch.where(cond, a, b)

    def lt(self, a, b):
        return a < b

    def le(self, a, b):
        return a <= b

    def gt(self, a, b):
        return a > b

    def ge(self, a, b):
        return a >= b
