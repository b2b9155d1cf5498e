"""The array engine against torch.autograd in float64: values, gradients with broadcasting,
second derivatives (Hessian-vector products) and gradients through a recurrent network."""
import numpy as np
import pytest
import sympy as sp
import torch

from mathllm.losses import softmax
from mathllm.tensor_autograd import (Tensor, broadcast_to, grad, hessian, hessian_power_iteration, hvp,
                                     jacobian, no_grad,
                                     rnn_states, sum_to)

# name -> (function written once for both engines, input shapes). Shapes exercise broadcasting:
# a (3, 1) column against a (4,) row, a (2, 3, 4) batch against a (4, 5) matrix, etc.
CASES = {
    "add_broadcast": (lambda a, b: ((a + b) * (a + b)).sum(), [(3, 1), (4,)]),
    "mul_broadcast": (lambda a, b: (a * b * a).mean(), [(2, 3, 4), (3, 1)]),
    "sub_div": (lambda a, b: ((a - b) / (b * b + 1.0)).sum(), [(3, 4), (1, 4)]),
    "rsub_rdiv": (lambda a, b: (2.0 - a / 3.0 + 1.0 / (a * a + 1.0) * b).sum(), [(5,), (5,)]),
    "pow": (lambda a, b: ((a * a + 1.0) ** 1.5 + b ** 3).sum(), [(3, 4), (4,)]),
    "exp_log": (lambda a, b: ((a.exp() + b.exp()).log()).sum(), [(2, 3), (2, 1)]),
    "tanh_sigmoid_relu": (lambda a, b: (a.tanh() * b.sigmoid() + (a - b).relu()).sum(), [(3, 4), (4,)]),
    "matmul": (lambda a, b: (a @ b).tanh().sum(), [(3, 4), (4, 5)]),
    "matmul_batched": (lambda a, b: ((a @ b) ** 2).mean(), [(2, 3, 4), (4, 5)]),
    "matmul_transpose": (lambda a, b: (a.T @ b @ a).sum(), [(4, 3), (4, 4)]),
    "sum_axis": (lambda a, b: (a.sum(axis=0) * b).sum() + a.sum(axis=1, keepdims=True).exp().sum(), [(3, 4), (4,)]),
    "mean_axes": (lambda a, b: (a.mean(axis=(0, 2), keepdims=True) * b).sum(), [(2, 3, 4), (3, 1)]),
    "reshape": (lambda a, b: (a.reshape(4, 3) @ b).sum(), [(2, 6), (3, 2)]),
    "softmax": (lambda a, b: (a.softmax(axis=-1) * b).sum(), [(3, 5), (5,)]),
    "softmax_axis0": (lambda a, b: (a.softmax(axis=0) ** 2).sum() + b.sum(), [(4, 3), (1,)]),
    "log_softmax_ce": (lambda a, b: -(a.log_softmax(axis=1) * b).sum() / 3.0, [(3, 5), (3, 5)]),
    "mlp_layer": (lambda a, b: ((a @ b.T + b.sum(axis=1)).tanh() @ b).relu().mean(), [(6, 4), (4, 4)]),
}


def _inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_and_gradients_match_torch(name, seed):
    f, shapes = CASES[name]
    arrays = _inputs(shapes, seed)
    xs = [Tensor(a, requires_grad=True) for a in arrays]
    out = f(*xs)
    out.backward()
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]  # float64
    t_out = f(*ts)
    t_out.backward()
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-12, atol=1e-12)
    for x, t in zip(xs, ts):
        assert x.grad.shape == x.shape  # gradients summed back over the broadcast dimensions
        np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", ["exp_log", "tanh_sigmoid_relu", "matmul_batched", "softmax", "mlp_layer", "pow"])
