"""LSQR (Paige and Saunders, 1982): Golub–Kahan bidiagonalisation for least squares.

A matrix-free kernel: it sees the operator only through ``matvec`` (``(*, n, k) ->
(*, m, k)``) and ``rmatvec`` (its adjoint), and runs every column of every matrix of
the batch in parallel, each with its own scalars (tensors of shape ``(*, 1, k)``).
All LSQR scalars are real, so complex operators need no special case.

From ``x0 = 0`` the iterates stay in the range of the adjoint, so LSQR converges to
the minimum-norm least-squares solution, also for rank-deficient and wide operators.

The module also holds the least-squares backward error that :func:`gdla.solve`
monitors for rectangular systems, and the ``"lsqr"`` method built on the kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._iterate import Outcome, iterate
from ._operator import OperatorView, view_of

__all__ = ["LSQR", "backward_error", "lsqr"]

Operator = Callable[[torch.Tensor], torch.Tensor]


def _norm(V: torch.Tensor) -> torch.Tensor:
    """Column norms of ``V`` (*, m, k), shape (*, 1, k), real."""
    return torch.linalg.vector_norm(V, dim=-2, keepdim=True)


def _divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / b`` with 0 where ``b`` is 0 (a column that has converged exactly)."""
    return torch.where(b != 0, a / torch.where(b != 0, b, torch.ones_like(b)), torch.zeros_like(a))


def backward_error(
    A_norm: torch.Tensor,
    x_norm: torch.Tensor,
    b_norm: torch.Tensor,
    r_norm: torch.Tensor,
    ar_norm: torch.Tensor,
) -> torch.Tensor:
    r"""The least-squares backward error of each column, from norms (all shaped alike).

    :math:`\eta = \min\bigl(\|r\| / (\|A\|\,\|x\| + \|b\|),\ \|A^H r\| / (\|A\|\,\|r\|)\bigr)`,
    0 where ``r = 0``.  The first ratio is the normwise backward error of ``x`` for the
    system ``Ax = b`` (Rigal and Gaches): ``x`` solves ``(A + E) x = b + f`` exactly with
    ``‖E‖ ≤ η‖A‖``, ``‖f‖ ≤ η‖b‖``.  The second is a backward error for least squares
    (Stewart): ``x`` is the exact least-squares solution for ``A + E`` with
    ``E = r rᴴ A / ‖r‖²``, ``‖E‖₂ = ‖Aᴴr‖ / ‖r‖``.  Either being small means that ``x``
    is the exact answer to a nearby problem.
    """
    consistent = _divide(r_norm, A_norm * x_norm + b_norm)
    optimal = _divide(ar_norm, A_norm * r_norm)
    return torch.where(r_norm > 0, torch.minimum(consistent, optimal), torch.zeros_like(r_norm))


class LSQR:
    """The state of LSQR on ``min ‖A x − B‖`` from ``x = 0``, one column per right-hand side.

    After each :meth:`step` the attributes hold LSQR's estimates, computed from its
    recurrences at no extra cost (Paige and Saunders, 1982, section 5.1):
    ``r_norm`` of ``‖b − Ax‖``, ``ar_norm`` of ``‖Aᴴ(b − Ax)‖``, and ``A_norm`` of
    ``‖A‖_F`` (the Frobenius norm of the bidiagonal matrix so far, a lower bound),
    all of shape ``(*, 1, k)``.  Two products per step: one with ``A``, one with ``Aᴴ``.
    """

    def __init__(
        self,
        matvec: Operator,
        rmatvec: Operator,
        B: torch.Tensor,
        rmatvec_B: torch.Tensor | None = None,
    ) -> None:
        self.matvec, self.rmatvec = matvec, rmatvec
        beta = _norm(B)
        self.u = _divide(B, beta)
        # ``rmatvec_B``, if the caller has it, saves the first product with the adjoint.
        v = rmatvec(self.u) if rmatvec_B is None else _divide(rmatvec_B, beta)
        alpha = _norm(v)
        self.v = _divide(v, alpha)
        self.w = self.v.clone()
        self.x = torch.zeros_like(self.v)
        self.alpha, self.phibar, self.rhobar = alpha, beta, alpha
        self.b_norm = beta
        self.r_norm, self.ar_norm = beta, alpha * beta
        self.A_norm_squared = torch.zeros_like(beta)

    @property
    def A_norm(self) -> torch.Tensor:
        return self.A_norm_squared.sqrt()

    def step(self) -> None:
        """One Golub–Kahan step and the update of ``x`` (the LSQR recurrences)."""
        u = self.matvec(self.v) - self.alpha * self.u
        beta = _norm(u)
        self.u = _divide(u, beta)
        self.A_norm_squared = self.A_norm_squared + self.alpha.square() + beta.square()
        v = self.rmatvec(self.u) - beta * self.v
        alpha = _norm(v)
        self.v = _divide(v, alpha)
        # A plane rotation eliminates beta from the lower bidiagonal matrix.
        rho = torch.hypot(self.rhobar, beta)
        c, s = _divide(self.rhobar, rho), _divide(beta, rho)
        theta = s * alpha
        self.rhobar = -c * alpha
        phi = c * self.phibar
        self.phibar = s * self.phibar
        self.x = self.x + _divide(phi, rho) * self.w
        self.w = self.v - _divide(theta, rho) * self.w
        self.alpha = alpha
        self.r_norm = self.phibar
        self.ar_norm = alpha * c.abs() * self.phibar


def true_backward_error(
    A: torch.Tensor | OperatorView, X: torch.Tensor, B: torch.Tensor, A_norm: torch.Tensor
) -> float:
    """:func:`backward_error` of ``X`` (*, n, k) computed from ``B − AX`` itself, max over
    batch and columns (two products).  ``A_norm`` has shape (*, 1, 1)."""
    op = view_of(A)
    R = B - op.matmul(X)
    eta = backward_error(A_norm, _norm(X), _norm(B), _norm(R), _norm(op.rmatmul(R)))
    return float(eta.amax()) if eta.numel() else 0.0


def lsqr(
    function: str,
    A: torch.Tensor | OperatorView,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """LSQR on ``A`` (*, m, n) itself, without a preconditioner, from ``x0 = 0``.

    Monitors :func:`backward_error` with the exact ``‖A‖_F`` and LSQR's estimates of
    ``‖r‖`` and ``‖Aᴴr‖``; once that meets ``rtol`` it computes ``B − AX`` and
    ``Aᴴ(B − AX)`` (two more products) and monitors those instead, so a converged
    result has a true backward error of at most ``rtol``.
    """
    op = view_of(A)
    A_norm = op.fro_norm[..., None, None]
    solver = LSQR(op.matmul, op.rmatmul, B)

    def step() -> float:
        solver.step()
        estimate = backward_error(
            A_norm, _norm(solver.x), solver.b_norm, solver.r_norm, solver.ar_norm
        )
        value = float(estimate.amax())
        return value if value > rtol else true_backward_error(op, solver.x, B, A_norm)

    if float(solver.b_norm.amax()) == 0:  # b = 0: x = 0 is the answer
        return solver.x, Outcome(0, True, "LSQR: b = 0, so x = 0", [])
    outcome = iterate(function, step, rtol=rtol, max_iter=max_iter, callback=callback)
    outcome.message = f"LSQR: {outcome.message}"
    return solver.x, outcome
