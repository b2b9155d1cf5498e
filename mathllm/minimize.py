"""Unconstrained minimization of f: R^n -> R beyond plain gradient steps: Newton, nonlinear CG, BFGS, L-BFGS.

Every method takes ``f`` (a function of a 1-D float tensor returning a scalar tensor; gradients and
Hessians come from torch.autograd) and a start ``x0`` (n,), and returns a :class:`Result` with the
path and the number of function, gradient and Hessian evaluations, so methods can be compared::

    Newton      d = -H^-1 g (H shifted by tau I until positive definite), backtracking step
    nonlin. CG  d = -g + beta d_prev, beta = max(0, g^T (g - g_prev) / norm(g_prev)^2) (Polak-Ribiere+)
    BFGS        d = -H_inv g, H_inv <- (I - rho s y^T) H_inv (I - rho y s^T) + rho s s^T, rho = 1 / y^T s
    L-BFGS      the same H_inv applied by the two-loop recursion from the last m pairs (s, y)

The line search finds a step with sufficient decrease and (strong Wolfe) a flattened slope.
:func:`run_optimizer` drives any ``torch.optim.Optimizer`` (``mathllm.optim`` included) on the same f.

References: Nocedal & Wright, *Numerical Optimization* (2006), algorithms 3.5-3.6 (line search), 5.4 (CG),
6.1 (BFGS), 7.4-7.5 (L-BFGS); ``torch.optim.LBFGS`` (whose step rule ``line_search=None`` follows).
Leaves out: trust regions, quasi-Newton updates other than BFGS, bound constraints.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .checks import check_callable, check_float_tensor, check_number, check_positive_int, check_tensor


# ---------------------------------------------------------------------------- result and counting
@dataclass(frozen=True)
class Result:
    """What a minimizer returns."""

    x: torch.Tensor          # (n,) the final point
    fun: float               # f(x)
    path: torch.Tensor       # (k + 1, n) the iterates, x0 first
    iterations: int          # k, the number of updates
    n_fun: int               # function evaluations (a value-and-gradient evaluation counts once here ...)
    n_grad: int              # ... and once here)
    n_hess: int              # Hessian evaluations
    seconds: float           # wall time
    converged: bool          # stopped by the gradient tolerance (not by max_iter or divergence)
    info: dict = field(default_factory=dict, compare=False)  # method-specific extras


class _Counted:
    """f with evaluation counters; value_and_grad and hessian through torch.autograd."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor]):
        self.f, self.n_fun, self.n_grad, self.n_hess = f, 0, 0, 0

    def value(self, x: torch.Tensor) -> float:
        self.n_fun += 1
        with torch.no_grad():
            return float(self.f(x))

    def value_and_grad(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        self.n_fun += 1
        self.n_grad += 1
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            fx = self.f(x)
            (g,) = torch.autograd.grad(fx, x)
        return float(fx.detach()), g

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        self.n_hess += 1
        return torch.autograd.functional.hessian(self.f, x.detach())


def _start(f, x0) -> tuple[_Counted, torch.Tensor]:
    check_callable(f, "f")
    check_tensor(x0, "x0")
    if x0.dim() != 1 or not x0.is_floating_point():
        raise ValueError(f"x0 must be a 1-D floating tensor (n,), got shape {tuple(x0.shape)} dtype {x0.dtype}")
    return _Counted(f), x0.detach().clone()


def _result(fc: _Counted, x, fx, path, k, t0, converged, **info) -> Result:
    return Result(x, fx, torch.stack(path), k, fc.n_fun, fc.n_grad, fc.n_hess, time.perf_counter() - t0,
                  converged, info)


# ---------------------------------------------------------------------------- line searches
def _check_line_search(fc, x, fx, g, d, alpha, c1, max_evals) -> _Counted:
    """The checks of the public line searches; the minimizers call the unchecked ``_backtracking``, ``_wolfe``."""
    if not isinstance(fc, _Counted):
        fc = _Counted(check_callable(fc, "fc"))
    for name, v in (("x", x), ("g", g), ("d", d)):
        check_float_tensor(v, name)
    if x.dim() != 1 or not x.shape == g.shape == d.shape:
        raise ValueError(f"x, g and d must be 1-D tensors of one shape (n,), got shapes {tuple(x.shape)}, "
                         f"{tuple(g.shape)} and {tuple(d.shape)}")
    check_number(fx, "fx")
    check_number(alpha, "alpha", low=0.0, low_open=True)
    check_number(c1, "c1", low=0.0, high=1.0, low_open=True, high_open=True)
    check_positive_int(max_evals, "max_evals")
    slope = float(g @ d)
    if not slope < 0:  # along an ascent direction no step decreases f: the search would only shrink
        raise ValueError(f"d must be a descent direction (g^T d < 0), got g^T d = {slope:g}")
    return fc


def backtracking(fc: _Counted | Callable, x, fx: float, g, d, *, alpha: float = 1.0, c1: float = 1e-4,
                 shrink: float = 0.5, max_evals: int = 50) -> float:
    """Largest alpha = alpha0 shrink^j with f(x + alpha d) <= f(x) + c1 alpha g^T d (Armijo).

    ``fc`` is the function f (or the counted f of a minimizer); x, g = grad f(x) and the descent
    direction d are (n,) float tensors, fx = f(x).
    """
    fc = _check_line_search(fc, x, fx, g, d, alpha, c1, max_evals)
    check_number(shrink, "shrink", low=0.0, high=1.0, low_open=True, high_open=True)
    return _backtracking(fc, x, fx, g, d, alpha=alpha, c1=c1, shrink=shrink, max_evals=max_evals)


def _backtracking(fc: _Counted, x, fx: float, g, d, *, alpha: float = 1.0, c1: float = 1e-4,
                  shrink: float = 0.5, max_evals: int = 50) -> float:
    slope = float(g @ d)
    for _ in range(max_evals):
        f_new = fc.value(x + alpha * d)
        if math.isfinite(f_new) and f_new <= fx + c1 * alpha * slope:
            return alpha
        alpha *= shrink
    return alpha


def _cubic_min(a, fa, ga, b, fb, gb):
    """Minimizer of the cubic through (a, fa, ga), (b, fb, gb), kept inside the middle 80% of [a, b]."""
    lo, hi = min(a, b), max(a, b)
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - ga * gb
    if disc >= 0:
        d2 = math.copysign(math.sqrt(disc), b - a)
        t = b - (b - a) * (gb + d2 - d1) / (gb - ga + 2 * d2)
        if lo + 0.1 * (hi - lo) <= t <= hi - 0.1 * (hi - lo):
            return t
    return 0.5 * (lo + hi)


def wolfe_line_search(fc: _Counted | Callable, x, fx: float, g, d, *, alpha: float = 1.0, c1: float = 1e-4,
                      c2: float = 0.9, max_evals: int = 25):
    """A step alpha with the strong Wolfe conditions (Nocedal & Wright alg. 3.5 with 3.6's zoom).

    ``fc`` is the function f (or the counted f of a minimizer); x, g = grad f(x) and the descent
    direction d are (n,) float tensors, fx = f(x); ``0 < c1 < c2 < 1``.
    Returns ``(alpha, f(x + alpha d), grad(x + alpha d))``.
    """
    fc = _check_line_search(fc, x, fx, g, d, alpha, c1, max_evals)
    check_number(c2, "c2", low=c1, high=1.0, low_open=True, high_open=True)
    return _wolfe(fc, x, fx, g, d, alpha=alpha, c1=c1, c2=c2, max_evals=max_evals)


def _wolfe(fc: _Counted, x, fx: float, g, d, *, alpha: float = 1.0, c1: float = 1e-4,
           c2: float = 0.9, max_evals: int = 25):
    def phi(a):                        # (step, value, slope along d, gradient)
        fa, ga = fc.value_and_grad(x + a * d)
        return a, fa, float(ga @ d), ga

    slope0 = float(g @ d)
    prev, evals = (0.0, fx, slope0, g), 0
    while True:                        # bracket: double the step until it overshoots
        cur = phi(alpha)
        evals += 1
        _, fa, sa, _ = cur
        if not math.isfinite(fa) or fa > fx + c1 * alpha * slope0 or (evals > 1 and fa >= prev[1]):
            lo, hi = prev, cur
            break
        if abs(sa) <= -c2 * slope0:
            return alpha, fa, cur[3]
        if sa >= 0:
            lo, hi = cur, prev
            break
        if evals >= max_evals:
            return alpha, fa, cur[3]
        prev, alpha = cur, 2 * alpha
    while evals < max_evals:           # zoom: shrink [lo, hi] around a point with the Wolfe conditions
        if math.isfinite(hi[1]) and math.isfinite(hi[2]):
            a = _cubic_min(lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])
        else:
            a = 0.5 * (lo[0] + hi[0])
        cur = phi(a)
        evals += 1
        _, fa, sa, ga = cur
        if not math.isfinite(fa) or fa > fx + c1 * a * slope0 or fa >= lo[1]:
            hi = cur
        else:
            if abs(sa) <= -c2 * slope0:
                return a, fa, ga
            if sa * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = cur
    return lo[0], lo[1], lo[3]         # out of evaluations: the best point seen (sufficient decrease)


