"""Sharpness: the largest eigenvalue of the loss's Hessian, found with Hessian-vector products.

Gradient descent with step ``lr`` on a quadratic with Hessian eigenvalues ``lambda_i`` multiplies
the error along eigenvector ``i`` by ``1 - lr * lambda_i``: it descends at every step only while
``lr < 2 / lambda_max``, the stability bound. On a network the Hessian changes as it trains, and
plain gradient descent at a fixed step sharpens the loss until ``lambda_max`` reaches ``2 / lr``
(the *edge of stability*, Cohen et al. 2021), where the loss starts to spike. Measuring
``lambda_max`` as we go and stepping with ``lr = c / lambda_max`` (``c < 2``) keeps each step below
the bound.

``lambda_max`` is found by power iteration on ``v -> H v``, each product computed by
differentiating the gradient once more (Pearlmutter 1994): two backward passes, never the
``P x P`` Hessian. Power iteration converges to the eigenvalue of largest magnitude, so what is
returned is ``|lambda|`` of that eigenvalue, an upper bound on the curvature a step can meet along
its own direction. Leaves out: Lanczos (faster for the whole top of the spectrum).

Book: notebooks/01_tour.ipynb (a step below the bound) and notebooks/06_optimization.ipynb.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .checks import check_callable, check_float_tensor, check_positive_int


def _check_tensors(tensors, name: str, like=None) -> list[torch.Tensor]:
    """A non-empty sequence of float tensors (of the shapes of ``like`` when given)."""
    if isinstance(tensors, (torch.Tensor, str, bytes)) or not isinstance(tensors, Sequence) or not tensors:
        raise TypeError(f"{name} must be a non-empty list of float tensors, got {type(tensors).__name__}")
    for i, t in enumerate(tensors):
        check_float_tensor(t, f"{name}[{i}]")
    if like is not None and (len(tensors) != len(like) or any(t.shape != p.shape for t, p in zip(tensors, like))):
        raise ValueError(f"{name} must hold one tensor of each parameter's shape, got shapes "
                         f"{[tuple(t.shape) for t in tensors]} for {[tuple(p.shape) for p in like]}")
    return list(tensors)


def hessian_vector_product(loss_fn: Callable[..., torch.Tensor], params: Sequence[torch.Tensor],
                           vecs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``H v`` for the Hessian ``H`` of ``loss_fn(*params)`` at ``params``; each ``v`` has its param's shape."""
    check_callable(loss_fn, "loss_fn")
    params = _check_tensors(params, "params")
    vecs = _check_tensors(vecs, "vecs", like=params)
    params = [p.detach().requires_grad_() for p in params]
    grads = torch.autograd.grad(loss_fn(*params), params, create_graph=True)
    return [h.detach() for h in torch.autograd.grad(grads, params, vecs)]


def sharpness(loss_fn: Callable[..., torch.Tensor], params: Sequence[torch.Tensor], *, iters: int = 20,
              init: Sequence[torch.Tensor] | None = None,
              generator: torch.Generator | None = None) -> tuple[float, list[torch.Tensor]]:
    """``(|lambda|, v)``: the Hessian eigenvalue of largest magnitude and its unit eigenvector.

    ``iters`` power-iteration steps from ``init`` (a random direction when None). Warm-starting
    from the previous step's ``v`` lets a training loop track the sharpness with a few products.
    """
    check_callable(loss_fn, "loss_fn")
    check_positive_int(iters, "iters")
    params = _check_tensors(params, "params")
    if init is not None:
        init = _check_tensors(init, "init", like=params)
    params = [p.detach().requires_grad_() for p in params]
    if init is None:
        v = [torch.randn(p.shape, dtype=p.dtype, generator=generator) for p in params]
    else:
        v = [u.detach().clone() for u in init]
    grads = torch.autograd.grad(loss_fn(*params), params, create_graph=True)  # built once, reused
    lam = 0.0
    for _ in range(iters):
        norm = math.sqrt(sum(float((u * u).sum()) for u in v))
        if norm == 0.0 or not math.isfinite(norm):
            raise ValueError(f"power iteration met a direction of norm {norm}: the Hessian is zero "
                             "or not finite at these parameters")
        v = [u / norm for u in v]
        hv = torch.autograd.grad(grads, params, v, retain_graph=True)  # H v, one extra backward
        lam = sum(float((h * u).sum()) for h, u in zip(hv, v))           # Rayleigh quotient v^T H v
        v = [h.detach() for h in hv]
    norm = math.sqrt(sum(float((u * u).sum()) for u in v))
    return abs(lam), [u / norm for u in v]
