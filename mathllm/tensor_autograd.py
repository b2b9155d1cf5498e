"""Reverse-mode automatic differentiation on numpy arrays, with broadcasting and second derivatives.

The array version of :mod:`mathllm.autograd`. A :class:`Tensor` wraps a float64 ``numpy`` array;
each operation records its inputs and a rule that maps the gradient of its output, ``g``, to the
gradients of its inputs (a vector-Jacobian product, written next to the forward rule). Two points
the scalar engine does not meet:

- **Broadcasting.** ``x + b`` with ``x: (B, C)`` and ``b: (C,)`` copies ``b`` along ``B``; the
  gradient of a copy is the *sum* of the copies' gradients, so every rule ends with
  :func:`sum_to`, which sums ``g`` over the broadcast dimensions back to the input's shape.
- **Higher derivatives.** The backward rules are themselves written with Tensor operations, so with
  ``create_graph=True`` the backward pass builds a graph that can be differentiated again. That
  gives Hessian-vector products by reverse-over-reverse (Pearlmutter 1994): H v = d(grad L . v)/dx,
  and with them the top Hessian eigenvalue by power iteration (:func:`hessian_power_iteration`).

Leaves out: in-place operations, integer indexing, forward mode (see :mod:`mathllm.forward_mode`),
dtypes other than float64.

Book: :doc:`/notebooks/04_calculus_autodiff`
"""
from __future__ import annotations

import contextlib

import numpy as np

from .checks import check_callable

_GRAD_ENABLED = True  # False inside no_grad(): operations record nothing


@contextlib.contextmanager
def no_grad(enabled: bool = False):
    """Context in which operations build no graph (``enabled=True`` keeps recording)."""
    global _GRAD_ENABLED
    previous, _GRAD_ENABLED = _GRAD_ENABLED, enabled
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def _as_float_array(x, name: str, kinds: str = "iuf") -> np.ndarray:
    """A float64 array of the numbers in ``x``; None, a bool, a string or an array of another kind is refused.

    ``kinds`` are the numpy dtype kinds accepted: integers and floats, "b" added where a 0/1 mask is data.
    """
    if x is None or isinstance(x, (bool, str, bytes)):
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a number or an array of numbers: {err}") from None
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{name} must be a number or an array of numbers, got an array of dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_shape_arg(shape) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0
                                                   for n in shape):
        raise TypeError(f"shape must be a tuple of ints >= 0, got {shape!r}")
    return tuple(int(n) for n in shape)


def _check_node(x, name: str = "x") -> "Tensor":
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a mathllm.tensor_autograd.Tensor, got {type(x).__name__}")
    return x


def _lift(x) -> "Tensor":
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, str)) or not isinstance(x, (int, float, np.ndarray, np.floating)):
        raise TypeError(f"a Tensor combines with a Tensor, number or numpy array, got {type(x).__name__}")
    return Tensor(x)


def _op(data, parents, backward, op) -> "Tensor":
    """Make the output node; record the graph only if some input needs a gradient."""
    needs = _GRAD_ENABLED and any(p.requires_grad for p in parents)
    out = Tensor(data, requires_grad=needs)
    if needs:
        out._parents, out._backward, out.op = parents, backward, op
    return out


