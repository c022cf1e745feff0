"""Input checks shared by every public function of :mod:`gdla`.

Every public function calls :func:`check_matrix` (and, where it needs one,
:func:`check_option`) before doing any work, so that bad input fails early with
a message that names the function, what was expected and what was found,
instead of a traceback from deep inside torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "GdlaInputError",
    "ShapeError",
    "DtypeError",
    "NonFiniteError",
    "OptionError",
    "check_matrix",
    "check_finite",
    "check_option",
    "check_positive",
    "check_number",
    "check_seed",
    "check_rank",
    "check_count",
    "options_dict",
    "method_options",
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
    finite: bool = True,
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
    finite : bool
        Check that the entries are finite (default); False for a caller that reads
        ``A`` anyway and calls :func:`check_finite` when what it read is not finite.

    Returns
    -------
    Tensor
        ``A`` itself, unchanged.

    Raises
    ------
    DtypeError
        ``A`` is not a tensor, is sparse or on the meta device (no data), or its
        dtype is not float32, float64, complex64 or complex128.
    ShapeError
        Too few dimensions, or not square where ``square=True``.
    NonFiniteError
        ``A`` has a NaN or infinite entry.
    """
    if not isinstance(A, torch.Tensor):
        raise DtypeError(function, f"{name} to be a torch.Tensor", type(A).__name__)
    if A.layout != torch.strided:
        # Sparse inputs are not supported yet: say so instead of a raw torch error.
        raise DtypeError(function, f"{name} to be a dense (strided) tensor", f"layout {A.layout}")
    if A.device.type == "meta":
        raise DtypeError(function, f"{name} to be a tensor with data", "a tensor on device 'meta'")
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
    if finite and A.numel() and not bool(torch.isfinite(A.sum())):
        check_finite(function, name, A)
    return A


def check_finite(function: str, name: str, A: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` if an entry of ``A`` is NaN or infinite (one pass
    over ``A``; :func:`check_matrix` calls it only after a cheaper test has failed)."""
    if not bool(torch.isfinite(A).all()):
        raise NonFiniteError(function, f"{name} with finite entries", "NaN or Inf")


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


def check_number(
    function: str,
    name: str,
    value: object,
    *,
    integer: bool = False,
    low: float | None = None,
    low_inclusive: bool = True,
    high: float | None = None,
    high_inclusive: bool = True,
) -> float:
    """Check that a numerical option is a finite real number in a range, and return it.

    Python and NumPy numbers are accepted alike (``np.int64(5)``, ``np.float32(1e-6)``);
    bool, NaN and infinities are not.  Returns ``int(value)`` when ``integer`` is set,
    else ``float(value)``.

    Raises
    ------
    OptionError
        ``value`` is not a finite real number (an integer where ``integer=True``) in
        the range.
    """
    kind = "an integer" if integer else "a finite real number"
    bounds = []
    if low is not None:
        bounds.append(f"{name} {'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        bounds.append(f"{name} {'<=' if high_inclusive else '<'} {high:g}")
    expected = f"{name} to be {kind}" + (f" with {' and '.join(bounds)}" if bounds else "")
    wanted = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise OptionError(function, expected, repr(value))
    number = int(value) if integer else float(value)  # type: ignore[call-overload]
    if not math.isfinite(number):
        raise OptionError(function, expected, repr(value))
    if low is not None and not (number >= low if low_inclusive else number > low):
        raise OptionError(function, expected, repr(value))
    if high is not None and not (number <= high if high_inclusive else number < high):
        raise OptionError(function, expected, repr(value))
    return number


def check_positive(function: str, name: str, value: object, *, integer: bool = False) -> float:
    """Check that a numerical option is positive and finite (an integer where required).

    Python and NumPy numbers are accepted alike; returns the value as a Python
    ``int`` (``integer=True``) or ``float``.

    Raises
    ------
    OptionError
        ``value`` is not positive and finite, or not an integer where ``integer=True``.
    """
    kind = "a positive integer" if integer else "a positive finite number"
    try:
        return check_number(function, name, value, integer=integer, low=0, low_inclusive=False)
    except OptionError:
        raise OptionError(function, f"{name} to be {kind}", repr(value)) from None


def check_seed(function: str, value: object) -> int:
    """Check that ``seed`` is an integer in [0, 2**64) (what :class:`torch.Generator` takes).

    Raises
    ------
    OptionError
        ``seed`` is not an integer, negative, or does not fit in 64 bits.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not (0 <= int(value) < 2**64)
    ):
        raise OptionError(function, "seed to be an integer with 0 <= seed < 2**64", repr(value))
    return int(value)


def check_rank(function: str, name: str, value: object, upper: int) -> int:
    """Check that ``value`` is an integer in ``[1, upper]`` and return it as an int."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 1 <= int(value) <= upper
    ):
        raise OptionError(
            function, f"{name} to be an integer with 1 <= {name} <= {upper}", repr(value)
        )
    return int(value)


def options_dict(function: str, options: object) -> dict[str, Any]:
    """A copy of ``options`` as a dict (``{}`` for None); anything but a mapping is an error."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise OptionError(function, "options to be a dict or None", type(options).__name__)
    return dict(options)


def method_options(
    function: str, method: str, options: object, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge ``options`` into ``defaults``, rejecting any key that the method does not know."""
    options = options_dict(function, options)
    unknown = sorted(str(key) for key in set(options) - set(defaults))
    if unknown:
        known = ", ".join(repr(key) for key in defaults) or "none"
        raise OptionError(
            function, f"options of method {method!r} among ({known})", ", ".join(unknown)
        )
    return {**defaults, **options}


def check_count(function: str, name: str, value: object) -> int:
    """Check that an option is a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise OptionError(function, f"{name} to be a non-negative integer", repr(value))
    return int(value)
