"""Word vectors from co-occurrence statistics: counts, PPMI, truncated SVD, cosine similarity.

The pipeline of count-based distributional semantics, which word2vec implicitly reproduces
(Levy and Goldberg, "Neural Word Embedding as Implicit Matrix Factorization", NeurIPS 2014):

1. split the text into lower-cased words (:func:`words`) and keep the ``V`` most frequent (:func:`build_vocab`);
2. count how often word ``j`` occurs within ``window`` positions of word ``i`` (:func:`cooccurrence`);
3. positive pointwise mutual information, ``max(0, log P(i, j) / (P(i) P_alpha(j)))``, with the
   context distribution smoothed by ``alpha = 0.75`` (:func:`ppmi`; Church and Hanks 1990;
   Levy, Goldberg and Dagan, "Improving Distributional Similarity with Lessons Learned from Word
   Embeddings", TACL 2015);
4. a rank-``k`` truncated SVD ``PPMI ≈ U_k S_k V_k^T``, word vectors ``U_k S_k^p`` (``p = 0.5``);
5. cosine similarity for nearest neighbours, and the analogy test ``a : b :: c : ?`` answered by
   the word closest to ``b - a + c`` among all words except ``a, b, c`` ("3CosAdd"; Mikolov, Yih
   and Zweig, NAACL 2013).

Leaves out: subsampling of frequent words, dynamic or distance-weighted windows, 3CosMul, training
word2vec itself. Excluding ``a, b, c`` from the answers is the standard protocol, and it matters:
without it the nearest word to ``b - a + c`` is usually ``b`` or ``c`` itself (Nissim, van Noord and
van der Goot, "Fair is Better than Sensational", Computational Linguistics 2020).

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .checks import check_float_tensor, check_positive_int, check_sequence, check_shape
from .spectral import truncated_svd

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")   # letters, with one inner apostrophe: "o'er", "heart's"

# Relations whose words all occur at least ~50 times in Tiny Shakespeare (speaker headings removed).
# Each relation's analogies are all ordered pairs of its distinct pairs (see analogy_questions).
SHAKESPEARE_ANALOGIES: dict[str, tuple[tuple[str, str], ...]] = {
    "male : female": (("king", "queen"), ("man", "woman"), ("lord", "lady"), ("father", "mother"),
                      ("son", "daughter"), ("brother", "sister"), ("husband", "wife"), ("he", "she"),
                      ("sir", "madam"), ("master", "mistress")),
    "subject : object pronoun": (("i", "me"), ("we", "us"), ("they", "them"), ("thou", "thee"), ("he", "him")),
    "subject : possessive": (("i", "my"), ("we", "our"), ("they", "their"), ("thou", "thy"), ("you", "your"),
                             ("he", "his"), ("she", "her")),
    "singular : plural": (("lord", "lords"), ("man", "men"), ("friend", "friends"), ("eye", "eyes"),
                          ("hand", "hands"), ("day", "days"), ("king", "kings"), ("god", "gods"),
                          ("son", "sons"), ("woman", "women")),
}


# ---------------------------------------------------------------------------- counting
def _check_words(tokens, name: str) -> None:
    check_sequence(tokens, name)
    for w in tokens:
        if not isinstance(w, str):
            raise TypeError(f"{name} must hold str words, got {type(w).__name__} {w!r}"[:200])


def words(text: str, *, drop_speakers: bool = True) -> list[str]:
    """Lower-cased words of ``text``; with ``drop_speakers``, lines that name the next speaker
    (a line ending in ``:`` right after a blank line, e.g. ``KING RICHARD III:``) are skipped, as
    they are stage apparatus, not dialogue.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    lines, kept, prev = text.split("\n"), [], ""
    for line in lines:
        if not (drop_speakers and line.endswith(":") and prev.strip() == ""):
            kept.append(line)
        prev = line
    return _WORD.findall("\n".join(kept).lower())


