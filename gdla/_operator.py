"""One operator layer: dense tensors, torch sparse tensors and user operators alike.

Every product-based kernel of :mod:`gdla` sees a matrix only through the view that
:func:`as_operator` returns: block products ``matmul(X) = A @ X`` and ``rmatmul(Y) =
A^H @ Y``, its ``shape``, ``dtype`` and ``device``, its Frobenius norm, and its
entries (``dense()``) where they exist.  Three kinds of input become that view:

- a dense (strided) tensor of shape ``(*, m, n)`` (batches allowed);
- a torch sparse COO or CSR tensor of shape ``(m, n)`` (2-D, no batch), checked for
  duplicate and out-of-range indices and non-finite values, and stored as two CSR
  copies, of ``A`` and of ``A^H`` (``O(nnz)`` memory), so that both products run at
  the speed of ``torch.sparse.mm`` on CSR;
- a :class:`LinearOperator` of shape ``(m, n)``, whose products are checked on their
  first call (shape, dtype, device) and trusted afterwards.

A low floor: it imports only :mod:`numpy`, :mod:`torch`, :mod:`gdla._fused`,
:mod:`gdla._scaling`, :mod:`gdla._tensor` and :mod:`gdla._validation`.
"""

from __future__ import annotations

import abc
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._fused import FusedProducts
from ._scaling import exponent_and_norm, ldexp
from ._tensor import torch_function_mode_active
from ._validation import (
    SUPPORTED_DTYPES,
    DtypeError,
    NonFiniteError,
    OptionError,
    ShapeError,
    check_finite,
    check_matrix,
)

__all__ = [
    "LinearOperator",
    "OperatorView",
    "as_operator",
    "rescaled",
    "view_of",
    "spectral_norm_estimate",
    "ESTIMATE_COLUMNS",
    "numpy_blas_array",
    "numpy_gram_product",
]

Product = Callable[[torch.Tensor], torch.Tensor]
GramProduct = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
#: The same on 1-D NumPy arrays (:meth:`OperatorView.numpy_pair`).
NumpyGramProduct = Callable[[np.ndarray, np.ndarray, np.ndarray], None]

#: Dense matrices of at least this many bytes (larger than a typical last-level cache)
#: get :meth:`OperatorView.gram_vector_product` by blocks of rows of this many bytes.
_BLOCKED_FROM = 32 << 20
_BLOCK_BYTES = 1 << 20

#: Real dtypes whose CPU matrix-vector products go through NumPy's BLAS
#: (:func:`numpy_blas_array`).
_NUMPY_BLAS_DTYPES = (torch.float32, torch.float64)

#: Columns of each Gaussian block that estimates a :class:`LinearOperator`'s
#: Frobenius norm (one product with ``A`` and one with ``A^H``).
ESTIMATE_COLUMNS = 8


