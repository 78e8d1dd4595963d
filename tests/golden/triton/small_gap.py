"""ntkc generated Triton kernels for small_gap.arch (generator v2).

input 5x4x2; 12 layers; pair program in 2 kernel(s):
  stage0_kernel: legacy (map 5x4 is not a power of two per axis); lines 3, 4, 6, 7; images -> partials
  stage1_kernel: epilogue (full sum (gap) of the previous kernel's partial sums, then scalars); lines 9, 10; partials -> outputs

circulant / epilogue kernels: ntkc.backends.triton.circulant, .epilogue (v2); legacy: the v1
generator (ntkc.backends.triton.writer). Launched by ntkc.backends.triton.backend with
floating-point contraction on (enable_fp_fusion=True); the self-pair determinant is exact under it
by construction (fms2).
"""
import triton
import triton.language as tl


# -- v1 helpers (copied from ntkc.backends.triton.mathlib) ------------------------------------


@triton.jit
def atan_unit(a):
    """atan(a) for a in [0, 1] (NaN in, NaN out)."""
    # centre c = k pi/12 nearest to atan(a); thresholds are tan(pi/24), tan(3pi/24), tan(5pi/24)
    k1 = a > 0.13165249758739586
    k2 = a > 0.41421356237309503
    k3 = a > 0.7673269879789604
    # (the innermost branch is a tensor, so the constants take a's dtype, not float32)
    zero = tl.zeros_like(a)
    tan_c = tl.where(k3, 1.0, tl.where(k2, 0.5773502691896257, tl.where(k1, 0.2679491924311227, zero)))
    c = tl.where(k3, 0.7853981633974483, tl.where(k2, 0.5235987755982989, tl.where(k1, 0.26179938779914946, zero)))
    t = (a - tan_c) / (1.0 + a * tan_c)
    z = t * t
    if a.dtype == tl.float64:
        p = 1.0 / 17.0
        p = p * z - 1.0 / 15.0
        p = p * z + 1.0 / 13.0
        p = p * z - 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z - 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z - 1.0 / 3.0
    else:
        p = -1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z - 1.0 / 3.0
    return c + (t + t * (z * p))


@triton.jit
def signbit(x):
    """True where the sign bit of x is set (also for -0.0 and -NaN)."""
    if x.dtype == tl.float64:
        neg = x.to(tl.int64, bitcast=True) < 0
    else:
        neg = x.to(tl.int32, bitcast=True) < 0
    return neg


@triton.jit
def atan2(y, x):
    """atan2(y, x) in (-pi, pi], as torch.atan2 (signed zeros, infinities, NaN)."""
    ay = tl.abs(y)
    ax = tl.abs(x)
    big = tl.maximum(ax, ay)
    small = tl.minimum(ax, ay)
    # 0/0 -> 0 and inf/inf -> 1 (atan2(inf, inf) = pi/4); NaN stays NaN through the division
    ratio = tl.where(big == 0.0, 0.0, tl.where(small == big, 1.0, small / big))
    angle = atan_unit(ratio)
    angle = tl.where(ay > ax, 1.5707963267948966 - angle, angle)
    angle = tl.where(signbit(x), 3.141592653589793 - angle, angle)
    angle = tl.where(signbit(y), angle * -1.0, angle)  # (not -angle: some interpreters give -(+0) = +0)
    # tl.maximum / tl.minimum may drop a NaN operand: give NaN back explicitly
    return tl.where((x != x) | (y != y), x + y, angle)


@triton.jit
def sqrt(x):
    """Correctly rounded square root in both precisions."""
    if x.dtype == tl.float64:
        r = tl.sqrt(x)
    else:
        r = tl.sqrt_rn(x)
    return r


