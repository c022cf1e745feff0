"""gdla.svd's single-vector Lanczos kernel and the peer comparison of gdla.bench_svd.

The kernel (gdla._krylov, the default of gdla.svd on matrices with min(m, n) >= 3k + 20)
is checked against torch.linalg.svd over dtypes, batches and wide shapes, at the
two-sided residual the benchmark uses, and on rank-deficient inputs (the Krylov space
breaks down and restarts from a fresh vector).  The peer runners run at tiny sizes;
scipy and scikit-learn are optional dependencies of the benchmark, so their tests are
skipped with the reason when the library is missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import gdla
from gdla import bench_svd
from gdla._krylov import default_basis, lanczos_gram, lanczos_single
from gdla.matrices import decaying_spectrum, with_singular_values
from gdla.metrics import orthogonality_error

F64 = torch.float64


def gdla_residual(A: torch.Tensor, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> float:
    """gdla.svd's documented residual max(||AV - US||_F, ||A^H U - VS||_F) / ||A||_F."""
    S = S.to(A.dtype).unsqueeze(-2)
    left = torch.linalg.matrix_norm(A @ V - U * S)
    right = torch.linalg.matrix_norm(A.mH @ U - V * S)
    return float((torch.maximum(left, right) / torch.linalg.matrix_norm(A)).max())


@pytest.mark.parametrize("spectrum", list(bench_svd.SPECTRA))
def test_default_meets_the_two_sided_target(spectrum: str) -> None:
    # rtol bounds the Frobenius residual over ||A||_F >= sigma_1, so the per-triplet
    # residual over sigma_1 is at most rtol * ||A||_F / sigma_1: asking for that much
    # less reaches the benchmark's target.
    A = bench_svd.peer_matrix(spectrum, 300, 150)
    target, k = 1e-10, 10
    sigma = torch.linalg.svdvals(A)
    rtol = target * float(sigma[0] / torch.linalg.matrix_norm(A))
    result = gdla.svd(A, k, rtol=rtol)
    assert result.converged, result.message
    V = result.Vh.mH
    assert gdla_residual(A, result.U, result.S, V) <= rtol
    assert bench_svd.two_sided_residual(A, result.U, result.S, V) <= target
    assert torch.allclose(result.S, sigma[:k], rtol=0, atol=1e-9 * float(sigma[0]))


def test_default_takes_far_fewer_products_than_the_block_method_on_a_flat_spectrum() -> None:
    A = bench_svd.peer_matrix("gaussian", 300, 150)
    single = {"rtol": 1e-10}
    _, products = bench_svd.run_peer("gdla", A, 10, single)
    with bench_svd._TorchProducts(A) as counter:
        block = gdla.svd(A, 10, rtol=1e-10, options={"oversampling": 10})
    assert block.converged
    assert 3 * products < counter.count, (products, counter.count)


CASES = [
    (torch.float64, (), 80, 50),
    (torch.float32, (), 80, 50),
    (torch.complex128, (), 70, 45),
    (torch.complex64, (), 70, 45),
    (torch.float64, (3,), 60, 40),
    (torch.complex128, (2,), 40, 60),  # wide, batched, complex
    (torch.float64, (), 45, 90),  # wide
]


@pytest.mark.parametrize(("dtype", "batch", "m", "n"), CASES)
def test_single_vector_kernel_matches_torch_linalg_svd(
    dtype: torch.dtype, batch: tuple[int, ...], m: int, n: int
) -> None:
    k = 4
    assert k + 2 * min(k + 10, min(m, n)) <= min(m, n)  # the single-vector path
    size = min(m, n)
    s = 0.8 ** torch.arange(size, dtype=F64)
    A = with_singular_values(s.expand(*batch, size), m, n, seed=3, dtype=dtype)
    result = gdla.svd(A, k)
    eps = torch.finfo(dtype).eps
    assert result.converged, result.message
    assert result.U.shape == (*batch, m, k) and result.Vh.shape == (*batch, k, n)
    assert result.U.dtype == dtype and result.S.dtype == A.real.dtype
    exact = torch.linalg.svdvals(A)[..., :k]
    assert float((result.S - exact).abs().max()) <= 1000 * eps
    assert float(orthogonality_error(result.U).max()) <= 1000 * eps
    assert float(orthogonality_error(result.Vh.mH).max()) <= 1000 * eps
    assert gdla_residual(A, result.U, result.S, result.Vh.mH) <= 100 * eps
    # Same singular vectors as LAPACK's, up to the phase the sign convention fixes.
    U, _, Vh = torch.linalg.svd(A, full_matrices=False)
    overlap = (U[..., :k].mH @ result.U).diagonal(dim1=-2, dim2=-1).abs()
    assert float((overlap - 1).abs().max()) <= 1e4 * eps


