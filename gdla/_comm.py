"""Collectives over a :mod:`torch.distributed` process group, no-ops without one.

A low floor (it imports only :mod:`torch` and :mod:`gdla._validation`): the functions
that run one computation over several processes, each holding a block of rows of a
matrix, use these helpers and nothing else from :mod:`torch.distributed`.  Every
helper takes an explicit ``group`` (a :class:`torch.distributed.ProcessGroup`, or
``None``) and does nothing when ``group`` is ``None`` or has one process, so that the
same code runs in one process and in many (as fairscale's row-parallel layers do).

The transport is torch's own: gloo on the CPU, NCCL on CUDA tensors.  The helpers:

``rank(group)``, ``world_size(group)``
    This process's index in the group (0 without one) and the group's size (1).
``all_reduce_sum(tensor, group)``, ``all_reduce_max(tensor, group)``
    Sum (real or complex) or maximum (real) over the group, in place, returning
    ``tensor``: call them on a fresh product, never on a caller's input.
``broadcast(tensor, group, source=0)``
    ``tensor`` of the group's rank ``source`` copied to every rank, in place.
``all_gather_counts(count, group)``
    Every rank's integer ``count`` (a number of rows), in rank order.
``agreement(function, group)``
    A context manager: an exception inside it on any rank ends the block on every
    rank, the original error on the rank that raised it and a
    :class:`~gdla.GdlaInputError` naming that rank on the others.  Without it, a
    rank that fails a check leaves the others waiting forever in their next
    collective.
``check_row_blocks(function, name, shape, dtype, group, **agreed)``
    Agreement on the shape of a row-split matrix: every rank's block is a matrix
    ``(m_i, n)`` with the same ``n`` and dtype (and the same value of each keyword
    in ``agreed``, such as ``k``); returns this rank's first row and the total
    number of rows.

Every rank must call the same collectives in the same order with tensors of the same
shape; the helpers that decide whether to stop (:func:`agreement`,
:func:`check_row_blocks`) return the same verdict on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist

from ._validation import SUPPORTED_DTYPES, GdlaInputError, OptionError, ShapeError

__all__ = [
    "check_group",
    "rank",
    "world_size",
    "all_reduce_sum",
    "all_reduce_max",
    "broadcast",
    "all_gather_counts",
    "agreement",
    "check_row_blocks",
]


def check_group(function: str, group: object) -> dist.ProcessGroup | None:
    """``group`` itself if it is ``None`` or a :class:`torch.distributed.ProcessGroup`.

    Raises
    ------
    OptionError
        ``group`` is anything else, or torch was built without distributed support.
    """
    if group is None:
        return None
    if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
        raise OptionError(
            function,
            "group to be None or a torch.distributed.ProcessGroup "
            "(e.g. torch.distributed.group.WORLD after init_process_group)",
            type(group).__name__,
        )
    return group


def world_size(group: dist.ProcessGroup | None) -> int:
    """Number of processes in ``group`` (1 for ``None``)."""
    return 1 if group is None else dist.get_world_size(group)


def rank(group: dist.ProcessGroup | None) -> int:
    """This process's rank within ``group`` (0 for ``None``)."""
    return 0 if group is None else dist.get_rank(group)


def _active(group: dist.ProcessGroup | None) -> bool:
    return group is not None and dist.get_world_size(group) > 1


