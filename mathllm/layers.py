"""The layers a transformer block is built from: normalisation, the feed-forward network, the block.

Shape legend (book/notation.md): B batch, T time, C = n_embd channels, H hidden width of the MLP.

* **LayerNorm** (Ba et al. 2016) normalises each position over its C channels, then applies a
  learnable gain and bias:

      mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),  y = gamma * xhat + beta

  and its backward pass, written out in :func:`layer_norm_backward`, is

      dbeta = sum dy,  dgamma = sum dy * xhat,
      dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps),   g = dy * gamma.

* **RMSNorm** (Zhang & Sennrich 2019) drops the centring and the bias: y = gamma * x / sqrt(mean(x^2) + eps).
* **Feed-forward** networks: ``relu`` and ``gelu`` (Vaswani et al. 2017; Hendrycks & Gimpel 2016) map
  C -> H = 4C -> C; ``gelu_tanh`` is the tanh approximation GPT-2 uses; ``swiglu`` (Shazeer 2020) gates
  the hidden layer, proj(silu(gate(x)) * fc(x)), with H = 8C/3 so that it has as many weights.
* **Block**: attention and MLP sublayers around a residual stream, in the *pre-norm* arrangement of
  GPT-2 (x + f(norm(x))) or the *post-norm* arrangement of the original transformer (norm(x + f(x))),
  with an optional cross-attention sublayer for the decoder of an encoder-decoder model.

Each norm has a readable path (``impl="manual"``) and a fast path (``impl="torch"``: ``F.layer_norm``,
``F.rms_norm``); tests assert they agree. Attention comes from :mod:`mathllm.attention`.
Leaves out: other activations (squared ReLU, GeGLU), parallel attention+MLP blocks, DeepNorm scaling.

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiHeadAttention
from .checks import check_float_tensor, check_positive, check_positive_int, check_tensor

NORMS = ("layernorm", "rmsnorm")
MLPS = ("relu", "gelu", "gelu_tanh", "swiglu")
IMPLS = ("torch", "manual")


def _check_choice(value, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _opmath(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 for the statistics, as torch does: in float16 x^2 overflows once |x| > 255."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_norm_input(x, weight, bias=None) -> None:
    check_float_tensor(x, "x")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have shape (..., C) with C >= 1, got shape {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(check_tensor(t, name).shape) != (x.shape[-1],):
            raise ValueError(f"{name} must have shape (C,) = ({x.shape[-1]},), got {tuple(t.shape)}")


def _check_last_dim(x: torch.Tensor, C: int, name: str = "x") -> None:
    check_tensor(x, name)
    if x.dim() == 0 or x.shape[-1] != C:
        raise ValueError(f"{name} must have shape (..., C) with C={C}, got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------- LayerNorm, written out
def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dimension: ``x`` (..., C), ``weight`` and ``bias`` (C,) or None -> (..., C).

    The variance is the biased one (divide by C), as in ``torch.nn.functional.layer_norm``.
    Half-precision input is normalised in float32 and the result rounded back once.
    """
    _check_norm_input(x, weight, bias)
    check_positive(eps, "eps")
    xf = _opmath(x)
    mu = xf.mean(dim=-1, keepdim=True)  # (..., 1)
    var = (xf - mu).pow(2).mean(dim=-1, keepdim=True)  # (..., 1): biased, 1/C
    xhat = (xf - mu) * torch.rsqrt(var + eps)  # (..., C): zero mean, unit variance per position
    if weight is not None:
        xhat = xhat * weight
    if bias is not None:
        xhat = xhat + bias
    return xhat.to(x.dtype)


