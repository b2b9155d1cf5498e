"""Tensor decompositions: CP by alternating least squares, and the tensor train by TT-SVD.

A d-way tensor ``T`` of shape ``(n_1, ..., n_d)`` has ``prod n_k`` entries. Two factorisations
store it in far fewer numbers when it has structure:

- **CP** (CANDECOMP/PARAFAC): ``T = sum_r lambda_r a_r^(1) ⊗ ... ⊗ a_r^(d)``, a sum of ``R`` rank-one
  tensors, ``R * sum n_k`` numbers; fitted by alternating least squares (:func:`cp_als`), Kolda and
  Bader, "Tensor Decompositions and Applications", SIAM Review 51(3), 2009, section 3.4.
- **Tensor train** (TT, a matrix product state): ``T[i_1, ..., i_d] = G_1[i_1] G_2[i_2] ... G_d[i_d]``,
  a product of matrices of sizes ``r_{k-1} x r_k``, computed by sequential truncated SVDs
  (:func:`tt_svd`), Oseledets, "Tensor-Train Decomposition", SIAM J. Sci. Comput. 33(5), 2011,
  algorithm 1. A weight matrix becomes a tensor by splitting each of its two indices into
  several (:func:`matrix_to_tensor`), as in Novikov et al., "Tensorizing Neural Networks", 2015.

Conventions: :func:`unfold` puts mode ``k`` first and flattens the rest in row-major order, and
:func:`khatri_rao` orders its rows to match, so ``unfold(T, 0) = A diag(lambda) khatri_rao([B, C])^T``.

Leaves out: Tucker/HOSVD, CP rank selection, line search or regularisation in ALS, TT rounding and
arithmetic in TT format, complex tensors.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_finite, check_float_tensor, check_number, check_positive_int, check_shape


# ---------------------------------------------------------------------------- helpers
def _check_float_tensor(T, name: str = "T", min_dim: int = 2) -> torch.Tensor:
    check_float_tensor(T, name)
    if T.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(T.shape)}")
    return T


def _check_to_decompose(T) -> torch.Tensor:
    """What an SVD or a least-squares solve can take: finite, float, >= 2-d, no dimension of size 0."""
    _check_float_tensor(T)
    if T.numel() == 0:
        raise ValueError(f"T must have no dimension of size 0, got shape {tuple(T.shape)}")
    return check_finite(T, "T")


def _check_matrices(mats, name: str, R: int | None = None) -> list[torch.Tensor]:
    """A non-empty list of 2-d float tensors, each with ``R`` columns (the first one's when None)."""
    if isinstance(mats, (torch.Tensor, str, bytes)) or not isinstance(mats, (list, tuple)) or not mats:
        raise TypeError(f"{name} must be a non-empty list of (n_k, R) matrices, got "
                        f"{type(mats).__name__ if not isinstance(mats, (list, tuple)) else 'an empty ' + type(mats).__name__}")
    for k, M in enumerate(mats):
        check_float_tensor(M, f"{name}[{k}]")
        R = M.shape[-1] if R is None and M.dim() == 2 else R
        if M.dim() != 2 or M.shape[1] != R:
            raise ValueError(f"{name}[{k}] must have shape (n_{k}, R={R}), got {tuple(M.shape)}")
    return list(mats)


def _check_dims(dims, name: str) -> tuple[int, ...]:
    if not isinstance(dims, (tuple, list)) or not dims or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {dims!r}")
    return tuple(dims)


def unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` unfolding: (n_1, ..., n_d) -> (n_mode, product of the other sizes), row-major."""
    _check_float_tensor(T)
    if not 0 <= mode < T.dim():
        raise ValueError(f"mode must be in [0, {T.dim() - 1}] for a {T.dim()}-way tensor, got {mode}")
    return T.movedim(mode, 0).reshape(T.shape[mode], -1)


def khatri_rao(mats: list[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product: matrices (n_k, R) -> (prod n_k, R); the first matrix varies slowest."""
    mats = _check_matrices(mats, "mats")
    R = mats[0].shape[1]
    out = mats[0]
    for M in mats[1:]:
        out = (out[:, None, :] * M[None, :, :]).reshape(-1, R)   # (a, 1, R) * (1, b, R) -> (a b, R)
    return out


# ---------------------------------------------------------------------------- CP
@dataclass(frozen=True)
class CPResult:
    """A CP decomposition found by :func:`cp_als`."""

    weights: torch.Tensor               # (R,) norms lambda_r of the rank-one terms
    factors: tuple[torch.Tensor, ...]   # d matrices (n_k, R) with unit-norm columns
    errors: tuple[float, ...]           # relative error ||T - T_hat||_F / ||T||_F after each sweep


def cp_reconstruct(weights: torch.Tensor, factors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The tensor ``sum_r weights[r] * factors[0][:, r] ⊗ ... ⊗ factors[-1][:, r]`` of shape (n_1, ..., n_d)."""
    (R,) = check_shape(weights, "R", name="weights")
    check_float_tensor(weights, "weights")
    factors = _check_matrices(factors, "factors", R=R)
    if len(factors) > 17:
        raise ValueError(f"factors must hold at most 17 matrices (one einsum letter each), got {len(factors)}")
    letters = "abcdefghijklmnopq"[:len(factors)]
    spec = "z," + ",".join(f"{c}z" for c in letters) + "->" + letters   # e.g. "z,az,bz,cz->abc"
    return torch.einsum(spec, weights, *factors)


def cp_als(T: torch.Tensor, rank: int, *, iters: int = 200, tol: float = 1e-10,
           generator: torch.Generator | None = None) -> CPResult:
    r"""Fit a rank-``R`` CP decomposition by alternating least squares.

    With every factor but ``A_k`` fixed, the model is linear in ``A_k``:
    ``unfold(T, k) ≈ A_k K_k^T`` with ``K_k`` the Khatri-Rao product of the other factors. Its
    least-squares solution uses the normal equations, whose ``(R, R)`` matrix is the Hadamard
    product of the other factors' Gram matrices: ``A_k = unfold(T, k) K_k (*_{j != k} A_j^T A_j)^+``.
    Each update solves its subproblem exactly, so the error never increases; it may still stop
    at a local minimum (a different random start may do better).

    Args:
        T: (n_1, ..., n_d) floating tensor, ``d >= 2``.
        rank: ``R >= 1``.
        iters: maximum sweeps over all modes.
        tol: stop when the relative error changes by less than this in one sweep.
        generator: seeds the random initial factors.

    Returns:
        :class:`CPResult`.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Tensor decompositions".
    """
    _check_to_decompose(T)
    check_positive_int(rank, "rank")
    check_positive_int(iters, "iters")
    check_number(tol, "tol", low=0.0)
    d, norm_T = T.dim(), float(T.norm())
    factors = [torch.randn(n, rank, generator=generator, dtype=T.dtype).to(T.device) for n in T.shape]
    weights = torch.ones(rank, dtype=T.dtype, device=T.device)
    errors: list[float] = []
    for _ in range(iters):
        for k in range(d):
            others = [factors[j] for j in range(d) if j != k]
            gram = math.prod(A.T @ A for A in others)                  # (R, R) Hadamard product of Grams
            Ak = unfold(T, k) @ khatri_rao(others) @ torch.linalg.pinv(gram)   # (n_k, R)
            weights = Ak.norm(dim=0).clamp(min=torch.finfo(T.dtype).tiny)
            factors[k] = Ak / weights
        err = float((T - cp_reconstruct(weights, factors)).norm()) / max(norm_T, torch.finfo(T.dtype).tiny)
        errors.append(err)
        if len(errors) > 1 and abs(errors[-2] - errors[-1]) < tol:
            break
    return CPResult(weights=weights, factors=tuple(factors), errors=tuple(errors))


def cp_params(shape: tuple[int, ...], rank: int) -> int:
    """Numbers stored by a rank-``R`` CP model of a tensor of ``shape``: ``R * sum(shape)`` (weights folded into one factor)."""
    shape = _check_dims(shape, "shape")
    check_positive_int(rank, "rank")
    return rank * sum(shape)


# ---------------------------------------------------------------------------- tensor train
@dataclass(frozen=True)
class TensorTrain:
    """A tensor train found by :func:`tt_svd`."""

    cores: tuple[torch.Tensor, ...]     # d cores (r_{k-1}, n_k, r_k), r_0 = r_d = 1
    truncation_errors: tuple[float, ...]  # Frobenius norm of the singular values dropped at each of the d - 1 splits

    @property
    def ranks(self) -> tuple[int, ...]:
        """The TT ranks ``(1, r_1, ..., r_{d-1}, 1)``."""
        return (1,) + tuple(G.shape[2] for G in self.cores)

    @property
    def n_params(self) -> int:
        """Numbers stored: the total size of the cores, ``sum_k r_{k-1} n_k r_k``."""
        return sum(G.numel() for G in self.cores)

    def full(self) -> torch.Tensor:
        """Contract the train back to the full tensor (n_1, ..., n_d)."""
        return tt_reconstruct(self.cores)


def tt_svd(T: torch.Tensor, *, max_rank: int | None = None, rel_eps: float = 0.0) -> TensorTrain:
    r"""TT-SVD: split off one index at a time with a truncated SVD.

    At step ``k`` the remainder is reshaped to ``(r_{k-1} n_k, rest)``; its SVD keeps the smallest
    rank whose dropped singular values have norm ``<= rel_eps ||T||_F / sqrt(d - 1)`` (and at most
    ``max_rank``); ``U`` becomes core ``k`` and ``S V^T`` is carried on. Because the cores are
    orthonormal, the error satisfies ``||T - TT||_F^2 = sum_k e_k^2`` with ``e_k`` the dropped norm
    at step ``k`` (Oseledets 2011, theorem 2.2 states the ``<=``), hence ``<= rel_eps ||T||_F``
    when ``max_rank`` does not bind.

    Args:
        T: (n_1, ..., n_d) floating tensor, ``d >= 2``.
        max_rank: cap on every TT rank (``None``: no cap).
        rel_eps: relative accuracy, ``>= 0`` (``0``: exact up to rounding).

    Returns:
        :class:`TensorTrain`.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Tensor decompositions".
    """
    _check_to_decompose(T)
    if max_rank is not None and (isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1):
        raise ValueError(f"max_rank must be a positive int or None, got {max_rank!r}")
    check_number(rel_eps, "rel_eps", low=0.0)
    d, shape = T.dim(), tuple(T.shape)
    delta = rel_eps * float(T.norm()) / math.sqrt(d - 1)
    cores, dropped, r_prev, C = [], [], 1, T
    for k in range(d - 1):
        C = C.reshape(r_prev * shape[k], -1)                     # (r_{k-1} n_k, n_{k+1} ... n_d)
        U, S, Vh = torch.linalg.svd(C, full_matrices=False)
        tails = S.flip(0).square().cumsum(0).flip(0).sqrt()      # tails[r] = ||S[r:]||
        r = int((tails > delta).sum()) if delta > 0 else int((S > 0).sum())
        r = max(1, min(r, max_rank or r))
        dropped.append(float(S[r:].square().sum().sqrt()))
        cores.append(U[:, :r].reshape(r_prev, shape[k], r))
        C = S[:r, None] * Vh[:r]                                  # (r, rest)
        r_prev = r
    cores.append(C.reshape(r_prev, shape[-1], 1))
    return TensorTrain(cores=tuple(cores), truncation_errors=tuple(dropped))


def tt_reconstruct(cores: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Contract TT cores (r_{k-1}, n_k, r_k) into the full tensor (n_1, ..., n_d)."""
    if isinstance(cores, (torch.Tensor, str, bytes)) or not isinstance(cores, (list, tuple)) or not cores:
        raise TypeError(f"cores must be a non-empty list of (r_(k-1), n_k, r_k) tensors, got "
                        f"{type(cores).__name__ if not isinstance(cores, (list, tuple)) else 'an empty ' + type(cores).__name__}")
    r_prev = 1
    for k, G in enumerate(cores):
        check_float_tensor(G, f"core {k}")
        if G.dim() != 3 or G.shape[0] != r_prev:
            raise ValueError(f"core {k} must have shape ({r_prev}, n_{k}, r_{k}), got {tuple(G.shape)}")
        r_prev = G.shape[2]
    if r_prev != 1:
        raise ValueError(f"the last core must end in rank 1, got {r_prev}")
    out = cores[0].reshape(cores[0].shape[1], -1)                 # (n_1, r_1)
    for G in cores[1:]:
        r, n, r_next = G.shape
        out = (out @ G.reshape(r, n * r_next)).reshape(-1, r_next)   # (N, r) x (r, n r') -> (N n, r')
    return out.reshape([G.shape[1] for G in cores])


def tt_params(shape: tuple[int, ...], ranks: tuple[int, ...]) -> int:
    """Size of a tensor train of ``shape`` (d sizes) with ``ranks`` ``(1, r_1, ..., r_{d-1}, 1)``: ``sum r_{k-1} n_k r_k``."""
    shape, ranks = _check_dims(shape, "shape"), _check_dims(ranks, "ranks")
    if len(ranks) != len(shape) + 1 or ranks[0] != 1 or ranks[-1] != 1:
        raise ValueError(f"ranks must be (1, r_1, ..., r_{{d-1}}, 1) with d + 1 = {len(shape) + 1} entries, got {ranks}")
    return sum(ranks[k] * n * ranks[k + 1] for k, n in enumerate(shape))


# ---------------------------------------------------------------------------- matrices as tensors
def matrix_to_tensor(W: torch.Tensor, row_dims: tuple[int, ...], col_dims: tuple[int, ...]) -> torch.Tensor:
    """Reshape ``W`` (M, N) with ``M = prod row_dims``, ``N = prod col_dims`` into a d-way tensor whose
    mode ``k`` pairs row digit ``k`` with column digit ``k``: shape ``(m_1 n_1, ..., m_d n_d)``.

    A TT of this tensor is the "TT-matrix" (matrix product operator) format of Novikov et al. (2015).
    """
    row_dims, col_dims = _check_dims(row_dims, "row_dims"), _check_dims(col_dims, "col_dims")
    _check_float_tensor(W, "W")
    if W.dim() != 2 or W.shape != (math.prod(row_dims), math.prod(col_dims)) or len(row_dims) != len(col_dims):
        raise ValueError(f"W of shape {tuple(W.shape)} does not split as rows {row_dims} x columns {col_dims} "
                         f"(needs equal lengths and products {math.prod(row_dims)} x {math.prod(col_dims)})")
    d = len(row_dims)
    X = W.reshape(*row_dims, *col_dims)                           # (m_1..m_d, n_1..n_d)
    X = X.permute(*[p for k in range(d) for p in (k, d + k)])     # (m_1, n_1, ..., m_d, n_d)
    return X.reshape([m * n for m, n in zip(row_dims, col_dims)])


def tensor_to_matrix(X: torch.Tensor, row_dims: tuple[int, ...], col_dims: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`matrix_to_tensor`: (m_1 n_1, ..., m_d n_d) -> (prod m_k, prod n_k)."""
    check_float_tensor(X, "X")
    row_dims, col_dims = _check_dims(row_dims, "row_dims"), _check_dims(col_dims, "col_dims")
    want = tuple(m * n for m, n in zip(row_dims, col_dims))
    if len(row_dims) != len(col_dims) or tuple(X.shape) != want:
        raise ValueError(f"X must have shape {want} for rows {row_dims} and columns {col_dims}, got {tuple(X.shape)}")
    d = len(row_dims)
    Y = X.reshape([s for m, n in zip(row_dims, col_dims) for s in (m, n)])   # (m_1, n_1, ..., m_d, n_d)
    Y = Y.permute(*range(0, 2 * d, 2), *range(1, 2 * d, 2))                 # (m_1..m_d, n_1..n_d)
    return Y.reshape(math.prod(row_dims), math.prod(col_dims))
