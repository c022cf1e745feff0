"""A matrix split by rows across a process group: ``svd(group=)`` and ``solve(group=)``.

Each rank of a :mod:`torch.distributed` group holds a block of rows ``A_i``
(``m_i x n``) of ``A``; stacked in rank order the blocks are ``A``.  Every vector of
length ``n`` is replicated (the same on every rank) and the Gram matrix
``G = A^H A = sum_i A_i^H A_i`` (``n x n``) is applied without being formed:

.. math:: G X = \\sum_i A_i^H (A_i X),

two local products and one sum all-reduce of ``n x k`` numbers.  :func:`gdla.svd`
and :func:`gdla.solve` then run their ordinary kernels on ``G`` (a
:class:`gdla.LinearOperator`), identically on every rank, and this module turns
the answer about ``G`` into one about ``A``:

* top-``k`` eigenpairs of ``G`` are the top-``k`` right singular pairs of ``A``:
  ``S = sqrt(eigenvalues)``, ``V`` replicated, and this rank's rows of ``U`` are
  ``U_i = A_i V / S`` (:meth:`RowSplit.svd_factors`);
* the least-squares solution of ``A x = b`` solves the normal equations
  ``G x = A^H b``, with ``A^H b = sum_i A_i^H b_i`` (:meth:`RowSplit.adjoint`).

A floor-2 module: it imports :mod:`gdla._comm`, :mod:`gdla._operator` and the low
floors, never a public module (:func:`gdla.svd` and :func:`gdla.solve` call it from
their ``group=`` branch, and call themselves on the operator it builds).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

import torch
import torch.distributed as dist

from . import _comm
from ._operator import LinearOperator, as_operator
from ._result import SolveResult, SVDResult
from ._tensor import safe_divide
from ._validation import GdlaInputError, ShapeError, check_matrix, check_rank

__all__ = ["RowSplit", "ProcessGroup"]

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup
else:  # torch built without distributed support has no ProcessGroup (group= then fails)
    ProcessGroup = getattr(dist, "ProcessGroup", object)

R = TypeVar("R")

# A rank's status in RowSplit.agreed: inside the iteration, done, left because another
# rank left, or failed with an exception.
_WORKING, _FINISHED, _LEFT, _FAILED = 0, 1, 2, 3


class _LeftError(Exception):
    """Raised inside a Gram product when another rank has left the iteration."""


class RowSplit:
    """This rank's block of rows of ``A``, checked and agreed across ``group``.

    Construction checks ``A_i`` (a finite floating matrix; sparse COO or CSR blocks
    are accepted) on every rank and agrees on the verdict (a failure on one rank
    raises on every rank, see :func:`gdla._comm.agreement`), then checks that every
    block has the same ``n`` and dtype and that the keywords ``agreed`` (``k``,
    ``seed`` ...) are equal across ranks.  Entries are divided by a power of two
    agreed across ranks when the squares of the largest would overflow or underflow
    (``G`` squares them), exactly, as LAPACK's drivers do.

    Attributes
    ----------
    offset : int
        Index of this rank's first row in ``A``.
    m : int
        Rows of ``A`` (all ranks).
    n : int
        Columns of ``A``.
    exponent : int
        ``A`` is used as ``2**exponent * A`` (0 unless its squares would overflow).
    """

    def __init__(
        self,
        function: str,
        A: object,
        group: object,
        **agreed: object,
    ) -> None:
        self.function = function
        self.group = group = cast(ProcessGroup, _comm.check_group(function, group))
        with _comm.agreement(function, group):
            # No gradients flow through group= calls: the products use A's values only.
            view = as_operator(function, "A", A.detach() if isinstance(A, torch.Tensor) else A)
        numbers = {key: _agreeable(value) for key, value in agreed.items()}
        self.offset, self.m = _comm.check_row_blocks(
            function, "A", view.shape, view.dtype, group, **numbers
        )
        self.n = view.shape[-1]
        self.dtype, self.device = view.dtype, view.device
        # The squares of the entries must not overflow (G squares them): an exact
        # power-of-two rescaling agreed across ranks, unless a rank's block is an
        # operator, whose entries are unknown.
        entries = getattr(view, "entry_matrix", None)
        local = [0.0, 1.0]
        if entries is not None:
            values = entries()
            local = [float(values.abs().max()) if values.numel() else 0.0, 0.0]
        largest, operator = _comm.all_reduce_max(
            torch.tensor(local, dtype=torch.float64, device=_reduce_device(view.device, group)),
            group,
        ).tolist()
        self.exponent = 0 if operator else _power_of_two(largest, view.dtype)
        if self.exponent:
            view = view.map_entries(lambda E: E * 2.0**self.exponent)  # type: ignore[attr-defined]
        self.view = view
        self.b_exponent = 0
        self.size = _comm.world_size(group)
        self.active = self.size > 1
        self.products = 0  # Gram products applied (each: two local products, one all-reduce)

    # --- products -------------------------------------------------------------------

    def times(self, X: torch.Tensor) -> torch.Tensor:
        """This rank's rows of ``A X`` (local, no communication)."""
        return self.view.matmul(X)

    def adjoint(self, Y: torch.Tensor) -> torch.Tensor:
        """``A^H Y`` for ``Y`` split by rows like ``A``: ``sum_i A_i^H Y_i`` (one all-reduce)."""
        product = self.view.rmatmul(Y)
        # The all-reduce works in place: a user's operator may return its own storage.
        product = product.clone() if self.view.kind == "operator" else product.contiguous()
        return _comm.all_reduce_sum(product, self.group)

    def gram(self, X: torch.Tensor) -> torch.Tensor:
        """``G X = A^H (A X)`` for a replicated ``X`` (n x k); the result is replicated.

        Inside :meth:`agreed`, a small all-reduce first checks that every rank is
        asking for a product with as many columns, and leaves the iteration (raising
        :class:`_LeftError`) when another rank has left it.
        """
        if self.active:
            table = self._header(_WORKING, X.shape[-1])
            if any(status != _WORKING for status, _ in table) or len({c for _, c in table}) > 1:
                raise _LeftError
        self.products += 1
        return self.adjoint(self.times(X))

    def _header(self, status: int, columns: int) -> list[tuple[int, int]]:
        """Every rank's (status, columns), from one all-reduce of 2 p integers."""
        table = torch.zeros(self.size, 2, dtype=torch.int64,
                            device=_reduce_device(self.device, self.group))  # fmt: skip
        table[_comm.rank(self.group)] = torch.tensor([status, columns])
        return [(int(s), int(c)) for s, c in _comm.all_reduce_sum(table, self.group).tolist()]

    def agreed(self, solve: Callable[[], R]) -> R:
        """``solve()`` (an iteration on :meth:`operator`) run on every rank, and the result
        of the first rank that finished it, the same on every rank.

        Every rank runs the same iteration on the same replicated numbers, but rounding
        may still differ between processes (MKL's matrix--vector products depend on
        the alignment of the arrays in memory; the machines may differ), and with it a
        decision such as "converged at this iteration".  So that no rank waits for a
        product that another will never ask for, each Gram product first agrees on
        what every rank is doing (:meth:`gram`); a rank that finishes, or fails, keeps
        answering those agreements until every rank has left the iteration.  Then the
        lowest rank that finished broadcasts its result to the others; an error on any
        rank raises on every rank (the original error where it happened).
        """
        if not self.active:
            return solve()
        result: R | None = None
        error: Exception | None = None
        status = _FINISHED
        try:
            result = solve()
        except _LeftError:
            status = _LEFT
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the agreement
            error, status = exc, _FAILED
        while True:
            table = self._header(status, 0)
            if all(s != _WORKING for s, _ in table):
                break
        failed = [r for r, (s, _) in enumerate(table) if s == _FAILED]
        if failed:
            if error is not None:
                raise error
            raise GdlaInputError(
                self.function,
                "valid input on every rank of the group",
                f"an error on rank {', '.join(map(str, failed))} of {self.size} "
                "(that rank's error says why)",
            )
        finished = [r for r, (s, _) in enumerate(table) if s == _FINISHED]
        if not finished:
            raise RuntimeError(
                f"{self.function}: the ranks' iterations went different ways (products of "
                "different sizes at the same step); run the same software on every rank"
            )
        holder = [_slim(result) if _comm.rank(self.group) == finished[0] else None]
        dist.broadcast_object_list(
            holder, src=dist.get_global_rank(self.group, finished[0]), group=self.group
        )
        return cast(R, holder[0])

    def operator(self) -> LinearOperator:
        """``G`` as a Hermitian :class:`gdla.LinearOperator` (n x n) of A's dtype and device."""
        return LinearOperator((self.n, self.n), self.gram, self.gram, self.dtype, self.device,
                              hermitian=True)  # fmt: skip

    def check_k(self, k: object) -> int:
        """``k`` checked against the whole matrix (default ``min(m, n)``)."""
        return min(self.m, self.n) if k is None else check_rank(self.function, "k", k,
                                                                min(self.m, self.n))  # fmt: skip

    def frobenius(self) -> float:
        """``||A||_F`` of the whole (scaled) matrix (estimated for an operator block)."""
        local = self.view.fro_norm.reshape(1).to(torch.float64).square()
        local = local.to(_reduce_device(self.device, self.group))
        return float(_comm.all_reduce_sum(local, self.group).sqrt())

    # --- svd ------------------------------------------------------------------------

    def svd_factors(
        self, eigenvalues: torch.Tensor, V: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(U_i, S, Vh, residual)`` from the top eigenpairs ``(eigenvalues, V)`` of ``G``.

        ``S = sqrt(eigenvalues)`` scaled back, ``U_i = A_i V / S`` (a zero column where
        ``S`` is 0), the sign convention of :func:`gdla.svd` applied with the pivot
        taken over the whole ``U`` (the rank holding it decides the phase), and the
        relative residual of the triplets of ``A``,
        ``max(||A V - U S||_F, ||A^H U - V S||_F) / ||A||_F``, from one more product
        with ``A`` and one with ``A^H`` (one all-reduce).
        """
        S = eigenvalues.clamp_min(0).sqrt()
        inverse = safe_divide(torch.ones_like(S), S)  # 1 / S, and 1 where S = 0
        U = self.times(V) * torch.where(S > 0, inverse, 0 * S).to(V.dtype)
        U, V = self._canonical(U, V)
        left = _comm.all_reduce_sum(
            torch.linalg.matrix_norm(self.times(V) - U * S).square().reshape(1), self.group
        )
        right = torch.linalg.matrix_norm(self.adjoint(U) - V * S)
        norm = self.frobenius()
        residual = float(torch.maximum(left.sqrt(), right.reshape(1)).squeeze())
        residual = residual / norm if norm > 0 else 0.0
        return U, S * 2.0**-self.exponent, V.mH.contiguous(), residual

    def svd_result(self, inner: SVDResult) -> SVDResult:
        """The result for ``A`` from :func:`gdla.svd`'s result ``inner`` for ``G``."""
        U, S, Vh, residual = self.svd_factors(inner.S, inner.Vh.mH)
        message = (
            f"{inner.message} (on the Gram matrix A^H A of the rows held by "
            f"{self._processes()}; relative residual of A's triplets {residual:.1e})"
        )
        return SVDResult(method=inner.method, nit=inner.nit, converged=inner.converged,
                         message=message, history=inner.history, U=U, S=S, Vh=Vh)  # fmt: skip

    def _processes(self) -> str:
        return "1 process" if self.size == 1 else f"{self.size} processes"

    def _canonical(self, U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Phases making the entry of largest magnitude of each column of the whole ``U``
        (the first one on ties, in row order) real positive; ``V`` takes the same phases."""
        k = U.shape[-1]
        magnitude = U.abs()
        if U.shape[0]:
            local, where = magnitude.max(dim=0)
        else:
            local = torch.full((k,), -1.0, dtype=magnitude.dtype, device=U.device)
            where = torch.zeros(k, dtype=torch.long, device=U.device)
        device = _reduce_device(U.device, self.group)
        # A copy: the all-reduce works in place, and `local` is compared below.
        best = local.to(device, torch.float64, copy=True)
        best = _comm.all_reduce_max(best, self.group).to(U.device)
        # The first holder of the largest magnitude: the smallest global row index
        # among the ranks whose local maximum equals it (the maximum of minus indices).
        mine = local.to(torch.float64) == best
        index = torch.where(mine, -(where + self.offset).to(torch.float64), -float(self.m))
        first = -_comm.all_reduce_max(index.to(device), self.group).to(U.device)
        holder = mine & ((where + self.offset).to(torch.float64) == first)
        if U.shape[0]:
            pivot = U.gather(0, where.unsqueeze(0)).squeeze(0)
        else:
            pivot = torch.zeros(k, dtype=U.dtype, device=U.device)
        phase = torch.where(holder, torch.sgn(pivot), torch.zeros_like(pivot))
        phase = _comm.all_reduce_sum(phase.to(device), self.group).to(U.device)
        phase = torch.where(phase == 0, torch.ones_like(phase), phase).conj()
        return U * phase, V * phase

    # --- solve ----------------------------------------------------------------------

    def right_hand_side(self, b: object) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Check this rank's rows ``b_i`` of ``b`` (agreed across ranks) and return
        ``(B_i, A^H B, vector)``: ``B_i`` of shape (m_i, k) scaled like ``A`` (by the
        power of two ``b_exponent``), ``A^H B`` replicated, and whether ``b`` was a vector."""
        m_i = self.view.shape[0]
        with _comm.agreement(self.function, self.group):
            b = check_matrix(self.function, "b", b, min_ndim=1).detach()
            if b.dtype != self.dtype or b.device != self.device:
                raise ShapeError(
                    self.function,
                    f"b of A's dtype {self.dtype} on A's device {self.device}",
                    f"{b.dtype} on {b.device}",
                )
            if b.ndim > 2 or b.shape[0] != m_i:
                raise ShapeError(
                    self.function,
                    f"this rank's rows of b, of shape ({m_i},) or ({m_i}, k) "
                    f"to match its rows of A, of shape {tuple(self.view.shape)}",
                    f"shape {tuple(b.shape)}",
                )
        vector = b.ndim == 1
        B = b.unsqueeze(-1) if vector else b
        _comm.check_row_blocks(self.function, "b", B.shape, B.dtype, self.group,
                               vector=int(vector))  # fmt: skip
        local = B.abs().max().reshape(1) if B.numel() else torch.zeros(1)
        local = local.to(_reduce_device(B.device, self.group), torch.float64)
        largest = float(_comm.all_reduce_max(local, self.group))
        self.b_exponent = _power_of_two(largest, B.dtype)
        B = B if self.b_exponent == 0 else B * 2.0**self.b_exponent
        return B, self.adjoint(B), vector

    def least_squares_error(self, X: torch.Tensor, B: torch.Tensor) -> float:
        """Stewart's least-squares backward error of ``X`` for the whole ``A`` and ``B``:
        the largest over columns of ``||A^H r|| / (||A||_F ||r||)``, ``r = B - A X``
        (0 where ``r = 0``)."""
        R = B - self.times(X)
        r = _comm.all_reduce_sum(torch.linalg.vector_norm(R, dim=0).square(), self.group).sqrt()
        s = torch.linalg.vector_norm(self.adjoint(R), dim=0)
        den = r * self.frobenius()
        ratio = torch.where(den > 0, s / torch.where(den > 0, den, torch.ones_like(den)), 0 * s)
        return float(ratio.max()) if ratio.numel() else 0.0

    def solve_result(self, inner: SolveResult, B: torch.Tensor, vector: bool) -> SolveResult:
        """The result for ``A x = b`` from :func:`gdla.solve`'s result ``inner`` for the
        normal equations ``G y = A^H B`` of the rescaled problem."""
        error = self.least_squares_error(inner.x, B)
        # (2^e A) y = 2^f b, so x = 2^(e - f) y.
        X = inner.x * 2.0 ** (self.exponent - self.b_exponent)
        message = (
            f"{inner.message} (on the normal equations A^H A x = A^H b of the rows held "
            f"by {self._processes()}; least-squares backward error of x for A {error:.1e})"
        )
        return SolveResult(method=inner.method, nit=inner.nit, converged=inner.converged,
                           message=message, history=inner.history,
                           x=X.squeeze(-1) if vector else X)  # fmt: skip


def _reduce_device(device: torch.device, group: dist.ProcessGroup) -> torch.device:
    """Small reductions run where the backend takes them: A's device, or the CPU for gloo."""
    return device if dist.get_backend(group) == "nccl" else torch.device("cpu")


def _power_of_two(largest: float, dtype: torch.dtype) -> int:
    """The exponent ``e`` with ``(2^e largest)^2`` far from overflow and underflow
    (0 when ``largest^2`` is already safe, or for a zero matrix)."""
    info = torch.finfo(dtype)
    if largest == 0 or (info.tiny**0.5 * 2**10 <= largest <= info.max**0.5 / 2**10):
        return 0
    return -math.frexp(largest)[1]


def _slim(result: object) -> object:
    """``result`` without what the caller does not use (an SVD of ``G`` needs no ``U``:
    ``V`` is enough), before it is broadcast."""
    if isinstance(result, SVDResult):
        return dataclasses.replace(result, U=result.U[..., :0])
    return result


def _agreeable(value: object) -> int:
    """An integer that is equal across ranks exactly when ``value`` is (None: -1, an
    integer: itself modulo 2**62, anything else: -2)."""
    if value is None:
        return -1
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value) % 2**62
    return -2
