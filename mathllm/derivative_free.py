"""Minimization without gradients: simulated annealing and an evolution strategy.

Simulated annealing proposes x' = x + step N(0, I) and accepts it with the Metropolis probability
min(1, exp(-(f(x') - f(x)) / T)); the temperature T_k = T_0 c^k falls geometrically, so the walk
first roams across barriers and then settles. The evolution strategy estimates the gradient of the
Gaussian-smoothed objective f_sigma(x) = E f(x + sigma eps) from antithetic pairs::

    g_hat = 1 / (2 sigma P) sum_i (f(x + sigma eps_i) - f(x - sigma eps_i)) eps_i,    eps_i ~ N(0, I),

which is unbiased for grad f_sigma (and for grad f itself when f is quadratic), and descends along it.
Both return the :class:`~mathllm.minimize.Result` of the gradient-based methods.

References: Kirkpatrick, Gelatt & Vecchi (1983); Rechenberg (1973); Salimans et al., *Evolution
Strategies as a Scalable Alternative to Reinforcement Learning* (2017).
Leaves out: CMA-ES's covariance adaptation, fitness shaping, restarts.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

import math
import time

import torch

from .checks import check_int, check_number, check_positive_int, check_tensor
from .minimize import Result, _start


def simulated_annealing(f, x0: torch.Tensor, *, steps: int = 5000, step_size: float = 0.1, t0: float = 1.0,
                        cooling: float = 0.999, generator: torch.Generator | None = None) -> Result:
    """Metropolis random walk with a geometrically cooled temperature; returns the best point visited.

    Args:
        f: maps x (n,) to a scalar tensor. x0: (n,) start.
        steps: proposals to make (one f evaluation each). step_size: proposal standard deviation.
        t0, cooling: the temperature of proposal k is t0 * cooling^k.
        generator: for reproducible proposals and acceptances.
    """
    fc, x = _start(f, x0)
    check_number(step_size, "step_size", low=0.0, low_open=True)
    check_number(t0, "t0", low=0.0, low_open=True)
    check_number(cooling, "cooling", low=0.0, high=1.0, low_open=True)
    check_int(steps, "steps", low=0)
    t_start = time.perf_counter()
    fx = fc.value(x)
    best_x, best_f = x.clone(), fx
    path, accepted = [x.clone()], 0
    for k in range(steps):
        T = t0 * cooling ** k
        proposal = x + step_size * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        f_new = fc.value(proposal)
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        if f_new <= fx or u < math.exp(-(f_new - fx) / T):   # Metropolis: downhill always, uphill sometimes
            x, fx = proposal, f_new
            accepted += 1
            path.append(x.clone())
            if fx < best_f:
                best_x, best_f = x.clone(), fx
    return Result(best_x, best_f, torch.stack(path), steps, fc.n_fun, 0, 0, time.perf_counter() - t_start,
                  False, {"acceptance_rate": accepted / max(steps, 1)})


def es_gradient(f, x: torch.Tensor, *, sigma: float, pairs: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The antithetic evolution-strategy estimate of grad f_sigma(x), (n,), from 2 * ``pairs`` evaluations.

    ``f`` must accept a batch (P, n) and return (P,).
    """
    check_number(sigma, "sigma", low=0.0, low_open=True)
    check_tensor(x, "x")
    check_positive_int(pairs, "pairs")
    eps = torch.randn(pairs, x.shape[-1], generator=generator, dtype=x.dtype)     # (P, n)
    with torch.no_grad():
        diff = f(x + sigma * eps) - f(x - sigma * eps)                           # (P,)
    return (diff[:, None] * eps).sum(0) / (2 * sigma * pairs)                    # (n,)


def evolution_strategy(f, x0: torch.Tensor, *, steps: int = 500, pairs: int = 20, sigma: float = 0.05,
                       lr: float = 0.01, tol: float | None = None, generator: torch.Generator | None = None) -> Result:
    """Gradient descent along :func:`es_gradient`: x <- x - lr g_hat; 2 * ``pairs`` f evaluations per step.

    ``f`` must accept a batch (P, n) and return (P,). Stops early once f(x) <= ``tol`` (if given).
    """
    fc, x = _start(f, x0)
    check_number(lr, "lr", low=0.0, low_open=True)
    check_number(sigma, "sigma", low=0.0, low_open=True)
    check_positive_int(pairs, "pairs")
    check_int(steps, "steps", low=0)
    if tol is not None:
        check_number(tol, "tol")

    def batched(xs):                   # count every member of the population as one evaluation
        fc.n_fun += xs.shape[0]
        return f(xs)

    t_start = time.perf_counter()
    path = [x.clone()]
    fx = fc.value(x)
    for _ in range(steps):
        if tol is not None and fx <= tol:
            break
        x = x - lr * es_gradient(batched, x, sigma=sigma, pairs=pairs, generator=generator)
        path.append(x.clone())
        fx = fc.value(x)
        if not math.isfinite(fx):
            break
    return Result(x, fx, torch.stack(path), len(path) - 1, fc.n_fun, 0, 0, time.perf_counter() - t_start,
                  tol is not None and fx <= tol, {})
