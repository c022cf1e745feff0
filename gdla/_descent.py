"""Helpers shared by :func:`gdla.solve` and :func:`gdla.inverse`.

Both problems are linear least-squares problems: minimise
:math:`f(x) = \\tfrac12 \\|F(x)\\|_F^2` for an affine map ``F`` (``F(x) = Ax - b`` for a
system, ``F(X) = XA - I`` for an inverse).  Their gradient-descent and
:mod:`torch.optim` methods differ only in ``F``, its adjoint and the residual they
monitor, so the loops live here, once.  The step size comes from the problem: the
gradient of ``f`` is Lipschitz with constant :math:`L = \\sigma_{\\max}(A)^2`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from ._iterate import Outcome, autograd_on, iterate, normal_tensor, torch_optimizer_step
from ._operator import OperatorView, spectral_norm_estimate
from ._validation import OptionError

__all__ = [
    "sigma_max",
    "lipschitz_constant",
    "check_options",
    "least_squares_gd",
    "least_squares_optim",
    "least_squares",
]

Callback = Callable[[int, float], object]

#: SGD and Adam halve their learning rate after this many iterations without a new
#: best residual (see :class:`gdla._iterate.OptimizerStep`).
PLATEAU = 20


def sigma_max(A: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each matrix of the batch ``A`` (*, m, n); shape (*), real dtype."""
    return torch.linalg.matrix_norm(A, ord=2)


#: Power iterations that estimate ``sigma_max`` of a sparse or operator A.
POWER_STEPS = 30


def lipschitz_constant(A: torch.Tensor | OperatorView) -> torch.Tensor:
    """:math:`L = \\sigma_{\\max}(A)^2`, shape (*, 1, 1), with 1 where ``A`` is zero.

    ``L`` is the Lipschitz constant of the gradient of ``½‖Ax − b‖²`` and of
    ``½‖XA − I‖_F²``: the step ``1/L`` is the largest that is safe for every such
    problem.  A zero matrix gets ``L = 1`` so that nothing divides by zero (its
    gradient vanishes anyway).  For a sparse or operator ``A`` (an
    :class:`~gdla._operator.OperatorView` other than dense), :math:`\\sigma_{\\max}` is
    the lower estimate of :data:`POWER_STEPS` power iterations from a Gaussian vector
    of a generator seeded with 0 (60 products): its square is at least about
    ``1 - log(n) / 30`` times the true one, and gradient descent converges for every
    step below ``2 / L``.
    """
    if isinstance(A, OperatorView) and A.kind != "dense":
        generator = torch.Generator(device=A.device).manual_seed(0)
        sigma = spectral_norm_estimate(A, generator, POWER_STEPS)
    else:
        sigma = sigma_max(A.dense() if isinstance(A, OperatorView) else A)
    L = sigma.square()
    return torch.where(L > 0, L, torch.ones_like(L))[..., None, None]


def check_options(
    function: str, method: str, options: Mapping[str, object] | None, allowed: Iterable[str]
) -> dict[str, object]:
    """Return ``options`` as a dict, after checking that its keys are in ``allowed``.

    Raises
    ------
    OptionError
        ``options`` is not a mapping, or has a key that ``method`` does not take.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise OptionError(function, "options to be a dict or None", type(options).__name__)
    allowed = tuple(allowed)
    unknown = sorted(str(key) for key in options if key not in allowed)
    if unknown:
        takes = ", ".join(repr(a) for a in allowed) if allowed else "no options"
        raise OptionError(
            function, f"options of method {method!r}: {takes}", f"unknown {', '.join(unknown)}"
        )
    return dict(options)


def _squared_norms(F: torch.Tensor) -> torch.Tensor:
    """``|F|²`` entrywise, real, differentiable also for complex ``F``."""
    return (F * F.conj()).real


def least_squares_gd(
    function: str,
    x0: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    measure: Callable[[torch.Tensor, torch.Tensor], float],
    L: torch.Tensor,
    *,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
) -> tuple[torch.Tensor, Outcome]:
    """Plain gradient descent ``x <- x - adjoint(F(x)) / L`` on ``½‖F(x)‖²``, batch by batch.

    ``forward(x)`` is ``F(x)``, ``adjoint(F)`` applies the adjoint of its linear part
    (so that ``adjoint(F(x))`` is the gradient), ``measure(x, F(x))`` is the residual
    the stopping rule monitors, and ``L`` (shape (*, 1, 1)) the Lipschitz constant.
    Each iteration costs one ``forward`` and one ``adjoint``.
    """
    with torch.no_grad():
        x = x0.clone()
        F = forward(x)

        def step() -> float:
            nonlocal x, F
            x = x - adjoint(F) / L
            F = forward(x)
            return measure(x, F)

        outcome = iterate(function, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return x, outcome


def least_squares_optim(
    function: str,
    method: str,
    x0: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    measure: Callable[[torch.Tensor, torch.Tensor], float],
    L: torch.Tensor,
    options: Mapping[str, object] | None,
    *,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
) -> tuple[torch.Tensor, Outcome]:
    """Minimise ``Σ_batch ½‖F(x)‖² / L`` with the :mod:`torch.optim` optimiser ``method``.

    Dividing by ``L`` makes the Hessian's largest eigenvalue 1 for every matrix of
    the batch, so the optimisers' default learning rates do not depend on the scale
    of ``A``.  Only a fresh leaf copy of ``x0`` requires grad; the tensors captured
    by ``forward`` (the user's ``A`` and ``b``) must be detached by the caller.  SGD
    and Adam halve their learning rate after :data:`PLATEAU` iterations without a new
    best residual; a run that does not converge returns the best iterate seen (the
    message says so).
    """
    with autograd_on():
        x = normal_tensor(x0.detach()).clone(memory_format=torch.contiguous_format)
        x.requires_grad_(True)
        L = normal_tensor(L)

    def loss() -> torch.Tensor:
        return 0.5 * (_squared_norms(forward(x)) / L).sum()

    def residual() -> float:
        xd = x.detach()
        return measure(xd, forward(xd))

    step = torch_optimizer_step(function, loss, residual, [x], method, options, plateau=PLATEAU)
    outcome = iterate(function, step, rtol=rtol, max_iter=max_iter, callback=callback)
    if not outcome.converged:
        step.restore_best(outcome)
    return x.detach().clone(), outcome


def least_squares(
    function: str,
    method: str,
    x0: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    measure: Callable[[torch.Tensor, torch.Tensor], float],
    L: torch.Tensor,
    options: Mapping[str, object] | None,
    *,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
) -> tuple[torch.Tensor, Outcome]:
    """Run ``method``: ``"gd"`` by :func:`least_squares_gd`, else a :mod:`torch.optim` optimiser.

    ``adjoint`` maps a residual to the gradient (used by ``"gd"`` only).
    """
    if method == "gd":
        check_options(function, method, options, ())
        return least_squares_gd(
            function, x0, forward, adjoint, measure, L,
            rtol=rtol, max_iter=max_iter, callback=callback,
        )  # fmt: skip
    return least_squares_optim(
        function, method, x0, forward, measure, L, options,
        rtol=rtol, max_iter=max_iter, callback=callback,
    )  # fmt: skip
