"""Tests of :func:`gdla.solve`, with ``torch.linalg.solve`` as the oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gdla
from gdla import solve
from gdla._iterate import default_rtol
from gdla.matrices import with_condition_number

F64, F32, C64, C128 = torch.float64, torch.float32, torch.complex64, torch.complex128
DTYPES = [F32, F64, C64, C128]


def randn(*shape: int, dtype: torch.dtype = F64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def backward_error(A: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> float:
    """The documented residual: max over batch and columns of ‖b − Ax‖ / (‖A‖_F‖x‖ + ‖b‖)."""
    X, B = (x.unsqueeze(-1), b.unsqueeze(-1)) if x.ndim == b.ndim == A.ndim - 1 else (x, b)
    r = torch.linalg.vector_norm(B - A @ X, dim=-2)
    scale = torch.linalg.matrix_norm(A)[..., None] * torch.linalg.vector_norm(X, dim=-2)
    return float((r / (scale + torch.linalg.vector_norm(B, dim=-2))).amax())


def relative_error(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - y) / torch.linalg.vector_norm(y))


# --- the default method, CG on the normal equations ----------------------------------------


def test_cg_matches_torch_solve_in_double() -> None:
    A = with_condition_number(8, 100.0, batch=(3,), seed=1)
    b = randn(3, 8, 2, seed=1)
    result = solve(A, b, method="cg")
    assert result.method == "cg"
    assert result.converged, result.message
    assert relative_error(result.x, torch.linalg.solve(A, b)) < 1e-11
    assert result.history[-1] <= default_rtol(F64)


def test_cg_solves_a_nonsymmetric_indefinite_system() -> None:
    # Plain CG needs a Hermitian positive definite A; CG on the normal equations does not.
    A = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [3.0, 0.0, -1.0]], dtype=F64)
    assert torch.linalg.eigvals(A).real.min() < 0 and not torch.equal(A, A.T)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    result = solve(A, b)
    assert result.converged, result.message
    assert relative_error(result.x, torch.linalg.solve(A, b)) < 1e-13


def test_cg_reaches_1e_12_on_a_moderately_conditioned_system() -> None:
    A = with_condition_number(40, 1e3, seed=2)
    b = randn(40, seed=2)
    result = solve(A, b)
    assert result.converged, result.message
    assert backward_error(A, result.x, b) <= default_rtol(F64)
    assert relative_error(result.x, torch.linalg.solve(A, b)) < 1e-10


def test_history_is_the_documented_residual() -> None:
    A = with_condition_number(5, 10.0, seed=3)
    b = randn(5, 3, seed=3)
    early = solve(A, b, method="cg", max_iter=2)  # residual still large: recomputing it is accurate
    assert early.history[-1] == pytest.approx(backward_error(A, early.x, b), rel=1e-9, abs=0)
    result = solve(A, b, method="cg")
    assert result.nit == len(result.history)
    assert result.history[:2] == early.history
    assert result.history[-1] <= default_rtol(F64) < min(result.history[:-1])
    assert backward_error(A, result.x, b) <= 2 * default_rtol(F64)


def test_rtol_max_iter_and_callback_are_obeyed() -> None:
    A = with_condition_number(20, 100.0, seed=4)
    b = randn(20, seed=4)
    loose = solve(A, b, method="cg", rtol=1e-4)
    assert loose.converged and loose.history[-1] <= 1e-4 < min(loose.history[:-1], default=1)
    capped = solve(A, b, method="cg", max_iter=3)
    assert capped.nit == 3 and not capped.converged and "after 3 iterations" in capped.message
    seen: list[int] = []
    stopped = solve(A, b, method="cg", callback=lambda k, residual: seen.append(k) or k == 2)
    assert stopped.nit == 2 and seen == [1, 2] and "callback" in stopped.message


def test_zero_right_hand_side_gives_zero() -> None:
    A = with_condition_number(4, 10.0, seed=5)
    b = torch.zeros(4, 2, dtype=F64)
    b[:, 1] = 1.0
    result = solve(A, b)
    assert result.converged
    assert torch.equal(result.x[:, 0], torch.zeros(4, dtype=F64))


# --- the other methods ----------------------------------------------------------------------


def test_gd_matches_torch_solve() -> None:
    A = with_condition_number(5, 3.0, batch=(2,), seed=6)
    b = randn(2, 5, seed=6)
    result = solve(A, b, method="gd")
    assert result.converged, result.message
    assert relative_error(result.x, torch.linalg.solve(A, b)) < 1e-12
    assert 100 < result.nit < 400  # contraction 1 - 1/cond² = 8/9 per iteration


def test_gd_step_comes_from_the_problem_scale() -> None:
    A = with_condition_number(4, 3.0, seed=7)
    b = randn(4, seed=7)
    small, large = solve(A, b, method="gd"), solve(1e3 * A, b, method="gd")
    assert large.converged and large.nit == pytest.approx(small.nit, abs=2)
    assert relative_error(1e3 * large.x, small.x) < 1e-12


@pytest.mark.parametrize(
    ("method", "options"), [("sgd", None), ("adam", {"lr": 0.05}), ("lbfgs", None)]
)
def test_torch_optim_methods_match_torch_solve(method: str, options: dict | None) -> None:
    A = with_condition_number(4, 2.0, batch=(2,), seed=8)
    b = randn(2, 4, 2, seed=8)
    result = solve(A, b, method=method, rtol=1e-9, max_iter=3000, options=options)
    assert result.converged, result.message
    assert relative_error(result.x, torch.linalg.solve(A, b)) < 1e-7


def test_torch_optim_methods_leave_A_and_b_alone() -> None:
    A = with_condition_number(3, 2.0, seed=9).requires_grad_(True)
    b = randn(3, seed=9).requires_grad_(True)
    with torch.no_grad():
        result = solve(A, b, method="lbfgs", rtol=1e-8)
    assert result.converged, result.message
    assert A.grad is None and b.grad is None and not result.x.requires_grad


# --- shapes, dtypes, batches ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("A_shape", "b_shape"),
    [
        ((3, 3), (3,)),
        ((3, 3), (3, 1)),
        ((3, 3), (3, 3)),  # a matrix right-hand side, not a batch of vectors
        ((2, 3, 3), (2, 3)),  # a batch of vectors
        ((3, 3, 3), (3, 3)),  # b.shape == A.shape[:-1]: a batch of vectors
        ((2, 3, 3), (3,)),
        ((2, 3, 3), (3, 4)),
        ((3, 3), (2, 3, 1)),
        ((2, 1, 3, 3), (5, 3, 2)),
    ],
)
def test_shapes_follow_torch_linalg_solve(A_shape: tuple, b_shape: tuple) -> None:
    A = with_condition_number(3, 5.0, batch=A_shape[:-2], seed=10)
    b = randn(*b_shape, seed=10)
    expected = torch.linalg.solve(A, b)
    result = solve(A, b)
    assert result.x.shape == expected.shape
    assert result.converged, result.message
    assert relative_error(result.x, expected) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["cg", "gd", "sgd", "lbfgs"])
def test_dtype_and_device_are_preserved(dtype: torch.dtype, method: str) -> None:
    A = with_condition_number(3, 2.0, batch=(2,), seed=11, dtype=dtype)
    b = randn(2, 3, dtype=dtype, seed=11)
    result = solve(A, b, method=method, max_iter=3)
    assert result.x.dtype == dtype and result.x.device == A.device and result.x.shape == b.shape


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6),
    k=st.sampled_from([None, 1, 3]),
    batch=st.sampled_from([(), (2,), (2, 3)]),
    dtype=st.sampled_from(DTYPES),
    log_cond=st.floats(0.0, 3.0),
    seed=st.integers(0, 1000),
)
def test_cg_property(
    n: int, k: int | None, batch: tuple[int, ...], dtype: torch.dtype, log_cond: float, seed: int
) -> None:
    cond = 10.0**log_cond
    A = with_condition_number(n, cond, batch=batch, seed=seed, dtype=dtype)
    b = randn(*batch, n, *([] if k is None else [k]), dtype=dtype, seed=seed)
    result = solve(A, b)
    rtol = default_rtol(dtype)
    assert result.converged, result.message
    assert result.x.shape == b.shape and result.x.dtype == dtype
    assert backward_error(A, result.x, b) <= 2 * rtol
    expected = torch.linalg.solve(A.to(C128), b.to(C128))
    assert relative_error(result.x.to(C128), expected) <= 10 * n * cond * rtol


def test_batch_iterates_together_and_converges_when_all_do() -> None:
    easy = with_condition_number(6, 2.0, seed=12)
    hard = with_condition_number(6, 1e3, seed=13)
    b = randn(6, seed=12)
    alone = [solve(easy, b, method="cg").nit, solve(hard, b, method="cg").nit]
    assert alone[0] < alone[1]
    together = solve(torch.stack([easy, hard]), b, method="cg")
    assert together.converged and together.nit == max(alone)
    singular = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)
    eye = torch.eye(2, dtype=F64)
    mixed = solve(torch.stack([eye, singular]), torch.tensor([1.0, 0.0], dtype=F64), max_iter=300)
    assert not mixed.converged and mixed.nit == 300


@pytest.mark.parametrize(
    ("A_shape", "b_shape"),
    [((0, 0), (0,)), ((0, 0), (0, 2)), ((3, 3), (3, 0)), ((0, 3, 3), (0, 3))],
)
def test_empty_input_gives_empty_converged_result(A_shape: tuple, b_shape: tuple) -> None:
    A, b = torch.empty(A_shape, dtype=C128), torch.empty(b_shape, dtype=C128)
    result = solve(A, b)
    assert result.x.shape == torch.linalg.solve(A, b).shape and result.x.dtype == C128
    assert result.converged and result.nit == 0 and result.history == []


# --- singular and badly conditioned input ---------------------------------------------------


@pytest.mark.parametrize("method", ["cg", "gd"])
def test_singular_system_without_solution_is_not_reported_converged(method: str) -> None:
    A = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)  # not in the range of A
    result = solve(A, b, method=method, max_iter=300)
    assert not result.converged
    assert "singular" in result.message
    # CG tends to the least-squares solution, A^+ b
    if method == "cg":
        assert relative_error(result.x, torch.linalg.pinv(A) @ b) < 1e-10


def test_badly_conditioned_system_is_not_reported_converged() -> None:
    A = with_condition_number(30, 1e14, seed=14)
    result = solve(A, randn(30, seed=14), method="cg", max_iter=2000)
    assert not result.converged and "badly conditioned" in result.message


# --- bad input ------------------------------------------------------------------------------


SQUARE = torch.eye(3, dtype=F64) + 0.1
VECTOR = torch.ones(3, dtype=F64)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: solve(torch.ones(2, 3, dtype=F64), VECTOR), gdla.ShapeError),
        (lambda: solve(VECTOR, VECTOR), gdla.ShapeError),
        (lambda: solve(SQUARE, torch.ones(4, dtype=F64)), gdla.ShapeError),
        (lambda: solve(SQUARE, torch.ones(4, 2, dtype=F64)), gdla.ShapeError),
        (lambda: solve(SQUARE.expand(2, 3, 3), torch.ones(3, 3, 1, dtype=F64)), gdla.ShapeError),
        (lambda: solve(SQUARE, torch.tensor(1.0, dtype=F64)), gdla.ShapeError),
        (lambda: solve(SQUARE.long(), VECTOR), gdla.DtypeError),
        (lambda: solve(SQUARE, VECTOR.bool()), gdla.DtypeError),
        (lambda: solve(SQUARE, VECTOR.float()), gdla.DtypeError),
        (lambda: solve(SQUARE * float("nan"), VECTOR), gdla.NonFiniteError),
        (lambda: solve(SQUARE, VECTOR * float("inf")), gdla.NonFiniteError),
        (lambda: solve(SQUARE, VECTOR, method="gmres"), gdla.OptionError),
        (lambda: solve(SQUARE, VECTOR, rtol=-1.0), gdla.OptionError),
        (lambda: solve(SQUARE, VECTOR, max_iter=1.5), gdla.OptionError),
        (lambda: solve(SQUARE, VECTOR, options={"lr": 0.1}), gdla.OptionError),
        (lambda: solve(SQUARE, VECTOR, method="gd", options={"lr": 0.1}), gdla.OptionError),
        (lambda: solve(SQUARE, VECTOR, method="adam", options={"lr": -1.0}), gdla.OptionError),
    ],
)
def test_bad_input_raises_a_clear_error(call, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^gdla\.solve: expected "):
        call()


# --- CG on Hermitian positive definite systems ----------------------------------------------


def hermitian(values: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    Q = gdla.matrices.random_orthonormal(len(values), len(values), seed=5, dtype=dtype)
    return (Q * values.to(dtype)) @ Q.mH


def test_cg_runs_on_a_hermitian_positive_definite_matrix_itself() -> None:
    # sqrt(kappa) instead of kappa: far fewer iterations than CGLS on a general matrix
    # with the same singular values.
    values = torch.logspace(0, -3, 300, dtype=torch.float64)
    spd = hermitian(values)
    general = gdla.matrices.with_singular_values(values, 300, 300, seed=5)
    b = torch.ones(300, dtype=torch.float64)
    fast, slow = gdla.solve(spd, b, method="cg"), gdla.solve(general, b, method="cg")
    assert fast.converged and slow.converged
    assert fast.message.startswith("CG (A is Hermitian positive definite)")
    assert slow.message.startswith("CGLS")
    assert 5 * fast.nit < slow.nit
    assert torch.allclose(fast.x, torch.linalg.solve(spd, b), rtol=1e-9)


def test_cg_on_complex_hermitian_batches() -> None:
    values = torch.linspace(1.0, 50.0, 40, dtype=torch.float64)
    A = torch.stack([hermitian(values, torch.complex128), hermitian(2 * values, torch.complex128)])
    b = torch.ones(2, 40, dtype=torch.complex128)
    result = gdla.solve(A, b)
    assert result.converged and result.message.startswith("CG (A is Hermitian")
    assert torch.allclose(result.x, torch.linalg.solve(A, b), rtol=1e-10)


def test_cg_falls_back_to_cgls_on_an_indefinite_hermitian_matrix() -> None:
    values = torch.cat([torch.linspace(-2.0, -0.5, 20), torch.linspace(0.5, 2.0, 20)])
    A = hermitian(values.double())
    b = torch.ones(40, dtype=torch.float64)
    result = gdla.solve(A, b)
    assert result.converged, result.message
    assert result.message.startswith("CGLS (A is Hermitian but not positive definite)")
    assert torch.allclose(result.x, torch.linalg.solve(A, b), rtol=1e-10)
