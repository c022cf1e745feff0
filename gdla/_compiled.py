"""Compiled kernels (Numba, when installed): the product pair ``y = A v − a u``, ``w = Aᵀ y``
reading each row of A once, and Gram--Schmidt against a basis of rows.

NumPy's BLAS forms ``A v`` and then ``Aᵀ y`` as two matrix-vector products, each
reading all of A; on a CPU both are limited by how fast A can be read (from memory, or
from the last-level cache when A fits there).  A compiled loop takes a few rows at a
time: their dot products with ``v`` give ``y``'s entries, and the same rows, still in the
core's L1 or L2 cache, are added into ``w`` scaled by them.  A is read once per pair,
so the pair costs about what one product costs.

Measured (float64, AMD EPYC with 1 MB of L2 per core and a 32 MB L3, NumPy 2.4 on
OpenBLAS 0.3.31, Numba 0.68; medians of 300 to 400 calls): one thread, 2000 x 1000,
0.50 ms against 0.66 ms for BLAS's two products on one thread, and 4000 x 2000, 2.9 ms
against 5.3 ms.  Two threads, idle threads sleeping (``OMP_WAIT_POLICY=PASSIVE``) and
50 us of other work between calls, as in a Lanczos step: 2000 x 1000, 0.29 ms with rows
claimed in chunks of about 384 KB, 0.36 ms with the rows split in halves (the woken
thread starts tens of microseconds late), 0.37 ms for BLAS's two products; 4000 x 2000,
2.0 ms against 3.0 ms (3.1 ms for :mod:`gdla._fused`'s row blocks through BLAS).
Below about 8 MB (in the cores' caches) BLAS's two products are as fast or faster.
Eight rows per pass were faster than 1, 2 or 4 and as fast as 16: ``v`` and ``w`` are
read and written once per group of rows.  Gram--Schmidt against 40 rows of 1000 takes
14 us in one compiled call, against 17 us for its NumPy calls (on two BLAS threads);
from about 3000 columns on, NumPy's are faster.

Without Numba the accessors return None and callers keep NumPy's BLAS.  The kernels
are compiled on first use for each dtype (a few seconds; Numba caches them on disk),
and release the GIL, so that Python threads run them at once.  (Not Numba's own
parallel loops: its OpenMP layer loads a second libgomp beside torch's, after which
torch's results on concurrent Python threads were no longer bitwise reproducible, and
its workqueue layer took 1.4 ms to start a product of 0.3 ms.)

A low floor: it imports only :mod:`numpy` and, if installed, :mod:`numba`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "CONTROL_SIZE",
    "STOP",
    "gram_pair",
    "gram_rows",
    "lead",
    "kernel_accepts",
    "orthogonalise",
    "serve",
]

_LOCK = threading.Lock()
_KERNELS: list[Any] = []


def _kernels() -> Any:
    """:mod:`gdla._numba_kernels`, or None where Numba is not installed."""
    with _LOCK:
        if not _KERNELS:
            try:
                from . import _numba_kernels
            except ImportError:
                _KERNELS.append(None)
            else:
                _KERNELS.append(_numba_kernels)
        return _KERNELS[0]


def gram_rows() -> Callable[..., None] | None:
    """The row kernel ``(a, v, y, w, alpha, u, use_u, start, stop) -> None``, or None
    where Numba is not installed: ``y[start:stop] = A[start:stop] v − alpha u[start:stop]``
    (``u`` read only when ``use_u``) and ``A[start:stop]ᵀ y[start:stop]`` added to ``w``.

    ``a`` is a C-contiguous real matrix (m x n, float32 or float64); ``v`` (n), ``y``
    (m), ``w`` (n) and ``u`` (m) 1-D arrays of its dtype.  No bounds are checked.  It
    releases the GIL.  (Sums are reassociated: the result matches BLAS's to rounding,
    not bit for bit.)
    """
    kernels = _kernels()
    return None if kernels is None else kernels.gram_rows


def gram_pair() -> Callable[..., None] | None:
    """The kernel ``(a, v, y, w, alpha, u, use_u) -> None``: ``y = A v − alpha u``, ``w =
    Aᵀ y`` by :func:`gram_rows` on the calling thread; None without Numba."""
    kernels = _kernels()
    return None if kernels is None else kernels.gram_pair


def lead() -> Callable[..., int] | None:
    """The kernel ``(a, v, y, w, alpha, u, use_u, shared_v, shared_y, shared_u, scalars,
    parts, control, chunk) -> watching``: copy the product's vectors where the helpers
    read them, post it on ``control`` (int64, :data:`CONTROL_SIZE`), form chunks of it
    on the calling thread, wait for the helpers' chunks, and write ``y`` and ``w``; how
    many helpers were watching (:func:`serve`).  None without Numba."""
    kernels = _kernels()
    return None if kernels is None else kernels.lead


def serve() -> Callable[..., None] | None:
    """The kernel ``(a, v, y, u, scalars, parts, control, chunk, helper, patience) ->
    None``: a helper thread's loop, taking chunks of every product posted on
    ``control`` into ``parts[helper]`` until ``patience`` polls pass without one.
    None without Numba."""
    kernels = _kernels()
    return None if kernels is None else kernels.serve


# The shared state of one product's threads: int64 entries of its ``control`` array.
JOB = 0  # the job posted last (the leader increments it)
CLAIMED = 1  # (job << 32) + the rows of that job claimed so far
DONE = 2  # rows of the job posted last whose products are finished
AWAKE = 3  # how many helpers are in serve, watching JOB
#: Set to 1 when the products are done with: the helpers watching stop at once.
STOP = 4
#: Entries of a ``control`` array (one cache line).
CONTROL_SIZE = 8


def orthogonalise() -> Callable[..., tuple[float, bool]] | None:
    """The kernel ``(Q, w, c, keeps, tiny) -> (norm, broke)``: classical Gram--Schmidt of
    ``w`` (n) against the orthonormal rows of ``Q`` (r x n, C-contiguous, ``w``'s dtype)
    in place, the coefficients in ``c`` (r); a second pass when the first keeps less
    than ``keeps`` of the norm or leaves at most ``tiny`` (the DGKS test); ``w``'s norm
    after, and whether two passes left at most ``tiny``.  None without Numba."""
    kernels = _kernels()
    return None if kernels is None else kernels.orthogonalise


def kernel_accepts(matrix: Any) -> bool:
    """Whether :func:`gram_rows` takes ``matrix``: a C-contiguous float32 or float64 array."""
    return (
        isinstance(matrix, np.ndarray)
        and matrix.ndim == 2
        and matrix.dtype in (np.float32, np.float64)
        and matrix.flags.c_contiguous
    )
