"""mathllm.tensor_decomp: CP by ALS and TT-SVD against exact constructions, scipy and torch.linalg."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from mathllm.linalg import kron
from mathllm.tensor_decomp import (cp_als, cp_params, cp_reconstruct, khatri_rao, matrix_to_tensor, tensor_to_matrix,
                                   tt_params, tt_reconstruct, tt_svd, unfold)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

F64 = dict(dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _random_cp(shape, rank, seed):
    g = _gen(seed)
    return [torch.randn(n, rank, generator=g, **F64) for n in shape]


# ---------------------------------------------------------------------------- unfold and Khatri-Rao
@pytest.mark.parametrize("shapes", [[(3, 2), (4, 2)], [(2, 3), (3, 3), (4, 3)], [(5, 1)]])
def test_khatri_rao_matches_scipy(shapes):
    g = _gen(1)
    mats = [torch.randn(s, generator=g, **F64) for s in shapes]
    ref = mats[0].numpy()
    for M in mats[1:]:
        ref = scipy.linalg.khatri_rao(ref, M.numpy())
    np.testing.assert_allclose(khatri_rao(mats).numpy(), ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 2)])
def test_cp_unfolding_identity(shape):
    """unfold(T, k) = A_k diag(lambda) khatri_rao(other factors)^T, the identity ALS is built on."""
    F = _random_cp(shape, 3, seed=2)
    w = torch.tensor([2.0, -1.0, 0.5], **F64)
    T = cp_reconstruct(w, F)
    ref = torch.zeros(shape, **F64)
    for r in range(3):                                  # the definition, term by term
        term = F[0][:, r]
        for A in F[1:]:
            term = torch.tensordot(term, A[:, r], dims=0)
        ref += w[r] * term
    torch.testing.assert_close(T, ref, rtol=1e-12, atol=1e-12)
    for k in range(len(shape)):
        others = [F[j] for j in range(len(shape)) if j != k]
        torch.testing.assert_close(unfold(T, k), (F[k] * w) @ khatri_rao(others).T, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- CP-ALS
@pytest.mark.parametrize("shape,rank,seed", [((6, 7, 8), 3, 0), ((5, 6, 4, 3), 2, 1), ((10, 10, 10), 4, 2)])
def test_cp_als_recovers_an_exact_low_rank_tensor(shape, rank, seed):
    T = cp_reconstruct(torch.ones(rank, **F64), _random_cp(shape, rank, seed))
    res = cp_als(T, rank, iters=500, tol=1e-14, generator=_gen(100 + seed))
    assert res.errors[-1] < 1e-7
    torch.testing.assert_close(cp_reconstruct(res.weights, res.factors), T, rtol=0, atol=1e-6 * float(T.abs().max()))
    for A in res.factors:
        torch.testing.assert_close(A.norm(dim=0), torch.ones(rank, **F64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("rank", [1, 2, 5])
def test_cp_als_error_never_increases(rank):
    T = torch.randn(6, 5, 4, generator=_gen(rank), **F64)      # generic tensor: no exact low-rank fit
    errs = cp_als(T, rank, iters=40, tol=0.0, generator=_gen(7)).errors
    assert len(errs) == 40
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    assert 0 < errs[-1] < 1


def test_cp_als_update_is_the_least_squares_solution():
    """One ALS update of A_0 solves min ||unfold(T, 0) - A_0 K^T||_F exactly (checked with torch.linalg.lstsq)."""
    T = torch.randn(5, 4, 3, generator=_gen(3), **F64)
    res = cp_als(T, 2, iters=1, generator=_gen(4))
    # after a sweep the last update is mode 2; redo it with lstsq given the other (final) factors
    A0, A1 = res.factors[0], res.factors[1]
    K = khatri_rao([A0, A1])                                    # (20, 2)
    sol = torch.linalg.lstsq(K, unfold(T, 2).T).solution.T      # (3, 2)
    torch.testing.assert_close(res.factors[2] * res.weights, sol, rtol=1e-10, atol=1e-12)


def test_cp_params_and_errors():
    assert cp_params((768, 12, 64), 16) == 16 * (768 + 12 + 64)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        cp_als(torch.zeros(3, 3, 3, **F64), 0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        cp_als(torch.zeros(3, **F64), 1)
    with pytest.raises(ValueError, match=r"factors\[1\] must have shape \(n_1, R=2\)"):
        cp_reconstruct(torch.ones(2), [torch.ones(3, 2), torch.ones(3, 3)])
    with pytest.raises(ValueError, match=r"mode must be in \[0, 2\]"):
        unfold(torch.zeros(2, 2, 2, **F64), 3)


# ---------------------------------------------------------------------------- TT-SVD
@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 4, 5, 2), (2, 2, 2, 2, 2, 2), (7, 3)])
def test_tt_svd_exact_at_full_rank(shape):
    T = torch.randn(shape, generator=_gen(len(shape)), **F64)
    tt = tt_svd(T)
    torch.testing.assert_close(tt.full(), T, rtol=0, atol=1e-12)
    # full ranks are the ranks of the unfoldings (n_1...n_k) x (n_{k+1}...n_d)
    want = [1] + [min(math.prod(shape[:k]), math.prod(shape[k:])) for k in range(1, len(shape))] + [1]
    assert list(tt.ranks) == want
    assert tt.n_params == tt_params(shape, tt.ranks) == sum(G.numel() for G in tt.cores)


@pytest.mark.parametrize("ranks", [(1, 2, 3, 1), (1, 3, 2, 4, 1), (1, 1, 1, 1)])
def test_tt_svd_recovers_known_tt_ranks(ranks):
    shape = tuple(4 + k for k in range(len(ranks) - 1))
    g = _gen(sum(ranks))
    cores = [torch.randn(ranks[k], n, ranks[k + 1], generator=g, **F64) for k, n in enumerate(shape)]
    T = tt_reconstruct(cores)
    tt = tt_svd(T, rel_eps=1e-12)
    assert tt.ranks == ranks
    torch.testing.assert_close(tt.full(), T, rtol=0, atol=1e-10 * float(T.abs().max()))


@pytest.mark.parametrize("rel_eps", [0.15, 0.3, 0.5])
def test_tt_svd_error_is_the_dropped_singular_values(rel_eps):
    T = torch.randn(5, 6, 4, 5, generator=_gen(9), **F64)
    tt = tt_svd(T, rel_eps=rel_eps)
    err = float((tt.full() - T).norm())
    assert err == pytest.approx(math.sqrt(sum(e * e for e in tt.truncation_errors)), rel=1e-10)
    assert err <= rel_eps * float(T.norm()) * (1 + 1e-12)
    assert tt.n_params < tt_svd(T).n_params        # truncation dropped something (a random tensor barely compresses)


def test_tt_svd_max_rank_caps_every_rank():
    T = torch.randn(4, 4, 4, 4, generator=_gen(10), **F64)
    tt = tt_svd(T, max_rank=3)
    assert max(tt.ranks) == 3
    assert float((tt.full() - T).norm()) == pytest.approx(math.sqrt(sum(e * e for e in tt.truncation_errors)), rel=1e-10)


def test_tt_bad_inputs():
    with pytest.raises(ValueError, match="max_rank must be a positive int"):
        tt_svd(torch.zeros(2, 2, **F64), max_rank=0)
    with pytest.raises(ValueError, match=r"rel_eps must be a finite number in \[0, inf\), got -1.0"):
        tt_svd(torch.zeros(2, 2, **F64), rel_eps=-1.0)
    with pytest.raises(ValueError, match=r"core 1 must have shape \(2, n_1, r_1\)"):
        tt_reconstruct([torch.zeros(1, 3, 2), torch.zeros(3, 3, 1)])
    with pytest.raises(ValueError, match="last core must end in rank 1"):
        tt_reconstruct([torch.zeros(1, 3, 2)])
    with pytest.raises(ValueError, match="ranks must be"):
        tt_params((2, 3), (1, 2, 2))


# ---------------------------------------------------------------------------- matrices as tensors
@pytest.mark.parametrize("row_dims,col_dims", [((3, 4), (4, 5)), ((2, 2, 2), (3, 1, 2)), ((6,), (5,))])
def test_matrix_tensor_round_trip(row_dims, col_dims):
    W = torch.randn(math.prod(row_dims), math.prod(col_dims), generator=_gen(5), **F64)
    X = matrix_to_tensor(W, row_dims, col_dims)
    assert X.shape == tuple(m * n for m, n in zip(row_dims, col_dims))
    torch.testing.assert_close(tensor_to_matrix(X, row_dims, col_dims), W, rtol=0, atol=0)


def test_kronecker_matrix_has_tt_rank_one():
    """W = A ⊗ B becomes the outer product vec(A) ∘ vec(B): TT ranks (1, 1, 1), m1 n1 + m2 n2 numbers."""
    g = _gen(6)
    A, B = torch.randn(3, 4, generator=g, **F64), torch.randn(5, 2, generator=g, **F64)
    W = kron(A, B)                                             # (15, 8)
    X = matrix_to_tensor(W, (3, 5), (4, 2))                    # (12, 10)
    torch.testing.assert_close(X, torch.outer(A.reshape(-1), B.reshape(-1)), rtol=0, atol=0)
    tt = tt_svd(X, rel_eps=1e-12)
    assert tt.ranks == (1, 1, 1) and tt.n_params == 12 + 10
    torch.testing.assert_close(tensor_to_matrix(tt.full(), (3, 5), (4, 2)), W, rtol=0, atol=1e-12)


def test_matrix_to_tensor_bad_split():
    with pytest.raises(ValueError, match=r"does not split as rows \(3, 4\) x columns \(4, 4\)"):
        matrix_to_tensor(torch.zeros(12, 20, **F64), (3, 4), (4, 4))
    with pytest.raises(ValueError, match="non-empty tuple of positive ints"):
        matrix_to_tensor(torch.zeros(12, 20, **F64), (3, 0), (4, 5))


def test_hostile_input_gets_a_clear_error():
    """Issue 15 (the API fuzz test): a NaN tensor reached torch's SVD ("linalg.svd: The algorithm failed
    to converge"), a (0, 4) tensor failed to reshape, khatri_rao of a tensor raised "Boolean value of
    Tensor ... is ambiguous", and cp_reconstruct of 0-d weights raised IndexError."""
    for decompose in (lambda T: cp_als(T, 1), tt_svd):
        with pytest.raises(ValueError, match="T must be finite, got 6 NaN or infinite entries of 6"):
            decompose(torch.full((2, 3), float("nan")))
        with pytest.raises(ValueError, match=r"T must have no dimension of size 0, got shape \(0, 4\)"):
            decompose(torch.empty(0, 4))
        with pytest.raises(TypeError, match="T must be a floating-point tensor, got dtype bool"):
            decompose(torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mats must be a non-empty list of \\(n_k, R\\) matrices, got Tensor"):
        khatri_rao(torch.ones(2, 3))
    with pytest.raises(TypeError, match="mats must be a non-empty list .* got an empty list"):
        khatri_rao([])
    with pytest.raises(ValueError, match=r"weights must have shape \(R\), a 1-d tensor; got 0-d"):
        cp_reconstruct(torch.tensor(1.0), [torch.ones(3, 1)])
    with pytest.raises(TypeError, match="cores must be a non-empty list .* got float"):
        tt_reconstruct(0.5)
    with pytest.raises(TypeError, match="X must be a torch.Tensor, got NoneType"):
        tensor_to_matrix(None, (2,), (2,))
    # what still passes is unchanged: a rank-one tensor is rebuilt exactly, as torch's outer product gives it
    a, b = torch.tensor([1.0, 2.0], **F64), torch.tensor([3.0, -1.0, 0.5], **F64)
    torch.testing.assert_close(cp_reconstruct(torch.ones(1, **F64), [a[:, None], b[:, None]]), torch.outer(a, b),
                               rtol=0, atol=0)
