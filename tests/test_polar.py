"""Tests of :func:`gdla.polar`, with the SVD-based polar factor ``P @ Qh`` as the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gdla
from gdla import polar
from gdla._iterate import default_rtol
from gdla._polynomial import (
    MUON_QUINTIC,
    NEWTON_SCHULZ_CUBIC,
    NEWTON_SCHULZ_QUINTIC,
    apply_odd,
    evaluate,
    image,
    minimax_odd,
)
from gdla.matrices import with_condition_number, with_singular_values

F32, F64, C64, C128 = torch.float32, torch.float64, torch.complex64, torch.complex128


def svd_polar(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: U = P Qh and H = Q diag(s) Qh from the thin SVD A = P diag(s) Qh."""
    P, s, Qh = torch.linalg.svd(A, full_matrices=False)
    return P @ Qh, (Qh.mH * s.to(A.dtype).unsqueeze(-2)) @ Qh


def orthogonality(U: torch.Tensor) -> float:
    """max over the batch of ‖U^H U − I‖_F / √k, on the smaller side of U."""
    small = U.mH @ U if U.shape[-2] >= U.shape[-1] else U @ U.mH
    k = small.shape[-1]
    eye = torch.eye(k, dtype=U.dtype)
    return float((torch.linalg.matrix_norm(small - eye) / math.sqrt(k)).amax())


def backward_error(A: torch.Tensor, U: torch.Tensor, H: torch.Tensor) -> float:
    """max over the batch of ‖A − UH‖_F / ‖A‖_F."""
    return float((torch.linalg.matrix_norm(A - U @ H) / torch.linalg.matrix_norm(A)).amax())


def distance(X: torch.Tensor, Y: torch.Tensor) -> float:
    """max over the batch of ‖X − Y‖_F / ‖Y‖_F."""
    return float((torch.linalg.matrix_norm(X - Y) / torch.linalg.matrix_norm(Y)).amax())


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


# --- the polynomials ------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [3, 5])
@pytest.mark.parametrize("low", [1e-9, 1e-4, 0.01, 0.3, 0.9, 0.999])
def test_minimax_polynomial_equioscillates(degree: int, low: float) -> None:
    # Chebyshev's characterisation of the best approximation: |1 - p| reaches its
    # maximum E, with alternating signs, at (degree + 3)/2 points of [low, 1].
    coefficients, error = minimax_odd(low, 1.0, degree)
    x = np.concatenate([np.geomspace(low, 1.0, 20_001), np.linspace(low, 1.0, 20_001)])
    x.sort()
    deviation = 1 - evaluate(coefficients, x)
    assert np.max(np.abs(deviation)) == pytest.approx(error, rel=1e-6)
    assert deviation[0] == pytest.approx(error, rel=1e-9)  # p(low) = 1 - E
    extremes = np.abs(deviation) >= error * (1 - 1e-5)
    signs = np.sign(deviation[extremes])
    alternations = 1 + int(np.count_nonzero(np.diff(signs) != 0))
    assert alternations == (degree + 3) // 2


@pytest.mark.parametrize("degree", [3, 5])
def test_minimax_polynomial_beats_newton_schulz_and_tends_to_it(degree: int) -> None:
    taylor = NEWTON_SCHULZ_CUBIC if degree == 3 else NEWTON_SCHULZ_QUINTIC
    for low in (0.1, 0.5, 0.9):
        _, error = minimax_odd(low, 1.0, degree)
        lo, hi = image(taylor, low, 1.0)
        assert error < max(1 - lo, hi - 1)
    close, _ = minimax_odd(1 - 1e-5, 1.0, degree)
    assert np.allclose(close, taylor, rtol=1e-4)


def test_minimax_polynomial_scales_with_the_interval() -> None:
    # p on [l, u] is p on [l/u, 1] composed with x -> x/u.
    (a, b, c), error = minimax_odd(0.02, 3.0)
    (a1, b1, c1), error1 = minimax_odd(0.02 / 3.0, 1.0)
    assert np.allclose([a * 3, b * 27, c * 243], [a1, b1, c1], rtol=1e-10)
    assert error == pytest.approx(error1, rel=1e-10)


