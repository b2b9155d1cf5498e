"""mathllm.spectral against torch.linalg: power iteration, SVD via eigh, randomized SVD, Eckart-Young, PCA."""
import math

import pytest
import torch

from mathllm.spectral import (eckart_young_error, low_rank_approx, low_rank_params, pca, power_iteration, svd_via_eigh,
                              truncated_svd)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

F64 = dict(dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _sym_with_spectrum(eigs, seed=0):
    n = len(eigs)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), **F64))
    return Q @ torch.diag(torch.tensor(eigs, **F64)) @ Q.T


def _matrix_with_singular_values(m, n, svals, seed=0):
    g = _gen(seed)
    U, _ = torch.linalg.qr(torch.randn(m, len(svals), generator=g, **F64))
    V, _ = torch.linalg.qr(torch.randn(n, len(svals), generator=g, **F64))
    return U @ torch.diag(torch.tensor(svals, **F64)) @ V.T


# ---------------------------------------------------------------------------- power iteration
@pytest.mark.parametrize("n,seed", [(5, 0), (20, 1), (50, 2)])
def test_power_iteration_matches_eigh(n, seed):
    g = _gen(seed)
    B = torch.randn(n, n, generator=g, **F64)
    A = B @ B.T                                   # symmetric positive semidefinite
    res = power_iteration(A, iters=20000, tol=1e-11, generator=g)
    lam, Q = torch.linalg.eigh(A)
    assert res.value == pytest.approx(float(lam[-1]), rel=1e-10)
    assert abs(float(res.vector @ Q[:, -1])) == pytest.approx(1.0, abs=1e-8)   # same eigenvector up to sign
    assert res.iterations < 20000


def test_power_iteration_negative_dominant_eigenvalue():
    A = _sym_with_spectrum([-5.0, 3.0, 1.0, 0.5])
    res = power_iteration(A, generator=_gen(1))
    assert res.value == pytest.approx(-5.0, rel=1e-10)


def test_power_iteration_converges_at_the_predicted_rate():
    """After t products v_t ∝ A^t v_0, so the Rayleigh quotient is sum l_i^(2t+1) c_i^2 / sum l_i^(2t) c_i^2
    and its error shrinks like (lambda_2 / lambda_1)^(2t)."""
    eigs = torch.tensor([10.0, 8.0, 3.0, 1.0, 0.5, 0.1], **F64)
    A = _sym_with_spectrum(eigs.tolist(), seed=3)
    res = power_iteration(A, iters=60, tol=0.0, generator=_gen(4))
    lam, Q = torch.linalg.eigh(A)
    c = Q.T @ torch.randn(6, generator=_gen(4), **F64)        # the same random start, in the eigenbasis
    t = torch.arange(1, 61, **F64)[:, None]
    w = c ** 2 * (lam / 10.0) ** (2 * t)                       # scaled by 10^(2t) to avoid overflow
    exact = (w * lam).sum(1) / w.sum(1)
    torch.testing.assert_close(torch.tensor(res.history, **F64), exact, rtol=1e-13, atol=0)
    err = (exact - 10.0).abs()
    measured = (err[50] / err[40]) ** (1 / 10)
    assert float(measured) == pytest.approx((8.0 / 10.0) ** 2, rel=1e-3)


def test_power_iteration_bad_inputs():
    with pytest.raises(ValueError, match=r"square symmetric \(n, n\) matrix, got shape \(3, 4\)"):
        power_iteration(torch.zeros(3, 4, **F64))
    with pytest.raises(ValueError, match="must be symmetric"):
        power_iteration(torch.tensor([[1.0, 2.0], [0.0, 1.0]], **F64))
    with pytest.raises(TypeError, match="floating-point"):
        power_iteration(torch.eye(3, dtype=torch.int64))


