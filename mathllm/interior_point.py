"""An interior-point (log-barrier) method for minimize f(x) subject to c_i(x) <= 0, i = 1..m.

The constraints are replaced by a barrier that is infinite on the boundary::

    phi_t(x) = t f(x) - sum_i log(-c_i(x)),

whose minimizer x*(t) traces the **central path** as t grows. For convex f and c_i, x*(t) is
m/t-suboptimal: f(x*(t)) - p* <= m / t (the dual point lambda_i = -1 / (t c_i(x*(t))) certifies it).
The method minimizes phi_t by Newton's method from the previous x*(t) (a warm start), multiplies t by
``mu``, and stops once m / t < ``eps``. Each Newton step backtracks until the point is strictly feasible
and phi_t has decreased enough.

References: Boyd & Vandenberghe, *Convex Optimization* (2004), section 11.3 (algorithm 11.1);
Nocedal & Wright (2006), chapter 19.
Leaves out: equality constraints, the phase-I search for a feasible start, primal-dual updates.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .checks import check_callable, check_number, check_positive_int
from .minimize import Result, _start


def barrier_method(f: Callable, constraints: Callable, x0: torch.Tensor, *, t0: float = 1.0, mu: float = 10.0,
                   eps: float = 1e-8, newton_tol: float = 1e-10, max_newton: int = 50) -> Result:
    """Minimize ``f`` subject to ``constraints(x) <= 0`` from a strictly feasible ``x0``.

    Args:
        f: maps x (n,) to a scalar tensor (convex for the guarantee).
        constraints: maps x (n,) to the (m,) tensor c(x); feasible means every entry < 0.
        x0: (n,) a strictly feasible start.
        t0, mu: the first barrier weight and its growth factor per outer iteration.
        eps: stop when the duality-gap bound m / t falls below it.
        newton_tol: stop each centering once half the squared Newton decrement is below it.
        max_newton: the most Newton steps per centering.

    Returns:
        A :class:`~mathllm.minimize.Result`; ``info`` holds ``central_path`` (K, n), the barrier weights
        ``t`` and the gap bounds ``gap_bound`` = m / t of the K centerings.
    """
    fc, x = _start(f, x0)
    check_callable(constraints, "constraints")
    check_number(t0, "t0", low=0.0, low_open=True)
    check_number(mu, "mu", low=1.0, low_open=True)
    check_number(eps, "eps", low=0.0, low_open=True)
    check_number(newton_tol, "newton_tol", low=0.0, low_open=True)
    check_positive_int(max_newton, "max_newton")
    with torch.no_grad():
        c0 = constraints(x)
    if c0.dim() != 1:
        raise ValueError(f"constraints(x) must return an (m,) tensor, got shape {tuple(c0.shape)}")
    if not bool((c0 < 0).all()):
        raise ValueError(f"x0 must be strictly feasible (every constraint < 0), got max constraint {float(c0.max()):g}")
    m = c0.shape[0]
    t_start = time.perf_counter()

    def phi(t):
        def value(z):
            c = constraints(z)
            if not bool((c < 0).all()):
                return torch.tensor(math.inf, dtype=z.dtype)
            return t * f(z) - torch.log(-c).sum()      # the log barrier
        return value

    path, central, ts = [x.clone()], [], []
    t = t0
    while True:
        value = phi(t)
        for _ in range(max_newton):        # centering: Newton on phi_t, warm-started at x*(t / mu)
            fc.n_fun += 1
            fc.n_grad += 1
            fc.n_hess += 1
            z = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(value(z), z)
            H = torch.autograd.functional.hessian(value, x)
            d = -torch.linalg.solve(H, g)
            decrement_sq = float(-(g @ d))             # lambda^2 = g^T H^-1 g
            if decrement_sq / 2 <= newton_tol:
                break
            alpha, v0 = 1.0, float(value(x))
            while True:                                # backtrack: stay strictly feasible and decrease enough
                fc.n_fun += 1
                v = float(value(x + alpha * d))
                if math.isfinite(v) and v <= v0 - 0.25 * alpha * decrement_sq:
                    break
                alpha *= 0.5
                if alpha < 1e-12:
                    break
            x = (x + alpha * d).detach()
            path.append(x.clone())
        central.append(x.clone())
        ts.append(t)
        if m / t < eps:
            break
        t *= mu
    with torch.no_grad():
        fx = float(f(x))
    return Result(x, fx, torch.stack(path), len(path) - 1, fc.n_fun, fc.n_grad, fc.n_hess,
                  time.perf_counter() - t_start, True,
                  {"central_path": torch.stack(central), "t": ts, "gap_bound": [m / s for s in ts]})