def test_second_derivatives_match_torch(name):
    """grad with create_graph=True can be differentiated again: d/db of (dL/da . v)."""
    f, shapes = CASES[name]
    a, b = _inputs(shapes, 3)
    v = np.random.default_rng(4).normal(size=a.shape)
    xa, xb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ga,) = grad(f(xa, xb), [xa], create_graph=True)
    mixed = grad((ga * v).sum(), [xa, xb])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (tga,) = torch.autograd.grad(f(ta, tb), [ta], create_graph=True)
    t_mixed = torch.autograd.grad((tga * torch.tensor(v)).sum(), [ta, tb], allow_unused=True)
    for ours, ref in zip(mixed, t_mixed):
        ref = np.zeros(ours.shape) if ref is None else ref.numpy()
        np.testing.assert_allclose(ours.data, ref, rtol=1e-10, atol=1e-11)


HVP_FUNCS = {
    "quartic": lambda x: (x ** 4).sum() + (x.sum()) ** 2,
    "tanh_net": lambda x: ((x.reshape(2, 3) @ x.reshape(3, 2)).tanh() ** 2).sum(),
    "logsumexp": lambda x: x.exp().sum().log(),
    "softmax_entropy": lambda x: -(x.softmax(axis=-1) * x.log_softmax(axis=-1)).sum(),
}


