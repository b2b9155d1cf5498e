"""Fitting a scaling law to measured runs, and the uncertainty of the fit.

:func:`fit_chinchilla` fits the Chinchilla form ``L = E + A / N^alpha + B / D^beta``
(:class:`mathllm.scaling.ChinchillaLaw`) to measured losses by least squares on the log residuals
r_i = log L-hat_i - log L_i, as Hoffmann et al. fit in log space, with a Levenberg-Marquardt (damped
Gauss-Newton) iteration in float64. Two covariances of theta = (log E, log A, log B, alpha, beta),
both with the Jacobian J of the residuals at the minimum:

* ``cov = s^2 (J^T J)^-1``, s^2 = sum r_i^2 / (n - p): the linearised least-squares covariance
  (scipy's ``curve_fit`` with ``absolute_sigma=False``). It takes the noise level from the
  residuals, so it is inflated by any misfit, but it assumes the residuals are independent draws
  of one variance;
* ``cov_robust = n / (n - p) (J^T J)^-1 J^T diag(r_i^2) J (J^T J)^-1``: the sandwich (White's
  heteroscedasticity-consistent HC1) covariance, the sampling covariance of the best-approximating
  parameters when the law is misspecified or the noise differs from run to run.

Neither measures the error of *extrapolating* a misspecified law beyond the runs; only held-out
runs do. :func:`compute_frontier` and :func:`fit_compute_law` give the naive baseline such a test
needs: a power law in compute alone, fitted to the runs that were the best for their compute.

References: Hoffmann et al. 2022 (arXiv:2203.15556), appendix D.2; Levenberg 1944, Marquardt 1963;
Nocedal & Wright 2006, ch. 10; White 1980 (the sandwich), MacKinnon & White 1985 (HC1); Kaplan et
al. 2020, eq. (1.4) (the compute frontier). Leaves out: the Huber loss of Hoffmann et al. (plain
least squares here), the bootstrap, and Bayesian or profile-likelihood intervals.

Book: :doc:`/notebooks/13_scaling_laws`
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_float_tensor, check_shape
from .scaling import ChinchillaLaw, ComputeLaw, _check_positive_values

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


def log_loss_and_jacobian(theta: torch.Tensor, N: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log L(N, D) of the Chinchilla law and its Jacobian with respect to theta = (e, a, b, alpha, beta).

    With E = exp(e), A = exp(a), B = exp(b), log L = logsumexp(e, a - alpha log N, b - beta log D):
    Hoffmann et al.'s parameterisation, in which the three terms stay positive. With w = the softmax
    of the three exponents (each term's share of L), d log L / d(e, a, b) = w and
    d log L / d(alpha, beta) = (-w_1 log N, -w_2 log D).

    Args:
        theta: (5,) float tensor; N, D: (n,) tensors > 0.
    Returns:
        ``(log_L, J)``: (n,) and (n, 5).
    """
    check_shape(theta, "P", name="theta", P=5)
    check_float_tensor(theta, "theta")
    (n,) = check_shape(N, "n", name="N")
    check_shape(D, "n", name="D", n=n)
    _check_positive_values(N, "N")
    _check_positive_values(D, "D")
    e, a, b, alpha, beta = theta
    logN, logD = torch.log(N), torch.log(D)
    z = torch.stack([e.expand_as(logN), a - alpha * logN, b - beta * logD], dim=1)  # (n, 3)
    log_L = torch.logsumexp(z, dim=1)                                                 # (n,)
    w = torch.softmax(z, dim=1)                                                       # (n, 3)
    J = torch.stack([w[:, 0], w[:, 1], w[:, 2], -w[:, 1] * logN, -w[:, 2] * logD], dim=1)  # (n, 5)
    return log_L, J


def _as_float64(x, name: str) -> torch.Tensor:
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise TypeError(f"{name} must be a sequence, array or tensor of numbers, got {type(x).__name__}")
    try:
        t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must hold numbers: {err}") from None
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-d, got shape {tuple(t.shape)}")
    _check_positive_values(t, name)
    return t


def _starts(N, D, L, n_starts: int) -> list[torch.Tensor]:
    """Starting points: for each (alpha, beta) of a grid, E, A, B by linear least squares on L-hat / L_i = 1."""
    grid = torch.linspace(0.05, 1.0, 20, dtype=torch.float64)
    alpha, beta = [g.reshape(-1, 1) for g in torch.meshgrid(grid, grid, indexing="ij")]          # (k, 1) each
    X = torch.stack([torch.ones_like(alpha * N), N ** -alpha, D ** -beta], dim=2) / L[:, None]    # (k, n, 3)
    coef = torch.linalg.lstsq(X, torch.ones_like(X[..., :1])).solution[..., 0]                    # (k, 3)
    coef = torch.clamp(coef, min=1e-3 * float(L.min()))                                           # keep E, A, B > 0
    log_L_hat = torch.log(coef[:, :1] + coef[:, 1:2] * N ** -alpha + coef[:, 2:] * D ** -beta)     # (k, n)
    rss = ((log_L_hat - torch.log(L)) ** 2).sum(dim=1)                                            # (k,)
    thetas = torch.cat([coef.log(), alpha, beta], dim=1)                                          # (k, 5)
    return list(thetas[torch.argsort(rss)[:n_starts]])