def test_optimal_cubic_matches_the_closed_form_for_a_small_interval() -> None:
    # For l -> 0 the best cubic on [l, 1] tends to the steepest one bounded by 2 on
    # [0, 1]: p(x) = (3√3/2)(x - x^3) * (2/√3)... i.e. slope 3√3 at 0 and maximum 2.
    (a, b), error = minimax_odd(1e-12, 1.0, 3)
    assert a == pytest.approx(3 * math.sqrt(3), rel=1e-6)
    assert a + b == pytest.approx(0.0, abs=1e-6)  # p(1) = 1 - E = 0 in the limit
    assert error == pytest.approx(1.0, abs=1e-6)


def test_apply_odd_is_the_polynomial_of_the_singular_values() -> None:
    A = with_singular_values(torch.tensor([0.9, 0.5, 0.2]), 6, 3, seed=1)
    P, s, Qh = torch.linalg.svd(A, full_matrices=False)
    for coefficients in (NEWTON_SCHULZ_CUBIC, NEWTON_SCHULZ_QUINTIC, MUON_QUINTIC):
        X = apply_odd(A, A.mH @ A, coefficients)
        expected = (P * torch.from_numpy(evaluate(coefficients, s.numpy()))) @ Qh
        assert torch.allclose(X, expected, atol=1e-14)


def test_minimax_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="degree 3 or 5"):
        minimax_odd(0.1, 1.0, 7)
    with pytest.raises(ValueError, match="0 < low <= high"):
        minimax_odd(0.0, 1.0)


# --- the default method against the SVD ------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 12),
    n=st.integers(1, 12),
    log_cond=st.sampled_from([0, 2, 4, 6]),
    dtype=st.sampled_from([F32, F64, C64, C128]),
    batch=st.sampled_from([(), (3,), (2, 2)]),
    seed=st.integers(0, 1000),
    method=st.sampled_from(["polar-express", "newton-schulz", "newton"]),
)
def test_matches_the_svd_polar_factor(
    m: int,
    n: int,
    log_cond: int,
    dtype: torch.dtype,
    batch: tuple[int, ...],
    seed: int,
    method: str,
) -> None:
    single = dtype in (F32, C64)
    if single:
        log_cond = min(log_cond, 2)  # the polar factor has about κ ε error: few digits beyond
    cond = 10.0**log_cond
    A = with_condition_number(n, cond, m=m, batch=batch, seed=seed, dtype=dtype)
    result = polar(A, method=method)
    U_ref, H_ref = svd_polar(A)
    k = min(m, n)
    assert result.U.shape == A.shape and result.H.shape == (*batch, n, n)
    assert result.U.dtype == dtype and result.H.dtype == dtype
    assert result.converged, result.message
    assert result.history[-1] <= default_rtol(dtype)
    assert orthogonality(result.U) <= 2 * default_rtol(dtype)
    assert backward_error(A, result.U, result.H) <= 50 * math.sqrt(k) * eps(dtype)
    # The polar factor's condition number is about κ (2/(σ_i + σ_j) for the real case).
    assert distance(result.U, U_ref) <= 50 * cond * math.sqrt(k) * eps(dtype)
    assert distance(result.H, H_ref) <= 50 * math.sqrt(k) * eps(dtype)
    assert torch.allclose(result.H, result.H.mH)


@pytest.mark.parametrize("cond", [1e1, 1e4, 1e8])
def test_goal_double_accuracy_within_twenty_iterations(cond: float) -> None:
    A = with_condition_number(64, cond, seed=3)
    result = polar(A)
    assert result.converged, result.message
    assert result.nit <= 20
    assert orthogonality(result.U) <= 1e-13
    assert backward_error(A, result.U, result.H) <= 1e-13
    eigenvalues = torch.linalg.eigvalsh(result.H)
    assert float(eigenvalues.min()) >= -1e-13 * float(eigenvalues.max())


