"""Tests of :func:`gdla.svd`, with ``torch.linalg.svd`` as the oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gdla
from gdla import svd
from gdla._iterate import default_rtol
from gdla.matrices import decaying_spectrum, original_svd_matrices, with_singular_values
from gdla.metrics import orthogonality_error, reconstruction_error, subspace_angle

F64, F32, C64, C128 = torch.float64, torch.float32, torch.complex64, torch.complex128
DTYPES = [F32, F64, C64, C128]
ITERATIVE = ["lanczos", "subspace", "randomized", "riemannian"]


def oracle(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.linalg.svd`` truncated to k, normalised by the documented sign convention.

    Written out independently of gdla: in each column of U the entry of largest
    magnitude is made real positive, and the matching row of Vh takes the phase.
    """
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    U, S, Vh = U[..., :k], S[..., :k], Vh[..., :k, :]
    pivot = U.gather(-2, U.abs().argmax(dim=-2, keepdim=True))
    phase = pivot / pivot.abs()
    return U * phase.conj(), S, Vh * phase.mT


def residuals(A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor) -> torch.Tensor:
    """The documented residual, one per matrix: max(‖AV − US‖, ‖AᴴU − VS‖) / ‖A‖_F."""
    V, SV = Vh.mH, S.to(A.dtype).unsqueeze(-2)
    left = torch.linalg.matrix_norm(A @ V - U * SV)
    right = torch.linalg.matrix_norm(A.mH @ U - V * SV)
    norm = torch.linalg.matrix_norm(A)
    return torch.maximum(left, right) / torch.where(norm > 0, norm, 1.0)  # 0 for a zero A


def tolerance(dtype: torch.dtype) -> float:
    return 1e-10 if dtype in (F64, C128) else 1e-4


def assert_sign_convention(U: torch.Tensor) -> None:
    pivot = U.gather(-2, U.abs().argmax(dim=-2, keepdim=True))
    assert bool((pivot.real > 0).all())
    if U.is_complex():
        assert bool((pivot.imag.abs() <= 1e-6 * pivot.abs()).all())


# --- the default method on the original series' matrices ------------------------------------


@pytest.mark.parametrize("name", ["M1", "M2", "M3", "M4", "M5"])
def test_default_method_solves_the_original_matrices(name: str) -> None:
    A = original_svd_matrices(F64)[name]
    result = svd(A)
    assert result.method == "lanczos"
    assert result.converged, result.message
    assert result.nit <= 1000
    assert result.history[-1] <= default_rtol(F64)
    assert float((result.S - torch.linalg.svdvals(A)).abs().max()) < 1e-10
    assert float(orthogonality_error(result.U)) < 1e-12
    assert float(orthogonality_error(result.Vh.mH)) < 1e-12
    assert float(reconstruction_error(A, result.U, result.S, result.Vh)) < 1e-13


def test_default_method_matches_the_oracle_vectors() -> None:
    A = original_svd_matrices(F64)["M3"]
    result = svd(A)
    U, S, Vh = oracle(A, 4)
    assert torch.allclose(result.U, U, atol=1e-12)
    assert torch.allclose(result.Vh, Vh, atol=1e-12)


# --- each iterative method against the oracle ------------------------------------------------


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("method", ITERATIVE)
def test_iterative_methods_match_the_oracle(method: str, dtype: torch.dtype) -> None:
    A = with_singular_values(torch.tensor([4.0, 3.0, 2.0, 1.0]), 6, 4, seed=3, dtype=dtype)
    result = svd(A, method=method)
    assert result.converged, result.message
    U, S, Vh = oracle(A, 4)
    assert torch.allclose(result.S, S, atol=1e-12)
    assert result.S.dtype == F64
    # Distinct singular values + the sign convention: equal column by column.
    assert torch.allclose(result.U, U, atol=1e-10)
    assert torch.allclose(result.Vh, Vh, atol=1e-10)


def test_top_k_of_a_decaying_spectrum() -> None:
    A = decaying_spectrum(80, 50, rate=0.7, seed=1)
    result = svd(A, 5)
    assert result.converged, result.message
    U, S, Vh = oracle(A, 5)
    assert (result.U.shape, result.S.shape, result.Vh.shape) == ((80, 5), (5,), (5, 50))
    assert torch.allclose(result.S, S, rtol=1e-12)
    assert float(subspace_angle(result.U, U)) < 1e-10
    assert float(subspace_angle(result.Vh.mH, Vh.mH)) < 1e-10


