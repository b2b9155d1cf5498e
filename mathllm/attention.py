"""Scaled dot-product attention.

Shape legend (book/notation.md): B batch, T time (query positions), S key positions,
nh heads, hs head size, C = nh * hs channels.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(hs) + mask) V

A boolean ``mask`` has True where a query *may attend* to a key (the convention of
``torch.nn.functional.scaled_dot_product_attention``). Two implementations sit side by side:
``impl="manual"`` writes the formula out; ``impl="sdpa"`` calls torch's fused kernel.

Book: notebooks/01_tour.ipynb, section "One attention head".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .checks import check_tensor


def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    """(T, S) boolean mask, True on and below the diagonal: query t may attend to keys 0..t."""
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, impl: str = "manual") -> torch.Tensor:
    """Attention of queries ``q`` (..., T, hs) over keys ``k`` (..., S, hs) and values ``v`` (..., S, hv).

    ``mask``: boolean, broadcastable to (..., T, S), True = may attend. Returns (..., T, hv).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(x, name)
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., T, hs), got shape {tuple(x.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the head size: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of positions: k {tuple(k.shape)}, v {tuple(v.shape)}")
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}")
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if impl != "manual":
        raise ValueError(f"impl must be 'manual' or 'sdpa', got {impl!r}")
    att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, hs) x (..., hs, S) -> (..., T, S)
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: masked keys get no weight
    att = torch.softmax(att, dim=-1)
    return att @ v  # (..., T, S) x (..., S, hv) -> (..., T, hv)