@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6, 1e8])
def test_goal_fewer_products_than_newton_schulz(cond: float) -> None:
    A = with_condition_number(32, cond, seed=4)
    express = polar(A)
    classic = polar(A, method="newton-schulz")
    assert express.converged and classic.converged
    assert express.products < classic.products
    # the count is the documented one: Gram of A, 3 (degree 5) or 2 per step, H; Polar
    # Express's last step is the cubic (one product less) where that suffices
    assert express.products in (1 + 3 * express.nit + 1, 1 + 3 * express.nit)
    assert classic.products == 1 + 2 * classic.nit + 1


def test_cubic_finish_saves_a_product_only_where_it_suffices() -> None:
    A = with_condition_number(32, 1e4, seed=4)
    finished = polar(A)
    assert finished.converged and finished.products == 3 * finished.nit + 1  # cubic last
    # here the residual before the last step (about 4e-6) is too large for a cubic
    quintic = polar(with_condition_number(32, 1e2, seed=4))
    assert quintic.history[-2] > 1e-6
    assert quintic.converged and quintic.products == 3 * quintic.nit + 2
    # where the bounds are wrong (rank deficiency: the zero singular values grow from
    # rounding errors while [l, u] has closed on 1) the measured residual keeps the quintic
    s = torch.tensor([1.0, 0.5, 0.1, 0.0, 0.0], dtype=F64)
    deficient = polar(with_singular_values(s, 9, 5, seed=6))
    assert deficient.converged and deficient.products >= 3 * deficient.nit + 1


@pytest.mark.parametrize("m", [40, 60])
def test_scaled_newton_reference(m: int) -> None:
    # Higham's scaled Newton iteration: at most 9 iterations in double precision.
    for cond in (1e2, 1e8):
        A = with_condition_number(40, cond, m=m, seed=13)
        result = polar(A, method="newton")
        assert result.converged, result.message
        assert result.nit <= 9
        assert backward_error(A, result.U, result.H) <= 1e-14
        assert distance(result.U, svd_polar(A)[0]) <= 1e-15 * cond * 100
        assert result.products == 2 * result.nit + (0 if m == 40 else 2) + 1  # + H = U^H A
    # an exactly singular matrix has no inverse: the documented failure
    failed = polar(torch.diag(torch.tensor([1.0, 0.5, 0.0], dtype=F64)), method="newton")
    assert not failed.converged and "diverged" in failed.message


def test_degree_three_and_a_given_lower_bound() -> None:
    A = with_condition_number(20, 1e5, m=30, seed=5)
    cubic = polar(A, options={"degree": 3})
    assert cubic.converged and cubic.products == 2 + 2 * cubic.nit
    assert backward_error(A, cubic.U, cubic.H) <= 1e-13
    # the exact lower bound (after the documented normalisation) needs no more steps
    # than the estimate; a far too small one needs more, but still converges.
    G = A.mH @ A
    G2 = G @ G  # the degree 5 normalisation's sharper bound
    alpha = min(float(torch.linalg.matrix_norm(G)), float(torch.linalg.matrix_norm(G, ord=1)),
                float(torch.linalg.matrix_norm(G2)) ** 0.5,
                float(torch.linalg.matrix_norm(G2, ord=1)) ** 0.5)  # fmt: skip
    exact = float(torch.linalg.svdvals(A)[-1]) / math.sqrt(alpha)
    estimated = polar(A)
    told = polar(A, options={"lower": exact})
    pessimistic = polar(A, options={"lower": 1e-12})
    assert told.nit <= estimated.nit <= told.nit + 1
    assert pessimistic.converged and pessimistic.nit > told.nit
    assert distance(told.U, svd_polar(A)[0]) <= 1e-9


def test_wide_matrices_are_handled_by_their_transpose() -> None:
    A = with_condition_number(7, 1e3, m=4, batch=(2,), seed=6, dtype=C128)
    result = polar(A)
    assert result.U.shape == (2, 4, 7) and result.H.shape == (2, 7, 7)
    assert orthogonality(result.U) <= 1e-14  # orthonormal rows
    assert distance(result.U, svd_polar(A)[0]) <= 1e-11
    transposed = polar(A.mH)
    assert torch.allclose(result.U, transposed.U.mH, atol=1e-14)
    assert result.nit == transposed.nit


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_extreme_scales(scale: float) -> None:
    A = with_condition_number(5, 100.0, m=6, seed=7)
    result = polar(scale * A)
    assert result.converged, result.message
    assert distance(result.U, svd_polar(A)[0]) <= 1e-13
    assert distance(result.H / scale, svd_polar(A)[1]) <= 1e-13


