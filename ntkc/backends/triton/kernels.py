"""What the launcher needs to know about each generated kernel: `KernelSpec`, and the whole
generated module, `Generated`."""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class KernelSpec:
    """One generated kernel: what it reads, what it writes, and its arguments in order.

    `source`: "images" (forms the input covariance), "planes" (gathers stored planes) or
    "partials" (adds per-item partial sums). `sink`: "planes", "partials" or "outputs".
    `out_per_pair`: numbers per pair in each of its S / T output buffers; `in_per_pair` likewise
    for its input buffers. `planes`: items per pair. `positions`: the largest tile width.
    `scratch_row`: scratch numbers per item and slice (0: no scratch; the runtime allocates
    grid x 4 x BLOCK_I x scratch_row).
    """

    name: str
    index: int
    lines: tuple[int, ...]
    source: str
    sink: str
    planes: int
    in_per_pair: int
    out_per_pair: int
    t_in: bool
    t_out: bool
    positions: int
    scratch_row: int
    reduce_only: bool
    args: tuple[str, ...]

    def signature(self, dtype: str) -> dict[str, str]:
        """Triton types of the run-time arguments ("*fp32", "i32", ...) for ahead-of-time compiles."""
        ptr = {"float32": "*fp32", "float64": "*fp64"}[dtype]
        out = {}
        for a in self.args:
            if a == "same_ptr":
                out[a] = "*i8"
            elif a.endswith("_ptr"):
                out[a] = ptr
            else:
                out[a] = "i32"
        out["BLOCK_I"] = "constexpr"
        return out


@dataclass(frozen=True)
class Generated:
    """A generated module: its source, its kernels in launch order, and the layout of the packed
    variance maps (`var_offsets[k]`: where activation k's map starts in a row of `var_size`)."""

    source: str
    kernels: tuple[KernelSpec, ...]
    var_offsets: tuple[int, ...]
    var_size: int
    module_name: str