def test_randomized_makes_a_fixed_number_of_passes() -> None:
    A = decaying_spectrum(200, 120, rate=0.97, seed=2)
    result = svd(A, 4, method="randomized")
    assert result.nit == 3 and len(result.history) == 3
    # Fixed budget: accurate to a few digits on a slowly decaying spectrum, not to rtol.
    assert not result.converged
    assert "not converged" in result.message
    exact = torch.linalg.svdvals(A)[:4]
    assert float(((result.S - exact) / exact).abs().max()) < 1e-2
    longer = svd(A, 4, method="randomized", max_iter=200)
    assert longer.converged and longer.nit < 200


def test_riemannian_step_size_is_derived_from_the_matrix() -> None:
    # The step 1/||A||_2 is scale invariant: scaling A scales nothing else.
    A = with_singular_values(torch.tensor([4.0, 3.0, 2.0, 1.0]), 6, 4, seed=4)
    small, large = svd(A, method="riemannian"), svd(1e6 * A, method="riemannian")
    assert small.converged and large.converged
    assert abs(small.nit - large.nit) <= 2
    assert torch.allclose(large.S, 1e6 * small.S, rtol=1e-12)
    # Beyond the stability limit 2 / sigma_1 the iteration never settles.
    enough = svd(A, method="riemannian", max_iter=300)
    too_long = svd(A, method="riemannian", options={"step": 2.2 / 4.0}, max_iter=300)
    assert enough.history[-1] < 1e-3
    assert min(too_long.history[-50:]) > 0.1


def test_subspace_iteration_converges_linearly_at_the_predicted_rate() -> None:
    # Residual ratio per iteration ~ (sigma_{l+1} / sigma_k)^2 = (0.9**3)**2 for l = k + 2.
    A = decaying_spectrum(300, 200, rate=0.9, seed=5)
    result = svd(A, 3, method="subspace", options={"oversampling": 2}, rtol=1e-10)
    assert result.converged, result.message
    h = result.history
    ratio = (h[-1] / h[-4]) ** (1 / 3)
    assert ratio == pytest.approx(0.9**6, rel=1e-3)


def test_lanczos_needs_fewer_products_than_subspace_iteration() -> None:
    # Same block, same tolerance: each method makes two block products per iteration,
    # but Lanczos keeps every block (a Krylov space) where subspace iteration keeps one.
    A = decaying_spectrum(400, 300, rate=0.97, seed=6)
    options = {"oversampling": 10}
    krylov = svd(A, 5, options=options, rtol=1e-10)
    power = svd(A, 5, method="subspace", options=options, rtol=1e-10)
    assert krylov.converged and power.converged
    assert 2 * krylov.nit < power.nit
    assert torch.allclose(krylov.S, power.S, rtol=1e-10)


def test_lanczos_restarts_keep_the_residual_honest() -> None:
    # A small max_basis forces a thick restart at every iteration after the second.
    A = decaying_spectrum(200, 150, rate=0.98, seed=7)
    result = svd(A, 4, options={"oversampling": 4, "max_basis": 20}, rtol=1e-11, max_iter=5000)
    assert result.converged, result.message
    assert result.nit > 10
    assert float(residuals(A, result.U, result.S, result.Vh)) <= 2e-11
    assert float(orthogonality_error(result.U)) < 1e-12
    assert float(orthogonality_error(result.Vh.mH)) < 1e-12
    assert torch.allclose(result.S, torch.linalg.svdvals(A)[:4], rtol=1e-10)


def test_lanczos_stops_when_its_space_is_the_whole_space() -> None:
    A = original_svd_matrices(F64)["M2"]
    result = svd(A, rtol=1e-300)
    assert not result.converged and result.nit == 1
    assert "whole space" in result.message
    assert result.history[0] < 1e-14  # rounding level: nothing left to gain


def test_lanczos_rejects_a_basis_too_small_for_a_restart() -> None:
    A = decaying_spectrum(200, 150, rate=0.9, seed=7)
    with pytest.raises(gdla.OptionError, match="max_basis"):
        svd(A, 4, options={"oversampling": 4, "max_basis": 11})


# --- torch.optim on orthonormal parametrisations --------------------------------------------


