"""Convergence of (stochastic) gradient descent beyond the quadratic: smoothness, noise, clipping.

The results this module computes, for a step ``x <- x - lr * g``::

    L-smooth f, g = grad f      f(x - g / L) <= f(x) - |g|^2 / (2 L)            (descent lemma)
    logistic regression         L <= lambda_max(X^T X) / (4 N)                   (sigma' <= 1/4)
    f = lam x^2 / 2, g = lam x + sigma xi, constant lr
                                E[x^2] -> lr sigma^2 / (lam (2 - lr lam))       (the noise floor)
    the same with lr_t = c / t  E[x_t^2] ~ K / t,  K = c^2 sigma^2 / (2 c lam - 1)  (Robbins-Monro)
    clipped GD                  g <- g min(1, max_norm / |g|)                    (mathllm.clip)

The noise floor is proportional to ``lr``: a constant step never converges on noisy gradients.
Steps with ``sum lr_t = inf`` and ``sum lr_t^2 < inf`` (Robbins & Monro 1951) do, at rate ``1/t``
when ``2 c lam > 1``. :func:`least_squares_sgd` runs minibatch SGD on ``mean (X w - y)^2`` over
given batches, for the linear-scaling rule (Goyal et al. 2017): one step of ``k B`` examples at
``k lr`` matches ``k`` steps of ``B`` at ``lr`` to first order in ``lr``.

References: Nesterov, *Lectures on Convex Optimization* (2018), thm. 2.1.5 (descent lemma);
Robbins & Monro (1951); Bottou, Curtis & Nocedal, *Optimization Methods for Large-Scale Machine
Learning* (2018), sec. 4; Goyal et al. (2017). Leaves out: non-convex convergence rates, adaptive
methods' theory, the variance of the Robbins-Monro iterate for ``2 c lam <= 1``.

Book: :doc:`/notebooks/06_optimization`
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .checks import (check_callable, check_finite, check_float_tensor, check_nonnegative_int, check_number, check_positive,
                     check_positive_int, check_sequence, check_shape, check_tensor)
from .clip import clip_grad_norm


def logistic_loss(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss ``mean log(1 + exp(-y_i x_i . w))`` with labels ``y_i`` in {-1, +1}."""
    N, d = check_shape(check_float_tensor(X, "X"), "N d", "X")
    check_shape(check_float_tensor(w, "w"), "d", "w", d=d)
    check_shape(check_float_tensor(y, "y"), "N", "y", N=N)
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold labels -1 and +1")
    return torch.nn.functional.softplus(-y * (X @ w)).mean()  # log(1 + e^-m), stable for large |m|


def logistic_smoothness(X: torch.Tensor) -> float:
    """An upper bound ``L = lambda_max(X^T X) / (4 N)`` on the Hessian of :func:`logistic_loss`.

    The Hessian is ``X^T diag(s_i (1 - s_i)) X / N`` with ``s_i`` a sigmoid, and ``s (1 - s) <= 1/4``.
    """
    N, d = check_shape(check_finite(check_float_tensor(X, "X"), "X"), "N d", "X")
    if N == 0 or d == 0:
        raise ValueError(f"X must have at least one row and one column, got shape {tuple(X.shape)}")
    gram = X.T @ X                                                           # (d, d)
    if not bool(torch.isfinite(gram).all()):
        raise ValueError("X^T X overflows: X is too large to give a finite curvature")
    return torch.linalg.eigvalsh(gram)[-1].item() / (4 * N)  # eigvalsh: ascending


def noise_floor(lr: float, curvature: float, noise_var: float) -> float:
    """Stationary ``E[x^2]`` of ``x <- x - lr (curvature x + noise)``, noise of variance ``noise_var``.

    From ``v = (1 - lr lam)^2 v + lr^2 sigma^2``; finite only while ``0 < lr lam < 2``.
    """
    check_positive(lr, "lr")
    check_positive(curvature, "curvature")
    check_positive(noise_var, "noise_var", allow_zero=True)
    if lr * curvature >= 2:
        raise ValueError(f"lr * curvature must be < 2 for a stationary variance, got {lr * curvature}")
    return lr * noise_var / (curvature * (2 - lr * curvature))


