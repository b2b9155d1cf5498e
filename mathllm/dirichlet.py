"""Categorical, multinomial and Dirichlet distributions: conjugacy, MLE, MAP and add-alpha smoothing.

Counts n = (n_1, ..., n_K) of N draws from a categorical p have the multinomial pmf::

    P(n | p) = N! / (n_1! ... n_K!) prod_i p_i^{n_i}.

The Dirichlet prior Dir(p; alpha) = Gamma(sum alpha) / prod Gamma(alpha_i) prod_i p_i^{alpha_i - 1}
is conjugate: the posterior is proportional to prod_i p_i^{n_i + alpha_i - 1}, so it is
Dir(alpha + n), "prior plus counts". Three point estimates follow:

* maximum likelihood (MLE): n_i / N, zero for every outcome not seen;
* the posterior mean: (n_i + alpha_i) / (N + sum alpha), which for alpha_i = k is add-k smoothing
  (:class:`mathllm.ngram.NGramModel` with ``add_k``), never zero;
* the posterior mode (MAP): (n_i + alpha_i - 1) / (N + sum alpha - K), defined here for alpha_i >= 1;
  alpha = 1 (the uniform prior) gives back the MLE.

Reference: Murphy, *Machine Learning: A Probabilistic Perspective* (2012), sec. 3.4; Chen & Goodman
(1999) for smoothing. Leaves out: hierarchical (Pitman-Yor) priors, MAP with alpha_i < 1 (a mode on
the boundary of the simplex), the Dirichlet-multinomial marginal likelihood.

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import torch

from .checks import check_finite, check_float_tensor
from .probability import check_distribution


def _check_alpha(alpha: torch.Tensor) -> torch.Tensor:
    check_finite(check_float_tensor(alpha, "alpha"), "alpha")
    if alpha.dim() == 0 or alpha.numel() == 0:
        raise ValueError(f"alpha must have shape (..., K) with K >= 1, got {tuple(alpha.shape)}")
    if (alpha <= 0).any():
        raise ValueError(f"alpha must be > 0 (Dirichlet concentrations), got minimum {alpha.min().item():.3g}")
    return alpha


def _check_counts(counts: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    check_finite(check_float_tensor(counts, "counts"), "counts")
    if counts.dim() == 0 or counts.numel() == 0:
        raise ValueError(f"counts must have shape (..., K) with K >= 1, got {tuple(counts.shape)}")
    if (counts < 0).any() or (counts != counts.round()).any():
        raise ValueError("counts must hold non-negative whole numbers of observations")
    if like is not None and counts.shape[-1] != like.shape[-1]:
        raise ValueError(f"counts has K={counts.shape[-1]} outcomes but alpha or p has {like.shape[-1]}")
    return counts


def categorical_mle(counts: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood categorical n_i / N: (..., K) -> (..., K). Needs N > 0."""
    N = _check_counts(counts).sum(-1, keepdim=True)
    if (N == 0).any():
        raise ValueError("counts sums to 0: the maximum-likelihood estimate of no data is undefined")
    return counts / N


def multinomial_log_prob(counts: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """log P(n | p) = log N! - sum log n_i! + sum n_i log p_i: (..., K), (..., K) -> (...)."""
    check_distribution(p, "p")
    _check_counts(counts, p)
    N = counts.sum(-1)
    log_coef = torch.lgamma(N + 1) - torch.lgamma(counts + 1).sum(-1)  # log N! / prod n_i!
    return log_coef + torch.special.xlogy(counts, p).sum(-1)  # 0 log 0 = 0


def dirichlet_log_prob(p: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """log Dir(p; alpha) for p in the simplex (..., K) and alpha (..., K) -> (...)."""
    check_distribution(p, "p")
    _check_alpha(alpha)
    if alpha.shape[-1] != p.shape[-1]:
        raise ValueError(f"alpha has K={alpha.shape[-1]} outcomes but p has {p.shape[-1]}")
    log_norm = torch.lgamma(alpha.sum(-1)) - torch.lgamma(alpha).sum(-1)  # log 1 / B(alpha)
    return log_norm + ((alpha - 1) * p.log()).sum(-1)


def dirichlet_posterior(alpha: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Conjugacy: Dir(alpha) prior and multinomial counts n give the posterior Dir(alpha + n)."""
    return _check_alpha(alpha) + _check_counts(counts, alpha)


def posterior_mean(alpha: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """E[p | n] = (n_i + alpha_i) / (N + sum alpha): add-alpha smoothing. (..., K) -> (..., K)."""
    post = dirichlet_posterior(alpha, counts)
    return post / post.sum(-1, keepdim=True)


def map_estimate(alpha: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Posterior mode (n_i + alpha_i - 1) / (N + sum alpha - K), for alpha_i >= 1: (..., K) -> (..., K).

    The maximiser of log P(n | p) + log Dir(p; alpha) on the simplex (a Lagrange multiplier for
    sum p = 1). With alpha = 1 it is the MLE, so all-zero counts with alpha = 1 raise as the MLE does.
    """
    post = dirichlet_posterior(alpha, counts)
    if (alpha < 1).any():
        raise ValueError("map_estimate needs alpha >= 1: with alpha_i < 1 the mode lies on the simplex's boundary")
    mode = post - 1
    total = mode.sum(-1, keepdim=True)
    if (total == 0).any():
        raise ValueError("counts sums to 0 and alpha = 1: the posterior is uniform on the simplex, with no unique mode")
    return mode / total
