"""Exact rescaling of inputs whose squares would overflow or underflow.

Every iterative method forms norms and inner products, that is sums of squares.
For a matrix with entries near 1e200 they overflow to inf, near 1e-200 they
underflow to 0, and the iteration would return garbage.  Like LAPACK's drivers,
the public functions multiply such an input by a power of two, which is exact and
leaves every rounding error as it was, and undo the scaling in the result.

Scales are kept as integer exponents, never as the power of two itself: the
exponent that brings an entry near the largest float64, 2**1023, back to 1 is
-1024, and 2**1024 is not representable.  :func:`ldexp` applies an exponent in
steps whose powers of two are all normal numbers, so every product is exact
(unless the result itself is subnormal, where one rounding is unavoidable).
"""

from __future__ import annotations

import math

import torch

__all__ = ["power_of_two_exponent", "exponent_and_norm", "ldexp"]


def _largest_step(dtype: torch.dtype) -> int:
    """The largest ``s`` such that ``2**s`` and ``2**-s`` are normal numbers of ``dtype``."""
    info = torch.finfo(dtype)
    return min(math.frexp(info.max)[1] - 1, -math.frexp(info.tiny)[1] + 1)


def power_of_two_exponent(A: torch.Tensor) -> torch.Tensor:
    """An exponent ``e`` per matrix of the batch (int64, shape (*)) to multiply ``A`` by ``2**e``;
    see :func:`exponent_and_norm`."""
    return exponent_and_norm(A)[0]


def exponent_and_norm(
    A: torch.Tensor, norm: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`power_of_two_exponent` and the Frobenius norm of ``A`` (shape (*)) it read,
    for a caller that needs both from one pass over ``A``; ``norm``, if given, is that
    norm already computed (no pass over ``A`` in the usual case).

    The exponent ``e`` per matrix of the batch (int64, shape (*)) multiplies ``A`` by ``2**e``.

    0 when the Frobenius norm of ``A`` (*, m, n) lies safely inside the dtype's range,
    between ``tiny**0.125`` and ``max**0.125`` (the usual case, which costs one pass over
    ``A``; about 1e-38 to 1e38 in float64, 1e-5 to 6e4 in float32: CGLS forms products
    of up to six factors of A's scale, such as ``‖A A^H r‖²``); otherwise the ``e``
    with ``max|A| * 2**e`` in [0.5, 1), or 0 for a zero matrix.  Subnormal entries
    count as entries: their ``e`` brings them to the normal range.
    """
    info = torch.finfo(A.dtype)
    norm = torch.linalg.matrix_norm(A) if norm is None else norm
    safe = torch.isfinite(norm) & (norm >= info.tiny**0.125) & (norm <= info.max**0.125)
    zero = torch.zeros(norm.shape, dtype=torch.int64, device=A.device)
    if bool(safe.all()):
        return zero, norm
    largest = A.abs().amax(dim=(-2, -1))
    _, exponent = torch.frexp(largest)  # largest = mantissa * 2**exponent, mantissa in [0.5, 1)
    return torch.where(safe | (largest == 0), zero, -exponent.to(torch.int64)), norm


def ldexp(T: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``T * 2**e`` computed exactly, ``e`` an integer tensor broadcastable to ``T``.

    Returns ``T`` itself (no copy) when every exponent is 0.  The power of two is
    applied in steps of at most the dtype's largest normal exponent, so that no step
    overflows or underflows; the magnitudes move monotonically, so an intermediate
    result cannot overflow when the final one does not.
    """
    if not bool((e != 0).any()):
        return T
    real = T.real.dtype if T.is_complex() else T.dtype
    step = _largest_step(real)
    e = e.to(torch.int64)
    values = torch.view_as_real(T.resolve_conj()) if T.is_complex() else T
    while bool((e != 0).any()):
        chunk = e.clamp(-step, step)
        factor = torch.pow(2.0, chunk.to(real))
        values = values * (factor[..., None] if T.is_complex() else factor)
        e = e - chunk
    return torch.view_as_complex(values.contiguous()) if T.is_complex() else values
