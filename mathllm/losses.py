"""Loss functions, written out: softmax cross-entropy and the regression and binary losses.

For logits z (a row of V scores) and a target class y:

    softmax(z)_i = exp(z_i - m) / sum_j exp(z_j - m),   m = max_j z_j   (shift invariance)
    CE(z, y)     = -log softmax(z)_y = logsumexp(z) - z_y
    dCE/dz       = softmax(z) - onehot(y)

Subtracting the maximum changes nothing mathematically and keeps exp from overflowing;
:func:`naive_softmax` leaves it out, for contrast. Each loss is the negative log-likelihood of a
noise model: MSE of Gaussian noise, MAE of Laplace noise, cross-entropy of a categorical, binary
cross-entropy of a Bernoulli; Huber is quadratic near zero and linear in the tails. Every function
equals its ``torch.nn.functional`` counterpart (``reduction`` = ``"mean"``, ``"sum"`` or ``"none"``).

References: Goodfellow, Bengio & Courville, *Deep Learning* (2016), sections 5.5 and 6.2;
Huber (1964); Szegedy et al. (2016) for label smoothing; Chowdhery et al. (2022, PaLM) for the z-loss.
Leaves out: class weights, and label smoothing inside the loss (see :func:`smoothed_targets`).
KL divergence lives in :mod:`mathllm.probability` (``kl_divergence(p, q)``, distributions first);
for a model's logits z and a target distribution q, KL(q || softmax(z)) is ``kl_divergence(q, softmax(z))``.

Book: :doc:`/notebooks/01_tour` (softmax, cross-entropy) and :doc:`/notebooks/05_loss_functions`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_float_tensor, check_ids, check_positive, check_tensor

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------- helpers
def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_pair(pred: torch.Tensor, target: torch.Tensor, reduction: str,
                names: tuple[str, str] = ("input", "target")) -> None:
    check_tensor(pred, names[0])
    check_tensor(target, names[1])
    if pred.shape != target.shape:
        raise ValueError(f"{names[1]} must have the shape of {names[0]} {tuple(pred.shape)}, "
                         f"got {tuple(target.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _check_in_unit_interval(x: torch.Tensor, name: str) -> None:
    lo, hi = (float(x.detach().min()), float(x.detach().max())) if x.numel() else (0.0, 0.0)
    if lo < 0 or hi > 1:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} must lie in [0, 1], got a value {bad:g}")


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    check_tensor(logits, "logits")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, V), got {tuple(logits.shape)}")
    check_ids(targets, logits.shape[-1], name="targets")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape (N,) = ({logits.shape[0]},), got {tuple(targets.shape)}")


# ---------------------------------------------------------------------------- softmax
HALF = (torch.float16, torch.bfloat16)


def _opmath(z: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32, as torch computes them: a float16 sum of 65 505 ones is inf."""
    return z.float() if z.dtype in HALF else z


def _shift(z: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z - m, m), m = max z along ``dim`` (kept), detached: the result does not depend on m.

    A row of -inf (or a non-finite maximum) is shifted by 0, so it stays -inf instead of becoming nan.
    """
    check_float_tensor(z, "z")
    if z.dim() == 0 or z.shape[dim] == 0:
        raise ValueError(f"z must have at least one entry along dim={dim}, got shape {tuple(z.shape)}")
    m = z.detach().amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return z - m, m


def logsumexp(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(sum(exp(z))) along ``dim``, computed stably as m + log(sum(exp(z - m)))."""
    check_tensor(z, "z")
    d, m = _shift(_opmath(z), dim)
    return (m + d.exp().sum(dim=dim, keepdim=True).log()).squeeze(dim).to(z.dtype)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log softmax(z) = (z - m) - log(sum(exp(z - m))), m = max z.

    Not ``z - logsumexp(z)``: once the spacing of floats near z exceeds the log-sum (z = 1e8 in
    float32, 1e4 in float16), that difference rounds it away and two equal logits get log p = 0.
    """
    check_tensor(z, "z")
    d, _ = _shift(_opmath(z), dim)
    return (d - d.exp().sum(dim=dim, keepdim=True).log()).to(z.dtype)


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(z - max z) normalised along ``dim``: a probability distribution."""
    check_tensor(z, "z")
    e = _shift(_opmath(z), dim)[0].exp()
    return (e / e.sum(dim=dim, keepdim=True)).to(z.dtype)


