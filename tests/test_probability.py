"""Tests for mathllm.probability against torch.distributions, torch.nn.functional, sympy, scipy and Hugging Face."""
import math

import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from mathllm import losses
from mathllm import probability as P


def rand_dist(*shape, seed=0, zeros=False):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(*shape, generator=g, dtype=torch.float64) ** 3
    if zeros:
        p[..., ::3] = 0.0
    return p / p.sum(-1, keepdim=True)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, err, match", [
    (torch.tensor([0.5, -0.1, 0.6]), ValueError, "negative"),
    (torch.tensor([0.5, 0.4]), ValueError, "sum to 1"),
    (torch.tensor([[0.5, 0.5], [0.2, 0.2]]), ValueError, "sums to 0.4"),
    (torch.tensor([1, 0]), TypeError, "floating-point"),
    (torch.tensor(1.0), ValueError, r"shape \(\.\.\., V\)"),
    (torch.tensor([float("nan"), 1.0]), ValueError, "NaN"),
    ([0.5, 0.5], TypeError, "torch.Tensor"),
])
def test_check_distribution_errors(bad, err, match):
    with pytest.raises(err, match=match):
        P.check_distribution(bad)
    with pytest.raises(err, match=match):
        P.entropy(bad)


def test_shape_mismatch_and_bad_arguments():
    p, q = rand_dist(4), rand_dist(5)
    with pytest.raises(ValueError, match="same shape"):
        P.kl_divergence(p, q)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        P.apply_temperature(p, 0.0)
    with pytest.raises(ValueError, match="positive int"):
        P.top_k_filter(p, 0)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        P.top_p_filter(p, 1.5)
    with pytest.raises(ValueError, match="base"):
        P.entropy(p, base=1)
    with pytest.raises(ValueError, match="num_samples"):
        P.sample(p, -1)
    with pytest.raises(ValueError, match="likelihood must have the prior's shape"):
        P.bayes_posterior(p, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        P.bayes_posterior(p, torch.full((4,), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(A, B, C\)"):
        P.conditional_mutual_information(rand_dist(4).view(2, 2))
    with pytest.raises(ValueError, match="unknown distribution"):
        P.symbolic_distribution("cauchy")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        P.empirical_distribution(torch.tensor([0, 5]), 3)


# ---------------------------------------------------------------------------- information
@pytest.mark.parametrize("shape", [(2,), (7,), (3, 50), (2, 4, 1000)])
@pytest.mark.parametrize("zeros", [False, True])
def test_entropy_matches_torch_categorical(shape, zeros):
    p = rand_dist(*shape, seed=1, zeros=zeros and shape[-1] > 3)
    ref = torch.distributions.Categorical(probs=p).entropy()
    torch.testing.assert_close(P.entropy(p), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P.entropy(p, base=2), ref / math.log(2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("V", [2, 10, 257])
def test_entropy_known_answers(V):
    uniform = torch.full((V,), 1.0 / V, dtype=torch.float64)
    assert P.entropy(uniform).item() == pytest.approx(math.log(V), rel=1e-12)
    assert P.entropy(uniform, base=2).item() == pytest.approx(math.log2(V), rel=1e-12)
    assert P.perplexity(P.entropy(uniform)).item() == pytest.approx(V, rel=1e-10)
    onehot = torch.zeros(V, dtype=torch.float64)
    onehot[V // 2] = 1.0
    assert P.entropy(onehot).item() == 0.0


@pytest.mark.parametrize("shape", [(5,), (4, 30), (3, 2, 100)])
def test_cross_entropy_and_kl_against_torch(shape):
    p, q = rand_dist(*shape, seed=2), rand_dist(*shape, seed=3)
    kl, h = P.kl_divergence(p, q), P.entropy(p)
    # the one cross-entropy (mathllm.losses) of two distributions: logits log q; F.cross_entropy likewise
    ce = losses.cross_entropy(q.log().reshape(-1, shape[-1]), p.reshape(-1, shape[-1]), "none").reshape(shape[:-1])
    ref_ce = F.cross_entropy(q.log().reshape(-1, shape[-1]), p.reshape(-1, shape[-1]), reduction="none")
    torch.testing.assert_close(ce.reshape(-1), ref_ce, rtol=1e-12, atol=1e-12)
    ref_kl = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=p),
                                               torch.distributions.Categorical(probs=q))
    torch.testing.assert_close(kl, ref_kl, rtol=1e-10, atol=1e-12)
    ref_kl2 = F.kl_div(q.log(), p, reduction="none").sum(-1)
    torch.testing.assert_close(kl, ref_kl2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ce, h + kl, rtol=1e-12, atol=1e-12)  # H(p, q) = H(p) + KL(p || q)
    assert (kl >= 0).all()
    torch.testing.assert_close(P.kl_divergence(p, p), torch.zeros(shape[:-1], dtype=torch.float64), rtol=0, atol=1e-15)


def test_kl_infinite_and_asymmetric():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    assert math.isinf(P.kl_divergence(p, q).item())
    r = torch.tensor([0.9, 0.1], dtype=torch.float64)
    s = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert P.kl_divergence(r, s).item() != pytest.approx(P.kl_divergence(s, r).item(), rel=1e-3)


def test_bits_and_bits_per_character():
    assert P.nats_to_bits(math.log(2)) == pytest.approx(1.0, rel=1e-15)
    assert P.bits_to_nats(P.nats_to_bits(1.7)) == pytest.approx(1.7, rel=1e-15)
    # a text of 1000 characters in 250 tokens at 4 ln 2 nats/token: 1000 bits in all, 1 bit per character
    assert P.bits_per_character(4 * math.log(2), 250, 1000) == pytest.approx(1.0, rel=1e-12)


def test_maximum_likelihood_is_minimum_cross_entropy():
    """The NLL of data under q is N * H(p_hat, q); gradient descent on logits reaches q = p_hat."""
    g = torch.Generator().manual_seed(0)
    ids = torch.multinomial(torch.tensor([0.5, 0.3, 0.15, 0.05]), 400, replacement=True, generator=g)
    p_hat = P.empirical_distribution(ids, 4)
    z = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([z], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        nll = -torch.log_softmax(z, -1)[ids].mean()
        nll.backward()
        return nll
    opt.step(closure)
    q = torch.softmax(z.detach(), -1)
    torch.testing.assert_close(q, p_hat, rtol=0, atol=1e-7)
    nll = -torch.log_softmax(z.detach(), -1)[ids].mean()
    torch.testing.assert_close(nll, losses.cross_entropy(q.log()[None], p_hat[None], "none")[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(nll, P.entropy(p_hat), rtol=1e-9, atol=1e-12)


def test_bayes_posterior_and_mutual_information():
    prior = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    like = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    post = P.bayes_posterior(prior, like)
    evidence = 0.7 * 0.1 + 0.2 * 0.5 + 0.1 * 0.9
    torch.testing.assert_close(post, torch.tensor([0.07, 0.1, 0.09], dtype=torch.float64) / evidence)
    joint = rand_dist(3, 4, seed=4).view(-1)
    joint = (joint / joint.sum()).view(3, 4)
    H = lambda t: P.entropy(t.reshape(-1))  # noqa: E731
    torch.testing.assert_close(P.mutual_information(joint), H(joint.sum(1)) + H(joint.sum(0)) - H(joint),
                               rtol=1e-12, atol=1e-12)
    indep = torch.outer(rand_dist(3, seed=5), rand_dist(4, seed=6))
    assert abs(P.mutual_information(indep).item()) < 1e-14


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conditional_mutual_information(seed):
    a, b = rand_dist(3, seed=seed), rand_dist(3, 4, seed=seed + 10)
    c = rand_dist(4, 5, seed=seed + 20)
    markov = a[:, None, None] * b[:, :, None] * c[None]  # p(x) p(y|x) p(z|y): X and Z independent given Y
    assert abs(P.conditional_mutual_information(markov).item()) < 1e-14
    general = rand_dist(60, seed=seed + 30).view(3, 4, 5)
    H = lambda t: P.entropy(t.reshape(-1))  # noqa: E731  I(X;Z|Y) = H(X,Y) + H(Y,Z) - H(Y) - H(X,Y,Z)
    ref = H(general.sum(2)) + H(general.sum(0)) - H(general.sum((0, 2))) - H(general)
    torch.testing.assert_close(P.conditional_mutual_information(general), ref, rtol=1e-10, atol=1e-14)
    assert ref.item() > 1e-3


# ---------------------------------------------------------------------------- transformations and sampling
@pytest.mark.parametrize("T", [0.05, 0.5, 1.0, 2.0, 10.0])
def test_temperature_is_softmax_of_scaled_logits(T):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 40, generator=g, dtype=torch.float64) * 3
    p = torch.softmax(z, -1)
    torch.testing.assert_close(P.apply_temperature(p, T), torch.softmax(z / T, -1), rtol=1e-9, atol=1e-12)


def test_temperature_limits_and_monotone_entropy():
    p = rand_dist(100, seed=7)
    torch.testing.assert_close(P.apply_temperature(p, 1.0), p, rtol=1e-12, atol=1e-15)
    assert P.apply_temperature(p, 1e-3).argmax() == p.argmax() and P.apply_temperature(p, 1e-3).max() > 0.999
    torch.testing.assert_close(P.apply_temperature(p, 1e6), torch.full_like(p, 0.01), rtol=1e-4, atol=0)
    Hs = torch.stack([P.entropy(P.apply_temperature(p, T)) for T in torch.linspace(0.1, 5, 50).tolist()])
    assert (Hs.diff() > 0).all()
    Hk = torch.stack([P.entropy(P.top_k_filter(p, k)) for k in range(1, 101)])
    assert (Hk.diff() >= -1e-12).all() and Hk[0] == 0
    Hp = torch.stack([P.entropy(P.top_p_filter(p, q)) for q in torch.linspace(0.01, 1, 100).tolist()])
    assert (Hp.diff() >= -1e-12).all()


def test_top_k_and_top_p_against_hugging_face():
    pytest.importorskip("transformers")
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper
    for seed in range(5):
        p = rand_dist(4, 64, seed=seed)
        logits = p.log()
        for k in (1, 3, 17, 64):
            ref = torch.softmax(TopKLogitsWarper(top_k=k)(None, logits.clone()), -1)
            torch.testing.assert_close(P.top_k_filter(p, k), ref, rtol=1e-12, atol=1e-15)
        for top_p in (0.1, 0.5, 0.9, 0.99):
            ref = torch.softmax(TopPLogitsWarper(top_p=top_p)(None, logits.clone()), -1)
            torch.testing.assert_close(P.top_p_filter(p, top_p), ref, rtol=1e-12, atol=1e-15)


def test_top_p_known_answer():
    p = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)
    torch.testing.assert_close(P.top_p_filter(p, 0.6), torch.tensor([0, 4 / 7, 0, 3 / 7], dtype=torch.float64))
    torch.testing.assert_close(P.top_p_filter(p, 0.7), torch.tensor([0, 4 / 7, 0, 3 / 7], dtype=torch.float64))
    torch.testing.assert_close(P.top_p_filter(p, 0.71), torch.tensor([0, 4, 2, 3], dtype=torch.float64) / 9)
    torch.testing.assert_close(P.top_p_filter(p, 0.01), torch.tensor([0, 1, 0, 0], dtype=torch.float64))


@pytest.mark.parametrize("V", [2, 6, 30])
def test_sample_frequencies(V):
    scipy_stats = pytest.importorskip("scipy.stats")
    p = rand_dist(V, seed=V, zeros=V > 3)
    g = torch.Generator().manual_seed(V)
    n = 200_000
    x = P.sample(p, n, generator=g)
    assert x.dtype == torch.int64 and x.shape == (n,)
    counts = torch.bincount(x, minlength=V).double()
    assert (counts[p == 0] == 0).all()  # impossible outcomes never appear
    support = p > 0
    res = scipy_stats.chisquare(counts[support].numpy(), (n * p[support]).numpy())
    assert res.pvalue > 1e-4
    # against torch.multinomial: both frequency vectors within 5 standard errors of p
    ref = torch.bincount(torch.multinomial(p, n, replacement=True, generator=g), minlength=V).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert ((counts / n - p).abs() <= 5 * se + 1e-12).all() and ((ref - p).abs() <= 5 * se + 1e-12).all()
    batch = P.sample(rand_dist(3, V, seed=1), 7, generator=g)
    assert batch.shape == (3, 7)


# ---------------------------------------------------------------------------- limit theorems
def test_running_mean_and_clt_helpers():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = torch.tensor([1.0, 3.0, 2.0, 6.0])
    torch.testing.assert_close(P.running_mean(x), torch.tensor([1.0, 2.0, 2.0, 3.0], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    samples = torch.empty(4000, 64, dtype=torch.float64).exponential_(2.0, generator=g)
    z = P.standardized_means(samples, mean=0.5, variance=0.25)
    ours = P.ks_distance(z, torch.special.ndtr)
    assert ours == pytest.approx(scipy_stats.kstest(z.numpy(), "norm").statistic, rel=1e-9)
    assert ours < 0.05
    with pytest.raises(ValueError, match=r"shape \(R, n\)"):
        P.standardized_means(samples[0], 0.5, 0.25)


@pytest.mark.parametrize("shift", [-0.3, 0.0, 0.3])
@pytest.mark.parametrize("seed", range(3))
def test_ks_distance_is_two_sided_against_scipy(shift, seed):
    """KS = max(D+, D-) with D+ = max_i(i/n - F(x_i)), D- = max_i(F(x_i) - (i-1)/n) (scipy's kstest).

    Samples of N(shift, 1) tested against N(0, 1): for shift > 0 the empirical CDF lags F, so the
    distance is D- and a one-sided statistic would miss it; for shift < 0 it is D+. Both sides are checked
    against scipy.stats.kstest (an independent implementation), to rounding (rel 1e-9 on a float64 sum of n terms).
    """
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(500, generator=g, dtype=torch.float64) + shift
    ref = scipy_stats.kstest(x.numpy(), "norm")
    assert P.ks_distance(x, torch.special.ndtr) == pytest.approx(ref.statistic, rel=1e-9)
    if shift > 0:   # with n = 500 a shift of 0.3 sd puts D- near 0.12 and D+ near 0 (measured, seeds 0..2)
        assert ref.statistic_sign == -1
    elif shift < 0:
        assert ref.statistic_sign == 1


# ---------------------------------------------------------------------------- symbolic moments
CLOSED_FORMS = {  # name: (mean, variance) as functions of the parameters, textbook values
    "bernoulli": (lambda p: p, lambda p: p * (1 - p)),
    "binomial": (lambda n, p: n * p, lambda n, p: n * p * (1 - p)),
    "poisson": (lambda lam: lam, lambda lam: lam),
    "gaussian": (lambda mu, s: mu, lambda mu, s: s**2),
    "exponential": (lambda lam: 1 / lam, lambda lam: 1 / lam**2),
    "weibull": (lambda lam, k: lam * sp.gamma(1 + 1 / k), lambda lam, k: lam**2 * (sp.gamma(1 + 2 / k) - sp.gamma(1 + 1 / k) ** 2)),
}
TORCH = {
    "bernoulli": (lambda p: torch.distributions.Bernoulli(probs=p), [(0.3,), (0.9,)]),
    "binomial": (lambda n, p: torch.distributions.Binomial(n, probs=p), [(10, 0.3), (25, 0.7)]),
    "poisson": (lambda lam: torch.distributions.Poisson(lam), [(0.5,), (4.0,)]),
    "gaussian": (lambda mu, s: torch.distributions.Normal(mu, s), [(0.0, 1.0), (-2.0, 0.1)]),
    "exponential": (lambda lam: torch.distributions.Exponential(lam), [(0.5,), (3.0,)]),
    "weibull": (lambda lam, k: torch.distributions.Weibull(lam, k), [(1.0, 0.8), (2.0, 3.0)]),
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_derived_moments_match_closed_forms_and_torch(name):
    total, mean, var = P.derive_moments(name)
    density, x, _, params = P.symbolic_distribution(name)
    assert sp.simplify(total - 1) == 0
    assert sp.simplify(mean - CLOSED_FORMS[name][0](*params)) == 0
    assert sp.simplify(var - CLOSED_FORMS[name][1](*params)) == 0
    make, settings = TORCH[name]
    for values in settings:
        dist = make(*[torch.tensor(float(v), dtype=torch.float64) for v in values])
        subs = dict(zip(params, values))
        assert float(mean.subs(subs)) == pytest.approx(dist.mean.item(), rel=1e-10)
        assert float(var.subs(subs)) == pytest.approx(dist.variance.item(), rel=1e-10)
        # the pmf / pdf against torch's log_prob at points of the support
        pts = [0, 1] if name == "bernoulli" else ([0, 1, 3, 7] if name in ("binomial", "poisson") else [0.05, 0.7, 1.9])
        if name == "gaussian":
            pts = [values[0] - 1.3 * values[1], values[0], values[0] + 0.4 * values[1]]
        f = sp.lambdify(x, density.subs(subs), "math")
        for pt in pts:
            ref = dist.log_prob(torch.tensor(float(pt), dtype=torch.float64)).exp().item()
            assert f(pt) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("name", list(TORCH))
def test_moments_against_large_samples(name):
    _, mean, var = P.derive_moments(name)
    _, _, _, params = P.symbolic_distribution(name)
    make, settings = TORCH[name]
    values = settings[-1]
    dist = make(*[torch.tensor(float(v), dtype=torch.float64) for v in values])
    torch.manual_seed(0)
    N = 400_000
    s = dist.sample((N,)).double()
    subs = dict(zip(params, values))
    mu, v = float(mean.subs(subs)), float(var.subs(subs))
    m4 = ((s - mu) ** 4).mean().item()  # standard error of the sample variance: sqrt((m4 - v^2) / N)
    assert abs(s.mean().item() - mu) < 5 * math.sqrt(v / N)
    assert abs(s.var().item() - v) < 5 * math.sqrt((m4 - v**2) / N)


def test_gaussian_is_a_density_not_a_probability():
    density, x, _, (mu, sigma) = P.symbolic_distribution("gaussian")
    assert x.is_real and not x.is_integer
    peak = density.subs({mu: 0, sigma: sp.Rational(1, 10), x: 0})
    assert peak > 1  # a pdf value above 1: a density, not a probability
    assert sp.integrate(density.subs({mu: 0, sigma: sp.Rational(1, 10)}), (x, -sp.oo, sp.oo)) == 1


def test_binomial_generating_function_branch_is_the_finite_sum():
    """derive_moments takes sympy's closed-form branch; check it against the explicit finite sum."""
    n, p, t = sp.Symbol("n", integer=True, positive=True), sp.Symbol("p", positive=True), sp.Symbol("t", positive=True)
    closed = (p * t - p + 1) ** n
    for nv in range(1, 7):
        explicit = sum(sp.binomial(nv, j) * (p * t) ** j * (1 - p) ** (nv - j) for j in range(nv + 1))
        assert sp.expand(explicit - closed.subs(n, nv)) == 0


def test_kl_divergence_is_the_one_kl_and_matches_f_kl_div():
    """F.kl_div(input=log p_model, target=q) = KL(q || p_model): our order is (reference, model)."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(4, 6, generator=g, dtype=torch.float64)
    q = rand_dist(4, 6, seed=5, zeros=True)
    torch.testing.assert_close(P.kl_divergence(q, torch.softmax(z, -1)),
                               F.kl_div(F.log_softmax(z, -1), q, reduction="none").sum(-1), rtol=1e-10, atol=1e-12)
    assert not hasattr(losses, "kl_divergence") and not hasattr(P, "cross_entropy")   # one definition each
    with pytest.raises(ValueError, match="sum to 1"):
        P.kl_divergence(q, torch.full((4, 6), 0.5, dtype=torch.float64))


@pytest.mark.numerics
def test_binomial_count_band_is_exact_and_holds_for_rare_outcomes():
    import scipy.stats
    p = torch.tensor([0.5, 0.3, 0.2 - 2e-7, 1e-7, 1e-7], dtype=torch.float64)
    n, tail = 200_000, 1e-7
    lo, hi = P.binomial_count_band(p, n, tail)
    for i in range(5):
        B = scipy.stats.binom(n, p[i].item())
        assert B.cdf(lo[i].item() - 1) < tail <= B.cdf(lo[i].item()) + 1e-300
        assert B.sf(hi[i].item()) <= tail < B.sf(hi[i].item() - 1)
    assert hi[3] >= 1  # one draw of a rare outcome is not a failure
    # the band of a common outcome is about +-5.3 standard errors
    se = math.sqrt(n * 0.25)
    assert 5.0 * se < hi[0].item() - n * 0.5 < 5.6 * se
    counts = torch.bincount(torch.multinomial(p.float(), n, replacement=True,
                                              generator=torch.Generator().manual_seed(0)), minlength=5)
    assert ((counts >= lo) & (counts <= hi)).all()
    with pytest.raises(ValueError, match="tail"):
        P.binomial_count_band(p, n, 0.7)
    with pytest.raises(ValueError, match="probabilities"):
        P.binomial_count_band(-p, n)
