"""Weight initialisation: the variance argument behind Xavier (Glorot) and Kaiming (He).

For a layer z = W x with n_in inputs, independent zero-mean weights of variance Var(w) and
independent inputs,

    Var(z_i) = n_in Var(w) E[x_j^2].                                      (the forward rule)

If x = phi(z_prev) with phi ~ identity near 0 (tanh), E[x^2] ~ Var(z_prev), so Var(w) = 1/n_in keeps
the variance of the pre-activations constant with depth; the backward pass asks for 1/n_out, and
Glorot & Bengio (2010) take the compromise Var(w) = 2 / (n_in + n_out). For ReLU half of z is
zeroed and E[relu(z)^2] = Var(z) / 2, so He et al. (2015) double it: Var(w) = 2 / n_in. A uniform
distribution on [-a, a] has variance a^2 / 3, hence the bounds sqrt(3) * std.

Weights have torch's ``nn.Linear`` shape (fan_out, fan_in). With the same ``torch.Generator`` the
functions here draw exactly what ``torch.nn.init`` draws.

Leaves out: orthogonal init, LSUV, fan_out mode, and the GPT-2 residual scaling
(the transformer chapter).

Book: :doc:`/notebooks/07_neural_networks`
"""
from __future__ import annotations

import math

import torch

from .checks import check_callable, check_positive, check_positive_int

NONLINEARITIES = ("linear", "sigmoid", "tanh", "relu")


def gain(nonlinearity: str) -> float:
    """The factor torch's ``calculate_gain`` puts in front of the std: 1, 1, 5/3 and sqrt(2).

    sqrt(2) for ReLU is the He factor above; 5/3 for tanh is an empirical choice that offsets
    tanh's contraction of its input's variance.
    """
    table = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}
    if nonlinearity not in table:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    return table[nonlinearity]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (fan_out, fan_in)."""
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"shape must be a tuple (fan_out, fan_in) of ints, got {type(shape).__name__}")
    shape = tuple(shape)
    if len(shape) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ValueError(f"a weight must have shape (fan_out, fan_in) with both >= 1, got {shape}")
    return shape[1], shape[0]


# ---------------------------------------------------------------------------- the standard deviations
def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    check_positive_int(fan_in, "fan_in"), check_positive_int(fan_out, "fan_out"), check_positive(gain, "gain")
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_std(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """gain / sqrt(fan_in); with the ReLU gain sqrt(2) the variance is 2 / fan_in (He et al. 2015)."""
    check_positive_int(fan_in, "fan_in"), check_positive(gain, "gain")
    return gain / math.sqrt(fan_in)


# ---------------------------------------------------------------------------- drawing weights
def _draw(shape, std: float, uniform: bool, generator, dtype) -> torch.Tensor:
    w = torch.empty(shape, dtype=dtype)
    if uniform:
        bound = math.sqrt(3.0) * std  # Var(U[-a, a]) = a^2 / 3
        return w.uniform_(-bound, bound, generator=generator)
    return w.normal_(0.0, std, generator=generator)


def xavier_uniform(shape, gain: float = 1.0, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (fan_out, fan_in) weight from U[-a, a], a = sqrt(3) * :func:`xavier_std`; as ``nn.init.xavier_uniform_``."""
    fan_in, fan_out = fans(shape)
    return _draw(shape, xavier_std(fan_in, fan_out, gain), True, generator, dtype)


def xavier_normal(shape, gain: float = 1.0, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (fan_out, fan_in) weight from N(0, :func:`xavier_std` ^2); as ``nn.init.xavier_normal_``."""
    fan_in, fan_out = fans(shape)
    return _draw(shape, xavier_std(fan_in, fan_out, gain), False, generator, dtype)


def kaiming_uniform(shape, nonlinearity: str = "relu", generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[-a, a], a = sqrt(3) * :func:`kaiming_std`; as ``nn.init.kaiming_uniform_`` in fan_in mode."""
    fan_in, _ = fans(shape)
    return _draw(shape, kaiming_std(fan_in, gain(nonlinearity)), True, generator, dtype)


def kaiming_normal(shape, nonlinearity: str = "relu", generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, :func:`kaiming_std` ^2); as ``nn.init.kaiming_normal_`` in fan_in mode."""
    fan_in, _ = fans(shape)
    return _draw(shape, kaiming_std(fan_in, gain(nonlinearity)), False, generator, dtype)


# ---------------------------------------------------------------------------- measuring through depth
def activation_variances(draw_weight, activation, depth: int, width: int, n: int = 1024,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """The variance of the pre-activations z_l = W_l phi(z_{l-1}), l = 1..depth, from z_0 ~ N(0, 1).

    By the forward rule, Var(z_l) = width Var(w) E[phi(z_{l-1})^2]: an initialisation that matches
    ``activation`` keeps it at Var(z_0) = 1; a wrong one shrinks or grows it geometrically.

    Args:
        draw_weight: ``draw_weight(shape, generator=g) -> (width, width) tensor``, e.g.
            ``functools.partial(kaiming_normal, nonlinearity="relu")``.
        activation: elementwise torch function phi.
        depth, width, n: layers, units per layer, samples.

    Returns:
        A (depth,) float64 tensor: Var(z_1), ..., Var(z_depth), over all samples and units.
    """
    check_callable(draw_weight, "draw_weight"), check_callable(activation, "activation")
    for name, value in (("depth", depth), ("width", width), ("n", n)):
        check_positive_int(value, name)
    z = torch.randn(n, width, generator=generator, dtype=torch.float64)  # z_0: (n, width)
    variances = []
    for _ in range(depth):
        W = draw_weight((width, width), generator=generator).to(torch.float64)
        z = activation(z) @ W.T  # (n, width) @ (width, width) -> (n, width)
        variances.append(z.var())
    return torch.stack(variances)