def test_large_matrices_agree() -> None:
    A = bench_svd.peer_matrix("0.99^j", 1200, 900)
    (U, S, V), products = bench_svd.run_peer("gdla", A, 5, {"rtol": 1e-12})
    assert 0 < products < 400
    assert gdla_residual(A, U, S, V) <= 1e-12
    assert torch.allclose(S, torch.tensor(0.99, dtype=F64) ** torch.arange(5), rtol=1e-11)
    assert float(orthogonality_error(U)) < 1e-13 and float(orthogonality_error(V)) < 1e-13


def test_gram_product_by_blocks_of_rows_agrees_and_counts_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Matrices larger than the cache form A^H (A v) by blocks of rows; forced here on a
    # small one, with blocks of 37 rows (the last one shorter).
    from gdla import _fused

    A = bench_svd.peer_matrix("0.99^j", 900, 400)
    (_, S, _), products = bench_svd.run_peer("gdla", A, 6, {"rtol": 1e-12})
    monkeypatch.setattr(_fused, "FUSED_FROM", 0)  # NumPy's products (a plain CPU matrix)
    monkeypatch.setattr(_fused, "BLOCK_BYTES", 8 * 400 * 37)
    (U, S_blocked, V), products_blocked = bench_svd.run_peer("gdla", A, 6, {"rtol": 1e-12})
    assert products_blocked == products
    assert torch.allclose(S_blocked, S, rtol=0, atol=1e-13)
    assert gdla_residual(A, U, S_blocked, V) <= 1e-12
    assert bench_svd.two_sided_residual(A, U, S_blocked, V) <= 1e-10


def test_kernel_restarts_from_a_fresh_vector_when_the_space_breaks_down() -> None:
    # Rank 5: the Krylov space of one vector is invariant after 5 steps; the kernel
    # continues from a random vector orthogonal to it and finds the zero singular values.
    s = torch.cat([torch.linspace(2, 1, 5, dtype=F64), torch.zeros(55, dtype=F64)])
    A = with_singular_values(s, 100, 60, seed=1)
    generator = torch.Generator().manual_seed(0)
    (U, S, V), outcome = lanczos_single(A, 8, 30, generator, rtol=1e-13, max_iter=100)
    assert outcome.converged, outcome.message
    assert torch.allclose(S, s[:8], atol=1e-12)
    assert float(orthogonality_error(U)) < 1e-12 and float(orthogonality_error(V)) < 1e-12


def test_kernel_thick_restarts_keep_the_residual_honest() -> None:
    # A basis of k + 2 forces a restart after almost every step.
    A = decaying_spectrum(200, 150, rate=0.97, seed=7)
    generator = torch.Generator().manual_seed(0)
    (U, S, V), outcome = lanczos_single(A, 4, 6, generator, rtol=1e-11, max_iter=5000)
    assert outcome.converged, outcome.message
    assert outcome.nit > 10
    assert gdla_residual(A, U, S, V) <= 1e-11
    assert torch.allclose(S, torch.linalg.svdvals(A)[:4], rtol=1e-10)


def test_gram_kernel_runs_where_its_floor_allows_and_hands_over_where_not() -> None:
    # Lanczos on A^H A squares the spectrum: its floor eps s_1^2 (sum_i s_i^-2)^(1/2) / ||A||_F
    # allows rtol = 1e-12 for 0.9^j (s_1 / s_10 = 2.6) but not for 0.2^j (s_1 / s_10 = 2e6).
    k, rtol = 10, 1e-12
    for rate, runs in ((0.9, True), (0.2, False)):
        s = rate ** torch.arange(120, dtype=F64)
        A = with_singular_values(s, 300, 120, seed=2)
        generator = torch.Generator().manual_seed(0)
        factors, outcome = lanczos_gram(A, k, 40, generator, rtol=rtol, max_iter=100)
        assert (factors is not None) == runs, (rate, outcome.message)
        if factors is not None:
            U, S, V = factors
            assert outcome.converged and gdla_residual(A, U, S, V) <= rtol
            assert float(orthogonality_error(U)) < 1e-14 and float(orthogonality_error(V)) < 1e-14
        else:  # the two-sided kernel takes over and continues the count
            check_hand_over(A, k, rtol, s[:k])