# ---------------------------------------------------------------------------- the Tensor
class Tensor:
    """An array node of a computation graph; ``data`` is a float64 ``np.ndarray``.

    Leaves made with ``requires_grad=True`` receive ``.grad`` (an ``np.ndarray`` of their shape)
    from :meth:`backward`. For gradients of any node, or of a gradient, use :func:`grad`.

    Book: :doc:`/notebooks/04_calculus_autodiff`, section "Arrays and broadcasting".
    """

    __slots__ = ("data", "requires_grad", "grad", "_parents", "_backward", "op")
    __array_ufunc__ = None  # ndarray + Tensor defers to Tensor.__radd__ instead of looping over it

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            raise TypeError("Tensor(data) needs an array or number, got a Tensor; use .detach() to copy one")
        self.data = _as_float_array(data, "data", kinds="biuf")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._parents, self._backward, self.op = (), None, ""

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    T = property(lambda self: self.transpose())
    mT = T  # torch's name for the transpose of the last two dimensions

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, op={self.op!r}, requires_grad={self.requires_grad})"

    def item(self) -> float:
        return float(self.data)

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    # -- elementwise arithmetic; each rule returns the gradient of every input
    def __add__(self, other):
        a, b = self, _lift(other)
        return _op(a.data + b.data, (a, b), lambda g, out: (sum_to(g, a.shape), sum_to(g, b.shape)), "+")

    def __mul__(self, other):
        a, b = self, _lift(other)
        return _op(a.data * b.data, (a, b), lambda g, out: (sum_to(g * b, a.shape), sum_to(g * a, b.shape)), "*")

    def __pow__(self, k):
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            raise TypeError(f"Tensor ** k needs a constant int or float exponent, got {type(k).__name__}")
        a = self
        return _op(a.data ** k, (a,), lambda g, out: (g * (k * a ** (k - 1)),), f"**{k}")

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-_lift(other))

    def __truediv__(self, other):
        return self * _lift(other) ** -1

    def __radd__(self, other):
        return _lift(other) + self

    def __rmul__(self, other):
        return _lift(other) * self

    def __rsub__(self, other):
        return _lift(other) - self

    def __rtruediv__(self, other):
        return _lift(other) / self

    # -- elementwise functions: d/dx of the forward rule, in terms of the output where cheaper
    def exp(self):
        return _op(np.exp(self.data), (self,), lambda g, out: (g * out,), "exp")

    def log(self):
        a = self
        return _op(np.log(a.data), (a,), lambda g, out: (g / a,), "log")

    def tanh(self):
        return _op(np.tanh(self.data), (self,), lambda g, out: (g * (1.0 - out * out),), "tanh")

    def sigmoid(self):
        s = 0.5 * (1.0 + np.tanh(0.5 * self.data))  # 1/(1+e^-x) without overflow
        return _op(s, (self,), lambda g, out: (g * (out * (1.0 - out)),), "sigmoid")

    def relu(self):
        mask = (self.data > 0).astype(np.float64)  # a constant: relu'' = 0 almost everywhere
        return _op(self.data * mask, (self,), lambda g, out: (g * mask,), "relu")

    # -- linear algebra and shapes
    def __matmul__(self, other):
        a, b = self, _lift(other)
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs operands with at least 2 dimensions, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul needs a.shape[-1] == b.shape[-2], got shapes {a.shape} and {b.shape}")
        # C = A B  =>  dL/dA = G B^T, dL/dB = A^T G; batch dimensions may broadcast, so sum_to
        return _op(a.data @ b.data, (a, b),
                   lambda g, out: (sum_to(g @ b.transpose(), a.shape), sum_to(a.transpose() @ g, b.shape)), "@")

    def transpose(self):
        """Swap the last two dimensions (a plain transpose for matrices)."""
        return _op(np.swapaxes(self.data, -1, -2), (self,), lambda g, out: (g.transpose(),), "T")

    def reshape(self, *shape):
        a = self
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        return _op(a.data.reshape(shape), (a,), lambda g, out: (g.reshape(a.shape),), "reshape")

    def sum(self, axis=None, keepdims: bool = False):
        a = self
        axes = _axes(axis, a.ndim)

        def backward(g, out):  # every summed entry gets the same gradient: broadcast it back
            if not keepdims:
                g = g.reshape(*[1 if i in axes else n for i, n in enumerate(a.shape)])
            return (broadcast_to(g, a.shape),)
        return _op(a.data.sum(axis=axes, keepdims=keepdims), (a,), backward, "sum")

    def mean(self, axis=None, keepdims: bool = False):
        n = int(np.prod([self.shape[i] for i in _axes(axis, self.ndim)]))
        return self.sum(axis, keepdims) * (1.0 / n)

    # -- compositions: their gradients follow from the rules above
    def log_softmax(self, axis: int = -1):
        m = self.data.max(axis=axis, keepdims=True)  # a constant: log_softmax is shift invariant
        shifted = self - m
        return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()

    def softmax(self, axis: int = -1):
        e = (self - self.data.max(axis=axis, keepdims=True)).exp()
        return e / e.sum(axis=axis, keepdims=True)

    def backward(self) -> None:
        """Accumulate d self / d leaf into ``leaf.grad`` for every leaf with ``requires_grad``.

        ``self`` must be a scalar (a loss). Accumulates as torch does: reset ``.grad`` to None
        between steps.
        """
        if self.data.size != 1:
            raise ValueError(f"backward() needs a scalar output, got shape {self.shape}; use grad(y, xs, g)")
        leaves = [n for n in _topological_order(self) if n.requires_grad and not n._parents]
        for leaf, g in zip(leaves, grad(self, leaves)):
            leaf.grad = g.data if leaf.grad is None else leaf.grad + g.data


