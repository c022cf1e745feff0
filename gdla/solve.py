"""Linear systems by iteration: conjugate gradients, gradient descent and torch.optim.

Public entry point: :func:`solve`.  Each ``method=`` is a private function
``_method(A, B, rtol, max_iter, callback, options) -> (X, Outcome)`` working on
right-hand sides ``B`` of shape (*, n, k); :func:`solve` checks the input,
broadcasts, dispatches, and packs the :class:`~gdla.SolveResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import cast

import torch

from . import _implicit, _lsmr, _lsqr, _refine, _sketch
from ._descent import (
    Callback,
    check_options,
    least_squares,
    lipschitz_constant,
)
from ._iterate import (
    TORCH_OPTIMIZERS,
    Outcome,
    autograd_on,
    default_rtol,
    iterate,
    normal_tensor,
    stopped_by_user,
)
from ._operator import OperatorView, as_operator, rescaled, view_of
from ._result import SolveResult
from ._rows import ProcessGroup, RowSplit
from ._scaling import ldexp, power_of_two_exponent
from ._validation import OptionError, ShapeError, check_matrix, check_option, check_positive

__all__ = ["solve"]

FUNCTION = "gdla.solve"


#: Default ``max_iter`` of each method but ``"cg"``, ``"lsqr"`` and ``"lsmr"``, whose default is
#: ``max(10_000, 10 min(m, n))``.
DEFAULT_MAX_ITER: dict[str, int] = {
    "gd": 10_000,
    "sgd": 10_000,
    "adam": 10_000,
    "lbfgs": 1_000,
    "gmres-ir": 1_000,
    "sketch": 1_000,
}


class _BackwardError:
    """Monitored residual: max over batch and columns of ‖b − Ax‖ / (‖A‖_F ‖x‖ + ‖b‖)."""

    def __init__(self, A: OperatorView, B: torch.Tensor) -> None:
        self.A_norm = A.fro_norm[..., None]  # (*, 1), against columns (*, k)
        self.B_norm = torch.linalg.vector_norm(B, dim=-2)  # (*, k)

    def __call__(self, X: torch.Tensor, R: torch.Tensor) -> float:
        scale = self.A_norm * torch.linalg.vector_norm(X, dim=-2) + self.B_norm
        error = torch.linalg.vector_norm(R, dim=-2) / scale
        # x = 0 and b = 0 (scale 0) is the exact solution of that column.
        return float(torch.where(scale > 0, error, torch.zeros_like(error)).amax())


class _NotPositiveDefiniteError(Exception):
    """Raised inside CG's iteration when a direction p has p^H A p <= 0.

    ``done`` holds the residuals of the iterations CG completed before, which the
    fallback counts in ``nit`` and ``history``.
    """

    def __init__(self, done: list[float]) -> None:
        super().__init__("A is not positive definite")
        self.done = done


#: ``converged`` is False when ‖A‖_F ‖x‖ / ‖b‖ >= _GROWTH_LIMIT / eps: x is then at least
#: 1e-3 / eps times larger than A's scale explains, so A is singular (b outside its
#: range: the iterates grow without bound) or so badly conditioned that x has at most
#: about two correct digits.  The same limit as :func:`gdla.inverse`'s.
_GROWTH_LIMIT = 1e-3


class _Growth:
    """max over batch and columns of ‖A‖_F ‖x‖ / ‖b‖ (0 for x = 0; inf for b = 0, x ≠ 0).

    A lower bound on A's condition number ‖A‖_F ‖A⁻¹‖_2 when x solves Ax = b.  The
    norms of A and b are computed once; each call costs one pass over x.
    """

    def __init__(self, A: OperatorView, B: torch.Tensor) -> None:
        self.A_norm = A.fro_norm[..., None]
        self.B_norm = torch.linalg.vector_norm(B, dim=-2)
        self.limit = _growth_limit(A.dtype)
        self.dtype = A.dtype

    def __call__(self, X: torch.Tensor) -> float:
        size = self.A_norm * torch.linalg.vector_norm(X, dim=-2)
        ratio = torch.where(size > 0, size / self.B_norm, torch.zeros_like(size))
        return float(ratio.amax().nan_to_num(math.inf)) if ratio.numel() else 0.0

    def reason(self, X: torch.Tensor) -> str | None:
        """Why to stop when x has grown past the limit, else None."""
        growth = self(X)
        return _singular_message(growth, self.dtype) if growth >= self.limit else None


def _growth_limit(dtype: torch.dtype) -> float:
    return _GROWTH_LIMIT / torch.finfo(dtype).eps


def _singular_message(growth: float, dtype: torch.dtype) -> str:
    return (
        f"A is singular (b outside its range) or too badly conditioned for "
        f"{str(dtype).removeprefix('torch.')}: ‖A‖_F ‖x‖ / ‖b‖ = {growth:.3g} >= "
        f"{_growth_limit(dtype):.3g}, x is unreliable"
    )


def _monitor(
    measure: _BackwardError, rtol: float, A: OperatorView, B: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The backward error from the recurrence residual ``R``, and from ``B - A X`` once that
    meets ``rtol`` (rounding makes the recurrence drift from the true residual)."""

    def monitor(X: torch.Tensor, R: torch.Tensor) -> float:
        estimate = measure(X, R)
        return estimate if estimate > rtol else measure(X, B - A.matmul(X))

    return monitor


