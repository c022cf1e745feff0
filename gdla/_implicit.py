"""Gradients of gdla's results by implicit differentiation, not through the iterations.

An iterative method's result depends on its inputs through the problem it solves,
not through the path its iterates took, so differentiating the iterations would be
costly and wrong in the last digits.  The public functions compute their result
without autograd and attach it here with the known formulas:

- a solution of :math:`AX = B`: :math:`\\bar B = A^{-H} \\bar X` (one adjoint solve,
  by :func:`gdla.solve` itself) and :math:`\\bar A = -\\bar B X^H`;
- an inverse :math:`X = A^{-1}` (:math:`dX = -X\\,dA\\,X`): :math:`\\bar A = -X^H \\bar X X^H`;
- singular values :math:`\\sigma_i = u_i^H A v_i`:
  :math:`\\bar A = U \\operatorname{diag}(\\bar S) V^H`, and singular vectors where
  the singular values are distinct, of a thin SVD or of a truncated one (whose
  derivative also involves the part of A that the leading triplets leave out; see
  :func:`_svd_backward`).

Results that have no such formula here (completions, repeated singular values) are
attached to a function whose backward raises a clear error, instead of being silently
detached.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = ["wanted", "attach_solution", "attach_inverse", "attach_svd", "attach_unsupported"]

Adjoint = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, bool, str]]


def wanted(*inputs: object) -> bool:
    """Whether autograd records and some input requires grad."""
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in inputs
    )


class _Solution(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, A: torch.Tensor, B: torch.Tensor, X: torch.Tensor, adjoint: Adjoint | str
    ) -> torch.Tensor:
        ctx.save_for_backward(A, X)
        ctx.adjoint = adjoint
        return X.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, G: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        A, X = ctx.saved_tensors
        if isinstance(ctx.adjoint, str):
            raise RuntimeError(ctx.adjoint)
        B_bar, converged, message = ctx.adjoint(A.mH, G)
        if not converged:
            warnings.warn(
                f"gdla.solve: the adjoint solve of the backward pass did not converge "
                f"({message}); the gradient is inaccurate",
                RuntimeWarning,
                stacklevel=2,
            )
        A_bar = -B_bar @ X.mH if ctx.needs_input_grad[0] else None
        return A_bar, B_bar if ctx.needs_input_grad[1] else None, None, None


def attach_solution(
    A: torch.Tensor, B: torch.Tensor, X: torch.Tensor, adjoint: Adjoint | str
) -> torch.Tensor:
    """``X`` (the solution of ``A X = B``, shapes (*, n, n), (*, n, k)) as a function of
    ``A`` and ``B``.  ``adjoint(A^H, G)`` returns ``(A^{-H} G, converged, message)``; a
    string instead is the error that backward raises (no formula for this case)."""
    return _Solution.apply(A, B, X.detach(), adjoint)  # type: ignore[no-any-return]


class _Inverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(X)
        return X.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, G: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (X,) = ctx.saved_tensors
        Xh = X.mH
        return -(Xh @ G @ Xh), None


def attach_inverse(A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``X`` (the inverse of ``A``, shape (*, n, n)) as a function of ``A``."""
    return _Inverse.apply(A, X.detach())  # type: ignore[no-any-return]


