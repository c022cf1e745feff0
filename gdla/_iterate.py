"""The one iteration loop behind every iterative method of :mod:`gdla`.

Each method supplies a ``step`` function that performs one iteration and
returns the residual it monitors (a float, the largest over the batch).  The
loop here applies the stopping rule, records the history, calls the user's
callback, and writes the message, so that every method stops in the same way.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ._validation import OptionError, check_option, check_positive, options_dict

__all__ = [
    "Outcome",
    "iterate",
    "default_rtol",
    "torch_optimizer_step",
    "OptimizerStep",
    "TORCH_OPTIMIZERS",
    "autograd_on",
    "normal_tensor",
    "stopped_by_user",
    "LBFGS_DEFAULTS",
    "optimizer_options",
]

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
    done: Sequence[float] = (),
) -> Outcome:
    """Call ``step`` until its residual is at most ``rtol`` or ``max_iter`` is reached.

    The stopping rule, shared by every method: after iteration ``k``,
    ``callback(k, residual)`` is called (after every iteration, the last one
    included); then the loop stops with ``converged=False`` when the residual is NaN
    or infinite (divergence), with ``converged=True`` when ``residual <= rtol``, with
    ``converged=False`` when the callback returned True, and after ``max_iter``
    iterations.  A method that can tell when further iterations cannot help (its
    search space is already the whole space, its iterates diverge) passes
    ``exhausted``, which returns the reason as a string, or None to go on; it is
    asked after each iteration that has not converged.  ``done`` holds the residuals
    of iterations already performed by an earlier stage of the same method (a
    fallback continues the count): they open ``history`` and count towards ``nit``
    and ``max_iter``.
    """
    check_positive(function, "rtol", rtol)
    check_positive(function, "max_iter", max_iter, integer=True)
    history: list[float] = list(done)
    for k in range(len(history) + 1, max_iter + 1):
        residual = float(step())
        history.append(residual)
        stop = bool(callback(k, residual)) if callback is not None else False
        if not math.isfinite(residual):
            return Outcome(k, False, f"diverged at iteration {k}: residual is {residual}", history)
        if residual <= rtol:
            return Outcome(
                k, True, f"converged: residual {residual:.3g} <= rtol {rtol:.3g}", history
            )
        if stop:
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
    last = history[-1] if history else math.nan
    return Outcome(
        len(history),
        False,
        f"not converged: residual {last:.3g} > rtol {rtol:.3g} after {len(history)} iterations",
        history,
    )


def stopped_by_user(outcome: Outcome) -> bool:
    """Whether the callback, not the problem, ended the iteration."""
    return outcome.message.startswith("stopped by callback")


@contextmanager
def autograd_on() -> Iterator[None]:
    """Gradient recording switched on, also inside :func:`torch.inference_mode`.

    :func:`torch.enable_grad` alone does not leave inference mode, where
    ``backward()`` is impossible; the tensors that enter the graph must also be
    normal tensors (:func:`normal_tensor`).
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


def normal_tensor(T: torch.Tensor) -> torch.Tensor:
    """``T``, or a normal copy when it is an inference tensor (which autograd cannot save).

    Call it inside :func:`autograd_on`.
    """
    return T.clone() if T.is_inference() else T


#: Defaults of each optimiser, under the user's options.  gdla's stopping rule decides
#: when to stop: LBFGS's own tolerances would freeze it once the gradient is below 1e-7,
#: and its line search needs more than ``max_eval``'s default of ``max_iter * 5 // 4``
#: (1) evaluations, or it returns zero steps for good.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "adam": {"lr": 1e-2},
    "lbfgs": {
        "lr": 1.0,
        "max_iter": 1,
        "max_eval": 25,
        "history_size": 20,
        "line_search_fn": "strong_wolfe",
        "tolerance_grad": 0.0,
        "tolerance_change": 0.0,
    },
}

#: torch's LBFGS updates its curvature memory only while ``s^T y > 1e-10`` (absolute):
#: once the loss has fallen by this factor since the last restart, or a step has not
#: decreased it, the optimiser is restarted on the loss divided by its current value,
#: so that the memory stays useful.
LBFGS_RESTART = 1e-6


