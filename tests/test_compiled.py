"""gdla._compiled: the Numba kernels (the fused product pair, Gram--Schmidt), their use by
gdla._fused and gdla.svd, and the fallback to NumPy's BLAS without Numba."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gdla
from gdla import _compiled, _fused

numba = pytest.importorskip("numba")


def problem(m: int, n: int, dtype: type, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(x.astype(dtype) for x in (rng.standard_normal((m, n)),
                 rng.standard_normal(n), rng.standard_normal(m)))  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("rows", [(0, 37), (5, 29), (3, 4), (8, 8)])
def test_kernel_is_the_two_products_on_its_rows(
    dtype: type, shift: bool, rows: tuple[int, int]
) -> None:
    A, v, u = problem(37, 21, dtype, seed=rows[0])
    start, stop = rows
    y, w = np.full(37, np.nan, dtype=dtype), np.arange(21, dtype=dtype)
    kernel = _compiled.gram_rows()
    assert kernel is not None
    kernel(A, v, y, w, 0.75, u, shift, start, stop)
    block = A[start:stop].astype(np.float64)
    y_ref = block @ v - (0.75 * u[start:stop] if shift else 0.0)
    w_ref = np.arange(21) + block.T @ y_ref  # added to what w held
    eps = np.finfo(dtype).eps
    scale = np.linalg.norm(A) ** 2 * np.linalg.norm(v) + np.linalg.norm(A) * np.linalg.norm(u)
    assert np.linalg.norm(y[start:stop] - y_ref) <= 30 * eps * scale
    assert np.linalg.norm(w - w_ref) <= 30 * eps * scale
    assert np.isnan(y[:start]).all() and np.isnan(y[stop:]).all()  # other rows untouched


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m", [9, 301])
@pytest.mark.parametrize("chunk_rows", [8, 64])
def test_fused_products_take_the_kernel_on_claimed_chunks(
    monkeypatch: pytest.MonkeyPatch, threads: int, m: int, chunk_rows: int
) -> None:
    monkeypatch.setattr(_fused, "COMPILED_FROM", 0)
    monkeypatch.setattr(_fused, "CHUNK_BYTES", chunk_rows * 90 * 8)
    A, v, u = problem(m, 90, np.float64, seed=m + threads)
    fused = _fused.FusedProducts(A, A.T, threads=threads)
    assert fused.kernel is not None and fused.ranges == []
    assert fused.kernel_threads == threads
    y, w = np.full(m, np.nan), np.full(90, np.nan)
    for a, shifted in ((0.0, None), (0.7, u), (0.0, None)):  # partial sums restart each call
        fused(v, y, w, a, shifted)
        y_ref = A @ v - (a * shifted if shifted is not None else 0.0)
        scale = np.linalg.norm(A) ** 2 * np.linalg.norm(v) + np.linalg.norm(A) * np.linalg.norm(u)
        assert np.linalg.norm(y - y_ref) <= 1e-14 * scale
        assert np.linalg.norm(w - A.T @ y_ref) <= 1e-14 * scale


def test_only_c_contiguous_float_matrices_above_the_threshold_take_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    A, _, _ = problem(64, 30, np.float64, seed=3)
    assert _fused.FusedProducts(A, A.T).kernel is None  # below COMPILED_FROM
    monkeypatch.setattr(_fused, "COMPILED_FROM", 0)
    assert _fused.FusedProducts(A, A.T).kernel is not None
    assert _fused.FusedProducts(A, A.T, compiled=False).kernel is None
    F = np.asfortranarray(A)
    assert _fused.FusedProducts(F, F.T).kernel is None  # rows not contiguous: BLAS
    assert _fused.FusedProducts(A.astype(np.float32), A.T.astype(np.float32)).kernel is not None


def numpy_gram_schmidt(Q: np.ndarray, w: np.ndarray, keeps: float, tiny: float):
    """The NumPy passes lanczos_gram takes without Numba (the reference)."""
    before = np.linalg.norm(w)
    c = Q @ w
    w = w - c @ Q
    after = np.linalg.norm(w)
    passes = 1
    if after < keeps * before or after <= tiny:
        c2 = Q @ w
        w = w - c2 @ Q
        c = c + c2
        after = np.linalg.norm(w)
        passes = 2
    return w, c, after, passes == 2 and after <= tiny


@pytest.mark.parametrize("case", ["one pass", "two passes", "invariant"])
def test_compiled_gram_schmidt_takes_numpys_passes(case: str) -> None:
    rng = np.random.default_rng(7)
    Q = np.linalg.qr(rng.standard_normal((200, 12)))[0].T.copy()
    w = {
        "one pass": rng.standard_normal(200),
        "two passes": Q[3] + 1e-6 * rng.standard_normal(200),  # the first pass keeps 1e-6
        "invariant": 2.0 * Q[5] - Q[1],  # in the span: nothing is left
    }[case]
    tiny = 1e-12
    w_ref, c_ref, after_ref, broke_ref = numpy_gram_schmidt(Q, w.copy(), 1 / np.sqrt(2), tiny)
    kernel = _compiled.orthogonalise()
    assert kernel is not None
    c = np.full(12, np.nan)
    after, broke = kernel(Q, w, c, 1 / np.sqrt(2), tiny)
    assert broke == broke_ref == (case == "invariant")
    assert np.allclose(c, c_ref, rtol=0, atol=1e-13)
    assert np.allclose(w, w_ref, rtol=0, atol=1e-13) and abs(after - after_ref) <= 1e-13
    if case != "invariant":
        assert np.abs(Q @ w).max() <= 1e-14 * np.linalg.norm(w)


def test_svd_takes_the_same_steps_with_and_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled kernels change where the arithmetic runs, not the iteration: the same
    number of products and the same triplets to rounding, with Numba and without."""
    from gdla.bench_svd import peer_matrix

    monkeypatch.setattr(_fused, "COMPILED_FROM", 0)
    A = peer_matrix("0.99^j", 600, 300)
    counts = []
    original = _fused.FusedProducts.__call__

    def counting(self: _fused.FusedProducts, *args: object, **kwargs: object) -> None:
        counts[-1][0] += 1
        counts[-1][1] = self.kernel is not None
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_fused.FusedProducts, "__call__", counting)
    results = []
    for available in (True, False):
        counts.append([0, None])
        with monkeypatch.context() as patch:
            if not available:
                patch.setattr(_compiled, "_KERNELS", [None])
            results.append(gdla.svd(A, 10, rtol=1e-10))
    (with_numba, used), (without, unused) = counts
    assert used is True and unused is False
    assert with_numba == without
    assert torch.allclose(results[0].S, results[1].S, rtol=1e-12, atol=0)
    assert all(result.converged for result in results)


