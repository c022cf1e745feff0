"""The one iteration loop behind every iterative method of :mod:`gdla`.

Each method supplies a ``step`` function that performs one iteration and
returns the residual it monitors (a float, the largest over the batch).  The
loop here applies the stopping rule, records the history, calls the user's
callback, and writes the message, so that every method stops in the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ._validation import OptionError, check_option, check_positive

__all__ = ["Outcome", "iterate", "default_rtol", "torch_optimizer_step", "TORCH_OPTIMIZERS"]

#: ``method=`` names that drive a :mod:`torch.optim` optimiser on the problem's loss.
TORCH_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "lbfgs": torch.optim.LBFGS,
}


def default_rtol(dtype: torch.dtype) -> float:
    """The default relative tolerance for ``dtype``: 100 machine epsilons of its real part.

    That is about 2.2e-14 for float64/complex128 and 1.2e-5 for float32/complex64,
    the accuracy a backward-stable direct method reaches on a well-conditioned problem.
    """
    return 100 * torch.finfo(dtype).eps


@dataclass
class Outcome:
    """What :func:`iterate` returns: iterations, convergence, message, history."""

    nit: int
    converged: bool
    message: str
    history: list[float] = field(default_factory=list)


def iterate(
    function: str,
    step: Callable[[], float],
    *,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None = None,
    exhausted: Callable[[], str | None] | None = None,
) -> Outcome:
    """Call ``step`` until its residual is at most ``rtol`` or ``max_iter`` is reached.

    The stopping rule, shared by every method: stop after iteration ``k`` when
    ``step()`` returned ``residual <= rtol``; stop when ``callback(k, residual)``
    returns True; stop with ``converged=False`` when the residual is NaN or
    infinite (divergence) or after ``max_iter`` iterations.  A method that can
    tell when further iterations cannot help (its search space is already the
    whole space) passes ``exhausted``, which returns the reason as a string, or
    None to go on; it is asked after each iteration that has not converged.
    """
    check_positive(function, "rtol", rtol)
    check_positive(function, "max_iter", max_iter, integer=True)
    history: list[float] = []
    for k in range(1, max_iter + 1):
        residual = float(step())
        history.append(residual)
        if not math.isfinite(residual):
            return Outcome(k, False, f"diverged at iteration {k}: residual is {residual}", history)
        if residual <= rtol:
            return Outcome(
                k, True, f"converged: residual {residual:.3g} <= rtol {rtol:.3g}", history
            )
        if callback is not None and callback(k, residual):
            return Outcome(k, False, f"stopped by callback at iteration {k}", history)
        reason = exhausted() if exhausted is not None else None
        if reason is not None:
            return Outcome(
                k,
                False,
                f"not converged: residual {residual:.3g} > rtol {rtol:.3g} at iteration {k}, "
                f"and {reason}",
                history,
            )
    return Outcome(
        max_iter,
        False,
        f"not converged: residual {history[-1]:.3g} > rtol {rtol:.3g} after {max_iter} iterations",
        history,
    )


def torch_optimizer_step(
    function: str,
    loss: Callable[[], torch.Tensor],
    residual: Callable[[], float],
    params: Iterable[torch.Tensor],
    method: str,
    options: Mapping[str, object] | None,
) -> Callable[[], float]:
    """Build a ``step`` for :func:`iterate` that runs one step of a :mod:`torch.optim` optimiser.

    ``loss`` returns a scalar, differentiable loss of ``params``; ``residual``
    returns the quantity that the stopping rule monitors, measured after the step.
    ``options`` are passed to the optimiser's constructor (``lr``, ``momentum``...).
    """
    check_option(function, "method", method, TORCH_OPTIMIZERS)
    defaults: dict[str, dict[str, Any]] = {
        "sgd": {"lr": 0.1, "momentum": 0.9},
        "adam": {"lr": 1e-2},
        # gdla's stopping rule decides when to stop: LBFGS's own tolerances would
        # freeze it once the gradient is below 1e-7.
        "lbfgs": {
            "lr": 1.0,
            "max_iter": 1,
            "history_size": 20,
            "line_search_fn": "strong_wolfe",
            "tolerance_grad": 0.0,
            "tolerance_change": 0.0,
        },
    }
    kwargs = {**defaults[method], **(options or {})}
    try:
        optimizer = TORCH_OPTIMIZERS[method](list(params), **kwargs)
    except (TypeError, ValueError) as error:
        raise OptionError(
            function, f"options accepted by torch.optim for {method!r}", str(error)
        ) from None

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    def step() -> float:
        optimizer.step(closure)  # type: ignore[arg-type]  # closures may return tensors
        with torch.no_grad():
            return residual()

    return step