def _cg_hermitian(
    A: OperatorView,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
) -> tuple[torch.Tensor, Outcome]:
    """Conjugate gradients on ``A x = b`` itself, for Hermitian positive definite ``A``.

    One matrix-vector product per iteration.  Raises :class:`_NotPositiveDefiniteError`
    as soon as a search direction shows that ``A`` is not positive definite.
    """
    monitor = _monitor(_BackwardError(A, B), rtol, A, B)
    X = torch.zeros_like(B)
    R = B.clone()
    P = R.clone()
    rho = torch.linalg.vector_norm(R, dim=-2, keepdim=True).square()  # (*, 1, k)
    zero = torch.zeros_like(rho)
    done: list[float] = []
    growth = _Growth(A, B)

    def step() -> float:
        nonlocal X, R, P, rho
        AP = A.matmul(P)
        curvature = (P.conj() * AP).sum(dim=-2, keepdim=True).real
        if bool(((curvature <= 0) & (rho > 0)).any()):
            raise _NotPositiveDefiniteError(done)
        alpha = torch.where(curvature > 0, rho / curvature, zero)
        X = X + alpha * P
        R = R - alpha * AP
        rho_new = torch.linalg.vector_norm(R, dim=-2, keepdim=True).square()
        P = R + torch.where(rho > 0, rho_new / rho, zero) * P
        rho = rho_new
        done.append(monitor(X, R))
        return done[-1]

    outcome = iterate(
        FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback,
        exhausted=lambda: growth.reason(X),
    )  # fmt: skip
    return X, outcome


def _cgls(
    A: OperatorView,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    done: list[float] | None = None,
) -> tuple[torch.Tensor, Outcome]:
    """CGLS: conjugate gradients on the normal equations ``A^H A x = A^H b``.

    Written in the stable CGLS form (never forming ``A^H A``), for every column of
    ``B`` and every matrix of the batch in parallel.  The recurrence updates the
    residual ``r <- r - αAp`` (recomputing it from x instead slows convergence), and
    the stopping rule monitors that ``r``: two matrix-vector products per iteration.
    It also stops, not converged, when ``x`` grows past the growth limit, or when
    ``x`` is a least-squares solution, ``‖A^H r‖ <= rtol ‖A‖_F ‖r‖`` for every column,
    while the backward error is still above ``rtol``: b is then outside A's range
    and no x solves the system.  ``done`` are residuals of a stage before (CG),
    counted in ``nit`` and ``history``.
    """
    monitor = _monitor(_BackwardError(A, B), rtol, A, B)
    X = torch.zeros_like(B)
    R = B.clone()
    S = A.rmatmul(R)
    P = S.clone()
    gamma = torch.linalg.vector_norm(S, dim=-2, keepdim=True).square()  # (*, 1, k)
    zero = torch.zeros_like(gamma)

    def step() -> float:
        nonlocal X, R, S, P, gamma
        Q = A.matmul(P)
        qq = torch.linalg.vector_norm(Q, dim=-2, keepdim=True).square()
        alpha = torch.where(qq > 0, gamma / qq, zero)
        X = X + alpha * P
        R = R - alpha * Q
        S = A.rmatmul(R)
        gamma_new = torch.linalg.vector_norm(S, dim=-2, keepdim=True).square()
        beta = torch.where(gamma > 0, gamma_new / gamma, zero)
        P = S + beta * P
        gamma = gamma_new
        return monitor(X, R)

    A_norm = A.fro_norm[..., None]
    growth = _Growth(A, B)

    def exhausted() -> str | None:
        reason = growth.reason(X)
        if reason is not None:
            return reason
        optimality = torch.linalg.vector_norm(S, dim=-2) / (
            A_norm * torch.linalg.vector_norm(R, dim=-2)
        )
        if not bool((optimality <= rtol).all()):
            return None
        # The recurrence says x is a least-squares solution: confirm from r = b - Ax
        # itself (two more products, once).
        R_true = B - A.matmul(X)
        S_true = A.rmatmul(R_true)
        optimality = torch.linalg.vector_norm(S_true, dim=-2) / (
            A_norm * torch.linalg.vector_norm(R_true, dim=-2)
        )
        if bool((optimality <= rtol).all()):
            return (
                "x is a least-squares solution (‖Aᴴr‖ / (‖A‖_F ‖r‖) <= rtol) with a residual "
                "that is not small: b is outside the range of A, which is singular, and no "
                "x solves Ax = b"
            )
        return None

    outcome = iterate(
        FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback,
        exhausted=exhausted, done=done or (),
    )  # fmt: skip
    return X, outcome