class LinearOperator:
    r"""A matrix known only through its products with blocks of columns.

    ``LinearOperator(shape, matmul, rmatmul)`` stands for a matrix
    :math:`A \in \mathbb{K}^{m \times n}` (:math:`\mathbb{K}` is :math:`\mathbb{R}` or
    :math:`\mathbb{C}`) that :func:`gdla.svd` and the product-based methods of
    :func:`gdla.solve` accept in place of a tensor: ``matmul(X)`` must return
    :math:`A X` for ``X`` of shape ``(n, k)`` and ``rmatmul(Y)`` must return
    :math:`A^{\text{H}} Y` for ``Y`` of shape ``(m, k)``, for any number of columns
    ``k`` (the solvers pass blocks, never one column at a time when they need
    several).

    Supports float, double, cfloat and cdouble dtypes; the operator is a single
    matrix (no batch dimensions).  The products must return tensors of the
    operator's dtype, on its device, of the shapes above: the solvers check this on
    the first call of each product and raise a :class:`gdla.GdlaInputError` naming
    the argument otherwise, then trust them.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``, two non-negative integers.
    matmul : callable
        ``X -> A @ X`` for ``X`` of shape ``(n, k)``.
    rmatmul : callable
        ``Y -> A^H @ Y`` for ``Y`` of shape ``(m, k)`` (the conjugate transpose).
    dtype : torch.dtype, optional
        The dtype of the products: float32, float64, complex64 or complex128.
        Default :func:`torch.get_default_dtype` (float32 unless changed).
    device : torch.device or str, optional
        The device of the products.  Default ``"cpu"``.
    hermitian : bool, optional
        Declares ``A = A^H`` (keyword only, default False).  Entries cannot be
        inspected, so this is the only way :func:`gdla.solve` learns it: its default
        method on a Hermitian operator is conjugate gradients on ``A`` itself.

    Notes
    -----
    The solvers also need ``A``'s Frobenius norm for their relative stopping
    rules.  For a LinearOperator it is estimated, once, from one product with ``A``
    and one with ``A^H``, each with a block of 8 Gaussian columns drawn from a private
    generator seeded by :func:`gdla.svd`'s ``seed`` (0 for :func:`gdla.solve`):
    :math:`\|A G\|_F^2` and :math:`\|A^H H\|_F^2` divided by the number of columns
    are unbiased estimates of :math:`\|A\|_F^2`, and the relative standard deviation
    of their mean (16 samples) is at most :math:`\sqrt{2/16} \approx 0.35`, reached by
    a real matrix of rank one, and smaller the flatter the spectrum.  The stopping
    rules and the reported residuals are relative to this estimate.  These two
    products are also the first calls that are checked.

    scipy's ``scipy.sparse.linalg.LinearOperator`` is the same idea for NumPy arrays,
    with one ``matvec`` per column by default; here every product takes a block.

    Raises
    ------
    GdlaInputError
        A bad ``shape`` (:class:`gdla.ShapeError`), ``dtype``
        (:class:`gdla.DtypeError`), ``device`` or non-callable products
        (:class:`gdla.OptionError`).

    See Also
    --------
    gdla.svd : accepts a LinearOperator with its product-based methods.
    gdla.solve : accepts a LinearOperator with its product-based methods.

    Examples
    --------
    A diagonal matrix known only through its products:

    >>> import torch, gdla
    >>> d = torch.linspace(1.0, 2.0, 100, dtype=torch.float64)
    >>> A = gdla.LinearOperator(
    ...     (100, 100), lambda X: d[:, None] * X, lambda Y: d[:, None] * Y,
    ...     dtype=torch.float64, hermitian=True)
    >>> A
    LinearOperator(shape=(100, 100), dtype=torch.float64, device=cpu, hermitian=True)
    >>> gdla.svd(A, k=2).S.tolist()
    [2.0, 1.98989898989899]
    >>> b = torch.ones(100, dtype=torch.float64)
    >>> result = gdla.solve(A, b)
    >>> result.method, result.converged
    ('cg', True)
    >>> bool(torch.allclose(result.x, 1 / d))
    True
    """

    def __init__(
        self,
        shape: Sequence[int],
        matmul: Product,
        rmatmul: Product,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        *,
        hermitian: bool = False,
    ) -> None:
        function = "gdla.LinearOperator"
        if (
            not isinstance(shape, Sequence)
            or len(shape) != 2
            or not all(
                isinstance(size, numbers.Integral) and not isinstance(size, bool) and size >= 0
                for size in shape
            )
        ):
            raise ShapeError(function, "shape to be (m, n), two non-negative integers", repr(shape))
        for name, product in (("matmul", matmul), ("rmatmul", rmatmul)):
            if not callable(product):
                raise OptionError(function, f"{name} to be callable", type(product).__name__)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in SUPPORTED_DTYPES:
            raise DtypeError(
                function, "dtype float32, float64, complex64 or complex128", repr(dtype)
            )
        try:
            device = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError):
            raise OptionError(function, "device to be a torch.device", repr(device)) from None
        self.shape = (int(shape[0]), int(shape[1]))
        self.matmul = matmul
        self.rmatmul = rmatmul
        self.dtype = dtype
        self.device = device
        self.hermitian = bool(hermitian)

    @property
    def H(self) -> LinearOperator:
        """The conjugate transpose ``A^H``: the products swapped."""
        return LinearOperator(
            self.shape[::-1], self.rmatmul, self.matmul, self.dtype, self.device,
            hermitian=self.hermitian,
        )  # fmt: skip

    def __repr__(self) -> str:
        flag = ", hermitian=True" if self.hermitian else ""
        return f"LinearOperator(shape={self.shape}, dtype={self.dtype}, device={self.device}{flag})"


# ----------------------------------------------------------------------------
# The internal view
# ----------------------------------------------------------------------------


