"""``group=``: svd and solve with A split by rows over two processes, against one process.

One ``torchrun`` launch (``python -m torch.distributed.run --standalone
--nproc-per-node 2``, gloo over loopback) runs :data:`WORKER` on two processes: each
builds the same seeded matrices, keeps its own block of rows (uneven blocks, one of
them sparse), calls ``gdla.svd`` and ``gdla.solve`` with ``group=``, then provokes
bad input on one rank or both, and saves what it got.  This process compares the
answers with the one-process answers to rounding and checks that every bad input
raised a clear error on both ranks (a hang would end the launch by its timeout).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import gdla
from conftest import WORKER_EXIT, run_two_ranks
from gdla.bench_svd import two_sided_residual

WORKER = (
    r'''
import os
import sys

import torch
import torch.distributed as dist

import gdla
from gdla.lsa import row_block

dist.init_process_group("gloo")
group = dist.group.WORLD
rank = dist.get_rank()
out: dict = {}


def rows(A, split=35):
    """Rank 0 holds the first `split` rows, rank 1 the rest (uneven blocks)."""
    return A[:split] if rank == 0 else A[split:]


def caught(call):
    try:
        call()
    except gdla.GdlaInputError as error:
        return type(error).__name__, str(error)
    return None, "no error"


generator = torch.Generator().manual_seed(7)
A = gdla.matrices.decaying_spectrum(60, 20, rate=0.8, seed=3)
out["svd"] = gdla.svd(rows(A), 4, group=group)
out["svd_empty_rank"] = gdla.svd(rows(A, 60), 4, group=group)  # rank 1 holds no rows
graded = gdla.matrices.decaying_spectrum(60, 20, rate=0.1, seed=5)  # sigma_1 / sigma_4 = 1e3
out["svd_graded"] = gdla.svd(rows(graded), 4, group=group)
C = torch.randn(50, 12, dtype=torch.complex128, generator=generator)
out["svd_complex"] = gdla.svd(rows(C), 3, group=group)
mask = torch.rand(80, 30, generator=generator) < 0.2
Z = (torch.randn(80, 30, dtype=torch.float64, generator=generator) * mask).to_sparse()
out["svd_sparse"] = gdla.svd(row_block(Z, rank, 2), 5, group=group)
T = gdla.matrices.with_condition_number(10, 10.0, m=60, seed=4)
b = torch.linspace(-1.0, 1.0, 60, dtype=torch.float64)
out["solve"] = gdla.solve(rows(T), rows(b), group=group)
out["solve_block"] = gdla.solve(rows(T), rows(torch.stack([b, b.square()], -1)), group=group)
stops = lambda i, r: rank == 0 and i == 3  # True on rank 0 only: both ranks must stop
out["callback_nit"] = gdla.svd(rows(A), 4, method="riemannian", group=group, callback=stops).nit

bad = {
    "different n": lambda: gdla.svd(torch.ones(5, 6 + rank, dtype=torch.float64), 2, group=group),
    "different dtype": lambda: gdla.svd(
        torch.ones(5, 6, dtype=torch.float64 if rank == 0 else torch.float32), 2, group=group),
    "different k": lambda: gdla.svd(rows(A), 3 + rank, group=group),
    "NaN on rank 1": lambda: gdla.svd(
        rows(A) * (float("nan") if rank == 1 else 1.0), 2, group=group),
    "b's rows on rank 0": lambda: gdla.solve(rows(T), b[:3] if rank == 0 else rows(b), group=group),
    "not a group": lambda: gdla.svd(rows(A), 2, group="world"),
    # fails inside the iteration on G, on rank 1 only (no product-based method)
    "a method on rank 1 that needs entries": lambda: gdla.svd(
        rows(A), 2, method="penalty" if rank == 1 else "lanczos", group=group),
}
out["bad"] = {name: caught(call) for name, call in bad.items()}
out["rank"] = rank
torch.save(out, f"{sys.argv[1]}/rank{rank}.pt")
'''
    + WORKER_EXIT
)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two ranks saved."""
    return run_two_ranks(tmp_path_factory.mktemp("distributed"), WORKER)