def check_hand_over(A: torch.Tensor, k: int, rtol: float, expected: torch.Tensor) -> None:
    calls: list[int] = []
    generator = torch.Generator().manual_seed(0)
    (U, S, V), outcome = lanczos_single(
        A, k, 40, generator, rtol=rtol, max_iter=100, callback=lambda i, r: calls.append(i)
    )
    assert outcome.converged and gdla_residual(A, U, S, V) <= rtol
    assert outcome.nit == len(outcome.history) == len(calls) and calls == sorted(set(calls))
    assert torch.allclose(S, expected, rtol=1e-10)


def test_default_basis() -> None:
    assert default_basis(10, 1000) == 40
    assert default_basis(30, 1000) == 90
    assert default_basis(10, 35) == 35


def test_default_respects_max_iter_and_callback() -> None:
    A = bench_svd.peer_matrix("gaussian", 200, 100)
    calls: list[tuple[int, float]] = []
    result = gdla.svd(A, 5, rtol=1e-14, max_iter=2, callback=lambda i, r: calls.append((i, r)))
    assert not result.converged and result.nit == 2 and len(calls) == 2
    assert result.history == [r for _, r in calls]


# --- the peer comparison ------------------------------------------------------------------


def test_two_sided_residual_sees_both_sides() -> None:
    A = decaying_spectrum(30, 20, rate=0.5, seed=0)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    U, S, V = U[:, :3], S[:3], Vh[:3].mH
    assert bench_svd.two_sided_residual(A, U, S, V) < 1e-14
    # U = A V / S makes the left side vanish whatever V is; the right side does not.
    W = torch.linalg.qr(V + 1e-3 * torch.randn(20, 3, dtype=F64)).Q
    AW = A @ W
    norms = torch.linalg.vector_norm(AW, dim=0)
    assert bench_svd.two_sided_residual(A, AW / norms, norms, W) > 1e-5


def test_fit_slope_recovers_a_power_law() -> None:
    sizes = [250, 500, 1000, 2000]
    assert bench_svd.fit_slope(sizes, [3e-9 * n**1.5 for n in sizes]) == pytest.approx(1.5)


def test_gdla_and_lowrank_runners_count_products() -> None:
    A = bench_svd.peer_matrix("0.9^j", 120, 60)
    (U, S, V), products = bench_svd.run_peer("lowrank", A, 5, {"q": 15, "niter": 2})
    assert products == (2 * 2 + 2) * 15  # sketch, two power iterations, projection
    knob, residual, products = bench_svd.tune_peer("gdla", A, 5, 1e-8)
    assert knob is not None and residual <= 1e-8 and products > 0


@pytest.mark.parametrize(("spectrum", "rtol"), [("0.9^j", 1e-6), ("gaussian", 1e-11)])
def test_gdla_products_counted_on_torch_are_those_the_timed_numpy_path_takes(
    monkeypatch: pytest.MonkeyPatch, spectrum: str, rtol: float
) -> None:
    """run_peer counts gdla.svd's products under a torch function mode, which sends them
    through torch; the timed call forms them in NumPy.  The same steps: two products per
    step, plus the k final products A V Y once a thick restart has dropped the kept ones."""
    from gdla import _fused

    A, k = bench_svd.peer_matrix(spectrum, 400, 200), 10
    _, counted = bench_svd.run_peer("gdla", A, k, {"rtol": rtol})
    steps = []
    product = _fused.FusedProducts.__call__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        steps.append(1)
        product(self, *args, **kwargs)

    monkeypatch.setattr(_fused.FusedProducts, "__call__", counting)
    gdla.svd(A, k, rtol=rtol)
    restarted = len(steps) > default_basis(k, 200)
    assert counted == 2 * len(steps) + (k if restarted else 0)
    assert restarted == (spectrum == "gaussian")  # both cases are exercised


@pytest.mark.parametrize("method", ["arpack", "propack", "lobpcg", "sklearn"])
def test_peer_runners(method: str) -> None:
    library = "sklearn" if method == "sklearn" else "scipy"
    pytest.importorskip(library, reason=f"{library} is an optional benchmark dependency")
    A = bench_svd.peer_matrix("0.9^j", 120, 60)
    knob, residual, products = bench_svd.tune_peer(method, A, 5, 1e-8)
    assert knob is not None, f"{method} should reach 1e-8 on an easy 120 x 60 problem"
    assert residual <= 1e-8 and products > 0
    (U, S, V), _ = bench_svd.run_peer(method, A, 5, knob)
    assert U.shape == (120, 5) and S.shape == (5,) and V.shape == (60, 5)
    assert torch.allclose(S, torch.linalg.svdvals(A)[:5], rtol=1e-6)


