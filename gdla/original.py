"""What the original 2020 blog series reported, as data.

The book reproduces the series' experiments and compares its own numbers with
the ones the series printed.  Those historical numbers are not computed by any
code here, so they live in this one module, each with where it comes from, and
the chapters glue them from here instead of typing them into the prose.

Sources: "Matrix operations with pytorch – optimizer", parts 1–3 and the
addendum "SGD against Adam" (arthought.com, February 2020), as read from the
series' notebooks.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["SEED", "INVERSE", "SVD", "SVD_ADAM", "AXB_BYTEPAWN", "BATCHED_CHOLESKY"]

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