def build_vocab(tokens: list[str], size: int) -> tuple[tuple[str, ...], torch.Tensor]:
    """The ``size`` most frequent words (ties broken alphabetically) and their counts, (V,) int64.

    Args:
        tokens: the words of a text, a list (or tuple) of str (:func:`words` gives one).  size: V at most.
    """
    _check_words(tokens, "tokens")
    check_positive_int(size, "size")
    ranked = sorted(Counter(tokens).items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return tuple(w for w, _ in ranked), torch.tensor([c for _, c in ranked], dtype=torch.int64)


def cooccurrence(ids: torch.Tensor, vocab_size: int, window: int) -> torch.Tensor:
    """Symmetric co-occurrence counts within ``window`` positions.

    Args:
        ids: (N,) int64 word ids in ``[0, V)``, or ``-1`` for a word outside the vocabulary (it
            keeps its position, so it still separates its neighbours).
        vocab_size: ``V``.
        window: ``w >= 1`` words on each side.

    Returns:
        (V, V) float64 ``X`` with ``X[i, j]`` the number of times ``j`` occurs within ``w`` words of ``i``;
        ``X = X^T``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Word vectors from co-occurrence counts".
    """
    (N,) = check_shape(ids, "N", name="ids")
    if ids.dtype != torch.int64:
        raise TypeError(f"ids must be int64, got {str(ids.dtype).replace('torch.', '')}")
    check_positive_int(window, "window")
    if N and (int(ids.min()) < -1 or int(ids.max()) >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}) or be -1, got range [{int(ids.min())}, {int(ids.max())}]")
    V = vocab_size
    keys = []
    for d in range(1, window + 1):
        a, b = ids[:-d], ids[d:]                       # each pair at distance d, once
        ok = (a >= 0) & (b >= 0)
        keys.append(a[ok] * V + b[ok])                 # flat index of (i, j) in a (V, V) matrix
    X = torch.bincount(torch.cat(keys), minlength=V * V).view(V, V).double()
    return X + X.T                                     # count (j after i) and (j before i)


def ppmi(counts: torch.Tensor, cds_alpha: float = 0.75) -> torch.Tensor:
    r"""Positive pointwise mutual information of a (V, V) co-occurrence matrix.

    ``PMI(i, j) = log( P(i, j) / (P(i) P_alpha(j)) )`` with ``P(i, j) = X_ij / sum X``,
    ``P(i) = sum_j X_ij / sum X`` and ``P_alpha(j) ∝ (sum_i X_ij)^alpha``; ``PPMI = max(PMI, 0)``, and
    0 where ``X_ij = 0`` (``PMI = -inf`` there). ``alpha < 1`` raises the probability of rare contexts,
    which damps PMI's bias towards them.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Word vectors from co-occurrence counts".
    """
    V, _ = check_shape(counts, "V V", name="counts")
    if not 0 < cds_alpha <= 1:
        raise ValueError(f"cds_alpha must be in (0, 1], got {cds_alpha}")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    X = counts.double()
    total = X.sum()
    p_word = X.sum(1) / total                          # (V,)
    ctx = X.sum(0) ** cds_alpha
    p_ctx = ctx / ctx.sum()                            # (V,)
    with torch.no_grad():
        pmi = torch.log(X / total) - torch.log(p_word)[:, None] - torch.log(p_ctx)[None, :]
    return torch.where(X > 0, pmi.clamp(min=0), torch.zeros_like(pmi))