def test_rank_deficient_matrix() -> None:
    # H = (A^H A)^(1/2) is unique; U equals P_r Q_r^H on the range of A^H, and its
    # other columns grow out of rounding errors into an orthonormal completion.
    s = torch.tensor([1.0, 0.5, 0.1, 0.0, 0.0], dtype=F64)
    A = with_singular_values(s, 8, 5, seed=8)
    result = polar(A)
    P, _, Qh = torch.linalg.svd(A, full_matrices=False)
    assert result.converged, result.message
    assert orthogonality(result.U) <= 1e-14
    assert backward_error(A, result.U, result.H) <= 1e-14
    assert distance(result.H, svd_polar(A)[1]) <= 1e-14
    Q_r = Qh[:3].mH
    assert torch.allclose(result.U @ Q_r, P[:, :3], atol=1e-13)
    # stopped early, the extra singular values of U are still small: not converged
    early = polar(A, max_iter=4)
    assert not early.converged and "not converged" in early.message
    assert float(torch.linalg.svdvals(early.U)[-1]) < 1e-6


def test_zero_matrix_and_empty_input() -> None:
    zero = polar(torch.zeros(3, 2, dtype=F64), max_iter=3)
    assert not zero.converged
    assert torch.equal(zero.H, torch.zeros(2, 2, dtype=F64))
    empty = polar(torch.zeros(0, 4, 3))
    assert empty.converged and empty.nit == 0 and empty.U.shape == (0, 4, 3)
    assert empty.H.shape == (0, 3, 3)


# --- the stopping rule ------------------------------------------------------------------------


def test_history_is_the_documented_residual() -> None:
    A = with_condition_number(6, 1e3, m=9, seed=9)
    early = polar(A, max_iter=3)
    X = early.U
    n = X.shape[-1]
    expected = float(torch.linalg.matrix_norm(X.mH @ X - torch.eye(n, dtype=F64)) / math.sqrt(n))
    assert early.history[-1] == pytest.approx(expected, rel=1e-9)
    full = polar(A)
    assert full.history[:3] == early.history
    assert full.nit == len(full.history)
    assert full.history[-1] <= default_rtol(F64) < min(full.history[:-1])
    loose = polar(A, rtol=1e-3)
    assert loose.nit < full.nit and loose.history[-1] <= 1e-3


def test_callback_stops_and_max_iter_limits() -> None:
    A = with_condition_number(6, 1e6, seed=10)
    seen: list[tuple[int, float]] = []
    result = polar(A, callback=lambda k, r: seen.append((k, r)) or k == 2)
    assert result.nit == 2 and not result.converged and "callback" in result.message
    assert [k for k, _ in seen] == [1, 2]
    capped = polar(A, method="newton-schulz", max_iter=7)
    assert capped.nit == 7 and not capped.converged


# --- Muon ------------------------------------------------------------------------------------


