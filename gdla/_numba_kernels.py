"""The Numba kernels behind :mod:`gdla._compiled` (imported only where Numba is installed).

Compiled on first use for each dtype and cached on disk by Numba (``cache=True``: next
to this file, or in Numba's per-user cache where this directory is read only).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

#: Numba's fast-math flags: reassociation (so that the sums are vectorised) and fused
#: multiply-adds only; NaN and infinity keep their IEEE behaviour.
_REASSOCIATE = {"reassoc", "contract"}


@numba.njit(nogil=True, fastmath=_REASSOCIATE, cache=True, boundscheck=False)
def gram_rows(
    a: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    u: np.ndarray,
    use_u: bool,
    start: int,
    stop: int,
) -> None:
    """``y[start:stop] = A[start:stop] v − alpha u[start:stop]`` (without ``u`` unless
    ``use_u``), and ``A[start:stop]ᵀ y[start:stop]`` added to ``w``."""
    n = a.shape[1]
    i = start
    while i + 8 <= stop:
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for c in range(n):
            vc = v[c]
            s0 += a[i, c] * vc
            s1 += a[i + 1, c] * vc
            s2 += a[i + 2, c] * vc
            s3 += a[i + 3, c] * vc
            s4 += a[i + 4, c] * vc
            s5 += a[i + 5, c] * vc
            s6 += a[i + 6, c] * vc
            s7 += a[i + 7, c] * vc
        if use_u:
            s0 -= alpha * u[i]
            s1 -= alpha * u[i + 1]
            s2 -= alpha * u[i + 2]
            s3 -= alpha * u[i + 3]
            s4 -= alpha * u[i + 4]
            s5 -= alpha * u[i + 5]
            s6 -= alpha * u[i + 6]
            s7 -= alpha * u[i + 7]
        y[i] = s0
        y[i + 1] = s1
        y[i + 2] = s2
        y[i + 3] = s3
        y[i + 4] = s4
        y[i + 5] = s5
        y[i + 6] = s6
        y[i + 7] = s7
        for c in range(n):
            w[c] += (
                s0 * a[i, c] + s1 * a[i + 1, c] + s2 * a[i + 2, c] + s3 * a[i + 3, c]
                + s4 * a[i + 4, c] + s5 * a[i + 5, c] + s6 * a[i + 6, c] + s7 * a[i + 7, c]
            )  # fmt: skip
        i += 8
    while i < stop:
        s = 0.0
        for c in range(n):
            s += a[i, c] * v[c]
        if use_u:
            s -= alpha * u[i]
        y[i] = s
        for c in range(n):
            w[c] += s * a[i, c]
        i += 1


@numba.njit(nogil=True, cache=True)
def gram_pair(
    a: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    u: np.ndarray,
    use_u: bool,
) -> None:
    """``y = A v − alpha u`` (without ``u`` unless ``use_u``) and ``w = Aᵀ y``, on the
    calling thread."""
    for col in range(w.shape[0]):
        w[col] = 0.0
    gram_rows(a, v, y, w, alpha, u, use_u, 0, a.shape[0])


@intrinsic
def _fetch_add(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] += value`` atomically; the value before (an LLVM ``atomicrmw``)."""
    signature = types.int64(array, index, value)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array_type = sig.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, data, [args[1]])
        return builder.atomic_rmw("add", pointer, args[2], "seq_cst")

    return signature, codegen


@numba.njit(nogil=True, parallel=True, cache=True)
def gram_shared(
    a: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    u: np.ndarray,
    use_u: bool,
    sums: np.ndarray,
    claimed: np.ndarray,
    chunk: int,
) -> None:
    """:func:`gram_pair` on Numba's threads (as many as ``numba.set_num_threads`` asked
    for in the calling thread, one row of ``sums`` each): each claims ``chunk`` rows at
    a time from the counter ``claimed`` (int64, one entry) until none are left, so that
    the calling thread starts at once and a thread that wakes late takes fewer rows;
    thread ``t``'s part of ``Aᵀ y`` in ``sums[t]``, their sum in ``w``."""
    m = a.shape[0]
    threads = sums.shape[0]
    claimed[0] = 0
    for t in numba.prange(threads):
        for col in range(sums.shape[1]):
            sums[t, col] = 0.0
        while True:
            start: int = _fetch_add(claimed, 0, chunk)  # type: ignore[call-arg]
            if start >= m:
                break
            gram_rows(a, v, y, sums[t], alpha, u, use_u, start, min(start + chunk, m))
    for col in range(w.shape[0]):
        total = sums[0, col]
        for t in range(1, threads):
            total += sums[t, col]
        w[col] = total


@numba.njit(nogil=True, fastmath=_REASSOCIATE, cache=True, boundscheck=False)
def orthogonalise(
    Q: np.ndarray, w: np.ndarray, c: np.ndarray, keeps: float, tiny: float
) -> tuple[float, bool]:
    """Classical Gram--Schmidt of ``w`` against the orthonormal rows of ``Q`` (r x n), in
    place, the coefficients ``Q w`` in ``c`` (r); a second pass when the first keeps less
    than ``keeps`` of ``w``'s norm or leaves at most ``tiny``.  Returns ``w``'s norm after
    and whether two passes left at most ``tiny`` (an invariant subspace)."""
    r, n = Q.shape
    before = 0.0
    for col in range(n):
        before += w[col] * w[col]
    before = np.sqrt(before)
    d = np.empty(r, dtype=c.dtype)
    for i in range(r):
        c[i] = 0.0
    after = before
    for sweep in range(2):
        for i in range(r):
            s = 0.0
            for col in range(n):
                s += Q[i, col] * w[col]
            d[i] = s
            c[i] += s
        for i in range(r):
            di = d[i]
            for col in range(n):
                w[col] -= di * Q[i, col]
        after = 0.0
        for col in range(n):
            after += w[col] * w[col]
        after = np.sqrt(after)
        if sweep == 0 and after >= keeps * before and after > tiny:
            return after, False
    return after, after <= tiny
