"""Exact rescaling of inputs whose squares would overflow or underflow.

Every iterative method forms norms and inner products, that is sums of squares.
For a matrix with entries near 1e200 they overflow to inf, near 1e-200 they
underflow to 0, and the iteration would return garbage.  Like LAPACK's drivers,
the public functions divide such an input by a power of two, which is exact and
leaves every rounding error as it was, and undo the scaling in the result.
"""

from __future__ import annotations

import torch

__all__ = ["power_of_two_scale", "divide"]


def power_of_two_scale(A: torch.Tensor) -> torch.Tensor:
    """A power of two per matrix of the batch (shape (*)) to divide ``A`` (*, m, n) by.

    1 when the Frobenius norm lies safely inside the dtype's range, between
    ``tiny**0.4`` and ``max**0.4`` (the usual case, which costs one pass over
    ``A``); otherwise ``2**e`` with ``max|A| / 2**e`` in [0.5, 1), or 1 for a zero
    matrix.  Real dtype matching ``A``'s.
    """
    info = torch.finfo(A.dtype)
    norm = torch.linalg.matrix_norm(A)
    safe = torch.isfinite(norm) & (norm >= info.tiny**0.4) & (norm <= info.max**0.4)
    if bool(safe.all()):
        return torch.ones_like(norm)
    largest = A.abs().amax(dim=(-2, -1))
    _, exponent = torch.frexp(largest)
    scale = torch.ldexp(torch.ones_like(largest), exponent)
    return torch.where(safe | (largest == 0), torch.ones_like(largest), scale)


def divide(A: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``A`` (*, m, n) divided by ``scale`` (*), without a copy when every scale is 1."""
    if bool((scale == 1).all()):
        return A
    return A / scale[..., None, None].to(A.dtype)
