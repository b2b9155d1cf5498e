"""Orthogonal projection, Gram-Schmidt QR and least squares.

Implements, each checked against ``torch.linalg`` in ``tests/test_qr.py``:

- the QR factorisation ``A = Q R`` of a full-column-rank ``(m, n)`` matrix by Gram-Schmidt
  (:func:`gram_schmidt`): column ``j`` minus its projections on the earlier columns of ``Q``,
  normalised. Classical Gram-Schmidt loses orthogonality like ``kappa(A)^2 eps``; running the
  projection twice ("twice is enough", Giraud et al. 2005) restores it to ``O(eps)``;
- the orthogonal projection onto the column space, ``P b = Q Q^T b`` (:func:`project`);
- least squares ``min_x ||A x - b||_2`` by QR, ``R x = Q^T b`` (:func:`lstsq_qr`), and by the
  normal equations ``A^T A x = A^T b`` solved with Cholesky (:func:`lstsq_normal`), which squares
  the condition number.

Reference: Golub and Van Loan, *Matrix Computations*, 4th ed., sections 5.2-5.3; Trefethen and Bau,
*Numerical Linear Algebra*, lectures 7-11.

Leaves out: Householder reflections and Givens rotations (what LAPACK, and so
``torch.linalg.qr``, uses), column pivoting and rank-deficient problems (the pseudoinverse in
:mod:`mathllm.subspaces` handles those), complex matrices, batches.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import torch

from .checks import check_finite, check_float_tensor, check_shape
from .cholesky import cholesky
from .linalg import triangular_solve


def _check_tall(A: torch.Tensor) -> tuple[int, int]:
    check_float_tensor(A, "A")
    m, n = check_shape(A, "m n", name="A")
    if n == 0 or m < n:
        raise ValueError(f"A must be an (m, n) matrix with m >= n >= 1, got shape {(m, n)}")
    check_finite(A, "A")
    return m, n


def _check_rhs(b: torch.Tensor, m: int) -> None:
    check_float_tensor(b, "b")
    if b.dim() not in (1, 2) or b.shape[0] != m:
        raise ValueError(f"b must have shape ({m},) or ({m}, k) to match A's {m} rows, got {tuple(b.shape)}")
    check_finite(b, "b")


def gram_schmidt(A: torch.Tensor, *, reorthogonalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """QR by classical Gram-Schmidt, by default with one re-orthogonalisation pass (CGS2).

    ``q_j = (a_j - sum_{i<j} (q_i^T a_j) q_i) / r_jj``: subtract from column ``j`` its orthogonal
    projection on ``span(q_1 .. q_{j-1}) = span(a_1 .. a_{j-1})`` and normalise what is left.

    Args:
        A: (m, n) floating tensor with m >= n and full column rank.
        reorthogonalize: project twice (keeps ``Q^T Q = I`` to rounding); ``False`` is textbook
            classical Gram-Schmidt, whose ``Q`` drifts from orthogonal as ``A`` becomes ill-conditioned.

    Returns:
        ``(Q, R)``: ``Q`` (m, n) with orthonormal columns, ``R`` (n, n) upper triangular with a
        positive diagonal, ``A = Q R``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Orthogonal projection, Gram-Schmidt and QR".
    """
    m, n = _check_tall(A)
    Q = torch.zeros(m, n, dtype=A.dtype)
    R = torch.zeros(n, n, dtype=A.dtype)
    for j in range(n):
        v = A[:, j].clone()
        for _ in range(2 if reorthogonalize else 1):
            c = Q[:, :j].T @ v  # (j, m) x (m,) -> (j,): coordinates along q_1 .. q_{j-1}
            v = v - Q[:, :j] @ c  # remove the projection on the earlier columns
            R[:j, j] += c
        R[j, j] = v.norm()
        if R[j, j] <= A.shape[0] * torch.finfo(A.dtype).eps * A[:, j].norm():
            raise ValueError(f"A must have full column rank: column {j} lies in the span of the columns before it")
        Q[:, j] = v / R[j, j]
    return Q, R


def project(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of ``b`` onto the column space of ``A``: ``Q Q^T b`` with ``A = Q R``.

    ``b - P b`` is orthogonal to every column of ``A``, and ``P b`` is the point of the column
    space closest to ``b``.

    Args:
        A: (m, n) floating tensor, m >= n, full column rank.
        b: (m,) or (m, k) tensor.

    Returns:
        Tensor of the shape of ``b``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Orthogonal projection, Gram-Schmidt and QR".
    """
    m, _ = _check_tall(A)
    _check_rhs(b, m)
    Q, _ = gram_schmidt(A)
    return Q @ (Q.T @ b.to(A.dtype))  # (m, n) x (n, ...) -> (m, ...)


def lstsq_qr(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The least-squares solution of ``A x ~ b`` by QR: ``R x = Q^T b``.

    ``||A x - b||^2 = ||R x - Q^T b||^2 + ||(I - Q Q^T) b||^2``; the second term does not depend on
    ``x``, and the first is zero at the solution. ``kappa(R) = kappa(A)``: nothing is squared.

    Args:
        A: (m, n) floating tensor, m >= n, full column rank.
        b: (m,) or (m, k) right-hand side(s).

    Returns:
        ``x`` of shape (n,) or (n, k).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Least squares: normal equations or QR".
    """
    m, _ = _check_tall(A)
    _check_rhs(b, m)
    Q, R = gram_schmidt(A)
    return triangular_solve(R, Q.T @ b.to(A.dtype), lower=False)  # (n, m) x (m, ...) -> (n, ...)


def lstsq_normal(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The least-squares solution from the normal equations ``A^T A x = A^T b``, by Cholesky.

    The gradient of ``||A x - b||^2`` is ``2 A^T (A x - b)``; setting it to zero gives the normal
    equations. ``A^T A`` is symmetric positive definite for full column rank, so Cholesky solves
    them in ``n^3/3`` FLOPs, but ``kappa(A^T A) = kappa(A)^2``: half the digits are lost.

    Args:
        A: (m, n) floating tensor, m >= n, full column rank.
        b: (m,) or (m, k) right-hand side(s).

    Returns:
        ``x`` of shape (n,) or (n, k).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Least squares: normal equations or QR".
    """
    m, _ = _check_tall(A)
    _check_rhs(b, m)
    L = cholesky(A.T @ A)  # (n, m) x (m, n) -> (n, n) = L L^T
    y = triangular_solve(L, A.T @ b.to(A.dtype), lower=True)
    return triangular_solve(L.T, y, lower=False)
