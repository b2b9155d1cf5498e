"""Tests for mathllm.gaussian against torch.distributions.MultivariateNormal and scipy.stats."""
import pytest
import scipy.stats
import torch

from mathllm import gaussian as G


def spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    return A @ A.T + 0.1 * torch.eye(d, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("d, seed", [(1, 0), (2, 1), (5, 2), (12, 3)])
def test_log_prob_matches_torch_and_scipy(d, seed):
    cov, mean = spd(d, seed)
    x = torch.randn(7, 3, d, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64) * 2
    ours = G.mvn_log_prob(x, mean, cov)
    assert ours.shape == (7, 3)
    ref = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    sp_ref = scipy.stats.multivariate_normal(mean.numpy(), cov.numpy()).logpdf(x.reshape(-1, d).numpy())
    torch.testing.assert_close(ours.reshape(-1), torch.as_tensor(sp_ref).reshape(-1), rtol=1e-9, atol=1e-9)


def test_affine_map_known_answer_and_torch():
    cov, mean = spd(3, 4)
    A = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([0.5, -1.0], dtype=torch.float64)
    m2, c2 = G.affine_map(mean, cov, A, b)
    torch.testing.assert_close(m2, A @ mean + b)
    torch.testing.assert_close(c2, torch.einsum("ij,jk,lk->il", A, cov, A))  # A Sigma A^T
    # the log-density of A X + b under its own parameters equals torch's on the same points
    y = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(G.mvn_log_prob(y, m2, c2),
                               torch.distributions.MultivariateNormal(m2, c2).log_prob(y), rtol=1e-10, atol=1e-10)


@pytest.mark.numerics
def test_sample_moments_within_standard_errors():
    cov, mean = spd(3, 5)
    N = 200_000
    x = G.mvn_sample(mean, cov, N, generator=torch.Generator().manual_seed(0))
    se_mean = (cov.diagonal() / N).sqrt()
    assert ((x.mean(0) - mean).abs() < 5 * se_mean).all()
    # Var of the sample covariance entry ij of a Gaussian: (S_ii S_jj + S_ij^2) / N
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / N).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < 5 * se_cov).all()


def test_errors():
    cov, mean = spd(2, 0)
    with pytest.raises(ValueError, match="positive definite"):
        G.mvn_log_prob(torch.zeros(2, dtype=torch.float64), mean, torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="symmetric"):
        G.mvn_log_prob(torch.zeros(2, dtype=torch.float64), mean, torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        G.mvn_sample(mean, torch.eye(3, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match=r"x must have shape"):
        G.mvn_log_prob(torch.zeros(3, dtype=torch.float64), mean, cov)
    with pytest.raises(ValueError, match="A must have shape"):
        G.affine_map(mean, cov, torch.ones(2, 3, dtype=torch.float64))
