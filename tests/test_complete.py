"""Tests of :func:`gdla.complete`: recovery of low-rank matrices from some entries."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gdla
from gdla import complete
from gdla._iterate import default_rtol
from gdla.matrices import with_singular_values

F64, F32, C64, C128 = torch.float64, torch.float32, torch.complex64, torch.complex128
DTYPES = [F32, F64, C64, C128]


def low_rank(
    m: int,
    n: int,
    rank: int,
    *,
    batch: tuple[int, ...] = (),
    dtype: torch.dtype = F64,
    seed: int = 0,
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(*batch, m, rank, generator=g, dtype=dtype)
    return L @ torch.randn(*batch, rank, n, generator=g, dtype=dtype)


def random_mask(*shape: int, fraction: float = 0.5, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < fraction


def relative_error(X: torch.Tensor, Y: torch.Tensor) -> float:
    return float((torch.linalg.matrix_norm(X - Y) / torch.linalg.matrix_norm(Y)).max())


def relative_gradient(
    M: torch.Tensor, mask: torch.Tensor, L: torch.Tensor, R: torch.Tensor, reg: float
) -> float:
    """The documented residual, written out: ‖∇f‖ / (‖P(M)‖ ‖(L, R)‖), max over the batch."""
    E = torch.where(mask, L @ R.mH - M, 0)
    gL, gR = E @ R + reg * L, E.mH @ L + reg * R
    norm = lambda X: torch.linalg.matrix_norm(X).square()  # noqa: E731
    grad = (norm(gL) + norm(gR)).sqrt()
    scale = torch.linalg.matrix_norm(torch.where(mask, M, 0)) * (norm(L) + norm(R)).sqrt()
    return float((grad / scale).max())


# --- alternating least squares -----------------------------------------------------------------


def test_als_recovers_a_rank_2_matrix_from_half_its_entries() -> None:
    truth = low_rank(60, 40, 2)
    mask = random_mask(60, 40)
    result = complete(truth, mask, 2)
    assert result.method == "als"
    assert result.converged, result.message
    assert relative_error(result.X, truth) < 1e-6
    assert (result.X.shape, result.L.shape, result.R.shape) == ((60, 40), (60, 2), (40, 2))
    assert torch.allclose(result.X, result.L @ result.R.mH)


def test_als_in_complex_arithmetic() -> None:
    truth = low_rank(50, 30, 3, dtype=C128, seed=2)
    mask = random_mask(50, 30, fraction=0.6, seed=2)
    result = complete(truth, mask, 3)
    assert result.converged, result.message
    assert result.X.dtype == C128
    assert relative_error(result.X, truth) < 1e-8


def test_the_stopping_rule_is_the_documented_relative_gradient() -> None:
    truth = low_rank(30, 20, 2, seed=3)
    noisy = truth + 1e-3 * low_rank(30, 20, 20, seed=4)  # not of rank 2: residual fit stays > 0
    mask = random_mask(30, 20, fraction=0.7, seed=3)
    reg = 1.0
    result = complete(noisy, mask, 2, options={"reg": reg})
    assert result.converged, result.message
    r = relative_gradient(noisy, mask, result.L, result.R, reg)
    assert r <= default_rtol(F64) * 10
    assert result.history[-1] == pytest.approx(r, rel=0.5, abs=1e-15)


def test_unobserved_entries_are_ignored_even_nan() -> None:
    truth = low_rank(20, 15, 2, seed=5)
    mask = random_mask(20, 15, fraction=0.6, seed=5)
    with_nan = truth.masked_fill(~mask, float("nan"))
    with_junk = truth.masked_fill(~mask, 1e30)
    a, b = complete(with_nan, mask, 2), complete(with_junk, mask, 2)
    assert torch.equal(a.X, b.X)
    assert bool(torch.isfinite(a.X).all())


def test_eckart_young_when_every_entry_is_seen() -> None:
    s = torch.tensor([5.0, 4.0, 3.0, 1.0, 0.5, 0.2], dtype=F64)
    M = with_singular_values(s, 12, 6, seed=6)
    result = complete(M, torch.ones(12, 6, dtype=torch.bool), 3, options={"reg": 0.0})
    assert result.converged, result.message
    best = float(s[3:].square().sum().sqrt())  # ‖M − M_3‖_F, the truncated SVD's error
    assert float(torch.linalg.matrix_norm(M - result.X)) == pytest.approx(best, rel=1e-12)
    U, S, Vh = torch.linalg.svd(M)
    truncated = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    assert relative_error(result.X, truncated) < 1e-10
    agreeing = gdla.svd(M, 3)
    assert relative_error(result.X, agreeing.U @ torch.diag(agreeing.S) @ agreeing.Vh) < 1e-10


def test_regularisation_shrinks_the_singular_values() -> None:
    # Fully observed, the regularised minimum soft-thresholds the singular values by reg.
    s = torch.tensor([5.0, 4.0, 3.0, 1.0], dtype=F64)
    M = with_singular_values(s, 8, 4, seed=7)
    result = complete(M, torch.ones(8, 4, dtype=torch.bool), 2, options={"reg": 0.5})
    assert result.converged, result.message
    assert torch.allclose(torch.linalg.svdvals(result.X)[:2], s[:2] - 0.5, atol=1e-10)


def test_batch_with_a_shared_mask() -> None:
    truth = low_rank(40, 30, 2, batch=(3,), seed=8)
    mask = random_mask(40, 30, fraction=0.5, seed=8)
    result = complete(truth, mask, 2)
    assert result.converged, result.message
    assert result.X.shape == (3, 40, 30)
    assert relative_error(result.X, truth) < 1e-8
    # One loop: the batch needs as many iterations as its slowest matrix.
    alone = [complete(truth[i], mask, 2).nit for i in range(3)]
    assert result.nit >= max(alone) - 1


def test_random_start_also_converges() -> None:
    truth = low_rank(30, 25, 2, seed=9)
    mask = random_mask(30, 25, fraction=0.6, seed=9)
    result = complete(truth, mask, 2, options={"init": "random"})
    assert result.converged, result.message
    assert relative_error(result.X, truth) < 1e-8


def test_float32() -> None:
    truth = low_rank(40, 30, 2, dtype=F32, seed=10)
    mask = random_mask(40, 30, seed=10)
    result = complete(truth, mask, 2)
    assert result.converged and result.X.dtype == F32
    assert relative_error(result.X, truth) < 1e-4


# --- the other methods -----------------------------------------------------------------------


def test_gradient_descent_with_backtracking() -> None:
    truth = low_rank(30, 20, 2, seed=11)
    mask = random_mask(30, 20, fraction=0.6, seed=11)
    result = complete(truth, mask, 2, method="gd", rtol=1e-10)
    assert result.converged, result.message
    assert relative_error(result.X, truth) < 1e-8
    # The line search makes f decrease monotonically; the gradient history trends down.
    assert result.history[-1] < 1e-6 * result.history[0]


def test_gradient_descent_is_scale_invariant() -> None:
    truth = low_rank(20, 15, 2, seed=12)
    mask = random_mask(20, 15, fraction=0.7, seed=12)
    small = complete(truth, mask, 2, method="gd", max_iter=30)
    large = complete(1e8 * truth, mask, 2, method="gd", max_iter=30)
    assert small.history == pytest.approx(large.history, rel=1e-6)


def test_lbfgs_converges() -> None:
    truth = low_rank(30, 20, 2, seed=13)
    mask = random_mask(30, 20, fraction=0.6, seed=13)
    # torch's strong-Wolfe line search gives up on steps below ~1e-9 (an absolute
    # tolerance), so LBFGS stalls a little above 1e-10 here: ask for 1e-8.
    result = complete(truth, mask, 2, method="lbfgs", rtol=1e-8)
    assert result.converged, result.message
    assert relative_error(result.X, truth) < 1e-6


@pytest.mark.parametrize(("method", "options"), [("sgd", {"lr": 0.2}), ("adam", {"lr": 1e-2})])
def test_first_order_optimisers_make_progress(method: str, options: dict[str, float]) -> None:
    truth = low_rank(30, 20, 2, seed=14)
    mask = random_mask(30, 20, fraction=0.6, seed=14)
    result = complete(
        truth, mask, 2, method=method, max_iter=150, options={**options, "init": "random"}
    )
    assert result.method == method and len(result.history) == result.nit
    assert result.history[-1] < 0.1 * result.history[0]


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    m=st.integers(1, 7),
    n=st.integers(1, 7),
    batch=st.sampled_from([(), (2,)]),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_fully_observed_exact_rank_is_reproduced(
    m: int, n: int, batch: tuple[int, ...], dtype: torch.dtype, data: st.DataObject
) -> None:
    rank = data.draw(st.integers(1, min(m, n)))
    seed = data.draw(st.integers(0, 99))
    truth = low_rank(m, n, rank, batch=batch, dtype=dtype, seed=seed)
    result = complete(truth, torch.ones(m, n, dtype=torch.bool), rank)
    assert result.converged, result.message
    assert result.X.shape == truth.shape and result.X.dtype == dtype
    assert result.L.shape == (*batch, m, rank) and result.R.shape == (*batch, n, rank)
    tol = 1e-8 if dtype in (F64, C128) else 1e-3
    assert relative_error(result.X, truth) < tol


# --- special inputs -----------------------------------------------------------------------------


def test_empty_inputs() -> None:
    result = complete(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool), 2)
    assert result.converged and result.nit == 0
    assert (result.X.shape, result.L.shape, result.R.shape) == ((0, 4), (0, 2), (4, 2))
    batch = complete(torch.zeros(0, 3, 3), torch.ones(3, 3, dtype=torch.bool), 2)
    assert batch.X.shape == (0, 3, 3) and batch.L.shape == (0, 3, 2)


def test_nothing_observed_gives_zero() -> None:
    result = complete(torch.ones(4, 3, dtype=F64), torch.zeros(4, 3, dtype=torch.bool), 1)
    assert result.converged
    assert float(result.X.abs().max()) == 0.0


def test_seeded_deterministic_and_global_rng_untouched() -> None:
    truth = low_rank(20, 10, 2, seed=15)
    mask = random_mask(20, 10, seed=15)
    state = torch.random.get_rng_state()
    a = complete(truth, mask, 2, options={"init": "random"}, seed=3)
    b = complete(truth, mask, 2, options={"init": "random"}, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.X, b.X) and a.history == b.history


def test_callback_stops_the_iteration() -> None:
    truth = low_rank(20, 10, 2, seed=16)
    mask = random_mask(20, 10, seed=16)
    result = complete(truth, mask, 2, method="gd", callback=lambda i, r: i == 4)
    assert not result.converged and result.nit == 4 and "callback" in result.message


# --- bad input --------------------------------------------------------------------------------

M3 = torch.eye(3, dtype=F64) + 0.1
ALL = torch.ones(3, 3, dtype=torch.bool)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: complete([[1.0]], ALL, 1), gdla.DtypeError),
        (lambda: complete(M3.long(), ALL, 1), gdla.DtypeError),
        (lambda: complete(M3.bool(), ALL, 1), gdla.DtypeError),
        (lambda: complete(M3, ALL.double(), 1), gdla.DtypeError),
        (lambda: complete(M3, [[True] * 3] * 3, 1), gdla.DtypeError),
        (lambda: complete(torch.ones(3, dtype=F64), ALL[0], 1), gdla.ShapeError),
        (lambda: complete(M3, ALL[:2], 1), gdla.ShapeError),
        (lambda: complete(M3, torch.ones(2, 3, 3, dtype=torch.bool), 1), gdla.ShapeError),
        (lambda: complete(M3 * float("nan"), ALL, 1), gdla.NonFiniteError),
        (lambda: complete(M3 / 0, ALL, 1), gdla.NonFiniteError),
        (lambda: complete(M3, ALL, 0), gdla.OptionError),
        (lambda: complete(M3, ALL, 4), gdla.OptionError),
        (lambda: complete(M3, ALL, 1.0), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, method="magic"), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, rtol=-1.0), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, max_iter=0), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, seed=-3), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, options={"reg": -1.0}), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, options={"init": "zeros"}), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, options={"lr": 0.1}), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, options="reg"), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, method="adam", options={"lr": -1.0}), gdla.OptionError),
        (lambda: complete(M3, ALL, 1, method="sgd", options={"reg": "big"}), gdla.OptionError),
    ],
)
def test_bad_input_raises(call: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^gdla\.complete: expected "):
        call()  # type: ignore[operator]
