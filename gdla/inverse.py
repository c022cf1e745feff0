"""Matrix inverse by iteration: Newton–Schulz, gradient descent and torch.optim.

Public entry point: :func:`inverse`.  Each ``method=`` is a private function
``_method(A, rtol, max_iter, callback, options) -> (X, Outcome)``; :func:`inverse`
checks the input, dispatches, and packs the :class:`~gdla.InverseResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from . import _implicit
from ._descent import (
    Callback,
    check_options,
    least_squares,
    lipschitz_constant,
)
from ._iterate import (
    TORCH_OPTIMIZERS,
    Outcome,
    autograd_on,
    default_rtol,
    iterate,
    normal_tensor,
    stopped_by_user,
)
from ._result import InverseResult
from ._scaling import ldexp, power_of_two_exponent
from ._validation import check_matrix, check_number, check_option, check_positive

__all__ = ["inverse"]

FUNCTION = "gdla.inverse"


#: Default ``max_iter`` of each method.
DEFAULT_MAX_ITER: dict[str, int] = {
    "newton-schulz": 100,
    "gd": 10_000,
    "sgd": 10_000,
    "adam": 10_000,
    "lbfgs": 1_000,
    "original": 10_000,
}

#: Power-iteration steps per Newton–Schulz iteration (warm started, so they accumulate).
_POWER_STEPS = 4
#: Smallest lower spectral bound used for the Newton–Schulz scaling (keeps the scale <= 2/1.001).
_LOW_FLOOR = 1e-3

#: ``converged`` is False when ‖A‖_F ‖X‖_F >= _CONDITION_LIMIT / eps: X has at most ~2 digits.
_CONDITION_LIMIT = 1e-3

#: The original series' hyper-parameters and seed.
_ORIGINAL_DEFAULTS: dict[str, float] = {"lr": 0.9, "momentum": 0.9}
_ORIGINAL_SEED = 314


def _identity(A: torch.Tensor) -> torch.Tensor:
    return torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)


def _max_abs(A: torch.Tensor) -> torch.Tensor:
    """max |a_ij| of each matrix, shape (*, 1, 1), with 1 for a zero matrix."""
    c = A.abs().amax(dim=(-2, -1), keepdim=True)
    return torch.where(c > 0, c, torch.ones_like(c))


def _measure(A_norm: torch.Tensor, X: torch.Tensor, E: torch.Tensor) -> float:
    """max over the batch of ‖E‖_F / (‖A‖_F ‖X‖_F + √n) with E = XA − I."""
    n = X.shape[-1]
    X_norm = torch.linalg.matrix_norm(X)
    return float((torch.linalg.matrix_norm(E) / (A_norm * X_norm + math.sqrt(n))).amax())


def _newton_schulz(
    A: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """Scaled Newton–Schulz iteration ``X <- s X (2I - s A X)``, two matmuls per iteration.

    ``X0 = A^H / β`` with ``β = min(‖A^H A‖_F, ‖A^H A‖_1) >= σ_max(A)²``, so that the
    eigenvalues of the Hermitian matrix ``R = X A`` lie in ``(0, 1]``.  The update
    maps each eigenvalue λ of R to ``sλ(2 - sλ)``; with the eigenvalues in
    ``[l, 1]`` the scale ``s = 2 / (1 + l)`` maps them into ``[4l/(1+l)², 1]``: the
    smallest one grows about 4 times per iteration instead of 2 for the plain
    iteration (s = 1), then convergence is quadratic.  ``l`` is estimated by a few
    warm-started power-iteration steps on ``I - R`` (matrix-vector products); an
    estimate above the true ``l`` only slows the iteration a little, never breaks it,
    and s -> 1 as X converges, so the fixed point is the inverse.
    """
    check_options(FUNCTION, "newton-schulz", options, ())
    # Iterate on A / c, c = max |a_ij|, so that A^H A neither overflows nor underflows;
    # the monitored residual is invariant under this scaling, and X = X_scaled / c.
    c = _max_abs(A)
    A = A / c
    eye = _identity(A)
    A_norm = torch.linalg.matrix_norm(A)
    G = A.mH @ A
    beta = torch.minimum(torch.linalg.matrix_norm(G), torch.linalg.matrix_norm(G, ord=1))
    beta = torch.where(beta > 0, beta, torch.ones_like(beta))[..., None, None]
    X = A.mH / beta
    R = G / beta
    generator = torch.Generator(device=A.device).manual_seed(0)
    v = torch.randn(*A.shape[:-1], 1, dtype=A.dtype, device=A.device, generator=generator)
    tiny = torch.finfo(A_norm.dtype).tiny

    def step() -> float:
        nonlocal X, R, v
        for _ in range(_POWER_STEPS):
            v = v - R @ v
            v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(tiny)
        rayleigh = (v.mH @ (v - R @ v)).real
        low = (1 - rayleigh).clamp(_LOW_FLOOR, 1)
        s = 2 / (1 + low)
        X = (2 * s) * X - s.square() * (R @ X)
        R = X @ A
        return _measure(A_norm, X, R - eye)

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X / c, outcome


def _least_squares(
    method: str,
) -> Callable[
    [torch.Tensor, float, int, Callback | None, Mapping[str, object] | None],
    tuple[torch.Tensor, Outcome],
]:
    """The ``gd`` / torch.optim methods on ``f(X) = ½‖XA − I‖_F²``, from ``X0 = A^H / L``."""

    def run(
        A: torch.Tensor,
        rtol: float,
        max_iter: int,
        callback: Callback | None,
        options: Mapping[str, object] | None,
    ) -> tuple[torch.Tensor, Outcome]:
        if method in TORCH_OPTIMIZERS:  # autograd cannot save inference tensors
            with autograd_on():
                A = normal_tensor(A)
        eye = _identity(A)
        A_norm = torch.linalg.matrix_norm(A)
        L = lipschitz_constant(A)
        X0 = A.mH / L

        def forward(X: torch.Tensor) -> torch.Tensor:
            return X @ A - eye

        def measure(X: torch.Tensor, E: torch.Tensor) -> float:
            return _measure(A_norm, X, E)

        return least_squares(
            FUNCTION, method, X0, forward, lambda E: E @ A.mH, measure, L, options,
            rtol=rtol, max_iter=max_iter, callback=callback,
        )  # fmt: skip

    return run


def _original_hyperparameters(options: Mapping[str, object] | None) -> tuple[float, float]:
    """``lr`` (> 0) and ``momentum`` (in [0, 1)) of ``"original"``: the series' or ``options``'."""
    given = {
        **_ORIGINAL_DEFAULTS,
        **check_options(FUNCTION, "original", options, _ORIGINAL_DEFAULTS),
    }
    lr = check_number(FUNCTION, "options['lr']", given["lr"], low=0, low_inclusive=False)
    momentum = check_number(
        FUNCTION, "options['momentum']", given["momentum"], low=0, high=1, high_inclusive=False
    )
    return float(lr), float(momentum)


def _original(
    A: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, Outcome]:
    """The original series' loop: heavy-ball descent on ``mean(|XA − I|²)``.

    The original wrote ``loss.backward(); p -= lr * p.grad; p.grad *= momentum``, so
    the gradients accumulate as ``g <- ∇f(X) + momentum g`` and ``X <- X - lr g``:
    exactly ``torch.optim.SGD(lr=lr, momentum=momentum)``.  The gradient
    ``∇f(X) = (2/n²)(XA − I)A^H`` is written out here, and the monitored residual is
    the loss itself, after each update.
    """
    lr, momentum = _original_hyperparameters(options)
    n = A.shape[-1]
    eye = _identity(A)
    generator = torch.Generator().manual_seed(_ORIGINAL_SEED)
    start = torch.rand(n, n, generator=generator).to(dtype=A.dtype, device=A.device)
    X = start.expand(A.shape).clone()
    E = X @ A - eye
    velocity = torch.zeros_like(X)

    def step() -> float:
        nonlocal X, E, velocity
        velocity = (2 / n**2) * (E @ A.mH) + momentum * velocity
        X = X - lr * velocity
        E = X @ A - eye
        return float((E * E.conj()).real.mean(dim=(-2, -1)).amax())

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X, outcome


_METHODS = {
    "newton-schulz": _newton_schulz,
    "gd": _least_squares("gd"),
    **{name: _least_squares(name) for name in TORCH_OPTIMIZERS},
    "original": _original,
}


def inverse(
    A: torch.Tensor,
    *,
    method: str = "newton-schulz",
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callback | None = None,
    options: Mapping[str, object] | None = None,
) -> InverseResult:
    r"""Compute the inverse of a square matrix by iteration.

    Supports input of float, double, cfloat and cdouble dtypes. Also supports batches of
    matrices, and if A is a batch of matrices then the output has the same batch dimensions.
    The result stays on A's device and dtype.
    Inputs whose squared entries would overflow or underflow are divided by a
    power of two before iterating (exactly, as LAPACK's drivers do) and the result
    is scaled back.

    Methods:

    - ``"newton-schulz"`` (default): the scaled Newton–Schulz iteration
      :math:`X_{k+1} = s_k X_k (2I - s_k A X_k)` from :math:`X_0 = A^H / \beta`,
      :math:`\beta = \min(\|A^HA\|_F, \|A^HA\|_1) \ge \sigma_{\max}(A)^2`.  The scale
      :math:`s_k = 2/(1 + l_k)`, with :math:`l_k` a power-iteration estimate of the
      smallest eigenvalue of :math:`X_k A`, makes that eigenvalue grow about 4 times
      per iteration (2 for plain Newton–Schulz) until quadratic convergence sets in:
      about :math:`\log_4 \kappa(A)^2 + 5` iterations of two matrix products each.
    - ``"gd"``: gradient descent on :math:`f(X) = \tfrac12 \|XA - I\|_F^2` with step
      :math:`1/L`, :math:`L = \sigma_{\max}(A)^2` (computed with
      ``torch.linalg.matrix_norm(A, ord=2)``), from :math:`X_0 = A^H / L`.  Its error
      contracts by :math:`1 - 1/\kappa(A)^2` per iteration: only for well-conditioned A.
    - ``"sgd"``, ``"adam"``, ``"lbfgs"``: :class:`torch.optim.SGD`, :class:`~torch.optim.Adam`,
      :class:`~torch.optim.LBFGS` on :math:`f(X)/L` (summed over the batch), from the
      same start; ``options`` go to the optimiser's constructor (defaults: SGD
      ``lr=0.1, momentum=0.9``; Adam ``lr=1e-2``; LBFGS ``lr=1, max_iter=1,
      max_eval=25, history_size=20, line_search_fn="strong_wolfe"`` with its own
      tolerances off), with the same learning-rate halving, LBFGS restarts and best
      iterate as :func:`gdla.solve`'s.
    - ``"original"``: the loop of the original 2020 blog series, kept to reproduce it:
      heavy-ball descent on the mean squared error :math:`\operatorname{mean}|XA - I|^2`
      with ``lr=0.9`` and ``momentum=0.9`` (``options`` may change both), starting from
      ``torch.manual_seed(314); torch.rand(n, n)`` (drawn on a private generator, cast
      to A's dtype).  It is ``torch.optim.SGD(lr, momentum)`` on that loss.

    Stopping rule.  After each iteration the monitored residual
    :math:`\eta = \max_{\text{batch}} \|XA - I\|_F / (\|A\|_F \|X\|_F + \sqrt n)`, the
    normwise backward error of X as a solution of :math:`XA = I`, is appended to
    ``history``; the iteration stops with ``converged=True`` as soon as
    :math:`\eta \le` ``rtol``.  For ``method="original"`` the monitored residual is
    instead the original's loss :math:`\max_{\text{batch}} \operatorname{mean}|XA - I|^2`
    (so ``history`` is the original's loss curve) and the default ``rtol`` is
    ``default_rtol(dtype)**2``.  It stops with ``converged=False`` after ``max_iter``
    iterations, when the residual becomes NaN or infinite, or when ``callback``
    returns True.  Finally ``converged`` is set to False when the Frobenius condition
    number estimate :math:`\|A\|_F \|X\|_F \ge 10^{-3}/\varepsilon` (machine epsilon
    of the dtype: 4.5e12 in double, 8.4e3 in float): A is then singular or so badly
    conditioned that X has at most about two correct digits (its relative error is
    about :math:`\kappa(A)\,\varepsilon`; a singular A's iterates stall there too).
    A singular or too badly conditioned A thus always gives ``converged=False``, never
    silently wrong output; the ``message`` says why.  An X that overflows the dtype is
    never converged.

    Gradients: when A requires grad, X is differentiable by implicit differentiation
    (:math:`dX = -X\,dA\,X`, so :math:`\bar A = -X^H \bar X X^H`), not through the
    iterations.  It works under :func:`torch.inference_mode` and with inference tensors.

    Parameters
    ----------
    A : Tensor
        Square matrices of shape (*, n, n).
    method : str
        ``"newton-schulz"`` (default), ``"gd"``, ``"sgd"``, ``"adam"``, ``"lbfgs"`` or
        ``"original"``.
    rtol : float, optional
        Tolerance of the stopping rule; default ``gdla._iterate.default_rtol(A.dtype)``
        (100 machine epsilons: 2.2e-14 in double, 1.2e-5 in float), squared for
        ``"original"``.
    max_iter : int, optional
        Largest number of iterations.  Defaults: ``"newton-schulz"`` 100, ``"lbfgs"``
        1,000, ``"gd"``, ``"sgd"``, ``"adam"`` and ``"original"`` 10,000.
    callback : callable, optional
        Called as ``callback(k, residual)`` after every iteration ``k`` (the last one
        included); returning True stops.
    options : dict, optional
        Optimiser keyword arguments for ``"sgd"``, ``"adam"``, ``"lbfgs"``; ``lr`` and
        ``momentum`` for ``"original"``; no options for the other methods.

    Returns
    -------
    InverseResult
        ``X`` of shape (*, n, n), the approximate inverse, with ``method``, ``nit``,
        ``converged``, ``message`` and ``history`` (the monitored residual after each
        iteration).  An empty A (n = 0 or an empty batch) gives an empty ``X`` with
        ``converged=True`` and ``nit=0``.

    Raises
    ------
    ShapeError
        A is not a (batch of) square matrices.
    DtypeError
        A is not a float32, float64, complex64 or complex128 tensor.
    NonFiniteError
        A has NaN or infinite entries.
    OptionError
        Unknown ``method``, bad ``rtol``, ``max_iter`` or ``options``.

    See Also
    --------
    torch.linalg.inv : the direct (LU-based) inverse, the oracle of the tests.
    gdla.solve : solve ``Ax = b`` without forming the inverse, usually preferable.

    Examples
    --------
    >>> import torch
    >>> from gdla import inverse
    >>> from gdla.matrices import with_condition_number
    >>> A = with_condition_number(5, 100.0, seed=0)
    >>> result = inverse(A)
    >>> result.method, result.converged, result.nit <= 20
    ('newton-schulz', True, True)
    >>> bool(torch.allclose(result.X, torch.linalg.inv(A), rtol=1e-10, atol=1e-12))
    True
    """
    A = check_matrix(FUNCTION, "A", A, square=True)
    check_option(FUNCTION, "method", method, _METHODS)
    if rtol is None:
        rtol = default_rtol(A.dtype) ** (2 if method == "original" else 1)
    rtol = check_positive(FUNCTION, "rtol", rtol)
    if max_iter is None:
        max_iter = DEFAULT_MAX_ITER[method]
    max_iter = int(check_positive(FUNCTION, "max_iter", max_iter, integer=True))
    differentiable = _implicit.wanted(A)
    A_input, A = A, A.detach()
    if A.numel() == 0:
        return InverseResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to invert",
            history=[],
            X=torch.empty_like(A),
        )
    exponent = power_of_two_exponent(A)[..., None, None]  # 0 unless squares would overflow
    with torch.no_grad():
        X, outcome = _METHODS[method](ldexp(A, exponent), rtol, max_iter, callback, options)
    X = ldexp(X, exponent)  # inverse(2^e A) = 2^-e inverse(A)
    converged, message = outcome.converged, outcome.message
    # ‖A‖_F ‖X‖_F, computed as ‖A/c‖_F ‖cX‖_F with c = max |a_ij| so that it cannot overflow
    c = _max_abs(A)
    norms = torch.linalg.matrix_norm(A / c) * torch.linalg.matrix_norm(X * c)
    condition = float(norms.amax().nan_to_num(math.inf))
    limit = _CONDITION_LIMIT / torch.finfo(A.dtype).eps
    if condition >= limit:
        converged = False
        message = (
            f"not converged: A is singular or too badly conditioned for {str(A.dtype)[6:]}: "
            f"‖A‖_F ‖X‖_F = {condition:.3g} >= {limit:.3g}, X is unreliable ({message})"
        )
    elif not bool(torch.isfinite(X).all()):
        converged = False
        message = f"not converged: X overflows {str(A.dtype)[6:]} ({message})"
    elif not converged and not stopped_by_user(outcome):
        message += (
            "; the iteration did not reach rtol: A may be singular or too badly conditioned "
            "for this method, or max_iter too small"
        )
    if differentiable:  # dX = -X dA X
        X = _implicit.attach_inverse(A_input, X)
    return InverseResult(
        method=method,
        nit=outcome.nit,
        converged=converged,
        message=message,
        history=outcome.history,
        X=X,
    )
