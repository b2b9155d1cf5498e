"""A small multilayer perceptron, three times: on the scalar engine, on the array engine, and on torch.

The network is h_0 = x, h_l = phi(W_l h_{l-1} + b_l) for the hidden layers, and logits
z = W_L h_{L-1} + b_L, trained on the mean cross-entropy with SGD and weight decay
(theta <- theta - lr (grad + weight_decay theta), what ``torch.optim.SGD`` does). The three versions
take the same parameters (:func:`init_params`), the same mini-batches and the same dropout masks
(:func:`dropout_mask`), so their losses agree to rounding: that equality is the test of the
from-scratch engines.

**Inverted dropout** keeps each hidden unit with probability 1 - p and divides the kept ones by
1 - p, so E[mask * h] = h during training and the network is used unchanged at test time.

Leaves out: other optimizers (chapter 6), normalisation layers and residual connections (chapter 11).

Book: :doc:`/notebooks/07_neural_networks`
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .autograd import Value
from .checks import check_float_tensor, check_int, check_number, check_positive_int
from .init import kaiming_uniform, xavier_uniform
from .tensor_autograd import Tensor

ACTIVATION_NAMES = ("tanh", "relu")


@dataclass(frozen=True)
class MLPConfig:
    """The architecture: layer sizes (inputs, hidden..., classes), hidden activation, dropout."""

    sizes: tuple[int, ...] = (2, 16, 16, 3)
    activation: str = "tanh"  # Xavier init for tanh, Kaiming for relu (init.py)
    dropout: float = 0.0  # probability of dropping a hidden unit while training

    def __post_init__(self):
        if not isinstance(self.sizes, (tuple, list)) or len(self.sizes) < 2 or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.sizes):
            raise ValueError(f"sizes must be at least two positive ints (inputs, ..., outputs), got {self.sizes!r}")
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(f"activation must be one of {ACTIVATION_NAMES}, got {self.activation!r}")
        check_number(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class TrainConfig:
    """Plain SGD on mini-batches drawn with their own seeded generator."""

    steps: int = 200
    lr: float = 0.1
    weight_decay: float = 0.0  # L2 on every parameter, added to the gradient as torch.optim.SGD does
    batch_size: int = 64  # capped at the data size; equal to it means full-batch gradient descent
    seed: int = 0  # seeds the batches and the dropout masks

    def __post_init__(self):
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        check_number(self.lr, "lr", low=0.0, low_open=True)
        check_number(self.weight_decay, "weight_decay", low=0.0)
        check_int(self.seed, "seed", low=0)


# ---------------------------------------------------------------------------- shared pieces
def _check_cfg(cfg) -> MLPConfig:
    if not isinstance(cfg, MLPConfig):
        raise TypeError(f"cfg must be an MLPConfig, got {type(cfg).__name__}")
    return cfg


def _check_params(cfg: MLPConfig, params) -> None:
    """``params`` as :func:`init_params` makes them: [W_1, b_1, ..., W_L, b_L] of the sizes of ``cfg``."""
    _check_cfg(cfg)
    if not isinstance(params, (list, tuple)) or len(params) != 2 * (len(cfg.sizes) - 1):
        raise TypeError(f"params must be a list [W_1, b_1, ..., W_L, b_L] of {2 * (len(cfg.sizes) - 1)} tensors "
                        f"(init_params(cfg)), got {type(params).__name__}")
    for l, (fan_in, fan_out) in enumerate(zip(cfg.sizes[:-1], cfg.sizes[1:])):
        for name, p, shape in ((f"W_{l + 1}", params[2 * l], (fan_out, fan_in)), (f"b_{l + 1}", params[2 * l + 1], (fan_out,))):
            check_float_tensor(p, f"params[{name}]")
            if tuple(p.shape) != shape:
                raise ValueError(f"params[{name}] must have shape {shape} for sizes {cfg.sizes}, got {tuple(p.shape)}")


def init_params(cfg: MLPConfig, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """[W_1, b_1, ..., W_L, b_L] in float64; W_l has shape (sizes[l], sizes[l-1]), biases are zero."""
    _check_cfg(cfg)
    params = []
    for fan_in, fan_out in zip(cfg.sizes[:-1], cfg.sizes[1:]):
        if cfg.activation == "relu":
            W = kaiming_uniform((fan_out, fan_in), "relu", generator, torch.float64)
        else:
            W = xavier_uniform((fan_out, fan_in), 1.0, generator, torch.float64)
        params += [W, torch.zeros(fan_out, dtype=torch.float64)]
    return params


def dropout_mask(shape, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A float64 mask of 0 (probability p) and 1 / (1 - p) (probability 1 - p): E[mask] = 1."""
    dims = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
    if not isinstance(dims, (tuple, list, torch.Size)) or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in dims):
        raise ValueError(f"shape must be an int or a tuple of ints >= 0, got {shape!r}")
    check_number(p, "p", low=0.0, high=1.0, high_open=True)  # the dropout probability
    keep = torch.rand(shape, generator=generator, dtype=torch.float64) >= p
    return keep.to(torch.float64) / (1.0 - p)


