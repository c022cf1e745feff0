"""Tests of :mod:`gdla.original`'s replay of the series' SVD loops.

The book replays the original's 20,000-step loops with a hand-derived gradient
on all test matrices at once; these tests hold that replay to autograd and to
:func:`gdla.svd`, whose penalty, SGD and Adam methods run the same loops
through autograd, one matrix at a time.
"""

from __future__ import annotations

import pytest
import torch

import gdla
from gdla import original
from gdla.matrices import original_svd_matrices

F64 = torch.float64


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(((a - b).abs() / b.abs()).max())


@pytest.mark.parametrize("shape", [(5, 4), (4, 4), (7, 4), (4, 3), (3, 4)])
def test_hand_gradient_is_autograds(shape: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    m, n = shape
    A = torch.rand(m, n, generator=generator, dtype=F64)
    U, s, V = (x.to(F64).requires_grad_() for x in original.penalty_start(m, n, seed=3))
    loss = original.penalty_loss(A, U, s, V)
    loss.backward()
    hand_loss, grads = original.penalty_gradient(A, U.detach(), s.detach(), V.detach())
    assert float(hand_loss) == pytest.approx(float(loss.detach()), rel=1e-13)
    for grad, parameter in zip(grads, (U, s, V), strict=True):
        assert parameter.grad is not None
        torch.testing.assert_close(grad, parameter.grad, rtol=1e-12, atol=1e-14)


def test_the_loss_vanishes_at_the_exact_svd_and_the_weight_does_not_move_it() -> None:
    for A in original_svd_matrices(F64).values():
        U, S, Vh = torch.linalg.svd(A, full_matrices=False)
        for weight in (1 / 100, 1.0):
            loss = original.penalty_loss(A, U, S.sqrt(), Vh.mT, weight=weight)
            assert float(loss) < 1e-28


def test_start_is_the_original_draw() -> None:
    torch.manual_seed(314)
    U, s, V = torch.rand(5, 4), torch.rand(4), torch.rand(4, 4)
    for ours, theirs in zip(original.penalty_start(5, 4), (U, s, V), strict=True):
        assert torch.equal(ours, theirs)


def test_heavy_ball_replay_takes_the_steps_of_gdla_penalty() -> None:
    matrices = original_svd_matrices()
    run = original.replay(list(matrices.values()), steps=200)
    for index, (name, A) in enumerate(matrices.items()):
        loop = gdla.svd(
            A, method="penalty", seed=original.SEED, max_iter=200, rtol=1e-30,
            options={"monitor": "loss"},
        )  # fmt: skip
        # gdla.svd records the loss before each update, the replay at the start and after each
        assert relative_gap(run.losses[index][:200], torch.tensor(loop.history)) < 1e-5, name
        _, S, _ = run.factors(index)
        torch.testing.assert_close(S, loop.S, rtol=1e-5, atol=1e-6)


def test_adam_replay_takes_the_steps_of_gdla_adam() -> None:
    A = original_svd_matrices()["M5"]
    options = {"lr": 1e-3, "weight_decay": 1e-5, "monitor": "loss"}
    run = original.replay([A], steps=200, method="adam", weight_decay=1e-5)
    adam = gdla.svd(A, method="adam", seed=original.SEED, max_iter=200, rtol=1e-30, options=options)
    # gdla.svd's optimisers record the loss after each step
    assert relative_gap(run.losses[0][1:], torch.tensor(adam.history)) < 1e-5
    U, S, V = run.factors(0)
    torch.testing.assert_close(S, adam.S, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(U.abs(), adam.U.abs(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["heavy_ball", "adam"])
def test_matrices_replayed_together_follow_their_own_iterates(method: str) -> None:
    matrices = list(original_svd_matrices().values())
    together = original.replay(matrices, steps=300, method=method)
    for index, A in enumerate(matrices):
        alone = original.replay([A], steps=300, method=method)
        assert relative_gap(together.losses[index], alone.losses[0]) < 1e-5
        torch.testing.assert_close(together.s[index], alone.s[0], rtol=1e-5, atol=1e-6)


def test_wide_factor_cannot_go_below_its_floor() -> None:
    wide = original_svd_matrices()["M4"].mT.contiguous()  # 3 x 4, U of shape 3 x 4
    run = original.replay([wide], steps=3000)
    floor = (1 / 16) / 100
    assert float(run.losses[0].min()) >= floor * (1 - 1e-5)
    assert float(run.losses[0][-1]) == pytest.approx(floor, rel=1e-3)


def test_start_continues_and_momentum_restarts() -> None:
    A = original_svd_matrices()["M1"]
    first = original.replay([A], steps=50)
    second = original.replay([A], steps=10, start=first)
    assert torch.equal(second.s_history[0][0], first.s[0])
    assert second.losses[0][0] == first.losses[0][-1]


def test_bad_arguments_say_what_was_expected() -> None:
    A = original_svd_matrices()["M1"]
    with pytest.raises(ValueError, match="heavy_ball"):
        original.replay([A], steps=1, method="lbfgs")
    with pytest.raises(ValueError, match="2-D"):
        original.replay([], steps=1)
    with pytest.raises(ValueError, match="other shapes"):
        original.replay([A.mT], steps=1, start=original.replay([A], steps=1))


def test_start_from_factors_of_one_matrix_of_a_batch() -> None:
    matrices = list(original_svd_matrices().values())
    batch = original.replay(matrices, steps=20)
    alone = original.replay([matrices[2]], steps=5, start=[(batch.U[2], batch.s[2], batch.V[2])])
    assert torch.equal(alone.s_history[0][0], batch.s[2])
