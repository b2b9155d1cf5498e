"""First-order optimizers, from plain SGD to AdamW, as ``torch.optim.Optimizer`` subclasses.

In order of increasing complexity, each one a small change to the one before (g = gradient)::

    SGD       theta -= lr * g                                   (+ momentum, Nesterov)
    AdaGrad   s += g^2;                        theta -= lr * g / (sqrt(s) + eps)
    RMSProp   s = alpha s + (1 - alpha) g^2;   theta -= lr * g / (sqrt(s) + eps)
    Adam      m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
              theta -= lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
    AdamW     Adam, with weight decay applied to theta (theta <- (1 - lr wd) theta) instead of added to g

Each class equals its ``torch.optim`` namesake step by step (same state names, so ``state_dict``\\ s
load across), with the defaults and argument names of torch. ``Adam``/``AdamW`` have a readable loop
(``foreach=False``) and a fast path over all tensors at once with ``torch._foreach_*`` (the default);
the tests hold both to torch.

References: Polyak (1964); Nesterov (1983); Duchi, Hazan & Singer (2011) AdaGrad; Hinton's lecture 6e
RMSProp; Kingma & Ba (2015) Adam; Loshchilov & Hutter (2019) AdamW.
Leaves out: dampening, ``maximize``, AMSGrad, centered RMSProp, AdaGrad's ``lr_decay``, sparse
gradients, fused/capturable kernels and tensor learning rates.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim import Optimizer

from .checks import check_float_tensor, check_number


# ---------------------------------------------------------------------------- helpers
def _check_params(params):
    """torch.optim's rule for ``params``: an iterable, not a tensor, of tensors or parameter-group dicts."""
    if isinstance(params, (torch.Tensor, str, bytes)) or not isinstance(params, Iterable):
        raise TypeError("params must be an iterable of tensors or of parameter-group dicts "
                        f"(model.parameters(), [x]), got {type(params).__name__}")
    return params


def _check_betas(betas) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    check_number(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True)
    check_number(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True)


def _params_with_grad(group: dict) -> list[torch.Tensor]:
    params = [p for p in group["params"] if p.grad is not None]
    for p in params:
        if p.grad.is_sparse:
            raise TypeError("sparse gradients are not supported (use torch.optim.SparseAdam)")
    return params


def adam_direction(m_hat: torch.Tensor, v_hat: torch.Tensor, eps: float, *,
                   eps_inside_sqrt: bool = False) -> torch.Tensor:
    """The Adam step direction m_hat / (sqrt(v_hat) + eps), any shape.

    ``eps_inside_sqrt=True`` gives m_hat / sqrt(v_hat + eps), the variant some texts print. The two
    agree when sqrt(v_hat) >> eps and differ where gradients are tiny: inside the root, eps caps the
    step at m_hat / sqrt(eps), so eps inside behaves like eps**2 outside.
    """
    check_float_tensor(m_hat, "m_hat")
    check_float_tensor(v_hat, "v_hat")
    if m_hat.shape != v_hat.shape:
        raise ValueError(f"m_hat and v_hat must have the same shape, got {tuple(m_hat.shape)} and {tuple(v_hat.shape)}")
    if bool((v_hat < 0).any()):  # a mean of squares; NaN passes through, as torch's Adam lets it
        raise ValueError(f"v_hat must be >= 0 (a mean of squared gradients), got min {float(v_hat.min()):g}")
    check_number(eps, "eps", low=0.0)
    if eps_inside_sqrt:
        return m_hat / (v_hat + eps).sqrt()
    return m_hat / (v_hat.sqrt() + eps)