def _complement_adjoint(
    A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor,
    U_bar: torch.Tensor | None, Vh_bar: torch.Tensor | None,
) -> torch.Tensor:  # fmt: skip
    r"""The part of :math:`\bar A` that moves the leading vectors out of their span.

    With :math:`P = I - UU^H`, :math:`Q = I - VV^H` and :math:`A_\perp = PAQ` (the part
    of A that the k triplets leave out), first-order perturbation of :math:`Av_i =
    \sigma_i u_i`, :math:`A^H u_i = \sigma_i v_i` gives the components of
    :math:`du_i, dv_i` outside the spans, :math:`x_i = (\sigma_i^2 - A_\perp
    A_\perp^H)^{-1} (\sigma_i P\,dA\,v_i + A_\perp dA^H u_i)` and :math:`y_i =
    (\sigma_i^2 - A_\perp^H A_\perp)^{-1} (\sigma_i Q\,dA^H u_i + A_\perp^H dA\,
    v_i)`.  Their adjoint, with :math:`p_i = (\sigma_i^2 - A_\perp A_\perp^H)^{-1} P
    \bar u_i` and :math:`q_i = (\sigma_i^2 - A_\perp^H A_\perp)^{-1} Q \bar v_i`, is
    :math:`(P_* S + A_\perp Q_*) V^H + U (Q_* S + A_\perp^H P_*)^H`.  For
    ``k = min(m, n)``, :math:`A_\perp = 0` and this is the thin SVD's
    :math:`P \bar U S^{-1} V^H + U S^{-1} \bar V^H Q`.  The shifted inverses come from
    one Hermitian eigendecomposition of each Gram matrix of :math:`A_\perp`; they exist
    when no singular value of the k repeats one left out (checked by the caller).
    """
    V = Vh.mH
    top = S[..., :1].clamp_min(torch.finfo(S.dtype).tiny)  # work in units of sigma_1
    A = A / top[..., None].to(A.dtype)
    Sn = S / top
    A_perp = A - U @ (U.mH @ A)
    A_perp = A_perp - (A_perp @ V) @ Vh
    shifts = Sn.square()  # (*, k)
    Sc = Sn.to(U.dtype)
    P_star = torch.zeros_like(U)
    Q_star = torch.zeros_like(V)
    if U_bar is not None:
        lam, W = torch.linalg.eigh(A_perp @ A_perp.mH)
        rhs = W.mH @ (U_bar - U @ (U.mH @ U_bar))  # (*, m, k)
        P_star = W @ (rhs / (shifts.unsqueeze(-2) - lam.unsqueeze(-1)).to(U.dtype))
    if Vh_bar is not None:
        V_bar = Vh_bar.mH
        lam, Z = torch.linalg.eigh(A_perp.mH @ A_perp)
        rhs = Z.mH @ (V_bar - V @ (V.mH @ V_bar))
        Q_star = Z @ (rhs / (shifts.unsqueeze(-2) - lam.unsqueeze(-1)).to(U.dtype))
    A_bar = (P_star * Sc.unsqueeze(-2) + A_perp @ Q_star) @ Vh
    A_bar = A_bar + U @ (Q_star * Sc.unsqueeze(-2) + A_perp.mH @ P_star).mH
    return A_bar / top[..., None].to(A_bar.dtype)


def _svd_backward(
    A: torch.Tensor,
    U: torch.Tensor,
    S: torch.Tensor,
    Vh: torch.Tensor,
    U_bar: torch.Tensor | None,
    S_bar: torch.Tensor | None,
    Vh_bar: torch.Tensor | None,
) -> torch.Tensor:
    r"""The gradient with respect to A of the leading k triplets ``A ~ U diag(S) Vh``.

    With :math:`F_{ij} = 1/(\sigma_j^2 - \sigma_i^2)` (0 on the diagonal),
    :math:`J = F \circ (U^H\bar U - \bar U^H U)` and :math:`K = F \circ (V^H\bar V -
    \bar V^H V)`: :math:`\bar A = U (J S + S K + \operatorname{diag}(\bar S) + i
    \operatorname{diag}(\operatorname{Im}(U^H \bar U)_{ii}/\sigma_i)) V^H` plus the
    part that moves the vectors out of their span (:func:`_complement_adjoint`; for a
    thin SVD, k = min(m, n), :math:`(I - UU^H) \bar U S^{-1} V^H + U S^{-1} \bar V^H (I
    - VV^H)`).  The imaginary term is there only for complex A (the loss must not
    depend on the common phase of u_i and v_i, which gdla's sign convention guarantees).
    """
    V = Vh.mH
    k = S.shape[-1]
    Sc = S.to(U.dtype)
    inner = torch.zeros((*S.shape[:-1], k, k), dtype=U.dtype, device=U.device)
    squares = S * S
    gaps = squares.unsqueeze(-2) - squares.unsqueeze(-1)  # sigma_j^2 - sigma_i^2
    gaps.diagonal(dim1=-2, dim2=-1).fill_(1)
    F = 1 / gaps
    F.diagonal(dim1=-2, dim2=-1).fill_(0)
    if U_bar is not None:
        UhU_bar = U.mH @ U_bar
        inner = inner + (F * (UhU_bar - UhU_bar.mH)) * Sc.unsqueeze(-2)
        if U.is_complex():
            imaginary = UhU_bar.diagonal(dim1=-2, dim2=-1).imag / S
            inner = inner + torch.diag_embed(1j * imaginary.to(U.dtype))
    if Vh_bar is not None:
        VhV_bar = V.mH @ Vh_bar.mH
        inner = inner + Sc.unsqueeze(-1) * (F * (VhV_bar - VhV_bar.mH))
    if S_bar is not None:
        inner = inner + torch.diag_embed(S_bar.to(U.dtype))
    A_bar = U @ inner @ Vh
    m, n = A.shape[-2:]
    if k < min(m, n) and (U_bar is not None or Vh_bar is not None):
        return A_bar + _complement_adjoint(A, U, S, Vh, U_bar, Vh_bar)
    if U_bar is not None and m > k:
        scaled = U_bar / Sc.unsqueeze(-2)
        A_bar = A_bar + (scaled - U @ (U.mH @ scaled)) @ Vh
    if Vh_bar is not None and n > k:
        scaled = Vh_bar.mH / Sc.unsqueeze(-2)
        A_bar = A_bar + U @ (scaled - V @ (V.mH @ scaled)).mH
    return A_bar


