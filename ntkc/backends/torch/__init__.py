"""The torch backend: the reference executor of a Plan, on CPU or GPU, with torch tensors.

`backend.py` runs the pair and image programs on batched 5-D state tensors, `layout.py` says how
a band of displacement planes is stored along an axis, `ops.py` evaluates rule math on tensors.
"""
from .backend import TorchBackend

__all__ = ["TorchBackend"]
