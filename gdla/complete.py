"""Low-rank matrix completion: fill in a matrix from some of its entries.

:func:`complete` fits a rank-``r`` product ``X = L R^H`` to the observed entries
of ``M`` (those where ``mask`` is True) by minimising

.. math:: f(L, R) = \\tfrac12 \\|P_\\Omega(L R^H - M)\\|_F^2
          + \\tfrac{\\lambda}{2} (\\|L\\|_F^2 + \\|R\\|_F^2),

where :math:`P_\\Omega` keeps the observed entries and zeroes the others, with
alternating least squares (the default), gradient descent with a backtracking
line search, or a :mod:`torch.optim` optimiser.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from . import _implicit
from ._comm import (
    agreement,
    all_reduce_max,
    all_reduce_sum,
    check_group,
    check_row_blocks,
)
from ._iterate import (
    Outcome,
    autograd_on,
    default_rtol,
    iterate,
    normal_tensor,
    optimizer_options,
    torch_optimizer_step,
)
from ._krylov import on_tall, subspace_kernel
from ._operator import SparseView
from ._result import CompletionResult
from ._scaling import ldexp, power_of_two_exponent
from ._tensor import batch_max, orth, randn_like, safe_divide, scale_columns, seeded_generator
from ._validation import (
    SUPPORTED_DTYPES,
    DtypeError,
    GdlaInputError,
    NonFiniteError,
    OptionError,
    ShapeError,
    check_matrix,
    check_number,
    check_option,
    check_positive,
    check_rank,
    method_options,
    options_dict,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["complete", "METHODS"]

_FUNCTION = "gdla.complete"

#: The ``method=`` names accepted by :func:`complete`.
METHODS = ("als", "gd", "sgd", "adam", "lbfgs")

_MAX_ITER = {"als": 1000, "gd": 20_000, "sgd": 20_000, "adam": 20_000, "lbfgs": 2000}

#: Armijo constant and the largest number of step halvings of ``method="gd"``.
_ARMIJO = 1e-4
_HALVINGS = 60

#: Row-wise Gram matrices whose squared pivot ratio is below ``_SINGULAR * r * eps`` count
#: as singular (a row with fewer than ``r`` observed entries and ``lambda = 0``).
_SINGULAR = 100


class _Problem:
    """The normalised problem ``M / s`` with ``s = ||P_Omega(M)||_F`` for each matrix.

    Scaling ``M`` by ``s`` scales ``L`` and ``R`` by ``sqrt(s)``, the objective by
    ``s**2`` and ``lambda`` by ``s``; working on the normalised problem makes step
    sizes and learning rates independent of the scale of ``M``.
    """

    def __init__(self, M: torch.Tensor, W: torch.Tensor, reg: float) -> None:
        # s = norm * 2**-exponent, kept in two parts: s itself may not be representable
        # (entries near the largest float, or subnormal ones).
        self.exponent = power_of_two_exponent(M)  # 0 unless squares of M's entries overflow
        M = ldexp(M, self.exponent[..., None, None])
        norm = torch.linalg.matrix_norm(M)
        self.norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        self.M = M / self.norm[..., None, None]
        self.observed_norm = torch.linalg.matrix_norm(self.M)  # 1, or 0 for a zero P_Omega(M)
        self.W = W
        self.reg = _scaled_reg(reg, self.norm, self.exponent)

    def unscale(
        self, L: torch.Tensor, R: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(X, L, R)`` of the original problem from factors of the normalised one.

        ``X = s L R^H`` and the factors times ``sqrt(s)``, ``s = norm * 2**-e``,
        applied as exact powers of two so that nothing overflows on the way.
        """
        e = self.exponent
        X = ldexp((L @ R.mH) * self.norm[..., None, None].to(L.dtype), -e[..., None, None])
        return (X, *_unscale_factors(self.norm, e, L, R))

    def normalise_tensors(self) -> None:
        """Make the stored tensors normal ones (call inside :func:`autograd_on`): autograd
        cannot save inference tensors, which inputs under torch.inference_mode() are."""
        self.M, self.W, self.reg = (normal_tensor(t) for t in (self.M, self.W, self.reg))

    def error(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``P_Omega(L R^H - M)``."""
        return self.W * (L @ R.mH - self.M)

    def value(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """The objective ``f``, one value per matrix of the batch."""
        fit = torch.linalg.matrix_norm(self.error(L, R)).square()
        size = torch.linalg.matrix_norm(L).square() + torch.linalg.matrix_norm(R).square()
        return (fit + self.reg * size) / 2

    def gradient(self, L: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E R + lambda L, E^H L + lambda R)`` with ``E = P_Omega(L R^H - M)``."""
        E = self.error(L, R)
        reg = self.reg[..., None, None]
        return E @ R + reg * L, E.mH @ L + reg * R

    def residual(self, L: torch.Tensor, R: torch.Tensor) -> float:
        """``||grad f||_F / (||P_Omega(M)||_F ||(L, R)||_F)``, the largest over the batch."""
        gL, gR = self.gradient(L, R)
        grad = _pair_norm(gL, gR)
        return batch_max(safe_divide(grad, self.observed_norm * _pair_norm(L, R)))


def _pair_norm(L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    return (torch.linalg.matrix_norm(L).square() + torch.linalg.matrix_norm(R).square()).sqrt()


def _unscale_factors(
    norm: torch.Tensor, exponent: torch.Tensor, L: torch.Tensor, R: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors times ``sqrt(s)``, ``s = norm * 2**-exponent``, as exact powers of two."""
    half, odd = exponent.div(2, rounding_mode="floor"), exponent.remainder(2)
    root = (norm / (1 + odd.to(norm.dtype))).sqrt()[..., None, None].to(L.dtype)
    return ldexp(L * root, -half[..., None, None]), ldexp(R * root, -half[..., None, None])


def _scaled_reg(reg: float, norm: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``lambda / s``: ``lambda * 2**e`` in float64, divided by ``norm``, clamped to the dtype."""
    reg_scaled = torch.full_like(norm, reg, dtype=torch.float64)
    reg_scaled = ldexp(reg_scaled, exponent) / norm.double()
    return reg_scaled.clamp(max=torch.finfo(norm.dtype).max).to(norm.dtype)


def _check_inputs(M: object, mask: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``M`` and ``mask``; return ``P_Omega(M)`` and the mask expanded to M's shape."""
    if not isinstance(M, torch.Tensor) or M.layout != torch.strided or M.device.type == "meta":
        check_matrix(_FUNCTION, "M", M)  # raises DtypeError
    assert isinstance(M, torch.Tensor)
    if not isinstance(mask, torch.Tensor):
        raise DtypeError(
            _FUNCTION,
            "mask to be a torch.Tensor of dtype bool (None only with a sparse M)",
            type(mask).__name__,
        )
    if mask.layout != torch.strided:
        raise DtypeError(_FUNCTION, "mask to be a dense (strided) tensor", f"layout {mask.layout}")
    if mask.dtype != torch.bool:
        raise DtypeError(_FUNCTION, "mask of dtype torch.bool", str(mask.dtype))
    if mask.device != M.device:
        raise ShapeError(_FUNCTION, f"mask on device {M.device}", str(mask.device))
    expected = f"mask of a shape broadcastable to M's shape {tuple(M.shape)}"
    try:
        shape = torch.broadcast_shapes(mask.shape, M.shape)
    except RuntimeError:
        raise ShapeError(_FUNCTION, expected, f"shape {tuple(mask.shape)}") from None
    if shape != M.shape:
        raise ShapeError(_FUNCTION, expected, f"shape {tuple(mask.shape)}")
    observed = torch.where(mask, M, torch.zeros((), dtype=M.dtype, device=M.device))
    check_matrix(_FUNCTION, "M", observed)
    return observed.detach(), mask.expand(M.shape)


def _row_solve(
    M: torch.Tensor, W: torch.Tensor, R: torch.Tensor, reg: torch.Tensor
) -> torch.Tensor:
    """The exact minimiser ``L`` of ``f`` for fixed ``R``: one ridge system per row, batched.

    Row ``l_i`` of ``L`` solves ``l_i (R^H D_i R + lambda I) = (W * M)_i R`` with
    ``D_i = diag(W_i)``: batched Cholesky, or, when some Gram matrix is (nearly)
    singular (a row with fewer than ``r`` observed entries and ``lambda = 0``), the
    pseudo-inverse for every row, which gives such rows the minimum-norm solution.
    """
    G = W @ _outer(R)  # (*, m, r * r): R^H D_i R, flattened
    return _ridge_solve(G, (W * M) @ R, reg)


def _outer(R: torch.Tensor) -> torch.Tensor:
    """``conj(R_j)^T R_j`` for every row ``j`` of ``R``, flattened: shape (*, n, r * r)."""
    return (R.conj().unsqueeze(-1) * R.unsqueeze(-2)).flatten(-2)


def _ridge_solve(G: torch.Tensor, MR: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Rows ``l_i`` solving ``l_i (G_i + lambda I) = (MR)_i``, ``G_i`` Hermitian.

    ``G`` (*, m, r * r) holds the flattened Gram matrices, ``MR`` (*, m, r) the
    right-hand sides; batched Cholesky, or the pseudo-inverse for every row when one
    ``G_i + lambda I`` is (nearly) singular.
    """
    r = MR.shape[-1]
    G = G.unflatten(-1, (r, r))
    G = G + reg[..., None, None, None] * torch.eye(r, dtype=G.dtype, device=G.device)
    rhs = MR.conj().unsqueeze(-1)  # (*, m, r, 1)
    factor, info = torch.linalg.cholesky_ex(G)
    pivots = factor.diagonal(dim1=-2, dim2=-1).real
    # (smallest / largest pivot)**2 estimates 1 / cond(G_i); near-singular rows would
    # amplify rounding errors into junk, so fall back to the minimum-norm solution.
    ratio = pivots.amin(dim=-1) / pivots.amax(dim=-1).clamp_min(torch.finfo(pivots.dtype).tiny)
    singular = ratio.square() <= _SINGULAR * r * torch.finfo(pivots.dtype).eps
    if bool((info == 0).all()) and not bool(singular.any()):
        x = torch.cholesky_solve(rhs, factor)
    else:
        x = torch.linalg.pinv(G, hermitian=True) @ rhs
    return x.squeeze(-1).conj()


#: Layouts of ``M`` that :func:`complete` reads as "the stored entries are the observations".
_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc)


def _csr(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """A CSR tensor on arrays already checked (sorted, unique, in range)."""
    with warnings.catch_warnings():  # torch warns once per process that CSR is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _check_sparse(M: torch.Tensor, mask: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate a sparse ``M``; return ``(rows, cols, values)`` of its entries in row-major order.

    Raises a :class:`GdlaInputError` for a mask given with sparse ``M``, a layout,
    dtype or shape that is not a 2-D sparse matrix of floats, indices out of range,
    an index pair stored twice, and NaN or infinite stored values.
    """
    if mask is not None:
        found = f"a mask of layout {mask.layout}" if isinstance(mask, torch.Tensor) else "a mask"
        raise OptionError(
            _FUNCTION,
            "mask=None when M is sparse (its stored entries are the observations)",
            found,
        )
    if M.layout not in _SPARSE_LAYOUTS:
        raise DtypeError(
            _FUNCTION, "M dense (strided) or sparse COO, CSR or CSC", f"layout {M.layout}"
        )
    if M.device.type == "meta":
        raise DtypeError(_FUNCTION, "M to be a tensor with data", "a tensor on device 'meta'")
    if M.dtype not in SUPPORTED_DTYPES:
        raise DtypeError(
            _FUNCTION, "M of dtype float32, float64, complex64 or complex128", str(M.dtype)
        )
    if M.ndim != 2 or M.dense_dim() != 0:
        raise ShapeError(
            _FUNCTION,
            "sparse M to be one matrix of shape (m, n) with scalar entries (no batches of"
            " sparse matrices: call complete once per matrix)",
            f"shape {tuple(M.shape)} with {M.dense_dim()} dense dimensions",
        )
    M = M.detach()
    if M.layout != torch.sparse_coo:
        M = M.to_sparse_coo()  # keeps repeated index pairs, checked below
    m, n = M.shape
    indices, values = M._indices(), M._values()
    rows, cols = indices[0], indices[1]
    if rows.numel():
        for name, index, size in (("row", rows, m), ("column", cols, n)):
            low, high = int(index.min()), int(index.max())
            if low < 0 or high >= size:
                raise ShapeError(
                    _FUNCTION,
                    f"the {name} indices of sparse M in [0, {size})",
                    f"a {name} index {low if low < 0 else high}",
                )
    # Row-major order; a repeated (row, column) pair would be summed by torch's coalesce,
    # so it is an error here rather than a silent sum of two observations.
    ahead = (rows[1:] > rows[:-1]) | ((rows[1:] == rows[:-1]) & (cols[1:] > cols[:-1]))
    if not bool(ahead.all()):
        if m * n < 2**62:  # one sort of the linear index row * n + col
            order = torch.argsort(rows * n + cols)
        else:
            order = torch.argsort(cols, stable=True)
            order = order[torch.argsort(rows[order], stable=True)]
        rows, cols, values = rows[order], cols[order], values[order]
        repeated = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
        if bool(repeated.any()):
            where = int(repeated.nonzero()[0, 0])
            raise GdlaInputError(
                _FUNCTION,
                "each (row, column) pair stored at most once in sparse M",
                f"entry ({int(rows[where])}, {int(cols[where])}) stored"
                f" {int(((rows == rows[where]) & (cols == cols[where])).sum())} times",
            )
    if values.numel() and not bool(torch.isfinite(values).all()):
        raise NonFiniteError(_FUNCTION, "sparse M with finite stored values", "NaN or Inf")
    return rows, cols, values


class _SparseProblem:
    """The problem of a sparse ``M``: its entries in row-major (CSR) and column-major order.

    Holds O(nnz) index and value arrays and CSR tensors over them (no dense m x n
    tensor): the pattern of ones (for the Gram matrices), ``M / s`` and its conjugate
    transpose; ``s = ||values||`` as in :class:`_Problem`.

    With a process ``group``, ``M`` is this rank's block of rows (``shape`` is the
    block's): ``L`` holds the block's rows and ``R`` is replicated; every sum over the
    rows (norms, ``E^H L``, the Gram matrices of the ``R`` half-step) is all-reduced,
    so every rank computes the same ``R`` and the same residual.
    """

    def __init__(
        self,
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        shape: tuple[int, int],
        reg: float,
        group: ProcessGroup | None = None,
    ) -> None:
        m, n = self.shape = shape
        self.group = group
        self.count = int(all_reduce_sum(torch.tensor([values.numel()]), group)[0])
        if group is not None:
            self.exponent = _group_exponent(values, group)
        elif self.count:
            self.exponent = power_of_two_exponent(values.unsqueeze(0))  # 0-d
        else:
            self.exponent = torch.zeros((), dtype=torch.int64, device=values.device)
        values = ldexp(values, self.exponent)
        norm = self._norm(values)
        self.norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        self.values = values / self.norm
        self.observed_norm = self._norm(self.values)
        self.reg = _scaled_reg(reg, self.norm, self.exponent)
        self.rows, self.cols = rows, cols
        self.crow = _row_pointers(rows, m)
        self.by_column = torch.argsort(cols, stable=True)  # rows ascending within a column
        self.crow_t, self.rows_t = _row_pointers(cols, n), rows[self.by_column]
        ones = torch.ones_like(self.values)
        self.pattern = _csr(self.crow, cols, ones, shape)
        self.pattern_t = _csr(self.crow_t, self.rows_t, ones, (n, m))
        # M / s as an operator view: its CSR copies of M / s and M^H / s
        self.view = SparseView(shape, rows, cols, self.values, self.by_column)
        self.data, self.data_h = self.view.csr, self.view.csr_h

    def _norm(self, values: torch.Tensor) -> torch.Tensor:
        """The 2-norm of the whole matrix's entries (this rank's, summed over the group)."""
        if self.group is None:
            return torch.linalg.vector_norm(values)
        return all_reduce_sum(values.abs().square().sum(), self.group).sqrt()

    def _squares(self, L: torch.Tensor) -> torch.Tensor:
        """``||L||_F^2`` of the row-split ``L`` (summed over the group)."""
        return all_reduce_sum(torch.linalg.matrix_norm(L).square(), self.group)

    def normalise_tensors(self) -> None:
        """Make the tensors autograd uses normal ones (see :meth:`_Problem.normalise_tensors`)."""
        self.values, self.reg = normal_tensor(self.values), normal_tensor(self.reg)
        self.rows, self.cols = normal_tensor(self.rows), normal_tensor(self.cols)

    def predictions(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """The observed entries of ``L R^H``, in row-major order."""
        if L.requires_grad or R.requires_grad:  # a gather that autograd can differentiate
            return (L[self.rows] * R[self.cols].conj()).sum(-1)
        sampled = torch.sparse.sampled_addmm(self.pattern, L, R.mH.resolve_conj(), beta=0.0)
        return sampled.values()

    def value(self, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """The objective ``f`` (a 0-d tensor)."""
        fit = (self.predictions(L, R) - self.values).abs().square().sum()
        if self.group is None:
            size = torch.linalg.matrix_norm(L).square() + torch.linalg.matrix_norm(R).square()
            return (fit + self.reg * size) / 2
        both = all_reduce_sum(torch.stack([fit, torch.linalg.matrix_norm(L).square()]), self.group)
        size = both[1] + torch.linalg.matrix_norm(R).square()
        return (both[0] + self.reg * size) / 2

    def gradient(self, L: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E R + lambda L, E^H L + lambda R)``, ``E`` the sparse ``P_Omega(L R^H - M)``."""
        e = self.predictions(L, R) - self.values
        E = _csr(self.crow, self.cols, e, self.shape)
        E_h = _csr(self.crow_t, self.rows_t, e[self.by_column].conj(), self.shape[::-1])
        return E @ R + self.reg * L, all_reduce_sum(E_h @ L, self.group) + self.reg * R

    def residual(self, L: torch.Tensor, R: torch.Tensor) -> float:
        """The relative gradient of :meth:`_Problem.residual`."""
        gL, gR = self.gradient(L, R)
        if self.group is None:
            grad, size = _pair_norm(gL, gR), _pair_norm(L, R)
        else:
            both = torch.stack([torch.linalg.matrix_norm(gL), torch.linalg.matrix_norm(L)])
            both = all_reduce_sum(both.square(), self.group)
            grad = (both[0] + torch.linalg.matrix_norm(gR).square()).sqrt()
            size = (both[1] + torch.linalg.matrix_norm(R).square()).sqrt()
        residual = safe_divide(grad, self.observed_norm * size).reshape(1)
        # the largest over the group: every rank then takes the same stopping decision
        return batch_max(all_reduce_max(residual, self.group))

    def row_gram(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``R`` half-step's Gram matrices (n, r * r) and right-hand sides ``M^H L``,
        summed over the group in one all-reduce."""
        G, rhs = self.pattern_t @ _outer(L), self.data_h @ L
        if self.group is None:
            return G, rhs
        both = all_reduce_sum(torch.cat([G, rhs], dim=-1), self.group)
        return both[:, : G.shape[-1]], both[:, G.shape[-1] :]


def _group_exponent(values: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """:func:`power_of_two_exponent` of the whole matrix whose entries the group holds."""
    info = torch.finfo(values.dtype)
    size = values.abs()
    largest = size.amax() if size.numel() else size.new_zeros(())
    largest = all_reduce_max(largest.reshape(1), group)[0]
    norm = all_reduce_sum(size.square().sum(), group).sqrt()
    safe = bool(torch.isfinite(norm)) and info.tiny**0.125 <= float(norm) <= info.max**0.125
    if safe or float(largest) == 0:
        return torch.zeros((), dtype=torch.int64, device=values.device)
    return -torch.frexp(largest)[1].to(torch.int64)


def _row_pointers(rows: torch.Tensor, m: int) -> torch.Tensor:
    """CSR row pointers (m + 1 entries) of sorted row indices."""
    crow = torch.zeros(m + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=m).cumsum(0)
    return crow


Stepper = tuple[Callable[[], float], dict[str, torch.Tensor]]


def _als(problem: _Problem, L: torch.Tensor, R: torch.Tensor) -> Stepper:
    """One ALS iteration per call: exact minimisation over ``L``, then over ``R``."""
    state = {"L": L, "R": R}
    W = problem.W.to(L.dtype)

    def step() -> float:
        state["L"] = _row_solve(problem.M, W, state["R"], problem.reg)
        state["R"] = _row_solve(problem.M.mH, W.mT, state["L"], problem.reg)
        return problem.residual(state["L"], state["R"])

    return step, state


def _sparse_als(problem: _SparseProblem, L: torch.Tensor, R: torch.Tensor) -> Stepper:
    """ALS on the observed entries: each half-step forms every row's Gram matrix with one
    sparse product (the pattern times the rows' outer products) and solves all rows at once."""
    state = {"L": L, "R": R}

    def step() -> float:
        state["L"] = _ridge_solve(
            problem.pattern @ _outer(state["R"]), problem.data @ state["R"], problem.reg
        )
        state["R"] = _ridge_solve(*problem.row_gram(state["L"]), problem.reg)
        return problem.residual(state["L"], state["R"])

    return step, state


def _gd(problem: _Problem | _SparseProblem, L: torch.Tensor, R: torch.Tensor) -> Stepper:
    """One gradient step per call, its length chosen per matrix by backtracking (Armijo)."""
    state = {"L": L, "R": R}
    t = torch.ones_like(problem.reg)
    eps = torch.finfo(problem.reg.dtype).eps

    def step() -> float:
        nonlocal t
        L, R = state["L"], state["R"]
        f0 = problem.value(L, R)
        gL, gR = problem.gradient(L, R)
        g2 = _pair_norm(gL, gR).square()
        t = 2 * t
        for _ in range(_HALVINGS):
            Lc, Rc = L - t[..., None, None] * gL, R - t[..., None, None] * gR
            ok = problem.value(Lc, Rc) <= f0 - _ARMIJO * t * g2 + 10 * eps * f0.abs()
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t / 2)
        keep = ok[..., None, None]
        state["L"], state["R"] = torch.where(keep, Lc, L), torch.where(keep, Rc, R)
        return problem.residual(state["L"], state["R"])

    return step, state


def _start(
    problem: _Problem, rank: int, init: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral start (top-``rank`` SVD of ``P_Omega(M) / p``) or a scaled Gaussian start."""
    M = problem.M
    m, n = M.shape[-2:]
    if init == "random":
        c = (m * n * rank) ** -0.25
        L = c * randn_like((*M.shape[:-2], m, rank), M, generator)
        return L, c * randn_like((*M.shape[:-2], n, rank), M, generator)
    fraction = problem.W.mean(dim=(-2, -1))
    fraction = torch.where(fraction > 0, fraction, torch.ones_like(fraction))
    B = M / fraction[..., None, None].to(M.dtype)
    block = min(rank + 10, m, n)
    (U, S, V), _ = on_tall(
        B,
        lambda A: subspace_kernel(
            A, rank, block, generator, rtol=1e-3, max_iter=10, function=_FUNCTION
        ),
    )
    root = S.sqrt()
    return scale_columns(U, root), scale_columns(V, root)


def _sparse_start(
    problem: _SparseProblem, rank: int, init: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_start` for sparse ``M``: the same draws, and the same subspace kernel run on
    the operator view of the sparse ``P_Omega(M) / p``."""
    m, n = problem.shape
    like = problem.values
    if init == "random":
        c = (m * n * rank) ** -0.25
        L = c * randn_like((m, rank), like, generator)
        return L, c * randn_like((n, rank), like, generator)
    fraction = problem.count / (m * n) if problem.count else 1.0
    B = problem.view.map_entries(lambda values: values / fraction)
    block = min(rank + 10, m, n)
    (U, S, V), _ = on_tall(
        B,
        lambda A: subspace_kernel(
            A, rank, block, generator, rtol=1e-3, max_iter=10, function=_FUNCTION
        ),
    )
    root = S.sqrt()
    return scale_columns(U, root), scale_columns(V, root)


def _bits(value: float) -> int:
    """The bits of a float64 as a signed 64-bit integer (for agreeing on floats across ranks)."""
    return int(struct.unpack("<q", struct.pack("<d", float(value)))[0])


def _agreed_callback(
    callback: Callable[[int, float], object], group: ProcessGroup, device: torch.device
) -> Callable[[int, float], bool]:
    """``callback`` whose True on any rank stops every rank (they must stop together)."""

    def agreed(i: int, residual: float) -> bool:
        stop = torch.tensor([1 if callback(i, residual) else 0], device=device)
        return bool(all_reduce_max(stop, group)[0])

    return agreed


def _group_start(
    problem: _SparseProblem, rank: int, init: str, generator: torch.Generator, offset: int, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start of :func:`_sparse_start` when ``M``'s rows are split over a process group.

    ``offset`` is this rank's first row, ``m`` the whole matrix's rows.  The random start
    draws the whole ``L`` on every rank (the same generator) and keeps this rank's rows:
    the same start as one process.  The spectral start needs no orthonormalisation of
    row-split blocks: it iterates on the replicated n side, ``V = orth(B^H B V)`` with
    ``B = P_Omega(M) / p`` (one all-reduce of an n x block product per iteration), and
    takes the Ritz triplets of ``B V`` from the Gram matrix ``(BV)^H BV = V^H B^H B V``;
    same subspace as the one-process start, stopping rule residual 1e-3 or 10 iterations.
    """
    rows, n = problem.shape
    like = problem.values
    if init == "random":
        c = (m * n * rank) ** -0.25
        L = c * randn_like((m, rank), like, generator)[offset : offset + rows]
        return L, c * randn_like((n, rank), like, generator)
    fraction = problem.count / (m * n) if problem.count else 1.0
    A, A_h = problem.data, problem.data_h
    block = min(rank + 10, m, n)
    norm = problem.observed_norm / fraction
    V = orth(all_reduce_sum(A_h @ (A @ randn_like((n, block), like, generator)), problem.group))
    state: dict[str, torch.Tensor] = {}

    def step() -> float:
        nonlocal V
        Y = A @ V / fraction  # this rank's rows of B V
        Z = all_reduce_sum(A_h @ Y, problem.group) / fraction  # B^H B V, replicated
        values, W = torch.linalg.eigh(V.mH @ Z)  # (BV)^H BV, ascending
        W, s = W.flip(-1)[:, :rank], values.flip(-1)[:rank].clamp_min(0).sqrt()
        s_safe = torch.where(s > 0, s, torch.ones_like(s))
        # Ritz triplets (Y W / s, s, V W): A V W = U s exactly; the residual is A^H U - V W s
        miss = torch.linalg.matrix_norm(scale_columns(Z @ W, 1 / s_safe) - scale_columns(V @ W, s))
        state.update(Y=Y @ W, S=s, V=V @ W)
        V = orth(Z)
        return float(safe_divide(miss, norm))

    iterate(_FUNCTION, step, rtol=1e-3, max_iter=10)
    s = state["S"]
    root = s.sqrt()
    inverse_root = torch.where(s > 0, 1 / torch.where(s > 0, root, torch.ones_like(root)), 0)
    return scale_columns(state["Y"], inverse_root), scale_columns(state["V"], root)


def complete(
    M: torch.Tensor,
    mask: torch.Tensor | None,
    rank: int,
    *,
    method: str = "als",
    rtol: float | None = None,
    max_iter: int | None = None,
    callback: Callable[[int, float], object] | None = None,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    group: ProcessGroup | None = None,
) -> CompletionResult:
    r"""Complete a low-rank matrix from the entries where ``mask`` is True, or sparse ``M``'s.

    Fits :math:`X = L R^{\text{H}}` with :math:`L \in \mathbb{K}^{m \times r}` and
    :math:`R \in \mathbb{K}^{n \times r}` to the observed entries :math:`\Omega`
    of ``M`` by minimising

    .. math:: f(L, R) = \tfrac12 \|P_\Omega(L R^{\text{H}} - M)\|_F^2
              + \tfrac{\lambda}{2} (\|L\|_F^2 + \|R\|_F^2),

    where :math:`P_\Omega` keeps the observed entries and zeroes the others.  The
    entries of ``M`` where ``mask`` is False are ignored entirely: they may hold
    anything, NaN included.  Observed entries must be finite.  With every entry
    observed and :math:`\lambda = 0`, the minimum is the truncated SVD of ``M``
    (Eckart--Young).

    Supports input of float, double, cfloat and cdouble dtypes. Also supports
    batches of matrices, and if A is a batch of matrices then the output has the
    same batch dimensions.  (Here ``A`` is ``M``; ``mask`` may be shared by the
    batch, e.g. of shape (m, n).)  One loop advances every matrix of the batch.

    Sparse input: ``M`` may be a torch sparse COO tensor (CSR and CSC are converted
    to COO) of shape (m, n), with ``mask=None``: its stored entries are the
    observations, and every stored entry counts, an explicitly stored zero
    included (``dense.to_sparse()`` drops zeros, so build the tensor from the
    observed indices with :func:`torch.sparse_coo_tensor` when zeros are observed).
    An index pair stored twice (an uncoalesced tensor with repeats) is an error, not
    a sum.  Memory is O(nnz + (m + n) r^2): the entries in row- and column-major
    order, the factors, and the ``r x r`` Gram matrices of the ALS half-steps; no
    m x n tensor is formed, so the result's ``X`` is None: read entries with
    the result's method ``entries``, ``result.entries(rows, cols)``, that is
    ``(L[rows] * R[cols].conj()).sum(-1)``.  Every method and option works on
    sparse input, with the same iterates as on the dense ``M`` and mask of the same
    entries, up to rounding.  Batches of sparse matrices are not supported.

    Many processes (``group=``, a :mod:`torch.distributed` process group, e.g.
    ``torch.distributed.group.WORLD`` after ``init_process_group("gloo")``): each
    rank passes its own block of rows of ``M`` as a sparse ``(m_i, n)`` matrix (row
    ``j`` of the block is row ``offset + j`` of the whole, the blocks in rank order)
    and gets back its rows of ``L`` (m_i, r) and the whole ``R`` (n, r), the same on
    every rank.  The ``L`` half-step is local; the ``R`` half-step sums the column
    Gram matrices and right-hand sides over the group with one ``all_reduce`` of
    n (r^2 + r) numbers per iteration, next to O(nnz_i r^2) flops on each rank; norms
    and the residual are all-reduced too, so every rank stops at the same iteration.
    Methods ``"als"`` and ``"gd"`` only.  Every rank must pass the same ``n``,
    dtype, ``rank``, ``method``, ``rtol``, ``max_iter``, ``seed`` and options
    (checked: a mismatch, or a bad input on any rank, raises on every rank rather
    than leaving the others waiting); a ``callback`` returning True on any rank
    stops all.  The random start is the one-process start; the spectral start
    iterates on the replicated n side (``V = orth(B^H B V)``, one all-reduce per
    iteration) and spans the same subspace as the one-process start, so the answer
    is the one-process answer to rounding where the minimiser is unique, but the
    iterates are not the same.

    The result stays on A's device and dtype.  Random starts come from a private
    :class:`torch.Generator` seeded by ``seed``; the global random state is neither
    used nor changed.
    Inputs whose squared entries would overflow or underflow are divided by a
    power of two before iterating (exactly, as LAPACK's drivers do) and the result
    is scaled back.

    Every method works on the normalised problem :math:`M / s`,
    :math:`s = \|P_\Omega(M)\|_F`, and scales back at the end (``L`` and ``R`` by
    :math:`\sqrt{s}`), so step sizes and learning rates do not depend on the scale
    of ``M``.  All methods start from the same point: by default the spectral
    start :math:`L = U S^{1/2}`, :math:`R = V S^{1/2}` from the top-``rank`` SVD of
    :math:`P_\Omega(M)/p` (``p`` the observed fraction), computed by a few
    iterations of :func:`gdla.svd`'s subspace kernel.

    Methods (``method=``):

    ``"als"`` (default)
        Alternating least squares: each iteration minimises ``f`` exactly over
        ``L`` (one ``r x r`` ridge system per row, all solved in one batched
        Cholesky, or by pseudo-inverse when one is singular), then over ``R``.
        For sparse ``M`` every row's Gram matrix :math:`R^{\text{H}} D_i R` comes
        from one sparse product: the pattern of observed entries (CSR) times the
        rows' outer products :math:`\bar r_j r_j^{\text{T}}`, O(nnz r^2) flops.
    ``"gd"``
        Gradient descent on ``(L, R)`` with a backtracking (Armijo) line search per
        matrix: the trial step is twice the last accepted one (1 at first) and is
        halved, at most 60 times, until
        :math:`f(\text{new}) \le f - 10^{-4}\, t \|\nabla f\|^2`
        (up to 10 epsilons of ``f`` for rounding).
    ``"sgd"``, ``"adam"``, ``"lbfgs"``
        :mod:`torch.optim` on the sum of ``f`` over the batch; ``options`` other
        than ``reg`` and ``init`` are passed to the optimiser.  Each ``"lbfgs"``
        iteration is one ``step()`` of up to 20 LBFGS iterations with a
        strong-Wolfe line search, whose absolute tolerance (1e-9 on the step)
        can make it stall short of a tight ``rtol`` (reported as not converged).

    Options (all methods): ``reg`` :math:`\lambda \ge 0`, in the units of ``M``
    (default 0: plain masked least squares; a row or column with fewer than
    ``rank`` observed entries is then underdetermined, and ALS gives it the
    minimum-norm solution by pseudo-inverse.  A positive :math:`\lambda` shrinks
    the singular values of the fit by :math:`\lambda`, exactly so when every entry
    is observed); ``init``,
    ``"spectral"`` (default) or ``"random"`` (Gaussian factors of the scale of
    ``M``).

    Stopping rule: the monitored residual is the relative gradient (first-order
    optimality)

    .. math:: r = \max_{\text{batch}} \frac{\|(\nabla_L f, \nabla_R f)\|_F}
              {\|P_\Omega(M)\|_F \, \|(L, R)\|_F},
              \quad \nabla_L f = E R + \lambda L,\ \nabla_R f = E^{\text{H}} L + \lambda R,
              \ E = P_\Omega(L R^{\text{H}} - M),

    (the plain gradient norm where the denominator vanishes: nothing observed, or
    ``L = R = 0``), evaluated after each iteration.
    The iteration stops after iteration ``i`` when ``r_i <= rtol``
    (``converged=True``), when ``callback(i, r_i)`` returns True, when ``r_i`` is
    NaN or infinite, or after ``max_iter`` iterations (these three with
    ``converged=False``).  ``converged`` certifies a stationary point: for data that
    are not of low rank, or too few observed entries, it need not be the matrix
    that generated the data.

    Results are not differentiable: when M requires grad, they raise a clear error in
    backward.  Every method works under :func:`torch.inference_mode` and with
    inference tensors; the :mod:`torch.optim` methods return the best iterate seen when
    they do not converge (the message says so).

    Parameters
    ----------
    M : Tensor
        Matrix or batch of matrices of shape (*, m, n); only the observed entries are
        used.  Or a sparse COO (CSR, CSC) matrix of shape (m, n) whose stored
        entries are the observations.
    mask : Tensor or None
        Boolean tensor broadcastable to M's shape, True where ``M`` is observed;
        None for sparse ``M``.
    rank : int
        Rank ``r`` of the fit, ``1 <= rank <= min(m, n)``.
    method : str, optional
        ``"als"`` (default), ``"gd"``, ``"sgd"``, ``"adam"`` or ``"lbfgs"``.
    rtol : float, optional
        Tolerance of the stopping rule.  Default ``default_rtol(M.dtype)``, 100
        machine epsilons.
    max_iter : int, optional
        Largest number of iterations; default 1,000 for ``"als"``, 2,000 for
        ``"lbfgs"``, 20,000 for the others.
    callback : callable, optional
        ``callback(i, r_i)`` is called after every iteration (the last one
        included); returning True stops the iteration.
    options : dict, optional
        ``reg``, ``init`` and, for the :mod:`torch.optim` methods, the optimiser's
        arguments.  Unknown keys raise :class:`OptionError`.
    seed : int, optional
        Seed of the private generator of the random start.  Default 0.
    group : torch.distributed.ProcessGroup, optional
        Split ``M``'s rows over the processes of ``group`` (sparse ``M`` only; see
        above).  Default None: one process.

    Returns
    -------
    CompletionResult
        With fields, in this order, ``X`` = ``L @ R^H`` of shape (*, m, n) (None for
        sparse ``M``), ``L`` of shape (*, m, r) and ``R`` of shape (*, n, r), and the
        bookkeeping ``method``, ``nit``, ``converged``, ``message``, ``history``.  An
        empty input gives empty or zero factors with ``converged=True`` and ``nit=0``.

    Raises
    ------
    DtypeError
        ``M`` is not a float, double, cfloat or cdouble tensor (dense, or sparse
        COO, CSR or CSC), or ``mask`` is not a boolean tensor.
    ShapeError
        ``M`` has fewer than two dimensions, or ``mask`` does not broadcast to
        M's shape (or is on another device); sparse ``M`` is not one matrix
        (a batch, or dense dimensions) or has an index out of range; with
        ``group``, the ranks' blocks or settings differ (on every rank).
    NonFiniteError
        An observed entry of ``M`` is NaN or infinite.
    OptionError
        ``rank`` out of range, unknown ``method``, non-positive ``rtol`` or
        ``max_iter``, a negative ``seed`` or a bad ``options`` entry; a ``mask``
        given with sparse ``M``; ``group`` not a process group, or given with dense
        ``M`` or a method other than ``"als"`` and ``"gd"``.
    GdlaInputError
        Sparse ``M`` stores an index pair more than once; with ``group``, another
        rank's input was bad (that rank raises its own error).

    See Also
    --------
    gdla.svd : the truncated SVD that complete matches on fully observed matrices.
    torch.linalg.svd : the direct SVD.
    torch.svd_lowrank : randomized low-rank SVD.

    Examples
    --------
    >>> import torch, gdla
    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.randn(30, 2, generator=g, dtype=torch.float64) @ torch.randn(
    ...     2, 20, generator=g, dtype=torch.float64)
    >>> mask = torch.rand(30, 20, generator=g) < 0.5
    >>> result = gdla.complete(truth.masked_fill(~mask, float("nan")), mask, rank=2)
    >>> result.converged, result.X.shape, result.L.shape, result.R.shape
    (True, torch.Size([30, 20]), torch.Size([30, 2]), torch.Size([20, 2]))
    >>> bool(torch.linalg.matrix_norm(result.X - truth) < 1e-8 * torch.linalg.matrix_norm(truth))
    True

    The same entries as a sparse tensor: the factors, no ``X``.

    >>> rows, cols = mask.nonzero().T
    >>> M = torch.sparse_coo_tensor(
    ...     torch.stack([rows, cols]), truth[rows, cols], (30, 20), check_invariants=True)
    >>> sparse = gdla.complete(M, None, rank=2)
    >>> sparse.converged, sparse.X, sparse.L.shape
    (True, None, torch.Size([30, 2]))
    >>> bool((sparse.entries(rows, cols) - truth[rows, cols]).abs().max() < 1e-8)
    True
    """
    differentiable = _implicit.wanted(M)
    M_input = M
    group = check_group(_FUNCTION, group)
    with agreement(_FUNCTION, group):  # a bad input on one rank stops every rank
        sparse = isinstance(M, torch.Tensor) and M.layout != torch.strided
        if group is not None and not sparse:
            found = type(M).__name__ if not isinstance(M, torch.Tensor) else "a dense M"
            raise OptionError(
                _FUNCTION, "M sparse (this rank's block of rows) when group is given", found
            )
        if sparse:
            rows, cols, values = _check_sparse(M, mask)
            like, shape = values, tuple(M.shape)
        else:
            observed, seen = _check_inputs(M, mask)
            like, shape = observed, tuple(observed.shape)
        check_option(_FUNCTION, "method", method, METHODS)
        if group is not None and method not in ("als", "gd"):
            raise OptionError(_FUNCTION, "method 'als' or 'gd' when group is given", repr(method))
        m, n = shape[-2:]
        if min(m, n) == 0 or group is not None:  # with a group: checked against all rows below
            check_positive(_FUNCTION, "rank", rank, integer=True)  # type: ignore[arg-type]
            rank = int(rank)
        else:
            rank = check_rank(_FUNCTION, "rank", rank, min(m, n))
        rtol = default_rtol(like.dtype) if rtol is None else rtol
        rtol = check_positive(_FUNCTION, "rtol", rtol)
        max_iter = _MAX_ITER[method] if max_iter is None else max_iter
        max_iter = int(check_positive(_FUNCTION, "max_iter", max_iter, integer=True))
        generator = seeded_generator(_FUNCTION, seed, like.device)

        ours = {"reg": 0.0, "init": "spectral"}
        if method in ("als", "gd"):
            opts = method_options(_FUNCTION, method, options, ours)
            optimiser_options: dict[str, Any] = {}
        else:
            given = options_dict(_FUNCTION, options)
            opts = {key: given.pop(key, value) for key, value in ours.items()}
            optimiser_options = given
        reg = check_number(_FUNCTION, "options['reg']", opts["reg"], low=0)
        check_option(_FUNCTION, "options['init']", opts["init"], ("spectral", "random"))

    offset, rows_total = 0, m
    if group is not None:
        # every rank must run the same iteration: same n, dtype, rank and settings
        offset, rows_total = check_row_blocks(
            _FUNCTION, "M", shape, like.dtype, group, rank=rank, method=METHODS.index(method),
            max_iter=max_iter, rtol=_bits(rtol), reg=_bits(reg), seed=int(seed) - 2**63,
            init=("spectral", "random").index(opts["init"]),
        )  # fmt: skip
        if min(rows_total, n) > 0:
            rank = check_rank(_FUNCTION, "rank", rank, min(rows_total, n))
        if callback is not None:
            callback = _agreed_callback(callback, group, like.device)

    batch = shape[:-2]
    if math.prod(shape[:-2]) * rows_total * n == 0:
        return CompletionResult(
            method=method,
            nit=0,
            converged=True,
            message="empty input: nothing to compute",
            history=[],
            X=None if sparse else observed.clone(),
            L=like.new_zeros((*batch, m, rank)),
            R=like.new_zeros((*batch, n, rank)),
        )

    problem: _Problem | _SparseProblem
    with torch.no_grad():
        if sparse and group is not None:
            problem = _SparseProblem(rows, cols, values, (m, n), float(reg), group)
            L, R = _group_start(problem, rank, opts["init"], generator, offset, rows_total)
        elif sparse:
            problem = _SparseProblem(rows, cols, values, (m, n), float(reg))
            L, R = _sparse_start(problem, rank, opts["init"], generator)
        else:
            problem = _Problem(observed, seen.to(observed.real.dtype), float(reg))
            L, R = _start(problem, rank, opts["init"], generator)

    outcome: Outcome
    if method in ("als", "gd"):
        with torch.no_grad():
            if method == "gd":
                stepper, state = _gd(problem, L, R)
            elif isinstance(problem, _SparseProblem):
                stepper, state = _sparse_als(problem, L, R)
            else:
                stepper, state = _als(problem, L, R)
            outcome = iterate(_FUNCTION, stepper, rtol=rtol, max_iter=max_iter, callback=callback)
            L, R = state["L"], state["R"]
    else:
        with autograd_on():
            problem.normalise_tensors()
            L, R = L.clone().requires_grad_(), R.clone().requires_grad_()
        step = torch_optimizer_step(
            _FUNCTION,
            lambda: problem.value(L, R).sum(),
            lambda: problem.residual(L, R),
            [L, R],
            method,
            optimizer_options(_FUNCTION, method, optimiser_options),
        )
        outcome = iterate(_FUNCTION, step, rtol=rtol, max_iter=max_iter, callback=callback)
        if not outcome.converged:
            step.restore_best(outcome)
        L, R = L.detach().clone(), R.detach().clone()

    X: torch.Tensor | None
    if isinstance(problem, _SparseProblem):
        X, (L, R) = None, _unscale_factors(problem.norm, problem.exponent, L, R)
        infinite = (~torch.isfinite(L)).any() | (~torch.isfinite(R)).any()
        finite = not bool(all_reduce_max(infinite.reshape(1).to(torch.int64), group)[0])
    else:
        X, L, R = problem.unscale(L, R)
        finite = bool(torch.isfinite(X).all())
    converged, message = outcome.converged, outcome.message
    if converged and not finite:
        what = "X" if X is not None else "L or R"
        message = f"not converged: {what} overflows {str(L.dtype)[6:]} ({message})"
        converged = False
    if differentiable:
        why = (
            "gdla.complete: its results are not differentiable (a fit of low rank has no "
            "unique derivative); detach M, or differentiate through the returned factors' "
            "use instead"
        )
        if X is None:
            L, R = _implicit.attach_unsupported(why, M_input, L, R)
        else:
            X, L, R = _implicit.attach_unsupported(why, M_input, X, L, R)
    return CompletionResult(
        method=method,
        nit=outcome.nit,
        converged=converged,
        message=message,
        history=outcome.history,
        X=X,
        L=L,
        R=R,
    )
