"""Benchmarks of gdla against torch.linalg, measured in the same run.

Run ``python -m gdla.bench`` (or ``make bench``) for the full-size table, or
``python -m gdla.bench --quick`` for a reduced one.  Every row times a gdla
method and the matching ``torch.linalg`` routine on the same input, in the same
process, and reports their ratio. The ratio is not free of the machine: two
methods of different kinds (a LAPACK factorisation, a loop of matrix products,
Python overhead) run at different speeds per flop on different CPUs and thread
counts, so a ratio is this machine's, reported with :func:`machine`'s facts.
Timings are the median of repeats, after a warm-up call (:func:`median_time`); where
two times are compared closely (least squares against ``gels``), the two are timed in
turns (:func:`interleaved_medians`).

The rows check the performance goals of the package:

- inverse of the original series' matrices (float64): max|XA - I| < 1e-12 in at most
  30 iterations;
- SVD of its five matrices (float64): singular-value error < 1e-10, orthogonality
  error < 1e-12, at most 1,000 iterations each;
- top-10 SVD of a 4000 x 2000 matrix with a decaying spectrum: at most 0.2 x the time
  of ``torch.linalg.svd``, and no slower than ``torch.svd_lowrank`` tuned to the same
  accuracy: the fastest block size ``q`` and number of power iterations ``niter``
  whose triplets meet the residual bound that ``gdla.svd`` guarantees (at its
  default tolerance and at 1e-8);
- inverse of a 1024 x 1024 matrix of condition number 1e3: within 30 x ``torch.linalg.inv``;
- batched inverse of 10,000 4 x 4 matrices: faster than a loop of ``torch.linalg.inv``.
- polar decomposition (float64, 256 x 256, cond 1e1 to 1e8): orthogonality and backward
  error <= 1e-13 in <= 20 iterations, fewer matrix products than cubic Newton--Schulz
  from cond 1e2 on; 1024 x 1024 in <= 0.5 x (float64, cond 1e6) and <= 1 x (float32,
  cond 1e3) the time of the SVD-based polar factor;
- least squares, 20,000 x 500 with a known solution, cond 1e3 and 1e6: forward error
  within 10 x ``torch.linalg.lstsq``'s with ``driver="gels"`` (Householder QR, the
  driver for full-rank tall A), time <= 1 x (stretch: 0.5 x); the sketch's
  LSQR iterations flat (within 1.5 x) from cond 1e2 to 1e8;
- a square non-Hermitian 1024 x 1024 system of cond 1e3: backward error <= 1e-13
  within 10 x the time of ``torch.linalg.solve``;
- completion from 1,000,000 observed entries of a 10,000 x 5,000 matrix of rank 10,
  given as a sparse tensor: held-out entries to 1e-6 relative error in at most 60 s.
"""

from __future__ import annotations

import argparse
import contextvars
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import matrices
from ._iterate import default_rtol
from ._validation import OptionError
from .complete import complete
from .inverse import inverse
from .metrics import inverse_error, orthogonality_error, relative_residual
from .plotting import markdown_table
from .polar import polar as gdla_polar
from .solve import solve
from .svd import svd

__all__ = [
    "bench_device",
    "record_table",
    "load_record",
    "record_section",
    "Row",
    "run",
    "topk_svd_rows",
    "polar_rows",
    "least_squares_problem",
    "least_squares_rows",
    "preconditioned_iteration_rows",
    "nonhermitian_row",
    "sparse_completion_problem",
    "sparse_completion_row",
    "format_table",
    "machine",
    "git_commit",
    "median_time",
    "interleaved_medians",
    "main",
]


@dataclass(frozen=True)
class Row:
    """One line of the benchmark table.

    ``ratio`` is ``seconds / reference_seconds``; ``goal`` states the target and
    ``met`` whether this run met it (accuracy, iterations and, where stated, time).
    """

    task: str
    method: str
    nit: int
    error: float
    seconds: float
    reference: str
    reference_seconds: float
    goal: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.seconds / self.reference_seconds


# The device the rows build their inputs on (its name), set by run(device=...).
_DEVICE: contextvars.ContextVar[str] = contextvars.ContextVar("gdla_bench_device", default="cpu")

#: Interleaved rounds (medians) of the top-k SVD rows against tuned torch.svd_lowrank.
SVD_ROUNDS = 5


def bench_device(name: str | torch.device = "cpu") -> torch.device:
    """The device ``name`` (``'cpu'``, ``'cuda'``, ``'cuda:1'`` ...), checked to be usable here.

    Raises
    ------
    OptionError
        If ``name`` is not a device torch knows, or if that device is not available on
        this machine (``'cuda'`` without a GPU, or with a torch built without CUDA).
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise OptionError(
            "gdla.bench", "a torch device such as 'cpu' or 'cuda'", repr(name)
        ) from error
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        raise OptionError(
            "gdla.bench",
            "a device available on this machine",
            f"{str(device)!r}, which is not available (torch.cuda.is_available() is"
            f" {torch.cuda.is_available()}; torch {torch.__version__} says: {error})",
        ) from error
    return device


def _on(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` moved to the device the benchmark runs on (:func:`run`'s ``device``)."""
    return tensor.to(_DEVICE.get())


