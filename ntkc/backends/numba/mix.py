"""The plane-mixing kernel: a window that mixes displacement planes, over stored states.

Not generated: the window is data, two CSR tables (one per axis, from `layout.mix_axis`), so
one compiled function serves every mixing layer (avgpool, lap, circular conv, a readout after a
mixing layer). Output state (Y, X) of a pair is

    S'[Y, X] = w * sum_{y in rows[Y]} sum_{x in cols[X]} S[y, x] + b        (T likewise, no b,
                                                                              + S' when trainable)

computed separably: for each output row, the input rows it reads are added into one row of
input columns, then each output column adds its input columns from that row. Pairs run in
parallel; a pair's result does not depend on the thread that ran it.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, error_model="numpy")
def mix(chunk, nchunks, IN_S, IN_T, OUT_S, OUT_T, yptr, yidx, xptr, xidx, consts, t_in, t_out):
    """Pairs chunk, chunk + nchunks, ... . consts = [w, b, 0] in the states' dtype; t_in: T is
    live in the input; t_out: T is live in the output (t_in or a trainable window)."""
    n_pairs = IN_S.shape[0]
    nxi = IN_S.shape[2]
    nyo = yptr.shape[0] - 1
    nxo = xptr.shape[0] - 1
    wt = consts[0]
    bias = consts[1]
    zero = consts[2]
    row_s = np.empty(nxi, IN_S.dtype)
    row_t = np.empty(nxi, IN_S.dtype)
    for p in range(chunk, n_pairs, nchunks):
        for oy in range(nyo):
            for ix in range(nxi):
                row_s[ix] = zero
            for k in range(yptr[oy], yptr[oy + 1]):
                iy = yidx[k]
                for ix in range(nxi):
                    row_s[ix] += IN_S[p, iy, ix]
            if t_in:
                for ix in range(nxi):
                    row_t[ix] = zero
                for k in range(yptr[oy], yptr[oy + 1]):
                    iy = yidx[k]
                    for ix in range(nxi):
                        row_t[ix] += IN_T[p, iy, ix]
            for ox in range(nxo):
                acc = zero
                for k in range(xptr[ox], xptr[ox + 1]):
                    acc += row_s[xidx[k]]
                s_new = wt * acc + bias
                OUT_S[p, oy, ox] = s_new
                if t_in:
                    acc = zero
                    for k in range(xptr[ox], xptr[ox + 1]):
                        acc += row_t[xidx[k]]
                    OUT_T[p, oy, ox] = wt * acc
                elif t_out:
                    OUT_T[p, oy, ox] = s_new


def run_mix(kernel, s_in, t_in, dtype, run):
    """Apply a MixKernel (kernels.py) to stored states [B, rows, cols]; returns (S, T or None).
    `run(fn, items)` runs fn(chunk, nchunks) for every chunk of the pairs."""
    w = kernel.step.window
    n = s_in.shape[0]
    sy, sx = kernel.out_store
    out_s = np.empty((n, sy.size, sx.size), dtype)
    out_t = np.empty((n, sy.size, sx.size), dtype) if kernel.t_out else np.empty((1, 1, 1), dtype)
    tin = t_in if (kernel.t_in and t_in is not None) else np.empty((1, 1, 1), dtype)
    consts = np.array([w.weight, w.bias, 0.0], dtype)
    (yptr, yidx), (xptr, xidx) = kernel.csr_y, kernel.csr_x
    run(lambda c, nc: mix(c, nc, s_in, tin, out_s, out_t, yptr, yidx, xptr, xidx, consts, kernel.t_in, kernel.t_out),
             n)
    if kernel.t_in and kernel.t_out and w.trainable:
        out_t += out_s  # T' = w * window(T) + S' (kept out of the loop: the same sum order as S)
    return out_s, (out_t if kernel.t_out else None)
