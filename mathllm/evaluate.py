"""Evaluating a language model on held-out text: per-token losses, perplexity and bits per byte.

What a held-out loss is and how two models with different tokenizers are compared:

1. per-token negative log-likelihoods over a held-out text, cut into non-overlapping windows of the
   model's context (:func:`next_token_logits`, :func:`token_nll`); their mean is the loss, its
   exponential the perplexity;
2. bits per byte, the loss that compares models with different tokenizers (:func:`token_byte_lengths`,
   :func:`bits_per_byte`), and a paired bootstrap of the difference of two models over the same
   chunks of text (:func:`chunk_sums`, :func:`compare_bits_per_byte`, resampled by
   :mod:`mathllm.intervals`).

The rest of the chapter's evaluation lives in modules of one concept each, and their names are
re-exported here so that ``from mathllm.evaluate import ...`` keeps working: bootstrap intervals in
:mod:`mathllm.intervals`, error analysis in :mod:`mathllm.error_analysis`, calibration in
:mod:`mathllm.calibration`, the Good-Turing missing mass and n-gram overlap in :mod:`mathllm.novelty`.

Leaves out: sliding-window evaluation with overlapping contexts, evaluation of generated text
(BLEU, pass@k), downstream benchmarks.

Book: notebooks/17_evaluation.ipynb, sections "Perplexity and bits per byte, with error bars" and
"Comparing models with different tokenizers".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# re-exported: these names were defined here before the split (notebooks and tests import them from here)
from .calibration import Reliability, fit_temperature, reliability, temperature_nll  # noqa: F401
from .checks import check_float_tensor, check_ids, check_positive_int, check_shape, check_tensor
from .error_analysis import CHAR_CLASSES, char_class, char_classes, confusion_matrix  # noqa: F401
from .intervals import ConfidenceInterval, bootstrap, bootstrap_ci, percentile_interval  # noqa: F401
from .novelty import good_turing_missing_mass, ngram_overlap, ngram_seen  # noqa: F401


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

    Book: :doc:`/notebooks/17_evaluation`, section "Perplexity and bits per byte, with error bars"
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
        logits: (N, V) float.  targets: (N,) int64 in ``[0, V)``.

    Returns:
        (N,) float64.

    Book: :doc:`/notebooks/17_evaluation`, section "Perplexity and bits per byte, with error bars"
    """
    check_float_tensor(logits, "logits")
    N, V = check_shape(logits, "N V", name="logits")
    check_shape(targets, "N", name="targets", N=N)
    check_ids(targets, V, name="targets")
    return F.cross_entropy(logits.double(), targets, reduction="none")


# ---------------------------------------------------------------------------- bits per byte
def token_byte_lengths(tokenizer) -> torch.Tensor:
    """(V,) int64: the number of UTF-8 bytes each token id stands for.

    Works for a :class:`~mathllm.bpe.BPETokenizer` (its ``vocab`` of bytes) and a
    :class:`~mathllm.char_tokenizer.CharTokenizer` (its ``chars``).

    Book: :doc:`/notebooks/17_evaluation`, section "Comparing models with different tokenizers"
    """
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, dict) and all(isinstance(v, bytes) for v in vocab.values()):
        return torch.tensor([len(vocab[i]) for i in range(len(vocab))], dtype=torch.int64)
    chars = getattr(tokenizer, "chars", None)
    if chars is not None:
        return torch.tensor([len(c.encode("utf-8")) for c in chars], dtype=torch.int64)
    raise TypeError(f"expected a tokenizer with a bytes vocab (BPE) or chars (CharTokenizer), got {type(tokenizer).__name__}")


def _total(x, name: str) -> float:
    """The sum of a number or of a tensor of numbers, as a float; a bool or a str is refused."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name} must be a real number or a tensor of them, got a tensor of dtype "
                            f"{str(x.dtype).replace('torch.', '')}")
        return float(x.double().sum())
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a real number or a tensor of them, got {type(x).__name__}")
    return float(x)


def bits_per_byte(nats: float | torch.Tensor, n_bytes: int | torch.Tensor) -> float:
    """Total nats over ``n_bytes`` bytes, in bits per byte: ``sum(nats) / (ln 2 * bytes)``.

    The code length of a text does not depend on how it was cut into tokens, so this compares
    models with different tokenizers (nats per token does not).

    Args:
        nats: a total in nats, or a tensor of per-token (or per-chunk) nats, summed; >= 0.
        n_bytes: the number of bytes, or a tensor of byte counts, summed; > 0.

    Book: :doc:`/notebooks/17_evaluation`, section "Perplexity and bits per byte, with error bars"
    """
    total, n = _total(nats, "nats"), _total(n_bytes, "n_bytes")
    if total < 0:  # a negative log-likelihood is >= 0; NaN passes through (NaN in, NaN out)
        raise ValueError(f"nats must sum to >= 0 (a negative log-likelihood), got {total}")
    if not n > 0:
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

    Book: :doc:`/notebooks/17_evaluation`, section "Comparing models with different tokenizers"
    """
    (N,) = check_shape(values, "N", name="values")
    check_shape(byte_lengths, "N", name="byte_lengths", N=N)
    check_positive_int(chunk_bytes, "chunk_bytes")
    if N == 0:
        raise ValueError("values must hold at least one token, got shape (0,)")
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

    Book: :doc:`/notebooks/17_evaluation`, section "Comparing models with different tokenizers"
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
