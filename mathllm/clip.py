"""Gradient clipping by the global norm: rescale all gradients together when their norm exceeds a bound.

With ``g`` every gradient concatenated into one vector and ``||.||_p`` its p-norm::

    n = ||g||_p = || (||g_1||_p, ..., ||g_k||_p) ||_p        (the norm of the per-tensor norms)
    g <- g * min(1, max_norm / (n + 1e-6))

One factor for all tensors keeps the update's direction and only shortens it, so a rare huge
gradient (a loss spike) cannot throw the weights far; ``1e-6`` keeps the division finite at n = 0.
A non-finite norm (an inf or nan gradient) gives a factor of 0 or nan, exactly as torch does;
``error_if_nonfinite=True`` raises instead and leaves the gradients untouched. Returns ``n``, the
norm before clipping, which a trainer logs.

Reference: Pascanu, Mikolov & Bengio 2013 (clipping by the norm); ``torch.nn.utils.clip_grad_norm_``,
which the tests match over norm types, bounds, dtypes and the non-finite case.
Leaves out: clipping by value, per-layer or adaptive clipping (AGC), the ``foreach`` fused kernels.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .checks import check_tensor


@torch.no_grad()
def clip_grad_norm(parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> torch.Tensor:
    """Scale the ``.grad`` of ``parameters`` in place so that their total ``norm_type``-norm is at most
    ``max_norm``; return the total norm before scaling (a 0-d tensor). Equal to
    ``torch.nn.utils.clip_grad_norm_``; parameters without a gradient are skipped.

    Book: :doc:`/notebooks/12_training`
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    if isinstance(parameters, str) or not isinstance(parameters, Iterable):
        raise TypeError(f"parameters must be a tensor or an iterable of tensors, got {type(parameters).__name__}")
    parameters = [check_tensor(p, "parameters") for p in parameters]  # a generator is read once
    grads = [p.grad for p in parameters if p.grad is not None]
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)):
        raise TypeError(f"max_norm must be a number, got {type(max_norm).__name__}")
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    per_tensor = torch.stack([torch.linalg.vector_norm(g, norm_type).to(device) for g in grads])  # (k,)
    total = torch.linalg.vector_norm(per_tensor, norm_type)  # the norm of all gradients as one vector
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           f"so it cannot be clipped. To disable this error and scale the gradients by the "
                           f"non-finite norm anyway, set `error_if_nonfinite=False`")
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # min(1, max_norm / (n + eps)), no branch: no sync
    for g in grads:
        g.mul_(scale.to(g.device))
    return total