# ---------------------------------------------------------------------------- SVD
@pytest.mark.parametrize("m,n", [(8, 5), (5, 8), (30, 30), (100, 7), (1, 4)])
def test_svd_via_eigh_matches_torch(m, n):
    A = torch.randn(m, n, generator=_gen(m * n), **F64)
    U, S, Vh = svd_via_eigh(A)
    r = min(m, n)
    assert U.shape == (m, r) and S.shape == (r,) and Vh.shape == (r, n)
    torch.testing.assert_close(S, torch.linalg.svdvals(A), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((U * S) @ Vh, A, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(U.T @ U, torch.eye(r, **F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(Vh @ Vh.T, torch.eye(r, **F64), rtol=0, atol=1e-10)
    Ut, _, Vht = torch.linalg.svd(A, full_matrices=False)
    torch.testing.assert_close((U * Ut).sum(0).abs(), torch.ones(r, **F64), rtol=0, atol=1e-8)   # u_i = ±u_i^torch


def test_svd_via_eigh_rank_deficient():
    A = _matrix_with_singular_values(12, 6, [5.0, 2.0, 1.0], seed=8)    # rank 3
    U, S, Vh = svd_via_eigh(A)
    torch.testing.assert_close(S[:3], torch.tensor([5.0, 2.0, 1.0], **F64), rtol=1e-12, atol=0)
    assert (S[3:] < 1e-7).all()                        # zero up to sqrt(eps): the price of squaring
    torch.testing.assert_close((U * S) @ Vh, A, rtol=0, atol=1e-6)
    torch.testing.assert_close(U.T @ U, torch.eye(6, **F64), rtol=0, atol=1e-10)


def test_svd_via_eigh_loses_small_singular_values():
    """Squaring the condition number: sigma_min = 1e-10 * sigma_max is lost through A^T A, not by torch."""
    svals = [1.0, 1e-3, 1e-6, 1e-10]
    A = _matrix_with_singular_values(10, 4, svals, seed=9)
    s_torch = torch.linalg.svdvals(A)
    s_eigh = svd_via_eigh(A)[1]
    assert abs(float(s_torch[-1]) - 1e-10) < 1e-14
    assert abs(float(s_eigh[-1]) - 1e-10) > 1e-12                         # more than 1% wrong


@pytest.mark.parametrize("m,n,k", [(200, 100, 5), (300, 300, 20), (80, 150, 10)])
def test_truncated_svd_matches_torch_on_decaying_spectrum(m, n, k):
    svals = [2.0 ** (-i / 4) for i in range(min(m, n))]
    A = _matrix_with_singular_values(m, n, svals, seed=k)
    U, S, Vh = truncated_svd(A, k, iters=4, generator=_gen(0))
    torch.testing.assert_close(S, torch.tensor(svals[:k], **F64), rtol=1e-8, atol=0)
    torch.testing.assert_close(U.T @ U, torch.eye(k, **F64), rtol=0, atol=1e-10)
    best = low_rank_approx(A, k)
    torch.testing.assert_close((U * S) @ Vh, best, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_truncated_svd_keeps_the_small_singular_values_of_a_geometric_spectrum(seed):
    """sigma_i = 2^-i: the k-th is 2^-9 of the first. Without re-orthonormalising between products,
    (A A^T)^q A Omega has columns that all collapse onto u_1 in floating point, and the small
    singular values come out 60-80% wrong (measured, seeds 0..4); with it, the error is ~1e-14."""
    m, n, k = 120, 80, 10
    svals = [0.5 ** i for i in range(n)]
    A = _matrix_with_singular_values(m, n, svals, seed=seed)
    _, S, _ = truncated_svd(A, k, iters=4, generator=_gen(seed))
    # the literal spectrum is the reference; 1e-10 is 1e4 times the measured float64 error (<5e-15)
    torch.testing.assert_close(S, torch.tensor(svals[:k], **F64), rtol=1e-10, atol=0)


# ---------------------------------------------------------------------------- Eckart-Young
@pytest.mark.parametrize("m,n", [(20, 12), (12, 20), (16, 16)])
@pytest.mark.parametrize("k", [1, 3, 8, 12])
def test_eckart_young_errors(m, n, k):
    A = torch.randn(m, n, generator=_gen(m + n + k), **F64)
    S = torch.linalg.svdvals(A)
    E = A - low_rank_approx(A, k)
    assert torch.linalg.matrix_rank(low_rank_approx(A, k)) == k
    assert float(torch.linalg.matrix_norm(E, "fro")) == pytest.approx(math.sqrt(float((S[k:] ** 2).sum())), rel=1e-10, abs=1e-12)
    assert float(torch.linalg.matrix_norm(E, 2)) == pytest.approx(float(S[k]) if k < len(S) else 0.0, rel=1e-10, abs=1e-12)
    assert eckart_young_error(S, k, "fro") == pytest.approx(float(torch.linalg.matrix_norm(E, "fro")), rel=1e-10, abs=1e-12)
    assert eckart_young_error(S, k, "spectral") == pytest.approx(float(torch.linalg.matrix_norm(E, 2)), rel=1e-10, abs=1e-12)


def test_eckart_young_is_optimal_against_random_rank_k():
    A = torch.randn(15, 10, generator=_gen(11), **F64)
    best = float(torch.linalg.matrix_norm(A - low_rank_approx(A, 3)))
    g = _gen(12)
    for _ in range(50):
        B = torch.randn(15, 3, generator=g, **F64) @ torch.randn(3, 10, generator=g, **F64)
        L = torch.randn(15, 3, generator=g, **F64)
        R = torch.linalg.lstsq(L, A).solution             # best R for this L: still no better than A_k
        assert float(torch.linalg.matrix_norm(A - L @ R)) >= best - 1e-12
        assert float(torch.linalg.matrix_norm(A - B)) >= best


def test_low_rank_params_and_range_errors():
    assert low_rank_params(768, 3072, 64) == 64 * (768 + 3072)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\]"):
        low_rank_approx(torch.zeros(5, 7, **F64), 6)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\]"):
        low_rank_params(5, 7, 0)
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        truncated_svd(torch.zeros(4, 9, **F64), 5)
    with pytest.raises(ValueError, match="'fro' or 'spectral'"):
        eckart_young_error(torch.ones(3), 1, "nuclear")
    with pytest.raises(ValueError, match="2-d"):
        svd_via_eigh(torch.zeros(2, 3, 4))


# ---------------------------------------------------------------------------- PCA
@pytest.mark.parametrize("N,C,k", [(200, 3, 2), (50, 10, 4), (30, 5, 5)])
def test_pca_matches_covariance_eigh(N, C, k):
    g = _gen(N + C)
    X = torch.randn(N, C, generator=g, **F64) @ torch.randn(C, C, generator=g, **F64) + torch.randn(C, generator=g, **F64)
    p = pca(X, k)
    lam, Q = torch.linalg.eigh(torch.cov(X.T))        # ascending
    torch.testing.assert_close(p.explained_variance, lam.flip(0)[:k], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((p.components @ Q.flip(1)[:, :k]).abs().diagonal(), torch.ones(k, **F64), rtol=0, atol=1e-8)
    assert p.total_variance == pytest.approx(float(torch.cov(X.T).trace()), rel=1e-10)
    Z = p.transform(X)
    torch.testing.assert_close(Z.var(0), p.explained_variance, rtol=1e-10, atol=1e-12)
    if k == C:
        torch.testing.assert_close(p.inverse_transform(Z), X, rtol=1e-10, atol=1e-10)


def test_pca_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 rows"):
        pca(torch.zeros(1, 3, **F64), 1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        pca(torch.zeros(10, 3, **F64), 4)
    p = pca(torch.randn(10, 3, generator=_gen(0), **F64), 2)
    with pytest.raises(ValueError, match=r"X must have shape \(N, C\) with C=3"):
        p.transform(torch.zeros(4, 5, **F64))


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_power_iteration_reports_no_convergence_when_two_eigenvalues_tie_in_magnitude():
    """diag(1, -1): the iterate swings between the two eigenvectors and the Rayleigh quotient never settles."""
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    res = power_iteration(A, iters=200, generator=_gen(0))
    assert not res.converged and res.iterations == 200
    ok = power_iteration(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)), generator=_gen(0))
    assert ok.converged and abs(ok.value - 3.0) < 1e-10


def test_power_iteration_of_the_zero_matrix_is_eigenvalue_zero():
    res = power_iteration(torch.zeros(3, 3, dtype=torch.float64), generator=_gen(0))
    assert res.value == 0.0 and res.converged and torch.isfinite(res.vector).all()


@pytest.mark.parametrize("S,match", [
    (torch.tensor([1.0, 3.0, 2.0]), "S must hold singular values in descending order"),
    (torch.tensor([3.0, -1.0]), "S must hold singular values >= 0"),
    (torch.tensor([3.0, float("nan")]), "S must be finite"),
    (torch.tensor([3, 2]), "S must be a floating-point tensor"),
])
def test_eckart_young_error_refuses_what_is_not_a_spectrum(S, match):
    with pytest.raises((ValueError, TypeError), match=match):
        eckart_young_error(S, 1)