def _cg(
    A: OperatorView,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """CG on ``A`` when it is Hermitian positive definite, else CGLS (see :func:`solve`)."""
    check_options(FUNCTION, "cg", options, ())
    variant = "CGLS"
    done: list[float] = []
    if A.is_hermitian():
        try:
            X, outcome = _cg_hermitian(A, B, rtol, max_iter, callback)
        except _NotPositiveDefiniteError as error:
            done = error.done  # CGLS continues the count
            variant = (
                f"CGLS (A is Hermitian but not positive definite), after {len(done)} CG iterations"
            )
        else:
            outcome.message = f"CG (A is Hermitian positive definite): {outcome.message}"
            return X, outcome
    X, outcome = _cgls(A, B, rtol, max_iter, callback, done)
    outcome.message = f"{variant}: {outcome.message}"
    return X, outcome


def _verdict(
    method: str,
    A: OperatorView,
    B: torch.Tensor,
    Y: torch.Tensor,
    X: torch.Tensor,
    outcome: Outcome,
    rtol: float,
) -> tuple[bool, str]:
    """``converged`` and ``message`` of the result, from the evidence (see :func:`solve`).

    ``A``, ``B`` and ``Y`` are the rescaled problem and its solution, ``X`` the answer.
    The stopping rule's ``converged`` stands only for a finite x, and, for the square
    methods, for an x whose growth ‖A‖_F ‖x‖ / ‖b‖ stays below the growth limit.  The
    message blames A only on evidence: the growth, or a least-squares solution with a
    residual that is not small (CGLS).
    """
    converged, message = outcome.converged, outcome.message
    if not bool(torch.isfinite(X).all()):
        return False, f"not converged: x overflows {str(X.dtype)[6:]} ({message})"
    if method in RECTANGULAR_METHODS:  # their promise is the least-squares solution
        return converged, message
    reason = _Growth(A, B).reason(Y)
    if reason is not None and "A is singular" not in message:
        return False, f"not converged: {reason} ({message})"
    if not converged and not stopped_by_user(outcome) and "A is singular" not in message:
        R = B - A.matmul(Y)
        A_norm = A.fro_norm[..., None]
        optimality = torch.linalg.vector_norm(A.rmatmul(R), dim=-2) / (
            A_norm * torch.linalg.vector_norm(R, dim=-2)
        )
        if bool((optimality.nan_to_num(0.0) <= rtol).all()):
            return False, (
                f"{message}; x is a least-squares solution (‖Aᴴr‖ / (‖A‖_F ‖r‖) <= rtol) "
                "with a residual that is not small: b is outside the range of A, which is "
                "singular, and no x solves Ax = b"
            )
        message += (
            "; the iteration did not reach rtol: a larger max_iter, a larger rtol or another "
            "method may (A may also be badly conditioned for this method)"
        )
    return converged, message


def _adjoint(A: torch.Tensor) -> _implicit.Adjoint | str:
    """The adjoint solve of :func:`solve`'s backward pass, or why there is none."""
    if A.shape[-1] != A.shape[-2]:
        return (
            "gdla.solve: gradients of rectangular (least-squares) solutions are not "
            "supported; use torch.linalg.lstsq where you need them"
        )

    def adjoint(AH: torch.Tensor, G: torch.Tensor) -> tuple[torch.Tensor, bool, str]:
        result = solve(AH, G)
        return result.x, result.converged, result.message

    return adjoint


def _least_squares(
    method: str,
) -> Callable[
    [OperatorView, torch.Tensor, float, int, Callback | None, Mapping[str, object] | None],
    tuple[torch.Tensor, Outcome],
]:
    """The ``gd`` / torch.optim methods on ``f(x) = ½‖Ax − b‖²``, from ``x0 = 0``."""

    def run(
        A: OperatorView,
        B: torch.Tensor,
        rtol: float,
        max_iter: int,
        callback: Callback | None,
        options: Mapping[str, object] | None,
    ) -> tuple[torch.Tensor, Outcome]:
        if method in TORCH_OPTIMIZERS:  # autograd cannot save inference tensors
            with autograd_on():
                B = normal_tensor(B)
                if A.kind == "dense":
                    A = view_of(normal_tensor(A.dense()))
        measure = _BackwardError(A, B)  # the sign of F = Ax - b does not matter
        L = lipschitz_constant(A)
        X0 = torch.zeros_like(B)

        def forward(X: torch.Tensor) -> torch.Tensor:
            return A.differentiable_matmul(X) - B

        return least_squares(
            FUNCTION, method, X0, forward, A.rmatmul, measure, L, options,
            rtol=rtol, max_iter=max_iter, callback=callback,
        )  # fmt: skip

    return run


def _golub_kahan(method: str) -> Callable[..., tuple[torch.Tensor, Outcome]]:
    """LSQR or LSMR on A itself (see :mod:`gdla._lsqr` and :mod:`gdla._lsmr`)."""
    solver = _lsqr.LSQR if method == "lsqr" else _lsmr.LSMR

    def run(
        A: OperatorView,
        B: torch.Tensor,
        rtol: float,
        max_iter: int,
        callback: Callback | None,
        options: Mapping[str, object] | None,
    ) -> tuple[torch.Tensor, Outcome]:
        check_options(FUNCTION, method, options, ())
        return _lsqr.golub_kahan_method(FUNCTION, solver, A, B, rtol, max_iter, callback)

    return run


def _sketch_method(
    A: OperatorView,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """Sketch-and-precondition LSQR with iterative refinement (see :mod:`gdla._sketch`)."""
    chosen = check_options(FUNCTION, "sketch", options, ("sketch_factor", "seed", "inner"))
    return _sketch.solve(FUNCTION, A.dense(), B, rtol, max_iter, callback, chosen, A.fro_norm)


def _gmres_ir_method(
    A: OperatorView,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """GMRES-IR with a low-precision LU preconditioner (see :mod:`gdla._refine`); not
    converged when x has grown past the growth limit, as for the other methods: on a
    singular A with b outside its range, a huge x can have a tiny normwise backward
    error (it solves a nearby singular system), which says nothing of Ax = b."""
    chosen = check_options(FUNCTION, "gmres-ir", options, ("restart",))
    X, outcome = _refine.gmres_ir(FUNCTION, A.dense(), B, rtol, max_iter, callback, chosen)
    reason = _Growth(A, B).reason(X) if outcome.converged else None
    if reason is not None:
        outcome = Outcome(outcome.nit, False, f"{outcome.message}; but {reason}", outcome.history)
    return X, outcome


_METHODS = {
    "cg": _cg,
    "gd": _least_squares("gd"),
    **{name: _least_squares(name) for name in TORCH_OPTIMIZERS},
    "lsqr": _golub_kahan("lsqr"),
    "lsmr": _golub_kahan("lsmr"),
    "sketch": _sketch_method,
    "gmres-ir": _gmres_ir_method,
}

#: The methods that accept a rectangular A (the others need a square one).
RECTANGULAR_METHODS = ("sketch", "lsqr", "lsmr")


#: The methods that need only products with A and A^H: they accept sparse tensors and
#: :class:`gdla.LinearOperator` as well as dense tensors.
OPERATOR_METHODS = ("cg", "lsqr", "gd", *TORCH_OPTIMIZERS, "lsmr")


def _default_method(op: OperatorView) -> str:
    """``method=None``: for dense A, "sketch" if rectangular, "cg" if Hermitian, else
    "gmres-ir"; for sparse and operator A, "cg" if Hermitian, else "lsqr"."""
    if op.kind != "dense":
        square = op.shape[-1] == op.shape[-2]
        return "cg" if square and (op.shape.numel() == 0 or op.is_hermitian()) else "lsqr"
    A = op.dense()
    if A.shape[-1] != A.shape[-2]:
        return "sketch"
    if A.numel() == 0:
        return "cg"
    # A necessary condition first, in O(n): the first row and column of a Hermitian
    # matrix are conjugates, and their difference is part of A - Aᴴ.
    skew = torch.linalg.vector_norm(A[..., 0, :] - A[..., :, 0].conj(), dim=-1)
    bound = 100 * torch.finfo(A.dtype).eps * torch.linalg.matrix_norm(A)
    if bool((skew > bound).any()):
        return "gmres-ir"
    return "cg" if op.is_hermitian() else "gmres-ir"


def _broadcast(A: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Shapes as in ``torch.linalg.solve``: return A (*, m, n), B (*, m, k), and whether b was
    a (batch of) vector(s), i.e. ``b.ndim == 1`` or ``b.shape == A.shape[:-1]``."""
    m, n = A.shape[-2:]
    vector = b.ndim == 1 or (b.ndim == A.ndim - 1 and b.shape == A.shape[:-1])
    B = b.unsqueeze(-1) if vector else b
    expected = f"b of shape (*, {m}) or (*, {m}, k) to match A of shape {tuple(A.shape)}"
    if B.ndim < 2 or B.shape[-2] != m:
        raise ShapeError(FUNCTION, expected, f"shape {tuple(b.shape)}")
    try:
        batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except RuntimeError:
        raise ShapeError(
            FUNCTION, f"{expected}, with broadcastable batch dimensions", f"shape {tuple(b.shape)}"
        ) from None
    return A.expand(*batch, m, n), B.expand(*batch, m, B.shape[-1]), vector


def _unchanged(X: torch.Tensor) -> torch.Tensor:
    return X


def _as_columns(
    op: OperatorView, b: torch.Tensor
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], bool]:
    """For a single (sparse or operator) A: every right-hand side of ``b`` (m,) or
    (*, m, k) as one column of ``B`` (m, N); returns B, the map of a solution (n, N) back
    to (*, n, k), and whether b was a vector.  The methods treat columns independently,
    so a batch of right-hand sides is the same problem as that many columns."""
    m = op.shape[-2]
    vector = b.ndim == 1
    B = b.unsqueeze(-1) if vector else b
    if B.shape[-2] != m:
        raise ShapeError(
            FUNCTION,
            f"b of shape ({m},) or (*, {m}, k) to match A of shape {tuple(op.shape)}",
            f"shape {tuple(b.shape)}",
        )
    batch, k = B.shape[:-2], B.shape[-1]

    def restore(X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], *batch, k).movedim(0, -2)

    return B.movedim(-2, 0).reshape(m, -1), restore, vector


def solve(
    A: torch.Tensor,
    b: torch.Tensor,
    *,
    method: str | None = None,
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callback | None = None,
    options: Mapping[str, object] | None = None,
    group: ProcessGroup | None = None,
) -> SolveResult:
    r"""Solve :math:`Ax = b` by iteration: square systems, least squares, minimum norm.

    Supports input of float, double, cfloat and cdouble dtypes. Also supports batches of
    matrices, and if A is a batch of matrices then the output has the same batch dimensions.
    The result stays on A's device and dtype.  On the CPU, LSQR and LSMR form the
    products of a single real dense ``A`` with one right-hand side through NumPy's
    BLAS (faster than torch's there; the same products to rounding).
    Inputs whose squared entries would overflow or underflow are divided by a
    power of two before iterating (exactly, as LAPACK's drivers do) and the result
    is scaled back.

    As in :func:`torch.linalg.solve`, ``b`` is a (batch of) vector(s) when
    ``b.ndim == 1`` or ``b.shape == A.shape[:-1]``, and a (batch of) matrices of k
    right-hand sides (*, m, k) otherwise; the batch dimensions of A and b broadcast.

    A of shape (*, m, n) need not be square.  For m > n, x minimises
    :math:`\|Ax - b\|_2` (least squares); for m < n, x is the solution of minimum norm
    (of minimum norm among the least-squares solutions if A is rank deficient), as
    :func:`torch.linalg.lstsq` with ``driver="gelsd"`` returns.  Rectangular A takes
    ``"sketch"`` (its default), ``"lsqr"`` or ``"lsmr"``.

    Sparse and matrix-free A.  A torch sparse COO or CSR tensor of shape (m, n)
    (2-D), or a :class:`gdla.LinearOperator`, takes the methods that need only
    products with A and Aᴴ: ``"cg"``, ``"lsqr"``, ``"lsmr"``, ``"gd"``, ``"sgd"``,
    ``"adam"`` and ``"lbfgs"``; ``"sketch"`` and ``"gmres-ir"`` need a dense A and raise
    :class:`OptionError`.  A sparse A is checked (no duplicate or out-of-range index,
    finite values) and held as CSR copies of A and Aᴴ; a LinearOperator's products
    are checked on their first call, and its ``‖A‖_F`` in the stopping rule below is
    an estimate (see :class:`gdla.LinearOperator`).  b may then be (m,) or
    (*, m, k): every right-hand side becomes one column of a single block, so one
    product with A serves all of them.  Results are those of the dense matrix, to
    rounding.  The default method for such an A is ``"cg"`` when A is square and
    Hermitian (a sparse A is tested as a dense one is, from its entries; an operator
    is Hermitian when it was declared with ``hermitian=True``, since its entries
    cannot be inspected), and ``"lsqr"`` otherwise (any shape).  ``"gd"`` estimates
    :math:`\sigma_{\max}(A)` by 30 power iterations from a seeded Gaussian vector
    instead of computing it.

    The default ``method=None`` picks, for a dense A, from its shape and symmetry:

    - rectangular A: ``"sketch"``.  Its cost is one sparse sketch, a small QR and about
      30 products with A and with Aᴴ whatever A's condition number, where a direct
      solver costs :math:`2mn^2` flops; plain LSQR's iterations grow with the condition
      number.
    - square Hermitian A: ``"cg"`` (CG on A itself when A is also positive definite).
    - any other square A: ``"gmres-ir"``, whose cost is a single-precision LU
      factorisation (about half that of :func:`torch.linalg.solve`'s) plus a few
      products; ``"cg"`` would run CGLS, whose iterations grow like :math:`\kappa(A)`.

    ``result.method`` says which ran.

    Methods:

    - ``"cg"``: conjugate gradients.  When every matrix of the batch is
      Hermitian (:math:`\|A - A^H\|_F \le 100\,\varepsilon \|A\|_F`), CG on
      :math:`Ax = b` itself, one matrix-vector product per iteration, its error
      contracting by about :math:`(\sqrt\kappa - 1)/(\sqrt\kappa + 1)` per
      iteration; if a search direction :math:`p` then has :math:`p^H A p \le 0`, A
      is not positive definite and it starts again with CGLS.  Otherwise CG on the
      normal equations :math:`A^H A x = A^H b` (CGLS, also called CGNR), which works
      for every nonsingular A at the price of the squared condition number
      :math:`\kappa(A)^2` of :math:`A^HA`: its error contracts by about
      :math:`(\kappa - 1)/(\kappa + 1)` per iteration, with two products each.  In
      exact arithmetic both would end after n iterations.  The ``message`` says
      which ran.  The stopping rule reads the residual off the recurrence, which
      equals :math:`b - Ax` in exact arithmetic, and once that meets ``rtol``
      computes :math:`b - Ax` itself (one more product) and monitors it instead, so
      a converged result always has a true backward error of at most ``rtol``.
    - ``"gd"``: gradient descent on :math:`f(x) = \tfrac12 \|Ax - b\|^2` with step
      :math:`1/L`, :math:`L = \sigma_{\max}(A)^2` (computed with
      ``torch.linalg.matrix_norm(A, ord=2)``; estimated for a sparse or operator A, see
      above), from :math:`x_0 = 0`.  Its error contracts
      by :math:`1 - 1/\kappa(A)^2` per iteration: only for well-conditioned A.
    - ``"sgd"``, ``"adam"``, ``"lbfgs"``: :class:`torch.optim.SGD`, :class:`~torch.optim.Adam`,
      :class:`~torch.optim.LBFGS` on :math:`f(x)/L` (summed over batch and columns),
      from :math:`x_0 = 0`; ``options`` go to the optimiser's constructor (defaults:
      SGD ``lr=0.1, momentum=0.9``; Adam ``lr=1e-2``; LBFGS ``lr=1, max_iter=1,
      max_eval=25, history_size=20, line_search_fn="strong_wolfe"`` with its own
      tolerances off).  SGD and Adam halve their learning rate after 20 iterations
      without a new smallest residual; LBFGS restarts (fresh memory, the loss divided
      by its current value) when a step does not decrease the loss or the loss has
      fallen by 1e6 since the last restart, because torch's LBFGS stops updating its
      memory once :math:`s^Ty < 10^{-10}`.  A run that does not converge returns the
      iterate of smallest residual seen, and the ``message`` says so.
    - ``"lsqr"``: LSQR (Paige and Saunders, 1982), Golub–Kahan bidiagonalisation from
      :math:`x_0 = 0`, for any shape; two products (A and Aᴴ) per iteration.  It is CG on
      the normal equations in exact arithmetic, so its error contracts by about
      :math:`(\kappa - 1)/(\kappa + 1)` per iteration, but it is more stable in
      floating point.  It monitors its recurrence estimates of :math:`\|r\|` and
      :math:`\|A^Hr\|` (with the exact :math:`\|A\|_F`), and once they meet ``rtol``
      computes :math:`r = b - Ax` and :math:`A^Hr` (two more products) and monitors those.
      For a dense A on the CPU, each iteration reads A once, row block by row block
      (:math:`A_i v`, then :math:`A_i^H u_i` while :math:`A_i` is in the cache).
    - ``"lsmr"``: LSMR (Fong and Saunders, 2011) on the same bidiagonalisation, with the
      same cost per iteration, but x minimises :math:`\|A^H(b - Ax)\|` over the Krylov
      subspace (MINRES on the normal equations, where LSQR is CG on them), so
      :math:`\|A^Hr\|` decreases monotonically (and so does :math:`\|r\|`): stopping
      on it early is safe.  Its stopping rule is the paper's, with ``atol = btol =
      rtol``: :math:`\|r\| \le` ``rtol`` :math:`(\|A\|\|x\| + \|b\|)` or
      :math:`\|A^Hr\| \le` ``rtol`` :math:`\|A\|\|r\|`, the backward error below,
      with the exact :math:`\|A\|_F` for their estimate of :math:`\|A\|`; it is
      confirmed on :math:`r = b - Ax` as for ``"lsqr"``.
    - ``"sketch"``: sketch-and-precondition (Blendenpik, LSRN) with iterative refinement.
      A sparse sign embedding S, d × m with d = 8 n for tall A (ζ = 4 entries
      :math:`\pm 1/\sqrt\zeta` per column in random rows, ζ = 8 when d < 4 n, drawn
      from ``torch.Generator().manual_seed(seed)``), costs as much as ζ passes over A,
      not the :math:`2dmn` flops of a dense sketch.  The QR factorisation
      :math:`SA = QR` (its R by Cholesky QR, the Cholesky factor of :math:`(SA)^HSA`,
      where an estimate of the loss of orthogonality of :math:`SAR^{-1}`, which grows
      like :math:`\kappa(A)^2 u`, is at most 0.05; by Householder QR otherwise) makes
      :math:`AR^{-1}` well conditioned (singular values between
      about :math:`1/(1 + \sqrt{n/d})` and :math:`1/(1 - \sqrt{n/d})`) whatever A's
      condition number, and LSQR on it converges by about :math:`\sqrt{n/d}` per
      iteration.  It starts from the sketch-and-solve answer
      :math:`x_0 = R^{-1}Q^H S b`; then each refinement computes :math:`r = b - Ax` and
      :math:`A^Hr` from A, stops if the backward error below meets ``rtol``, and else
      runs LSQR on :math:`\min_y \|AR^{-1}y - r\|` until LSQR's estimate of the
      backward error meets ``rtol``, and adds :math:`R^{-1}y`.  Refinement makes the
      answer backward stable (Epperly, Meier and Nakatsukasa, 2024).  If a diagonal
      entry of Householder's R is at most :math:`\varepsilon \max(m, n)` times the largest (the rank
      threshold of :func:`torch.linalg.lstsq`), the SVD of SA replaces R by
      :math:`V\Sigma^+` (LSRN), which gives the minimum-norm solution.  Wide A sketches
      :math:`A^H` and preconditions from the left, from :math:`x_0 = 0`, so x stays in
      the row space: the minimum-norm solution.  When d ≥ the sketched dimension, S is
      the identity.  ``nit`` counts LSQR iterations (two products each); ``history``
      holds LSQR's estimates, and at each refinement the true backward error.
      ``options``: ``sketch_factor`` (d / n, default 8), ``seed`` (default 0) and
      ``inner`` (``"lsqr"``, the default, or ``"lsmr"``: the solver of the correction
      problems; on :math:`AR^{-1}`, whose condition number is about 2, the two take
      the same number of iterations within one or two).
    - ``"gmres-ir"``: a low-precision factorisation preconditions a high-precision
      iteration (Carson and Higham, 2017 and 2018).  A (divided by a power of two) is
      LU-factored in single precision (float32 / complex64; single-precision input
      factors in its own precision); x0 solves with those factors; each refinement
      computes :math:`r = b - Ax` in A's precision and solves for the correction by GMRES
      on :math:`(LU)^{-1}A\,d = (LU)^{-1}r`, the factors applied in A's precision.  The
      preconditioned matrix is the identity plus a perturbation of order
      :math:`\kappa(A)\,u_{\text{single}}`, so GMRES takes a handful of iterations for
      :math:`\kappa(A) \ll 10^7` and still converges beyond, where refinement alone would
      diverge.  ``nit`` counts GMRES iterations (one product each); ``history`` holds the
      last true backward error times GMRES's reduction of the preconditioned residual,
      and at each refinement the true backward error.  Each refinement restarts GMRES;
      one restarts after ``options["restart"]`` (default 50) iterations, and the method
      gives up when a refinement does not reduce the backward error by 10%.

    Stopping rule.  After each iteration the monitored residual, the normwise
    backward error :math:`\eta = \max_{\text{batch, columns}} \|Ax - b\|_2 /
    (\|A\|_F \|x\|_2 + \|b\|_2)` (0 for a column with b = 0 and x = 0), is appended to
    ``history``; the iteration stops with ``converged=True`` as soon as
    :math:`\eta \le` ``rtol``: x is then the exact solution of a system whose A and b
    are perturbed by relative amounts at most ``rtol``.  It stops with
    ``converged=False`` after ``max_iter`` iterations, when the residual becomes NaN
    or infinite, or when ``callback`` returns True.  For the square methods (all but
    ``"lsqr"``, ``"lsmr"`` and ``"sketch"``), ``converged`` is then set to False, with a message
    that says A is singular or too badly conditioned, when the growth
    :math:`\max_{\text{batch, columns}} \|A\|_F \|x\| / \|b\| \ge 10^{-3}/\varepsilon`
    (machine epsilon of the dtype: 4.5e12 in double, 8.4e3 in float; the limit of
    :func:`gdla.inverse`): x has then grown far beyond what A's scale explains, as the
    iterates of CG do on a singular A with b outside its range, and small backward
    error no longer means a useful x (its relative error is about
    :math:`\kappa(A)\,\eta`).  CG and CGLS stop, not converged, as soon as x passes
    that limit; CGLS, and every square method that ends unconverged, also report
    when x is a least-squares solution (:math:`\|A^Hr\| \le` ``rtol``
    :math:`\|A\|_F \|r\|` for every column) whose residual is not small: b is then
    outside the range of a singular A and no x solves the system.  An x that
    overflows the dtype is never converged.  The forward error of a converged x is up
    to about :math:`\kappa(A)` times ``rtol``.  ``callback`` is called after every
    iteration, the converging one included; when CG falls back to CGLS, ``nit``,
    ``history`` and ``max_iter`` count the iterations of both.

    Gradients: when A or b requires grad, x is differentiable by implicit
    differentiation, not through the iterations: the backward pass solves
    :math:`A^H \bar b = \bar x` once (with :func:`solve`'s default method) and sets
    :math:`\bar A = -\bar b x^H`.  Rectangular (least-squares) solutions raise in
    backward.  Inputs are never modified, and the call itself leaves their ``.grad``
    alone; it works under :func:`torch.inference_mode` and with inference tensors.

    For ``"lsqr"`` and ``"lsmr"`` (and ``"sketch"`` on wide A) the monitored residual is the
    least-squares backward error :math:`\eta = \max_{\text{batch, columns}}
    \min\bigl(\|r\| / (\|A\|_F\|x\| + \|b\|),\ \|A^Hr\| / (\|A\|_F\|r\|)\bigr)`
    with :math:`r = b - Ax` (0 where r = 0): the first ratio as above, the second small
    when x is the exact least-squares solution for a matrix :math:`A + E` with
    :math:`\|E\|_2 \le \eta \|A\|_F` (Stewart's backward error,
    :math:`E = r r^H A / \|r\|^2`).  Stewart's ratio can stay near
    :math:`\kappa u` even for the answer of a backward-stable solver, so ill-conditioned
    problems with large residuals need a larger ``rtol`` with ``"lsqr"``.  For
    ``"sketch"`` on tall A the second ratio is the Karlson–Waldén estimate of the
    optimal backward error, :math:`\|(A^HA + \|r\|^2/\|x\|^2\, I)^{-1/2} A^Hr\| /
    (\|A\|_F\|x\|)` (within a factor :math:`\sqrt2` of the smallest relative
    perturbation of A that makes x an exact least-squares solution, Grcar, Saunders and
    Su), with :math:`A^HA` replaced by :math:`R^HR` from the sketch (exact up to the
    sketch's distortion, a factor of about :math:`1 \pm \sqrt{n/d}`), first bounded
    cheaply by :math:`\|R^{-H}A^Hr\| / (\|A\|_F\|x\| + \|b\|)` and computed (from the
    QR factorisation of :math:`[R;\ (\|r\|/\|x\|) I]`, or the SVD of the sketch) only
    when that bound does not meet ``rtol``.  A backward-stable direct
    solver reaches about u on it, where Householder QR, as :func:`torch.linalg.lstsq`
    uses, has forward error up to about :math:`\kappa u + \kappa^2 u \|r\| /
    (\|A\| \|x\|)`.

    Many processes (``group``): A is split by rows across the processes of ``group``,
    each rank passing its own rows ``A_i`` (m_i, n) and ``b_i`` (m_i,) or (m_i, k);
    every rank receives the same x, the least-squares solution for the whole A (the
    solution when A is square and nonsingular).  x solves the normal equations
    :math:`A^H A x = A^H b` by ``method`` (default ``"cg"``; the methods that a
    Hermitian :class:`gdla.LinearOperator` takes), with :math:`A^H b = \sum_i A_i^H
    b_i` and :math:`A^H A X = \sum_i A_i^H (A_i X)`, two local products and one sum
    all-reduce of n numbers per column and iteration.  The normal equations square the
    condition number: CG needs about :math:`\kappa(A)` iterations (as CGLS does) and x
    is accurate to about :math:`\kappa(A)^2` times ``rtol``, against :math:`\kappa(A)`
    for the one-process least-squares methods.  ``rtol``, ``nit`` and ``history`` are
    those of the iteration on the normal equations; the ``message`` adds x's
    least-squares backward error for A (see ``"lsqr"`` below).  Every rank must pass
    the same ``method``, ``rtol``, ``max_iter`` and ``options``; blocks of different n
    or dtype, or bad input on any rank, raise on every rank; the first rank to finish
    broadcasts its x, so rounding differences between processes cannot make them
    disagree.  No gradients flow through ``group`` calls.

    Parameters
    ----------
    A : Tensor or LinearOperator
        Matrices of shape (*, m, n), a sparse COO or CSR tensor or a
        :class:`gdla.LinearOperator` of shape (m, n); square (m = n) for every method
        but ``"sketch"``, ``"lsqr"`` and ``"lsmr"``.
    b : Tensor
        Right-hand sides of shape (*, m) or (*, m, k), of A's dtype and device.
    method : str, optional
        ``None`` (default: chosen from A, see above), ``"cg"``, ``"gmres-ir"``,
        ``"sketch"``, ``"lsqr"``, ``"lsmr"``, ``"gd"``, ``"sgd"``, ``"adam"`` or ``"lbfgs"``.
    rtol : float, optional
        Tolerance of the stopping rule; default ``gdla._iterate.default_rtol(A.dtype)``
        (100 machine epsilons: 2.2e-14 in double, 1.2e-5 in float), and for ``"sketch"``
        one machine epsilon (2.2e-16 in double), the backward error of Householder QR:
        its forward error is then comparable to :func:`torch.linalg.lstsq`'s.
    max_iter : int, optional
        Largest number of iterations.  Defaults: ``"cg"``, ``"lsqr"`` and ``"lsmr"``
        ``max(10_000, 10 min(m, n))``, ``"lbfgs"``, ``"sketch"`` and ``"gmres-ir"``
        1,000, ``"gd"``, ``"sgd"`` and ``"adam"`` 10,000.
    callback : callable, optional
        Called as ``callback(k, residual)`` after every iteration ``k`` (the last one
        included); returning True stops.
    options : dict, optional
        Optimiser keyword arguments for ``"sgd"``, ``"adam"`` and ``"lbfgs"``;
        ``sketch_factor``, ``seed`` and ``inner`` for ``"sketch"``; ``restart`` for
        ``"gmres-ir"``;
        the other methods take none.
    group : torch.distributed.ProcessGroup, optional
        A and b split by rows across the processes of ``group`` (see above); default
        None: one process.

    Returns
    -------
    SolveResult
        ``x`` of shape (*, n) or (*, n, k) (b's, with m replaced by n, after broadcasting
        the batch dimensions), with ``method``, ``nit``, ``converged``, ``message`` and ``history``
        (the monitored residual after each iteration).  Empty input (n = 0, k = 0 or an
        empty batch) gives an empty ``x`` with ``converged=True`` and ``nit=0``.

    Raises
    ------
    ShapeError
        A is not a matrix, or not square for a method that needs it, or b's shape does
        not match A's; a sparse A has a duplicate or out-of-range index; an operator's
        product has the wrong shape or device.
    DtypeError
        A or b is not a float32, float64, complex64 or complex128 tensor, or b's dtype
        differs from A's; A has a sparse layout other than COO and CSR; an operator's
        product has another dtype.
    NonFiniteError
        A or b has NaN or infinite entries.
    OptionError
        Unknown ``method``, a method that needs a dense A for a sparse or operator A,
        bad ``rtol``, ``max_iter`` or ``options``.

    See Also
    --------
    torch.linalg.solve : the direct (LU-based) solver, the oracle of the tests.
    torch.linalg.lstsq : the direct least-squares solver, the oracle for rectangular A.
    gdla.inverse : the inverse of A by iteration.

    Examples
    --------
    >>> import torch
    >>> from gdla import solve
    >>> from gdla.matrices import with_condition_number
    >>> A = with_condition_number(6, 10.0, seed=0)
    >>> b = torch.arange(1.0, 7.0, dtype=torch.float64)
    >>> result = solve(A, b)
    >>> result.method, result.converged, result.x.shape
    ('gmres-ir', True, torch.Size([6]))
    >>> bool(torch.allclose(result.x, torch.linalg.solve(A, b), rtol=1e-10, atol=1e-12))
    True

    A tall least-squares problem, 200 x 20:

    >>> T = with_condition_number(20, 1e6, m=200, seed=1)
    >>> c = torch.linspace(-1.0, 1.0, 200, dtype=torch.float64)
    >>> fit = solve(T, c)
    >>> fit.method, fit.converged, fit.x.shape
    ('sketch', True, torch.Size([20]))
    >>> reference = torch.linalg.lstsq(T, c.unsqueeze(-1)).solution.squeeze(-1)
    >>> bool(torch.allclose(fit.x, reference, rtol=1e-6, atol=0))
    True
    """
    if group is not None:  # A and b split by rows across processes: gdla._rows
        rows = RowSplit(FUNCTION, A, group)
        B, AhB, vector = rows.right_hand_side(b)
        G = cast(torch.Tensor, rows.operator())  # a LinearOperator, which solve takes
        inner = rows.agreed(lambda: solve(
            G, AhB, method=method, rtol=rtol, max_iter=max_iter, callback=callback,
            options=options))  # fmt: skip
        return rows.solve_result(inner, B, vector)
    A_input, b_input = A, b
    op = as_operator(FUNCTION, "A", A.detach() if isinstance(A, torch.Tensor) else A)
    b = check_matrix(FUNCTION, "b", b, min_ndim=1, dtype_like=op.like())
    if method is not None:
        check_option(FUNCTION, "method", method, _METHODS)
        if op.kind != "dense" and method not in OPERATOR_METHODS:
            kind = "a sparse A" if op.kind == "sparse" else "a LinearOperator A"
            raise OptionError(
                FUNCTION,
                f"for {kind}, a method that needs only products with A and Aᴴ: "
                + ", ".join(repr(name) for name in OPERATOR_METHODS),
                f"{method!r}, which needs a dense A",
            )
    if rtol is not None:
        rtol = check_positive(FUNCTION, "rtol", rtol)
    m, n = op.shape[-2:]
    if method is not None and m != n and method not in RECTANGULAR_METHODS:
        raise ShapeError(
            FUNCTION,
            f"A to be square, of shape (*, n, n), for method {method!r} "
            "(rectangular A takes method 'sketch', 'lsqr' or 'lsmr')",
            f"shape {tuple(op.shape)}",
        )
    if max_iter is not None:
        max_iter = int(check_positive(FUNCTION, "max_iter", max_iter, integer=True))
    differentiable = _implicit.wanted(A_input, b_input)
    restore: Callable[[torch.Tensor], torch.Tensor] = _unchanged
    if op.kind == "dense":
        A, B, vector = _broadcast(op.dense(), b.detach())
        op = view_of(A)
    else:
        B, restore, vector = _as_columns(op, b.detach())
    if method is None:
        method = _default_method(op)
    if rtol is None:
        rtol = torch.finfo(op.dtype).eps if method == "sketch" else default_rtol(op.dtype)
    if max_iter is None:
        few = max(10_000, 10 * min(m, n))
        max_iter = few if method in ("cg", "lsqr", "lsmr") else DEFAULT_MAX_ITER[method]
    if B.numel() == 0 or op.shape.numel() == 0:
        X = torch.zeros(*B.shape[:-2], n, B.shape[-1], dtype=op.dtype, device=op.device)
        X = restore(X)
        return SolveResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to solve",
            history=[],
            x=X.squeeze(-1) if vector else X,
        )
    # Unless squares of their entries would overflow or underflow, both exponents are 0.
    (A_scaled, e_A), e_B = rescaled(op), power_of_two_exponent(B)
    B_scaled = ldexp(B, e_B[..., None, None])
    with torch.no_grad():
        Y, outcome = _METHODS[method](A_scaled, B_scaled, rtol, max_iter, callback, options)
    X = ldexp(Y, (e_A - e_B)[..., None, None])  # (2^e_A A) y = 2^e_B b: x = 2^(e_A - e_B) y
    converged, message = _verdict(method, A_scaled, B_scaled, Y, X, outcome, rtol)
    X = restore(X)
    if differentiable and op.kind == "dense":  # implicit differentiation: one adjoint solve
        A_attached, B_attached, _ = _broadcast(A_input, b_input)
        X = _implicit.attach_solution(A_attached, B_attached, X, _adjoint(A))
    elif differentiable:
        anchor = b_input if b_input.requires_grad else A_input
        (X,) = _implicit.attach_unsupported(
            "gdla.solve: gradients with a sparse or LinearOperator A are not supported",
            anchor, X,
        )  # fmt: skip
    return SolveResult(
        method=method,
        nit=outcome.nit,
        converged=converged,
        message=message,
        history=outcome.history,
        x=X.squeeze(-1) if vector else X,
    )
