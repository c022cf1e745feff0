"""Top-k SVD against every peer a user would pick, at the same two-sided residual.

``python -m gdla.bench --peers`` (or ``python -m gdla.bench_svd``) prints, for each
spectrum, size and target, the time and the number of matrix-vector products of
:func:`gdla.svd`'s default and of its peers, each tuned minimally to reach the
target:

============  =================================================================
``gdla``      :func:`gdla.svd` (default method); grid: ``rtol``
``arpack``    :func:`scipy.sparse.linalg.svds`, ``solver="arpack"``; grid: ``tol``
``propack``   :func:`scipy.sparse.linalg.svds`, ``solver="propack"``; grid: ``tol``
``lobpcg``    :func:`scipy.sparse.linalg.svds`, ``solver="lobpcg"``; grid: ``tol``
``sklearn``   :func:`sklearn.utils.extmath.randomized_svd`; grid: ``n_oversamples``
              and ``n_iter``
``lowrank``   :func:`torch.svd_lowrank`; grid: ``q`` and ``niter``
============  =================================================================

Every method is measured by the same two-sided residual of its top-``k`` triplets,

.. math:: \\max_i \\max(\\|A v_i - \\sigma_i u_i\\|, \\|A^H u_i - \\sigma_i v_i\\|) / \\sigma_1,

since one side alone vanishes by construction for the Lanczos-type methods (they
form ``U = A V / S``).  "Tuned minimally": for each method the loosest tolerance
(or the fewest passes, then the smallest block) of its grid, scanned from loose to
tight, whose triplets meet the target; a method that no grid point brings to the
target is reported as failing (``inf``).  Every library gets the same number of
threads (:func:`torch.set_num_threads` and :mod:`threadpoolctl`); the tuning run is
the warm-up; the tuned calls are then timed interleaved (one call of each method
per round, so that a change of load hits all of them alike) and the best of the
rounds is reported (another process can only slow a call down).  Products are
counted as matrix-vector products with ``A`` or ``A^H`` (a block of ``b`` columns
counts ``b``): they do not depend on the load.

A last table, :func:`sparse_rows`, runs :func:`gdla.svd` on a sparse torch CSR tensor
(20,000 x 5,000, density 1e-3) against ``svds`` (ARPACK) on the same scipy CSR
matrix, tuned the same way, with the median of interleaved rounds and the time ratio.

scipy and scikit-learn are optional: without them their rows are skipped.  Idle
threads spin-wait for work by default and take the cores from the library that has
some: NumPy's and SciPy's OpenBLAS copies unless ``OPENBLAS_THREAD_TIMEOUT`` is
small, torch's OpenMP pool (libgomp) unless ``OMP_WAIT_POLICY=PASSIVE``.  On a
loaded machine the spinning made :func:`gdla.svd` at 2 threads up to ten times
slower than with passive waiting, while ARPACK's time barely moved (measured on 2
shared cores; the single-vector kernel runs hundreds of short parallel products).
:func:`main` sets both (unless set already) and, since the libraries read them when
they load, runs itself again in a fresh interpreter.

``--record PATH`` also writes everything measured to ``PATH`` (JSON) with its
provenance (:func:`peer_record`, :func:`write_peer_record`); :func:`load_peer_record`
reads it back and :func:`peer_record_section` renders it as Markdown, which is how
the benchmarks chapter shows a run too long for the book's build
(``book/data/svd-peers.json``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from . import matrices
from .svd import svd

__all__ = [
    "SPECTRA",
    "PEERS",
    "PeerRun",
    "peer_matrix",
    "two_sided_residual",
    "run_peer",
    "tune_peer",
    "peer_table",
    "scaling",
    "sparse_test_matrix",
    "SparseRun",
    "sparse_rows",
    "fit_slope",
    "format_peer_table",
    "describe_grid",
    "peer_record",
    "write_peer_record",
    "load_peer_record",
    "pool_peer_records",
    "peer_record_section",
    "peer_record_command",
    "main",
]

#: The spectra of the comparison: name -> description.
SPECTRA = {
    "0.9^j": "singular values 0.9**j (fast decay, easy)",
    "0.99^j": "singular values 0.99**j (slow decay)",
    "gaussian": "i.i.d. standard normal entries (flat top of the spectrum, hardest)",
}

#: The methods compared, in table order.
PEERS = ("gdla", "arpack", "propack", "lobpcg", "sklearn", "lowrank")

Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def peer_matrix(spectrum: str, m: int, n: int, *, seed: int = 0) -> torch.Tensor:
    """The float64 ``m x n`` test matrix of ``spectrum`` (a key of :data:`SPECTRA`)."""
    if spectrum == "0.9^j":
        return matrices.decaying_spectrum(m, n, rate=0.9, seed=seed)
    if spectrum == "0.99^j":
        return matrices.decaying_spectrum(m, n, rate=0.99, seed=seed)
    if spectrum == "gaussian":
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(m, n, generator=generator, dtype=torch.float64)
    raise ValueError(f"spectrum must be one of {sorted(SPECTRA)}, got {spectrum!r}")


def two_sided_residual(A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> float:
    """``max_i max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) / s_1`` of the columns of U, V."""
    left = torch.linalg.vector_norm(A @ V - U * S, dim=0)
    right = torch.linalg.vector_norm(A.mH @ U - V * S, dim=0)
    return float(torch.maximum(left, right).max() / S.max())


# ----------------------------------------------------------------------------
# Counting products
# ----------------------------------------------------------------------------


class _TorchProducts(TorchFunctionMode):
    """Counts the columns multiplied by ``A`` or ``A^H`` (views of A's storage) in torch.

    A product with a block of ``r`` of A's rows (or columns) counts ``r / m`` (``r /
    n``) of a product, so that a product formed block by block counts once."""

    _PRODUCTS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm,
                 torch.mv, torch.Tensor.mv}  # fmt: skip
    _ADD_PRODUCTS = {torch.addmv, torch.Tensor.addmv, torch.Tensor.addmv_, torch.addmm,
                     torch.Tensor.addmm, torch.Tensor.addmm_}  # fmt: skip

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.storage = A.untyped_storage().data_ptr()
        self.transposed = A.mT.shape
        self.numel = A.numel()
        self.total = 0.0

    @property
    def count(self) -> int:
        return round(self.total)

    def _is_A(self, t: object) -> bool:
        """A view of A, or a transposed copy of it (a contiguous tensor of A^T's shape;
        the test matrices are not square), which a method may make for faster products."""
        if not isinstance(t, torch.Tensor):
            return False
        if t.untyped_storage().data_ptr() == self.storage:
            return True
        return t.shape == self.transposed and t.shape[-1] != t.shape[-2] and t.is_contiguous()

    def _add(self, left: object, right: object) -> None:
        if self._is_A(left) and not self._is_A(right):
            assert isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor)
            self.total += right.numel() / left.shape[-1] * left.numel() / self.numel
        elif self._is_A(right) and not self._is_A(left):
            assert isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor)
            self.total += left.numel() / right.shape[-2] * right.numel() / self.numel

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        if func in self._PRODUCTS and len(args) >= 2:
            self._add(args[0], args[1])
        elif func in self._ADD_PRODUCTS and len(args) >= 3:
            self._add(args[1], args[2])
        return result


def _counting_operator(array: Any) -> tuple[Any, list[int]]:
    """A scipy LinearOperator for ``array`` that counts the vectors it multiplies."""
    from scipy.sparse.linalg import LinearOperator

    count = [0]

    def columns(x: Any) -> int:
        return 1 if x.ndim == 1 else int(x.shape[1])

    def matvec(x: Any) -> Any:
        count[0] += columns(x)
        return array @ x

    def rmatvec(x: Any) -> Any:
        count[0] += columns(x)
        return array.T.conj() @ x

    operator = LinearOperator(
        array.shape, matvec=matvec, rmatvec=rmatvec, matmat=matvec, rmatmat=rmatvec,
        dtype=array.dtype,
    )  # fmt: skip
    return operator, count


# ----------------------------------------------------------------------------
# The peers: each runner returns (U, S, V) as float64 torch tensors, top k first
# ----------------------------------------------------------------------------


def _from_numpy(u: Any, s: Any, vh: Any, k: int) -> Factors:
    S = torch.from_numpy(s.copy())
    order = torch.argsort(S, descending=True)[:k]
    U = torch.from_numpy(u.copy())[:, order]
    V = torch.from_numpy(vh.copy()).mH[:, order]
    return U, S[order], V


def _run_gdla(A: torch.Tensor, k: int, knob: dict[str, Any]) -> Factors:
    result = svd(A, k, rtol=knob["rtol"])
    return result.U, result.S, result.Vh.mH


def _run_svds(solver: str) -> Callable[[Any, int, dict[str, Any]], Factors]:
    def run(A: Any, k: int, knob: dict[str, Any]) -> Factors:
        from scipy.sparse.linalg import svds

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lobpcg and propack warn when they stop early
            u, s, vh = svds(A, k=k, tol=knob["tol"], solver=solver, rng=0, **knob.get("extra", {}))
        return _from_numpy(u, s, vh, k)

    return run


def _run_sklearn(A: Any, k: int, knob: dict[str, Any]) -> Factors:
    from sklearn.utils.extmath import randomized_svd

    u, s, vh = randomized_svd(A, k, n_oversamples=knob["p"], n_iter=knob["n_iter"], random_state=0)
    return _from_numpy(u, s, vh, k)


def _run_lowrank(A: torch.Tensor, k: int, knob: dict[str, Any]) -> Factors:
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        U, S, V = torch.svd_lowrank(A, q=knob["q"], niter=knob["niter"])
    finally:
        torch.random.set_rng_state(state)
    return U[:, :k], S[:k], V[:, :k]


_RUNNERS: dict[str, Callable[[Any, int, dict[str, Any]], Factors]] = {
    "gdla": _run_gdla,
    "arpack": _run_svds("arpack"),
    "propack": _run_svds("propack"),
    "lobpcg": _run_svds("lobpcg"),
    "sklearn": _run_sklearn,
    "lowrank": _run_lowrank,
}
_NUMPY_PEERS = ("arpack", "propack", "lobpcg", "sklearn")


def available(method: str) -> bool:
    """Whether ``method``'s library is installed (scipy for svds, scikit-learn for sklearn)."""
    module = {"sklearn": "sklearn"}.get(method, "scipy" if method in _NUMPY_PEERS else "torch")
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_peer(method: str, A: torch.Tensor, k: int, knob: dict[str, Any]) -> tuple[Factors, int]:
    """Run ``method`` (a key of :data:`PEERS`) with setting ``knob``; return the factors and
    the number of matrix-vector products with ``A`` or ``A^H`` it took.

    ``gdla.svd`` runs twice: once under the product counter, whose torch function mode
    turns off its NumPy steps (products it could not see), for the count, and once as
    the timings run it, for the factors whose residual is checked."""
    if method in ("gdla", "lowrank"):
        with _TorchProducts(A) as counter:
            factors = _RUNNERS[method](A, k, knob)
        if method == "gdla":
            factors = _RUNNERS[method](A, k, knob)
        return factors, counter.count
    array = A.numpy()
    if method == "sklearn":
        # randomized_svd: one product to sketch, two per power iteration, one to project.
        q = k + knob["p"]
        return _run_sklearn(array, k, knob), (2 * knob["n_iter"] + 2) * q
    operator, count = _counting_operator(array)
    return _RUNNERS[method](operator, k, knob), count[0]


