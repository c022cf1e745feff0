"""Small tensor helpers shared by the solvers: seeded draws, orthonormal bases, batch reductions.

A low floor: it imports only :mod:`torch` and :mod:`gdla._validation`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

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
    "small_factorisation",
    "torch_threads",
    "torch_function_mode_active",
    "SMALL_ORDER",
]

#: Largest order of the projected matrices that :func:`small_factorisation` factorises on
#: one thread.
SMALL_ORDER = 128

_Factors = TypeVar("_Factors")


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


def small_factorisation(
    factorise: Callable[..., _Factors], T: torch.Tensor, *args: object, **kwargs: object
) -> _Factors:
    """``factorise(T, *args, **kwargs)`` (e.g. :func:`torch.linalg.eigh`) for a small matrix.

    On the CPU a matrix of order at most :data:`SMALL_ORDER` is factorised on one
    thread: for Krylov methods' projected matrices (orders 20--60), MKL's threaded
    ``syevd`` and ``gesdd`` spend more time waking and joining threads than
    computing (torch 2.13, 2 threads, order 40: 0.40 ms against 0.10 ms on one).
    """
    if T.device.type != "cpu" or T.shape[-1] > SMALL_ORDER or torch.get_num_threads() == 1:
        return factorise(T, *args, **kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return factorise(T, *args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (None, or no fewer than now: unchanged).

    For the steps of the one-column Krylov kernels, whose vector operations are too
    small to share between threads (see :attr:`gdla._operator.OperatorView.vector_threads`).
    Switching costs about a microsecond.
    """
    threads = torch.get_num_threads()
    if count is None or count >= threads:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def torch_function_mode_active() -> bool:
    """Whether a torch function mode (:class:`gdla.metrics.ProductCounter`, a profiler) is
    active: the kernels then leave every product and vector operation to torch, where
    the mode sees it, rather than to NumPy."""
    # torch has no public query; without it, assume a mode may be active (torch's path).
    query = getattr(torch.overrides, "_is_torch_function_mode_enabled", None)
    return True if query is None else bool(query())
