"""`CompiledKernel`: a compiled architecture you call on images to get NNGP and NTK matrices."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import backends
from ..errors import InputError
from .inputs import check_images, resolve_device
from ..lang.network import load
from ..plan import Plan, describe, lower
from ..util.precision import precision_name, torch_dtype
from ..util.threads import check_threads, using
from .augment import augmented
from .sizes import format_bytes, memory_bytes
from .tiling import gram

PAIR_STATES = 4  # covariance states a layer holds for one pair at once: S and T, in and out


@dataclass
class KernelResult:
    """NNGP and NTK matrices, each [n1, n2]; numpy arrays for numpy inputs, else tensors."""

    nngp: object
    ntk: object
    seconds: float = 0.0
    pairs: int = 0
    backend: str = ""

    def __iter__(self):
        return iter((self.nngp, self.ntk))

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("inf")


def compile_kernel(spec, filename: str | None = None, *, user_rules: bool = True) -> "CompiledKernel":
    """A `.arch` file (a path) or `.arch` source text, parsed, checked, lowered and wrapped: what
    `ntkc.compile` returns. `user_rules=False` refuses `use` lines (they run Python code)."""
    return CompiledKernel(lower(load(spec, filename, user_rules=user_rules)))


class CompiledKernel:
    """The exact infinite-width kernels of one architecture.

    Call it as `k(x1, x2=None, dtype=torch.float32, backend="auto")` with NCHW arrays (numpy or
    torch). With `x2` omitted the symmetric Gram matrix of `x1` is computed, each unordered pair
    once. Working memory is bounded by `memory` bytes whatever the number of images; pass
    `out=(nngp, ntk)` numpy arrays (np.memmap for matrices larger than RAM) to receive the
    results. `backend` is "torch", "triton", "numba" or "auto": triton on a CUDA device when
    available; on a CPU numba for runs whose work repays compiling its kernels, else torch (see
    `ntkc.backends.resolve`). `threads` bounds the CPU threads (default: $NTKC_NUM_THREADS,
    $OMP_NUM_THREADS, else every core; see `ntkc.util.threads`).
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        self.arch = plan.network  # the checked Network (layers, shapes, source)
        self._backends: dict = {}

    def __deepcopy__(self, memo):
        # Immutable once compiled (the backends only cache tables): scikit-learn's clone
        # deep-copies estimator parameters, which need not copy those.
        return self

    def __repr__(self) -> str:
        net = self.arch
        return f"CompiledKernel({net.filename!r}, input {net.input}, {len(net.layers)} layers)"

    def describe(self) -> str:
        return describe(self.plan)

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, x1, x2=None, dtype: torch.dtype = torch.float32, backend: str = "auto",
                 device=None, memory: int | None = None,
                 progress: Callable[[int, int], None] | None = None, fuse: bool | None = None,
                 out=None, threads: int | None = None) -> KernelResult:
        as_numpy = isinstance(x1, np.ndarray)
        dtype = torch_dtype(dtype)
        memory = self.check_memory(dtype, memory)
        if threads is not None:
            try:
                check_threads(threads)
            except ValueError as err:
                raise InputError(str(err), "pass threads= as a positive integer, or None for every core") from None
        t1 = self.check_images(x1, "x1", dtype, device)
        dev = t1.device
        t2 = None if x2 is None else self.check_images(x2, "x2", dtype, dev)
        if t2 is not None and isinstance(x2, np.ndarray) != as_numpy:
            as_numpy = False
        n1 = t1.shape[0]
        pairs = n1 * (n1 + 1) // 2 if t2 is None else n1 * t2.shape[0]
        chosen = self.backend(backend, dtype, dev, pairs=pairs, images=n1 + (0 if t2 is None else t2.shape[0]))
        start = time.perf_counter()
        if fuse is None:
            fuse = chosen.fusion_pays(pairs)
        with using(threads):
            nngp, ntk, npairs = gram(chosen, t1, t2, memory, progress, fuse, out)
        seconds = time.perf_counter() - start
        if as_numpy and out is None:
            nngp, ntk = nngp.cpu().numpy(), ntk.cpu().numpy()
        return KernelResult(nngp, ntk, seconds, npairs, chosen.name)

    def check_memory(self, dtype=torch.float32, memory=None) -> int:
        """The working-memory budget in bytes (`memory`: bytes, a size such as "4G", or None for
        the default), after checking that one pair of images fits it: a network whose states are
        too large to run (a gap over a 3000x3000 map) is refused here, before anything is
        allocated, with what one pair needs."""
        try:
            budget = memory_bytes(memory)
        except ValueError as err:
            raise InputError(str(err), "pass memory= as bytes or a size such as '512M' or '4G'") from None
        numbers, step = self.plan.pair.largest_state()
        need = PAIR_STATES * numbers * torch_dtype(dtype).itemsize
        if need > budget:
            where = "the input covariance" if step is None else \
                f"after line {step.layer.span.line} `{step.layer.describe()}`"
            raise InputError(
                f"this network cannot run: one pair of images needs about {format_bytes(need)} of working memory "
                f"in {precision_name(dtype)} (its largest state, {where}, holds {numbers:.3g} numbers, and a "
                f"layer keeps about {PAIR_STATES} such states), more than the {format_bytes(budget)} allowed",
                "use smaller images or a network that demands fewer planes (a flatten readout needs plane 0 "
                "only; see `ntkc compile FILE --emit plan`), or allow more memory (memory=, --memory) if the "
                "machine has it")
        return budget

    # -- finite networks (ntkc.finite) --------------------------------------------------------

    def network(self, width: int, seed: int = 0, out_dim: int = 1, dtype=torch.float32, device=None):
        """The finite network of this architecture, a `torch.nn.Module` in the NTK parameterisation
        (`ntkc.finite.FiniteNetwork`): NCHW images [N, C, H, W] -> [N, out_dim], hidden layers
        `width` channels wide, weights N(0, 1) drawn from `seed`; frozen layers have
        requires_grad=False, and with `flip` it is (f(x) + f(flip x)) / 2. Its NNGP and NTK tend
        to this kernel's as width grows."""
        from ..finite.network import network

        return network(self.arch, width, seed, out_dim, dtype, device)

    def empirical(self, x1, x2=None, width: int = 256, n_nets: int = 8, seed: int = 0,
                  out_dim: int | None = None, dtype=torch.float32, device=None):
        """Monte Carlo NNGP and empirical NTK of `n_nets` finite networks (seeds seed, seed + 1,
        ...), with standard errors: an `ntkc.finite.EmpiricalKernels`, [n1, n2] like `k(x1, x2)`."""
        from ..finite.empirical import empirical_kernels

        return empirical_kernels(self.arch, x1, x2, width, n_nets, seed, out_dim, dtype, device)

    def backend(self, backend: str = "auto", dtype=torch.float32, device=None, pairs: int | None = None,
                images: int = 0):
        """The backend object (`ntkc.backends.base.Backend`) that runs this kernel: `backend` is
        "auto" or a backend's name; one is built per (backend, dtype, device) and kept. "auto"
        decides by the work of the run, `pairs` pairs over `images` images (see
        `ntkc.backends.resolve`; unknown: a small run)."""
        device = resolve_device(device) or torch.device("cpu")
        dtype = torch_dtype(dtype)
        work = None if pairs is None else backends.run_work(self.plan, pairs, images)
        name = backends.resolve(backend, device, work)
        key = (name, dtype, str(device))
        if key not in self._backends:
            # `flip` and other augmentation statements wrap the backend
            self._backends[key] = augmented(backends.create(name, self.plan, dtype, device), self.arch)
        return self._backends[key]

    def check_images(self, x, name: str = "x", dtype=torch.float32, device=None, convert: bool = True):
        """`x` checked against this kernel's `input` line (`ntkc.engine.inputs.check_images`)
        and converted to a contiguous tensor in `dtype` on `device` (with `convert=False`,
        checked only)."""
        net = self.arch
        want = (net.input.channels, net.input.height, net.input.width)
        return check_images(x, name, want, torch_dtype(dtype), device, net.filename, convert)
