"""The benchmark's timing helper and machine facts (``gdla.bench``), on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from gdla import bench


class FakeClock:
    """``time.perf_counter`` that advances only when the timed function runs."""

    def __init__(self, durations: Iterator[float]) -> None:
        self.now = 0.0
        self.durations = durations
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


def test_median_time_ignores_the_warm_up_and_one_slow_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(iter([1.0, 0.1, 0.1, 5.0, 0.1, 0.1]))  # a slow first call, one stall
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    assert bench.median_time(clock.work, repeats=5) == pytest.approx(0.1)
    assert clock.calls == 6  # warm-up + five samples of one call each


def test_median_time_loops_short_calls_and_reports_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(iter([1e-4] * 1000))
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    assert bench.median_time(clock.work, repeats=3, sample=2e-3) == pytest.approx(1e-4)
    assert clock.calls == 1 + 3 * 20  # each sample fills 2 ms with 20 calls of 0.1 ms


def test_machine_names_what_a_timing_depends_on() -> None:
    facts = bench.machine()
    assert facts["torch"] == torch.__version__
    assert facts["threads"] == torch.get_num_threads()
    assert isinstance(facts["cpu"], str) and facts["cpu"]
    assert isinstance(facts["cpus"], int) and facts["cpus"] >= 1
    assert facts["blas"] == bench._blas_library(torch.__config__.show())
    assert facts["simd"] == torch.backends.cpu.get_cpu_capability()
    assert {"python", "system"} <= facts.keys()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605\n"
            "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl, PERF=1,",
            "MKL 2024.2 (LAPACK: MKL)",
        ),
        (
            "  - Build settings: BLAS_INFO=open, LAPACK_INFO=open, TORCH_VERSION=2.13.0",
            "OpenBLAS (LAPACK: OpenBLAS)",
        ),
        (
            "  - Build settings: BLAS_INFO=accelerate, LAPACK_INFO=accelerate,",
            "Accelerate (LAPACK: Accelerate)",
        ),
        ("  - Build settings: BUILD_TYPE=Release,", "unknown (LAPACK: unknown)"),
    ],
)
def test_machine_names_the_blas_torch_was_built_with(config: str, expected: str) -> None:
    assert bench._blas_library(config) == expected
