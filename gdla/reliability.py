"""Hard and bad inputs, tried: the promises of :mod:`gdla` and this run's evidence.

:func:`run` tries every kind of input an adversarial user would (singular and
inconsistent systems, entries at both ends of the floating-point range, the global
RNG, optimiser defaults, callbacks, inference mode, sparse and meta tensors, NumPy
numbers, huge seeds, non-finite options, gradients) and returns one
:class:`Probe` per promise: what was tried, what gdla promises, what happened,
and whether the promise held.  The book's "Reliability" page prints the table;
``tests/test_reliability.py`` holds the same promises to many more inputs.

Examples
--------
The book's "Reliability" page runs this at every build (and fails the build when a
promise does not hold), so the doctest does not run it a third time:

>>> from gdla import reliability
>>> probes = reliability.run(quick=True)  # doctest: +SKIP
>>> all(probe.held for probe in probes)  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from ._result import Result
from ._validation import GdlaInputError
from .complete import METHODS as COMPLETE_METHODS
from .complete import complete
from .inverse import inverse
from .matrices import with_condition_number, with_singular_values
from .solve import solve
from .svd import METHODS as SVD_METHODS
from .svd import svd

__all__ = ["Probe", "run", "format_table"]

F64, F32, C128 = torch.float64, torch.float32, torch.complex128
SOLVE_METHODS = ("cg", "gd", "sgd", "adam", "lbfgs", "gmres-ir")
INVERSE_METHODS = ("newton-schulz", "gd", "sgd", "adam", "lbfgs", "original")


@dataclass(frozen=True)
class Probe:
    """One promise and the evidence of this run."""

    category: str
    tried: str
    promise: str
    outcome: str
    held: bool


def _count(successes: int, total: int) -> str:
    return f"{successes} of {total}"


def _singular(quick: bool) -> list[Probe]:
    category = "singular and inconsistent systems"
    A = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64))
    b = torch.ones(3, dtype=F64)
    results = {method: solve(A, b, method=method, max_iter=500) for method in SOLVE_METHODS}
    wrong = [m for m, r in results.items() if r.converged]
    probes = [
        Probe(
            category,
            "solve(diag(2, 1, 0), ones(3)), every square method (max_iter 500)",
            "converged = False; CG, gd and gmres-ir say A is singular",
            f"converged for {_count(len(wrong), len(results))} methods; CG's message: "
            f"“{results['cg'].message.split(':')[1].strip()}”",
            not wrong and all("singular" in results[m].message for m in ("cg", "gd", "gmres-ir")),
        )
    ]
    g = torch.Generator().manual_seed(12)
    trials, converged = (8 if quick else 40), 0
    for trial in range(trials):
        n = 6 + trial % 5
        dtype = F64 if trial % 2 else F32
        M = torch.randn(n, n - 1, generator=g, dtype=F64)
        hermitian = trial % 4 < 2
        A = M @ M.mT if hermitian else M @ torch.randn(n - 1, n, generator=g, dtype=F64)
        b = torch.randn(n, generator=g, dtype=F64)  # outside range(A) almost surely
        converged += solve(A.to(dtype), b.to(dtype), method="cg").converged
    probes.append(
        Probe(
            category,
            f"{trials} random rank-deficient systems (Hermitian and not, float32 and "
            "float64), random b",
            "none reported converged",
            f"{_count(converged, trials)} reported converged",
            converged == 0,
        )
    )
    probes.append(_finite_on_singular())
    result = inverse(torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64))
    probes.append(
        Probe(
            category,
            "inverse([[1, 2], [2, 4]])",
            "converged = False, message says singular",
            f"converged = {result.converged}",
            not result.converged and "singular" in result.message,
        )
    )
    return probes


def _finite_on_singular() -> Probe:
    diagonal = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64))
    pair = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=F64)
    rank_one = torch.outer(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, -2.0, 0.5])).double()
    systems = [  # (A, b, whether b is in the range of A)
        (diagonal, torch.ones(3, dtype=F64), False),
        (diagonal, torch.tensor([1.0, 1.0, 0.0], dtype=F64), True),
        (torch.zeros(3, 3, dtype=F64), torch.ones(3, dtype=F64), False),
        (rank_one, torch.ones(3, dtype=F64), False),
        (pair, torch.tensor([1.0, 0.0], dtype=F64), False),
    ]
    methods = (*SOLVE_METHODS, None, "lsqr", "sketch")
    finite = honest = total = 0
    for A, b, consistent in systems:
        for method in methods:
            result = solve(A, b, method=method, max_iter=100)
            total += 1
            finite += bool(torch.isfinite(result.x).all())
            least_squares = method in ("lsqr", "sketch")  # they promise that solution
            honest += consistent or least_squares or not result.converged
    return Probe(
        "singular and inconsistent systems",
        f"{len(systems)} exactly singular systems (diag(2, 1, 0), zero, rank one, "
        f"[[1, 2], [2, 4]]; b inside and outside the range), every solve method "
        f"({len(methods)}, gmres-ir and the default included)",
        "a finite x, never NaN; converged = False when no x solves Ax = b (lsqr and sketch "
        "return the least-squares solution)",
        f"finite for {_count(finite, total)}, honest for {_count(honest, total)}",
        finite == honest == total,
    )


def _scaled(A: torch.Tensor, exponent: int) -> torch.Tensor:
    """``A * 2**exponent``, exactly, in two steps (2**1024 does not exist)."""
    half = exponent // 2
    return A * 2.0**half * 2.0 ** (exponent - half)


def _range(quick: bool) -> list[Probe]:
    category = "the whole floating-point range"
    probes = []
    for dtype in (F64, F32):
        info = torch.finfo(dtype)
        top = math.frexp(info.max)[1] - 1  # entries >= 2**1023 (float64), 2**127 (float32)
        # (the largest entry is 1.5 * 2**top, beyond which only 2**top more is finite)
        bottom = math.frexp(info.tiny)[1] - 8  # some entries subnormal
        g = torch.Generator().manual_seed(5)
        base = torch.randn(6, 6, generator=g, dtype=F64) + 4 * torch.eye(6, dtype=F64)
        base = (1.5 * base / base.abs().max()).to(dtype)  # largest entry 1.5
        for where, f in (("up to 1.5 · 2^" + str(top), top), ("subnormal", bottom)):
            As = _scaled(base, f)
            A = _scaled(As, -f)  # the input as rounded, back in the normal range
            b = torch.ones(6, dtype=dtype)
            errors = []
            ok = True
            x, x0 = solve(As, _scaled(b, f)), solve(A, b)
            ok &= x.converged
            errors.append(float((x.x - x0.x).norm() / x0.x.norm()))
            S, S0 = svd(As, 2), svd(A, 2)
            ok &= S.converged
            errors.append(float((_scaled(S.S, -f) - S0.S).norm() / S0.S.norm()))
            mask = torch.ones(6, 6, dtype=torch.bool)
            mask[0, 0] = False
            C, C0 = complete(As, mask, 6), complete(A, mask, 6)
            ok &= C.converged
            assert C.X is not None and C0.X is not None  # dense M: X is formed
            errors.append(float((_scaled(C.X, -f) - C0.X).norm() / C0.X.norm()))
            tried = f"{str(dtype)[6:]} entries {where}: solve, svd, complete"
            if where != "subnormal":  # a subnormal matrix's inverse overflows
                X, X0 = inverse(As), inverse(A)
                ok &= X.converged
                errors.append(float((_scaled(X.X, f) - X0.X).norm() / X0.X.norm()))
                tried += ", inverse"
            worst = max(errors)
            probes.append(
                Probe(
                    category,
                    tried,
                    "converged, and the answer of the rescaled normal-range input to 1000 eps",
                    f"worst relative difference {worst:.1e} ({worst / info.eps:.0f} eps)",
                    bool(ok) and worst <= 1e3 * info.eps,
                )
            )
    return probes


def _every_call(n: int = 5) -> list[tuple[str, Callable[[], Result]]]:
    A = with_condition_number(n, 3.0, seed=1)
    b = torch.ones(n, dtype=F64)
    g = torch.Generator().manual_seed(3)
    low_rank = torch.randn(n + 2, 2, generator=g, dtype=F64) @ torch.randn(
        2, n, generator=g, dtype=F64
    )
    mask = torch.rand(n + 2, n, generator=g) < 0.8
    calls: list[tuple[str, Callable[[], Result]]] = []
    calls += [(f"solve {m}", partial(solve, A, b, method=m, max_iter=5)) for m in SOLVE_METHODS]
    calls += [(f"inverse {m}", partial(inverse, A, method=m, max_iter=5)) for m in INVERSE_METHODS]
    calls += [(f"svd {m}", partial(svd, A, 2, method=m, max_iter=5)) for m in SVD_METHODS]
    calls += [
        (f"complete {m}", partial(complete, low_rank, mask, 2, method=m, max_iter=5))
        for m in COMPLETE_METHODS
    ]
    return calls


def _tensors(result: Result) -> list[torch.Tensor]:
    return [v for v in vars(result).values() if isinstance(v, torch.Tensor)]


def _global_state() -> list[Probe]:
    calls = _every_call()
    untouched, same = 0, 0
    for _, call in calls:
        torch.manual_seed(1)
        state = torch.random.get_rng_state()
        first = _tensors(call())
        untouched += torch.equal(torch.random.get_rng_state(), state)
        torch.manual_seed(2)
        second = _tensors(call())
        same += all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    return [
        Probe(
            "no global state",
            f"every method of every function ({len(calls)} calls), under two global seeds",
            "the global RNG untouched; results depend only on seed",
            f"RNG untouched by {_count(untouched, len(calls))}, "
            f"same result under both seeds for {_count(same, len(calls))}",
            untouched == same == len(calls),
        )
    ]


def _optimisers(quick: bool) -> list[Probe]:
    category = "optimisers"
    seeds = range(2 if quick else 5)
    runs = []
    for seed in seeds:
        A = with_condition_number(8, 5.0, seed=seed)
        b = torch.randn(8, generator=torch.Generator().manual_seed(seed), dtype=F64)
        for method in ("lbfgs", "adam"):
            runs.append(solve(A, b, method=method).converged)
            runs.append(inverse(A, method=method).converged)
    svd_runs = {}
    for seed in (2,) if quick else (0, 1, 2):  # rank 3 > k = 2
        B = with_condition_number(3, 5.0, m=4, seed=seed)
        for method in ("penalty", "sgd", "adam", "lbfgs"):
            result = svd(B, 2, method=method)
            exact = torch.linalg.svdvals(B)[:2]
            svd_runs[method, seed] = result.converged and bool(
                ((result.S - exact).abs() <= 1e-12).all()
            )
    g = torch.Generator().manual_seed(0)
    rank_two = torch.randn(8, 2, generator=g, dtype=F64) @ torch.randn(2, 6, generator=g, dtype=F64)
    recentred = svd(rank_two, 2, method="orthogonal", max_iter=1500)
    A = with_condition_number(8, 5.0, seed=0)
    oscillating = inverse(A, method="adam", options={"lr": 0.3}, max_iter=60)
    E = oscillating.X @ A - torch.eye(8, dtype=F64)
    returned = float(
        torch.linalg.matrix_norm(E)
        / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(oscillating.X) + math.sqrt(8))
    )
    best = min(oscillating.history)
    stopped = inverse(A, method="adam", callback=lambda k, r: k >= 3)
    return [
        Probe(
            category,
            f"solve and inverse by lbfgs and adam, defaults, {len(seeds)} matrices of "
            "condition number 5",
            "all converge",
            f"{_count(sum(runs), len(runs))} converged",
            all(runs),
        ),
        Probe(
            category,
            f"svd by penalty, sgd, adam and lbfgs (the original's loss), defaults, k = 2 of "
            f"{'a 4 × 3 matrix' if quick else 'three 4 × 3 matrices'} of condition number 5, "
            "rank 3 > k",
            "all converge on the SVD residual (the loss cannot reach rtol when rank > k), "
            "singular values to 1e-12",
            f"{_count(sum(svd_runs.values()), len(svd_runs))} converged",
            all(svd_runs.values()),
        ),
        Probe(
            category,
            "svd, method 'orthogonal', k = 2 of a rank-2 8 × 6 matrix, seed 0 (its chart "
            "used to crawl at residual 0.35)",
            "converges (the chart re-centred when its parameters grow)",
            f"converged = {recentred.converged} in {recentred.nit} iterations; "
            f"“{recentred.message.split('; ')[-1]}”",
            recentred.converged,
        ),
        Probe(
            category,
            "inverse by adam with lr 0.3 (oscillating), 60 iterations",
            "the best iterate seen is returned, and the message says so",
            f"returned residual {returned:.2e}, best seen {best:.2e}, last "
            f"{oscillating.history[-1]:.2e}",
            math.isclose(returned, best, rel_tol=1e-6)
            and best < oscillating.history[-1]
            and "best iterate" in oscillating.message,
        ),
        Probe(
            category,
            "a callback that stops adam after 3 iterations",
            "the message does not blame A",
            f"“{stopped.message}”",
            "singular" not in stopped.message and "conditioned" not in stopped.message,
        ),
    ]


def _callbacks() -> list[Probe]:
    A = with_condition_number(6, 3.0, seed=0)
    rows = []
    for call in (
        lambda cb: solve(A, torch.ones(6, dtype=F64), callback=cb),
        lambda cb: inverse(A, callback=cb),
        lambda cb: svd(A, 2, callback=cb),
    ):
        seen: list[int] = []
        result = call(lambda k, r, seen=seen: seen.append(k))
        rows.append(result.converged and seen == list(range(1, result.nit + 1)))
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=F64)).Q
    values = torch.linspace(1, 2, 30, dtype=F64)
    values[-1] = -1.0
    indefinite = (Q * values) @ Q.mT
    calls: list[int] = []
    fallback = solve(
        indefinite, torch.ones(30, dtype=F64), method="cg", callback=lambda k, r: calls.append(k)
    )
    return [
        Probe(
            "callback and counts",
            "a callback on solve, inverse and svd until they converge",
            "called after every iteration, the converging one included",
            f"held for {_count(sum(rows), len(rows))}",
            all(rows),
        ),
        Probe(
            "callback and counts",
            "solve, method 'cg', on an indefinite Hermitian matrix (CG falls back to CGLS)",
            "nit, history and the callback count the iterations of both",
            f"nit {fallback.nit}, history {len(fallback.history)}, callback calls {len(calls)}; "
            f"“{fallback.message.split(':')[0]}”",
            fallback.nit == len(fallback.history) == len(calls) and "after" in fallback.message,
        ),
    ]


def _inference() -> list[Probe]:
    calls = _every_call()
    worked = 0
    for _, call in calls:
        with torch.inference_mode():
            try:
                result = call()
            except RuntimeError:
                continue
        worked += all(bool(torch.isfinite(t).all()) for t in _tensors(result))
    return [
        Probe(
            "inference mode",
            f"every method of every function under torch.inference_mode() ({len(calls)} calls)",
            "works, finite results",
            f"{_count(worked, len(calls))} worked",
            worked == len(calls),
        )
    ]


def _inputs() -> list[Probe]:
    square = torch.eye(3, dtype=F64) + 0.1
    vector = torch.ones(3, dtype=F64)
    mask = torch.ones(3, 3, dtype=torch.bool)
    meta = torch.empty(3, 3, dtype=F64, device="meta")
    inf, nan = math.inf, math.nan
    with warnings.catch_warnings():  # torch warns that sparse CSR support is in beta
        warnings.simplefilter("ignore", UserWarning)
        csr = square.to_sparse_csr()
    bad: list[tuple[str, Callable[[], object], str]] = [
        ("sparse COO A for solve's gmres-ir (it needs entries)",
         partial(solve, square.to_sparse(), vector, method="gmres-ir"), "A"),
        ("sparse CSR A for inverse (dense only)", partial(inverse, csr), "A"),
        ("sparse mask", partial(complete, square, mask.to_sparse(), 1), "mask"),
        ("meta A", partial(svd, meta), "A"),
        ("seed = 2**70", partial(svd, square, seed=2**70), "seed"),
        ("options={'reg': inf}", partial(complete, square, mask, 1, options={"reg": inf}), "reg"),
        ("options={'lr': nan}", partial(solve, square, vector, method="adam", options={"lr": nan}),
         "lr"),
        ("rtol = inf", partial(inverse, square, rtol=inf), "rtol"),
    ]  # fmt: skip
    named = 0
    for _, call, name in bad:
        try:
            call()
        except GdlaInputError as error:
            named += name in str(error)
    numpy: Any = np  # NumPy numbers where the signatures say int or float
    good: list[Callable[[], Result]] = [
        partial(solve, square, vector, max_iter=numpy.int64(50), rtol=numpy.float32(1e-6)),
        partial(inverse, square, max_iter=numpy.int32(50)),
        partial(svd, square, numpy.int64(2), seed=numpy.uint64(7)),
        partial(complete, square, mask, numpy.int64(2), options={"reg": numpy.float32(0.0)}),
    ]
    accepted = sum(call().converged for call in good)
    A = torch.randn(6, 4, dtype=C128, generator=torch.Generator().manual_seed(0)).conj()
    outputs = [
        t for k in (1, 4) for m in SVD_METHODS for t in _tensors(svd(A, k, method=m, max_iter=3))
    ]
    plain = sum(not t.is_conj() and not t.is_neg() for t in outputs)
    return [
        Probe(
            "every input a user passes",
            ", ".join(name for name, _, _ in bad),
            "a GdlaInputError that names the input",
            f"{_count(named, len(bad))} did",
            named == len(bad),
        ),
        Probe(
            "every input a user passes",
            "NumPy numbers for max_iter, rtol, k, rank, seed, options",
            "accepted as Python numbers are",
            f"{_count(accepted, len(good))} calls accepted and converged",
            accepted == len(good),
        ),
        Probe(
            "every input a user passes",
            "a lazily conjugated complex A, every svd method, k = 1 and 4",
            "plain returned tensors: no conjugate or negative bit",
            f"{_count(plain, len(outputs))} plain",
            plain == len(outputs),
        ),
    ]


def _gradients() -> list[Probe]:
    checks = []
    g = torch.Generator().manual_seed(0)
    for dtype in (F64, C128):
        A = torch.randn(2, 3, 3, generator=g, dtype=dtype) + 3 * torch.eye(3, dtype=dtype)
        b = torch.randn(2, 3, generator=g, dtype=dtype)
        B = torch.randn(4, 3, generator=g, dtype=dtype)
        A.requires_grad_()
        b.requires_grad_()
        B.requires_grad_()
        checks.append(torch.autograd.gradcheck(lambda A, b: solve(A, b).x, (A, b)))
        checks.append(torch.autograd.gradcheck(lambda A: inverse(A).X, (A,)))
        checks.append(torch.autograd.gradcheck(lambda B: svd(B, 2).S, (B,)))
        checks.append(torch.autograd.gradcheck(lambda B: svd(B).U, (B,)))
    truncated = []
    for dtype in (F64, C128):
        A = torch.randn(2, 4, 3, generator=g, dtype=dtype).requires_grad_()
        truncated.append(torch.autograd.gradcheck(lambda A: svd(A, 2).U, (A,)))
        truncated.append(torch.autograd.gradcheck(lambda A: svd(A, 2).Vh, (A,)))
    repeated = with_singular_values(torch.tensor([3.0, 2.0, 2.0], dtype=F64), 5, 3, seed=0)
    repeated.requires_grad_()
    try:
        svd(repeated, 2).U.sum().backward()
        refused = False
    except RuntimeError as error:
        refused = "distinct, nonzero singular values" in str(error)
    return [
        Probe(
            "gradients",
            "torch.autograd.gradcheck of solve's x, inverse's X, svd's S (k = 2) and U "
            "(k = min(m, n)), float64 and complex128, batched",
            "correct gradients, by implicit differentiation",
            f"{_count(sum(checks), len(checks))} checks passed",
            all(checks),
        ),
        Probe(
            "gradients",
            "torch.autograd.gradcheck of svd's U and Vh for k = 2 of 4 × 3 (a truncated SVD), "
            "float64 and complex128, batched",
            "correct gradients: the adjoint includes the part of A left out",
            f"{_count(sum(truncated), len(truncated))} checks passed",
            all(truncated),
        ),
        Probe(
            "gradients",
            "backward through svd's U, k = 2, when sigma_2 = sigma_3 (one of them left out)",
            "a clear error, not a silent detach",
            "a RuntimeError saying the singular values repeat" if refused else "no error",
            refused,
        ),
    ]


def run(*, quick: bool = True) -> list[Probe]:
    """Try every hard and bad input; one :class:`Probe` per promise.

    ``quick`` tries fewer random systems and matrices (the book's setting, a few
    seconds on two cores); ``quick=False`` tries five times as many.
    """
    probes: list[Probe] = []
    probes += _singular(quick)
    probes += _range(quick)
    probes += _global_state()
    probes += _optimisers(quick)
    probes += _callbacks()
    probes += _inference()
    probes += _inputs()
    probes += _gradients()
    return probes


def format_table(probes: list[Probe]) -> Any:
    """The probes as a Markdown table (an ``IPython.display.Markdown`` object)."""
    from .plotting import markdown_table

    headers = ["category", "tried", "promise", "outcome in this build", "held"]
    rows = [
        [p.category, p.tried, p.promise, p.outcome, "yes" if p.held else "**NO**"] for p in probes
    ]
    return markdown_table(headers, rows)
