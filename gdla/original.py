"""What the original 2020 blog series reported, as data.

The book reproduces the series' experiments and compares its own numbers with
the ones the series printed.  Those historical numbers are not computed by any
code here, so they live in this one module, each with where it comes from, and
the chapters glue them from here instead of typing them into the prose.

Sources: "Matrix operations with pytorch – optimizer", parts 1–3 and the
addendum "SGD against Adam" (arthought.com, February 2020), as read from the
series' notebooks.

The module also replays the series' SVD experiments fast enough for the book
(:func:`replay`): the original ran 20,000 steps of its penalty loss per matrix,
about a millisecond each through autograd.  :func:`penalty_gradient` writes the
gradient of that loss out by hand, and :func:`replay` advances all the matrices
at once (zero-padded into one batch), with the original's heavy-ball loop or
:class:`torch.optim.Adam`, in float32 as the original did.  The tests check
that its iterates are those of :func:`gdla.svd` (``method="penalty"`` and
``method="adam"``, autograd) up to rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

__all__ = [
    "SEED",
    "INVERSE",
    "SVD",
    "SVD_ADAM",
    "AXB_BYTEPAWN",
    "BATCHED_CHOLESKY",
    "Replay",
    "penalty_start",
    "penalty_loss",
    "penalty_gradient",
    "replay",
]

#: Seed of every random matrix in the series.
SEED = 314

#: Part 2, inverse of M1 = seed-314 rand(4, 4) and M2 = diag(1, 2, 3, 4):
#: loss mse(X @ M, I), heavy-ball lr 0.9 momentum 0.9, 10,000 iterations, float32.
INVERSE: MappingProxyType[str, Any] = MappingProxyType(
    {
        "lr": 0.9,
        "momentum": 0.9,
        "iterations": 10_000,
        "first_below_1e-12": {"M1": 783, "M2": 253},
        "final_loss": {"M1": 3.4e-13, "M2": 3.6e-15},
    }
)

#: Part 3, SVD by penalty loss, heavy-ball lr 0.9 momentum 0.9, 20,000 iterations, float32.
SVD: MappingProxyType[str, Any] = MappingProxyType(
    {
        "lr": 0.9,
        "momentum": 0.9,
        "iterations": 20_000,
        "penalty_weight": 1 / 100,
        "M1_singular_values": (2.3398, 0.6873, 0.2592, 0.1177),
        # The columns in which U and V differed in sign from torch.svd's, as the post named them.
        "M1_flipped_columns": (1, 3),
        "final_loss": {"M1": 3.7e-14, "M2": 2.1e-14, "M3": 4.6e-6, "M4": 8.2e-15, "M5": 9.4e-3},
        "stalled": ("M3", "M5"),
        "M5_stuck_from": 1_000,
        "wide_3x4_floor": 6.25e-4,
    }
)

#: Addendum: torch.optim.Adam (default lr, weight_decay 1e-5), 20,000 iterations, float32.
SVD_ADAM: MappingProxyType[str, Any] = MappingProxyType(
    {
        "weight_decay": 1e-5,
        "iterations": 20_000,
        "final_loss": {"M1": 4.3e-8, "M5": 1.2e-8},
        "M1_singular_values": (2.3382, 0.6890, 0.2601, 0.1181),
        "M1_UtU_diagonal": (1.0007, 0.9974, 0.9965, 0.9962),
        "sgd_final_loss": {"M1": 3.5e-14, "M5": 9.4e-3},
    }
)

#: Trencseni (bytepawn, 2019), cited by the series: gradient descent on ||Ax - b||,
#: dimension 2, float32, a fixed small step, stopping at loss 1e-2.
AXB_BYTEPAWN: MappingProxyType[str, Any] = MappingProxyType({"dimension": 2, "stop_loss": 1e-2})

#: Kinghorn (Puget Systems, 2018), cited by the series: 10,000 Cholesky decompositions
#: of 10 x 10 matrices on a Titan V GPU, looped against batched.
BATCHED_CHOLESKY: MappingProxyType[str, Any] = MappingProxyType(
    {"count": 10_000, "n": 10, "loop_seconds": 17.07, "batched_seconds": 0.0177}
)


# ----------------------------------------------------------------------------
# Replaying the series' SVD loops (part 3 and the addendum)
# ----------------------------------------------------------------------------


def penalty_start(
    m: int, n: int, seed: int = SEED
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The original's start for an ``m x n`` matrix: ``torch.manual_seed(seed)``, then
    ``U = rand(m, n)``, ``s = rand(n)``, ``V = rand(n, n)``, in float32.

    Drawn from a private generator (the global random state is untouched).  For
    ``m >= n`` these are the starts of ``gdla.svd(A, method="penalty", seed=seed)``.

    Examples
    --------
    >>> U, s, V = penalty_start(5, 4)
    >>> tuple(U.shape), tuple(s.shape), tuple(V.shape), U.dtype
    ((5, 4), (4,), (4, 4), torch.float32)
    """
    generator = torch.Generator().manual_seed(int(seed))
    U = torch.rand(m, n, generator=generator)
    s = torch.rand(n, generator=generator)
    V = torch.rand(n, n, generator=generator)
    return U, s, V