# ---------------------------------------------------------------------------- SGD
class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball or Nesterov) momentum and L2 weight decay.

    With momentum mu, torch's form b = mu b + g, theta -= lr b (b starts at the first g) is Polyak's heavy
    ball theta_{t+1} = theta_t - lr g_t + mu (theta_t - theta_{t-1}); Nesterov steps along g + mu b.
    Equals ``torch.optim.SGD`` with ``dampening=0``.
    """

    def __init__(self, params, lr: float = 1e-3, *, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        _check_params(params)
        check_number(lr, "lr", low=0.0)
        check_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        check_number(weight_decay, "weight_decay", low=0.0)
        if nesterov and momentum == 0:
            raise ValueError(f"nesterov=True needs momentum > 0, got momentum={momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in _params_with_grad(group):
                g = p.grad
                if wd != 0:
                    g = g.add(p, alpha=wd)                  # L2: gradient of wd/2 |theta|^2
                if mu != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.detach().clone()
                    else:
                        buf.mul_(mu).add_(g)                # b = mu b + g
                    g = g.add(buf, alpha=mu) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)
        return loss


# ---------------------------------------------------------------------------- AdaGrad, RMSProp
class AdaGrad(Optimizer):
    """AdaGrad: each coordinate's step is divided by the root of its summed squared gradients.

    Equals ``torch.optim.Adagrad`` with ``lr_decay=0`` and ``initial_accumulator_value=0``.
    """

    def __init__(self, params, lr: float = 1e-2, *, weight_decay: float = 0.0, eps: float = 1e-10) -> None:
        _check_params(params)
        check_number(lr, "lr", low=0.0)
        check_number(weight_decay, "weight_decay", low=0.0)
        check_number(eps, "eps", low=0.0)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in _params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] = int(state["step"]) + 1
                g = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state["sum"].addcmul_(g, g)                 # s = s + g^2
                std = state["sum"].sqrt().add_(group["eps"])
                p.addcdiv_(g, std, value=-group["lr"])
        return loss


class RMSProp(Optimizer):
    """RMSProp: AdaGrad with the sum replaced by an exponential moving average (decay ``alpha``).

    Equals ``torch.optim.RMSprop`` with ``centered=False``.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        _check_params(params)
        check_number(lr, "lr", low=0.0)
        check_number(alpha, "alpha", low=0.0, high=1.0)
        check_number(eps, "eps", low=0.0)
        check_number(weight_decay, "weight_decay", low=0.0)
        check_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, mu = group["alpha"], group["momentum"]
            for p in _params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if mu > 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] = int(state["step"]) + 1
                g = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state["square_avg"].mul_(alpha).addcmul_(g, g, value=1 - alpha)  # s = alpha s + (1-alpha) g^2
                avg = state["square_avg"].sqrt().add_(group["eps"])
                if mu > 0:
                    state["momentum_buffer"].mul_(mu).addcdiv_(g, avg)
                    p.add_(state["momentum_buffer"], alpha=-group["lr"])
                else:
                    p.addcdiv_(g, avg, value=-group["lr"])
        return loss


# ---------------------------------------------------------------------------- Adam, AdamW
class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is L2 (added to the gradient), as in ``torch.optim.Adam``.

    ``foreach=True`` updates all tensors of a group with ``torch._foreach_*`` kernels (fast);
    ``foreach=False`` is the readable loop. Both equal torch.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, foreach: bool = True) -> None:
        _check_params(params)
        check_number(lr, "lr", low=0.0)
        _check_betas(betas)
        check_number(eps, "eps", low=0.0)
        check_number(weight_decay, "weight_decay", low=0.0)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = _params_with_grad(group)
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] = int(state["step"]) + 1  # int(): a torch state_dict stores a tensor
            if params:
                # a torch state_dict has foreach=None ("let torch choose"): we choose the fast path
                (self._update_loop if group.get("foreach") is False else self._update_foreach)(group, params)
        return loss

    def _update_loop(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in params:
            state, g = self.state[p], p.grad
            if wd != 0:
                if self.decoupled_weight_decay:
                    p.mul_(1 - lr * wd)                      # eq. (adamw-update): decay theta, not g
                else:
                    g = g.add(p, alpha=wd)                   # L2: the decay passes through m and v
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(g, 1 - beta1)                            # m = beta1 m + (1 - beta1) g
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)    # v = beta2 v + (1 - beta2) g^2
            bias_correction1 = 1 - beta1 ** t                # E[m_t] = (1 - beta1^t) E[g]
            bias_correction2 = 1 - beta2 ** t
            denom = (v.sqrt() / bias_correction2 ** 0.5).add_(eps)  # sqrt(v_hat) + eps
            p.addcdiv_(m, denom, value=-lr / bias_correction1)      # theta -= lr m_hat / (sqrt(v_hat) + eps)

    def _update_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        m = [self.state[p]["exp_avg"] for p in params]
        v = [self.state[p]["exp_avg_sq"] for p in params]
        steps = [self.state[p]["step"] for p in params]
        if wd != 0:
            if self.decoupled_weight_decay:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [(1 - beta2 ** t) ** 0.5 for t in steps])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, [-lr / (1 - beta1 ** t) for t in steps])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): theta <- (1 - lr weight_decay) theta each step.

    Same constructor as ``torch.optim.AdamW`` (``weight_decay`` defaults to 1e-2) and equal to it.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, foreach: bool = True) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, foreach=foreach)
