"""Every public function on every available device: results stay on the input's device.

On a machine without a GPU only ``cpu`` runs; on one with CUDA the same checks run
there too (``pytest tests/test_devices.py`` is the check to run on a GPU machine).
"""

from __future__ import annotations

import pytest
import torch

import gdla

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F64, C64 = torch.float64, torch.complex64


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


def matrix(n: int, device: torch.device, dtype: torch.dtype = F64, batch: int = 3) -> torch.Tensor:
    A = gdla.matrices.with_condition_number(n, 10.0, batch=(batch,), seed=0, dtype=dtype)
    return A.to(device)


@pytest.mark.parametrize("method", ["lanczos", "subspace", "randomized", "riemannian"])
def test_svd_stays_on_the_device(device: torch.device, method: str) -> None:
    A = matrix(6, device)
    result = gdla.svd(A, 3, method=method, max_iter=5000, rtol=1e-10)
    assert result.converged, result.message
    assert {result.U.device, result.S.device, result.Vh.device} == {A.device}
    exact = torch.linalg.svdvals(A.cpu())[..., :3]
    assert torch.allclose(result.S.cpu(), exact, rtol=1e-9)


def test_inverse_and_solve_stay_on_the_device(device: torch.device) -> None:
    A = matrix(8, device, C64)
    X = gdla.inverse(A)
    assert X.converged and X.X.device == A.device and X.X.dtype == C64
    b = torch.ones(3, 8, dtype=C64, device=device)
    x = gdla.solve(A, b)
    assert x.converged and x.x.device == A.device and x.x.dtype == C64
    assert torch.allclose(x.x.cpu(), torch.linalg.solve(A.cpu(), b.cpu()), atol=1e-4)


def test_complete_stays_on_the_device(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(20, 2, generator=generator, dtype=F64) @ torch.randn(
        2, 15, generator=generator, dtype=F64
    )
    mask = torch.rand(20, 15, generator=generator) < 0.7
    result = gdla.complete(truth.to(device), mask.to(device), 2)
    assert result.converged, result.message
    assert {result.X.device, result.L.device, result.R.device} == {device}
    assert float((result.X.cpu() - truth).norm() / truth.norm()) < 1e-8


@pytest.mark.parametrize("method", ["polar-express", "newton-schulz", "newton"])
def test_polar_stays_on_the_device(device: torch.device, method: str) -> None:
    A = matrix(7, device)
    result = gdla.polar(A, method=method)
    assert result.converged, result.message
    assert {result.U.device, result.H.device} == {A.device}
    U, _, Vh = torch.linalg.svd(A.cpu())
    assert torch.allclose(result.U.cpu(), U @ Vh, atol=1e-10)


def test_muon_runs_in_bfloat16_on_the_device(device: torch.device) -> None:
    A = matrix(16, device).to(torch.bfloat16)
    result = gdla.polar(A, method="muon")
    assert result.U.device == A.device and result.U.dtype == torch.bfloat16
    singular_values = torch.linalg.svdvals(result.U.float().cpu())
    assert float(singular_values.min()) > 0.5 and float(singular_values.max()) < 1.5
