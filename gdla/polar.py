"""Polar decomposition ``A = U H`` by matrix products: Newton--Schulz, Polar Express, Muon.

Public entry point: :func:`polar`.  Each ``method=`` is a private function
``_method(A, rtol, max_iter, callback, options) -> (U, products, Outcome)`` working on a
tall (m >= n) matrix; :func:`polar` checks the input, transposes wide matrices,
dispatches, forms ``H`` and packs the :class:`~gdla.PolarResult`.  The polynomials
and their coefficients live in :mod:`gdla._polynomial`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from . import _implicit
from ._descent import Callback, check_options
from ._iterate import Outcome, default_rtol, iterate
from ._polynomial import (
    MUON_QUINTIC,
    NEWTON_SCHULZ_CUBIC,
    NEWTON_SCHULZ_QUINTIC,
    apply_odd,
    image,
    minimax_odd,
)
from ._result import PolarResult
from ._validation import DtypeError, OptionError, check_matrix, check_option, check_positive

__all__ = ["polar", "METHODS"]

FUNCTION = "gdla.polar"

#: The ``method=`` names accepted by :func:`polar`.
METHODS = ("polar-express", "newton-schulz", "muon", "newton")

#: Default ``max_iter`` of each method.
DEFAULT_MAX_ITER = {"polar-express": 100, "newton-schulz": 100, "muon": 5, "newton": 100}

#: Default ``rtol`` for bfloat16 input (``"muon"`` only): about one unit roundoff.
BFLOAT16_RTOL = 1e-2

#: The minimax polynomials give way to the Newton--Schulz quintic once the bounds on the
#: singular values satisfy ``l >= (1 - SWITCH) u``: the two are then equally fast, and
#: Newton--Schulz has 1 as its exact, superattracting fixed point.
SWITCH = 1e-3

#: In the Newton--Schulz phase a degree 5 iteration takes the cubic step (two products)
#: instead of the quintic (three) when the cubic would reach FINISH_CUBIC * rtol both by
#: the bounds (its image of [l, u] within that of 1) and by the measured residual r
#: (3r²/4 below it, the cubic's effect on σ² = 1 + d being about 1 − 3d²/4): the last
#: step then costs one product less.  The measured test keeps the quintic where the
#: bounds are wrong (rank-deficient A, a poor l0); the factor leaves room for rounding.
FINISH_CUBIC = 0.1

#: Each minimax polynomial is designed for [max(l, CUSHION u), u]: a smaller l would give
#: coefficients so large (|c_j| up to 25 for l -> 0) that the rounding errors of the
#: first steps cost digits of backward error at high condition numbers (about 1e-12
#: at cond 1e8 without the cushion, 1e-14 with it), for no fewer iterations.
CUSHION = 1e-2

#: Scaled Newton gives way to Newton--Schulz once the residual is below this: from there
#: on both converge quadratically (each residual is about 3/4 of the previous one
#: squared for Newton--Schulz), and products carry no inverse's rounding errors.
_NEWTON_SCHULZ_FINISH = 1e-2

#: Lanczos steps on ``(X0^H X0)^{-1}`` of the smallest-singular-value estimate: on the
#: test matrices (cond 1e1 to 1e8, n 256 to 1024) eight steps put the estimate within
#: 3% of σ_min(X0), against a factor 2 to 5 for three steps of inverse iteration.
_LANCZOS_STEPS = 8

#: The Lanczos estimate of σ_min(X0) is an overestimate; it is divided by this margin.
#: An l0 a little too large costs little (the few singular values below it land a little
#: below the interval's image, and the next steps lift them), a much too small one costs
#: iterations at every condition number.
_LOWER_MARGIN = 1.05


#: Gram matrices of order at least twice this are formed by blocks of this many columns
#: (:func:`_gram`): on a CPU at n = 1024, 0.7 of the time of one full product.
_GRAM_BLOCK = 256


def _gram(X: torch.Tensor) -> torch.Tensor:
    """``X^H X`` (*, n, n), exactly Hermitian; ``G @ G`` too, for a Hermitian ``X = G``.

    Up to order ``2 * _GRAM_BLOCK`` (and in bfloat16, where Muon's rounding is kept) one
    product, then ``(G + G^H) / 2``.  Beyond, by blocks of ``_GRAM_BLOCK`` columns: one
    product per block row for the blocks on and right of the diagonal, whose conjugate
    transposes fill the rest, so about half the flops go unspent.
    """
    n = X.shape[-1]
    if n < 2 * _GRAM_BLOCK or X.dtype == torch.bfloat16:
        G = X.mH @ X
        return G.add(G.mH).mul_(0.5)
    G = X.new_empty(*X.shape[:-2], n, n)
    for start in range(0, n, _GRAM_BLOCK):
        stop = min(start + _GRAM_BLOCK, n)
        row = X[..., start:stop].mH @ X[..., start:]
        diagonal = row[..., : stop - start]
        G[..., start:stop, start:stop] = (diagonal + diagonal.mH) / 2
        G[..., start:stop, stop:] = row[..., stop - start :]
        G[..., stop:, start:stop] = row[..., stop - start :].mH
    return G


def _residual(G: torch.Tensor) -> float:
    """The monitored residual: max over the batch of ``‖G − I‖_F / √n`` for ``G = X^H X``."""
    n = G.shape[-1]
    E = G.clone()
    E.diagonal(dim1=-2, dim2=-1).sub_(1)
    return float((torch.linalg.matrix_norm(E.float() if E.dtype == torch.bfloat16 else E)
                  / math.sqrt(n)).amax())  # fmt: skip


def _normalise(
    A: torch.Tensor, square: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``X = A / α``, ``X^H X`` and, if ``square``, ``(X^H X)^2``, with ``α >= σ_max(A)``.

    ``α^2 = min(‖G‖_F, ‖G‖_1)`` for ``G = A^H A`` (each norm is at least
    ``‖G‖_2 = σ_max(A)^2``): one matrix product.  With ``square`` the product
    ``G @ G``, which a quintic's first step needs anyway, is formed here and sharpens
    the bound: ``α^2 = min(‖G‖_F, ‖G‖_1, ‖G^2‖_F^{1/2}, ‖G^2‖_1^{1/2})``, since
    ``‖G^2‖ >= ‖G‖_2^2``.  The matrices are rescaled, not recomputed.
    """
    G = _gram(A)
    bound = torch.minimum(torch.linalg.matrix_norm(G), torch.linalg.matrix_norm(G, ord=1))
    G2 = None
    if square:
        G2 = _gram(G)  # G @ G, G being Hermitian
        bound = torch.minimum(bound, torch.linalg.matrix_norm(G2).sqrt())
        bound = torch.minimum(bound, torch.linalg.matrix_norm(G2, ord=1).sqrt())
    bound = torch.where(bound > 0, bound, torch.ones_like(bound))[..., None, None]
    return A / bound.sqrt(), G / bound, (None if G2 is None else G2 / bound**2)


def _largest_ritz(
    apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int
) -> torch.Tensor:
    """The largest Ritz value of ``steps`` Lanczos steps on a Hermitian operator, per matrix.

    ``start`` has shape (*, n, 1); ``apply`` maps such vectors.  Full
    reorthogonalisation (twice), so that the Ritz values of the small tridiagonal
    matrix are those of the exact Krylov space: each lies below the operator's
    largest eigenvalue, up to rounding.
    """
    steps = min(steps, start.shape[-2])
    tiny = torch.finfo(start.dtype).tiny
    v = start / torch.linalg.vector_norm(start, dim=-2, keepdim=True).clamp_min(tiny)
    basis, alphas, betas = [], [], []
    for j in range(steps):
        basis.append(v)
        w = apply(v)
        alphas.append((v.mH @ w).real[..., 0, 0])
        for _ in range(2):
            for u in basis:
                w = w - u * (u.mH @ w)
        if j + 1 < steps:
            beta = torch.linalg.vector_norm(w, dim=-2, keepdim=True)
            betas.append(beta[..., 0, 0])
            v = w / beta.clamp_min(tiny)
    T = torch.diag_embed(torch.stack(alphas, dim=-1))
    if betas:
        off = torch.stack(betas, dim=-1)
        T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
    return torch.linalg.eigvalsh(T)[..., -1]


def _estimate_lower(G: torch.Tensor) -> float:
    """An estimate of the smallest singular value of X from ``G = X^H X`` (``‖G‖_2 <= 1``).

    A Cholesky factorisation of G and ``_LANCZOS_STEPS`` = 8 Lanczos steps on
    ``G^{-1}`` (two triangular solves each, seeded start) estimate
    ``1/λ_min(G)`` from below by the largest Ritz value θ; the estimate is
    ``θ^{-1/2} / 1.05`` (``_LOWER_MARGIN``), the smallest over the batch, clamped from
    below at the floor ``(sqrt(n) ε)^(1/2) / 10``: rounding errors in G are about
    ``sqrt(n) ε``, so a smaller estimate means little.  Where the factorisation fails
    (G is numerically singular) or θ is not finite and positive, the estimate is the
    floor.  An estimate between the floor and ``(sqrt(n) ε)^(1/2)`` is kept: it may be
    rounding, but an ℓ that is somewhat off costs iterations, not convergence.
    """
    n = G.shape[-1]
    floor = math.sqrt(math.sqrt(n) * torch.finfo(G.dtype).eps) / 10
    L, info = torch.linalg.cholesky_ex(G)
    failed = (info != 0)[..., None, None]
    # A failed factor holds garbage: solve with the identity there, and ignore the result.
    L = torch.where(failed, torch.eye(n, dtype=G.dtype, device=G.device), L)
    generator = torch.Generator(device=G.device).manual_seed(0)
    start = torch.randn(*G.shape[:-1], 1, dtype=G.dtype, device=G.device, generator=generator)
    theta = _largest_ritz(lambda v: torch.cholesky_solve(v, L), start, _LANCZOS_STEPS)
    # θ <= ‖G^{-1}‖ = 1/λ_min: 1/θ >= λ_min, an overestimate.
    lam = 1 / theta
    good = (info == 0) & torch.isfinite(lam) & (lam > 0)
    estimate = lam.clamp(min=0, max=1).sqrt() / _LOWER_MARGIN
    estimate = torch.where(good, estimate.clamp(min=floor), torch.full_like(lam, floor))
    return float(estimate.min()) if estimate.numel() else 1.0


def _polar_express(
    A: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, int, Outcome]:
    """Minimax-optimal odd polynomials for the current bounds [l, u], then Newton--Schulz.

    X0 = A / α has its singular values in [l, u] = [estimate, 1].  Each step applies
    the polynomial p of degree 3 or 5 that minimises max |1 − p| on [l, u]
    (:func:`~gdla._polynomial.minimax_odd`) and replaces [l, u] by p's range on it;
    once l >= (1 − SWITCH) u the step is the Newton--Schulz polynomial of the same degree
    (the cubic, for degree 5, where it alone reaches FINISH_CUBIC * rtol, by the bounds
    and by the measured residual).
    """
    given = check_options(FUNCTION, "polar-express", options, ("degree", "lower"))
    degree = given.get("degree", 5)
    if degree not in (3, 5):
        raise OptionError(FUNCTION, "options['degree'] to be 3 or 5", repr(degree))
    X, G, square = _normalise(A, square=degree == 5)
    if "lower" in given:
        lower = given["lower"]
        if isinstance(lower, bool) or not isinstance(lower, (int, float)) or not 0 < lower <= 1:
            raise OptionError(FUNCTION, "options['lower'] in (0, 1]", repr(lower))
        low = float(lower)
    else:
        low = _estimate_lower(G)
    high = 1.0
    products = 1
    residual = math.inf  # the monitored residual of the current X (none before the first step)
    finish = NEWTON_SCHULZ_CUBIC if degree == 3 else NEWTON_SCHULZ_QUINTIC

    def step() -> float:
        nonlocal X, G, square, low, high, products, residual
        if low >= (1 - SWITCH) * high:
            coefficients: Sequence[float] = tuple(
                c / high ** (2 * j + 1) for j, c in enumerate(finish)
            )
        else:
            coefficients, _ = minimax_odd(max(low, CUSHION * high), high, degree)
        if degree == 5 and low >= (1 - SWITCH) * high and 0.75 * residual**2 <= FINISH_CUBIC * rtol:
            # A cubic finish where it suffices (a cubic takes σ² = 1 + d to about
            # 1 − 3d²/4): one product less than the quintic.
            cubic = tuple(c / high ** (2 * j + 1) for j, c in enumerate(NEWTON_SCHULZ_CUBIC))
            low3, high3 = image(cubic, low, high)
            if max(1 - low3, high3 - 1) <= FINISH_CUBIC * rtol:
                coefficients = cubic
        if len(coefficients) == 3 and square is None:
            square = _gram(G)  # G @ G, by the cheaper Hermitian product
        X = apply_odd(X, G, coefficients, square)  # the first step reuses _normalise's G @ G
        square = None
        G = _gram(X)
        products += len(coefficients)  # the powers of G and X @ Q, then the Gram matrix
        low, high = image(coefficients, low, high)
        residual = _residual(G)
        return residual

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X, products, outcome


def _newton_schulz(
    A: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, int, Outcome]:
    """The classic cubic ``X <- X (3I − X^H X) / 2`` from X0 = A / α, α >= σ_max(A)."""
    check_options(FUNCTION, "newton-schulz", options, ())
    X, G, _ = _normalise(A)
    products = 1

    def step() -> float:
        nonlocal X, G, products
        X = apply_odd(X, G, NEWTON_SCHULZ_CUBIC)
        G = _gram(X)
        products += 2
        return _residual(G)

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X, products, outcome


def _muon(
    A: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, int, Outcome]:
    """Muon's fixed quintic (3.4445, −4.7750, 2.0315) from X0 = A / (‖A‖_F + 1e-7)."""
    check_options(FUNCTION, "muon", options, ())
    norm = torch.linalg.matrix_norm(A.float() if A.dtype == torch.bfloat16 else A)
    X = A / (norm[..., None, None] + 1e-7).to(A.dtype)
    G = _gram(X)
    products = 1

    def step() -> float:
        nonlocal X, G, products
        X = apply_odd(X, G, MUON_QUINTIC)
        G = _gram(X)
        products += 3
        return _residual(G)

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return X, products, outcome


def _newton(
    A: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callback | None,
    options: Mapping[str, object] | None,
) -> tuple[torch.Tensor, int, Outcome]:
    """Scaled Newton ``X <- (ζ X + X^{-H} / ζ) / 2`` on R of ``A = QR``, then Newton--Schulz.

    The reference with inverses (Higham, 1986): ζ = (‖X^{-1}‖_F / ‖X‖_F)^(1/2) while
    the residual is above min(1e-2, 1/(2√n)); from there on, cubic Newton--Schulz steps
    ``X <- X (3I − X^H X) / 2`` with the Gram matrix the residual needed.  Both
    converge quadratically there, but an inverse carries rounding errors of about
    κ(X) ε, and left to Newton the residual can stall just above a tight ``rtol``;
    products do not.  A tall A is first reduced to its square triangular factor R
    (U = Q U_R); each step costs an inverse (or a product) and a Gram matrix.
    """
    check_options(FUNCTION, "newton", options, ())
    square = A.shape[-2] == A.shape[-1]
    Q, X = (None, A) if square else torch.linalg.qr(A)
    X = X / torch.linalg.matrix_norm(X)[..., None, None].clamp_min(torch.finfo(X.dtype).tiny)
    products = 0 if square else 2  # the QR factorisation and the product Q @ U_R
    residual = math.inf
    G = X  # the Gram matrix of X, once a step has formed it
    # ‖G − I‖_F <= 1/2 puts every σ² in [1/2, 3/2], where Newton--Schulz converges monotonically.
    finish = min(_NEWTON_SCHULZ_FINISH, 0.5 / math.sqrt(X.shape[-1]))

    def step() -> float:
        nonlocal X, G, products, residual
        if residual > finish:
            inverse = torch.linalg.inv_ex(X).inverse
            zeta = (torch.linalg.matrix_norm(inverse) / torch.linalg.matrix_norm(X)).sqrt()
            zeta = zeta[..., None, None].to(X.dtype)
            X = (zeta * X + inverse.mH / zeta) / 2
        else:
            X = apply_odd(X, G, NEWTON_SCHULZ_CUBIC)
        products += 2
        G = _gram(X)
        residual = _residual(G)
        return residual

    outcome = iterate(FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return (X if Q is None else Q @ X), products, outcome


_METHODS = {
    "polar-express": _polar_express,
    "newton-schulz": _newton_schulz,
    "muon": _muon,
    "newton": _newton,
}


def _tall_adjoint(
    B: torch.Tensor, W: torch.Tensor, K: torch.Tensor, W_bar: torch.Tensor, K_bar: torch.Tensor
) -> torch.Tensor:
    """The adjoint ``B̄`` of the polar decomposition ``B = W K`` of a tall full-rank B.

    From ``K² = B^H B`` (so ``K dK + dK K = dB^H B + B^H dB``) and
    ``dW = (dB − W dK) K^{-1}``: ``B̄ = W̄ K^{-1} + 2 B Z``, where the Hermitian Z solves
    the Lyapunov equation ``K Z + Z K = herm(K̄ − W^H W̄ K^{-1})``, solved in the
    eigenvectors of K (``Z_ij = M_ij / (λ_i + λ_j)``).
    """
    lam, Q = torch.linalg.eigh(K)
    smallest, largest = lam[..., 0], lam[..., -1]
    if bool((smallest <= K.shape[-1] * torch.finfo(lam.dtype).eps * largest).any()):
        raise RuntimeError(
            "gdla.polar: the polar factor of a rank-deficient A is not unique, and not "
            "differentiable there; its gradient is defined for full-rank A only"
        )
    K_inverse = (Q / lam.unsqueeze(-2).to(Q.dtype)) @ Q.mH
    M = K_bar - W.mH @ W_bar @ K_inverse
    M = Q.mH @ ((M + M.mH) / 2) @ Q
    Z = Q @ (M / (lam.unsqueeze(-1) + lam.unsqueeze(-2)).to(M.dtype)) @ Q.mH
    return W_bar @ K_inverse + 2 * B @ Z


class _Polar(torch.autograd.Function):
    """``(U, H)`` as functions of ``A``, with the gradient of the polar decomposition."""

    @staticmethod
    def forward(ctx: Any, A: torch.Tensor, U: torch.Tensor, H: torch.Tensor) -> Any:  # type: ignore[override]
        ctx.save_for_backward(A, U, H)
        return U.clone(), H.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, U_bar: torch.Tensor, H_bar: torch.Tensor) -> Any:
        A, U, H = ctx.saved_tensors
        if A.shape[-2] >= A.shape[-1]:
            return _tall_adjoint(A, U, H, U_bar, H_bar), None, None
        # A = U H wide: A^H = W K with W = U^H, K = U A^H, and H = W K W^H.
        W = U.mH
        K = U @ A.mH
        K = (K + K.mH) / 2
        W_bar = U_bar.mH + (H_bar + H_bar.mH) @ W @ K
        K_bar = W.mH @ H_bar @ W
        return _tall_adjoint(A.mH, W, K, W_bar, K_bar).mH, None, None


def _check_input(A: object, method: str) -> torch.Tensor:
    """``check_matrix``, with bfloat16 accepted for ``method="muon"`` only."""
    if isinstance(A, torch.Tensor) and A.dtype == torch.bfloat16:
        if method != "muon":
            raise DtypeError(
                FUNCTION,
                f"A of dtype float32, float64, complex64 or complex128 for method {method!r} "
                "(bfloat16 only for method 'muon')",
                "torch.bfloat16",
            )
        check_matrix(FUNCTION, "A", A.float())
        return A
    return check_matrix(FUNCTION, "A", A)


def polar(
    A: torch.Tensor,
    *,
    method: str = "polar-express",
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callback | None = None,
    options: Mapping[str, object] | None = None,
) -> PolarResult:
    r"""Compute the polar decomposition :math:`A = U H` by matrix products.

    For :math:`A = P \Sigma Q^H` (thin SVD), the polar factor is :math:`U = P Q^H` and
    :math:`H = Q \Sigma Q^H = (A^H A)^{1/2}`.  Every method here iterates
    :math:`X_{k+1} = p_k(X_k) = X_k\, q_k(X_k^H X_k)` with an odd polynomial
    :math:`p_k(x) = x\, q_k(x^2)`, which maps each singular value σ of :math:`X_k` to
    :math:`p_k(σ)` and keeps the singular vectors: the methods differ in the
    polynomials, chosen to drive every singular value to 1.

    Supports input of float, double, cfloat and cdouble dtypes, and bfloat16 for
    ``method="muon"``. Also supports batches of matrices, and if A is a batch of
    matrices then the output has the same batch dimensions.
    The result stays on A's device and dtype.
    A wide matrix (m < n) is handled through its conjugate transpose: the iteration
    runs on the tall :math:`A^H` (so the Gram matrices are m x m), and U, which then
    has orthonormal rows, is transposed back.
    The iteration runs on :math:`A / \max_{ij} |a_{ij}|` (U does not depend on A's
    scale, and H is formed from A itself), so that entries whose squares would
    overflow or underflow do no harm.

    Methods (each starts from :math:`X_0 = A/\alpha` with
    :math:`\alpha = \min(\|A^HA\|_F, \|A^HA\|_1)^{1/2} \ge \sigma_{\max}(A)`, except Muon,
    and Polar Express of degree 5, which sharpens :math:`\alpha`):

    - ``"polar-express"`` (default): the Polar Express iteration of Amsel, Persson,
      Musco and Gower (2025).  With the singular values of :math:`X_k` in
      :math:`[l_k, u_k]`, :math:`p_k` is the odd polynomial of degree 5 (or 3, with
      ``options={"degree": 3}``) minimising :math:`\max |1 - p|` on
      :math:`[\max(l_k, u_k/100), u_k]`, computed in float64 by the Remez exchange
      algorithm (the cushion :math:`u_k/100` keeps the coefficients moderate, which
      keeps rounding errors small); :math:`[l_{k+1}, u_{k+1}]` is its range on
      :math:`[l_k, u_k]`.  Once :math:`l_k \ge (1 - 10^{-3}) u_k` the
      step is the Newton–Schulz polynomial of the same degree, except that a degree
      5 iteration takes the Newton–Schulz cubic (one product less) when the cubic
      alone maps :math:`[l_k, u_k]` within ``rtol``/10 of 1 and the residual
      :math:`r_k` (below) satisfies :math:`3r_k^2/4 \le` ``rtol``/10.  :math:`u_0 = 1` is a
      bound, not an estimate: just above :math:`u_k` the early polynomials leave
      :math:`[0, 1 + E]` (the cubic for :math:`[0.01, 1]` is negative at 1.05, which
      would flip a sign of U), so :math:`\alpha` must not underestimate
      :math:`\sigma_{\max}(A)`.  For degree 5 the product :math:`G^2`, :math:`G = A^HA`,
      which the first step needs anyway, sharpens it:
      :math:`\alpha^2 = \min(\|G\|_F, \|G\|_1, \|G^2\|_F^{1/2}, \|G^2\|_1^{1/2})`.
      :math:`l_0` is ``options["lower"]`` if given, else an estimate of
      :math:`\sigma_{\min}(X_0)`: a Cholesky factorisation of :math:`X_0^H X_0` and
      eight Lanczos steps on its inverse (two triangular solves per step: not a
      product, but O(n^3/3) flops once and O(n^2) per step), whose largest Ritz value
      θ gives :math:`l_0 = \theta^{-1/2}/1.05`, and never less than
      :math:`(\sqrt{n}\varepsilon)^{1/2}/10`, the level below which rounding errors in
      that matrix can hide its smallest eigenvalue (the value used, too, where the
      factorisation fails).  It is an estimate, not a bound: a wrong :math:`l_0`
      costs iterations (a singular value below :math:`l_0` still grows by about the
      factor :math:`p_k(l_k)/l_k` per step), never convergence.  One polynomial
      sequence serves the whole batch (the smallest :math:`l_0` of the batch).
      Three matrix products per step of degree 5, two of degree 3 (and for such a
      cubic finish).
    - ``"newton-schulz"``: the classic cubic Newton–Schulz iteration
      :math:`X_{k+1} = X_k (3I - X_k^H X_k)/2`, which converges for
      :math:`\sigma_{\max}(X_0) < \sqrt 3`, slowly (each small singular value grows by
      1.5 per step) and then quadratically.  Two matrix products per step.
    - ``"newton"``: the reference with inverses, not products: the scaled Newton
      iteration :math:`X_{k+1} = (\zeta_k X_k + X_k^{-H}/\zeta_k)/2` (Higham, 1986)
      with :math:`\zeta_k = (\|X_k^{-1}\|_F/\|X_k\|_F)^{1/2}` while the residual
      :math:`r_k` (below) is above :math:`\min(10^{-2}, 1/(2\sqrt n))`; from then on
      Newton–Schulz steps :math:`X_{k+1} = X_k (3I - X_k^H X_k)/2` with the Gram
      matrix of the residual (there both converge quadratically, but an inverse
      carries rounding errors of about :math:`\kappa(X_k)\varepsilon`, which can
      leave Newton's residual just above a tight ``rtol``); at most about 9
      iterations in double precision.  A tall A is first reduced to the triangular factor R
      of its QR factorisation (U is Q times the polar factor of R).  A should have
      full rank: an exactly singular X has no inverse, and the iteration stops at
      once with ``converged=False``; if rounding leaves the zero singular values
      tiny but nonzero, it behaves as described under rank deficiency below.  In
      ``products`` an inverse counts as one product (both cost about :math:`2n^3`
      flops), so a step counts two with the Gram matrix of the stopping rule; a
      tall A adds two (its QR factorisation and the product with Q).
    - ``"muon"``: Muon's orthogonalisation (Jordan et al., 2024): :math:`X_0 = A /
      (\|A\|_F + 10^{-7})`, then at most ``max_iter`` = 5 steps of the fixed quintic
      :math:`p(x) = 3.4445x - 4.7750x^3 + 2.0315x^5`, in A's dtype (bfloat16 too).  It
      is designed to push the singular values quickly into a band around 1, not to
      converge (1 is not a fixed point): five steps map every normalised singular
      value above 2e-3 into [0.68, 1.21], and later steps keep it there.  It is
      ``converged`` only if it happens to meet ``rtol``.

    Hermitian products.  From order 512 on, the Gram matrices :math:`X^HX` and the
    squares :math:`G^2` (all methods but Muon in bfloat16) are formed by blocks of 256
    columns, multiplying only the blocks on and above the diagonal (with four blocks,
    10 of 16: the rest are their conjugate transposes); each still counts as one
    product in ``products``.

    Stopping rule.  After each iteration the monitored residual
    :math:`r_k = \max_{\text{batch}} \|X_k^H X_k - I\|_F / \sqrt n` (n the smaller
    dimension of A), the root-mean-square departure of :math:`\sigma_i(X_k)^2` from
    1 when the columns are those of the SVD, is appended to ``history`` (it comes
    from the Gram matrix the next step needs, so it costs no extra product); the
    iteration stops with ``converged=True`` as soon as :math:`r_k \le` ``rtol``.
    It stops with ``converged=False`` after ``max_iter`` iterations, when the
    residual becomes NaN or infinite, or when ``callback`` returns True.  Then
    ``U`` is the last iterate and ``H`` the Hermitian part of :math:`U^H A` (one more
    product).  In exact arithmetic U has the singular vectors of A, so its distance
    to the exact polar factor, relative to the latter's Frobenius norm
    :math:`\sqrt n`, is at most :math:`r_k` (about :math:`r_k/2` near convergence).

    Rank-deficient A.  H is unique, U is not: any U with orthonormal columns that
    equals :math:`P_r Q_r^H` on the range of :math:`A^H` (r the rank) gives A = UH.
    Exactly zero singular values stay zero under an odd polynomial, but rounding
    makes them about :math:`\varepsilon`, and the iteration enlarges them as it does
    every small singular value.  So U is close to the partial isometry
    :math:`P_r Q_r^H` after a few steps, and after many more (when the rounding errors
    have grown to 1) has orthonormal columns, the extra ones spanning directions
    that depend on rounding; ``converged`` is True only in that second case.  In both
    cases ``U @ H`` reproduces A and H equals :math:`(A^HA)^{1/2}`.

    Parameters
    ----------
    A : Tensor
        Matrices of shape (*, m, n).
    method : str
        ``"polar-express"`` (default), ``"newton-schulz"``, ``"muon"`` or ``"newton"``.
    rtol : float, optional
        Tolerance of the stopping rule; default ``gdla._iterate.default_rtol(A.dtype)``
        (100 machine epsilons: 2.2e-14 in double, 1.2e-5 in float), 1e-2 for bfloat16.
    max_iter : int, optional
        Largest number of iterations: 100 by default, 5 for ``"muon"``.
    callback : callable, optional
        Called as ``callback(k, residual)`` after iteration ``k``; returning True stops.
    options : dict, optional
        ``"polar-express"``: ``degree`` (5 or 3) and ``lower`` (:math:`l_0` in (0, 1],
        a lower bound on :math:`\sigma_{\min}(A)/\alpha`, skipping the estimate).  No
        options for the other methods.

    Returns
    -------
    PolarResult
        ``U`` of shape (*, m, n) (orthonormal columns, or rows when m < n), ``H`` of
        shape (*, n, n) (Hermitian, positive semidefinite up to rounding), with
        ``method``, ``nit``, ``converged``, ``message``, ``history`` (the monitored
        residual after each iteration) and ``products``, the number of matrix products
        (each with an inner or outer dimension min(m, n)), counting the Gram matrix of
        A and the product that forms H.  An empty A gives empty factors with
        ``converged=True`` and ``nit=0``.

    Raises
    ------
    ShapeError
        A is not a (batch of) matrices.
    DtypeError
        A is not a float32, float64, complex64 or complex128 tensor (or bfloat16 for
        ``"muon"``).
    NonFiniteError
        A has NaN or infinite entries.
    OptionError
        Unknown ``method``, bad ``rtol``, ``max_iter`` or ``options``.

    Notes
    -----
    Gradients flow to A by the formula of the polar decomposition, not through the
    iterations: with :math:`H^2 = A^HA` and :math:`dU = (dA - U\,dH)H^{-1}` (tall A),
    :math:`\bar A = \bar U H^{-1} + 2AZ` where :math:`HZ + ZH` is the Hermitian part
    of :math:`\bar H - U^H\bar U H^{-1}` (a Lyapunov equation, solved in the
    eigenvectors of H); wide A through :math:`A^H`.  The backward pass raises an
    error for a rank-deficient A, where U is not unique, and for a result that is
    not converged (Muon's approximate factor included).

    See Also
    --------
    torch.linalg.svd : the polar factor as ``U @ Vh`` of the thin SVD, the tests' oracle.
    gdla.svd : the largest singular triplets by iteration.

    Examples
    --------
    >>> import torch
    >>> from gdla import polar
    >>> from gdla.matrices import with_condition_number
    >>> A = with_condition_number(6, 1e4, m=8, seed=0)
    >>> result = polar(A)
    >>> result.method, result.converged, result.nit <= 12
    ('polar-express', True, True)
    >>> P, S, Qh = torch.linalg.svd(A, full_matrices=False)
    >>> bool(torch.allclose(result.U, P @ Qh, atol=1e-12))
    True
    >>> bool(torch.allclose(result.U @ result.H, A, atol=1e-12))
    True
    """
    check_option(FUNCTION, "method", method, _METHODS)
    A = _check_input(A, method)
    if rtol is None:
        rtol = BFLOAT16_RTOL if A.dtype == torch.bfloat16 else default_rtol(A.dtype)
    rtol = check_positive(FUNCTION, "rtol", rtol)
    if max_iter is None:
        max_iter = DEFAULT_MAX_ITER[method]
    max_iter = int(check_positive(FUNCTION, "max_iter", max_iter, integer=True))
    differentiable = _implicit.wanted(A)
    A_input, A = A, A.detach()
    m, n = A.shape[-2:]
    if A.numel() == 0:
        return PolarResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to decompose",
            history=[],
            U=torch.zeros_like(A),
            H=A.new_zeros(*A.shape[:-2], n, n),
            products=0,
        )
    wide = m < n
    tall = A.mH if wide else A
    # U does not depend on A's scale and H is formed from A itself: dividing by
    # max |a_ij| (inexact, and harmless) keeps A^H A clear of overflow and underflow.
    largest = tall.abs().amax(dim=(-2, -1), keepdim=True)
    scaled = tall / torch.where(largest > 0, largest, torch.ones_like(largest))
    with torch.no_grad():
        X, products, outcome = _METHODS[method](scaled, rtol, max_iter, callback, options)
        U = X.mH if wide else X
        H = U.mH @ A
        H = H.add(H.mH).mul_(0.5)
    if differentiable and outcome.converged:
        U, H = _Polar.apply(A_input, U.detach(), H.detach())
    elif differentiable:
        U, H = _implicit.attach_unsupported(
            "gdla.polar: only a converged polar decomposition has the polar "
            f"decomposition's gradient, and this one is not ({outcome.message})",
            A_input,
            U,
            H,
        )
    return PolarResult(
        method=method,
        nit=outcome.nit,
        converged=outcome.converged,
        message=outcome.message,
        history=outcome.history,
        U=U,
        H=H,
        products=products + 1,
    )
