"""Tests for mathllm.evaluate: against torch, scipy and simulations with a known truth."""
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.signal
import scipy.stats
import torch
import torch.nn.functional as F

from mathllm.bpe import BPETokenizer
from mathllm.char_tokenizer import CharTokenizer
from mathllm.evaluate import (CHAR_CLASSES, bits_per_byte, bootstrap, bootstrap_ci, char_class, char_classes,
                              chunk_sums, compare_bits_per_byte, confusion_matrix, fit_temperature,
                              good_turing_missing_mass, ngram_overlap, ngram_seen, next_token_logits, percentile_interval,
                              reliability, temperature_nll, token_byte_lengths, token_nll)
from mathllm.transformer import GPT, GPTConfig

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


class Bigram(torch.nn.Module):
    """A model that returns bare logits (no tuple): the next token depends on the current one only."""

    def __init__(self, V):
        super().__init__()
        self.table = torch.nn.Embedding(V, V)

    def forward(self, idx):
        return self.table(idx)


# ---------------------------------------------------------------------------- per-token losses
@pytest.mark.parametrize("N,T,batch", [(2, 4, 1), (17, 4, 2), (41, 8, 64), (64, 8, 3), (65, 8, 3)])
def test_next_token_logits_match_windows_of_the_model(N, T, batch):
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=11, block_size=T)).train()
    ids = torch.randint(0, 11, (N,))
    got = next_token_logits(model, ids, T, batch_size=batch)
    assert got.shape == (N - 1, 11) and model.training            # the mode is restored
    model.eval()
    with torch.no_grad():
        want = torch.cat([model(ids[s:min(s + T, N - 1)][None])[0][0] for s in range(0, N - 1, T)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_next_token_logits_accepts_models_returning_bare_logits():
    model = Bigram(5)
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    got = next_token_logits(model, ids, 3)
    torch.testing.assert_close(got, model.table.weight[ids[:-1]].detach())


@pytest.mark.parametrize("N,V", [(1, 2), (50, 7), (300, 65)])
def test_token_nll_is_cross_entropy(N, V):
    g = torch.Generator().manual_seed(N)
    logits, targets = 4 * torch.randn(N, V, generator=g), torch.randint(0, V, (N,), generator=g)
    got = token_nll(logits, targets)
    want = -torch.log_softmax(logits.double(), -1)[torch.arange(N), targets]
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    assert math.isclose(float(got.mean()), float(F.cross_entropy(logits, targets)), rel_tol=1e-5)


def test_bad_inputs_raise():
    model = Bigram(5)
    with pytest.raises(TypeError, match="int64"):
        next_token_logits(model, torch.zeros(4), 2)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        next_token_logits(model, torch.zeros(1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="block_size"):
        next_token_logits(model, torch.zeros(4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        token_nll(torch.zeros(3, 4), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap(torch.ones(3), block=2)
    with pytest.raises(ValueError, match="den must have the shape"):
        bootstrap(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(torch.ones(5), level=1.0)
    with pytest.raises(ValueError, match="n_bins"):
        reliability(torch.zeros(2, 3), torch.tensor([0, 1]), n_bins=0)
    with pytest.raises(ValueError, match="temperature"):
        temperature_nll(torch.zeros(2, 3), torch.tensor([0, 1]), 0.0)
    with pytest.raises(ValueError, match="one character"):
        char_class("ab")
    with pytest.raises(TypeError, match="tokenizer"):
        token_byte_lengths(object())
    with pytest.raises(ValueError, match="empty"):
        good_turing_missing_mass([])
    with pytest.raises(ValueError, match="n must be"):
        ngram_overlap([1, 2], [1, 2], 0)


# ---------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("n,seed", [(30, 0), (200, 1)])
def test_percentile_interval_agrees_with_scipy(n, seed):
    x = torch.from_numpy(np.random.default_rng(seed).exponential(size=n))
    ours = bootstrap_ci(x, n_boot=20_000, generator=torch.Generator().manual_seed(seed))
    ref = scipy.stats.bootstrap((x.numpy(),), np.mean, n_resamples=20_000, method="percentile",
                                random_state=seed).confidence_interval
    se = float(x.std()) / math.sqrt(n)
    assert ours.estimate == pytest.approx(float(x.mean()), rel=1e-12)
    assert abs(ours.low - ref.low) < 0.05 * se and abs(ours.high - ref.high) < 0.05 * se


def test_bootstrap_standard_error_is_the_plug_in_one():
    x = torch.randn(2000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reps = bootstrap(x, n_boot=4000, generator=torch.Generator().manual_seed(4))
    plug_in = float(x.std(correction=0)) / math.sqrt(len(x))     # sd of the mean of n draws from the sample
    assert float(reps.std()) == pytest.approx(plug_in, rel=0.05)


@pytest.mark.parametrize("dist,truth", [("exponential", 1.0), ("bernoulli", 0.2)])
def test_bootstrap_intervals_cover_the_population_mean(dist, truth):
    g = torch.Generator().manual_seed(5)
    hits, reps = 0, 200
    for _ in range(reps):
        if dist == "exponential":
            x = -torch.log(torch.rand(200, generator=g, dtype=torch.float64))
        else:
            x = (torch.rand(200, generator=g, dtype=torch.float64) < truth).double()
        hits += truth in bootstrap_ci(x, n_boot=400, generator=g)
    assert 0.90 <= hits / reps <= 0.99                            # nominal 0.95; the percentile interval is a bit short


def test_block_bootstrap_keeps_dependence_that_the_iid_bootstrap_loses():
    rng = np.random.default_rng(6)
    phi, n, reps, burn = 0.8, 2000, 150, 300
    x = scipy.signal.lfilter([1.0], [1.0, -phi], rng.standard_normal((reps, n + burn)), axis=1)[:, burn:]  # AR(1)
    g = torch.Generator().manual_seed(6)
    cover = {block: sum(0.0 in bootstrap_ci(torch.from_numpy(row), n_boot=400, block=block, generator=g) for row in x)
             for block in (1, 100)}
    # an AR(1) mean has variance ~ (1 + phi) / (1 - phi) = 9 times the iid one: intervals 3x too short
    assert cover[1] / reps < 0.6 and cover[100] / reps > 0.85


def test_paired_replicates_share_their_draws_and_ratio_of_sums():
    g = torch.Generator().manual_seed(7)
    num = torch.rand(2, 50, generator=g, dtype=torch.float64)
    num[1] = num[0]
    den = torch.rand(2, 50, generator=g, dtype=torch.float64) + 1
    den[1] = den[0]
    reps = bootstrap(num, den, n_boot=300, generator=g)
    assert reps.shape == (300, 2)
    torch.testing.assert_close(reps[:, 0], reps[:, 1], atol=0, rtol=0)
    ci = bootstrap_ci(num[0], den[0], n_boot=300, generator=g)
    assert ci.estimate == pytest.approx(float(num[0].sum() / den[0].sum()), rel=1e-12) and ci.low < ci.estimate < ci.high


def test_interval_map_is_monotone_transform():
    ci = bootstrap_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]), n_boot=200, generator=torch.Generator().manual_seed(0))
    e = ci.map(math.exp)
    assert (e.estimate, e.low, e.high) == (math.exp(ci.estimate), math.exp(ci.low), math.exp(ci.high))


# ---------------------------------------------------------------------------- bits per byte
TEXTS = ["hello world", "naïve café", "日本語のテキスト", "emoji 🙂🙃 and more", "a\nb\n\nc"]


@pytest.mark.parametrize("text", TEXTS)
def test_token_byte_lengths_add_up_to_the_utf8_length(text):
    char = CharTokenizer.train(text)
    bpe = BPETokenizer.train(text * 3, vocab_size=270)
    for tok in (char, bpe):
        lengths = token_byte_lengths(tok)
        assert int(lengths[tok.encode(text)].sum()) == len(text.encode("utf-8"))


def test_bits_per_byte_known_answer():
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)
    assert bits_per_byte(torch.full((4,), math.log(2)), torch.tensor([1, 1, 2, 4])) == pytest.approx(0.5)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunk_sums_assign_each_token_to_the_chunk_of_its_first_byte(chunk):
    lengths = torch.tensor([1, 3, 2, 1, 4, 1, 2])
    values = torch.arange(7, dtype=torch.float64)
    v, b = chunk_sums(values, lengths, chunk)
    starts = [0, 1, 4, 6, 7, 11, 12]
    want_v = torch.zeros(max(starts) // chunk + 1, dtype=torch.float64)
    want_b = torch.zeros_like(want_v)
    for i, s in enumerate(starts):
        want_v[s // chunk] += values[i]
        want_b[s // chunk] += lengths[i]
    torch.testing.assert_close(v, want_v)
    torch.testing.assert_close(b, want_b)


def test_compare_bits_per_byte_of_two_tokenizations():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    char, bpe = CharTokenizer.train(text), BPETokenizer.train(text, vocab_size=300)
    g = torch.Generator().manual_seed(0)
    ids_c, ids_b = torch.tensor(char.encode(text)), torch.tensor(bpe.encode(text))
    bytes_c, bytes_b = token_byte_lengths(char)[ids_c], token_byte_lengths(bpe)[ids_b]
    nats_c = torch.rand(len(ids_c), generator=g, dtype=torch.float64)
    nats_b = torch.rand(len(ids_b), generator=g, dtype=torch.float64) * 3
    same = compare_bits_per_byte(nats_c, bytes_c, nats_c, bytes_c, chunk_bytes=64, n_boot=200, generator=g)
    assert same.difference.low == same.difference.high == 0.0
    res = compare_bits_per_byte(nats_c, bytes_c, nats_b, bytes_b, chunk_bytes=64, n_boot=500, generator=g)
    assert res.a.estimate == pytest.approx(bits_per_byte(nats_c, bytes_c), rel=1e-12)
    assert res.b.estimate == pytest.approx(bits_per_byte(nats_b, bytes_b), rel=1e-12)
    assert res.difference.estimate == pytest.approx(res.a.estimate - res.b.estimate, rel=1e-12)
    assert res.a.low < res.a.estimate < res.a.high and res.difference.low < res.difference.estimate < res.difference.high


# ---------------------------------------------------------------------------- error analysis
def test_char_classes_known_answers():
    assert [char_class(c) for c in "aZ \n,3é"] == ["lower", "upper", "space", "newline", "punct", "other", "lower"]
    assert char_classes("a!").tolist() == [CHAR_CLASSES.index("lower"), CHAR_CLASSES.index("punct")]


@pytest.mark.parametrize("N,K", [(1, 1), (100, 3), (1000, 6)])
def test_confusion_matrix_against_a_loop(N, K):
    g = torch.Generator().manual_seed(K)
    t, p = torch.randint(0, K, (N,), generator=g), torch.randint(0, K, (N,), generator=g)
    want = np.zeros((K, K), dtype=np.int64)
    np.add.at(want, (t.numpy(), p.numpy()), 1)
    got = confusion_matrix(t, p, K)
    assert np.array_equal(got.numpy(), want) and int(got.sum()) == N


# ---------------------------------------------------------------------------- calibration
def _reliability_loop(logits, targets, M):
    probs = logits.double().softmax(-1)
    conf, pred = probs.max(-1)
    ece, counts = 0.0, []
    for m in range(M):
        lo, hi = m / M, (m + 1) / M
        inside = [i for i in range(len(conf)) if (lo < conf[i] <= hi) or (m == 0 and conf[i] == 0)]
        counts.append(len(inside))
        if inside:
            acc = sum(float(pred[i] == targets[i]) for i in inside) / len(inside)
            c = sum(float(conf[i]) for i in inside) / len(inside)
            ece += len(inside) / len(conf) * abs(acc - c)
    return ece, counts


@pytest.mark.parametrize("N,V,M,scale", [(50, 3, 5, 1.0), (400, 10, 15, 3.0), (300, 65, 10, 0.3)])
def test_reliability_against_a_loop(N, V, M, scale):
    g = torch.Generator().manual_seed(N)
    logits, targets = scale * torch.randn(N, V, generator=g), torch.randint(0, V, (N,), generator=g)
    r = reliability(logits, targets, M)
    ece, counts = _reliability_loop(logits, targets, M)
    assert r.ece == pytest.approx(ece, abs=1e-12) and r.counts.tolist() == counts
    assert r.edges[0] == 0 and r.edges[-1] == 1 and len(r.edges) == M + 1


def test_reliability_bins_are_closed_on_the_right():
    """Confidence exactly 0.5 belongs to the bin (0, 0.5], not to (0.5, 1]."""
    r = reliability(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), n_bins=2)  # ties: the top-1 is token 0
    assert r.counts.tolist() == [4, 0] and float(r.confidence[0]) == 0.5 and float(r.accuracy[0]) == 0.5
    assert r.ece == 0.0


def _sampled(N, V, seed):
    g = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(N, V, generator=g, dtype=torch.float64)
    y = torch.multinomial(z.softmax(-1), 1, generator=g)[:, 0]   # labels drawn from softmax(z): z is calibrated
    return z, y


def test_calibrated_logits_have_small_ece_and_scaled_ones_large():
    z, y = _sampled(20_000, 10, 0)
    assert reliability(z, y).ece < 0.015
    assert reliability(3 * z, y).ece > 0.1                        # overconfident
    assert reliability(z / 3, y).ece > 0.1                        # underconfident


@pytest.mark.parametrize("c", [0.4, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_scale(c):
    z, y = _sampled(20_000, 8, 1)
    T = fit_temperature(c * z, y)
    assert T == pytest.approx(c, rel=0.05)


@pytest.mark.parametrize("seed,scale", [(2, 1.0), (3, 5.0), (4, 0.2)])
def test_fit_temperature_matches_scipy(seed, scale):
    g = torch.Generator().manual_seed(seed)
    logits, targets = scale * torch.randn(500, 6, generator=g), torch.randint(0, 6, (500,), generator=g)
    logits[torch.arange(250), targets[:250]] += 2.0              # some signal
    T = fit_temperature(logits, targets)
    ref = scipy.optimize.minimize_scalar(lambda lt: temperature_nll(logits, targets, math.exp(lt)),
                                         bounds=(-8, 8), method="bounded", options={"xatol": 1e-10})
    assert math.log(T) == pytest.approx(ref.x, abs=1e-4)
    assert temperature_nll(logits, targets, T) <= ref.fun + 1e-9
    # first-order condition: the mean logit under the fitted model equals the mean true logit
    z = logits.double() / T
    assert float(((z.softmax(-1) * z).sum(-1) - z[torch.arange(500), targets]).mean()) == pytest.approx(0, abs=1e-7)


def test_fit_temperature_without_signal_raises_or_stays_positive():
    logits = torch.zeros(12, 4)
    logits[:, 0] = 1.0
    targets = torch.arange(12) % 4                                # uniform targets: the best beta is 0
    with pytest.raises(ValueError, match="no information"):
        fit_temperature(logits, targets)
    perfect, labels = torch.eye(4).repeat(3, 1) * 5, torch.arange(4).repeat(3)
    T = fit_temperature(perfect, labels)                          # always right: the NLL falls until it is 0 in float64
    assert T < 0.2 and temperature_nll(perfect, labels, T) < 1e-12


# ---------------------------------------------------------------------------- what was never seen
def test_good_turing_known_answer():
    assert good_turing_missing_mass("abracadabra") == pytest.approx(2 / 11)   # c and d once
    assert good_turing_missing_mass([1, 1, 2, 2]) == 0.0


def test_good_turing_estimates_the_missing_mass_of_a_zipf_source():
    V, N = 5000, 20_000
    p = 1 / torch.arange(1, V + 1, dtype=torch.float64)
    p /= p.sum()
    g = torch.Generator().manual_seed(0)
    gaps = []
    for _ in range(20):
        draws = torch.multinomial(p, N, replacement=True, generator=g)
        seen = torch.zeros(V, dtype=torch.bool)
        seen[draws] = True
        gaps.append(good_turing_missing_mass(draws.tolist()) - float(p[~seen].sum()))
    assert abs(np.mean(gaps)) < 0.003 and np.std(gaps) < 0.01   # unbiased up to O(1/N), small spread


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("big", [False, True])
def test_ngram_overlap_against_python_sets(n, big):
    g = torch.Generator().manual_seed(n)
    hi = 70_000 if big else 4
    a, b = torch.randint(0, hi, (300,), generator=g).tolist(), torch.randint(0, hi, (120,), generator=g).tolist()
    if big:
        b[:40] = a[10:50]                                            # some shared n-grams
    seen = {tuple(a[i:i + n]) for i in range(len(a) - n + 1)}
    grams = [tuple(b[i:i + n]) for i in range(len(b) - n + 1)]
    assert ngram_seen(a, b, n).tolist() == [x in seen for x in grams]
    assert ngram_overlap(a, b, n) == pytest.approx(sum(x in seen for x in grams) / len(grams), abs=1e-12)


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_bootstrap_ci_of_an_empty_sample_is_refused():
    with pytest.raises(ValueError, match=r"num must hold at least 2 observations, got shape \(0,\)"):
        bootstrap_ci(torch.zeros(0))
