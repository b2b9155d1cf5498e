"""Gumbel-max sampling: argmax_i (log p_i + G_i) with G_i iid Gumbel(0, 1) is distributed as p.

A standard Gumbel variable has cdf F(g) = exp(-e^{-g}); with U uniform on (0, 1),
G = -log(-log U) is Gumbel (invert F). For logits z (any shift of log p)::

    P(argmax_i (z_i + G_i) = k) = integral f(x - z_k) prod_{i != k} F(x - z_i) dx
                                = e^{z_k} / sum_i e^{z_i} = softmax(z)_k,

because F(x - z_i) = exp(-e^{z_i} e^{-x}) and the integral is the one of an exponential in u = e^{-x}.
So sampling needs no normalisation and no cumulative sum, only noise and an argmax; it is the
basis of the Gumbel-softmax relaxation and of sampling without replacement (Gumbel-top-k).

Reference: Gumbel (1954); Maddison, Tarlow & Minka, "A* Sampling" (2014); Jang, Gu & Poole (2017).
Leaves out: the Gumbel-softmax relaxation and the Gumbel-top-k trick.

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import torch

from .checks import check_float_tensor, check_nonnegative_int, check_sequence


def gumbel_noise(shape, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard Gumbel draws G = -log(-log U), U uniform on (0, 1), of the given shape."""
    shape = tuple(check_sequence(shape, "shape")) if not isinstance(shape, torch.Size) else tuple(shape)
    for s in shape:
        check_nonnegative_int(s, "each entry of shape")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    u = torch.rand(shape, generator=generator, dtype=dtype)
    u = u.clamp_min(torch.finfo(dtype).tiny)  # U = 0 would give -log(inf) = -inf
    return -torch.log(-torch.log(u))


def gumbel_max_sample(logits: torch.Tensor, num_samples: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``num_samples`` ids from softmax(logits) by argmax(logits + Gumbel): (..., V) -> (..., num_samples).

    ``logits`` may be log-probabilities or any shift of them; -inf marks an outcome that is never drawn.
    """
    check_float_tensor(logits, "logits")
    check_nonnegative_int(num_samples, "num_samples")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    if torch.isnan(logits).any() or (logits == float("inf")).any():
        raise ValueError("logits must not hold NaN or +inf (-inf marks an impossible outcome)")
    if (logits == float("-inf")).all(-1).any():
        raise ValueError("a row of logits is -inf everywhere: no outcome is possible")
    g = gumbel_noise((*logits.shape[:-1], num_samples, logits.shape[-1]), generator, logits.dtype)
    return (logits.unsqueeze(-2) + g).argmax(-1)  # (..., 1, V) + (..., N, V) -> (..., N)
