"""Forward KL fits by moment matching; reverse KL settles on one mode."""
import math

import pytest
import torch

from mathllm.kl_fit import fit_gaussian_kl, grid_gaussian

GRID = torch.linspace(-8, 8, 401, dtype=torch.float64)


def _bimodal(sep=2.0, s=0.5, w=0.5):
    p = w * torch.exp(-(GRID + sep) ** 2 / (2 * s * s)) + (1 - w) * torch.exp(-(GRID - sep) ** 2 / (2 * s * s))
    return p / p.sum()


def test_grid_gaussian_is_a_normal_density_normalised():
    q = grid_gaussian(GRID, torch.tensor(0.7), torch.tensor(1.3))
    ref = torch.distributions.Normal(0.7, 1.3).log_prob(GRID).exp()
    torch.testing.assert_close(q, ref / ref.sum(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("w", [0.5, 0.3])
def test_forward_kl_matches_moments(w):
    p = _bimodal(w=w)
    fit = fit_gaussian_kl(p, GRID, "forward", mu0=1.0, sigma0=1.0, steps=400, lr=0.1)
    q = grid_gaussian(GRID, torch.tensor(fit.mu), torch.tensor(fit.sigma))
    for k in (1, 2):  # an exponential family in (x, x^2): the optimum matches E[x] and E[x^2]
        assert abs((q * GRID**k).sum() - (p * GRID**k).sum()) < 1e-6


def test_reverse_kl_seeks_a_mode():
    p = _bimodal()
    right = fit_gaussian_kl(p, GRID, "reverse", mu0=1.0, sigma0=1.0, steps=400, lr=0.1)
    left = fit_gaussian_kl(p, GRID, "reverse", mu0=-1.0, sigma0=1.0, steps=400, lr=0.1)
    assert abs(right.mu - 2.0) < 1e-2 and abs(left.mu + 2.0) < 1e-2
    assert abs(right.sigma - 0.5) < 1e-2
    assert abs(right.kl - math.log(2)) < 1e-3  # q = one component: KL = log 2 for separated modes


def test_bad_inputs():
    p = _bimodal()
    with pytest.raises(ValueError, match="direction"):
        fit_gaussian_kl(p, GRID, "both")
    with pytest.raises(ValueError, match="shape"):
        fit_gaussian_kl(p[:-1], GRID, "forward")
    with pytest.raises(ValueError, match="sigma0"):
        fit_gaussian_kl(p, GRID, "forward", sigma0=0.0)
    with pytest.raises(ValueError, match="grid"):
        grid_gaussian(GRID[:1], torch.tensor(0.0), torch.tensor(1.0))
