"""gdla._fused: the fused products through NumPy's BLAS, in parallel row ranges."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gdla import _fused


def products(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(shape[1]), rng.standard_normal(shape[0])


def reference(A: np.ndarray, v: np.ndarray, a: float, u: np.ndarray | None):
    y = A @ v - (a * u if u is not None else 0.0)
    return y, A.T @ y


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shift", [False, True])
def test_fused_products_are_the_products_in_every_range_and_block(
    monkeypatch: pytest.MonkeyPatch, threads: int, order: str, shift: bool
) -> None:
    monkeypatch.setattr(_fused, "FUSED_FROM", 0)
    monkeypatch.setattr(_fused, "BLOCK_BYTES", 8 * 90 * 7)  # blocks of 16 rows (the minimum)
    A, v, u = products((301, 90), seed=threads)
    A = np.asarray(A, order=order)
    fused = _fused.FusedProducts(A, A.T, threads=threads)
    assert len(fused.ranges) == (threads if fused._blas is not None else 1)
    sizes = [sum(rows.stop - rows.start for *_, rows in blocks) for blocks in fused.ranges]
    assert sum(sizes) == 301 and max(sizes) - min(sizes) <= 1
    y, w = np.full(301, np.nan), np.full(90, np.nan)
    a, shifted = (0.7, u) if shift else (0.0, None)
    fused(v, y, w, a, shifted)
    y_ref, w_ref = reference(A, v, a, shifted)
    scale = np.linalg.norm(A) ** 2 * np.linalg.norm(v) + np.linalg.norm(A) * np.linalg.norm(u)
    assert np.linalg.norm(y - y_ref) <= 1e-14 * scale
    assert np.linalg.norm(w - w_ref) <= 1e-14 * scale
    fused(v, y, w, a, shifted)  # again: the partial sums start from zero each call
    assert np.linalg.norm(w - w_ref) <= 1e-14 * scale


def test_small_matrices_take_two_whole_products() -> None:
    A, v, u = products((50, 20), seed=0)
    fused = _fused.FusedProducts(A, A.T)
    assert not fused.fused and fused.ranges == []
    y, w = np.empty(50), np.empty(20)
    fused(v, y, w, 2.0, u)
    y_ref, w_ref = reference(A, v, 2.0, u)
    assert np.allclose(y, y_ref, rtol=0, atol=1e-12) and np.allclose(w, w_ref, rtol=0, atol=1e-12)


@pytest.fixture
def blas() -> _fused._NumpyBlas:
    blas = _fused._numpy_blas()
    if blas.controller is None:
        pytest.skip("threadpoolctl does not see NumPy's BLAS here")
    return blas


def test_blas_threads_are_held_at_one_and_given_back(
    monkeypatch: pytest.MonkeyPatch, blas: _fused._NumpyBlas
) -> None:
    monkeypatch.setattr(_fused, "FUSED_FROM", 0)
    before = blas.controller.num_threads
    seen = []
    A, v, _ = products((64, 30), seed=1)
    fused = _fused.FusedProducts(A, A.T, threads=2)
    run_range = fused._run_range

    def watching(*args: object) -> None:
        seen.append(blas.controller.num_threads)
        run_range(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(fused, "_run_range", watching)
    fused(v, np.empty(64), np.empty(30))
    assert seen == [1, 1]
    assert blas.controller.num_threads == before


def test_blas_threads_are_given_back_after_an_error(
    monkeypatch: pytest.MonkeyPatch, blas: _fused._NumpyBlas
) -> None:
    monkeypatch.setattr(_fused, "FUSED_FROM", 0)
    before = blas.controller.num_threads
    A, v, _ = products((64, 30), seed=2)
    fused = _fused.FusedProducts(A, A.T, threads=2)
    with pytest.raises(ValueError):
        fused(v, np.empty(63), np.empty(30))  # y of the wrong length
    assert blas.controller.num_threads == before


@pytest.mark.parametrize("compiled", [False, True])
def test_concurrent_callers_agree_and_leave_the_threads_as_they_were(
    monkeypatch: pytest.MonkeyPatch, blas: _fused._NumpyBlas, compiled: bool
) -> None:
    """Row blocks through BLAS, or (``compiled``, where Numba is installed) the compiled
    kernel with its helper threads, called from four threads at once."""
    monkeypatch.setattr(_fused, "FUSED_FROM", 0)
    monkeypatch.setattr(_fused, "BLOCK_BYTES", 8 * 80 * 16)
    if compiled:
        pytest.importorskip("numba")
        monkeypatch.setattr(_fused, "COMPILED_FROM", 0)
    before = blas.controller.num_threads
    errors: list[float] = []

    def caller(seed: int) -> None:
        A, v, u = products((400, 80), seed=seed)
        fused = _fused.FusedProducts(A, A.T, threads=2)
        y, w = np.empty(400), np.empty(80)
        y_ref, w_ref = reference(A, v, 0.5, u)
        for _ in range(50):
            fused(v, y, w, 0.5, u)
            errors.append(float(np.linalg.norm(w - w_ref) / np.linalg.norm(w_ref)))

    callers = [threading.Thread(target=caller, args=(seed,)) for seed in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    assert len(errors) == 200 and max(errors) <= 1e-13
    assert blas.controller.num_threads == before


def test_numpy_blas_is_told_from_scipys() -> None:
    from threadpoolctl import ThreadpoolController

    pytest.importorskip("scipy.linalg")  # loads SciPy's own copy of OpenBLAS
    if len(ThreadpoolController().select(user_api="blas").lib_controllers) < 2:
        pytest.skip("one BLAS in this process")
    blas = _fused._NumpyBlas()
    assert blas.controller is not None
    assert "numpy" in blas.controller.filepath


@pytest.mark.parametrize("split", [False, True])
def test_gram_is_the_gram_matrix(monkeypatch: pytest.MonkeyPatch, split: bool) -> None:
    if split:
        monkeypatch.setattr(_fused, "GRAM_SPLIT_FROM", 0)
    A = np.random.default_rng(3).standard_normal((203, 40))
    G = _fused.gram(A)
    assert G.shape == (40, 40)
    assert np.linalg.norm(G - A.T @ A) <= 1e-13 * np.linalg.norm(A) ** 2


def test_gram_gives_the_blas_threads_back(
    monkeypatch: pytest.MonkeyPatch, blas: _fused._NumpyBlas
) -> None:
    monkeypatch.setattr(_fused, "GRAM_SPLIT_FROM", 0)
    before = blas.controller.num_threads
    _fused.gram(np.ones((64, 8)))
    assert blas.controller.num_threads == before
