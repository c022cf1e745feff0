"""gdla: linear algebra by gradient descent with PyTorch.

The package behind the book: each public function solves one task of numerical
linear algebra (a linear system, an inverse, an SVD, a matrix completion) by
iterative, gradient-based optimisation, offers several ``method=`` choices for
comparison, and returns a result object with the answer and its convergence
history.  ``torch.linalg`` is the oracle every method is tested against.
"""

import importlib
import importlib.metadata
from types import ModuleType

from . import claims, data, matrices, metrics, original, rates
from ._operator import LinearOperator
from ._result import (
    CompletionResult,
    InverseResult,
    PolarResult,
    Result,
    SolveResult,
    SVDResult,
)
from ._validation import DtypeError, GdlaInputError, NonFiniteError, OptionError, ShapeError
from .complete import complete
from .inverse import inverse
from .polar import polar
from .solve import solve
from .svd import svd

try:
    # The one place the version is written is pyproject.toml; this reads the
    # installed copy of it (tests/test_repository.py checks they agree).
    __version__ = importlib.metadata.version(__name__)
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "claims",
    "data",
    "solve",
    "inverse",
    "svd",
    "complete",
    "polar",
    "matrices",
    "metrics",
    "original",
    "plotting",
    "rates",
    "Result",
    "SolveResult",
    "InverseResult",
    "SVDResult",
    "CompletionResult",
    "PolarResult",
    "LinearOperator",
    "GdlaInputError",
    "ShapeError",
    "DtypeError",
    "NonFiniteError",
    "OptionError",
]


def __getattr__(name: str) -> ModuleType:
    # gdla.plotting imports matplotlib, which a user of the solvers may not want to
    # load (it costs about half a second): it is imported on first use.
    if name == "plotting":
        module = importlib.import_module(f"{__name__}.plotting")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