def _separated(A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor) -> bool:
    """Whether the k leading singular values are distinct, nonzero and, when k < min(m, n),
    apart from every singular value left out (to 1000 eps relative to sigma_1^2)."""
    squares = S * S
    top = squares[..., :1].clamp_min(torch.finfo(S.dtype).tiny)
    tolerance = 1000 * torch.finfo(S.dtype).eps * top
    gaps = (squares.unsqueeze(-2) - squares.unsqueeze(-1)).abs()
    gaps.diagonal(dim1=-2, dim2=-1).fill_(math.inf)
    if bool((gaps.amin(dim=(-2, -1)) <= tolerance.squeeze(-1)).any()):
        return False
    if bool((squares <= tolerance).any()):
        return False
    if S.shape[-1] == min(A.shape[-2:]):
        return True
    A_perp = A - U @ (U.mH @ A)
    A_perp = A_perp - (A_perp @ Vh.mH) @ Vh
    rest = torch.linalg.svdvals(A_perp).square()  # (*, min(m, n)): the values left out
    apart = (squares.unsqueeze(-1) - rest.unsqueeze(-2)).abs().amin(dim=(-2, -1))
    return bool((apart > tolerance.squeeze(-1)).all())


class _SVD(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(A.detach(), U, S, Vh)
        return U.clone(), S.clone(), Vh.clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any,
        U_bar: torch.Tensor | None,
        S_bar: torch.Tensor | None,
        Vh_bar: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, None, None, None]:
        A, U, S, Vh = ctx.saved_tensors
        vectors = U_bar is not None or Vh_bar is not None
        if vectors and not _separated(A, U, S, Vh):
            raise RuntimeError(
                "gdla.svd: the gradient of U and Vh needs distinct, nonzero singular "
                "values, apart from those left out when k < min(m, n); these repeat or "
                "vanish (the singular vectors are not differentiable there; gradients "
                "of S alone still flow)"
            )
        if not vectors and S_bar is None:
            return None, None, None, None
        return _svd_backward(A, U, S, Vh, U_bar, S_bar, Vh_bar), None, None, None


def attach_svd(
    A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, S, Vh)`` as functions of ``A``, in gdla's sign convention.

    S is always differentiable; U and Vh where the k singular values are distinct,
    nonzero and apart from those left out (else their backward raises a clear error).  The
    sign convention (the largest entry of each column of U real positive) is applied
    again, differentiably: its value is 1, its derivative removes the phase freedom.
    """
    U, S, Vh = _SVD.apply(A, U.detach(), S.detach(), Vh.detach())
    pivot = U.gather(-2, U.detach().abs().argmax(dim=-2, keepdim=True))
    phase = pivot.conj() / pivot.abs()
    return U * phase, S, Vh * phase.mH


class _Unsupported(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, message: str, A: torch.Tensor, *outputs: torch.Tensor) -> Any:  # type: ignore[override]
        ctx.message = message
        return tuple(t.clone() for t in outputs)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError(ctx.message)


def attach_unsupported(
    message: str, A: torch.Tensor, *outputs: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``outputs`` attached to ``A`` by a function whose backward raises ``message``."""
    return _Unsupported.apply(message, A, *(t.detach() for t in outputs))  # type: ignore[no-any-return]
