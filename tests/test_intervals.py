"""Tests for mathllm.intervals: bootstrap replicates and percentile intervals against scipy and known truths."""
import math

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

from mathllm.intervals import bootstrap, bootstrap_ci, percentile_interval, seed_spread, t_critical

pytestmark = pytest.mark.numerics  # statistical claims: rerun under other kernels and seeds


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


def test_replicates_are_ratios_of_sums_not_means_of_ratios():
    """Half the observations have den 1 and num 1 (ratio 1), half den 100 and num 0 (ratio 0): the
    ratio of sums is 100 / 10100 = 0.0099, the mean of the ratios 0.5. A replicate with k of the 200
    draws of the first kind is R(k) = k / (k + 100 (200 - k)); R'(100) = 0.0002 and k ~ Binomial(200, 1/2)
    has sd 7.1, so a replicate has sd about 0.0014 and the mean of 500 about 0.00006 (its curvature
    bias is smaller still): 0.002 is over 30 sd. The mean of ratios would be near 0.5."""
    num = torch.tensor([1.0, 0.0] * 100, dtype=torch.float64)
    den = torch.tensor([1.0, 100.0] * 100, dtype=torch.float64)
    truth = float(num.sum() / den.sum())
    reps = bootstrap(num, den, n_boot=500, generator=torch.Generator().manual_seed(8))
    assert abs(float(reps.mean()) - truth) < 0.002


def test_interval_map_is_monotone_transform():
    ci = bootstrap_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]), n_boot=200, generator=torch.Generator().manual_seed(0))
    e = ci.map(math.exp)
    assert (e.estimate, e.low, e.high) == (math.exp(ci.estimate), math.exp(ci.low), math.exp(ci.high))


def test_bootstrap_ci_of_an_empty_sample_is_refused():
    with pytest.raises(ValueError, match=r"num must hold at least 2 observations, got shape \(0,\)"):
        bootstrap_ci(torch.zeros(0))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap(torch.ones(3), block=2)
    with pytest.raises(ValueError, match="den must have the shape"):
        bootstrap(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(torch.ones(5), level=1.0)
    with pytest.raises(TypeError, match="level must be a number in"):
        bootstrap_ci(torch.ones(5), level="0.95")
    with pytest.raises(ValueError, match="level must be in"):
        percentile_interval(torch.ones(5), level=float("nan"))


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("num", [torch.zeros(0), torch.zeros(2, 0)])
def test_bootstrap_of_an_empty_sample_is_refused(num):
    """Issue 15: torch's "cannot reshape tensor of 0 elements into shape [-1, 0]" before the fix."""
    with pytest.raises(ValueError, match=r"num must hold at least 2 blocks of block=1 observations, got 0 observations"):
        bootstrap(num)


def test_bootstrap_of_no_statistics_is_refused():
    """k = 0 rows used to return an (n_boot, 0) tensor: replicates of nothing, silently."""
    with pytest.raises(ValueError, match=r"num must hold at least one statistic \(k >= 1\), got shape \(0, 4\)"):
        bootstrap(torch.zeros(0, 4))


def test_percentile_interval_of_no_replicates_is_refused():
    """Issue 15: torch's "quantile() input tensor must be non-empty" before the fix."""
    with pytest.raises(ValueError, match=r"replicates must hold at least one replicate, got shape \(0,\)"):
        percentile_interval(torch.zeros(0))


# ---------------------------------------------------------------------------- training seeds
@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99])
def test_t_critical_agrees_with_scipy(level):
    for dof in list(range(1, 41)) + [100, 1000]:
        assert t_critical(level, dof) == pytest.approx(scipy.stats.t.ppf((1 + level) / 2, dof), rel=1e-9)


def test_seed_spread_agrees_with_numpy_and_scipy():
    g = torch.Generator().manual_seed(8)
    num = torch.randn(4, 600, generator=g, dtype=torch.float64) + torch.tensor([[0.0], [0.2], [0.5], [0.1]])
    s = seed_spread(num, n_boot=2000, block=2, level=0.9, generator=torch.Generator().manual_seed(9))
    per_seed = num.numpy().mean(1)
    np.testing.assert_allclose(s.per_seed.numpy(), per_seed, rtol=1e-12)
    assert s.seed_sd == pytest.approx(np.std(per_seed, ddof=1), rel=1e-12)
    low, high = scipy.stats.t.interval(0.9, 3, loc=per_seed.mean(), scale=scipy.stats.sem(per_seed))
    assert (s.seeds.low, s.seeds.high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    # the sample term: the same blocks for every seed, so it is the bootstrap of the seed-mean per token
    reps = bootstrap(num, n_boot=2000, block=2, generator=torch.Generator().manual_seed(9)).mean(1)
    assert s.sample_se == pytest.approx(float(reps.std()), rel=1e-12)
    assert (s.sample.low, s.sample.high) == percentile_interval(reps, 0.9)
    se_iid = np.std(num.numpy().mean(0), ddof=0) / math.sqrt(600)             # iid noise: the plug-in se
    assert s.sample_se == pytest.approx(se_iid, rel=0.15)                       # 300 blocks: ~4% sampling error
    half = scipy.stats.t.ppf(0.95, 3) * math.sqrt(np.var(per_seed, ddof=1) / 4 + s.sample_se ** 2)
    assert (s.total.low, s.total.high) == (pytest.approx(per_seed.mean() - half, rel=1e-9),
                                           pytest.approx(per_seed.mean() + half, rel=1e-9))


def test_seed_spread_of_ratios_uses_the_ratio_of_sums():
    num, den = torch.tensor([[1.0, 3.0], [2.0, 2.0]]), torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    s = seed_spread(num, den, n_boot=50, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(s.per_seed.numpy(), [1.0, 1.0])                # 4/4 and 4/4, not (1 + 1)/2, (2 + 2/3)/2


def test_only_the_total_interval_covers_the_recipe_when_seeds_vary():
    # metric of seed s on token j: mu + a_s + e_sj; the recipe's value is mu, a_s ~ N(0, 0.3^2) per seed
    g = torch.Generator().manual_seed(10)
    cover = {"sample": 0, "seeds": 0, "total": 0}
    runs = 200
    for _ in range(runs):
        a = 0.3 * torch.randn(3, 1, generator=g, dtype=torch.float64)
        e = torch.randn(3, 400, generator=g, dtype=torch.float64) + torch.randn(1, 400, generator=g, dtype=torch.float64)
        s = seed_spread(1.0 + a + e, n_boot=200, generator=g)
        for name in cover:
            cover[name] += 1.0 in getattr(s, name)
    # the sample interval (half-width ~0.11) ignores a_s, whose mean has sd 0.17: it covers with chance
    # ~P(|Z| < 0.6) ~ 0.47; the total one holds its level (t with 2 dof is conservative when the text
    # term is not small). The binomial sd of a share over 200 runs is at most 0.035
    assert cover["sample"] / runs < 0.75
    assert cover["total"] / runs > 0.9 and cover["total"] >= cover["seeds"]


def test_seed_spread_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_spread(torch.ones(1, 10))
    with pytest.raises(ValueError):
        seed_spread(torch.ones(10))
    with pytest.raises(ValueError):
        seed_spread(torch.ones(2, 10), torch.ones(3, 10))
    with pytest.raises(ValueError):
        t_critical(0.95, 0)
    with pytest.raises(ValueError):
        t_critical(1.0, 3)
