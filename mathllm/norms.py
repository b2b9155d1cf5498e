"""Vector and matrix norms: the p-norms, the Frobenius norm and the spectral norm.

Implements, each checked against ``torch.linalg.vector_norm`` and ``torch.linalg.matrix_norm`` in
``tests/test_norms.py``:

- the vector p-norm ``||x||_p = (sum_i |x_i|^p)^(1/p)`` for ``1 <= p < inf`` and its limit
  ``||x||_inf = max_i |x_i|`` (:func:`vector_norm`);
- the matrix norms that a chapter on LLMs meets (:func:`matrix_norm`): Frobenius
  ``||A||_F = (sum_ij A_ij^2)^(1/2)``, and the operator norms ``||A||_p = max_x ||Ax||_p / ||x||_p``
  for ``p = 1`` (largest column sum of ``|A|``), ``p = inf`` (largest row sum) and ``p = 2``, the
  **spectral norm** ``sigma_max(A) = sqrt(lambda_max(A^T A))``.

Reference: Golub and Van Loan, *Matrix Computations*, 4th ed., sections 2.2-2.3.

Leaves out: p < 1 (not a norm: the triangle inequality fails), operator norms for other p (NP-hard
in general), nuclear and Schatten norms, complex tensors, batches of matrices.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import math

import torch

from .checks import check_finite, check_float_tensor, check_number, check_shape


def vector_norm(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """The p-norm of a vector, ``(sum_i |x_i|^p)^(1/p)``, or ``max_i |x_i|`` for ``p = inf``.

    Args:
        x: (n,) floating tensor.
        p: a number in ``[1, inf]``.

    Returns:
        0-d tensor of the dtype of ``x``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Norms".
    """
    check_float_tensor(x, "x")
    check_shape(x, "n", name="x")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or p < 1:
        raise ValueError(f"p must be a number in [1, inf] (p < 1 is not a norm), got {p!r}")
    a = x.abs()
    if a.numel() == 0:
        return a.sum()  # the empty sum: ||x|| = 0 in R^0
    if p == math.inf:
        return a.max()
    scale = a.max()  # factor out the largest entry so that |x_i|^p cannot overflow
    if scale == 0 or not torch.isfinite(scale):
        return scale
    return scale * ((a / scale) ** p).sum() ** (1.0 / p)


def matrix_norm(A: torch.Tensor, ord: str | float = "fro") -> torch.Tensor:
    """A matrix norm of ``A``: ``"fro"``, or the operator norm for ``ord`` in ``1, 2, inf``.

    ``||A||_1`` is the largest column sum of ``|A|`` (attained at a unit vector ``e_j``),
    ``||A||_inf`` the largest row sum (attained at a vector of signs), and ``||A||_2`` the largest
    singular value, the square root of the largest eigenvalue of the symmetric ``A^T A``.

    Args:
        A: (m, n) floating tensor, finite.
        ord: ``"fro"``, ``1``, ``2`` or ``math.inf``.

    Returns:
        0-d tensor of the dtype of ``A``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Norms".
    """
    check_float_tensor(A, "A")
    m, n = check_shape(A, "m n", name="A")
    check_finite(A, "A")
    if ord not in ("fro", 1, 2, math.inf) or isinstance(ord, bool):
        raise ValueError(f"ord must be 'fro', 1, 2 or math.inf, got {ord!r}")
    if m == 0 or n == 0:
        return A.abs().sum()  # every norm of an empty matrix is 0
    if ord == "fro":
        return vector_norm(A.reshape(-1), 2.0)  # the 2-norm of the entries, (m n,)
    if ord == 1:
        return A.abs().sum(0).max()  # (n,) column sums
    if ord == math.inf:
        return A.abs().sum(1).max()  # (m,) row sums
    G = A.T @ A if n <= m else A @ A.T  # the smaller Gram matrix: (n, n) or (m, m), same nonzero eigenvalues
    return torch.linalg.eigvalsh(G)[-1].clamp(min=0).sqrt()


def norm_equivalence(n: int, p: float, q: float) -> float:
    """The best constant ``c`` with ``||x||_p <= c ||x||_q`` for every ``x`` in ``R^n``.

    For ``p >= q`` it is 1 (attained at ``e_1``); for ``p < q`` it is ``n^(1/p - 1/q)`` (attained at
    the all-ones vector), by Hoelder's inequality. ``1/inf`` counts as 0.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Norms".
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    for name, v in (("p", p), ("q", q)):
        if v != math.inf:
            check_number(v, name, low=1)
    return 1.0 if p >= q else float(n) ** (_reciprocal(p) - _reciprocal(q))


def _reciprocal(r: float) -> float:
    return 0.0 if r == math.inf else 1.0 / r
