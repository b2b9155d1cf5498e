"""mathllm.subspaces against torch.linalg.matrix_rank / pinv and scipy.linalg.null_space."""
import pytest
import scipy.linalg
import torch

from mathllm.subspaces import matrix_rank, null_space, pinv

F64 = dict(dtype=torch.float64)


def _low_rank(m, n, r, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, r, generator=g, **F64) @ torch.randn(r, n, generator=g, **F64)


@pytest.mark.parametrize("m, n, r", [(6, 8, 3), (8, 6, 6), (5, 5, 1), (10, 4, 2)])
def test_rank_nullity_and_torch(m, n, r):
    A = _low_rank(m, n, r, m + n + r)
    assert matrix_rank(A) == int(torch.linalg.matrix_rank(A)) == r
    N = null_space(A)
    assert N.shape == (n, n - r)  # rank + nullity = n
    torch.testing.assert_close(A @ N, torch.zeros(m, n - r, **F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(N.T @ N, torch.eye(n - r, **F64), rtol=0, atol=1e-12)
    Ns = torch.from_numpy(scipy.linalg.null_space(A.numpy()))
    torch.testing.assert_close(N @ N.T, Ns @ Ns.T, rtol=0, atol=1e-10)  # the same subspace


@pytest.mark.parametrize("m, n, r", [(6, 8, 3), (8, 6, 6), (5, 5, 5), (10, 4, 2)])
def test_pinv_matches_torch_and_penrose(m, n, r):
    A = _low_rank(m, n, r, 7 * m + n)
    P = pinv(A)
    torch.testing.assert_close(P, torch.linalg.pinv(A), rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(A @ P @ A, A, rtol=1e-10, atol=1e-10)  # the four Penrose conditions
    torch.testing.assert_close(P @ A @ P, P, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(A @ P, (A @ P).T, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(P @ A, (P @ A).T, rtol=1e-10, atol=1e-10)


def test_pinv_gives_the_minimum_norm_least_squares_solution():
    A = _low_rank(10, 6, 3, 1)
    b = torch.randn(10, generator=torch.Generator().manual_seed(2), **F64)
    x = pinv(A) @ b
    torch.testing.assert_close(x, torch.linalg.lstsq(A, b[:, None], driver="gelsd").solution[:, 0], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(null_space(A).T @ x, torch.zeros(3, **F64), rtol=0, atol=1e-12)  # no null-space part


def test_square_invertible_pinv_is_inverse_and_errors():
    A = torch.randn(5, 5, generator=torch.Generator().manual_seed(3), **F64)
    torch.testing.assert_close(pinv(A), torch.linalg.inv(A), rtol=1e-9, atol=1e-11)
    assert matrix_rank(torch.zeros(3, 4, **F64)) == 0 and null_space(torch.zeros(3, 4, **F64)).shape == (4, 4)
    with pytest.raises(ValueError, match="at least one row"):
        pinv(torch.zeros(0, 3, **F64))
    with pytest.raises(ValueError, match="rtol"):
        matrix_rank(torch.eye(2, **F64), rtol=-1.0)
