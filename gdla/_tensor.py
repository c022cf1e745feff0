"""Small tensor helpers shared by the solvers: seeded draws, orthonormal bases, batch reductions.

A low floor: it imports only :mod:`torch` and :mod:`gdla._validation`.
"""

from __future__ import annotations

import torch

from ._validation import check_seed

__all__ = [
    "seeded_generator",
    "randn_like",
    "orth",
    "qf",
    "safe_divide",
    "batch_max",
    "batch_min",
    "scale_columns",
]


def seeded_generator(function: str, seed: object, device: torch.device) -> torch.Generator:
    """A private generator on ``device`` seeded by ``seed`` (the global RNG is never used)."""
    return torch.Generator(device=device).manual_seed(check_seed(function, seed))


def randn_like(
    shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Standard normal entries of ``like``'s dtype and device (complex: unit variance)."""
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def orth(X: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of the column space of ``X`` (Householder QR, robust to rank loss)."""
    return torch.linalg.qr(X).Q


def qf(X: torch.Tensor) -> torch.Tensor:
    """The Q factor of ``X = QR`` with ``diag(R)`` real positive: the QR retraction."""
    Q, R = torch.linalg.qr(X)
    phase = torch.sgn(R.diagonal(dim1=-2, dim2=-1))
    return Q * torch.where(phase == 0, torch.ones_like(phase), phase).unsqueeze(-2)


def safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0`` and ``num`` where ``den == 0`` (a zero matrix)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), num)


def batch_max(values: torch.Tensor) -> float:
    """The largest entry (the worst matrix of the batch) as a Python float."""
    return float(values.max()) if values.numel() else 0.0


def batch_min(values: torch.Tensor) -> float:
    """The smallest entry as a Python float (1.0 for an empty batch)."""
    return float(values.min()) if values.numel() else 1.0


def scale_columns(X: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``X @ diag(d)`` for a batch, ``d`` of shape (*, k), real or complex."""
    return X * d.to(X.dtype).unsqueeze(-2)
