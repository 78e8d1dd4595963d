"""The precisions ntkc computes in, and the one place that turns a user's way of naming them
(a string, a numpy or a torch dtype) into ntkc's names and torch dtypes."""
from __future__ import annotations

from ..errors import InputError

PRECISIONS = ("float32", "float64")
_ALIASES = {"float32": "float32", "fp32": "float32", "single": "float32",
            "float64": "float64", "fp64": "float64", "double": "float64"}


def precision_name(dtype) -> str:
    """'float32' or 'float64' for a name ('float32', 'fp64', ...), a numpy dtype or scalar type,
    or a torch dtype; InputError for anything else."""
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype.strip().lower())
    else:
        name = None
        try:  # torch.float32 prints as 'torch.float32'
            text = str(dtype)
            if text.startswith("torch."):
                name = _ALIASES.get(text[len("torch."):])
            else:
                import numpy as np
                name = _ALIASES.get(np.dtype(dtype).name)
        except TypeError:
            name = None
    if name is None:
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}",
                         "pass 'float32', 'float64', numpy.float64 or torch.float64")
    return name


def torch_dtype(dtype):
    """The torch dtype of a precision given in any form `precision_name` accepts."""
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[precision_name(dtype)]