def test_orthogonal_parametrisation_converges_with_sgd() -> None:
    A = with_singular_values(torch.tensor([4.0, 3.0, 2.0, 1.0]), 6, 4, seed=3)
    result = svd(A, 2, method="orthogonal", rtol=1e-11)
    assert result.converged, result.message
    U, S, Vh = oracle(A, 2)
    assert torch.allclose(result.S, S, atol=1e-12)
    assert torch.allclose(result.U, U, atol=1e-9)
    assert torch.allclose(result.Vh, Vh, atol=1e-9)
    assert float(orthogonality_error(result.U)) < 1e-12


def test_orthogonal_recentres_its_chart_instead_of_stalling() -> None:
    """Rank 2, 8 x 6, k = 2, seed 0: the chart centred at the start crawled at residual
    0.35 for thousands of iterations (its parameters growing); re-centred, it converges."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 2, generator=g, dtype=F64) @ torch.randn(2, 6, generator=g, dtype=F64)
    result = svd(A, 2, method="orthogonal", max_iter=1500)
    assert result.converged, result.message
    assert "re-centred" in result.message
    assert torch.allclose(result.S, torch.linalg.svdvals(A)[:2], rtol=1e-12)


def test_orthogonal_parametrisation_handles_batches_and_complex_input() -> None:
    s = torch.tensor([[3.0, 2.0, 1.0], [5.0, 2.5, 1.0]])
    A = with_singular_values(s, 5, 3, seed=8, dtype=C128)
    result = svd(A, 2, method="orthogonal", rtol=1e-10, options={"optimizer": "adam", "lr": 0.05})
    assert result.converged, result.message
    assert result.U.shape == (2, 5, 2) and result.U.dtype == C128
    assert torch.allclose(result.S, s[:, :2].to(F64), atol=1e-10)
    assert float(residuals(A, result.U, result.S, result.Vh).max()) <= 2e-10


def test_orthogonal_lbfgs_finds_singular_values_but_its_vectors_stall_near_sqrt_eps() -> None:
    A = original_svd_matrices(F64)["M2"]
    result = svd(A, method="orthogonal", options={"optimizer": "lbfgs"}, max_iter=30)
    assert float((result.S - torch.linalg.svdvals(A)).abs().max()) < 1e-12
    assert not result.converged
    assert 1e-11 < result.history[-1] < 1e-6  # vectors: about sqrt(eps) = 1.5e-8


def test_orthogonal_rejects_unknown_optimizers_and_options() -> None:
    A = with_singular_values(torch.tensor([2.0, 1.0]), 3, 2, seed=1)
    with pytest.raises(gdla.OptionError, match="optimizer"):
        svd(A, method="orthogonal", options={"optimizer": "rmsprop"})
    with pytest.raises(gdla.OptionError, match="torch.optim"):
        svd(A, method="orthogonal", options={"lr": -1.0})


# --- the original formulation and its failures -----------------------------------------------


def test_penalty_starts_where_the_original_started() -> None:
    A = original_svd_matrices()["M1"]
    result = svd(A, method="penalty", seed=314, max_iter=1, options={"monitor": "loss"})
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(314)  # the original's global-RNG code, written out
    U, s, V = torch.rand(5, 4), torch.rand(4), torch.rand(4, 4)
    torch.random.set_rng_state(torch_state)
    mse = torch.nn.functional.mse_loss
    eye = torch.eye(4)
    loss = mse(U @ torch.diag(s**2) @ V.T, A) + mse(U.T @ U, eye) / 100 + mse(V @ V.T, eye) / 100
    assert result.history == pytest.approx([float(loss)], rel=1e-6)


def test_penalty_finds_m1() -> None:
    A = original_svd_matrices()["M1"]
    result = svd(A, method="penalty", seed=314, max_iter=2000, options={"monitor": "loss"})
    assert result.S.dtype == F32
    assert float((result.S - torch.linalg.svdvals(A)).abs().max()) < 1e-3
    assert result.history[-1] < 1e-4 * result.history[0]
    assert_sign_convention(result.U)


def test_penalty_stalls_on_m5_and_says_so() -> None:
    A = original_svd_matrices()["M5"]
    result = svd(A, method="penalty", seed=314, max_iter=1000, options={"monitor": "loss"})
    assert not result.converged
    assert "not converged" in result.message
    assert result.nit == 1000 and len(result.history) == 1000
    # Stuck far above the tolerance, with a singular value lost.
    assert result.history[-1] > 1e-3
    assert float(torch.linalg.svdvals(A)[-1] - result.S[-1]) > 0.1


def test_penalty_stops_when_the_loss_meets_the_documented_threshold() -> None:
    A = original_svd_matrices()["M4"]
    rtol = 1e-3
    result = svd(A, method="penalty", seed=314, rtol=rtol, options={"monitor": "loss"})
    assert result.converged, result.message
    threshold = rtol**2 * float(A.square().mean())
    assert result.history[-1] <= threshold < result.history[-2]


@pytest.mark.parametrize(
    ("method", "options"),
    [("sgd", {"lr": 0.5, "momentum": 0.9}), ("adam", {"lr": 1e-2, "weight_decay": 1e-5})],
)
def test_torch_optimisers_decrease_the_penalty_loss(method: str, options: dict[str, float]) -> None:
    A = original_svd_matrices()["M2"]
    result = svd(A, method=method, seed=314, max_iter=300, options={**options, "monitor": "loss"})
    assert result.method == method and len(result.history) == 300
    assert result.history[-1] < 0.05 * result.history[0]


def test_lbfgs_converges_on_the_penalty_loss() -> None:
    A = original_svd_matrices()["M4"]
    result = svd(A, method="lbfgs", seed=314)
    assert result.converged, result.message
    assert float((result.S - torch.linalg.svdvals(A)).abs().max()) < 1e-3


def _two_sided_residual(
    A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor
) -> float:
    left = torch.linalg.matrix_norm(A @ Vh.mH - U * S.unsqueeze(-2))
    right = torch.linalg.matrix_norm(A.mH @ U - Vh.mH * S.unsqueeze(-2))
    return float(torch.maximum(left, right).amax() / torch.linalg.matrix_norm(A).amax())


@pytest.mark.parametrize("method", ["penalty", "sgd", "adam", "lbfgs"])
def test_penalty_family_stops_on_the_svd_residual_when_rank_exceeds_k(method: str) -> None:
    """The loss cannot reach rtol when rank(A) > k; the residual of the triplets can."""
    A = gdla.matrices.with_condition_number(4, 5.0, m=5, seed=0)  # rank 4, k = 2
    result = svd(A, 2, method=method, rtol=1e-5)
    assert result.converged, result.message
    returned = _two_sided_residual(A, result.U, result.S, result.Vh)
    assert returned == pytest.approx(result.history[-1], rel=1e-6) and returned <= 1e-5
    assert float((result.S - torch.linalg.svdvals(A)[:2]).abs().max()) < 1e-5
    loss = svd(A, 2, method=method, rtol=1e-5, max_iter=50, options={"monitor": "loss"})
    assert not loss.converged  # its floor: the singular values left out


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_penalty_optimisers_converge_at_default_rtol_on_an_easy_problem(method: str) -> None:
    """Condition number 5, rank 4 > k = 2: the loss's floor, the s_j = 0 trap and
    LBFGS's line search used to stop them (residual 0.3 to 0.5 on 8 x 8; 1e-12)."""
    A = gdla.matrices.with_condition_number(4, 5.0, m=5, seed=1)
    result = svd(A, 2, method=method)
    assert result.converged, result.message
    assert float((result.S - torch.linalg.svdvals(A)[:2]).abs().max()) < 1e-12


