"""Full-batch gradient descent of a finite network on the squared loss, as `ntkc compare` runs it.

The loss is L(theta) = 1/2 sum_i ||g(x_i) - y_i||^2 over the whole training set (summed, not
averaged: the loss whose gradient flow is df/dt = -lr K (f - y), see `ntkc.learn.predict`), and
each step is theta <- theta - lr grad L over the trainable parameters (frozen layers stay put).

With `centre=True` the model trained is g(x) = f_theta(x) - f_theta0(x): the network minus its own
output at initialisation, a fixed function recorded once. g starts at exactly 0, like the mean
of the infinitely wide ensemble, and in the wide limit it follows that mean's prediction
(`gradient_descent`) with a deviation that shrinks like 1/sqrt(width); without centring every
net carries its random f_0 (of size O(1) at any width) through training, and only an average
over many nets approaches the infinite-width mean (docs/finite.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .network import FiniteNetwork


@dataclass(eq=False)
class Trajectory:
    """Outputs of one trained network at the recorded steps: `train` [S, n, k], `test` [S, m, k]
    (None without test images), `loss` [S] (1/2 sum of squared errors on the training set)."""

    steps: list[int]
    train: np.ndarray
    test: np.ndarray | None
    loss: np.ndarray
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def _outputs(net: FiniteNetwork, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(x[a: a + batch]) for a in range(0, len(x), batch)])


def train(net: FiniteNetwork, x_train: torch.Tensor, y_train: torch.Tensor, steps: int, lr: float,
          record=None, x_test: torch.Tensor | None = None, centre: bool = True, batch: int = 512,
          progress=None) -> Trajectory:
    """Train `net` in place for `steps` full-batch steps of size `lr`, recording the outputs on the
    training (and test) images after each step count in `record` (default: 0 and `steps`)."""
    record = sorted({int(s) for s in (record if record is not None else (0, steps))})
    if record and (record[0] < 0 or record[-1] > steps):
        raise ValueError(f"recorded steps must lie in [0, {steps}], got {record}")
    params = list(net.trainable().values())
    x_train = x_train.to(device=net.device, dtype=net.dtype)
    y = y_train.to(device=net.device, dtype=net.dtype)
    if x_test is not None:
        x_test = x_test.to(device=net.device, dtype=net.dtype)
    f0_train = _outputs(net, x_train, batch) if centre else torch.zeros_like(y)
    f0_test = (_outputs(net, x_test, batch) if centre else None) if x_test is not None else None
    kept_train, kept_test, losses = [], [], []
    start = time.perf_counter()
    for step in range(steps + 1):
        last = step == steps
        for p in params:
            p.grad = None
        outs, loss = [], 0.0
        for a in range(0, len(x_train), batch):
            xb = x_train[a: a + batch]
            with torch.set_grad_enabled(not last and bool(params)):
                g = net(xb) - f0_train[a: a + batch]
                part = 0.5 * ((g - y[a: a + batch]) ** 2).sum()
                if not last and params:
                    part.backward()
            outs.append(g.detach())
            loss += float(part.detach())
        if step in record:
            kept_train.append(torch.cat(outs).cpu().numpy().astype(np.float64))
            losses.append(loss)
            if x_test is not None:
                g_test = _outputs(net, x_test, batch) - (f0_test if centre else 0.0)
                kept_test.append(g_test.cpu().numpy().astype(np.float64))
        if not last:
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-lr)
        if progress is not None:
            progress(step + 1, steps + 1)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss} at step {step}: lr={lr:g} is too large")
    return Trajectory(record, np.stack(kept_train), np.stack(kept_test) if x_test is not None else None,
                      np.array(losses), time.perf_counter() - start)