class OptimizerStep:
    """One step of a :mod:`torch.optim` optimiser per call, for :func:`iterate`.

    ``loss`` returns a scalar, differentiable loss of ``params``; ``residual``
    returns the quantity that the stopping rule monitors, measured after the step.
    ``options`` are passed to the optimiser's constructor (``lr``, ``momentum``...)
    over :data:`OPTIMIZER_DEFAULTS`.  With ``plateau`` set (SGD and Adam), the
    learning rate is halved whenever the residual has not improved on its best for
    ``plateau`` iterations (as :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`
    would): a constant rate leaves the iterates oscillating at a distance set by the
    rate.  The parameters with the smallest residual seen are kept:
    :meth:`restore_best` puts them back.  Gradients are recorded also inside
    :func:`torch.inference_mode`; ``params`` must be normal tensors.
    """

    def __init__(
        self,
        function: str,
        loss: Callable[[], torch.Tensor],
        residual: Callable[[], float],
        params: Iterable[torch.Tensor],
        method: str,
        options: Mapping[str, object] | None,
        *,
        plateau: int | None = None,
    ) -> None:
        check_option(function, "method", method, TORCH_OPTIMIZERS)
        given = dict(options or {})
        for key, value in given.items():
            number = isinstance(value, numbers.Number) and not isinstance(value, bool)
            if number and not math.isfinite(abs(complex(value))):  # type: ignore[call-overload]
                raise OptionError(function, f"options[{key!r}] to be a finite number", repr(value))
        self.function = function
        self.method = method
        self.kwargs = {**OPTIMIZER_DEFAULTS[method], **given}
        self.params = list(params)
        self.loss = loss
        self.residual = residual
        self.plateau = plateau if method in ("sgd", "adam") else None
        self.scale = 1.0  # the loss is divided by this (LBFGS restarts)
        self.optimizer = self._new_optimizer()
        self.best = math.inf
        self.best_iteration = 0
        self.best_params = [p.detach().clone() for p in self.params]
        self.iteration = 0
        self.since_best = 0
        self.restart_at = math.nan
        self.previous_loss = math.inf

    def _new_optimizer(self) -> torch.optim.Optimizer:
        try:
            return TORCH_OPTIMIZERS[self.method](self.params, **self.kwargs)
        except (TypeError, ValueError) as error:
            raise OptionError(
                self.function, f"options accepted by torch.optim for {self.method!r}", str(error)
            ) from None

    def _closure(self) -> torch.Tensor:
        self.optimizer.zero_grad()
        value = self.loss() / self.scale
        value.backward()
        return value

    def __call__(self) -> float:
        self.iteration += 1
        with autograd_on():
            value: Any = self.optimizer.step(self._closure)  # type: ignore[arg-type]
        if self.method == "lbfgs" and value is not None:
            current = float(torch.as_tensor(value).detach()) * self.scale
            stalled = current >= self.previous_loss  # no decrease: stale curvature memory
            self.previous_loss = current
            if math.isnan(self.restart_at):
                self.restart_at = current * LBFGS_RESTART
            elif current > 0 and math.isfinite(current) and (stalled or current < self.restart_at):
                self.scale = current
                self.restart_at = current * LBFGS_RESTART
                self.optimizer = self._new_optimizer()
        with torch.no_grad():
            residual = float(self.residual())
        if residual < self.best:
            self.best, self.best_iteration, self.since_best = residual, self.iteration, 0
            for kept, p in zip(self.best_params, self.params, strict=True):
                kept.copy_(p.detach())
        else:
            self.since_best += 1
            if self.plateau is not None and self.since_best >= self.plateau:
                for group in self.optimizer.param_groups:
                    group["lr"] = group["lr"] / 2
                self.since_best = 0
        return residual

    def restore_best(self, outcome: Outcome) -> bool:
        """Put back the best parameters seen when the run ended on worse ones.

        Returns whether it did, and appends to ``outcome.message`` what was returned.
        """
        if not self.best_params or self.iteration == self.best_iteration:
            return False
        if not math.isfinite(self.best):
            return False
        with torch.no_grad():
            for kept, p in zip(self.best_params, self.params, strict=True):
                p.copy_(kept)
        outcome.message += (
            f"; returned the best iterate, of iteration {self.best_iteration} "
            f"(residual {self.best:.3g}), not the last"
        )
        return True


def torch_optimizer_step(
    function: str,
    loss: Callable[[], torch.Tensor],
    residual: Callable[[], float],
    params: Iterable[torch.Tensor],
    method: str,
    options: Mapping[str, object] | None,
    *,
    plateau: int | None = None,
) -> OptimizerStep:
    """Build a ``step`` for :func:`iterate` that runs one step of a :mod:`torch.optim` optimiser.

    See :class:`OptimizerStep`.
    """
    return OptimizerStep(function, loss, residual, params, method, options, plateau=plateau)


#: Defaults for ``method="lbfgs"``, under the user's options (LBFGS's own stopping
#: tests are switched off by :func:`torch_optimizer_step`).  Each iteration runs up to
#: 20 LBFGS iterations: with one per ``step()`` call, torch's LBFGS (2.13) can get
#: stuck on the penalty loss (its line search returns a zero step for good).
LBFGS_DEFAULTS = {"max_iter": 20}


def optimizer_options(function: str, method: str, options: object) -> dict[str, Any]:
    """Options for :func:`torch_optimizer_step`, with :data:`LBFGS_DEFAULTS` for LBFGS."""
    given = options_dict(function, options)
    return {**LBFGS_DEFAULTS, **given} if method == "lbfgs" else given
