"""`converged` means correct, and ordinary PyTorch habits work (issue 12).

Singular and inconsistent systems, the global RNG, optimiser defaults, the callback,
inference mode, every kind of input a user passes, materialized outputs and gradients.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gdla
from gdla.matrices import with_condition_number

F64, F32, C128 = torch.float64, torch.float32, torch.complex128

SOLVE_SQUARE = ("cg", "gd", "sgd", "adam", "lbfgs", "gmres-ir", None)
INVERSE_METHODS = ("newton-schulz", "gd", "sgd", "adam", "lbfgs", "original")
SVD_METHODS = gdla.svd.__globals__["METHODS"]
COMPLETE_METHODS = ("als", "gd", "sgd", "adam", "lbfgs")


def _backward_error(A: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> float:
    r = b - (A @ x.unsqueeze(-1)).squeeze(-1)
    scale = torch.linalg.matrix_norm(A)[..., None] * x.norm(dim=-1, keepdim=True) + b.norm(
        dim=-1, keepdim=True
    )
    return float((r.norm(dim=-1, keepdim=True) / scale).max())


# ---------------------------------------------------------------------------------------
# 1. converged=True only for a finite answer that meets the stopping rule
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", SOLVE_SQUARE)
def test_the_singular_diagonal_system_is_not_converged(method: str | None) -> None:
    """diag(2, 1, 0) x = 1 has no solution: CG used to report converged with |x| ~ 6e31."""
    A = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64))
    result = gdla.solve(A, torch.ones(3, dtype=F64), method=method, max_iter=2000)
    assert not result.converged, result.message
    assert bool(torch.isfinite(result.x).all())
    if method in ("cg", "gd", "gmres-ir", None):  # the evidence: growth, least squares, LU
        assert "singular" in result.message


def _exactly_singular() -> dict[str, tuple[torch.Tensor, torch.Tensor, bool]]:
    """Exactly singular systems: name -> (A, b, whether b is in the range of A)."""
    diagonal = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64))
    rank_one = torch.outer(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, -2.0, 0.5])).double()
    pair = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)
    return {
        "diag(2, 1, 0), b outside": (diagonal, torch.ones(3, dtype=F64), False),
        "diag(2, 1, 0), b inside": (diagonal, torch.tensor([1.0, 1.0, 0.0], dtype=F64), True),
        "zero A": (torch.zeros(3, 3, dtype=F64), torch.ones(3, dtype=F64), False),
        "zero A and b": (torch.zeros(3, 3, dtype=F64), torch.zeros(3, dtype=F64), True),
        "rank one, not Hermitian": (rank_one, torch.ones(3, dtype=F64), False),
        "batch [[1, 2], [2, 4]] and I": (
            torch.stack([pair, torch.eye(2, dtype=F64)]),
            torch.tensor([1.0, 0.0], dtype=F64),
            False,
        ),
    }


@pytest.mark.parametrize("dtype", [F64, F32, C128])
@pytest.mark.parametrize("method", [*SOLVE_SQUARE, "lsqr", "sketch"])
def test_no_method_returns_nan_on_an_exactly_singular_system(
    method: str | None, dtype: torch.dtype
) -> None:
    """Finite input, finite output: never NaN or infinity, whatever A's rank."""
    for name, (A, b, consistent) in _exactly_singular().items():
        result = gdla.solve(A.to(dtype), b.to(dtype), method=method, max_iter=300)
        assert bool(torch.isfinite(result.x).all()), (name, result.message)
        if not consistent and method not in ("lsqr", "sketch"):  # those: least squares
            assert not result.converged, (name, result.message)
        if method == "gmres-ir":  # every one of these A has a zero pivot in single precision
            assert "singular" in result.message, (name, result.message)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**20),
    n=st.integers(3, 12),
    deficiency=st.integers(1, 2),
    hermitian=st.booleans(),
    dtype=st.sampled_from([F64, F32]),
    batch=st.sampled_from([(), (2,)]),
)
def test_random_singular_systems_with_b_outside_the_range_never_converge(
    seed: int, n: int, deficiency: int, hermitian: bool, dtype: torch.dtype, batch: tuple[int, ...]
) -> None:
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(*batch, n, n - deficiency, generator=g, dtype=F64)
    A = (
        M @ M.mT
        if hermitian
        else M @ torch.randn(*batch, n - deficiency, n, generator=g, dtype=F64)
    )
    b = torch.randn(*batch, n, generator=g, dtype=F64)
    # b has a component outside range(A) of relative size >= 1e-3: no x solves Ax = b.
    Q = torch.linalg.qr(M, mode="complete").Q[..., n - deficiency :]
    outside = torch.linalg.vector_norm(Q.mT @ b.unsqueeze(-1), dim=(-2, -1)) / b.norm(dim=-1)
    if bool((outside < 1e-3).any()):
        return
    result = gdla.solve(A.to(dtype), b.to(dtype), method="cg")
    assert bool(torch.isfinite(result.x).all()) or "overflows" in result.message
    if result.converged:
        # Stored in floating point, A is singular only to working precision (its smallest
        # singular value is about eps ||A||, not 0), and CGLS may find the solution of the
        # matrix as stored: allowed only when x is that, to the backward error asked for,
        # and x is huge (||A|| ||x|| / ||b|| near the growth limit).  Seen once in
        # thousands of examples (float64, n = 12, growth 3.7e12).
        stored, rhs = A.to(dtype).to(F64), b.to(dtype).to(F64)
        eps = torch.finfo(dtype).eps
        growth = float((torch.linalg.matrix_norm(stored) * result.x.to(F64).norm(dim=-1)
                        / rhs.norm(dim=-1)).max())  # fmt: skip
        assert _backward_error(stored, rhs, result.x.to(F64)) <= 2 * gdla._iterate.default_rtol(
            dtype
        )
        assert growth >= 1e-5 / eps, (result.message, growth)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**20), n=st.integers(2, 10), cond=st.floats(1.0, 1e6))
