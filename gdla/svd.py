"""Singular value decomposition by iteration and by gradient descent.

:func:`svd` computes the ``k`` largest singular triplets of a matrix (or of every
matrix of a batch) with one of several ``method=`` choices, from the strongest to
the original blog series' formulation, so that the book can compare them:

``"lanczos"`` (default)
    Thick-restart Lanczos, one vector per step (:mod:`gdla._krylov`): on
    ``A^H A`` with the short side's basis while squaring the spectrum costs no
    accuracy, else Golub--Kahan--Lanczos bidiagonalization; on small matrices
    one block spans the space.  Where subspace iteration keeps only its latest block, it keeps
    every block, and the Rayleigh--Ritz step picks the best triplets in the span
    of all of them (a Krylov space), as conjugate gradients does for gradient
    descent.
``"subspace"``
    Block subspace iteration with Rayleigh--Ritz.  It is the infinite step size
    limit of projected gradient ascent on :math:`\\tfrac12\\|A^H U\\|_F^2` over
    orthonormal ``U``: the step :math:`U \\mapsto \\operatorname{qf}(U + t A A^H U)`
    becomes :math:`\\operatorname{qf}(A A^H U)` as :math:`t \\to \\infty`, where
    :math:`\\operatorname{qf}` is the Q factor of a QR decomposition.
``"randomized"``
    The randomized SVD of Halko, Martinsson and Tropp (2011): the same kernel, but
    a fixed small number of passes over ``A`` instead of iterating to tolerance.
``"riemannian"``
    Riemannian gradient ascent on two Stiefel manifolds with a step size derived
    from the problem.
``"orthogonal"``
    The Riemannian method's objective, minimised by a :mod:`torch.optim`
    optimiser, with ``U`` and ``V`` kept orthonormal by
    :func:`torch.nn.utils.parametrizations.orthogonal`.
``"penalty"``
    The original series' formulation: ``A ~ U diag(s**2) V^H`` with soft
    orthogonality penalties, trained by a hand-written heavy-ball loop.
``"sgd"``, ``"adam"``, ``"lbfgs"``
    The same penalty loss, minimised by a :mod:`torch.optim` optimiser.

The private helpers at the top (option checks, seeded random starts, the sign
convention, the relative SVD residual, the subspace kernel) are shared with
:mod:`gdla.complete`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch.nn.utils import parametrizations

from . import _implicit
from ._iterate import (
    LBFGS_DEFAULTS,
    TORCH_OPTIMIZERS,
    Outcome,
    autograd_on,
    default_rtol,
    iterate,
    normal_tensor,
    optimizer_options,
    torch_optimizer_step,
)
from ._krylov import (
    default_basis,
    lanczos_block,
    lanczos_single,
    on_tall,
    subspace_kernel,
    svd_residual,
)
from ._operator import OperatorView, as_operator, rescaled, spectral_norm_estimate
from ._result import SVDResult
from ._rows import ProcessGroup, RowSplit
from ._scaling import ldexp
from ._tensor import (
    batch_max,
    batch_min,
    qf,
    randn_like,
    safe_divide,
    scale_columns,
    seeded_generator,
)
from ._validation import (
    OptionError,
    check_count,
    check_number,
    check_option,
    check_positive,
    check_rank,
    check_seed,
    method_options,
    options_dict,
)

__all__ = ["svd", "METHODS"]

_FUNCTION = "gdla.svd"

#: The ``method=`` names accepted by :func:`svd`.
METHODS = (
    "lanczos",
    "subspace",
    "riemannian",
    "orthogonal",
    "randomized",
    "penalty",
    "sgd",
    "adam",
    "lbfgs",
)

#: The methods that need only products with A: they accept sparse tensors and
#: :class:`gdla.LinearOperator` as well as dense tensors.
OPERATOR_METHODS = ("lanczos", "subspace", "randomized", "riemannian")

#: Default ``max_iter`` of each method.
_MAX_ITER = {
    "lanczos": 1000,
    "subspace": 1000,
    "randomized": 3,
    "riemannian": 20_000,
    "orthogonal": 5_000,
    "penalty": 20_000,
    "sgd": 20_000,
    "adam": 20_000,
    "lbfgs": 2000,
}

Callback = Callable[[int, float], object]
Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _canonical(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> Factors:
    """Sort the triplets by descending ``S`` and apply the sign convention; return (U, S, Vh).

    Sign convention: in each column of ``U`` the entry of largest magnitude (the
    first one on ties) is made real positive, and the matching column of ``V`` is
    multiplied by the same phase, so that ``U diag(S) V^H`` is unchanged.
    """
    S, order = torch.sort(S, dim=-1, descending=True, stable=True)
    index = order.unsqueeze(-2)
    U = U.gather(-1, index.expand(U.shape))
    V = V.gather(-1, index.expand(V.shape))
    pivot = U.gather(-2, U.abs().argmax(dim=-2, keepdim=True))
    phase = torch.sgn(pivot)
    phase = torch.where(phase == 0, torch.ones_like(phase), phase).conj()
    return U * phase, S, (V * phase).mH.contiguous()


# ----------------------------------------------------------------------------
# The methods of svd; each returns unsorted factors (U, S, V) and the outcome.
# ----------------------------------------------------------------------------


def _solve_subspace(
    A: OperatorView,
    k: int,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    opts: dict[str, Any],
    generator: torch.Generator,
) -> tuple[Factors, Outcome]:
    p = check_count(_FUNCTION, "options['oversampling']", opts["oversampling"])
    block = min(k + p, *A.shape[-2:])
    return on_tall(
        A,
        lambda B: subspace_kernel(
            B, k, block, generator, rtol=rtol, max_iter=max_iter, callback=callback
        ),
    )


def _solve_lanczos(
    A: OperatorView,
    k: int,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    opts: dict[str, Any],
    generator: torch.Generator,
) -> tuple[Factors, Outcome]:
    size = min(A.shape[-2:])
    if opts["oversampling"] is None and k + 2 * min(k + 10, size) <= size:
        # Default: one vector per step (gdla._krylov), the fewest products; smaller
        # matrices take the block path below, whose first block spans the whole space.
        basis = opts["max_basis"]
        basis = default_basis(k, size) if basis is None else check_count(
            _FUNCTION, "options['max_basis']", basis)  # fmt: skip
        return on_tall(A, lambda T: lanczos_single(
            T, k, basis, generator, rtol=rtol, max_iter=max_iter, callback=callback))  # fmt: skip
    p = check_count(_FUNCTION, "options['oversampling']", opts["oversampling"] or 10)
    block = min(k + p, size)
    # The next block must fit beside the largest basis kept at a restart (k vectors):
    # when it cannot, one block spanning the whole space makes the first iteration exact.
    if k + 2 * block > size:
        block = size
    largest = size - block if block < size else size
    if opts["max_basis"] is None:
        max_basis = min(largest, k + 3 * block)
    else:
        max_basis = check_count(_FUNCTION, "options['max_basis']", opts["max_basis"])
        if max_basis < min(k + block, size):
            raise OptionError(
                _FUNCTION,
                f"options['max_basis'] >= k + block = {k + block} (block = k + oversampling)",
                repr(max_basis),
            )
        max_basis = min(max_basis, largest)
    return on_tall(
        A,
        lambda T: lanczos_block(
            T, k, block, max_basis, generator, rtol=rtol, max_iter=max_iter, callback=callback
        ),
    )


def _norm2_estimate(
    A: torch.Tensor | OperatorView, generator: torch.Generator, steps: int = 20
) -> torch.Tensor:
    """A lower estimate of ``||A||_2`` (shape (*)) by ``steps`` power iterations on ``A^H A``."""
    return spectral_norm_estimate(A, generator, steps)


def _inverse_norm2(A: torch.Tensor | OperatorView, generator: torch.Generator) -> torch.Tensor:
    """``1 / sigma`` for the estimate ``sigma`` of ``||A||_2`` (shape (*); 1 for a zero A):
    the step size of the trace objective's gradient ascent, or the scale of its loss."""
    sigma = _norm2_estimate(A, generator)
    return safe_divide(torch.ones_like(sigma), sigma)


