"""Odd matrix polynomials for the polar decomposition, and their coefficients.

An odd polynomial :math:`p(x) = c_0 x + c_1 x^3 + c_2 x^5 + \\dots` acts on a matrix
:math:`X = U \\Sigma V^H` through its singular values only:
:math:`p(X) := c_0 X + c_1 X (X^H X) + c_2 X (X^H X)^2 + \\dots = U p(\\Sigma) V^H`.
Every polar iteration of :func:`gdla.polar` applies one such polynomial per step, so
that the singular values move towards 1 while the singular vectors stay put.
This module computes the coefficients (in float64, on the CPU, with plain Python
floats) and applies a step to a matrix:

* :func:`minimax_odd` -- the odd polynomial of degree 3 or 5 that is closest to 1 in
  the maximum norm on an interval :math:`[l, u]`, by the Remez exchange algorithm
  (Polar Express, Amsel, Persson, Musco and Gower, 2025; for degree 3 it is the
  optimally scaled Newton--Schulz step of Chen and Chow, 2014);
* :data:`NEWTON_SCHULZ_CUBIC`, :data:`NEWTON_SCHULZ_QUINTIC` -- the Taylor
  (Newton--Schulz) polynomials, whose fixed point 1 is superattracting;
* :data:`MUON_QUINTIC` -- the fixed quintic of Jordan et al.'s Muon optimiser;
* :func:`apply_odd` -- one step ``X <- p(X)`` given ``X`` and its Gram matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "NEWTON_SCHULZ_CUBIC",
    "NEWTON_SCHULZ_QUINTIC",
    "MUON_QUINTIC",
    "minimax_odd",
    "evaluate",
    "image",
    "apply_odd",
]

Coefficients = tuple[float, ...]

#: ``p(x) = (3x - x^3)/2``: the classic Newton--Schulz step, quadratically convergent to 1.
NEWTON_SCHULZ_CUBIC: Coefficients = (1.5, -0.5)
#: ``p(x) = (15x - 10x^3 + 3x^5)/8``: the quintic Taylor step, cubically convergent to 1.
NEWTON_SCHULZ_QUINTIC: Coefficients = (15 / 8, -10 / 8, 3 / 8)
#: The quintic of Muon (Jordan et al., 2024), applied 5 times after Frobenius normalisation.
MUON_QUINTIC: Coefficients = (3.4445, -4.7750, 2.0315)


def evaluate(coefficients: Sequence[float], x: np.ndarray | float) -> np.ndarray:
    """The odd polynomial ``sum_j c_j x^(2j+1)`` at ``x`` (float64, elementwise)."""
    x = np.asarray(x, dtype=np.float64)
    x2 = x * x
    total = np.zeros_like(x)
    for c in reversed(coefficients):  # Horner in x^2, then one factor x
        total = total * x2 + c
    return total * x


def _critical_points(coefficients: Sequence[float], low: float, high: float) -> list[float]:
    """The zeros of ``p'`` in ``(low, high)``, sorted: ``p'(x) = sum (2j+1) c_j y^j``, y = x^2.

    In closed form for degree 3 (one root in y) and 5 (a quadratic in y, solved
    without cancellation); ``p'`` has no zero in (0, ∞) otherwise.
    """
    c = coefficients
    if len(c) == 2:
        ys = [-c[0] / (3 * c[1])] if c[1] != 0 else []
    elif len(c) == 3:
        a, b, k = 5 * c[2], 3 * c[1], c[0]  # a y^2 + b y + k
        discriminant = b * b - 4 * a * k
        if a == 0 or discriminant < 0:
            ys = [-k / b] if a == 0 and b != 0 else []
        else:
            q = -(b + math.copysign(math.sqrt(discriminant), b)) / 2
            ys = [q / a, k / q] if q != 0 else [0.0]
    else:
        raise ValueError(f"_critical_points: expected degree 3 or 5, found {2 * len(c) - 1}")
    return sorted(math.sqrt(y) for y in ys if y > 0 and low < math.sqrt(y) < high)


def minimax_odd(low: float, high: float, degree: int = 5) -> tuple[Coefficients, float]:
    """The odd polynomial of ``degree`` (3 or 5) minimising ``max |1 - p(x)|`` over ``[l, u]``.

    Parameters
    ----------
    low, high : float
        The interval ``[l, u]``, ``0 < l <= u``; in :func:`gdla.polar`, lower and upper bounds on
        the singular values of the current iterate.
    degree : int
        3 or 5.

    Returns
    -------
    coefficients : tuple of float
        ``(c_0, c_1[, c_2])`` of ``p(x) = c_0 x + c_1 x^3 [+ c_2 x^5]``.
    error : float
        ``E = max |1 - p(x)|`` over ``[l, u]``; ``p`` maps ``[l, u]`` into ``[1 - E, 1 + E]``
        with ``p(l) = 1 - E``.

    Notes
    -----
    The best approximation equioscillates (Chebyshev's theorem): with ``q + 1``
    coefficients, ``1 - p`` takes the values ``+E, -E, +E, ...`` at ``q + 2`` points
    ``l = x_0 < x_1 < ... < x_{q+1} = u`` where ``|1 - p|`` is largest.  The Remez
    exchange solves the linear equations ``p(x_i) + (-1)^i E = 1`` for the
    coefficients and ``E``, moves the interior points to the zeros of ``p'`` (the
    roots of a polynomial in ``x^2`` of degree ``q``, found in closed form by
    :func:`numpy.roots`) and repeats until ``E`` no longer changes.  Work is in units
    of ``u`` (``x = u t``) so that the equations are well scaled.  When ``l/u`` is
    within 1e-6 of 1 the interval is too thin to resolve the points and the
    Newton--Schulz polynomial (rescaled to ``[l, u]``) is returned; it is the limit
    of the minimax polynomials as ``l -> u``.

    Examples
    --------
    >>> coefficients, error = minimax_odd(0.1, 1.0, degree=3)
    >>> p = evaluate(coefficients, np.array([0.1, 1.0]))
    >>> bool(np.allclose(p, [1 - error, 1 - error]))
    True
    """
    if degree not in (3, 5):
        raise ValueError(f"minimax_odd: expected degree 3 or 5, found {degree}")
    if not 0 < low <= high:
        raise ValueError(f"minimax_odd: expected 0 < low <= high, found {low}, {high}")
    q = (degree - 1) // 2
    ratio = low / high
    if ratio >= 1 - 1e-6:
        base = NEWTON_SCHULZ_CUBIC if degree == 3 else NEWTON_SCHULZ_QUINTIC
        limit = tuple(c / high ** (2 * j + 1) for j, c in enumerate(base))
        return limit, float(np.max(np.abs(1 - evaluate(limit, np.array([low, high])))))
    # Remez in t = x / u on [ratio, 1]; start from the limit l -> u's equioscillation points
    # spread over the interval (a good start for every ratio).
    points = [ratio + (1 - ratio) * (1 - math.cos(math.pi * i / (q + 1))) / 2 for i in range(q + 2)]
    signs = np.array([(-1.0) ** i for i in range(q + 2)])
    error = math.inf
    coefficients: Coefficients = ()
    for _ in range(100):
        t = np.array(points)
        matrix = np.column_stack([t ** (2 * j + 1) for j in range(q + 1)] + [signs])
        solution = np.linalg.solve(matrix, np.ones(q + 2))
        coefficients = tuple(float(c) for c in solution[:-1])
        new_error = abs(float(solution[-1]))
        interior = _critical_points(coefficients, ratio, 1.0)
        if len(interior) != q:  # cannot happen for a converging exchange; keep the last points
            break
        points = [ratio, *interior, 1.0]
        if abs(new_error - error) <= 1e-15 * max(1.0, new_error):
            error = new_error
            break
        error = new_error
    # The error measured on the final points (the solve's E is the levelled error).
    error = float(np.max(np.abs(1 - evaluate(coefficients, np.array(points)))))
    scaled = tuple(c / high ** (2 * j + 1) for j, c in enumerate(coefficients))
    return scaled, error


def image(coefficients: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """The smallest and largest values of the odd polynomial on ``[low, high]`` (``0 < low``).

    The extremes lie at the ends or at the zeros of ``p'``; with ``[l, u]`` containing
    the singular values of ``X``, ``p(X)`` has its singular values in the returned range
    (provided it is positive).
    """
    candidates = [low, high, *_critical_points(coefficients, low, high)]
    values = evaluate(coefficients, np.array(candidates))
    return float(values.min()), float(values.max())


def apply_odd(
    X: torch.Tensor,
    G: torch.Tensor,
    coefficients: Sequence[float],
    square: torch.Tensor | None = None,
) -> torch.Tensor:
    """``p(X) = c_0 X + X (c_1 G + c_2 G^2)`` for ``G = X^H X`` (shapes (*, m, n), (*, n, n)).

    One matrix product for a cubic (``X @ Q``), two for a quintic (``G @ G`` and
    ``X @ Q``), both with n x n right factors: for ``m >= n`` the cheap side.  A
    quintic given ``square`` (``G @ G``, already computed) needs one product.  The
    term ``c_0 X`` is added outside the product (as Muon's code does) rather than to
    the diagonal of ``Q``: in bfloat16 rounding ``c_0 + c_1 g`` would cost about
    ``c_0`` units of rounding in every entry.
    """
    c = list(coefficients)
    if square is not None and len(c) == 3:
        Q = torch.add(G.mul(c[1]), square, alpha=c[2])
    else:
        Q = c[-1] * G  # Horner in G without the constant: Q = G (c_1 I + G (c_2 I + ...))
        for coefficient in reversed(c[1:-1]):
            Q.diagonal(dim1=-2, dim2=-1).add_(coefficient)
            Q = G @ Q
    if X.dtype == torch.bfloat16:  # Muon's rounding: c_0 X rounded, then the sum
        return c[0] * X + X @ Q
    return (X @ Q).add_(X, alpha=c[0])  # the same sum, without a temporary for c_0 X
