"""Tests for mathllm.dirichlet against torch.distributions, scipy.stats and mathllm.ngram's add-k."""
import pytest
import scipy.stats
import torch

from mathllm import dirichlet as D
from mathllm.ngram import NGramConfig, NGramModel


def counts_alpha(K=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(0, 9, (K,), generator=g).double()
    a = torch.rand(K, generator=g, dtype=torch.float64) * 3 + 1.0
    return n, a


@pytest.mark.parametrize("seed", range(4))
def test_log_probs_match_torch_and_scipy(seed):
    n, a = counts_alpha(6, seed)
    p = torch.distributions.Dirichlet(a).sample((4,))
    torch.testing.assert_close(D.dirichlet_log_prob(p, a), torch.distributions.Dirichlet(a).log_prob(p), rtol=1e-10, atol=1e-10)
    assert abs(D.dirichlet_log_prob(p[0], a).item() - scipy.stats.dirichlet(a.numpy()).logpdf(p[0].numpy())) < 1e-9
    N = int(n.sum())
    ref = torch.distributions.Multinomial(N, probs=p[0]).log_prob(n)
    torch.testing.assert_close(D.multinomial_log_prob(n, p[0]), ref, rtol=1e-10, atol=1e-10)
    assert abs(D.multinomial_log_prob(n, p[0]).item() - scipy.stats.multinomial(N, p[0].numpy()).logpmf(n.numpy())) < 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_posterior_is_prior_plus_counts_and_its_mean(seed):
    n, a = counts_alpha(5, seed)
    torch.testing.assert_close(D.dirichlet_posterior(a, n), a + n)
    mean = torch.as_tensor(scipy.stats.dirichlet((a + n).numpy()).mean())
    torch.testing.assert_close(D.posterior_mean(a, n), mean, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_map_maximises_the_log_posterior(seed):
    n, a = counts_alpha(4, seed)
    m = D.map_estimate(a, n)
    best = D.dirichlet_log_prob(m, a + n)
    around = torch.distributions.Dirichlet(50 * m).sample((2000,))  # points of the simplex near the mode
    assert (D.dirichlet_log_prob(around, a + n) <= best + 1e-12).all()
    torch.testing.assert_close(D.map_estimate(torch.ones(4, dtype=torch.float64), n + 1), D.categorical_mle(n + 1))


def test_add_k_smoothing_is_the_posterior_mean():
    ids = torch.tensor([0, 1, 1, 3, 1, 0, 3, 3, 3, 2])
    for k in (0.5, 1.0, 2.0):
        uni = NGramModel(NGramConfig(vocab_size=6, n=1, add_k=k)).fit(ids).conditional_table()[0]
        counts = torch.bincount(ids, minlength=6).double()
        torch.testing.assert_close(uni, D.posterior_mean(torch.full((6,), k, dtype=torch.float64), counts))


def test_errors():
    n, a = counts_alpha()
    with pytest.raises(ValueError, match="alpha must be > 0"):
        D.posterior_mean(-a, n)
    with pytest.raises(ValueError, match="whole numbers"):
        D.posterior_mean(a, n + 0.5)
    with pytest.raises(ValueError, match="outcomes"):
        D.posterior_mean(a, n[:3])
    with pytest.raises(ValueError, match="alpha >= 1"):
        D.map_estimate(a * 0.1, n)
    with pytest.raises(ValueError, match="sums to 0"):
        D.categorical_mle(torch.zeros(3, dtype=torch.float64))