def numpy_blas_array(A: torch.Tensor) -> np.ndarray | None:
    """``A``'s memory as a NumPy array when its matrix-vector products should use NumPy's BLAS.

    Why: on the CPU, the one-column products that Lanczos spends its time in are bound by
    memory bandwidth, and NumPy's bundled OpenBLAS forms them 2--3 times faster than
    torch's MKL on the AMD EPYC processors of these machines (float64,
    2 threads, 2000 x 1000: 0.19 against 0.6 ms; 4000 x 2000: 1.6--2x; torch 2.13, NumPy
    2.x) -- the same BLAS that SciPy's ``svds`` uses.  The result is the same product to
    rounding.  Only for a plain 2-D real CPU tensor (subclasses, which may count or trace
    products, keep torch's), and never while a torch function mode is active
    (:class:`gdla.metrics.ProductCounter` and profilers see every product).  NumPy's
    BLAS has its own thread pool (``OPENBLAS_NUM_THREADS``; ``torch.set_num_threads``
    does not reach it).
    """
    if (
        type(A) is not torch.Tensor
        or A.ndim != 2
        or A.device.type != "cpu"
        or A.dtype not in _NUMPY_BLAS_DTYPES
        or A.layout != torch.strided
        or not (A.is_contiguous() or A.mT.is_contiguous())  # BLAS-shaped, never copied
        or torch_function_mode_active()
    ):
        return None
    return A.detach().numpy()


