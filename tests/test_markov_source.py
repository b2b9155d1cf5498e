"""Tests for mathllm.markov_source: exact entropy rate, stationarity, exact log-probabilities, determinism."""
import itertools
import math

import pytest
import torch

from mathllm import markov
from mathllm.markov_source import ALPHABET, MarkovSource, MarkovSourceConfig
from mathllm.probability import entropy

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

SMALL = [MarkovSourceConfig(vocab_size=4, order=2, concentration=0.5, seed=1),
         MarkovSourceConfig(vocab_size=3, order=3, concentration=1.0, seed=2),
         MarkovSourceConfig(vocab_size=5, order=1, concentration=0.2, seed=3),
         MarkovSourceConfig(vocab_size=6, order=0, concentration=0.5, seed=4)]


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(vocab_size=1), ValueError, r"vocab_size must be in \[2, 62\]"),
    (dict(vocab_size=63), ValueError, r"vocab_size must be in \[2, 62\]"),
    (dict(order=-1), ValueError, "order must be >= 0"),
    (dict(concentration=0.0), ValueError, "concentration must be a finite number > 0"),
    (dict(concentration=float("inf")), ValueError, "concentration"),
    (dict(vocab_size=16.0), TypeError, "vocab_size must be an int"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(vocab_size=62, order=4), ValueError, "table limit"),
])
def test_config_validation(kwargs, err, match):
    with pytest.raises(err, match=match):
        MarkovSourceConfig(**kwargs)


