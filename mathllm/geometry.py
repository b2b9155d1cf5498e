"""Geometry of high dimensions: where the volume of a ball lies, angles between random vectors, random projections.

Shape legend (book/notation.md): N points, n the ambient dimension, k a projected dimension.

* **Volume near the surface.** The n-ball of radius r has volume ``V_n r^n`` with
  ``V_n = pi^(n/2) / Gamma(n/2 + 1)``, so the fraction of the unit ball within radius r is ``r^n``.
  The radius R of a uniform point has ``P(R <= r) = r^n``: median ``2^(-1/n)``, mean ``n / (n + 1)``,
  root mean square ``sqrt(n / (n + 2))``; all tend to 1.
* **Nearly orthogonal random vectors.** The cosine t of two independent uniform directions in R^n
  has density ``c_n (1 - t^2)^((n - 3) / 2)``, ``c_n = Gamma(n/2) / (sqrt(pi) Gamma((n - 1)/2))``,
  mean 0 and variance ``1/n``; its tails obey ``P(|t| >= eps) <= 2 exp(-n eps^2 / 2)``
  (Ball 1997, lemma 2.2).
* **Johnson-Lindenstrauss.** A Gaussian map ``x -> G^T x / sqrt(k)`` distorts one squared length by
  more than ``1 +- eps`` with probability at most ``2 exp(-k (eps^2/2 - eps^3/3) / 2)`` (Dasgupta &
  Gupta 2003, lemma 2.2); a union bound over the ``N (N - 1) / 2`` pairs gives failure at most
  ``N (N - 1) exp(-k (eps^2/2 - eps^3/3) / 2)``. With ``k >= (4 + 2 beta) ln N / (eps^2/2 - eps^3/3)``
  that is at most ``(1 - 1/N) N^(-beta)``: every squared distance among N points stays within a factor
  ``1 +- eps`` with probability at least ``1 - N^(-beta)`` (Achlioptas 2003). Dasgupta & Gupta's
  constant 4 is ``beta = 0``: it guarantees success with probability only ``1/N`` (repeat the draw
  about N times); ``beta = 1`` gives ``1 - 1/N`` (Johnson & Lindenstrauss 1984).

References: K. Ball, *An elementary introduction to modern convex geometry* (1997); Blum, Hopcroft &
Kannan, *Foundations of Data Science* (2020), chapter 2; Dasgupta & Gupta (2003); Achlioptas (2003).
Leaves out: sparse and fast (Hadamard) JL transforms, packing bounds sharper than the union bound.

Book: :doc:`/notebooks/16_interpretability`
"""
from __future__ import annotations

import math

import torch

from .checks import check_float_tensor, check_int, check_number, check_shape


# ---------------------------------------------------------------------------- the volume of a ball
def ball_volume(n: int, r: float = 1.0) -> float:
    """Volume of the n-ball of radius ``r``: ``pi^(n/2) r^n / Gamma(n/2 + 1)`` (0 for huge n, never overflow)."""
    check_int(n, "n", low=1)
    check_number(r, "r", low=0.0)
    if r == 0:
        return 0.0
    return math.exp(n / 2 * math.log(math.pi) + n * math.log(r) - math.lgamma(n / 2 + 1))


def volume_fraction_within(r: float, n: int) -> float:
    """Fraction of the unit n-ball's volume within radius ``r`` in [0, 1]: ``r^n``, the CDF of a uniform point's radius."""
    check_int(n, "n", low=1)
    return float(check_number(r, "r", low=0.0, high=1.0)) ** n


def radius_quantile(q: float, n: int) -> float:
    """The radius below which a fraction ``q`` of the unit n-ball's volume lies: ``q^(1/n)`` (inverse of ``r^n``)."""
    check_int(n, "n", low=1)
    return float(check_number(q, "q", low=0.0, high=1.0)) ** (1.0 / n)


def radius_median(n: int) -> float:
    """Median radius of a uniform point in the unit n-ball: ``2^(-1/n)`` (half the volume lies outside it)."""
    return radius_quantile(0.5, n)


def radius_mean(n: int) -> float:
    """Mean radius of a uniform point in the unit n-ball: ``int_0^1 r n r^(n-1) dr = n / (n + 1)``."""
    return check_int(n, "n", low=1) / (n + 1)


def radius_rms(n: int) -> float:
    """Root mean square radius of a uniform point in the unit n-ball: ``sqrt(E R^2) = sqrt(n / (n + 2))``."""
    return math.sqrt(check_int(n, "n", low=1) / (n + 2))