class OperatorView(abc.ABC):
    """What the kernels see: products, shape, dtype, device, Frobenius norm, entries.

    ``kind`` is ``"dense"``, ``"sparse"`` or ``"operator"``.  ``shape`` is ``(*, m, n)``
    (a batch only for dense input).  ``fro_norm`` has shape ``(*)``; for an operator it
    is an estimate (``norm_is_estimate``).  ``hermitian`` is True, False, or None where
    it must be computed from the entries (:meth:`is_hermitian`).
    """

    kind: str = "operator"
    norm_is_estimate: bool = False

    def __init__(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> None:
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self.device = device
        self._norm: torch.Tensor | None = None

    # Products -----------------------------------------------------------------
    @abc.abstractmethod
    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        """``A @ X`` for ``X`` of shape (*, n, k)."""

    @abc.abstractmethod
    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        """``A^H @ Y`` for ``Y`` of shape (*, m, k)."""

    def thin_matmul(self, X: torch.Tensor) -> torch.Tensor:
        """``A @ X`` for a block ``X`` of a few tens of columns (see ``DenseView``)."""
        return self.matmul(X)

    def thin_rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        """``A^H @ Y`` for a block ``Y`` of a few tens of columns."""
        return self.rmatmul(Y)

    def vector_products(self) -> tuple[Product, Product]:
        """``(X -> A @ X, Y -> A^H @ Y)`` tuned for repeated products with one column."""
        return self.matmul, self.rmatmul

    def numpy_pair(self) -> tuple[Any, Any] | None:
        """``A`` and ``A^H`` as NumPy arrays or SciPy sparse arrays on ``A``'s memory,
        whose products with 1-D NumPy vectors the CPU kernels use, or None (the default:
        torch forms the products).  See :func:`numpy_blas_array` for when and why."""
        return None

    @property
    def numpy_products(self) -> bool:
        """Whether :meth:`gram_vector_product` goes through NumPy's BLAS or SciPy
        (:meth:`numpy_pair`)."""
        return self.numpy_pair() is not None

    def gram_vector_product(self) -> GramProduct:
        """``(v, y, w) -> None`` writing ``y = A v`` and ``w = A^H y`` for 1-D ``v`` (one
        matrix, no batch), into the 1-D ``y`` (length m) and ``w`` (length n)."""
        pair = self.numpy_pair()
        if pair is not None:
            on_arrays = numpy_gram_product(*pair)

            def through_numpy(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
                on_arrays(v.numpy(), y.numpy(), w.numpy())

            return through_numpy
        times_A, times_AH = self.vector_products()

        def product(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
            y.copy_(times_A(v[:, None])[:, 0])
            w.copy_(times_AH(y[:, None])[:, 0])

        return product

    def differentiable_matmul(self, X: torch.Tensor) -> torch.Tensor:
        """``A @ X`` that autograd can differentiate with respect to ``X``."""
        return _Product.apply(X, self)  # type: ignore[no-any-return]

    @property
    @abc.abstractmethod
    def H(self) -> OperatorView:
        """The view of ``A^H``."""

    # Facts ----------------------------------------------------------------------
    @property
    def product_bytes(self) -> int | None:
        """About how many bytes of ``A`` one product with a vector reads (one matrix of
        the batch), or None where unknown (an operator)."""
        return None

    @property
    def batch(self) -> torch.Size:
        return self.shape[:-2]

    @property
    def real_dtype(self) -> torch.dtype:
        return torch.empty((), dtype=self.dtype).real.dtype

    @property
    def fro_norm(self) -> torch.Tensor:
        """``||A||_F`` per matrix of the batch, shape (*), A's real dtype."""
        if self._norm is None:
            self._norm = self._frobenius()
        return self._norm

    @abc.abstractmethod
    def _frobenius(self) -> torch.Tensor:
        """``||A||_F`` per matrix of the batch (computed once, by :attr:`fro_norm`)."""

    def is_hermitian(self) -> bool:
        """Whether ``A = A^H`` (to 100 eps relative, in Frobenius norm, for entries)."""
        return False

    def dense(self) -> torch.Tensor:
        """The entries as a dense tensor (*, m, n); an operator has none."""
        raise TypeError("a LinearOperator has no entries")

    def entry_matrix(self) -> torch.Tensor:
        """The entries as a (batch of) matrices, for entrywise statistics (a sparse
        matrix's stored values as one row)."""
        raise TypeError("a LinearOperator has no entries")

    def map_entries(self, function: Callable[[torch.Tensor], torch.Tensor]) -> OperatorView:
        """The view of the matrix whose entries are ``function`` of these (an entrywise
        map such as an exact rescaling); ``function`` gets :meth:`entry_matrix`."""
        raise TypeError("a LinearOperator has no entries")

    def like(self) -> torch.Tensor:
        """A tensor of A's shape, dtype and device that holds no memory (an expanded
        zero): for code that needs only these facts."""
        return torch.zeros((), dtype=self.dtype, device=self.device).expand(self.shape)

    def zeros(self, *shape: int) -> torch.Tensor:
        """Zeros of A's dtype and device."""
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype})"


class _Product(torch.autograd.Function):
    """``A @ X`` with the gradient ``A^H @ G`` with respect to ``X`` (A is constant)."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, view: OperatorView) -> torch.Tensor:  # type: ignore[override]
        ctx.view = view
        with torch.no_grad():
            return view.matmul(X.detach())

    @staticmethod
    def backward(ctx: Any, G: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        with torch.no_grad():
            return ctx.view.rmatmul(G), None


class DenseView(OperatorView):
    """A dense tensor (*, m, n): products as torch forms them."""

    kind = "dense"

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__(A.shape, A.dtype, A.device)
        self.A = A

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self.A @ X

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        return self.A.mH @ Y

    def thin_matmul(self, X: torch.Tensor) -> torch.Tensor:
        # The same product as (X^H A^H)^H: MKL on CPU runs the wide-output form up to
        # 2-3 times faster when X has a few tens of columns (torch 2.13, 4000 x 2000).
        return (X.mH @ self.A.mH).mH

    def thin_rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        return (Y.mH @ self.A).mH

    def vector_products(self) -> tuple[Product, Product]:
        A = self.A
        array = numpy_blas_array(A)
        if array is not None:
            return _numpy_vector_products(array, A.dtype)

        # A v as a matrix times a column and A^H u as a row vector times A, both on A
        # itself: measured (torch 2.13, CPU, float64, 2000 x 1000 and 4000 x 2000,
        # alternating as Lanczos does) as fast as the row-vector form of A v from a
        # transposed copy of A, and twice as fast where A fits the last-level cache and
        # the copy would not.
        def times_A(v: torch.Tensor) -> torch.Tensor:
            return A @ v

        def times_AH(u: torch.Tensor) -> torch.Tensor:
            return (u.mH @ A).mH

        return times_A, times_AH

    def gram_vector_product(self) -> GramProduct:
        A = self.A
        m, n = A.shape[-2:]
        if (A.ndim != 2 or A.device.type != "cpu" or A.element_size() * m * n < _BLOCKED_FROM
                or self.numpy_products):  # fmt: skip
            return super().gram_vector_product()
        # A^H (A v) by blocks of rows small enough to stay in the core's cache between
        # their two products: A is read from memory once per step, not twice (measured,
        # torch 2.13, 4000 x 2000 float64: 5.5 ms against 8-9 ms for the two products).
        rows = max(1, _BLOCK_BYTES // (A.element_size() * n))
        starts = range(0, m, rows)
        blocks = [(A[i : i + rows], A[i : i + rows].mH, slice(i, i + rows)) for i in starts]

        def product(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
            w.zero_()
            for block, block_h, where in blocks:
                torch.mv(block, v, out=y[where])
                w.addmv_(block_h, y[where])

        return product

    def differentiable_matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self.A @ X

    def numpy_pair(self) -> tuple[Any, Any] | None:
        array = numpy_blas_array(self.A)
        return None if array is None else (array, array.T)  # real: A^H = A^T

    @property
    def product_bytes(self) -> int | None:
        return self.A.element_size() * self.shape[-2] * self.shape[-1]

    @property
    def H(self) -> DenseView:
        return DenseView(self.A.mH)

    def _frobenius(self) -> torch.Tensor:
        return torch.linalg.matrix_norm(self.A)

    def is_hermitian(self) -> bool:
        A = self.A
        if A.shape[-1] != A.shape[-2]:
            return False
        asymmetry = torch.linalg.matrix_norm(A - A.mH)
        bound = 100 * torch.finfo(A.dtype).eps * self.fro_norm
        return bool((asymmetry <= bound).all())

    def dense(self) -> torch.Tensor:
        return self.A

    def map_entries(self, function: Callable[[torch.Tensor], torch.Tensor]) -> DenseView:
        B = function(self.A)
        return self if B is self.A else DenseView(B)

    def entry_matrix(self) -> torch.Tensor:
        return self.A


def _numpy_vector_products(array: np.ndarray, dtype: torch.dtype) -> tuple[Product, Product]:
    """``A @ X`` and ``A^H @ Y`` through NumPy's BLAS (real ``array``; see
    :func:`numpy_blas_array`), for torch blocks ``X``, ``Y`` on the CPU."""
    transposed = array.T

    def product(matrix: np.ndarray, X: torch.Tensor) -> torch.Tensor:
        if X.dtype != dtype or X.requires_grad or X.device.type != "cpu":
            return torch.from_numpy(matrix) @ X
        return torch.from_numpy(matrix @ X.resolve_conj().numpy())

    return (lambda X: product(array, X)), (lambda Y: product(transposed, Y))


def numpy_gram_product(matrix: Any, adjoint: Any) -> NumpyGramProduct:
    """``(v, y, w) -> None`` writing ``y = A v`` and ``w = A^H y`` on 1-D NumPy arrays, for
    ``A`` and ``A^H`` as :meth:`OperatorView.numpy_pair` gives them; a dense ``A`` by
    :class:`gdla._fused.FusedProducts` (one read of a large ``A``, on every BLAS thread)."""
    if not isinstance(matrix, np.ndarray):  # a SciPy sparse array: no out= argument

        def sparse(v: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
            y[:] = matrix @ v
            w[:] = adjoint @ y

        return sparse
    return FusedProducts(matrix, adjoint)


class SparseView(OperatorView):
    """A checked 2-D sparse matrix, held as CSR copies of A and of A^H."""

    kind = "sparse"

    def __init__(
        self,
        shape: tuple[int, int],
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        adjoint_order: torch.Tensor | None = None,
    ) -> None:
        """``rows``, ``cols`` (int64) sorted row-major without duplicates, ``values``."""
        super().__init__(shape, values.dtype, values.device)
        m, n = shape
        self.rows, self.cols, self.values = rows, cols, values
        if adjoint_order is None:
            adjoint_order = torch.argsort(cols * max(m, 1) + rows, stable=True)
        self.order = adjoint_order
        self.csr = _csr(rows, cols, values, (m, n))
        self.csr_h = _csr(cols[adjoint_order], rows[adjoint_order],
                          values[adjoint_order].conj().resolve_conj(), (n, m))  # fmt: skip
        self._scipy: tuple[Any, Any] | None = None

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self.csr @ X

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        return self.csr_h @ Y

    def numpy_pair(self) -> tuple[Any, Any] | None:
        """SciPy CSR arrays of ``A`` and ``A^H`` on the same memory, or None.

        Why: on the CPU, SciPy's single-threaded CSR product of a vector runs as fast as
        torch's (20,000 x 5,000, 1e5 entries: 0.13 ms either way), and a Lanczos step
        whose work is all NumPy and SciPy does not make torch's OpenMP threads compete
        with OpenBLAS's for the cores (measured: the whole run 1.3 times faster).  Only
        with SciPy installed (an optional accelerator: gdla does not require it), for a
        real CPU matrix, and never while a torch function mode is active.
        """
        if (self.device.type != "cpu" or self.dtype not in _NUMPY_BLAS_DTYPES
                or torch_function_mode_active()):  # fmt: skip
            return None
        if self._scipy is None:
            try:
                from scipy.sparse import csr_array
            except ImportError:
                return None
            self._scipy = tuple(
                csr_array(
                    (C.values().numpy(), C.col_indices().numpy(), C.crow_indices().numpy()),
                    shape=tuple(C.shape),
                )  # fmt: skip
                for C in (self.csr, self.csr_h)
            )
        return self._scipy

    @property
    def product_bytes(self) -> int | None:
        return self.values.numel() * (self.values.element_size() + 8)  # values, column indices

    def gram_vector_product(self) -> GramProduct:
        if self.numpy_products:
            return super().gram_vector_product()
        csr, csr_h = self.csr, self.csr_h

        # Into the kernel's buffers: no allocation, no copy (about 10 % of a product here).
        def product(v: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
            torch.mv(csr, v, out=y)
            torch.mv(csr_h, y, out=w)

        return product

    def vector_products(self) -> tuple[Product, Product]:
        # torch.mv on CSR runs about 1.5 times faster than CSR @ (n, 1) (torch 2.13, CPU).
        def times(C: torch.Tensor) -> Product:
            def product(X: torch.Tensor) -> torch.Tensor:
                return torch.mv(C, X[:, 0]).unsqueeze(-1) if X.shape[-1] == 1 else C @ X

            return product

        return times(self.csr), times(self.csr_h)

    @property
    def H(self) -> OperatorView:
        return _SwappedView(self)

    def _frobenius(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.values)

    def is_hermitian(self) -> bool:
        m, n = self.shape
        if m != n:
            return False
        h = self.order
        both = torch.sparse_coo_tensor(
            torch.stack(
                [torch.cat([self.rows, self.cols[h]]), torch.cat([self.cols, self.rows[h]])]
            ),
            torch.cat([self.values, -self.values[h].conj()]),
            (m, n),
            check_invariants=False,
        ).coalesce()
        asymmetry = torch.linalg.vector_norm(both.values())
        return bool(asymmetry <= 100 * torch.finfo(self.dtype).eps * self.fro_norm)

    def dense(self) -> torch.Tensor:
        return self.csr.to_dense()

    def map_entries(self, function: Callable[[torch.Tensor], torch.Tensor]) -> SparseView:
        values = function(self.values.unsqueeze(0)).squeeze(0)
        if values is self.values:
            return self
        return SparseView(tuple(self.shape), self.rows, self.cols, values, self.order)  # type: ignore[arg-type]

    def entry_matrix(self) -> torch.Tensor:
        return self.values.unsqueeze(0)


class _SwappedView(OperatorView):
    """The adjoint of a view: its products swapped."""

    def __init__(self, parent: OperatorView) -> None:
        super().__init__((*parent.shape[:-2], parent.shape[-1], parent.shape[-2]),
                         parent.dtype, parent.device)  # fmt: skip
        self.parent = parent
        self.kind = parent.kind
        self.norm_is_estimate = parent.norm_is_estimate

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self.parent.rmatmul(X)

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        return self.parent.matmul(Y)

    def thin_matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self.parent.thin_rmatmul(X)

    def thin_rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        return self.parent.thin_matmul(Y)

    def vector_products(self) -> tuple[Product, Product]:
        times_A, times_AH = self.parent.vector_products()
        return times_AH, times_A

    def numpy_pair(self) -> tuple[Any, Any] | None:
        pair = self.parent.numpy_pair()
        return None if pair is None else (pair[1], pair[0])

    @property
    def product_bytes(self) -> int | None:
        return self.parent.product_bytes

    @property
    def H(self) -> OperatorView:
        return self.parent

    def _frobenius(self) -> torch.Tensor:
        return self.parent.fro_norm

    def is_hermitian(self) -> bool:
        return self.parent.is_hermitian()

    def dense(self) -> torch.Tensor:
        return self.parent.dense().mH


class UserView(OperatorView):
    """A :class:`LinearOperator`, its products checked on their first call."""

    kind = "operator"
    norm_is_estimate = True

    def __init__(self, function: str, name: str, A: LinearOperator, seed: int) -> None:
        super().__init__(A.shape, A.dtype, A.device)
        self.operator = A
        self.hermitian = A.hermitian
        self._times = _CheckedProduct(function, name, "matmul", A.matmul, A)
        self._times_h = _CheckedProduct(function, name, "rmatmul", A.rmatmul, A)
        self.seed = seed

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        return self._times(X)

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        return self._times_h(Y)

    @property
    def H(self) -> OperatorView:
        return _SwappedView(self)

    def _frobenius(self) -> torch.Tensor:
        m, n = self.shape
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        total = torch.zeros((), dtype=self.real_dtype, device=self.device)
        if m == 0 or n == 0:
            return total
        for size, product in ((n, self.matmul), (m, self.rmatmul)):
            G = torch.randn((size, ESTIMATE_COLUMNS), generator=generator, dtype=self.dtype,
                            device=self.device)  # fmt: skip
            total = total + torch.linalg.matrix_norm(product(G)).square()
        estimate = (total / (2 * ESTIMATE_COLUMNS)).sqrt()
        if not bool(torch.isfinite(estimate)):
            raise NonFiniteError(
                self._times.function,
                f"{self._times.name}'s products to be finite",
                "NaN or Inf in a product with a Gaussian block",
            )
        return estimate

    def is_hermitian(self) -> bool:
        return self.hermitian


class _CheckedProduct:
    """A user's product, checked (shape, dtype, device, tensor) on its first call only."""

    def __init__(
        self, function: str, name: str, which: str, product: Product, A: LinearOperator
    ) -> None:
        self.function, self.name, self.which = function, name, which
        self.product = product
        m, n = A.shape
        self.sizes = (n, m) if which == "matmul" else (m, n)
        self.dtype, self.device = A.dtype, A.device
        self.checked = False

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        Y = self.product(X)
        if not self.checked:
            self._check(X, Y)
            self.checked = True
        return Y

    def _check(self, X: torch.Tensor, Y: object) -> None:
        size_in, size_out = self.sizes
        arg = "X" if self.which == "matmul" else "Y"
        what = f"{self.name}.{self.which}({arg}) for {arg} of shape {tuple(X.shape)}"
        if not isinstance(Y, torch.Tensor) or Y.layout != torch.strided:
            found = type(Y).__name__ if not isinstance(Y, torch.Tensor) else f"layout {Y.layout}"
            raise DtypeError(self.function, f"{what} to return a dense torch.Tensor", found)
        expected = (*X.shape[:-2], size_out, X.shape[-1])
        if tuple(Y.shape) != expected:
            raise ShapeError(self.function, f"{what} to return shape {expected}",
                             f"shape {tuple(Y.shape)}")  # fmt: skip
        if Y.dtype != self.dtype:
            raise DtypeError(self.function, f"{what} to return dtype {self.dtype} "
                             f"(the LinearOperator's dtype)", str(Y.dtype))  # fmt: skip
        if Y.device != self.device:
            raise ShapeError(self.function, f"{what} to return a tensor on device {self.device} "
                             "(the LinearOperator's device)", str(Y.device))  # fmt: skip