def _synchronize() -> None:
    """Wait for the benchmark's device (kernels on a GPU run asynchronously)."""
    device = torch.device(_DEVICE.get())
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    function: Callable[[], object],
    repeats: int = 5,
    *,
    sample: float = 2e-3,
    warmup: Callable[[], object] | None = None,
) -> float:
    """Median wall-clock seconds of one ``function()`` call, after a warm-up call.

    The warm-up call is not timed (first calls pay for lazy initialisation); it is
    ``warmup()`` where given (the same routine on a smaller input, for calls that take
    seconds), else ``function()``, which then also sizes the samples. A call
    faster than ``sample`` seconds is timed in a loop of as many calls as fill
    ``sample`` seconds, so that the clock's resolution and a single interruption
    do not decide the result; the median over ``repeats`` such samples is returned,
    which one slow sample (another process, a garbage collection) cannot move.
    Where CUDA is available the clock stops only after the device has finished
    (``torch.cuda.synchronize``), since kernels run asynchronously.
    """
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    start = time.perf_counter()
    (function if warmup is None else warmup)()
    synchronize()
    first = time.perf_counter() - start
    calls = 1 if warmup is not None else max(1, min(1000, math.ceil(sample / max(first, 1e-9))))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        synchronize()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def interleaved_medians(
    functions: Mapping[str, Callable[[], object]], repeats: int = 5
) -> dict[str, float]:
    """Median wall-clock seconds of one call of each function, the calls taken in turns.

    One untimed warm-up call of each, then ``repeats`` rounds of one timed call of each,
    in the order given and in the reverse order by turns (so that no function always
    runs first, or always right after the same other one): a slow spell of the machine
    (another process, a change of clock speed) then slows every function's sample of
    that round, not one function's whole series, so the ratio of two medians is steadier
    than with :func:`median_time` run for one function after the other.  For calls of
    milliseconds or more.
    """
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    for function in functions.values():
        function()
    synchronize()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    forward = list(functions.items())
    for round_ in range(repeats):
        for name, function in forward if round_ % 2 == 0 else forward[::-1]:
            start = time.perf_counter()
            function()
            synchronize()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


_BLAS_NAMES = {"mkl": "MKL", "open": "OpenBLAS", "accelerate": "Accelerate", "eigen": "Eigen"}


def _blas_library(config: str) -> str:
    """The BLAS and LAPACK that torch was built with, from ``torch.__config__.show()``.

    For example ``'MKL 2024.2 (LAPACK: MKL)'``; ``'unknown'`` where the build
    settings do not name them.
    """
    found = {key: re.search(rf"\b{key}_INFO=([^,\s]+)", config) for key in ("BLAS", "LAPACK")}
    names = {
        key: _BLAS_NAMES.get(match.group(1).lower(), match.group(1)) if match else "unknown"
        for key, match in found.items()
    }
    blas = names["BLAS"]
    version = re.search(r"Math Kernel Library Version ([0-9][0-9.]*)", config)
    if blas == "MKL" and version:
        blas = f"MKL {version.group(1)}"
    return f"{blas} (LAPACK: {names['LAPACK']})"


def _numpy_blas() -> str:
    """NumPy's BLAS as its build records it, e.g. ``'scipy-openblas 0.3.31.188.0'``, or
    ``'unknown'`` (a NumPy older than 1.26 does not say)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
        return f"{blas['name']} {blas['version']}"
    except (KeyError, TypeError, AttributeError):
        return "unknown"


def _largest_cache() -> str:
    """CPU 0's largest cache from Linux's sysfs, e.g. ``'L3, 32 MiB, shared by CPUs 0-1'``,
    or ``'unknown'`` elsewhere: whether a matrix fits in it decides the speed of the
    memory-bound products of the iterative methods."""
    best: tuple[int, str] | None = None
    units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
            shared = (index / "shared_cpu_list").read_text().strip()
            mebibytes = float(size[:-1]) * units[size[-1]]
        except (OSError, ValueError, KeyError, IndexError):
            continue
        if best is None or level > best[0]:
            best = (level, f"L{level}, {mebibytes:g} MiB, shared by CPUs {shared}")
    return best[1] if best else "unknown"


def machine() -> dict[str, str | int]:
    """The facts a timing depends on: CPU model, logical CPUs, its largest cache
    (``'cache'``), torch threads and versions, the BLAS/LAPACK library torch calls
    (``'blas'``, e.g. ``'MKL 2024.2 (LAPACK: MKL)'``), NumPy's BLAS, which forms the
    products of :func:`gdla.svd` and the LSQR steps on the CPU (``'numpy_blas'``), and the
    vector instructions torch's kernels use (``'simd'``, e.g. ``'AVX512'``)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count() or 1,
        "cache": _largest_cache(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "blas": _blas_library(torch.__config__.show()),
        "numpy_blas": _numpy_blas(),
        "simd": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "system": platform.system(),
    }