def layer_norm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None = None,
                        eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`layer_norm`, derived by hand.

    Args:
        dy: (..., C) gradient of the loss with respect to the output.
        x: (..., C) the input of the forward pass.
        weight: (C,) the gain, or None for a gain of ones.
        eps: the epsilon of the forward pass.

    Returns:
        ``(dx, dweight, dbias)``: (..., C), (C,), (C,). With ``g = dy * weight`` and
        ``sigma = sqrt(var + eps)``: ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma``, the
        two means removing the directions that the centring and the scaling make invisible.
    """
    _check_norm_input(x, weight)
    check_float_tensor(dy, "dy")
    if dy.shape != x.shape:
        raise ValueError(f"dy and x must have the same shape, got dy {tuple(dy.shape)} and x {tuple(x.shape)}")
    dtype, x, dy = x.dtype, _opmath(x), _opmath(dy)  # half precision: computed in float32, as the forward
    mu = x.mean(dim=-1, keepdim=True)
    rstd = torch.rsqrt((x - mu).pow(2).mean(dim=-1, keepdim=True) + eps)  # (..., 1) = 1 / sigma
    xhat = (x - mu) * rstd  # (..., C)
    C = x.shape[-1]
    dbias = dy.reshape(-1, C).sum(0)  # (C,): the gain and bias are shared by all (...) positions
    dweight = (dy * xhat).reshape(-1, C).sum(0)  # (C,)
    g = dy if weight is None else dy * weight  # (..., C): gradient with respect to xhat
    dx = rstd * (g - g.mean(dim=-1, keepdim=True) - xhat * (g * xhat).mean(dim=-1, keepdim=True))
    return dx.to(dtype), dweight.to(dtype), dbias.to(dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension: ``x / sqrt(mean(x^2) + eps) * weight``; (..., C) -> (..., C)."""
    _check_norm_input(x, weight)
    check_positive(eps, "eps")
    xf = _opmath(x)  # half precision: the mean square in float32, as torch
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)  # (..., C) / (..., 1)
    return (y if weight is None else y * weight).to(x.dtype)


