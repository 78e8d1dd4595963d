"""The triton backend: a Plan's pair program as generated Triton kernels, launched on CUDA GPUs
(or run in Triton's interpreter under TRITON_INTERPRET=1, for tests).

`codegen.py` writes the module of kernels from the Plan, `render.py` renders rule math to Triton
expressions, `mathlib.py` holds the `@triton.jit` helpers copied into generated modules,
`schedule.py` every block size and launch shape, `codecache.py` the on-disk module cache,
`backend.py` the launcher and `report.py` the ahead-of-time resource report.
"""


def __getattr__(name):  # the launcher imports torch and triton: load it when it is asked for
    if name == "TritonBackend":
        from .backend import TritonBackend
        return TritonBackend
    raise AttributeError(name)


__all__ = ["TritonBackend"]