def _original_inverse_rows() -> list[Row]:
    rows = []
    for name, A in matrices.original_inverse_matrices(torch.float64).items():
        A = _on(A)
        result = inverse(A)
        error = float(inverse_error(A, result.X))
        rows.append(
            Row(
                task=f"inverse, original {name} 4x4",
                method=result.method,
                nit=result.nit,
                error=error,
                seconds=median_time(partial(inverse, A)),
                reference="torch.linalg.inv",
                reference_seconds=median_time(partial(torch.linalg.inv, A)),
                goal="max|XA-I| < 1e-12, <= 30 iterations",
                met=error < 1e-12 and result.nit <= 30,
            )
        )
    return rows


def _original_svd_rows() -> list[Row]:
    rows = []
    for name, A in matrices.original_svd_matrices(torch.float64).items():
        A = _on(A)
        result = svd(A)
        reference = torch.linalg.svdvals(A)
        value_error = float((result.S - reference).abs().max())
        orthogonality = max(
            float(orthogonality_error(result.U)), float(orthogonality_error(result.Vh.mH))
        )
        m, n = A.shape
        rows.append(
            Row(
                task=f"svd, original {name} {m}x{n}",
                method=result.method,
                nit=result.nit,
                error=value_error,
                seconds=median_time(partial(svd, A)),
                reference="torch.linalg.svd",
                reference_seconds=median_time(partial(torch.linalg.svd, A, full_matrices=False)),
                goal="sv error < 1e-10, orth. < 1e-12, <= 1000 iter.",
                met=value_error < 1e-10 and orthogonality < 1e-12 and result.nit <= 1000,
            )
        )
    return rows


