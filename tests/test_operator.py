"""The operator layer: dense, sparse COO, sparse CSR and LinearOperator give the same answers.

gdla.svd's product-based methods and gdla.solve's product-based methods are run on one
matrix given four ways; the answers must agree with the dense matrix's to rounding.
Then every bad operator input of issue 14 must be a clear GdlaInputError.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import gdla
from gdla._operator import ESTIMATE_COLUMNS, as_operator, view_of

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
F32, F64, C128 = torch.float32, torch.float64, torch.complex128
KINDS = ("dense", "coo", "csr", "operator")


def sparse_matrix(m: int, n: int, dtype: torch.dtype, *, seed: int = 0) -> torch.Tensor:
    """A dense m x n matrix with about a third of its entries nonzero, distinct singular
    values (a decaying scale by column), seeded."""
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=generator, dtype=dtype)
    keep = torch.rand(m, n, generator=generator) < 0.35
    scale = 0.8 ** torch.arange(n, dtype=torch.float64).to(A.real.dtype)
    return torch.where(keep, A, torch.zeros_like(A)) * scale


def given_as(A: torch.Tensor, kind: str, **flags: bool) -> object:
    """``A`` as a dense tensor, a COO or CSR tensor, or a LinearOperator."""
    if kind == "dense":
        return A
    if kind == "coo":
        return A.to_sparse()
    if kind == "csr":
        return A.to_sparse_csr()
    return gdla.LinearOperator(
        A.shape, lambda X: A @ X, lambda Y: A.mH @ Y, A.dtype, A.device, **flags
    )


# ----------------------------------------------------------------------------
# svd
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS[1:])
@pytest.mark.parametrize(
    ("method", "dtype", "shape"),
    [
        ("lanczos", F64, (90, 60)),  # one vector per step
        ("lanczos", F64, (20, 30)),  # wide and small: the block path on A^H
        ("lanczos", C128, (60, 40)),
        ("lanczos", F32, (90, 60)),
        ("subspace", F64, (60, 40)),
        ("randomized", F64, (60, 40)),
        ("riemannian", F64, (30, 20)),
    ],
)
def test_svd_agrees_with_dense(
    kind: str, method: str, dtype: torch.dtype, shape: tuple[int, int]
) -> None:
    A = sparse_matrix(*shape, dtype)
    k = 3
    options = {"max_iter": 8} if method == "randomized" else {}
    rtol = 1e-10 if method == "riemannian" else None
    dense = gdla.svd(A, k, method=method, rtol=rtol, **options)
    other = gdla.svd(given_as(A, kind), k, method=method, rtol=rtol, **options)
    assert other.method == method
    assert other.converged == dense.converged
    assert other.U.dtype == dtype and other.S.dtype == A.real.dtype
    eps = torch.finfo(dtype).eps
    tolerance = 1e3 * eps if method != "riemannian" else 1e-8
    assert torch.allclose(other.S, dense.S, rtol=tolerance, atol=0)
    # The sign convention makes the vectors comparable column by column.
    gap_tolerance = math.sqrt(tolerance) if dtype == F32 else 1e5 * tolerance
    assert torch.allclose(other.U, dense.U, atol=gap_tolerance)
    assert torch.allclose(other.Vh, dense.Vh, atol=gap_tolerance)


@pytest.mark.parametrize("max_iter", [1, 2, 1000])
def test_sparse_lanczos_through_restarts(max_iter: int) -> None:
    # A flat spectrum needs several thick restarts; a sparse A skips the second
    # Gram-Schmidt pass where the DGKS test allows and takes its Ritz vectors from the
    # restart: the same triplets as the dense path, converged or not.
    A = torch.randn(300, 200, generator=torch.Generator().manual_seed(6), dtype=F64)
    A = torch.where(A.abs() > 1.0, A, torch.zeros_like(A))
    dense = gdla.svd(A, 5, max_iter=max_iter)
    sparse = gdla.svd(A.to_sparse_csr(), 5, max_iter=max_iter)
    assert sparse.nit == dense.nit == min(max_iter, dense.nit)
    assert sparse.converged == dense.converged == (max_iter == 1000)
    assert torch.allclose(sparse.S, dense.S, rtol=1e-10)
    assert torch.allclose(sparse.U, dense.U, atol=1e-7)
    eye = torch.eye(5, dtype=F64)
    assert torch.allclose(sparse.U.mT @ sparse.U, eye, atol=1e-13)
    assert torch.allclose(sparse.Vh @ sparse.Vh.mT, eye, atol=1e-13)


def test_sparse_benchmark_rows_meet_their_target() -> None:
    pytest.importorskip("scipy")
    from gdla.bench_svd import sparse_rows, sparse_test_matrix

    A = sparse_test_matrix(300, 100, 0.05)
    assert A.layout == torch.sparse_csr and A.values().numel() == 1500
    (run,) = sparse_rows(300, 100, 0.05, (1e-8,), k=3, repeats=1, threads=1)
    assert run.nnz == 1500
    assert run.gdla_residual <= 1e-8 and run.arpack_residual <= 1e-8
    assert 0 < run.ratio < math.inf


def test_svd_of_a_sparse_matrix_at_float64_extremes_is_rescaled_exactly() -> None:
    A = sparse_matrix(40, 30, F64)
    huge = gdla.svd((A * 2.0**1000).to_sparse_csr(), 3)
    assert torch.allclose(huge.S / 2.0**1000, gdla.svd(A, 3).S, rtol=1e-12, atol=0)


def test_svd_of_a_wide_operator_and_its_adjoint() -> None:
    A = sparse_matrix(30, 70, F64)
    operator = given_as(A, "operator")
    assert isinstance(operator, gdla.LinearOperator)
    wide = gdla.svd(operator, 4)
    tall = gdla.svd(operator.H, 4)
    reference = torch.linalg.svdvals(A)[:4]
    assert torch.allclose(wide.S, reference, rtol=1e-12)
    assert torch.allclose(tall.S, reference, rtol=1e-12)


# ----------------------------------------------------------------------------
# solve
# ----------------------------------------------------------------------------


def spd(n: int, dtype: torch.dtype) -> torch.Tensor:
    """A sparse symmetric (Hermitian) positive definite matrix, condition number ~10."""
    B = sparse_matrix(n, n, dtype, seed=1)
    return B @ B.mH / n + torch.eye(n, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS[1:])
@pytest.mark.parametrize(
    ("method", "dtype", "shape", "hermitian"),
    [
        ("cg", F64, (40, 40), True),  # CG on A
        ("cg", F64, (40, 40), False),  # CGLS
        ("cg", F32, (40, 40), True),
        ("lsqr", F64, (60, 30), False),
        ("lsqr", C128, (50, 50), False),
        ("gd", F64, (40, 40), True),
        ("lbfgs", F64, (40, 40), True),
    ],
)
def test_solve_agrees_with_dense(
    kind: str, method: str, dtype: torch.dtype, shape: tuple[int, int], hermitian: bool
) -> None:
    m, n = shape
    A = (
        spd(n, dtype)
        if hermitian
        else sparse_matrix(m, n, dtype) + 3 * torch.eye(m, n, dtype=dtype)
    )
    b = torch.linspace(-1.0, 1.0, m, dtype=A.real.dtype).to(dtype)
    dense = gdla.solve(A, b, method=method)
    other = gdla.solve(given_as(A, kind, hermitian=hermitian), b, method=method)
    assert dense.converged and other.converged, other.message
    assert other.method == method
    assert other.message.split(":")[0] == dense.message.split(":")[0]  # CG or CGLS alike
    eps = torch.finfo(dtype).eps
    assert torch.allclose(other.x, dense.x, rtol=0, atol=1e4 * eps * float(dense.x.abs().max()))


@pytest.mark.parametrize("kind", KINDS[1:])
def test_solve_batches_of_right_hand_sides_as_columns(kind: str) -> None:
    A = spd(30, F64)
    B = torch.randn(2, 3, 30, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    result = gdla.solve(given_as(A, kind, hermitian=True), B)
    assert result.method == "cg" and result.converged
    assert result.x.shape == (2, 3, 30, 4)
    assert torch.allclose(result.x, torch.linalg.solve(A, B), atol=1e-11)


@pytest.mark.parametrize(
    ("kind", "hermitian", "shape", "expected"),
    [
        ("coo", True, (20, 20), "CG (A is Hermitian positive definite)"),
        ("csr", False, (20, 20), "LSQR"),
        ("operator", True, (20, 20), "CG (A is Hermitian positive definite)"),
        ("operator", False, (20, 20), "LSQR"),
        ("csr", False, (30, 20), "LSQR"),
    ],
)
def test_solve_default_method_for_operators(
    kind: str, hermitian: bool, shape: tuple[int, int], expected: str
) -> None:
    m, n = shape
    A = spd(n, F64) if hermitian else sparse_matrix(m, n, F64) + 3 * torch.eye(m, n, dtype=F64)
    result = gdla.solve(given_as(A, kind, hermitian=hermitian), torch.ones(m, dtype=F64))
    assert result.converged
    assert result.message.startswith(expected)


def test_hermitian_test_of_sparse_matrices() -> None:
    H = spd(12, C128)
    assert view_of(H).is_hermitian()
    assert as_operator("f", "A", H.to_sparse()).is_hermitian()
    assert not as_operator("f", "A", (H + 0.1j * torch.eye(12)).to_sparse_csr()).is_hermitian()
    assert not as_operator("f", "A", sparse_matrix(12, 12, F64).to_sparse()).is_hermitian()


def test_gradients_through_a_sparse_solve_raise_clearly() -> None:
    b = torch.ones(10, dtype=F64, requires_grad=True)
    x = gdla.solve(spd(10, F64).to_sparse(), b).x
    with pytest.raises(RuntimeError, match="sparse or LinearOperator A are not supported"):
        x.sum().backward()


# ----------------------------------------------------------------------------
# The view itself
# ----------------------------------------------------------------------------


def test_operator_norm_estimate_is_seeded_and_close() -> None:
    A = torch.randn(200, 100, generator=torch.Generator().manual_seed(3), dtype=F64)
    operator = given_as(A, "operator")
    first = as_operator("f", "A", operator, seed=5).fro_norm
    assert float(first) == float(as_operator("f", "A", operator, seed=5).fro_norm)
    # A flat spectrum: the estimate of ||A||_F^2 averages 2 * 8 samples of ~||A||_F^2.
    assert ESTIMATE_COLUMNS == 8
    assert abs(float(first) / float(torch.linalg.matrix_norm(A)) - 1) < 0.1


def test_sparse_view_products_and_adjoint() -> None:
    A = sparse_matrix(25, 15, C128)
    view = as_operator("f", "A", A.to_sparse())
    X = torch.randn(15, 3, dtype=C128, generator=torch.Generator().manual_seed(4))
    Y = torch.randn(25, 2, dtype=C128, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(view.matmul(X), A @ X)
    assert torch.allclose(view.rmatmul(Y), A.mH @ Y)
    assert torch.allclose(view.H.matmul(Y), A.mH @ Y)
    times_A, times_AH = view.vector_products()
    assert torch.allclose(times_AH(Y[:, :1]), A.mH @ Y[:, :1])
    assert torch.equal(view.dense(), A)
    assert float(view.fro_norm) == pytest.approx(float(torch.linalg.matrix_norm(A)))


def test_linear_operator_repr_and_adjoint() -> None:
    operator = gdla.LinearOperator((3, 5), lambda X: X[:3], lambda Y: Y, dtype=F64)
    assert repr(operator) == "LinearOperator(shape=(3, 5), dtype=torch.float64, device=cpu)"
    assert operator.H.shape == (5, 3)
    assert gdla.LinearOperator((2, 2), abs, abs).dtype == torch.get_default_dtype()


def test_products_are_checked_on_the_first_call_only() -> None:
    A = sparse_matrix(20, 10, F64)
    calls = []

    def matmul(X: torch.Tensor) -> torch.Tensor:
        calls.append(X.shape[-1])
        return (A @ X).float() if len(calls) == 1 else A @ X

    with pytest.raises(gdla.DtypeError, match="A.matmul"):
        gdla.svd(gdla.LinearOperator(A.shape, matmul, lambda Y: A.mT @ Y, F64), 2)
    assert calls == [ESTIMATE_COLUMNS]  # before any iteration


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

ONES = torch.ones(3, dtype=F64)


def _coo(indices: list[list[int]], values: torch.Tensor = ONES) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor(indices), values, (3, 3), check_invariants=False)


def _csr(crow: list[int], col: list[int], values: torch.Tensor = ONES) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.tensor(crow), torch.tensor(col), values, (3, 3), check_invariants=False
    )


def _operator(matmul: object = None, rmatmul: object = None) -> gdla.LinearOperator:
    A = torch.eye(3, dtype=F64)
    return gdla.LinearOperator(
        (3, 3),
        matmul or (lambda X: A @ X),  # type: ignore[arg-type]
        rmatmul or (lambda Y: A @ Y),  # type: ignore[arg-type]
        dtype=F64,
    )


BAD = {
    "COO with a duplicate index": (_coo([[0, 0, 1], [2, 2, 1]]), gdla.ShapeError, "duplicate"),
    "coalesced COO flag with a duplicate": (
        torch.sparse_coo_tensor(
            torch.tensor([[0, 0, 1], [2, 2, 1]]),
            ONES,
            (3, 3),
            is_coalesced=True,
            check_invariants=False,
        ),  # fmt: skip
        gdla.ShapeError,
        "duplicate",
    ),
    "CSR with a duplicate column": (_csr([0, 2, 3, 3], [1, 1, 0]), gdla.ShapeError, "duplicate"),
    "COO row out of range": (_coo([[0, 3, 1], [0, 0, 1]]), gdla.ShapeError, "out of range"),
    "COO negative index": (_coo([[0, -1, 1], [0, 0, 1]]), gdla.ShapeError, "out of range"),
    "CSR column out of range": (_csr([0, 1, 2, 3], [0, 7, 1]), gdla.ShapeError, "out of range"),
    "CSR row pointers past nnz": (_csr([0, 1, 2, 5], [0, 1, 2]), gdla.ShapeError, "crow"),
    "CSR row pointers falling": (_csr([0, 2, 1, 3], [0, 1, 2]), gdla.ShapeError, "crow"),
    "NaN in COO values": (
        _coo([[0, 1, 2], [0, 1, 2]], torch.tensor([1.0, math.nan, 1.0], dtype=F64)),
        gdla.NonFiniteError,
        "finite",
    ),
    "Inf in CSR values": (
        _csr([0, 1, 2, 3], [0, 1, 2], torch.tensor([1.0, 1.0, math.inf], dtype=F64)),
        gdla.NonFiniteError,
        "finite",
    ),
    "BSR layout": (torch.eye(4, dtype=F64).to_sparse_bsr((2, 2)), gdla.DtypeError, "COO"),
    "CSC layout": (torch.eye(3, dtype=F64).to_sparse_csc(), gdla.DtypeError, "CSR"),
    "integer sparse": (torch.eye(3, dtype=torch.int64).to_sparse(), gdla.DtypeError, "dtype"),
    "batched sparse": (
        torch.eye(3, dtype=F64).expand(2, 3, 3).to_sparse(),
        gdla.ShapeError,
        "(m, n)",
    ),
    "hybrid COO": (torch.eye(3, dtype=F64).to_sparse(1), gdla.ShapeError, "(m, n)"),
    "matmul of the wrong shape": (_operator(lambda X: X[:2]), gdla.ShapeError, "A.matmul"),
    "matmul of the wrong dtype": (_operator(lambda X: X.to(C128)), gdla.DtypeError, "A.matmul"),
    "matmul returning a list": (_operator(lambda X: X.tolist()), gdla.DtypeError, "A.matmul"),
    "rmatmul of the wrong shape": (_operator(None, lambda Y: Y.mT), gdla.ShapeError, "A.rmatmul"),
    "rmatmul on the wrong device": (
        _operator(None, lambda Y: Y.to("meta")),
        gdla.ShapeError,
        "device",
    ),
    "NaN product": (_operator(lambda X: X * math.nan), gdla.NonFiniteError, "finite"),
    "a NumPy array": (torch.eye(3).numpy(), gdla.DtypeError, "LinearOperator"),
}


@pytest.mark.parametrize("function", ["svd", "solve"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_operator_input(function: str, case: str) -> None:
    A, error, words = BAD[case]
    with pytest.raises(error, match=words) as raised:
        if function == "svd":
            gdla.svd(A, 1)
        else:
            gdla.solve(A, ONES)
    assert str(raised.value).startswith(f"gdla.{function}: expected A")


@pytest.mark.parametrize("kind", ["coo", "operator"])
def test_methods_that_need_entries_say_so(kind: str) -> None:
    A = given_as(spd(4, F64), kind)
    for method in ("sketch", "gmres-ir"):
        with pytest.raises(gdla.OptionError, match="'cg', 'lsqr', 'gd'") as raised:
            gdla.solve(A, torch.ones(4, dtype=F64), method=method)
        assert "needs a dense A" in str(raised.value)
    for method in ("orthogonal", "penalty", "sgd", "adam", "lbfgs"):
        with pytest.raises(gdla.OptionError, match="'lanczos', 'subspace', 'randomized'"):
            gdla.svd(A, 1, method=method)


def test_linear_operator_constructor_checks() -> None:
    with pytest.raises(gdla.ShapeError, match="shape"):
        gdla.LinearOperator((3, 3, 3), abs, abs)  # type: ignore[arg-type]
    with pytest.raises(gdla.ShapeError, match="shape"):
        gdla.LinearOperator((3, -1), abs, abs)
    with pytest.raises(gdla.OptionError, match="rmatmul to be callable"):
        gdla.LinearOperator((3, 3), abs, None)  # type: ignore[arg-type]
    with pytest.raises(gdla.DtypeError, match="dtype"):
        gdla.LinearOperator((3, 3), abs, abs, dtype=torch.int32)
    with pytest.raises(gdla.OptionError, match="device"):
        gdla.LinearOperator((3, 3), abs, abs, device="nowhere")


def test_b_must_match_the_operator() -> None:
    A = given_as(spd(4, F64), "operator")
    with pytest.raises(gdla.DtypeError, match="b of dtype torch.float64"):
        gdla.solve(A, torch.ones(4))
    with pytest.raises(gdla.ShapeError, match="b of shape"):
        gdla.solve(A, torch.ones(5, dtype=F64))


# NumPy's BLAS for the CPU one-column products -------------------------------------------


def test_numpy_products_are_the_products_to_rounding() -> None:
    from gdla import _lsqr
    from gdla._operator import DenseView, numpy_blas_array

    A = torch.randn(300, 120, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert numpy_blas_array(A) is not None and numpy_blas_array(A.mT) is not None
    norm = float(torch.linalg.matrix_norm(A))

    def close(x: torch.Tensor, y: torch.Tensor, scale: float) -> bool:
        # Entrywise relative errors mean nothing where a product cancels: norms.
        return float(torch.linalg.vector_norm(x - y)) <= 1e-13 * scale

    view = DenseView(A)
    times_A, times_AH = view.vector_products()
    v, u = torch.randn(120, 1, dtype=A.dtype), torch.randn(300, 1, dtype=A.dtype)
    assert close(times_A(v), A @ v, norm * float(v.norm()))
    assert close(times_AH(u), A.mT @ u, norm * float(u.norm()))
    y, w = torch.empty(300, dtype=A.dtype), torch.empty(120, dtype=A.dtype)
    view.gram_vector_product()(v[:, 0], y, w)
    assert close(w, A.mT @ (A @ v[:, 0]), norm**2 * float(v.norm()))
    W, adjoint = _lsqr.dense_products(A)(v, u, torch.tensor([[0.5]], dtype=A.dtype))
    assert close(W, A @ v - 0.5 * u, norm * float(v.norm()) + float(u.norm()))
    assert close(adjoint, A.mT @ W, norm * float(W.norm()))


@pytest.mark.parametrize("blocked", [False, True])
def test_numpy_gram_products_of_a_view_and_its_adjoint(
    monkeypatch: pytest.MonkeyPatch, blocked: bool
) -> None:
    from gdla import _fused, _operator

    if blocked:  # the row-blocked fused product that large matrices take
        monkeypatch.setattr(_fused, "FUSED_FROM", 0)
        # Blocks of 17 rows: the last one of each thread's range is shorter.
        monkeypatch.setattr(_fused, "BLOCK_BYTES", 17 * 8 * 120)
    A = torch.randn(300, 120, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    sparse = sparse_matrix(300, 120, torch.float64, seed=4).to_sparse_csr()
    for matrix in (A, sparse):
        view = view_of(matrix) if matrix.layout == torch.strided else as_operator("t", "A", matrix)
        for side in (view, view.H):  # view.H: the wide matrix's products, swapped
            M = side.dense()
            rows, cols = M.shape
            v = torch.randn(cols, dtype=A.dtype)
            y, w = torch.empty(rows, dtype=A.dtype), torch.empty(cols, dtype=A.dtype)
            _operator.numpy_gram_product(*side.numpy_pair())(v.numpy(), y.numpy(), w.numpy())
            scale = float(torch.linalg.matrix_norm(M)) ** 2 * float(v.norm())
            assert float((w - M.mT @ (M @ v)).norm()) <= 1e-13 * scale
            assert float((y - M @ v).norm()) <= 1e-13 * scale


@pytest.mark.parametrize(
    "case", ["complex", "batched", "strided", "subclass", "float16-like", "requires-grad-ok"]
)
def test_numpy_products_only_for_plain_real_matrices(case: str) -> None:
    from gdla._operator import numpy_blas_array

    A = torch.randn(40, 30, dtype=torch.float64)
    if case == "complex":
        assert numpy_blas_array(A.to(torch.complex128)) is None
    elif case == "batched":
        assert numpy_blas_array(A.expand(2, 40, 30)) is None
    elif case == "strided":  # neither row- nor column-major: NumPy would copy every call
        assert numpy_blas_array(A[:, ::2]) is None
    elif case == "subclass":
        assert numpy_blas_array(torch.nn.Parameter(A)) is None
    elif case == "float16-like":
        assert numpy_blas_array(A.to(torch.bfloat16)) is None
    else:  # read only, never differentiated: a leaf that requires grad is fine
        assert numpy_blas_array(A.clone().requires_grad_()) is not None


def test_a_product_counter_sees_the_products_numpy_would_form() -> None:
    from gdla.metrics import ProductCounter

    A = gdla.matrices.decaying_spectrum(400, 200, rate=0.9, seed=3)
    plain = gdla.svd(A, 5, rtol=1e-10)
    with ProductCounter() as counter:
        counted = gdla.svd(A, 5, rtol=1e-10)
    # Lanczos forms at least two products with A per step: 2 * 400 * 200 flops each.
    assert counter.flops >= 2 * 2 * 400 * 200 * counted.nit
    assert torch.allclose(plain.S, counted.S, rtol=1e-12, atol=0)


def test_sparse_gram_products_with_and_without_scipy_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdla._operator import SparseView

    A = sparse_matrix(300, 120, torch.float64, seed=9).to_sparse_csr()
    with_scipy = gdla.svd(A, 4, rtol=1e-11)
    assert as_operator("test", "A", A).numpy_products  # SciPy is installed here
    monkeypatch.setattr(SparseView, "numpy_pair", lambda self: None)
    assert not as_operator("test", "A", A).numpy_products
    torch_only = gdla.svd(A, 4, rtol=1e-11)
    assert with_scipy.converged and torch_only.converged
    assert torch.allclose(with_scipy.S, torch_only.S, rtol=1e-10, atol=0)


def test_a_dense_matrix_is_read_once_for_its_norm_and_its_finiteness() -> None:
    A = torch.randn(30, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    view = as_operator("gdla.svd", "A", A)
    assert view._norm is not None and torch.equal(view._norm, torch.linalg.matrix_norm(A))
    # Finite entries whose norm overflows are accepted (the full check runs then) ...
    huge = as_operator("gdla.svd", "A", A * 1e300)
    assert not torch.isfinite(huge.fro_norm)
    # ... and a NaN or an infinite entry is still refused, in a batch too.
    for bad in (math.nan, math.inf):
        B = torch.stack([A, A.clone()])
        B[1, 4, 7] = bad
        with pytest.raises(gdla.NonFiniteError, match="finite"):
            as_operator("gdla.svd", "A", B)
