"""Low-rank matrix completion: fill in a matrix from some of its entries.

:func:`complete` fits a rank-``r`` product ``X = L R^H`` to the observed entries
of ``M`` (those where ``mask`` is True) by minimising

.. math:: f(L, R) = \\tfrac12 \\|P_\\Omega(L R^H - M)\\|_F^2
          + \\tfrac{\\lambda}{2} (\\|L\\|_F^2 + \\|R\\|_F^2),

where :math:`P_\\Omega` keeps the observed entries and zeroes the others, with
alternating least squares (the default), gradient descent with a backtracking
line search, or a :mod:`torch.optim` optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from . import _implicit
from ._iterate import (
    Outcome,
    autograd_on,
    default_rtol,
    iterate,
    normal_tensor,
    optimizer_options,
    torch_optimizer_step,
)
from ._krylov import on_tall, subspace_kernel
from ._result import CompletionResult
from ._scaling import ldexp, power_of_two_exponent
from ._tensor import batch_max, randn_like, safe_divide, scale_columns, seeded_generator
from ._validation import (
    DtypeError,
    ShapeError,
    check_matrix,
    check_number,
    check_option,
    check_positive,
    check_rank,
    method_options,
    options_dict,
)

__all__ = ["complete", "METHODS"]

_FUNCTION = "gdla.complete"

#: The ``method=`` names accepted by :func:`complete`.
METHODS = ("als", "gd", "sgd", "adam", "lbfgs")

_MAX_ITER = {"als": 1000, "gd": 20_000, "sgd": 20_000, "adam": 20_000, "lbfgs": 2000}

#: Armijo constant and the largest number of step halvings of ``method="gd"``.
_ARMIJO = 1e-4
_HALVINGS = 60

#: Row-wise Gram matrices whose squared pivot ratio is below ``_SINGULAR * r * eps`` count
#: as singular (a row with fewer than ``r`` observed entries and ``lambda = 0``).
_SINGULAR = 100


class _Problem:
    """The normalised problem ``M / s`` with ``s = ||P_Omega(M)||_F`` for each matrix.

    Scaling ``M`` by ``s`` scales ``L`` and ``R`` by ``sqrt(s)``, the objective by
    ``s**2`` and ``lambda`` by ``s``; working on the normalised problem makes step
    sizes and learning rates independent of the scale of ``M``.
    """

    def __init__(self, M: torch.Tensor, W: torch.Tensor, reg: float) -> None:
        # s = norm * 2**-exponent, kept in two parts: s itself may not be representable
        # (entries near the largest float, or subnormal ones).
        self.exponent = power_of_two_exponent(M)  # 0 unless squares of M's entries overflow
        M = ldexp(M, self.exponent[..., None, None])
        norm = torch.linalg.matrix_norm(M)
        self.norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        self.M = M / self.norm[..., None, None]
        self.observed_norm = torch.linalg.matrix_norm(self.M)  # 1, or 0 for a zero P_Omega(M)
        self.W = W
        # lambda / s, with lambda / 2**-e computed in float64 then clamped to the dtype's range
        reg_scaled = torch.full_like(self.norm, reg, dtype=torch.float64)
        reg_scaled = ldexp(reg_scaled, self.exponent) / self.norm.double()
        self.reg = reg_scaled.clamp(max=torch.finfo(self.norm.dtype).max).to(self.norm.dtype)

    def unscale(
        self, L: torch.Tensor, R: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(X, L, R)`` of the original problem from factors of the normalised one.

        ``X = s L R^H`` and the factors times ``sqrt(s)``, ``s = norm * 2**-e``,
        applied as exact powers of two so that nothing overflows on the way.
        """
        e = self.exponent
        half, odd = e.div(2, rounding_mode="floor"), e.remainder(2)
        root = (self.norm / (1 + odd.to(self.norm.dtype))).sqrt()[..., None, None].to(L.dtype)
        X = ldexp((L @ R.mH) * self.norm[..., None, None].to(L.dtype), -e[..., None, None])
        L, R = ldexp(L * root, -half[..., None, None]), ldexp(R * root, -half[..., None, None])
        return X, L, R

    def normalise_tensors(self) -> None:
        """Make the stored tensors normal ones (call inside :func:`autograd_on`): autograd
        cannot save inference tensors, which inputs under torch.inference_mode() are."""
        self.M, self.W, self.reg = (normal_tensor(t) for t in (self.M, self.W, self.reg))

    def error(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``P_Omega(L R^H - M)``."""
        return self.W * (L @ R.mH - self.M)

    def value(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """The objective ``f``, one value per matrix of the batch."""
        fit = torch.linalg.matrix_norm(self.error(L, R)).square()
        size = torch.linalg.matrix_norm(L).square() + torch.linalg.matrix_norm(R).square()
        return (fit + self.reg * size) / 2

    def gradient(self, L: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E R + lambda L, E^H L + lambda R)`` with ``E = P_Omega(L R^H - M)``."""
        E = self.error(L, R)
        reg = self.reg[..., None, None]
        return E @ R + reg * L, E.mH @ L + reg * R

    def residual(self, L: torch.Tensor, R: torch.Tensor) -> float:
        """``||grad f||_F / (||P_Omega(M)||_F ||(L, R)||_F)``, the largest over the batch."""
        gL, gR = self.gradient(L, R)
        grad = _pair_norm(gL, gR)
        return batch_max(safe_divide(grad, self.observed_norm * _pair_norm(L, R)))


def _pair_norm(L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    return (torch.linalg.matrix_norm(L).square() + torch.linalg.matrix_norm(R).square()).sqrt()


def _check_inputs(M: object, mask: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``M`` and ``mask``; return ``P_Omega(M)`` and the mask expanded to M's shape."""
    if not isinstance(M, torch.Tensor) or M.layout != torch.strided or M.device.type == "meta":
        check_matrix(_FUNCTION, "M", M)  # raises DtypeError
    assert isinstance(M, torch.Tensor)
    if not isinstance(mask, torch.Tensor):
        raise DtypeError(_FUNCTION, "mask to be a torch.Tensor of dtype bool", type(mask).__name__)
    if mask.layout != torch.strided:
        raise DtypeError(_FUNCTION, "mask to be a dense (strided) tensor", f"layout {mask.layout}")
    if mask.dtype != torch.bool:
        raise DtypeError(_FUNCTION, "mask of dtype torch.bool", str(mask.dtype))
    if mask.device != M.device:
        raise ShapeError(_FUNCTION, f"mask on device {M.device}", str(mask.device))
    expected = f"mask of a shape broadcastable to M's shape {tuple(M.shape)}"
    try:
        shape = torch.broadcast_shapes(mask.shape, M.shape)
    except RuntimeError:
        raise ShapeError(_FUNCTION, expected, f"shape {tuple(mask.shape)}") from None
    if shape != M.shape:
        raise ShapeError(_FUNCTION, expected, f"shape {tuple(mask.shape)}")
    observed = torch.where(mask, M, torch.zeros((), dtype=M.dtype, device=M.device))
    check_matrix(_FUNCTION, "M", observed)
    return observed.detach(), mask.expand(M.shape)


def _row_solve(
    M: torch.Tensor, W: torch.Tensor, R: torch.Tensor, reg: torch.Tensor
) -> torch.Tensor:
    """The exact minimiser ``L`` of ``f`` for fixed ``R``: one ridge system per row, batched.

    Row ``l_i`` of ``L`` solves ``l_i (R^H D_i R + lambda I) = (W * M)_i R`` with
    ``D_i = diag(W_i)``: batched Cholesky, or, when some Gram matrix is (nearly)
    singular (a row with fewer than ``r`` observed entries and ``lambda = 0``), the
    pseudo-inverse for every row, which gives such rows the minimum-norm solution.
    """
    r = R.shape[-1]
    outer = R.conj().unsqueeze(-1) * R.unsqueeze(-2)  # (*, n, r, r)
    G = (W @ outer.flatten(-2)).unflatten(-1, (r, r))  # (*, m, r, r): R^H D_i R
    G = G + reg[..., None, None, None] * torch.eye(r, dtype=R.dtype, device=R.device)
    rhs = ((W * M) @ R).conj().unsqueeze(-1)  # (*, m, r, 1)
    factor, info = torch.linalg.cholesky_ex(G)
    pivots = factor.diagonal(dim1=-2, dim2=-1).real
    # (smallest / largest pivot)**2 estimates 1 / cond(G_i); near-singular rows would
    # amplify rounding errors into junk, so fall back to the minimum-norm solution.
    ratio = pivots.amin(dim=-1) / pivots.amax(dim=-1).clamp_min(torch.finfo(pivots.dtype).tiny)
    singular = ratio.square() <= _SINGULAR * r * torch.finfo(pivots.dtype).eps
    if bool((info == 0).all()) and not bool(singular.any()):
        x = torch.cholesky_solve(rhs, factor)
    else:
        x = torch.linalg.pinv(G, hermitian=True) @ rhs
    return x.squeeze(-1).conj()


Stepper = tuple[Callable[[], float], dict[str, torch.Tensor]]


def _als(problem: _Problem, L: torch.Tensor, R: torch.Tensor) -> Stepper:
    """One ALS iteration per call: exact minimisation over ``L``, then over ``R``."""
    state = {"L": L, "R": R}
    W = problem.W.to(L.dtype)

    def step() -> float:
        state["L"] = _row_solve(problem.M, W, state["R"], problem.reg)
        state["R"] = _row_solve(problem.M.mH, W.mT, state["L"], problem.reg)
        return problem.residual(state["L"], state["R"])

    return step, state


def _gd(problem: _Problem, L: torch.Tensor, R: torch.Tensor) -> Stepper:
    """One gradient step per call, its length chosen per matrix by backtracking (Armijo)."""
    state = {"L": L, "R": R}
    t = torch.ones_like(problem.reg)
    eps = torch.finfo(problem.reg.dtype).eps

    def step() -> float:
        nonlocal t
        L, R = state["L"], state["R"]
        f0 = problem.value(L, R)
        gL, gR = problem.gradient(L, R)
        g2 = _pair_norm(gL, gR).square()
        t = 2 * t
        for _ in range(_HALVINGS):
            Lc, Rc = L - t[..., None, None] * gL, R - t[..., None, None] * gR
            ok = problem.value(Lc, Rc) <= f0 - _ARMIJO * t * g2 + 10 * eps * f0.abs()
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t / 2)
        keep = ok[..., None, None]
        state["L"], state["R"] = torch.where(keep, Lc, L), torch.where(keep, Rc, R)
        return problem.residual(state["L"], state["R"])

    return step, state


def _start(
    problem: _Problem, rank: int, init: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral start (top-``rank`` SVD of ``P_Omega(M) / p``) or a scaled Gaussian start."""
    M = problem.M
    m, n = M.shape[-2:]
    if init == "random":
        c = (m * n * rank) ** -0.25
        L = c * randn_like((*M.shape[:-2], m, rank), M, generator)
        return L, c * randn_like((*M.shape[:-2], n, rank), M, generator)
    fraction = problem.W.mean(dim=(-2, -1))
    fraction = torch.where(fraction > 0, fraction, torch.ones_like(fraction))
    B = M / fraction[..., None, None].to(M.dtype)
    block = min(rank + 10, m, n)
    (U, S, V), _ = on_tall(
        B,
        lambda A: subspace_kernel(
            A, rank, block, generator, rtol=1e-3, max_iter=10, function=_FUNCTION
        ),
    )
    root = S.sqrt()
    return scale_columns(U, root), scale_columns(V, root)


def complete(
    M: torch.Tensor,
    mask: torch.Tensor,
    rank: int,
    *,
    method: str = "als",
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callable[[int, float], object] | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> CompletionResult:
    r"""Complete a matrix of low rank from the entries where ``mask`` is True.

    Fits :math:`X = L R^{\text{H}}` with :math:`L \in \mathbb{K}^{m \times r}` and
    :math:`R \in \mathbb{K}^{n \times r}` to the observed entries :math:`\Omega`
    of ``M`` by minimising

    .. math:: f(L, R) = \tfrac12 \|P_\Omega(L R^{\text{H}} - M)\|_F^2
              + \tfrac{\lambda}{2} (\|L\|_F^2 + \|R\|_F^2),

    where :math:`P_\Omega` keeps the observed entries and zeroes the others.  The
    entries of ``M`` where ``mask`` is False are ignored entirely: they may hold
    anything, NaN included.  Observed entries must be finite.  With every entry
    observed and :math:`\lambda = 0`, the minimum is the truncated SVD of ``M``
    (Eckart--Young).

    Supports input of float, double, cfloat and cdouble dtypes. Also supports
    batches of matrices, and if A is a batch of matrices then the output has the
    same batch dimensions.  (Here ``A`` is ``M``; ``mask`` may be shared by the
    batch, e.g. of shape (m, n).)  One loop advances every matrix of the batch.

    The result stays on A's device and dtype.  Random starts come from a private
    :class:`torch.Generator` seeded by ``seed``; the global random state is neither
    used nor changed.
    Inputs whose squared entries would overflow or underflow are divided by a
    power of two before iterating (exactly, as LAPACK's drivers do) and the result
    is scaled back.

    Every method works on the normalised problem :math:`M / s`,
    :math:`s = \|P_\Omega(M)\|_F`, and scales back at the end (``L`` and ``R`` by
    :math:`\sqrt{s}`), so step sizes and learning rates do not depend on the scale
    of ``M``.  All methods start from the same point: by default the spectral
    start :math:`L = U S^{1/2}`, :math:`R = V S^{1/2}` from the top-``rank`` SVD of
    :math:`P_\Omega(M)/p` (``p`` the observed fraction), computed by a few
    iterations of :func:`gdla.svd`'s subspace kernel.

    Methods (``method=``):

    ``"als"`` (default)
        Alternating least squares: each iteration minimises ``f`` exactly over
        ``L`` (one ``r x r`` ridge system per row, all solved in one batched
        Cholesky, or by pseudo-inverse when one is singular), then over ``R``.
    ``"gd"``
        Gradient descent on ``(L, R)`` with a backtracking (Armijo) line search per
        matrix: the trial step is twice the last accepted one (1 at first) and is
        halved, at most 60 times, until
        :math:`f(\text{new}) \le f - 10^{-4}\, t \|\nabla f\|^2`
        (up to 10 epsilons of ``f`` for rounding).
    ``"sgd"``, ``"adam"``, ``"lbfgs"``
        :mod:`torch.optim` on the sum of ``f`` over the batch; ``options`` other
        than ``reg`` and ``init`` are passed to the optimiser.  Each ``"lbfgs"``
        iteration is one ``step()`` of up to 20 LBFGS iterations with a
        strong-Wolfe line search, whose absolute tolerance (1e-9 on the step)
        can make it stall short of a tight ``rtol`` (reported as not converged).

    Options (all methods): ``reg`` :math:`\lambda \ge 0`, in the units of ``M``
    (default 0: plain masked least squares; a row or column with fewer than
    ``rank`` observed entries is then underdetermined, and ALS gives it the
    minimum-norm solution by pseudo-inverse.  A positive :math:`\lambda` shrinks
    the singular values of the fit by :math:`\lambda`, exactly so when every entry
    is observed); ``init``,
    ``"spectral"`` (default) or ``"random"`` (Gaussian factors of the scale of
    ``M``).

    Stopping rule: the monitored residual is the relative gradient (first-order
    optimality)

    .. math:: r = \max_{\text{batch}} \frac{\|(\nabla_L f, \nabla_R f)\|_F}
              {\|P_\Omega(M)\|_F \, \|(L, R)\|_F},
              \quad \nabla_L f = E R + \lambda L,\ \nabla_R f = E^{\text{H}} L + \lambda R,
              \ E = P_\Omega(L R^{\text{H}} - M),

    (the plain gradient norm where the denominator vanishes: nothing observed, or
    ``L = R = 0``), evaluated after each iteration.
    The iteration stops after iteration ``i`` when ``r_i <= rtol``
    (``converged=True``), when ``callback(i, r_i)`` returns True, when ``r_i`` is
    NaN or infinite, or after ``max_iter`` iterations (these three with
    ``converged=False``).  ``converged`` certifies a stationary point: for data that
    are not of low rank, or too few observed entries, it need not be the matrix
    that generated the data.

    Results are not differentiable: when M requires grad, they raise a clear error in
    backward.  Every method works under :func:`torch.inference_mode` and with
    inference tensors; the :mod:`torch.optim` methods return the best iterate seen when
    they do not converge (the message says so).

    Parameters
    ----------
    M : Tensor
        Matrix or batch of matrices of shape (*, m, n); only the observed entries are used.
    mask : Tensor
        Boolean tensor broadcastable to M's shape, True where ``M`` is observed.
    rank : int
        Rank ``r`` of the fit, ``1 <= rank <= min(m, n)``.
    method : str, optional
        ``"als"`` (default), ``"gd"``, ``"sgd"``, ``"adam"`` or ``"lbfgs"``.
    rtol : float, optional
        Tolerance of the stopping rule.  Default ``default_rtol(M.dtype)``, 100
        machine epsilons.
    max_iter : int, optional
        Largest number of iterations; default 1,000 for ``"als"``, 2,000 for
        ``"lbfgs"``, 20,000 for the others.
    callback : callable, optional
        ``callback(i, r_i)`` is called after every iteration (the last one
        included); returning True stops the iteration.
    options : dict, optional
        ``reg``, ``init`` and, for the :mod:`torch.optim` methods, the optimiser's
        arguments.  Unknown keys raise :class:`OptionError`.
    seed : int, optional
        Seed of the private generator of the random start.  Default 0.

    Returns
    -------
    CompletionResult
        With fields, in this order, ``X`` = ``L @ R^H`` of shape (*, m, n), ``L`` of
        shape (*, m, r) and ``R`` of shape (*, n, r), and the bookkeeping
        ``method``, ``nit``, ``converged``, ``message``, ``history``.  An empty
        input gives empty or zero factors with ``converged=True`` and ``nit=0``.

    Raises
    ------
    DtypeError
        ``M`` is not a float, double, cfloat or cdouble tensor, or ``mask`` is not
        a boolean tensor.
    ShapeError
        ``M`` has fewer than two dimensions, or ``mask`` does not broadcast to
        M's shape (or is on another device).
    NonFiniteError
        An observed entry of ``M`` is NaN or infinite.
    OptionError
        ``rank`` out of range, unknown ``method``, non-positive ``rtol`` or
        ``max_iter``, a negative ``seed`` or a bad ``options`` entry.

    See Also
    --------
    gdla.svd : the truncated SVD that complete matches on fully observed matrices.
    torch.linalg.svd : the direct SVD.
    torch.svd_lowrank : randomized low-rank SVD.

    Examples
    --------
    >>> import torch, gdla
    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.randn(30, 2, generator=g, dtype=torch.float64) @ torch.randn(
    ...     2, 20, generator=g, dtype=torch.float64)
    >>> mask = torch.rand(30, 20, generator=g) < 0.5
    >>> result = gdla.complete(truth.masked_fill(~mask, float("nan")), mask, rank=2)
    >>> result.converged, result.X.shape, result.L.shape, result.R.shape
    (True, torch.Size([30, 20]), torch.Size([30, 2]), torch.Size([20, 2]))
    >>> bool(torch.linalg.matrix_norm(result.X - truth) < 1e-8 * torch.linalg.matrix_norm(truth))
    True
    """
    differentiable = _implicit.wanted(M)
    M_input = M
    observed, mask = _check_inputs(M, mask)
    check_option(_FUNCTION, "method", method, METHODS)
    m, n = observed.shape[-2:]
    if min(m, n) == 0:
        check_positive(_FUNCTION, "rank", rank, integer=True)  # type: ignore[arg-type]
        rank = int(rank)
    else:
        rank = check_rank(_FUNCTION, "rank", rank, min(m, n))
    rtol = default_rtol(observed.dtype) if rtol is None else rtol
    rtol = check_positive(_FUNCTION, "rtol", rtol)
    max_iter = _MAX_ITER[method] if max_iter is None else max_iter
    max_iter = int(check_positive(_FUNCTION, "max_iter", max_iter, integer=True))
    generator = seeded_generator(_FUNCTION, seed, observed.device)

    ours = {"reg": 0.0, "init": "spectral"}
    if method in ("als", "gd"):
        opts = method_options(_FUNCTION, method, options, ours)
        optimiser_options: dict[str, Any] = {}
    else:
        given = options_dict(_FUNCTION, options)
        opts = {key: given.pop(key, value) for key, value in ours.items()}
        optimiser_options = given
    reg = check_number(_FUNCTION, "options['reg']", opts["reg"], low=0)
    check_option(_FUNCTION, "options['init']", opts["init"], ("spectral", "random"))

    batch = observed.shape[:-2]
    if observed.numel() == 0:
        L = observed.new_zeros((*batch, m, rank))
        R = observed.new_zeros((*batch, n, rank))
        return CompletionResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to compute",
            history=[],
            X=observed.clone(),
            L=L,
            R=R,
        )

    problem = _Problem(observed, mask.to(observed.real.dtype), float(reg))
    with torch.no_grad():
        L, R = _start(problem, rank, opts["init"], generator)

    outcome: Outcome
    if method in ("als", "gd"):
        with torch.no_grad():
            stepper, state = (_als if method == "als" else _gd)(problem, L, R)
            outcome = iterate(_FUNCTION, stepper, rtol=rtol, max_iter=max_iter, callback=callback)
            L, R = state["L"], state["R"]
    else:
        with autograd_on():
            problem.normalise_tensors()
            L, R = L.clone().requires_grad_(), R.clone().requires_grad_()
        step = torch_optimizer_step(
            _FUNCTION,
            lambda: problem.value(L, R).sum(),
            lambda: problem.residual(L, R),
            [L, R],
            method,
            optimizer_options(_FUNCTION, method, optimiser_options),
        )
        outcome = iterate(_FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
        if not outcome.converged:
            step.restore_best(outcome)
        L, R = L.detach().clone(), R.detach().clone()

    X, L, R = problem.unscale(L, R)
    converged, message = outcome.converged, outcome.message
    if converged and not bool(torch.isfinite(X).all()):
        converged, message = False, f"not converged: X overflows {str(X.dtype)[6:]} ({message})"
    if differentiable:
        X, L, R = _implicit.attach_unsupported(
            "gdla.complete: its results are not differentiable (a fit of low rank has no "
            "unique derivative); detach M, or differentiate through the returned factors' "
            "use instead",
            M_input,
            X,
            L,
            R,
        )
    return CompletionResult(
        method=method,
        nit=outcome.nit,
        converged=converged,
        message=message,
        history=outcome.history,
        X=X,
        L=L,
        R=R,
    )
