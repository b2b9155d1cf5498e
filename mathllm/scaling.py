"""Scaling laws: the loss of a language model as a function of its size N and its training tokens D.

Two published forms, with the constants of the papers:

* Kaplan et al. (2020), eq. (1.5): ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D``
  (:class:`KaplanLaw`), N the non-embedding parameters;
* Hoffmann et al. (2022), "Chinchilla", approach 3: ``L(N, D) = E + A / N^alpha + B / D^beta``
  (:class:`ChinchillaLaw`), and its compute-optimal allocation under ``C = 6 N D``
  (:meth:`ChinchillaLaw.compute_optimal`), the closed form of the Lagrange conditions.

The training compute is ``C = 6 N D`` FLOPs: every weight that multiplies an activation costs 2
FLOPs per token forward and 4 backward (:func:`mathllm.transformer.flops_per_token` adds the
attention term 12 L T C). :func:`fit_chinchilla` fits the Chinchilla form to measured losses by
least squares on the log residuals, as Hoffmann et al. fit in log space, with a Levenberg-Marquardt
(damped Gauss-Newton) iteration in float64 and the parameter covariance ``s^2 (J^T J)^-1`` from the
Jacobian J of the residuals. :func:`train_point` and :func:`sweep` train the runs with
:class:`mathllm.train.Trainer`.

References: Kaplan et al. 2020 (arXiv:2001.08361), eqs. (1.1), (1.2), (1.5) and Table 2; Hoffmann
et al. 2022 (arXiv:2203.15556), section 3.3 and appendix D.2; Besiroglu et al. 2024 (arXiv:2404.10102),
the replication of approach 3; Levenberg 1944, Marquardt 1963; Nocedal & Wright 2006, ch. 10.
Leaves out: the Huber loss of Hoffmann et al. (plain least squares here), their approaches 1 and 2
(IsoFLOP profiles), Kaplan's L(N, S) form with the critical batch size, repeated data (Muennighoff
et al. 2023), learning-rate and batch-size laws.

Book: :doc:`/notebooks/13_scaling_laws`
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from .checks import check_float_tensor, check_positive_int, check_shape
from .data import TokenData
from .train import TrainConfig, Trainer
from .transformer import GPTConfig, flops_per_token, matmul_params

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


def _check_positive_values(x, name: str):
    """``x`` (a number, array or tensor) must be finite and > 0 everywhere."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.ndarray, np.number, torch.Tensor)):
        raise TypeError(f"{name} must be a number, a numpy array or a tensor, got {type(x).__name__}")
    values = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"{name} must be finite and > 0, got {x!r}")
    return x


def _check_fields_positive(obj, may_be_zero: tuple[str, ...] = ()) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        is_number = not isinstance(value, bool) and isinstance(value, (int, float))  # before comparing: "a" > 0 raises
        if not (is_number and math.isfinite(value) and (value >= 0 if f.name in may_be_zero else value > 0)):
            bound = ">= 0" if f.name in may_be_zero else "> 0"
            raise ValueError(f"{type(obj).__name__}.{f.name} must be a finite number {bound}, got {value!r}")


# ---------------------------------------------------------------------------- compute
def approx_compute(N, D):
    """C = 6 N D: training FLOPs of N matmul weights on D tokens (2 forward + 4 backward per weight and token).

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    _check_positive_values(N, "N")
    _check_positive_values(D, "D")
    return 6 * N * D


def training_compute(config: GPTConfig, tokens: int) -> int:
    """Training FLOPs of ``GPT(config)`` on ``tokens`` tokens at full context: (6 N + 12 L T C) D.

    The 6 N D of :func:`approx_compute` plus attention's scores and weighted sums, a fraction
    12 L T C / 6 N, about T / (6 C) of 6 N for a wide model (N about 12 L C^2).

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens must be an int >= 1, got {tokens!r}")
    return flops_per_token(config) * tokens


