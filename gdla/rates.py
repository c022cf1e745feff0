"""Convergence theory: the rates that the book draws over measured convergence.

For a quadratic loss with Hessian eigenvalues (curvatures) between ``mu`` and
``L``, an iteration contracts the error by a fixed factor, its *rate*, each
step; the residual after ``k`` steps is about ``rate**k`` times the first, and
the squared-error loss about ``rate**(2k)``.  For the inverse and linear-system
losses of the book the curvatures are the squared singular values of ``A``, so
``mu / L = 1 / cond(A)**2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._validation import OptionError, check_positive

__all__ = [
    "gradient_descent_rate",
    "heavy_ball_rate",
    "iterations_for",
    "polyak_parameters",
    "newton_schulz_iterations",
]


def gradient_descent_rate(mu: float, L: float, *, step: float | None = None) -> float:
    """Error contraction per step of gradient descent on a quadratic with curvatures in [mu, L].

    With ``step`` the rate is ``max(|1 - step mu|, |1 - step L|)``; it defaults to
    ``1 / L``, giving ``1 - mu / L``.

    Examples
    --------
    >>> gradient_descent_rate(1.0, 4.0)
    0.75
    >>> gradient_descent_rate(1.0, 4.0, step=2 / 5)  # the optimal step 2 / (L + mu)
    0.6
    """
    check_positive("gdla.rates.gradient_descent_rate", "mu", mu)
    check_positive("gdla.rates.gradient_descent_rate", "L", L)
    step = 1.0 / L if step is None else step
    return max(abs(1 - step * mu), abs(1 - step * L))


def heavy_ball_rate(
    curvatures: Sequence[float] | torch.Tensor, lr: float, momentum: float
) -> float:
    """Error contraction per step of heavy-ball momentum (``torch.optim.SGD`` with momentum).

    Each curvature ``lam`` of the quadratic evolves by the recurrence
    ``e[k+1] = (1 + momentum - lr lam) e[k] - momentum e[k-1]``, whose rate is the
    largest root modulus of ``z**2 - (1 + momentum - lr lam) z + momentum``.  The
    result is the largest over all curvatures (>= 1 means divergence).

    Examples
    --------
    >>> round(heavy_ball_rate([1.0, 2.0], lr=0.5, momentum=0.25), 4)
    0.5
    """
    worst = 0.0
    for lam in torch.as_tensor(curvatures, dtype=torch.float64).flatten().tolist():
        trace = 1 + momentum - lr * lam
        discriminant = trace * trace - 4 * momentum
        if discriminant < 0:
            modulus = math.sqrt(momentum)
        else:
            root = math.sqrt(discriminant)
            modulus = max(abs(trace + root), abs(trace - root)) / 2
        worst = max(worst, modulus)
    return worst


def polyak_parameters(mu: float, L: float) -> tuple[float, float]:
    """Polyak's optimal heavy-ball step and momentum for curvatures in [mu, L].

    ``lr = 4 / (sqrt(L) + sqrt(mu))**2`` and
    ``momentum = ((sqrt(L) - sqrt(mu)) / (sqrt(L) + sqrt(mu)))**2``: every curvature
    then contracts at the same rate ``sqrt(momentum) = (kappa - 1) / (kappa + 1)``
    with ``kappa = sqrt(L / mu)`` (Polyak, 1964).  For ``||Ax - b||^2 / 2`` the
    curvatures are the squared singular values of ``A``.

    Examples
    --------
    >>> lr, momentum = polyak_parameters(1.0, 9.0)  # kappa = 3
    >>> lr, momentum, heavy_ball_rate([1.0, 9.0], lr, momentum)
    (0.25, 0.25, 0.5)
    """
    check_positive("gdla.rates.polyak_parameters", "mu", mu)
    check_positive("gdla.rates.polyak_parameters", "L", L)
    root_mu, root_L = math.sqrt(mu), math.sqrt(L)
    return 4 / (root_L + root_mu) ** 2, ((root_L - root_mu) / (root_L + root_mu)) ** 2


def iterations_for(rate: float, reduction: float) -> int:
    """Steps needed for ``rate**k <= reduction``: ``ceil(log(reduction) / log(rate))``.

    Examples
    --------
    >>> iterations_for(0.5, 1e-3)
    10
    """
    if not 0 < rate < 1:
        raise OptionError("gdla.rates.iterations_for", "a rate in (0, 1)", repr(rate))
    check_positive("gdla.rates.iterations_for", "reduction", reduction)
    return max(0, math.ceil(math.log(reduction) / math.log(rate)))


def newton_schulz_iterations(cond: float, tol: float) -> int:
    """Newton–Schulz steps from ``X0 = A^H / sigma_max**2`` until ``||I - X A||_2 <= tol``.

    The residual ``R = I - X A`` starts at ``||R0||_2 = 1 - 1/cond**2`` and squares at
    every step, ``R[k+1] = R[k]**2``, so ``k`` steps give ``||R0||**(2**k)``.

    Examples
    --------
    >>> newton_schulz_iterations(1e3, 1e-12)
    25
    """
    check_positive("gdla.rates.newton_schulz_iterations", "cond", cond)
    start = 1 - 1 / cond**2
    if start <= tol:
        return 0
    return math.ceil(math.log2(math.log(tol) / math.log(start)))
