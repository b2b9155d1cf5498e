"""Rank, null space and the pseudoinverse, read off the singular value decomposition.

With ``A = U diag(sigma) V^T`` (m, n) and ``r`` singular values above a tolerance:

- the **rank** is ``r`` (:func:`matrix_rank`): the dimension of the column space, spanned by
  ``u_1 .. u_r``, and of the row space, spanned by ``v_1 .. v_r``;
- the **null space** ``{x : A x = 0}`` is spanned by ``v_{r+1} .. v_n`` (:func:`null_space`), so
  ``rank + nullity = n`` (the rank-nullity theorem);
- the **pseudoinverse** is ``A^+ = V_r diag(1 / sigma_r) U_r^T`` (:func:`pinv`): ``A^+ b`` is the
  least-squares solution of ``A x ~ b`` of smallest norm, and ``A^{-1}`` when ``A`` is invertible
  (Moore 1920, Penrose 1955).

Singular values below ``rtol * sigma_max`` count as zero: in floating point a rank-deficient
matrix has tiny, not zero, singular values. The default ``rtol = max(m, n) * eps`` is
``torch.linalg.matrix_rank``'s. Checked against ``torch.linalg`` in ``tests/test_subspaces.py``.

Reference: Golub and Van Loan, *Matrix Computations*, 4th ed., sections 2.4 and 5.5.

Leaves out: the SVD itself (``torch.linalg.svd``; :mod:`mathllm.spectral` explains it), Hermitian
fast paths, absolute tolerances, complex matrices, batches.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import torch

from .checks import check_finite, check_float_tensor, check_number, check_shape


def _svd(A: torch.Tensor, rtol: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``U (m, k), S (k,), Vh (k, n)`` with ``k = min(m, n)``, and the numerical rank ``r``."""
    check_float_tensor(A, "A")
    m, n = check_shape(A, "m n", name="A")
    if m == 0 or n == 0:
        raise ValueError(f"A must have at least one row and one column, got shape {(m, n)}")
    check_finite(A, "A")
    if rtol is None:
        rtol = max(m, n) * torch.finfo(A.dtype).eps
    check_number(rtol, "rtol", low=0)
    U, S, Vh = torch.linalg.svd(A, full_matrices=True)
    r = int((S > rtol * S[0]).sum()) if S[0] > 0 else 0
    return U, S, Vh, r


def matrix_rank(A: torch.Tensor, rtol: float | None = None) -> int:
    """The numerical rank of ``A`` (m, n): the number of singular values above ``rtol * sigma_max``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Rank, null space and the pseudoinverse".
    """
    return _svd(A, rtol)[3]


def null_space(A: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """An orthonormal basis of the null space of ``A`` (m, n): the (n, n - r) matrix ``[v_{r+1} .. v_n]``.

    ``A @ null_space(A)`` is zero up to rounding, and ``r + (n - r) = n`` (rank-nullity).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Rank, null space and the pseudoinverse".
    """
    _, _, Vh, r = _svd(A, rtol)
    return Vh[r:].T  # (n - r, n) -> (n, n - r)


def pinv(A: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """The Moore-Penrose pseudoinverse ``A^+ = V_r diag(1 / sigma_r) U_r^T``, shape (n, m).

    Inverts ``A`` on its row space and sends the orthogonal complement of its column space to 0,
    so ``x = A^+ b`` minimises ``||A x - b||`` and, among all minimisers, ``||x||``.

    Args:
        A: (m, n) floating tensor, any shape and rank.
        rtol: singular values at or below ``rtol * sigma_max`` count as zero.

    Returns:
        (n, m) tensor of the dtype of ``A``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Rank, null space and the pseudoinverse".
    """
    U, S, Vh, r = _svd(A, rtol)
    return (Vh[:r].T / S[:r]) @ U[:, :r].T  # (n, r) diag(1/s) x (r, m) -> (n, m)
