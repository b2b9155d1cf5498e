"""Finite differences: their error orders, the round-off floor, and the gradient check of the engine."""
import numpy as np
import pytest
import sympy as sp
import torch

from mathllm.gradcheck import (EPS, GradientMismatch, derivative_errors, finite_difference, gradcheck,
                               numerical_grad, optimal_step, relative_error)

X = sp.symbols("x")
FUNCS = {"sin": sp.sin(X), "exp_x2": sp.exp(X ** 2 / 3), "rational": 1 / (1 + X ** 2) + X ** 3}


def _slope(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


@pytest.mark.parametrize("name", sorted(FUNCS))
@pytest.mark.parametrize("scheme, order", [("forward", 1), ("central", 2)])
def test_truncation_order(name, scheme, order):
    """In the truncation regime the error falls as h^order (slope on a log-log plot)."""
    f, df = (sp.lambdify(X, e) for e in (FUNCS[name], sp.diff(FUNCS[name], X)))
    hs = np.logspace(-3, -1.5, 6)
    slope = _slope(hs, derivative_errors(f, df, 0.7, hs, scheme))
    assert slope == pytest.approx(order, abs=0.1)


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_round_off_regime_and_optimal_step(scheme):
    """Below the optimal step the error grows like eps/h; the best measured step is near h*."""
    f, df = np.sin, np.cos
    x = 1.0
    hs = np.logspace(-15, -1, 57)
    errs = derivative_errors(f, df, x, hs, scheme)
    small = hs < 1e-11
    assert _slope(hs[small], errs[small]) == pytest.approx(-1, abs=0.35)  # noisy, but clearly -1
    d = abs(np.sin(x)) if scheme == "forward" else abs(np.cos(x))  # |f''| or |f'''|
    h_star = optimal_step(scheme, abs(np.sin(x)), d)
    best = hs[np.argmin(errs)]
    assert h_star / 30 < best < h_star * 30
    assert errs.min() < (1e-7 if scheme == "forward" else 1e-9)
    assert errs.min() > 1e-14  # the round-off floor: never exact
    assert h_star == pytest.approx(np.sqrt(2 * EPS * abs(np.sin(x)) / d) if scheme == "forward"
                                   else np.cbrt(3 * EPS * abs(np.sin(x)) / d))


@pytest.mark.parametrize("shape", [(4,), (2, 3)])
def test_numerical_grad_matches_torch(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    x_before = x.copy()
    f = lambda a: float(np.sum(np.tanh(a) ** 2 * np.exp(a / 3)))
    t = torch.tensor(x, requires_grad=True)
    (t.tanh() ** 2 * (t / 3).exp()).sum().backward()
    for scheme, tol in (("central", 1e-9), ("forward", 1e-6)):
        np.testing.assert_allclose(numerical_grad(f, x, h=1e-6 if scheme == "central" else 1e-8, scheme=scheme),
                                   t.grad.numpy(), rtol=tol, atol=tol)
    assert np.array_equal(x, x_before)  # the probes were undone


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_passes_on_the_engine(seed):
    x = np.random.default_rng(seed).normal(size=(3, 4))
    W = np.random.default_rng(seed + 10).normal(size=(4, 2))
    err = gradcheck(lambda t: ((t @ W).tanh().softmax(axis=1) * np.arange(2.0)).sum() + (t ** 2).mean(), x)
    assert err < 1e-8


def test_gradcheck_catches_a_wrong_gradient():
    def f(t):  # relu(x) + x^2 where the x^2 gradient is cut off by a detach: analytic != numerical
        return t.relu().sum() + (t.detach() ** 2).sum()

    with pytest.raises(GradientMismatch, match="relative error"):
        gradcheck(f, np.array([0.5, 1.5, 2.0]))


def test_relative_error_is_normwise():
    assert relative_error([1.0, 0.0], [1.0, 1e-12]) == pytest.approx(1e-12)
    assert relative_error([2.0], [1.0]) == pytest.approx(0.5)
    assert relative_error(np.zeros(0), np.zeros(0)) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"scheme must be one of \('forward', 'central'\), got 'backward'"):
        finite_difference(np.sin, 0.0, 1e-3, "backward")
    with pytest.raises(ValueError, match=r"h must be a finite number in \(0, inf\), got 0"):
        numerical_grad(np.sum, np.ones(2), h=0)
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        relative_error(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"f_scale must be a finite number in \(0, inf\), got 0.0"):
        optimal_step("central", 0.0, 1.0)


def test_hostile_input_gets_a_clear_error():
    """Issue 15 (the API fuzz test): a number where f goes used to fail inside with "'float' object is
    not callable", relative_error(1.0, None) returned NaN (None became a NaN array), and an infinite
    step h returned NaN."""
    for call in (lambda: finite_difference(0.5, 0.0, 1e-3), lambda: numerical_grad(None, np.ones(2)),
                 lambda: gradcheck(np.ones(2), np.ones(2)), lambda: derivative_errors(1.0, np.cos, 0.0, [1e-3])):
        with pytest.raises(TypeError, match="f must be callable, got"):
            call()
    with pytest.raises(TypeError, match="df must be callable, got NoneType"):
        derivative_errors(np.sin, None, 0.0, [1e-3])
    with pytest.raises(TypeError, match="b must be a number or an array of numbers, got NoneType"):
        relative_error(1.0, None)
    with pytest.raises(TypeError, match="a must be a number or an array of numbers, got an array of dtype bool"):
        relative_error(np.ones(2, dtype=bool), np.ones(2))
    with pytest.raises(ValueError, match=r"h must be a finite number in \(0, inf\), got inf"):
        finite_difference(np.sin, 0.0, float("inf"))
    with pytest.raises(ValueError, match=r"h must be a finite number in \(0, inf\), got nan"):
        numerical_grad(np.sum, np.ones(2), h=float("nan"))
    # a float32 step is kept as given (float32 arithmetic stays float32)
    assert finite_difference(lambda x: x * x, np.float32(1.0), np.float32(2 ** -4)).dtype == np.float32
