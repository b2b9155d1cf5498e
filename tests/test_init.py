"""Xavier and Kaiming initialisation against torch.nn.init, and the variance argument measured."""
import functools
import math

import pytest
import torch

from mathllm.init import (activation_variances, fans, gain, kaiming_normal, kaiming_std, kaiming_uniform,
                          xavier_normal, xavier_std, xavier_uniform)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

SHAPES = [(64, 32), (10, 300), (128, 128)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("g", [1.0, 5.0 / 3.0])
def test_xavier_matches_torch(shape, g):
    for ours, ref in ((xavier_uniform, torch.nn.init.xavier_uniform_), (xavier_normal, torch.nn.init.xavier_normal_)):
        mine = ours(shape, g, torch.Generator().manual_seed(1))
        theirs = ref(torch.empty(shape), gain=g, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "linear"])
def test_kaiming_matches_torch(shape, nonlinearity):
    for ours, ref in ((kaiming_uniform, torch.nn.init.kaiming_uniform_), (kaiming_normal, torch.nn.init.kaiming_normal_)):
        mine = ours(shape, nonlinearity, torch.Generator().manual_seed(2))
        theirs = ref(torch.empty(shape), nonlinearity=nonlinearity, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["linear", "sigmoid", "tanh", "relu"])
def test_gain_matches_torch(name):
    assert gain(name) == pytest.approx(torch.nn.init.calculate_gain(name), rel=1e-15)


@pytest.mark.parametrize("draw, shape, want_var", [
    (lambda s, g: xavier_uniform(s, 1.0, g, torch.float64), (200, 300), 2 / 500),
    (lambda s, g: xavier_normal(s, 1.0, g, torch.float64), (300, 200), 2 / 500),
    (lambda s, g: kaiming_uniform(s, "relu", g, torch.float64), (200, 400), 2 / 400),
    (lambda s, g: kaiming_normal(s, "relu", g, torch.float64), (400, 100), 2 / 100),
])
def test_sample_variance(draw, shape, want_var):
    w = draw(shape, torch.Generator().manual_seed(3))
    assert w.var().item() == pytest.approx(want_var, rel=0.03)  # 60k samples: ~0.6 % standard error
    assert abs(w.mean().item()) < 4 * math.sqrt(want_var / w.numel())


def test_variance_through_depth():
    """Kaiming keeps ReLU pre-activations at variance ~Var(z_0) = 1 through depth; Xavier halves it per layer."""
    depth, width = 30, 256
    g = torch.Generator().manual_seed(0)
    kaiming = activation_variances(functools.partial(kaiming_normal, nonlinearity="relu", dtype=torch.float64),
                                   torch.relu, depth, width, n=256, generator=g)
    xavier = activation_variances(lambda s, generator: xavier_normal(s, 1.0, generator, torch.float64),
                                  torch.relu, depth, width, n=256, generator=g)
    assert kaiming.shape == (depth,)
    assert ((0.25 < kaiming) & (kaiming < 4.0)).all()  # every layer near Var(z_0) = 1
    ratio = (xavier[-1] / xavier[9]).item() ** (1 / 20)  # the per-layer factor over the last 20 layers
    assert ratio == pytest.approx(0.5, abs=0.05)
    # a linear network with Var(w) = 1/fan_in keeps the variance exactly in expectation
    linear = activation_variances(lambda s, generator: kaiming_normal(s, "linear", generator, torch.float64),
                                  lambda t: t, 10, width, n=256, generator=g)
    assert 0.5 < linear[-1].item() < 2.0


def test_formulas():
    assert xavier_std(100, 300) == pytest.approx(math.sqrt(2 / 400))
    assert kaiming_std(50) == pytest.approx(math.sqrt(2 / 50))
    assert fans((7, 3)) == (3, 7)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of .* got 'gelu'"):
        gain("gelu")
    with pytest.raises(ValueError, match=r"shape \(fan_out, fan_in\) with both >= 1, got \(3,\)"):
        xavier_uniform((3,))
    with pytest.raises(ValueError, match=r"got \(0, 4\)"):
        kaiming_normal((0, 4))
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        activation_variances(xavier_normal, torch.tanh, 0, 8)


def test_hostile_inputs_get_a_clear_error():
    """Issue 15: inputs that used to give a wrong answer or Python's own error now name the parameter.

    Before: ``kaiming_std(0)`` raised ZeroDivisionError, ``kaiming_std(-1)`` "math domain error",
    ``xavier_std(-3, 4)`` returned sqrt(2) (a negative fan), ``fans(4)`` "'int' object is not iterable",
    ``fans((2.5, 4))`` accepted a fractional fan, ``activation_variances(None, ...)`` "'NoneType' object
    is not callable".
    """
    with pytest.raises(ValueError, match="fan_in must be a positive int, got 0"):
        kaiming_std(0)
    with pytest.raises(ValueError, match="fan_in must be a positive int, got -1"):
        kaiming_std(-1)
    with pytest.raises(ValueError, match="fan_in must be a positive int, got -3"):
        xavier_std(-3, 4)
    with pytest.raises(ValueError, match="gain must be a finite number > 0, got nan"):
        xavier_std(3, 4, float("nan"))
    with pytest.raises(TypeError, match="shape must be a tuple .* got int"):
        fans(4)
    with pytest.raises(TypeError, match="shape must be a tuple .* got Tensor"):
        xavier_normal(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"got \(2.5, 4\)"):
        kaiming_uniform((2.5, 4))
    with pytest.raises(TypeError, match="draw_weight must be callable, got NoneType"):
        activation_variances(None, torch.tanh, 2, 8)
    with pytest.raises(TypeError, match="activation must be callable, got NoneType"):
        activation_variances(xavier_normal, None, 2, 8)
    assert fans(torch.Size([3, 5])) == (5, 3)  # a torch.Size is a shape too
    assert xavier_std(3, 5) == pytest.approx(math.sqrt(2 / 8))  # the formula, by hand