@triton.jit(do_not_specialize=["n_pairs", "n_iters"])
def stage0_kernel(
    same_ptr,
    xa_ptr,
    xb_ptr,
    stride_xa_n,
    stride_xa_c,
    stride_xa_h,
    stride_xa_w,
    stride_xb_n,
    stride_xb_c,
    stride_xb_h,
    stride_xb_w,
    scratch_ptr,
    va_ptr,
    vb_ptr,
    stride_va_n,
    stride_vb_n,
    s_out_ptr,
    t_out_ptr,
    n_pairs,
    n_iters,
    BLOCK_I: tl.constexpr,
):
    """lines 3-7; reads the two images, stores one partial sum per item; 63 item(s) per pair."""
    DTYPE = xa_ptr.dtype.element_ty
    pid = tl.program_id(0)
    n_items = n_pairs * 63
    offs_i0 = tl.arange(0, BLOCK_I)
    # this program's scratch (4 * BLOCK_I * 60 numbers); the borders must read as zeros: clear it once
    scratch = scratch_ptr + pid.to(tl.int64) * (4 * BLOCK_I * 60)
    offs_z = tl.arange(0, 1024)
    for z0 in range(0, 4 * BLOCK_I * 60, 1024):
        tl.store(scratch + z0 + offs_z, tl.zeros([1024], dtype=DTYPE), mask=z0 + offs_z < 4 * BLOCK_I * 60)
    tl.debug_barrier()
    # positions of a 5x4 plane, padded to 8x4
    offs_yx_5x4 = tl.arange(0, 32)[None, :]
    py_5x4 = offs_yx_5x4 // 4
    px_5x4 = offs_yx_5x4 % 4
    mask_yx_5x4 = (py_5x4 < 5) & (px_5x4 < 4)
    # scratch area 0: a 5x4 plane in a 10x6 frame with a zero border (1 above, 1 left); 2 slices x (S, T) x BLOCK_I
    scr0 = scratch + offs_i0[:, None] * 60
    offs_st0 = py_5x4 * 6 + px_5x4 + 7
    offs_tap0 = py_5x4 * 6 + px_5x4  # tap (0, 0) of a 5x4 output in scratch area 0
    # persistent programs: block pid, pid + grid, ... (n_iters from the host, the same for all)
    for it in range(0, n_iters):
        start = (pid + it * tl.num_programs(0)) * BLOCK_I
        tl.debug_barrier()  # the previous items' scratch reads are done
        offs_i = start + offs_i0
        mask_i = (offs_i < n_items)[:, None]
        pair = (offs_i // 63)[:, None].to(tl.int64)
        plane = (offs_i % 63)[:, None]
        dy = plane // 7 - 4  # displacement rows in [-4, 4]
        dx = plane % 7 - 3  # displacement cols in [-3, 3]
        # self pairs (the same image twice), on the diagonal plane D = 0
        same_diag = (tl.load(same_ptr + pair, mask=mask_i, other=0) != 0) & (dy == 0) & (dx == 0)

        # line 2: input, S[p, p - D] = (1/2) sum_c xa[c, p] xb[c, p - D], T = 0
        # plane D = (dy, dx) of the 5x4 map: b-side q = p - D, valid where q is inside
        qy0 = py_5x4 - dy
        qx0 = px_5x4 - dx
        mask0 = mask_i & mask_yx_5x4 & (qy0 >= 0) & (qy0 < 5) & (qx0 >= 0) & (qx0 < 4)
        s = tl.zeros([BLOCK_I, 32], dtype=DTYPE)
        for c in tl.static_range(2):
            xa = tl.load(xa_ptr + pair * stride_xa_n + c * stride_xa_c + py_5x4 * stride_xa_h + px_5x4 * stride_xa_w, mask=mask0, other=0.0)
            xb = tl.load(xb_ptr + pair * stride_xb_n + c * stride_xb_c + qy0 * stride_xb_h + qx0 * stride_xb_w, mask=mask0, other=0.0)
            s += xa * xb
        s = s / 2

        # line 3: conv w_std=1.41421 trainable=false
        # the window reads plane (dy, dx): store it, then one load per tap
        tl.store(scr0 + offs_st0, s)
        tl.debug_barrier()
        tap_s = scr0 + offs_tap0
        acc_s = tl.zeros([BLOCK_I, 32], dtype=DTYPE)
        for ey in tl.static_range(3):
            for ex in tl.static_range(3):
                acc_s += tl.load(tap_s + (ey * 6 + ex))
        s = tl.where(mask0, 0.22222222222222227 * acc_s, 0.0)

        # line 4: relu
        # the variance maps of a and b at p and q (activation 0 of the packed rows)
        v1 = tl.load(va_ptr + pair * stride_va_n + py_5x4 * 4 + px_5x4, mask=mask0, other=1.0)
        v2 = tl.load(vb_ptr + pair * stride_vb_n + qy0 * 4 + qx0, mask=mask0, other=1.0)
        # a self pair at p = q: u and v2 are v1 itself, so v1 v2 - u^2 is exactly 0
        u = tl.where(same_diag, v1, s)
        v2 = tl.where(same_diag, v1, v2)
        m0_0 = sqrt(tl.maximum(v1 * v2 - u * u, 0.0))
        s = tl.where(mask0, m0_0 * 0.15915494309189535 + (3.141592653589793 - atan2(m0_0, u)) * 0.15915494309189535 * u, 0.0)

        # line 6: conv w_std=1.41421 b_std=0.1
        # the window reads plane (dy, dx): store it, then one load per tap
        tl.store(scr0 + 2 * BLOCK_I * 60 + offs_st0, s)
        tl.debug_barrier()
        tap_s = scr0 + 2 * BLOCK_I * 60 + offs_tap0
        acc_s = tl.zeros([BLOCK_I, 32], dtype=DTYPE)
        for ey in tl.static_range(3):
            for ex in tl.static_range(3):
                acc_s += tl.load(tap_s + (ey * 6 + ex))
        s = tl.where(mask0, 0.22222222222222227 * acc_s + 0.010000000000000002, 0.0)
        t = s

        # lines 6-7, 3 times over: a run-time loop, one copy of the code
        for rep in range(3):

            # line 7: relu
            # the variance maps of a and b at p and q (activation 1 of the packed rows)
            v1 = tl.load(va_ptr + pair * stride_va_n + 20 + rep * 20 + py_5x4 * 4 + px_5x4, mask=mask0, other=1.0)
            v2 = tl.load(vb_ptr + pair * stride_vb_n + 20 + rep * 20 + qy0 * 4 + qx0, mask=mask0, other=1.0)
            # a self pair at p = q: u and v2 are v1 itself, so v1 v2 - u^2 is exactly 0
            u = tl.where(same_diag, v1, s)
            v2 = tl.where(same_diag, v1, v2)
            m1_0 = sqrt(tl.maximum(v1 * v2 - u * u, 0.0))
            m1_1 = (3.141592653589793 - atan2(m1_0, u)) * 0.15915494309189535
            s = tl.where(mask0, m1_0 * 0.15915494309189535 + m1_1 * u, 0.0)
            t = tl.where(mask0, t * m1_1, 0.0)

            # line 6: conv w_std=1.41421 b_std=0.1
            # the window reads plane (dy, dx): store it, then one load per tap
            tl.store(scr0 + 2 * (rep % 2) * BLOCK_I * 60 + offs_st0, s)
            tl.store(scr0 + (2 * (rep % 2) + 1) * BLOCK_I * 60 + offs_st0, t)
            tl.debug_barrier()
            tap_s = scr0 + 2 * (rep % 2) * BLOCK_I * 60 + offs_tap0
            tap_t = scr0 + (2 * (rep % 2) + 1) * BLOCK_I * 60 + offs_tap0
            acc_s = tl.zeros([BLOCK_I, 32], dtype=DTYPE)
            acc_t = tl.zeros([BLOCK_I, 32], dtype=DTYPE)
            for ey in tl.static_range(3):
                for ex in tl.static_range(3):
                    acc_s += tl.load(tap_s + (ey * 6 + ex))
                    acc_t += tl.load(tap_t + (ey * 6 + ex))
            s = tl.where(mask0, 0.22222222222222227 * acc_s + 0.010000000000000002, 0.0)
            t = tl.where(mask0, 0.22222222222222227 * acc_t + s, 0.0)

        # line 7: relu
        # the variance maps of a and b at p and q (activation 4 of the packed rows)
        v1 = tl.load(va_ptr + pair * stride_va_n + 80 + py_5x4 * 4 + px_5x4, mask=mask0, other=1.0)
        v2 = tl.load(vb_ptr + pair * stride_vb_n + 80 + qy0 * 4 + qx0, mask=mask0, other=1.0)
        # a self pair at p = q: u and v2 are v1 itself, so v1 v2 - u^2 is exactly 0
        u = tl.where(same_diag, v1, s)
        v2 = tl.where(same_diag, v1, v2)
        m2_0 = sqrt(tl.maximum(v1 * v2 - u * u, 0.0))
        m2_1 = (3.141592653589793 - atan2(m2_0, u)) * 0.15915494309189535
        s = tl.where(mask0, m2_0 * 0.15915494309189535 + m2_1 * u, 0.0)
        t = tl.where(mask0, t * m2_1, 0.0)

        # one partial sum per item (pair, plane) for the full-sum window of the next kernel
        tl.store(s_out_ptr + offs_i[:, None], tl.sum(s, axis=1)[:, None], mask=mask_i)
        tl.store(t_out_ptr + offs_i[:, None], tl.sum(t, axis=1)[:, None], mask=mask_i)


@triton.jit(do_not_specialize=["n_pairs"])
def stage1_kernel(
    s_in_ptr,
    t_in_ptr,
    va_ptr,
    vb_ptr,
    stride_va_n,
    stride_vb_n,
    ia_ptr,
    ib_ptr,
    same_ptr,
    nngp_ptr,
    ntk_ptr,
    n_pairs,
    N_PARTS: tl.constexpr,  # partial sums per pair (a constant of the schedule before)
    BLOCK_P: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """Stage 1: the full sum (gap) of the partial sums per pair, then scalar layers."""
    DTYPE = s_in_ptr.dtype.element_ty
    pid = tl.program_id(0)
    offs_p = pid * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]
    mask_p = offs_p < n_pairs
    pair = tl.minimum(offs_p, n_pairs - 1)
    ia = tl.load(ia_ptr + pair).to(tl.int64)
    ib = tl.load(ib_ptr + pair).to(tl.int64)
    diag = tl.load(same_ptr + pair) != 0  # a self pair: its 1x1 maps are plane 0

    # line 9: gap: the sum of the previous kernel's N_PARTS partial sums per pair, in a fixed order
    acc_s = tl.zeros([BLOCK_P, BLOCK_R], dtype=DTYPE)
    acc_t = tl.zeros([BLOCK_P, BLOCK_R], dtype=DTYPE)
    for r0 in range(0, N_PARTS, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)[None, :]
        mask_r = mask_p & (offs_r < N_PARTS)
        acc_s += tl.load(s_in_ptr + pair * N_PARTS + offs_r, mask=mask_r, other=0.0)
        acc_t += tl.load(t_in_ptr + pair * N_PARTS + offs_r, mask=mask_r, other=0.0)
    s = tl.sum(acc_s, axis=1)[:, None]
    t = tl.sum(acc_t, axis=1)[:, None]
    s = s * 0.0025
    t = t * 0.0025

    # line 10: dense trainable=false
    s = s * 1.0
    t = t * 1.0

    tl.store(nngp_ptr + pair, s, mask=mask_p)
    tl.store(ntk_ptr + pair, t, mask=mask_p)
