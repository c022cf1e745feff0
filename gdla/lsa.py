"""Latent semantic analysis of the Python documentation, in one process or several.

The real sparse matrix of the chapter "Beyond one machine": :func:`python_docs`
builds a document--term matrix from the help texts that ship with every Python
(:mod:`pydoc_data.topics`, the pages ``help("with")`` prints), with no download.
Run as a module under ``torchrun``, it computes the top singular triplets of that
matrix with its rows (documents) split across the processes:

.. code-block:: bash

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m gdla.lsa --k 10

Every process builds the whole matrix (it is small) and keeps its own block of rows,
as a process on another machine would read only its own documents; each passes its
block to ``gdla.svd(A_i, k, group=...)`` (run without ``torchrun``, it is a group of
one process).  Rank 0 prints the singular values, the
terms that weigh most in the leading right singular vectors (the "topics" of latent
semantic analysis), and how far the result is from the one-process
``gdla.svd`` of the whole matrix; ``--out FILE`` also writes these numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .svd import svd

__all__ = ["Corpus", "python_docs", "row_block", "main"]

_WORD = re.compile(r"[a-z][a-z_]+")
_PARAGRAPH = re.compile(r"\n\s*\n")


class Corpus(NamedTuple):
    """A document--term matrix with the names of its rows and columns."""

    #: Sparse COO tensor (documents x terms), coalesced, of tf-idf weights, rows of unit length.
    matrix: torch.Tensor
    #: The term of each column, in alphabetical order.
    terms: list[str]
    #: For each row, the help topic its paragraph comes from (``help(topic)``).
    documents: list[str]


def python_docs(
    *,
    min_words: int = 5,
    min_documents: int = 2,
    max_fraction: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> Corpus:
    """The document--term matrix of the paragraphs of Python's help topics.

    Each help text of :mod:`pydoc_data.topics` (one per topic, sorted by name) is cut
    into paragraphs at blank lines; a paragraph with at least ``min_words`` words is a
    document.  A word is a run of lowercase letters and underscores (after lowering
    the case) of two characters or more, starting with a letter; the terms are the
    words found in at least ``min_documents`` documents and in at most a fraction
    ``max_fraction`` of them (words such as "the" and "is", found nearly everywhere,
    say nothing about a topic: scikit-learn's ``max_df`` does the same).  The entry for document
    ``d`` and term ``t`` is the tf-idf weight ``log(1 + c) log(N / N_t)``, with ``c``
    the count of ``t`` in ``d``, ``N`` documents and ``N_t`` of them containing
    ``t``; each row is then divided by its length (cosine normalisation), so a
    document's weight does not grow with its length.  The matrix depends on the
    Python version (its documentation changes between releases).

    Parameters
    ----------
    min_words : int, optional
        Fewest words of a paragraph that counts as a document.  Default 5.
    min_documents : int, optional
        Fewest documents a term must appear in.  Default 2.
    max_fraction : float, optional
        Largest fraction of the documents a term may appear in.  Default 0.1.
    dtype : torch.dtype, optional
        Floating dtype of the entries.  Default ``torch.float64``.

    Returns
    -------
    Corpus
        ``matrix`` (a coalesced sparse COO tensor, documents x terms), ``terms`` and
        ``documents``.

    Examples
    --------
    >>> corpus = python_docs()
    >>> corpus.matrix.layout, corpus.matrix.shape[0] == len(corpus.documents)
    (torch.sparse_coo, True)
    >>> "lambda" in corpus.terms
    True
    """
    from pydoc_data.topics import topics

    paragraphs: list[Counter[str]] = []
    documents: list[str] = []
    for topic in sorted(topics):
        for paragraph in _PARAGRAPH.split(topics[topic]):
            words = _WORD.findall(paragraph.lower())
            if len(words) >= min_words:
                paragraphs.append(Counter(words))
                documents.append(topic)
    spread = Counter(word for counts in paragraphs for word in counts)
    total = len(paragraphs)
    terms = sorted(
        word for word, found in spread.items() if min_documents <= found <= max_fraction * total
    )
    column = {term: j for j, term in enumerate(terms)}
    rows, cols, values = [], [], []
    for i, counts in enumerate(paragraphs):
        for word, count in counts.items():
            if word in column:
                rows.append(i)
                cols.append(column[word])
                values.append(math.log1p(count) * math.log(total / spread[word]))
    weights = torch.tensor(values, dtype=torch.float64)
    index = torch.tensor([rows, cols], dtype=torch.int64)
    length = torch.zeros(total, dtype=torch.float64).index_add_(0, index[0], weights.square())
    weights = weights / length.sqrt().clamp_min(1e-300)[index[0]]
    shape = (total, len(terms))
    matrix = torch.sparse_coo_tensor(index, weights.to(dtype), shape, check_invariants=True)
    return Corpus(matrix.coalesce(), terms, documents)


def row_block(A: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """Rows ``[rank m / size, (rank + 1) m / size)`` (rounded down) of the sparse COO ``A``,
    a coalesced sparse COO tensor: the block of one process among ``size``."""
    m = A.shape[0]
    first, last = rank * m // size, (rank + 1) * m // size
    indices, values = A.indices(), A.values()
    keep = (indices[0] >= first) & (indices[0] < last)
    shifted = indices[:, keep] - torch.tensor([[first], [0]])
    block = torch.sparse_coo_tensor(
        shifted, values[keep], (last - first, A.shape[1]), check_invariants=True
    )
    return block.coalesce()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``torchrun`` entry point (see the module's docstring); returns the exit code."""
    import torch.distributed as dist

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10, help="number of singular triplets")
    parser.add_argument("--top", type=int, default=6, help="terms shown per singular vector")
    parser.add_argument("--show", type=int, default=4, help="singular vectors whose terms print")
    parser.add_argument("--out", default=None, help="write the numbers as JSON to this file")
    parser.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (CUDA tensors)")
    args = parser.parse_args(argv)

    if "RANK" in os.environ:  # launched by torchrun, which says who is who
        if os.environ.get("MASTER_ADDR") in ("localhost", "127.0.0.1") and sys.platform == "linux":
            # One machine (--standalone): talk over loopback, even where the host name
            # does not resolve to a reachable address.
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group(args.backend)
    else:  # plain `python -m gdla.lsa`: a group of one process
        dist.init_process_group(args.backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        group = dist.group.WORLD
        rank, size = dist.get_rank(), dist.get_world_size()
        corpus = python_docs()
        device = torch.device("cpu")
        if args.backend == "nccl":  # one GPU per process
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        block = row_block(corpus.matrix, rank, size).to(device)
        result = svd(block, args.k, group=group)
        rows = [0] * size
        dist.all_gather_object(rows, block.shape[0])
        if rank == 0:
            single = svd(corpus.matrix.to(device), args.k)
            S_error = float(((result.S - single.S).abs() / single.S[0]).max())
            Vh_error = float((result.Vh - single.Vh).abs().max())
            m, n = corpus.matrix.shape
            agree = S_error <= 1e-12 and Vh_error <= 1e-9
            processes = "1 process" if size == 1 else f"{size} processes"
            print(f"{processes}, rows of the {m} x {n} matrix per process: {rows}")
            print(f"converged: {result.converged}")
            print("singular values:", " ".join(f"{s:.4f}" for s in result.S.tolist()))
            print(f"same S (to 1e-12 sigma_1) and Vh (to 1e-9) as one process: {agree}")
            for j in range(min(args.show, args.k)):
                weights = result.Vh[j]
                top = weights.abs().argsort(descending=True)[: args.top].tolist()
                listed = ", ".join(f"{corpus.terms[t]} {float(weights[t]):+.2f}" for t in top)
                print(f"v_{j + 1}: {listed}")
            if args.out:
                numbers = {
                    "processes": size, "rows": rows, "shape": [m, n], "k": args.k,
                    "S": result.S.tolist(), "S_single": single.S.tolist(),
                    "S_error": S_error, "Vh_error": Vh_error, "nit": result.nit,
                    "converged": result.converged, "message": result.message,
                }  # fmt: skip
                with open(args.out, "w", encoding="utf-8") as file:
                    json.dump(numbers, file)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    # Leave without the interpreter's teardown, where gloo's threads sometimes end the
    # process with "terminate called without an active exception" (torch 2.13).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