def test_penalty_returns_the_best_iterate_it_measured() -> None:
    A = gdla.matrices.with_condition_number(5, 5.0, m=6, seed=1)
    result = svd(A, 2, method="penalty", max_iter=200)
    assert not result.converged and "best iterate" in result.message
    returned = _two_sided_residual(A, result.U, result.S, result.Vh)
    assert returned == pytest.approx(min(result.history), rel=1e-6)


# --- properties over shapes, batches, dtypes and spectra -------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    m = draw(st.integers(1, 8))
    n = draw(st.integers(1, 8))
    batch = draw(st.sampled_from([(), (2,), (2, 3)]))
    dtype = draw(st.sampled_from(DTYPES))
    size = min(m, n)
    kind = draw(st.sampled_from(["random", "repeated", "rank-deficient", "graded"]))
    values = draw(st.lists(st.floats(0.1, 10.0), min_size=size, max_size=size))
    s = torch.tensor(sorted(values, reverse=True), dtype=F64)
    if kind == "repeated":
        s = torch.full_like(s, s[0].item())
    elif kind == "rank-deficient":
        s[size // 2 :] = 0.0
    elif kind == "graded":
        s = 10.0 ** -torch.arange(size, dtype=F64)
    A = with_singular_values(
        s.expand(*batch, size), m, n, seed=draw(st.integers(0, 99)), dtype=dtype
    )
    k = draw(st.integers(1, size))
    return A, k


@settings(max_examples=20, deadline=None)
@given(problems())
def test_default_method_properties(problem: tuple[torch.Tensor, int]) -> None:
    A, k = problem
    result = svd(A, k)
    tol = tolerance(A.dtype)
    assert result.converged, result.message
    assert result.U.shape == (*A.shape[:-1], k)
    assert result.S.shape == (*A.shape[:-2], k)
    assert result.Vh.shape == (*A.shape[:-2], k, A.shape[-1])
    assert result.U.dtype == A.dtype and result.Vh.dtype == A.dtype
    assert result.S.dtype == A.real.dtype
    scale = float(torch.linalg.matrix_norm(A, 2).max())
    exact = torch.linalg.svdvals(A)[..., :k]
    assert float((result.S - exact).abs().max()) <= tol * scale
    assert bool((result.S >= 0).all())
    assert bool((result.S[..., :-1] >= result.S[..., 1:]).all())
    assert float(orthogonality_error(result.U).max()) <= tol
    assert float(orthogonality_error(result.Vh.mH).max()) <= tol
    assert_sign_convention(result.U)
    # The documented residual is what history records.
    r = residuals(A, result.U, result.S, result.Vh)
    assert float(r.max()) <= 10 * result.history[-1] + 10 * torch.finfo(A.dtype).eps


@settings(max_examples=20, deadline=None)
@given(problems(), st.sampled_from(ITERATIVE))
def test_methods_agree_with_the_oracle_on_well_separated_spectra(
    problem: tuple[torch.Tensor, int], method: str
) -> None:
    A, k = problem
    m, n = min(A.shape[-2], 5), min(A.shape[-1], 5)  # small: "riemannian" is slow on gaps
    size, k = min(m, n), min(k, m, n)
    s = 1 - 0.75 * torch.arange(size, dtype=F64) / size
    A = with_singular_values(s.expand(*A.shape[:-2], size), m, n, seed=1, dtype=A.dtype)
    rtol = 1e-10 if A.dtype in (F64, C128) else None
    result = svd(A, k, method=method, rtol=rtol)
    assert result.converged, result.message
    U, S, Vh = oracle(A, k)
    tol = tolerance(A.dtype)
    assert float((result.S - S).abs().max()) <= tol
    atol = 1e-8 if A.dtype in (F64, C128) else 1e-2
    assert float((result.U - U).abs().max()) <= atol
    assert float((result.Vh - Vh).abs().max()) <= atol


# --- batches, dtypes, devices, special inputs -------------------------------------------------


def test_one_loop_advances_a_large_batch() -> None:
    A = torch.randn(10_000, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    result = svd(A)
    assert result.converged and result.nit == 1
    assert float((result.S - torch.linalg.svdvals(A)).abs().max()) < 1e-12


def test_history_is_the_worst_matrix_of_the_batch() -> None:
    easy = decaying_spectrum(40, 30, rate=0.3, seed=1)
    hard = decaying_spectrum(40, 30, rate=0.95, seed=1)
    A = torch.stack([hard, easy])
    result = svd(A, 3, options={"oversampling": 2}, max_iter=6)
    assert not result.converged and result.nit == 6
    r = residuals(A, result.U, result.S, result.Vh)
    assert float(r[0]) > 1e3 * float(r[1])
    assert result.history[-1] == pytest.approx(float(r.max()), rel=1e-6)


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (0, 0), (2, 0, 3, 3), (3, 5, 0)])
def test_empty_input_follows_torch(shape: tuple[int, ...]) -> None:
    A = torch.zeros(shape, dtype=F64)
    result = svd(A)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    assert (result.U.shape, result.S.shape, result.Vh.shape) == (U.shape, S.shape, Vh.shape)
    assert result.converged and result.nit == 0