def penalty_loss(
    A: torch.Tensor,
    U: torch.Tensor,
    s: torch.Tensor,
    V: torch.Tensor,
    *,
    weight: float = 1 / 100,
) -> torch.Tensor:
    r"""The original's loss, written as the series wrote it (differentiable by autograd).

    .. math:: \operatorname{mse}(U \operatorname{diag}(s^2) V^\top, A)
              + \tfrac{1}{100}\operatorname{mse}(U^\top U, I)
              + \tfrac{1}{100}\operatorname{mse}(V V^\top, I)

    for ``A`` of shape (*, m, n), ``U`` (*, m, n), ``s`` (*, n), ``V`` (*, n, n);
    ``mse`` is the mean of the squared entries.  ``weight`` replaces the penalties'
    weight 1/100 (to study its effect).  Returns one value per matrix, shape (*).

    Examples
    --------
    >>> A = torch.diag(torch.tensor([4.0, 1.0]))
    >>> float(penalty_loss(A, torch.eye(2), torch.tensor([2.0, 1.0]), torch.eye(2)))
    0.0
    """
    eye = torch.eye(V.shape[-1], dtype=A.dtype, device=A.device)
    fit = ((U * s.square().unsqueeze(-2)) @ V.mT - A).square().mean(dim=(-2, -1))
    gram_U = (U.mT @ U - eye).square().mean(dim=(-2, -1))
    gram_V = (V @ V.mT - eye).square().mean(dim=(-2, -1))
    divisor = 1 / weight  # 100.0 exactly for the original's 1/100: its `mse(...) / 100`
    return fit + gram_U / divisor + gram_V / divisor


