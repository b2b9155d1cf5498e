"""Scaled dot-product attention, multi-head attention, cross-attention and a KV cache.

Shape legend (book/notation.md): B batch, T time (query positions), S key positions,
nh heads, hs head size, C = nh * hs channels.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(hs) + mask) V

A boolean ``mask`` has True where a query *may attend* to a key (the convention of
``torch.nn.functional.scaled_dot_product_attention``). Two implementations sit side by side:
``impl="manual"`` writes the formula out; ``impl="sdpa"`` calls torch's fused kernel (flash
attention on a GPU). :func:`attention_backward` writes out the backward pass that autograd
computes. :class:`MultiHeadAttention` calls :func:`scaled_dot_product_attention` on its heads,
takes any leading dimensions ``(..., T, C)`` (B is one of them) and, with RoPE, explicit token
positions (Hugging Face's ``position_ids``). References: Vaswani et al. 2017; nanoGPT's
``CausalSelfAttention``.

Leaves out: grouped-query and multi-query attention, attention biases (ALiBi), paged caches.
Approximate and blockwise attention live in :mod:`mathllm.efficient_attention`.

Book: :doc:`/notebooks/10_attention`
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_float_tensor, check_positive, check_positive_int, check_tensor
from .positional import RoPE

IMPLS = ("manual", "sdpa")


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'manual' or 'sdpa', got {impl!r}")


def _check_mask(mask) -> None:
    check_tensor(mask, "mask")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}")


def masked_softmax(att: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax of scores ``att`` (..., T, S) over the keys that ``mask`` allows (True = may attend).

    A query that may attend to no key gets all-zero weights, hence a zero output and zero gradients,
    as torch's ``F.scaled_dot_product_attention`` gives on the CPU, instead of 0/0 = nan.
    """
    check_float_tensor(att, "att")
    if mask is None:
        return torch.softmax(att, dim=-1)
    _check_mask(mask)
    empty = ~mask.any(dim=-1, keepdim=True)  # (..., T, 1): rows with no allowed key
    att = att.masked_fill(~mask, float("-inf")).masked_fill(empty, 0.0)  # exp(-inf) = 0; empty rows stay finite
    return torch.softmax(att, dim=-1).masked_fill(empty, 0.0)


