"""Small tensor helpers shared by the solvers: seeded draws, orthonormal bases, batch reductions.

A low floor: it imports only :mod:`numpy`, :mod:`torch` and :mod:`gdla._validation`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
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
    "small_eigh",
    "small_svd",
    "torch_function_mode_active",
    "SMALL_ORDER",
]

#: Largest order of the projected matrices that :func:`small_eigh` and :func:`small_svd`
#: factorise with NumPy on the CPU.
SMALL_ORDER = 128

_NUMPY_LAPACK_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


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


def small_eigh(T: torch.Tensor, UPLO: Literal["L", "U"] = "L") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`torch.linalg.eigh` of a small (projected) Hermitian matrix (*, j, j).

    On the CPU, a matrix of order at most :data:`SMALL_ORDER` goes through NumPy's
    LAPACK: for the projected matrices of Krylov methods (orders 20--60), MKL's threaded
    ``syevd`` spends more time waking and joining threads than computing (torch 2.13,
    2 threads, order 40: 0.40 ms against 0.14 ms).  Lowering torch's thread count
    instead would change, for a moment, the results of torch calls that other Python
    threads make.
    """
    if _small_on_cpu(T):
        values, vectors = np.linalg.eigh(T.resolve_conj().numpy(), UPLO=UPLO)
        return torch.from_numpy(values), torch.from_numpy(vectors)
    return torch.linalg.eigh(T, UPLO=UPLO)


def small_svd(B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`torch.linalg.svd` (``full_matrices=True``) of a small square matrix, as
    :func:`small_eigh` (NumPy's LAPACK on the CPU, for the same reason)."""
    if _small_on_cpu(B):
        U, S, Vh = np.linalg.svd(B.resolve_conj().numpy())
        return torch.from_numpy(U), torch.from_numpy(S), torch.from_numpy(Vh)
    return torch.linalg.svd(B)


def _small_on_cpu(T: torch.Tensor) -> bool:
    return (
        T.device.type == "cpu"
        and T.shape[-1] <= SMALL_ORDER
        and T.dtype in _NUMPY_LAPACK_DTYPES
        and not T.requires_grad
        and not torch_function_mode_active()
    )


def torch_function_mode_active() -> bool:
    """Whether a torch function mode (:class:`gdla.metrics.ProductCounter`, a profiler) is
    active: the kernels then leave every product and vector operation to torch, where
    the mode sees it, rather than to NumPy."""
    # torch has no public query; without it, assume a mode may be active (torch's path).
    query = getattr(torch.overrides, "_is_torch_function_mode_enabled", None)
    return True if query is None else bool(query())