@pytest.mark.parametrize("name", sorted(HVP_FUNCS))
@pytest.mark.parametrize("seed", [0, 1])
def test_hvp_matches_torch(name, seed):
    f = HVP_FUNCS[name]
    rng = np.random.default_rng(seed)
    x, v = rng.normal(size=6), rng.normal(size=6)
    value, hv = hvp(f, x, v)
    t_value, t_hv = torch.autograd.functional.hvp(f, torch.tensor(x), torch.tensor(v))
    assert value == pytest.approx(t_value.item(), rel=1e-13)
    np.testing.assert_allclose(hv, t_hv.numpy(), rtol=1e-10, atol=1e-11)
    H = torch.autograd.functional.hessian(f, torch.tensor(x)).numpy()
    np.testing.assert_allclose(hessian(f, x), H, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(hessian(f, x), hessian(f, x).T, atol=1e-12)  # symmetric (Schwarz)


def test_hessian_matches_sympy():
    x1, x2 = sp.symbols("x1 x2")
    expr = sp.exp(x1 * x2) + x1 ** 3 * x2 - sp.log(1 + x2 ** 2)
    H = sp.lambdify((x1, x2), sp.hessian(expr, (x1, x2)))

    def f(x):  # the same expression on the engine; the coordinates picked out by dot products
        a, b = (x * np.array([1.0, 0.0])).sum(), (x * np.array([0.0, 1.0])).sum()
        return (a * b).exp() + a ** 3 * b - (b * b + 1.0).log()

    for point in (np.array([0.3, -0.7]), np.array([-1.2, 0.4])):
        np.testing.assert_allclose(hessian(f, point), np.array(H(*point), dtype=float), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_softmax_jacobian_is_diag_p_minus_ppT(n):
    """Known answer: dp_i/dz_j = p_i (delta_ij - p_j); derived with sympy, checked on both engines."""
    z = sp.symbols(f"z0:{n}")
    p = [sp.exp(zi) / sum(sp.exp(zj) for zj in z) for zi in z]
    J = sp.Matrix(n, n, lambda i, j: sp.diff(p[i], z[j]))
    P = sp.Matrix(p)
    assert sp.simplify(J - (sp.diag(*p) - P * P.T)) == sp.zeros(n, n)
    z0 = np.random.default_rng(n).normal(size=n) * 3
    p0 = softmax(torch.tensor(z0)).numpy()
    closed = np.diag(p0) - np.outer(p0, p0)
    np.testing.assert_allclose(jacobian(lambda t: t.softmax(axis=-1), z0), closed, rtol=1e-12, atol=1e-14)
    t_J = torch.autograd.functional.jacobian(softmax, torch.tensor(z0)).numpy()
    np.testing.assert_allclose(t_J, closed, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.array(sp.lambdify(z, J)(*z0), dtype=float), closed, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(closed.sum(axis=0), 0.0, atol=1e-15)  # p sums to 1 whatever z is


def test_sum_to_is_the_adjoint_of_broadcast_to():
    """<broadcast(x), y> = <x, sum_to(y)>: the reason broadcast gradients are sums."""
    rng = np.random.default_rng(0)
    for small, big in [((4,), (3, 4)), ((3, 1), (3, 4)), ((1, 4), (2, 3, 4)), ((), (2, 2))]:
        x, y = rng.normal(size=small), rng.normal(size=big)
        lhs = (broadcast_to(Tensor(x), big).data * y).sum()
        rhs = (x * sum_to(Tensor(y), small).data).sum()
        assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("linear", [True, False])
@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5])
def test_rnn_gradients_are_products_of_jacobians(linear, radius):
    H, D, T = 5, 2, 12
    rng = np.random.default_rng(7)
    W = rng.normal(size=(H, H))
    W *= radius / np.abs(np.linalg.eigvals(W)).max()
    U, xs, h0, u = rng.normal(size=(H, D)), rng.normal(size=(T, D)), rng.normal(size=H), rng.normal(size=H)
    states = rnn_states(W, U, xs, Tensor(h0, requires_grad=True), linear=linear)
    assert len(states) == T + 1 and all(s.shape == (H,) for s in states)
    grads = grad((states[-1] * u).sum(), states)
    # the same by hand: dL/dh_t = u^T J_T ... J_{t+1}, J_s = diag(1 - h_s^2) W
    g = u.copy()
    for t in range(T, 0, -1):
        np.testing.assert_allclose(grads[t].data, g, rtol=1e-11, atol=1e-13)
        g = g * (1.0 if linear else 1.0 - states[t].data ** 2) @ W
    np.testing.assert_allclose(grads[0].data, g, rtol=1e-11, atol=1e-13)
    # and torch
    th0 = torch.tensor(h0, requires_grad=True)
    h = th0
    for x_t in torch.tensor(xs):
        h = torch.tensor(W) @ h + torch.tensor(U) @ x_t
        h = h if linear else torch.tanh(h)
    (t_g,) = torch.autograd.grad((h * torch.tensor(u)).sum(), [th0])
    np.testing.assert_allclose(grads[0].data, t_g.numpy(), rtol=1e-11, atol=1e-13)


def test_grad_of_intermediate_and_unused():
    x = Tensor(np.arange(3.0), requires_grad=True)
    y = x * 2.0
    z = Tensor(np.ones(3), requires_grad=True)
    gy, gz = grad((y * y).sum(), [y, z])
    np.testing.assert_array_equal(gy.data, 2 * y.data)
    np.testing.assert_array_equal(gz.data, np.zeros(3))


def test_no_grad_records_nothing_and_backward_accumulates():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = (x * 3.0).sum()
    assert not y.requires_grad and y._parents == ()
    loss = (x * x).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(x.grad, 4 * np.ones(2))  # accumulates like torch


def test_ndarray_on_the_left_defers_to_tensor():
    x = Tensor(np.ones(3), requires_grad=True)
    y = np.full(3, 2.0) * x + np.ones(3)
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 2.0))


