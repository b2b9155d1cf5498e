"""L2 regularisation is maximum a posteriori estimation under a Gaussian prior.

With data y = X w + noise, noise ~ N(0, s_n^2 I), and a prior w ~ N(0, s_p^2 I), Bayes' rule gives
the negative log posterior, up to a constant::

    -log p(w | X, y) = ||y - X w||^2 / (2 s_n^2) + ||w||^2 / (2 s_p^2) + const.

The prior adds the L2 penalty ``lambda ||w||^2`` with lambda = 1 / (2 s_p^2) to the negative
log-likelihood. Multiplied by 2 s_n^2 (which moves no minimiser) it is least squares plus
``(s_n^2 / s_p^2) ||w||^2``: ridge regression, whose minimiser solves::

    (X^T X + (s_n^2 / s_p^2) I) w = X^T y.

A broad prior (large s_p) is a weak penalty; a narrow one pulls w toward 0. Weight decay in a
network is the same penalty (for plain SGD; AdamW decouples it from the gradient).

Reference: Bishop, *Pattern Recognition and Machine Learning* (2006), section 3.3;
Goodfellow, Bengio & Courville, *Deep Learning* (2016), section 5.6.1.
Leaves out: the full posterior (its covariance), other priors (a Laplace prior gives L1), and
choosing s_p from the data (empirical Bayes).

Book: :doc:`/notebooks/05_loss_functions`
"""
from __future__ import annotations

import torch

from .checks import check_float_tensor, check_positive


def l2_penalty(w: torch.Tensor, prior_var: float) -> torch.Tensor:
    """``-log N(w; 0, prior_var I)`` without its constant: ``||w||^2 / (2 prior_var)``, a scalar."""
    check_float_tensor(w, "w")
    check_positive(prior_var, "prior_var")
    return (w**2).sum() / (2 * prior_var)


def ridge_coefficient(noise_var: float, prior_var: float) -> float:
    """``lambda`` of least squares + ``lambda ||w||^2`` that has the MAP minimiser: noise_var / prior_var."""
    check_positive(noise_var, "noise_var")
    check_positive(prior_var, "prior_var")
    return noise_var / prior_var


def map_linear_regression(X: torch.Tensor, y: torch.Tensor, noise_var: float, prior_var: float) -> torch.Tensor:
    """The MAP weights of y = X w + N(0, noise_var) under the prior N(0, prior_var I): ridge regression.

    Args:
        X: (N, D) inputs; y: (N,) targets.

    Returns:
        (D,) the solution of (X^T X + (noise_var / prior_var) I) w = X^T y.
    """
    check_float_tensor(X, "X")
    check_float_tensor(y, "y")
    if X.dim() != 2 or y.shape != X.shape[:1]:
        raise ValueError(f"need X (N, D) and y (N,), got X {tuple(X.shape)} and y {tuple(y.shape)}")
    lam = ridge_coefficient(noise_var, prior_var)
    A = X.T @ X + lam * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)  # (D, D), positive definite
    return torch.linalg.solve(A, X.T @ y)
