"""Joint, marginal and conditional distributions of two discrete variables; covariance and correlation.

A joint table ``joint[x, y] = P(X = x, Y = y)`` of shape (A, B) holds everything about the pair:
the marginals are its row and column sums, P(x) = sum_y P(x, y); the conditional distribution is a
row divided by its sum, P(y | x) = P(x, y) / P(x); X and Y are independent when the table is the
outer product of its marginals, P(x, y) = P(x) P(y). For numerical values x_a and y_b,
Cov(X, Y) = E[(X - E X)(Y - E Y)] = E[XY] - E[X] E[Y] and corr = Cov / (sd X sd Y) in [-1, 1];
independence gives Cov = 0, not the other way round. For data (N, d) the sample covariance matrix
divides by N - 1 (unbiased).

Reference: Wasserman, *All of Statistics* (2004), ch. 2-3. Leaves out: more than two variables
(conditional mutual information is :func:`mathllm.probability.conditional_mutual_information`),
continuous joint densities (the multivariate Gaussian is :mod:`mathllm.gaussian`).

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import torch

from .checks import check_finite, check_float_tensor, check_tensor
from .probability import check_distribution


# ---------------------------------------------------------------------------- tables
def check_joint(joint: torch.Tensor, name: str = "joint") -> torch.Tensor:
    """Raise unless ``joint`` is an (A, B) float table of probabilities summing to 1."""
    check_float_tensor(joint, name)
    if joint.dim() != 2 or joint.numel() == 0:
        raise ValueError(f"{name} must have shape (A, B) for P(x, y), got {tuple(joint.shape)}")
    check_distribution(joint.flatten(), name)
    return joint


def marginals(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P(x) = sum_y P(x, y) and P(y) = sum_x P(x, y): (A, B) -> (A,), (B,)."""
    check_joint(joint)
    return joint.sum(1), joint.sum(0)


def conditional(joint: torch.Tensor) -> torch.Tensor:
    """P(y | x) = P(x, y) / P(x), one distribution per row: (A, B) -> (A, B).

    Undefined where P(x) = 0; such rows raise ValueError.
    """
    px, _ = marginals(joint)
    if (px == 0).any():
        raise ValueError(f"P(x) = 0 for x = {int((px == 0).nonzero()[0])}: P(y | x) is undefined there")
    return joint / px[:, None]  # (A, B) / (A, 1)


def independence_gap(joint: torch.Tensor) -> torch.Tensor:
    """``max |P(x, y) - P(x) P(y)|``: zero exactly when X and Y are independent. (A, B) -> ()."""
    px, py = marginals(joint)
    return (joint - px[:, None] * py[None, :]).abs().max()  # (A, B) - (A, 1)(1, B)


def table_covariance(joint: torch.Tensor, x_values: torch.Tensor, y_values: torch.Tensor) -> torch.Tensor:
    """Cov(X, Y) = sum_{a,b} P(a, b) (x_a - E X)(y_b - E Y) for values x (A,), y (B,): -> ()."""
    px, py = marginals(joint)
    for v, n, name in ((x_values, joint.shape[0], "x_values"), (y_values, joint.shape[1], "y_values")):
        check_finite(check_float_tensor(v, name), name)
        if v.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), one value per outcome, got {tuple(v.shape)}")
    dx, dy = x_values - px @ x_values, y_values - py @ y_values  # centred values (A,), (B,)
    return dx @ joint @ dy  # (A,) x (A, B) x (B,) -> ()


# ---------------------------------------------------------------------------- samples
def _check_data(x: torch.Tensor) -> torch.Tensor:
    check_tensor(x, "x")
    check_float_tensor(x, "x")
    if x.dim() != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (N, d) with N >= 2 samples, got {tuple(x.shape)}")
    return check_finite(x, "x")


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Sample covariance matrix sum_n (x_n - mean)(x_n - mean)^T / (N - 1): (N, d) -> (d, d)."""
    N = _check_data(x).shape[0]
    xc = x - x.mean(0)  # (N, d), centred
    return xc.T @ xc / (N - 1)  # (d, N) x (N, d) -> (d, d)


def correlation(x: torch.Tensor) -> torch.Tensor:
    """Pearson correlation matrix Cov_ij / (sd_i sd_j), entries in [-1, 1]: (N, d) -> (d, d).

    A column with zero variance has no correlation; it raises ValueError.
    """
    C = covariance(x)
    sd = C.diagonal().sqrt()  # (d,)
    if (sd == 0).any():
        raise ValueError(f"column {int((sd == 0).nonzero()[0])} of x is constant: its correlation is undefined")
    return (C / (sd[:, None] * sd[None, :])).clamp(-1.0, 1.0)
