"""Test matrices: the original series' matrices, seeded exactly as it did, and
generators of matrices with a prescribed spectrum or condition number.

All generators take a ``seed`` and use their own :class:`torch.Generator`, so
they never disturb (nor depend on) the global random state.
"""

from __future__ import annotations

import torch

from ._validation import OptionError, check_positive
from .original import SEED

__all__ = [
    "original_inverse_matrices",
    "original_svd_matrices",
    "random_orthonormal",
    "with_singular_values",
    "with_condition_number",
    "decaying_spectrum",
]

#: The seed used throughout the original blog series.
ORIGINAL_SEED = SEED


def _seeded_rand(seed: int, *shape: int) -> torch.Tensor:
    """``torch.manual_seed(seed); torch.rand(*shape)``, without touching the global state."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator)


def original_inverse_matrices(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The matrices of the original series' inverse post, part 2.

    ``"M1"`` is ``manual_seed(314); rand(4, 4)`` and ``"M2"`` is ``diag([1, 2, 3, 4])``.
    The original also started its iteration from ``manual_seed(314); rand(4, 4)``,
    which is ``M1`` again.

    Examples
    --------
    >>> M = original_inverse_matrices()
    >>> M["M1"].shape, M["M2"].diagonal().tolist()
    (torch.Size([4, 4]), [1.0, 2.0, 3.0, 4.0])
    """
    return {
        "M1": _seeded_rand(SEED, 4, 4).to(dtype),
        "M2": torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])).to(dtype),
    }


def original_svd_matrices(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The five test matrices of the original series' SVD post, part 3.

    Drawn in float32 exactly as the original did, then cast to ``dtype``:
    M1 = seed 314 rand(5, 4); M2 = seed 315 rand(4, 4); M3 = seed 316 rand(7, 4);
    M4 = seed 317 rand(3, 4) transposed (4 x 3); M5 = seed 317 rand(4, 3).

    Examples
    --------
    >>> {name: tuple(M.shape) for name, M in original_svd_matrices().items()}
    {'M1': (5, 4), 'M2': (4, 4), 'M3': (7, 4), 'M4': (4, 3), 'M5': (4, 3)}
    """
    return {
        "M1": _seeded_rand(SEED, 5, 4).to(dtype),
        "M2": _seeded_rand(SEED + 1, 4, 4).to(dtype),
        "M3": _seeded_rand(SEED + 2, 7, 4).to(dtype),
        "M4": _seeded_rand(SEED + 3, 3, 4).T.contiguous().to(dtype),
        "M5": _seeded_rand(SEED + 3, 4, 3).to(dtype),
    }


def _randn(generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_complex:
        real = torch.randn(*shape, 2, generator=generator, dtype=dtype.to_real())
        return torch.view_as_complex(real)
    return torch.randn(*shape, generator=generator, dtype=dtype)


def random_orthonormal(
    m: int,
    k: int,
    *,
    batch: tuple[int, ...] = (),
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A random matrix of shape (*batch, m, k) with orthonormal columns (Haar distributed).

    Examples
    --------
    >>> Q = random_orthonormal(5, 3, seed=1)
    >>> bool(torch.allclose(Q.T @ Q, torch.eye(3, dtype=torch.float64)))
    True
    """
    if k > m:
        raise OptionError("gdla.matrices.random_orthonormal", f"k <= m = {m}", f"k = {k}")
    generator = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(_randn(generator, (*batch, m, k), dtype))
    # Fixing the signs of R's diagonal makes Q Haar distributed rather than biased.
    phase = torch.sgn(R.diagonal(dim1=-2, dim2=-1))
    return Q * phase.unsqueeze(-2)


def with_singular_values(
    singular_values: torch.Tensor,
    m: int,
    n: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A random (*, m, n) matrix ``U diag(s) V^H`` with the given singular values.

    ``singular_values`` has shape (*, k) with k = min(m, n); its batch shape sets the output's.

    Examples
    --------
    >>> A = with_singular_values(torch.tensor([3.0, 2.0, 1.0]), 5, 3, seed=2)
    >>> torch.linalg.svdvals(A).round(decimals=6).tolist()
    [3.0, 2.0, 1.0]
    """
    k = min(m, n)
    if singular_values.shape[-1] != k:
        raise OptionError(
            "gdla.matrices.with_singular_values",
            f"{k} = min(m, n) singular values",
            f"{singular_values.shape[-1]}",
        )
    batch = tuple(singular_values.shape[:-1])
    U = random_orthonormal(m, k, batch=batch, seed=seed, dtype=dtype)
    V = random_orthonormal(n, k, batch=batch, seed=seed + 1, dtype=dtype)
    s = singular_values.to(dtype=dtype)
    return (U * s.unsqueeze(-2)) @ V.mH


def with_condition_number(
    n: int,
    cond: float,
    *,
    m: int | None = None,
    batch: tuple[int, ...] = (),
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A random (*batch, m, n) matrix with 2-norm condition number ``cond``.

    Its singular values are spaced geometrically from 1 down to ``1/cond``
    (``m`` defaults to ``n``, giving a square matrix).

    Examples
    --------
    >>> A = with_condition_number(6, 1e3, seed=3)
    >>> round(float(torch.linalg.cond(A)))
    1000
    """
    check_positive("gdla.matrices.with_condition_number", "cond", cond)
    m = n if m is None else m
    k = min(m, n)
    s = torch.logspace(0, -torch.log10(torch.tensor(float(cond))).item(), k, dtype=torch.float64)
    return with_singular_values(s.expand(*batch, k), m, n, seed=seed, dtype=dtype)


def decaying_spectrum(
    m: int,
    n: int,
    *,
    rate: float = 0.9,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A random (m, n) matrix whose j-th singular value is ``rate**j``: a fast-decaying spectrum.

    Such matrices are well approximated at low rank, the setting of truncated SVD.

    Examples
    --------
    >>> A = decaying_spectrum(8, 4, rate=0.5, seed=4)
    >>> torch.linalg.svdvals(A).round(decimals=6).tolist()
    [1.0, 0.5, 0.25, 0.125]
    """
    k = min(m, n)
    s = rate ** torch.arange(k, dtype=torch.float64)
    return with_singular_values(s, m, n, seed=seed, dtype=dtype)
