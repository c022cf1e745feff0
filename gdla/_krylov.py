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
from typing import cast

import torch

from ._iterate import Outcome, iterate

__all__ = ["lanczos_single", "default_basis"]

Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


#: Matrices with at least this many entries get a transposed copy on the CPU.
_COPY_FROM = 1 << 20


def default_basis(k: int, n: int) -> int:
    """Default largest basis: ``max(2k + 20, 3k)``, at most ``n``.

    Measured (top-10, spectra 0.9^j, 0.99^j, Gaussian): larger bases need fewer
    products, and the full reorthogonalisation they cost is small next to a product
    with ``A`` as long as the basis is a few times ``k``.
    """
    return min(n, max(2 * k + 20, 3 * k))


def _batch_max(values: torch.Tensor) -> float:
    return float(values.max()) if values.numel() else 0.0


def _project_out(
    Qt: torch.Tensor, w: torch.Tensor, coefficients: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``w - Q c`` with ``c = Q^H w`` for the basis ``Q = Qt^T`` stored as contiguous rows,
    classical Gram--Schmidt twice; returns (w, c), ``c`` None unless ``coefficients``.
    ``w`` is overwritten (callers pass a fresh product)."""
    if Qt.shape[-2] == 0:
        return w, w.new_zeros((*w.shape[:-2], 0, w.shape[-1]))
    Qh, Q = Qt.conj(), Qt.mT
    c = Qh @ w
    w = w.sub_(Q @ c)
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
    A: torch.Tensor,
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
    m, n = A.shape[-2:]
    batch = A.shape[:-2]
    max_basis = min(max(max_basis, k + 2), n)
    keep = min(max((max_basis + k) // 2, k + 1), max_basis - 1)
    norm = torch.linalg.matrix_norm(A)
    scale = torch.where(norm > 0, norm, torch.ones_like(norm))
    tiny = (64 * torch.finfo(norm.dtype).eps * scale)[..., None, None]
    # On the CPU, MKL (torch 2.13) computes a row vector times a matrix, x^T M, two to
    # three times faster than a matrix times a column, A v (measured on 2000 x 1000 and
    # 4000 x 2000 float64): for large matrices, where the products dominate, A v is
    # formed as (v^T A^T)^T from one transposed copy of A.
    At = A.mT.contiguous() if A.device.type == "cpu" and m * n >= _COPY_FROM else None

    def times_A(v: torch.Tensor) -> torch.Tensor:
        return A @ v if At is None else (v.mT @ At).mT

    # Preallocated bases, stored transposed (one contiguous row per vector, so that the
    # leading rows in use are a contiguous block): a step writes one row of each, a
    # restart rewrites the leading ``keep`` rows; ``j`` rows are in use.
    Ut = A.new_zeros((*batch, max_basis, m))
    Vt = A.new_zeros((*batch, max_basis, n))
    B = A.new_zeros((*batch, max_basis, max_basis))
    j = 0
    start = torch.randn((*batch, n, 1), generator=generator, dtype=A.dtype, device=A.device)
    r, beta = _normalise(start, Vt[..., :0, :], tiny, generator)
    ritz: dict[str, torch.Tensor] = {}
    spans_all = False

    def extend() -> None:
        nonlocal r, beta, j
        Vt[..., j, :] = r[..., 0]
        w, c = _project_out(Ut[..., :j, :], times_A(r).resolve_conj())
        u, alpha = _normalise(w, Ut[..., :j, :], tiny, generator)
        B[..., : j + 1, j : j + 1] = torch.cat([cast(torch.Tensor, c), alpha.to(A.dtype)], -2)
        Ut[..., j, :] = u[..., 0]
        j += 1
        if j == n:  # V spans the whole space: the residual is rounding noise
            beta = torch.zeros_like(beta)
            return
        w, _ = _project_out(Vt[..., :j, :], (u.mH @ A).mH.resolve_conj(), coefficients=False)
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
            value = _batch_max(estimates / scale)
            schedule(value)
            Uj, Vj = Ut[..., :j, :], Vt[..., :j, :]
            if value <= rtol or j == n or j >= max_basis:
                Uk, Vk = (P[..., :k].mT @ Uj).mT, (Q[..., :k].mT @ Vj).mT
                ritz.update(U=Uk, S=s[..., :k], V=Vk)
            if value <= rtol:
                # The recurrence leaves out rounding errors: recompute the right residual.
                right = (Uk.mH @ A).mH - Vk * s[..., None, :k].to(A.dtype)
                value = _batch_max(torch.linalg.matrix_norm(right) / scale)
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
                B[..., :keep, :keep] = torch.diag_embed(s[..., :keep].to(A.dtype))
                j = keep
                return value

    def exhausted() -> str | None:
        return "the Krylov space is the whole space" if spans_all else None

    outcome = iterate(
        function, step, rtol=rtol, max_iter=max_iter, callback=callback, exhausted=exhausted
    )
    factors = (ritz["U"], ritz["S"], ritz["V"])
    return factors, outcome
