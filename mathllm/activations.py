"""Activation functions and their derivatives, each derivative written next to its function.

A neuron computes y = phi(w . x + b); without the nonlinearity phi a stack of layers would collapse
into one linear map. The derivatives are what backpropagation multiplies by (chapter 4):

    sigmoid  s(x) = 1 / (1 + e^-x)                    s'    = s (1 - s)            (max 1/4)
    tanh     tanh(x) = 2 s(2x) - 1                    tanh' = 1 - tanh^2           (max 1)
    ReLU     max(x, 0)                                ReLU' = 1[x > 0]             (0 at x = 0, as torch)
    GELU     x Phi(x), Phi the normal cdf             GELU' = Phi(x) + x phi(x)    (Hendrycks & Gimpel 2016)
    GELU~    x/2 (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))  the tanh approximation used by GPT-2
    SiLU     x s(x)  (= swish with beta = 1)          SiLU' = s (1 + x (1 - s))    (Elfwing et al. 2018)

All functions take and return torch tensors of any shape, elementwise.

Leaves out: leaky ReLU, ELU, softplus, and gated units (SwiGLU, in the transformer chapter).

Book: :doc:`/notebooks/07_neural_networks`
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .checks import check_tensor

GELU_APPROXIMATIONS = ("none", "tanh")  # the values of torch.nn.functional.gelu's `approximate`
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715  # fitted by Hendrycks & Gimpel so that the tanh form tracks x Phi(x)


def _float(x: torch.Tensor) -> torch.Tensor:
    check_tensor(x, "x")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {str(x.dtype).replace('torch.', '')}")
    return x


def _check_approximate(approximate: str) -> None:
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")


# ---------------------------------------------------------------------------- functions and derivatives
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2 so that no exp overflows."""
    return 0.5 * (1.0 + torch.tanh(0.5 * _float(x)))


def sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    """s'(x) = s(x) (1 - s(x))."""
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """The hyperbolic tangent, (e^x - e^-x) / (e^x + e^-x)."""
    return torch.tanh(_float(x))


def tanh_grad(x: torch.Tensor) -> torch.Tensor:
    """tanh'(x) = 1 - tanh(x)^2."""
    t = tanh(x)
    return 1.0 - t * t


def relu(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0)."""
    return torch.clamp(_float(x), min=0.0)


def relu_grad(x: torch.Tensor) -> torch.Tensor:
    """1 where x > 0, else 0 (the subgradient 0 at x = 0, the value torch's autograd uses)."""
    return (_float(x) > 0).to(x.dtype)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal cumulative distribution function."""
    return 0.5 * (1.0 + torch.erf(_float(x) / math.sqrt(2.0)))


def normal_pdf(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = exp(-x^2 / 2) / sqrt(2 pi), the standard normal density."""
    return torch.exp(-0.5 * _float(x) ** 2) / math.sqrt(2.0 * math.pi)


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU(x) = x Phi(x) (``approximate="none"``) or its tanh approximation (``"tanh"``)."""
    _check_approximate(approximate)
    if approximate == "none":
        return x * normal_cdf(x)
    inner = _SQRT_2_OVER_PI * (_float(x) + _GELU_CUBIC * x ** 3)
    return 0.5 * x * (1.0 + torch.tanh(inner))


def gelu_grad(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU'(x) = Phi(x) + x phi(x); for the tanh form, the product and chain rules on its formula."""
    _check_approximate(approximate)
    if approximate == "none":
        return normal_cdf(x) + x * normal_pdf(x)
    inner = _SQRT_2_OVER_PI * (_float(x) + _GELU_CUBIC * x ** 3)
    t = torch.tanh(inner)
    d_inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x ** 2)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU(x) = x s(x), the sigmoid-weighted linear unit (swish with beta = 1)."""
    return x * sigmoid(x)


def silu_grad(x: torch.Tensor) -> torch.Tensor:
    """SiLU'(x) = s(x) + x s(x)(1 - s(x)) = s(x) (1 + x (1 - s(x)))."""
    s = sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


# ---------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Activation:
    """An activation, its derivative and the reference torch function, for loops over all of them."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]
    torch_fn: Callable[[torch.Tensor], torch.Tensor]


ACTIVATIONS = (
    Activation("sigmoid", sigmoid, sigmoid_grad, torch.sigmoid),
    Activation("tanh", tanh, tanh_grad, torch.tanh),
    Activation("relu", relu, relu_grad, torch.relu),
    Activation("gelu", gelu, gelu_grad, lambda x: torch.nn.functional.gelu(x)),
    Activation("gelu_tanh", lambda x: gelu(x, "tanh"), lambda x: gelu_grad(x, "tanh"),
               lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    Activation("silu", silu, silu_grad, torch.nn.functional.silu),
)
