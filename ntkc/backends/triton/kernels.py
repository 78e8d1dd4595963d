"""What the generator and the launcher agree on: every run-time argument a generated kernel may
take (`ARGUMENTS`: its type and where the launcher takes its value), each kernel (`KernelInfo`,
with the v1 generator's `KernelSpec` for a legacy kernel) and the whole generated module
(`Generated`; `LegacyModule` is what the v1 generator alone returns)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .coverage import Decision, Kind
    from .records import SeamTable


@dataclass(frozen=True)
class Argument:
    """One run-time argument: `kind` "data" (a pointer to numbers of the kernel's precision),
    "flags" (a pointer to int8), "index" (a pointer to int32) or "int" (an i32); `tensor` names
    the buffer it points into or whose stride it is, `dim` the dimension of a stride; an "int"
    without a tensor is a count."""

    kind: str
    tensor: str | None = None
    dim: int | None = None


def _strides(tensor: str, dims: str) -> dict[str, Argument]:
    return {f"stride_{tensor}_{d}": Argument("int", tensor, k) for k, d in enumerate(dims)}


ARGUMENTS: dict[str, Argument] = {
    # the images: of each pair [P, C, H, W] (v1 kernels), or of a tile's rows and columns (v2)
    "xa_ptr": Argument("data", "xa"), "xb_ptr": Argument("data", "xb"),
    **_strides("xa", "nchw"), **_strides("xb", "nchw"),
    # 1 where pair i is a self pair (the same image twice)
    "same_ptr": Argument("flags", "same"),
    # v2 kernels: the images and maps of pair p are rows ia[p] and ib[p] (int32, [P])
    "ia_ptr": Argument("index", "ia"), "ib_ptr": Argument("index", "ib"),
    # v2: the vertical seam factors of a circulant kernel (records.SeamTable)
    "seam_ptr": Argument("data", "seam"),
    # packed variance maps of each side, [N, var_size] (per pair for v1, per image for v2)
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
_TRITON_TYPES = {"flags": "*i8", "index": "*i32", "int": "i32"}
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
        return signature(self.args, dtype, ("BLOCK_I",))


def signature(args, dtype: str, constexprs=()) -> dict[str, str]:
    """Triton types of run-time arguments `args` and the names of constexprs, for AOT compiles."""
    out = {a: _DATA_TYPES[dtype] if ARGUMENTS[a].kind == "data" else _TRITON_TYPES[ARGUMENTS[a].kind]
           for a in args}
    for name in constexprs:
        out[name] = "constexpr"
    return out


@dataclass(frozen=True)
class LegacyModule:
    """A module of the v1 generator: its source, its kernels in launch order, and the layout of
    the packed variance maps (`var_offsets[k]`: where activation k's map starts in a row of
    `var_size`)."""

    source: str
    kernels: tuple[KernelSpec, ...]
    var_offsets: tuple[int, ...]
    var_size: int
    module_name: str




# the constexprs each kind of kernel takes (set by the launcher from `schedule`)
CONSTEXPRS = {"circulant": ("BLOCK_P", "BLOCK_X"), "epilogue": ("N_PARTS", "BLOCK_P", "BLOCK_R"),
              "legacy": ("BLOCK_I",)}


@dataclass(frozen=True)
class KernelInfo:
    """One kernel of a generated module, in launch order.

    `kind`: which generator wrote it (`coverage.Kind`), with the `decision`'s reason. `source`
    ("images", "partials", "planes") and `sink` ("outputs", "partials", "planes") say what it
    reads and writes; `args` are its run-time arguments in order. `plan`: the records a v2
    kernel was rendered from (`records.CirculantPlan` / `EpiloguePlan`); `legacy`: the v1
    `KernelSpec` of a legacy kernel; `seam`: the seam table a circulant kernel reads.
    """

    name: str
    index: int
    kind: "Kind"
    decision: "Decision"
    lines: tuple[int, ...]
    args: tuple[str, ...]
    source: str
    sink: str
    t_in: bool
    t_out: bool
    plan: object = None
    legacy: KernelSpec | None = None
    seam: "SeamTable | None" = None

    def signature(self, dtype: str) -> dict[str, str]:
        """Triton types of the arguments and constexprs, for ahead-of-time compiles."""
        return signature(self.args, dtype, CONSTEXPRS[self.kind.value])


@dataclass(frozen=True)
class Generated:
    """A generated module: its source, its kernels in launch order and the two layouts of packed
    variance maps per image. v2 kernels read `var_offsets[k]` (activation k's map with its rows
    doubled, [2h, w], in a row of `var_size`); legacy kernels read per-pair copies of the v1
    layout (`legacy_var_offsets`, `legacy_var_size`: each map once). `v2` is False when no stage
    is covered: the source is then the v1 generator's module, unchanged."""

    source: str
    kernels: tuple[KernelInfo, ...]
    var_offsets: tuple[int, ...]
    var_size: int
    legacy_var_offsets: tuple[int, ...]
    legacy_var_size: int
    module_name: str
    v2: bool
