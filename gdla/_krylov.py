"""Single-vector Golub--Kahan--Lanczos bidiagonalization with thick restarts.

The kernel of :func:`gdla.svd`'s default method.  One vector per step, not a block:
the number of products with ``A`` that a Krylov method needs to reach a given
accuracy is governed by the depth of its space, and a block of ``b`` columns buys
depth ``d`` for ``b d`` products, while a single vector buys it for ``d`` (Meyer,
Musco and Musco, 2024; Chen, Epperly, Meyer, Musco and Rao, 2025, show that any
block size attains the same bound, so the smallest block spends the fewest
products).  On flat spectra (a Gaussian matrix) this is the difference between a
few hundred and a few thousand products.  The price is a matrix-vector product
(memory bound) instead of a matrix-block product per column; the benchmark
``python -m gdla.bench --peers`` measures both.

Thick restarts (Wu and Simon, 2000; Baglama and Reichel, 2005, "augmented
implicitly restarted Lanczos bidiagonalization") keep the leading Ritz vectors
when the basis is full, which is mathematically equivalent to ARPACK's implicit
restart with exact shifts (Sorensen, 1992).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch

from ._iterate import Outcome, iterate
from ._operator import OperatorView, view_of
from ._tensor import batch_max, orth, safe_divide, scale_columns

__all__ = [
    "lanczos_single",
    "default_basis",
    "lanczos_block",
    "subspace_kernel",
    "svd_residual",
    "on_tall",
]

Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Callback = Callable[[int, float], object]
#: What the kernels take: a dense tensor (*, m, n) or the view of any operator
#: (:mod:`gdla._operator`); they see it only through products, shape, dtype, norm.
Matrix = torch.Tensor | OperatorView


def default_basis(k: int, n: int) -> int:
    """Default largest basis: ``max(2k + 20, 3k)``, at most ``n``.

    Measured (top-10, spectra 0.9^j, 0.99^j, Gaussian): larger bases need fewer
    products, and the full reorthogonalisation they cost is small next to a product
    with ``A`` as long as the basis is a few times ``k``.
    """
    return min(n, max(2 * k + 20, 3 * k))


#: The DGKS test (Daniel, Gragg, Kaufman and Stewart, 1976; ARPACK uses it): one
#: Gram--Schmidt pass leaves ``w`` orthogonal to working accuracy when it keeps at least
#: this fraction of ``w``'s norm.
_ONE_PASS_KEEPS = 1 / math.sqrt(2)


def _project_out(
    Qt: torch.Tensor, w: torch.Tensor, coefficients: bool = True, dgks: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``w - Q c`` with ``c = Q^H w`` for the basis ``Q = Qt^T`` stored as contiguous rows,
    classical Gram--Schmidt twice; returns (w, c), ``c`` None unless ``coefficients``.
    With ``dgks``, the second pass is skipped when the first keeps at least
    :data:`_ONE_PASS_KEEPS` of ``w``'s norm (every matrix of the batch).
    ``w`` is overwritten (callers pass a fresh product)."""
    if Qt.shape[-2] == 0:
        return w, w.new_zeros((*w.shape[:-2], 0, w.shape[-1]))
    Qh, Q = Qt.conj(), Qt.mT
    before = torch.linalg.vector_norm(w, dim=(-2, -1)) if dgks else None
    c = Qh @ w
    w = w.sub_(Q @ c)
    if before is not None:
        after = torch.linalg.vector_norm(w, dim=(-2, -1))
        if bool((after >= _ONE_PASS_KEEPS * before).all()):
            return w, (c if coefficients else None)
    c2 = Qh @ w
    w = w.sub_(Q @ c2)
    return w, (c.add_(c2) if coefficients else None)