def _scratch_device(group: dist.ProcessGroup) -> torch.device:
    """Where the group's backend takes small bookkeeping tensors (NCCL: the GPU)."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Sum ``tensor`` over ``group`` in place and return it (unchanged without a group)."""
    if _active(group):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def all_reduce_max(tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Entrywise maximum of the real ``tensor`` over ``group``, in place; return it."""
    if _active(group):
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return tensor


def broadcast(
    tensor: torch.Tensor, group: dist.ProcessGroup | None, source: int = 0
) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with the group rank ``source``'s copy; return it."""
    if _active(group):
        assert group is not None
        dist.broadcast(tensor, src=dist.get_global_rank(group, source), group=group)
    return tensor


def all_gather_counts(count: int, group: dist.ProcessGroup | None) -> list[int]:
    """Every rank's ``count``, in rank order (``[count]`` without a group)."""
    if not _active(group):
        return [int(count)]
    assert group is not None
    counts = torch.zeros(world_size(group), dtype=torch.int64, device=_scratch_device(group))
    counts[rank(group)] = int(count)
    all_reduce_sum(counts, group)
    return [int(c) for c in counts.tolist()]


@contextmanager
def agreement(function: str, group: dist.ProcessGroup | None) -> Iterator[None]:
    """Run the block, then agree across ``group`` on whether it failed on any rank.

    Every rank must enter the block and reach its end or raise inside it.  The rank
    whose block raised re-raises its own exception; every other rank raises a
    :class:`~gdla.GdlaInputError` that names the ranks that failed, so that no rank
    goes on to a collective that the failed ones will never join.
    """
    if not _active(group):
        yield
        return
    assert group is not None
    failed = torch.zeros(world_size(group), dtype=torch.int64, device=_scratch_device(group))
    try:
        yield
    except BaseException:
        failed[rank(group)] = 1
        all_reduce_sum(failed, group)
        raise
    all_reduce_sum(failed, group)
    ranks = [r for r, flag in enumerate(failed.tolist()) if flag]
    if ranks:
        which = ", ".join(str(r) for r in ranks)
        raise GdlaInputError(
            function,
            "valid input on every rank of the group",
            f"an error on rank {which} of {world_size(group)} (that rank's error says why)",
        )


def check_row_blocks(
    function: str,
    name: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    group: dist.ProcessGroup | None,
    **agreed: int,
) -> tuple[int, int]:
    """Check that the row blocks of a matrix agree across ``group``; return (offset, m).

    ``shape`` and ``dtype`` are those of this rank's block of rows (an already checked
    tensor or operator, of a dtype of :data:`gdla._validation.SUPPORTED_DTYPES`).  Every
    rank's block must be a matrix (2 dimensions) with the same number of columns and
    the same dtype, and every keyword of ``agreed`` must have the same value on every
    rank.  Returns the index of this rank's first row in the whole matrix (the rows of
    the ranks before it) and the whole matrix's number of rows.

    Raises
    ------
    ShapeError
        On every rank, when a block is not a matrix, or when the blocks' numbers of
        columns, dtypes or ``agreed`` values differ between ranks.
    """
    with agreement(function, group):
        if len(shape) != 2:
            raise ShapeError(
                function,
                f"{name} to be this rank's row block, a matrix of shape (m_i, n), "
                "when group is given",
                f"shape {tuple(shape)}",
            )
    named = {"n": shape[-1], "dtype": SUPPORTED_DTYPES.index(dtype), **agreed}
    if _active(group):
        assert group is not None
        values = torch.tensor(list(named.values()), dtype=torch.int64)
        both = torch.cat([values, -values]).to(_scratch_device(group))
        all_reduce_max(both, group)
        high, low = both[: len(named)].tolist(), (-both[len(named) :]).tolist()
        for (key, value), lo, hi in zip(named.items(), low, high, strict=True):
            if lo == hi:
                continue
            if key == "dtype":
                found = ", ".join(str(SUPPORTED_DTYPES[i]) for i in sorted({lo, hi}))
                found = f"dtypes {found} (this rank: {dtype})"
            else:
                found = f"{key} from {lo} to {hi} across ranks (this rank: {value})"
            what = "number of columns n" if key == "n" else key
            raise ShapeError(
                function,
                f"row blocks of {name} with the same {what} on every rank of the group",
                found,
            )
    counts = all_gather_counts(shape[0], group)
    here = rank(group)
    return sum(counts[:here]), sum(counts)
