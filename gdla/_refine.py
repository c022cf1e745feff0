"""GMRES-IR: a low-precision LU factorisation preconditions a working-precision iteration.

Carson and Higham (2017, 2018): factor ``A`` once in single precision (half the
time of a double factorisation, and half the memory traffic), then refine in double:
each refinement step computes the residual ``r = b − Ax`` in double and solves for
the correction with GMRES on the left-preconditioned system ``U⁻¹L⁻¹Pᵀ A d = U⁻¹L⁻¹Pᵀ r``,
applying the single-precision factors in double.  The preconditioned matrix is
``I + E`` with ``‖E‖ ≲ κ(A) u_single``, so GMRES needs a handful of iterations when
``κ(A)`` is well below ``1/u_single ≈ 1.7e7``, and still converges beyond that where
plain refinement with the same factors would diverge.  The answer is backward stable
in double precision: the stopping rule reads the residual computed from ``A`` itself.

The kernel runs every column of every matrix of the batch in parallel.  GMRES keeps
its basis orthonormal by classical Gram–Schmidt applied twice (two block products per
iteration), and solves its small least-squares problem with ``torch.linalg.lstsq``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from ._iterate import Outcome, iterate
from ._validation import OptionError

__all__ = ["LOWER_PRECISION", "gmres_ir"]

#: The factorisation's dtype for each working dtype.  Single precision has no lower
#: precision with an LU factorisation in torch on every device, so it factors in itself.
LOWER_PRECISION = {
    torch.float64: torch.float32,
    torch.complex128: torch.complex64,
    torch.float32: torch.float32,
    torch.complex64: torch.complex64,
}

#: Default GMRES iterations per refinement step (a restart).
RESTART = 50


def _column_norms(V: torch.Tensor) -> torch.Tensor:
    """Norms of the rows of ``V`` (*, k, n): shape (*, k, 1)."""
    return torch.linalg.vector_norm(V, dim=-1, keepdim=True)


def _safe_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b != 0, a / torch.where(b != 0, b, torch.ones_like(b)), torch.zeros_like(a))


def gmres_ir(
    function: str,
    A: torch.Tensor,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None,
    options: Mapping[str, object],
) -> tuple[torch.Tensor, Outcome]:
    """GMRES-IR for square ``A`` (*, n, n) and ``B`` (*, n, k); see the module docstring.

    ``x0`` is the solution with the low-precision factors.  Each iteration is one GMRES
    step on the current correction equation; its monitored value is the last true
    backward error times GMRES's reduction of the preconditioned residual.  Once that
    estimate meets ``rtol`` (or after ``restart`` steps) the correction is added, the
    residual and backward error are computed from ``A`` in working precision, and GMRES
    restarts on the new residual: the monitored value is then that true backward error.
    """
    restart = options.get("restart", RESTART)
    if not isinstance(restart, int) or isinstance(restart, bool) or restart < 1:
        raise OptionError(function, "options['restart'] to be a positive integer", repr(restart))
    # Divide by a power of two (exact) so that single precision neither overflows nor
    # underflows, when it would: max |A| / scale then lies in [0.5, 1).
    if A.is_complex():
        largest = A.abs().amax(dim=(-2, -1))
    else:  # two passes, without the temporary |A|
        largest = torch.maximum(A.amax(dim=(-2, -1)), -A.amin(dim=(-2, -1)))
    low = LOWER_PRECISION[A.dtype]
    safe = (largest < 2.0**100) & (largest > 2.0**-100)
    if bool(safe.all()):
        scale = torch.ones_like(largest)[..., None, None].to(A.dtype)
        lowered = A.to(low)
    else:
        safe_largest = torch.where(largest > 0, largest, torch.ones_like(largest))
        exponent = torch.frexp(safe_largest)[1]
        scale = torch.ldexp(torch.ones_like(largest), exponent)[..., None, None].to(A.dtype)
        lowered = (A / scale).to(low)
    # Factor Aᴴ, whose row-major transpose LAPACK reads in place (A itself would be
    # copied to column-major first), and solve with the adjoint of its factors.
    LU, pivots, info = torch.linalg.lu_factor_ex(lowered.mH)
    LU = LU.to(A.dtype)
    # A zero pivot (A singular in the low precision) would make every correction infinite:
    # it is replaced by u_low max |u_ii| (1 for a zero A), and the iteration starts from 0.
    singular = info > 0  # (*)
    if bool(singular.any()):
        pivots_diagonal = LU.diagonal(dim1=-2, dim2=-1)
        size = pivots_diagonal.abs().amax(dim=-1, keepdim=True)
        floor = torch.finfo(low).eps * torch.where(size > 0, size, torch.ones_like(size))
        pivots_diagonal.copy_(
            torch.where(pivots_diagonal == 0, floor.to(LU.dtype), pivots_diagonal)
        )

    def precondition(R: torch.Tensor) -> torch.Tensor:  # (*, n, k): A⁻¹ R, approximately
        return torch.linalg.lu_solve(LU, pivots, R, adjoint=True) / scale

    A_norm = torch.linalg.matrix_norm(A)[..., None]  # (*, 1)
    B_norm = torch.linalg.vector_norm(B, dim=-2)  # (*, k)

    def true_error(X: torch.Tensor) -> tuple[float, torch.Tensor]:
        R = B - A @ X
        scale_ = A_norm * torch.linalg.vector_norm(X, dim=-2) + B_norm
        eta = _safe_divide(torch.linalg.vector_norm(R, dim=-2), scale_)
        return (float(eta.amax()) if eta.numel() else 0.0), R

    X = torch.where(singular[..., None, None], torch.zeros_like(B), precondition(B))
    eta, R = true_error(X)
    history_true = [eta]
    low_name = str(low).removeprefix("torch.")
    label = f"GMRES-IR ({low_name} LU preconditioner)"
    if bool(singular.any()):
        label += (
            f"; the {low_name} LU factors of A have a zero pivot: A is singular, or "
            f"numerically singular in {low_name}"
        )
    if eta <= rtol:
        return X, Outcome(0, True, f"{label}: the low-precision LU solution met rtol", [eta])
    if not math.isfinite(eta):
        message = f"{label}: the low-precision LU factors are singular (backward error {eta})"
        return X, Outcome(0, False, message, [eta])

    # GMRES state, vectors as rows: basis (*, k, j+1, n), Hessenberg (*, k, j+2, j+1).
    state: dict[str, torch.Tensor] = {}

    def start(R: torch.Tensor) -> None:
        Z = precondition(R).mT  # (*, k, n)
        beta = _column_norms(Z)
        state["basis"] = _safe_divide(Z, beta).unsqueeze(-2)
        state["beta"] = beta
        state["H"] = Z.new_zeros(*Z.shape[:-1], 1, 0)

    def correction() -> tuple[torch.Tensor, torch.Tensor]:
        H, beta = state["H"], state["beta"]
        rhs = torch.zeros(*H.shape[:-1], 1, dtype=H.dtype, device=H.device)
        rhs[..., 0, :] = beta.to(H.dtype)
        y = torch.linalg.lstsq(H, rhs).solution  # (*, k, j, 1)
        reduction = _safe_divide(
            torch.linalg.vector_norm(H @ y - rhs, dim=(-2, -1)), beta.squeeze(-1)
        )
        dX = (state["basis"][..., :-1, :].mT @ y).squeeze(-1).mT  # (*, n, k)
        return dX, reduction

    start(R)

    def step() -> float:
        nonlocal X, R, eta
        basis = state["basis"]
        W = precondition(A @ basis[..., -1, :].mT).mT.unsqueeze(-1)  # (*, k, n, 1)
        h = basis.conj() @ W  # (*, k, j+1, 1)
        W = W - basis.mT @ h
        again = basis.conj() @ W
        W = (W - basis.mT @ again).squeeze(-1)
        h = (h + again).squeeze(-1)
        norm = _column_norms(W)
        column = torch.cat([h, norm.to(h.dtype)], dim=-1)  # (*, k, j+2)
        if not bool(torch.isfinite(column).all()):
            return math.nan  # the loop reports divergence
        H = state["H"]
        H = torch.cat([H, H.new_zeros(*H.shape[:-2], 1, H.shape[-1])], dim=-2)
        state["H"] = torch.cat([H, column.unsqueeze(-1)], dim=-1)
        state["basis"] = torch.cat([basis, _safe_divide(W, norm).unsqueeze(-2)], dim=-2)
        dX, reduction = correction()
        estimate = eta * float(reduction.amax()) if reduction.numel() else 0.0
        if estimate > rtol and state["H"].shape[-1] < restart:
            return estimate
        X = X + dX
        eta, R = true_error(X)
        history_true.append(eta)
        if eta > rtol:
            start(R)
        return eta

    def exhausted() -> str | None:
        if len(history_true) > 2 and history_true[-1] > 0.9 * history_true[-2]:
            return f"refinement stagnated at backward error {history_true[-1]:.3g}"
        return None

    outcome = iterate(
        function, step, rtol=rtol, max_iter=max_iter, callback=callback, exhausted=exhausted
    )
    if not outcome.converged and state["H"].shape[-1] > 0:
        X = X + correction()[0]
    outcome.message = f"{label}, {len(history_true) - 1} refinements: {outcome.message}"
    return X, outcome
