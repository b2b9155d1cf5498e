"""The multivariate Gaussian: its log-density through a Cholesky factor, sampling, and linear maps.

N(mu, Sigma) on R^d has density::

    f(x) = (2 pi)^(-d/2) det(Sigma)^(-1/2) exp(-(x - mu)^T Sigma^{-1} (x - mu) / 2).

With the Cholesky factor Sigma = L L^T (L lower triangular, positive diagonal) the two hard parts
become cheap and stable: log det Sigma = 2 sum_i log L_ii, and the quadratic form is ``|z|^2`` with
z = L^{-1} (x - mu), one triangular solve; no inverse is ever formed. Sampling runs the same map
backwards: x = mu + L z with z ~ N(0, I). A linear map keeps the family:
A X + b ~ N(A mu + b, A Sigma A^T).

Reference: Bishop, *Pattern Recognition and Machine Learning* (2006), sec. 2.3; Golub & Van Loan,
*Matrix Computations*, sec. 4.2 (Cholesky). Leaves out: singular covariances (degenerate Gaussians),
conditioning and marginalising blocks, mixtures.

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import math

import torch

from .checks import check_finite, check_float_tensor, check_nonnegative_int


def check_mean_cov(mean: torch.Tensor, cov: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Raise unless mean is (d,) and cov a symmetric positive definite (d, d); return d and L."""
    check_finite(check_float_tensor(mean, "mean"), "mean")
    check_finite(check_float_tensor(cov, "cov"), "cov")
    if mean.dim() != 1 or mean.numel() == 0:
        raise ValueError(f"mean must have shape (d,) with d >= 1, got {tuple(mean.shape)}")
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"cov must have shape ({d}, {d}) to match mean (d={d}), got {tuple(cov.shape)}")
    tol = 1e-6 * cov.abs().max().item() + 1e-12
    if (cov - cov.T).abs().max().item() > tol:
        raise ValueError("cov must be symmetric, got cov != cov.T")
    L, info = torch.linalg.cholesky_ex(cov)
    if info.item() != 0:
        raise ValueError("cov must be positive definite (its Cholesky factorisation failed)")
    return d, L


def mvn_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, cov) for points x (..., d), mean (d,), cov (d, d) -> (...)."""
    d, L = check_mean_cov(mean, cov)
    check_float_tensor(x, "x")
    if x.dim() == 0 or x.shape[-1] != d:
        raise ValueError(f"x must have shape (..., {d}) to match mean, got {tuple(x.shape)}")
    diff = (x - mean).reshape(-1, d).T  # (d, M)
    z = torch.linalg.solve_triangular(L, diff, upper=False)  # (d, d) \ (d, M) -> (d, M): L z = x - mu
    maha = z.square().sum(0).reshape(x.shape[:-1])  # (x - mu)^T Sigma^{-1} (x - mu)
    log_det = 2 * L.diagonal().log().sum()  # log det Sigma = 2 sum log L_ii
    return -0.5 * (maha + log_det + d * math.log(2 * math.pi))


def mvn_sample(mean: torch.Tensor, cov: torch.Tensor, num_samples: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw x = mean + L z, z ~ N(0, I), Sigma = L L^T: -> (num_samples, d)."""
    d, L = check_mean_cov(mean, cov)
    check_nonnegative_int(num_samples, "num_samples")
    z = torch.randn(num_samples, d, generator=generator, dtype=mean.dtype)  # (N, d)
    return mean + z @ L.T  # (N, d) x (d, d) -> (N, d)


def affine_map(mean: torch.Tensor, cov: torch.Tensor, A: torch.Tensor,
               b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of A X + b for X ~ N(mean, cov), A (k, d), b (k,): (A mu + b, A Sigma A^T).

    The covariance A Sigma A^T is singular when k > d or A has deficient rank (a degenerate Gaussian).
    """
    d, _ = check_mean_cov(mean, cov)
    check_finite(check_float_tensor(A, "A"), "A")
    if A.dim() != 2 or A.shape[1] != d:
        raise ValueError(f"A must have shape (k, {d}) to act on x in R^{d}, got {tuple(A.shape)}")
    k = A.shape[0]
    b = torch.zeros(k, dtype=mean.dtype) if b is None else b
    check_finite(check_float_tensor(b, "b"), "b")
    if b.shape != (k,):
        raise ValueError(f"b must have shape ({k},), got {tuple(b.shape)}")
    return A @ mean + b, A @ cov @ A.T  # (k,), (k, d) x (d, d) x (d, k) -> (k, k)
