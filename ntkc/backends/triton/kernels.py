"""What the generator and the launcher agree on: every run-time argument a generated kernel may
take (`ARGUMENTS`: its type and where the launcher takes its value), each kernel's `KernelSpec`,
and the whole generated module, `Generated`."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Argument:
    """One run-time argument: `kind` "data" (a pointer to numbers of the kernel's precision),
    "flags" (a pointer to int8) or "int" (an i32); `tensor` names the buffer it points into or
    whose stride it is, `dim` the dimension of a stride; an "int" without a tensor is a count."""

    kind: str
    tensor: str | None = None
    dim: int | None = None


def _strides(tensor: str, dims: str) -> dict[str, Argument]:
    return {f"stride_{tensor}_{d}": Argument("int", tensor, k) for k, d in enumerate(dims)}


ARGUMENTS: dict[str, Argument] = {
    # the two images of each pair, [N, C, H, W]
    "xa_ptr": Argument("data", "xa"), "xb_ptr": Argument("data", "xb"),
    **_strides("xa", "nchw"), **_strides("xb", "nchw"),
    # 1 where pair i is a self pair (the same image twice)
    "same_ptr": Argument("flags", "same"),
    # packed variance maps of each side, [N, var_size]
    "va_ptr": Argument("data", "va"), "vb_ptr": Argument("data", "vb"),
    **_strides("va", "n"), **_strides("vb", "n"),
    # NNGP and NTK per pair, [N]
    "nngp_ptr": Argument("data", "nngp"), "ntk_ptr": Argument("data", "ntk"),
    **_strides("nngp", "n"), **_strides("ntk", "n"),
    # planes or partial sums handed from one kernel to the next, and per-program scratch
    "s_in_ptr": Argument("data", "s_in"), "t_in_ptr": Argument("data", "t_in"),
    "s_out_ptr": Argument("data", "s_out"), "t_out_ptr": Argument("data", "t_out"),
    "scratch_ptr": Argument("data", "scratch"),
    # pairs in the launch, and item blocks per persistent program
    "n_pairs": Argument("int"), "n_iters": Argument("int"),
}
_TRITON_TYPES = {"flags": "*i8", "int": "i32"}
_DATA_TYPES = {"float32": "*fp32", "float64": "*fp64"}


def bind(names, tensors: dict, counts: dict) -> list:
    """The values of the arguments `names`, in order: tensors by name, their strides, counts."""
    out = []
    for name in names:
        a = ARGUMENTS[name]
        if a.tensor is None:
            out.append(counts[name])
        elif a.dim is None:
            out.append(tensors[a.tensor])
        else:
            out.append(tensors[a.tensor].stride(a.dim))
    return out

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
        out = {a: _DATA_TYPES[dtype] if ARGUMENTS[a].kind == "data" else _TRITON_TYPES[ARGUMENTS[a].kind]
               for a in self.args}
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


