"""Gradient methods on a quadratic f(x) = x^T A x / 2 - b^T x: rates from eigenvalues, and conjugate gradient.

On a quadratic every first-order method is a linear recurrence in the error e = x - x*, and each
eigen-direction of A (eigenvalue lambda in [mu, L]) evolves on its own::

    gradient descent   e_{t+1} = (1 - lr lambda) e_t                               rate max abs(1 - lr lambda)
    heavy ball         e_{t+1} = (1 + beta - lr lambda) e_t - beta e_{t-1}
    Nesterov           e_{t+1} = (1 - lr lambda) ((1 + beta) e_t - beta e_{t-1})

The rate of a two-term recurrence is the spectral radius of its 2x2 companion matrix. Tuned to
[mu, L] (kappa = L / mu) the best rates are (kappa - 1)/(kappa + 1) for gradient descent,
(sqrt(kappa) - 1)/(sqrt(kappa) + 1) for heavy ball and 1 - 2/sqrt(3 kappa + 1) for Nesterov.
Conjugate gradient minimizes f over a growing Krylov space and is exact after n steps.

References: Polyak, *Introduction to Optimization* (1987), ch. 3; Lessard, Recht & Packard (2016),
for the Nesterov tuning on quadratics; Nocedal & Wright, *Numerical Optimization* (2006), ch. 5;
Goh, *Why Momentum Really Works*, Distill (2017).
Leaves out: preconditioning, non-symmetric systems.

Book: :doc:`/notebooks/06_optimization`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_positive, check_shape, check_tensor


# ---------------------------------------------------------------------------- the problem
@dataclass(frozen=True)
class Quadratic:
    """f(x) = x^T A x / 2 - b^T x with A (n, n) symmetric positive definite and b (n,)."""

    A: torch.Tensor  # (n, n) the Hessian
    b: torch.Tensor  # (n,) so that the gradient is A x - b and the minimizer solves A x = b

    def __post_init__(self):
        (n, _) = check_shape(self.A, "n n", name="A")
        check_shape(self.b, "n", name="b", n=n)
        if not torch.allclose(self.A, self.A.T):
            raise ValueError("A must be symmetric, got A != A^T")
        lam_min = float(torch.linalg.eigvalsh(self.A)[0])
        if lam_min <= 0:
            raise ValueError(f"A must be positive definite, got smallest eigenvalue {lam_min:g}")

    @classmethod
    def random(cls, n: int, kappa: float, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> Quadratic:
        """A random rotation of eigenvalues spread geometrically over [1, kappa]; b random."""
        if not kappa >= 1:
            raise ValueError(f"kappa must be >= 1, got {kappa}")
        Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=dtype))  # (n, n) orthogonal
        lam = kappa ** torch.linspace(0, 1, n, dtype=dtype)
        return cls((Q * lam) @ Q.T, torch.randn(n, generator=generator, dtype=dtype))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """f at x (..., n), batched over leading dimensions; returns (...)."""
        return 0.5 * ((x @ self.A) * x).sum(-1) - x @ self.b

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """A x - b for x (..., n)."""
        return x @ self.A - self.b   # A symmetric: x A = (A x)^T

    def minimizer(self) -> torch.Tensor:
        """x* = A^-1 b, (n,)."""
        return torch.linalg.solve(self.A, self.b)

    def eigenvalues(self) -> torch.Tensor:
        """The eigenvalues of A in ascending order, (n,)."""
        return torch.linalg.eigvalsh(self.A)


# ---------------------------------------------------------------------------- rates
def _as_float64(x, name: str) -> torch.Tensor:
    """A real number, or a non-empty real tensor or list of numbers, as float64 (a bool is not a number)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, torch.Tensor, list, tuple)):
        raise TypeError(f"{name} must be a number, a tensor or a list of numbers, got {type(x).__name__}")
    if isinstance(x, (list, tuple)):
        if not x or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
            raise TypeError(f"{name} must be a non-empty list of numbers, got {x!r}")
        x = torch.tensor(x, dtype=torch.float64)
    if isinstance(x, torch.Tensor) and (x.dtype == torch.bool or x.is_complex() or x.numel() == 0):
        raise ValueError(f"{name} must be a non-empty real tensor, got dtype {x.dtype} and shape {tuple(x.shape)}")
    return torch.as_tensor(x, dtype=torch.float64)


def _check_mu_L(mu: float, L: float) -> None:
    check_positive(mu, "mu"), check_positive(L, "L")
    if not 0 < mu <= L:
        raise ValueError(f"need 0 < mu <= L, got mu={mu}, L={L}")


def gd_rate(lr: float, eigenvalues: torch.Tensor) -> float:
    """Worst-case contraction max_i abs(1 - lr lambda_i) of the error per gradient-descent step (< 1 iff lr < 2 / L)."""
    check_positive(lr, "lr")
    return float((1 - lr * _as_float64(eigenvalues, "eigenvalues")).abs().max())


