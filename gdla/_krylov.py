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
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch

from ._compiled import orthogonalise
from ._iterate import Outcome, iterate
from ._operator import OperatorView, numpy_gram_product, view_of
from ._tensor import (
    batch_max,
    orth,
    safe_divide,
    scale_columns,
    small_eigh,
    small_svd,
    torch_function_mode_active,
)

__all__ = [
    "lanczos_single",
    "lanczos_gram",
    "lanczos_two_sided",
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


#: Safety factor of :func:`lanczos_gram`'s rule: it gives up unless ``rtol`` is at least
#: this many times its floor.  The floor is a bound, not a prediction: measured on 700 x
#: 300 matrices with spectra 0.9^j and 0.5^j (top 10), the residual reached was at or
#: below it (4e-15 against a floor of 1e-13 for 0.5^j), so the rule errs on the safe side.
GRAM_SAFETY = 10.0


#: :func:`lanczos_gram` orthogonalises in its compiled kernel (with Numba) up to this n.
_COMPILED_GRAM_SCHMIDT_UP_TO = 2500

#: The most steps between two checks of :class:`_CheckSchedule`.
_MAX_CHECK_GAP = 16

#: A check (an order-40 eigendecomposition, 0.15--0.2 ms here) costs about as long as a
#: product reading this many bytes of a matrix takes.
_CHECK_BYTES = 16 << 20


def max_check_gap(op: OperatorView) -> int:
    """The most steps between two checks for products with ``op``: 16 where a product
    reads at most :data:`_CHECK_BYTES` (or its cost is unknown), fewer where products
    cost more, down to 4.  A late check wastes up to a gap of steps while checks cost
    the same whatever the matrix, so the gap that balances the two shrinks like the
    square root of a check's cost over a step's.  (Measured, top 10 to 1e-10 of 4000 x
    2000 float64 matrices, 64 MB, at a fixed rtol: a gap of 8 was 1--9 % faster than 16
    in one interleaved run; with rtol tuned to each target the steps barely change.)"""
    size = op.product_bytes
    if size is None or size <= _CHECK_BYTES:
        return _MAX_CHECK_GAP
    return max(4, round(_MAX_CHECK_GAP * math.sqrt(_CHECK_BYTES / size)))


class _CheckSchedule:
    """When a Lanczos kernel takes its small decomposition (it costs as much as a product
    with a 1000 x 500 matrix): when the estimates so far predict convergence (at half the
    predicted number of steps, from their geometric rate, at most ``max_gap`` steps
    apart, :func:`max_check_gap`); the kernels also take it at a restart and when the
    space is full.  (Measured, top 10 of 2000 x 1000 and sparse 20,000 x 5,000 matrices:
    a gap of at most 16 took a third of the checks of a 4-step cap, for the same steps
    to within two.)"""

    def __init__(self, rtol: float, max_gap: int = _MAX_CHECK_GAP) -> None:
        self.rtol = rtol
        self.max_gap = max_gap
        self.steps = 0
        self.next_check = 0
        self.previous: tuple[int, float] | None = None

    def due(self) -> bool:
        return self.steps >= self.next_check

    def record(self, value: float) -> None:
        """Schedule the next check from the estimate ``value`` taken at this step."""
        gap = 1
        if self.previous is not None and 0 < value < self.previous[1] and value > self.rtol:
            rate = math.log(value / self.previous[1]) / (self.steps - self.previous[0])
            gap = min(self.max_gap, max(1, int(0.5 * math.log(self.rtol / value) / rate)))
        self.previous = (self.steps, value)
        self.next_check = self.steps + gap


class _SquaringLimitError(Exception):
    """Raised inside :func:`lanczos_gram`'s step when the squared spectrum cannot reach rtol."""


def lanczos_gram(
    A: Matrix,
    k: int,
    max_basis: int,
    generator: torch.Generator,
    *,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None = None,
    function: str = "gdla.svd",
) -> tuple[Factors | None, Outcome]:
    """Top ``k`` singular triplets of the tall ``A`` (*, m, n), ``m >= n``, ``k < n``, by
    thick-restart Lanczos on ``G = A^H A`` with the short side's basis only, or None.

    The basis ``V`` (n x j) is orthonormal with ``G V = V T + beta r e_j^H``, ``T =
    V^H G V`` (j x j, Hermitian) and ``r`` a unit vector orthogonal to ``V``.  A step
    forms ``G v = A^H (A v)`` for the newest ``v``, orthogonalises it against ``V``
    (classical Gram--Schmidt; the second pass only when the first keeps less than
    ``1/sqrt(2)`` of its norm, the DGKS test), whose coefficients are ``T``'s new
    column, and appends it normalised: two products, and Gram--Schmidt on the short
    side only.  With ``T = Y diag(theta) Y^H`` (``theta`` descending) the Ritz
    vectors ``v_i = V y_i`` have ``||G v_i - theta_i v_i|| = beta |e_j^H y_i|``, so the
    triplets ``(A v_i / s_i, s_i, v_i)``, ``s_i = sqrt(theta_i)``, have left residual 0
    and right residual ``beta |e_j^H y_i| / s_i``: the estimate is the Frobenius norm
    of the leading ``k`` of these over ``||A||_F``, read off ``T``'s eigendecomposition
    (taken on the two-sided kernel's schedule) at no product.  The Krylov space is
    that of :func:`lanczos_two_sided` from the same start, and so are the number of
    products, iterations and thick restarts.  Every product ``A^H A v`` is kept as it
    came (rotated with ``V`` at a restart), and so is ``A v`` until the first restart.
    Once the estimate is below ``rtol``, ``V_k = V Y_k`` and the SVD ``A V_k = P diag(s)
    Q^H`` (a Rayleigh--Ritz step on ``A``, ``A V_k`` from the kept products before the
    first restart, after it from ``k`` products) give the triplets ``(P, s, V_k Q)``:
    ``U = P`` is orthonormal and the left residual vanishes to rounding; the right
    residual ``A^H P - V_k Q diag(s)`` is recomputed with ``A^H P = (A^H A V_k) Q
    diag(s)^-1`` from the kept products (no new product: the rounding errors of the
    products are in it, those of the recurrence are not), and is the iteration's
    residual.

    The price of squaring, and the rule: a product with ``G`` carries rounding errors
    of about ``eps ||A||_2^2`` (``eps`` of A's real dtype), which the right residual
    divides by ``s_i``, so the estimate cannot fall much below the floor ``eps s_1^2
    (sum_{i<=k} s_i^-2)^(1/2) / ||A||_F``.  The kernel gives up, returning None for
    the factors together with the iterations done so far (for
    :func:`lanczos_two_sided` to continue), at the first check where ``rtol <
    GRAM_SAFETY * floor`` with the current Ritz values (``GRAM_SAFETY`` = 10; a zero
    ``s_k``, a matrix of rank below ``k``, gives up at once), or when the recomputed
    residual is above ``rtol`` and above ten times the estimate (rounding, not the
    iteration, limits it).  With ``||A||_F >= s_1`` the rule keeps this kernel
    whenever ``s_1 / s_k <= rtol / (GRAM_SAFETY sqrt(k) eps)``: for float64 and
    ``rtol = 1e-10``, a spread of the top ``k`` singular values up to about 10^4.
    """
    op = view_of(A)
    m, n = op.shape[-2:]
    batch = op.batch
    max_basis = min(max(max_basis, k + 2), n)
    keep = min(max((max_basis + k) // 2, k + 1), max_basis - 1)
    norm = op.fro_norm
    scale = torch.where(norm > 0, norm, torch.ones_like(norm))
    eps = torch.finfo(norm.dtype).eps
    # G's entries are of the size of ||A||^2: a projected product below this is rounding.
    tiny = (64 * eps * scale * scale)[..., None, None]
    tiny_flat = tiny[..., 0, 0]
    times_A, times_AH = op.vector_products()
    gram_product = op.gram_vector_product()

    # The basis, stored transposed (one contiguous row per vector); row j is the next
    # vector to multiply, rows :j have their products in T's leading j columns.
    Vt = op.zeros(*batch, max_basis + 1, n)
    # The products A v and A^H A v as they came (before Gram--Schmidt): A V Y and
    # A^H A V Y for the final triplets and their residual, without another product.
    # After a thick restart, rotating the m-long products would cost more than forming
    # A V Y at the end (k products): only the n-long ones are kept.
    # (Measured at 2000 x 1000, where a restart's rotation of A V took 0.3 ms in the
    # solve against 1.2--2.4 ms for the final k products: worth it for up to about
    # four restarts, which cannot be known in advance.)
    # (Uninitialised: a row is read only after a step has written it.)
    AVt = torch.empty((*batch, max_basis, m), dtype=op.dtype, device=op.device)
    GVt = torch.empty((*batch, max_basis, n), dtype=op.dtype, device=op.device)
    products_kept = True  # AVt's rows :j are A times V's rows :j (until the first restart)
    T = op.zeros(*batch, max_basis, max_basis)
    flat = not batch and not op.dtype.is_complex
    start = torch.randn((*batch, n, 1), generator=generator, dtype=op.dtype, device=op.device)
    first, _ = _normalise(start, Vt[..., :0, :], tiny, generator)
    Vt[..., 0, :] = first[..., 0]
    beta = torch.zeros_like(norm)
    j = 0
    history: list[float] = []
    ritz: dict[str, torch.Tensor] = {}
    spans_all = False

    # Where NumPy's BLAS forms the products (one real dense CPU matrix), the step's vector
    # work too, on the same memory: NumPy's calls cost a few microseconds, torch's tens,
    # and a step that mixes the two libraries makes their thread pools compete for the
    # cores (OpenBLAS's threads spin for a while after each call).
    # (The step then also keeps beta as a Python float and takes its checks and restarts
    # in NumPy: a torch call on a small tensor costs as much as Gram--Schmidt itself.)
    arrays = op.numpy_pair() if flat else None  # A and A^H on NumPy's (or SciPy's) side
    numpy_steps = arrays is not None and not torch_function_mode_active()
    if arrays is not None:
        gram_on_arrays = numpy_gram_product(*arrays)
        Vn, AVn, GVn, Tn = Vt.numpy(), AVt.numpy(), GVt.numpy(), T.numpy()
        tiny_value, scale_value = float(tiny_flat), float(scale)
        # Gram--Schmidt in one compiled call (with Numba) where n is short: against 40
        # vectors, 14 us against NumPy's 17 at n = 1000, 24 against 27 at 2000; from
        # about 3000 on NumPy's BLAS threads are faster (5000: 75 against 64 us).
        compiled_gram_schmidt = orthogonalise() if n <= _COMPILED_GRAM_SCHMIDT_UP_TO else None
        coefficients = np.empty(max_basis + 1, dtype=Vn.dtype)
    beta_value = 0.0

    def extend_numpy() -> None:
        nonlocal beta_value, j
        gram_on_arrays(Vn[j], AVn[j], GVn[j])
        Q = Vn[: j + 1]
        w = GVn[j].copy()
        if compiled_gram_schmidt is not None:  # the same passes, in one compiled call
            c = coefficients[: j + 1]
            after, broke = compiled_gram_schmidt(Q, w, c, _ONE_PASS_KEEPS, tiny_value)
        else:
            before = math.sqrt(w @ w)
            c = Q @ w
            w -= c @ Q
            after = math.sqrt(w @ w)
            broke = False
            if after < _ONE_PASS_KEEPS * before or after <= tiny_value:
                c2 = Q @ w
                w -= c2 @ Q
                c += c2
                after = math.sqrt(w @ w)
                broke = after <= tiny_value
        Tn[: j + 1, j] = c
        j += 1
        if j == n:  # V spans the whole space: the residual is rounding noise
            beta_value = 0.0
        elif broke:  # an invariant subspace: a fresh direction orthogonal to V
            fresh, _ = _normalise(torch.from_numpy(w)[:, None], Vt[:j], tiny, generator)
            beta_value = 0.0
            Vt[j] = fresh[:, 0]
        else:
            beta_value = after
            np.divide(w, after, out=Vn[j])

    def ritz_estimate_numpy() -> tuple[torch.Tensor, torch.Tensor, float]:
        """:func:`ritz_estimate` in NumPy (``numpy_steps``)."""
        theta, Y = np.linalg.eigh(Tn[:j, :j], UPLO="U")
        theta, Y = theta[::-1], Y[:, ::-1]
        s = np.sqrt(np.maximum(theta[:k], 0))
        inverse = np.divide(1.0, s, out=np.full_like(s, math.inf), where=s > 0)
        floor = eps * theta[0] * math.sqrt(inverse @ inverse) / scale_value
        if rtol < GRAM_SAFETY * floor:
            raise _SquaringLimitError
        residuals = beta_value * np.abs(Y[j - 1, :k]) * inverse
        value = math.sqrt(residuals @ residuals) / scale_value
        return torch.from_numpy(theta.copy()), torch.from_numpy(Y.copy()), value

    def ritz_estimate() -> tuple[torch.Tensor, torch.Tensor, float]:
        """``T``'s eigenvalues (descending) and eigenvectors, and the estimate; raises
        :class:`_SquaringLimitError` when rtol is below the squaring's floor."""
        if numpy_steps:
            return ritz_estimate_numpy()
        theta, Y = small_eigh(T[..., :j, :j], UPLO="U")
        theta, Y = theta.flip(-1), Y.flip(-1)
        s = theta[..., :k].clamp_min(0).sqrt()
        inverse = torch.where(s > 0, 1 / s, torch.full_like(s, math.inf))
        floor = eps * theta[..., 0] * torch.linalg.vector_norm(inverse, dim=-1) / scale
        if rtol < GRAM_SAFETY * batch_max(floor):
            raise _SquaringLimitError
        residuals = beta[..., None] * Y[..., j - 1, :k].abs() * inverse
        return theta, Y, batch_max(torch.linalg.vector_norm(residuals, dim=-1) / scale)

    def extend() -> None:
        nonlocal beta, j
        if numpy_steps:
            extend_numpy()
            return
        Q = Vt[..., : j + 1, :]
        if flat:  # one real matrix: vectors as 1-D tensors
            # (Gram--Schmidt with @, which gdla.metrics.ProductCounter counts, not torch.mv.)
            gram_product(Vt[j], AVt[j], GVt[j])
            w = GVt[j].clone()
            before = torch.linalg.vector_norm(w)
            c = Q @ w
            w.sub_(Q.mT @ c)
            after = torch.linalg.vector_norm(w)
            if bool((after < _ONE_PASS_KEEPS * before) | (after <= tiny_flat)):
                c2 = Q @ w
                w.sub_(Q.mT @ c2)
                c.add_(c2)
                after = torch.linalg.vector_norm(w)
                broke = bool(after <= tiny_flat)
            else:
                broke = False
            T[: j + 1, j] = c
            w = w[:, None]
        else:
            AVt[..., j, :] = times_A(Vt[..., j, :, None])[..., 0]
            w = times_AH(AVt[..., j, :, None]).resolve_conj()
            GVt[..., j, :] = w[..., 0]
            before = torch.linalg.vector_norm(w, dim=(-2, -1))
            c = Q.conj() @ w
            w = w.sub_(Q.mT @ c)
            after = torch.linalg.vector_norm(w, dim=(-2, -1))
            broke = False
            if bool(((after < _ONE_PASS_KEEPS * before) | (after <= tiny_flat)).any()):
                c2 = Q.conj() @ w
                w = w.sub_(Q.mT @ c2)
                c = c.add_(c2)
                after = torch.linalg.vector_norm(w, dim=(-2, -1))
                broke = bool((after <= tiny_flat).any())
            T[..., : j + 1, j] = c[..., 0]
        j += 1
        if j == n:  # V spans the whole space: the residual is rounding noise
            beta = torch.zeros_like(beta)
            return
        if broke:  # an invariant subspace: a fresh direction orthogonal to V
            w, norm_w = _normalise(w, Q, tiny, generator)
            beta = norm_w[..., 0, 0].real
            Vt[..., j, :] = w[..., 0]
        else:
            beta = after
            torch.div(w[..., 0], after[..., None], out=Vt[..., j, :])

    def triplets_numpy(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """:func:`triplets` in NumPy (``numpy_steps``), vectors as rows; the residual's
        Frobenius norm instead of the residual."""
        Yt = Y.numpy().T
        VYt = Yt @ Vn[:j]
        matrix, adjoint = cast(tuple[Any, Any], arrays)
        if products_kept:
            AVYt = Yt @ AVn[:j]
        elif isinstance(adjoint, np.ndarray):  # (A V Y)^T = (V Y)^T A^T: one matrix product
            AVYt = VYt @ adjoint
        else:  # SciPy sparse
            AVYt = np.asarray(matrix @ VYt.T).T
        # (A V Y)^T = W diag(s) Z^T: P = Z, Q = W.
        W, s, Zt = np.linalg.svd(AVYt, full_matrices=False)
        Vt_k = W.T @ VYt
        with np.errstate(divide="ignore", invalid="ignore"):  # as torch: s = 0 gives inf
            right = (W.T @ (Yt @ GVn[:j])) / s[:, None] - Vt_k * s[:, None]
        value = math.sqrt(float(np.sum(right * right))) / scale_value
        U, V = np.ascontiguousarray(Zt.T), np.ascontiguousarray(Vt_k.T)
        return torch.from_numpy(U), torch.from_numpy(s), torch.from_numpy(V), value

    def triplets(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """The Rayleigh--Ritz triplets of A on the span of V Y (Y: j x k) and the norm of
        their right residual over ``||A||_F`` (batch maximum): with ``A V Y = P diag(s)
        Q^H`` (from the stored products), the triplets (P, s, V Y Q) and ``A^H P - V Y Q
        diag(s)``, where ``A^H P = A^H A V Y Q diag(s)^-1`` (from the stored products
        too)."""
        if numpy_steps:
            return triplets_numpy(Y)
        VY = (Y.mT @ Vt[..., :j, :]).mT
        AVY = (Y.mT @ AVt[..., :j, :]).mT if products_kept else op.thin_matmul(VY)
        P, s, Qh = torch.linalg.svd(AVY, full_matrices=False)
        Q = Qh.mH
        V = VY @ Q
        s_typed = s[..., None, :].to(op.dtype)
        AhP = ((Y.mT @ GVt[..., :j, :]).mT @ Q) / s_typed
        right = AhP - V * s_typed
        return P, s, V, batch_max(torch.linalg.matrix_norm(right) / scale)

    checks = _CheckSchedule(rtol, max_check_gap(op))

    def step() -> float:
        nonlocal j, spans_all, products_kept
        while True:
            extend()
            checks.steps += 1
            if j <= k or (not checks.due() and j < max_basis and j < n):
                continue
            theta, Y, value = ritz_estimate()
            checks.record(value)
            if value <= rtol or j == n:
                U, S, V, residual = triplets(Y[..., :k])
                ritz.update(U=U, S=S, V=V)
                estimate, value = value, residual
                if value <= rtol:
                    return value
                if estimate <= rtol and value > 10 * estimate and j < n:
                    raise _SquaringLimitError
            if j == n:
                spans_all = True
                return value
            if j >= max_basis:
                # Thick restart: keep the leading Ritz vectors and the residual direction
                # (the next vector); the next step's coefficients restore T's coupling.
                if numpy_steps:
                    Yn = Y[:, :keep].numpy()
                    Vn[:keep] = Yn.T @ Vn[:j]
                    GVn[:keep] = Yn.T @ GVn[:j]
                    Vn[keep] = Vn[j]
                    Tn.fill(0)
                    Tn[range(keep), range(keep)] = theta[:keep].numpy()
                else:
                    Vt[..., :keep, :] = Y[..., :keep].mT @ Vt[..., :j, :]
                    GVt[..., :keep, :] = Y[..., :keep].mT @ GVt[..., :j, :]
                    Vt[..., keep, :] = Vt[..., j, :]
                    T.zero_()
                    T[..., :keep, :keep] = torch.diag_embed(theta[..., :keep].to(op.dtype))
                products_kept = False
                j = keep
                return value

    def recorded_step() -> float:
        value = step()
        history.append(value)
        return value

    def exhausted() -> str | None:
        return "the Krylov space is the whole space" if spans_all else None

    try:
        outcome = iterate(
            function, recorded_step, rtol=rtol, max_iter=max_iter, callback=callback,
            exhausted=exhausted,
        )  # fmt: skip
    except _SquaringLimitError:
        return None, Outcome(len(history), False, "handed over", history)
    if not outcome.converged and not spans_all:
        # Stopped early (max_iter, callback): the triplets of the latest Ritz vectors.
        _, Y = small_eigh(T[..., :j, :j], UPLO="U")
        ritz.update(zip("USV", triplets(Y.flip(-1)[..., :k])[:3], strict=True))
    return (ritz["U"], ritz["S"], ritz["V"]), outcome


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

    First by :func:`lanczos_gram`, Lanczos on ``A^H A`` with the short side's basis
    only (two products and one Gram--Schmidt per step); where its squared spectrum
    cannot reach ``rtol`` (the rule is stated there) by :func:`lanczos_two_sided`,
    the Golub--Kahan--Lanczos recurrence with both bases, which continues the count
    of iterations (``nit``, ``history`` and ``max_iter`` include the first stage).
    The same Krylov space, so the same number of products per iteration.
    """
    factors, outcome = lanczos_gram(
        A, k, max_basis, generator, rtol=rtol, max_iter=max_iter, callback=callback,
        function=function,
    )  # fmt: skip
    if factors is not None:
        return factors, outcome
    return lanczos_two_sided(
        A, k, max_basis, generator, rtol=rtol, max_iter=max_iter, callback=callback,
        function=function, done=outcome.history,
    )  # fmt: skip


def lanczos_two_sided(
    A: Matrix,
    k: int,
    max_basis: int,
    generator: torch.Generator,
    *,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None = None,
    function: str = "gdla.svd",
    done: Sequence[float] = (),
) -> tuple[Factors, Outcome]:
    """Top ``k`` singular triplets of the tall ``A`` (*, m, n), ``m >= n``, ``k < n``,
    by Golub--Kahan--Lanczos bidiagonalization with both bases.

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

    checks = _CheckSchedule(rtol, max_check_gap(op))

    def step() -> float:
        nonlocal j, spans_all
        value = float("inf")
        while True:
            extend()
            checks.steps += 1
            if j <= k or (not checks.due() and j < max_basis and j < n):
                continue
            P, s, Qh = small_svd(B[..., :j, :j])
            Q = Qh.mH
            estimates = beta[..., 0, 0] * torch.linalg.vector_norm(P[..., -1, :k], dim=-1)
            value = batch_max(estimates / scale)
            checks.record(value)
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
        function, step, rtol=rtol, max_iter=max_iter, callback=callback, exhausted=exhausted,
        done=done,
    )  # fmt: skip
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
