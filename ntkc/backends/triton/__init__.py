"""The triton backend: a Plan's pair program as generated Triton kernels, launched on CUDA GPUs
(or run in Triton's interpreter under TRITON_INTERPRET=1, for tests).

Generating (no triton needed to write source):
- `module.py` the module of a plan, stage by stage as `coverage.py` decides: v2 kernels where it
  covers a stage, the v1 generator's elsewhere (`codegen.py` describes both);
- v2: `records.py` (a covered stage as records: tiles, layer ops, loops), `circulant.py` (stage 0
  on circulant tiles in registers), `epilogue.py` (the scalar stage after gap),
  `activations.py` (activation math rewritten for cheap exact evaluation), `fastmath.py`
  (its `@triton.jit` helpers), `tile_helpers.py` (row and part relabellings);
- v1: `legacy_module.py`, `drafts.py`, `writer.py`, `emit_sources.py`, `emit_steps.py`,
  `windows.py`, `mathlib.py` (its helpers);
- shared: `render.py` (rule math to Triton expressions), `helpers.py` (helpers as text),
  `kernels.py` (what generator and launcher agree on), `schedule.py` (every block size and
  launch shape).

Running: `backend.py` (the launcher, `TritonBackend`), `codecache.py` (the on-disk module cache).

Reporting, without a GPU: `aot.py` (ahead-of-time compiles, registers, spills, SASS), `sass.py`
(counting it), `speed_model.py` (the static speed model: a model, not a measurement) and
`report.py` (`ntkc compile F --emit report [--json]`).
"""


def __getattr__(name):  # the launcher imports torch and triton: load it when it is asked for
    if name == "TritonBackend":
        from .backend import TritonBackend
        return TritonBackend
    raise AttributeError(name)


__all__ = ["TritonBackend"]
