"""Measuring an association in word vectors: the WEAT effect size and its permutation test.

The Word Embedding Association Test (Caliskan, Bryson and Narayanan, Science 2017) asks whether two
sets of target words ``X``, ``Y`` (e.g. male and female terms) differ in their relative similarity to
two sets of attribute words ``A``, ``B``:

    s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b)                 (association of one word)
    S(X, Y, A, B) = sum_{x in X} s(x, A, B) - sum_{y in Y} s(y, A, B)               (test statistic)
    d = (mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)) / std_{w in X u Y} s(w, A, B)   (effect size)

The one-sided p-value is the fraction of the equal-size splits ``(X_i, Y_i)`` of ``X u Y`` whose
statistic is at least the observed one: exact over all splits when there are few enough, else a Monte
Carlo estimate ``(1 + #{S_i >= S}) / (1 + n)`` (Phipson and Smyth 2010). The standard deviation in
``d`` is the sample one (``n - 1`` in the denominator).

What it leaves out: the many later variants (SEAT, WEFAT, contextual embeddings), and any claim
about people. A test of this kind measures how a particular set of vectors arranges a particular
list of words; the book chapter says what that can and cannot show.

Book: :doc:`/notebooks/17_evaluation`
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch

from .checks import check_float_tensor, check_shape


# ---------------------------------------------------------------------------- associations
def _unit(M: torch.Tensor, name: str) -> torch.Tensor:
    check_shape(M, "n C", name=name)
    if M.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one vector")
    norms = M.double().norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"{name} holds a zero vector: its cosine similarity is undefined")
    return M.double() / norms


def association(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``s(w, A, B)`` for every row ``w`` of ``W`` (n, C), with attribute vectors ``A`` (a, C), ``B`` (b, C): (n,) float64.

    Book: :doc:`/notebooks/17_evaluation`
    """
    Wn, An, Bn = _unit(W, "W"), _unit(A, "A"), _unit(B, "B")
    C = Wn.shape[1]
    if An.shape[1] != C or Bn.shape[1] != C:
        raise ValueError(f"W, A and B must have the same width; got {Wn.shape[1]}, {An.shape[1]}, {Bn.shape[1]}")
    return (Wn @ An.T).mean(1) - (Wn @ Bn.T).mean(1)        # (n, a) -> (n,) minus (n, b) -> (n,)


def effect_size(s_x: torch.Tensor, s_y: torch.Tensor) -> float:
    """Cohen's-d-like effect size of the associations of the two target sets, (nx,) and (ny,).

    ``(mean(s_x) - mean(s_y)) / std(s_x and s_y pooled)``, with at least one word in each set and
    3 in all; the effect size is undefined when all associations are equal (standard deviation 0).
    """
    for name, s in (("s_x", s_x), ("s_y", s_y)):
        check_float_tensor(s, name)
        (n,) = check_shape(s, "n", name=name)
        if n == 0:
            raise ValueError(f"{name} must hold the association of at least one target word, got shape (0,)")
    both = torch.cat([s_x, s_y])
    if both.numel() < 3:
        raise ValueError("the effect size needs at least 3 target words in all")
    if bool(both.std(correction=1) == 0):
        raise ValueError("s_x and s_y must not all be equal: with standard deviation 0 the effect size is undefined")
    return float((s_x.mean() - s_y.mean()) / both.std(correction=1))


# ---------------------------------------------------------------------------- the test
@dataclass(frozen=True)
class WEATResult:
    """The outcome of :func:`weat_test`."""

    effect_size: float          # d, in units of the spread of the associations
    statistic: float            # S(X, Y, A, B)
    p_value: float              # one-sided: P(S_i >= S) over splits of X u Y
    n_permutations: int         # splits evaluated (all of them when exact)
    exact: bool                 # whether every split was enumerated
    null: torch.Tensor          # (n_permutations,) statistics of the splits
    s_x: torch.Tensor           # (nx,) associations of the first target set
    s_y: torch.Tensor           # (ny,) associations of the second target set


