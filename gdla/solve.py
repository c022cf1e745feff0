"""Linear systems by iteration: conjugate gradients, gradient descent and torch.optim.

Public entry point: :func:`solve`.  Each ``method=`` is a private function
``_method(A, B, rtol, max_iter, callback, options) -> (X, Outcome)`` working on
right-hand sides ``B`` of shape (*, n, k); :func:`solve` checks the input,
broadcasts, dispatches, and packs the :class:`~gdla.SolveResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ._descent import (
    Callback,
    check_options,
    least_squares,
    lipschitz_constant,
)
from ._iterate import TORCH_OPTIMIZERS, Outcome, default_rtol, iterate
from ._result import SolveResult
from ._scaling import divide, power_of_two_scale
from ._validation import ShapeError, check_matrix, check_option, check_positive

__all__ = ["solve"]

FUNCTION = "gdla.solve"


#: Default ``max_iter`` of each method but ``"cg"``, whose default is ``max(10_000, 10 n)``.
DEFAULT_MAX_ITER: dict[str, int] = {
    "gd": 10_000,
    "sgd": 10_000,
    "adam": 10_000,
    "lbfgs": 1_000,
}


class _BackwardError:
    """Monitored residual: max over batch and columns of ‖b − Ax‖ / (‖A‖_F ‖x‖ + ‖b‖)."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        self.A_norm = torch.linalg.matrix_norm(A)[..., None]  # (*, 1), against columns (*, k)
        self.B_norm = torch.linalg.vector_norm(B, dim=-2)  # (*, k)

    def __call__(self, X: torch.Tensor, R: torch.Tensor) -> float:
        scale = self.A_norm * torch.linalg.vector_norm(X, dim=-2) + self.B_norm
        error = torch.linalg.vector_norm(R, dim=-2) / scale
        # x = 0 and b = 0 (scale 0) is the exact solution of that column.
        return float(torch.where(scale > 0, error, torch.zeros_like(error)).amax())


class _NotPositiveDefiniteError(Exception):
    """Raised inside CG's iteration when a direction p has p^H A p <= 0."""


def _is_hermitian(A: torch.Tensor) -> bool:
    """Whether every matrix of the batch is Hermitian to 100 eps relative (Frobenius)."""
    asymmetry = torch.linalg.matrix_norm(A - A.mH)
    return bool((asymmetry <= 100 * torch.finfo(A.dtype).eps * torch.linalg.matrix_norm(A)).all())


