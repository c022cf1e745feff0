"""Tests of :func:`gdla.solve` on rectangular and square non-Hermitian systems: least
squares, minimum norm, sketch-and-precondition, LSQR, LSMR and GMRES-IR, with
``torch.linalg.lstsq`` and ``torch.linalg.solve`` as the oracles."""

from __future__ import annotations

import pytest
import torch

import gdla
from gdla import _sketch, solve
from gdla.matrices import random_orthonormal, with_condition_number, with_singular_values

F64, F32, C64, C128 = torch.float64, torch.float32, torch.complex64, torch.complex128
DTYPES = [F32, F64, C64, C128]


def randn(*shape: int, dtype: torch.dtype = F64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        parts = torch.randn(*shape, 2, dtype=dtype.to_real(), generator=generator)
        return torch.view_as_complex(parts)
    return torch.randn(*shape, dtype=dtype, generator=generator)


def relative_error(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - y) / torch.linalg.vector_norm(y))


def minimum_norm(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The minimum-norm least-squares solution in complex128, by the SVD (gelsd)."""
    A, b = A.to(C128), b.to(C128)
    vector = b.ndim == A.ndim - 1
    B = b.unsqueeze(-1) if vector else b
    X = torch.linalg.pinv(A, rtol=1e-10) @ B
    return X.squeeze(-1) if vector else X


def inconsistent(A: torch.Tensor, x: torch.Tensor, size: float, seed: int) -> torch.Tensor:
    """``A x`` plus a residual of relative size ``size`` orthogonal to the range of A."""
    noise = randn(*A.shape[:-1], dtype=A.dtype, seed=seed).unsqueeze(-1)
    Q = torch.linalg.qr(A).Q
    noise = noise - Q @ (Q.mH @ noise)
    b = A @ x.unsqueeze(-1)
    scale = size * torch.linalg.vector_norm(b, dim=-2, keepdim=True)
    return (b + scale * noise / torch.linalg.vector_norm(noise, dim=-2, keepdim=True)).squeeze(-1)


# --- tall least squares ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sketch", "lsqr", "lsmr"])
@pytest.mark.parametrize("residual", [0.0, 1e-3, 1.0])
def test_tall_least_squares_matches_lstsq(method: str, residual: float) -> None:
    A = with_condition_number(30, 1e3, m=600, seed=1)
    x = randn(30, seed=1)
    b = inconsistent(A, x, residual, seed=2)
    result = solve(A, b, method=method, rtol=None if method == "sketch" else 1e-12)
    assert result.converged, result.message
    assert result.method == method and result.x.shape == (30,)
    reference = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    # The forward error bound of a backward-stable solver, kappa u + kappa^2 u |r|/(|A||x|),
    # which torch.linalg.lstsq's error is well inside here.
    u = torch.finfo(F64).eps / 2
    bound = 1e3 * u + 1e6 * u * residual * float(
        torch.linalg.vector_norm(A @ x) / A.norm() / x.norm()
    )
    assert relative_error(reference, x) <= 10 * bound
    assert relative_error(result.x, x) <= 10 * bound + (0 if method == "sketch" else 1e-8)


# --- LSMR ---------------------------------------------------------------------------------


def test_lsmr_normal_residual_decreases_monotonically_and_its_estimates_are_exact() -> None:
    # Fong and Saunders: ||A^H r_k|| is monotone for LSMR (it minimises it over the Krylov
    # subspace), which makes early stopping on it safe; LSQR's is not (here it is not).
    from gdla._lsmr import LSMR
    from gdla._lsqr import LSQR, GolubKahan, separate_products

    A = with_condition_number(30, 1e3, m=300, seed=21)
    B = randn(300, 1, seed=21)
    ar_norms = {}
    for solver_class in (LSMR, LSQR):
        products = separate_products(A.__matmul__, A.mT.__matmul__)
        solver = solver_class(GolubKahan(products, A.mT.__matmul__, B))
        ar_norms[solver_class.name] = norms = []
        for _ in range(40):
            solver.step()
            R = B - A @ solver.x
            norms.append(float(torch.linalg.vector_norm(A.mT @ R)))
            if solver_class is LSMR:  # the recurrences' norms are those of b - Ax
                assert float(solver.ar_norm) == pytest.approx(norms[-1], rel=1e-8)
                assert float(solver.r_norm) == pytest.approx(float(R.norm()), rel=1e-8)
    lsmr, lsqr = torch.tensor(ar_norms["LSMR"]), torch.tensor(ar_norms["LSQR"])
    assert bool((lsmr[1:] <= lsmr[:-1] * (1 + 1e-12)).all())
    assert not bool((lsqr[1:] <= lsqr[:-1]).all())


def test_lsmr_stops_by_the_papers_rules() -> None:
    # atol = btol = rtol: ||r|| <= rtol (||A|| ||x|| + ||b||) or ||A^H r|| <= rtol ||A|| ||r||,
    # confirmed on b - Ax itself.
    A = with_condition_number(20, 1e2, m=200, seed=22)
    b = inconsistent(A, randn(20, seed=22), 0.5, seed=22)
    result = solve(A, b, method="lsmr", rtol=1e-10)
    assert result.converged and result.message.startswith("LSMR: converged"), result.message
    r = b - A @ result.x
    normal = float(torch.linalg.vector_norm(A.mT @ r) / (torch.linalg.matrix_norm(A) * r.norm()))
    assert normal <= 1e-10 < result.history[-2]
    # A tighter rtol never stops earlier (it may stop at the same step when the last
    # step's residual fell below both).
    tighter = solve(A, b, method="lsmr", rtol=1e-12)
    assert tighter.converged and tighter.history[-1] <= 1e-12 and tighter.nit >= result.nit


@pytest.mark.parametrize("kind", ["csr", "coo", "operator"])
@pytest.mark.parametrize("method", ["lsmr", "lsqr"])
def test_sparse_and_operator_input_match_lstsq(kind: str, method: str) -> None:
    generator = torch.Generator().manual_seed(23)
    dense = torch.randn(400, 30, dtype=F64, generator=generator)
    dense = torch.where(torch.rand(400, 30, generator=generator) < 0.1, dense, 0.0)
    b = randn(400, 2, seed=23)
    if kind == "operator":
        A = gdla.LinearOperator(dense.shape, dense.__matmul__, dense.mT.__matmul__, F64)
    else:
        A = dense.to_sparse_csr() if kind == "csr" else dense.to_sparse()
    result = solve(A, b, method=method, rtol=1e-12)
    assert result.converged and result.method == method, result.message
    expected = torch.linalg.lstsq(dense, b).solution
    assert relative_error(result.x, expected) < 1e-9


def test_sparse_default_rectangular_method_is_still_lsqr() -> None:
    A = torch.eye(40, 10, dtype=F64).to_sparse_csr()
    assert solve(A, torch.ones(40, dtype=F64)).method == "lsqr"


def test_fused_dense_products_match_separate_ones() -> None:
    # A matrix over the fused threshold: row blocks read A once per Golub-Kahan step.
    from gdla._lsqr import FUSED_FROM, dense_products, separate_products

    for dtype, batch in ((F64, ()), (C128, (2,))):
        rows = FUSED_FROM // (16 * 64 * (2 if batch else 1)) + 100
        A = randn(*batch, rows, 64, dtype=dtype, seed=24)
        V, U = (
            randn(*batch, 64, 3, dtype=dtype, seed=25),
            randn(*batch, rows, 3, dtype=dtype, seed=26),
        )
        alpha = torch.rand(*batch, 1, 3, dtype=F64)
        fused = dense_products(A)(V, U, alpha)
        separate = separate_products(A.__matmul__, A.mH.__matmul__)(V, U, alpha)
        for got, want in zip(fused, separate, strict=True):
            assert relative_error(got, want) < 1e-14


@pytest.mark.parametrize("inner", ["lsqr", "lsmr"])
def test_sketch_inner_solver(inner: str) -> None:
    A = with_condition_number(30, 1e6, m=1500, seed=27)
    b = inconsistent(A, randn(30, seed=27), 1e-2, seed=27)
    result = solve(A, b, options={"inner": inner})
    assert result.converged and f"sketch-and-precondition {inner.upper()}" in result.message
    reference = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    # kappa^2 u |r| / (|A| |x|) is about 1e-7 here: both answers are that close to x.
    assert relative_error(result.x, reference) < 1e-6


def test_sketch_is_the_default_for_tall_input_and_matches_lstsq_at_cond_1e6() -> None:
    A = with_condition_number(40, 1e6, m=2000, seed=3)
    x = randn(40, seed=3)
    b = inconsistent(A, x, 1e-3, seed=3)
    result = solve(A, b)
    assert result.method == "sketch" and result.converged, result.message
    assert "QR" in result.message and "d = 320" in result.message
    # Within the forward error bound of a backward-stable solver (lstsq is often inside it).
    u = torch.finfo(F64).eps / 2
    fit = float(torch.linalg.vector_norm(A @ x) / A.norm() / x.norm())
    bound = 1e6 * u * 40**0.5 + 1e12 * u * 1e-3 * fit
    assert relative_error(result.x, x) <= 10 * bound
    assert result.history[-1] <= torch.finfo(F64).eps


def test_sketch_iterations_do_not_grow_with_the_condition_number() -> None:
    counts = {}
    for cond in (1e2, 1e5, 1e8):
        A = with_condition_number(50, cond, m=3000, seed=4)
        b = inconsistent(A, randn(50, seed=4), 1e-2, seed=4)
        result = solve(A, b, method="sketch")
        assert result.converged, result.message
        counts[cond] = result.nit
    assert max(counts.values()) <= 1.6 * min(counts.values()), counts
    plain = solve(with_condition_number(50, 1e4, m=3000, seed=4), b, method="lsqr", rtol=1e-10)
    assert plain.nit > 3 * max(counts.values())


def karlson_walden(A: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> float:
    """The Karlson-Walden estimate of the optimal backward error of x, from A's SVD,
    relative to ||A||_F (within a factor sqrt(2) of the optimal backward error)."""
    r = b - A @ x
    _, s, Vh = torch.linalg.svd(A, full_matrices=False)
    shift = (r.norm() / x.norm()) ** 2
    z = (Vh @ (A.mT @ r)) / torch.sqrt(s**2 + shift)
    return float(z.norm() / x.norm() / torch.linalg.matrix_norm(A))


@pytest.mark.parametrize("cond", [1e4, 1e8, 1e12])
@pytest.mark.parametrize("residual", [1e-6, 1.0])
def test_sketch_is_backward_stable(cond: float, residual: float) -> None:
    # The optimal backward error, computed exactly from the SVD of A, is of the order of
    # the unit roundoff, as for Householder QR, also where kappa * u is large.
    A = with_condition_number(25, cond, m=800, seed=17)
    b = inconsistent(A, randn(25, seed=17), residual, seed=18)
    result = solve(A, b)
    assert result.converged, result.message
    qr = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    eps = torch.finfo(F64).eps
    assert karlson_walden(A, result.x, b) <= 4 * eps
    assert karlson_walden(A, qr, b) <= 4 * eps


@pytest.mark.parametrize("dtype", [F64, C128])
def test_cholesky_factor_preconditions_like_householder_qr(dtype: torch.dtype) -> None:
    # Batched (a batch of two), real and complex: R^H R is the Gram matrix and S A R^-1
    # is orthonormal to the loss of orthogonality that the check allows.
    SA = with_condition_number(30, 1e5, m=240, seed=8).to(dtype)
    SA = torch.stack([SA, 2 * SA.flip(-2)])
    factor = _sketch.cholesky_factor(SA)
    assert factor is not None
    R, G = factor
    assert torch.allclose(R.mH @ R, G, rtol=0, atol=1e-12 * float(G.abs().max()))
    assert torch.equal(R, R.triu())
    Q = torch.linalg.solve_triangular(R, SA, upper=True, left=False)
    loss = torch.linalg.matrix_norm(Q.mH @ Q - torch.eye(30, dtype=dtype), ord=2)
    assert float(loss.max()) <= _sketch.CHOLESKY_LOSS


def test_cholesky_factor_gives_way_to_householder_where_squaring_loses_orthogonality() -> None:
    # kappa^2 u is about 1e2 at kappa = 1e9: Cholesky QR's R would not precondition.
    A = with_condition_number(30, 1e9, m=3000, seed=9)
    assert _sketch.cholesky_factor(A) is None
    b = inconsistent(A, randn(30, seed=9), 1e-3, seed=9)
    result = solve(A, b)
    assert result.converged and "Householder QR" in result.message, result.message
    well = with_condition_number(30, 1e3, m=3000, seed=9)
    assert "Cholesky QR" in solve(well, b).message
    assert _sketch.cholesky_factor(torch.zeros(40, 5, dtype=F64)) is None  # rank 0: fails


def test_sketch_without_sketching_when_the_matrix_is_short() -> None:
    # d = 8 n >= m: the sketch would be larger than A, so S = I and R is A's own.
    A = with_condition_number(10, 1e4, m=50, seed=5)
    b = randn(50, seed=5)
    result = solve(A, b)
    assert result.converged and "d = 80" in result.message and result.nit <= 10
    assert relative_error(result.x, minimum_norm(A, b).real) < 1e-10


def test_sketch_seed_changes_the_sketch_not_the_answer() -> None:
    A = with_condition_number(20, 1e3, m=1000, seed=6)
    b = randn(1000, seed=6)
    first = solve(A, b, options={"seed": 1})
    second = solve(A, b, options={"seed": 2, "sketch_factor": 3})
    again = solve(A, b, options={"seed": 1})
    assert torch.equal(first.x, again.x) and first.nit == again.nit
    assert "d = 60" in second.message
    assert relative_error(first.x, second.x) < 1e-11  # kappa = 1e3 times rtol


# --- rank deficiency and minimum norm --------------------------------------------------------


@pytest.mark.parametrize("method", ["sketch", "lsqr", "lsmr"])
def test_rank_deficient_tall_gives_the_minimum_norm_solution(method: str) -> None:
    values = torch.cat([torch.logspace(0, -2, 6, dtype=F64), torch.zeros(4, dtype=F64)])
    A = with_singular_values(values, 400, 10, seed=7)
    b = randn(400, seed=7)  # inconsistent: b is not in the range of A
    result = solve(A, b, method=method, rtol=None if method == "sketch" else 1e-12)
    assert result.converged, result.message
    if method == "sketch":
        assert "rank-deficient sketch, SVD" in result.message
    expected = minimum_norm(A, b).real
    assert relative_error(result.x, expected) < 1e-9
    gelsd = torch.linalg.lstsq(A, b.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
    assert relative_error(result.x, gelsd) < 1e-9


@pytest.mark.parametrize("method", ["sketch", "lsqr", "lsmr"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_system_gives_the_minimum_norm_solution(method: str, dtype: torch.dtype) -> None:
    A = with_condition_number(40, 1e2, m=15, seed=8, dtype=dtype)  # 15 x 40
    b = randn(15, 2, dtype=dtype, seed=8)
    result = solve(A, b, method=method, rtol=None if dtype in (F32, C64) else 1e-12)
    assert result.converged, result.message
    assert result.x.shape == (40, 2) and result.x.dtype == dtype
    tolerance = 1e-3 if dtype in (F32, C64) else 1e-10  # kappa = 100 times rtol
    assert relative_error(result.x.to(C128), minimum_norm(A, b)) < tolerance


def test_wide_rank_deficient_consistent_system() -> None:
    values = torch.tensor([3.0, 1.0, 0.5, 0.0, 0.0], dtype=F64)
    A = with_singular_values(values, 5, 60, seed=9)
    b = A @ randn(60, seed=9)
    result = solve(A, b, rtol=1e-13)
    assert result.converged, result.message
    assert relative_error(result.x, minimum_norm(A, b).real) < 1e-9


# --- dtypes, batches, broadcasting --------------------------------------------------------


@pytest.mark.parametrize("method", ["sketch", "lsqr", "lsmr"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_and_batches_match_lstsq(method: str, dtype: torch.dtype) -> None:
    A = with_condition_number(12, 50.0, m=300, batch=(2, 3), seed=10, dtype=dtype)
    b = randn(2, 3, 300, 4, dtype=dtype, seed=10)
    single = dtype in (F32, C64)
    result = solve(A, b, method=method, rtol=None if single or method == "sketch" else 1e-12)
    assert result.converged, result.message
    assert result.x.shape == (2, 3, 12, 4) and result.x.dtype == dtype
    expected = torch.linalg.lstsq(A.to(C128), b.to(C128)).solution
    tolerance = 1e-3 if single else 1e-10
    assert relative_error(result.x.to(C128), expected) < tolerance


def test_a_matrix_broadcasts_over_a_batch_of_right_hand_sides() -> None:
    A = with_condition_number(8, 10.0, m=100, seed=11)
    b = randn(5, 100, seed=11)  # as in torch.linalg.solve: one matrix with 5 rows, not 100
    with pytest.raises(gdla.ShapeError):
        solve(A, b)
    B = randn(5, 100, 2, seed=11)
    result = solve(A, B)
    assert result.x.shape == (5, 8, 2)
    expected = torch.linalg.lstsq(A.expand(5, 100, 8), B).solution
    assert relative_error(result.x, expected) < 1e-12


@pytest.mark.parametrize("method", ["sketch", "lsqr", "lsmr"])
def test_b_orthogonal_to_the_range_gives_zero(method: str) -> None:
    A = with_condition_number(10, 1e3, m=500, seed=19)
    noise = randn(500, seed=20)
    Q = torch.linalg.qr(A).Q
    b = noise - Q @ (Q.T @ noise)  # A^T b = 0: the least-squares solution is x = 0
    result = solve(A, b, method=method)
    assert result.converged, result.message
    assert float(result.x.norm()) <= 1e-10 * float(b.norm()) / float(torch.linalg.matrix_norm(A))


def test_zero_right_hand_side_and_empty_shapes() -> None:
    A = with_condition_number(6, 10.0, m=40, seed=12)
    zero = solve(A, torch.zeros(40, dtype=F64))
    assert zero.converged and torch.equal(zero.x, torch.zeros(6, dtype=F64))
    empty = solve(torch.zeros(7, 0, dtype=F64), torch.ones(7, dtype=F64))
    assert empty.x.shape == (0,) and empty.converged
    no_rows = solve(torch.zeros(0, 3, dtype=F64), torch.zeros(0, 2, dtype=F64))
    assert torch.equal(no_rows.x, torch.zeros(3, 2, dtype=F64))


# --- square non-Hermitian systems: GMRES-IR --------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_gmres_ir_is_the_default_for_non_hermitian_square_systems(dtype: torch.dtype) -> None:
    A = with_condition_number(60, 1e3, batch=(2,), seed=13, dtype=dtype)
    b = randn(2, 60, 3, dtype=dtype, seed=13)
    result = solve(A, b)
    assert result.method == "gmres-ir" and result.converged, result.message
    rtol = 100 * torch.finfo(dtype).eps
    residual = torch.linalg.vector_norm(b - A @ result.x, dim=-2)
    scale = torch.linalg.matrix_norm(A)[..., None] * torch.linalg.vector_norm(result.x, dim=-2)
    assert float((residual / (scale + torch.linalg.vector_norm(b, dim=-2))).max()) <= rtol
    expected = torch.linalg.solve(A.to(C128), b.to(C128))
    assert relative_error(result.x.to(C128), expected) < 1e3 * rtol


def test_gmres_ir_converges_beyond_what_refinement_alone_reaches() -> None:
    # kappa * u_single = 6: plain refinement with float32 factors would diverge.
    A = with_condition_number(200, 1e8, seed=14)
    b = randn(200, seed=14)
    result = solve(A, b, method="gmres-ir")
    assert result.converged, result.message
    backward = torch.linalg.vector_norm(b - A @ result.x) / (
        torch.linalg.matrix_norm(A) * torch.linalg.vector_norm(result.x)
        + torch.linalg.vector_norm(b)
    )
    assert float(backward) <= 1e-13
    assert result.nit < 100


def test_gmres_ir_scales_entries_beyond_single_precision_range() -> None:
    A = with_condition_number(30, 10.0, seed=15) * 1e60  # float32 overflows at 3e38
    b = randn(30, seed=15)
    result = solve(A, b, method="gmres-ir")
    assert result.converged, result.message
    assert relative_error(result.x, torch.linalg.solve(A, b)) < 1e-12


def test_gmres_ir_reports_a_singular_matrix() -> None:
    A = torch.ones(4, 4, dtype=F64) + torch.diag(torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64))
    A[0, 1] = 2.0  # nonsymmetric and singular: rows 2 and 3 are equal
    result = solve(A, torch.tensor([1.0, 0.0, 2.0, 0.0], dtype=F64), max_iter=50)
    assert not result.converged and "singular" in result.message


def test_hermitian_input_still_defaults_to_cg() -> None:
    Q = random_orthonormal(20, 20, seed=16)
    A = (Q * torch.linspace(1.0, 10.0, 20, dtype=F64)) @ Q.T
    result = solve(A, torch.ones(20, dtype=F64))
    assert result.method == "cg" and result.converged


# --- bad input ------------------------------------------------------------------------------

TALL = torch.ones(5, 3, dtype=F64) + torch.eye(5, 3, dtype=F64)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: solve(TALL, torch.ones(3, dtype=F64)), gdla.ShapeError),
        (lambda: solve(TALL, torch.ones(4, 2, dtype=F64)), gdla.ShapeError),
        (lambda: solve(TALL, torch.ones(5, dtype=F64), method="cg"), gdla.ShapeError),
        (lambda: solve(TALL, torch.ones(5, dtype=F64), method="gmres-ir"), gdla.ShapeError),
        (lambda: solve(TALL, torch.ones(5, dtype=F64), method="adam"), gdla.ShapeError),
        (lambda: solve(TALL, torch.ones(5, dtype=F32)), gdla.DtypeError),
        (lambda: solve(TALL * float("nan"), torch.ones(5, dtype=F64)), gdla.NonFiniteError),
        (
            lambda: solve(TALL, torch.ones(5, dtype=F64), options={"sketch_factor": -1.0}),
            gdla.OptionError,
        ),
        (lambda: solve(TALL, torch.ones(5, dtype=F64), options={"seed": "a"}), gdla.OptionError),
        (
            lambda: solve(TALL, torch.ones(5, dtype=F64), options={"inner": "cgls"}),
            gdla.OptionError,
        ),
        (
            lambda: solve(TALL, torch.ones(5, dtype=F64), method="lsmr", options={"seed": 1}),
            gdla.OptionError,
        ),
        (lambda: solve(TALL, torch.ones(5, dtype=F64), options={"lr": 1.0}), gdla.OptionError),
        (
            lambda: solve(TALL, torch.ones(5, dtype=F64), method="lsqr", options={"seed": 1}),
            gdla.OptionError,
        ),
        (
            lambda: solve(
                torch.eye(3, dtype=F64),
                torch.ones(3, dtype=F64),
                method="gmres-ir",
                options={"restart": 0},
            ),
            gdla.OptionError,
        ),
        (lambda: solve(TALL, torch.ones(5, dtype=F64), rtol=0.0), gdla.OptionError),
    ],
)
def test_bad_input_raises_a_clear_error(call, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^gdla\.solve: expected "):
        call()
