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
