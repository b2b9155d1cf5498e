"""Forward-mode automatic differentiation with dual numbers, and the Jacobian-vector product.

A dual number is ``a + b*eps`` with ``eps**2 = 0``. Taylor's theorem then reads

    f(a + b*eps) = f(a) + f'(a) b eps          (every higher term has eps**2 = 0)

so evaluating ``f`` on duals carries the derivative along with the value: the ``dot`` part of the
result is the directional derivative. For ``F: R^n -> R^m`` seeded with ``x + v*eps`` the dot part
is the Jacobian-vector product ``J v``, at the cost of a small multiple of one evaluation of ``F``.
A full Jacobian takes ``n`` such passes (one per input direction), against ``m`` backward passes
in reverse mode: forward mode wins when inputs are few and outputs many.

A :class:`Dual` holds a float or a float64 ``numpy`` array in ``val`` and ``dot`` (the same
shape), so one pass pushes one tangent through elementwise array code. The methods share their
names with ``torch.Tensor``'s (``x.sin()``, ``x.exp()``, ``x[i]``, ``x.sum()``), so a function
written once runs on a torch tensor and on a Dual.

Reference: Griewank & Walther, *Evaluating Derivatives* (2008), chapter 3; Baydin et al.,
"Automatic differentiation in machine learning: a survey" (2018).
Leaves out: products of two dual matrices (only a constant matrix times a dual), several tangents at once (a batch of ``v``), nested (higher-order)
duals, and forward-over-reverse Hessian-vector products.

Book: :doc:`/notebooks/04_calculus_autodiff`
"""
from __future__ import annotations

import numpy as np

from .checks import check_callable


def _as_array(x, name: str) -> np.ndarray | float:
    """A Python float or a float64 array from a number or array-like; refuses bools and strings."""
    if isinstance(x, bool) or isinstance(x, str) or x is None:
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(x).__name__}")
    if isinstance(x, (int, float)):
        return float(x)
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def _lift(x) -> "Dual":
    """A constant c is the dual c + 0 eps."""
    if isinstance(x, Dual):
        return x
    val = _as_array(x, "operand")
    return Dual(val, np.zeros_like(val) if isinstance(val, np.ndarray) else 0.0)


class Dual:
    """The dual number ``val + dot * eps`` with ``eps**2 = 0``: a value and its tangent.

    Example::

        x = Dual(0.5, 1.0)          # seed dx/dx = 1
        y = (x * x.sin()).exp()
        y.val, y.dot                # f(0.5) and f'(0.5)
    """

    __slots__ = ("val", "dot")
    __array_ufunc__ = None  # numpy defers to us: A @ x with an array A calls Dual.__rmatmul__

    def __init__(self, val, dot=0.0):
        self.val = _as_array(val, "val")
        dot = _as_array(dot, "dot")
        if np.shape(dot) != np.shape(self.val):
            dot = np.broadcast_to(dot, np.shape(self.val)).astype(np.float64)  # a scalar tangent fills
        self.dot = dot

    def __repr__(self) -> str:
        return f"Dual(val={self.val}, dot={self.dot})"

    # -- arithmetic: (a + b eps) op (c + d eps), dropping eps^2
    def __add__(self, other) -> "Dual":
        other = _lift(other)
        return Dual(self.val + other.val, self.dot + other.dot)

    def __mul__(self, other) -> "Dual":
        other = _lift(other)  # (a + b eps)(c + d eps) = ac + (ad + bc) eps: the product rule
        return Dual(self.val * other.val, self.val * other.dot + self.dot * other.val)

    def __truediv__(self, other) -> "Dual":
        other = _lift(other)  # (a + b eps) / (c + d eps) = a/c + (b c - a d)/c^2 eps
        return Dual(self.val / other.val, (self.dot * other.val - self.val * other.dot) / other.val**2)

    def __pow__(self, k) -> "Dual":
        if isinstance(k, Dual) or isinstance(k, bool) or not isinstance(k, (int, float)):
            raise TypeError(f"the exponent must be a constant int or float, got {type(k).__name__}")
        return Dual(self.val**k, k * self.val ** (k - 1) * self.dot)

    def __neg__(self) -> "Dual":
        return Dual(-self.val, -self.dot)

    def __sub__(self, other) -> "Dual":
        return self + (-_lift(other))

    def __radd__(self, other) -> "Dual":
        return self + other

    def __rmul__(self, other) -> "Dual":
        return self * other

    def __rsub__(self, other) -> "Dual":
        return _lift(other) - self

    def __rtruediv__(self, other) -> "Dual":
        return _lift(other) / self

    # -- elementary functions: f(a + b eps) = f(a) + f'(a) b eps
    def sin(self) -> "Dual":
        return Dual(np.sin(self.val), np.cos(self.val) * self.dot)

    def cos(self) -> "Dual":
        return Dual(np.cos(self.val), -np.sin(self.val) * self.dot)

    def exp(self) -> "Dual":
        e = np.exp(self.val)
        return Dual(e, e * self.dot)

    def log(self) -> "Dual":
        return Dual(np.log(self.val), self.dot / self.val)

    def tanh(self) -> "Dual":
        t = np.tanh(self.val)
        return Dual(t, (1.0 - t * t) * self.dot)

    # -- array plumbing (linear maps act on the tangent as on the value)
    def __rmatmul__(self, A) -> "Dual":
        A = _as_array(A, "A")  # a constant matrix: A (a + b eps) = A a + (A b) eps
        return Dual(A @ self.val, A @ self.dot)

    def __matmul__(self, A) -> "Dual":
        A = _as_array(A, "A")
        return Dual(self.val @ A, self.dot @ A)

    def __getitem__(self, index) -> "Dual":
        return Dual(np.asarray(self.val)[index], np.asarray(self.dot)[index])

    def sum(self) -> "Dual":
        return Dual(float(np.sum(self.val)), float(np.sum(self.dot)))

    @property
    def shape(self) -> tuple[int, ...]:
        return np.shape(self.val)


def jvp(f, x, v) -> tuple[np.ndarray, np.ndarray]:
    """The Jacobian-vector product of ``f`` at ``x`` along ``v``, in one forward pass.

    Args:
        f: maps a Dual (of ``x``'s shape) to a Dual, with the operations of :class:`Dual`.
        x, v: a point and a tangent direction, numbers or arrays of the same shape.

    Returns:
        ``(f(x), J v)`` as float64 arrays, like ``torch.func.jvp``.
    """
    check_callable(f, "f")
    x, v = np.asarray(_as_array(x, "x")), np.asarray(_as_array(v, "v"))
    if x.shape != v.shape:
        raise ValueError(f"v must have x's shape {x.shape}, got {v.shape}")
    out = f(Dual(x, v))  # seed: x + v eps
    if not isinstance(out, Dual):
        raise TypeError(f"f must return a Dual, got {type(out).__name__}")
    return np.asarray(out.val, dtype=np.float64), np.asarray(out.dot, dtype=np.float64)


def jacobian_forward(f, x) -> np.ndarray:
    """The Jacobian of ``f`` at a vector ``x`` by forward mode: one :func:`jvp` per input, column j = J e_j.

    Returns an array of shape ``f(x).shape + (n,)``; it costs ``n = x.size`` forward passes.
    """
    x = np.asarray(_as_array(x, "x"))
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"jacobian_forward needs a non-empty 1-d x, got shape {x.shape}")
    return np.stack([jvp(f, x, e)[1] for e in np.eye(x.size)], axis=-1)
