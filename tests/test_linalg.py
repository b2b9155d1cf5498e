"""mathllm.linalg against torch: broadcasting, einsum, FLOP counts, Kronecker products, LU and solve."""
import math

import pytest
import scipy.linalg
import torch

from mathllm.linalg import (broadcast_shape, condition_number, einsum, einsum_flops, hilbert, inverse, kron,
                            lu_factor, matmul_counted, matmul_flops, solve, triangular_solve)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

F64 = dict(dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- broadcasting
@pytest.mark.parametrize("shapes", [[(3,), (3,)], [(2, 1, 4), (3, 1), (4,)], [(5, 1), (1, 6)], [(), (2, 3)],
                                    [(8, 1, 6, 1), (7, 1, 5)], [(0, 3), (1, 3)]])
def test_broadcast_shape_matches_torch(shapes):
    assert broadcast_shape(*shapes) == tuple(torch.broadcast_shapes(*shapes))


def test_broadcast_shape_rejects_incompatible():
    with pytest.raises(ValueError, match=r"do not broadcast: dimension -1 has sizes \[3, 4\]"):
        broadcast_shape((2, 3), (4,))
    with pytest.raises(TypeError, match="tuple of non-negative ints"):
        broadcast_shape((2, -1))


# ---------------------------------------------------------------------------- einsum
EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),            # matrix product
    ("ij->ji", [(3, 4)]),                        # transpose: an index reflection
    ("ii->", [(4, 4)]),                          # trace
    ("ii->i", [(4, 4)]),                         # diagonal
    ("i,j->ij", [(3,), (4,)]),                   # outer product
    ("i,i->", [(5,), (5,)]),                     # inner product
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),    # batched matmul
    ("bhtd,bhsd->bhts", [(2, 3, 4, 5), (2, 3, 6, 5)]),   # attention scores
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),  # chain of three
    ("iij,jk->ki", [(3, 3, 4), (4, 2)]),         # repeated index inside an operand
    ("ijk->", [(2, 3, 4)]),                      # sum of all entries
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_matches_torch(spec, shapes):
    g = _gen(1)
    ops = [torch.randn(s, generator=g, **F64) for s in shapes]
    torch.testing.assert_close(einsum(spec, *ops), torch.einsum(spec, *ops), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec,shapes,match", [
    ("ij,jk", [(2, 3), (3, 4)], "one '->'"),
    ("ij,jk->ik", [(2, 3)], "names 2 operands, got 1"),
    ("ij,jk->ik", [(2, 3), (4, 5)], "index 'j' .* size 3 in one place and 4"),
    ("ijk,jk->ik", [(2, 3), (3, 4)], "labelled 'ijk' .* shape \\(2, 3\\)"),
    ("ij,jk->iz", [(2, 3), (3, 4)], "appears in no input"),
    ("ij,jk->ii", [(2, 3), (3, 4)], "repeats an index"),
    ("i1,1k->ik", [(2, 3), (3, 4)], "letters"),
])
def test_einsum_bad_specs(spec, shapes, match):
    ops = [torch.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        einsum(spec, *ops)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (2, 3, 4), (5, 1, 3), (4, 6, 2), (3, 7, 5)])
def test_matmul_flops_counted_scalar_by_scalar(m, k, n):
    g = _gen(2)
    A, B = torch.randn(m, k, generator=g, **F64), torch.randn(k, n, generator=g, **F64)
    C, n_mul, n_add = matmul_counted(A, B)
    torch.testing.assert_close(C, A @ B, rtol=1e-12, atol=1e-12)
    assert (n_mul, n_add) == (m * k * n, m * n * (k - 1))
    assert n_mul + n_add == matmul_flops(m, k, n) == einsum_flops("ij,jk->ik", (m, k), (k, n))


def test_einsum_flops_general_formula():
    # "bhtd,bhsd->bhts": P = b h t s d products, O = b h t s outputs
    b, h, t, s, d = 2, 3, 5, 7, 4
    assert einsum_flops("bhtd,bhsd->bhts", (b, h, t, d), (b, h, s, d)) == (b * h * t * s) * (2 * d - 1)
    assert einsum_flops("i,i->", (10,), (10,)) == 19
    with pytest.raises(ValueError, match="repeated indices"):
        einsum_flops("ii->", (3, 3))


def test_matmul_flops_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive int sizes, got k=0"):
        matmul_flops(2, 0, 3)
    with pytest.raises(ValueError, match=r"B must have shape \(k, n\) with k=3"):
        matmul_counted(torch.zeros(2, 3), torch.zeros(4, 2))


