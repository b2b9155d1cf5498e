"""MAP under a Gaussian prior is ridge regression: checked with torch.distributions and autograd."""
import pytest
import torch

from mathllm.gaussian_prior import l2_penalty, map_linear_regression, ridge_coefficient


def _f64(v):  # a python float would make the distribution float32
    return torch.tensor(v, dtype=torch.float64)


def _data(seed=0, N=30, D=4):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, dtype=torch.float64, generator=g)
    y = X @ torch.randn(D, dtype=torch.float64, generator=g) + 0.5 * torch.randn(N, dtype=torch.float64, generator=g)
    return X, y


@pytest.mark.parametrize("noise_var,prior_var", [(0.25, 1.0), (1.0, 0.1), (0.5, 10.0)])
def test_map_zeroes_the_gradient_of_the_log_posterior(noise_var, prior_var):
    X, y = _data()
    w = map_linear_regression(X, y, noise_var, prior_var).requires_grad_()
    log_post = (torch.distributions.Normal(X @ w, _f64(noise_var**0.5)).log_prob(y).sum()
                + torch.distributions.Normal(_f64(0.0), _f64(prior_var**0.5)).log_prob(w).sum())
    (g,) = torch.autograd.grad(log_post, w)
    assert g.abs().max() < 1e-10
    # and it minimises least squares + lambda |w|^2, lambda = noise_var / prior_var
    w2 = w.detach().clone().requires_grad_()
    ridge = ((y - X @ w2) ** 2).sum() + ridge_coefficient(noise_var, prior_var) * (w2**2).sum()
    assert torch.autograd.grad(ridge, w2)[0].abs().max() < 1e-10


def test_l2_penalty_is_the_negative_log_prior():
    w = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = -torch.distributions.Normal(_f64(0.0), _f64(0.3**0.5)).log_prob(w).sum()
    const = -torch.distributions.Normal(_f64(0.0), _f64(0.3**0.5)).log_prob(torch.zeros(7, dtype=torch.float64)).sum()
    torch.testing.assert_close(l2_penalty(w, 0.3), ref - const, rtol=1e-12, atol=1e-12)


def test_bad_inputs():
    X, y = _data()
    with pytest.raises(ValueError, match="prior_var"):
        map_linear_regression(X, y, 1.0, 0.0)
    with pytest.raises(ValueError, match="X"):
        map_linear_regression(X, y[:-1], 1.0, 1.0)
    with pytest.raises(TypeError, match="noise_var"):
        ridge_coefficient("a", 1.0)
