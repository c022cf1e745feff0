"""Result objects returned by the public functions of :mod:`gdla`.

Every result carries the same bookkeeping (:class:`Result`): the method used,
the number of iterations ``nit``, whether the stopping rule was met
(``converged``), a human-readable ``message`` and the ``history`` of the
monitored residual, one float per iteration, for convergence plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

__all__ = ["Result", "SolveResult", "InverseResult", "SVDResult", "CompletionResult", "PolarResult"]


@dataclass(frozen=True, kw_only=True)
class Result:
    """Bookkeeping shared by every result.

    Attributes
    ----------
    method : str
        The ``method=`` that produced the result.
    nit : int
        Number of iterations performed.
    converged : bool
        True when the documented stopping rule was met for every matrix of the batch.
    message : str
        Why the iteration stopped.
    history : list of float
        The monitored residual after each iteration (the largest over the batch).
    """

    method: str
    nit: int
    converged: bool
    message: str
    history: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        # Every returned tensor is plain and materialized: no lazy conjugate or negative
        # bit (views such as A.mH carry them), so that .numpy() and in-place ops work.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor) and (value.is_conj() or value.is_neg()):
                object.__setattr__(self, f.name, value.resolve_conj().resolve_neg())

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = f"<tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}>"
            else:
                value = repr(value)
            parts.append(f"{f.name}={value}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, kw_only=True, repr=False)
class SolveResult(Result):
    """Result of :func:`gdla.solve`: ``x`` of the shape of ``b``."""

    x: torch.Tensor


@dataclass(frozen=True, kw_only=True, repr=False)
class InverseResult(Result):
    """Result of :func:`gdla.inverse`: ``X`` of shape ``(*, n, n)``."""

    X: torch.Tensor


@dataclass(frozen=True, kw_only=True, repr=False)
class SVDResult(Result):
    """Result of :func:`gdla.svd`: ``U`` (*, m, k), ``S`` (*, k), ``Vh`` (*, k, n)."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


@dataclass(frozen=True, kw_only=True, repr=False)
class CompletionResult(Result):
    """Result of :func:`gdla.complete`: the completed matrix ``X`` = ``L @ R^H``.

    ``L`` has shape (*, m, r) and ``R`` shape (*, n, r).  ``X`` is None when ``M``
    was sparse (an m x n dense tensor is what sparse input avoids): read the
    entries you need with the method ``entries(rows, cols)``.
    """

    X: torch.Tensor | None
    L: torch.Tensor
    R: torch.Tensor

    def entries(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The entries ``X[..., rows[t], cols[t]]`` of ``X = L R^H``, without forming ``X``.

        ``rows`` and ``cols`` are integer tensors of the same shape ``(p,)`` (indices
        into the m rows and n columns); returns shape (*, p), that is
        ``(L[..., rows, :] * R[..., cols, :].conj()).sum(-1)``, in O(p r) work and memory.
        """
        return (self.L[..., rows, :] * self.R[..., cols, :].conj()).sum(-1)


@dataclass(frozen=True, kw_only=True, repr=False)
class PolarResult(Result):
    """Result of :func:`gdla.polar`: ``A = U @ H``.

    ``U`` has the shape (*, m, n) of A, ``H`` shape (*, n, n); ``products`` is the
    number of matrix products the method performed.
    """

    U: torch.Tensor
    H: torch.Tensor
    products: int