def robbins_monro_constant(c: float, curvature: float, noise_var: float) -> float:
    """``K`` with ``E[x_t^2] ~ K / t`` for the steps ``lr_t = c / t``: ``c^2 sigma^2 / (2 c lam - 1)``.

    Valid when ``2 c lam > 1``; slower steps converge more slowly than ``1 / t``.
    """
    check_positive(c, "c")
    check_positive(curvature, "curvature")
    check_positive(noise_var, "noise_var", allow_zero=True)
    if 2 * c * curvature <= 1:
        raise ValueError(f"2 c curvature must be > 1 for the 1/t rate, got {2 * c * curvature}")
    return c * c * noise_var / (2 * c * curvature - 1)


def sgd_noisy_quadratic(lrs: Sequence[float], *, curvature: float, noise_std: float, x0: float = 1.0,
                        chains: int = 1000, generator: torch.Generator | None = None) -> torch.Tensor:
    """SGD on ``f(x) = curvature x^2 / 2`` with gradient ``curvature x + noise_std xi``, ``xi ~ N(0, 1)``.

    ``lrs[t]`` is the step at update ``t``; ``chains`` independent runs from ``x0`` go side by side.
    Returns the iterates, shape (len(lrs) + 1, chains), float64, ``x0`` first.
    """
    lrs = [check_positive(float(r), f"lrs[{t}]") for t, r in enumerate(check_sequence(lrs, "lrs"))]
    check_positive(curvature, "curvature")
    check_positive(noise_std, "noise_std", allow_zero=True)
    check_number(x0, "x0")
    check_positive_int(chains, "chains")
    x = torch.full((chains,), float(x0), dtype=torch.float64)                  # (chains,)
    xi = torch.randn(len(lrs), chains, dtype=torch.float64, generator=generator)  # (T, chains)
    path = [x]
    for t, lr in enumerate(lrs):
        x = x - lr * (curvature * x + noise_std * xi[t])
        path.append(x)
    return torch.stack(path)


def clipped_gradient_descent(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, *, lr: float,
                             steps: int, max_norm: float = math.inf) -> torch.Tensor:
    """Gradient descent whose gradient is clipped to norm ``max_norm`` by :func:`mathllm.clip.clip_grad_norm`.

    ``max_norm=inf`` is plain gradient descent. Stops early once an iterate is not finite.
    Returns the iterates, shape (k + 1, n) with ``k <= steps``, ``x0`` first.
    """
    check_callable(f, "f")
    check_shape(check_float_tensor(x0, "x0"), "n", "x0")
    check_positive(lr, "lr")
    check_nonnegative_int(steps, "steps")
    if not (isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool) and max_norm > 0):
        raise ValueError(f"max_norm must be a number > 0 (inf: no clipping), got {max_norm!r}")
    x = x0.detach().clone().requires_grad_()
    path = [x.detach().clone()]
    for _ in range(steps):
        x.grad = torch.autograd.grad(f(x), x)[0]
        if math.isfinite(max_norm):
            clip_grad_norm([x], max_norm)
        with torch.no_grad():
            x -= lr * x.grad
        path.append(x.detach().clone())
        if not bool(torch.isfinite(path[-1]).all()):
            break
    return torch.stack(path)


def least_squares_sgd(X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, *, lr: float,
                      batches: torch.Tensor) -> torch.Tensor:
    """Minibatch SGD on ``mean_i (x_i . w - y_i)^2``, one step per row of ``batches`` (S, B) of indices.

    The step is ``w <- w - lr * 2 X_b^T (X_b w - y_b) / B``. Returns the iterates, (S + 1, d), ``w0`` first.
    """
    N, d = check_shape(check_float_tensor(X, "X"), "N d", "X")
    check_shape(check_float_tensor(y, "y"), "N", "y", N=N)
    check_shape(check_float_tensor(w0, "w0"), "d", "w0", d=d)
    check_positive(lr, "lr")
    check_shape(check_tensor(batches, "batches"), "S B", "batches")
    if batches.dtype not in (torch.int32, torch.int64) or (batches.numel() and not (
            0 <= int(batches.min()) and int(batches.max()) < N)):
        raise ValueError(f"batches must hold integer indices in [0, {N})")
    w, path = w0.detach().clone(), [w0.detach().clone()]
    for b in batches:
        Xb = X[b]                                                            # (B, d)
        w = w - lr * 2 * Xb.T @ (Xb @ w - y[b]) / len(b)
        path.append(w)
    return torch.stack(path)