def shell_width(fraction: float, n: int) -> float:
    """Width w of the outer shell ``1 - w <= R <= 1`` that holds ``fraction`` of the unit n-ball's volume.

    From ``1 - (1 - w)^n = fraction``: ``w = 1 - (1 - fraction)^(1/n)``, about ``-ln(1 - fraction) / n``.
    """
    check_int(n, "n", low=1)
    return 1.0 - (1.0 - check_number(fraction, "fraction", low=0.0, high=1.0, high_open=True)) ** (1.0 / n)


# ---------------------------------------------------------------------------- sampling
def sample_sphere(N: int, n: int, *, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """N uniform points on the unit sphere of R^n, (N, n): normalised Gaussian vectors.

    The standard Gaussian density depends on ``|x|`` only, so its direction is uniform.
    """
    check_int(N, "N", low=1)
    check_int(n, "n", low=1)
    x = torch.randn(N, n, generator=generator, dtype=dtype)  # (N, n)
    return x / x.norm(dim=1, keepdim=True)


def sample_ball(N: int, n: int, *, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """N uniform points in the unit n-ball, (N, n): a uniform direction times the radius ``U^(1/n)``.

    ``P(U^(1/n) <= r) = P(U <= r^n) = r^n``, the radius distribution of :func:`volume_fraction_within`.
    """
    u = sample_sphere(N, n, generator=generator, dtype=dtype)  # (N, n)
    radius = torch.rand(N, 1, generator=generator, dtype=dtype) ** (1.0 / n)  # (N, 1)
    return u * radius


# ---------------------------------------------------------------------------- angles
def cosine_density(t: torch.Tensor, n: int) -> torch.Tensor:
    """Density of the cosine of two independent uniform directions in R^n, at ``t`` in (-1, 1); n >= 2.

    ``c_n (1 - t^2)^((n - 3)/2)`` with ``c_n = Gamma(n/2) / (sqrt(pi) Gamma((n - 1)/2))``: the area of
    the (n-2)-sphere of radius ``sqrt(1 - t^2)`` at height t, times ``dtheta = dt / sqrt(1 - t^2)``.
    """
    check_int(n, "n", low=2)
    check_float_tensor(t, "t")
    log_c = math.lgamma(n / 2) - 0.5 * math.log(math.pi) - math.lgamma((n - 1) / 2)
    inside = t.abs() <= 1  # a cosine lies in [-1, 1]: the density is 0 outside (log1p would give NaN)
    density = torch.exp(log_c + (n - 3) / 2 * torch.log1p(-(t * t).clamp(max=1.0)))
    return torch.where(inside | t.isnan(), density, torch.zeros_like(t))


def cosine_cdf(t: torch.Tensor, n: int) -> torch.Tensor:
    """CDF ``P(cos <= t)`` of the cosine of two independent uniform directions in R^n, exactly; n >= 2.

    With ``t = sin(theta)`` the density in theta is proportional to ``cos^(n-2) theta``. Integrating by
    parts, ``F_n(t) = F_(n-2)(t) + t (1 - t^2)^((n-3)/2) / ((n - 2) W_(n-2))`` with the Wallis integral
    ``W_m = int_(-pi/2)^(pi/2) cos^m = sqrt(pi) Gamma((m+1)/2) / Gamma(m/2 + 1)``, starting from
    ``F_2 = 1/2 + asin(t)/pi`` (uniform angle) and ``F_3 = (1 + t)/2`` (Archimedes: uniform height).
    """
    check_int(n, "n", low=2)
    check_float_tensor(t, "t")
    t = t.clamp(-1.0, 1.0)
    m = 2 if n % 2 == 0 else 3
    F = 0.5 + torch.asin(t) / math.pi if m == 2 else (1.0 + t) / 2
    one_minus = (1.0 - t * t).clamp_min(0.0)  # (...,): 1 - t^2
    while m < n:
        m += 2
        log_wallis = 0.5 * math.log(math.pi) + math.lgamma((m - 1) / 2) - math.lgamma((m - 2) / 2 + 1)  # W_(m-2)
        F = F + t * one_minus ** ((m - 3) / 2) / ((m - 2) * math.exp(log_wallis))
    return F


def cosine_tail_bound(eps: float, n: int) -> float:
    """``2 exp(-n eps^2 / 2)``, an upper bound on ``P(|cos| >= eps)`` for uniform directions in R^n (Ball 1997)."""
    check_int(n, "n", low=1)
    check_number(eps, "eps", low=0.0, high=1.0)
    return min(1.0, 2.0 * math.exp(-n * eps * eps / 2))


def pairwise_cosines(X: torch.Tensor) -> torch.Tensor:
    """Cosines of all pairs of distinct rows of ``X`` (N, n): (N (N - 1) / 2,), the upper triangle of the cosine matrix."""
    N, _ = check_shape(X, "N n", name="X")
    if N < 2:
        raise ValueError(f"X needs at least 2 rows to form a pair, got shape {tuple(X.shape)}")
    check_float_tensor(X, "X")
    norms = X.norm(dim=1, keepdim=True)  # (N, 1)
    if bool((norms == 0).any()):
        raise ValueError(f"X has a zero row (row {int((norms[:, 0] == 0).nonzero()[0])}): its cosine with another row is undefined")
    U = X / norms  # (N, n)
    i, j = torch.triu_indices(N, N, offset=1)
    return (U @ U.T)[i, j]  # (N, n) x (n, N) -> (N, N) -> (N(N-1)/2,)


# ---------------------------------------------------------------------------- Johnson-Lindenstrauss
def _jl_rate(eps: float) -> float:
    # eps^2/2 - eps^3/3 > 0 on (0, 1): the Chernoff exponent of one chi-square tail is k/2 times it
    check_number(eps, "eps", low=0.0, high=1.0, low_open=True, high_open=True)
    return eps ** 2 / 2 - eps ** 3 / 3


def jl_failure_bound(N: int, k: int, eps: float) -> float:
    """Union bound on the probability that a Gaussian projection to k dimensions distorts some pair.

    One pair fails (its squared distance leaves ``[1 - eps, 1 + eps]`` times the original) with
    probability at most ``2 exp(-k (eps^2/2 - eps^3/3) / 2)``, the two chi-square tails of Dasgupta &
    Gupta (2003, lemma 2.2); there are ``N (N - 1) / 2`` pairs. Returns
    ``min(1, N (N - 1) exp(-k (eps^2/2 - eps^3/3) / 2))``.
    """
    check_int(N, "N", low=2)
    check_int(k, "k", low=1)
    log_bound = math.log(N) + math.log(N - 1) - k * _jl_rate(eps) / 2
    return math.exp(min(0.0, log_bound))


def jl_min_dim(N: int, eps: float, *, beta: float = 1.0) -> int:
    """The k of the Johnson-Lindenstrauss lemma: ``ceil((4 + 2 beta) ln N / (eps^2/2 - eps^3/3))``.

    A Gaussian projection to k dimensions keeps all squared distances among N points within
    ``1 +- eps`` with probability at least ``1 - N^(-beta)``: :func:`jl_failure_bound` at this k is at
    most ``(1 - 1/N) N^(-beta)`` (Achlioptas 2003). The default ``beta = 1`` guarantees ``1 - 1/N``;
    ``beta = 0`` is Dasgupta & Gupta's (2003) ``4 ln N / (eps^2/2 - eps^3/3)``, which guarantees success
    with probability only ``1/N``. k does not depend on the original dimension.

    Book: :doc:`/notebooks/16_interpretability`
    """
    check_int(N, "N", low=2)
    check_number(beta, "beta", low=0.0)
    return math.ceil((4 + 2 * beta) * math.log(N) / _jl_rate(eps))


def random_projection(X: torch.Tensor, k: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Project the rows of ``X`` (N, n) to (N, k) by ``X G / sqrt(k)``, G (n, k) with N(0, 1) entries.

    Each coordinate of ``x G`` is ``N(0, |x|^2)``, so ``E |x G / sqrt(k)|^2 = |x|^2``: squared lengths are
    preserved in expectation, and the sum of k squares concentrates around it.
    """
    _, n = check_shape(X, "N n", name="X")
    check_float_tensor(X, "X")
    check_int(k, "k", low=1)
    G = torch.randn(n, k, generator=generator, dtype=X.dtype).to(X.device)  # (n, k)
    return X @ G / math.sqrt(k)  # (N, n) x (n, k) -> (N, k)


def distance_ratios(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``|y_i - y_j|^2 / |x_i - x_j|^2`` for all pairs i < j of the rows of ``X`` (N, n) and ``Y`` (N, k).

    Returns (N (N - 1) / 2,); JL says all lie in ``[1 - eps, 1 + eps]``. Rows of X must be distinct.
    """
    N, _ = check_shape(X, "N n", name="X")
    check_shape(Y, "N k", name="Y", N=N)
    if N < 2:
        raise ValueError(f"X needs at least 2 rows, got shape {tuple(X.shape)}")
    i, j = torch.triu_indices(N, N, offset=1)
    exact = "donot_use_mm_for_euclid_dist"  # no |x|^2 + |y|^2 - 2 x.y cancellation
    dx = torch.cdist(X, X, compute_mode=exact).square()[i, j]  # (N, N) -> (P,)
    dy = torch.cdist(Y, Y, compute_mode=exact).square()[i, j]
    if (dx == 0).any():
        raise ValueError("X has repeated rows: a distance ratio to 0 is undefined")
    return dy / dx