# ---------------------------------------------------------------------------- methods
def run_optimizer(f, x0: torch.Tensor, make_optimizer: Callable, *, max_iter: int = 1000, tol: float = 1e-6) -> Result:
    """Minimize f with a ``torch.optim.Optimizer``: ``make_optimizer([x])`` builds it, one f and grad per step."""
    fc, x = _start(f, x0)
    t0 = time.perf_counter()
    x.requires_grad_()
    opt = make_optimizer([x])
    path, converged, k = [x.detach().clone()], False, 0
    for k in range(max_iter + 1):
        fx, g = fc.value_and_grad(x)
        if not math.isfinite(fx) or g.abs().max() <= tol:
            converged = math.isfinite(fx)
            break
        if k == max_iter:
            break
        x.grad = g
        opt.step()
        path.append(x.detach().clone())
    return _result(fc, x.detach(), fx, path, len(path) - 1, t0, converged)


def newton(f, x0: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-8) -> Result:
    """Damped Newton: solve (H + tau I) d = -g with the smallest tau in {0, 1e-3, 2e-3, ...} that makes
    H + tau I positive definite (Cholesky succeeds), then backtrack from the full step alpha = 1."""
    fc, x = _start(f, x0)
    t0 = time.perf_counter()
    path, converged, k = [x.clone()], False, 0
    for k in range(max_iter + 1):
        fx, g = fc.value_and_grad(x)
        if g.abs().max() <= tol:
            converged = True
            break
        if k == max_iter:
            break
        H, tau = fc.hessian(x), 0.0
        eye = torch.eye(len(x), dtype=x.dtype)
        while True:
            chol, bad = torch.linalg.cholesky_ex(H + tau * eye)
            if bad == 0:
                break
            tau = max(2 * tau, 1e-3 * float(H.diagonal().abs().max()) + 1e-12)
        d = -torch.cholesky_solve(g.unsqueeze(1), chol).squeeze(1)   # d = -(H + tau I)^-1 g
        x = x + _backtracking(fc, x, fx, g, d) * d
        path.append(x.clone())
    return _result(fc, x, fx, path, len(path) - 1, t0, converged)


