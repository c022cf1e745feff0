"""Gradients of gdla's results by implicit differentiation, not through the iterations.

An iterative method's result depends on its inputs through the problem it solves,
not through the path its iterates took, so differentiating the iterations would be
costly and wrong in the last digits.  The public functions compute their result
without autograd and attach it here with the known formulas:

- a solution of :math:`AX = B`: :math:`\\bar B = A^{-H} \\bar X` (one adjoint solve,
  by :func:`gdla.solve` itself) and :math:`\\bar A = -\\bar B X^H`;
- an inverse :math:`X = A^{-1}` (:math:`dX = -X\\,dA\\,X`): :math:`\\bar A = -X^H \\bar X X^H`;
- singular values :math:`\\sigma_i = u_i^H A v_i`:
  :math:`\\bar A = U \\operatorname{diag}(\\bar S) V^H`.

Results that have no such formula here (singular vectors, completions) are attached
to a function whose backward raises a clear error, instead of being silently
detached.
"""

from __future__ import annotations

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


class _SVD(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(U, Vh)
        return U.clone(), S.clone(), Vh.clone()

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any,
        U_bar: torch.Tensor | None,
        S_bar: torch.Tensor | None,
        Vh_bar: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, None, None, None]:
        if U_bar is not None or Vh_bar is not None:
            raise RuntimeError(
                "gdla.svd: gradients flow through S only; U and Vh are not differentiable "
                "here (use torch.linalg.svd for the gradients of singular vectors)"
            )
        if S_bar is None:
            return None, None, None, None
        U, Vh = ctx.saved_tensors
        return (U * S_bar.to(U.dtype).unsqueeze(-2)) @ Vh, None, None, None


def attach_svd(
    A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, S, Vh)`` as functions of ``A``: S differentiable, U and Vh raising in backward."""
    return _SVD.apply(A, U.detach(), S.detach(), Vh.detach())  # type: ignore[no-any-return]


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
