"""Test functions for comparing optimizers: Rosenbrock, Rastrigin, and a small MLP's loss as f(theta).

Each takes points x of shape (..., n) and returns (...), so a whole population (evolution
strategies) or a grid (contour plots) is evaluated in one call::

    Rosenbrock   f(x, y) = (a - x)^2 + b (y - x^2)^2, minimum 0 at (a, a^2); a curved, narrow valley
    Rastrigin    f(x) = A n + sum_i (x_i^2 - A cos(2 pi x_i)), minimum 0 at 0; a lattice of local minima
    MLP          mean squared error of a 1-H-1 tanh network fitted to sin(3x), parameters flattened,
                 plus optional weight decay

References: Rosenbrock (1960); Rastrigin (1974); Nocedal & Wright (2006), the Rosenbrock example.
Leaves out: the many other standard test functions.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_float_tensor, check_number, check_positive_int, check_tensor


def rosenbrock(x: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's banana function of x (..., 2); returns (...)."""
    check_float_tensor(x, "x")
    if x.dim() == 0 or x.shape[-1] != 2:
        raise ValueError(f"x must have shape (..., 2), got {tuple(x.shape)}")
    return (a - x[..., 0]) ** 2 + b * (x[..., 1] - x[..., 0] ** 2) ** 2


def rastrigin(x: torch.Tensor, A: float = 10.0) -> torch.Tensor:
    """Rastrigin's function of x (..., n); returns (...). Local minima near every integer point."""
    check_float_tensor(x, "x")
    if x.dim() == 0:
        raise ValueError("x must have shape (..., n), a point of R^n or a batch of them; got a 0-d tensor")
    return A * x.shape[-1] + (x ** 2 - A * torch.cos(2 * math.pi * x)).sum(-1)


@dataclass(frozen=True)
class MLPRegression:
    """The loss of a 1-H-1 tanh MLP on (inputs, targets) as a function of its flat parameter vector.

    Parameter layout (n = 3H + 1): W1 (H,), b1 (H,), W2 (H,), b2 (1,).
    """

    inputs: torch.Tensor    # (N,) the x of the data
    targets: torch.Tensor   # (N,) the y of the data
    hidden: int             # H
    weight_decay: float = 0.0  # adds weight_decay / 2 * |theta|^2: bounds the weights, makes minima strict

    def __post_init__(self):
        check_float_tensor(self.inputs, "inputs")
        check_float_tensor(self.targets, "targets")
        check_positive_int(self.hidden, "hidden")
        check_number(self.weight_decay, "weight_decay", low=0.0)
        if self.inputs.dim() != 1 or self.inputs.shape != self.targets.shape:
            raise ValueError(f"inputs and targets must both have shape (N,), got {tuple(self.inputs.shape)} "
                             f"and {tuple(self.targets.shape)}")

    @classmethod
    def sine(cls, n_points: int = 32, hidden: int = 8, *, noise: float = 0.05, weight_decay: float = 0.0,
             generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> MLPRegression:
        """Noisy samples of sin(3x) on [-1, 1]."""
        x = torch.linspace(-1, 1, n_points, dtype=dtype)
        y = torch.sin(3 * x) + noise * torch.randn(n_points, generator=generator, dtype=dtype)
        return cls(x, y, hidden, weight_decay)

    @property
    def n_params(self) -> int:
        return 3 * self.hidden + 1

    def init(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A flat parameter vector (n,) with unit-variance first-layer weights and 1/sqrt(H) second layer."""
        H = self.hidden
        scale = torch.cat([torch.ones(2 * H), torch.full((H,), H ** -0.5), torch.zeros(1)]).to(self.inputs.dtype)
        return torch.randn(self.n_params, generator=generator, dtype=self.inputs.dtype) * scale

    def predict(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The network's output at x (N,) for parameters theta (..., n); returns (..., N)."""
        check_tensor(theta, "theta")
        if theta.shape[-1] != self.n_params:
            raise ValueError(f"theta must have shape (..., {self.n_params}), got {tuple(theta.shape)}")
        H = self.hidden
        W1, b1, W2, b2 = theta[..., :H], theta[..., H:2 * H], theta[..., 2 * H:3 * H], theta[..., 3 * H:]
        h = torch.tanh(x[:, None] * W1[..., None, :] + b1[..., None, :])   # (..., N, H)
        return (h * W2[..., None, :]).sum(-1) + b2                          # (..., N)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean squared error (plus the weight-decay term) for parameters theta (..., n); returns (...)."""
        mse = ((self.predict(theta, self.inputs) - self.targets) ** 2).mean(-1)
        return mse + 0.5 * self.weight_decay * (theta ** 2).sum(-1) if self.weight_decay else mse