@functools.lru_cache(maxsize=8)
def _all_splits(n: int, k: int) -> torch.Tensor:
    """(C(n, k), n) bool: every way to put k of n words in the first set."""
    combos = torch.tensor(list(itertools.combinations(range(n), k)), dtype=torch.int64)  # (P, k)
    return torch.zeros(len(combos), n, dtype=torch.bool).scatter_(1, combos, True)


def _split_masks(n: int, k: int, n_perm: int | None, max_exact: int, generator) -> tuple[torch.Tensor, bool]:
    """(P, n) bool masks of the words put in the first set: all C(n, k) splits, or n_perm random ones."""
    if n_perm is None and math.comb(n, k) <= max_exact:
        return _all_splits(n, k), True
    m = n_perm if n_perm is not None else max_exact
    order = torch.rand(m, n, generator=generator).argsort(1)                # (m, n) a random permutation per row
    masks = torch.zeros(m, n, dtype=torch.bool).scatter_(1, order[:, :k], True)
    return masks, False


def weat_test(X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *, n_perm: int | None = None,
              max_exact: int = 200_000, generator: torch.Generator | None = None) -> WEATResult:
    """The WEAT on vectors: effect size, statistic and permutation p-value (see the module docstring).

    Args:
        X, Y: (nx, C), (ny, C) target vectors.  A, B: (na, C), (nb, C) attribute vectors.
        n_perm: random splits to draw; None enumerates all ``C(nx + ny, nx)`` splits when there are
            at most ``max_exact`` of them, else draws ``max_exact`` random ones.

    Book: :doc:`/notebooks/17_evaluation`
    """
    if n_perm is not None and (isinstance(n_perm, bool) or not isinstance(n_perm, int) or n_perm < 1):
        raise ValueError(f"n_perm must be a positive int or None, got {n_perm!r}")
    s_x, s_y = association(X, A, B), association(Y, A, B)
    s_all = torch.cat([s_x, s_y])                                            # (n,)
    n, k = s_all.numel(), s_x.numel()
    statistic = float(s_x.sum() - s_y.sum())
    masks, exact = _split_masks(n, k, n_perm, max_exact, generator)
    null = 2 * (masks.double() @ s_all) - s_all.sum()                        # (P, n) x (n,): sum_Xi - sum_Yi
    hits = int((null >= statistic - 1e-12).sum())                            # ties count as at least as extreme
    p = hits / len(null) if exact else (1 + hits) / (1 + len(null))
    return WEATResult(effect_size(s_x, s_y), statistic, p, len(null), exact, null, s_x, s_y)


def weat(word_vectors, X: list[str], Y: list[str], A: list[str], B: list[str], **kwargs) -> WEATResult:
    """:func:`weat_test` on words: ``word_vectors`` is a :class:`~mathllm.word_vectors.WordVectors`
    (or anything with ``vectors`` and ``id(word)``); a word outside its vocabulary raises KeyError.

    Book: :doc:`/notebooks/17_evaluation`
    """
    for name, ws in (("X", X), ("Y", Y), ("A", A), ("B", B)):
        if not ws or not all(isinstance(w, str) for w in ws):
            raise ValueError(f"{name} must be a non-empty list of words, got {ws!r}")
    overlap = (set(X) | set(Y)) & (set(A) | set(B))
    if set(X) & set(Y) or set(A) & set(B) or overlap:
        raise ValueError(f"the four word sets must not share words; shared: "
                         f"{sorted((set(X) & set(Y)) | (set(A) & set(B)) | overlap)}")
    E = word_vectors.vectors
    rows = lambda ws: E[[word_vectors.id(w) for w in ws]]                    # (n, C)
    return weat_test(rows(X), rows(Y), rows(A), rows(B), **kwargs)