@pytest.mark.parametrize("method", ITERATIVE)
def test_zero_matrix(method: str) -> None:
    result = svd(torch.zeros(2, 4, 3, dtype=F64), method=method)
    assert result.converged
    assert float(result.S.abs().max()) == 0.0
    assert float(orthogonality_error(result.U).max()) < 1e-14


def test_wide_and_complex_input() -> None:
    A = torch.randn(3, 7, dtype=C128, generator=torch.Generator().manual_seed(2))
    result = svd(A)
    U, S, Vh = oracle(A, 3)
    assert torch.allclose(result.S, S, atol=1e-13)
    assert torch.allclose(result.U, U, atol=1e-12)
    assert torch.allclose(result.Vh, Vh, atol=1e-12)


def test_seeded_deterministic_and_global_rng_untouched() -> None:
    A = decaying_spectrum(30, 20, rate=0.8, seed=3)
    state = torch.random.get_rng_state()
    first = svd(A, 3, method="randomized", seed=7)
    second = svd(A, 3, method="randomized", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.U, second.U) and torch.equal(first.S, second.S)
    assert first.history == second.history
    other = svd(A, 3, method="randomized", seed=8)
    assert other.history != first.history


def test_input_needing_grad_gets_gradients_through_S_and_truncated_vectors() -> None:
    A = original_svd_matrices(F64)["M1"].requires_grad_()
    for method in ("subspace", "penalty"):
        result = svd(A, 2, method=method, max_iter=5)
        assert A.grad is None  # the call itself never touches A's gradient
        assert result.S.requires_grad and result.U.requires_grad
        result.S.sum().backward(retain_graph=True)
        expected = result.U.detach() @ result.Vh.detach()  # d(sum S)/dA = U V^H
        assert torch.allclose(A.grad, expected)
        A.grad = None
        result.U.sum().backward()  # k < min(m, n): the truncated SVD's formula
        assert A.grad is not None and bool(torch.isfinite(A.grad).all())
        A.grad = None


