"""Sketch-and-precondition least squares: a random sketch's QR as LSQR's (or LSMR's) preconditioner.

A sparse sign embedding ``S`` (d x m, each column ``ζ`` random entries ``±1/√ζ`` in
random rows; Woodruff's CountSketch is ``ζ = 1``) maps the range of a tall ``A``
(m x n, d a few times n) into a space of dimension d while keeping every length
within a constant factor, with high probability.  The cost of ``SA`` is ``ζ`` passes
over ``A``, not the ``d m n`` flops of a dense sketch.  If ``SA = QR``, then
``A R⁻¹`` has singular values in ``[1/(1 + ε), 1/(1 − ε)]`` with ``ε ≈ √(n/d)``
whatever the condition number of ``A``, and LSQR on ``A R⁻¹`` converges at a rate of
about ``√(n/d)`` per iteration (Rokhlin and Tygert 2008; Blendenpik, Avron,
Maymounkov and Toledo 2010; LSRN, Meng, Saunders and Mahoney 2014).  R comes from
Cholesky QR where an a-posteriori check allows it, otherwise from Householder QR
(:func:`cholesky_factor`).

Sketch-and-precondition alone is not backward stable (Meier, Nakatsukasa, Townsend and
Webb 2024); an outer loop of iterative refinement, which recomputes the residual
``b − Ax`` from ``A`` itself and solves for the correction with the same
preconditioned LSQR, makes it so (Epperly, Meier and Nakatsukasa 2024).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import torch

from ._fused import gram
from ._iterate import Outcome, iterate
from ._lsmr import LSMR
from ._lsqr import (
    LSQR,
    GolubKahan,
    GolubKahanSolver,
    Products,
    _norm,
    backward_error,
    dense_products,
    separate_products,
)
from ._operator import numpy_blas_array
from ._validation import OptionError, check_positive

__all__ = [
    "sparse_sign_embedding",
    "sketch",
    "Preconditioner",
    "cholesky_factor",
    "sketch_preconditioner",
    "solve",
]

#: Nonzeros per column of the sparse sign embedding: 8 for sketches of fewer than 4 n
#: rows (as Tropp et al. recommend for d about 2 n), 4 for larger ones, where this
#: package measured the same LSQR iterations as with 8 at half the cost of the sketch.
NONZEROS = (8, 4)

#: The inner solvers of the correction problems.
INNER: dict[str, Callable[[GolubKahan], GolubKahanSolver]] = {"lsqr": LSQR, "lsmr": LSMR}

#: What a correction problem's solver gets: its products, the adjoint product, the
#: right-hand side and, if known, the adjoint applied to it.
Operator = tuple[
    Products, Callable[[torch.Tensor], torch.Tensor], torch.Tensor, "torch.Tensor | None"
]

#: Default sketch size as a multiple of n.
SKETCH_FACTOR = 8.0

#: The largest estimated loss of orthogonality ``‖QᴴQ − I‖₂`` of ``Q = SA R⁻¹`` at
#: which :func:`cholesky_factor` keeps its R: ``κ(Q) ≤ √(1.05 / 0.95) ≈ 1.05``, so
#: ``A R⁻¹`` is within 5 % of the conditioning that Householder's R gives, with a
#: margin of ten for the estimate, a lower bound.
CHOLESKY_LOSS = 0.05

#: Power iterations (on two seeded random vectors) of that estimate.
LOSS_ITERATIONS = 3


def sparse_sign_embedding(
    m: int,
    d: int,
    *,
    zeta: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """A d x m sparse sign embedding as a sparse CSR tensor.

    Each of the m columns has ``min(zeta, d)`` entries ``±1/√ζ`` in rows drawn
    uniformly with replacement (a row drawn twice sums its signs).  Drawn on the CPU
    from ``generator``, then moved to ``device``.
    """
    zeta = min(zeta, d)
    rows = torch.randint(0, d, (m * zeta,), generator=generator)
    signs = torch.randint(0, 2, (m * zeta,), generator=generator).to(dtype) * 2 - 1
    # CSR needs the entries sorted by row: a stable sort, and row pointers from counts.
    order = torch.argsort(rows, stable=True)
    columns = torch.arange(m).repeat_interleave(zeta)[order]
    pointers = torch.zeros(d + 1, dtype=torch.long)
    pointers[1:] = torch.bincount(rows, minlength=d).cumsum(0)
    with warnings.catch_warnings():  # torch warns that sparse CSR support is in beta
        warnings.simplefilter("ignore", UserWarning)
        S = torch.sparse_csr_tensor(
            pointers, columns, signs[order] / math.sqrt(zeta), (d, m), check_invariants=False
        )
        return S.to(device)


def sketch(S: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``S @ A`` for a sparse ``S`` (d x m) and a batch ``A`` (*, m, n): shape (*, d, n)."""
    m, n = A.shape[-2:]
    batch = A.shape[:-2]
    flat = A.movedim(-2, 0).reshape(m, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        SA = S @ flat
    return SA.reshape(S.shape[0], *batch, n).movedim(0, -2)


class Preconditioner:
    """``N`` (*, n, n) with ``A N`` well conditioned on the range of A, applied without forming it.

    Either ``N = R⁻¹`` for the triangular factor ``R`` of a full-rank sketch (two
    triangular solves per LSQR step), or, when the sketch is numerically rank
    deficient, ``N = V Σ⁺`` from its SVD with the singular values below the rank
    threshold set to zero (LSRN): ``x = N y`` then lies in the row space of A, so the
    minimum-norm ``y`` gives the minimum-norm ``x``.
    """

    def __init__(
        self,
        R: torch.Tensor | None = None,
        N: torch.Tensor | None = None,
        spectrum: tuple[torch.Tensor, torch.Tensor] | None = None,
        gram: torch.Tensor | None = None,
    ) -> None:
        self.R, self.N = R, N
        self._spectrum = spectrum
        self._gram = gram

    def spectrum(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Singular values (*, n) and right singular vectors ``Vh`` of the sketch, whose
        ``Vᴴ Σ² V`` approximates ``AᴴA``; computed from ``R`` on first use."""
        if self._spectrum is None:
            assert self.R is not None
            _, sigma, Vh = torch.linalg.svd(self.R)
            self._spectrum = (sigma, Vh)
        return self._spectrum

    def gram(self) -> torch.Tensor:
        """``RᴴR`` (*, n, n) (the sketch's Gram matrix, of which R is the Cholesky
        factor, where :func:`cholesky_factor` made R), computed on first use."""
        if self._gram is None:
            assert self.R is not None
            self._gram = self.R.mH @ self.R
        return self._gram

    def apply(self, Y: torch.Tensor) -> torch.Tensor:
        if self.R is not None:
            return torch.linalg.solve_triangular(self.R, Y, upper=True)
        assert self.N is not None
        return self.N @ Y

    def adjoint(self, X: torch.Tensor) -> torch.Tensor:
        if self.R is not None:
            return torch.linalg.solve_triangular(self.R.mH, X, upper=False)
        assert self.N is not None
        return self.N.mH @ X


def _adjoint_times(A: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``Aᴴ U`` as ``(Uᴴ A)ᴴ``: torch copies a row-major A for ``A.mH @ U`` (measured,
    4000 x 500 float64 times 2 columns: 4.5 against 1.3 ms)."""
    return (U.mH @ A).mH


def cholesky_factor(SA: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(R, G)``: the Cholesky QR factor R (*, n, n) of ``SA`` (*, d, n) and the Gram
    matrix ``G = SAᴴ SA`` it factors, or None where R may be a poor preconditioner.

    Cholesky QR forms ``G`` (``d n²`` flops, a symmetric rank-k update through NumPy's
    BLAS, by :func:`gdla._fused.gram`, for a real 2-D CPU sketch) and its Cholesky
    factor ``G = RᴴR`` (``n³/3``): about
    a third of the time of a Householder QR of ``SA`` here (20,000 x 500 float64, d = 8n,
    2 threads: 17 against 49 ms in one interleaved run), to which the check below adds
    3--18 ms; whole solves measured 0--12 % faster than on the Householder route, in
    interleaved runs on a shared machine.  Its price is squaring: the rounding errors of ``G``
    make ``Q = SA R⁻¹`` lose orthogonality like ``κ(SA)² u`` (Yamamoto et al. 2015), where
    Householder's loses ``u``; only an ``A R⁻¹`` that is well conditioned matters
    here, so R is kept if a loss estimate is at most :data:`CHOLESKY_LOSS`.  The
    estimate is the largest ``‖(QᴴQ − I) x‖ / ‖x‖`` over :data:`LOSS_ITERATIONS` power
    iterations from two seeded random vectors, with ``QᴴQ x = R⁻ᴴ SAᴴ (SA (R⁻¹ x))``
    from ``SA`` itself (from ``G`` it would not see ``G``'s rounding), about as much
    work as three products with ``SA``.  A lower bound, near ``‖QᴴQ − I‖₂`` whether
    the loss lies along one direction (power iteration finds it) or many (then any
    vector sees it).  Measured: a loss near ``1e-5`` for ``κ(A) = 10⁶``, ``0.1`` for
    ``10⁸`` (Householder QR then); Cholesky fails outright beyond.
    """
    array = numpy_blas_array(SA)
    # A symmetric rank-k update (half a GEMM), by thread ranges (see gdla._fused.gram).
    G = torch.from_numpy(gram(array)) if array is not None else SA.mH @ SA
    L, info = torch.linalg.cholesky_ex(G)
    if bool(info.any()):
        return None
    R = L.mH
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(*SA.shape[:-2], SA.shape[-1], 2, generator=generator, dtype=SA.dtype)
    X = X.to(SA.device)
    loss = 0.0
    for _ in range(LOSS_ITERATIONS):
        X = X / torch.linalg.vector_norm(X, dim=-2, keepdim=True)
        Y = torch.linalg.solve_triangular(R, X, upper=True)
        X = torch.linalg.solve_triangular(L, _adjoint_times(SA, SA @ Y), upper=False) - X
        loss = max(loss, float(torch.linalg.vector_norm(X, dim=-2).amax()))
    if not math.isfinite(loss) or loss > CHOLESKY_LOSS:
        return None
    return R, G


def sketch_preconditioner(SA: torch.Tensor, rank_tolerance: float) -> tuple[Preconditioner, str]:
    """The preconditioner from a sketch ``SA`` (*, d, n), d ≥ n, and how it was made.

    R from :func:`cholesky_factor` where that keeps it (``"Cholesky QR"``); otherwise
    Householder QR (``"Householder QR"``), and if a diagonal entry of its R is at most
    ``rank_tolerance`` times the largest of its matrix, the SVD of ``SA`` instead,
    truncated at the same threshold (``"rank-deficient sketch, SVD"``).
    """
    cholesky = cholesky_factor(SA)
    if cholesky is not None:
        R, G = cholesky
        return Preconditioner(R=R, gram=G), "Cholesky QR"
    R = torch.linalg.qr(SA, mode="r")[1]
    diagonal = R.diagonal(dim1=-2, dim2=-1).abs()
    threshold = rank_tolerance * diagonal.amax(dim=-1, keepdim=True)
    if bool((diagonal > threshold).all()):
        return Preconditioner(R=R), "Householder QR"
    _, sigma, Vh = torch.linalg.svd(SA, full_matrices=False)
    keep = sigma > rank_tolerance * sigma[..., :1]
    inverse = torch.where(keep, 1 / torch.where(keep, sigma, torch.ones_like(sigma)), 0)
    N = Vh.mH * inverse.to(Vh.dtype).unsqueeze(-2)
    return Preconditioner(N=N, spectrum=(sigma, Vh)), "rank-deficient sketch, SVD"


def _divide_norms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))


def _regularised_norm(N: Preconditioner, G: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``‖(RᴴR + shift I)^{-1/2} g‖`` for each column g of ``G`` (*, n, k), shape (*, 1, k).

    With R from the QR path, for a few columns: where the shift bounds the condition
    number of ``M = RᴴR + shift I`` (at most ``(‖R‖_F² + shift) / shift``) below
    ``10⁻³ / ε``, the Cholesky factor of M (about n³ flops with the Gram matrix, and
    then the estimate is accurate to a relative ``κ(M) ε ≤ 10⁻³``); otherwise the
    triangular factor of the stacked matrix ``[R; √shift I]`` (2n x n, whose Gram
    matrix is M), a few n³ flops; then one triangular solve.  Both cost a fraction of
    an SVD.  Otherwise (the SVD path, or many columns), with the SVD of the sketch:
    ``Σ² + shift`` on ``V``.
    """
    n, k = G.shape[-2:]
    if N.R is not None and k <= 4:
        squared = torch.linalg.matrix_norm(N.R).square()[..., None, None]  # (*, 1, 1)
        bound = (squared + shift) / torch.where(shift > 0, shift, torch.ones_like(shift))
        if bool((shift > 0).all()) and float(bound.amax()) <= 1e-3 / torch.finfo(shift.dtype).eps:
            diagonal = shift.mT.unsqueeze(-1) * torch.eye(n, dtype=shift.dtype, device=G.device)
            M = N.gram().unsqueeze(-3) + diagonal.to(G.dtype)  # (*, k, n, n)
            L, info = torch.linalg.cholesky_ex(M)
            if not bool(info.any()):
                Z = torch.linalg.solve_triangular(L, G.mT.unsqueeze(-1), upper=False)
                return torch.linalg.vector_norm(Z, dim=(-2, -1)).unsqueeze(-2)
        root = shift.sqrt().mT.unsqueeze(-1).to(G.dtype)  # (*, k, 1, 1)
        identity = torch.eye(n, dtype=G.dtype, device=G.device)
        R = N.R.unsqueeze(-3).expand(*N.R.shape[:-2], k, n, n)
        stacked = torch.cat([R, root * identity.expand_as(R)], dim=-2)  # (*, k, 2n, n)
        factor = torch.linalg.qr(stacked, mode="r").R
        Z = torch.linalg.solve_triangular(factor.mH, G.mT.unsqueeze(-1), upper=False)
        return torch.linalg.vector_norm(Z, dim=(-2, -1)).unsqueeze(-2)
    sigma, Vh = N.spectrum()
    weights = (sigma.unsqueeze(-1).square() + shift).rsqrt()  # (*, n, k)
    return _norm(weights.to(G.dtype) * (Vh @ G))


def optimal_backward_error(
    A_norm: torch.Tensor,
    x_norm: torch.Tensor,
    b_norm: torch.Tensor,
    r_norm: torch.Tensor,
    nar_norm: torch.Tensor,
) -> torch.Tensor:
    r"""The backward error of a least-squares solution, estimated with the preconditioner.

    :math:`\min\bigl(\|r\| / (\|A\|_F\|x\| + \|b\|),\ \|N^H A^H r\| / (\|A\|_F \|x\|)\bigr)`
    per column (0 where ``r = 0``), from ``nar_norm`` = :math:`\|N^HA^Hr\|`.  The second
    ratio is the Karlson–Waldén estimate :math:`\|(A^HA + \|r\|^2/\|x\|^2 I)^{-1/2}A^Hr\|
    / \|x\|` of the smallest perturbation of A that makes x an exact least-squares
    solution (Karlson and Waldén 1997; within a factor √2 of it), with
    :math:`(A^HA)^{-1/2}` for the regularised root (an upper bound) and ``N`` from the
    sketch for :math:`(A^HA)^{-1/2}`, exact up to the sketch's distortion
    :math:`(1 \pm \sqrt{n/d})`.  Unlike Stewart's :math:`\|A^Hr\| / \|r\|`, it is of
    the order of the unit roundoff for the answers of backward-stable solvers such as
    Householder QR, also when :math:`\kappa(A)` and the residual are large.
    """
    consistent = torch.where(
        A_norm * x_norm + b_norm > 0, r_norm / (A_norm * x_norm + b_norm), torch.zeros_like(r_norm)
    )
    optimal = torch.where(
        A_norm * x_norm + b_norm > 0,
        nar_norm / torch.where(A_norm * x_norm + b_norm > 0, A_norm * x_norm + b_norm, 1.0),
        consistent,
    )
    return torch.where(r_norm > 0, torch.minimum(consistent, optimal), torch.zeros_like(r_norm))


def solve(
    function: str,
    A: torch.Tensor,
    B: torch.Tensor,
    rtol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None,
    options: Mapping[str, object],
    fro_norm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Outcome]:
    """Sketch-and-precondition LSQR with iterative refinement, for A (*, m, n) of any shape
    (``fro_norm``, shape (*): ``‖A‖_F`` if the caller has it, else computed here).

    Tall (m ≥ n): sketch ``SA``, preconditioner ``N`` from it, start from the
    sketch-and-solve answer ``x0 = N (SAN)ᴴ S b``, then refine: each refinement
    computes ``r = b − Ax`` and ``Aᴴr`` from ``A`` itself, stops if the backward error
    meets ``rtol``, and otherwise runs LSQR on ``min ‖A N y − r‖`` until LSQR's own
    estimate meets ``rtol``, and adds ``N y``.  Wide (m < n): the same with the sketch
    of ``Aᴴ``, as a left preconditioner ``Nᴴ A``, from ``x0 = 0`` (so x stays in the
    row space: the minimum-norm solution).  ``d ≥ m`` skips the sketch (S = I).
    ``options["inner"]`` picks LSQR (default) or LSMR for the correction problems.

    Tall A, for speed: each inner step reads A once (:func:`gdla._lsqr.dense_products`),
    and so does each residual with its ``Aᴴr``; the regularised backward-error
    estimate, which costs n³ flops, is skipped for the sketch-and-solve start, whose
    error is of the order of the sketch's distortion (unless S = I).
    """
    m, n = A.shape[-2:]
    tall = m >= n
    size = n if tall else m  # columns of the tall matrix that gets sketched
    length = m if tall else n  # its rows
    factor = options.get("sketch_factor", SKETCH_FACTOR)
    check_positive(function, "options['sketch_factor']", factor)  # type: ignore[arg-type]
    seed = options.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise OptionError(function, "options['seed'] to be an integer", repr(seed))
    inner_name = options.get("inner", "lsqr")
    if not isinstance(inner_name, str) or inner_name not in INNER:
        raise OptionError(function, "options['inner'] to be 'lsqr' or 'lsmr'", repr(inner_name))
    inner = INNER[inner_name]
    d = max(size, math.ceil(float(factor) * size))  # type: ignore[arg-type]
    T = A if tall else A.mH
    rank_tolerance = torch.finfo(A.dtype).eps * max(m, n)
    S = None
    if d < length:
        generator = torch.Generator().manual_seed(seed)
        zeta = NONZEROS[0] if d < 4 * size else NONZEROS[1]
        S = sparse_sign_embedding(
            length, d, zeta=zeta, generator=generator, dtype=A.dtype, device=A.device
        )
        ST = sketch(S, T)
    else:
        ST = T
    N, kind = sketch_preconditioner(ST, rank_tolerance)
    A_norm = (torch.linalg.matrix_norm(A) if fro_norm is None else fro_norm)[..., None, None]
    B_norm = _norm(B)

    products = dense_products(A)  # reads A once per step on the CPU
    if tall:
        SB = sketch(S, B) if S is not None else B
        X = N.apply(N.adjoint(_adjoint_times(ST, SB)))  # sketch-and-solve

        def preconditioned(
            V: torch.Tensor, U: torch.Tensor, alpha: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            W, AHW = products(N.apply(V), U, alpha)
            return W, N.adjoint(AHW)

        def operator(R: torch.Tensor, AR: torch.Tensor) -> Operator:
            return preconditioned, (lambda U: N.adjoint(_adjoint_times(A, U))), R, N.adjoint(AR)

        def correction(Y: torch.Tensor) -> torch.Tensor:
            return N.apply(Y)
    else:
        X = torch.zeros(*B.shape[:-2], n, B.shape[-1], dtype=A.dtype, device=A.device)
        left = separate_products(
            lambda Y: N.adjoint(A @ Y), lambda U: _adjoint_times(A, N.apply(U))
        )

        def operator(R: torch.Tensor, AR: torch.Tensor) -> Operator:
            return left, (lambda U: _adjoint_times(A, N.apply(U))), N.adjoint(R), None

        def correction(Y: torch.Tensor) -> torch.Tensor:
            return Y

    def true_error(
        X: torch.Tensor, regularised: bool = True
    ) -> tuple[float, torch.Tensor, torch.Tensor]:
        minus_R, minus_AR = products(X, B, torch.ones_like(B_norm))  # AX − B, Aᴴ(AX − B)
        R, AR = minus_R.neg_(), minus_AR.neg()
        X_norm, R_norm = _norm(X), _norm(R)
        if not tall:
            eta = backward_error(A_norm, X_norm, B_norm, R_norm, _norm(AR))
            return (float(eta.amax()) if eta.numel() else 0.0), R, AR
        eta = optimal_backward_error(A_norm, X_norm, B_norm, R_norm, _norm(N.adjoint(AR)))
        if regularised and float(eta.amax()) > rtol:
            # The bound ignores the regularisation by ‖r‖²/‖x‖² that matters for large
            # residuals and small singular values: estimate with it instead.
            sharp = _regularised_norm(N, AR, _divide_norms(R_norm, X_norm).square())
            estimate = optimal_backward_error(
                A_norm, X_norm, torch.zeros_like(B_norm), R_norm, sharp
            )
            # The estimate divides by ‖x‖: it says nothing about a column with x = 0.
            eta = torch.where(X_norm > 0, torch.minimum(eta, estimate), eta)
        return (float(eta.amax()) if eta.numel() else 0.0), R, AR

    def estimate() -> float:
        """During LSQR: the tall problem's backward error from LSQR's estimates, which
        are those of ``b − A(X + N y)`` and ``Nᴴ Aᴴ`` of it; the correction problem's
        own backward error for wide A (whose LSQR sees ``Nᴴ`` of the residual)."""
        if tall:
            x_norm = _norm(X + N.apply(solver.x))
            eta = optimal_backward_error(A_norm, x_norm, B_norm, solver.r_norm, solver.ar_norm)
        else:
            eta = backward_error(
                solver.A_norm, _norm(solver.x), solver.b_norm, solver.r_norm, solver.ar_norm
            )
        return float(eta.amax())

    # The sketch-and-solve answer's error is of the order of the sketch's distortion
    # times the residual: only a solve without a sketch (S = I) can meet rtol with the
    # regularised estimate, which then is worth its n³ flops.
    eta, R, AR = true_error(X, regularised=S is None)
    label = f"sketch-and-precondition {inner.__name__} (d = {d}, {kind})"
    if eta <= rtol:
        return X, Outcome(0, True, f"{label}: sketch-and-solve met rtol {rtol:.3g}", [eta])
    refinements = [eta]
    solver = inner(GolubKahan(*operator(R, AR)))

    def step() -> float:
        nonlocal X, R, AR, solver
        solver.step()
        value = estimate()
        if value > rtol:
            return value
        # LSQR has solved for the correction: refine with the true residual.
        X = X + correction(solver.x)
        value, R, AR = true_error(X)
        refinements.append(value)
        if value > rtol:
            solver = inner(GolubKahan(*operator(R, AR)))
        return value

    def exhausted() -> str | None:
        if len(refinements) > 2 and refinements[-1] > 0.5 * refinements[-2]:
            return f"refinement stagnated at backward error {refinements[-1]:.3g}"
        return None

    outcome = iterate(
        function, step, rtol=rtol, max_iter=max_iter, callback=callback, exhausted=exhausted
    )
    if not outcome.converged:
        X = X + correction(solver.x)  # the latest correction is the best estimate
    outcome.message = f"{label}, {len(refinements) - 1} refinements: {outcome.message}"
    return X, outcome
