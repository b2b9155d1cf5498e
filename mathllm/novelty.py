"""What the training data never showed: the Good-Turing missing mass and n-gram overlap with held-out text.

Two counts that bound what a model can know. The Good-Turing estimate ``n_1 / N`` of the probability
that the next draw is a type never seen before (Good 1953) is, by Kalai and Vempala (2023), about a
lower bound on the hallucination rate of a calibrated model for facts that follow no rule. The
overlap of held-out n-grams with the training text measures how much of a "held-out" score could be
recall rather than generalisation (the contamination checks of GPT-3, Brown et al. 2020, use
13-grams).

Leaves out: smoothed Good-Turing frequency estimates (Gale and Sampson 1995), hashing and Bloom
filters for corpora that do not fit in memory, fuzzy (edit-distance) matches.

Book: notebooks/17_evaluation.ipynb, sections "Calibrated models must hallucinate" and
"Combinatorics: why a model must generalise".
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from .checks import check_positive_int


# ---------------------------------------------------------------------------- Good-Turing
def good_turing_missing_mass(items) -> float:
    """Good-Turing estimate of the probability that the next draw is a type never seen: ``n_1 / N``.

    ``n_1`` is the number of types seen exactly once among the ``N`` draws (Good 1953). Kalai and
    Vempala (2023) bound a calibrated model's hallucination rate below by about this quantity
    for facts that follow no rule.

    Args:
        items: the draws: a str (its characters), any iterable of hashable values, or a 1-d tensor or
            NumPy array (read as its values, never as the tensor objects, which hash by identity).

    Book: :doc:`/notebooks/17_evaluation`, section "Calibrated models must hallucinate"
    """
    if hasattr(items, "ndim") and hasattr(items, "tolist"):  # a tensor or an array: count values
        if items.ndim != 1:
            raise ValueError(f"items must be 1-d draws, got shape {tuple(items.shape)}")
        items = items.tolist()
    elif not isinstance(items, Iterable):
        raise TypeError(f"items must be an iterable of draws, got {type(items).__name__}")
    counts = Counter(items)
    n = sum(counts.values())
    if n == 0:
        raise ValueError("items must hold at least one draw, got none: the missing mass of no draws is undefined")
    return sum(1 for c in counts.values() if c == 1) / n


# ---------------------------------------------------------------------------- n-gram overlap
def _as_ids(ids, name: str) -> np.ndarray:
    """A 1-d int64 array of token ids from a list of ints, an integer tensor or an integer array."""
    if isinstance(ids, (str, bytes)) or not (isinstance(ids, (list, tuple)) or hasattr(ids, "__array__")):
        raise TypeError(f"{name} must be 1-d integer token ids (a list, tensor or array), got {type(ids).__name__}")
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d token ids, got shape {a.shape}")
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):  # [] reads as float64
        raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    return a.astype(np.int64)


def _grams(ids: np.ndarray, n: int) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(ids, n)               # (N - n + 1, n)
    return np.ascontiguousarray(win).view(f"V{n * ids.itemsize}").ravel()  # one opaque value per n-gram


def ngram_seen(train_ids, heldout_ids, n: int) -> np.ndarray:
    """For each n-gram of the held-out ids, whether it occurs anywhere in the training ids.

    Exact (no hashing): each window of ``n`` ids is compared as raw bytes.

    Args:
        train_ids, heldout_ids: 1-d integer token ids (lists, tensors or arrays).  n: the n-gram length.

    Returns:
        (M,) bool with ``M = len(heldout_ids) - n + 1``; entry ``j`` is for ``heldout_ids[j:j + n]``.

    Book: :doc:`/notebooks/17_evaluation`, section "Combinatorics: why a model must generalise"
    """
    a, b = _as_ids(train_ids, "train_ids"), _as_ids(heldout_ids, "heldout_ids")
    check_positive_int(n, "n")
    if len(a) < n or len(b) < n:
        raise ValueError(f"train_ids and heldout_ids must hold at least n={n} ids, got {len(a)} and {len(b)}")
    small = min(a.min(), b.min()) >= 0 and max(a.max(), b.max()) < 256
    dtype = np.uint8 if small else np.int64                               # one byte per id when the ids allow it
    seen = np.unique(_grams(a.astype(dtype), n))
    return np.isin(_grams(b.astype(dtype), n), seen)


def ngram_overlap(train_ids, heldout_ids, n: int) -> float:
    """The fraction of the held-out n-grams (positions) that occur somewhere in the training ids.

    Book: :doc:`/notebooks/17_evaluation`, section "Combinatorics: why a model must generalise"
    """
    return float(ngram_seen(train_ids, heldout_ids, n).mean())
