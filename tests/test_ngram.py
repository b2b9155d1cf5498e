"""Tests for mathllm.ngram against a plain-dictionary reference implementation, normalisation and the known-entropy source."""
import itertools
import math
from collections import Counter

import pytest
import torch

from mathllm.markov_source import MarkovSource, MarkovSourceConfig
from mathllm.ngram import NGramConfig, NGramModel, ngram_codes

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


class ReferenceNGram:
    """The textbook formulas with Counters and tuples, one probability at a time (slow, obvious)."""

    def __init__(self, ids, V, n, add_k, backoff, discount):
        self.V, self.n, self.k, self.backoff, self.d = V, n, add_k, backoff, discount
        ids = list(ids)
        self.counts = {j: Counter(tuple(ids[i:i + j]) for i in range(len(ids) - j + 1)) for j in range(1, n + 1)}
        self.ctx_tot = {j: Counter() for j in range(1, n + 1)}
        self.ctx_types = {j: Counter() for j in range(1, n + 1)}
        for j in range(1, n + 1):
            for gram, c in self.counts[j].items():
                self.ctx_tot[j][gram[:-1]] += c
                self.ctx_types[j][gram[:-1]] += 1

    def prob(self, ctx, y):
        j = len(ctx) + 1
        cnt, tot = self.counts[j][ctx + (y,)], self.ctx_tot[j][ctx]
        if not self.backoff or j == 1:
            return 1 / self.V if tot + self.k * self.V == 0 else (cnt + self.k) / (tot + self.k * self.V)
        if tot == 0:
            return self.prob(ctx[1:], y)
        types = self.ctx_types[j][ctx]
        d = self.d if types < self.V else 0.0
        if cnt > 0:
            return (cnt - d) / tot
        seen = [z for z in range(self.V) if self.counts[j][ctx + (z,)] > 0]
        alpha = (d * types / tot) / (1 - sum(self.prob(ctx[1:], z) for z in seen))
        return alpha * self.prob(ctx[1:], y)


def random_ids(N, V, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(V, generator=g) ** 2  # a skewed unigram so some n-grams repeat and others never occur
    return torch.multinomial(w / w.sum(), N, replacement=True, generator=g)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(vocab_size=1), ValueError, "vocab_size must be >= 2"),
    (dict(vocab_size=4, n=0), ValueError, "n must be >= 1"),
    (dict(vocab_size=4, add_k=-1.0), ValueError, "add_k must be a number >= 0"),
    (dict(vocab_size=4, backoff=True, add_k=0.0), ValueError, "backoff needs add_k > 0"),
    (dict(vocab_size=4, backoff=True, discount=1.0), ValueError, r"discount must be in \(0, 1\)"),
    (dict(vocab_size=1000, n=7), ValueError, "int64"),
    (dict(vocab_size=4, n=2.0), TypeError, "n must be an int"),
    (dict(vocab_size=4, backoff=1), TypeError, "backoff must be a bool"),
])
def test_config_validation(kwargs, err, match):
    with pytest.raises(err, match=match):
        NGramConfig(**kwargs)


