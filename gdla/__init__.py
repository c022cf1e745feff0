"""gdla: linear algebra by gradient descent with PyTorch.

The package behind the book: each public function solves one task of numerical
linear algebra (a linear system, an inverse, an SVD, a matrix completion) by
iterative, gradient-based optimisation, offers several ``method=`` choices for
comparison, and returns a result object with the answer and its convergence
history.  ``torch.linalg`` is the oracle every method is tested against.
"""

from . import data, matrices, metrics, original, plotting, rates
from ._result import CompletionResult, InverseResult, Result, SolveResult, SVDResult
from ._validation import DtypeError, GdlaInputError, NonFiniteError, OptionError, ShapeError
from .complete import complete
from .inverse import inverse
from .solve import solve
from .svd import svd

__version__ = "0.1.0"

__all__ = [
    "data",
    "solve",
    "inverse",
    "svd",
    "complete",
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
    "GdlaInputError",
    "ShapeError",
    "DtypeError",
    "NonFiniteError",
    "OptionError",
]