def muon_reference(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Muon's ``zeropower_via_newtonschulz5`` as published (Jordan et al., 2024), transcribed."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16() if G.dtype == torch.bfloat16 else G
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.mT if transposed else X


#: Muon's factor is meant for singular values (after Frobenius normalisation) above this.
MUON_START = 2e-3


def muon_band() -> tuple[float, float]:
    """The range of 5 steps of Muon's quintic on [MUON_START, 1], on a fine scalar grid."""
    y = np.geomspace(MUON_START, 1.0, 200_001)
    for _ in range(5):
        y = evaluate(MUON_QUINTIC, y)
    return float(y.min()), float(y.max())


def test_muon_band_of_the_scalar_map() -> None:
    # Computed, not assumed: 5 steps map [2e-3, 1] into about [0.68, 1.20], inside the
    # (0.5, 1.5) that Muon's authors state; the band is invariant (further steps keep
    # the singular values there: the quintic has no fixed point to converge to); a
    # start at 1e-3 instead ends below 0.5.
    low, high = muon_band()
    assert 0.67 < low < 0.69 and 1.19 < high < 1.21
    inside = np.linspace(low, high, 10_001)
    image_low, image_high = (
        evaluate(MUON_QUINTIC, inside).min(),
        evaluate(MUON_QUINTIC, inside).max(),
    )
    assert low - 1e-6 <= image_low and image_high <= high
    assert abs(1 - evaluate(MUON_QUINTIC, 1.0)) > 0.1  # 1 is not a fixed point
    y = np.array(1e-3)
    for _ in range(5):
        y = evaluate(MUON_QUINTIC, y)
    assert float(y) < 0.5


@pytest.mark.parametrize("dtype", [F32, torch.bfloat16])
def test_muon_reproduces_the_published_iteration(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(11)
    G = torch.randn(64, 96, generator=generator).to(dtype)
    result = polar(G, method="muon")
    assert result.nit == 5 and result.products == 1 + 3 * 5 + 1
    assert result.U.dtype == dtype
    assert not result.converged and "not converged" in result.message
    reference = muon_reference(G)
    if dtype == F32:
        assert distance(result.U, reference) <= 1e-5
    else:
        # two bfloat16 codes round differently (a few percent after 5 steps): each is
        # compared with the float32 iteration, and gdla's is no further from it.
        exact = muon_reference(G.float())
        ours, theirs = distance(result.U.float(), exact), distance(reference.float(), exact)
        assert ours <= max(1.5 * theirs, 0.02)
    # A Gaussian matrix's normalised singular values are all above MUON_START: every
    # singular value of Muon's factor lands in the computed band (bfloat16: give or take
    # its rounding).
    low, high = muon_band()
    normalised = torch.linalg.svdvals(G.float()) / torch.linalg.matrix_norm(G.float())
    assert float(normalised.min()) > MUON_START
    s = torch.linalg.svdvals(result.U.float())
    slack = 0.0 if dtype == F32 else 0.05
    assert low - slack - 1e-4 <= float(s.min()) and float(s.max()) <= high + slack + 1e-4


def test_muon_converges_only_when_it_meets_rtol() -> None:
    G = torch.randn(16, 8, generator=torch.Generator().manual_seed(12), dtype=F64)
    assert polar(G, method="muon", rtol=0.5).converged
    assert not polar(G, method="muon").converged


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: polar([[1.0]]), gdla.DtypeError, "torch.Tensor"),
        (lambda: polar(torch.ones(3, 3, dtype=torch.int64)), gdla.DtypeError, "float32"),
        (lambda: polar(torch.ones(3, 3, dtype=torch.bfloat16)), gdla.DtypeError, "'muon'"),
        (
            lambda: polar(torch.ones(3, 3, dtype=torch.float16), method="muon"),
            gdla.DtypeError,
            "float16",
        ),  # fmt: skip
        (lambda: polar(torch.ones(3)), gdla.ShapeError, "(*, m, n)"),
        (lambda: polar(torch.full((2, 2), float("nan"))), gdla.NonFiniteError, "finite"),
        (lambda: polar(torch.eye(2), method="qdwh"), gdla.OptionError, "method"),
        (lambda: polar(torch.eye(2), rtol=0.0), gdla.OptionError, "rtol"),
        (lambda: polar(torch.eye(2), max_iter=1.5), gdla.OptionError, "max_iter"),
        (lambda: polar(torch.eye(2), options={"degree": 7}), gdla.OptionError, "degree"),
        (lambda: polar(torch.eye(2), options={"lower": 0.0}), gdla.OptionError, "lower"),
        (
            lambda: polar(torch.eye(2), method="muon", options={"lower": 0.1}),
            gdla.OptionError,
            "lower",
        ),  # fmt: skip
    ],
)
def test_bad_input_gets_a_clear_error(call, error: type[Exception], words: str) -> None:  # noqa: ANN001
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value).startswith("gdla.polar: expected ")
    assert words in str(raised.value)


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize(("m", "n"), [(5, 3), (4, 4), (3, 5)])
def test_gradients_of_the_polar_decomposition_pass_gradcheck(
    dtype: torch.dtype, m: int, n: int
) -> None:
    # The gradient is the decomposition's, whatever the method: the quick "newton"
    # keeps gradcheck's many forward calls cheap; one batched case runs the default.
    A = with_condition_number(n, 10.0, m=m, seed=16, dtype=dtype).requires_grad_()
    assert torch.autograd.gradcheck(lambda A: polar(A, method="newton").U, (A,), atol=1e-6)
    assert torch.autograd.gradcheck(lambda A: polar(A, method="newton").H, (A,), atol=1e-6)
    if dtype == F64 and m > n:
        batch = with_condition_number(n, 10.0, m=m, batch=(2,), seed=17).requires_grad_()

        def factors(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            result = polar(A)
            return result.U, result.H

        assert torch.autograd.gradcheck(factors, (batch,))


def test_gradients_raise_for_rank_deficiency_and_inference_mode_works() -> None:
    s = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    A = with_singular_values(s, 5, 3, seed=15).requires_grad_()
    with pytest.raises(RuntimeError, match="rank-deficient"):
        polar(A).U.sum().backward()
    with torch.no_grad():
        assert not polar(A).U.requires_grad
    full = with_condition_number(3, 10.0, m=5, seed=18).requires_grad_()
    with pytest.raises(RuntimeError, match="not converged"):
        polar(full, method="muon").U.sum().backward()
    with torch.inference_mode():
        inference = polar(A.detach(), method="newton")
    assert inference.converged
    again = polar(inference.U)  # an inference tensor as input
    assert again.converged and orthogonality(again.U) <= 1e-14


# --- the starting bounds and the robustness cases ----------------------------------------------

_polar_module = __import__("importlib").import_module("gdla.polar")


def _robustness_cases() -> dict[str, torch.Tensor]:
    """Flat, rank-deficient, tiny, mixed-batch, complex, tall and wide inputs."""
    orthogonal = torch.linalg.qr(torch.randn(30, 30, dtype=F64, generator=_seeded(1)))[0]
    mixed = torch.stack([
        with_condition_number(12, 1e6, seed=2),
        3.0 * torch.linalg.qr(torch.randn(12, 12, dtype=F64, generator=_seeded(3)))[0],
        1e-3 * with_condition_number(12, 10.0, seed=4),
    ])  # fmt: skip
    return {
        "flat": 7.5 * orthogonal,
        "flat tall": with_singular_values(torch.full((6,), 2.0, dtype=F64), 20, 6, seed=5),
        "rank deficient": with_singular_values(
            torch.tensor([1.0, 0.5, 0.1, 0.0, 0.0], dtype=F64), 9, 5, seed=6
        ),
        "1 x 1": torch.tensor([[-3.0]], dtype=F64),
        "2 x 2": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64),
        "3 x 1": torch.tensor([[1.0], [-2.0], [0.5]], dtype=F64),
        "mixed batch": mixed,
        "complex": with_condition_number(15, 1e4, m=25, seed=7, dtype=C128),
        "wide": with_condition_number(20, 1e3, m=8, seed=8),
        "one dominant": with_singular_values(
            torch.cat([torch.tensor([100.0]), torch.ones(39)]).to(F64), 40, 40, seed=9
        ),
    }


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(_robustness_cases()))
def test_starting_upper_bound_is_safe(name: str) -> None:
    # u0 = 1 must bound σ_max(X0): the early polynomials leave [0, 1 + E] just above 1.
    A = _robustness_cases()[name]
    tall = A.mH if A.shape[-2] < A.shape[-1] else A
    for square in (False, True):
        X, G, G2 = _polar_module._normalise(tall, square=square)
        top = torch.linalg.svdvals(X)[..., 0]
        assert float(top.amax()) <= 1 + 1e-13, (name, square)
        assert torch.allclose(G, X.mH @ X, atol=1e-14)
        if square:
            assert torch.allclose(G2, G @ G, atol=1e-14)
    # the sharper bound is no looser than the plain one
    plain = torch.linalg.svdvals(_polar_module._normalise(tall)[0])[..., 0]
    sharp = torch.linalg.svdvals(_polar_module._normalise(tall, square=True)[0])[..., 0]
    assert bool((sharp >= plain * (1 - 1e-13)).all())