def test_a_converged_solution_meets_the_stopping_rule(seed: int, n: int, cond: float) -> None:
    A = with_condition_number(n, cond, seed=seed)
    b = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    result = gdla.solve(A, b, method="cg")
    if result.converged:
        assert bool(torch.isfinite(result.x).all())
        assert _backward_error(A, b, result.x) <= gdla._iterate.default_rtol(F64)


def test_inverse_of_a_singular_matrix_is_not_converged() -> None:
    A = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64))
    for method in ("newton-schulz", "lbfgs"):
        result = gdla.inverse(A, method=method)
        assert not result.converged, result.message


# ---------------------------------------------------------------------------------------
# 3. no global state
# ---------------------------------------------------------------------------------------


def _every_call(dtype: torch.dtype = F64) -> list[tuple[str, Callable[[], gdla.Result]]]:
    """One small call of every method of every function."""
    A = with_condition_number(6, 3.0, seed=1).to(dtype)
    b = torch.ones(6, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    low_rank = torch.randn(8, 2, generator=g, dtype=F64) @ torch.randn(2, 6, generator=g, dtype=F64)
    low_rank = low_rank.to(dtype)
    mask = torch.rand(8, 6, generator=g) < 0.8
    calls: list[tuple[str, Callable[[], gdla.Result]]] = []
    for method in SOLVE_SQUARE:
        calls.append((f"solve {method}", lambda m=method: gdla.solve(A, b, method=m, max_iter=50)))
    for method in ("lsqr", "sketch"):
        calls.append(
            (f"solve {method}", lambda m=method: gdla.solve(low_rank, low_rank[:, 0], method=m))
        )
    for method in INVERSE_METHODS:
        calls.append((f"inverse {method}", lambda m=method: gdla.inverse(A, method=m, max_iter=50)))
    for method in SVD_METHODS:
        calls.append((f"svd {method}", lambda m=method: gdla.svd(A, 2, method=m, max_iter=30)))
    for method in COMPLETE_METHODS:
        calls.append(
            (
                f"complete {method}",
                lambda m=method: gdla.complete(low_rank, mask, 2, method=m, max_iter=30),
            )
        )
    return calls


def _tensors(result: gdla.Result) -> list[torch.Tensor]:
    return [v for v in vars(result).values() if isinstance(v, torch.Tensor)]


def test_no_method_touches_the_global_rng_and_results_depend_only_on_seed() -> None:
    for name, call in _every_call():
        torch.manual_seed(1)
        state = torch.random.get_rng_state()
        first = _tensors(call())
        assert torch.equal(torch.random.get_rng_state(), state), f"{name} used the global RNG"
        torch.manual_seed(2)
        second = _tensors(call())
        for x, y in zip(first, second, strict=True):
            assert torch.equal(x, y), f"{name} depends on the global seed"


def test_results_are_bitwise_the_same_from_several_threads_at_once() -> None:
    A = with_condition_number(30, 10.0, seed=4)
    calls = {
        "svd orthogonal": lambda: gdla.svd(A, 2, method="orthogonal", max_iter=40).U,
        "svd lanczos": lambda: gdla.svd(A, 3).S,
        "inverse": lambda: gdla.inverse(A).X,
    }
    expected = {name: call() for name, call in calls.items()}
    found: dict[str, list[torch.Tensor]] = {name: [] for name in calls}

    def run(name: str) -> None:
        found[name].append(calls[name]())

    threads = [threading.Thread(target=run, args=(name,)) for name in calls for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, results in found.items():
        assert len(results) == 2
        assert all(torch.equal(r, expected[name]) for r in results), name


# ---------------------------------------------------------------------------------------
# 4. optimisers a user can rely on
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "method"),
    [("solve", "lbfgs"), ("inverse", "lbfgs"), ("solve", "adam"), ("inverse", "adam")],
)
def test_optimiser_defaults_converge_on_easy_problems(function: str, method: str) -> None:
    for seed in range(3):
        A = with_condition_number(12, 5.0, seed=seed)
        if function == "solve":
            b = torch.randn(12, generator=torch.Generator().manual_seed(seed), dtype=F64)
            result: gdla.Result = gdla.solve(A, b, method=method)
        else:
            result = gdla.inverse(A, method=method)
        assert result.converged, (seed, result.message)


