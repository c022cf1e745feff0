"""Inputs whose squared entries would overflow or underflow: every function rescales them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gdla
from gdla._scaling import ldexp, power_of_two_exponent

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


def test_exponent_is_zero_in_the_normal_range_and_brings_the_largest_entry_to_one() -> None:
    A = torch.randn(2, 5, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert bool((power_of_two_exponent(A) == 0).all())
    assert ldexp(A, power_of_two_exponent(A)[..., None, None]) is A  # no copy in the usual case
    huge = torch.stack([A[0] * 1e250, A[1]])
    exponent = power_of_two_exponent(huge)
    assert int(exponent[1]) == 0
    scaled = ldexp(huge, exponent[..., None, None])
    assert 0.5 <= float(scaled[0].abs().max()) < 1.0
    assert bool((scaled[0] == huge[0] * 2.0 ** int(exponent[0])).all())  # exact
    assert int(power_of_two_exponent(torch.zeros(3, 3, dtype=F64))) == 0


@pytest.mark.parametrize("dtype", [F64, F32, torch.complex128, torch.complex64])
def test_exponents_at_both_ends_of_the_range(dtype: torch.dtype) -> None:
    """2**1023 (float64) or 2**127 (float32) needs exponent -1024 (-128): 2**1024 overflows,
    so the scale is applied in steps; subnormals need exponents beyond -1022 the other way."""
    info = torch.finfo(dtype)
    top = math.frexp(info.max)[1]  # 1024 or 128
    bottom = math.frexp(info.tiny * info.eps)[1]  # the smallest subnormal's exponent
    for value, expected in ((info.max, -top), (info.tiny * info.eps, -bottom)):
        A = torch.full((3, 3), value, dtype=dtype)
        e = power_of_two_exponent(A)
        assert int(e) == expected
        scaled = ldexp(A, e[..., None, None])
        assert bool(torch.isfinite(scaled).all())
        assert 0.5 <= float(scaled.abs().max()) < 1.0
        assert bool((ldexp(scaled, -e[..., None, None]) == A).all())  # exact both ways
    assert not ldexp(torch.ones(2, dtype=torch.complex128).conj(), torch.tensor(3)).is_conj()


def _random_matrix(seed: int, dtype: torch.dtype, n: int = 6) -> torch.Tensor:
    """A well-conditioned matrix scaled so that every entry has modulus below 1."""
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=generator, dtype=F64) + 4 * torch.eye(n, dtype=F64)
    A = A / (2 * A.abs().max())
    return A.to(dtype)


def _representable(dtype: torch.dtype) -> tuple[int, int]:
    """Exponents f such that 2**f times a matrix of entries in [2**-7, 1) is finite,
    and at least normal at the small end."""
    info = torch.finfo(dtype)
    return math.frexp(info.tiny)[1] + 6, math.frexp(info.max)[1] - 1


@pytest.mark.parametrize("dtype", [F64, F32])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_solve_is_scale_invariant_over_the_whole_exponent_range(
    dtype: torch.dtype, data: st.DataObject
) -> None:
    low, high = _representable(dtype)
    f = data.draw(st.integers(low, high), label="exponent of A and b")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    A = _random_matrix(seed, dtype)
    b = torch.linspace(-1, 1, 6, dtype=dtype)
    reference = gdla.solve(A, b)
    scaled = gdla.solve(A * 2.0**f, b * 2.0**f)
    assert scaled.converged == reference.converged, scaled.message
    error = (scaled.x - reference.x).norm() / reference.x.norm()
    assert float(error) <= 1e3 * torch.finfo(dtype).eps, (f, float(error))  # ~ rtol * cond


@pytest.mark.parametrize("dtype", [F64, F32])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inverse_and_svd_are_scale_invariant_over_the_whole_exponent_range(
    dtype: torch.dtype, data: st.DataObject
) -> None:
    low, high = _representable(dtype)
    f = data.draw(st.integers(low + 8, high), label="exponent of A")
    A = _random_matrix(data.draw(st.integers(0, 2**16), label="seed"), dtype)
    As = ldexp(A, torch.tensor(f))
    eps = torch.finfo(dtype).eps
    # inverse(2^f A) = 2^-f inverse(A): below 2^-(bottom) the result is subnormal, so
    # compare after scaling back (the small end loses the bits subnormals lack).
    reference, scaled = gdla.inverse(A), gdla.inverse(As)
    assert scaled.converged == reference.converged, scaled.message
    back = ldexp(scaled.X, torch.tensor(f))
    lost = max(0, f + math.frexp(torch.finfo(dtype).tiny)[1] + 4)  # bits below tiny
    error = float((back - reference.X).norm() / reference.X.norm())
    assert error <= 1e3 * eps * 2.0**lost, (f, error)
    reference_svd, scaled_svd = gdla.svd(A, 3), gdla.svd(As, 3)
    assert scaled_svd.converged == reference_svd.converged, scaled_svd.message
    S = ldexp(scaled_svd.S, torch.tensor(-f))
    assert float(((S - reference_svd.S) / reference_svd.S).abs().max()) <= 64 * eps, f


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("where", ["largest", "subnormal"])
def test_every_function_at_the_ends_of_the_range(dtype: torch.dtype, where: str) -> None:
    """Entries >= 2**1023 (2**127 in float32), or subnormal ones: converged, finite, right."""
    info = torch.finfo(dtype)
    f = math.frexp(info.max)[1] - 1 if where == "largest" else math.frexp(info.tiny)[1] - 8
    A = _random_matrix(5, dtype) * (3 if where == "largest" else 1)  # largest entry 1.5
    As = ldexp(A, torch.tensor(f))
    if where == "largest":
        assert float(As.abs().max()) >= 2.0**f  # >= 2**1023 in float64, 2**127 in float32
    else:
        assert bool(((As != 0) & (As.abs() < info.tiny)).any())  # some entries are subnormal
    A = ldexp(As, torch.tensor(-f))  # the input as rounded, back in the normal range
    b = torch.ones(6, dtype=dtype)
    solved = gdla.solve(As, ldexp(b, torch.tensor(f)))
    assert solved.converged, solved.message
    torch.testing.assert_close(solved.x, gdla.solve(A, b).x, rtol=1e3 * info.eps, atol=0)
    decomposition = gdla.svd(As, 2)
    assert decomposition.converged, decomposition.message
    torch.testing.assert_close(
        ldexp(decomposition.S, torch.tensor(-f)), gdla.svd(A, 2).S, rtol=1e3 * info.eps, atol=0
    )
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[0, 0] = False
    completion = gdla.complete(As, mask, 6)
    assert completion.converged, completion.message
    assert bool(torch.isfinite(completion.X).all())
    expected = gdla.complete(A, mask, 6).X
    difference = ldexp(completion.X, torch.tensor(-f)) - expected
    assert float(difference.norm() / expected.norm()) < 1e3 * info.eps
    if where == "largest":  # the inverse of a subnormal matrix overflows: nothing to check
        inverted = gdla.inverse(As)
        assert inverted.converged, inverted.message
        X = ldexp(inverted.X, torch.tensor(f))
        assert float((X - gdla.inverse(A).X).norm() / X.norm()) < 1e3 * info.eps


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


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("where", ["largest", "subnormal"])
def test_no_method_reports_a_non_finite_answer_as_converged(dtype: torch.dtype, where: str) -> None:
    """Every method of every function at both ends of the range: converged means finite,
    and a converged answer agrees with the one for the rescaled normal-range input."""
    info = torch.finfo(dtype)
    f = math.frexp(info.max)[1] - 1 if where == "largest" else math.frexp(info.tiny)[1] - 8
    # the diagonal >= 1 and sigma_max < 2: entries >= 2**1023 (float64) whose SVD is finite
    noise = torch.randn(6, 6, generator=torch.Generator().manual_seed(7), dtype=F64)
    A = (torch.eye(6, dtype=F64) * 1.25 + 0.05 * noise).to(dtype)
    As = ldexp(A, torch.tensor(f))
    A = ldexp(As, torch.tensor(-f))
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[0, 0] = False
    b = torch.ones(6, dtype=dtype)
    bs = ldexp(b, torch.tensor(f))
    calls = [(f"solve {m}", lambda m=m: gdla.solve(As, bs, method=m, max_iter=300),
              lambda m=m: gdla.solve(A, b, method=m, max_iter=300), "x", 0)
             for m in ("cg", "gd", "sgd", "adam", "lbfgs", "gmres-ir")]  # fmt: skip
    svd_methods = ("lanczos", "subspace", "randomized", "riemannian", "penalty", "adam")
    calls += [(f"svd {m}", lambda m=m: gdla.svd(As, 2, method=m, max_iter=300),
               lambda m=m: gdla.svd(A, 2, method=m, max_iter=300), "S", -f)
              for m in svd_methods]  # fmt: skip
    calls += [(f"complete {m}", lambda m=m: gdla.complete(As, mask, 6, method=m, max_iter=300),
               lambda m=m: gdla.complete(A, mask, 6, method=m, max_iter=300), "X", -f)
              for m in ("als", "gd", "adam", "lbfgs")]  # fmt: skip
    if where == "largest":
        calls += [(f"inverse {m}", lambda m=m: gdla.inverse(As, method=m, max_iter=300),
                   lambda m=m: gdla.inverse(A, method=m, max_iter=300), "X", f)
                  for m in ("newton-schulz", "gd", "adam", "lbfgs")]  # fmt: skip
    for name, extreme, normal, field, back in calls:
        result, reference = extreme(), normal()
        value = ldexp(getattr(result, field), torch.tensor(back))
        if result.converged:
            assert bool(torch.isfinite(value).all()), name
        assert result.converged == reference.converged, (name, result.message)
        if result.converged:
            expected = getattr(reference, field)
            error = float((value - expected).norm() / expected.norm())
            assert error < 1e4 * info.eps, (name, error)
