"""Evaluating a language model: per-token losses, bootstrap intervals, bits per byte, errors, calibration.

What a held-out loss means and how sure we are of it:

1. per-token negative log-likelihoods over a held-out text, cut into non-overlapping windows of the
   model's context (:func:`next_token_logits`, :func:`token_nll`);
2. bootstrap confidence intervals of a ratio of sums (the mean loss, or nats per byte), resampling
   contiguous blocks so that the dependence between neighbouring tokens is kept
   (:func:`bootstrap`, :func:`bootstrap_ci`; Efron 1979; Carlstein 1986);
3. bits per byte, the loss that compares models with different tokenizers, and a paired bootstrap of
   the difference of two models over the same chunks of text (:func:`token_byte_lengths`,
   :func:`chunk_sums`, :func:`compare_bits_per_byte`);
4. error analysis: a confusion matrix over classes of characters (:func:`char_classes`,
   :func:`confusion_matrix`);
5. calibration: the reliability diagram and the expected calibration error of the top-1 prediction,
   and temperature scaling fitted by Newton's method on the convex held-out NLL in ``beta = 1/T``
   (:func:`reliability`, :func:`fit_temperature`; Guo, Pleiss, Sun and Weinberger 2017);
6. counting what was never seen: the Good-Turing estimate of the missing mass, the quantity behind
   Kalai and Vempala's (2023) lower bound on the hallucination rate of calibrated models, and the
   overlap of held-out n-grams with the training text (:func:`good_turing_missing_mass`,
   :func:`ngram_seen`, :func:`ngram_overlap`).

Leaves out: sliding-window evaluation with overlapping contexts, BCa and studentized intervals,
classwise calibration and adaptive bins, vector or matrix scaling.

Book: :doc:`/notebooks/17_evaluation`
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_ids, check_positive_int, check_shape, check_tensor

CHAR_CLASSES = ("lower", "upper", "space", "newline", "punct", "other")


# ---------------------------------------------------------------------------- per-token losses
def _logits_of(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out  # GPT returns (logits, loss)


def _windows(ids: torch.Tensor, block_size: int):
    """Non-overlapping windows (start, x, y): x = ids[s:s+T], y = ids[s+1:s+T+1] (the last may be shorter)."""
    (N,) = check_shape(ids, "N", name="ids")
    if N < 2:
        raise ValueError(f"ids must hold at least 2 tokens (one prediction), got {N}")
    check_positive_int(block_size, "block_size")
    for s in range(0, N - 1, block_size):
        e = min(s + block_size, N - 1)
        yield ids[s:e], ids[s + 1:e + 1]


@torch.no_grad()
def next_token_logits(model, ids: torch.Tensor, block_size: int, batch_size: int = 64) -> torch.Tensor:
    """The model's logits for every next token of ``ids``, in non-overlapping windows of ``block_size``.

    The model is put in eval mode (no dropout) for the call and returned to its previous mode.

    Args:
        model: maps (B, T) ids to (B, T, V) logits (or a tuple whose first item is the logits, as GPT).
        ids: (N,) int64 token ids of a held-out text.
        block_size: T, the context; the token at offset j of a window sees j earlier tokens.

    Returns:
        (N - 1, V) float32 logits on the CPU; row i predicts ``ids[i + 1]``.

    Book: :doc:`/notebooks/17_evaluation`
    """
    check_tensor(ids, "ids")
    if ids.dtype != torch.int64:
        raise TypeError(f"ids must be int64 token ids, got {str(ids.dtype).replace('torch.', '')}")
    check_positive_int(batch_size, "batch_size")
    windows = list(_windows(ids, block_size))
    device = next(model.parameters()).device
    full = [x for x, _ in windows if len(x) == block_size]
    rest = [x for x, _ in windows if len(x) < block_size]                 # at most one, the last
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(full), batch_size):
            x = torch.stack(full[i:i + batch_size]).to(device)           # (B, T)
            logits = _logits_of(model, x).float()                        # (B, T, V)
            out.append(logits.reshape(-1, logits.shape[-1]).cpu())       # (B*T, V)
        for x in rest:
            logits = _logits_of(model, x[None].to(device)).float()       # (1, T', V)
            out.append(logits.reshape(-1, logits.shape[-1]).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each target in nats: ``-log softmax(logits)[targets]``.

    Args:
        logits: (N, V).  targets: (N,) int64 in ``[0, V)``.

    Returns:
        (N,) float64.

    Book: :doc:`/notebooks/17_evaluation`
    """
    N, V = check_shape(logits, "N V", name="logits")
    check_shape(targets, "N", name="targets", N=N)
    check_ids(targets, V, name="targets")
    return F.cross_entropy(logits.double(), targets, reduction="none")