def test_an_optimiser_returns_its_best_iterate() -> None:
    A = with_condition_number(8, 5.0, seed=0)
    # a large rate makes Adam oscillate: the last iterate is not the best
    result = gdla.inverse(A, method="adam", options={"lr": 0.3}, max_iter=60)
    assert not result.converged
    error = gdla.metrics.inverse_error(A, result.X)
    returned = torch.linalg.matrix_norm(result.X @ A - torch.eye(8, dtype=F64)) / (
        torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(result.X) + 8**0.5
    )
    assert float(returned) == pytest.approx(min(result.history), rel=1e-6)
    assert min(result.history) < result.history[-1]
    assert "best iterate" in result.message
    assert float(error) >= 0


def test_a_callback_stop_does_not_blame_A() -> None:
    A = with_condition_number(8, 5.0, seed=0)
    for result in (
        gdla.inverse(A, method="adam", callback=lambda k, r: k >= 3),
        gdla.solve(A, torch.ones(8, dtype=F64), method="adam", callback=lambda k, r: k >= 3),
    ):
        assert not result.converged
        assert "stopped by callback" in result.message
        assert "singular" not in result.message and "conditioned" not in result.message


# ---------------------------------------------------------------------------------------
# 5. the callback and the iteration count
# ---------------------------------------------------------------------------------------


def test_the_callback_runs_after_every_iteration_including_the_converging_one() -> None:
    for name, call in [
        (
            "solve",
            lambda cb: gdla.solve(
                with_condition_number(6, 3.0, seed=0), torch.ones(6, dtype=F64), callback=cb
            ),
        ),
        ("inverse", lambda cb: gdla.inverse(with_condition_number(6, 3.0, seed=0), callback=cb)),
        ("svd", lambda cb: gdla.svd(with_condition_number(6, 3.0, seed=0), 2, callback=cb)),
    ]:
        seen: list[tuple[int, float]] = []
        result = call(lambda k, r, seen=seen: seen.append((k, r)))
        assert result.converged, name
        assert [k for k, _ in seen] == list(range(1, result.nit + 1)), name
        assert [r for _, r in seen] == result.history, name


def test_a_cg_to_cgls_fallback_counts_every_iteration() -> None:
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=F64)).Q
    values = torch.linspace(1, 2, 30, dtype=F64)
    values[-1] = -1.0  # indefinite: CG meets p^H A p <= 0 after some iterations
    A = (Q * values) @ Q.mT
    seen: list[int] = []
    result = gdla.solve(
        A, torch.ones(30, dtype=F64), method="cg", callback=lambda k, r: seen.append(k)
    )
    assert result.converged, result.message
    assert "after" in result.message and "CG iterations" in result.message
    cg_iterations = int(result.message.split("after ")[1].split(" CG")[0])
    assert cg_iterations >= 1
    assert result.nit == len(result.history) == len(seen)
    assert seen == list(range(1, result.nit + 1))


