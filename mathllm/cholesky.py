"""Positive definite matrices and the Cholesky factorisation ``A = L L^T``.

A symmetric ``A`` is **positive definite** when ``x^T A x > 0`` for every ``x != 0``; equivalently,
all its eigenvalues are positive, or (what :func:`cholesky` tests) Gaussian elimination meets only
positive pivots. Then ``A = L L^T`` with ``L`` lower triangular and a positive diagonal:
``l_jj = sqrt(a_jj - sum_{k<j} l_jk^2)`` and ``l_ij = (a_ij - sum_{k<j} l_ik l_jk) / l_jj``.
Covariance matrices, Gram matrices ``A^T A`` of full-column-rank ``A`` and the Hessian at a strict
minimum are positive definite. Checked against ``torch.linalg.cholesky`` in ``tests/test_cholesky.py``.

Reference: Golub and Van Loan, *Matrix Computations*, 4th ed., section 4.2.

Leaves out: pivoted and semidefinite Cholesky, LDL^T for indefinite matrices, blocked algorithms,
complex (Hermitian) matrices, batches.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import torch

from .checks import check_finite, check_float_tensor, check_shape


def _check_symmetric(A: torch.Tensor) -> int:
    check_float_tensor(A, "A")
    n, _ = check_shape(A, "n n", name="A")
    if n == 0:
        raise ValueError("A must be at least 1 x 1, got shape (0, 0)")
    check_finite(A, "A")
    tol = 1e3 * torch.finfo(A.dtype).eps * float(A.abs().max())
    if float((A - A.T).abs().max()) > tol:
        raise ValueError(f"A must be symmetric: max |A - A^T| = {float((A - A.T).abs().max()):.3g} > {tol:.3g}")
    return n


def cholesky(A: torch.Tensor) -> torch.Tensor:
    """The Cholesky factor ``L`` of a symmetric positive definite ``A = L L^T``.

    Column by column: ``l_jj^2 = a_jj - ||L[j, :j]||^2`` must be positive, else ``A`` is not
    positive definite and a ValueError says at which column that showed.

    Args:
        A: (n, n) symmetric floating tensor.

    Returns:
        (n, n) lower-triangular ``L`` with a positive diagonal.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Positive definite matrices and Cholesky".
    """
    n = _check_symmetric(A)
    L = torch.zeros_like(A)
    for j in range(n):
        d = A[j, j] - L[j, :j] @ L[j, :j]  # the pivot: what is left of a_jj
        if not d > 0:
            raise ValueError(f"A is not positive definite: pivot {j} is {float(d):.3g} <= 0")
        L[j, j] = d.sqrt()
        L[j + 1:, j] = (A[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]  # (n-j-1, j) x (j,)
    return L


def is_positive_definite(A: torch.Tensor) -> bool:
    """Whether the symmetric ``A`` (n, n) is positive definite: whether :func:`cholesky` succeeds.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Positive definite matrices and Cholesky".
    """
    _check_symmetric(A)
    try:
        cholesky(A)
    except ValueError:
        return False
    return True
