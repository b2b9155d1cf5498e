"""n-gram language models with add-k smoothing or backoff, and their perplexity on held-out text.

An n-gram model predicts x_t from the previous n - 1 symbols (the context c). With c(.) the counts in
the training ids:

* **maximum likelihood** (``add_k=0``): P(y | c) = count(c y) / count(c .), the minimum of the
  training cross-entropy, and infinite cross-entropy on held-out text as soon as an n-gram is new;
* **add-k** (Lidstone; k = 1 is Laplace): P(y | c) = (count(c y) + k) / (count(c .) + k V);
* **backoff** with absolute discounting (Katz 1987; Ney, Essen & Kneser 1994): an n-gram seen in
  training keeps (count(c y) - d) / count(c .); the mass d N1+(c .) / count(c .) taken from the seen ones
  goes to the unseen y in proportion to the (n-1)-gram model on the shorter context c':

      P(y | c) = (count(c y) - d) / count(c .)      if count(c y) > 0
               = alpha(c) P(y | c')                  otherwise, alpha(c) = (d N1+(c .) / count(c .)) / (1 - sum_{seen y} P(y | c'))
               = P(y | c')                           if the context c was never seen,

  recursively down to an add-k unigram. N1+(c .) is the number of distinct symbols seen after c. Every
  conditional distribution sums to exactly 1 (tested), so perplexities are honest.

Counts live in sorted tensors of n-gram codes (c y read as a base-V number) looked up with
``torch.searchsorted``; the first n - 2 positions of a text use the shorter contexts they have, so
:meth:`NGramModel.log_prob` is a proper distribution over texts of any length.
References: Jurafsky & Martin, *Speech and Language Processing*, ch. 3; Chen & Goodman (1999).
Leaves out: Kneser-Ney continuation counts, Good-Turing discounts, interpolation, pruning.

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_ids, check_positive_int, check_shape
from .probability import apply_temperature, sample, top_k_filter, top_p_filter

MAX_TABLE = 2**24  # largest dense table conditional_table() builds


@dataclass(frozen=True)
class NGramConfig:
    vocab_size: int           # V, the number of symbols
    n: int = 3                # context of n - 1 symbols
    add_k: float = 1.0        # pseudo-count; in backoff mode it smooths only the unigram base
    backoff: bool = False     # absolute-discount backoff instead of add-k at every order
    discount: float = 0.75    # d in the backoff formula (Ney et al. suggest n1 / (n1 + 2 n2), near 0.75)

    def __post_init__(self):
        for name in ("vocab_size", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.n * math.log2(self.vocab_size) >= 62:
            raise ValueError(f"vocab_size^n = {self.vocab_size}^{self.n} does not fit the int64 n-gram codes")
        if isinstance(self.add_k, bool) or not isinstance(self.add_k, (int, float)) or self.add_k < 0:
            raise ValueError(f"add_k must be a number >= 0, got {self.add_k!r}")
        if not isinstance(self.backoff, bool):
            raise TypeError(f"backoff must be a bool, got {type(self.backoff).__name__}")
        if self.backoff and self.add_k <= 0:
            raise ValueError("backoff needs add_k > 0: the unigram base must give every symbol some probability")
        if self.backoff and not 0 < self.discount < 1:
            raise ValueError(f"discount must be in (0, 1), got {self.discount!r}")


def ngram_codes(ids: torch.Tensor, j: int, V: int) -> torch.Tensor:
    """The j-grams of ids (N,) as base-V numbers, oldest symbol most significant: (N - j + 1,) int64.

    Args:
        ids: (N,) integer ids in ``[0, V)``.  j: the gram length >= 1.  V: the vocabulary size, with
            ``V ** j`` below ``2 ** 63`` so that every code fits in int64.
    """
    check_positive_int(j, "j"), check_positive_int(V, "V")
    (N,) = check_shape(ids, "N", name="ids")
    check_ids(ids, V, name="ids")
    if j * math.log2(V) >= 63:  # without computing V ** j, which a huge j would make slow
        raise ValueError(f"V ** j must fit in int64 (below 2 ** 63), got V={V}, j={j}")
    ids = ids.long()
    codes = torch.zeros(max(N - j + 1, 0), dtype=torch.int64)
    for i in range(j):
        codes = codes * V + ids[i:N - j + 1 + i]
    return codes


def _find(keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Index of each query in the sorted ``keys``, or -1 when absent."""
    if keys.numel() == 0:
        return torch.full_like(queries, -1)
    queries = queries.contiguous()
    idx = torch.searchsorted(keys, queries).clamp_max(keys.numel() - 1)
    return torch.where(keys[idx] == queries, idx, torch.full_like(idx, -1))