def naive_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(z) / sum(exp(z)) *without* subtracting the maximum: overflows for large logits.

    Kept only to show the failure: exp(89) is inf in float32 and exp(12) is inf in float16.
    Use :func:`softmax`.
    """
    check_tensor(z, "z")
    e = z.exp()
    return e / e.sum(dim=dim, keepdim=True)


def naive_log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(naive_softmax(z)): inf/inf = nan once exp overflows, and log 0 = -inf once it underflows."""
    return naive_softmax(z, dim).log()


# ---------------------------------------------------------------------------- classification
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean",
                  ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy of ``logits`` (..., V) to ``targets``, in nats: the one definition in mathllm.

    ``targets`` is either class ids (...), an integer tensor, giving -log softmax(z)_y, or a target
    *distribution* (..., V), a float tensor, giving H(q, p) = -sum_i q_i log p_i with p = softmax(z)
    and 0 log 0 = 0; as ``F.cross_entropy`` takes both, but with the classes last (a language
    model's (B, T, V) logits need no reshaping). Class ids equal to ``ignore_index`` (padding, a
    masked prompt) contribute nothing: their loss is 0 under ``"none"``, and ``"mean"`` averages
    over the other tokens only, as torch does. The cross-entropy H(p, q) of two distributions is
    ``cross_entropy(q.log(), p, "none")``: log q are logits whose softmax is q.
    Returns a scalar, or (...) for ``reduction="none"``.
    """
    check_tensor(logits, "logits")
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (..., V) with at least one dimension before V, "
                         f"got {tuple(logits.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    check_tensor(targets, "targets")
    logp = log_softmax(logits, dim=-1)  # (..., V)
    if targets.is_floating_point():     # a distribution per row
        if targets.shape != logits.shape:
            raise ValueError(f"target probabilities must have the shape of logits {tuple(logits.shape)}, "
                             f"got {tuple(targets.shape)}")
        _check_in_unit_interval(targets, "targets")
        logp = torch.where(torch.isinf(logp) & (targets == 0), torch.zeros_like(logp), logp)  # 0 log 0 = 0
        return _reduce(-(targets * logp).sum(dim=-1), reduction)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have the shape of logits without V, {tuple(logits.shape[:-1])}, "
                         f"got {tuple(targets.shape)}")
    keep = targets != ignore_index                                     # (...)
    V = logits.shape[-1]
    check_ids(targets[keep], V, name="targets")                        # kept ids must be in [0, V)
    y = torch.where(keep, targets, torch.zeros_like(targets)).long()  # ignored -> any valid id, masked below
    loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1) * keep        # (...), 0 where ignored
    if reduction != "mean":
        return _reduce(loss, reduction)
    n = int(keep.sum())
    if n == 0:
        raise ValueError(f"every target equals ignore_index={ignore_index}: the mean over no tokens is undefined")
    return loss.sum() / n


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`cross_entropy` with respect to ``logits``: (softmax(z) - onehot(y)) / N."""
    _check_logits_targets(logits, targets)  # class ids only: the gradient for a target distribution q is (p - q) / N
    N, V = logits.shape
    y = torch.zeros_like(logits).scatter_(1, targets.long().unsqueeze(1), 1.0)
    return (softmax(logits, dim=-1) - y) / N


