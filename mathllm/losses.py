"""Softmax and cross-entropy, written out.

For logits z (a row of V scores) and a target class y:

    softmax(z)_i = exp(z_i - m) / sum_j exp(z_j - m),   m = max_j z_j   (shift invariance)
    CE(z, y)     = -log softmax(z)_y = logsumexp(z) - z_y
    dCE/dz       = softmax(z) - onehot(y)

Subtracting the maximum changes nothing mathematically and keeps exp from overflowing.

Book: notebooks/01_tour.ipynb, sections "Softmax" and "Cross-entropy and its gradient".
"""
from __future__ import annotations

import torch

from .checks import check_ids, check_tensor


def logsumexp(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(sum(exp(z))) along ``dim``, computed stably as m + log(sum(exp(z - m)))."""
    check_tensor(z, "z")
    m = z.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # all -inf rows stay -inf
    return (m + (z - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log softmax(z) = z - logsumexp(z)."""
    return z - logsumexp(z, dim).unsqueeze(dim)


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(z - max z) normalised along ``dim``: a probability distribution."""
    check_tensor(z, "z")
    e = (z - z.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (N, V) against class ids ``targets`` (N,), in nats."""
    check_tensor(logits, "logits")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, V), got {tuple(logits.shape)}")
    check_ids(targets, logits.shape[-1], name="targets")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape (N,) = ({logits.shape[0]},), got {tuple(targets.shape)}")
    logp = log_softmax(logits, dim=-1)  # (N, V)
    return -logp.gather(1, targets.long().unsqueeze(1)).mean()


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`cross_entropy` with respect to ``logits``: (softmax(z) - onehot(y)) / N."""
    cross_entropy(logits, targets)  # same checks
    N, V = logits.shape
    y = torch.zeros_like(logits).scatter_(1, targets.long().unsqueeze(1), 1.0)
    return (softmax(logits, dim=-1) - y) / N
