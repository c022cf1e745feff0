"""Input checks shared by every public function of :mod:`gdla`.

Every public function calls :func:`check_matrix` (and, where it needs one,
:func:`check_option`) before doing any work, so that bad input fails early with
a message that names the function, what was expected and what was found,
instead of a traceback from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = [
    "GdlaInputError",
    "ShapeError",
    "DtypeError",
    "NonFiniteError",
    "OptionError",
    "check_matrix",
    "check_option",
]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


class GdlaInputError(ValueError):
    """Base class of the errors raised for bad input to a :mod:`gdla` function."""

    def __init__(self, function: str, expected: str, found: str) -> None:
        self.function = function
        self.expected = expected
        self.found = found
        super().__init__(f"{function}: expected {expected}, found {found}")


class ShapeError(GdlaInputError):
    """A tensor has the wrong number of dimensions or incompatible sizes."""


class DtypeError(GdlaInputError, TypeError):
    """A tensor has a dtype that gdla does not support (integers, bool, half)."""


class NonFiniteError(GdlaInputError):
    """A tensor contains NaN or infinite entries."""


class OptionError(GdlaInputError):
    """A keyword option (``method``, ``k``, ``rtol`` ...) is out of its range."""


def check_matrix(
    function: str,
    name: str,
    A: object,
    *,
    square: bool = False,
    min_ndim: int = 2,
    dtype_like: torch.Tensor | None = None,
) -> torch.Tensor:
    """Check that ``A`` is a finite floating or complex tensor of shape ``(*, m, n)``.

    Parameters
    ----------
    function : str
        Public name of the caller, used in the message (``"gdla.inverse"``).
    name : str
        Name of the argument in the caller's signature (``"A"``).
    A : object
        The value to check.
    square : bool
        Require the last two dimensions to be equal.
    min_ndim : int
        Smallest number of dimensions accepted (2 for matrices, 1 for vectors).
    dtype_like : Tensor, optional
        If given, ``A`` must have the same dtype and device as this tensor.

    Returns
    -------
    Tensor
        ``A`` itself, unchanged.

    Raises
    ------
    DtypeError
        ``A`` is not a tensor, or its dtype is not float32, float64, complex64
        or complex128.
    ShapeError
        Too few dimensions, or not square where ``square=True``.
    NonFiniteError
        ``A`` has a NaN or infinite entry.
    """
    if not isinstance(A, torch.Tensor):
        raise DtypeError(function, f"{name} to be a torch.Tensor", type(A).__name__)
    if A.dtype not in SUPPORTED_DTYPES:
        raise DtypeError(
            function,
            f"{name} of dtype float32, float64, complex64 or complex128",
            str(A.dtype),
        )
    if A.ndim < min_ndim:
        what = "a matrix of shape (*, m, n)" if min_ndim == 2 else f"at least {min_ndim} dimensions"
        raise ShapeError(function, f"{name} to be {what}", f"shape {tuple(A.shape)}")
    if square and A.shape[-1] != A.shape[-2]:
        raise ShapeError(
            function, f"{name} to be square, of shape (*, n, n)", f"shape {tuple(A.shape)}"
        )
    if dtype_like is not None:
        if A.dtype != dtype_like.dtype:
            raise DtypeError(function, f"{name} of dtype {dtype_like.dtype}", str(A.dtype))
        if A.device != dtype_like.device:
            raise ShapeError(function, f"{name} on device {dtype_like.device}", str(A.device))
    # A finite sum proves every entry finite at the cost of one reduction; only an
    # infinite or NaN sum (a non-finite entry, or an overflow) needs the full check.
    if A.numel() and not bool(torch.isfinite(A.sum())) and not bool(torch.isfinite(A).all()):
        raise NonFiniteError(function, f"{name} with finite entries", "NaN or Inf")
    return A


def check_option(function: str, name: str, value: object, allowed: Iterable[object]) -> None:
    """Check that a keyword option takes one of the ``allowed`` values.

    Raises
    ------
    OptionError
        ``value`` is not in ``allowed``; the message lists the allowed values.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise OptionError(function, f"{name} to be one of {listed}", repr(value))


def check_positive(function: str, name: str, value: float | int, *, integer: bool = False) -> None:
    """Check that a numerical option is positive (and an integer where required).

    Raises
    ------
    OptionError
        ``value`` is not positive, or not an integer where ``integer=True``.
    """
    kind = "a positive integer" if integer else "a positive number"
    if isinstance(value, bool) or (integer and not isinstance(value, int)):
        raise OptionError(function, f"{name} to be {kind}", repr(value))
    if not isinstance(value, (int, float)) or not value > 0:
        raise OptionError(function, f"{name} to be {kind}", repr(value))