# ---------------------------------------------------------------------------------------
# 6. inference mode and inference tensors
# ---------------------------------------------------------------------------------------


def test_every_method_works_under_inference_mode() -> None:
    for name, call in _every_call():
        with torch.inference_mode():
            result = call()
        assert all(torch.isfinite(t).all() for t in _tensors(result)), name


def test_every_method_works_with_inference_tensors() -> None:
    with torch.inference_mode():
        A = with_condition_number(6, 3.0, seed=1)
        b = torch.ones(6, dtype=F64)
        M = torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert A.is_inference()
    for method in SOLVE_SQUARE:
        gdla.solve(A, b, method=method, max_iter=20)
    for method in INVERSE_METHODS:
        gdla.inverse(A, method=method, max_iter=20)
    for method in SVD_METHODS:
        gdla.svd(A, 2, method=method, max_iter=20)
    for method in COMPLETE_METHODS:
        gdla.complete(M, torch.ones(6, 6, dtype=torch.bool), 2, method=method, max_iter=20)


# ---------------------------------------------------------------------------------------
# 7. every input a user passes; materialized outputs
# ---------------------------------------------------------------------------------------


def test_numpy_scalars_are_accepted_wherever_python_numbers_are() -> None:
    A = with_condition_number(6, 3.0, seed=1)
    b = torch.ones(6, dtype=F64)
    mask = torch.ones(6, 6, dtype=torch.bool)
    assert gdla.solve(A, b, max_iter=np.int64(50), rtol=np.float32(1e-6)).converged
    assert gdla.inverse(A, max_iter=np.int32(50), rtol=np.float64(1e-8)).converged
    assert gdla.svd(A, np.int64(2), max_iter=np.int64(100), seed=np.uint64(3)).converged
    result = gdla.complete(A, mask, np.int64(6), rtol=np.float32(1e-6), seed=np.int16(1),
                           options={"reg": np.float32(0.0)})  # fmt: skip
    assert result.converged


def test_seeds_up_to_64_bits_are_accepted() -> None:
    A = with_condition_number(6, 3.0, seed=1)
    assert gdla.svd(A, 2, seed=2**64 - 1).converged
    with pytest.raises(gdla.OptionError, match="seed"):
        gdla.svd(A, 2, seed=2**64)


def test_every_returned_tensor_is_materialized() -> None:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 4, generator=g, dtype=C128).conj()  # a lazy conjugate input
    S = (A.mH @ A).conj()
    b = torch.ones(4, dtype=C128)
    for k in (1, 4):
        for method in SVD_METHODS:
            result = gdla.svd(A, k, method=method, max_iter=20)
            for t in _tensors(result):
                assert not t.is_conj() and not t.is_neg(), (method, k)
                t.numpy()
    for result in (
        gdla.solve(S, b),
        gdla.inverse(S),
        gdla.complete(A, torch.ones(6, 4, dtype=torch.bool), 2),
    ):
        for t in _tensors(result):
            assert not t.is_conj() and not t.is_neg()
            t.numpy()


# ---------------------------------------------------------------------------------------
# 8. gradients by implicit differentiation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F64, C128])
def test_gradients_of_solve_and_inverse_pass_gradcheck(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 4, 4, generator=g, dtype=dtype) + 4 * torch.eye(4, dtype=dtype)
    b = torch.randn(2, 4, generator=g, dtype=dtype)
    B = torch.randn(4, 2, generator=g, dtype=dtype)  # broadcast against the batch of A
    A.requires_grad_()
    b.requires_grad_()
    B.requires_grad_()
    assert torch.autograd.gradcheck(lambda A, b: gdla.solve(A, b).x, (A, b))
    assert torch.autograd.gradcheck(lambda A, B: gdla.solve(A, B).x, (A, B))
    assert torch.autograd.gradcheck(lambda A: gdla.inverse(A).X, (A,))
    H = (A.detach() @ A.detach().mH).requires_grad_()  # Hermitian positive definite: CG
    assert torch.autograd.gradcheck(lambda H, b: gdla.solve(H, b, method="cg").x, (H, b))