def inverted_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None,
                     training: bool = True) -> torch.Tensor:
    """Zero each entry of ``x`` with probability p and scale the rest by 1 / (1 - p); identity if not training."""
    check_float_tensor(x, "x")
    check_number(p, "p", low=0.0, high=1.0, high_open=True)
    if not training or p == 0.0:
        return x
    return x * dropout_mask(x.shape, p, generator).to(x.dtype)


def make_spirals(n: int, classes: int = 3, noise: float = 0.2, flip: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of ``classes`` interleaved spiral arms in the plane: X (n, 2) float64, y (n,) int64.

    ``noise`` jitters the angle; a fraction ``flip`` of the labels is replaced by a uniformly random
    class (label noise, which a large enough network memorises: over-fitting).
    """
    check_int(classes, "classes", low=2)
    check_int(n, "n", low=classes)  # at least one point per class
    check_number(noise, "noise", low=0.0)
    check_number(flip, "flip", low=0.0, high=1.0)  # a fraction of the labels
    y = torch.arange(n) % classes
    r = torch.rand(n, generator=generator, dtype=torch.float64)  # radius in [0, 1)
    theta = 4.0 * r + 2.0 * math.pi * y / classes + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    X = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1)
    flipped = torch.rand(n, generator=generator) < flip
    y = torch.where(flipped, torch.randint(0, classes, (n,), generator=generator), y)
    return X, y


def _batches(n: int, tcfg: TrainConfig, hidden: tuple[int, ...], p: float):
    """The same (indices, masks) sequence for every engine: one generator, drawn in one order."""
    g = torch.Generator().manual_seed(tcfg.seed)
    B = min(tcfg.batch_size, n)
    for _ in range(tcfg.steps):
        idx = torch.arange(n) if B == n else torch.randperm(n, generator=g)[:B]
        masks = [dropout_mask((B, h), p, g) for h in hidden] if p > 0 else None
        yield idx, masks


def _check_data(X, y, cfg: MLPConfig) -> None:
    if X.ndim != 2 or X.shape[1] != cfg.sizes[0] or y.shape != (X.shape[0],):
        raise ValueError(f"need X (N, {cfg.sizes[0]}) and y (N,), got X {tuple(X.shape)} and y {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= cfg.sizes[-1]:
        raise ValueError(f"class labels must lie in [0, {cfg.sizes[-1]}), got range [{int(y.min())}, {int(y.max())}]")


# ---------------------------------------------------------------------------- the array engine
class ScratchMLP:
    """The MLP on :class:`~mathllm.tensor_autograd.Tensor`; ``params`` hold float64 arrays."""

    def __init__(self, cfg: MLPConfig, params: list[torch.Tensor]):
        _check_params(cfg, params)
        self.cfg = cfg
        self.params = [Tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]

    def __call__(self, X, masks=None) -> Tensor:
        h = Tensor(np.asarray(X, dtype=np.float64))  # (N, in)
        L = len(self.params) // 2
        for l in range(L):
            W, b = self.params[2 * l], self.params[2 * l + 1]
            h = h @ W.T + b  # (N, fan_in) @ (fan_in, fan_out) + (fan_out,) -> (N, fan_out)
            if l < L - 1:
                h = h.tanh() if self.cfg.activation == "tanh" else h.relu()
                if masks is not None:
                    h = h * masks[l].numpy()
        return h

    def loss(self, X, y, masks=None) -> Tensor:
        """Mean cross-entropy -1/N sum_n log softmax(z_n)_{y_n}, as a one-hot contraction."""
        logits = self(X, masks)  # (N, V)
        onehot = np.eye(logits.shape[1])[np.asarray(y)]  # (N, V)
        return -(logits.log_softmax(axis=1) * onehot).sum() * (1.0 / logits.shape[0])

    def fit(self, X, y, tcfg: TrainConfig) -> list[float]:
        """SGD with weight decay; returns the training loss before each step."""
        _check_data(X, y, self.cfg)
        X, y = np.asarray(X), np.asarray(y)
        losses = []
        for idx, masks in _batches(len(X), tcfg, self.cfg.sizes[1:-1], self.cfg.dropout):
            loss = self.loss(X[idx.numpy()], y[idx.numpy()], masks)
            for p in self.params:
                p.grad = None
            loss.backward()
            for p in self.params:  # theta <- theta - lr (g + lambda theta)
                p.data -= tcfg.lr * (p.grad + tcfg.weight_decay * p.data)
            losses.append(loss.item())
        return losses


# ---------------------------------------------------------------------------- torch
class TorchMLP(torch.nn.Module):
    """The same MLP with ``nn.Linear`` layers, trained with ``torch.optim.SGD``."""

    def __init__(self, cfg: MLPConfig, params: list[torch.Tensor]):
        _check_params(cfg, params)
        super().__init__()
        self.cfg = cfg
        self.layers = torch.nn.ModuleList(torch.nn.Linear(i, o, dtype=torch.float64)
                                          for i, o in zip(cfg.sizes[:-1], cfg.sizes[1:]))
        with torch.no_grad():
            for l, layer in enumerate(self.layers):
                layer.weight.copy_(params[2 * l])
                layer.bias.copy_(params[2 * l + 1])

    def forward(self, X: torch.Tensor, masks=None) -> torch.Tensor:
        h = X
        for l, layer in enumerate(self.layers):
            h = layer(h)  # (N, fan_in) -> (N, fan_out)
            if l < len(self.layers) - 1:
                h = torch.tanh(h) if self.cfg.activation == "tanh" else torch.relu(h)
                if masks is not None:
                    h = h * masks[l]
        return h

    def fit(self, X: torch.Tensor, y: torch.Tensor, tcfg: TrainConfig) -> list[float]:
        """SGD with weight decay through ``torch.optim.SGD``; the training loss before each step."""
        _check_data(X, y, self.cfg)
        opt = torch.optim.SGD(self.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        losses = []
        for idx, masks in _batches(len(X), tcfg, self.cfg.sizes[1:-1], self.cfg.dropout):
            loss = F.cross_entropy(self(X[idx], masks), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses


# ---------------------------------------------------------------------------- the scalar engine
class ScalarMLP:
    """The MLP on :class:`~mathllm.autograd.Value`, one scalar per weight (slow: for small checks)."""

    def __init__(self, cfg: MLPConfig, params: list[torch.Tensor]):
        _check_params(cfg, params)
        if cfg.dropout:
            raise ValueError(f"ScalarMLP has no dropout, got cfg.dropout={cfg.dropout}")
        self.cfg = cfg
        self.shapes = [tuple(p.shape) for p in params]
        self.params = [[[Value(float(w)) for w in row] for row in p.reshape(p.shape[0], -1).tolist()] for p in params]

    def parameters(self) -> list[Value]:
        return [v for p in self.params for row in p for v in row]

    def __call__(self, x) -> list[Value]:
        h = [Value(float(v)) for v in x]
        L = len(self.params) // 2
        for l in range(L):
            W, b = self.params[2 * l], self.params[2 * l + 1]
            h = [sum((w * hi for w, hi in zip(row, h)), bias[0]) for row, bias in zip(W, b)]  # W h + b
            if l < L - 1:
                h = [v.tanh() if self.cfg.activation == "tanh" else v.relu() for v in h]
        return h

    def loss(self, X, y) -> Value:
        """Mean cross-entropy over the rows of X: logsumexp(z) - z_y, with the max subtracted as a constant."""
        total = Value(0.0)
        for x, target in zip(X.tolist(), y.tolist()):
            z = self(x)
            m = max(v.data for v in z)
            total = total + (sum((v - m).exp() for v in z).log() + m - z[target])
        return total * (1.0 / len(y))

    def grads(self) -> list[torch.Tensor]:
        """The gradients after ``loss(...).backward()``, shaped as the parameters of :func:`init_params`."""
        return [torch.tensor([[v.grad for v in row] for row in p], dtype=torch.float64).reshape(shape)
                for p, shape in zip(self.params, self.shapes)]

    def fit(self, X, y, tcfg: TrainConfig) -> list[float]:
        """SGD with weight decay, one scalar at a time; the training loss before each step."""
        _check_data(X, y, self.cfg)
        losses = []
        for idx, _ in _batches(len(X), tcfg, self.cfg.sizes[1:-1], 0.0):
            loss = self.loss(X[idx], y[idx])
            loss.backward()  # resets every grad of the graph first
            for v in self.parameters():
                v.data -= tcfg.lr * (v.grad + tcfg.weight_decay * v.data)
            losses.append(loss.data)
        return losses
