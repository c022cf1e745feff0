"""Inputs whose squared entries would overflow or underflow: every function rescales them."""

from __future__ import annotations

import pytest
import torch

import gdla
from gdla._scaling import divide, power_of_two_scale

F64, F32 = torch.float64, torch.float32
# (dtype, factor, accuracy): factors whose squares overflow or underflow in that dtype.
EXTREMES = [
    (F64, 1e-200, 1e-11),
    (F64, 1e200, 1e-11),
    (F64, 1e-300, 1e-11),
    (F64, 1e300, 1e-11),
    (F32, 1e-30, 1e-3),
    (F32, 1e30, 1e-3),
]


def well_conditioned(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=generator, dtype=F64).add(8 * torch.eye(n)).to(dtype)


def test_scale_is_one_in_the_normal_range_and_a_power_of_two_outside() -> None:
    A = torch.randn(2, 5, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert bool((power_of_two_scale(A) == 1).all())
    assert divide(A, power_of_two_scale(A)) is A  # no copy in the usual case
    huge = torch.stack([A[0] * 1e250, A[1]])
    scale = power_of_two_scale(huge)
    assert float(scale[1]) == 1.0
    mantissa, _ = torch.frexp(scale[0])
    assert float(mantissa) == 0.5  # an exact power of two
    assert 0.5 <= float((huge[0] / scale[0]).abs().max()) < 1.0
    assert float(power_of_two_scale(torch.zeros(3, 3, dtype=F64))) == 1.0


@pytest.mark.parametrize(("dtype", "factor", "accuracy"), EXTREMES)
def test_svd_of_extreme_matrices(dtype: torch.dtype, factor: float, accuracy: float) -> None:
    B = well_conditioned(12, dtype, seed=1)
    result = gdla.svd(B * factor, 4)
    assert result.converged, result.message
    expected = torch.linalg.svdvals(B.double())[:4]
    assert torch.allclose((result.S / factor).double(), expected, rtol=accuracy)


@pytest.mark.parametrize(("dtype", "factor", "accuracy"), EXTREMES)
def test_inverse_of_extreme_matrices(dtype: torch.dtype, factor: float, accuracy: float) -> None:
    A = well_conditioned(12, dtype, seed=2) * factor
    result = gdla.inverse(A)
    assert result.converged, result.message
    assert float(gdla.metrics.inverse_error(A, result.X)) < accuracy


@pytest.mark.parametrize(("dtype", "factor", "accuracy"), EXTREMES)
def test_solve_with_extreme_matrices_or_right_hand_sides(
    dtype: torch.dtype, factor: float, accuracy: float
) -> None:
    B = well_conditioned(12, dtype, seed=3)
    b = torch.ones(12, dtype=dtype)
    exact = torch.linalg.solve(B.double(), b.double())
    for A, rhs, unscale in ((B * factor, b, factor), (B, b * factor, 1 / factor)):
        result = gdla.solve(A, rhs)
        assert result.converged, result.message
        assert torch.allclose((result.x * unscale).double(), exact, rtol=accuracy, atol=0)


@pytest.mark.parametrize(("dtype", "factor", "accuracy"), EXTREMES)
def test_complete_extreme_matrices(dtype: torch.dtype, factor: float, accuracy: float) -> None:
    generator = torch.Generator().manual_seed(4)
    truth = torch.randn(30, 2, generator=generator, dtype=F64) @ torch.randn(
        2, 20, generator=generator, dtype=F64
    )
    mask = torch.rand(30, 20, generator=generator) < 0.7
    result = gdla.complete((truth * factor).to(dtype), mask, 2)
    assert result.converged, result.message
    error = (result.X.double() / factor - truth).norm() / truth.norm()
    assert float(error) < accuracy