def test_bad_inputs():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"a.shape\[-1\] == b.shape\[-2\], got shapes \(2, 3\) and \(2, 3\)"):
        x @ x
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        x @ Tensor(np.ones(3))
    with pytest.raises(TypeError, match="number or numpy array, got str"):
        x + "1"
    with pytest.raises(TypeError, match="got a Tensor"):
        Tensor(x)
    with pytest.raises(ValueError, match=r"scalar output, got shape \(2, 3\)"):
        x.backward()
    with pytest.raises(ValueError, match="does not depend on any tensor with requires_grad=True"):
        grad(Tensor(np.ones(2)).sum(), [x])
    with pytest.raises(ValueError, match="needs g, the upstream gradient"):
        grad(x * 2.0, [x])
    with pytest.raises(ValueError, match=r"g must have y's shape \(2, 3\), got \(3,\)"):
        grad(x * 2.0, [x], g=np.ones(3))
    with pytest.raises(ValueError, match="axis 2 is out of range for a 2-d tensor"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match=r"cannot sum shape \(2, 3\) down to \(4,\)"):
        sum_to(x, (4,))
    with pytest.raises(ValueError, match=r"v must have x's shape \(3,\), got \(2,\)"):
        hvp(lambda t: t.sum(), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="f must return a scalar Tensor"):
        hvp(lambda t: t * 2.0, np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"hessian needs a 1-d x, got shape \(2, 2\)"):
        hessian(lambda t: t.sum(), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"need W \(H, H\), U \(H, D\)"):
        rnn_states(np.ones((3, 2)), np.ones((3, 1)), np.ones((4, 1)), np.ones(3))


def test_hostile_input_gets_a_clear_error():
    """Issue 15 (the API fuzz test): Tensor("a") raised numpy's "could not convert string to float",
    Tensor(None) made a NaN array, sum_to/broadcast_to of a number failed with "'int' object is not
    iterable", and a number where f goes failed with "'float' object is not callable"."""
    with pytest.raises(TypeError, match="data must be a number or an array of numbers, got str"):
        Tensor("a")
    with pytest.raises(TypeError, match="data must be a number or an array of numbers, got NoneType"):
        Tensor(None)
    for op in (sum_to, broadcast_to):
        with pytest.raises(TypeError, match="x must be a mathllm.tensor_autograd.Tensor, got float"):
            op(0.5, (2,))
        with pytest.raises(TypeError, match=r"shape must be a tuple of ints >= 0, got 4"):
            op(Tensor(np.ones(3)), 4)
    with pytest.raises(ValueError, match=r"cannot broadcast shape \(3,\) to \(2, 4\)"):
        broadcast_to(Tensor(np.ones(3)), (2, 4))
    for f in (lambda g: hvp(g, np.ones(2), np.ones(2)), lambda g: jacobian(g, np.ones(2)),
              lambda g: hessian(g, np.ones(2))):
        with pytest.raises(TypeError, match="f must be callable, got float"):
            f(float("nan"))
    with pytest.raises(TypeError, match="x must be a number or an array of numbers, got NoneType"):
        jacobian(lambda t: t * 2.0, None)
    # the results that still come back agree with numpy's broadcasting: a 0/1 mask is data
    np.testing.assert_array_equal(broadcast_to(Tensor(np.array([True, False])), (3, 2)).data,
                                  np.broadcast_to([1.0, 0.0], (3, 2)))


def test_hessian_power_iteration_finds_the_top_eigenvalue():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(6, 6))
    x0 = rng.normal(size=6)

    def f(q):  # a non-quadratic loss: its Hessian depends on the point
        return ((Tensor(A) @ q.reshape(6, 1)).tanh() ** 2).sum() + (q * q * q * q).sum() * 0.1

    H = torch.autograd.functional.hessian(
        lambda t: (torch.tanh(torch.tensor(A) @ t) ** 2).sum() + 0.1 * (t**4).sum(), torch.tensor(x0)).numpy()
    eigs = np.linalg.eigvalsh(H)
    top = eigs[np.abs(eigs).argmax()]
    lam, v = hessian_power_iteration(f, x0, rng.normal(size=6), iters=500)
    assert abs(lam - top) < 1e-8 * abs(top)
    np.testing.assert_allclose(H @ v, lam * v, atol=1e-6 * abs(top))
    with pytest.raises(ValueError, match="iters"):
        hessian_power_iteration(f, x0, x0, iters=0)
    with pytest.raises(ValueError, match="nonzero"):
        hessian_power_iteration(f, x0, np.zeros(6))
