"""Reverse-mode automatic differentiation on scalars, written from scratch.

A :class:`Value` holds one float and remembers how it was computed. Each operation stores, next to
its forward rule, a closure with its *local* derivative; :meth:`Value.backward` visits the graph in
reverse topological order and applies the chain rule

    dL/dx = sum over the children y of x of  dL/dy * dy/dx,

accumulating (``+=``) because a value used twice receives a gradient from each use. This is
backpropagation (Rumelhart, Hinton & Williams 1986) in the form popularised by Karpathy's micrograd.

Leaves out: arrays and broadcasting (see :mod:`mathllm.tensor_autograd`, which also does
Hessian-vector products), higher derivatives, and forward mode.

Book: :doc:`/notebooks/04_calculus_autodiff`
"""
from __future__ import annotations

import math


def _as_value(x) -> "Value":
    if isinstance(x, Value):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"a Value combines with a Value, int or float, got {type(x).__name__}")
    return Value(x)


# ---------------------------------------------------------------------------- the engine
class Value:
    """A scalar node of a computation graph: ``data`` (the forward value) and ``grad`` (dL/d self).

    Example::

        a, b = Value(2.0), Value(-3.0)
        L = (a * b + a.exp()).tanh()
        L.backward()          # a.grad, b.grad now hold dL/da, dL/db

    Book: :doc:`/notebooks/04_calculus_autodiff`, section "A scalar engine".
    """

    __slots__ = ("data", "grad", "_parents", "_backward", "op")

    def __init__(self, data: float, _parents: tuple = (), op: str = ""):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"Value holds a Python int or float, got {type(data).__name__}")
        self.data = float(data)
        self.grad = 0.0
        self._parents = _parents
        self._backward = None  # set by the operation that made this node
        self.op = op

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # -- binary operations: forward rule, then the local derivative of each input
    def __add__(self, other) -> "Value":
        other = _as_value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():  # d(a+b)/da = 1, d(a+b)/db = 1
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other) -> "Value":
        other = _as_value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():  # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, k) -> "Value":
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            raise TypeError(f"Value ** k needs a constant int or float exponent, got {type(k).__name__}")
        out = Value(self.data ** k, (self,), f"**{k}")

        def _backward():  # d(a^k)/da = k a^(k-1)
            self.grad += k * self.data ** (k - 1) * out.grad
        out._backward = _backward
        return out

    # -- unary operations
    def exp(self) -> "Value":
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward():  # d e^a / da = e^a
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self) -> "Value":
        if self.data <= 0:
            raise ValueError(f"log needs a positive argument, got {self.data}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward():  # d log a / da = 1/a
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    def tanh(self) -> "Value":
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward():  # d tanh a / da = 1 - tanh(a)^2
            self.grad += (1.0 - out.data ** 2) * out.grad
        out._backward = _backward
        return out

    def sigmoid(self) -> "Value":
        s = 0.5 * (1.0 + math.tanh(0.5 * self.data))  # = 1/(1+e^-a), without overflow
        out = Value(s, (self,), "sigmoid")

        def _backward():  # d sigma / da = sigma (1 - sigma)
            self.grad += s * (1.0 - s) * out.grad
        out._backward = _backward
        return out

    def relu(self) -> "Value":
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward():  # 1 where a > 0, else 0 (the subgradient 0 at a = 0, as in torch)
            self.grad += (self.data > 0) * out.grad
        out._backward = _backward
        return out

    # -- operations reduced to the ones above
    def __neg__(self) -> "Value":
        return self * -1.0

    def __sub__(self, other) -> "Value":
        return self + (-_as_value(other))

    def __truediv__(self, other) -> "Value":
        return self * _as_value(other) ** -1

    def __radd__(self, other) -> "Value":
        return self + other

    def __rmul__(self, other) -> "Value":
        return self * other

    def __rsub__(self, other) -> "Value":
        return _as_value(other) - self

    def __rtruediv__(self, other) -> "Value":
        return _as_value(other) * self ** -1

    # -- the backward pass
    def backward(self) -> None:
        """Set ``x.grad = d self / d x`` for every node ``x`` this value depends on.

        Each call first resets the gradients of the whole graph, leaves included, so a training
        loop needs no ``zero_grad`` (unlike torch, which accumulates into leaves across calls).
        """
        order = topological_order(self)
        for node in order:
            node.grad = 0.0
        self.grad = 1.0  # dL/dL
        for node in reversed(order):  # every node after all of its consumers
            if node._backward is not None:
                node._backward()


# ---------------------------------------------------------------------------- helpers
def topological_order(root: Value) -> list[Value]:
    """The nodes ``root`` depends on, each after all of its inputs (iterative depth-first search,
    so deep graphs do not hit Python's recursion limit)."""
    if not isinstance(root, Value):
        raise TypeError(f"root must be a Value, got {type(root).__name__}")
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node._parents if id(p) not in seen)
    return order