def test_bad_input():
    m = NGramModel(NGramConfig(vocab_size=3, n=2))
    with pytest.raises(RuntimeError, match="not fitted"):
        m.log_prob(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least n=2"):
        m.fit(torch.tensor([0]))
    m.fit(torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 3\)"):
        m.log_prob(torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer tensor"):
        m.log_prob(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        m.fit(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        m.cross_entropy(torch.zeros(0, dtype=torch.int64))
    with pytest.raises(TypeError, match="NGramConfig"):
        NGramModel({"vocab_size": 3})


def test_add_k_known_answer():
    """ids 0 1 0 1 1, V = 2, n = 2, k = 1: bigrams 01 x2, 10 x1, 11 x1; P(1|0) = (2+1)/(2+2), P(0|1) = (1+1)/(2+2)."""
    m = NGramModel(NGramConfig(vocab_size=2, n=2, add_k=1.0)).fit(torch.tensor([0, 1, 0, 1, 1]))
    torch.testing.assert_close(m.conditional_table(), torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64))
    # the first position has no context: the add-1 unigram (2 + 1) / (5 + 2) for symbol 0
    assert m.log_prob(torch.tensor([0, 1]))[0].item() == pytest.approx(math.log(3 / 7), rel=1e-12)
    assert m.log_prob(torch.tensor([0, 1]))[1].item() == pytest.approx(math.log(0.75), rel=1e-12)


@pytest.mark.parametrize("V, n, add_k, backoff, discount", [
    (3, 2, 1.0, False, 0.75), (5, 3, 0.1, False, 0.75), (4, 4, 0.0, False, 0.75),
    (3, 2, 1.0, True, 0.75), (5, 3, 0.5, True, 0.5), (4, 4, 0.1, True, 0.9), (2, 5, 1.0, True, 0.3),
])
def test_against_reference_and_normalised(V, n, add_k, backoff, discount):
    ids = random_ids(300, V, seed=V * 10 + n)
    cfg = NGramConfig(vocab_size=V, n=n, add_k=add_k, backoff=backoff, discount=discount)
    model = NGramModel(cfg).fit(ids)
    ref = ReferenceNGram(ids.tolist(), V, n, add_k, backoff, discount)
    table = model.conditional_table()
    assert table.shape == (V ** (n - 1), V)
    expected = torch.tensor([[ref.prob(ctx, y) for y in range(V)]
                             for ctx in itertools.product(range(V), repeat=n - 1)], dtype=torch.float64)
    torch.testing.assert_close(table, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(table.sum(1), torch.ones(V ** (n - 1), dtype=torch.float64), rtol=0, atol=1e-12)
    # shorter contexts (the first positions of a text) are proper distributions too
    for m in range(n - 1):
        ctx = torch.tensor([1 % V] * m, dtype=torch.int64)
        dist = model.distribution(ctx)
        assert dist.sum().item() == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(dist, torch.tensor([ref.prob(tuple(ctx.tolist()), y) for y in range(V)],
                                                      dtype=torch.float64), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backoff", [False, True])
def test_log_prob_is_a_distribution_over_texts(backoff):
    V, n, L = 3, 3, 4
    model = NGramModel(NGramConfig(vocab_size=V, n=n, add_k=0.5, backoff=backoff)).fit(random_ids(200, V, 1))
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.int64)
    total = sum(model.log_prob(s).sum().exp().item() for s in seqs)
    assert total == pytest.approx(1.0, abs=1e-12)


def test_maximum_likelihood_minimises_training_cross_entropy():
    V, n = 4, 3
    ids = random_ids(2000, V, 3)
    ml = NGramModel(NGramConfig(vocab_size=V, n=n, add_k=0.0)).fit(ids)
    ce_ml = ml.cross_entropy(ids)
    for k in (0.01, 0.1, 1.0):
        assert NGramModel(NGramConfig(vocab_size=V, n=n, add_k=k)).fit(ids).cross_entropy(ids) > ce_ml
    assert NGramModel(NGramConfig(vocab_size=V, n=n, backoff=True)).fit(ids).cross_entropy(ids) > ce_ml
    # the ML training cross-entropy is the empirical conditional entropy of the counts (beyond the first n-1 positions)
    codes = ids[:-2] * V * V + ids[1:-1] * V + ids[2:]
    c3 = torch.bincount(codes, minlength=V**3).double().view(V * V, V)
    p = c3 / c3.sum()
    cond = c3 / c3.sum(1, keepdim=True).clamp_min(1)
    H = -torch.special.xlogy(p, cond).sum().item()
    assert -ml.log_prob(ids)[n - 1:].mean().item() == pytest.approx(H, rel=1e-12)
    # a held-out trigram never seen in training gets probability 0 under ML: infinite cross-entropy
    unseen = [c for c in itertools.product(range(V), repeat=3) if c3.view(-1)[c[0] * 16 + c[1] * 4 + c[2]] == 0]
    if unseen:
        assert math.isinf(ml.cross_entropy(torch.tensor(list(unseen[0]))))


@pytest.mark.parametrize("backoff", [False, True])
def test_cross_entropy_approaches_the_entropy_rate_from_above(backoff):
    src = MarkovSource(MarkovSourceConfig(vocab_size=8, order=2, concentration=0.5, seed=5))
    H = src.entropy_rate()
    held = src.sample(50_000, seed=99)
    expected = []
    for N in (2_000, 20_000, 200_000):
        model = NGramModel(NGramConfig(vocab_size=8, n=3, add_k=0.1, backoff=backoff)).fit(src.sample(N, seed=N))
        q = model.conditional_table()
        ce_exact = src.cross_entropy_rate(q)
        assert ce_exact == pytest.approx(H + src.kl_rate(q), rel=1e-12)  # CE = entropy + KL
        assert ce_exact > H
        nll = -model.log_prob(held)
        se = nll.view(50, -1).mean(1).std().item() / math.sqrt(50)
        assert abs(nll.mean().item() - ce_exact) < 5 * se + 2e-3  # held-out estimate of the exact value
        expected.append(ce_exact)
    assert expected[0] > expected[1] > expected[2]
    assert expected[2] - H < 0.01


def test_generate_and_perplexity():
    V = 5
    model = NGramModel(NGramConfig(vocab_size=V, n=2, add_k=1.0)).fit(random_ids(500, V, 7))
    a = model.generate(50, prompt=torch.tensor([1]), seed=3)
    assert a.shape == (50,) and a.dtype == torch.int64 and int(a.max()) < V
    assert torch.equal(a, model.generate(50, prompt=torch.tensor([1]), seed=3))
    greedy = model.generate(10, prompt=torch.tensor([2]), top_k=1)
    prev = 2
    for y in greedy.tolist():  # top-k = 1 follows a most likely symbol of each conditional (ties are kept)
        dist = model.distribution(torch.tensor([prev]))
        assert dist[y] == dist.max()
        prev = y
    uniform = NGramModel(NGramConfig(vocab_size=V, n=1, add_k=1e12)).fit(random_ids(100, V, 8))
    assert uniform.perplexity(random_ids(100, V, 9)) == pytest.approx(V, rel=1e-6)


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_ngram_codes_checks_ids_gram_length_and_overflow():
    """Before issue 15 a float raised "'float' object has no attribute 'numel'", a 2-d tensor a size
    mismatch from inside torch, an id >= V gave codes of other grams, and V ** j past int64 wrapped around."""
    with pytest.raises(TypeError, match="ids must be a torch.Tensor, got float"):
        ngram_codes(0.5, 2, 4)
    with pytest.raises(ValueError, match=r"ids must have shape \(N\)"):
        ngram_codes(torch.zeros(2, 3, dtype=torch.long), 2, 4)
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        ngram_codes(torch.tensor([0.5, 1.5, 2.0]), 2, 4)
    with pytest.raises(ValueError, match=r"ids holds token id 4, outside the vocabulary \[0, 4\)"):
        ngram_codes(torch.tensor([0, 4, 1]), 2, 4)       # was: (0, 4) coded as 0 * 4 + 4 = (1, 0)
    with pytest.raises(ValueError, match="j must be a positive int, got 0"):
        ngram_codes(torch.tensor([0, 1]), 0, 4)
    with pytest.raises(ValueError, match=r"V \*\* j must fit in int64"):
        ngram_codes(torch.tensor([0, 1, 2]), 2, 2 ** 32)    # 2 ** 64 codes: would wrap around
    assert ngram_codes(torch.tensor([1, 2, 3]), 2, 4).tolist() == [1 * 4 + 2, 2 * 4 + 3]