def _gather(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values[idx] where idx >= 0, else 0."""
    return torch.where(idx >= 0, values[idx.clamp_min(0)], torch.zeros((), dtype=values.dtype))


class NGramModel:
    """A count-based n-gram language model: ``NGramModel(config).fit(train_ids)``, then ``log_prob(ids)``."""

    def __init__(self, config: NGramConfig):
        if not isinstance(config, NGramConfig):
            raise TypeError(f"config must be an NGramConfig, got {type(config).__name__}")
        self.config = config
        self._tables: list[dict] | None = None

    def _check(self, ids: torch.Tensor, name: str = "ids") -> torch.Tensor:
        check_ids(ids, self.config.vocab_size, name)
        if ids.dim() != 1:
            raise ValueError(f"{name} must have shape (N,), got {tuple(ids.shape)}")
        return ids.long()

    def fit(self, ids: torch.Tensor) -> "NGramModel":
        """Count every j-gram, j = 1..n, of the training ids (N,); returns ``self``."""
        V, n, cfg = self.config.vocab_size, self.config.n, self.config
        ids = self._check(ids)
        if ids.numel() < n:
            raise ValueError(f"need at least n={n} training ids, got {ids.numel()}")
        self._tables = [{}]  # index j holds the j-gram tables
        for j in range(1, n + 1):
            keys, counts = torch.unique(ngram_codes(ids, j, V), return_counts=True)  # sorted codes of (c, y)
            ctx_keys, inverse, types = torch.unique_consecutive(keys // V, return_inverse=True, return_counts=True)
            tot = torch.zeros(ctx_keys.numel(), dtype=torch.float64).index_add_(0, inverse, counts.double())
            T = {"keys": keys, "counts": counts.double(), "ctx_keys": ctx_keys, "tot": tot, "types": types}
            if cfg.backoff and j >= 2:
                d = torch.where(types < V, torch.full_like(tot, cfg.discount), 0.0)  # no unseen y: nothing to discount
                lower = self._prob(j - 1, (keys // V) % V ** (j - 2), keys % V)  # P_{j-1}(y | c') of each seen (c, y)
                seen_mass = torch.zeros_like(tot).index_add_(0, inverse, lower)
                held_out = d * types / tot  # mass freed by discounting, given to the unseen y
                T["d"] = d
                T["alpha"] = torch.where(types < V, held_out / (1 - seen_mass).clamp_min(1e-300), 0.0)
            self._tables.append(T)
        return self

    def _prob(self, j: int, ctx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P_j(y | ctx) for contexts ctx (M,) of j - 1 symbols (codes) and next symbols y (M,): (M,) float64."""
        V, cfg = self.config.vocab_size, self.config
        T = self._tables[j]
        cnt = _gather(T["counts"], _find(T["keys"], ctx * V + y))
        ci = _find(T["ctx_keys"], ctx)
        tot = _gather(T["tot"], ci)
        if not cfg.backoff or j == 1:  # add-k; an unseen context (only possible with add_k = 0) is uniform
            denom = tot + cfg.add_k * V
            return torch.where(denom > 0, (cnt + cfg.add_k) / denom.clamp_min(1e-300), 1.0 / V)
        lower = self._prob(j - 1, ctx % V ** (j - 2), y)
        discounted = (cnt - _gather(T["d"], ci)) / tot.clamp_min(1)
        backed_off = torch.where(tot > 0, _gather(T["alpha"], ci) * lower, lower)
        return torch.where(cnt > 0, discounted, backed_off)

    def _fitted(self) -> None:
        if self._tables is None:
            raise RuntimeError("the model is not fitted: call fit(train_ids) first")

    def log_prob(self, ids: torch.Tensor) -> torch.Tensor:
        """log P(x_t | up to n - 1 previous symbols) for each position of ids (N,): (N,) float64, in nats."""
        self._fitted()
        V, n = self.config.vocab_size, self.config.n
        ids = self._check(ids)
        N = ids.numel()
        out = torch.empty(N, dtype=torch.float64)
        if N >= n:
            codes = ngram_codes(ids, n, V)  # (N - n + 1,)
            out[n - 1:] = self._prob(n, codes // V, codes % V).log()
        for t in range(min(n - 1, N)):  # the first positions have only t previous symbols
            code = ngram_codes(ids[: t + 1], t + 1, V)
            out[t] = self._prob(t + 1, code // V, code % V).log()[0]
        return out

    def cross_entropy(self, ids: torch.Tensor) -> float:
        """Mean negative log-likelihood of ids (N,) in nats per symbol (inf if a symbol has probability 0)."""
        if ids.numel() == 0:
            raise ValueError("ids is empty: the cross-entropy of no text is undefined")
        return float(-self.log_prob(ids).mean())

    def perplexity(self, ids: torch.Tensor) -> float:
        """exp(cross-entropy): the model is as uncertain as a uniform choice among this many symbols."""
        return math.exp(self.cross_entropy(ids))

    def distribution(self, context: torch.Tensor) -> torch.Tensor:
        """P(. | the last n - 1 symbols of ``context`` (L,)): (V,) float64 (shorter contexts use lower orders)."""
        self._fitted()
        V, n = self.config.vocab_size, self.config.n
        context = self._check(context, "context")
        m = min(context.numel(), n - 1)
        code = ngram_codes(context[context.numel() - m:], m, V) if m > 0 else torch.zeros(1, dtype=torch.int64)
        return self._prob(m + 1, code.expand(V), torch.arange(V))

    def conditional_table(self) -> torch.Tensor:
        """P(y | c) for every context c of n - 1 symbols: (V^(n-1), V) float64, rows in code order."""
        self._fitted()
        V, n = self.config.vocab_size, self.config.n
        if V**n > MAX_TABLE:
            raise ValueError(f"the table has V^n = {V}^{n} entries, above the limit {MAX_TABLE}")
        ctx = torch.arange(V ** (n - 1)).repeat_interleave(V)  # (V^n,)
        return self._prob(n, ctx, torch.arange(V).repeat(V ** (n - 1))).view(V ** (n - 1), V)

    def generate(self, length: int, prompt: torch.Tensor | None = None, seed: int = 0, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
        """Sample ``length`` new symbols (length,) after ``prompt``; each step transforms the model's
        distribution by temperature, then top-k, then top-p (:func:`mathllm.probability.top_p_filter`)."""
        self._fitted()
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        history = [] if prompt is None else self._check(prompt, "prompt").tolist()
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(length):
            p = self.distribution(torch.tensor(history[-(self.config.n - 1):] if self.config.n > 1 else [],
                                               dtype=torch.int64))
            p = apply_temperature(p, temperature)
            if top_k is not None:
                p = top_k_filter(p, top_k)
            if top_p is not None:
                p = top_p_filter(p, top_p)
            y = int(sample(p, 1, generator=g)[0])
            history.append(y)
            out.append(y)
        return torch.tensor(out, dtype=torch.int64)