def test_works_inside_no_grad() -> None:
    A = original_svd_matrices(F64)["M4"]
    with torch.no_grad():
        result = svd(A, method="adam", max_iter=20, options={"monitor": "loss"})
    assert result.history[-1] < result.history[0]


def test_callback_and_max_iter_stop_with_converged_false() -> None:
    A = decaying_spectrum(100, 60, rate=0.99, seed=4)
    calls: list[tuple[int, float]] = []

    def stop_at_three(i: int, r: float) -> bool:
        calls.append((i, r))
        return i == 3

    stopped = svd(A, 2, callback=stop_at_three)
    assert not stopped.converged and stopped.nit == 3
    assert "callback" in stopped.message
    assert [r for _, r in calls] == stopped.history
    capped = svd(A, 2, max_iter=2, options={"oversampling": 0})
    assert not capped.converged and capped.nit == 2
    assert "not converged" in capped.message


# --- bad input --------------------------------------------------------------------------------

A3 = torch.eye(3, dtype=F64) + 0.1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: svd([[1.0]]), gdla.DtypeError),
        (lambda: svd(A3.long()), gdla.DtypeError),
        (lambda: svd(A3.bool()), gdla.DtypeError),
        (lambda: svd(A3.half()), gdla.DtypeError),
        (lambda: svd(torch.ones(3, dtype=F64)), gdla.ShapeError),
        (lambda: svd(A3 * float("nan")), gdla.NonFiniteError),
        (lambda: svd(A3 / 0), gdla.NonFiniteError),
        (lambda: svd(A3, 0), gdla.OptionError),
        (lambda: svd(A3, 4), gdla.OptionError),
        (lambda: svd(A3, 1.5), gdla.OptionError),
        (lambda: svd(A3, True), gdla.OptionError),
        (lambda: svd(torch.zeros(0, 3), 1), gdla.OptionError),
        (lambda: svd(A3, method="magic"), gdla.OptionError),
        (lambda: svd(A3, rtol=0.0), gdla.OptionError),
        (lambda: svd(A3, max_iter=0), gdla.OptionError),
        (lambda: svd(A3, max_iter=2.5), gdla.OptionError),
        (lambda: svd(A3, seed=-1), gdla.OptionError),
        (lambda: svd(A3, seed=1.5), gdla.OptionError),
        (lambda: svd(A3, options=[("oversampling", 2)]), gdla.OptionError),
        (lambda: svd(A3, options={"oversampling": -1}), gdla.OptionError),
        (lambda: svd(A3, options={"lr": 0.1}), gdla.OptionError),
        (lambda: svd(A3, method="riemannian", options={"step": -1.0}), gdla.OptionError),
        (lambda: svd(A3, method="penalty", options={"lr": 0.0}), gdla.OptionError),
        (lambda: svd(A3, method="penalty", options={"momentum": -0.5}), gdla.OptionError),
        (lambda: svd(A3, method="penalty", options={"step": 1.0}), gdla.OptionError),
        (lambda: svd(A3, method="adam", options={"no_such_option": 1}), gdla.OptionError),
        (lambda: svd(A3, method="sgd", options={"lr": -1.0}), gdla.OptionError),
    ],
)
def test_bad_input_raises(call: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^gdla\.svd: expected "):
        call()  # type: ignore[operator]
