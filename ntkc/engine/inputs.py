"""The one check of images handed to a compiled kernel, for `k(x)` and `ntkc.gram_store` alike.

What is required, what was found and how to fix it: a 4-D NCHW batch of real numbers matching
the `input` line, none of them NaN or inf, small enough that the input covariance (which sums
products of two values over the channels) does not overflow the precision it is computed in,
on a device that exists here.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import BackendError, InputError


def resolve_device(device) -> torch.device | None:
    """A torch device from what a user passed (None, "cpu", "cuda:0", a torch.device), checked
    to exist on this machine (BackendError otherwise)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise BackendError(f"device {device!r} is not a torch device ({err})",
                           "use device='cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackendError(f"device {device!r} asked for a GPU, but torch sees no CUDA device here",
                               "leave device out (or use 'cpu') on this machine")
        if dev.index is not None and dev.index >= count:
            raise BackendError(f"device {device!r}: this machine has {count} CUDA device(s)",
                               f"use cuda:0 ... cuda:{count - 1}")
    return dev


def check_images(x, name: str, want: tuple[int, int, int], dtype: torch.dtype, device=None,
                 source: str = "the architecture", convert: bool = True) -> torch.Tensor | None:
    """`x` as a contiguous tensor in `dtype` on `device`, after checking it: [N, C, H, W] with
    (C, H, W) = `want`, N >= 1, real, finite, representable in `dtype`, and free of overflow in
    the input covariance. InputError (naming `name`, the offending images and a fix) otherwise.
    With `convert=False` only the checks are made (no copy), and None is returned."""
    dev = resolve_device(device)
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x) if convert else x)
    elif isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = x
    else:
        raise InputError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if t.dim() != 4:
        hint = ("add a batch axis: x[None]" if t.dim() == 3 and tuple(t.shape) == want else
                f"pass images as [N, {want[0]}, {want[1]}, {want[2]}] (NCHW)")
        raise InputError(f"{name} must be a 4-D batch [N, C, H, W], got shape {tuple(t.shape)}", hint)
    if tuple(t.shape[1:]) != want:
        hint = f"the `input` line of {source} says channels={want[0]} height={want[1]} width={want[2]}"
        if tuple(t.shape[1:]) == (want[1], want[2], want[0]):
            hint += "; these look like NHWC images: use x.transpose(0, 3, 1, 2)"
        raise InputError(f"{name} has images of shape {tuple(t.shape[1:])} (C, H, W), expected {want}", hint)
    if t.shape[0] == 0:
        raise InputError(f"{name} holds no images")
    if t.is_floating_point():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            raise InputError(f"{name} contains NaN or inf (images {_first(_rows(bad))})",
                             "clean or drop those images before computing kernels")
    # Values must fit `dtype`, and the input covariance sums C products of two values, so
    # C max|x|^2 must stay below its largest number too.
    limit = torch.finfo(dtype).max
    peak = max(abs(float(t.max())), abs(float(t.min())))
    if peak > limit or want[0] * peak * peak > limit:
        per_image = t.reshape(len(t), -1)
        big = torch.maximum(per_image.amax(1).double().abs(), per_image.amin(1).double().abs())
        what = (f"values up to {peak:.3g}, which {_name(dtype)} cannot hold (largest number {limit:.3g})"
                if peak > limit else
                f"values up to {peak:.3g}: the input covariance (sums of products of two values) overflows "
                f"{_name(dtype)} (largest number {limit:.3g})")
        rows = (big ** 2 * want[0] > limit).nonzero().flatten()
        raise InputError(f"{name} holds {what}, in images {_first(rows)}",
                         "scale the images, e.g. standardise them per channel (ntkc.learn.data.load_dataset "
                         "does), or compute in float64")
    if not convert:
        return None
    if dev is not None:
        t = t.to(dev)
    return t.to(dtype).contiguous()


def _rows(bad: torch.Tensor) -> torch.Tensor:
    return bad.reshape(bad.shape[0], -1).any(1).nonzero().flatten()


def _first(rows: torch.Tensor, limit: int = 5) -> str:
    shown = rows[:limit].tolist()
    more = f"... ({len(rows)} in all)" if len(rows) > limit else ""
    return f"{shown}{more}"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