def test_compiled_products_refuse_vectors_of_the_wrong_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel checks no bounds: a wrong length must raise, not write past an array."""
    monkeypatch.setattr(_fused, "COMPILED_FROM", 0)
    A, v, u = problem(64, 30, np.float64, seed=2)
    fused = _fused.FusedProducts(A, A.T, threads=2)
    wrong = [
        (v, np.empty(63), np.empty(30)),
        (v[:29], np.empty(64), np.empty(30)),
        (v, np.empty(64), np.empty(31)),
        (v, np.empty(64), np.empty(30), 1.0, u[:5]),
    ]
    for arguments in wrong:
        with pytest.raises(ValueError, match="64 x 30"):
            fused(*arguments)


def test_helpers_watch_between_products_and_stop_when_they_are_done_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setattr(_fused, "COMPILED_FROM", 0)
    A, v, _ = problem(400, 80, np.float64, seed=5)
    fused = _fused.FusedProducts(A, A.T, threads=2)
    y, w = np.empty(400), np.empty(80)
    control = fused._control
    wakes = []
    wake = _fused._HELPERS.wake
    monkeypatch.setattr(_fused._HELPERS, "wake", lambda *args: (wakes.append(1), wake(*args)))
    for _ in range(200):  # a short pause between products, well within PATIENCE polls
        fused(v, y, w)
        assert np.allclose(w, A.T @ (A @ v), rtol=1e-13, atol=0)
        time.sleep(1e-4)
    # The first finds no helper watching; most later ones find it (a loaded machine may
    # keep the helper off the cores now and then).
    assert 1 <= len(wakes) < 100
    del fused  # done with: the helper stops watching at once, not after PATIENCE polls
    deadline = time.monotonic() + 10
    while control[_compiled.AWAKE] != 0 and time.monotonic() < deadline:
        time.sleep(1e-4)
    assert control[_compiled.AWAKE] == 0 and control[_compiled.STOP] == 1