# ----------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------


def _csr(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """The CSR tensor of sorted, duplicate-free (rows, cols, values)."""
    counts = torch.bincount(rows, minlength=shape[0])
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(counts, 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


def _sparse_view(function: str, name: str, A: torch.Tensor) -> SparseView:
    """Check a sparse COO or CSR tensor and return its view."""
    layouts = "a dense, sparse COO or sparse CSR tensor (or a gdla.LinearOperator)"
    if A.layout not in (torch.sparse_coo, torch.sparse_csr):
        raise DtypeError(function, f"{name} to be {layouts}; convert with .to_sparse_csr()",
                         f"layout {A.layout}")  # fmt: skip
    if A.dtype not in SUPPORTED_DTYPES:
        raise DtypeError(function, f"{name} of dtype float32, float64, complex64 or complex128",
                         str(A.dtype))  # fmt: skip
    if A.ndim != 2 or (A.layout == torch.sparse_coo and A.dense_dim() != 0):
        raise ShapeError(function, f"{name}, a sparse tensor, to be a matrix of shape (m, n) "
                         "(no batch or dense dimensions)", f"shape {tuple(A.shape)}")  # fmt: skip
    m, n = A.shape
    if A.layout == torch.sparse_coo:
        indices = A._indices().to(torch.int64)
        values = A._values()
        rows, cols = indices[0], indices[1]
    else:
        crow = A.crow_indices().to(torch.int64)
        cols = A.col_indices().to(torch.int64)
        values = A.values().clone()  # a view of a CSR tensor: complex ops need its own strides
        nnz = cols.numel()
        counts = crow.diff() if crow.numel() else crow
        if (crow.numel() != m + 1 or int(crow[0]) != 0 or int(crow[-1]) != nnz
                or bool((counts < 0).any())):  # fmt: skip
            raise ShapeError(function, f"{name}.crow_indices() to rise from 0 to nnz = {nnz} "
                             f"in {m + 1} entries", "invalid row pointers")  # fmt: skip
        rows = torch.repeat_interleave(torch.arange(m, device=cols.device), counts)
    out = ((rows < 0) | (rows >= m)).any() | ((cols < 0) | (cols >= n)).any()
    if bool(out):
        raise ShapeError(function, f"{name}'s indices within its shape ({m}, {n})",
                         "an index out of range")  # fmt: skip
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError(function, f"{name} with finite entries", "NaN or Inf")
    key = rows * max(n, 1) + cols
    if key.numel() > 1 and not bool((key[1:] > key[:-1]).all()):
        # Not sorted row-major without repeats: sort, and reject repeated indices
        # (torch would add their values, which is rarely what was meant).
        key, order = torch.sort(key, stable=True)
        if bool((key[1:] == key[:-1]).any()):
            raise ShapeError(function, f"{name} without duplicate indices (coalesce it to add "
                             "their values)", "a repeated (row, column) index")  # fmt: skip
        rows, cols, values = rows[order], cols[order], values[order]
    return SparseView((m, n), rows, cols, values)


def as_operator(function: str, name: str, A: object, *, seed: int = 0) -> OperatorView:
    """Check ``A`` and return its view (see the module's docstring).

    Dense tensors are checked by :func:`gdla._validation.check_matrix`; sparse ones for
    layout, dtype, shape, indices and finite values; a :class:`LinearOperator` by its
    first products, which estimate its Frobenius norm (from a generator seeded by
    ``seed``).

    Raises
    ------
    DtypeError
        Not a tensor or LinearOperator, an unsupported layout or dtype, or a product
        of the wrong dtype.
    ShapeError
        Wrong dimensions, an index out of range, a duplicate index, or a product of the
        wrong shape or device.
    NonFiniteError
        A NaN or infinite entry (or product with a Gaussian block).
    """
    if isinstance(A, LinearOperator):
        view = UserView(function, name, A, seed)
        view.fro_norm  # noqa: B018 - the first products are checked here, not mid-iteration
        return view
    if not isinstance(A, torch.Tensor):
        raise DtypeError(function, f"{name} to be a torch.Tensor or a gdla.LinearOperator",
                         type(A).__name__)  # fmt: skip
    if A.layout != torch.strided and A.device.type != "meta":
        return _sparse_view(function, name, A)
    dense = DenseView(check_matrix(function, name, A, finite=False))
    # One pass over A for both its Frobenius norm, which every method reads, and the
    # check that its entries are finite: a finite norm proves them finite; only an
    # infinite or NaN norm (a non-finite entry, or an overflow) needs the full check.
    if A.numel() and not bool(torch.isfinite(dense.fro_norm).all()):
        check_finite(function, name, A)
    return dense


def view_of(A: torch.Tensor | OperatorView) -> OperatorView:
    """``A`` itself if it is a view, else the view of the (already checked) dense tensor."""
    return A if isinstance(A, OperatorView) else DenseView(A)


def spectral_norm_estimate(
    A: torch.Tensor | OperatorView, generator: torch.Generator, steps: int = 20
) -> torch.Tensor:
    """A lower estimate of ``||A||_2`` (shape (*)) by ``steps`` power iterations on ``A^H A``,
    from a Gaussian vector of ``generator``: two products per step, one more at the end.

    The estimate ``||A x||`` is at most ``||A||_2``; without a gap at the top of the
    spectrum its square still reaches about ``(1 - log(n) / steps)`` times
    ``||A||_2^2`` (the Rayleigh quotient of the power method converges without a gap).
    """
    op = view_of(A)
    x = torch.randn((*op.batch, op.shape[-1], 1), generator=generator, dtype=op.dtype,
                    device=op.device)  # fmt: skip
    tiny = torch.finfo(op.real_dtype).tiny
    for _ in range(steps):
        x = op.rmatmul(op.matmul(x))
        x = x / torch.linalg.matrix_norm(x).clamp_min(tiny)[..., None, None]
    return torch.linalg.matrix_norm(op.matmul(x))


def rescaled(op: OperatorView) -> tuple[OperatorView, torch.Tensor]:
    """The view of ``A * 2**e`` and ``e`` (shape (*)): the exact rescaling of entries whose
    squares would overflow or underflow; ``e = 0`` for a LinearOperator (no entries)."""
    if op.kind == "operator":
        return op, torch.zeros(op.batch, dtype=torch.int64, device=op.device)
    exponent, norm = exponent_and_norm(op.entry_matrix(), op._norm)
    scaled = op.map_entries(lambda T: ldexp(T, exponent[..., None, None]))
    if scaled is op and op._norm is None and norm.shape == op.batch:
        op._norm = norm  # unscaled: the norm just read is A's (one pass over A, not two)
    return scaled, exponent