# ---------------------------------------------------------------------------- the laws
@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. (2020), eq. (1.5): L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D.

    L in nats per token (WebText2, GPT-2's BPE), N non-embedding parameters, D tokens. As D -> oo
    it becomes eq. (1.1), L = (N_c / N)^alpha_N; as N -> oo, eq. (1.2), L = (D_c / D)^alpha_D. The
    defaults are the constants of those two limits; :meth:`kaplan2020_joint` holds the joint fit
    of Table 2. No irreducible term: the loss tends to 0 as N and D grow.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    N_c: float = 8.8e13    # non-embedding parameters, eq. (1.1)
    D_c: float = 5.4e13    # tokens, eq. (1.2)
    alpha_N: float = 0.076
    alpha_D: float = 0.095

    def __post_init__(self):
        _check_fields_positive(self)

    @classmethod
    def kaplan2020(cls) -> "KaplanLaw":
        """The constants of eqs. (1.1) and (1.2): alpha_N = 0.076, alpha_D = 0.095."""
        return cls()

    @classmethod
    def kaplan2020_joint(cls) -> "KaplanLaw":
        """Table 2, the joint fit of L(N, D): alpha_N = 0.076, alpha_D = 0.103, N_c = 6.4e13, D_c = 1.8e13."""
        return cls(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103)

    def loss(self, N, D):
        """The predicted loss (nats per token) of N parameters trained on D tokens; broadcasts."""
        _check_positive_values(N, "N")
        _check_positive_values(D, "D")
        return ((self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D) ** self.alpha_D


@dataclass(frozen=True)
class ChinchillaLaw:
    """Hoffmann et al. (2022), approach 3: L(N, D) = E + A / N^alpha + B / D^beta.

    E is the loss of an ideal model on infinite data (the entropy of the text), A / N^alpha what a
    finite model loses, B / D^beta what finite data loses. The defaults are the published fit
    (MassiveText, nats per token, N all parameters); :meth:`besiroglu2024` the replication's.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28

    def __post_init__(self):
        _check_fields_positive(self, may_be_zero=("E",))  # E = 0: no irreducible loss (a fit at its bound)

    @classmethod
    def hoffmann2022(cls) -> "ChinchillaLaw":
        """The published approach-3 fit: E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28."""
        return cls()

    @classmethod
    def besiroglu2024(cls) -> "ChinchillaLaw":
        """Besiroglu et al. (2024), approach 3 refitted to the data read off Hoffmann et al.'s figure."""
        return cls(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

    def loss(self, N, D):
        """The predicted loss of N parameters trained on D tokens; broadcasts over arrays and tensors."""
        _check_positive_values(N, "N")
        _check_positive_values(D, "D")
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def compute_optimal(self, C):
        """The N*, D* that minimise :meth:`loss` subject to 6 N D = C.

        The Lagrange conditions give alpha A / N^alpha = beta B / D^beta, so (eq. scaling-optimal)::

            N* = G (C / 6)^(beta / (alpha + beta)),   D* = (C / 6) / N*,
            G = (alpha A / (beta B))^(1 / (alpha + beta)).

        Args:
            C: compute in FLOPs, a number, array or tensor > 0.
        Returns:
            ``(N_opt, D_opt)``, shaped as ``C``.
        """
        _check_positive_values(C, "C")
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / s)
        N_opt = G * (C / 6) ** (self.beta / s)
        return N_opt, (C / 6) / N_opt


# ---------------------------------------------------------------------------- fitting
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

    ``theta`` = (log E, log A, log B, alpha, beta) and ``cov`` its (5, 5) covariance
    s^2 (J^T J)^-1, where s^2 = rss / dof is the variance of the log residuals. ``stderr`` holds
    the standard errors of E, A, B, alpha, beta (delta method: se(E) = E se(log E)). When the fit
    drives E to its bound 0 (``E_at_zero``: the data show no floor), log E changes no residual; it is
    held there, left out of the covariance (its row and column are 0) and its standard error is nan.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    law: ChinchillaLaw
    theta: torch.Tensor
    cov: torch.Tensor
    sigma: float        # s, the standard deviation of a log residual: the relative noise of one loss
    rss: float
    n_points: int
    iterations: int
    E_at_zero: bool = False

    @property
    def dof(self) -> int:
        """Degrees of freedom of the residuals: points minus the parameters estimated (5, or 4 with E at 0)."""
        return self.n_points - (4 if self.E_at_zero else 5)

    @property
    def stderr(self) -> dict[str, float]:
        """Standard errors of E, A, B, alpha, beta."""
        se = torch.sqrt(torch.diag(self.cov))
        values = [getattr(self.law, name) for name in PARAM_NAMES]
        out = {name: float(se[i] * (values[i] if i < 3 else 1.0)) for i, name in enumerate(PARAM_NAMES)}
        return out | {"E": math.nan} if self.E_at_zero else out

    def predict(self, N, D, *, new_observation: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The fitted loss at (N, D) and its standard error.

        The variance of log L-hat is g^T cov g with g the Jacobian row at (N, D) (delta method);
        ``new_observation`` adds s^2, the noise of one more measured run, so that the interval is
        where a new run's loss should fall. The standard error of L is L times that of log L.

        Returns:
            ``(loss, stderr)``, two float64 arrays shaped as the broadcast of N and D.
        """
        _check_positive_values(N, "N")
        _check_positive_values(D, "D")
        Nb, Db = np.broadcast_arrays(np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64))
        log_L, J = log_loss_and_jacobian(self.theta, torch.as_tensor(Nb.reshape(-1)), torch.as_tensor(Db.reshape(-1)))
        var = torch.einsum("ni,ij,nj->n", J, self.cov, J)            # (n,) = diag(J cov J^T)
        if new_observation:
            var = var + self.sigma ** 2
        loss = torch.exp(log_L)
        return loss.numpy().reshape(Nb.shape), (loss * torch.sqrt(var)).numpy().reshape(Nb.shape)

    def allocation_exponent(self) -> tuple[float, float]:
        """a = beta / (alpha + beta), the exponent of N* proportional to C^a, and its standard error."""
        alpha, beta = float(self.theta[3]), float(self.theta[4])
        a = beta / (alpha + beta)
        grad = torch.zeros(5, dtype=torch.float64)
        grad[3], grad[4] = -beta / (alpha + beta) ** 2, alpha / (alpha + beta) ** 2
        return a, float(torch.sqrt(grad @ self.cov @ grad))


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
    H = J[:, free].T @ J[:, free]
    if torch.linalg.cond(H) > 1e14:
        warnings.warn("J^T J is nearly singular: the data do not determine the parameters; "
                      "the standard errors are unreliable")
    cov = torch.zeros(5, 5, dtype=torch.float64)
    try:
        cov[free[:, None], free] = s2 * torch.linalg.inv(H)
    except torch.linalg.LinAlgError:
        raise ValueError("J^T J is singular: the data do not determine the five parameters (vary both N and D, "
                         "over more than one value each)") from None
    # At the bound, log E ran off towards -inf: exp() of it may be a denormal or exactly 0.0,
    # depending on how far the iterations went on this CPU. Report the bound itself.
    law = ChinchillaLaw(E=0.0 if E_at_zero else float(theta[0].exp()), A=float(theta[1].exp()), B=float(theta[2].exp()),
                        alpha=float(theta[3]), beta=float(theta[4]))
    return ScalingFit(law=law, theta=theta, cov=cov, sigma=math.sqrt(s2), rss=rss, n_points=len(L), iterations=its,
                      E_at_zero=E_at_zero)


# ---------------------------------------------------------------------------- measuring
def train_point(config: TrainConfig, data: TokenData) -> dict:
    """Train ``GPT(config.model)`` for ``config.max_steps`` steps and measure its validation loss.

    Returns:
        ``{"n_embd", "n_layer", "steps", "lr", "N", "D", "C", "C_exact", "loss", "train_loss"}``: N the matmul
        weights (:func:`mathllm.transformer.matmul_params`), D the training tokens, C = 6 N D,
        C_exact from :func:`training_compute`, the losses in nats per token.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    trainer = Trainer(config, data)
    trainer.train()
    ev = trainer.evaluate()
    m = trainer.model_config
    N, D = matmul_params(m), trainer.tokens_per_step * config.max_steps
    return {"n_embd": m.n_embd, "n_layer": m.n_layer, "steps": config.max_steps, "lr": config.lr, "N": N, "D": D,
            "C": approx_compute(N, D), "C_exact": training_compute(m, D), "loss": ev["val_loss"],
            "train_loss": ev["train_loss"]}


def run_config(base: TrainConfig, width: int, steps: int, *, warmup_fraction: float = 0.1,
               lr_exponent: float = 1.0) -> TrainConfig:
    """``base`` resized to one point of a sweep: ``n_embd`` = width, ``max_steps`` = steps.

    The cosine schedule ends at the run's last step (Hoffmann et al.: a run read off in the middle of
    a longer schedule overestimates the loss at its D), the warm-up is ``warmup_fraction`` of the
    steps, and ``lr``, ``min_lr`` are those of ``base`` times (``base.model.n_embd`` / width)^
    ``lr_exponent``: with the default 1 the rate falls as 1 / width, the rule muP gives for Adam on
    hidden matrices (Yang et al. 2022), so that no size runs with a rate tuned for another.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    if not isinstance(base, TrainConfig):
        raise TypeError(f"base must be a TrainConfig, got {type(base).__name__}")
    check_positive_int(width, "width"), check_positive_int(steps, "steps")  # width = 0 divided by zero
    if isinstance(lr_exponent, bool) or not isinstance(lr_exponent, (int, float)) or not math.isfinite(lr_exponent):
        raise ValueError(f"lr_exponent must be a finite number, got {lr_exponent!r}")
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")
    scale = (base.model.n_embd / width) ** lr_exponent
    return replace(base, model=replace(base.model, n_embd=width), max_steps=steps, decay_steps=0,
                   warmup_steps=int(warmup_fraction * steps), lr=base.lr * scale, min_lr=base.min_lr * scale)


def sweep(base: TrainConfig, data: TokenData, widths, steps, **kwargs) -> list[dict]:
    """Train :func:`run_config` ``(base, width, steps, **kwargs)`` for every pair of the grid.

    Returns:
        the :func:`train_point` records, widths in the outer loop and steps in the inner one.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    from tqdm.auto import tqdm
    grid = [(w, s) for w in widths for s in steps]
    if not grid:
        raise ValueError("widths and steps must both be non-empty")
    return [train_point(run_config(base, w, s, **kwargs), data) for w, s in tqdm(grid, desc="sweep", unit="run")]
