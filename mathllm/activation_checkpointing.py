"""Activation checkpointing: backpropagation through a chain of layers that recomputes instead of storing.

Reverse mode needs, for layer l, the activation x_{l-1} that entered it, so plain backpropagation
through ``L`` layers keeps all ``L + 1`` activations x_0, ..., x_L alive until the backward pass
reaches them: memory O(L). Checkpointing splits the chain into ``s`` segments and keeps only the
activation at the start of each segment (and the output). The backward pass then takes the
segments from last to first: it recomputes one segment's forward pass from its stored input, with
the graph recorded, and backpropagates the incoming gradient through it. At most one segment's
activations are alive at a time, so with segments of length ``k = L / s`` the peak is about

    s + k  activations,   smallest at  s = k = sqrt(L):  2 sqrt(L),

bought with one extra forward pass (every layer runs twice). Gradients are unchanged: the same
operations run on the same inputs, so they agree with plain autograd to the last bit when the layers
are deterministic.

The count here is of layer-boundary activations (the tensors passed between layers); the tensors a
layer saves internally (a pre-activation, a dropout mask) scale the same way.

Reference: Chen, Xu, Zhang & Guestrin, "Training deep nets with sublinear memory cost" (2016);
Griewank & Walther, *Evaluating Derivatives* (2008), chapter 12 (the recursive "revolve" schedule).
``torch.utils.checkpoint`` implements the same idea. Leaves out: recursive (multi-level)
checkpointing, non-uniform segments chosen by memory, and layers with randomness (dropout would
need its random state replayed).

Book: :doc:`/notebooks/04_calculus_autodiff`
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch

from .checks import check_callable, check_float_tensor, check_positive_int, check_sequence


@dataclass
class CheckpointStats:
    """What a checkpointed backward pass computed and what it cost."""

    loss: float          # the loss at the output
    segments: int        # s, the number of segments
    peak_stored: int     # the most layer-boundary activations alive at once
    layer_calls: int     # forward evaluations of layers: 2 L (each layer twice)


def segment_bounds(n_layers: int, segments: int) -> list[tuple[int, int]]:
    """Split layers 0..n_layers-1 into ``segments`` contiguous ranges [start, end) of near-equal length."""
    n_layers = check_positive_int(n_layers, "n_layers")
    segments = check_positive_int(segments, "segments")
    if segments > n_layers:
        raise ValueError(f"segments must be at most n_layers={n_layers}, got {segments}")
    cuts = [round(i * n_layers / segments) for i in range(segments + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def plain_peak_stored(n_layers: int) -> int:
    """Activations plain backpropagation keeps: x_0, ..., x_L, all alive when the backward pass starts."""
    return check_positive_int(n_layers, "n_layers") + 1


def checkpointed_backward(layers, x: torch.Tensor, loss_fn, segments: int | None = None) -> CheckpointStats:
    """Backpropagate ``loss_fn(layers[-1](... layers[0](x)))`` storing only segment inputs.

    Gradients are accumulated into ``.grad`` of every parameter of the layers (and of ``x`` if it
    requires grad), as ``loss.backward()`` would.

    Args:
        layers: a non-empty sequence of callables (``torch.nn.Module`` s, whose ``parameters()`` get
            gradients), each mapping an activation to the next one.
        x: the input activation (float tensor).
        loss_fn: maps the last activation to a scalar tensor.
        segments: the number of segments s; default ``round(sqrt(L))``, which minimises s + L / s.

    Returns:
        :class:`CheckpointStats`: the loss, s, the peak number of stored activations and the number of
        layer evaluations.
    """
    if isinstance(layers, (torch.nn.Sequential, torch.nn.ModuleList)):
        layers = list(layers)
    layers = list(check_sequence(layers, "layers"))
    if not layers:
        raise ValueError("layers must not be empty")
    for i, layer in enumerate(layers):
        check_callable(layer, f"layers[{i}]")
    check_float_tensor(x, "x")
    check_callable(loss_fn, "loss_fn")
    n = len(layers)
    segments = max(1, round(math.sqrt(n))) if segments is None else segments
    bounds = segment_bounds(n, segments)
    calls = 0

    # forward without a graph: keep the input of every segment and the output
    stored = [x.detach()]
    with torch.no_grad():
        h = stored[0]
        for start, end in bounds:
            for layer in layers[start:end]:
                h = layer(h)
                calls += 1
            stored.append(h)
    peak = len(stored)

    out = stored.pop().requires_grad_(True)  # x_L: the gradient of the loss starts here
    with torch.enable_grad():
        loss = loss_fn(out)
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        (g,) = torch.autograd.grad(loss, out)  # dL/dx_L
    del out

    # backward, segment by segment from the last: recompute it with a graph, push g through it
    for start, end in reversed(bounds):
        h_in = stored.pop().detach().requires_grad_(True)
        with torch.enable_grad():
            h = h_in
            for layer in layers[start:end]:
                h = layer(h)
                calls += 1
            # alive now: the inputs of the earlier segments, and this segment's end - start + 1
            peak = max(peak, len(stored) + (end - start) + 1)
            h.backward(g)  # accumulates into the parameters' .grad; dL/dh_in into h_in.grad
        g = h_in.grad
        del h, h_in
    if x.requires_grad:
        x.grad = g.clone() if x.grad is None else x.grad + g
    return CheckpointStats(loss=float(loss.detach()), segments=segments, peak_stored=peak, layer_calls=calls)


def saved_activation_peak(run, shape) -> int:
    """The most tensors of ``shape`` that autograd saves for backward and holds alive at once during ``run()``.

    An independent count, from torch's own saved-tensor hooks (``torch.autograd.graph.saved_tensors_hooks``):
    each tensor a backward rule keeps is seen as it is saved, and a weak reference tells whether it
    is still alive. Tensors sharing storage count once.
    """
    check_callable(run, "run")
    live, peak = [], 0

    def pack(t):
        nonlocal peak
        if tuple(t.shape) == tuple(shape):
            live.append(weakref.ref(t))
            peak = max(peak, len({r().data_ptr() for r in live if r() is not None}))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return peak