def test_peer_table_and_its_format() -> None:
    pytest.importorskip("scipy", reason="scipy is an optional benchmark dependency")
    runs = bench_svd.peer_table(
        ["0.9^j"], [(120, 60)], [1e-8], k=5, methods=["gdla", "arpack"], repeats=1, threads=1
    )
    assert [run.method for run in runs] == ["gdla", "arpack"]
    assert all(run.met and math.isfinite(run.seconds) for run in runs)
    table = bench_svd.format_peer_table(runs)
    assert "| 0.9^j | 120x60 | 1e-08 |" in table and "1.00x" in table


def test_bench_cli_delegates_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    from gdla import bench

    received: list[list[str]] = []
    monkeypatch.setattr(bench_svd, "main", lambda argv: received.append(argv) or 0)
    assert bench.main(["--peers", "--quick", "--threads", "2"]) == 0
    assert bench.main(["--peers", "--record", "peers.json"]) == 0
    assert received == [["--threads", "2", "--quick"], ["--record", "peers.json"]]
    with pytest.raises(SystemExit):
        bench.main(["--threads", "2"])  # an option of the peer comparison only


# --- the record the benchmarks chapter shows ----------------------------------------------


def test_peer_record_round_trip_and_its_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same code path as `python -m gdla.bench --peers --record PATH`, at a tiny size;
    # with the thread settings already in the environment, main does not run itself again.
    pytest.importorskip("scipy", reason="scipy is an optional benchmark dependency")
    for name, value in bench_svd.QUIET_THREADS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "data" / "svd-peers.json"
    options = (
        "--sizes 300x150 --spectra 0.9^j --targets 1e-8 --methods gdla,arpack --repeats 1"
        " --sparse-size 1000x300 --sparse-density 0.01 --scaling-ns 100,150"
    )
    argv = [*options.split(), "--record", str(path)]
    assert bench_svd.main(argv) == 0
    assert f"recorded in {path}" in capsys.readouterr().out
    json.loads(path.read_text(encoding="utf-8"))  # strict JSON: no Infinity or NaN
    record = bench_svd.load_peer_record(path)
    assert record is not None
    assert [(run.method, run.m, run.n, run.target) for run in record["runs"]] == [
        ("gdla", 300, 150, 1e-8), ("arpack", 300, 150, 1e-8)
    ]  # fmt: skip
    assert all(isinstance(run, bench_svd.PeerRun) and run.met for run in record["runs"])
    (sparse,) = record["sparse"]
    assert (sparse.m, sparse.n, sparse.nnz, sparse.target) == (1000, 300, 3000, 1e-8)
    assert sparse.gdla_residual <= 1e-8 and sparse.arpack_residual <= 1e-8
    assert set(record["scaling"]) == {"gdla", "arpack"}
    assert all(fit["ns"] == [100, 150] and fit["slope"] is not None
               for fit in record["scaling"].values())  # fmt: skip
    assert record["options"]["sizes"] == [[300, 150]] and record["options"]["repeats"] == 1
    assert record["options"]["grids"]["gdla"].startswith("rtol = target")
    assert record["threads"] == torch.get_num_threads()
    assert record["versions"]["scipy"] and record["versions"]["torch"]
    assert record["machine"]["cpus"] >= 1 and record["date"].endswith("UTC")
    assert record["load_before"] is None or len(record["load_before"]) == 3
    text = bench_svd.peer_record_section(record)
    assert text.startswith(f"Recorded on {record['date']}")
    command = bench_svd.peer_record_command(record, "peers.json")
    assert f"`{bench_svd.peer_record_command(record)}`" in text
    assert command.startswith("python -m gdla.bench --peers --sizes 300x150 --targets 1e-08")
    assert "--spectra 0.9^j --methods gdla,arpack --sparse-size 1000x300" in command
    assert command.endswith("--scaling-ns 100,150 --record peers.json")
    assert bench_svd.format_peer_table(record["runs"]) in text
    assert "| 1000x300 | 3,000 | 1e-08 |" in text and "| gdla |" in text


