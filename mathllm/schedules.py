"""Learning-rate schedules eta(t) as plain functions of the step, and the learning-rate range test.

The schedules, with t the step::

    step decay        eta(t) = eta_0 gamma^floor(t / s)                      (torch StepLR)
    exponential       eta(t) = eta_0 gamma^t                                 (torch ExponentialLR)
    warm-up + cosine  eta(t) = eta_max (t + 1) / W                           for t < W
                      eta(t) = eta_min + (eta_max - eta_min) (1 + cos(pi (t - W) / (D - W))) / 2   for W <= t <= D
                      eta(t) = eta_min                                       for t > D
    inverse sqrt      eta(t) = eta_max min((t + 1) / W, sqrt(W / (t + 1)))   (Vaswani et al. 2017, eq. 3)

Steps count from 0, as torch schedulers do: ``eta(0)`` is the rate of the first update. A trainer
calls :func:`set_lr` with ``warmup_cosine(step, ...)`` before each update. The range test (Smith 2017)
raises the rate geometrically over a short run and reads a good one off the loss curve.

References: Smith, *Cyclical Learning Rates for Training Neural Networks* (2017); Loshchilov & Hutter,
*SGDR* (2017); Vaswani et al. (2017); Karpathy's nanoGPT ``get_lr``.
Leaves out: cyclic and one-cycle policies, per-group schedules, ReduceLROnPlateau.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .checks import check_positive


# ---------------------------------------------------------------------------- helpers
def _check_step(step) -> None:
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {type(step).__name__}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


def _check_nonneg(value, name: str) -> None:
    check_positive(value, name, allow_zero=True)  # a finite number >= 0


def _check_optimizer(optimizer) -> None:
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer (with param_groups), got {type(optimizer).__name__}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer`` to ``lr``."""
    _check_optimizer(optimizer)
    _check_nonneg(lr, "lr")
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------------------- schedules
def step_decay(step: int, *, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    """base_lr * gamma ** (step // step_size): the rate drops by ``gamma`` every ``step_size`` steps."""
    _check_step(step)
    _check_nonneg(base_lr, "base_lr")
    if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
        raise ValueError(f"step_size must be an int >= 1, got {step_size!r}")
    _check_nonneg(gamma, "gamma")
    return base_lr * gamma ** (step // step_size)


def exponential_decay(step: int, *, base_lr: float, gamma: float) -> float:
    """base_lr * gamma ** step."""
    _check_step(step)
    _check_nonneg(base_lr, "base_lr")
    _check_nonneg(gamma, "gamma")
    return base_lr * gamma ** step


def warmup_cosine(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warm-up to ``max_lr`` over ``warmup_steps``, then a half cosine down to ``min_lr``.

    ``decay_steps`` is the step at which the cosine reaches ``min_lr``, counted from 0 and including
    the warm-up (nanoGPT's ``lr_decay_iters``, usually the total number of steps); later steps stay at
    ``min_lr``. The warm-up is max_lr (t + 1) / W, so the first update already moves and step W - 1
    reaches ``max_lr``. Equals torch's ``SequentialLR`` of ``LinearLR(start_factor=1/W,
    total_iters=W-1)`` and ``CosineAnnealingLR(T_max=D-W, eta_min=min_lr)`` for t <= D.

    Conventions differ here: Hugging Face's ``get_cosine_schedule_with_warmup`` (and CS336's
    assignment) warm up as max_lr t / W, so their first update has rate 0 and they reach ``max_lr`` at
    step W. Ours is theirs one step ahead during the warm-up (ours at t equals theirs at t + 1),
    equal to theirs over the decay, and flat at ``min_lr`` after ``decay_steps``
    where theirs rises again (tests/test_schedule_conventions.py checks all three statements).
    """
    _check_step(step)
    _check_nonneg(min_lr, "min_lr")
    _check_nonneg(max_lr, "max_lr")
    if not max_lr >= min_lr:
        raise ValueError(f"max_lr must be >= min_lr = {min_lr}, got {max_lr}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps < warmup_steps:
        raise ValueError(f"decay_steps must be an int >= warmup_steps = {warmup_steps}, got {decay_steps!r}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)  # 0 -> 1 over the decay phase
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def inverse_sqrt(step: int, *, max_lr: float, warmup_steps: int) -> float:
    """Linear warm-up to ``max_lr`` at step W - 1, then decay as 1/sqrt(t + 1): the Transformer's schedule.

    Vaswani et al. use d_model^-0.5 min(s^-0.5, s W^-1.5) with s = t + 1, which is this with
    max_lr = (d_model W)^-0.5.
    """
    _check_step(step)
    _check_nonneg(max_lr, "max_lr")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
        raise ValueError(f"warmup_steps must be an int >= 1, got {warmup_steps!r}")
    s = step + 1
    return max_lr * min(s / warmup_steps, math.sqrt(warmup_steps / s))


# ---------------------------------------------------------------------------- range test
@dataclass(frozen=True)
class RangeTest:
    """What :func:`lr_range_test` measured: one entry per step it ran."""

    lrs: list[float]         # the rate of each step, geometric from min_lr upwards
    losses: list[float]      # the loss measured before each step
    smoothed: list[float]    # exponential moving average of the losses, bias corrected
    suggested_lr: float      # the rate at the smallest smoothed loss, divided by 10
    diverged: bool           # whether the run stopped because the loss blew up


def lr_range_test(loss_fn: Callable[[int], torch.Tensor], params: list[torch.Tensor],
                  optimizer: torch.optim.Optimizer, *, min_lr: float = 1e-6, max_lr: float = 10.0,
                  steps: int = 100, smoothing: float = 0.05, diverge_factor: float = 4.0) -> RangeTest:
    """Smith's learning-rate range test: raise the rate from ``min_lr`` to ``max_lr`` geometrically.

    Args:
        loss_fn: ``loss_fn(step)`` returns the loss on the step's batch (a scalar tensor with a graph).
        params: the parameters ``optimizer`` updates; they are restored to their values on return.
        optimizer: any optimizer over ``params``; its learning rate is overwritten each step.
        min_lr, max_lr, steps: the geometric sweep lr_k = min_lr (max_lr / min_lr)^(k / (steps - 1)).
        smoothing: weight of the newest loss in the moving average.
        diverge_factor: stop once the smoothed loss exceeds this multiple of its minimum (or is not finite).

    Returns:
        A :class:`RangeTest`. Its ``suggested_lr`` is a conservative rule of thumb (fastai's "min / 10").
    """
    check_positive(min_lr, "min_lr"), check_positive(max_lr, "max_lr"), check_positive(smoothing, "smoothing")
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    if not 0 < smoothing <= 1:
        raise ValueError(f"smoothing must lie in (0, 1], got {smoothing}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    _check_optimizer(optimizer)
    saved = [p.detach().clone() for p in params]
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    for k in range(steps):
        lr = min_lr * (max_lr / min_lr) ** (k / (steps - 1))
        set_lr(optimizer, lr)
        optimizer.zero_grad()
        loss = loss_fn(k)
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged = True
            break
        avg = (1 - smoothing) * avg + smoothing * value
        s = avg / (1 - (1 - smoothing) ** (k + 1))   # bias correction, as in Adam
        lrs.append(lr); losses.append(value); smoothed.append(s)
        best = min(best, s)
        if s > diverge_factor * best:
            diverged = True
            break
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        for p, p0 in zip(params, saved):
            p.copy_(p0)
    optimizer.state.clear()
    if not lrs:
        raise ValueError(f"the loss was not finite at the first step (lr={min_lr}); nothing to suggest")
    best_lr = lrs[min(range(len(smoothed)), key=smoothed.__getitem__)]
    return RangeTest(lrs, losses, smoothed, best_lr / 10, diverged)
