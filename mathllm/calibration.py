"""Calibration of a classifier's top-1 prediction: reliability diagram, expected calibration error, temperature scaling.

A model is calibrated when, among the predictions it makes with confidence ``p``, a fraction ``p``
is right. :func:`reliability` bins the top-1 probability into ``M`` equal-width bins and compares
the mean confidence with the accuracy in each; the expected calibration error weights the gaps by
the bins' sizes (Naeini, Cooper and Hauskrecht 2015; Guo, Pleiss, Sun and Weinberger 2017).
Temperature scaling divides the logits by one ``T > 0`` fitted on held-out data; with
``beta = 1/T`` the held-out NLL is convex, so :func:`fit_temperature` solves for it by a safeguarded
Newton's method (Guo et al. 2017).

Leaves out: classwise and top-label calibration over all classes, adaptive (equal-mass) bins,
vector and matrix scaling, calibration of sampled text.

Book: notebooks/17_evaluation.ipynb, sections "Calibration" and "Temperature scaling".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import check_float_tensor, check_ids, check_positive, check_positive_int, check_shape


def _check_logits_targets(logits, targets) -> tuple[int, int]:
    check_float_tensor(logits, "logits")
    N, V = check_shape(logits, "N V", name="logits")
    check_shape(targets, "N", name="targets", N=N)
    check_ids(targets, V, name="targets")
    return N, V


# ---------------------------------------------------------------------------- reliability
@dataclass(frozen=True)
class Reliability:
    """Top-1 calibration in equal-width confidence bins (see :func:`reliability`)."""

    edges: torch.Tensor       # (M + 1,) bin edges, 0 to 1
    confidence: torch.Tensor  # (M,) mean top-1 probability in each bin (0 in an empty bin)
    accuracy: torch.Tensor    # (M,) fraction correct in each bin (0 in an empty bin)
    counts: torch.Tensor      # (M,) predictions in each bin
    ece: float                # sum_m (n_m / N) |accuracy_m - confidence_m|


def reliability(logits: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> Reliability:
    """Reliability-diagram data and the expected calibration error of the top-1 prediction.

    ``ECE = sum_m (n_m / N) |acc(B_m) - conf(B_m)|`` over bins ``B_m = ((m-1)/M, m/M]`` of the top-1
    probability (Naeini, Cooper and Hauskrecht 2015; Guo et al. 2017).

    Args:
        logits: (N, V) float.  targets: (N,) int64.  n_bins: M.

    Book: :doc:`/notebooks/17_evaluation`, section "Calibration"
    """
    N, V = _check_logits_targets(logits, targets)
    check_positive_int(n_bins, "n_bins")
    if N == 0:
        raise ValueError("logits must hold at least one prediction, got shape (0, V)")
    conf, pred = logits.double().softmax(-1).max(-1)                      # (N,), (N,)
    correct = (pred == targets).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    which = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)   # bin m holds conf in ((m-1)/M, m/M]
    counts = torch.bincount(which, minlength=n_bins).double()
    safe = counts.clamp(min=1)
    mean_conf = torch.bincount(which, weights=conf, minlength=n_bins) / safe
    acc = torch.bincount(which, weights=correct, minlength=n_bins) / safe
    ece = float(((counts / N) * (acc - mean_conf).abs()).sum())
    return Reliability(edges, mean_conf, acc, counts.long(), ece)


# ---------------------------------------------------------------------------- temperature scaling
def temperature_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    """Mean NLL in nats of ``softmax(logits / temperature)`` on ``targets``.

    Args:
        logits: (N, V) float.  targets: (N,) int64 in ``[0, V)``.  temperature: a finite number > 0.

    Book: :doc:`/notebooks/17_evaluation`, section "Temperature scaling"
    """
    N, _ = _check_logits_targets(logits, targets)
    check_positive(temperature, "temperature")
    if N == 0:
        raise ValueError("logits must hold at least one prediction, got shape (0, V)")
    return float(F.cross_entropy(logits.double() / temperature, targets))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, tol: float = 1e-10,
                    max_iter: int = 100, beta_max: float = 1e3) -> float:
    """The temperature ``T`` that minimises the mean NLL of ``softmax(logits / T)`` on held-out data.

    With ``beta = 1/T`` the NLL ``f(beta) = mean_i [logsumexp(beta z_i) - beta z_{i,y_i}]`` is convex:
    ``f'(beta) = mean_i (E_{p_beta}[z_i] - z_{i,y_i})`` and ``f''(beta) = mean_i Var_{p_beta}(z_i) >= 0``.
    Newton's method on ``f'`` is kept inside a bracket ``[lo, hi]`` of the root and falls back to
    bisection when a step leaves it, so it converges from any start.

    Args:
        logits: (N, V) float.  targets: (N,) int64.

    Returns:
        the fitted temperature ``T = 1 / beta``, a float (``1 / beta_max`` if the NLL still falls there).

    Book: :doc:`/notebooks/17_evaluation`, section "Temperature scaling"
    """
    N, _ = _check_logits_targets(logits, targets)
    if N == 0:
        raise ValueError("logits must hold at least one prediction, got shape (0, V)")
    check_positive(tol, "tol"), check_positive_int(max_iter, "max_iter"), check_positive(beta_max, "beta_max")
    z = logits.double()
    z_y = z.gather(1, targets[:, None])[:, 0]                             # (N,) logit of the true token

    def derivatives(beta: float) -> tuple[float, float]:
        p = torch.softmax(beta * z, -1)                                   # (N, V)
        mean = (p * z).sum(-1)                                            # E_p[z]
        var = (p * z * z).sum(-1) - mean ** 2                             # Var_p(z)
        return float((mean - z_y).mean()), float(var.mean())

    if float((z.mean(-1) - z_y).mean()) >= 0:                             # f'(0) >= 0: the minimum is at beta <= 0
        raise ValueError("the NLL does not fall for any beta > 0: the logits carry no information about the targets")
    lo, hi = 0.0, 1.0
    while derivatives(hi)[0] < 0:                                         # f still falls at hi: widen
        lo, hi = hi, 2 * hi
        if hi > beta_max:
            return 1 / beta_max
    beta = hi if lo == 0 else (lo + hi) / 2
    for _ in range(max_iter):
        g, h = derivatives(beta)
        if abs(g) < tol:
            break
        lo, hi = (beta, hi) if g < 0 else (lo, beta)                      # keep the root bracketed
        step = beta - g / h if h > 0 else None
        beta = step if step is not None and lo < step < hi else (lo + hi) / 2
    return 1 / beta
