"""The scalar engine against torch.autograd in float64: values and gradients of the same expressions."""
import math

import pytest
import torch

from mathllm.autograd import Value, topological_order

# Each case is written once and run on both engines: Values and float64 torch scalars share the
# operators and the methods exp/log/tanh/sigmoid/relu.
CASES = {
    "add_mul": lambda a, b, c: a * b + c * a + 3.0,
    "sub_div": lambda a, b, c: (a - b) / (c * c + 1.0) - 2.0 / (b * b + 0.5),
    "pow": lambda a, b, c: a ** 3 + (b * b + 1.0) ** -1.5 + (c * c + 2.0) ** 0.5,
    "exp_log": lambda a, b, c: (a.exp() + b.exp()).log() - (c * c + 1.0).log(),
    "tanh_sigmoid": lambda a, b, c: (a * b).tanh() * c.sigmoid() + (a - c).sigmoid(),
    "relu": lambda a, b, c: (a * b - c).relu() + (c - a).relu() * b,
    "reuse": lambda a, b, c: (lambda d: d * d + d.tanh() * a)(a * b + c),  # d used three times
    "neuron": lambda a, b, c: (0.5 * a - 1.5 * b + 0.3 * c + 0.1).tanh(),
    "softmax_ce": lambda a, b, c: (a.exp() + b.exp() + c.exp()).log() - b,
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("point", [(0.7, -1.3, 2.1), (-0.4, 0.9, -2.5), (1.9, 0.2, 0.6)])
def test_value_matches_torch(name, point):
    f = CASES[name]
    xs = [Value(p) for p in point]
    out = f(*xs)
    out.backward()
    ts = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in point]
    t_out = f(*ts)
    t_out.backward()
    assert out.data == pytest.approx(t_out.item(), rel=1e-13, abs=1e-13)
    for x, t in zip(xs, ts):
        assert x.grad == pytest.approx(t.grad.item(), rel=1e-12, abs=1e-12)


def test_backward_resets_and_deep_graph():
    x = Value(0.5)
    y = x
    for _ in range(5000):  # deeper than Python's recursion limit
        y = y * 1.0001 + 0.0
    y.backward()
    first = x.grad
    y.backward()  # a second call recomputes; it does not accumulate
    assert x.grad == first == pytest.approx(1.0001 ** 5000, rel=1e-10)


def test_topological_order_puts_inputs_first():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    order = topological_order(d)
    pos = {id(v): i for i, v in enumerate(order)}
    assert pos[id(a)] < pos[id(c)] < pos[id(d)] and pos[id(b)] < pos[id(c)]
    assert len(order) == 4


def test_sigmoid_does_not_overflow():
    s = Value(-1000.0).sigmoid()
    s.backward()
    assert s.data == 0.0 and math.isfinite(s.grad)


def test_bad_inputs():
    with pytest.raises(TypeError, match="int or float, got str"):
        Value("1.0")
    with pytest.raises(TypeError, match="Value, int or float, got list"):
        Value(1.0) + [1.0]
    with pytest.raises(TypeError, match="constant int or float exponent, got Value"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match="positive argument, got -1.0"):
        Value(-1.0).log()
    with pytest.raises(TypeError, match="root must be a Value, got float"):
        topological_order(1.0)