def _trace_start(
    A: torch.Tensor, k: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal Gaussian starts ``U`` (*, m, k), ``V`` (*, n, k) and the weights
    ``N = diag(k, k-1, ..., 1) / k`` (as a vector) of the trace objective."""
    m, n = A.shape[-2:]
    batch = A.shape[:-2]
    U = qf(randn_like((*batch, m, k), A, generator))
    V = qf(randn_like((*batch, n, k), A, generator))
    weights = (k - torch.arange(k, dtype=A.real.dtype, device=A.device)) / k
    return U, V, weights


def _positive_phase(U: torch.Tensor, d: torch.Tensor, V: torch.Tensor) -> Factors:
    """``(U, |d|, V)`` with ``v_j`` rotated by the phase of ``d_j = u_j^H A v_j``, so that
    the singular value estimates ``|d|`` are real and non-negative."""
    phase = torch.sgn(d)
    phase = torch.where(phase == 0, torch.ones_like(phase), phase)
    return U, d.abs(), V * phase.conj().unsqueeze(-2)


def _solve_riemannian(
    A: OperatorView,
    k: int,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    opts: dict[str, Any],
    generator: torch.Generator,
) -> tuple[Factors, Outcome]:
    real = A.real_dtype
    U, V, weights = _trace_start(A.like(), k, generator)  # A's shape, dtype and device
    if opts["step"] is None:
        step_size = _inverse_norm2(A, generator)[..., None, None]
    else:
        check_positive(_FUNCTION, "options['step']", opts["step"])
        step_size = torch.full((), float(opts["step"]), dtype=real, device=A.device)
    norm = A.fro_norm
    AV, AhU = A.matmul(V), A.rmatmul(U)
    d = (U.conj() * AV).sum(dim=-2)

    def herm(X: torch.Tensor) -> torch.Tensor:
        return (X + X.mH) / 2

    def step() -> float:
        nonlocal U, V, AV, AhU, d
        GU, GV = AV * weights, AhU * weights
        xi_U = GU - U @ herm(U.mH @ GU)
        xi_V = GV - V @ herm(V.mH @ GV)
        U = qf(U + step_size * xi_U)
        V = qf(V + step_size * xi_V)
        AV, AhU = A.matmul(V), A.rmatmul(U)
        d = (U.conj() * AV).sum(dim=-2)
        return batch_max(svd_residual(AV, AhU, U, d, V, norm))

    outcome = iterate(_FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return _positive_phase(U, d, V), outcome


def _solve_orthogonal(
    A: torch.Tensor,
    k: int,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: object,
    generator: torch.Generator,
) -> tuple[Factors, Outcome]:
    given = options_dict(_FUNCTION, options)
    optimizer = given.pop("optimizer", "sgd")
    check_option(_FUNCTION, "options['optimizer']", optimizer, TORCH_OPTIMIZERS)
    defaults: dict[str, dict[str, object]] = {
        "sgd": {"lr": 0.5, "momentum": 0.9},
        "adam": {},
        "lbfgs": dict(LBFGS_DEFAULTS),
    }
    U0, V0, weights = _trace_start(A, k, generator)
    scale = _inverse_norm2(A, generator)
    holder = torch.nn.Module()
    # torch's parametrization completes a non-square start to a square orthogonal
    # matrix with torch.randn, from the global RNG: complete it here, from the private
    # generator, and register square matrices whose leading k columns are U and V.
    # With Householder reflectors (the real case) the trailing columns of the
    # parameter do not move the leading ones, so this is the same optimisation.
    holder.U = torch.nn.Parameter(_complete_basis(U0, generator))
    holder.V = torch.nn.Parameter(_complete_basis(V0, generator))
    orthogonal_map = None if A.is_complex() else "householder"
    parametrizations.orthogonal(holder, "U", orthogonal_map=orthogonal_map)
    parametrizations.orthogonal(holder, "V", orthogonal_map=orthogonal_map)
    params = list(holder.parameters())
    for p in params:  # stored transposed; torch's LBFGS needs contiguous gradients
        p.data = p.data.contiguous()
    norm = torch.linalg.matrix_norm(A)
    latest: dict[str, torch.Tensor] = {}
    best: dict[str, Any] = {"residual": math.inf, "iteration": 0}

    def factors() -> tuple[torch.Tensor, torch.Tensor]:
        # Each access maps the free parameters to orthonormal U and V anew.
        U, V = cast(torch.Tensor, holder.U), cast(torch.Tensor, holder.V)
        return U[..., :k], V[..., :k]

    def loss() -> torch.Tensor:
        U, V = factors()
        d = (U.conj() * (A @ V)).sum(dim=-2).real
        return -((d * weights).sum(dim=-1) * scale).sum()

    def residual() -> float:
        U, V = factors()
        AV, AhU = A @ V, A.mH @ U
        d = (U.conj() * AV).sum(dim=-2)
        latest.update(U=U, V=V, d=d)
        value = batch_max(svd_residual(AV, AhU, U, d, V, norm))
        if value < best["residual"]:
            best.update(residual=value, iteration=step.iteration, U=U, V=V, d=d)
        return value

    step = torch_optimizer_step(
        _FUNCTION, loss, residual, params, optimizer, {**defaults[optimizer], **given}
    )
    recentred = 0

    def step_and_recentre() -> float:
        # The parametrization is a chart centred at its base (the start): orthonormal
        # factors far from the base, near a reflection of its columns, need large free
        # parameters, where the chart's derivative shrinks like 1 / |parameter|^2 and
        # the descent crawls (a stall at residual 0.35 on a rank-2 8 x 6 matrix).  So,
        # as in dynamic trivializations (Lezcano-Casado, 2019), the chart is moved to
        # the current point (the parameter back to its centre, the factors unchanged)
        # when an entry of the parameter leaves [-4, 4], and the optimiser restarts.
        nonlocal recentred
        value = step()
        with torch.no_grad():
            for name in ("U", "V"):
                original = getattr(holder.parametrizations, name).original
                centre = -torch.eye(original.shape[-1], dtype=original.dtype, device=A.device)
                if float((original - centre).abs().amax()) > _RECENTRE:
                    setattr(holder, name, getattr(holder, name).detach().clone())
                    recentred += 1
                    step.optimizer = step._new_optimizer()
        return value

    outcome = iterate(_FUNCTION, step_and_recentre, rtol=rtol, max_iter=max_iter, callback=callback)
    if recentred:
        times = "once" if recentred == 1 else f"{recentred} times"
        outcome.message += f"; the parametrization was re-centred {times}"
    if not outcome.converged and best["iteration"] not in (0, outcome.nit):
        latest = best
        outcome.message += (
            f"; returned the best iterate, of iteration {best['iteration']} "
            f"(residual {best['residual']:.3g}), not the last"
        )
    U, V, d = (latest[key].detach() for key in ("U", "V", "d"))
    return _positive_phase(U, d, V), outcome


#: ``"orthogonal"`` moves its parametrization's centre to the current factors when an
#: entry of a free parameter leaves [-_RECENTRE, _RECENTRE] (see _solve_orthogonal).
_RECENTRE = 4.0


def _complete_basis(Q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A square unitary matrix (*, m, m) whose leading columns are the orthonormal ``Q``
    (*, m, k), completed from Gaussian columns of the private ``generator``."""
    m, k = Q.shape[-2:]
    if m == k:
        return Q
    N = randn_like((*Q.shape[:-2], m, m - k), Q, generator)
    return qf(torch.cat([Q, N], dim=-1))


def _penalty_start(A: torch.Tensor, k: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Leaf parameters ``U = rand(m, k)``, ``s = rand(k)``, ``V = rand(n, k)``, in that order.

    Drawn in float32 as the original did (``manual_seed(314)`` there is ``seed=314``
    here), then cast to A's dtype; complex starts have a zero imaginary part.
    """
    m, n = A.shape[-2:]
    batch = A.shape[:-2]

    def draw(*shape: int, dtype: torch.dtype) -> torch.Tensor:
        x = torch.rand((*batch, *shape), generator=generator, device=A.device)
        return x.to(dtype).requires_grad_()

    return [draw(m, k, dtype=A.dtype), draw(k, dtype=A.real.dtype), draw(n, k, dtype=A.dtype)]


def _penalty_loss(
    A: torch.Tensor, U: torch.Tensor, s: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """The original loss, one value per matrix of the batch (shape (*)).

    ``mse(U diag(s**2) V^H, A) + mse(U^H U, I) / 100 + mse(V V^H, I) / 100`` where
    ``mse`` is the mean of the squared moduli; the last term is ``mse(V^H V, I)``
    when ``V`` is not square (k < n, a case the original did not have).
    """

    def mse(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        return (X - Y).abs().square().mean(dim=(-2, -1))

    k = U.shape[-1]
    eye_k = torch.eye(k, dtype=A.dtype, device=A.device)
    fit = mse(scale_columns(U, s.square()) @ V.mH, A)
    gram_V = V @ V.mH if V.shape[-2] == k else V.mH @ V  # the original's V V^T when square
    return fit + mse(U.mH @ U, eye_k) / 100 + mse(gram_V, eye_k) / 100


#: How ``"adam"`` on the penalty loss waits before halving its rate: the residual of the
#: penalty family's factors is not monotone while the columns sort themselves out.
_PENALTY_PLATEAU = 200


def _escape_traps(A: torch.Tensor, U: torch.Tensor, s: torch.Tensor, V: torch.Tensor) -> bool:
    """Turn ``v_j`` by the phase of ``c_j = u_j^H A v_j`` and set ``s_j^2 = |c_j|`` for
    every column caught in the penalty loss's trap; return whether any was.

    ``s_j^2`` cannot become negative: a column whose ``Re c_j < 0`` pulls ``s_j`` to 0,
    where the gradients of ``u_j`` and ``v_j`` (proportional to ``s_j^2``) vanish.  For
    orthonormal factors, turning ``v_j`` so that ``c_j > 0`` lowers the fit term by
    ``4 s_j^2 |c_j|`` (over ``m n``) and ``s_j^2 = |c_j|`` is then its best value.
    """
    with torch.no_grad():
        c = (U.conj() * (A @ V)).sum(dim=-2)  # (*, k)
        trapped = (c.real < 0) & (s.square() < c.abs() / 10)
        if not bool(trapped.any()):
            return False
        phase = torch.where(trapped, torch.sgn(c).conj(), torch.ones_like(c))
        V.mul_(phase.unsqueeze(-2))
        s.copy_(torch.where(trapped, c.abs().sqrt(), s))
    return True


def _solve_penalty_family(
    method: str,
    A: torch.Tensor,
    k: int,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: object,
    generator: torch.Generator,
) -> tuple[Factors, Outcome]:
    given = options_dict(_FUNCTION, options)
    monitor = given.pop("monitor", "residual")
    check_option(_FUNCTION, "options['monitor']", monitor, ("residual", "loss"))
    params = _penalty_start(A, k, generator)
    U, s, V = params
    norm = torch.linalg.matrix_norm(A)
    if monitor == "loss":
        scale = A.abs().square().mean(dim=(-2, -1))
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        threshold = rtol**2 * batch_min(scale)
    else:
        threshold = rtol

    def residual() -> float:  # of the current triplets (u_j, s_j^2, v_j)
        with torch.no_grad():
            d = s.square().to(A.dtype)
            return batch_max(svd_residual(A @ V, A.mH @ U, U, d, V, norm))

    notes: list[str] = []
    if method == "penalty":
        opts = method_options(_FUNCTION, method, given, {"lr": 0.9, "momentum": 0.9})
        check_positive(_FUNCTION, "options['lr']", opts["lr"])
        momentum = check_number(_FUNCTION, "options['momentum']", opts["momentum"], low=0)
        lr = float(opts["lr"])
        best: dict[str, Any] = {"value": math.inf, "iteration": 0, "params": []}

        def penalty_step() -> float:
            losses = _penalty_loss(A, U, s, V)
            value = batch_max(losses.detach()) if monitor == "loss" else residual()
            best["iteration"] += 1
            if value < best["value"]:  # (the iteration counts every call)
                best.update(value=value, at=best["iteration"])
                best["params"] = [p.detach().clone() for p in params]
            if value <= threshold:
                return value  # converged: keep the factors that this value describes
            losses.sum().backward()
            with torch.no_grad():
                for p in params:
                    assert p.grad is not None
                    p -= lr * p.grad
                    p.grad *= momentum
            if monitor == "residual" and _escape_traps(A, U, s, V):
                best["escapes"] = best.get("escapes", 0) + 1
                for p in params:  # the momentum pointed into the trap
                    assert p.grad is not None
                    p.grad.zero_()
            return value

        outcome = iterate(
            _FUNCTION, penalty_step, rtol=threshold, max_iter=max_iter, callback=callback
        )
        if best.get("escapes"):
            outcome.message += f"; {best['escapes']} escapes from the s_j = 0 trap"
        if monitor == "residual" and not outcome.converged and best["params"]:
            with torch.no_grad():  # the last update was never measured: return the best
                for p, kept in zip(params, best["params"], strict=True):
                    p.copy_(kept)
            outcome.message += (
                f"; returned the best iterate, of iteration {best['at']} "
                f"(residual {best['value']:.3g})"
            )
        return (U.detach().clone(), s.detach().square(), V.detach().clone()), outcome

    if monitor == "loss":  # the original's runs: the loss, no safeguards
        step = torch_optimizer_step(
            _FUNCTION,
            lambda: _penalty_loss(A, U, s, V).sum(),
            lambda: batch_max(_penalty_loss(A, U, s, V)),
            params,
            method,
            optimizer_options(_FUNCTION, method, given),
        )
        run: Callable[[], float] = step
    else:
        defaults = {"sgd": {"lr": 0.9, "momentum": 0.9}, "adam": {}, "lbfgs": {}}[method]
        offset = [0.0]  # subtracted from the loss once LBFGS runs without line search
        step = torch_optimizer_step(
            _FUNCTION,
            lambda: _penalty_loss(A, U, s, V).sum() - offset[0],
            residual,
            params,
            method,
            optimizer_options(_FUNCTION, method, {**defaults, **given}),
            plateau=_PENALTY_PLATEAU,
        )
        escapes = 0
        line_search_off = 0

        def run() -> float:
            nonlocal escapes, line_search_off
            value = step()
            if _escape_traps(A, U, s, V):
                escapes += 1
                step.optimizer = step._new_optimizer()
            stalled = step.since_best >= 10 and not line_search_off
            if method == "lbfgs" and stalled and "line_search_fn" not in given:
                # The line search compares loss values, which stop resolving the
                # factors near sqrt(eps) when rank(A) > k (the loss's minimum is not 0).
                # Without it, only gradients matter: the loss is shifted to about 0, which
                # also stops the restarts that a loss at its rounding floor would trigger.
                with torch.no_grad():
                    offset[0] = float(_penalty_loss(A, U, s, V).sum())
                step.kwargs["line_search_fn"] = None
                step.optimizer = step._new_optimizer()
                line_search_off = step.iteration
            notes[:] = [f"; {escapes} escapes from the s_j = 0 trap"] if escapes else []
            if line_search_off:
                notes.append(f"; line search off from iteration {line_search_off}")
            return value

    outcome = iterate(_FUNCTION, run, rtol=threshold, max_iter=max_iter, callback=callback)
    outcome.message += "".join(notes)
    if not outcome.converged:
        step.restore_best(outcome)
    return (U.detach().clone(), s.detach().square(), V.detach().clone()), outcome


# ----------------------------------------------------------------------------
# Public function
# ----------------------------------------------------------------------------


def svd(
    A: torch.Tensor,
    k: int | None = None,
    *,
    method: str = "lanczos",
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callable[[int, float], object] | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    group: ProcessGroup | None = None,
) -> SVDResult:
    r"""Compute the ``k`` largest singular triplets of ``A`` iteratively.

    Letting :math:`\mathbb{K}` be :math:`\mathbb{R}` or :math:`\mathbb{C}`, the
    truncated singular value decomposition of :math:`A \in \mathbb{K}^{m \times n}`
    is

    .. math:: A \approx U \operatorname{diag}(S) V^{\text{H}},

    where :math:`U \in \mathbb{K}^{m \times k}` and :math:`V \in \mathbb{K}^{n \times k}`
    have orthonormal columns and :math:`S \in \mathbb{R}^k` holds the ``k`` largest
    singular values in descending order.  Like
    ``torch.linalg.svd(A, full_matrices=False)`` it returns ``U``, ``S`` and
    ``Vh`` :math:`= V^{\text{H}}`, but only the leading ``k`` triplets, computed by
    the iterative or gradient-based ``method``.

    Supports input of float, double, cfloat and cdouble dtypes. Also supports
    batches of matrices, and if A is a batch of matrices then the output has the
    same batch dimensions.  One loop advances every matrix of the batch; the
    monitored residual is the largest over the batch.  On the CPU, the default
    kernel forms the one-column products of a single real dense ``A`` with NumPy's
    BLAS (faster than torch's there; the same products to rounding) and runs its
    vector work on one torch thread; a torch function mode, such as
    :class:`gdla.metrics.ProductCounter`, sees every product through torch.

    Also supports a torch sparse COO or CSR tensor of shape (m, n) (2-D), and a
    :class:`gdla.LinearOperator` (a matrix known only through its products), with
    the methods that need only products with ``A`` and ``A^H``: ``"lanczos"``,
    ``"subspace"``, ``"randomized"`` and ``"riemannian"``; the others raise
    :class:`OptionError`.  A sparse ``A`` is checked (no duplicate or out-of-range
    index, finite values) and held as CSR copies of ``A`` and ``A^H``; its results
    are those of the dense matrix, to rounding.  For a LinearOperator, ``||A||_F``
    in the stopping rule below is an estimate from two products with 8 Gaussian
    columns (see :class:`gdla.LinearOperator`), and its products are checked on
    their first call.

    The result stays on A's device and dtype.  ``S`` has the real dtype
    matching ``A``'s (float for cfloat, double for cdouble).  Random starts come
    from a private :class:`torch.Generator` seeded by ``seed``, on A's device; the
    global random state is neither used nor changed.
    Inputs whose squared entries would overflow or underflow are divided by a
    power of two before iterating (exactly, as LAPACK's drivers do) and the result
    is scaled back.

    Sign convention: singular vectors are unique only up to a phase (a sign in the
    real case).  Every method returns them normalised so that, in each column of
    ``U``, the entry of largest magnitude (the first one on ties) is real and
    positive, with the rows of ``Vh`` multiplied by the matching phase.  For
    distinct singular values, results of different methods (and of
    ``torch.linalg.svd`` after the same normalisation) are therefore comparable
    column by column.

    Methods (``method=``):

    ``"lanczos"`` (default)
        By default (``oversampling`` not given) and when ``min(m, n) >= 3 k + 20``:
        Lanczos with one vector per step on ``A^H A`` (``A A^H`` for wide ``A``),
        keeping only the short side's basis (two products per step, ``A^H (A v)``,
        never forming ``A^H A``), with reorthogonalization and thick restarts: each
        iteration fills the basis to ``max_basis`` vectors (default
        ``max(2 k + 20, 3 k)``), stopping as soon as the residual estimate read off
        the small tridiagonal matrix is below ``rtol``, then keeps the leading
        ``(max_basis + k) // 2`` Ritz vectors; the triplets come from one
        Rayleigh--Ritz step on ``A V_k``.  Squaring the spectrum limits the
        attainable residual to about ``eps s_1^2 (sum_i s_i^-2)^(1/2) / ||A||_F``:
        when ``rtol`` is below ten times that floor (float64, ``rtol = 1e-10``:
        ``s_1 / s_k`` beyond about ``10^4``), or rounding stalls the residual, the
        iteration continues, with its count, as Golub--Kahan--Lanczos
        bidiagonalization with one vector per step and both bases (one product
        with ``A`` and one with ``A^H`` per step), which has no such floor.
        A single vector needs the fewest products to reach a given accuracy,
        far fewer than a block on flat spectra; like ARPACK and PROPACK it
        finds one copy of a singular value that is exactly repeated (in exact
        arithmetic) unless rounding or a restart brings in the others: pass
        ``oversampling`` to use the block method below.  Otherwise (smaller
        matrices, or ``oversampling`` given), block
        Golub--Kahan--Lanczos bidiagonalization (Golub, Luk and Overton,
        1981) with full reorthogonalization and thick restarts (Baglama and
        Reichel, 2005).  From a Gaussian block ``W`` of ``b = min(k + p, m, n)``
        orthonormal columns it builds orthonormal bases ``U`` of
        :math:`\operatorname{span}\{AW, AA^HAW, \dots\}` and ``V`` of
        :math:`\operatorname{span}\{W, A^HAW, \dots\}`, one block of each per
        iteration (one product with ``A`` and one with ``A^H``, of ``b`` columns),
        and takes the Rayleigh--Ritz triplets of the small matrix ``U^H A V`` every
        iteration.  Its residual comes from the recurrence at no extra cost:
        ``A V - U diag(S)`` vanishes by construction (up to rounding) and the
        norm of ``A^H U - V diag(S)`` is read off the small matrices; once it is
        below ``rtol`` it is recomputed from one product with ``k`` columns,
        which also catches rounding errors.  When the bases would exceed
        ``max_basis`` columns they are cut back to the leading ``max_basis - b``
        Ritz vectors.  The Krylov space adapts to the spectrum: far fewer
        products than subspace iteration when singular values decay slowly or
        cluster.  If ``k + 2 b > min(m, n)`` the block is the whole space and the
        first iteration is exact.  Options: ``oversampling`` ``p`` (block method
        when given, default 10 for the small matrices) and ``max_basis``
        (block method: default ``min(k + 3 b, min(m, n) - b)``, at least
        ``k + b``).
    ``"subspace"``
        Block subspace iteration on ``l = min(k + p, m, n)`` orthonormal columns
        with a Rayleigh--Ritz step every iteration (a small SVD of ``U^H A V``).
        Each iteration costs one product with ``A^H`` and one with ``A`` (plus one
        with ``A`` before the first, from a Gaussian start).  The
        leading triplets converge linearly with ratio
        :math:`(\sigma_{l+1}/\sigma_k)^2`; when ``l = min(m, n)`` the first
        iteration is already exact.  Options: ``oversampling`` ``p`` (default
        ``k + 40``: a product of ``A`` with a block of up to some tens of columns
        is limited by reading ``A`` from memory, so a wide block costs little more
        per pass and saves passes).
    ``"randomized"``
        Randomized SVD (Halko, Martinsson and Tropp, 2011, Algorithms 4.4 and 5.1):
        the same kernel from a Gaussian start, run for a fixed budget of
        ``max_iter`` passes (default 3, i.e. two power iterations, the default of
        ``torch.svd_lowrank``), stopping early only if the tolerance is met.
        Options: ``oversampling`` (default 10).
    ``"riemannian"``
        Riemannian gradient ascent of :math:`\operatorname{Re}\operatorname{tr}
        (U^H A V N)`, :math:`N = \operatorname{diag}(k, k-1, \dots, 1)/k`, over
        orthonormal ``U`` (m x k) and ``V`` (n x k): the Euclidean gradients
        ``A V N`` and ``A^H U N`` are projected onto the tangent spaces
        (:math:`G - U \operatorname{herm}(U^H G)`) and the step is retracted by the
        QR decomposition.  The step size is ``1 / sigma`` with ``sigma`` an
        estimate of :math:`\|A\|_2` from 20 power iterations, the scale of the
        gradient's Lipschitz constant.  Linear convergence governed by the
        smallest gap :math:`\sigma_j - \sigma_{j+1}` (j <= k) relative to
        :math:`\|A\|_2`: slow for clustered singular values.  Options: ``step``
        (overrides the step size).  ``S`` is :math:`|u_j^H A v_j|`.
    ``"orthogonal"``
        The objective of ``"riemannian"``, scaled by the same estimate of
        :math:`\|A\|_2` and negated, minimised by a :mod:`torch.optim`
        optimiser over ``U`` and ``V`` parametrised by
        :func:`torch.nn.utils.parametrizations.orthogonal`, so that they are
        orthonormal at every step whatever the optimiser does: the penalty
        method's loss of orthogonality cannot happen.  ``options``:
        ``optimizer`` (``"sgd"``, the default, with ``lr`` 0.5 and ``momentum``
        0.9; ``"adam"``; or ``"lbfgs"``, up to 20 LBFGS iterations per
        iteration), the other keys passed to the optimiser.  Default
        ``max_iter`` 5,000.  The parametrization is a chart centred at the start;
        factors far from it (near a reflection of its columns) need large free
        parameters, where the chart's derivative vanishes and the descent
        crawls, so the chart is re-centred at the current factors (a dynamic
        trivialization, Lezcano-Casado 2019) whenever an entry of a free
        parameter leaves [-4, 4], and the optimiser restarts; the message
        counts the re-centrings.  Each iteration recomputes the orthogonal maps and
        their gradients: meant for small matrices.  LBFGS's line search compares
        loss values, which determine the singular vectors only to about the
        square root of the machine epsilon: its residual stalls there (its
        singular values, quadratic in the vectors' error, are accurate).
    ``"penalty"``
        The original blog series' formulation: ``U`` (m x k), ``s`` (k), ``V``
        (n x k) drawn by ``torch.rand`` in that order, ``A ~ U diag(s**2) V^H``,
        loss :math:`\operatorname{mse}(U \operatorname{diag}(s^2) V^H, A) +
        \operatorname{mse}(U^H U, I)/100 + \operatorname{mse}(V V^H, I)/100`, minimised
        by the original hand-written heavy-ball loop ``p -= lr * p.grad;
        p.grad *= momentum`` (options ``lr`` 0.9 and ``momentum`` 0.9; default
        ``max_iter`` 20,000), triplets sorted afterwards.  ``seed=314``
        reproduces the original start.  The factors are only approximately
        orthonormal; it can stall in a local minimum, which ``converged=False``
        then reports (with the best iterate it measured); the first safeguard of
        the optimisers below (the trap of ``s_j = 0``) applies.  The step ``lr`` 0.9
        suits matrices of norm about 1 to 3 (the original's entries lie in [0, 1]);
        on matrices of larger norm the loop diverges, and says so.
    ``"sgd"``, ``"adam"``, ``"lbfgs"``
        The same loss and start, minimised by :class:`torch.optim.SGD`,
        :class:`torch.optim.Adam` or :class:`torch.optim.LBFGS`; ``options`` are
        passed to the optimiser (e.g. ``{"lr": 1e-3, "weight_decay": 1e-5}``);
        default ``max_iter`` 20,000 (2,000 for ``"lbfgs"``, each iteration one
        ``step()`` of up to 20 LBFGS iterations with a strong-Wolfe line search).
        Defaults: SGD with the original's ``lr`` 0.9 and ``momentum`` 0.9; Adam
        with ``lr`` 1e-2, halved after 200 iterations without a new smallest
        residual.  Two safeguards: a column caught in the loss's trap (``s_j``
        pulled to 0 because :math:`\operatorname{Re} u_j^H A v_j < 0`, where
        :math:`s_j^2` would need to be negative) has ``v_j`` turned by the phase
        of :math:`u_j^H A v_j` and :math:`s_j^2` set to its modulus, which
        lowers the loss, and the optimiser restarts; LBFGS switches its line
        search off after 10 iterations without a new smallest residual (the
        line search compares loss values, which stop resolving the factors
        near the square root of the machine epsilon when the loss's minimum is
        not 0, i.e. when ``rank(A) > k``), unless ``line_search_fn`` is given.
        The message counts both.  The best iterate seen is returned.
        ``options={"monitor": "loss"}`` (all four methods) monitors the loss
        instead, as the original's plots did, with the optimiser's plain defaults
        and no safeguards (see the stopping rule).

    Stopping rule: the iteration stops after iteration ``i`` when the monitored residual
    ``r_i <= rtol`` (``converged=True``), when ``callback(i, r_i)`` returns
    True, when ``r_i`` is NaN or infinite, or after ``max_iter`` iterations
    (these three with ``converged=False``).  ``history`` records every ``r_i``.

    * For ``"lanczos"``, ``"subspace"``, ``"randomized"``, ``"riemannian"`` and
      ``"orthogonal"``, ``r_i`` is the relative residual of the returned triplets

      .. math:: r = \max_{\text{batch}} \frac{\max(\|A V - U \operatorname{diag}(S)\|_F,
                \|A^H U - V \operatorname{diag}(S)\|_F)}{\|A\|_F}

      (0 for a zero matrix), computed from the products the iteration forms anyway
      (for ``"lanczos"``, from its recurrence until the final check described above;
      for ``"orthogonal"``, from two more products after each optimiser step).
      ``"lanczos"`` also stops, with ``converged=False``, when its space is the
      whole space and ``rtol`` is still not met (``rtol`` below rounding level).
    * For ``"penalty"``, ``"sgd"``, ``"adam"`` and ``"lbfgs"``, ``r_i`` is the same
      relative residual of the current factors ``U``, ``s**2`` and ``V`` (those
      returned, sorted), from two more products per iteration.  ``"penalty"``
      measures it before its update, as the original recorded its loss, and takes
      no step once converged; the optimisers measure it after their step.  With
      ``options={"monitor": "loss"}``, ``r_i`` is the loss itself (the largest over
      the batch), as in the original plots, and the iteration stops when ``r_i <=
      rtol**2 * mean(|A|**2)`` (the smallest ``mean(|A|**2)`` over the batch; 1 for
      a zero matrix), a relative accuracy of about ``rtol`` for the fit.  The loss
      cannot reach that when ``rank(A) > k`` (its minimum is the squared norm of the
      singular values left out, over ``m n``): only the residual can then converge.

    Parameters
    ----------
    A : Tensor or LinearOperator
        Matrix or batch of matrices of shape (*, m, n); a sparse COO or CSR tensor
        or a :class:`gdla.LinearOperator` of shape (m, n).
    k : int, optional
        Number of singular triplets, ``1 <= k <= min(m, n)``.  Default ``min(m, n)``.
    method : str, optional
        One of ``"lanczos"`` (default), ``"subspace"``, ``"riemannian"``,
        ``"orthogonal"``, ``"randomized"``, ``"penalty"``, ``"sgd"``, ``"adam"``,
        ``"lbfgs"``.
    rtol : float, optional
        Tolerance of the stopping rule.  Default ``default_rtol(A.dtype)``, 100
        machine epsilons (2.2e-14 in double, 1.2e-5 in float).
    max_iter : int, optional
        Largest number of iterations; the default depends on the method (see above).
    callback : callable, optional
        ``callback(i, r_i)`` is called after every iteration (the last one
        included); returning True stops the iteration.
    options : dict, optional
        Method-specific options (see above); unknown keys raise :class:`OptionError`.
    seed : int, optional
        Seed of the private generator of the random start.  Default 0.
    group : torch.distributed.ProcessGroup, optional
        ``A`` split by rows across the processes of ``group``: each rank passes its
        own block of rows ``A_i`` (a matrix of shape (m_i, n): dense, sparse or a
        LinearOperator, no batch) and receives its rows ``U_i`` of ``U`` (m_i, k),
        with ``S`` and ``Vh`` the same on every rank; see Notes.  Default None: one
        process.

    Notes
    -----
    Many processes (``group``): every rank keeps the vectors of length n and applies
    the Gram matrix :math:`G = A^H A = \sum_i A_i^H A_i` as :math:`G X = \sum_i A_i^H
    (A_i X)`, two local products and one sum all-reduce of n x b numbers for a block of
    b columns.  ``method`` runs on G, a Hermitian :class:`gdla.LinearOperator`, the
    same on every rank (the first rank to finish broadcasts its result, so that
    rounding differences between processes cannot make them disagree); ``S`` are the
    square roots of G's top ``k`` eigenvalues, ``Vh`` its eigenvectors, and ``U_i =
    A_i V / S``, with the sign convention above applied to the whole ``U``.  Squaring
    the matrix costs accuracy: an eigenvalue :math:`\sigma_i^2` of G is found to
    about :math:`\varepsilon\,\sigma_1^2`, so the residual of the triplets relative
    to :math:`\sigma_1` is about ``rtol`` :math:`\sigma_1 / \sigma_k` at convergence
    (at best about :math:`\varepsilon\,\sigma_1 / \sigma_k`, where the one-process
    methods reach about :math:`\varepsilon`), and singular values below about
    :math:`\sqrt{\varepsilon}\,\sigma_1` are lost in rounding.  ``rtol``, ``nit`` and
    ``history`` are those of the iteration on G
    (relative to an estimate of :math:`\|G\|_F`); the ``message`` adds the relative
    residual of A's triplets, from one more product with A and with A^H.  Every rank
    must pass the same ``k``, ``method``, ``rtol``, ``max_iter``, ``options`` and
    ``seed``; blocks of different n or dtype, or bad input on any rank, raise on
    every rank.  No gradients flow through ``group`` calls.

    Gradients: when A requires grad, ``S`` is differentiable (:math:`d\sigma_i =
    \operatorname{Re} u_i^H\,dA\,v_i`, so :math:`\bar A = U \operatorname{diag}(\bar S)
    V^H`), not through the iterations.  ``U`` and ``Vh`` are differentiable too when
    the ``k`` singular values are distinct, nonzero and, for ``k < min(m, n)``, apart
    from every singular value left out (the known formula of the thin SVD, in the sign
    convention above, plus, for a truncated SVD, the part that moves the vectors
    towards the ones left out: one Hermitian eigendecomposition of each Gram matrix of
    :math:`(I - UU^H) A (I - VV^H)`, dense, in the backward pass); otherwise their
    backward raises a clear error.
    Every method works under :func:`torch.inference_mode` and with inference tensors.
    ``"orthogonal"`` completes its start to square orthogonal matrices from the private
    generator, since torch's parametrization would draw the completion from the global
    RNG.

    Returns
    -------
    SVDResult
        With fields, in this order, ``U`` of shape (*, m, k), ``S`` of shape (*, k)
        (real, non-negative, descending) and ``Vh`` of shape (*, k, n), and the
        bookkeeping ``method``, ``nit``, ``converged``, ``message``, ``history``.
        Empty input (m or n zero, or an empty batch) gives empty factors with
        ``converged=True`` and ``nit=0``.

    Raises
    ------
    DtypeError
        ``A`` is not a float, double, cfloat or cdouble tensor (or operator), has a
        sparse layout other than COO and CSR, or an operator's product has another
        dtype.
    ShapeError
        ``A`` has fewer than two dimensions, a sparse ``A`` has a duplicate or
        out-of-range index, or an operator's product has the wrong shape or device.
    NonFiniteError
        ``A`` has a NaN or infinite entry.
    OptionError
        ``k`` out of range, unknown ``method``, a method that needs a dense ``A``
        for a sparse or operator ``A``, non-positive ``rtol`` or ``max_iter``, a
        negative ``seed`` or a bad ``options`` entry.

    See Also
    --------
    torch.linalg.svd : the direct (LAPACK) SVD, the oracle of the tests.
    torch.svd_lowrank : randomized low-rank SVD with a fixed number of iterations.
    gdla.complete : low-rank matrix completion from some entries.

    Examples
    --------
    >>> import torch, gdla
    >>> A = gdla.matrices.decaying_spectrum(50, 30, rate=0.5, seed=0)
    >>> result = gdla.svd(A, k=3)
    >>> result.converged, result.U.shape, result.S.shape, result.Vh.shape
    (True, torch.Size([50, 3]), torch.Size([3]), torch.Size([3, 30]))
    >>> result.S.round(decimals=10).tolist()
    [1.0, 0.5, 0.25]
    >>> bool(torch.allclose(result.S, torch.linalg.svdvals(A)[:3], rtol=1e-12))
    True
    """
    if group is not None:  # A split by rows across processes: gdla._rows
        rows = RowSplit(_FUNCTION, A, group, k=k, seed=seed)
        G = cast(torch.Tensor, rows.operator())  # a LinearOperator, which svd takes
        inner = rows.agreed(lambda: svd(
            G, rows.check_k(k), method=method, rtol=rtol, max_iter=max_iter,
            callback=callback, options=options, seed=seed))  # fmt: skip
        return rows.svd_result(inner)
    A_input = A
    op = as_operator(_FUNCTION, "A", A.detach() if isinstance(A, torch.Tensor) else A,
                     seed=check_seed(_FUNCTION, seed))  # fmt: skip
    check_option(_FUNCTION, "method", method, METHODS)
    if op.kind != "dense" and method not in OPERATOR_METHODS:
        kind = "a sparse A" if op.kind == "sparse" else "a LinearOperator A"
        raise OptionError(
            _FUNCTION,
            f"for {kind}, a method that needs only products with A: "
            + ", ".join(repr(name) for name in OPERATOR_METHODS),
            f"{method!r}, which needs a dense A",
        )
    differentiable = _implicit.wanted(A_input)
    m, n = op.shape[-2:]
    k = min(m, n) if k is None else check_rank(_FUNCTION, "k", k, min(m, n))
    rtol = default_rtol(op.dtype) if rtol is None else rtol
    rtol = check_positive(_FUNCTION, "rtol", rtol)
    max_iter = _MAX_ITER[method] if max_iter is None else max_iter
    max_iter = int(check_positive(_FUNCTION, "max_iter", max_iter, integer=True))
    generator = seeded_generator(_FUNCTION, seed, op.device)

    if op.shape.numel() == 0:
        U = op.zeros(*op.shape[:-1], k)
        S = torch.zeros((*op.batch, k), dtype=op.real_dtype, device=op.device)
        Vh = op.zeros(*op.batch, k, n)
        return SVDResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to compute",
            history=[],
            U=U,
            S=S,
            Vh=Vh,
        )

    op, exponent = rescaled(op)  # exponent 0 unless squares of A's entries would overflow
    if method in ("penalty", "sgd", "adam", "lbfgs"):
        with autograd_on():
            (U, S, V), outcome = _solve_penalty_family(
                method, normal_tensor(op.dense()), k, rtol, max_iter, callback, options, generator
            )
    elif method == "orthogonal":
        with autograd_on():
            (U, S, V), outcome = _solve_orthogonal(
                normal_tensor(op.dense()), k, rtol, max_iter, callback, options, generator
            )
    else:
        defaults: dict[str, dict[str, Any]] = {
            "lanczos": {"oversampling": None, "max_basis": None},
            "subspace": {"oversampling": k + 40},
            "randomized": {"oversampling": 10},
            "riemannian": {"step": None},
        }
        opts = method_options(_FUNCTION, method, options, defaults[method])
        solvers = {"lanczos": _solve_lanczos, "riemannian": _solve_riemannian}
        solver = solvers.get(method, _solve_subspace)
        with torch.no_grad():
            (U, S, V), outcome = solver(op, k, rtol, max_iter, callback, opts, generator)
    U, S, Vh = _canonical(U, ldexp(S, -exponent[..., None]), V)
    converged, message = outcome.converged, outcome.message
    if converged and not bool(torch.isfinite(S).all()):
        converged, message = False, f"not converged: S overflows {str(S.dtype)[6:]} ({message})"
    if differentiable and op.kind == "dense":  # implicit differentiation: see gdla._implicit
        U, S, Vh = _implicit.attach_svd(A_input, U, S, Vh)
    elif differentiable:
        U, S, Vh = _implicit.attach_unsupported(
            "gdla.svd: gradients with respect to a sparse A are not supported", A_input, U, S, Vh
        )
    return SVDResult(
        method=method,
        nit=outcome.nit,
        converged=converged,
        message=message,
        history=outcome.history,
        U=U,
        S=S,
        Vh=Vh,
    )