@pytest.mark.parametrize("dtype", [F64, C128])
def test_gradients_of_singular_values_pass_gradcheck(dtype: torch.dtype) -> None:
    A = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    A.requires_grad_()
    assert torch.autograd.gradcheck(lambda A: gdla.svd(A, 2).S, (A,))


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 4)])
def test_gradients_of_singular_vectors_pass_gradcheck(
    dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    """k = min(m, n), distinct singular values: U and Vh too, in gdla's sign convention."""
    A = torch.randn(*shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    A.requires_grad_()
    for name in ("U", "S", "Vh"):
        assert torch.autograd.gradcheck(lambda A, name=name: getattr(gdla.svd(A), name), (A,))


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize(("shape", "k"), [((5, 3), 2), ((3, 5), 1), ((2, 4, 4), 2)])
def test_gradients_of_truncated_singular_vectors_pass_gradcheck(
    dtype: torch.dtype, shape: tuple[int, ...], k: int
) -> None:
    """k < min(m, n): the adjoint includes the part of A that the k triplets leave out."""
    A = torch.randn(*shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    A.requires_grad_()
    assert torch.autograd.gradcheck(lambda A: gdla.svd(A, k).U, (A,))
    assert torch.autograd.gradcheck(lambda A: gdla.svd(A, k).Vh, (A,))


def test_truncated_vector_gradients_match_torch_linalg_svd() -> None:
    """A loss of the leading vectors that ignores their signs: torch's full SVD agrees."""
    A = torch.randn(7, 5, generator=torch.Generator().manual_seed(4), dtype=F64)
    W = torch.randn(7, 7, generator=torch.Generator().manual_seed(5), dtype=F64)

    def loss(U: torch.Tensor, Vh: torch.Tensor) -> torch.Tensor:
        return (U.mT @ W @ U).square().sum() + (Vh @ A.mT @ W @ A @ Vh.mT).diagonal().sum()

    ours = A.clone().requires_grad_()
    result = gdla.svd(ours, 2)
    loss(result.U, result.Vh).backward()
    theirs = A.clone().requires_grad_()
    U, _, Vh = torch.linalg.svd(theirs, full_matrices=False)
    loss(U[:, :2], Vh[:2]).backward()
    assert ours.grad is not None and theirs.grad is not None
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-9, atol=1e-11)


def test_unsupported_gradients_raise_instead_of_detaching() -> None:
    A = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    repeated = gdla.matrices.with_singular_values(
        torch.tensor([3.0, 2.0, 2.0, 1.0], dtype=F64), 6, 4, seed=0
    ).requires_grad_()
    for k in (2, 3):  # sigma_2 = sigma_3: one left out, then both kept
        with pytest.raises(RuntimeError, match="distinct, nonzero singular values"):
            gdla.svd(repeated, k).U.sum().backward()
    gdla.svd(repeated, 2).S.sum().backward()  # S alone still has a gradient
    assert repeated.grad is not None
    mask = torch.ones(5, 3, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="not differentiable"):
        gdla.complete(A, mask, 1).X.sum().backward()
    with pytest.raises(RuntimeError, match="rectangular"):
        gdla.solve(A, torch.ones(5, dtype=F64), method="lsqr").x.sum().backward()


def test_a_result_without_grad_stays_a_plain_tensor() -> None:
    A = with_condition_number(4, 2.0, seed=0)
    assert not gdla.solve(A, torch.ones(4, dtype=F64)).x.requires_grad
    with torch.no_grad():
        assert not gdla.inverse(A.clone().requires_grad_()).X.requires_grad


def test_gmres_ir_is_not_converged_when_x_grows_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On the rank-one system of _exactly_singular, complex128, one CI run's GMRES-IR
    # returned an x of size 1e15 with normwise backward error 2e-17 and said converged.
    from gdla import _refine
    from gdla._iterate import Outcome

    A, b, _ = _exactly_singular()["rank one, not Hermitian"]
    huge = torch.full((3, 1), 1e15, dtype=F64)
    monkeypatch.setattr(
        _refine, "gmres_ir", lambda *args: (huge, Outcome(5, True, "converged: residual 2e-17"))
    )
    result = gdla.solve(A, b, method="gmres-ir")
    assert not result.converged
    assert "singular" in result.message and result.message.startswith("converged: residual")