def cosine_similarity(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Cosines of the angles between the rows of ``X`` (N, C) and of ``Y`` (M, C): (N, M).

    ``cos(x, y) = x . y / (||x|| ||y||)``: 1 for the same direction, 0 for orthogonal, -1 opposite.
    A zero row has no direction; it raises.
    """
    _, C = check_shape(X, "N C", name="X")
    check_shape(Y, "M C", name="Y", C=C)
    nx, ny = X.norm(dim=1, keepdim=True), Y.norm(dim=1, keepdim=True)
    if (nx == 0).any() or (ny == 0).any():
        raise ValueError("cosine similarity is undefined for a zero vector")
    return (X / nx) @ (Y / ny).T                       # (N, C) x (C, M) -> (N, M)


# ---------------------------------------------------------------------------- word vectors
@dataclass(frozen=True)
class WordVectorConfig:
    """How :func:`train_word_vectors` builds its vectors (defaults from Levy et al. 2015)."""

    vocab_size: int = 3000       # most frequent words kept; every one occurs at least ~5 times in Tiny Shakespeare
    window: int = 4              # words on each side that count as context
    cds_alpha: float = 0.75      # context-distribution smoothing of PPMI
    dim: int = 100               # rank k of the truncated SVD
    eig_power: float = 0.5       # vectors U_k S_k^p: p = 0.5 splits S between words and contexts
    svd_iters: int = 6           # subspace iterations of the randomized SVD
    seed: int = 0                # seeds the randomized SVD
    drop_speakers: bool = True   # skip the speaker-heading lines of a play

    def __post_init__(self):
        for name in ("vocab_size", "window", "dim", "svd_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "svd_iters" else 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.dim > self.vocab_size:
            raise ValueError(f"dim={self.dim} cannot exceed vocab_size={self.vocab_size}")
        if not 0 < self.cds_alpha <= 1:
            raise ValueError(f"cds_alpha must be in (0, 1], got {self.cds_alpha}")


@dataclass(frozen=True)
class WordVectors:
    """Unit-length word vectors with their vocabulary (see :func:`train_word_vectors`)."""

    vocab: tuple[str, ...]          # V words, most frequent first
    counts: torch.Tensor            # (V,) occurrences of each word
    vectors: torch.Tensor           # (V, k) rows of unit norm
    singular_values: torch.Tensor   # (k,) top singular values of the PPMI matrix
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        _check_words(self.vocab, "vocab")
        object.__setattr__(self, "vocab", tuple(self.vocab))
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError(f"vocab must hold distinct words, got {len(self.vocab) - len(set(self.vocab))} repeated")
        V, k = check_shape(self.vectors, "V k", name="vectors", V=len(self.vocab))
        check_float_tensor(self.vectors, "vectors")
        check_shape(self.counts, "V", name="counts", V=V)
        check_shape(self.singular_values, "k", name="singular_values", k=k)
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.vocab)})

    @classmethod
    def from_svd(cls, vocab: tuple[str, ...], counts: torch.Tensor, U: torch.Tensor, S: torch.Tensor,
                 eig_power: float = 0.5) -> "WordVectors":
        """Vectors ``U S^p`` (V, k) scaled to unit rows, from the SVD factors ``U`` (V, k) and ``S`` (k,)."""
        V, k = check_shape(U, "V k", name="U", V=len(vocab))
        check_shape(S, "k", name="S", k=k)
        E = U * S ** eig_power
        E = E / E.norm(dim=1, keepdim=True).clamp(min=torch.finfo(E.dtype).tiny)
        return cls(vocab=tuple(vocab), counts=counts, vectors=E, singular_values=S)

    def id(self, word: str) -> int:
        """Row of ``word``; a word outside the vocabulary raises KeyError naming it."""
        if word not in self.index:
            raise KeyError(f"{word!r} is not among the {len(self.vocab)} words of the vocabulary")
        return self.index[word]

    def neighbours(self, word: str, n: int = 8) -> list[tuple[str, float]]:
        """The ``n`` words of highest cosine similarity to ``word`` (itself excluded)."""
        sims = self.vectors @ self.vectors[self.id(word)]   # (V, k) x (k,) -> (V,), rows are unit
        sims[self.id(word)] = -float("inf")
        top = sims.topk(n)
        return [(self.vocab[i], float(s)) for s, i in zip(top.values, top.indices)]

    def analogy(self, a: str, b: str, c: str, *, exclude: bool = True) -> str:
        """``a : b :: c : ?`` by 3CosAdd: the word nearest in cosine to ``b - a + c``, excluding ``a, b, c``
        (``exclude=False`` allows them, to show how often the answer would otherwise be a question word)."""
        E = self.vectors
        q = E[self.id(b)] - E[self.id(a)] + E[self.id(c)]
        sims = E @ q                                         # (V,); q's norm does not change the argmax
        if exclude:
            sims[[self.id(a), self.id(b), self.id(c)]] = -float("inf")
        return self.vocab[int(sims.argmax())]


def train_word_vectors(text: str, config: WordVectorConfig = WordVectorConfig()) -> WordVectors:
    """Words -> vocabulary -> co-occurrence counts -> PPMI -> rank-``dim`` SVD -> unit vectors ``U_k S_k^p``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Word vectors from co-occurrence counts".
    """
    tokens = words(text, drop_speakers=config.drop_speakers)
    vocab, counts = build_vocab(tokens, config.vocab_size)
    if len(vocab) < config.dim:
        raise ValueError(f"the text has {len(vocab)} distinct words, fewer than dim={config.dim}")
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.tensor([index.get(w, -1) for w in tokens], dtype=torch.int64)
    M = ppmi(cooccurrence(ids, len(vocab), config.window), config.cds_alpha)
    gen = torch.Generator().manual_seed(config.seed)
    U, S, _ = truncated_svd(M, config.dim, iters=config.svd_iters, generator=gen)   # (V, k), (k,)
    return WordVectors.from_svd(vocab, counts, U, S, config.eig_power)


# ---------------------------------------------------------------------------- analogies
def analogy_questions(pairs) -> list[tuple[str, str, str, str]]:
    """All questions ``a : b :: c : d`` from ordered pairs ``(a, b), (c, d)`` of distinct pairs of one relation.

    Args:
        pairs: a list (or tuple) of ``(a, b)`` pairs of words.
    """
    check_sequence(pairs, "pairs")
    for p in pairs:
        if not isinstance(p, (tuple, list)) or len(p) != 2 or not all(isinstance(w, str) for w in p):
            raise TypeError(f"pairs must hold (a, b) pairs of words, got {p!r}"[:200])
    return [(a, b, c, d) for (a, b), (c, d) in itertools.permutations(pairs, 2)]


@dataclass(frozen=True)
class AnalogyResult:
    """The outcome of :func:`evaluate_analogies`."""

    correct: int
    total: int
    answers: tuple[tuple[str, str, str, str, str], ...]   # (a, b, c, expected d, predicted)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def evaluate_analogies(wv: WordVectors, questions, *, exclude: bool = True) -> AnalogyResult:
    """Answer every ``(a, b, c, d)`` question with :meth:`WordVectors.analogy` and count exact hits.

    Every word of every question must be in the vocabulary (KeyError otherwise): questions are not
    silently dropped, so the denominator is the number of questions asked.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Analogies, measured".
    """
    if not isinstance(wv, WordVectors):
        raise TypeError(f"wv must be WordVectors (train_word_vectors gives them), got {type(wv).__name__}")
    if isinstance(questions, (str, bytes)) or not isinstance(questions, Iterable):
        raise TypeError(f"questions must be a list of (a, b, c, d) word tuples, got {type(questions).__name__}")
    questions = list(questions)
    for q in questions:
        if not isinstance(q, (tuple, list)) or len(q) != 4 or not all(isinstance(w, str) for w in q):
            raise TypeError(f"questions must hold (a, b, c, d) tuples of words, got {q!r}"[:200])
    answers = tuple((a, b, c, d, wv.analogy(a, b, c, exclude=exclude)) for a, b, c, d in questions)
    for *_, d, _ in answers:
        wv.id(d)
    return AnalogyResult(correct=sum(d == p for *_, d, p in answers), total=len(answers), answers=answers)