def penalty_gradient(
    A: torch.Tensor, U: torch.Tensor, s: torch.Tensor, V: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    r"""The loss of :func:`penalty_loss` and its gradient, derived by hand.

    With :math:`R = U D V^\top - A`, :math:`D = \operatorname{diag}(s^2)`,
    :math:`P = U^\top U - I` and :math:`Q = V V^\top - I` (``A`` is m x n):

    .. math:: \nabla_U = \tfrac{2}{mn} R V D + \tfrac{4}{100 n^2} U P, \quad
              \nabla_V = \tfrac{2}{mn} R^\top U D + \tfrac{4}{100 n^2} Q V, \quad
              \partial_{s_j} = \tfrac{4}{mn} s_j (U^\top R V)_{jj}.

    Shapes as in :func:`penalty_loss` (one matrix, or a batch of one shape).
    Returns ``(loss, (grad_U, grad_s, grad_V))``.

    Examples
    --------
    >>> A = torch.rand(5, 4, generator=torch.Generator().manual_seed(0))
    >>> U, s, V = (x.requires_grad_() for x in penalty_start(5, 4))
    >>> penalty_loss(A, U, s, V).backward()
    >>> loss, (gU, gs, gV) = penalty_gradient(A, U.detach(), s.detach(), V.detach())
    >>> all(torch.allclose(g, p.grad, atol=1e-6) for g, p in [(gU, U), (gs, s), (gV, V)])
    True
    """
    m, n = A.shape[-2:]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    d = s.square().unsqueeze(-2)
    R = (U * d) @ V.mT - A
    P = U.mT @ U - eye
    Q = V @ V.mT - eye
    RV = R @ V
    w_fit, w_gram = 1 / (m * n), 1 / (100 * n * n)
    grad_U = (2 * w_fit) * RV * d + (4 * w_gram) * (U @ P)
    grad_V = (2 * w_fit) * (R.mT @ U) * d + (4 * w_gram) * (Q @ V)
    grad_s = (4 * w_fit) * s * (U * RV).sum(dim=-2)
    loss = w_fit * R.square().sum(dim=(-2, -1)) + w_gram * (
        P.square().sum(dim=(-2, -1)) + Q.square().sum(dim=(-2, -1))
    )
    return loss, (grad_U, grad_s, grad_V)


class _BlockDiagonal:
    """Several matrices A_b (m_b x n_b) as the diagonal blocks of one matrix.

    The original's factors of all of them are then the blocks of one ``U``
    (sum m_b x sum n_b), ``s`` (sum n_b) and ``V`` (sum n_b x sum n_b), stored in
    one flat parameter.  The gradient of :func:`penalty_gradient` keeps that
    structure (``R``, ``U^T U``, ``V V^T`` are block diagonal when the factors
    are), with each block's weights applied column by column, so entries outside
    the blocks have zero gradient and stay exactly zero, under the heavy-ball
    loop and under Adam alike, and each block follows its own iterates: a few
    dense products of small matrices replace a loop over matrices.
    """

    def __init__(self, matrices: Sequence[torch.Tensor]) -> None:
        self.shapes = [(int(A.shape[0]), int(A.shape[1])) for A in matrices]
        rows = [0] + list(itertools.accumulate(m for m, _ in self.shapes))
        cols = [0] + list(itertools.accumulate(n for _, n in self.shapes))
        self.rows, self.cols = rows, cols
        M, N = rows[-1], cols[-1]
        self.A = torch.zeros(M, N)
        w_fit, w_gram = torch.zeros(N), torch.zeros(N)
        self.blocks = torch.zeros(len(self.shapes), N)  # block indicator of each column
        for b, (A, (m, n)) in enumerate(zip(matrices, self.shapes, strict=True)):
            self.A[rows[b] : rows[b + 1], cols[b] : cols[b + 1]] = A.detach().to(torch.float32)
            w_fit[cols[b] : cols[b + 1]] = 1 / (m * n)
            w_gram[cols[b] : cols[b + 1]] = 1 / (100 * n * n)
            self.blocks[b, cols[b] : cols[b + 1]] = 1
        self.w_fit, self.w_gram = w_fit, w_gram
        self.two_w_fit, self.four_w_fit, self.four_w_gram = 2 * w_fit, 4 * w_fit, 4 * w_gram
        self.eye = torch.eye(N)
        self.sizes = (M * N, N, N * N)

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views ``U``, ``s``, ``V`` of a flat parameter (or gradient)."""
        M, N = self.rows[-1], self.cols[-1]
        U, s, V = flat.split(self.sizes)
        return U.view(M, N), s, V.view(N, N)

    def pack(
        self, factors: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """One flat parameter holding each matrix's ``(U, s, V)`` in its block."""
        flat = torch.zeros(sum(self.sizes))
        U, s, V = self.split(flat)
        for b, (U_b, s_b, V_b) in enumerate(factors):
            r, c = slice(self.rows[b], self.rows[b + 1]), slice(self.cols[b], self.cols[b + 1])
            U[r, c], s[c], V[c, c] = U_b, s_b, V_b
        return flat

    def unpack(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each matrix's ``(U, s, V)`` (copies)."""
        U, s, V = self.split(flat)
        out = []
        for b in range(len(self.shapes)):
            r, c = slice(self.rows[b], self.rows[b + 1]), slice(self.cols[b], self.cols[b + 1])
            out.append((U[r, c].clone(), s[c].clone(), V[c, c].clone()))
        return out

    def loss_and_gradient(
        self,
        factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Write the gradient at ``factors`` (views of the flat parameter) into ``grads``
        (views of its gradient); return each matrix's loss."""
        U, s, V = factors
        grad_U, grad_s, grad_V = grads
        d = s * s
        R = torch.addmm(self.A, U * d, V.T, beta=-1)  # U D V^T - A
        P = U.T @ U - self.eye
        Q = V @ V.T - self.eye
        RV = R @ V
        d_fit = d * self.two_w_fit
        torch.addcmul((U @ P) * self.four_w_gram, RV, d_fit, out=grad_U)
        torch.addcmul((Q @ V) * self.four_w_gram, R.T @ U, d_fit, out=grad_V)
        torch.mul((U * RV).sum(dim=0), s * self.four_w_fit, out=grad_s)
        fit = (R * R).sum(dim=0) * self.w_fit
        gram = ((P * P).sum(dim=0) + (Q * Q).sum(dim=0)) * self.w_gram
        return self.blocks @ (fit + gram)


@dataclass(frozen=True, repr=False)
class Replay:
    """What :func:`replay` returns: the raw factors and the history of every matrix.

    Attributes
    ----------
    method : str
        ``"heavy_ball"`` or ``"adam"``.
    steps : int
        Number of updates made.
    U, s, V : list of Tensor
        The final factors of each matrix, as the loop left them (unsorted, float32),
        of shapes (m, n), (n,), (n, n).
    losses : list of Tensor
        For each matrix, the loss at the start and after each update, shape (steps + 1,).
    s_history : list of Tensor
        For each matrix, ``s`` at the start and after each update, shape (steps + 1, n).
    """

    method: str
    steps: int
    U: list[torch.Tensor]
    s: list[torch.Tensor]
    V: list[torch.Tensor]
    losses: list[torch.Tensor]
    s_history: list[torch.Tensor]

    def __repr__(self) -> str:
        return f"Replay(method={self.method!r}, steps={self.steps}, matrices={len(self.U)})"

    def factors(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(U, S, V)`` of matrix ``index`` as the original reported them: ``S = s**2``
        sorted in descending order and the columns of ``U`` and ``V`` in the same order."""
        S, order = torch.sort(self.s[index].square(), descending=True, stable=True)
        return self.U[index][:, order], S, self.V[index][:, order]


def replay(
    matrices: Sequence[torch.Tensor],
    *,
    steps: int,
    method: str = "heavy_ball",
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = SEED,
    start: Replay | Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
) -> Replay:
    """Replay the original's SVD loop on several matrices at once, in float32.

    Each matrix ``A`` (m x n, any m and n) starts from :func:`penalty_start` (or
    from ``start``: the final factors of a :class:`Replay`, or one ``(U, s, V)``
    per matrix) and takes ``steps`` updates on
    :func:`penalty_loss` with the hand-derived gradient of :func:`penalty_gradient`:

    * ``method="heavy_ball"``: the original's loop ``p -= lr * p.grad;
      p.grad *= momentum`` (default ``lr`` 0.9);
    * ``method="adam"``: :class:`torch.optim.Adam` with ``lr`` (default 1e-3, torch's)
      and ``weight_decay``, as the addendum ran it.

    Momentum buffers and Adam's moments start from zero, also after ``start``.
    The matrices are the diagonal blocks of one matrix, whose factors are block
    diagonal: every operation of the loop, Adam's included, leaves the entries
    outside the blocks exactly zero, and each matrix follows the iterates it would
    follow alone (up to the order of floating-point sums).

    Examples
    --------
    >>> from gdla.matrices import original_svd_matrices
    >>> A = original_svd_matrices()["M4"]
    >>> run = replay([A], steps=2000)
    >>> float(run.losses[0][-1]) < 1e-9
    True
    >>> bool(torch.allclose(run.factors(0)[1], torch.linalg.svdvals(A), atol=1e-5))
    True
    """
    if method not in ("heavy_ball", "adam"):
        raise ValueError(f"replay: expected method 'heavy_ball' or 'adam', found {method!r}")
    if not matrices or any(A.ndim != 2 for A in matrices):
        raise ValueError("replay: expected a non-empty sequence of 2-D matrices")
    layout = _BlockDiagonal(matrices)
    if start is None:
        factors = [penalty_start(m, n, seed) for m, n in layout.shapes]
    else:
        if isinstance(start, Replay):
            factors = list(zip(start.U, start.s, start.V, strict=True))
        else:
            factors = [tuple(x.detach().to(torch.float32) for x in triple) for triple in start]  # type: ignore[misc]
        if [tuple(U.shape) for U, _, _ in factors] != layout.shapes:
            raise ValueError("replay: start was computed for matrices of other shapes")
    flat = layout.pack(factors)
    grad = torch.zeros_like(flat)
    losses = torch.empty(steps + 1, len(layout.shapes))
    s_history = torch.empty(steps + 1, layout.cols[-1])
    if method == "adam":
        flat.requires_grad_()
        flat.grad = grad
        optimizer = torch.optim.Adam(
            [flat], lr=1e-3 if lr is None else lr, weight_decay=weight_decay
        )
    else:
        rate = 0.9 if lr is None else lr
        buffer = torch.zeros_like(flat)
    factors_view, grads_view = layout.split(flat.detach()), layout.split(grad)
    with torch.no_grad():
        for i in range(steps + 1):
            losses[i] = layout.loss_and_gradient(factors_view, grads_view)
            s_history[i] = factors_view[1]
            if i == steps:
                break
            if method == "adam":
                optimizer.step()
            else:
                buffer.mul_(momentum).add_(grad)
                flat.sub_(rate * buffer)
    final = layout.unpack(flat.detach())
    return Replay(
        method=method,
        steps=steps,
        U=[U for U, _, _ in final],
        s=[s for _, s, _ in final],
        V=[V for _, _, V in final],
        losses=[losses[:, b].clone() for b in range(len(layout.shapes))],
        s_history=[
            s_history[:, layout.cols[b] : layout.cols[b + 1]].clone()
            for b in range(len(layout.shapes))
        ],
    )