# ---------------------------------------------------------------------------- modules
class LayerNorm(nn.Module):
    """LayerNorm with a gain, an optional bias and ``eps``; ``impl="torch"`` (fast) or ``"manual"``.

    Parameters ``weight`` (C,) and ``bias`` (C,) or None, as in ``torch.nn.LayerNorm``.
    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, ndim: int, *, eps: float = 1e-5, bias: bool = True, impl: str = "torch"):
        super().__init__()
        check_positive_int(ndim, "ndim")
        self.eps = check_positive(eps, "eps")
        self.impl = _check_choice(impl, IMPLS, "impl")
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        if self.impl == "torch":
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        _check_last_dim(x, self.weight.shape[0])
        return layer_norm(x, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm with a gain and ``eps``; ``impl="torch"`` (``F.rms_norm``) or ``"manual"``.

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, ndim: int, *, eps: float = 1e-6, impl: str = "torch"):
        super().__init__()
        check_positive_int(ndim, "ndim")
        self.eps = check_positive(eps, "eps")
        self.impl = _check_choice(impl, IMPLS, "impl")
        self.weight = nn.Parameter(torch.ones(ndim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        if self.impl == "torch":
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        _check_last_dim(x, self.weight.shape[0])
        return rms_norm(x, self.weight, self.eps)


def make_norm(kind: str, ndim: int, *, bias: bool = True, eps: float = 1e-5, impl: str = "torch") -> nn.Module:
    """``"layernorm"`` -> :class:`LayerNorm` (with or without bias); ``"rmsnorm"`` -> :class:`RMSNorm` (never a bias)."""
    if _check_choice(kind, NORMS, "norm") == "layernorm":
        return LayerNorm(ndim, eps=eps, bias=bias, impl=impl)
    return RMSNorm(ndim, eps=eps, impl=impl)


def mlp_hidden(n_embd: int, kind: str) -> int:
    """Default hidden width H: 4C, or for SwiGLU 8C/3 rounded up to a multiple of 8 (about the same weights)."""
    if _check_choice(kind, MLPS, "mlp") == "swiglu":
        return 8 * ((8 * n_embd // 3 + 7) // 8)
    return 4 * n_embd


class FeedForward(nn.Module):
    """Position-wise MLP: C -> H -> C with ReLU, GELU (exact or tanh) or SwiGLU.

    Parameters: ``fc`` (C -> H), ``proj`` (H -> C) and, for SwiGLU, ``gate`` (C -> H).
    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, n_embd: int, *, kind: str = "gelu", hidden: int | None = None,
                 bias: bool = True, dropout: float = 0.0):
        super().__init__()
        check_positive_int(n_embd, "n_embd")
        check_positive(dropout, "dropout", allow_zero=True)
        self.kind = _check_choice(kind, MLPS, "mlp")
        hidden = mlp_hidden(n_embd, kind) if hidden is None else check_positive_int(hidden, "hidden")
        self.fc = nn.Linear(n_embd, hidden, bias=bias)
        self.gate = nn.Linear(n_embd, hidden, bias=bias) if kind == "swiglu" else None
        self.proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., T, C) -> (..., T, C), each position independently."""
        h = self.fc(x)  # (..., T, C) -> (..., T, H)
        if self.kind == "relu":
            h = F.relu(h)
        elif self.kind == "gelu":
            h = F.gelu(h)  # x * Phi(x), Phi the standard normal CDF
        elif self.kind == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")  # GPT-2's approximation of x * Phi(x)
        else:
            h = F.silu(self.gate(x)) * h  # SwiGLU: silu(x W_gate) * (x W_fc)
        return self.dropout(self.proj(h))  # (..., T, H) -> (..., T, C)


# ---------------------------------------------------------------------------- the block
class Block(nn.Module):
    """One transformer layer: self-attention, optional cross-attention, and an MLP, each a residual sublayer.

    ``prenorm=True`` (GPT-2): ``x = x + f(norm(x))``; the residual stream is never normalised, so
    the gradient reaches early layers through the identity path. ``prenorm=False`` (Vaswani et al.):
    ``x = norm(x + f(x))``; every gradient passes through all later norms.
    ``causal`` masks self-attention (decoder); ``cross_attention=True`` adds the sublayer that
    attends from ``x`` to an encoder output ``context``. Parameters ``attn``, ``cross``, ``mlp``
    and norms ``norm_attn``, ``norm_cross``, ``norm_mlp``.

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, n_embd: int, n_head: int, *, causal: bool = True, cross_attention: bool = False,
                 mlp: str = "gelu", norm: str = "layernorm", prenorm: bool = True, bias: bool = True,
                 dropout: float = 0.0, attn_impl: str = "sdpa", rope=None):
        super().__init__()
        check_positive_int(n_embd, "n_embd")
        self.prenorm = prenorm
        self.norm_attn = make_norm(norm, n_embd, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, causal=causal, dropout=dropout, bias=bias,
                                       impl=attn_impl, rope=rope)
        self.norm_cross = make_norm(norm, n_embd, bias=bias) if cross_attention else None
        self.cross = (MultiHeadAttention(n_embd, n_head, causal=False, dropout=dropout, bias=bias, impl=attn_impl)
                      if cross_attention else None)
        self.norm_mlp = make_norm(norm, n_embd, bias=bias)
        self.mlp = FeedForward(n_embd, kind=mlp, bias=bias, dropout=dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                kv_cache=None, cross_cache=None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T, C) or any (..., T, C), ``context`` (..., S, C) for cross-attention -> (..., T, C).

        ``mask`` (boolean, True = may attend) applies to self-attention. During generation
        ``kv_cache`` and ``cross_cache`` are this layer's :class:`~mathllm.attention.KVCache` for
        self-attention and for cross-attention (which keeps the projected ``context``). ``positions``
        (T,) or (..., T) places the tokens for a rotary self-attention (see
        :meth:`~mathllm.attention.MultiHeadAttention.forward`).
        """
        if (context is None) != (self.cross is None):
            raise ValueError("a block with cross-attention needs context (B, S, C) and one without takes none; "
                             f"cross_attention={self.cross is not None}, context given: {context is not None}")
        if self.prenorm:
            x = x + self.attn(self.norm_attn(x), mask=mask, kv_cache=kv_cache, positions=positions)
            if self.cross is not None:
                x = x + self.cross(self.norm_cross(x), context=context, kv_cache=cross_cache)
            return x + self.mlp(self.norm_mlp(x))
        x = self.norm_attn(x + self.attn(x, mask=mask, kv_cache=kv_cache, positions=positions))
        if self.cross is not None:
            x = self.norm_cross(x + self.cross(x, context=context, kv_cache=cross_cache))
        return self.norm_mlp(x + self.mlp(x))