def nonlinear_cg(f, x0: torch.Tensor, *, max_iter: int = 1000, tol: float = 1e-6) -> Result:
    """Polak-Ribiere+ conjugate gradient with a strong Wolfe line search (c2 = 0.1); restarts along -g
    whenever the new direction is not a descent direction."""
    fc, x = _start(f, x0)
    t0 = time.perf_counter()
    fx, g = fc.value_and_grad(x)
    d, alpha0 = -g, 1.0 / max(float(g.abs().sum()), 1.0)
    path, converged = [x.clone()], bool(g.abs().max() <= tol)
    while not converged and len(path) <= max_iter:
        alpha, fx, g_new = _wolfe(fc, x, fx, g, d, alpha=alpha0, c2=0.1)
        x = x + alpha * d
        path.append(x.clone())
        if g_new.abs().max() <= tol or alpha == 0.0:
            converged = bool(g_new.abs().max() <= tol)
            break
        beta = max(0.0, float(g_new @ (g_new - g) / (g @ g)))
        d_new = -g_new + beta * d
        if float(g_new @ d_new) >= 0:
            d_new = -g_new
        alpha0 = alpha * float(g @ d) / float(g_new @ d_new)   # N&W (3.60): expect the same first-order change
        g, d = g_new, d_new
        converged = bool(g.abs().max() <= tol)
    return _result(fc, x, fx, path, len(path) - 1, t0, converged)