# ---------------------------------------------------------------------------- bootstrap
def bootstrap(num: torch.Tensor, den: torch.Tensor | None = None, *, n_boot: int = 1000, block: int = 1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Bootstrap replicates of the ratio of sums ``sum(num) / sum(den)`` (the mean when ``den`` is None).

    The sequence is cut into ``n // block`` contiguous blocks (a remainder shorter than ``block`` is
    dropped), and each replicate draws that many blocks with replacement (the non-overlapping block
    bootstrap of Carlstein 1986). ``block=1`` is Efron's bootstrap of
    independent observations; tokens of a text are not independent, and blocks longer than the
    dependence keep it inside each block.

    Args:
        num: (n,) or (k, n) values; k statistics resampled with the *same* blocks (a paired bootstrap).
        den: the same shape, or None for ones.
        n_boot: replicates.  block: observations per block.

    Returns:
        (n_boot,) or (n_boot, k) float64 replicates.

    Book: :doc:`/notebooks/17_evaluation`
    """
    check_tensor(num, "num")
    if num.dim() not in (1, 2):
        raise ValueError(f"num must have shape (n,) or (k, n), got {tuple(num.shape)}")
    den = torch.ones_like(num, dtype=torch.float64) if den is None else den
    check_tensor(den, "den")
    if den.shape != num.shape:
        raise ValueError(f"den must have the shape of num {tuple(num.shape)}, got {tuple(den.shape)}")
    for name, value in (("n_boot", n_boot), ("block", block)):
        check_positive_int(value, name)
    single = num.dim() == 1
    num, den = num.double().reshape(-1, num.shape[-1]), den.double().reshape(-1, num.shape[-1])  # (k, n)
    k, n = num.shape
    n_blocks = n // block
    if n_blocks < 2:
        raise ValueError(f"{n} observations make {n_blocks} block(s) of {block}: at least 2 are needed")
    nb = num[:, :n_blocks * block].reshape(k, n_blocks, block).sum(-1)   # (k, n_blocks) block sums
    db = den[:, :n_blocks * block].reshape(k, n_blocks, block).sum(-1)
    reps = []
    chunk = max(1, 2 ** 22 // n_blocks)                                   # replicates per step: bounded memory
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = torch.randint(n_blocks, (m, n_blocks), generator=generator)  # (m, n_blocks) drawn blocks
        counts = torch.zeros(m, n_blocks, dtype=torch.float64).scatter_add_(
            1, idx, torch.ones(m, n_blocks, dtype=torch.float64))          # times each block was drawn
        reps.append((counts @ nb.T) / (counts @ db.T))                     # (m, n_blocks) x (n_blocks, k) -> (m, k)
    out = torch.cat(reps)
    return out[:, 0] if single else out


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile interval at ``level`` (see :func:`bootstrap_ci`)."""

    estimate: float
    low: float
    high: float
    level: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def map(self, f) -> "ConfidenceInterval":
        """The interval of ``f(statistic)`` for an increasing ``f`` (percentile intervals are equivariant)."""
        return ConfidenceInterval(f(self.estimate), f(self.low), f(self.high), self.level)


