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

from ._compiled import AWAKE, CLAIMED, DONE, JOB, STOP

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


def _item_pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    data = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, data, [index])


def _load_typing(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index]`` (int64) by an atomic, sequentially consistent load."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "seq_cst", 8)

    return types.int64(array, index), codegen


_load: Any = intrinsic(_load_typing)


def _store_typing(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] = value`` (int64) by an atomic, sequentially consistent store."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store_atomic(args[2], pointer, "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


_store: Any = intrinsic(_store_typing)


def _fetch_add_typing(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] += value`` (int64) atomically; the value before."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", pointer, args[2], "seq_cst")

    return types.int64(array, index, value), codegen


_fetch_add: Any = intrinsic(_fetch_add_typing)


def _compare_exchange_typing(
    typingctx: Any, array: Any, index: Any, expected: Any, new: Any
) -> Any:
    """``array[index] = new`` (int64) if it holds ``expected``, atomically; the value before."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        pair = builder.cmpxchg(pointer, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(array, index, expected, new), codegen


_compare_exchange: Any = intrinsic(_compare_exchange_typing)


_ROW_BITS = 32


@numba.njit(nogil=True, cache=True)
def claim_rows(
    a: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    u: np.ndarray,
    use_u: bool,
    control: np.ndarray,
    job: int,
    chunk: int,
) -> None:
    """:func:`gram_rows` on ``chunk`` rows at a time of job ``job``, claimed from
    ``control[CLAIMED]`` while it belongs to that job and rows are left, each chunk's
    part of ``Aᵀ y`` added to ``w`` and its rows to ``control[DONE]``."""
    m = a.shape[0]
    while True:
        claimed = _load(control, CLAIMED)
        start = claimed - (job << _ROW_BITS)
        if start < 0 or start >= m or (claimed >> _ROW_BITS) != job:
            return
        if _compare_exchange(control, CLAIMED, claimed, claimed + chunk) != claimed:
            continue  # another thread claimed it first
        stop = min(start + chunk, m)
        gram_rows(a, v, y, w, alpha, u, use_u, start, stop)
        _fetch_add(control, DONE, stop - start)


@numba.njit(nogil=True, cache=True)
def lead(
    a: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    u: np.ndarray,
    use_u: bool,
    shared_v: np.ndarray,
    shared_y: np.ndarray,
    shared_u: np.ndarray,
    scalars: np.ndarray,
    parts: np.ndarray,
    control: np.ndarray,
    chunk: int,
) -> int:
    """``y = A v − alpha u`` (without ``u`` unless ``use_u``) and ``w = Aᵀ y`` with the
    helpers (:func:`serve`): copy the job into the arrays they read (``shared_*``,
    ``scalars``), zero ``parts`` (helpers + 1 x n), post it on ``control``, take chunks
    of it on the calling thread into ``parts[0]``, wait until every claimed chunk is
    finished, and copy out ``y`` and the sum of the parts.  Returns how many helpers
    were watching when it was posted (the caller wakes the others for the next job)."""
    for col in range(v.shape[0]):
        shared_v[col] = v[col]
    if use_u:
        for row in range(u.shape[0]):
            shared_u[row] = u[row]
    scalars[0] = alpha
    scalars[1] = 1.0 if use_u else 0.0
    for t in range(parts.shape[0]):
        for col in range(parts.shape[1]):
            parts[t, col] = 0.0
    job = control[JOB] + 1
    _store(control, DONE, 0)
    _store(control, CLAIMED, job << _ROW_BITS)
    _store(control, JOB, job)  # posted: every write above is visible to a helper that sees it
    watched = _load(control, AWAKE)
    claim_rows(a, shared_v, shared_y, parts[0], alpha, shared_u, use_u, control, job, chunk)
    m = a.shape[0]
    while _load(control, DONE) < m:
        pass  # a helper is finishing a chunk it claimed
    for row in range(m):
        y[row] = shared_y[row]
    for col in range(w.shape[0]):
        total = parts[0, col]
        for t in range(1, parts.shape[0]):
            total += parts[t, col]
        w[col] = total
    return watched


@numba.njit(nogil=True, cache=True)
def serve(
    a: np.ndarray,
    v: np.ndarray,
    y: np.ndarray,
    u: np.ndarray,
    scalars: np.ndarray,
    parts: np.ndarray,
    control: np.ndarray,
    chunk: int,
    helper: int,
    patience: int,
) -> None:
    """A helper's loop: watch ``control[JOB]`` and take chunks of every new job into
    ``parts[helper]`` (``alpha = scalars[0]``, ``u`` used when ``scalars[1]``) until
    ``patience`` polls pass without one or ``control[STOP]`` is set; then the caller
    sleeps until woken."""
    _fetch_add(control, AWAKE, 1)
    seen = _load(control, JOB)
    idle = 0
    while True:
        job = _load(control, JOB)
        if job != seen:
            seen = job
            claim_rows(a, v, y, parts[helper], scalars[0], u, scalars[1] != 0.0, control, job,
                       chunk)  # fmt: skip
            idle = 0
            continue
        idle += 1
        if idle >= patience or _load(control, STOP) != 0:
            _fetch_add(control, AWAKE, -1)
            if _load(control, JOB) == seen or _load(control, STOP) != 0:
                return
            _fetch_add(control, AWAKE, 1)  # a job was posted meanwhile: take it
            idle = 0


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