def test_bad_input():
    src = MarkovSource(SMALL[0])
    with pytest.raises(TypeError, match="MarkovSourceConfig"):
        MarkovSource({"vocab_size": 4})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        src.log_prob(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        src.log_prob(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer tensor"):
        src.log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        src.sample(-1)
    with pytest.raises(ValueError, match="not in this source's alphabet"):
        src.encode("abz")
    with pytest.raises(ValueError, match=r"q must be a table of model conditionals \(V\^m, V\)"):
        src.cross_entropy_rate(torch.full((5, 4), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="sum to 1"):
        src.kl_rate(torch.full((4, 4), 0.2, dtype=torch.float64))


def test_default_interface_and_determinism():
    cfg = MarkovSourceConfig()
    assert (cfg.vocab_size, cfg.order, cfg.concentration, cfg.seed) == (16, 2, 0.5, 0)
    a, b = MarkovSource(cfg), MarkovSource(MarkovSourceConfig())
    assert a.alphabet == "abcdefghijklmnop" == ALPHABET[:16]
    assert torch.equal(a.probs, b.probs) and a.probs.shape == (256, 16) and a.probs.dtype == torch.float64
    x = a.sample(1000, seed=3)
    assert x.dtype == torch.int64 and x.shape == (1000,)
    assert torch.equal(x, b.sample(1000, seed=3))
    assert not torch.equal(x, a.sample(1000, seed=4))
    assert not torch.equal(a.probs, MarkovSource(MarkovSourceConfig(seed=1)).probs)
    text = a.sample_text(1000, seed=3)
    assert len(text) == 1000 and set(text) <= set(a.alphabet) and text == a.decode(x)
    assert torch.equal(a.encode(text), x)
    assert torch.equal(a.sample(7, seed=3), x[:7])  # a shorter sample is a prefix of a longer one
    assert a.sample(0).shape == (0,) and a.sample(1).shape == (1,)
    H = a.entropy_rate()
    assert isinstance(H, float) and 0 < H < math.log(16)


@pytest.mark.parametrize("cfg", SMALL)
def test_stationary_and_entropy_rate_against_the_context_chain(cfg):
    src = MarkovSource(cfg)
    torch.testing.assert_close(src.probs.sum(1), torch.ones(cfg.vocab_size ** cfg.order, dtype=torch.float64),
                               rtol=0, atol=1e-14)
    Mat = src.context_transition_matrix()
    pi = markov.stationary_distribution(Mat)
    torch.testing.assert_close(src.stationary, pi, rtol=1e-9, atol=1e-13)
    H = src.entropy_rate()
    if cfg.order >= 1:  # the next context determines the next symbol, so the two entropy rates agree
        assert H == pytest.approx(markov.entropy_rate(Mat), rel=1e-10)
    assert H == pytest.approx(src.conditional_entropy(cfg.order), rel=1e-10)
    if cfg.order == 0:
        assert H == pytest.approx(entropy(src.probs[0]).item(), rel=1e-12)


@pytest.mark.parametrize("cfg", SMALL)
def test_window_distributions_and_conditional_entropies(cfg):
    src = MarkovSource(cfg)
    V, k = cfg.vocab_size, cfg.order
    Hs = [src.conditional_entropy(m) for m in range(k + 3)]
    assert all(a >= b - 1e-12 for a, b in zip(Hs, Hs[1:]))  # more context never hurts
    for m in range(k, k + 3):
        assert Hs[m] == pytest.approx(src.entropy_rate(), rel=1e-10)  # nothing beyond the order helps
    for m in range(k + 3):
        J = src.window_distribution(m)
        assert J.shape == (V,) * (m + 1) and J.sum().item() == pytest.approx(1.0, abs=1e-12)
        if m >= 1:  # stationarity: the first m and the last m symbols have the same law
            torch.testing.assert_close(J.sum(0), J.sum(-1), rtol=1e-9, atol=1e-14)
    assert Hs[0] == pytest.approx(entropy(src.window_distribution(0)).item(), rel=1e-12)


@pytest.mark.parametrize("cfg", SMALL[:3])
def test_log_prob_is_an_exact_distribution_over_sequences(cfg):
    """Summing exp(sum log_prob) over every sequence of length L gives 1; each matches the chain rule by hand."""
    src = MarkovSource(cfg)
    V, k = cfg.vocab_size, cfg.order
    L = k + 2
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.int64)
    logp = torch.stack([src.log_prob(s).sum() for s in seqs])
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    s = seqs[len(seqs) // 3]
    by_hand = src.window_distribution(k - 1)[tuple(s[:k].tolist())].log().item() if k else 0.0
    for t in range(k, L):
        ctx = sum(int(s[t - i]) * V ** (i - 1) for i in range(1, k + 1))
        by_hand += math.log(src.probs[ctx, s[t]].item())
    assert logp[len(seqs) // 3].item() == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("cfg", [MarkovSourceConfig(), SMALL[0], SMALL[2]])
def test_empirical_nll_converges_to_entropy_rate(cfg):
    src = MarkovSource(cfg)
    n = 200_000
    nll = -src.log_prob(src.sample(n, seed=11))
    se = nll.view(100, -1).mean(1).std().item() / 10  # batch means absorb the chain's correlation
    assert abs(nll.mean().item() - src.entropy_rate()) < 5 * se + 1e-4
    # the sample is stationary from its start: pair frequencies match the window distribution
    x = src.sample(n, seed=12)
    V = cfg.vocab_size
    pairs = torch.bincount(x[:-1] * V + x[1:], minlength=V * V).double() / (n - 1)
    assert (pairs - src.window_distribution(1).reshape(-1)).abs().max() < 0.01


@pytest.mark.parametrize("cfg", SMALL[:3])
def test_cross_entropy_equals_entropy_plus_kl(cfg):
    src = MarkovSource(cfg)
    V, k = cfg.vocab_size, cfg.order
    assert src.cross_entropy_rate(src.probs) == pytest.approx(src.entropy_rate(), rel=1e-12)
    assert abs(src.kl_rate(src.probs)) < 1e-13
    g = torch.Generator().manual_seed(0)
    for m in range(k + 2):
        q = torch.rand(V**m, V, generator=g, dtype=torch.float64) + 0.05
        q = q / q.sum(1, keepdim=True)
        ce, kl = src.cross_entropy_rate(q), src.kl_rate(q)
        assert kl > 0
        assert ce == pytest.approx(src.conditional_entropy(m) + kl, rel=1e-12)
        assert ce > src.entropy_rate()
