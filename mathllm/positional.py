"""Positional encodings: sinusoidal (absolute) and rotary (relative).

Shape legend (book/notation.md): T positions, C channels, hs head size.

* Sinusoidal encoding (Vaswani et al. 2017, section 3.5): for frequency
  ``omega_i = base^(-2i/C)``, ``PE[p, 2i] = sin(p omega_i)`` and ``PE[p, 2i+1] = cos(p omega_i)``.
  Shifting the position by ``k`` rotates each (sin, cos) pair by the angle ``k omega_i``, so
  ``PE(p + k) = M_k PE(p)`` with a block-diagonal ``M_k`` that does not depend on ``p``.
* Rotary position embedding, RoPE (Su et al. 2021, RoFormer, eq. 34): rotate the pair of
  dimensions ``(2i, 2i+1)`` of a query or key at position ``m`` by the angle ``m theta_i``,
  ``theta_i = base^(-2i/hs)``. Then ``<R_m q, R_n k> = <q, R_{n-m} k>``: attention scores depend
  only on the offset ``n - m``.
* The "half-split" layout of Llama-style code (and Hugging Face's ``rotate_half``) pairs dimension
  ``i`` with ``i + hs/2`` instead of ``2i`` with ``2i+1``. It is the same rotation after the fixed
  permutation :func:`pairs_to_half` of the dimensions.

Leaves out: scaled or interpolated RoPE for long contexts (NTK, YaRN), ALiBi, partial rotary
dimensions. Learned absolute positions live in :mod:`mathllm.embedding`.

Book: :doc:`/notebooks/09_embeddings`
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .checks import check_float_tensor, check_int, check_positive, check_tensor

LAYOUTS = ("pairs", "half")


def _check_even(dim: int, name: str) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or dim % 2:
        raise ValueError(f"{name} must be a positive even int (dimensions are rotated in pairs), got {dim!r}")


# ---------------------------------------------------------------------------- sinusoidal
def frequencies(dim: int, base: float = 10000.0) -> torch.Tensor:
    """The ``dim // 2`` angular frequencies ``omega_i = base^(-2i/dim)``, from 1 down to about 1/base."""
    _check_even(dim, "dim")
    check_positive(base, "base")
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)


def sinusoidal_encoding(T: int, C: int, base: float = 10000.0, offset: int = 0) -> torch.Tensor:
    """(T, C) float32 sinusoidal encoding of positions ``offset .. offset + T - 1``.

    Even columns hold ``sin(p omega_i)``, odd columns ``cos(p omega_i)`` (Vaswani et al. 2017).
    """
    check_int(T, "T"), check_int(offset, "offset", low=-math.inf)
    pos = torch.arange(offset, offset + T, dtype=torch.float64)  # (T,)
    angles = pos[:, None] * frequencies(C, base)[None, :]  # (T, 1) * (1, C/2) -> (T, C/2)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (T, C/2, 2)
    return pe.reshape(T, C).float()  # interleave: (T, C/2, 2) -> (T, C)


def sinusoidal_shift_matrix(k: int, C: int, base: float = 10000.0) -> torch.Tensor:
    """(C, C) block-diagonal matrix ``M_k`` with ``PE(p + k) = M_k PE(p)`` for every position ``p``.

    Block ``i`` is ``[[cos k w, sin k w], [-sin k w, cos k w]]`` acting on ``(sin p w, cos p w)``.
    """
    check_int(k, "k", low=-math.inf)  # a shift back (k < 0) is a rotation too
    a = k * frequencies(C, base)  # (C/2,)
    c, s = a.cos(), a.sin()
    blocks = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (C/2, 2, 2)
    return torch.block_diag(*blocks).float()  # (C, C)


# ---------------------------------------------------------------------------- rotary
def rope_angles(T: int, hs: int, base: float = 10000.0, offset: int = 0) -> torch.Tensor:
    """(T, hs/2) float64 angles ``m theta_i`` for positions ``m = offset .. offset + T - 1``."""
    check_int(T, "T"), check_int(offset, "offset", low=-math.inf)
    pos = torch.arange(offset, offset + T, dtype=torch.float64)  # (T,)
    return pos[:, None] * frequencies(hs, base)[None, :]  # (T, 1) * (1, hs/2) -> (T, hs/2)