def _levenberg_marquardt(theta, N, D, y, max_iter: int, tol: float):
    """Minimise sum (log L(theta) - y)^2 by damped Gauss-Newton steps; returns (theta, rss, iterations)."""
    mu = 1e-3
    r = log_loss_and_jacobian(theta, N, D)[0] - y
    rss = float(r @ r)
    for it in range(1, max_iter + 1):
        J = log_loss_and_jacobian(theta, N, D)[1]
        g, H = J.T @ r, J.T @ J                                       # (5,), (5, 5)
        while True:
            # (J^T J + mu diag(J^T J)) step = -J^T r: Gauss-Newton for small mu, scaled gradient descent for large
            step = torch.linalg.solve(H + mu * torch.diag(torch.diag(H) + 1e-12), -g)
            r_new = log_loss_and_jacobian(theta + step, N, D)[0] - y
            rss_new = float(r_new @ r_new)
            if rss_new < rss:
                break
            mu *= 10.0
            if mu > 1e12:                                             # no descent step left: a minimum
                return theta, rss, it
        done = rss - rss_new <= tol * rss
        theta, r, rss, mu = theta + step, r_new, rss_new, max(mu / 10.0, 1e-12)
        if done:
            return theta, rss, it
    return theta, rss, max_iter


@dataclass(frozen=True)
class ScalingFit:
    """A Chinchilla law fitted to measured losses, with the covariance of its parameters.

    ``theta`` = (log E, log A, log B, alpha, beta), ``cov`` its (5, 5) covariance s^2 (J^T J)^-1,
    where s^2 = rss / dof is the variance of the log residuals, and ``cov_robust`` the sandwich
    covariance, which allows each run its own residual variance (the module docstring has both).
    ``residuals`` are the log residuals log L-hat_i - log L_i. ``stderr`` holds
    the standard errors of E, A, B, alpha, beta (delta method: se(E) = E se(log E)). When the fit
    drives E to its bound 0 (``E_at_zero``: the data show no floor), log E changes no residual; it is
    held there, left out of the covariance (its row and column are 0) and its standard error is nan.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    law: ChinchillaLaw
    theta: torch.Tensor
    cov: torch.Tensor
    cov_robust: torch.Tensor
    residuals: torch.Tensor  # (n,) log L-hat_i - log L_i
    sigma: float        # s, the standard deviation of a log residual: the relative noise of one loss
    rss: float
    n_points: int
    iterations: int
    E_at_zero: bool = False

    @property
    def dof(self) -> int:
        """Degrees of freedom of the residuals: points minus the parameters estimated (5, or 4 with E at 0)."""
        return self.n_points - (4 if self.E_at_zero else 5)

    def covariance(self, robust: bool = False) -> torch.Tensor:
        """``cov_robust`` (the sandwich) if ``robust``, else ``cov`` (s^2 (J^T J)^-1)."""
        if not isinstance(robust, bool):
            raise TypeError(f"robust must be a bool, got {type(robust).__name__}")
        return self.cov_robust if robust else self.cov

    @property
    def stderr(self) -> dict[str, float]:
        """Standard errors of E, A, B, alpha, beta from ``cov``."""
        return self.standard_errors()

    def standard_errors(self, robust: bool = False) -> dict[str, float]:
        """Standard errors of E, A, B, alpha, beta from :meth:`covariance` ``(robust)``.

        se(E) = E se(log E) and likewise for A and B (delta method); when se(log A) is near 1 or
        above, the interval of A is better read as A times or divided by exp(2 se(log A)).
        """
        se = torch.sqrt(torch.diag(self.covariance(robust)))
        values = [getattr(self.law, name) for name in PARAM_NAMES]
        out = {name: float(se[i] * (values[i] if i < 3 else 1.0)) for i, name in enumerate(PARAM_NAMES)}
        return out | {"E": math.nan} if self.E_at_zero else out

    def predict(self, N, D, *, new_observation: bool = True, robust: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The fitted loss at (N, D) and its standard error.

        The variance of log L-hat is g^T cov g with g the Jacobian row at (N, D) (delta method,
        with :meth:`covariance` ``(robust)``);
        ``new_observation`` adds s^2, the noise of one more measured run, so that the interval is
        where a new run's loss should fall. The standard error of L is L times that of log L.

        Returns:
            ``(loss, stderr)``, two float64 arrays shaped as the broadcast of N and D.
        """
        _check_positive_values(N, "N")
        _check_positive_values(D, "D")
        Nb, Db = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64))
        log_L, J = log_loss_and_jacobian(self.theta, torch.as_tensor(Nb.reshape(-1)), torch.as_tensor(Db.reshape(-1)))
        var = torch.einsum("ni,ij,nj->n", J, self.covariance(robust), J)  # (n,) = diag(J cov J^T)
        if new_observation:
            var = var + self.sigma ** 2
        loss = torch.exp(log_L)
        return loss.numpy().reshape(Nb.shape), (loss * torch.sqrt(var)).numpy().reshape(Nb.shape)

    def local_slopes(self, N0, D0, robust: bool = False) -> dict[str, tuple[float, float]]:
        """The fitted loss at (N0, D0) and its two local slopes, each with its standard error.

        ``{"L": ..., "dlogL/dlogN": ..., "dlogL/dlogD": ...}`` of ``(value, stderr)``, the slopes
        -alpha w_1 and -beta w_2 with w the shares of the three terms in L (their softmax). Inside
        the runs these are what the data determine, even where E, A, B and the exponents trade off
        against one another; the standard errors are the delta method with :meth:`covariance`.
        """
        _check_positive_values(N0, "N0")
        _check_positive_values(D0, "D0")
        logN, logD = math.log(float(N0)), math.log(float(D0))

        def summary(theta):                                           # (3,): log L and the two slopes
            z = torch.stack([theta[0], theta[1] - theta[3] * logN, theta[2] - theta[4] * logD])
            w = torch.softmax(z, dim=0)
            return torch.stack([torch.logsumexp(z, dim=0), -theta[3] * w[1], -theta[4] * w[2]])

        value = summary(self.theta)
        G = torch.autograd.functional.jacobian(summary, self.theta)   # (3, 5)
        se = torch.sqrt(torch.diag(G @ self.covariance(robust) @ G.T))
        L = float(torch.exp(value[0]))
        return {"L": (L, L * float(se[0])), "dlogL/dlogN": (float(value[1]), float(se[1])),
                "dlogL/dlogD": (float(value[2]), float(se[2]))}

    def allocation_exponent(self, robust: bool = False) -> tuple[float, float]:
        """a = beta / (alpha + beta), the exponent of N* proportional to C^a, and its standard error."""
        alpha, beta = float(self.theta[3]), float(self.theta[4])
        a = beta / (alpha + beta)
        grad = torch.zeros(5, dtype=torch.float64)
        grad[3], grad[4] = -beta / (alpha + beta) ** 2, alpha / (alpha + beta) ** 2
        return a, float(torch.sqrt(grad @ self.covariance(robust) @ grad))