@pytest.mark.parametrize("name", list(_robustness_cases()))
def test_default_converges_on_the_robustness_cases(name: str) -> None:
    A = _robustness_cases()[name]
    result = polar(A)
    assert result.converged, (name, result.message)
    # a zero singular value grows out of rounding errors (see test_rank_deficient_matrix)
    assert result.nit <= (60 if name == "rank deficient" else 20)
    assert orthogonality(result.U) <= 1e-13
    assert backward_error(A, result.U, result.H) <= 1e-13
    if name != "rank deficient":  # there U is not unique
        assert distance(result.U, svd_polar(A)[0]) <= 1e-9
    assert distance(result.H, svd_polar(A)[1]) <= 1e-12


def test_lower_estimate_is_sharp_and_floored() -> None:
    # Lanczos on G^{-1}: within a few percent of σ_min(X0) / 1.05 on well-separated spectra
    for cond in (1e1, 1e3, 1e6):
        A = with_condition_number(60, cond, seed=10)
        X, G, _ = _polar_module._normalise(A, square=True)
        smallest = float(torch.linalg.svdvals(X)[-1])
        estimate = _polar_module._estimate_lower(G)
        assert 0.85 <= estimate * 1.05 / smallest <= 1.05, cond
    # numerically singular or failed factorisations: the floor (sqrt(n) eps)^(1/2) / 10
    floor = math.sqrt(math.sqrt(4) * eps(F64)) / 10
    singular = torch.diag(torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=F64))
    assert _polar_module._estimate_lower(singular) == pytest.approx(floor)
    # the smallest over a batch, and the failed member does not poison the others
    batch = torch.stack([singular, torch.eye(4, dtype=F64)])
    assert _polar_module._estimate_lower(batch) == pytest.approx(floor)
    assert _polar_module._estimate_lower(torch.eye(4, dtype=F64)) == pytest.approx(1 / 1.05)


