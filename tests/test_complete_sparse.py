"""Tests of :func:`gdla.complete` on sparse ``M``: the stored entries are the observations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import gdla
from conftest import WORKER_EXIT, run_two_ranks
from gdla import bench, complete
from gdla._iterate import default_rtol

F64, F32, C128 = torch.float64, torch.float32, torch.complex128


def low_rank(m: int, n: int, rank: int, *, dtype: torch.dtype = F64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(m, rank, generator=g, dtype=dtype)
    return L @ torch.randn(rank, n, generator=g, dtype=dtype)


def random_mask(m: int, n: int, fraction: float = 0.5, seed: int = 1) -> torch.Tensor:
    return torch.rand(m, n, generator=torch.Generator().manual_seed(seed)) < fraction


def observed(M: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The entries of ``M`` where ``mask`` is True as a COO tensor, zeros kept as entries."""
    rows, cols = mask.nonzero().T
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), M[rows, cols], tuple(M.shape), check_invariants=True
    )


def relative(X: torch.Tensor, Y: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(X - Y) / torch.linalg.matrix_norm(Y))


# --- the same answer as dense completion --------------------------------------------------------


@pytest.mark.parametrize("dtype", [F64, C128])
@pytest.mark.parametrize(("m", "n"), [(50, 30), (30, 50)])
def test_same_iterates_as_dense_completion(dtype: torch.dtype, m: int, n: int) -> None:
    truth = low_rank(m, n, 3, dtype=dtype, seed=m)
    mask = random_mask(m, n, 0.5, seed=n)
    dense = complete(truth, mask, 3)
    sparse = complete(observed(truth, mask), None, 3)
    assert sparse.converged and dense.converged, sparse.message
    assert sparse.X is None and sparse.L.dtype == dtype
    assert (sparse.L.shape, sparse.R.shape) == ((m, 3), (n, 3))
    assert dense.X is not None
    assert relative(sparse.L @ sparse.R.mH, dense.X) < 1e-12
    assert abs(sparse.nit - dense.nit) <= 1
    assert sparse.history[:5] == pytest.approx(dense.history[:5], rel=1e-8)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("gd", {"max_iter": 40}),
        ("lbfgs", {"max_iter": 1}),
        ("adam", {"max_iter": 30, "options": {"lr": 1e-2}}),
    ],
)
def test_other_methods_match_dense_on_the_observed_entry_loss(method: str, kwargs: dict) -> None:
    truth = low_rank(30, 20, 2, seed=3)
    mask = random_mask(30, 20, 0.6, seed=3)
    dense = complete(truth, mask, 2, method=method, **kwargs)
    sparse = complete(observed(truth, mask), None, 2, method=method, **kwargs)
    assert sparse.method == method and sparse.nit == dense.nit
    assert sparse.history == pytest.approx(dense.history, rel=1e-6)
    assert dense.X is not None
    assert relative(sparse.L @ sparse.R.mH, dense.X) < 1e-6


def test_regularisation_and_underdetermined_rows_match_dense() -> None:
    truth = low_rank(25, 18, 3, seed=4)
    mask = random_mask(25, 18, 0.4, seed=4)
    mask[0] = False
    mask[0, :2] = True  # two entries in row 0 for rank 3: ALS's minimum-norm solution
    for reg in (0.0, 0.3):
        dense = complete(truth, mask, 3, options={"reg": reg}, max_iter=30)
        sparse = complete(observed(truth, mask), None, 3, options={"reg": reg}, max_iter=30)
        assert dense.X is not None
        assert relative(sparse.L @ sparse.R.mH, dense.X) < 1e-9


def test_explicit_zeros_are_observations() -> None:
    truth = low_rank(30, 20, 2, seed=5)
    truth[:, 4] = 0.0  # an observed zero column; to_sparse() would drop it and lose the data
    mask = random_mask(30, 20, 0.6, seed=5)
    M = observed(truth, mask)
    assert int(M._nnz()) == int(mask.sum())
    result = complete(M, None, 2)
    assert result.converged, result.message
    assert relative(result.L @ result.R.mH, truth) < 1e-10
    assert complete(truth.to_sparse(), None, 2).R.shape == (20, 2)  # runs, on fewer entries