def fit_chinchilla(N, D, L, *, n_starts: int = 5, max_iter: int = 200, tol: float = 1e-12) -> ScalingFit:
    """Fit L = E + A / N^alpha + B / D^beta to measured losses by least squares in log space.

    Minimises sum_i (log L-hat(N_i, D_i) - log L_i)^2 over theta = (log E, log A, log B, alpha, beta)
    with Levenberg-Marquardt from the ``n_starts`` best points of a grid over (alpha, beta) (the
    objective has local minima; Hoffmann et al. start L-BFGS from a grid too). Log residuals weigh
    each run by its relative error, so a run at loss 3 counts as much as one at loss 1.5.

    Args:
        N, D, L: 1-d sequences, arrays or tensors of equal length n >= 6 (5 parameters plus at
            least one degree of freedom for the noise), all > 0: parameters, tokens, losses.
    Returns:
        a :class:`ScalingFit`.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    N, D, L = _as_float64(N, "N"), _as_float64(D, "D"), _as_float64(L, "L")
    if not len(N) == len(D) == len(L):
        raise ValueError(f"N, D and L must have the same length, got {len(N)}, {len(D)} and {len(L)}")
    if len(L) < 6:
        raise ValueError(f"fitting 5 parameters with an error estimate needs at least 6 runs, got {len(L)}")
    for name, value in (("n_starts", n_starts), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    y = torch.log(L)
    best = None
    for theta0 in _starts(N, D, L, n_starts):
        theta, rss, its = _levenberg_marquardt(theta0, N, D, y, max_iter, tol)
        if best is None or rss < best[1]:
            best = (theta, rss, its)
    theta, rss, its = best
    _, J = log_loss_and_jacobian(theta, N, D)
    E_at_zero = bool(J[:, 0].max() < 1e-6)      # E's share of every loss is nil: an active bound, not an estimate
    for col, term, var in ((1, "A / N^alpha", "N"), (2, "B / D^beta", "D")):
        if J[:, col].max() < 1e-6:              # the term's share of every loss is nil: the fit switched it off
            raise ValueError(f"the losses do not fall as {var} grows: the best fit drives {term} to 0 in every run, "
                             f"and a law L = E + A / N^alpha + B / D^beta with A, B > 0 cannot describe losses "
                             f"that rise or stay flat with {var}; check the runs (got L from {float(L.min()):.4g} "
                             f"to {float(L.max()):.4g})")
    free = torch.arange(1 if E_at_zero else 0, 5)
    s2 = rss / (len(L) - len(free))
    Jf = J[:, free]                                                   # (n, p)
    H = Jf.T @ Jf
    if torch.linalg.cond(H) > 1e14:
        warnings.warn("J^T J is nearly singular: the data do not determine the parameters; "
                      "the standard errors are unreliable")
    try:
        bread = torch.linalg.inv(H)                                   # (p, p)
    except torch.linalg.LinAlgError:
        raise ValueError("J^T J is singular: the data do not determine the five parameters (vary both N and D, "
                         "over more than one value each)") from None
    r = log_loss_and_jacobian(theta, N, D)[0] - y                     # (n,) log residuals
    meat = Jf.T @ (r[:, None] ** 2 * Jf)                              # J^T diag(r^2) J
    cov, cov_robust = torch.zeros(5, 5, dtype=torch.float64), torch.zeros(5, 5, dtype=torch.float64)
    cov[free[:, None], free] = s2 * bread
    cov_robust[free[:, None], free] = len(L) / (len(L) - len(free)) * bread @ meat @ bread   # HC1
    # At the bound, log E ran off towards -inf: exp() of it may be a denormal or exactly 0.0,
    # depending on how far the iterations went on this CPU. Report the bound itself.
    law = ChinchillaLaw(E=0.0 if E_at_zero else float(theta[0].exp()), A=float(theta[1].exp()), B=float(theta[2].exp()),
                        alpha=float(theta[3]), beta=float(theta[4]))
    return ScalingFit(law=law, theta=theta, cov=cov, cov_robust=cov_robust, residuals=r, sigma=math.sqrt(s2),
                      rss=rss, n_points=len(L), iterations=its, E_at_zero=E_at_zero)


# ---------------------------------------------------------------------------- a naive baseline
def compute_frontier(C, L) -> np.ndarray:
    """Which runs are on the compute frontier: lower loss than every run of less compute.

    Args:
        C, L: 1-d sequences, arrays or tensors of equal length n, all > 0: compute and loss.
    Returns:
        an (n,) bool array, True for the frontier runs (of runs with equal C, the lower loss).
    """
    C, L = _as_float64(C, "C").numpy(), _as_float64(L, "L").numpy()
    if len(C) != len(L):
        raise ValueError(f"C and L must have the same length, got {len(C)} and {len(L)}")
    order = np.lexsort((L, C))                                        # by C, ties by L
    best, mask = math.inf, np.zeros(len(C), dtype=bool)
    for i in order:
        if L[i] < best:
            best, mask[i] = L[i], True
    return mask


def fit_compute_law(C, L) -> ComputeLaw:
    """L = (C_c / C)^alpha_C fitted to the compute frontier of the runs (Kaplan et al.'s eq. (1.4)).

    A straight line through the frontier's (log C, log L) by least squares: log L = alpha_C log C_c
    - alpha_C log C. It knows nothing of N and D, only that more compute has lowered the loss.

    Args:
        C, L: as :func:`compute_frontier`; the frontier must hold at least 2 runs.
    Returns:
        a :class:`mathllm.scaling.ComputeLaw`.
    """
    on = compute_frontier(C, L)
    if on.sum() < 2:
        raise ValueError(f"a power law needs at least 2 runs on the compute frontier, got {int(on.sum())}")
    x, y = np.log(np.asarray(C, dtype=np.float64)[on]), np.log(np.asarray(L, dtype=np.float64)[on])
    slope, intercept = np.polyfit(x, y, 1)                            # y = intercept + slope x
    if not slope < 0:
        raise ValueError(f"the frontier's loss does not fall with compute (slope {slope:.3g} in log-log)")
    log_C_c = intercept / -slope
    if not log_C_c < 700:                                             # exp would overflow float64
        raise ValueError(f"the frontier is too flat for a power law: C_c = exp({log_C_c:.4g})")
    return ComputeLaw(C_c=math.exp(log_C_c), alpha_C=float(-slope))