def rope_matrix(m: int, hs: int, base: float = 10000.0) -> torch.Tensor:
    """(hs, hs) float64 rotation ``R_m`` of the pairs layout: ``rotate(x at position m) = R_m @ x``."""
    check_int(m, "m", low=-math.inf)  # R_m for m < 0 is R_{|m|}^T: R_{n-m} with n < m
    a = rope_angles(1, hs, base, offset=m)[0]  # (hs/2,)
    c, s = a.cos(), a.sin()
    blocks = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (hs/2, 2, 2)
    return torch.block_diag(*blocks)  # (hs, hs)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "pairs") -> torch.Tensor:
    """Rotate ``x`` (..., T, hs) by angles given as ``cos``, ``sin`` of shape (T, hs/2), or any shape
    (..., T, hs/2) that broadcasts against ``x`` (one position per row: :meth:`RoPE.forward`).

    ``layout="pairs"`` rotates dimensions (2i, 2i+1) as in RoFormer; ``layout="half"`` rotates
    (i, i + hs/2) as in Llama-style code. Returns a tensor of the shape and dtype of ``x``.
    """
    check_float_tensor(x, "x"), check_tensor(cos, "cos"), check_tensor(sin, "sin")
    if x.dim() == 0:
        raise ValueError("x must have shape (..., T, hs), got a 0-d tensor")
    hs = x.shape[-1]
    _check_even(hs, "the head size x.shape[-1]")
    try:
        torch.broadcast_shapes(x.shape[:-1] + (hs // 2,), cos.shape, sin.shape)
    except RuntimeError:
        raise ValueError(f"cos and sin must have shape (..., T, hs/2) broadcastable against x (..., T, hs) = "
                         f"{tuple(x.shape)}, got {tuple(cos.shape)} and {tuple(sin.shape)}") from None
    if layout == "pairs":
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, hs/2) each: the two members of each pair
    elif layout == "half":
        x1, x2 = x[..., : hs // 2], x[..., hs // 2:]  # (..., T, hs/2) each
    else:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    y1 = x1 * cos - x2 * sin  # 2-d rotation of (x1, x2) by the angle: first coordinate
    y2 = x1 * sin + x2 * cos  # second coordinate
    if layout == "pairs":
        return torch.stack([y1, y2], dim=-1).flatten(-2)  # (..., T, hs/2, 2) -> (..., T, hs)
    return torch.cat([y1, y2], dim=-1)  # (..., T, hs)


def pairs_to_half(hs: int) -> torch.Tensor:
    """The permutation ``P`` (a LongTensor of length hs) with ``rope_half(x[..., P]) = rope_pairs(x)[..., P]``.

    ``P = [0, 2, 4, ..., 1, 3, 5, ...]``: the first members of the pairs, then the second ones.
    """
    _check_even(hs, "hs")
    return torch.cat([torch.arange(0, hs, 2), torch.arange(1, hs, 2)])


class RoPE(nn.Module):
    """Rotary position embedding for queries and keys of head size ``hs``.

    ``RoPE(hs, max_len)(x, offset)`` rotates ``x`` of shape (..., T, hs), any leading dimensions
    such as (B, nh), as if its rows sat at positions ``offset .. offset + T - 1`` (the offset is the
    length of a KV cache during generation). ``positions=`` gives each row its own position
    instead: an integer tensor of shape (T,) or (..., T) that broadcasts against ``x``'s leading
    dimensions, e.g. (B, 1, T) for (B, nh, T, hs) (packed sequences, left padding). ``base`` is
    RoPE's theta (``GPTConfig.rope_theta``). cos and sin are precomputed for ``max_len``
    positions and kept as buffers that are not saved in the state dict.
    """

    def __init__(self, hs: int, max_len: int = 2048, base: float = 10000.0, layout: str = "pairs"):
        super().__init__()
        _check_even(hs, "hs")
        check_positive(max_len, "max_len")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.hs, self.max_len, self.base, self.layout = hs, max_len, base, layout
        angles = rope_angles(max_len, hs, base)  # (max_len, hs/2), float64 then rounded once
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (..., T, hs) -> rotated (..., T, hs); rows at ``offset + t`` or at ``positions`` (..., T)."""
        check_tensor(x, "x")
        if x.dim() < 2 or x.shape[-1] != self.hs:
            raise ValueError(f"x must have shape (..., T, hs) with head size {self.hs} in its last dimension, "
                             f"got shape {tuple(x.shape)}")
        T = x.shape[-2]
        if positions is None:
            if isinstance(offset, bool) or not isinstance(offset, int):
                raise TypeError(f"offset must be an int, got {type(offset).__name__}")
            if offset < 0 or offset + T > self.max_len:
                raise ValueError(f"positions {offset}..{offset + T - 1} do not fit in max_len={self.max_len}")
            return apply_rope(x, self.cos[offset:offset + T], self.sin[offset:offset + T], self.layout)
        if offset != 0:
            raise ValueError("give either offset or positions, not both")
        check_tensor(positions, "positions")
        if positions.dtype.is_floating_point or positions.dtype == torch.bool or positions.dim() == 0 \
                or positions.shape[-1] != T:
            raise ValueError(f"positions must be an integer tensor of shape (..., T) with T={T}, "
                             f"got {positions.dtype} of shape {tuple(positions.shape)}")
        if not torch.compiler.is_compiling() and positions.numel() and \
                (int(positions.min()) < 0 or int(positions.max()) >= self.max_len):
            raise ValueError(f"positions must be in [0, {self.max_len}), got {int(positions.min())}..{int(positions.max())}")
        cos, sin = self.cos[positions], self.sin[positions]  # (..., T) -> (..., T, hs/2)
        return apply_rope(x, cos, sin, self.layout)  # broadcasts (..., T, hs/2) against x's (..., T, hs/2)

    def extra_repr(self) -> str:
        return f"hs={self.hs}, max_len={self.max_len}, base={self.base}, layout={self.layout!r}"