def bfgs(f, x0: torch.Tensor, *, max_iter: int = 1000, tol: float = 1e-6) -> Result:
    """BFGS with a dense inverse-Hessian estimate and a strong Wolfe line search (c2 = 0.9).

    The first estimate is scaled by y^T s / y^T y after the first step (N&W eq. 6.20). ``info``
    holds the final ``inverse_hessian`` (n, n).
    """
    fc, x = _start(f, x0)
    t0 = time.perf_counter()
    n = len(x)
    eye = torch.eye(n, dtype=x.dtype)
    H = eye.clone()
    fx, g = fc.value_and_grad(x)
    path, converged = [x.clone()], bool(g.abs().max() <= tol)
    while not converged and len(path) <= max_iter:
        d = -H @ g
        alpha0 = 1.0 if not torch.equal(H, eye) else min(1.0, 1.0 / float(g.abs().sum()))
        alpha, f_new, g_new = _wolfe(fc, x, fx, g, d, alpha=alpha0)
        if alpha == 0.0:               # no acceptable step along d: forget the curvature estimate, once
            if torch.equal(H, eye):
                break
            H = eye.clone()
            continue
        s, y, fx = alpha * d, g_new - g, f_new
        x = x + s
        path.append(x.clone())
        sy = float(s @ y)
        if sy > 1e-10 * float(s.norm() * y.norm()):   # curvature condition (scale-free); Wolfe guarantees it
            if len(path) == 2:
                H = (sy / float(y @ y)) * eye
            rho = 1.0 / sy
            V = eye - rho * torch.outer(y, s)                           # (n, n)
            H = V.T @ H @ V + rho * torch.outer(s, s)                   # secant: H_new y = s
        g = g_new
        converged = bool(g.abs().max() <= tol)
    return _result(fc, x, fx, path, len(path) - 1, t0, converged, inverse_hessian=H)


def lbfgs(f, x0: torch.Tensor, *, history: int = 10, max_iter: int = 1000, tol: float = 1e-6,
          line_search: str | None = "strong_wolfe", lr: float = 1.0) -> Result:
    """L-BFGS: BFGS's inverse Hessian applied implicitly from the last ``history`` pairs (s, y).

    ``line_search=None`` takes fixed steps ``lr`` (the first one scaled by min(1, 1 / norm_1(g))), and then
    follows ``torch.optim.LBFGS(line_search_fn=None)`` iterate for iterate; ``"strong_wolfe"`` searches
    from that step with :func:`wolfe_line_search`.
    """
    if line_search not in (None, "strong_wolfe"):
        raise ValueError(f"line_search must be None or 'strong_wolfe', got {line_search!r}")
    fc, x = _start(f, x0)
    t0 = time.perf_counter()
    S, Y, rho = [], [], []
    gamma = 1.0                               # H_0 = gamma I, gamma = s^T y / y^T y of the newest pair
    fx, g = fc.value_and_grad(x)
    path, converged = [x.clone()], bool(g.abs().max() <= tol)
    while not converged and len(path) <= max_iter:
        q = -g                                # two-loop recursion: d = -H g
        a = [0.0] * len(S)
        for i in reversed(range(len(S))):
            a[i] = float(S[i] @ q) * rho[i]
            q = q - a[i] * Y[i]
        d = gamma * q
        for i in range(len(S)):
            beta = float(Y[i] @ d) * rho[i]
            d = d + (a[i] - beta) * S[i]
        t = min(1.0, 1.0 / float(g.abs().sum())) * lr if len(path) == 1 else lr
        if float(g @ d) > 0:                  # not a descent direction: nothing sensible to do
            break
        if line_search is None:
            x_new = x + t * d
            f_new, g_new = fc.value_and_grad(x_new)
        else:
            t, f_new, g_new = _wolfe(fc, x, fx, g, d, alpha=t)
            if t == 0.0:                      # no acceptable step: forget the history once, then give up
                if not S:
                    break
                S, Y, rho, gamma = [], [], [], 1.0
                continue
            x_new = x + t * d
        s, y = t * d, g_new - g
        sy = float(y @ s)
        if sy > 1e-10:                        # keep only pairs with positive curvature
            if len(S) == history:
                S.pop(0); Y.pop(0); rho.pop(0)
            S.append(s); Y.append(y); rho.append(1.0 / sy)
            gamma = sy / float(y @ y)
        x, fx, g = x_new, f_new, g_new
        path.append(x.clone())
        if not math.isfinite(fx):
            break
        converged = bool(g.abs().max() <= tol)
    return _result(fc, x, fx, path, len(path) - 1, t0, converged)