def _aligned(X: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``X`` with each column multiplied by the phase that best matches ``reference``."""
    inner = (reference.conj() * X).sum(dim=0)
    phase = torch.sgn(inner)
    return X * torch.where(phase == 0, torch.ones_like(phase), phase).conj()


def _check_svd(parts: list[gdla.SVDResult], A: torch.Tensor, k: int) -> None:
    single = gdla.svd(A, k)
    U = torch.cat([part.U for part in parts])
    for part in parts:  # S and Vh replicated, U split by rows
        assert part.converged, part.message
        assert torch.equal(part.S, parts[0].S) and torch.equal(part.Vh, parts[0].Vh)
    sigma = single.S[0]
    assert torch.allclose(parts[0].S, single.S, rtol=0, atol=1e-12 * sigma)
    V, V1 = parts[0].Vh.mH, single.Vh.mH
    assert torch.allclose(_aligned(V, V1), V1, rtol=0, atol=1e-9)
    assert torch.allclose(_aligned(U, single.U), single.U, rtol=0, atol=1e-9)
    # The sign convention is applied over the whole U, so even the signs agree.
    assert torch.allclose(V, V1, rtol=0, atol=1e-9)
    assert torch.allclose(U, single.U, rtol=0, atol=1e-9)


def test_svd_rows_match_one_process(ranks: list[dict[str, Any]]) -> None:
    A = gdla.matrices.decaying_spectrum(60, 20, rate=0.8, seed=3)
    parts = [r["svd"] for r in ranks]
    assert [p.U.shape[0] for p in parts] == [35, 25]
    _check_svd(parts, A, 4)


def test_a_rank_without_rows_takes_part(ranks: list[dict[str, Any]]) -> None:
    A = gdla.matrices.decaying_spectrum(60, 20, rate=0.8, seed=3)
    parts = [r["svd_empty_rank"] for r in ranks]
    assert [p.U.shape[0] for p in parts] == [60, 0]
    _check_svd(parts, A, 4)


def test_the_squared_spectrum_costs_what_the_docstring_says(ranks: list[dict[str, Any]]) -> None:
    """Through A^H A, the relative residual of the triplets is about eps sigma_1 / sigma_k
    (within rtol = 100 eps of G's residual), and sigma_i^2 is found to about eps sigma_1^2."""
    A = gdla.matrices.decaying_spectrum(60, 20, rate=0.1, seed=5)
    parts = [r["svd_graded"] for r in ranks]
    U, S, V = torch.cat([p.U for p in parts]), parts[0].S, parts[0].Vh.mH
    eps = torch.finfo(torch.float64).eps
    exact = torch.linalg.svdvals(A)[:4]
    condition = float(exact[0] / exact[-1])  # 1e3
    residual = two_sided_residual(A, U, S, V)
    assert residual <= 100 * eps * condition, residual / eps
    assert bool(((S - exact).abs() <= eps * exact[0] ** 2 / exact).all())


def test_complex_and_sparse_blocks_match_one_process(ranks: list[dict[str, Any]]) -> None:
    generator = torch.Generator().manual_seed(7)
    C = torch.randn(50, 12, dtype=torch.complex128, generator=generator)
    _check_svd([r["svd_complex"] for r in ranks], C, 3)
    mask = torch.rand(80, 30, generator=generator) < 0.2
    Z = torch.randn(80, 30, dtype=torch.float64, generator=generator) * mask
    _check_svd([r["svd_sparse"] for r in ranks], Z, 5)


def test_solve_is_least_squares_and_replicated(ranks: list[dict[str, Any]]) -> None:
    T = gdla.matrices.with_condition_number(10, 10.0, m=60, seed=4)
    b = torch.linspace(-1.0, 1.0, 60, dtype=torch.float64)
    B = torch.stack([b, b.square()], -1)
    for key, rhs in (("solve", b), ("solve_block", B)):
        reference = torch.linalg.lstsq(T, rhs.reshape(60, -1)).solution.reshape(
            ranks[0][key].x.shape
        )
        for r in ranks:
            assert r[key].converged, r[key].message
            assert torch.equal(r[key].x, ranks[0][key].x)
        assert torch.allclose(ranks[0][key].x, reference, rtol=1e-9, atol=1e-12)


def test_a_callback_stopping_one_rank_stops_both(ranks: list[dict[str, Any]]) -> None:
    assert ranks[0]["callback_nit"] == ranks[1]["callback_nit"] == 3


@pytest.mark.parametrize(
    "case",
    ["different n", "different dtype", "different k", "NaN on rank 1", "b's rows on rank 0",
     "not a group", "a method on rank 1 that needs entries"],
)  # fmt: skip
def test_bad_input_is_a_clear_error_on_both_ranks(ranks: list[dict[str, Any]], case: str) -> None:
    for r in ranks:
        kind, message = r["bad"][case]
        assert kind is not None, f"rank {r['rank']}: {case}: {message}"
        assert message.startswith("gdla.s"), message
    if case == "NaN on rank 1":
        assert ranks[1]["bad"][case][0] == "NonFiniteError"
        assert "rank 1" in ranks[0]["bad"][case][1]
    if case == "a method on rank 1 that needs entries":
        assert ranks[1]["bad"][case][0] == "OptionError"
        assert "rank 1" in ranks[0]["bad"][case][1]


def test_the_collectives_do_nothing_without_a_group() -> None:
    """The helpers of gdla._comm are no-ops for group=None, so one code path serves both."""
    from gdla import _comm

    t = torch.arange(3.0)
    assert _comm.all_reduce_sum(t, None) is t and _comm.all_reduce_max(t, None) is t
    assert _comm.broadcast(t, None) is t and torch.equal(t, torch.arange(3.0))
    assert (_comm.rank(None), _comm.world_size(None), _comm.all_gather_counts(5, None)) == (
        0,
        1,
        [5],
    )
    assert _comm.check_row_blocks("gdla.svd", "A", (7, 3), torch.float64, None, k=2) == (0, 7)
    with pytest.raises(gdla.ShapeError, match="this rank's row block"):
        _comm.check_row_blocks("gdla.svd", "A", (2, 7, 3), torch.float64, None)
    with pytest.raises(gdla.NonFiniteError), _comm.agreement("gdla.svd", None):
        gdla.svd(torch.tensor([[float("nan")]]))
    with pytest.raises(gdla.OptionError, match="ProcessGroup"):
        _comm.check_group("gdla.svd", "world")
    assert _comm.check_group("gdla.svd", None) is None