# ---------------------------------------------------------------------------- Kronecker
@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 5)), ((1, 1), (3, 2)), ((3, 3), (2, 2))])
def test_kron_matches_torch_and_mixed_product(sa, sb):
    g = _gen(3)
    A, B = torch.randn(sa, generator=g, **F64), torch.randn(sb, generator=g, **F64)
    torch.testing.assert_close(kron(A, B), torch.kron(A, B), rtol=0, atol=0)
    x, y = torch.randn(sa[1], 1, generator=g, **F64), torch.randn(sb[1], 1, generator=g, **F64)
    # (A ⊗ B)(x ⊗ y) = (A x) ⊗ (B y)
    torch.testing.assert_close(kron(A, B) @ kron(x, y), kron(A @ x, B @ y), rtol=1e-12, atol=1e-12)
    C, D = torch.randn(sa[1], 2, generator=g, **F64), torch.randn(sb[1], 3, generator=g, **F64)
    torch.testing.assert_close(kron(A, B) @ kron(C, D), kron(A @ C, B @ D), rtol=1e-12, atol=1e-12)


def test_kron_needs_matrices():
    with pytest.raises(ValueError, match=r"A must have shape \(m, n\)"):
        kron(torch.zeros(3), torch.zeros(2, 2))


# ---------------------------------------------------------------------------- LU, solve, inverse
@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_lu_factor_matches_torch(n):
    A = torch.randn(n, n, generator=_gen(n), **F64)
    P, L, U = lu_factor(A)
    Pt, Lt, Ut = torch.linalg.lu(A)
    torch.testing.assert_close(P.T, Pt, rtol=0, atol=0)      # same pivots
    torch.testing.assert_close(L, Lt, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(U, Ut, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P.T @ L @ U, A, rtol=1e-12, atol=1e-12)
    assert (L.tril(-1).abs() <= 1).all()                      # partial pivoting bounds the multipliers


@pytest.mark.parametrize("n,k", [(1, None), (4, None), (10, None), (6, 3), (15, 1)])
def test_solve_and_inverse_match_torch(n, k):
    g = _gen(10 + n)
    A = torch.randn(n, n, generator=g, **F64) + n * torch.eye(n, **F64)
    b = torch.randn(n, generator=g, **F64) if k is None else torch.randn(n, k, generator=g, **F64)
    torch.testing.assert_close(solve(A, b), torch.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(inverse(A), torch.linalg.inv(A), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lower", [True, False])
def test_triangular_solve_matches_torch(lower):
    g = _gen(5)
    T = torch.randn(6, 6, generator=g, **F64) + 6 * torch.eye(6, **F64)
    T = T.tril() if lower else T.triu()
    b = torch.randn(6, 2, generator=g, **F64)
    ref = torch.linalg.solve_triangular(T, b, upper=not lower)
    torch.testing.assert_close(triangular_solve(T, b, lower=lower), ref, rtol=1e-12, atol=1e-12)


def test_solve_bad_inputs():
    with pytest.raises(ValueError, match=r"square \(n, n\) matrix, got shape \(2, 3\)"):
        solve(torch.zeros(2, 3, **F64), torch.zeros(2, **F64))
    with pytest.raises(ValueError, match=r"b must have shape \(3,\) or \(3, k\)"):
        solve(torch.eye(3, **F64), torch.zeros(4, **F64))
    with pytest.raises(ValueError, match="singular"):
        solve(torch.tensor([[1.0, 2.0], [2.0, 4.0]], **F64), torch.ones(2, **F64))
    with pytest.raises(TypeError, match="floating-point"):
        inverse(torch.eye(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="square"):
        condition_number(torch.zeros(3, 2))


@pytest.mark.parametrize("n", [2, 5, 8])
def test_condition_number_and_hilbert(n):
    H = hilbert(n)
    torch.testing.assert_close(H, torch.from_numpy(scipy.linalg.hilbert(n)), rtol=0, atol=0)
    torch.testing.assert_close(condition_number(H), float(torch.linalg.cond(H)), rtol=1e-6, atol=0)
    assert condition_number(torch.eye(n, **F64)) == pytest.approx(1.0, abs=1e-14)
    assert condition_number(torch.zeros(n, n, **F64)) == math.inf


@pytest.mark.parametrize("log_kappa", [0, 4, 8, 12])
def test_solve_error_bounded_by_condition_number(log_kappa):
    """Backward stable solve: forward error <= c * kappa * u with a modest c; residual ~ u."""
    n, g = 20, _gen(log_kappa)
    Q1, _ = torch.linalg.qr(torch.randn(n, n, generator=g, **F64))
    Q2, _ = torch.linalg.qr(torch.randn(n, n, generator=g, **F64))
    A = Q1 @ torch.diag(torch.logspace(0, -log_kappa, n, **F64)) @ Q2.T   # kappa(A) = 10**log_kappa
    x = torch.randn(n, generator=g, **F64)
    b = A @ x
    x_hat, u = solve(A, b), torch.finfo(torch.float64).eps
    kappa = condition_number(A)
    assert kappa == pytest.approx(10.0 ** log_kappa, rel=1e-3)
    assert float((x_hat - x).norm() / x.norm()) <= 100 * n * kappa * u
    assert float((A @ x_hat - b).norm() / (A.norm() * x_hat.norm())) <= 10 * n * u
