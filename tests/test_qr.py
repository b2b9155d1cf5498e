"""mathllm.qr against torch.linalg.qr and torch.linalg.lstsq: Gram-Schmidt, projection, least squares."""
import math

import pytest
import torch

from mathllm.qr import gram_schmidt, lstsq_normal, lstsq_qr, project

pytestmark = pytest.mark.numerics  # loss of orthogonality depends on rounding

F64 = dict(dtype=torch.float64)
EPS = torch.finfo(torch.float64).eps


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _with_cond(m, n, kappa, seed):
    """(m, n) with singular values from 1 down to 1/kappa, log-spaced."""
    U, _ = torch.linalg.qr(torch.randn(m, n, generator=_gen(seed), **F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed + 100), **F64))
    return (U * torch.logspace(0, -math.log10(kappa), n, **F64)) @ V.T


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (20, 7), (50, 30)])
def test_gram_schmidt_matches_torch_up_to_signs(shape):
    A = torch.randn(*shape, generator=_gen(shape[0]), **F64)
    Q, R = gram_schmidt(A)
    Qt, Rt = torch.linalg.qr(A)
    D = torch.sign(Rt.diagonal())  # Householder may give a negative diagonal; ours is positive
    torch.testing.assert_close(Q, Qt * D, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(R, D[:, None] * Rt, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(Q @ R, A, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_reorthogonalisation_keeps_q_orthogonal(seed):
    A = _with_cond(60, 20, 1e10, seed)
    I = torch.eye(20, **F64)
    loss2 = float((gram_schmidt(A)[0].T @ gram_schmidt(A)[0] - I).norm())
    loss1 = float((gram_schmidt(A, reorthogonalize=False)[0].T @ gram_schmidt(A, reorthogonalize=False)[0] - I).norm())
    assert loss2 < 100 * EPS  # CGS2: O(eps) whatever kappa is
    assert loss1 > 1e-3  # CGS: O(kappa^2 eps), here far from orthogonal


@pytest.mark.parametrize("k", [None, 3])
def test_lstsq_matches_torch(k):
    A = torch.randn(30, 6, generator=_gen(1), **F64)
    b = torch.randn(30, generator=_gen(2), **F64) if k is None else torch.randn(30, k, generator=_gen(2), **F64)
    ref = torch.linalg.lstsq(A, b if k else b[:, None]).solution
    ref = ref if k else ref[:, 0]
    torch.testing.assert_close(lstsq_qr(A, b), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lstsq_normal(A, b), ref, rtol=1e-9, atol=1e-11)


def test_projection_is_orthogonal_and_idempotent():
    A = torch.randn(12, 4, generator=_gen(3), **F64)
    b = torch.randn(12, generator=_gen(4), **F64)
    p = project(A, b)
    torch.testing.assert_close(A.T @ (b - p), torch.zeros(4, **F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(project(A, p), p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p, A @ torch.linalg.lstsq(A, b[:, None]).solution[:, 0], rtol=1e-10, atol=1e-12)


def test_normal_equations_lose_twice_the_digits():
    A = _with_cond(40, 10, 1e6, 5)
    x = torch.randn(10, generator=_gen(6), **F64)
    b = A @ x
    err_qr = float((lstsq_qr(A, b) - x).norm() / x.norm())
    err_ne = float((lstsq_normal(A, b) - x).norm() / x.norm())
    assert err_qr < 1e4 * 1e6 * EPS and err_ne > 100 * err_qr


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="full column rank"):
        gram_schmidt(torch.ones(4, 2, **F64))
    with pytest.raises(ValueError, match="m >= n"):
        gram_schmidt(torch.randn(2, 4, **F64))
    with pytest.raises(ValueError, match="b must have shape"):
        lstsq_qr(torch.randn(5, 2, **F64), torch.randn(4, **F64))
    with pytest.raises(ValueError, match="finite"):
        project(torch.full((3, 2), float("nan"), **F64), torch.ones(3, **F64))
