"""Fitting a Gaussian to a target distribution by forward or by reverse KL divergence.

On a grid x_1 < ... < x_G a Gaussian becomes the categorical q_k = softmax(-(x_k - mu)^2 / 2 sigma^2),
and a target p (for instance a mixture of two bumps) is a categorical on the same grid. The two
directions of the KL divergence ask for different fits:

    forward  KL(p || q) = sum_k p_k log(p_k / q_k)   infinite wherever p > 0 and q -> 0:
             q must *cover* all of p's mass ("mode-covering", "zero-avoiding"); for a Gaussian q
             the minimiser matches p's mean and variance (moment matching).
    reverse  KL(q || p) = sum_k q_k log(q_k / p_k)   infinite wherever q > 0 and p -> 0:
             q must stay where p has mass, and may ignore some of it ("mode-seeking",
             "zero-forcing"); for a bimodal p it settles on one mode.

Maximum likelihood (cross-entropy training) minimises the forward KL from the data to the model;
variational inference and some distillation and RL objectives minimise the reverse one.

Reference: Bishop, *Pattern Recognition and Machine Learning* (2006), section 10.1.2;
Murphy, *Probabilistic Machine Learning: An Introduction* (2022), section 6.2.
Leaves out: continuous densities (the grid sum is a Riemann sum), other families, and several
random restarts (the reverse fit depends on where it starts).

Book: :doc:`/notebooks/05_loss_functions`
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_float_tensor, check_number, check_positive, check_positive_int
from .losses import softmax
from .probability import kl_divergence

DIRECTIONS = ("forward", "reverse")


@dataclass(frozen=True)
class GaussianFit:
    """The Gaussian found by :func:`fit_gaussian_kl` and the divergence it reached."""

    mu: float
    sigma: float
    kl: float  # the minimised divergence, in nats


def grid_gaussian(grid: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The Gaussian N(mu, sigma^2) as a categorical on ``grid`` (G,): softmax(-(x - mu)^2 / 2 sigma^2)."""
    check_float_tensor(grid, "grid")
    if grid.dim() != 1 or grid.numel() < 2:
        raise ValueError(f"grid must have shape (G,) with G >= 2, got {tuple(grid.shape)}")
    return softmax(-((grid - mu) ** 2) / (2 * sigma**2), dim=-1)


def fit_gaussian_kl(target: torch.Tensor, grid: torch.Tensor, direction: str, mu0: float = 0.0,
                    sigma0: float = 1.0, steps: int = 2000, lr: float = 0.05) -> GaussianFit:
    """Fit (mu, sigma) of a grid Gaussian q to ``target`` p by Adam on KL(p||q) or KL(q||p).

    Args:
        target: (G,) a distribution on ``grid`` (non-negative, sums to 1).
        grid: (G,) the points.
        direction: ``"forward"`` minimises KL(p || q), ``"reverse"`` minimises KL(q || p).
        mu0, sigma0: the start; steps, lr: Adam's number of steps and learning rate (on mu and
            log sigma, so sigma stays positive).
    """
    check_float_tensor(target, "target")
    if target.shape != grid.shape:
        raise ValueError(f"target must have the shape of grid {tuple(grid.shape)}, got {tuple(target.shape)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    check_number(mu0, "mu0")
    check_positive(sigma0, "sigma0")
    check_positive_int(steps, "steps")
    check_positive(lr, "lr")
    mu = torch.tensor(float(mu0), dtype=grid.dtype, requires_grad=True)
    log_sigma = torch.tensor(float(sigma0), dtype=grid.dtype).log().requires_grad_(True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr)

    def divergence() -> torch.Tensor:
        q = grid_gaussian(grid, mu, log_sigma.exp())  # (G,)
        return kl_divergence(target, q) if direction == "forward" else kl_divergence(q, target)

    for _ in range(steps):
        opt.zero_grad()
        divergence().backward()
        opt.step()
    with torch.no_grad():
        return GaussianFit(mu.item(), log_sigma.exp().item(), divergence().item())