# ---------------------------------------------------------------------------- one head
def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    """(T, S) boolean mask, True on and below the diagonal: query t may attend to keys 0..t.

    With ``S > T`` the queries are the last T of S positions (a KV cache holds the first S - T):
    the bottom-right alignment of ``torch.nn.attention.bias.causal_lower_right``, not the top-left
    one of ``is_causal=True``. ``S < T`` is refused: the first T - S queries would see no key.
    """
    check_positive_int(T, "T")
    S = T if S is None else check_positive_int(S, "S")
    if S < T:
        raise ValueError(f"causal_mask needs S >= T (the queries are the last T of S positions); got T={T}, S={S}")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) boolean mask of a right-padded batch: True at the real tokens t < lengths[b].

    ``lengths``: (B,) integer tensor, each in 1..T. As a key-padding mask it broadcasts to
    (B, nh, T, S) as ``padding_mask(lengths, S)[:, None, None, :]``; combined with the causal mask
    it is ``padding_mask(lengths, T)[:, None, None, :] & causal_mask(T)``, shape (B, 1, T, T).
    """
    check_tensor(lengths, "lengths")
    check_positive_int(T, "T")
    if lengths.dim() != 1 or lengths.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        raise TypeError(f"lengths must be a (B,) integer tensor, got dtype {lengths.dtype} and shape {tuple(lengths.shape)}")
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"lengths must lie in 1..T = 1..{T}, got {lengths.tolist()}")
    return torch.arange(T, device=lengths.device) < lengths[:, None]  # (1, T) < (B, 1) -> (B, T)


def _check_qkv(q, k, v) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float_tensor(x, name)
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., T, hs), got shape {tuple(x.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the head size: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of positions: k {tuple(k.shape)}, v {tuple(v.shape)}")


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, impl: str = "manual",
                                 dropout_p: float = 0.0) -> torch.Tensor:
    """Attention of queries ``q`` (..., T, hs) over keys ``k`` (..., S, hs) and values ``v`` (..., S, hv).

    Any leading dimensions ``...``, such as (B, nh). ``mask``: boolean, broadcastable to (..., T, S),
    True = may attend. ``dropout_p``: dropout on the attention weights (training only), as in
    ``F.scaled_dot_product_attention``. Returns (..., T, hv).
    """
    _check_qkv(q, k, v)
    if mask is not None:
        _check_mask(mask)
    _check_impl(impl)
    check_positive(dropout_p, "dropout_p", allow_zero=True)
    if dropout_p >= 1:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, hs) x (..., hs, S) -> (..., T, S)
    att = masked_softmax(att, mask)  # masked keys get weight exp(-inf) = 0
    if dropout_p > 0:
        att = F.dropout(att, dropout_p)  # drop weights, scale the rest by 1 / (1 - p)
    return att @ v  # (..., T, S) x (..., S, hv) -> (..., T, hv)


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """Jacobian of softmax at probabilities ``p`` (..., n): ``diag(p) - p p^T``, shape (..., n, n)."""
    check_float_tensor(p, "p")
    if p.dim() == 0:
        raise ValueError("p must have shape (..., n), got a 0-d tensor")
    return torch.diag_embed(p) - p[..., :, None] * p[..., None, :]  # (..., n, n)


def attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dout: torch.Tensor,
                       mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) of ``<dout, attention(q, k, v, mask)>``, written out by hand.

    With ``A = Q K^T / sqrt(hs)``, ``P = softmax(A)``, ``O = P V``:
    ``dV = P^T dO``, ``dP = dO V^T``, ``dA = P * (dP - rowsum(dP * P))`` (the softmax Jacobian
    applied row by row), ``dQ = dA K / sqrt(hs)``, ``dK = dA^T Q / sqrt(hs)``.
    Shapes as in :func:`scaled_dot_product_attention`; ``dout`` is (..., T, hv).
    """
    _check_qkv(q, k, v)
    check_float_tensor(dout, "dout")
    if dout.shape[-2:] != (q.shape[-2], v.shape[-1]):
        raise ValueError(f"dout must have shape (..., T, hv) = (..., {q.shape[-2]}, {v.shape[-1]}), got {tuple(dout.shape)}")
    if mask is not None:
        _check_mask(mask)
    scale = 1.0 / math.sqrt(q.shape[-1])
    att = q @ k.transpose(-2, -1) * scale  # (..., T, hs) x (..., hs, S) -> (..., T, S)
    p = masked_softmax(att, mask)  # (..., T, S)
    dv = p.transpose(-2, -1) @ dout  # (..., S, T) x (..., T, hv) -> (..., S, hv)
    dp = dout @ v.transpose(-2, -1)  # (..., T, hv) x (..., hv, S) -> (..., T, S)
    da = p * (dp - (dp * p).sum(-1, keepdim=True))  # (..., T, S): (diag(p) - p p^T) dp, per row
    dq = da @ k * scale  # (..., T, S) x (..., S, hs) -> (..., T, hs)
    dk = da.transpose(-2, -1) @ q * scale  # (..., S, T) x (..., T, hs) -> (..., S, hs)
    return dq, dk, dv