def per_sequence_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy averaged per sequence, then over sequences: logits (B, T, V), targets (B, T).

    Each sequence's mean runs over its own kept tokens (targets != ``ignore_index``), so every
    sequence weighs the same whatever its length. :func:`cross_entropy` with ``"mean"`` instead
    averages over all kept tokens of the batch, so every *token* weighs the same; the two agree when
    all sequences keep the same number of tokens.
    """
    check_tensor(logits, "logits")
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    loss = cross_entropy(logits, targets, "none", ignore_index)  # (B, T), 0 where ignored
    kept = (targets != ignore_index).sum(dim=-1)                  # (B,) tokens kept per sequence
    if bool((kept == 0).any()):
        raise ValueError(f"sequence {int((kept == 0).nonzero()[0, 0])} has every target equal to "
                         f"ignore_index={ignore_index}: its mean over no tokens is undefined")
    return (loss.sum(dim=-1) / kept).mean()


def z_loss(logits: torch.Tensor, coef: float = 1e-4, reduction: str = "mean") -> torch.Tensor:
    """PaLM's auxiliary z-loss, coef * (log Z)^2 with Z = sum_j exp(z_j), per row of ``logits`` (..., V).

    The softmax ignores a shift of the logits, so nothing in the cross-entropy stops log Z from
    drifting; this term pulls it toward 0 (a self-normalised softmax) and keeps the logits in the
    range where bfloat16 is accurate. Its gradient is 2 coef log Z softmax(z). Returns a scalar, or
    (...) for ``reduction="none"``.
    """
    check_float_tensor(logits, "logits")
    check_positive(coef, "coef", allow_zero=True)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if logits.numel() == 0:
        raise ValueError(f"logits must have at least one row of scores, got shape {tuple(logits.shape)}")
    return _reduce(coef * logsumexp(logits, dim=-1) ** 2, reduction)


def smoothed_targets(targets: torch.Tensor, num_classes: int, smoothing: float,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The label-smoothing mixture q = (1 - eps) onehot(y) + eps / V, shape (N, V)."""
    check_ids(targets, num_classes, name="targets")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1], got {smoothing}")
    onehot = torch.zeros(targets.shape[0], num_classes, dtype=dtype, device=targets.device)
    onehot.scatter_(1, targets.long().unsqueeze(1), 1.0)
    return (1.0 - smoothing) * onehot + smoothing / num_classes


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                                 reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` (N, V) to the mixture :func:`smoothed_targets` of ``targets`` (N,).

    Written as (1 - eps) CE(z, y) + eps * mean_i(-log p_i), which is the same number; equals
    ``F.cross_entropy(logits, targets, label_smoothing=eps)``.
    """
    _check_logits_targets(logits, targets)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1], got {smoothing}")
    logp = log_softmax(logits, dim=-1)                            # (N, V)
    nll = -logp.gather(1, targets.long().unsqueeze(1)).squeeze(1)  # (N,)
    uniform = -logp.mean(dim=-1)                                   # (N,) CE to the uniform distribution
    return _reduce((1.0 - smoothing) * nll + smoothing * uniform, reduction)


def binary_cross_entropy(probs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-[y log p + (1 - y) log(1 - p)] for probabilities ``probs`` and targets in [0, 1], same shape.

    Logs are clamped at -100 as torch does, so p = 0 gives a large finite loss instead of inf.
    Prefer :func:`binary_cross_entropy_with_logits`, which never forms p.
    """
    _check_pair(probs, targets, reduction, ("probs", "targets"))
    _check_in_unit_interval(probs, "probs")
    _check_in_unit_interval(targets, "targets")
    log_p = probs.log().clamp(min=-100.0)
    log_1mp = (1.0 - probs).log().clamp(min=-100.0)
    return _reduce(-(targets * log_p + (1.0 - targets) * log_1mp), reduction)


def binary_cross_entropy_with_logits(logits: torch.Tensor, targets: torch.Tensor,
                                     reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of p = sigmoid(z), computed from the logits z without forming p.

    -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - z y + log(1 + exp(-abs(z))): no overflow for any z.
    """
    _check_pair(logits, targets, reduction, ("logits", "targets"))
    _check_in_unit_interval(targets, "targets")
    z = logits
    return _reduce(z.clamp(min=0) - z * targets + torch.log1p((-z.abs()).exp()), reduction)


# ---------------------------------------------------------------------------- regression
def mse_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error (pred - target)^2: the Gaussian negative log-likelihood up to constants."""
    _check_pair(pred, target, reduction)
    return _reduce((pred - target) ** 2, reduction)


def mae_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error abs(pred - target) (torch's ``l1_loss``): the Laplace negative log-likelihood."""
    _check_pair(pred, target, reduction)
    return _reduce((pred - target).abs(), reduction)


def huber_loss(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Huber loss: r^2 / 2 for abs(r) <= delta, delta (abs(r) - delta / 2) beyond, r = pred - target.

    The two pieces meet with equal value and slope at abs(r) = delta, so the gradient is r clipped to
    [-delta, delta]: MSE's near zero, MAE's (bounded) for outliers.
    """
    _check_pair(pred, target, reduction)
    check_positive(delta, "delta")
    r = (pred - target).abs()
    return _reduce(torch.where(r <= delta, 0.5 * r ** 2, delta * (r - 0.5 * delta)), reduction)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, var: torch.Tensor | float,
                 reduction: str = "mean") -> torch.Tensor:
    """-log N(target; mean, var) = (log(2 pi var) + (target - mean)^2 / var) / 2, elementwise.

    Equals ``F.gaussian_nll_loss(mean, target, var, full=True)``; with var fixed it is MSE / (2 var) + const.
    """
    _check_pair(mean, target, reduction, ("mean", "target"))
    var = torch.as_tensor(var, dtype=mean.dtype, device=mean.device).expand_as(mean)
    if var.numel() and float(var.detach().min()) <= 0:
        raise ValueError(f"var must be > 0, got a value {float(var.detach().min()):g}")
    return _reduce(0.5 * (torch.log(2 * torch.pi * var) + (target - mean) ** 2 / var), reduction)


def laplace_nll(loc: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | float,
                reduction: str = "mean") -> torch.Tensor:
    """-log Laplace(target; loc, scale) = log(2 scale) + abs(target - loc) / scale, elementwise."""
    _check_pair(loc, target, reduction, ("loc", "target"))
    scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device).expand_as(loc)
    if scale.numel() and float(scale.detach().min()) <= 0:
        raise ValueError(f"scale must be > 0, got a value {float(scale.detach().min()):g}")
    return _reduce(torch.log(2 * scale) + (target - loc).abs() / scale, reduction)


# ---------------------------------------------------------------------------- bias and variance
@dataclass(frozen=True)
class BiasVariance:
    """The terms of E[(y - f_hat(x))^2] = bias^2 + variance + noise, averaged over the test points."""

    bias_sq: float    # mean over x of (E[f_hat(x)] - f(x))^2
    variance: float   # mean over x of Var[f_hat(x)] across training sets
    noise: float      # the irreducible Var[y | x]
    expected_mse: float  # measured E[(y - f_hat(x))^2] on fresh noisy targets


def bias_variance(predictions: torch.Tensor, f_true: torch.Tensor, y_test: torch.Tensor) -> BiasVariance:
    """Decompose the test error of a model refitted on R training sets.

    Args:
        predictions: (R, N) the prediction at N test points of the model fitted on each of R training sets.
        f_true: (N,) the noise-free function at the test points.
        y_test: (R, N) fresh noisy targets y = f(x) + noise, independent of the training sets.

    Returns:
        A :class:`BiasVariance`; ``bias_sq + variance + noise`` estimates ``expected_mse``.
    """
    check_tensor(predictions, "predictions")
    if predictions.dim() != 2:
        raise ValueError(f"predictions must have shape (R, N), got {tuple(predictions.shape)}")
    R, N = predictions.shape
    if tuple(f_true.shape) != (N,):
        raise ValueError(f"f_true must have shape (N,) = ({N},), got {tuple(f_true.shape)}")
    if y_test.shape != predictions.shape:
        raise ValueError(f"y_test must have the shape of predictions {(R, N)}, got {tuple(y_test.shape)}")
    mean_pred = predictions.mean(dim=0)                        # (N,) E[f_hat(x)]
    bias_sq = ((mean_pred - f_true) ** 2).mean()
    variance = predictions.var(dim=0, unbiased=False).mean()
    noise = ((y_test - f_true) ** 2).mean()
    expected_mse = ((y_test - predictions) ** 2).mean()
    return BiasVariance(float(bias_sq), float(variance), float(noise), float(expected_mse))