#: The larger step limits (``maxiter``) tried for PROPACK after svds' default of 10 k steps.
PROPACK_STEPS = (400,)


def _grid(method: str, target: float, k: int, n: int) -> Iterator[dict[str, Any]]:
    """The settings of ``method``, from the loosest (cheapest) to the tightest."""
    if method == "gdla":
        # gdla's rtol bounds max(||AV-US||_F, ||A^H U - VS||_F) / ||A||_F, and ||A||_F >= s_1;
        # it checks its estimate every few steps, and Lanczos converges faster than
        # geometrically near the end, so an rtol far above the target can meet it.
        for exponent in (4, 3, 2, 1.5, 1, 0.5, 0, -0.5, -1, -2):
            yield {"rtol": target * 10.0**exponent}
    elif method in ("arpack", "propack", "lobpcg"):
        # svds passes tol**2 to the eigensolver of A^H A: tol ~ sqrt(target) suffices.
        # LOBPCG: at most 100 iterations (some 2,000 products for k = 10, two per column
        # of its residual block per iteration; four to forty times what the Lanczos
        # methods need here): beyond, it cannot catch up.
        # PROPACK, as svds runs it, is Lanczos without restarts, stopped after maxiter
        # steps (default 10 k): where that is too few (flat spectra) it raises, so each
        # tolerance is also tried with PROPACK_STEPS steps.
        extra = {"maxiter": 100} if method == "lobpcg" else {}
        steps = (None, *PROPACK_STEPS) if method == "propack" else (None,)
        exponents = (2, 1.5, 1, 0.5, 0, -0.5, -1, -1.5, -2, -3)
        for tol in [math.sqrt(target) * 10.0**e for e in exponents] + [0.0]:
            for cap in steps:  # tol 0: machine precision
                knob: dict[str, Any] = {"tol": tol, "extra": extra}
                if cap is not None:
                    knob.update(maxiter=cap, extra={"maxiter": cap})
                yield knob
    else:
        # The fewest power iterations, capped at 32: beyond, a block method spends
        # (2 * 32 + 2) * (k + p) products, far more than the Krylov methods need.
        # The oversamplings of bench.py's svd_lowrank tuning (blocks of k + 10 to k + 70).
        for p in (10, 20, 40, 70):
            if k + p > n:
                continue
            for count in (0, 1, 2, 3, 4, 6, 8, 11, 16, 22, 32):
                if method == "sklearn":
                    yield {"p": p, "n_iter": count}
                else:
                    yield {"q": k + p, "niter": count}