@pytest.mark.parametrize("cond", [1e6, 1e8])
def test_newton_converges_below_the_default_rtol(cond: float) -> None:
    # Scaled Newton alone stalled just above rtol at cond 1e6 (its inverses' rounding);
    # the Newton-Schulz finish takes it below.
    A = with_condition_number(128, cond, seed=11)
    result = polar(A, method="newton")
    assert result.converged, result.message
    assert result.nit <= 10
    assert result.history[-1] <= default_rtol(F64)
    assert backward_error(A, result.U, result.H) <= 1e-14


def test_gram_by_blocks_is_the_exact_hermitian_gram() -> None:
    # orders from 2 * _GRAM_BLOCK on take the block path: upper blocks by products,
    # the rest their conjugate transposes; tall, complex and batched, G @ G too
    block = _polar_module._GRAM_BLOCK
    n = 2 * block + 9
    generator = _seeded(12)
    for X in (torch.randn(n + 3, n, dtype=F64, generator=generator),
              torch.randn(2, n, n, dtype=C64, generator=generator)):  # fmt: skip
        G = _polar_module._gram(X)
        assert torch.equal(G, G.mH)
        reference = X.mH @ X
        assert distance(G, reference) <= 10 * eps(X.dtype)
        square = _polar_module._gram(G)
        assert torch.equal(square, square.mH)
        assert distance(square, G @ G) <= 10 * eps(X.dtype)
    # below the threshold, and in bfloat16 (Muon's rounding), one product
    small = torch.randn(5, 3, dtype=F64, generator=generator)
    assert torch.equal(_polar_module._gram(small), (small.mH @ small + (small.mH @ small).mH) / 2)
    # and the iteration on the block path gives the polar factor
    A = with_condition_number(n, 1e4, seed=13)
    result = polar(A)
    assert result.converged and distance(result.U, svd_polar(A)[0]) <= 1e-11
    assert backward_error(A, result.U, result.H) <= 1e-13
