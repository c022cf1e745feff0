"""The benchmark's timing helper and machine facts (``gdla.bench``), on a fake clock."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import gdla
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


def test_interleaved_medians_take_the_calls_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    # A slow spell during the second round slows both functions' samples of that round,
    # and the median of each drops it; the warm-up calls (first two) are not timed, and
    # every other round takes the functions in reverse order.
    order: list[str] = []
    durations = iter([9.0, 9.0, 1.0, 2.0, 10.0, 5.0, 1.0, 2.0, 2.0, 1.0])
    clock = FakeClock(durations)
    monkeypatch.setattr(bench.time, "perf_counter", clock)

    def timed(name: str) -> Callable[[], None]:
        def call() -> None:
            order.append(name)
            clock.work()

        return call

    medians = bench.interleaved_medians({"a": timed("a"), "b": timed("b")}, repeats=4)
    assert medians == pytest.approx({"a": 1.0, "b": 2.0})
    assert order == ["a", "b"] + ["a", "b", "b", "a"] * 2


def test_machine_names_what_a_timing_depends_on() -> None:
    facts = bench.machine()
    assert facts["torch"] == torch.__version__
    assert facts["threads"] == torch.get_num_threads()
    assert isinstance(facts["cpu"], str) and facts["cpu"]
    assert isinstance(facts["cpus"], int) and facts["cpus"] >= 1
    assert facts["blas"] == bench._blas_library(torch.__config__.show())
    assert facts["simd"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(facts["numpy_blas"], str) and facts["numpy_blas"]
    cache = Path("/sys/devices/system/cpu/cpu0/cache")
    if cache.is_dir():  # Linux: the largest level, with its size
        levels = [int((index / "level").read_text()) for index in cache.glob("index*")]
        assert str(facts["cache"]).startswith(f"L{max(levels)}, ") and "MiB" in str(facts["cache"])
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


def tiny_rows(quick: bool) -> list[bench.Row]:
    """A one-row table in milliseconds, standing in for ``bench._run`` in the CLI tests."""
    return [bench.nonhermitian_row(16)]


def test_run_moves_every_input_to_the_requested_device(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def rows_on_the_device(quick: bool) -> list[bench.Row]:
        seen.append(bench._on(torch.ones(2)).device)
        return []

    monkeypatch.setattr(bench, "_run", rows_on_the_device)
    bench.run(device="meta")  # a device every torch has, unlike cuda
    assert seen == [torch.device("meta")]
    assert bench._on(torch.ones(2)).device == torch.device("cpu")  # reset after the run


def test_main_runs_on_the_cpu_and_records_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(bench, "_run", tiny_rows)
    path = tmp_path / "data" / "cpu-bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--record", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device cpu: ") and "non-Hermitian solve, 16x16" in out
    record = bench.load_record(path)
    assert record is not None and record["device"] == "cpu"
    assert [row.task for row in record["rows"]] == [
        "non-Hermitian solve, 16x16, cond 1e+03, backward error"
    ]


@pytest.mark.parametrize("name", ["cuda:99", "no-such-device"])
def test_an_unavailable_device_is_a_clear_error(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(gdla.OptionError, match=f"found '{name}'"):
        bench.bench_device(name)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--device", name])
    assert exit_info.value.code == 2
    assert f"'{name}'" in capsys.readouterr().err


def test_a_record_round_trips_with_its_provenance(tmp_path: Path) -> None:
    rows = tiny_rows(quick=True)
    written = bench.record_table(rows, tmp_path / "record.json", "cpu")
    record = bench.load_record(tmp_path / "record.json")
    assert record is not None and record["rows"] == rows
    assert record["device"] == written["device"] == "cpu"
    assert record["device_name"] == bench.machine()["cpu"]
    assert record["torch"] == torch.__version__ and record["cuda"] == torch.version.cuda
    date = datetime.datetime.strptime(record["date"], "%Y-%m-%d %H:%M UTC")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs(now - date) < datetime.timedelta(minutes=5)
    assert record["commit"] is None or isinstance(record["commit"], str)
    assert bench.load_record(tmp_path / "absent.json") is None
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="missing device, device_name"):
        bench.load_record(tmp_path / "other.json")


def test_the_gpu_section_shows_the_record_or_says_there_is_none() -> None:
    absent = bench.record_section(None)
    assert (
        absent.startswith("No GPU benchmark has been recorded yet") and "`make gpu-check`" in absent
    )
    rows = [bench.Row("t", "m", 3, 1e-14, 0.5, "r", 1.0, "g", True),
            bench.Row("u", "m", 4, 1e-3, 2.0, "r", 1.0, "g", False)]  # fmt: skip
    record = {"device": "cuda:0", "device_name": "Some GPU", "torch": "2.13.0", "cuda": "12.8",
              "date": "2026-12-01 19:00 UTC", "commit": "f4f5160", "rows": rows}  # fmt: skip
    shown = bench.record_section(record)
    assert shown.startswith(
        "The latest record ran on Some GPU (`cuda:0`), with torch 2.13.0 and CUDA 12.8,"
        " on 2026-12-01 19:00 UTC at commit `f4f5160`; it met 1 of 2 goals.\n\n"
    )
    assert shown.endswith(bench.format_table(rows))