# ---------------------------------------------------------------------------- broadcasting
def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a {ndim}-d tensor")
    return tuple(sorted(ax % max(ndim, 1) for ax in axes))


def sum_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``x`` over the dimensions that broadcasting added or stretched, so it has ``shape``.

    The adjoint of :func:`broadcast_to`: ``(3, 4) -> (4,)`` sums axis 0, ``(3, 4) -> (3, 1)`` sums
    axis 1 keeping it.
    """
    _check_node(x)
    shape = _check_shape_arg(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)  # dimensions prepended by broadcasting
    if lead < 0 or any(s != 1 and s != n for s, n in zip(shape, x.shape[lead:])):
        raise ValueError(f"cannot sum shape {x.shape} down to {shape}: not a broadcast of it")
    stretched = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1)
    return _op(x.data.sum(axis=stretched).reshape(shape), (x,),
               lambda g, out: (broadcast_to(g, x.shape),), "sum_to")


def broadcast_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Copy ``x`` along new or size-1 dimensions to ``shape``; its adjoint is :func:`sum_to`."""
    _check_node(x)
    shape = _check_shape_arg(shape)
    if x.shape == shape:
        return x
    if x.ndim > len(shape) or any(n != 1 and n != s for n, s in zip(x.shape[::-1], shape[::-1])):
        raise ValueError(f"cannot broadcast shape {x.shape} to {shape}")
    return _op(np.broadcast_to(x.data, shape).copy(), (x,), lambda g, out: (sum_to(g, x.shape),), "broadcast")


# ---------------------------------------------------------------------------- the backward pass
def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that need a gradient, each after its inputs (iterative DFS, no recursion limit)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen and node.requires_grad:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents)
    return order


