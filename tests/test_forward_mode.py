"""Forward mode (dual numbers) against torch.func.jvp, torch's Jacobian and sympy derivatives."""
import numpy as np
import pytest
import sympy as sp
import torch

from mathllm.forward_mode import Dual, jacobian_forward, jvp

# written once, run on a torch tensor and on a Dual
FUNCS = {
    "poly_div": lambda x: (x * x * x - 2.0 * x) / (1.0 + x * x),
    "sin_exp": lambda x: (x * x.sin()).exp() - x.cos(),
    "log_tanh": lambda x: (x * x + 1.0).log() * x.tanh() + 3.0 - x,
    "index_sum": lambda x: x[0] * x.tanh() + x.sum() / (2.0 + x[1] * x[1]),
    "rops": lambda x: 2.0 - 3.0 / (x * x + 1.0) + 0.5 * x - x**3 + (x * x + 2.0) ** 1.5,
}


@pytest.mark.parametrize("name", sorted(FUNCS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jvp_matches_torch_func(name, seed):
    rng = np.random.default_rng(seed)
    x, v = rng.normal(size=4), rng.normal(size=4)
    f = FUNCS[name]
    val, jv = jvp(f, x, v)
    t_val, t_jv = torch.func.jvp(f, (torch.tensor(x),), (torch.tensor(v),))
    np.testing.assert_allclose(val, t_val.numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(jv, t_jv.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_jacobian_forward_matches_torch(name):
    x = np.array([0.3, -1.2, 0.8])
    J = jacobian_forward(FUNCS[name], x)
    J_ref = torch.autograd.functional.jacobian(FUNCS[name], torch.tensor(x)).numpy()
    assert J.shape == J_ref.shape
    np.testing.assert_allclose(J, J_ref, rtol=1e-12, atol=1e-13)


def test_scalar_derivatives_match_sympy():
    t = sp.Symbol("t")
    cases = [(sp.sin(t) * sp.exp(t), lambda d: d.sin() * d.exp()),
             (sp.log(t) / t, lambda d: d.log() / d),
             (sp.tanh(t**2) - sp.cos(t), lambda d: (d**2).tanh() - d.cos()),
             (t**3 - 1 / t, lambda d: d**3 - 1.0 / d)]
    for expr, fd in cases:
        for a in (0.4, 1.3, 2.7):
            out = fd(Dual(a, 1.0))
            assert abs(out.val - float(expr.subs(t, a))) < 1e-13
            assert abs(out.dot - float(sp.diff(expr, t).subs(t, a))) < 1e-12


def test_dual_algebra_is_truncated_taylor():
    a, b, c, d, eps = sp.symbols("a b c d epsilon")
    prod = sp.expand((a + b * eps) * (c + d * eps)).subs(eps**2, 0)
    assert sp.simplify(prod - (a * c + (a * d + b * c) * eps)) == 0
    z = Dual(1.5, 2.0) * Dual(-0.5, 3.0)
    assert z.val == -0.75 and z.dot == 1.5 * 3.0 + 2.0 * -0.5


def test_bad_inputs():
    with pytest.raises(TypeError, match="exponent"):
        Dual(1.0) ** Dual(2.0)
    with pytest.raises(ValueError, match="shape"):
        jvp(lambda x: x, np.ones(3), np.ones(2))
    with pytest.raises(TypeError, match="Dual"):
        jvp(lambda x: 1.0, np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="callable"):
        jvp(3, 1.0, 1.0)
    with pytest.raises(TypeError, match="val"):
        Dual("a")
    with pytest.raises(ValueError, match="1-d"):
        jacobian_forward(lambda x: x, np.ones((2, 2)))


def test_constant_matrix_times_dual():
    rng = np.random.default_rng(4)
    A, x, v = rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=3)
    val, jv = jvp(lambda q: (A @ q).tanh(), x, v)
    t_val, t_jv = torch.func.jvp(lambda q: torch.tanh(torch.tensor(A) @ q), (torch.tensor(x),), (torch.tensor(v),))
    np.testing.assert_allclose(jv, t_jv.numpy(), rtol=1e-12, atol=1e-14)
    out = Dual(x, v) @ A.T
    np.testing.assert_allclose(out.dot, v @ A.T, rtol=1e-14)
