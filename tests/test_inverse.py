"""Tests of :func:`gdla.inverse`, with ``torch.linalg.inv`` as the oracle."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gdla
from gdla import inverse, original
from gdla._iterate import default_rtol
from gdla.matrices import original_inverse_matrices, with_condition_number
from gdla.metrics import inverse_error

F64, F32, C64, C128 = torch.float64, torch.float32, torch.complex64, torch.complex128
DTYPES = [F32, F64, C64, C128]


def eta(A: torch.Tensor, X: torch.Tensor) -> float:
    """The documented monitored residual: max ‖XA − I‖_F / (‖A‖_F ‖X‖_F + √n)."""
    n = A.shape[-1]
    E = X @ A - torch.eye(n, dtype=A.dtype)
    scale = torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(X) + math.sqrt(n)
    return float((torch.linalg.matrix_norm(E) / scale).amax())


def relative_error(X: torch.Tensor, Y: torch.Tensor) -> float:
    return float((torch.linalg.matrix_norm(X - Y) / torch.linalg.matrix_norm(Y)).amax())


# --- the default method, Newton–Schulz ------------------------------------------------------


def test_newton_schulz_matches_torch_inv_in_double() -> None:
    A = with_condition_number(6, 1e3, batch=(3,), seed=1)
    result = inverse(A)
    assert result.method == "newton-schulz"
    assert result.converged, result.message
    assert relative_error(result.X, torch.linalg.inv(A)) < 1e-12
    assert result.history[-1] <= default_rtol(F64)


@pytest.mark.parametrize("name", ["M1", "M2"])
def test_original_matrices_to_1e_12_within_30_iterations(name: str) -> None:
    A = original_inverse_matrices(F64)[name]
    result = inverse(A)
    assert result.converged, result.message
    assert result.nit <= 30
    assert float(inverse_error(A, result.X)) < 1e-12


def test_newton_schulz_needs_few_iterations_for_cond_1e3() -> None:
    # log4(cond**2 * 10) + 5: about half the iterations of unscaled Newton–Schulz (25+).
    A = with_condition_number(32, 1e3, seed=2)
    result = inverse(A)
    assert result.converged, result.message
    assert result.nit <= 18


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_newton_schulz_handles_extreme_scales(scale: float) -> None:
    A = with_condition_number(5, 100.0, seed=3)
    result = inverse(scale * A)  # (scale A)^H (scale A) under- or overflows
    assert result.converged, result.message
    assert relative_error(scale * result.X, torch.linalg.inv(A)) < 1e-12


def test_history_is_the_documented_residual_and_stopping_rule() -> None:
    A = with_condition_number(5, 50.0, seed=3)
    early = inverse(A, max_iter=4)  # residual still large: recomputing it is accurate
    assert early.history[-1] == pytest.approx(eta(A, early.X), rel=1e-9, abs=0)
    result = inverse(A)
    assert result.nit == len(result.history)
    assert result.history[:4] == early.history
    assert result.history[-1] <= default_rtol(F64) < min(result.history[:-1])
    assert eta(A, result.X) <= 2 * default_rtol(F64)


def test_rtol_and_max_iter_are_obeyed() -> None:
    A = with_condition_number(5, 100.0, seed=4)
    loose = inverse(A, rtol=1e-4)
    assert loose.converged and loose.history[-1] <= 1e-4 < min(loose.history[:-1], default=1)
    capped = inverse(A, max_iter=2)
    assert capped.nit == 2 and not capped.converged
    assert "after 2 iterations" in capped.message


def test_callback_sees_each_iteration_and_can_stop() -> None:
    seen: list[tuple[int, float]] = []

    def callback(k: int, residual: float) -> bool:
        seen.append((k, residual))
        return k == 3

    result = inverse(with_condition_number(5, 100.0, seed=5), callback=callback)
    assert result.nit == 3 and not result.converged
    assert "callback" in result.message
    assert seen == list(enumerate(result.history, start=1))


# --- the other methods ----------------------------------------------------------------------


def test_gd_matches_torch_inv() -> None:
    A = with_condition_number(4, 3.0, batch=(2,), seed=6)
    result = inverse(A, method="gd")
    assert result.converged, result.message
    assert relative_error(result.X, torch.linalg.inv(A)) < 1e-12
    # the step 1/σ_max² contracts the error by 1 - 1/cond² = 8/9 per iteration:
    assert 100 < result.nit < 400


def test_gd_step_comes_from_the_problem_scale() -> None:
    # Scaling A by 1000 scales σ_max² by 1e6; a fixed step would diverge, 1/L does not.
    A = with_condition_number(4, 3.0, seed=6)
    small, large = inverse(A, method="gd"), inverse(1000 * A, method="gd")
    assert large.converged and large.nit == pytest.approx(small.nit, abs=2)
    assert relative_error(1000 * large.X, small.X) < 1e-12


@pytest.mark.parametrize(
    ("method", "options"),
    [("sgd", None), ("adam", {"lr": 0.05}), ("lbfgs", None), ("sgd", {"lr": 0.5, "momentum": 0.5})],
)
def test_torch_optim_methods_match_torch_inv(method: str, options: dict | None) -> None:
    A = with_condition_number(4, 2.0, batch=(2,), seed=7)
    result = inverse(A, method=method, rtol=1e-9, max_iter=3000, options=options)
    assert result.converged, result.message
    assert relative_error(result.X, torch.linalg.inv(A)) < 1e-7


def test_torch_optim_methods_work_under_no_grad_and_leave_A_alone() -> None:
    A = with_condition_number(3, 2.0, seed=8).requires_grad_(True)
    with torch.no_grad():
        result = inverse(A, method="adam", rtol=1e-6, max_iter=3000, options={"lr": 0.05})
    assert result.converged, result.message
    assert A.grad is None and not result.X.requires_grad


# --- the original series' loop --------------------------------------------------------------


def sgd_trace(A: torch.Tensor, iterations: int, lr: float, momentum: float) -> list[float]:
    """torch.optim.SGD on the original's loss mean(|XA - I|²) from the original's start."""
    n = A.shape[-1]
    start = torch.rand(n, n, generator=torch.Generator().manual_seed(314)).to(A.dtype)
    X = start.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([X], lr=lr, momentum=momentum)
    eye = torch.eye(n, dtype=A.dtype)
    trace = []
    for _ in range(iterations):
        optimizer.zero_grad()
        (X @ A - eye).abs().square().mean().backward()
        optimizer.step()
        with torch.no_grad():
            trace.append(float((X @ A - eye).abs().square().mean()))
    return trace


@pytest.mark.parametrize(
    ("dtype", "lr", "momentum"), [(F64, 0.9, 0.9), (F64, 0.5, 0.0), (C128, 0.9, 0.9)]
)
def test_original_is_heavy_ball_sgd_on_the_mse(
    dtype: torch.dtype, lr: float, momentum: float
) -> None:
    A = original_inverse_matrices(F64)["M1"].to(dtype)
    options = {"lr": lr, "momentum": momentum}
    result = inverse(A, method="original", rtol=1e-300, max_iter=200, options=options)
    expected = sgd_trace(A, 200, lr, momentum)
    assert result.nit == 200
    assert result.history == pytest.approx(expected, rel=1e-9, abs=0)


@pytest.mark.parametrize("name", ["M1", "M2"])
def test_original_reproduces_the_2020_series_in_float32(name: str) -> None:
    A = original_inverse_matrices(F32)[name]
    reported = original.INVERSE["first_below_1e-12"][name]
    result = inverse(A, method="original", rtol=1e-12)
    assert result.converged
    # history[k-1] is the loss after k updates, the loss the series printed at step k.
    assert abs(result.nit - reported) <= 5
    assert result.history[0] == pytest.approx(sgd_trace(A, 1, 0.9, 0.9)[0], rel=1e-5, abs=0)


def test_original_default_rtol_is_squared_and_max_iter_is_the_series() -> None:
    A = original_inverse_matrices(F32)["M2"]
    result = inverse(A, method="original")
    assert result.converged
    assert result.history[-1] <= default_rtol(F32) ** 2 < result.history[-2]
    capped = inverse(A, method="original", rtol=1e-30)
    assert capped.nit == original.INVERSE["iterations"] and not capped.converged


def test_original_uses_its_own_generator() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    inverse(original_inverse_matrices(F64)["M2"], method="original", max_iter=5)
    inverse(with_condition_number(3, 2.0, seed=0))
    assert torch.equal(torch.get_rng_state(), before)


# --- shapes, dtypes, batches ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["newton-schulz", "gd", "adam", "original"])
def test_dtype_and_device_are_preserved(dtype: torch.dtype, method: str) -> None:
    A = with_condition_number(3, 2.0, batch=(2,), seed=9, dtype=dtype)
    result = inverse(A, method=method, max_iter=3)
    assert result.X.dtype == dtype and result.X.device == A.device
    assert result.X.shape == A.shape


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6),
    batch=st.sampled_from([(), (2,), (2, 3)]),
    dtype=st.sampled_from(DTYPES),
    log_cond=st.floats(0.0, 3.0),
    seed=st.integers(0, 1000),
)
def test_newton_schulz_property(
    n: int, batch: tuple[int, ...], dtype: torch.dtype, log_cond: float, seed: int
) -> None:
    if dtype in (F32, C64):
        log_cond = min(log_cond, 2.0)  # beyond, ‖A‖_F‖X‖_F nears the float guard 1e-3/eps
    cond = 10.0**log_cond
    A = with_condition_number(n, cond, batch=batch, seed=seed, dtype=dtype)
    result = inverse(A)
    rtol = default_rtol(dtype)
    assert result.converged, result.message
    assert result.X.shape == A.shape and result.X.dtype == dtype
    assert eta(A, result.X) <= 2 * rtol
    assert relative_error(result.X, torch.linalg.inv(A)) <= 10 * n * cond * rtol


def test_batch_iterates_together_and_converges_when_all_do() -> None:
    easy = with_condition_number(4, 2.0, seed=10)
    hard = with_condition_number(4, 1e6, seed=11)
    alone = [inverse(easy).nit, inverse(hard).nit]
    assert alone[0] < alone[1]
    together = inverse(torch.stack([easy, hard]))
    assert together.converged and together.nit == max(alone)
    assert relative_error(together.X[0], torch.linalg.inv(easy)) < 1e-13
    singular = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)
    mixed = inverse(torch.stack([torch.eye(2, dtype=F64), singular]))
    assert not mixed.converged


@pytest.mark.parametrize("shape", [(0, 0), (3, 0, 0), (0, 3, 3)])
def test_empty_input_gives_empty_converged_result(shape: tuple[int, ...]) -> None:
    A = torch.empty(shape, dtype=C64)
    result = inverse(A)
    assert result.X.shape == A.shape and result.X.dtype == C64
    assert result.converged and result.nit == 0 and result.history == []


# --- singular and badly conditioned input ---------------------------------------------------


def rank_deficient(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n - 1, generator=generator, dtype=F64)
    C = torch.randn(n - 1, n, generator=generator, dtype=F64)
    return (B @ C).to(dtype)


@pytest.mark.parametrize(
    "A",
    [
        torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64),
        torch.zeros(3, 3, dtype=F64),
        rank_deficient(5, F64, seed=1),
        rank_deficient(8, F32, seed=2),
        rank_deficient(4, C128, seed=3),
        with_condition_number(6, 1e15, seed=4),
    ],
    ids=["exact", "zero", "rank4-f64", "rank7-f32", "rank3-c128", "cond1e15"],
)
def test_singular_matrix_is_not_reported_converged(A: torch.Tensor) -> None:
    result = inverse(A)
    assert not result.converged
    assert "singular" in result.message


def test_gd_on_a_singular_matrix_is_not_reported_converged() -> None:
    result = inverse(rank_deficient(4, F64, seed=5), method="gd", max_iter=500)
    assert not result.converged and "singular" in result.message


# --- bad input ------------------------------------------------------------------------------


SQUARE = torch.eye(3, dtype=F64) + 0.1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: inverse(torch.ones(2, 3, dtype=F64)), gdla.ShapeError),
        (lambda: inverse(torch.ones(3, dtype=F64)), gdla.ShapeError),
        (lambda: inverse(torch.eye(3, dtype=torch.int64)), gdla.DtypeError),
        (lambda: inverse(torch.eye(3, dtype=torch.bool)), gdla.DtypeError),
        (lambda: inverse(torch.eye(3).half()), gdla.DtypeError),
        (lambda: inverse(SQUARE * float("nan")), gdla.NonFiniteError),
        (lambda: inverse(SQUARE * float("inf")), gdla.NonFiniteError),
        (lambda: inverse(SQUARE, method="newton"), gdla.OptionError),
        (lambda: inverse(SQUARE, rtol=0.0), gdla.OptionError),
        (lambda: inverse(SQUARE, max_iter=0), gdla.OptionError),
        (lambda: inverse(SQUARE, options={"lr": 0.1}), gdla.OptionError),
        (lambda: inverse(SQUARE, method="gd", options={"lr": 0.1}), gdla.OptionError),
        (lambda: inverse(SQUARE, method="original", options={"nesterov": True}), gdla.OptionError),
        (lambda: inverse(SQUARE, method="original", options={"momentum": 1.0}), gdla.OptionError),
        (lambda: inverse(SQUARE, method="original", options={"lr": -1.0}), gdla.OptionError),
        (lambda: inverse(SQUARE, method="sgd", options={"lr": -1.0}), gdla.OptionError),
        (lambda: inverse(SQUARE, method="adam", options={"colour": "red"}), gdla.OptionError),
    ],
)
def test_bad_input_raises_a_clear_error(call, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^gdla\.inverse: expected "):
        call()