def grad(y: Tensor, xs, g: Tensor | None = None, create_graph: bool = False) -> list[Tensor]:
    """Gradients of ``y`` with respect to each tensor in ``xs``: the vector-Jacobian products g^T dy/dx.

    Args:
        y: the output; a scalar unless ``g`` (same shape as ``y``) gives the upstream gradient.
        xs: a list of tensors ``y`` depends on (leaves or intermediate nodes).
        g: dL/dy; defaults to 1 for a scalar ``y``.
        create_graph: record the backward pass, so the returned gradients can be differentiated again.

    Returns:
        A list of Tensors, one per ``xs``, each of its shape (zeros where ``y`` does not depend on it).

    Book: :doc:`/notebooks/04_calculus_autodiff`, section "Hessian-vector products".
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a Tensor, got {type(y).__name__}")
    xs = list(xs)
    if not y.requires_grad:
        raise ValueError("y does not depend on any tensor with requires_grad=True: there is no graph to differentiate")
    if g is None:
        if y.data.size != 1:
            raise ValueError(f"grad of a non-scalar y of shape {y.shape} needs g, the upstream gradient")
        g = Tensor(np.ones_like(y.data))
    elif _lift(g).shape != y.shape:
        raise ValueError(f"g must have y's shape {y.shape}, got {_lift(g).shape}")
    grads = {id(y): _lift(g)}
    with no_grad(enabled=create_graph):
        for node in reversed(_topological_order(y)):
            g_node = grads.get(id(node))
            if g_node is None or node._backward is None:
                continue
            for parent, g_parent in zip(node._parents, node._backward(g_node, node)):
                if parent.requires_grad:  # the chain rule: sum over every use of parent
                    prev = grads.get(id(parent))
                    grads[id(parent)] = g_parent if prev is None else prev + g_parent
    return [grads.get(id(x), Tensor(np.zeros_like(x.data))) for x in xs]


def hvp(f, x, v) -> tuple[float, np.ndarray]:
    """The Hessian-vector product H v of a scalar function ``f`` at ``x``, by reverse over reverse.

    H v = d/dx (grad f(x) . v), so one backward pass with ``create_graph=True`` and a second one
    through it give H v at the cost of about two gradients, without forming H.

    Args:
        f: maps a Tensor of ``x``'s shape to a scalar Tensor.
        x, v: arrays of the same shape.

    Returns:
        ``(f(x), Hv)``, the value and an array of ``x``'s shape (like ``torch.autograd.functional.hvp``).
    """
    check_callable(f, "f")
    x, v = _as_float_array(x, "x"), _as_float_array(v, "v")
    if x.shape != v.shape:
        raise ValueError(f"v must have x's shape {x.shape}, got {v.shape}")
    xt = Tensor(x, requires_grad=True)
    y = f(xt)
    if not isinstance(y, Tensor) or y.data.size != 1:
        raise ValueError(f"f must return a scalar Tensor, got {y!r}")
    (g,) = grad(y, [xt], create_graph=True)
    (hv,) = grad((g * v).sum(), [xt])
    return y.item(), hv.data


def jacobian(f, x) -> np.ndarray:
    """The Jacobian dy/dx of ``f`` at ``x``, one reverse pass per output: shape ``y.shape + x.shape``."""
    check_callable(f, "f")
    x = _as_float_array(x, "x")
    xt = Tensor(x, requires_grad=True)
    y = f(xt)
    if not isinstance(y, Tensor):
        raise TypeError(f"f must return a Tensor, got {type(y).__name__}")
    rows = []
    for i in range(y.data.size):
        e = np.zeros(y.data.size)
        e[i] = 1.0  # picks row i: e^T J
        rows.append(grad(y, [xt], g=Tensor(e.reshape(y.shape)))[0].data)
    return np.stack(rows).reshape(y.shape + x.shape)


def hessian(f, x) -> np.ndarray:
    """The Hessian of a scalar ``f`` at a vector ``x``, column by column with :func:`hvp`."""
    check_callable(f, "f")
    x = _as_float_array(x, "x")
    if x.ndim != 1:
        raise ValueError(f"hessian needs a 1-d x, got shape {x.shape}")
    return np.stack([hvp(f, x, e)[1] for e in np.eye(x.size)], axis=1)


# ---------------------------------------------------------------------------- a recurrent network
def rnn_states(W, U, xs, h0, linear: bool = False) -> list[Tensor]:
    """The hidden states h_0, ..., h_T of h_t = tanh(W h_{t-1} + U x_t) (no tanh if ``linear``).

    Args:
        W: (H, H) recurrent weights; U: (H, D) input weights; xs: (T, D) inputs; h0: (H,) start
            state (an array becomes a leaf with ``requires_grad=True``, so the states form a graph).

    Returns:
        T + 1 Tensors of shape (H,), all in one graph, so ``grad(L, states)`` gives dL/dh_t for every t:
        the product of the Jacobians dh_{s}/dh_{s-1} = diag(tanh'(.)) W for s > t.
    """
    W, U = _lift(W), _lift(U)
    h = h0 if isinstance(h0, Tensor) else Tensor(h0, requires_grad=True)
    xs = np.asarray(xs, dtype=np.float64)
    H = h.shape[0] if h.ndim == 1 else -1
    if h.ndim != 1 or W.shape != (H, H) or xs.ndim != 2 or U.shape != (H, xs.shape[1]):
        raise ValueError(f"need W (H, H), U (H, D), xs (T, D), h0 (H,); got W {W.shape}, U {U.shape}, "
                         f"xs {xs.shape}, h0 {h.shape}")
    states = [h]
    for x_t in xs:  # (H, H) @ (H, 1) + (H, D) @ (D, 1) -> (H, 1)
        pre = (W @ h.reshape(H, 1) + U @ x_t.reshape(-1, 1)).reshape(H)
        h = pre if linear else pre.tanh()
        states.append(h)
    return states


# ---------------------------------------------------------------------------- the top of the Hessian
def hessian_power_iteration(f, x, v0, iters: int = 200) -> tuple[float, np.ndarray]:
    """The Hessian eigenvalue of largest magnitude of a scalar ``f`` at ``x``, from products H v only.

    Power iteration v <- H v / ||H v|| (each product by :func:`hvp`, never forming H) converges to the
    eigenvector of the eigenvalue of largest magnitude, at the rate ``|lambda_2 / lambda_1|`` per step;
    the Rayleigh quotient v . H v is then the eigenvalue (with its sign).

    Args:
        f: maps a Tensor of ``x``'s shape to a scalar Tensor.
        x: the point; v0: the start vector (x's shape, not orthogonal to the top eigenvector).
        iters: the number of products.

    Returns:
        ``(lambda, v)``: the Rayleigh quotient and the unit vector reached.
    """
    check_callable(f, "f")
    x, v = _as_float_array(x, "x"), _as_float_array(v0, "v0")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"v0 must be a finite nonzero vector, got norm {norm}")
    v = v / norm
    for _ in range(iters):
        hv = hvp(f, x, v)[1]
        norm = np.linalg.norm(hv)
        if norm == 0:  # v lies in the null space: H v = 0 is an eigenpair with lambda = 0
            return 0.0, v
        v = hv / norm
    return float(v.ravel() @ hvp(f, x, v)[1].ravel()), v  # Rayleigh quotient v^T H v, ||v|| = 1
