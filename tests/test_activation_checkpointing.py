"""Checkpointed backpropagation: the gradients of plain autograd and of torch.utils.checkpoint, in O(sqrt L) memory."""
import math
import weakref

import pytest
import torch
from torch.utils.checkpoint import checkpoint_sequential

from mathllm.activation_checkpointing import (checkpointed_backward, plain_peak_stored, segment_bounds)


def _chain(L, width=6, seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Sequential(torch.nn.Linear(width, width, dtype=torch.float64), torch.nn.Tanh())
            for _ in range(L)]


def _grads(layers, x):
    out = [p.grad.clone() for layer in layers for p in layer.parameters()] + [x.grad.clone()]
    for layer in layers:
        layer.zero_grad(set_to_none=True)
    x.grad = None
    return out


def loss_fn(h):
    return (h.sin() ** 2).sum()


@pytest.mark.parametrize("L,segments", [(1, 1), (5, 2), (9, 3), (16, None), (10, 10)])
def test_gradients_equal_plain_autograd_and_torch_checkpoint(L, segments):
    layers = _chain(L)
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    h = x
    for layer in layers:
        h = layer(h)
    plain_loss = loss_fn(h)
    plain_loss.backward()
    plain = _grads(layers, x)

    stats = checkpointed_backward(layers, x, loss_fn, segments)
    ours = _grads(layers, x)
    assert stats.loss == pytest.approx(plain_loss.item(), rel=1e-14)
    s = stats.segments
    loss_fn(checkpoint_sequential(torch.nn.Sequential(*layers), s, x, use_reentrant=False)).backward()
    ref = _grads(layers, x)
    for a, b, c in zip(ours, plain, ref):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(a, c, rtol=1e-13, atol=1e-15)
    assert stats.layer_calls == 2 * L


@pytest.mark.parametrize("L", [4, 9, 16, 25, 30, 64, 100])
def test_peak_is_order_sqrt_L(L):
    stats = checkpointed_backward(_chain(L, width=2), torch.ones(1, 2, dtype=torch.float64), loss_fn)
    assert stats.segments == round(math.sqrt(L))
    assert stats.peak_stored <= 2 * math.ceil(math.sqrt(L)) + 1       # s + L/s + 1 at s ~ sqrt(L)
    assert plain_peak_stored(L) == L + 1


def _peak_live_saved_activations(run, shape):
    """The most activation-shaped tensors that autograd's saved-tensor hooks hold alive at once."""
    live, peak = [], [0]

    def pack(t):
        if t.shape == shape:
            live.append(weakref.ref(t))
            alive = {r().data_ptr() for r in live if r() is not None}
            peak[0] = max(peak[0], len(alive))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return peak[0]


@pytest.mark.parametrize("L,segments", [(12, 3), (16, 4), (20, 5)])
def test_saved_tensors_hold_one_segment(L, segments):
    """torch's own record of saved activations: L + 1 for plain autograd, k + 1 for a segment of k layers."""
    layers = _chain(L, width=5)
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)

    def plain():
        h = x
        for layer in layers:
            h = layer(h)
        h.sum().backward()  # a loss that saves nothing

    assert _peak_live_saved_activations(plain, x.shape) == L + 1
    ours = _peak_live_saved_activations(lambda: checkpointed_backward(layers, x, torch.sum, segments), x.shape)
    assert ours == math.ceil(L / segments) + 1


def test_segment_bounds():
    assert segment_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert segment_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="at most"):
        segment_bounds(3, 4)
    with pytest.raises(ValueError, match="positive int"):
        segment_bounds(0, 1)


def test_bad_inputs():
    layers = _chain(2)
    x = torch.ones(1, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="empty"):
        checkpointed_backward([], x, loss_fn)
    with pytest.raises(TypeError, match="list or tuple"):
        checkpointed_backward(layers[0][0], x, loss_fn)
    with pytest.raises(TypeError, match="callable"):
        checkpointed_backward([1, 2], x, loss_fn)
    with pytest.raises(ValueError, match="scalar"):
        checkpointed_backward(layers, x, lambda h: h)
    with pytest.raises(TypeError):
        checkpointed_backward(layers, torch.ones(1, 6, dtype=torch.long), loss_fn)


def test_saved_activation_peak_agrees_with_the_tests_own_count():
    from mathllm.activation_checkpointing import saved_activation_peak
    layers = _chain(9, width=3)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    run = lambda: checkpointed_backward(layers, x, torch.sum, 3)  # noqa: E731
    assert saved_activation_peak(run, x.shape) == _peak_live_saved_activations(run, x.shape) == 4
