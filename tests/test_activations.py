"""Activations and their derivatives against sympy (lambdified) and torch (functions and autograd)."""
import math

import numpy as np
import pytest
import sympy as sp
import torch

from mathllm.activations import ACTIVATIONS, gelu, gelu_grad, normal_cdf, normal_pdf, relu_grad, sigmoid

x = sp.symbols("x", real=True)
SYMPY = {
    "sigmoid": 1 / (1 + sp.exp(-x)),
    "tanh": sp.tanh(x),
    "relu": sp.Piecewise((x, x > 0), (0, True)),
    "gelu": x * (1 + sp.erf(x / sp.sqrt(2))) / 2,
    "gelu_tanh": x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 1000000) * x ** 3))),
    "silu": x / (1 + sp.exp(-x)),
}
BY_NAME = {a.name: a for a in ACTIVATIONS}
POINTS = torch.cat([torch.linspace(-6, 6, 241, dtype=torch.float64), torch.tensor([-30.0, -1e-3, 1e-3, 30.0], dtype=torch.float64)])


def test_table_covers_every_activation():
    assert set(BY_NAME) == set(SYMPY)


@pytest.mark.parametrize("name", sorted(SYMPY))
def test_against_sympy(name):
    act = BY_NAME[name]
    f = sp.lambdify(x, SYMPY[name], modules=["math"])
    df = sp.lambdify(x, sp.diff(SYMPY[name], x), modules=["math"])
    pts = [p for p in POINTS.tolist() if p != 0.0]  # relu' is undefined at 0
    want_f = torch.tensor([float(f(p)) for p in pts], dtype=torch.float64)
    want_df = torch.tensor([float(df(p)) for p in pts], dtype=torch.float64)
    t = torch.tensor(pts, dtype=torch.float64)
    torch.testing.assert_close(act.fn(t), want_f, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(act.grad(t), want_df, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(SYMPY))
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_against_torch(name, dtype, tol):
    act = BY_NAME[name]
    t = POINTS.to(dtype).clone().requires_grad_()
    ref = act.torch_fn(t)
    (ref_grad,) = torch.autograd.grad(ref.sum(), [t])
    torch.testing.assert_close(act.fn(t.detach()), ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(act.grad(t.detach()), ref_grad, rtol=tol, atol=tol)


def test_known_values():
    z = torch.zeros(1, dtype=torch.float64)
    assert sigmoid(z).item() == 0.5 and BY_NAME["sigmoid"].grad(z).item() == 0.25  # the largest slope
    assert BY_NAME["tanh"].grad(z).item() == 1.0
    assert relu_grad(z).item() == 0.0  # torch's choice at the kink
    assert gelu_grad(z).item() == 0.5 and BY_NAME["silu"].grad(z).item() == 0.5
    assert normal_pdf(z).item() == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert normal_cdf(torch.tensor([1.959963984540054], dtype=torch.float64)).item() == pytest.approx(0.975, abs=1e-12)


def test_gelu_tanh_approximation_error():
    """The tanh form is an approximation: off by at most ~5e-4, not a rewriting of x Phi(x)."""
    t = torch.linspace(-8, 8, 16001, dtype=torch.float64)
    gap = (gelu(t) - gelu(t, "tanh")).abs().max().item()
    assert 1e-4 < gap < 1e-3


def test_no_overflow():
    t = torch.tensor([-1000.0, 1000.0], dtype=torch.float64)
    for act in ACTIVATIONS:
        assert torch.isfinite(act.fn(t)).all() and torch.isfinite(act.grad(t)).all(), act.name


def test_bad_inputs():
    with pytest.raises(TypeError, match="floating-point tensor, got dtype int64"):
        sigmoid(torch.arange(3))
    with pytest.raises(TypeError, match="must be a torch.Tensor, got ndarray"):
        BY_NAME["tanh"].fn(np.ones(3))
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\), got 'erf'"):
        gelu(torch.ones(2), approximate="erf")
    with pytest.raises(ValueError, match="approximate must be one of"):
        gelu_grad(torch.ones(2), approximate="fast")