@dataclass(frozen=True)
class PeerRun:
    """One method on one problem: its tuned setting, residual, products and best time."""

    spectrum: str
    m: int
    n: int
    target: float
    method: str
    setting: str
    residual: float
    products: int
    seconds: float

    @property
    def met(self) -> bool:
        return self.residual <= self.target


def _key(knob: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """A hashable key of a setting (tolerances rounded, so that grids of different
    targets share their common points)."""
    return tuple((key, float(f"{value:.6g}")) for key, value in knob.items() if key != "extra")


def tune_peer(
    method: str,
    A: torch.Tensor,
    k: int,
    target: float,
    cache: dict[Any, tuple[float, int]] | None = None,
) -> tuple[dict[str, Any] | None, float, int]:
    """The cheapest grid setting of ``method`` meeting ``target``: (knob, residual, products).

    Tolerance-driven methods: the loosest tolerance of the grid that meets the target.
    Randomized methods: for each oversampling, the fewest passes that meet it; of
    those, the one with the fewest products.  Returns ``(None, best residual, 0)``
    when no setting meets it.  ``cache`` (one per method and matrix) keeps the
    residual and products of each setting already run, for the next target.
    """
    cache = {} if cache is None else cache
    best: tuple[dict[str, Any] | None, float, int] = (None, math.inf, 0)
    done_blocks: set[int] = set()
    closest = math.inf
    for knob in _grid(method, target, k, A.shape[-1]):
        block = knob.get("p", knob.get("q", 0))
        if block in done_blocks:
            continue
        key = (method, _key(knob))
        if key not in cache:
            try:
                (U, S, V), products = run_peer(method, A, k, knob)
                cache[key] = (two_sided_residual(A, U, S, V), products)
            except Exception:  # noqa: BLE001 - PROPACK and LOBPCG raise when they stall
                cache[key] = (math.inf, 0)
        residual, products = cache[key]
        closest = min(closest, residual)
        if residual <= target:
            if best[0] is None or products < best[2]:
                best = (knob, residual, products)
            if method in ("sklearn", "lowrank"):
                done_blocks.add(block)
                continue
            return best
    return best if best[0] is not None else (None, closest, 0)


def _describe(knob: dict[str, Any] | None) -> str:
    if knob is None:
        return "none meets target"
    parts = []
    for key, value in knob.items():
        if key == "extra":
            continue
        parts.append(f"{key}={value:.1e}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts)


def at_loosest_setting(run: PeerRun, k: int = 10) -> bool:
    """Whether ``run`` met its target with the loosest tolerance of its method's grid
    (``gdla`` and the ``svds`` solvers): a looser one, outside the grid, might have met
    it at less cost, so its time is an upper bound on the tuned method's."""
    if run.method not in ("gdla", "arpack", "propack", "lobpcg") or not run.met:
        return False
    return run.setting == _describe(next(_grid(run.method, run.target, k, run.n)))


@contextmanager
def same_threads(threads: int) -> Iterator[None]:
    """Give torch and every BLAS/OpenMP pool in the process ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
    else:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def peer_table(
    spectra: Sequence[str] = tuple(SPECTRA),
    sizes: Sequence[tuple[int, int]] = ((1000, 500), (2000, 1000), (4000, 2000)),
    targets: Sequence[float] = (1e-8, 1e-10, 1e-12),
    *,
    k: int = 10,
    methods: Sequence[str] = PEERS,
    repeats: int = 3,
    threads: int | None = None,
    progress: Callable[[PeerRun], object] | None = None,
) -> list[PeerRun]:
    """Tune every available method on every problem, then time the tuned calls interleaved.

    Targets are taken from the loosest: a method that no setting brings to a target is
    not run again for the tighter ones.  ``progress(run)`` is called after each result.
    """
    methods = [method for method in methods if available(method)]
    threads = threads or torch.get_num_threads()
    runs = []
    with same_threads(threads), torch.no_grad():
        for m, n in sizes:
            for spectrum in spectra:
                A = peer_matrix(spectrum, m, n)
                array = A.numpy()
                caches: dict[str, dict[Any, tuple[float, int]]] = {name: {} for name in methods}
                failed: dict[str, float] = {}  # method -> closest residual at a looser target
                for target in sorted(targets, reverse=True):
                    tuned = {
                        method: (None, failed[method], 0)
                        if method in failed
                        else tune_peer(method, A, k, target, caches[method])
                        for method in methods
                    }
                    failed.update(
                        {method: entry[1] for method, entry in tuned.items() if entry[0] is None}
                    )
                    calls = {}
                    for method, (knob, _, _) in tuned.items():
                        if knob is not None:
                            operand = array if method in _NUMPY_PEERS else A
                            runner = _RUNNERS[method]
                            calls[method] = (runner, operand, knob)
                    samples: dict[str, list[float]] = {method: [] for method in calls}
                    for _ in range(repeats):
                        for method, (runner, operand, knob) in calls.items():
                            start = time.perf_counter()
                            runner(operand, k, knob)
                            samples[method].append(time.perf_counter() - start)
                    for method, (knob, residual, products) in tuned.items():
                        seconds = min(samples[method]) if method in samples else math.inf
                        runs.append(
                            PeerRun(spectrum, m, n, target, method, _describe(knob), residual,
                                    products, seconds)
                        )  # fmt: skip
                        if progress is not None:
                            progress(runs[-1])
    return runs


def fit_slope(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(seconds) against log(size)."""
    x = [math.log(size) for size in sizes]
    y = [math.log(value) for value in seconds]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum(
        (a - mx) ** 2 for a in x
    )


def sparse_test_matrix(m: int, n: int, density: float, *, seed: int = 0) -> torch.Tensor:
    """A float64 ``m x n`` torch CSR matrix with ``round(density m n)`` standard normal
    entries at distinct positions drawn uniformly at random (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    nnz = round(density * m * n)
    where = torch.randperm(m * n, generator=generator)[:nnz].sort().values
    values = torch.randn(nnz, generator=generator, dtype=torch.float64)
    indices = torch.stack([where // n, where % n])
    coo = torch.sparse_coo_tensor(indices, values, (m, n), check_invariants=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return coo.coalesce().to_sparse_csr()


@dataclass(frozen=True)
class SparseRun:
    """gdla.svd against scipy's svds (ARPACK) on one sparse matrix and target."""

    m: int
    n: int
    nnz: int
    target: float
    gdla_setting: str
    gdla_residual: float
    gdla_seconds: float
    arpack_setting: str
    arpack_residual: float
    arpack_seconds: float

    @property
    def ratio(self) -> float:
        """gdla's time over ARPACK's (inf where one misses the target)."""
        return self.gdla_seconds / self.arpack_seconds


def sparse_rows(
    m: int = 20_000,
    n: int = 5_000,
    density: float = 1e-3,
    targets: Sequence[float] = (1e-8, 1e-10, 1e-12),
    *,
    k: int = 10,
    repeats: int = 5,
    threads: int | None = None,
) -> list[SparseRun]:
    """Top-``k`` SVD of a sparse matrix: :func:`gdla.svd` on a torch CSR tensor against
    :func:`scipy.sparse.linalg.svds` (ARPACK) on the same matrix as a scipy CSR matrix.

    Both are tuned minimally to each target (the same grids as :func:`tune_peer`: the
    loosest ``rtol`` or ``tol`` whose triplets meet the two-sided residual target,
    computed with the sparse products); the tuning runs are the warm-up; the tuned
    calls are then timed interleaved, ``repeats`` rounds, and the median is reported.
    """
    import scipy.sparse
    from scipy.sparse.linalg import svds

    A = sparse_test_matrix(m, n, density)
    crow, col = A.crow_indices().numpy(), A.col_indices().numpy()
    S = scipy.sparse.csr_matrix((A.values().numpy(), col, crow), shape=(m, n))
    ST = S.T.tocsr()

    def residual(U: torch.Tensor, s: torch.Tensor, V: torch.Tensor) -> float:
        left = torch.from_numpy(S @ V.numpy()) - U * s
        right = torch.from_numpy(ST @ U.numpy()) - V * s
        worst = torch.maximum(left.norm(dim=0), right.norm(dim=0)).max()
        return float(worst / s.max())

    def run_gdla(knob: dict[str, Any]) -> Factors:
        result = svd(A, k, rtol=knob["rtol"])
        return result.U, result.S, result.Vh.mH

    def run_arpack(knob: dict[str, Any]) -> Factors:
        u, s, vh = svds(S, k=k, tol=knob["tol"], solver="arpack", rng=0)
        return _from_numpy(u, s, vh, k)

    runners = {"gdla": run_gdla, "arpack": run_arpack}
    runs = []
    threads = threads or torch.get_num_threads()
    with same_threads(threads), torch.no_grad():
        for target in targets:
            tuned: dict[str, tuple[dict[str, Any] | None, float]] = {}
            for method, runner in runners.items():
                tuned[method] = (None, math.inf)
                for knob in _grid(method, target, k, n):
                    value = residual(*runner(knob))
                    if value <= target:
                        tuned[method] = (knob, value)
                        break
            samples: dict[str, list[float]] = {method: [] for method in runners}
            for _ in range(repeats):
                for method, runner in runners.items():
                    setting = tuned[method][0]
                    if setting is None:
                        samples[method].append(math.inf)
                        continue
                    start = time.perf_counter()
                    runner(setting)
                    samples[method].append(time.perf_counter() - start)
            (g_knob, g_res), (a_knob, a_res) = tuned["gdla"], tuned["arpack"]
            runs.append(
                SparseRun(m, n, int(S.nnz), target, _describe(g_knob), g_res,
                          statistics.median(samples["gdla"]), _describe(a_knob), a_res,
                          statistics.median(samples["arpack"]))
            )  # fmt: skip
    return runs


def scaling(
    ns: Sequence[int] = (250, 500, 1000, 2000, 4000),
    *,
    spectrum: str = "0.9^j",
    target: float = 1e-10,
    k: int = 10,
    methods: Sequence[str] = PEERS,
    repeats: int = 3,
    threads: int | None = None,
    measured: Sequence[PeerRun] = (),
) -> dict[str, tuple[list[int], list[float], float]]:
    """Time of each tuned method against n for m = 2n; per method (ns, seconds, slope).

    Only the sizes where a method meets the target enter its fit.  ``measured``: runs
    of :func:`peer_table` already made with the same ``k``; the sizes it holds for
    ``spectrum`` and ``target`` are taken from it instead of being run again.
    """
    wanted = {(2 * n, n) for n in ns}
    reused = [
        run for run in measured
        if run.spectrum == spectrum and run.target == target and (run.m, run.n) in wanted
        and run.method in methods
    ]  # fmt: skip
    done = {(run.m, run.n) for run in reused}
    missing = [(2 * n, n) for n in ns if (2 * n, n) not in done]
    if missing:
        reused += peer_table(
            (spectrum,), missing, (target,), k=k, methods=methods, repeats=repeats,
            threads=threads,
        )  # fmt: skip
    runs = sorted(reused, key=lambda run: run.n)
    out = {}
    for method in [name for name in PEERS if any(run.method == name for run in runs)]:
        mine = [run for run in runs if run.method == method and run.met]
        sizes = [run.n for run in mine]
        seconds = [run.seconds for run in mine]
        slope = fit_slope(sizes, seconds) if len(mine) >= 2 else math.nan
        out[method] = (sizes, seconds, slope)
    return out


def format_peer_table(runs: Sequence[PeerRun]) -> str:
    """The runs as a Markdown table, one line per problem, with each method's time
    relative to the fastest method meeting the target (products in brackets)."""
    from .plotting import markdown_table

    problems: dict[tuple[str, int, int, float], dict[str, PeerRun]] = {}
    for run in runs:
        problems.setdefault((run.spectrum, run.m, run.n, run.target), {})[run.method] = run
    methods = list(dict.fromkeys(run.method for run in runs))
    headers = ["spectrum", "size", "target", "fastest (s)", *methods]
    cells = []
    for (spectrum, m, n, target), by_method in problems.items():
        fastest = min(run.seconds for run in by_method.values())
        if not math.isfinite(fastest):
            fastest = math.nan
        row: list[object] = [spectrum, f"{m}x{n}", f"{target:.0e}", f"{fastest:.3f}"]
        for method in methods:
            entry = by_method.get(method)
            if entry is None:
                row.append("n/a")
            elif not math.isfinite(entry.seconds):
                row.append(f"fails ({entry.residual:.0e})")
            else:
                row.append(f"{entry.seconds / fastest:.2f}x ({entry.products})")
        cells.append(row)
    return str(markdown_table(headers, cells).data)


def describe_grid(method: str, k: int = 10) -> str:
    """The grid :func:`tune_peer` scans for ``method``, in words, from loose to tight.

    Derived from the grid itself: tolerances relative to the target (``gdla``) or to
    its square root (the ``svds`` solvers), oversamplings and pass counts as listed.
    """
    settings = list(_grid(method, 1.0, k, 10**6))

    def exponents(values: list[float]) -> str:
        return ", ".join(f"{math.log10(value):g}" for value in values)

    if method == "gdla":
        return f"rtol = target × 10^e, e in {exponents([s['rtol'] for s in settings])}"
    if method in ("arpack", "propack", "lobpcg"):
        positive = list(dict.fromkeys(s["tol"] for s in settings if s["tol"] > 0))
        words = f"tol = sqrt(target) × 10^e, e in {exponents(positive)}"
        if any(s["tol"] == 0 for s in settings):
            words += ", then tol = 0 (machine precision)"
        cap = settings[0]["extra"].get("maxiter")
        if method == "propack":
            limits = ", ".join(str(steps) for steps in PROPACK_STEPS)
            default = f"svds' default limit of 10 × k = {10 * k} Lanczos steps"
            return words + f"; each with {default}, then {limits}"
        return words + (f"; at most {cap} iterations" if cap else "")
    key, passes = ("p", "n_iter") if method == "sklearn" else ("q", "niter")
    blocks = list(dict.fromkeys(s[key] - (0 if method == "sklearn" else k) for s in settings))
    counts = list(dict.fromkeys(s[passes] for s in settings))
    block = "n_oversamples" if method == "sklearn" else "q = k + p, p"
    return (
        f"{block} in {', '.join(map(str, blocks))}; {passes} in {', '.join(map(str, counts))}"
        " (the fewest passes for each, then the fewer products)"
    )


#: The ``kind`` field of a record written by :func:`write_peer_record`.
PEER_RECORD_KIND = "gdla.bench_svd peers"

_PEER_RECORD_KEYS = (
    "kind", "date", "commit", "machine", "threads", "versions", "environment", "options",
    "load_before", "load_after", "seconds", "runs", "sparse", "scaling",
)  # fmt: skip


def _versions() -> dict[str, str | None]:
    """The installed versions of the libraries compared (None for a missing one)."""
    versions: dict[str, str | None] = {}
    for name in ("torch", "numpy", "scipy", "scikit-learn", "threadpoolctl", "numba"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _load_average() -> list[float] | None:
    """``os.getloadavg()`` (1, 5 and 15 minutes), or None where the system has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def peer_record(
    sizes: Sequence[tuple[int, int]] = ((2000, 1000), (4000, 2000)),
    targets: Sequence[float] = (1e-10,),
    *,
    spectra: Sequence[str] = tuple(SPECTRA),
    methods: Sequence[str] = PEERS,
    k: int = 10,
    repeats: int = 3,
    threads: int | None = None,
    sparse: tuple[int, int, float] | None = (20_000, 5_000, 1e-3),
    scaling_ns: Sequence[int] = (250, 500, 1000, 2000),
    progress: Callable[[PeerRun], object] | None = None,
) -> dict[str, Any]:
    """Measure the peer table, the sparse rows and the scaling fits, with their provenance.

    Parameters
    ----------
    sizes, targets, spectra, methods, k, repeats, threads
        As for :func:`peer_table` (the methods whose library is missing are skipped).
    sparse : tuple of (int, int, float) or None
        ``(m, n, density)`` of :func:`sparse_rows`, run at ``targets`` with ``repeats +
        2`` rounds; None skips it (as does a missing scipy).
    scaling_ns : sequence of int
        The ``n`` of :func:`scaling` (0.9^j, m = 2n, target 1e-10, the same methods);
        the sizes the table measured already are reused.  Empty: no fit.
    progress : callable, optional
        Called with each :class:`PeerRun` as it is measured.

    Returns
    -------
    dict
        ``kind`` (:data:`PEER_RECORD_KIND`), ``date`` (UTC), ``commit`` (``git
        describe --always --dirty``, None outside a checkout), ``machine``
        (:func:`gdla.bench.machine`), ``threads``, ``versions`` (torch, numpy, scipy,
        scikit-learn, threadpoolctl), ``environment`` (the thread settings in
        effect), ``options`` (the arguments above, the skipped methods and each
        method's grid, :func:`describe_grid`), ``load_before`` and ``load_after``
        (``os.getloadavg()``: the machine may be shared), ``seconds`` (the whole
        measurement), ``runs`` (:class:`PeerRun`), ``sparse`` (:class:`SparseRun`) and
        ``scaling`` (method -> ``{"ns", "seconds", "slope"}``, ``slope`` None with
        fewer than two sizes).  :func:`write_peer_record` writes it.
    """
    from .bench import git_commit, machine

    chosen = [method for method in methods if available(method)]
    threads = threads or torch.get_num_threads()
    load_before = _load_average()
    start = time.perf_counter()
    runs = peer_table(
        spectra, sizes, targets, k=k, methods=chosen, repeats=repeats, threads=threads,
        progress=progress,
    )  # fmt: skip
    sparse_runs: list[SparseRun] = []
    if sparse is not None and available("arpack"):
        m, n, density = sparse
        sparse_runs = sparse_rows(m, n, density, targets, k=k, repeats=repeats + 2, threads=threads)
    fits = {}
    scaling_spectrum, scaling_target = "0.9^j", 1e-10
    if scaling_ns:
        found = scaling(
            scaling_ns, spectrum=scaling_spectrum, target=scaling_target, k=k, methods=chosen,
            repeats=repeats, threads=threads, measured=runs,
        )  # fmt: skip
        fits = {
            method: {"ns": ns, "seconds": seconds, "slope": slope if math.isfinite(slope) else None}
            for method, (ns, seconds, slope) in found.items()
        }
    seconds = time.perf_counter() - start
    environment = (
        "OPENBLAS_THREAD_TIMEOUT",
        "OMP_WAIT_POLICY",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    )
    return {
        "kind": PEER_RECORD_KIND,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine(),
        "threads": threads,
        "versions": _versions(),
        "environment": {name: os.environ.get(name) for name in environment},
        "options": {
            "k": k,
            "spectra": list(spectra),
            "sizes": [list(size) for size in sizes],
            "targets": list(targets),
            "methods": chosen,
            "skipped": [method for method in methods if method not in chosen],
            "repeats": repeats,
            "grids": {method: describe_grid(method, k) for method in chosen},
            "sparse": None
            if not sparse_runs or sparse is None
            else {"m": sparse[0], "n": sparse[1], "density": sparse[2], "repeats": repeats + 2},
            "scaling": {
                "spectrum": scaling_spectrum,
                "target": scaling_target,
                "ns": list(scaling_ns),
            }
            if scaling_ns
            else None,  # fmt: skip
        },
        "load_before": load_before,
        "load_after": _load_average(),
        "seconds": round(seconds, 1),
        "runs": runs,
        "sparse": sparse_runs,
        "scaling": fits,
    }


def _plain(value: Any) -> Any:
    """``value`` as JSON: dataclasses as dicts, non-finite floats as null (strict JSON)."""
    if isinstance(value, (PeerRun, SparseRun)):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_peer_record(record: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a :func:`peer_record` to ``path`` as strict JSON (a time or residual that
    is infinite, for a method that missed the target, as null)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain(record), indent=1, ensure_ascii=False, allow_nan=False)
    target.write_text(text + "\n", encoding="utf-8")


def _infinite(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {
        key: (math.inf if key in names and value is None else value) for key, value in row.items()
    }


def load_peer_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record :func:`write_peer_record` wrote at ``path``, as :func:`peer_record`
    returned it (runs as :class:`PeerRun`, sparse rows as :class:`SparseRun`); None when
    there is no file at ``path``.

    Raises
    ------
    ValueError
        If the file is not such a record (not JSON, a field missing, or a run that
        does not have the fields of its class).
    """
    source = Path(path)
    if not source.is_file():
        return None
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{source} is not a gdla.bench_svd record: {error}") from None
    if not isinstance(record, dict) or record.get("kind") != PEER_RECORD_KIND:
        raise ValueError(
            f"{source} is not a gdla.bench_svd record: kind is not {PEER_RECORD_KIND!r}"
        )
    missing = [key for key in _PEER_RECORD_KEYS if key not in record]
    if missing:
        raise ValueError(f"{source} is not a gdla.bench_svd record: missing {', '.join(missing)}")
    try:
        record["runs"] = [
            PeerRun(**_infinite(row, ("residual", "seconds"))) for row in record["runs"]
        ]
        sparse_fields = ("gdla_residual", "gdla_seconds", "arpack_residual", "arpack_seconds")
        record["sparse"] = [SparseRun(**_infinite(row, sparse_fields)) for row in record["sparse"]]
        for fit in record["scaling"].values():
            if len(fit["ns"]) != len(fit["seconds"]):
                raise ValueError("a scaling fit has as many sizes as times")
    except (TypeError, AttributeError, KeyError, ValueError) as error:
        raise ValueError(f"{source} is not a gdla.bench_svd record: {error}") from None
    return record


def pool_peer_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record from several runs of the same command on the same code (records of
    :func:`peer_record`, in the order they ran): each method's best time over the rounds
    of every run, as if one run had made all their rounds.

    The peer table's times are each method's best over all runs (its settings and
    products must agree: tuning is deterministic); a sparse row's times are the best of
    the runs' medians; a scaling fit's times the best per size, refitted.  ``date`` and
    ``load_after`` are the last run's, ``load_before`` the first's, ``seconds`` their
    sum, ``options["repeats"]`` the rounds of all runs together, and ``pooled`` lists
    each run's date, loads, seconds and rounds.  One record is returned as it is.

    Raises
    ------
    ValueError
        If the records differ in commit, options or threads, or tuned a method to
        different settings.
    """
    if not records:
        raise ValueError("pool_peer_records needs at least one record, got none")
    first, *others = records
    if not others:
        return first
    same = ("commit", "threads")
    for other in others:
        differing = [key for key in same if other[key] != first[key]]
        differing += [
            f"options[{key!r}]"
            for key in first["options"]
            if key != "repeats" and other["options"].get(key) != first["options"][key]
        ]
        if differing:
            raise ValueError(
                "pool_peer_records expects runs of one command on one commit; they differ in "
                + ", ".join(differing)
            )

    def key(run: PeerRun) -> tuple[str, int, int, float, str]:
        return (run.spectrum, run.m, run.n, run.target, run.method)

    twins = [{key(run): run for run in other["runs"]} for other in others]
    runs = []
    for run in first["runs"]:
        matches = [by_key.get(key(run)) for by_key in twins]
        if any(match is None or (match.setting, match.products) != (run.setting, run.products)
               for match in matches):  # fmt: skip
            raise ValueError(f"pool_peer_records: {key(run)} was tuned differently between runs")
        best = min(run.seconds, *(match.seconds for match in matches if match is not None))
        runs.append(replace(run, seconds=best))
    sparse = []
    for index, row in enumerate(first["sparse"]):
        rows = [row, *(other["sparse"][index] for other in others)]
        sparse.append(replace(row, gdla_seconds=min(r.gdla_seconds for r in rows),
                              arpack_seconds=min(r.arpack_seconds for r in rows)))  # fmt: skip
    scaling = {}
    for method, fit in first["scaling"].items():
        fits = [fit, *(other["scaling"][method] for other in others)]
        seconds = [min(times) for times in zip(*(f["seconds"] for f in fits), strict=True)]
        slope = fit_slope(fit["ns"], seconds) if len(seconds) >= 2 else math.nan
        scaling[method] = dict(fit, seconds=seconds, slope=slope if math.isfinite(slope) else None)
    every = [first, *others]
    return dict(
        first,
        date=others[-1]["date"],
        load_after=others[-1]["load_after"],
        seconds=round(sum(record["seconds"] for record in every), 1),
        options=dict(first["options"], repeats=sum(r["options"]["repeats"] for r in every)),
        runs=runs,
        sparse=sparse,
        scaling=scaling,
        pooled=[
            {name: record[name] for name in ("date", "load_before", "load_after", "seconds")}
            | {"repeats": record["options"]["repeats"]}
            for record in every
        ],
    )


def peer_record_command(record: dict[str, Any], path: str = "PATH") -> str:
    """The command line that measures a record with the options of ``record`` (a
    :func:`peer_record`) and writes it to ``path``."""
    options = record["options"]
    parts = [
        "python -m gdla.bench --peers",
        "--sizes " + ",".join(f"{m}x{n}" for m, n in options["sizes"]),
        "--targets " + ",".join(f"{target:g}" for target in options["targets"]),
        # (A pooled record's repeats are those of all its runs together.)
        f"--repeats {record['pooled'][0]['repeats'] if 'pooled' in record else options['repeats']}",
        f"--threads {record['threads']}",
    ]
    if list(options["spectra"]) != list(SPECTRA):
        parts.append("--spectra " + ",".join(options["spectra"]))
    requested = [*options["methods"], *options["skipped"]]
    if sorted(requested) != sorted(PEERS):
        parts.append("--methods " + ",".join(requested))
    sparse = options["sparse"]
    if sparse is None:
        parts.append("--no-sparse")
    else:
        parts.append(
            f"--sparse-size {sparse['m']}x{sparse['n']} --sparse-density {sparse['density']:g}"
        )
    scale = options["scaling"]
    parts.append(
        "--no-scaling" if scale is None else "--scaling-ns " + ",".join(map(str, scale["ns"]))
    )
    return " ".join([*parts, f"--record {path}"])


def _load_words(load: Sequence[float] | None) -> str:
    return "unknown" if load is None else f"{load[0]:.2f}"


def peer_record_section(
    record: dict[str, Any] | None,
    how: str = "python -m gdla.bench --peers --record book/data/svd-peers.json",
) -> str:
    """Markdown for a :func:`peer_record`: its provenance, the peer table
    (:func:`format_peer_table`), the sparse rows and the scaling slopes; for ``None``,
    a sentence that says no record exists yet and that ``how`` makes one."""
    from .claims import plural
    from .plotting import markdown_table

    if record is None:
        return (
            "No peer comparison has been recorded yet. Running"
            f" `{how}` measures it and writes the record this section shows."
        )
    facts, versions = record["machine"], record["versions"]
    libraries = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    commit = f" at commit `{record['commit']}`" if record["commit"] else ""
    options = record["options"]
    # (Records before the machine facts named the cache and NumPy's BLAS lack them.)
    hardware = [f"{facts['cpus']} logical CPUs"]
    if facts.get("cache"):
        hardware.append(f"largest cache {facts['cache']}")
    if facts.get("numpy_blas"):
        hardware.append(f"NumPy on {facts['numpy_blas']}")
    pooled = record.get("pooled")
    runs_words = (
        f"{plural(len(pooled), 'run')} of one command, pooled (each time the best over the"
        f" rounds of every run), the last finished on {record['date']}{commit}"
        if pooled
        else f"Recorded on {record['date']}{commit}"
    )
    parts = [
        f"{runs_words[0].upper()}{runs_words[1:]}, on {facts['cpu']} ({', '.join(hardware)}),"
        f" {plural(record['threads'], 'thread')} for every library, with {libraries}; top-"
        f"{options['k']}, float64, best of {options['repeats']} interleaved rounds. The"
        f" machine's load average over one minute was {_load_words(record['load_before'])}"
        f" before the {'first run' if pooled else 'run'} and {_load_words(record['load_after'])}"
        f" after the {'last' if pooled else 'run'} (its own threads included); the"
        f" {'runs' if pooled else 'run'} took {record['seconds']:.0f} s."
        f" Command{' (each run)' if pooled else ''}: `{peer_record_command(record)}`.",
        "Time of each method over the fastest one meeting the target (matrix–vector"
        " products in brackets; `fails` gives the closest residual any setting reached):",
        format_peer_table(record["runs"]),
    ]
    if options["skipped"]:
        parts.append(f"Not measured (library not installed): {', '.join(options['skipped'])}.")
    if record["sparse"]:
        cells = [
            [f"{row.m}x{row.n}", f"{row.nnz:,}", f"{row.target:.0e}", f"{row.gdla_seconds:.3f}",
             f"{row.arpack_seconds:.3f}", f"{row.ratio:.2f}"]
            for row in record["sparse"]
        ]  # fmt: skip
        sparse = options["sparse"]
        parts += [
            f"Sparse, gdla.svd on a torch CSR tensor against svds (ARPACK) on a scipy CSR"
            f" matrix, median of {sparse['repeats']} interleaved rounds:",
            str(markdown_table(
                ["size", "nonzeros", "target", "gdla (s)", "ARPACK (s)", "gdla / ARPACK"], cells
            ).data),
        ]  # fmt: skip
    if record["scaling"]:
        scale = options["scaling"]
        cells = []
        for method, fit in record["scaling"].items():
            slope = "n/a" if fit["slope"] is None else f"{fit['slope']:.2f}"
            times = ", ".join(
                f"{n}: {s:.3f}" for n, s in zip(fit["ns"], fit["seconds"], strict=True)
            )
            cells.append([method, slope, times])
        parts += [
            f"Scaling, {scale['spectrum']}, m = 2n, target {scale['target']:.0e}: slope of"
            " log time against log n (the sizes where the method met the target):",
            str(markdown_table(["method", "slope", "n: seconds"], cells).data),
        ]
    return "\n\n".join(parts)


#: Idle threads of every library sleep instead of spinning (see :func:`main`).
QUIET_THREADS = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}


def _set_openblas_timeout(argv: list[str], module: str) -> None:
    """Make both OpenBLAS copies stop spinning after 4 idle periods and torch's OpenMP
    threads wait passively (:data:`QUIET_THREADS`, unless already set); the libraries
    read these when they load, so run again in a fresh interpreter if one has."""
    missing = {name: value for name, value in QUIET_THREADS.items() if not os.environ.get(name)}
    if not missing:
        return
    os.environ.update(missing)
    if "numpy" in sys.modules or "torch" in sys.modules:
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def _sizes(text: str) -> list[tuple[int, int]]:
    """``'2000x1000,4000x2000'`` -> ``[(2000, 1000), (4000, 2000)]``."""
    pairs = (size.split("x") for size in text.split(","))
    return [(int(m), int(n)) for m, n in pairs]


def main(argv: list[str] | None = None, *, module: str = "gdla.bench_svd") -> int:
    """Command-line entry point: print the peer table, the sparse rows and the scaling
    slopes; with ``--record PATH`` also write them with their provenance (:func:`peer_record`)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000x500 and 2000x1000 only")
    parser.add_argument("--large", action="store_true", help="add 8000x4000")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling fit")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sizes", default=None, help="comma-separated m x n, e.g. 2000x1000,4000x2000"
    )
    parser.add_argument("--targets", default="1e-8,1e-10,1e-12", help="comma-separated")
    parser.add_argument("--spectra", default=",".join(SPECTRA), help="comma-separated")
    parser.add_argument("--methods", default=",".join(PEERS), help="comma-separated")
    parser.add_argument("--no-sparse", action="store_true", help="skip the sparse rows")
    parser.add_argument("--sparse-size", default="20000x5000", help="m x n of the sparse rows")
    parser.add_argument("--sparse-density", type=float, default=1e-3)
    parser.add_argument(
        "--scaling-ns", default=None, help="n of the scaling fit (m = 2n), comma-separated"
    )
    parser.add_argument(
        "--record", metavar="PATH", help="also write the results and their provenance (JSON)"
    )
    args, _ = parser.parse_known_args(argv)
    _set_openblas_timeout(argv, module)
    sizes = [(1000, 500), (2000, 1000)] + ([] if args.quick else [(4000, 2000)])
    if args.large:
        sizes.append((8000, 4000))
    if args.sizes:
        sizes = _sizes(args.sizes)
    targets = [float(target) for target in args.targets.split(",")]
    spectra = args.spectra.split(",")
    methods = args.methods.split(",")
    unknown = [name for name in spectra if name not in SPECTRA] + [
        name for name in methods if name not in PEERS
    ]
    if unknown:
        parser.error(f"unknown spectra or methods: {', '.join(unknown)}")
    ns: tuple[int, ...] = (250, 500, 1000, 2000) if args.quick else (250, 500, 1000, 2000, 4000)
    if args.scaling_ns:
        ns = tuple(int(n) for n in args.scaling_ns.split(","))
    ((sparse_m, sparse_n),) = _sizes(args.sparse_size)
    threads = args.threads or torch.get_num_threads()
    missing = [method for method in methods if not available(method)]
    print(f"top-10 SVD, float64, {threads} threads for every library; two-sided residual target")
    if missing:
        print(f"skipped (library not installed): {', '.join(missing)}")

    def progress(run: PeerRun) -> None:
        print(f"  {run.spectrum} {run.m}x{run.n} {run.target:.0e} {run.method}: {run.setting},"
              f" residual {run.residual:.1e}, {run.products} products, {run.seconds:.3f} s",
              flush=True)  # fmt: skip

    print("tuned settings, as measured:", flush=True)
    record = peer_record(
        sizes, targets, spectra=spectra, methods=methods, repeats=args.repeats, threads=threads,
        sparse=None if args.no_sparse else (sparse_m, sparse_n, args.sparse_density),
        scaling_ns=() if args.no_scaling else ns, progress=progress,
    )  # fmt: skip
    print("time / fastest method meeting the target (matrix-vector products):")
    print(format_peer_table(record["runs"]))
    if record["sparse"]:
        print("sparse top-10 SVD: gdla.svd (torch CSR) against svds ARPACK (scipy CSR), "
              f"median of {args.repeats + 2} interleaved rounds")  # fmt: skip
    for sparse in record["sparse"]:
        print(f"  {sparse.m}x{sparse.n}, {sparse.nnz} nonzeros, residual <= "
              f"{sparse.target:.0e}: gdla ({sparse.gdla_setting}) {sparse.gdla_seconds:.3f} s,"
              f" residual {sparse.gdla_residual:.1e}; ARPACK ({sparse.arpack_setting}) "
              f"{sparse.arpack_seconds:.3f} s, residual {sparse.arpack_residual:.1e}; "
              f"time ratio gdla / ARPACK {sparse.ratio:.2f} (goal <= 1)")  # fmt: skip
    if record["scaling"]:
        print("scaling, 0.9^j, m = 2n, target 1e-10: slope of log time against log n")
    for method, fit in record["scaling"].items():
        times = ", ".join(f"{n}: {s:.3f}" for n, s in zip(fit["ns"], fit["seconds"], strict=True))
        slope = math.nan if fit["slope"] is None else fit["slope"]
        print(f"  {method}: slope {slope:.2f} ({times})")
    print(f"load average (1, 5, 15 min): {record['load_before']} before,"
          f" {record['load_after']} after; {record['seconds']:.0f} s")  # fmt: skip
    if args.record:
        write_peer_record(record, args.record)
        print(f"recorded in {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
