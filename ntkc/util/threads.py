"""How many threads a computation uses, decided in one place.

In order: the count given for this call (`using(n)`, `k(x, threads=n)`), the process default
(`set_threads(n)`, the command line's `--threads N`), $NTKC_NUM_THREADS, $OMP_NUM_THREADS, else
every core this process may run on. The numba backend reads it for every batch; the torch
backend's own thread pool (OpenMP, which reads $OMP_NUM_THREADS itself) is set to an explicit
count. Results never depend on it: the numba backend is bitwise the same for any count.
"""
from __future__ import annotations

import contextlib
import os

_default: int | None = None  # set_threads(n)
_call: list[int] = []        # using(n), innermost last


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_count(explicit: int | None = None) -> int:
    """The thread count to use now (see the module's docstring for the order)."""
    for n in (explicit, _call[-1] if _call else None, _default):
        if n is not None:
            return max(1, int(n))
    for var in ("NTKC_NUM_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").strip()
        if val.isdigit() and int(val) > 0:
            return int(val)
    return cores()


def check_threads(n) -> int:
    """`n` as a thread count, or ValueError saying what is wrong."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a thread count must be an integer >= 1, got {n!r}")
    return n


def set_threads(n: int | None) -> None:
    """The process default (None: back to the environment and the cores); also sizes torch's
    own thread pool."""
    global _default
    _default = None if n is None else check_threads(n)
    if n is not None:
        import torch

        torch.set_num_threads(n)


@contextlib.contextmanager
def using(n: int | None):
    """Use `n` threads inside the block (None: change nothing)."""
    if n is None:
        yield
        return
    check_threads(n)
    import torch

    before = torch.get_num_threads()
    _call.append(n)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        _call.pop()
        torch.set_num_threads(before)