def percentile_interval(replicates: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of (n_boot,) replicates."""
    check_shape(replicates, "R", name="replicates")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(replicates.double(), q).tolist()
    return low, high


def bootstrap_ci(num: torch.Tensor, den: torch.Tensor | None = None, *, level: float = 0.95, n_boot: int = 1000,
                 block: int = 1, generator: torch.Generator | None = None) -> ConfidenceInterval:
    """Percentile bootstrap interval of ``sum(num) / sum(den)`` for (n,) values (see :func:`bootstrap`).

    Book: :doc:`/notebooks/17_evaluation`
    """
    check_shape(num, "n", name="num")
    if num.numel() < 2:  # one observation has no spread to resample; none has no estimate
        raise ValueError(f"num must hold at least 2 observations, got shape {tuple(num.shape)}")
    reps = bootstrap(num, den, n_boot=n_boot, block=block, generator=generator)
    estimate = float(num.double().sum() / (den.double().sum() if den is not None else num.numel()))
    return ConfidenceInterval(estimate, *percentile_interval(reps, level), level)


# ---------------------------------------------------------------------------- bits per byte
def token_byte_lengths(tokenizer) -> torch.Tensor:
    """(V,) int64: the number of UTF-8 bytes each token id stands for.

    Works for a :class:`~mathllm.bpe.BPETokenizer` (its ``vocab`` of bytes) and a
    :class:`~mathllm.char_tokenizer.CharTokenizer` (its ``chars``).
    """
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, dict) and all(isinstance(v, bytes) for v in vocab.values()):
        return torch.tensor([len(vocab[i]) for i in range(len(vocab))], dtype=torch.int64)
    chars = getattr(tokenizer, "chars", None)
    if chars is not None:
        return torch.tensor([len(c.encode("utf-8")) for c in chars], dtype=torch.int64)
    raise TypeError(f"expected a tokenizer with a bytes vocab (BPE) or chars (CharTokenizer), got {type(tokenizer).__name__}")


def bits_per_byte(nats: float | torch.Tensor, n_bytes: int | torch.Tensor) -> float:
    """Total nats over ``n_bytes`` bytes, in bits per byte: ``sum(nats) / (ln 2 * bytes)``.

    The code length of a text does not depend on how it was cut into tokens, so this compares
    models with different tokenizers (nats per token does not).
    """
    total = float(nats.sum()) if isinstance(nats, torch.Tensor) else float(nats)
    n = float(n_bytes.sum()) if isinstance(n_bytes, torch.Tensor) else float(n_bytes)
    if n <= 0:
        raise ValueError(f"n_bytes must be positive, got {n}")
    return total / (math.log(2) * n)


def chunk_sums(values: torch.Tensor, byte_lengths: torch.Tensor, chunk_bytes: int,
               n_chunks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-token values and byte counts over chunks of ``chunk_bytes`` bytes of the text.

    A token belongs to the chunk holding its first byte, so two tokenizations of one text give
    chunks that cover (almost exactly) the same text: the unit of a fair, paired bootstrap.

    Args:
        values: (N,) per-token values (nats).  byte_lengths: (N,) bytes of each token.
        n_chunks: pad to this many chunks (default: as many as the text fills).

    Returns:
        ``(value_sums, byte_sums)``, each (n_chunks,) float64.
    """
    (N,) = check_shape(values, "N", name="values")
    check_shape(byte_lengths, "N", name="byte_lengths", N=N)
    check_positive_int(chunk_bytes, "chunk_bytes")
    starts = torch.cumsum(byte_lengths, 0) - byte_lengths                 # (N,) offset of each token's first byte
    which = starts // chunk_bytes
    size = int(which.max()) + 1 if n_chunks is None else n_chunks
    if size <= int(which.max()):
        raise ValueError(f"n_chunks={n_chunks} is too few: the text fills {int(which.max()) + 1} chunks")
    v = torch.bincount(which, weights=values.double(), minlength=size)
    b = torch.bincount(which, weights=byte_lengths.double(), minlength=size)
    return v, b


@dataclass(frozen=True)
class Comparison:
    """Bits per byte of two models on one text, and their difference ``a - b``, each with an interval."""

    a: ConfidenceInterval
    b: ConfidenceInterval
    difference: ConfidenceInterval


def compare_bits_per_byte(nats_a: torch.Tensor, bytes_a: torch.Tensor, nats_b: torch.Tensor, bytes_b: torch.Tensor,
                          *, chunk_bytes: int = 2048, level: float = 0.95, n_boot: int = 1000,
                          generator: torch.Generator | None = None) -> Comparison:
    """Two models on the same text, each with its own tokenizer, compared in bits per byte.

    Per-token nats (N_a,), (N_b,) and byte lengths of the predicted tokens are summed over the same
    byte chunks (:func:`chunk_sums`); chunks are resampled jointly, so the interval of the difference
    accounts for the two models' errors being correlated (the same passages are hard for both).

    Book: :doc:`/notebooks/17_evaluation`
    """
    va, ba = chunk_sums(nats_a, bytes_a, chunk_bytes)
    vb, bb = chunk_sums(nats_b, bytes_b, chunk_bytes)
    n = max(len(va), len(vb))
    va, ba = chunk_sums(nats_a, bytes_a, chunk_bytes, n)
    vb, bb = chunk_sums(nats_b, bytes_b, chunk_bytes, n)
    keep = (ba > 0) & (bb > 0)                                            # chunks both models predicted
    num, den = torch.stack([va[keep], vb[keep]]), torch.stack([ba[keep], bb[keep]])  # (2, n)
    reps = bootstrap(num, den, n_boot=n_boot, generator=generator) / math.log(2)    # (n_boot, 2) bits per byte
    ests = [bits_per_byte(va[keep], ba[keep]), bits_per_byte(vb[keep], bb[keep])]
    cis = [ConfidenceInterval(e, *percentile_interval(reps[:, j], level), level) for j, e in enumerate(ests)]
    diff = ConfidenceInterval(ests[0] - ests[1], *percentile_interval(reps[:, 0] - reps[:, 1], level), level)
    return Comparison(cis[0], cis[1], diff)


# ---------------------------------------------------------------------------- error analysis
def char_class(ch: str) -> str:
    """The class of one character: lower, upper, space, newline, punct (ASCII punctuation), other."""
    if not isinstance(ch, str) or len(ch) != 1:
        raise ValueError(f"expected one character, got {ch!r}")
    if ch.islower():
        return "lower"
    if ch.isupper():
        return "upper"
    if ch == " ":
        return "space"
    if ch == "\n":
        return "newline"
    if ch.isascii() and not ch.isalnum() and ch.isprintable():
        return "punct"
    return "other"


def char_classes(chars) -> torch.Tensor:
    """(V,) int64: the index in ``CHAR_CLASSES`` of the class of each character of an alphabet."""
    return torch.tensor([CHAR_CLASSES.index(char_class(c)) for c in chars], dtype=torch.int64)


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts; entry ``[i, j]`` counts items of true class ``i`` predicted as class ``j``.

    Book: :doc:`/notebooks/17_evaluation`
    """
    (N,) = check_shape(targets, "N", name="targets")
    check_shape(predictions, "N", name="predictions", N=N)
    check_ids(targets, num_classes, name="targets"), check_ids(predictions, num_classes, name="predictions")
    flat = targets.long() * num_classes + predictions.long()              # (N,) index into the (K, K) matrix
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


# ---------------------------------------------------------------------------- calibration
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
        logits: (N, V).  targets: (N,) int64.  n_bins: M.

    Book: :doc:`/notebooks/17_evaluation`
    """
    N, V = check_shape(logits, "N V", name="logits")
    check_shape(targets, "N", name="targets", N=N)
    check_ids(targets, V, name="targets")
    check_positive_int(n_bins, "n_bins")
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


def temperature_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    """Mean NLL in nats of ``softmax(logits / temperature)`` on ``targets``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return float(token_nll(logits.double() / temperature, targets).mean())


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, tol: float = 1e-10,
                    max_iter: int = 100, beta_max: float = 1e3) -> float:
    """The temperature ``T`` that minimises the mean NLL of ``softmax(logits / T)`` on held-out data.

    With ``beta = 1/T`` the NLL ``f(beta) = mean_i [logsumexp(beta z_i) - beta z_{i,y_i}]`` is convex:
    ``f'(beta) = mean_i (E_{p_beta}[z_i] - z_{i,y_i})`` and ``f''(beta) = mean_i Var_{p_beta}(z_i) >= 0``.
    Newton's method on ``f'`` is kept inside a bracket ``[lo, hi]`` of the root and falls back to
    bisection when a step leaves it, so it converges from any start.

    Args:
        logits: (N, V).  targets: (N,) int64.

    Returns:
        the fitted temperature ``T = 1 / beta``, a float (``1 / beta_max`` if the NLL still falls there).

    Book: :doc:`/notebooks/17_evaluation`
    """
    N, V = check_shape(logits, "N V", name="logits")
    check_shape(targets, "N", name="targets", N=N)
    check_ids(targets, V, name="targets")
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


# ---------------------------------------------------------------------------- what was never seen
def good_turing_missing_mass(items) -> float:
    """Good-Turing estimate of the probability that the next draw is a type never seen: ``n_1 / N``.

    ``n_1`` is the number of types seen exactly once among the ``N`` draws (Good 1953). Kalai and
    Vempala (2023) bound a calibrated model's hallucination rate below by about this quantity
    for facts that follow no rule.
    """
    counts = Counter(items)
    n = sum(counts.values())
    if n == 0:
        raise ValueError("items is empty: the missing mass of no draws is undefined")
    return sum(1 for c in counts.values() if c == 1) / n


def _grams(ids: np.ndarray, n: int) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(ids, n)               # (N - n + 1, n)
    return np.ascontiguousarray(win).view(f"V{n * ids.itemsize}").ravel()  # one opaque value per n-gram


def ngram_seen(train_ids, heldout_ids, n: int) -> np.ndarray:
    """For each n-gram of the held-out ids, whether it occurs anywhere in the training ids.

    Exact (no hashing): each window of ``n`` ids is compared as raw bytes.

    Returns:
        (M,) bool with ``M = len(heldout_ids) - n + 1``; entry ``j`` is for ``heldout_ids[j:j + n]``.
    """
    check_positive_int(n, "n")
    a = np.asarray(train_ids).astype(np.int64)
    b = np.asarray(heldout_ids).astype(np.int64)
    if a.ndim != 1 or b.ndim != 1 or len(a) < n or len(b) < n:
        raise ValueError(f"train_ids and heldout_ids must be 1-d with at least n={n} ids, got shapes {a.shape}, {b.shape}")
    small = min(a.min(), b.min()) >= 0 and max(a.max(), b.max()) < 256
    dtype = np.uint8 if small else np.int64                               # one byte per id when the ids allow it
    seen = np.unique(_grams(a.astype(dtype), n))
    return np.isin(_grams(b.astype(dtype), n), seen)


def ngram_overlap(train_ids, heldout_ids, n: int) -> float:
    """The fraction of the held-out n-grams (positions) that occur somewhere in the training ids.

    Book: :doc:`/notebooks/17_evaluation`
    """
    return float(ngram_seen(train_ids, heldout_ids, n).mean())