def test_held_out_entries_are_recovered() -> None:
    M, rows, cols, values = bench.sparse_completion_problem(400, 300, 4, 12_000, 500, seed=2)
    result = complete(M, None, 4)
    assert result.converged, result.message
    predicted = result.entries(rows, cols)
    assert float((predicted - values).norm() / values.norm()) < 1e-8
    # entries() is L[rows] R[cols]^H, entry by entry
    i, j = int(rows[0]), int(cols[0])
    assert float(predicted[0]) == pytest.approx(float(result.L[i] @ result.R[j]), rel=1e-12)


def test_the_bench_row_meets_its_accuracy_goal_at_a_small_size() -> None:
    row = bench.sparse_completion_row(300, 200, 3, 8000, 400)
    assert row.met and row.error <= 1e-6 and row.method == "als"


def test_a_shape_that_no_dense_tensor_could_hold() -> None:
    # 100,000 x 60,000 dense would be 6e9 entries (48 GB in float64): only the
    # entries and the factors are ever formed.
    m, n, rank, count = 100_000, 60_000, 1, 5000
    g = torch.Generator().manual_seed(6)
    rows = torch.randint(0, m, (count,), generator=g)
    cols = torch.randint(0, n, (count,), generator=g)
    keys = torch.unique(rows * n + cols)
    M = torch.sparse_coo_tensor(
        torch.stack([keys // n, keys % n]),
        torch.ones(keys.numel(), dtype=F64),
        (m, n),
        check_invariants=True,
    )
    result = complete(M, None, rank, options={"reg": 1e-3}, max_iter=3)
    assert result.X is None and result.L.shape == (m, 1) and result.R.shape == (n, 1)
    assert bool(torch.isfinite(result.L).all()) and result.nit == 3


# --- layouts, orders, dtypes ----------------------------------------------------------------------


def test_csr_csc_and_unsorted_coo_give_the_same_answer() -> None:
    truth = low_rank(20, 15, 2, seed=7)
    mask = random_mask(20, 15, 0.6, seed=7)
    M = observed(truth, mask)
    reference = complete(M, None, 2)
    shuffle = torch.randperm(M._nnz(), generator=torch.Generator().manual_seed(7))
    unsorted = torch.sparse_coo_tensor(
        M._indices()[:, shuffle], M._values()[shuffle], M.shape, check_invariants=True
    )
    assert not unsorted.is_coalesced()
    for other in (M.to_sparse_csr(), M.to_sparse_csc(), unsorted):
        result = complete(other, None, 2)
        assert torch.allclose(result.L, reference.L, rtol=0, atol=1e-12)
        assert result.history == pytest.approx(reference.history, rel=1e-10, abs=1e-15)


def test_float32_and_random_start() -> None:
    truth = low_rank(40, 30, 2, dtype=F32, seed=8)
    mask = random_mask(40, 30, 0.5, seed=8)
    result = complete(observed(truth, mask), None, 2)
    assert result.converged and result.L.dtype == F32
    assert relative(result.L @ result.R.mH, truth) < 1e-4
    random = complete(observed(truth.double(), mask), None, 2, options={"init": "random"})
    assert random.converged, random.message


def test_the_stopping_rule_is_the_documented_relative_gradient() -> None:
    truth = low_rank(30, 20, 2, seed=9) + 1e-3 * low_rank(30, 20, 20, seed=10)
    mask = random_mask(30, 20, 0.7, seed=9)
    reg = 1.0
    result = complete(observed(truth, mask), None, 2, options={"reg": reg})
    assert result.converged, result.message
    L, R = result.L, result.R
    E = torch.where(mask, L @ R.mH - truth, 0)
    gL, gR = E @ R + reg * L, E.mH @ L + reg * R
    grad = torch.cat([gL, gR]).norm() / (
        torch.where(mask, truth, 0).norm() * torch.cat([L, R]).norm()
    )
    assert float(grad) <= 10 * default_rtol(F64)
    assert result.history[-1] == pytest.approx(float(grad), rel=0.5, abs=1e-15)


def test_scale_invariance_and_huge_entries() -> None:
    truth = low_rank(20, 15, 2, seed=11)
    mask = random_mask(20, 15, 0.7, seed=11)
    small = complete(observed(truth, mask), None, 2, method="gd", max_iter=20)
    large = complete(observed(1e200 * truth, mask), None, 2, method="gd", max_iter=20)
    assert small.history == pytest.approx(large.history, rel=1e-6)
    assert relative(large.L @ large.R.mH / 1e200, small.L @ small.R.mH) < 1e-10


def test_empty_and_unobserved_inputs() -> None:
    empty = complete(torch.zeros(0, 4, dtype=F64).to_sparse(), None, 2)
    assert empty.converged and empty.nit == 0 and empty.X is None
    assert (empty.L.shape, empty.R.shape) == ((0, 2), (4, 2))
    nothing = torch.zeros(4, 3, dtype=F64).to_sparse()  # no stored entry
    assert nothing._nnz() == 0
    result = complete(nothing, None, 1)
    assert result.converged and float(result.L.abs().max() * result.R.abs().max()) == 0.0


def test_requires_grad_m_raises_in_backward_only() -> None:
    truth = low_rank(10, 8, 1, seed=12)
    M = observed(truth, random_mask(10, 8, 0.8, seed=12)).requires_grad_()
    result = complete(M, None, 1)
    with pytest.raises(RuntimeError, match="not differentiable"):
        result.L.sum().backward()


def test_dense_results_still_have_x_and_entries() -> None:
    truth = low_rank(12, 9, 2, seed=13)
    mask = random_mask(12, 9, 0.7, seed=13)
    result = complete(truth, mask, 2)
    assert result.X is not None
    rows, cols = torch.tensor([0, 3, 11]), torch.tensor([8, 0, 4])
    assert torch.allclose(result.entries(rows, cols), result.X[rows, cols], rtol=1e-12)


# --- bad input ----------------------------------------------------------------------------------

M3 = observed(torch.eye(3, dtype=F64) + 0.1, torch.ones(3, 3, dtype=torch.bool))


def _coo(rows: list[int], cols: list[int], values: list[float]) -> torch.Tensor:
    """A 3 x 3 COO tensor as given: torch's checks are off, so that bad indices get to gdla."""
    indices, data = torch.tensor([rows, cols]), torch.tensor(values, dtype=F64)
    return torch.sparse_coo_tensor(indices, data, (3, 3), check_invariants=False)


BAD: dict[str, tuple[Callable[[], object], type[gdla.GdlaInputError], str]] = {
    "repeated index pair": (
        lambda: complete(_coo([0, 1, 0], [2, 1, 2], [1.0, 2.0, 3.0]), None, 1),
        gdla.GdlaInputError,
        "entry (0, 2) stored 2 times",
    ),
    "CSR with a repeated column": (
        lambda: complete(
            torch.sparse_csr_tensor(
                torch.tensor([0, 2, 2, 2]),
                torch.tensor([1, 1]),
                torch.tensor([1.0, 2.0], dtype=F64),
                (3, 3),
                check_invariants=False,
            ),
            None,
            1,
        ),
        gdla.GdlaInputError,
        "stored 2 times",
    ),  # fmt: skip
    "row index out of range": (
        lambda: complete(_coo([0, 5], [0, 1], [1.0, 2.0]), None, 1),
        gdla.ShapeError,
        "row index 5",
    ),
    "negative column index": (
        lambda: complete(_coo([0, 1], [0, -1], [1.0, 2.0]), None, 1),
        gdla.ShapeError,
        "column index -1",
    ),
    "NaN value": (
        lambda: complete(_coo([0, 1], [0, 1], [1.0, float("nan")]), None, 1),
        gdla.NonFiniteError,
        "NaN or Inf",
    ),
    "Inf value": (
        lambda: complete(_coo([0, 1], [0, 1], [float("inf"), 1.0]), None, 1),
        gdla.NonFiniteError,
        "NaN or Inf",
    ),
    "dense mask with sparse M": (
        lambda: complete(M3, torch.ones(3, 3, dtype=torch.bool), 1),
        gdla.OptionError,
        "mask=None",
    ),
    "sparse mask with sparse M": (
        lambda: complete(M3, torch.ones(3, 3, dtype=torch.bool).to_sparse(), 1),
        gdla.OptionError,
        "layout torch.sparse_coo",
    ),
    "batch of sparse matrices": (
        lambda: complete(torch.ones(2, 3, 3, dtype=F64).to_sparse(), None, 1),
        gdla.ShapeError,
        "no batches",
    ),
    "hybrid sparse (dense dimension)": (
        lambda: complete(torch.ones(3, 3, 2, dtype=F64).to_sparse(2), None, 1),
        gdla.ShapeError,
        "dense dimensions",
    ),
    "BSR layout": (
        lambda: complete(torch.ones(4, 4, dtype=F64).to_sparse_bsr((2, 2)), None, 1),
        gdla.DtypeError,
        "sparse COO, CSR or CSC",
    ),
    "integer sparse": (
        lambda: complete(M3.long(), None, 1),
        gdla.DtypeError,
        "torch.int64",
    ),
    "rank beyond min(m, n)": (
        lambda: complete(M3, None, 4),
        gdla.OptionError,
        "rank",
    ),
    "dense M without a mask": (
        lambda: complete(torch.ones(3, 3, dtype=F64), None, 1),
        gdla.DtypeError,
        "mask",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_sparse_input_gets_a_clear_error(case: str) -> None:
    call, error, found = BAD[case]
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert message.startswith("gdla.complete: expected ") and ", found " in message
    assert found in message


# --- rows split over two processes (group=) -------------------------------------------------------

WORKER = (
    r'''
import os
import sys

import torch
import torch.distributed as dist

import gdla
from gdla.bench import sparse_completion_problem

dist.init_process_group("gloo")
group = dist.group.WORLD
rank = dist.get_rank()
SPLIT = 110  # rank 0 holds rows [0, 110), rank 1 rows [110, 200): uneven blocks


def block(M):
    """This rank's rows of the sparse M, as its own sparse matrix."""
    first, last = (0, SPLIT) if rank == 0 else (SPLIT, M.shape[0])
    indices, values = M._indices(), M._values()
    keep = (indices[0] >= first) & (indices[0] < last)
    shifted = indices[:, keep] - torch.tensor([[first], [0]])
    return torch.sparse_coo_tensor(shifted, values[keep], (last - first, M.shape[1]),
                                   check_invariants=True)


def caught(call):
    try:
        call()
    except gdla.GdlaInputError as error:
        return type(error).__name__, str(error)
    return None, "no error"


M = sparse_completion_problem(200, 120, 3, 6000, 300, seed=4)[0]
mine = block(M)
out = {"rank": rank}
out["als"] = gdla.complete(mine, None, 3, group=group)
out["als_random"] = gdla.complete(mine, None, 3, group=group, options={"init": "random"})
out["gd_random"] = gdla.complete(mine, None, 3, method="gd", max_iter=25, group=group,
                                 options={"init": "random", "reg": 0.1})
C = sparse_completion_problem(200, 120, 2, 6000, 0, seed=5)[0]
C = torch.sparse_coo_tensor(C._indices(), C._values() * (1 + 1j), C.shape, check_invariants=True)
out["complex"] = gdla.complete(block(C), None, 2, group=group)
stops = lambda i, r: rank == 1 and i == 2  # True on rank 1 only: both ranks must stop
out["callback_nit"] = gdla.complete(mine, None, 3, group=group, callback=stops).nit
nan = block(M).coalesce()
nan = torch.sparse_coo_tensor(nan.indices(), nan.values() * (float("nan") if rank else 1.0),
                              nan.shape, check_invariants=True)
bad = {
    "dense M": lambda: gdla.complete(mine.to_dense(), torch.ones(mine.shape, dtype=torch.bool),
                                     3, group=group),
    "method adam": lambda: gdla.complete(mine, None, 3, method="adam", group=group),
    "different rank": lambda: gdla.complete(mine, None, 2 + rank, group=group),
    "different n": lambda: gdla.complete(
        torch.sparse_coo_tensor(mine._indices(), mine._values(), (mine.shape[0], 120 + rank),
                                check_invariants=True),
        None, 3, group=group),
    "different rtol": lambda: gdla.complete(mine, None, 3, rtol=1e-8 * (1 + rank), group=group),
    "NaN on rank 1": lambda: gdla.complete(nan, None, 3, group=group),
    "rank beyond n": lambda: gdla.complete(mine, None, 121, group=group),
    "not a group": lambda: gdla.complete(mine, None, 3, group="world"),
}
out["bad"] = {name: caught(call) for name, call in bad.items()}
torch.save(out, f"{sys.argv[1]}/rank{rank}.pt")
'''
    + WORKER_EXIT
)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two ranks of one ``torchrun`` launch (gloo, loopback) saved."""
    return run_two_ranks(tmp_path_factory.mktemp("complete_group"), WORKER)


def _joined(ranks: list[dict[str, Any]], key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole L (rank 0's rows, then rank 1's) and the replicated R."""
    parts = [r[key] for r in ranks]
    for part in parts:
        assert part.converged or key == "gd_random", part.message
        assert part.X is None and torch.equal(part.R, parts[0].R)
    assert [part.nit for part in parts] == [parts[0].nit] * 2
    assert [part.L.shape[0] for part in parts] == [110, 90]
    return torch.cat([part.L for part in parts]), parts[0].R


def test_group_answers_match_one_process(ranks: list[dict[str, Any]]) -> None:
    M, rows, cols, values = bench.sparse_completion_problem(200, 120, 3, 6000, 300, seed=4)
    single = complete(M, None, 3)
    for key in ("als", "als_random"):
        L, R = _joined(ranks, key)
        assert relative(L @ R.mH, single.L @ single.R.mH) < 1e-10
        held_out = (L[rows] * R[cols]).sum(-1)
        assert float((held_out - values).norm() / values.norm()) < 1e-8
    # The random start is the one process's start: the iterates agree to rounding.
    alone = complete(M, None, 3, options={"init": "random"})
    assert ranks[0]["als_random"].history == pytest.approx(alone.history, rel=1e-6, abs=1e-15)
    L, R = _joined(ranks, "gd_random")
    gd = complete(M, None, 3, method="gd", max_iter=25, options={"init": "random", "reg": 0.1})
    assert ranks[0]["gd_random"].history == pytest.approx(gd.history, rel=1e-8)
    assert relative(L @ R.mH, gd.L @ gd.R.mH) < 1e-10


def test_group_complex(ranks: list[dict[str, Any]]) -> None:
    C = bench.sparse_completion_problem(200, 120, 2, 6000, 0, seed=5)[0]
    C = torch.sparse_coo_tensor(
        C._indices(), C._values() * (1 + 1j), C.shape, check_invariants=True
    )
    single = complete(C, None, 2)
    L, R = _joined(ranks, "complex")
    assert L.dtype == C128
    assert relative(L @ R.mH, single.L @ single.R.mH) < 1e-10


def test_group_callback_on_one_rank_stops_both(ranks: list[dict[str, Any]]) -> None:
    assert ranks[0]["callback_nit"] == ranks[1]["callback_nit"] == 2


@pytest.mark.parametrize(
    ("case", "error"),
    [("dense M", "OptionError"), ("method adam", "OptionError"), ("different rank", "ShapeError"),
     ("different n", "ShapeError"), ("different rtol", "ShapeError"),
     ("NaN on rank 1", None), ("rank beyond n", "OptionError"), ("not a group", "OptionError")],
)  # fmt: skip
def test_group_bad_input_is_a_clear_error_on_both_ranks(
    ranks: list[dict[str, Any]], case: str, error: str | None
) -> None:
    for r in ranks:
        kind, message = r["bad"][case]
        assert kind is not None, f"rank {r['rank']}: {case}: {message}"
        assert message.startswith("gdla.complete: expected "), message
        assert error is None or kind == error, (kind, message)
    if case == "NaN on rank 1":
        assert ranks[1]["bad"][case][0] == "NonFiniteError"
        assert "rank 1" in ranks[0]["bad"][case][1]


@pytest.mark.parametrize("method", ["als", "gd", "adam", "lbfgs"])
def test_inference_mode(method: str) -> None:
    M = bench.sparse_completion_problem(30, 20, 2, 400, 0, seed=14)[0]
    with torch.inference_mode():
        inference = M.clone()
        result = complete(inference, None, 2, method=method, max_iter=3)
    assert result.nit == 3 or result.converged
    assert bool(torch.isfinite(result.L).all())
