"""A known-entropy language: synthetic text from a random Markov source whose entropy rate is exact.

The source has V symbols (printed as the first V characters of ``ALPHABET``) and order k: the
next symbol depends on the previous k. For each of the V^k contexts s, the conditional
distribution P(. | s) is drawn once from a symmetric Dirichlet(alpha) (smaller alpha: peakier
rows, lower entropy), with NumPy's seeded generator, so the same config always gives the same
language. Reading the last k symbols as one state turns the source into an ordinary Markov chain
on V^k states; its stationary distribution pi (found by power iteration on the structured
transition) gives the exact **entropy rate**

    H = sum_s pi(s) H(P(. | s))    nats per symbol,

the floor of the cross-entropy of *any* model of this text (Cover & Thomas 2006, ch. 4). Samples
start from pi, so every window of a sample is distributed as :meth:`MarkovSource.window_distribution`
says, and :meth:`MarkovSource.log_prob` is the exact log-probability of a sample, position by position.

The training chapter trains a transformer on this language and compares its loss with
:meth:`MarkovSource.entropy_rate`.

Leaves out: hidden-state (HMM) sources, non-stationary starts, sources too large for dense tables
(V^(k+1) is capped at 2^24 entries).

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_ids
from .markov import run_chain, stationary_by_power
from .probability import check_distribution, entropy

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MAX_TABLE = 2**24  # largest dense table (entries) the source will build


@dataclass(frozen=True)
class MarkovSourceConfig:
    vocab_size: int = 16      # number of symbols (at most len(ALPHABET) = 62)
    order: int = 2            # the next symbol depends on the previous `order` symbols
    concentration: float = 0.5  # Dirichlet concentration of each conditional distribution (smaller = lower entropy)
    seed: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "order", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not 2 <= self.vocab_size <= len(ALPHABET):
            raise ValueError(f"vocab_size must be in [2, {len(ALPHABET)}], got {self.vocab_size}")
        if self.order < 0:
            raise ValueError(f"order must be >= 0, got {self.order}")
        if self.vocab_size ** (self.order + 1) > MAX_TABLE:
            raise ValueError(f"vocab_size^(order+1) = {self.vocab_size}^{self.order + 1} exceeds the table limit "
                             f"{MAX_TABLE}; use a smaller vocabulary or order")
        if isinstance(self.concentration, bool) or not isinstance(self.concentration, (int, float)) \
                or not math.isfinite(self.concentration) or self.concentration <= 0:
            raise ValueError(f"concentration must be a finite number > 0, got {self.concentration!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


class MarkovSource:
    """An order-k Markov source over ``vocab_size`` symbols with exact entropy rate.

    Attributes: ``probs`` (V^k, V) float64, row s = P(. | context s), where the context code is
    s = x_{t-k} V^(k-1) + ... + x_{t-1} (the oldest symbol most significant); ``stationary``
    (V^k,) float64, the stationary distribution over contexts; ``alphabet``, the V characters.
    """

    def __init__(self, config: MarkovSourceConfig):
        if not isinstance(config, MarkovSourceConfig):
            raise TypeError(f"config must be a MarkovSourceConfig, got {type(config).__name__}")
        self.config = config
        V, k = config.vocab_size, config.order
        rng = np.random.default_rng(config.seed)
        probs = torch.from_numpy(rng.dirichlet(np.full(V, float(config.concentration)), size=V**k))
        self.probs = probs / probs.sum(1, keepdim=True)  # (V^k, V); exact row sums after rounding
        self.alphabet = ALPHABET[:V]
        self.stationary = self._stationary()  # (V^k,)
        self._cdf = None

    # ------------------------------------------------------------------ the chain on contexts
    def _stationary(self, tol: float = 1e-14, max_iter: int = 100_000) -> torch.Tensor:
        """pi over contexts by :func:`mathllm.markov.stationary_by_power`, with the step written without the
        dense (V^k, V^k) matrix: pi'(x2..xk, y) = sum_{x1} pi(x1..xk) P(y | x1..xk)."""
        V, k = self.config.vocab_size, self.config.order
        if k == 0:
            return torch.ones(1, dtype=torch.float64)

        def step(pi: torch.Tensor) -> torch.Tensor:
            joint = pi[:, None] * self.probs  # (V^k, V): P(context, next)
            return joint.view(V, V ** (k - 1), V).sum(0).reshape(-1)  # drop the oldest symbol -> (V^k,)
        try:
            return stationary_by_power(step, V**k, tol=tol, max_iter=max_iter)
        except ValueError as err:
            raise RuntimeError(f"{err}; the concentration {self.config.concentration} may be too small") from None

    def context_transition_matrix(self) -> torch.Tensor:
        """The (V^k, V^k) transition matrix of the chain on contexts (for V^k <= 4096): s -> (s V + y) mod V^k."""
        V, k = self.config.vocab_size, self.config.order
        S = V**k
        if S > 4096:
            raise ValueError(f"the context chain has {S} states; a dense matrix is built only up to 4096")
        rows = torch.arange(S).repeat_interleave(V)  # (S V,)
        cols = (rows * V + torch.arange(V).repeat(S)) % S
        M = torch.zeros(S, S, dtype=torch.float64)
        return M.index_put_((rows, cols), self.probs.reshape(-1), accumulate=True)

    # ------------------------------------------------------------------ exact information quantities
    def entropy_rate(self) -> float:
        """Exact entropy rate in nats per symbol: sum_s pi(s) H(P(. | s))."""
        return float((self.stationary * entropy(self.probs)).sum())

    def window_distribution(self, m: int) -> torch.Tensor:
        """The joint distribution of m + 1 consecutive symbols of the stationary source: (V,) * (m + 1) float64."""
        V, k = self.config.vocab_size, self.config.order
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ValueError(f"m must be an int >= 0, got {m!r}")
        if V ** (m + 1) > MAX_TABLE:
            raise ValueError(f"a window of {m + 1} symbols has {V}^{m + 1} outcomes, above the limit {MAX_TABLE}")
        if m + 1 <= k:  # marginal of the k-window: sum out the oldest k - (m + 1) symbols
            J = self.stationary.view((V,) * k)
            return J.sum(dim=tuple(range(k - m - 1))) if k - m - 1 > 0 else J
        J = self.stationary[:, None] * self.probs  # (V^k, V): window of k + 1
        for _ in range(k + 1, m + 1):  # extend by one symbol drawn given the last k
            J = (J.reshape(-1, V**k)[:, :, None] * self.probs[None]).reshape(-1)  # (V^(j-k), V^k, V)
        return J.reshape((V,) * (m + 1))

    def conditional_entropy(self, m: int) -> float:
        """H(X_t | the previous m symbols), nats: non-increasing in m, equal to the entropy rate for m >= order."""
        V = self.config.vocab_size
        J = self.window_distribution(m).reshape(V**m, V)  # (contexts, next)
        marg = J.sum(1, keepdim=True)
        cond = torch.where(marg > 0, J / marg.clamp_min(1e-300), torch.zeros_like(J))
        return float(-torch.special.xlogy(J, cond).sum())

    def _model_table(self, q: torch.Tensor) -> tuple[int, torch.Tensor]:
        V = self.config.vocab_size
        check_distribution(q, "q")
        m = round(math.log(q.shape[0], V)) if q.dim() == 2 and q.shape[0] >= 1 else -1
        if q.dim() != 2 or q.shape[1] != V or V**m != q.shape[0]:
            raise ValueError(f"q must be a table of model conditionals (V^m, V) with V={V}, got shape {tuple(q.shape)}")
        return m, self.window_distribution(m).reshape(V**m, V)

    def cross_entropy_rate(self, q: torch.Tensor) -> float:
        """Expected -log q(X_t | previous m symbols) under the source, for a model table q (V^m, V), in nats."""
        _, J = self._model_table(q)
        return float(-torch.special.xlogy(J, q.double()).sum())

    def kl_rate(self, q: torch.Tensor) -> float:
        """sum_c P(c) KL(P(. | c) || q(. | c)) over m-symbol contexts c: cross_entropy_rate(q) - conditional_entropy(m)."""
        _, J = self._model_table(q)
        cond = J / J.sum(1, keepdim=True).clamp_min(1e-300)
        return float((torch.special.xlogy(J, cond) - torch.special.xlogy(J, q.double())).sum())

    def log_prob(self, ids: torch.Tensor) -> torch.Tensor:
        """log P(x_t | x_0..x_{t-1}) under the true stationary source, for ids (n,): (n,) float64.

        The first k positions are conditioned on the shorter prefix (marginals of pi); the sum is the
        exact log-probability of the whole sequence.
        """
        V, k = self.config.vocab_size, self.config.order
        check_ids(ids, V)
        if ids.dim() != 1:
            raise ValueError(f"ids must have shape (n,), got {tuple(ids.shape)}")
        ids = ids.long()
        n = ids.numel()
        out = torch.empty(n, dtype=torch.float64)
        if n > k:
            ctx = torch.zeros(n - k, dtype=torch.int64)
            for i in range(k):  # oldest symbol first, most significant digit
                ctx = ctx * V + ids[i:n - k + i]
            out[k:] = self.probs[ctx, ids[k:]].log()
        prev = 0.0
        for t in range(min(k, n)):  # log P(x_0..x_t) - log P(x_0..x_{t-1})
            cur = self.window_distribution(t)[tuple(ids[: t + 1].tolist())].log().item()
            out[t] = cur - prev
            prev = cur
        return out

    # ------------------------------------------------------------------ sampling and text
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n symbols (n,) int64, deterministic given the source and ``seed``; the first k are drawn from pi."""
        V, k = self.config.vocab_size, self.config.order
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if self._cdf is None:
            cdf = self.probs.cumsum(1)
            self._cdf = (cdf / cdf[:, -1:]).tolist()  # last entry exactly 1
        rng = np.random.default_rng([self.config.seed, seed])
        pi_cdf = self.stationary.cumsum(0)
        ctx = int(torch.searchsorted(pi_cdf / pi_cdf[-1], torch.tensor([rng.random()], dtype=torch.float64),
                                     right=True).clamp_max(V**k - 1))
        first = [(ctx // V ** (k - 1 - i)) % V for i in range(k)]  # the context's digits, oldest first
        rest = run_chain(self._cdf, ctx, rng.random(max(n - k, 0)), V)
        return torch.tensor((first + rest)[:n], dtype=torch.int64)

    def decode(self, ids: torch.Tensor) -> str:
        """The characters of ``alphabet`` for ids (n,)."""
        check_ids(ids, self.config.vocab_size)
        return "".join(self.alphabet[i] for i in ids.tolist())

    def encode(self, text: str) -> torch.Tensor:
        """Ids (n,) int64 of a string over ``alphabet``."""
        index = {c: i for i, c in enumerate(self.alphabet)}
        bad = [c for c in text if c not in index]
        if bad:
            raise ValueError(f"character {bad[0]!r} is not in this source's alphabet {self.alphabet!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def sample_text(self, n: int, seed: int = 0) -> str:
        """:meth:`sample` as a string over ``alphabet``."""
        return self.decode(self.sample(n, seed))