def test_peer_record_infinite_times_survive_and_a_malformed_file_raises(tmp_path: Path) -> None:
    assert bench_svd.load_peer_record(tmp_path / "absent.json") is None
    assert "No peer comparison has been recorded yet" in bench_svd.peer_record_section(None)
    failed = bench_svd.PeerRun("gaussian", 40, 20, 1e-12, "lowrank", "none meets target",
                               math.inf, 0, math.inf)  # fmt: skip
    record: dict[str, Any] = {key: None for key in bench_svd._PEER_RECORD_KEYS}
    record.update(kind=bench_svd.PEER_RECORD_KIND, runs=[failed], sparse=[], scaling={})
    path = tmp_path / "record.json"
    bench_svd.write_peer_record(record, path)
    loaded = bench_svd.load_peer_record(path)
    assert loaded is not None and loaded["runs"] == [failed]
    for text in ("{not json", "[]", '{"kind": "gdla.bench_svd peers"}',
                 json.dumps({**record, "runs": [{"method": "gdla"}]})):  # fmt: skip
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match="is not a gdla.bench_svd record"):
            bench_svd.load_peer_record(path)


def test_propack_is_also_tuned_in_its_step_limit() -> None:
    # svds' PROPACK runs Lanczos without restarts, at most maxiter (default 10 k) steps:
    # on flat spectra the default raises, so the grid tries each tolerance with more.
    knobs = list(bench_svd._grid("propack", 1e-10, 10, 1000))
    limits = {knob.get("maxiter") for knob in knobs}
    assert limits == {None, *bench_svd.PROPACK_STEPS}
    capped = [knob for knob in knobs if "maxiter" in knob]
    assert capped and all(knob["extra"]["maxiter"] == knob["maxiter"] for knob in capped)
    assert "Lanczos steps" in bench_svd.describe_grid("propack")


def test_checks_come_closer_together_as_products_get_dearer() -> None:
    from gdla._krylov import max_check_gap
    from gdla._operator import as_operator, view_of

    def gap(m: int, n: int) -> int:  # a dense float64 view, without allocating m x n
        return max_check_gap(view_of(torch.zeros((), dtype=F64).expand(m, n)))

    assert gap(2000, 1000) == 16  # 16 MB: a check costs about a step
    assert gap(4000, 2000) == 8 and gap(8000, 4000) == 4 and gap(40000, 20000) == 4
    sparse = torch.eye(300, dtype=F64).to_sparse()
    assert max_check_gap(as_operator("t", "A", sparse)) == 16
    M = torch.randn(30, 20, dtype=F64)
    operator = gdla.LinearOperator((30, 20), lambda X: M @ X, lambda Y: M.mT @ Y, dtype=F64)
    assert max_check_gap(as_operator("t", "A", operator)) == 16  # cost unknown


def test_pooled_records_take_each_methods_best_time_and_refuse_unlike_runs() -> None:
    """pool_peer_records: best time over the runs where the settings agree, summed rounds,
    the first run's load before and the last's after; a different commit, option or
    setting raises, and one record comes back as it is."""
    import dataclasses

    data = Path(__file__).resolve().parent.parent / "book" / "data"
    first = bench_svd.load_peer_record(data / "svd-peers-other.json")
    second = bench_svd.load_peer_record(data / "svd-peers.json")
    assert first is not None and second is not None
    pooled = bench_svd.pool_peer_records([first, second])
    for run, a, b in zip(pooled["runs"], first["runs"], second["runs"], strict=True):
        assert (run.setting, run.products) == (a.setting, a.products) == (b.setting, b.products)
        assert run.seconds == min(a.seconds, b.seconds)
    for row, a, b in zip(pooled["sparse"], first["sparse"], second["sparse"], strict=True):
        assert row.gdla_seconds == min(a.gdla_seconds, b.gdla_seconds)
    rounds = first["options"]["repeats"] + second["options"]["repeats"]
    assert pooled["options"]["repeats"] == rounds
    assert pooled["load_before"] == first["load_before"]
    assert pooled["load_after"] == second["load_after"]
    assert [run["date"] for run in pooled["pooled"]] == [first["date"], second["date"]]
    assert "2 runs of one command, pooled" in bench_svd.peer_record_section(pooled)
    assert f"--repeats {first['options']['repeats']} " in bench_svd.peer_record_command(pooled)
    assert bench_svd.pool_peer_records([first]) is first
    with pytest.raises(ValueError, match="commit"):
        bench_svd.pool_peer_records([first, dict(second, commit="0000000")])
    retuned = [dataclasses.replace(second["runs"][0], setting="rtol=1.0e-03")] + second["runs"][1:]
    with pytest.raises(ValueError, match="tuned differently"):
        bench_svd.pool_peer_records([first, dict(second, runs=retuned)])
    with pytest.raises(ValueError, match="at least one"):
        bench_svd.pool_peer_records([])
