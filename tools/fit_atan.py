"""Fit the atan polynomials used by `ntkc/backends/triton/fastmath.py` (run once; the coefficients are pasted there).

atan(t) = t * Q(t^2) for t in [-1, 1], Q of degree k - 1 in z = t^2, chosen to minimise the
largest *relative* error of Q against g(z) = atan(sqrt z) / sqrt z on z in [0, 1] (the Remez
exchange algorithm, in 50-digit arithmetic with mpmath). The relative error of atan(t) is that
of Q, for every t. Usage: python tools/fit_atan.py [k ...]; prints coefficients and errors.
"""
from __future__ import annotations

import sys

import mpmath as mp

mp.mp.dps = 50


def g(z):
    if z == 0:
        return mp.mpf(1)
    s = mp.sqrt(z)
    return mp.atan(s) / s


def remez(k: int, iters: int = 40):
    """Coefficients q0..q_{k-1} (q0 first) and the levelled relative error."""
    n = k + 1
    # Chebyshev extrema on [0, 1] as the first reference
    ref = [(1 - mp.cos(mp.pi * i / (n - 1))) / 2 for i in range(n)]
    coef, err = None, None
    for _ in range(iters):
        # solve sum_j q_j z_i^j - g(z_i) = (-1)^i E g(z_i)
        a = mp.matrix(n, n)
        b = mp.matrix(n, 1)
        for i, z in enumerate(ref):
            gz = g(z)
            for j in range(k):
                a[i, j] = z ** j
            a[i, k] = -((-1) ** i) * gz
            b[i] = gz
        sol = mp.lu_solve(a, b)
        coef = [sol[j] for j in range(k)]
        err = sol[k]
        # new reference: extrema of the relative error on a fine grid
        grid = [mp.mpf(i) / 4000 for i in range(4001)]
        e = [(poly(coef, z) - g(z)) / g(z) for z in grid]
        ext = []
        for i in range(len(grid)):
            left = e[i - 1] if i > 0 else None
            right = e[i + 1] if i < len(grid) - 1 else None
            if (left is None or abs(e[i]) >= abs(left)) and (right is None or abs(e[i]) >= abs(right)):
                ext.append(i)
        # keep alternating extrema, the largest of each sign run
        runs = []
        for i in ext:
            if runs and mp.sign(e[i]) == mp.sign(e[runs[-1]]):
                if abs(e[i]) > abs(e[runs[-1]]):
                    runs[-1] = i
            else:
                runs.append(i)
        while len(runs) > n:
            # drop the smaller end
            if abs(e[runs[0]]) < abs(e[runs[-1]]):
                runs.pop(0)
            else:
                runs.pop()
        if len(runs) < n:
            break
        ref = [grid[i] for i in runs]
    worst = max(abs((poly(coef, mp.mpf(i) / 20000) - g(mp.mpf(i) / 20000)) / g(mp.mpf(i) / 20000)) for i in range(20001))
    return coef, worst


def poly(coef, z):
    acc = mp.mpf(0)
    for c in reversed(coef):
        acc = acc * z + c
    return acc


if __name__ == "__main__":
    for k in [int(a) for a in sys.argv[1:]] or [7, 8, 9]:
        coef, worst = remez(k)
        print(f"k={k}: max relative error {mp.nstr(worst, 4)}")
        print("  (" + ", ".join(mp.nstr(c, 20) for c in coef) + ")")
