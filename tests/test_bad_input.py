"""Bad input, measured: every public function answers every bad input with a clear error.

A clear error is a :class:`gdla.GdlaInputError` (a ``ValueError``; a ``TypeError``
too for dtypes) whose message starts with the public function's name and says
what was expected and what was found.  The terminal summary prints a table of
the bad inputs tried and the clear errors returned per function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch

import gdla

# The terminal summary prints this module's table: keep it out of xdist workers.
pytestmark = pytest.mark.serial

TRIED: Counter[str] = Counter()
CLEAR: Counter[str] = Counter()

F64 = torch.float64
square = torch.eye(3, dtype=F64) + 0.1
wide = torch.ones(2, 3, dtype=F64)
vector = torch.ones(3, dtype=F64)
with_nan = square.clone()
with_nan[0, 0] = float("nan")
with_inf = square.clone()
with_inf[1, 2] = float("inf")
mask = torch.ones(3, 3, dtype=torch.bool)
coo = square.to_sparse()
csr = square.to_sparse_csr()
# Bad sparse tensors (built without torch's invariant checks, as a user's code may) and
# operators whose products break their promise.
_ones = torch.ones(3, dtype=F64)
duplicated_coo = torch.sparse_coo_tensor(
    torch.tensor([[0, 0, 1], [0, 0, 1]]), _ones, (3, 3), check_invariants=False
)
duplicated_csr = torch.sparse_csr_tensor(
    torch.tensor([0, 2, 3, 3]), torch.tensor([1, 1, 0]), _ones, (3, 3), check_invariants=False
)
outside_coo = torch.sparse_coo_tensor(
    torch.tensor([[0, 5, 1], [0, 1, 1]]), _ones, (3, 3), check_invariants=False
)
nan_coo = torch.sparse_coo_tensor(
    torch.tensor([[0], [0]]),
    torch.tensor([float("nan")], dtype=F64),
    (3, 3),
    check_invariants=False,
)
bsr = square.to_sparse_bsr((1, 1))
_identity = lambda X: X  # noqa: E731
operator = gdla.LinearOperator((3, 3), _identity, _identity, dtype=F64)
wrong_shape = gdla.LinearOperator((3, 3), lambda X: X[:2], _identity, dtype=F64)
wrong_dtype = gdla.LinearOperator((3, 3), lambda X: X.float(), _identity, dtype=F64)
wrong_device = gdla.LinearOperator((3, 3), _identity, lambda Y: Y.to("meta"), dtype=F64)
meta = torch.empty(3, 3, dtype=F64, device="meta")
INF, NAN = float("inf"), float("nan")

BAD_INPUTS: dict[str, dict[str, Callable[[], object]]] = {
    "gdla.solve": {
        "a list instead of a tensor": lambda: gdla.solve([[1.0]], vector),
        "integer dtype": lambda: gdla.solve(square.long(), vector),
        "bool dtype": lambda: gdla.solve(square.bool(), vector),
        "float16 dtype": lambda: gdla.solve(square.half(), vector.half()),
        "1-D A": lambda: gdla.solve(vector, vector),
        "b of n entries for a wide m x n A": lambda: gdla.solve(wide, vector),
        "non-square A for method='cg'": lambda: gdla.solve(wide, vector[:2], method="cg"),
        "b of the wrong length": lambda: gdla.solve(square, torch.ones(4, dtype=F64)),
        "b of another dtype": lambda: gdla.solve(square, vector.float()),
        "NaN in A": lambda: gdla.solve(with_nan, vector),
        "Inf in b": lambda: gdla.solve(square, torch.tensor([1.0, float("inf"), 0.0], dtype=F64)),
        "unknown method": lambda: gdla.solve(square, vector, method="magic"),
        "negative rtol": lambda: gdla.solve(square, vector, rtol=-1.0),
        "zero max_iter": lambda: gdla.solve(square, vector, max_iter=0),
        "sparse COO A with a duplicate index": lambda: gdla.solve(duplicated_coo, vector),
        "sparse CSR A with a duplicate index": lambda: gdla.solve(duplicated_csr, vector),
        "sparse A with an index out of range": lambda: gdla.solve(outside_coo, vector),
        "NaN in a sparse A": lambda: gdla.solve(nan_coo, vector),
        "sparse BSR A": lambda: gdla.solve(bsr, vector),
        "sparse A for method='sketch'": lambda: gdla.solve(coo, vector, method="sketch"),
        "operator A for method='gmres-ir'": lambda: gdla.solve(operator, vector, method="gmres-ir"),
        "operator's product of the wrong shape": lambda: gdla.solve(wrong_shape, vector),
        "operator's product of the wrong dtype": lambda: gdla.solve(wrong_dtype, vector),
        "operator's adjoint on the wrong device": lambda: gdla.solve(wrong_device, vector),
        "b of another dtype than the operator": lambda: gdla.solve(operator, vector.float()),
        "sparse b": lambda: gdla.solve(square, vector.to_sparse()),
        "meta A": lambda: gdla.solve(meta, vector),
        "group that is not a ProcessGroup": lambda: gdla.solve(square, vector, group="world"),
        "NaN rtol": lambda: gdla.solve(square, vector, rtol=NAN),
        "infinite rtol": lambda: gdla.solve(square, vector, rtol=INF),
        "infinite lr": lambda: gdla.solve(square, vector, method="adam", options={"lr": INF}),
    },
    "gdla.inverse": {
        "a list instead of a tensor": lambda: gdla.inverse([[1.0]]),
        "integer dtype": lambda: gdla.inverse(square.long()),
        "bool dtype": lambda: gdla.inverse(square.bool()),
        "1-D A": lambda: gdla.inverse(vector),
        "non-square A": lambda: gdla.inverse(wide),
        "NaN in A": lambda: gdla.inverse(with_nan),
        "Inf in A": lambda: gdla.inverse(with_inf),
        "unknown method": lambda: gdla.inverse(square, method="magic"),
        "negative rtol": lambda: gdla.inverse(square, rtol=-1.0),
        "non-integer max_iter": lambda: gdla.inverse(square, max_iter=2.5),
        "sparse COO A": lambda: gdla.inverse(coo),
        "sparse CSR A": lambda: gdla.inverse(csr),
        "meta A": lambda: gdla.inverse(meta),
        "NaN lr": lambda: gdla.inverse(square, method="sgd", options={"lr": NAN}),
        "infinite momentum": lambda: gdla.inverse(
            square, method="original", options={"momentum": INF}
        ),
    },
    "gdla.svd": {
        "a list instead of a tensor": lambda: gdla.svd([[1.0]]),
        "integer dtype": lambda: gdla.svd(square.long()),
        "bool dtype": lambda: gdla.svd(square.bool()),
        "1-D A": lambda: gdla.svd(vector),
        "NaN in A": lambda: gdla.svd(with_nan),
        "Inf in A": lambda: gdla.svd(with_inf),
        "k = 0": lambda: gdla.svd(square, 0),
        "k > min(m, n)": lambda: gdla.svd(wide, 3),
        "non-integer k": lambda: gdla.svd(square, 1.5),
        "unknown method": lambda: gdla.svd(square, method="magic"),
        "negative rtol": lambda: gdla.svd(square, rtol=-1.0),
        "sparse COO A with a duplicate index": lambda: gdla.svd(duplicated_coo),
        "sparse CSR A with a duplicate index": lambda: gdla.svd(duplicated_csr),
        "sparse A with an index out of range": lambda: gdla.svd(outside_coo),
        "NaN in a sparse A": lambda: gdla.svd(nan_coo),
        "sparse BSR A": lambda: gdla.svd(bsr),
        "sparse A for method='penalty'": lambda: gdla.svd(csr, method="penalty"),
        "operator A for method='orthogonal'": lambda: gdla.svd(operator, method="orthogonal"),
        "operator's product of the wrong shape": lambda: gdla.svd(wrong_shape),
        "operator's product of the wrong dtype": lambda: gdla.svd(wrong_dtype),
        "operator's adjoint on the wrong device": lambda: gdla.svd(wrong_device),
        "meta A": lambda: gdla.svd(meta),
        "group that is not a ProcessGroup": lambda: gdla.svd(square, group="world"),
        "seed beyond 64 bits": lambda: gdla.svd(square, seed=2**70),
        "NaN lr": lambda: gdla.svd(square, method="penalty", options={"lr": NAN}),
        "infinite step": lambda: gdla.svd(square, method="riemannian", options={"step": INF}),
    },
    "gdla.complete": {
        "a list instead of a tensor": lambda: gdla.complete([[1.0]], mask, 1),
        "integer dtype": lambda: gdla.complete(square.long(), mask, 1),
        "1-D M": lambda: gdla.complete(vector, mask[0], 1),
        "Inf where observed": lambda: gdla.complete(with_inf, mask, 1),
        "mask of another shape": lambda: gdla.complete(square, mask[:2], 1),
        "mask not bool": lambda: gdla.complete(square, mask.double(), 1),
        "rank = 0": lambda: gdla.complete(square, mask, 0),
        "rank > min(m, n)": lambda: gdla.complete(square, mask, 4),
        "unknown method": lambda: gdla.complete(square, mask, 1, method="magic"),
        "negative rtol": lambda: gdla.complete(square, mask, 1, rtol=-1.0),
        "sparse COO M with a mask": lambda: gdla.complete(coo, mask, 1),
        "sparse COO M with a sparse mask": lambda: gdla.complete(coo, mask.to_sparse(), 1),
        "sparse M with a repeated index pair": lambda: gdla.complete(duplicated_coo, None, 1),
        "sparse CSR M with a repeated column": lambda: gdla.complete(duplicated_csr, None, 1),
        "sparse M with an index out of range": lambda: gdla.complete(outside_coo, None, 1),
        "NaN stored in sparse M": lambda: gdla.complete(nan_coo, None, 1),
        "BSR M": lambda: gdla.complete(bsr, None, 1),
        "batch of sparse M": lambda: gdla.complete(torch.stack([coo, coo]), None, 1),
        "sparse mask": lambda: gdla.complete(square, mask.to_sparse(), 1),
        "meta M": lambda: gdla.complete(meta, mask, 1),
        "seed beyond 64 bits": lambda: gdla.complete(square, mask, 1, seed=2**70),
        "infinite reg": lambda: gdla.complete(square, mask, 1, options={"reg": INF}),
        "NaN lr": lambda: gdla.complete(square, mask, 1, method="adam", options={"lr": NAN}),
    },
    "gdla.polar": {
        "a list instead of a tensor": lambda: gdla.polar([[1.0]]),
        "integer dtype": lambda: gdla.polar(square.long()),
        "bfloat16 outside method 'muon'": lambda: gdla.polar(square.bfloat16()),
        "1-D A": lambda: gdla.polar(vector),
        "NaN in A": lambda: gdla.polar(with_nan),
        "Inf in A": lambda: gdla.polar(with_inf),
        "unknown method": lambda: gdla.polar(square, method="magic"),
        "negative rtol": lambda: gdla.polar(square, rtol=-1.0),
        "non-integer max_iter": lambda: gdla.polar(square, max_iter=2.5),
        "unknown option": lambda: gdla.polar(square, options={"magic": 1}),
        "degree 4": lambda: gdla.polar(square, options={"degree": 4}),
    },
}

CASES = [
    pytest.param(function, call, id=f"{function}: {description}")
    for function, calls in BAD_INPUTS.items()
    for description, call in calls.items()
]


@pytest.mark.parametrize(("function", "call"), CASES)
def test_bad_input_gets_a_clear_error(function: str, call: Callable[[], object]) -> None:
    TRIED[function] += 1
    with pytest.raises(gdla.GdlaInputError) as raised:
        call()
    message = str(raised.value)
    assert message.startswith(f"{function}: expected ")
    assert ", found " in message
    CLEAR[function] += 1


def summary_lines() -> list[str]:
    """The table printed at the end of the test run (see conftest.pytest_terminal_summary)."""
    if not TRIED:
        return []
    lines = [f"{'function':<16}{'bad inputs tried':>18}{'clear errors':>14}"]
    for function in BAD_INPUTS:
        lines.append(f"{function:<16}{TRIED[function]:>18}{CLEAR[function]:>14}")
    lines.append(f"{'total':<16}{sum(TRIED.values()):>18}{sum(CLEAR.values()):>14}")
    return lines