def _residual(A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> float:
    """gdla.svd's documented residual ``max(||AV - US||, ||A^H U - VS||) / ||A||_F``."""
    left = torch.linalg.matrix_norm(A @ V - U * S)
    right = torch.linalg.matrix_norm(A.mH @ U - V * S)
    return float(torch.maximum(left, right) / torch.linalg.matrix_norm(A))


def _seeded_lowrank(A: torch.Tensor, q: int, niter: int) -> object:
    """``torch.svd_lowrank`` from ``torch.manual_seed(0)``, the global random state restored:
    the draw whose residual :func:`_svd_lowrank_tuned` checked."""
    with torch.random.fork_rng(devices=[A.device] if A.device.type == "cuda" else []):
        torch.manual_seed(0)
        return torch.svd_lowrank(A, q=q, niter=niter)


def _svd_lowrank_tuned(A: torch.Tensor, k: int, target: float) -> tuple[int, int, float]:
    """The fastest ``torch.svd_lowrank`` whose top ``k`` triplets have residual <= ``target``.

    For each block size ``q`` of a grid, the fewest power iterations ``niter`` that
    reach ``target`` (from ``torch.manual_seed(0)``; the global state is restored);
    returns the ``(q, niter, seconds)`` of the fastest.  A setting whose untimed
    trial call already takes more than twice the best median so far is not timed, and
    ends the search over ``niter`` for its ``q`` (more iterations only cost more).  The
    search for a smaller ``q`` starts at the ``niter`` the larger one needed (a smaller
    block of the same power iterations spans less of the leading subspace).
    """
    best = (0, 0, float("inf"))
    fewest = 0
    for q in (k + 70, k + 50, k + 30, k + 20, k + 10):  # large q first: fewest niter, a bound early
        for niter in range(fewest, 16):
            state = torch.random.get_rng_state()
            torch.manual_seed(0)
            start = time.perf_counter()
            U, S, V = torch.svd_lowrank(A, q=q, niter=niter)
            _synchronize()
            trial = time.perf_counter() - start
            torch.random.set_rng_state(state)
            if trial > 2 * best[2]:
                break
            if _residual(A, U[:, :k], S[:k], V[:, :k]) <= target:
                seconds = median_time(partial(torch.svd_lowrank, A, q=q, niter=niter), repeats=2)
                best = min(best, (q, niter, seconds), key=lambda entry: entry[2])
                fewest = niter
                break
    return best


def topk_svd_rows(m: int = 4000, n: int = 2000, k: int = 10) -> list[Row]:
    """The rows of the top-``k`` SVD goals for an ``m x n`` matrix with singular values 0.9**j.

    ``gdla.svd`` at its default tolerance and at ``rtol=1e-8``, against
    ``torch.linalg.svd`` and against the fastest ``torch.svd_lowrank`` (over its block
    size ``q`` and power iterations ``niter``) whose triplets meet the same residual;
    ``gdla.svd`` and that setting are then timed in turns, five rounds, medians
    (:func:`interleaved_medians`).
    """
    A = _on(matrices.decaying_spectrum(m, n, rate=0.9, seed=0))
    # Warmed up on a quarter-size corner (the same LAPACK driver): a full call takes seconds.
    corner = A[: m // 4, : n // 4].contiguous()
    full = median_time(lambda: torch.linalg.svd(A, full_matrices=False), repeats=1,
                       warmup=lambda: torch.linalg.svd(corner, full_matrices=False))  # fmt: skip
    rows = []
    for rtol in (None, 1e-8):
        result = svd(A, k, rtol=rtol)
        error = _residual(A, result.U, result.S, result.Vh.mH)
        target = default_rtol(A.dtype) if rtol is None else rtol
        q, niter, _ = _svd_lowrank_tuned(A, k, target)
        # The tuned setting re-timed in turns with gdla: the search's own times, the
        # fastest of several noisy medians, would favour svd_lowrank.
        medians = interleaved_medians(
            {"gdla": partial(svd, A, k, rtol=rtol),
             "lowrank": partial(_seeded_lowrank, A, q, niter)}, repeats=SVD_ROUNDS)  # fmt: skip
        seconds, lowrank = medians["gdla"], medians["lowrank"]
        task = f"top-{k} svd, {m}x{n}, residual <= {target:.1e}"
        if rtol is None:
            rows.append(
                Row(task, result.method, result.nit, error, seconds, "torch.linalg.svd",
                    full, "time <= 0.2 x torch.linalg.svd", seconds <= 0.2 * full)
            )  # fmt: skip
        rows.append(
            Row(task, result.method, result.nit, error, seconds,
                f"torch.svd_lowrank (q={q}, niter={niter})", lowrank,
                "time <= torch.svd_lowrank tuned to the same residual",
                result.converged and seconds <= lowrank)
        )  # fmt: skip
    return rows


def _large_inverse_row(n: int) -> Row:
    A = _on(matrices.with_condition_number(n, 1e3, seed=0))
    result = inverse(A)
    error = float(inverse_error(A, result.X))
    seconds = median_time(lambda: inverse(A), repeats=2)
    reference = median_time(lambda: torch.linalg.inv(A))
    return Row(
        f"inverse, {n}x{n}, cond 1e3",
        result.method,
        result.nit,
        error,
        seconds,
        "torch.linalg.inv",
        reference,
        "time <= 30 x torch.linalg.inv",
        seconds <= 30 * reference and result.converged,
    )


def _batched_inverse_row(count: int) -> Row:
    A = _on(matrices.with_condition_number(4, 10.0, batch=(count,), seed=0))
    result = inverse(A)
    error = float(inverse_error(A, result.X).max())
    seconds = median_time(lambda: inverse(A), repeats=2)
    loop = median_time(lambda: [torch.linalg.inv(matrix) for matrix in A], repeats=1)
    return Row(
        f"batched inverse, {count} x 4x4",
        result.method,
        result.nit,
        error,
        seconds,
        "loop of torch.linalg.inv",
        loop,
        "faster than the loop",
        seconds < loop,
    )


def _solve_rows(n: int) -> list[Row]:
    """A general matrix (CGLS) and a Hermitian positive definite one (CG), both cond 1e3."""
    general = matrices.with_condition_number(n, 1e3, seed=1)
    Q = matrices.random_orthonormal(n, n, seed=1)
    definite = (Q * torch.logspace(0, -3, n, dtype=torch.float64)) @ Q.mT
    b = _on(torch.ones(n, dtype=torch.float64))
    rows = []
    for label, A in ((f"solve, {n}x{n}, cond 1e3", general),
                     (f"solve, {n}x{n} s.p.d., cond 1e3", definite)):  # fmt: skip
        A = _on(A)
        result = solve(A, b)
        error = float(relative_residual(A, result.x.unsqueeze(-1), b.unsqueeze(-1)))
        rows.append(
            Row(label, result.method, result.nit, error,
                median_time(partial(solve, A, b), repeats=2), "torch.linalg.solve",
                median_time(partial(torch.linalg.solve, A, b)), "backward error < 1e-12",
                result.converged and error < 1e-12)
        )  # fmt: skip
    return rows


def least_squares_problem(
    m: int, n: int, cond: float, *, residual: float = 1e-3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A tall ``m x n`` problem with a known solution: ``(A, b, x)``.

    ``A`` has condition number ``cond`` (singular values geometric from 1), ``x`` is
    standard normal, and ``b = Ax + e`` with ``e`` orthogonal to the range of A and
    ``‖e‖ = residual ‖Ax‖``, so that ``x`` is the exact least-squares solution.
    """
    # A = U diag(s) V^T as matrices.with_condition_number builds it, keeping U, which
    # spans the range of A, for the residual.
    U = matrices.random_orthonormal(m, n, seed=seed)
    V = matrices.random_orthonormal(n, n, seed=seed + 1)
    s = torch.logspace(0, -math.log10(cond), n, dtype=torch.float64)
    A = (U * s) @ V.mT
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dtype=torch.float64, generator=generator)
    noise = torch.randn(m, dtype=torch.float64, generator=generator)
    noise = noise - U @ (U.mT @ noise)
    Ax = A @ x
    b = Ax + residual * torch.linalg.vector_norm(Ax) * noise / torch.linalg.vector_norm(noise)
    return A, b, x


def _forward_error(x: torch.Tensor, truth: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - truth) / torch.linalg.vector_norm(truth))


def least_squares_rows(
    m: int = 20_000, n: int = 500, conds: tuple[float, ...] = (1e3, 1e6)
) -> list[Row]:
    """Tall least squares with a known solution: ``gdla.solve`` (its default, the sketch)
    against ``torch.linalg.lstsq`` with ``driver="gels"`` (Householder QR, LAPACK's
    driver for a full-rank tall matrix; the CPU default ``gelsy`` pivots columns and is
    slower): forward error within 10 x gels's, time at most 1 x (the stretch goal,
    0.5 x, is printed in the goal)."""
    rows = []
    for cond in conds:
        A, b, x = map(_on, least_squares_problem(m, n, cond))
        result = solve(A, b)
        gels = partial(torch.linalg.lstsq, A, b.unsqueeze(-1), driver="gels")
        reference = gels().solution.squeeze(-1)
        error, reference_error = _forward_error(result.x, x), _forward_error(reference, x)
        medians = interleaved_medians({"gdla": partial(solve, A, b), "gels": gels}, repeats=5)
        seconds, lstsq = medians["gdla"], medians["gels"]
        rows.append(
            Row(f"least squares, {m}x{n}, cond {cond:.0e}, forward error", result.method,
                result.nit, error, seconds, "torch.linalg.lstsq (gels)", lstsq,
                f"error <= 10 x lstsq's {reference_error:.1e}; time <= 1 x (stretch 0.5 x)",
                result.converged and error <= 10 * reference_error and seconds <= lstsq)
        )  # fmt: skip
    return rows


def preconditioned_iteration_rows(
    m: int = 20_000, n: int = 500, conds: tuple[float, ...] = (1e2, 1e4, 1e6, 1e8)
) -> list[Row]:
    """LSQR iterations of the sketch-preconditioned solve against the condition number:
    the goal is iterations flat in cond (at most 1.5 x the fewest, over 1e2 to 1e8)."""
    results = []
    for cond in conds:
        A, b, x = map(_on, least_squares_problem(m, n, cond, seed=1))
        started = time.perf_counter()
        result = solve(A, b)
        _synchronize()
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        reference = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
        _synchronize()
        lstsq = time.perf_counter() - started
        results.append((cond, result, _forward_error(result.x, x), seconds, lstsq, reference))
    fewest = min(result.nit for _, result, *_ in results)
    flat = max(result.nit for _, result, *_ in results) <= 1.5 * fewest
    return [
        Row(f"sketch iterations, {m}x{n}, cond {cond:.0e} (one timed run)", result.method,
            result.nit, error, seconds, "torch.linalg.lstsq", lstsq,
            "iterations <= 1.5 x the fewest over cond 1e2-1e8", result.converged and flat)
        for cond, result, error, seconds, lstsq, _ in results
    ]  # fmt: skip


def nonhermitian_row(n: int = 1024, cond: float = 1e3) -> Row:
    """A square non-Hermitian system: ``gdla.solve``'s default (GMRES-IR) within 10 x
    ``torch.linalg.solve``'s time, backward error at most 1e-13."""
    A = _on(matrices.with_condition_number(n, cond, seed=2))
    b = _on(torch.ones(n, dtype=torch.float64))
    result = solve(A, b)
    error = float(relative_residual(A, result.x.unsqueeze(-1), b.unsqueeze(-1)))
    seconds = median_time(partial(solve, A, b))
    reference = median_time(partial(torch.linalg.solve, A, b))
    return Row(
        f"non-Hermitian solve, {n}x{n}, cond {cond:.0e}, backward error",
        result.method,
        result.nit,
        error,
        seconds,
        "torch.linalg.solve",
        reference,
        "time <= 10 x torch.linalg.solve, backward error <= 1e-13",
        result.converged and error <= 1e-13 and seconds <= 10 * reference,
    )


def _completion_row(m: int, n: int, rank: int) -> Row:
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(m, rank, generator=generator, dtype=torch.float64) @ torch.randn(
        rank, n, generator=generator, dtype=torch.float64
    )
    truth, mask = _on(truth), _on(torch.rand(m, n, generator=generator) < 0.5)
    result = complete(truth, mask, rank)
    assert result.X is not None  # dense M: X is formed
    error = float(torch.linalg.matrix_norm(result.X - truth) / torch.linalg.matrix_norm(truth))
    return Row(
        f"completion, {m}x{n} rank {rank}, 50% seen",
        result.method,
        result.nit,
        error,
        median_time(lambda: complete(truth, mask, rank), repeats=1),
        "torch.linalg.svd (needs every entry)",
        median_time(lambda: torch.linalg.svd(truth, full_matrices=False)),
        "recovery error < 1e-6",
        error < 1e-6,
    )


def sparse_completion_problem(
    m: int, n: int, rank: int, count: int, held_out: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entries of an exactly rank-``rank`` ``m x n`` matrix ``L0 R0^T`` (Gaussian factors).

    Returns ``(M, rows, cols, values)``: ``M`` a sparse COO tensor of ``count`` observed
    entries at distinct positions drawn uniformly, and ``held_out`` further distinct
    positions (none of them observed) with their true values, to measure recovery.
    """
    generator = torch.Generator().manual_seed(seed)
    L0 = torch.randn(m, rank, generator=generator, dtype=torch.float64)
    R0 = torch.randn(n, rank, generator=generator, dtype=torch.float64)
    total = count + held_out
    if total > m * n:
        raise ValueError(f"{total} distinct entries requested of a {m} x {n} matrix")
    if m * n <= max(10**7, 8 * total):
        positions = torch.randperm(m * n, generator=generator)[:total]
    else:  # sparse: draw with replacement, drop repeats (few), then shuffle
        drawn = torch.randint(0, m * n, (total + total // 8 + 64,), generator=generator)
        positions = torch.unique(drawn)
        positions = positions[torch.randperm(positions.numel(), generator=generator)[:total]]
        if positions.numel() < total:
            raise ValueError(f"too many repeats drawing {total} entries of {m} x {n}")
    rows, cols = positions // n, positions % n
    values = (L0[rows] * R0[cols]).sum(-1)
    observed = torch.stack([rows[:count], cols[:count]])
    M = torch.sparse_coo_tensor(observed, values[:count], (m, n), check_invariants=True)
    return M, rows[count:], cols[count:], values[count:]


def sparse_completion_row(m: int, n: int, rank: int, count: int, held_out: int = 10_000) -> Row:
    """Completion from ``count`` entries given as a sparse COO tensor (never a dense m x n):
    held-out relative error <= 1e-6, and (at 10,000 x 5,000, rank 10, 1,000,000 entries)
    at most 60 s.  One timed run after an untimed one; the reference is the time budget."""
    M, rows, cols, values = map(_on, sparse_completion_problem(m, n, rank, count, held_out))
    result = complete(M, None, rank)
    error = float(torch.linalg.vector_norm(result.entries(rows, cols) - values)
                  / torch.linalg.vector_norm(values))  # fmt: skip
    started = time.perf_counter()
    complete(M, None, rank)
    _synchronize()
    seconds = time.perf_counter() - started
    return Row(
        f"sparse completion, {m}x{n} rank {rank}, {count:,} entries (one timed run)",
        result.method,
        result.nit,
        error,
        seconds,
        "time budget of the goal",
        60.0,
        "held-out error <= 1e-6, time <= 60 s at 10000x5000, rank 10, 1e6 entries",
        result.converged and error <= 1e-6 and seconds <= 60.0,
    )


def _svd_polar(A: torch.Tensor) -> torch.Tensor:
    """The SVD-based polar factor ``U @ Vh``, the reference of the polar rows."""
    U, _, Vh = torch.linalg.svd(A, full_matrices=False)
    return U @ Vh


def _polar_errors(A: torch.Tensor, U: torch.Tensor, H: torch.Tensor) -> tuple[float, float]:
    """Orthogonality ``‖U^H U − I‖_F/√n`` and backward error ``‖A − UH‖_F/‖A‖_F``."""
    n = U.shape[-1]
    eye = torch.eye(n, dtype=U.dtype, device=U.device)
    orthogonality = float(torch.linalg.matrix_norm(U.mH @ U - eye)) / math.sqrt(n)
    backward = float(torch.linalg.matrix_norm(A - U @ H) / torch.linalg.matrix_norm(A))
    return orthogonality, backward


def polar_rows(n: int = 256, n_time: int = 1024) -> list[Row]:
    """The rows of the polar decomposition goals.

    Accuracy and matrix products, ``n x n`` float64 at condition numbers 1e1 to 1e8:
    orthogonality and backward error <= 1e-13 in <= 20 iterations, and (from 1e2 on)
    fewer matrix products than cubic Newton--Schulz, the row's reference.  Time,
    ``n_time x n_time``: float64 at cond 1e6 in <= 0.5 x and float32 at cond 1e3 in
    <= 1 x the time of the SVD-based polar factor (``torch.linalg.svd``, then U @ Vh).
    """
    rows = []
    for exponent in (1, 2, 4, 6, 8):
        A = _on(matrices.with_condition_number(n, 10.0**exponent, seed=0))
        result = gdla_polar(A)
        classic = gdla_polar(A, method="newton-schulz")
        error = max(_polar_errors(A, result.U, result.H))
        fewer = result.products < classic.products or exponent < 2
        rows.append(
            Row(f"polar, {n}x{n}, cond 1e{exponent}, {result.products} products",
                result.method, result.nit, error, median_time(partial(gdla_polar, A), repeats=2),
                f"newton-schulz ({classic.products} products)",
                median_time(partial(gdla_polar, A, method="newton-schulz"), repeats=2),
                "orth. & backward error <= 1e-13, <= 20 iter., fewer products (cond >= 1e2)",
                result.converged and error <= 1e-13 and result.nit <= 20 and fewer)
        )  # fmt: skip
    for dtype, exponent, factor in ((torch.float64, 6, 0.5), (torch.float32, 3, 1.0)):
        A = _on(matrices.with_condition_number(n_time, 10.0**exponent, seed=0, dtype=dtype))
        result = gdla_polar(A)
        # Polar, SVD and one product timed in turns: a slow spell of a shared machine then
        # hits both sides alike.
        medians = interleaved_medians(
            {"polar": partial(gdla_polar, A), "svd": partial(_svd_polar, A),
             "product": partial(torch.matmul, A, A)}, repeats=3)  # fmt: skip
        seconds, reference, product = medians["polar"], medians["svd"], medians["product"]
        # The goal's time in products of this size: what the iteration would have to fit in.
        budget = factor * reference / product
        name = str(dtype).removeprefix("torch.")
        rows.append(
            Row(f"polar, {n_time}x{n_time} {name}, cond 1e{exponent}, {result.products} products",
                result.method, result.nit, max(_polar_errors(A, result.U, result.H)), seconds,
                "torch.linalg.svd, U @ Vh", reference,
                f"time <= {factor} x svd-based polar (here the time of {budget:.1f} products)",
                result.converged and seconds <= factor * reference)
        )  # fmt: skip
    return rows


def run(*, quick: bool = False, device: str | torch.device = "cpu") -> list[Row]:
    """Run every benchmark and return the table's rows.

    ``quick=True`` shrinks the large problems (top-k SVD 1000 x 500, inverse and
    solve 256 x 256, 1,000 batched inverses, least squares 2000 x 50, sparse
    completion 1000 x 500 from 50,000 entries) so that the
    table takes seconds;
    their time goals are stated for the full sizes.  Every input is built (seeded,
    on the CPU) and then moved to ``device`` (checked by :func:`bench_device`), so
    the same matrices are timed on every device.
    """
    token = _DEVICE.set(str(bench_device(device)))
    try:
        return _run(quick)
    finally:
        _DEVICE.reset(token)


def _run(quick: bool) -> list[Row]:
    torch.manual_seed(0)
    rows = _original_inverse_rows() + _original_svd_rows()
    if quick:
        rows += topk_svd_rows(1000, 500)
        rows += [_large_inverse_row(256), _batched_inverse_row(1000), *_solve_rows(256)]
        rows += [_completion_row(100, 80, 3), sparse_completion_row(1000, 500, 5, 50_000, 5000)]
        rows += polar_rows(64, 256)
        rows += least_squares_rows(2000, 50)
        rows += preconditioned_iteration_rows(2000, 50, (1e2, 1e8))
        rows += [nonhermitian_row(256)]
    else:
        rows += topk_svd_rows(4000, 2000)
        rows += [_large_inverse_row(1024), _batched_inverse_row(10_000), *_solve_rows(1024)]
        rows += [_completion_row(400, 300, 5), sparse_completion_row(10_000, 5000, 10, 10**6)]
        rows += polar_rows(256, 1024)
        rows += least_squares_rows() + preconditioned_iteration_rows() + [nonhermitian_row()]
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (renders in the book, readable in a terminal).

    The ratio is left blank ("-") where the reference does a different task
    (``"needs every entry"``: a full SVD of the complete matrix against a completion).
    """
    headers = ["task", "method", "iterations", "error", "time (s)", "reference",
               "ref. time (s)", "ratio", "goal", "met"]  # fmt: skip
    cells = [
        [
            row.task,
            row.method,
            row.nit,
            f"{row.error:.1e}",
            f"{row.seconds:.2e}",
            row.reference,
            f"{row.reference_seconds:.2e}",
            "-" if "needs every entry" in row.reference else f"{row.ratio:.2f}",
            row.goal,
            "yes" if row.met else "NO",
        ]  # fmt: skip
        for row in rows
    ]
    return str(markdown_table(headers, cells).data)


def _device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, the CPU model otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return str(machine()["cpu"])


def git_commit() -> str | None:
    """``git describe --always --dirty`` of the source tree, or None outside a checkout."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return described.stdout.strip() or None


def record_table(
    rows: list[Row], path: str | os.PathLike[str], device: str | torch.device
) -> dict[str, Any]:
    """Write the rows measured on ``device`` to ``path`` (JSON) with their provenance.

    The record holds ``device``, ``device_name`` (the GPU's name from
    ``torch.cuda.get_device_name``, or the CPU model), ``torch``, ``cuda``
    (``torch.version.cuda``, None for a CPU-only build), ``date`` (UTC),
    ``commit`` (``git describe --always --dirty``, None outside a checkout),
    ``machine`` (:func:`machine`) and ``rows``.  Returns the record as written;
    :func:`load_record` reads it back.
    """
    checked = bench_device(device)
    record = {
        "device": str(checked),
        "device_name": _device_name(checked),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine(),
        "rows": [asdict(row) for row in rows],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


_RECORD_KEYS = ("device", "device_name", "torch", "cuda", "date", "commit", "rows")


def load_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record :func:`record_table` wrote at ``path``, with its rows as :class:`Row`;
    None when there is no file at ``path``.

    Raises
    ------
    ValueError
        If the file is not such a record (a provenance field or the rows missing).
    """
    source = Path(path)
    if not source.is_file():
        return None
    record = json.loads(source.read_text(encoding="utf-8"))
    missing = [key for key in _RECORD_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise ValueError(f"{source} is not a gdla.bench record: missing {', '.join(missing)}")
    record["rows"] = [Row(**row) for row in record["rows"]]
    return record


def record_section(record: dict[str, Any] | None, how: str = "make gpu-check") -> str:
    """Markdown for a recorded table: its provenance and its rows, or, for ``None``, a
    sentence that says no record exists yet and that ``how`` makes one."""
    if record is None:
        return (
            f"No GPU benchmark has been recorded yet. Running `{how}` on a machine with"
            " CUDA runs the device tests and the benchmark there and writes the record"
            " this section shows."
        )
    rows = record["rows"]
    met = sum(row.met for row in rows)
    cuda = record["cuda"] or "none (CPU-only build)"
    commit = f" at commit `{record['commit']}`" if record["commit"] else ""
    return (
        f"The latest record ran on {record['device_name']} (`{record['device']}`),"
        f" with torch {record['torch']} and CUDA {cuda}, on {record['date']}{commit};"
        f" it met {met} of {len(rows)} goals.\n\n{format_table(rows)}"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the table; exit status 0 even when a goal is missed."""
    parser = argparse.ArgumentParser(
        prog="python -m gdla.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller problems, seconds not minutes"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="top-k SVD against scipy's svds, scikit-learn and torch.svd_lowrank at the same"
        " two-sided residual (gdla.bench_svd, whose options follow, e.g. --threads 2;"
        " --record PATH writes its record)",
    )
    parser.add_argument(
        "--device", default="cpu", help="where the rows run: cpu (default), cuda, cuda:1 ..."
    )
    parser.add_argument(
        "--record", metavar="PATH", help="also write the rows and their provenance to PATH (JSON)"
    )
    args, rest = parser.parse_known_args(argv)
    if args.peers:
        if args.device != "cpu":
            parser.error("--peers runs on the CPU only")
        from .bench_svd import main as peers_main

        record = ["--record", args.record] if args.record else []
        return peers_main(rest + (["--quick"] if args.quick else []) + record)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        device = bench_device(args.device)
    except OptionError as error:
        parser.error(str(error))
    rows = run(quick=args.quick, device=device)
    facts = machine()
    if device.type == "cuda":
        print(
            f"device {device}: {_device_name(device)}, torch {facts['torch']},"
            f" CUDA {torch.version.cuda}, float64"
        )
    else:
        print(
            f"device {device}: {facts['cpu']} ({facts['cpus']} logical CPUs), torch"
            f" {facts['torch']}, {facts['threads']} threads, BLAS {facts['blas']},"
            f" {facts['simd']}, float64"
        )
    print(format_table(rows))
    if args.record:
        record_table(rows, args.record, device)
        print(f"recorded in {args.record}")
    missed = [row for row in rows if not row.met]
    print(f"{len(rows) - len(missed)} of {len(rows)} goals met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
