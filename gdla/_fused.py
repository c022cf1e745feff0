"""Fused products through NumPy's BLAS: ``y = A v − a u`` and ``w = Aᴴ y`` reading A once.

On a CPU, a product of a matrix larger than the last-level cache with one vector is
limited by memory bandwidth, and a product with A followed by one with Aᴴ reads A from
memory twice.  Row block by row block, ``y_i = A_i v − a u_i`` and then ``A_iᴴ y_i``
while ``A_i`` is still in the cache read it once.  The rows are split into as many
contiguous ranges as NumPy's BLAS has threads, one range per thread (the caller's and
workers of a small pool), and NumPy's BLAS is held at one thread meanwhile: each core
then reuses its blocks from its own cache, where two BLAS threads sharing every block
would split each product of a block between them (the second product by columns,
so that each core reads the half of the block that the other one loaded).

Measured (float64, 2 threads, AMD EPYC with 1 MB of L2 per core and a 32 MB L3, NumPy
2.4 on OpenBLAS 0.3.31; interleaved medians): at 4000 x 2000 3.2--3.4 ms per step
against 4.2--4.6 ms for the same products with both BLAS threads on each 8 MB block and
4.1--4.3 ms for two whole products; at 20,000 x 500 4.2--4.5 ms against 6.5--6.9 and
6.9--7.9 ms.  Below :data:`FUSED_FROM` bytes A stays in the last-level cache between
two whole products, which are then faster (2000 x 1000: 0.5 ms against 0.6--0.7 ms).

NumPy's BLAS is held at one thread for the whole process while a fused product runs
(its thread count is global): another thread's NumPy BLAS calls meanwhile run on one
thread too.  Holders are counted, so concurrent fused products give back the count
that was set before the first of them.

Where Numba is installed, a matrix of at least :data:`COMPILED_FROM` bytes takes a
compiled loop instead (:mod:`gdla._compiled`): a few rows at a time, both products
while the rows are in L1 or L2, so that the pair costs about one read of A (4000 x 2000:
2.0 ms against the row blocks' 3.1 ms; 2000 x 1000, in the L3 cache: 0.30 against 0.37).

A low floor: it imports only :mod:`numpy`, :mod:`threading`, :mod:`concurrent.futures`,
:mod:`gdla._compiled` and, if installed, :mod:`threadpoolctl`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar, cast

import numpy as np

from ._compiled import CONTROL_SIZE, STOP, gram_pair, kernel_accepts, lead, serve

__all__ = ["FusedProducts", "FUSED_FROM", "BLOCK_BYTES", "blas_threads", "gram"]

#: Matrices of at least this many bytes get the fused, parallel products.
FUSED_FROM = 48 << 20

#: Matrices of at least this many bytes get the compiled kernel (where Numba is installed);
#: smaller ones, in the cores' caches, are as fast through BLAS's two products.
COMPILED_FROM = 8 << 20

#: The compiled kernel's threads claim rows in chunks of about this many bytes (measured
#: at 2000 x 1000: 256 KB to 1 MB alike, 64 KB slower).
CHUNK_BYTES = 384 << 10

#: Bytes of one row block: about one core's L2 cache here (1 and 2 MB measured alike,
#: 512 KB slower: each block costs two calls).
BLOCK_BYTES = 2 << 20


class _NumpyBlas:
    """NumPy's BLAS as :mod:`threadpoolctl` sees it, and a hold on one thread for it."""

    def __init__(self) -> None:
        self.controller: Any = None
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = 1
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency; without it, one thread
            return
        # NumPy's wheels keep their BLAS in numpy.libs (SciPy's its own, in scipy.libs);
        # otherwise the process's only BLAS, if it has one.
        package = os.path.dirname(os.path.realpath(np.__file__))
        homes = (package + os.sep, package + ".libs" + os.sep)
        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        own = [
            library
            for library in libraries
            if library.filepath and os.path.realpath(library.filepath).startswith(homes)
        ]
        if len(own) == 1 or len(libraries) == 1:
            self.controller = (own or libraries)[0]

    def threads(self) -> int:
        """NumPy's BLAS threads now (1 where unknown)."""
        if self.controller is None:
            return 1
        with self._lock:  # while held, report the threads it will return to
            return self._saved if self._holders else max(1, int(self.controller.num_threads))

    def __enter__(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._saved = max(1, int(self.controller.num_threads))
                self.controller.set_num_threads(1)
            self._holders += 1

    def __exit__(self, *exception: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self.controller.set_num_threads(self._saved)


_BLAS: _NumpyBlas | None = None
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _numpy_blas() -> _NumpyBlas:
    global _BLAS
    with _POOL_LOCK:
        if _BLAS is None:
            _BLAS = _NumpyBlas()
        return _BLAS


def blas_threads() -> int:
    """The threads of NumPy's BLAS (1 where :mod:`threadpoolctl` cannot tell)."""
    return _numpy_blas().threads()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool, with at least ``workers`` threads."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or workers > _POOL_SIZE:
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="gdla-fused")
            _POOL_SIZE = workers
        return _POOL


Result = TypeVar("Result")


def _row_ranges(rows: int, count: int) -> list[tuple[int, int]]:
    """``count`` contiguous ranges ``(start, stop)`` of ``rows`` rows, sizes within one."""
    return [(part * rows // count, (part + 1) * rows // count) for part in range(count)]


def _at_once(blas: _NumpyBlas, tasks: list[Callable[[], Result]]) -> list[Result]:
    """Run ``tasks`` at once, the first in the caller's thread and the others in the pool,
    with NumPy's BLAS held at one thread; their results, in order."""
    with blas:
        others = [_pool(len(tasks) - 1).submit(task) for task in tasks[1:]]
        try:
            first = tasks[0]()
        finally:
            rest = [other.result() for other in others]
    return [first, *rest]


class _Helpers:
    """Threads that help with the compiled products (:func:`gdla._compiled.serve`).

    Starting a sleeping thread takes tens of microseconds here (measured: 55 to 67 us
    for a round trip to a thread waiting on a lock or in a thread pool, on a 2-core
    virtual machine), a fifth of a product at 2000 x 1000.  A helper therefore watches
    for the next product for a while (:data:`PATIENCE` polls) after each, as OpenBLAS's
    threads do, and sleeps only when none comes; the product that finds it asleep is
    formed by the caller alone (the rows are claimed, not assigned) and wakes it for
    the next one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakes: list[threading.Semaphore] = []
        self._targets: list[tuple[Any, ...] | None] = []

    def wake(self, job: tuple[Any, ...], count: int) -> None:
        """Point ``count`` helpers at the products whose shared arrays are ``job`` (the
        arguments of :func:`gdla._compiled.serve` but the helper's index and patience)
        and wake them, starting any missing."""
        with self._lock:
            while len(self._wakes) < count:
                index = len(self._wakes)
                self._wakes.append(threading.Semaphore(0))
                self._targets.append(None)
                threading.Thread(
                    target=self._run, args=(index,), name=f"gdla-helper-{index}", daemon=True
                ).start()
            for index in range(count):
                self._targets[index] = job
                self._wakes[index].release()

    def _run(self, index: int) -> None:
        helping = cast(Callable[..., None], serve())
        while True:
            self._wakes[index].acquire()
            with self._lock:
                job, self._targets[index] = self._targets[index], None
            if job is not None:
                helping(*job, index + 1, PATIENCE)
                del job  # let the matrix go


_HELPERS = _Helpers()

#: How many times a helper polls for the next product before it sleeps (about 1 ms here:
#: 5 million polls took 1.4 ms; longer than a Lanczos step's work between two products,
#: 0.05 to 0.1 ms, and than most of its convergence checks).
PATIENCE = 4_000_000


class FusedProducts:
    """``(v, y, w, a=0.0, u=None) -> None``: ``y = A v − a u`` and ``w = Aᴴ y`` on 1-D arrays.

    ``matrix`` is A (m x n, real, C- or Fortran-ordered) and ``adjoint`` its transpose,
    a view of the same memory.  Three ways, the first that applies:

    - the compiled kernels (:mod:`gdla._compiled`, with Numba) for a C-contiguous
      float32 or float64 A of at least :data:`COMPILED_FROM` bytes: on as many threads
      as NumPy's BLAS has, the caller's and helpers (:class:`_Helpers`), each claiming
      chunks of :data:`CHUNK_BYTES` rows, their parts of ``Aᴴ y`` summed;
    - below :data:`FUSED_FROM` bytes, or with one BLAS thread and one block, two
      whole products through NumPy's BLAS;
    - otherwise blocks of :data:`BLOCK_BYTES` in one contiguous range of rows per BLAS
      thread (see the module's docstring).

    ``threads`` overrides the number of ranges (tests); ``compiled=False`` keeps BLAS's
    products.  One call at a time per instance: the partial sums live in the instance.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        adjoint: np.ndarray,
        threads: int | None = None,
        *,
        compiled: bool = True,
    ):
        m, n = matrix.shape
        self.matrix, self.adjoint = matrix, adjoint
        use_kernel = compiled and matrix.nbytes >= COMPILED_FROM and kernel_accepts(matrix)
        self.kernel = gram_pair() if use_kernel else None
        self.fused = self.kernel is not None or matrix.nbytes >= FUSED_FROM
        self.ranges: list[list[tuple[np.ndarray, np.ndarray, slice]]] = []
        self.kernel_threads = 0
        if not self.fused:
            return
        blas = _numpy_blas()
        count = blas.threads() if threads is None else threads
        if self.kernel is not None:
            self.kernel_threads = max(1, min(count, m))
            self._chunk = max(8, CHUNK_BYTES // max(matrix.itemsize * n, 1) // 8 * 8)
            self._no_u = np.empty(0, dtype=matrix.dtype)
            if self.kernel_threads > 1:
                # What the helper threads read: the job's vectors are copied here.
                self._v, self._y = np.empty(n, matrix.dtype), np.empty(m, matrix.dtype)
                self._u = np.empty(m, matrix.dtype)
                self._thread_parts = np.empty((self.kernel_threads, n), dtype=matrix.dtype)
                self._scalars = np.zeros(2, dtype=matrix.dtype)
                self._control = np.zeros(CONTROL_SIZE, dtype=np.int64)
            return
        count = max(1, min(count, m))
        self._blas = blas if count > 1 and blas.controller is not None else None
        if self._blas is None:
            count = 1
        rows = max(16, BLOCK_BYTES // max(matrix.itemsize * n, 1))
        for start, stop in _row_ranges(m, count):
            self.ranges.append([
                (matrix[i : min(i + rows, stop)], adjoint[:, i : min(i + rows, stop)],
                 slice(i, min(i + rows, stop)))
                for i in range(start, stop, rows)
            ])  # fmt: skip
        self._sums = [np.empty(n, dtype=matrix.dtype) for _ in self.ranges]
        self._parts = [np.empty(n, dtype=matrix.dtype) for _ in self.ranges]

    def _run_range(
        self, index: int, v: np.ndarray, y: np.ndarray, a: float, u: np.ndarray | None
    ) -> None:
        total, part = self._sums[index], self._parts[index]
        total.fill(0)
        for block, block_h, rows in self.ranges[index]:
            y_i = y[rows]
            np.dot(block, v, out=y_i)
            if u is not None:
                y_i -= a * u[rows]
            np.dot(block_h, y_i, out=part)
            total += part

    def _compiled(
        self, v: np.ndarray, y: np.ndarray, w: np.ndarray, a: float, u: np.ndarray | None
    ) -> None:
        m, n = self.matrix.shape
        # The kernels check no bounds: shapes are checked here (BLAS's products raise too).
        if (
            v.shape != (n,)
            or y.shape != (m,)
            or w.shape != (n,)
            or (u is not None and u.shape != (m,))
        ):
            raise ValueError(
                f"fused products of a {m} x {n} matrix take v and w of shape ({n},), y and u"
                f" of shape ({m},); got v {v.shape}, y {y.shape}, w {w.shape}"
                + ("" if u is None else f", u {u.shape}")
            )
        dtype = self.matrix.dtype
        # The kernels are compiled for arrays of A's dtype (a copy only if a caller mixes).
        if v.dtype != dtype:
            v = v.astype(dtype)
        if u is None:
            u, use_u = self._no_u, False
        else:
            u, use_u = (u if u.dtype == dtype else u.astype(dtype)), True
        if self.kernel_threads == 1:
            cast(Callable[..., None], self.kernel)(self.matrix, v, y, w, float(a), u, use_u)
            return
        # The helpers read the job from this instance's own arrays (lead copies it there).
        leader = cast(Callable[..., int], lead())
        shared = (self._v, self._y, self._u, self._scalars, self._thread_parts, self._control)
        watching = leader(self.matrix, v, y, w, float(a), u, use_u, *shared, self._chunk)
        if watching < self.kernel_threads - 1:
            _HELPERS.wake((self.matrix, *shared, self._chunk), self.kernel_threads - 1)

    def __del__(self) -> None:
        # Done with: the helpers stop polling at once rather than after PATIENCE polls
        # (they hold the shared arrays, not this instance).
        control = getattr(self, "_control", None)
        if control is not None:
            control[STOP] = 1

    def __call__(
        self,
        v: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        a: float = 0.0,
        u: np.ndarray | None = None,
    ) -> None:
        if self.kernel is not None:
            self._compiled(v, y, w, a, u)
            return
        if not self.fused:
            np.dot(self.matrix, v, out=y)
            if u is not None:
                y -= a * u
            np.dot(self.adjoint, y, out=w)
            return
        if self._blas is None:
            self._run_range(0, v, y, a, u)
            w[:] = self._sums[0]
            return
        _at_once(
            self._blas,
            [partial(self._run_range, index, v, y, a, u) for index in range(len(self.ranges))],
        )
        w[:] = self._sums[0]
        for total in self._sums[1:]:
            w += total


#: :func:`gram` splits matrices of at least this many bytes.
GRAM_SPLIT_FROM = 4 << 20


def gram(matrix: np.ndarray) -> np.ndarray:
    """``Aᵀ A`` (n x n) of a real ``matrix`` A (d x n) through NumPy's BLAS (a symmetric
    rank-k update: NumPy recognises a matrix times its own transpose).

    Above :data:`GRAM_SPLIT_FROM` bytes, with several BLAS threads, one contiguous range
    of rows per thread, each on one BLAS thread, and the parts summed: as fast as one
    threaded call, and OpenBLAS's own worker threads get no work, so they do not spin
    afterwards (for about 0.1 s by default) against the fused products that follow it
    in the sketch solver (measured: whole 20,000 x 500 solves 10 % slower after one
    threaded syrk, in a default environment).
    """
    blas = _numpy_blas()
    count = min(blas.threads(), matrix.shape[0])
    if blas.controller is None or count < 2 or matrix.nbytes < GRAM_SPLIT_FROM:
        return matrix.T @ matrix
    parts = [matrix[start:stop] for start, stop in _row_ranges(matrix.shape[0], count)]
    total, *rest = _at_once(blas, [partial(np.matmul, part.T, part) for part in parts])
    for result in rest:
        total += result
    return total
