"""Gradient norms through depth: how residual connections and the norm's position carry the gradient.

A stack of L transformer layers (causal self-attention and an MLP, the
:class:`~mathllm.layers.Block` of the book's GPT) is built in one of three arrangements:

    "no_residual":  x <- Norm(f(x))          every path to layer l runs through all later sublayers
    "postnorm":     x <- Norm(x + f(x))      the residual of Vaswani et al. (2017)
    "prenorm":      x <- x + f(Norm(x))      GPT-2's; a final Norm after the last layer

with GPT-2's initialisation (:func:`~mathllm.transformer.gpt2_init_`, the one
:class:`~mathllm.transformer.GPT` applies). :func:`layer_grad_norms` backpropagates a fixed random
upstream gradient G through the stack, the gradient of the loss <y, G>, and returns the norm of the
gradient of each layer's parameters: the quantity Xiong et al. (2020, figure 3) plot. Reference:
He et al. (2016) for the identity path; Xiong et al. (2020) for pre- against post-norm.

Leaves out: embeddings and the output head (the stack starts and ends in the residual stream),
training dynamics (the chapter trains both residual arrangements), and other norms than LayerNorm.

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .checks import check_float_tensor, check_instance, check_positive, check_positive_int, check_str
from .layers import Block, LayerNorm
from .transformer import gpt2_init_

ARRANGEMENTS = ("no_residual", "postnorm", "prenorm")


# ---------------------------------------------------------------------------- layers
class NoResidualBlock(Block):
    """A post-norm :class:`~mathllm.layers.Block` without its two residual additions:
    ``x = norm_attn(attn(x))``, then ``x = norm_mlp(mlp(x))``. Same parameters as a Block.
    """

    def __init__(self, n_embd: int, n_head: int):
        super().__init__(n_embd, n_head, causal=True, prenorm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        x = self.norm_attn(self.attn(x))  # no "x +": the input reaches the output only through f
        return self.norm_mlp(self.mlp(x))


class DepthStack(nn.Module):
    """``n_layer`` causal layers of width ``n_embd`` in one of ``ARRANGEMENTS``, GPT-2 initialised.

    Parameters ``layers`` (the L blocks) and ``norm_f`` (LayerNorm for "prenorm", else identity:
    post-norm layers already end in a norm). ``eps``: the epsilon of every LayerNorm (torch's and
    GPT-2's 1e-5 by default). Input and output (B, T, C).

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, arrangement: str, n_layer: int = 24, n_embd: int = 32, n_head: int = 4,
                 eps: float = 1e-5):
        super().__init__()
        check_str(arrangement, "arrangement")
        if arrangement not in ARRANGEMENTS:
            raise ValueError(f"arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
        check_positive_int(n_layer, "n_layer")
        check_positive_int(n_embd, "n_embd")
        check_positive_int(n_head, "n_head")
        check_positive(eps, "eps")
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.arrangement, self.n_embd = arrangement, n_embd
        if arrangement == "no_residual":
            layers = [NoResidualBlock(n_embd, n_head) for _ in range(n_layer)]
        else:
            layers = [Block(n_embd, n_head, causal=True, prenorm=arrangement == "prenorm") for _ in range(n_layer)]
        self.layers = nn.ModuleList(layers)
        self.norm_f = LayerNorm(n_embd) if arrangement == "prenorm" else nn.Identity()
        for m in self.modules():  # the epsilon of every norm: a sublayer output whose variance is
            if isinstance(m, LayerNorm):  # below eps is not scaled back up to unit variance
                m.eps = eps
        gpt2_init_(self, n_residual=2 * n_layer)  # N(0, 0.02^2); projections into the stream / sqrt(2L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        check_float_tensor(x, "x")
        if x.dim() != 3 or x.shape[-1] != self.n_embd:
            raise ValueError(f"x must have shape (B, T, C) with C={self.n_embd}, got {tuple(x.shape)}")
        for layer in self.layers:
            x = layer(x)  # (B, T, C) -> (B, T, C)
        return self.norm_f(x)


# ---------------------------------------------------------------------------- measurement
def layer_grad_norms(stack: DepthStack, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """(L,) float64: the norm of the gradient of ``<stack(x), upstream>`` with respect to each
    layer's parameters (all of a layer's weights, biases and gains together).

    ``x`` and ``upstream`` (B, T, C): the input and the gradient that reaches the output. The
    stack's own ``.grad`` fields are left untouched (``torch.autograd.grad``).
    """
    check_instance(stack, DepthStack, "stack")
    check_float_tensor(upstream, "upstream")
    y = stack(x)  # (B, T, C); checks x
    if upstream.shape != y.shape:
        raise ValueError(f"upstream must have the output's shape {tuple(y.shape)}, got {tuple(upstream.shape)}")
    params = [list(layer.parameters()) for layer in stack.layers]
    grads = torch.autograd.grad((y * upstream).sum(), [p for ps in params for p in ps])
    norms, i = [], 0
    for ps in params:  # the gradient of one layer: the norm of all its parameters' gradients together
        norms.append(math.sqrt(sum(g.double().square().sum().item() for g in grads[i:i + len(ps)])))
        i += len(ps)
    return torch.tensor(norms, dtype=torch.float64)