def _monitor(
    measure: _BackwardError, rtol: float, A: torch.Tensor, B: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The backward error from the recurrence residual ``R``, and from ``B - A X`` once that
    meets ``rtol`` (rounding makes the recurrence drift from the true residual)."""

    def monitor(X: torch.Tensor, R: torch.Tensor) -> float:
        estimate = measure(X, R)
        return estimate if estimate > rtol else measure(X, B - A @ X)

    return monitor


def _cg_hermitian(
    A: torch.Tensor,
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

    def step() -> float:
        nonlocal X, R, P, rho
        AP = A @ P
        curvature = (P.conj() * AP).sum(dim=-2, keepdim=True).real
        if bool(((curvature <= 0) & (rho > 0)).any()):
            raise _NotPositiveDefiniteError
        alpha = torch.where(curvature > 0, rho / curvature, zero)
        X = X + alpha * P
        R = R - alpha * AP
        rho_new = torch.linalg.vector_norm(R, dim=-2, keepdim=True).square()
        P = R + torch.where(rho > 0, rho_new / rho, zero) * P
        rho = rho_new
        return monitor(X, R)

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X, outcome


def _cgls(
    A: torch.Tensor,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
) -> tuple[torch.Tensor, Outcome]:
    """CGLS: conjugate gradients on the normal equations ``A^H A x = A^H b``.

    Written in the stable CGLS form (never forming ``A^H A``), for every column of
    ``B`` and every matrix of the batch in parallel.  The recurrence updates the
    residual ``r <- r - αAp`` (recomputing it from x instead slows convergence), and
    the stopping rule monitors that ``r``: two matrix-vector products per iteration.
    """
    monitor = _monitor(_BackwardError(A, B), rtol, A, B)
    X = torch.zeros_like(B)
    R = B.clone()
    S = A.mH @ R
    P = S.clone()
    gamma = torch.linalg.vector_norm(S, dim=-2, keepdim=True).square()  # (*, 1, k)
    zero = torch.zeros_like(gamma)

    def step() -> float:
        nonlocal X, R, S, P, gamma
        Q = A @ P
        qq = torch.linalg.vector_norm(Q, dim=-2, keepdim=True).square()
        alpha = torch.where(qq > 0, gamma / qq, zero)
        X = X + alpha * P
        R = R - alpha * Q
        S = A.mH @ R
        gamma_new = torch.linalg.vector_norm(S, dim=-2, keepdim=True).square()
        beta = torch.where(gamma > 0, gamma_new / gamma, zero)
        P = S + beta * P
        gamma = gamma_new
        return monitor(X, R)

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X, outcome


def _cg(
    A: torch.Tensor,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """CG on ``A`` when it is Hermitian positive definite, else CGLS (see :func:`solve`)."""
    check_options(FUNCTION, "cg", options, ())
    variant = "CGLS"
    if _is_hermitian(A):
        try:
            X, outcome = _cg_hermitian(A, B, rtol, max_iter, callback)
        except _NotPositiveDefiniteError:
            variant = "CGLS (A is Hermitian but not positive definite)"
        else:
            outcome.message = f"CG (A is Hermitian positive definite): {outcome.message}"
            return X, outcome
    X, outcome = _cgls(A, B, rtol, max_iter, callback)
    outcome.message = f"{variant}: {outcome.message}"
    return X, outcome


def _least_squares(
    method: str,
) -> Callable[
    [torch.Tensor, torch.Tensor, float, int, Callback | None, Mapping[str, object] | None],
    tuple[torch.Tensor, Outcome],
]:
    """The ``gd`` / torch.optim methods on ``f(x) = ½‖Ax − b‖²``, from ``x0 = 0``."""

    def run(
        A: torch.Tensor,
        B: torch.Tensor,
        rtol: float,
        max_iter: int,
        callback: Callback | None,
        options: Mapping[str, object] | None,
    ) -> tuple[torch.Tensor, Outcome]:
        measure = _BackwardError(A, B)  # the sign of F = Ax - b does not matter
        L = lipschitz_constant(A)
        X0 = torch.zeros_like(B)

        def forward(X: torch.Tensor) -> torch.Tensor:
            return A @ X - B

        return least_squares(
            FUNCTION, method, X0, forward, lambda F: A.mH @ F, measure, L, options,
            rtol=rtol, max_iter=max_iter, callback=callback,
        )  # fmt: skip

    return run


_METHODS = {
    "cg": _cg,
    "gd": _least_squares("gd"),
    **{name: _least_squares(name) for name in TORCH_OPTIMIZERS},
}


def _broadcast(A: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Shapes as in ``torch.linalg.solve``: return A (*, n, n), B (*, n, k), and whether b was
    a (batch of) vector(s), i.e. ``b.ndim == 1`` or ``b.shape == A.shape[:-1]``."""
    n = A.shape[-1]
    vector = b.ndim == 1 or (b.ndim == A.ndim - 1 and b.shape == A.shape[:-1])
    B = b.unsqueeze(-1) if vector else b
    expected = f"b of shape (*, {n}) or (*, {n}, k) to match A of shape {tuple(A.shape)}"
    if B.ndim < 2 or B.shape[-2] != n:
        raise ShapeError(FUNCTION, expected, f"shape {tuple(b.shape)}")
    try:
        batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except RuntimeError:
        raise ShapeError(
            FUNCTION, f"{expected}, with broadcastable batch dimensions", f"shape {tuple(b.shape)}"
        ) from None
    return A.expand(*batch, n, n), B.expand(*batch, n, B.shape[-1]), vector


def solve(
    A: torch.Tensor,
    b: torch.Tensor,
    *,
    method: str = "cg",
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callback | None = None,
    options: Mapping[str, object] | None = None,
) -> SolveResult:
    r"""Solve the square linear system :math:`Ax = b` by iteration.

    Supports input of float, double, cfloat and cdouble dtypes. Also supports batches of
    matrices, and if A is a batch of matrices then the output has the same batch dimensions.
    The result stays on A's device and dtype.
    Inputs whose squared entries would overflow or underflow are divided by a
    power of two before iterating (exactly, as LAPACK's drivers do) and the result
    is scaled back.

    As in :func:`torch.linalg.solve`, ``b`` is a (batch of) vector(s) when
    ``b.ndim == 1`` or ``b.shape == A.shape[:-1]``, and a (batch of) matrices of k
    right-hand sides (*, n, k) otherwise; the batch dimensions of A and b broadcast.

    Methods:

    - ``"cg"`` (default): conjugate gradients.  When every matrix of the batch is
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
      ``torch.linalg.matrix_norm(A, ord=2)``), from :math:`x_0 = 0`.  Its error contracts
      by :math:`1 - 1/\kappa(A)^2` per iteration: only for well-conditioned A.
    - ``"sgd"``, ``"adam"``, ``"lbfgs"``: :class:`torch.optim.SGD`, :class:`~torch.optim.Adam`,
      :class:`~torch.optim.LBFGS` on :math:`f(x)/L` (summed over batch and columns),
      from :math:`x_0 = 0`; ``options`` go to the optimiser's constructor (defaults:
      SGD ``lr=0.1, momentum=0.9``; Adam ``lr=1e-2``; LBFGS ``lr=1, max_iter=1,
      history_size=20, line_search_fn="strong_wolfe"`` with its own tolerances off).

    Stopping rule.  After each iteration the monitored residual, the normwise
    backward error :math:`\eta = \max_{\text{batch, columns}} \|Ax - b\|_2 /
    (\|A\|_F \|x\|_2 + \|b\|_2)` (0 for a column with b = 0 and x = 0), is appended to
    ``history``; the iteration stops with ``converged=True`` as soon as
    :math:`\eta \le` ``rtol``: x is then the exact solution of a system whose A and b
    are perturbed by relative amounts at most ``rtol``.  It stops with
    ``converged=False`` after ``max_iter`` iterations, when the residual becomes NaN
    or infinite, or when ``callback`` returns True.  A singular A with b outside its
    range (no x has a small residual: CG then tends to the least-squares solution) or
    a too badly conditioned A (CG does not reach ``rtol`` in ``max_iter`` iterations)
    thus gives ``converged=False`` and a ``message`` saying so; the forward error of a
    converged x is up to about :math:`\kappa(A)` times ``rtol``.

    Parameters
    ----------
    A : Tensor
        Square matrices of shape (*, n, n).
    b : Tensor
        Right-hand sides of shape (*, n) or (*, n, k), of A's dtype and device.
    method : str
        ``"cg"`` (default), ``"gd"``, ``"sgd"``, ``"adam"`` or ``"lbfgs"``.
    rtol : float, optional
        Tolerance of the stopping rule; default ``gdla._iterate.default_rtol(A.dtype)``
        (100 machine epsilons: 2.2e-14 in double, 1.2e-5 in float).
    max_iter : int, optional
        Largest number of iterations.  Defaults: ``"cg"`` ``max(10_000, 10 n)``,
        ``"lbfgs"`` 1,000, ``"gd"``, ``"sgd"`` and ``"adam"`` 10,000.
    callback : callable, optional
        Called as ``callback(k, residual)`` after iteration ``k``; returning True stops.
    options : dict, optional
        Optimiser keyword arguments for ``"sgd"``, ``"adam"`` and ``"lbfgs"``; the other
        methods take none.

    Returns
    -------
    SolveResult
        ``x`` of the shape of ``b`` (after broadcasting the batch dimensions): (*, n) or
        (*, n, k), with ``method``, ``nit``, ``converged``, ``message`` and ``history``
        (the monitored residual after each iteration).  Empty input (n = 0, k = 0 or an
        empty batch) gives an empty ``x`` with ``converged=True`` and ``nit=0``.

    Raises
    ------
    ShapeError
        A is not square, or b's shape does not match A's.
    DtypeError
        A or b is not a float32, float64, complex64 or complex128 tensor, or b's dtype
        differs from A's.
    NonFiniteError
        A or b has NaN or infinite entries.
    OptionError
        Unknown ``method``, bad ``rtol``, ``max_iter`` or ``options``.

    See Also
    --------
    torch.linalg.solve : the direct (LU-based) solver, the oracle of the tests.
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
    ('cg', True, torch.Size([6]))
    >>> bool(torch.allclose(result.x, torch.linalg.solve(A, b), rtol=1e-10, atol=1e-12))
    True
    """
    A = check_matrix(FUNCTION, "A", A, square=True)
    b = check_matrix(FUNCTION, "b", b, min_ndim=1, dtype_like=A)
    check_option(FUNCTION, "method", method, _METHODS)
    if rtol is None:
        rtol = default_rtol(A.dtype)
    check_positive(FUNCTION, "rtol", rtol)
    n = A.shape[-1]
    if max_iter is None:
        max_iter = max(10_000, 10 * n) if method == "cg" else DEFAULT_MAX_ITER[method]
    check_positive(FUNCTION, "max_iter", max_iter, integer=True)
    A, B, vector = _broadcast(A.detach(), b.detach())
    if B.numel() == 0 or A.numel() == 0:
        X = torch.zeros(B.shape, dtype=A.dtype, device=A.device)
        return SolveResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to solve",
            history=[],
            x=X.squeeze(-1) if vector else X,
        )
    # Unless squares of their entries would overflow, both scales are 1.
    scale_A, scale_B = power_of_two_scale(A), power_of_two_scale(B)
    with torch.no_grad():
        Y, outcome = _METHODS[method](
            divide(A, scale_A), divide(B, scale_B), rtol, max_iter, callback, options
        )
    X = divide(Y, scale_A / scale_B)
    message = outcome.message
    if not outcome.converged:
        message += (
            "; A may be singular (with b outside its range) or too badly conditioned"
            " for this rtol and method"
        )
    return SolveResult(
        method=method,
        nit=outcome.nit,
        converged=outcome.converged,
        message=message,
        history=outcome.history,
        x=X.squeeze(-1) if vector else X,
    )