def _normalise(
    w: torch.Tensor, Qt: torch.Tensor, tiny: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``w / ||w||`` and ``||w||`` (shape (*, 1, 1)) per matrix of the batch; where
    ``||w|| <= tiny`` (rounding level: an invariant subspace), a random unit vector
    orthogonal to ``Q = Qt^T`` and 0."""
    norm = torch.linalg.vector_norm(w, dim=(-2, -1), keepdim=True)
    small = norm <= tiny
    if bool(small.any()):
        fresh = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
        fresh, _ = _project_out(Qt, fresh, coefficients=False)
        fresh = fresh / torch.linalg.vector_norm(fresh, dim=(-2, -1), keepdim=True)
        norm = torch.where(small, torch.zeros_like(norm), norm)
        safe = torch.where(small, torch.ones_like(norm), norm)
        return torch.where(small, fresh, w / safe), norm
    return w.div_(norm), norm


def lanczos_single(
    A: Matrix,
    k: int,
    max_basis: int,
    generator: torch.Generator,
    *,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None = None,
    function: str = "gdla.svd",
) -> tuple[Factors, Outcome]:
    """Top ``k`` singular triplets of the tall ``A`` (*, m, n), ``m >= n``, ``k < n``.

    Bases ``V`` (n x j) and ``U`` (m x j), orthonormal, with ``A V = U B`` (``B``
    upper triangular, j x j) and ``A^H U = V B^H + r e_j^H``, ``r`` orthogonal to
    ``V``.  A step appends ``v = r / ||r||`` to ``V``, forms ``A v``, appends its part
    orthogonal to ``U`` (Gram--Schmidt twice, coefficients kept in ``B``) to ``U``,
    and forms the next ``r`` from ``A^H u`` (orthogonalised against ``V`` twice).
    With ``B = P diag(s) Q^H`` the Ritz triplets ``(U P, s, V Q)`` satisfy ``A V Q =
    U P diag(s)`` and ``A^H U P - V Q diag(s) = r e_j^H P``: the residual of the
    leading ``k`` is ``||r|| ||e_j^H P_k||``, read off the small SVD at no product.

    One iteration (of ``max_iter``) fills the basis from its kept part to
    ``max_basis`` columns, stopping early when the estimate falls below ``rtol``
    (relative to ``||A||_F``); a thick restart then keeps the leading
    ``(max_basis + k) // 2`` Ritz vectors (at least ``k + 1``).  Once the estimate is
    below ``rtol``, the right residual is recomputed from ``A^H U_k`` (``k`` more
    products), since the recurrence leaves out rounding errors; the iteration's
    residual is that value, or the estimate.  Stops, not converged, when the
    basis spans the whole space.
    """
    op = view_of(A)
    m, n = op.shape[-2:]
    batch = op.batch
    max_basis = min(max(max_basis, k + 2), n)
    keep = min(max((max_basis + k) // 2, k + 1), max_basis - 1)
    norm = op.fro_norm
    scale = torch.where(norm > 0, norm, torch.ones_like(norm))
    tiny = (64 * torch.finfo(norm.dtype).eps * scale)[..., None, None]
    # Products tuned for one column: for a large dense A on the CPU, A v from a
    # transposed copy of A; for a sparse A, CSR copies of A and A^H.
    times_A, times_AH = op.vector_products()
    # Where products are cheap (sparse, operator), reorthogonalisation is most of a step:
    # its second pass is taken only when the DGKS test asks for it.  A dense product
    # costs far more than both passes, and dense results stay as they were measured.
    dgks = op.kind != "dense"

    # Preallocated bases, stored transposed (one contiguous row per vector, so that the
    # leading rows in use are a contiguous block): a step writes one row of each, a
    # restart rewrites the leading ``keep`` rows; ``j`` rows are in use.
    Ut = op.zeros(*batch, max_basis, m)
    Vt = op.zeros(*batch, max_basis, n)
    B = op.zeros(*batch, max_basis, max_basis)
    j = 0
    start = torch.randn((*batch, n, 1), generator=generator, dtype=op.dtype, device=op.device)
    r, beta = _normalise(start, Vt[..., :0, :], tiny, generator)
    ritz: dict[str, torch.Tensor] = {}
    spans_all = False

    def extend() -> None:
        nonlocal r, beta, j
        Vt[..., j, :] = r[..., 0]
        w, c = _project_out(Ut[..., :j, :], times_A(r).resolve_conj(), dgks=dgks)
        u, alpha = _normalise(w, Ut[..., :j, :], tiny, generator)
        B[..., : j + 1, j : j + 1] = torch.cat([cast(torch.Tensor, c), alpha.to(op.dtype)], -2)
        Ut[..., j, :] = u[..., 0]
        j += 1
        if j == n:  # V spans the whole space: the residual is rounding noise
            beta = torch.zeros_like(beta)
            return
        w, _ = _project_out(
            Vt[..., :j, :], times_AH(u).resolve_conj(), coefficients=False, dgks=dgks
        )
        r, beta = _normalise(w, Vt[..., :j, :], tiny, generator)

    # The small SVD costs as much as a product with a 1000 x 500 matrix: it is taken
    # when the estimates so far predict convergence (at half the predicted number of
    # steps, from their geometric rate, and at most 4 steps apart), at a restart, and
    # when the space is full.
    steps, next_check = 0, 0
    previous: tuple[int, float] | None = None

    def schedule(value: float) -> None:
        nonlocal next_check, previous
        gap = 1
        if previous is not None and 0 < value < previous[1] and value > rtol:
            rate = math.log(value / previous[1]) / (steps - previous[0])
            gap = min(4, max(1, int(0.5 * math.log(rtol / value) / rate)))
        previous = (steps, value)
        next_check = steps + gap

    def step() -> float:
        nonlocal j, spans_all, steps
        value = float("inf")
        while True:
            extend()
            steps += 1
            if j <= k or (steps < next_check and j < max_basis and j < n):
                continue
            P, s, Qh = torch.linalg.svd(B[..., :j, :j])
            Q = Qh.mH
            estimates = beta[..., 0, 0] * torch.linalg.vector_norm(P[..., -1, :k], dim=-1)
            value = batch_max(estimates / scale)
            schedule(value)
            Uj, Vj = Ut[..., :j, :], Vt[..., :j, :]
            if value <= rtol or j == n:
                Uk, Vk = (P[..., :k].mT @ Uj).mT, (Q[..., :k].mT @ Vj).mT
                ritz.update(U=Uk, S=s[..., :k], V=Vk)
            if value <= rtol:
                # The recurrence leaves out rounding errors: recompute the right residual.
                right = times_AH(Uk) - Vk * s[..., None, :k].to(op.dtype)
                value = batch_max(torch.linalg.matrix_norm(right) / scale)
                if value <= rtol:
                    return value
            if j == n:
                spans_all = True
                return value
            if j >= max_basis:
                # Thick restart: keep the leading Ritz vectors; r stays the residual
                # direction, so A^H U P_l = V Q_l S_l + r (e_j^H P_l) holds.
                Ut[..., :keep, :] = P[..., :keep].mT @ Uj
                Vt[..., :keep, :] = Q[..., :keep].mT @ Vj
                B.zero_()
                B[..., :keep, :keep] = torch.diag_embed(s[..., :keep].to(op.dtype))
                j = keep
                # The leading k kept vectors are the Ritz vectors: no other product.
                ritz.update(U=Ut[..., :k, :].mT.clone(), S=s[..., :k], V=Vt[..., :k, :].mT.clone())
                return value

    def exhausted() -> str | None:
        return "the Krylov space is the whole space" if spans_all else None

    outcome = iterate(
        function, step, rtol=rtol, max_iter=max_iter, callback=callback, exhausted=exhausted
    )
    factors = (ritz["U"], ritz["S"], ritz["V"])
    return factors, outcome


# Block kernels (also used by gdla.complete).


def svd_residual(
    AV: torch.Tensor,
    AhU: torch.Tensor,
    U: torch.Tensor,
    d: torch.Tensor,
    V: torch.Tensor,
    norm: torch.Tensor,
) -> torch.Tensor:
    """Relative residual of an approximate SVD, one value per matrix of the batch.

    ``max(||A V - U D||_F, ||A^H U - V D^H||_F) / ||A||_F`` with ``D = diag(d)``,
    given the products ``AV = A @ V`` and ``AhU = A^H @ U`` (zero matrices give 0).
    """
    r_left = torch.linalg.matrix_norm(AV - scale_columns(U, d))
    r_right = torch.linalg.matrix_norm(AhU - scale_columns(V, d.conj()))
    return safe_divide(torch.maximum(r_left, r_right), norm)


def subspace_kernel(
    A: Matrix,
    k: int,
    block: int,
    generator: torch.Generator,
    *,
    rtol: float,
    max_iter: int,
    callback: Callback | None = None,
    function: str = "gdla.svd",
) -> tuple[Factors, Outcome]:
    """Block subspace iteration with Rayleigh--Ritz for the top ``k`` triplets of ``A``.

    ``A`` has shape (*, m, n) with ``m >= n`` and ``k <= block <= n``.  Before the
    loop, ``U = orth(A @ Omega)`` for a Gaussian ``Omega`` of ``block`` columns.
    Each iteration then (1) forms ``Z = A^H U`` and ``Z = V R``, (2) takes the SVD
    ``R^H = P diag(s) Q^H`` of ``R^H = U^H A V``, the Rayleigh--Ritz step giving the
    triplets ``(U P, s, V Q)``, (3) forms ``Y = A V``, which measures the residual of
    the leading ``k`` triplets and gives the next ``U = orth(Y Q)``.  Returns the
    factors (U (*, m, k), S (*, k), V (*, n, k)) whose residual was last recorded.
    """
    op = view_of(A)
    norm = op.fro_norm
    Omega = torch.randn((*op.batch, op.shape[-1], block), generator=generator, dtype=op.dtype,
                        device=op.device)  # fmt: skip
    U = orth(op.matmul(Omega))
    state: dict[str, torch.Tensor] = {}

    def step() -> float:
        nonlocal U
        Z = op.rmatmul(U)
        V, R = torch.linalg.qr(Z)
        P, s, Qh = torch.linalg.svd(R.mH)
        Q = Qh.mH
        YQ = op.matmul(V) @ Q
        Pk, Qk, sk = P[..., :k], Q[..., :k], s[..., :k]
        Uk, Vk = U @ Pk, V @ Qk
        residual = svd_residual(YQ[..., :k], Z @ Pk, Uk, sk, Vk, norm)
        state.update(U=Uk, S=sk, V=Vk)
        U = orth(YQ)
        return batch_max(residual)

    outcome = iterate(function, step, rtol=rtol, max_iter=max_iter, callback=callback)
    return (state["U"], state["S"], state["V"]), outcome


def times_thin(A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``A @ X`` for a thin ``X``, computed as ``(X^H A^H)^H``.

    The same product, but MKL on CPU runs the wide-output form up to 2-3 times
    faster when ``X`` has a few tens of columns (measured with torch 2.13 on
    4000 x 2000 and 4000 x 60 operands).
    """
    return (X.mH @ A.mH).mH


def project_out_block(Q: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W - Q C`` with ``C = Q^H W``, orthogonalised twice (classical Gram--Schmidt, twice
    is enough); returns the projected ``W`` and the total coefficients ``C``."""
    C = times_thin(Q.mH, W)
    W = W - times_thin(Q, C)
    C2 = times_thin(Q.mH, W)
    return W - times_thin(Q, C2), C + C2


def extend_basis(
    Q: torch.Tensor, W: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal columns ``N`` orthogonal to ``Q`` with ``W = Q C + N R``; returns (N, C, R).

    When the projected ``W`` is nearly rank deficient (it lies almost in the span of
    ``Q``: an invariant subspace has been found, or the bases fill the space), its
    QR decomposition magnifies the rounding errors of the projection, and ``N`` is
    no longer orthogonal to ``Q`` to working accuracy: it is then projected and
    factored once more, which keeps the bases orthonormal.
    """
    W, C = project_out_block(Q, W)
    N, R = torch.linalg.qr(W)
    leak = Q.mH @ N
    if batch_max(leak.abs()) > 100 * torch.finfo(W.dtype).eps:
        N, R_again = torch.linalg.qr(N - Q @ leak)
        R = R_again @ R
    return N, C, R


def lanczos_block(
    A: Matrix,
    k: int,
    block: int,
    max_basis: int,
    generator: torch.Generator,
    *,
    rtol: float,
    max_iter: int,
    callback: Callback | None = None,
    function: str = "gdla.svd",
) -> tuple[Factors, Outcome]:
    """Block Golub--Kahan--Lanczos bidiagonalization with thick restarts, top ``k`` triplets.

    ``A`` has shape (*, m, n) with ``m >= n``, ``k <= block <= n``, and either
    ``block == n`` (one exact iteration) or ``k + block <= max_basis <= n - block``.
    The bases ``U`` (m x d) and ``V`` (n x d) are orthonormal, with ``A V = U B``
    for the small ``B = U^H A V`` and ``A^H U = V B^H + W L E^H``, where ``W``
    (n x block) is the next block of ``V`` and ``E`` selects the newest block of
    ``U``.  Iteration i (1) forms ``A W`` and appends its part orthogonal to ``U``
    to ``U`` (and ``W`` to ``V``), (2) takes the SVD ``B = P diag(s) Q^H``, the
    Rayleigh--Ritz step giving the triplets ``(U P, s, V Q)``, (3) forms ``A^H``
    times the newest block of ``U``, whose part orthogonal to ``V`` is the next
    ``W L``.  The Ritz triplets satisfy ``A V Q = U P diag(s)`` exactly and
    ``A^H U P - V Q diag(s) = W L E^H P``, so their residual is ``||L E^H P_k||_F``
    and costs no extra product; once that estimate is below ``rtol``, the right
    residual is recomputed from ``A^H U_k`` (one product with k columns), since
    the recurrence leaves out rounding errors.  When ``d`` would exceed
    ``max_basis`` the bases are cut to the leading ``max_basis - block`` Ritz
    vectors (a thick restart), which keeps both relations.
    """
    op = view_of(A)
    n = op.shape[-1]
    batch = op.batch
    norm = op.fro_norm
    U = op.zeros(*batch, op.shape[-2], 0)
    V = op.zeros(*batch, n, 0)
    B = op.zeros(*batch, 0, 0)
    W = orth(torch.randn((*batch, n, block), generator=generator, dtype=op.dtype,
                         device=op.device))  # fmt: skip
    ritz: dict[str, torch.Tensor] = {}

    def step() -> float:
        nonlocal U, V, B, W
        U_new, C, R = extend_basis(U, op.thin_matmul(W))
        zeros = op.zeros(*batch, block, B.shape[-1])
        B = torch.cat([torch.cat([B, C], dim=-1), torch.cat([zeros, R], dim=-1)], dim=-2)
        U, V = torch.cat([U, U_new], dim=-1), torch.cat([V, W], dim=-1)
        P, s, Qh = torch.linalg.svd(B)
        ritz.update(U=U, V=V, P=P[..., :k], S=s[..., :k], Q=Qh.mH[..., :k])
        W_next, _, L = extend_basis(V, op.thin_rmatmul(U_new))
        residual = torch.linalg.matrix_norm(L @ P[..., -block:, :k])
        if V.shape[-1] < n:  # else V spans everything, L is rounding noise: exhausted
            W = W_next
            if V.shape[-1] + block > max_basis:
                keep = max_basis - block
                U, V = U @ P[..., :keep], V @ Qh.mH[..., :keep]
                B = torch.diag_embed(s[..., :keep].to(op.dtype))
        estimate = batch_max(safe_divide(residual, norm))
        if estimate > rtol:
            return estimate
        # The recurrence leaves out rounding errors: recompute the right residual (the
        # left one, A V_k - U_k S, vanishes up to rounding because A V = U B was formed
        # block by block from the products themselves).
        Uk, Vk = ritz["U"] @ ritz["P"], ritz["V"] @ ritz["Q"]
        right = op.thin_rmatmul(Uk) - scale_columns(Vk, ritz["S"])
        return batch_max(safe_divide(torch.linalg.matrix_norm(right), norm))

    def exhausted() -> str | None:
        return "the Krylov space is the whole space" if V.shape[-1] == n else None

    outcome = iterate(
        function, step, rtol=rtol, max_iter=max_iter, callback=callback, exhausted=exhausted
    )
    factors = (ritz["U"] @ ritz["P"], ritz["S"], ritz["V"] @ ritz["Q"])
    return factors, outcome


def on_tall(
    A: Any,
    solver: Callable[[Any], tuple[Factors, Outcome]],
) -> tuple[Factors, Outcome]:
    """Run ``solver`` on ``A`` if it is tall (m >= n), else on ``A^H``, swapping U and V back.

    ``A`` is a tensor or an operator view (whose ``H`` is the view of ``A^H``)."""
    if A.shape[-2] >= A.shape[-1]:
        return solver(A)
    (U, S, V), outcome = solver(A.mH if isinstance(A, torch.Tensor) else A.H)
    return (V, S, U), outcome
