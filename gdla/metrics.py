"""Accuracy measures used by the tests, the benchmarks and the book.

All functions take batches of shape (*, m, n) and return one value per matrix
of the batch (a tensor of shape (*)), in the real dtype matching the input.
:class:`ProductCounter` measures the other axis of a comparison, the work: the
matrix products a computation runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ._validation import check_matrix

__all__ = [
    "relative_error",
    "relative_residual",
    "inverse_error",
    "orthogonality_error",
    "reconstruction_error",
    "subspace_angle",
    "ProductCounter",
]


def _eye_like(A: torch.Tensor, n: int) -> torch.Tensor:
    return torch.eye(n, dtype=A.dtype, device=A.device)


def relative_error(X: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    r"""Relative Frobenius error :math:`\|X - R\|_F / \|R\|_F` of each matrix of the batch.

    ``X`` and ``reference`` have shape (*, m, n); Returns a tensor of shape (*).

    Examples
    --------
    >>> R = torch.ones(2, 2, dtype=torch.float64)
    >>> float(relative_error(1.5 * R, R))
    0.5
    """
    check_matrix("gdla.metrics.relative_error", "reference", reference)
    return torch.linalg.matrix_norm(X - reference) / torch.linalg.matrix_norm(reference)


def relative_residual(A: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Relative residual :math:`\|Ax - b\|_F / (\|A\|_F \|x\|_F + \|b\|_F)` of a linear system.

    This is the normwise backward error of ``x``: a backward-stable solver makes
    it a small multiple of the machine epsilon, whatever the condition number.
    ``b`` and ``x`` have shape (*, n, k); Returns a tensor of shape (*).

    Examples
    --------
    >>> A = torch.eye(2, dtype=torch.float64)
    >>> b = torch.ones(2, 1, dtype=torch.float64)
    >>> float(relative_residual(A, b, b))
    0.0
    """
    check_matrix("gdla.metrics.relative_residual", "A", A)
    r = torch.linalg.matrix_norm(A @ x - b)
    scale = torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(x) + torch.linalg.matrix_norm(b)
    return r / scale


def inverse_error(A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    r"""Largest entry of :math:`|XA - I|` for each matrix of the batch.

    Examples
    --------
    >>> A = torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    >>> float(inverse_error(A, torch.diag(torch.tensor([0.5, 0.25], dtype=torch.float64))))
    0.0
    """
    check_matrix("gdla.metrics.inverse_error", "A", A, square=True)
    E = X @ A - _eye_like(A, A.shape[-1])
    return E.abs().amax(dim=(-2, -1))


def orthogonality_error(Q: torch.Tensor) -> torch.Tensor:
    r"""Largest entry of :math:`|Q^H Q - I|`: zero when the columns of ``Q`` are orthonormal.

    Examples
    --------
    >>> float(orthogonality_error(torch.eye(3, 2, dtype=torch.float64)))
    0.0
    """
    check_matrix("gdla.metrics.orthogonality_error", "Q", Q)
    E = Q.mH @ Q - _eye_like(Q, Q.shape[-1])
    return E.abs().amax(dim=(-2, -1))


def reconstruction_error(
    A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
) -> torch.Tensor:
    r"""Relative Frobenius error :math:`\|A - U \operatorname{diag}(S) V^H\|_F / \|A\|_F`.

    Examples
    --------
    >>> A = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    >>> U, S, Vh = torch.linalg.svd(A)
    >>> float(reconstruction_error(A, U, S, Vh))
    0.0
    """
    check_matrix("gdla.metrics.reconstruction_error", "A", A)
    approx = (U * S.unsqueeze(-2).to(U.dtype)) @ Vh
    return torch.linalg.matrix_norm(A - approx) / torch.linalg.matrix_norm(A)


def subspace_angle(Q1: torch.Tensor, Q2: torch.Tensor) -> torch.Tensor:
    r"""Largest principal angle (radians) between the column spaces of ``Q1`` and ``Q2``.

    Both must have orthonormal columns and the same shape (*, m, k).  The angle is
    :math:`\arcsin \|(I - Q_1 Q_1^H) Q_2\|_2`, accurate also for tiny angles.

    Examples
    --------
    >>> Q = torch.eye(3, 2, dtype=torch.float64)
    >>> float(subspace_angle(Q, Q))
    0.0
    """
    check_matrix("gdla.metrics.subspace_angle", "Q1", Q1)
    check_matrix("gdla.metrics.subspace_angle", "Q2", Q2, dtype_like=Q1)
    P = Q2 - Q1 @ (Q1.mH @ Q2)
    sine = torch.linalg.matrix_norm(P, ord=2).clamp(max=1.0)
    return torch.asin(sine)


_PRODUCTS = {torch.matmul, torch.mm, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__}


class ProductCounter(TorchFunctionMode):
    r"""Count the flops of the matrix products torch runs inside a ``with`` block.

    Every call of ``@``, :func:`torch.matmul`, :func:`torch.mm` or :func:`torch.bmm`
    adds :math:`2mkn` flops per matrix of the batch for an (m, k) by (k, n) product.
    A product recorded by autograd (gradients enabled, an input requiring grad) adds
    its backward pass as well, one more product of the same size for each input that
    requires grad, on the assumption (true of every loss :mod:`gdla` differentiates)
    that each recorded product is differentiated once.  LAPACK calls (norms,
    factorisations, :func:`torch.linalg.inv`) are not counted.  :meth:`products`
    converts the count into n x n matrix products (2 n^3 flops each).  It works
    through Python's torch-function hook, so it slows small operations down: time
    a computation without it.

    Examples
    --------
    >>> A = torch.ones(4, 4, dtype=torch.float64)
    >>> X = torch.ones(4, 4, dtype=torch.float64, requires_grad=True)
    >>> with ProductCounter() as counter:
    ...     B = A @ A
    ...     loss = (X @ A).sum()
    >>> counter.flops, counter.products(4)
    (384, 3.0)
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        if func in _PRODUCTS and len(args) >= 2:
            left, right = args[0], args[1]
            if isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor) and left.ndim:
                flops = 2 * left.shape[-1] * result.numel()  # 2k flops per entry of the result
                recorded = torch.is_grad_enabled()
                backward = sum(1 for t in (left, right) if recorded and t.requires_grad)
                self.flops += flops * (1 + backward)
        return result

    def products(self, n: int) -> float:
        """The flops counted so far, in units of one n x n matrix product (2 n^3 flops)."""
        return self.flops / (2 * n**3)