def gd_optimal(mu: float, L: float) -> tuple[float, float]:
    """The learning rate 2 / (mu + L) that balances the extreme eigenvalues, and its rate (kappa - 1)/(kappa + 1)."""
    _check_mu_L(mu, L)
    return 2 / (mu + L), (L - mu) / (L + mu)


def momentum_matrix(lr: float, beta: float, lam: float, *, nesterov: bool = False) -> torch.Tensor:
    """(2, 2) matrix M with (e_{t+1}, e_t) = M (e_t, e_{t-1}) along an eigenvector of eigenvalue ``lam``."""
    for name, value in (("lr", lr), ("beta", beta), ("lam", lam)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if nesterov:
        c = 1 - lr * lam          # Nesterov evaluates the gradient at the extrapolated point
        return torch.tensor([[(1 + beta) * c, -beta * c], [1.0, 0.0]], dtype=torch.float64)
    return torch.tensor([[1 + beta - lr * lam, -beta], [1.0, 0.0]], dtype=torch.float64)


def momentum_rate(lr, beta, eigenvalues, *, nesterov: bool = False):
    """Worst-case spectral radius of :func:`momentum_matrix` over ``eigenvalues``.

    ``lr`` and ``beta`` may be tensors of a common broadcast shape S (a grid of tunings); the result
    then has shape S, else it is a float. The radius is the larger root modulus of
    z^2 - a z + b = 0, the characteristic polynomial of the 2x2 matrix (a its trace, b its determinant).
    """
    lr64, beta64 = _as_float64(lr, "lr"), _as_float64(beta, "beta")
    lam = _as_float64(eigenvalues, "eigenvalues").reshape(-1)                       # (k,)
    lr_, beta_ = lr64[..., None], beta64[..., None]                                 # (S..., 1)
    if nesterov:
        c = 1 - lr_ * lam
        a, b = (1 + beta_) * c, beta_ * c
    else:
        a, b = 1 + beta_ - lr_ * lam, beta_.expand_as(lr_ * lam)
    root = torch.sqrt((a * a - 4 * b).to(torch.complex128))                          # (S..., k)
    radius = torch.maximum((a + root).abs(), (a - root).abs()) / 2
    out = radius.amax(-1)
    return float(out) if out.dim() == 0 else out


def heavy_ball_optimal(mu: float, L: float) -> tuple[float, float, float]:
    """Polyak's tuning (lr, beta, rate) = (4 / (sqrt L + sqrt mu)^2, r^2, r), r = (sqrt k - 1)/(sqrt k + 1)."""
    _check_mu_L(mu, L)
    r = (math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))
    return 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, r ** 2, r


def nesterov_optimal(mu: float, L: float) -> tuple[float, float, float]:
    """Best Nesterov tuning on quadratics (Lessard et al. 2016): lr = 4 / (3L + mu),
    beta = (sqrt(3k + 1) - 2) / (sqrt(3k + 1) + 2), rate 1 - 2 / sqrt(3k + 1), k = L / mu."""
    _check_mu_L(mu, L)
    s = math.sqrt(3 * L / mu + 1)
    return 4 / (3 * L + mu), (s - 2) / (s + 2), 1 - 2 / s


# ---------------------------------------------------------------------------- conjugate gradient
def conjugate_gradient(A: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None = None, *,
                       max_iter: int | None = None, tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x = b (minimize the quadratic) by conjugate gradients.

    Args:
        A: (n, n) symmetric positive definite. b: (n,). x0: (n,) start, zeros by default.
        max_iter: at most this many steps (default n: in exact arithmetic CG is then exact).
        tol: stop once the residual norm norm(b - A x) <= tol.

    Returns:
        ``(x, path)``: the solution (n,) and the iterates (k + 1, n), x0 first.

    Raises:
        ValueError: if a search direction has ``d^T A d <= 0``, so that A is not positive definite,
            the quadratic has no minimum along d and the step would be meaningless.
    """
    (n, _) = check_shape(A, "n n", name="A")
    check_shape(b, "n", name="b", n=n)
    for name, t in (("A", A), ("b", b)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {str(t.dtype).replace('torch.', '')}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite, got NaN or infinite entries")
    x = torch.zeros_like(b) if x0 is None else check_tensor(x0, "x0").clone()
    max_iter = n if max_iter is None else max_iter
    r = b - A @ x                       # residual = -gradient
    d = r.clone()                       # first direction: steepest descent
    rr = r @ r
    path = [x.clone()]
    for _ in range(max_iter):
        if rr.sqrt() <= tol:
            break
        Ad = A @ d
        dAd = d @ Ad                    # the curvature of the quadratic along d
        if dAd <= 0:
            raise ValueError(f"A must be positive definite: d^T A d = {float(dAd):.3g} <= 0 along a search "
                             "direction, so the quadratic has no minimum there")
        alpha = rr / dAd                # exact line search along d
        x = x + alpha * d
        r = r - alpha * Ad
        rr_new = r @ r
        d = r + (rr_new / rr) * d       # the next direction is A-conjugate to all previous ones
        rr = rr_new
        path.append(x.clone())
    return x, torch.stack(path)