# ---------------------------------------------------------------------------- many heads
class KVCache:
    """Keys and values of the positions seen so far, shape (B, nh, S, hs) (or any (..., nh, S, hs)), growing along S.

    Self-attention appends the new positions' k, v at each step of generation. Cross-attention
    stores the projected encoder output once and reuses it at every later step.
    """

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """The number of cached positions S (0 when empty)."""
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, nh, T, hs); return all keys and values (B, nh, S + T, hs)."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            if k.shape[:-2] != self.k.shape[:-2] or k.shape[-1] != self.k.shape[-1]:
                raise ValueError(f"cannot append k of shape {tuple(k.shape)} to a cache of shape {tuple(self.k.shape)}")
            self.k = torch.cat([self.k, k], dim=-2)  # (B, nh, S, hs) + (B, nh, T, hs) -> (B, nh, S+T, hs)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reset(self) -> None:
        """Empty the cache (start a new sequence)."""
        self.k = self.v = None

    def __repr__(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"KVCache(length={self.length}, shape={shape})"


class MultiHeadAttention(nn.Module):
    """Multi-head attention: self-attention (``context=None``) or cross-attention over ``context``.

    Parameters: ``qkv`` maps C -> 3C (the query, key and value projections of all heads stacked,
    one matmul for self-attention) and ``proj`` maps C -> C. Heads are a reshape of the channels
    C = nh * hs, not a loop. ``causal=True`` masks future positions in self-attention.
    ``rope`` rotates queries and keys (self-attention only). ``impl`` as in
    :func:`scaled_dot_product_attention`, which computes the attention itself (the fused
    ``is_causal`` kernel serves the unmasked case, nanoGPT's training path).
    """

    def __init__(self, n_embd: int, n_head: int, *, causal: bool = False, dropout: float = 0.0,
                 bias: bool = True, impl: str = "sdpa", rope: RoPE | None = None):
        super().__init__()
        check_positive_int(n_embd, "n_embd")
        check_positive_int(n_head, "n_head")
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        _check_impl(impl)
        if rope is not None and rope.hs != n_embd // n_head:
            raise ValueError(f"rope has head size {rope.hs}, attention has n_embd // n_head = {n_embd // n_head}")
        self.n_embd, self.n_head, self.causal, self.dropout, self.impl = n_embd, n_head, causal, dropout, impl
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # rows: [W_q; W_k; W_v], each (C, C)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.rope = rope

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        *lead, L, C = x.shape
        return x.view(*lead, L, self.n_head, C // self.n_head).transpose(-3, -2)  # (..., L, C) -> (..., nh, L, hs)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., T, C), any leading dimensions such as (B,); context (..., S, C) or None; mask bool
        broadcastable to (..., nh, T, S). Returns (..., T, C).

        ``positions``: an integer tensor (T,) or (..., T), the position of each token for ``rope``
        (Hugging Face's ``position_ids``: packed sequences, left padding); by default token t sits at
        ``past + t``, past the length of ``kv_cache``. The causal mask follows the order of the tokens.
        """
        check_tensor(x, "x")
        if x.dim() < 2 or x.shape[-1] != self.n_embd:
            raise ValueError(f"x must have shape (..., T, C) with C={self.n_embd}, got {tuple(x.shape)}")
        *lead, T, C = x.shape
        past = 0 if kv_cache is None else kv_cache.length
        if positions is not None and (self.rope is None or context is not None):
            raise ValueError("positions rotate queries and keys: they need self-attention with rope, "
                             f"got rope={self.rope is not None}, context given: {context is not None}")
        if context is None:  # self-attention: one fused projection
            q, k, v = self.qkv(x).split(C, dim=-1)  # (..., T, C) x (C, 3C) -> (..., T, 3C) -> 3 x (..., T, C)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (..., nh, T, hs) each
            if self.rope is not None and positions is None:  # rotate by absolute position: query t sits at past + t
                q, k = self.rope(q, offset=past), self.rope(k, offset=past)
            elif self.rope is not None:  # (T,) or (..., T) -> (..., 1, T): the same positions for every head
                check_tensor(positions, "positions")
                pos = positions if positions.dim() <= 1 else positions.unsqueeze(-2)
                q, k = self.rope(q, positions=pos), self.rope(k, positions=pos)
            if kv_cache is not None:
                k, v = kv_cache.append(k, v)  # (..., nh, past + T, hs) each
        else:  # cross-attention: queries from x, keys and values from context
            w, b = self.qkv.weight, self.qkv.bias  # (3C, C), (3C,)
            q = self._heads(F.linear(x, w[:C], None if b is None else b[:C]))  # (..., T, C) -> (..., nh, T, hs)
            if kv_cache is not None and past > 0:  # the encoder output does not change: reuse its k, v
                k, v = kv_cache.k, kv_cache.v
            else:
                check_tensor(context, "context")
                if context.dim() != x.dim() or context.shape[:-2] != x.shape[:-2] or context.shape[-1] != C:
                    raise ValueError(f"context must have shape (..., S, C) = ({', '.join(map(str, lead + ['S', C]))}), "
                                     f"got {tuple(context.shape)}")
                kv = F.linear(context, w[C:], None if b is None else b[C:])  # (..., S, C) x (C, 2C) -> (..., S, 2C)
                k, v = self._heads(kv[..., :C]), self._heads(kv[..., C:])  # (..., nh, S, hs) each
                if kv_cache is not None:
                    kv_cache.append(k, v)
        S = k.shape[-2]
        if mask is not None:
            _check_mask(mask)
        p = self.dropout if self.training else 0.0
        causal = self.causal and context is None
        if self.impl == "sdpa" and mask is None and (not causal or past == 0):
            # the training fast path: no explicit mask, so the fused (flash) kernel can run
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)  # (..., nh, T, hs)
        else:
            if causal:  # query t (at position past + t) may attend to keys 0 .. past + t
                cm = causal_mask(T, S, device=x.device)  # (T, S)
                mask = cm if mask is None else mask & cm
            y = scaled_dot_product_attention(q, k, v, mask, impl=self.impl, dropout_p=p)  # (..., nh, T, hs)
        y = y.transpose(-3, -2).reshape(*lead, T, C)  # (..., nh, T, hs) -> (..., T, nh, hs) -> (..., T, C)
        return self.resid_dropout(self.proj(y))  # (..., T, C) x (C, C) -> (..., T, C)

    def extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, n_head={self.n_head}, causal={self.causal}, impl={self.impl!r}"
