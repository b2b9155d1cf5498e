"""mathllm.geometry against sympy, scipy and sampling: ball volumes and radii, the cosine law of random directions, JL."""
import math

import pytest
import sympy as sp
import torch

from mathllm.geometry import (ball_volume, cosine_cdf, cosine_density, cosine_tail_bound, distance_ratios,
                              jl_failure_bound, jl_min_dim, pairwise_cosines, radius_mean, radius_median, radius_quantile,
                              radius_rms, random_projection, sample_ball, sample_sphere, shell_width,
                              volume_fraction_within)
from mathllm.probability import ks_distance

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

F64 = dict(dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- volumes and radii
@pytest.mark.parametrize("n,r,expected", [(1, 2.0, 4.0), (2, 1.5, math.pi * 2.25), (3, 1.0, 4 / 3 * math.pi),
                                          (4, 1.0, math.pi ** 2 / 2), (5, 0.5, 8 * math.pi ** 2 / 15 * 0.5 ** 5)])
def test_ball_volume_known_values(n, r, expected):
    assert ball_volume(n, r) == pytest.approx(expected, rel=1e-13)


def test_ball_volume_recursion_and_no_overflow():
    # V_n = 2 pi / n V_(n-2): integrate the (n-2)-ball over a disc
    for n in range(3, 60):
        assert ball_volume(n) == pytest.approx(2 * math.pi / n * ball_volume(n - 2), rel=1e-12)
    assert 0.0 < ball_volume(1000) < 1e-300 or ball_volume(1000) == 0.0
    assert max(range(1, 30), key=ball_volume) == 5      # the unit ball is largest in 5 dimensions


def test_radius_statistics_match_sympy():
    n, r = sp.symbols("n r", positive=True)
    density = sp.diff(r ** n, r)                        # P(R <= r) = r^n
    mean = sp.simplify(sp.integrate(r * density, (r, 0, 1)))
    second = sp.simplify(sp.integrate(r ** 2 * density, (r, 0, 1)))
    median = sp.solve(sp.Eq(r ** n, sp.Rational(1, 2)), r)[0]
    for k in (1, 2, 3, 10, 100, 1000):
        assert radius_mean(k) == pytest.approx(float(mean.subs(n, k)), rel=1e-14)
        assert radius_rms(k) == pytest.approx(math.sqrt(float(second.subs(n, k))), rel=1e-14)
        assert radius_median(k) == pytest.approx(float(median.subs(n, k)), rel=1e-14)
        assert radius_quantile(volume_fraction_within(0.7, k), k) == pytest.approx(0.7, rel=1e-12)


@pytest.mark.parametrize("n", [2, 10, 100])
def test_sampled_radii_follow_r_to_the_n(n):
    radii = sample_ball(20000, n, generator=_gen(n)).norm(dim=1)
    assert float(radii.max()) <= 1.0
    assert ks_distance(radii, lambda x: x.clamp(0, 1) ** n) < 0.015     # KS 1% critical value ~ 1.63/sqrt(N) = 0.0115
    assert float(radii.median()) == pytest.approx(radius_median(n), abs=0.01)
    assert float(radii.square().mean().sqrt()) == pytest.approx(radius_rms(n), abs=0.01)


@pytest.mark.parametrize("n,fraction", [(2, 0.5), (50, 0.9), (1000, 0.99)])
def test_shell_width_holds_the_fraction(n, fraction):
    w = shell_width(fraction, n)
    assert 1 - volume_fraction_within(1 - w, n) == pytest.approx(fraction, rel=1e-12)
    assert w <= -math.log(1 - fraction) / n * (1 + 1e-12)   # 1 - x^(1/n) <= -ln(x)/n


# ---------------------------------------------------------------------------- cosines of random directions
@pytest.mark.parametrize("n", [2, 3, 4, 5, 10, 101, 768])
def test_cosine_law_matches_scipy_beta(n):
    stats = pytest.importorskip("scipy.stats", reason="scipy gives the reference Beta((n-1)/2, (n-1)/2) law")
    t = torch.linspace(-0.995, 0.995, 41, **F64)
    a = (n - 1) / 2
    ref_cdf = torch.tensor(stats.beta.cdf((1 + t.numpy()) / 2, a, a), **F64)
    ref_pdf = torch.tensor(stats.beta.pdf((1 + t.numpy()) / 2, a, a) / 2, **F64)
    torch.testing.assert_close(cosine_cdf(t, n), ref_cdf, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cosine_density(t, n), ref_pdf, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [3, 5, 9, 15])  # odd n: polynomial densities, fast for sympy
def test_cosine_density_is_normalised_with_variance_one_over_n(n):
    t = sp.symbols("t")
    c = sp.gamma(sp.Rational(n, 2)) / (sp.sqrt(sp.pi) * sp.gamma(sp.Rational(n - 1, 2)))
    f = c * (1 - t ** 2) ** sp.Rational(n - 3, 2)
    assert sp.simplify(sp.integrate(f, (t, -1, 1))) == 1
    assert sp.simplify(sp.integrate(t ** 2 * f, (t, -1, 1))) == sp.Rational(1, n)
    x = torch.tensor([-0.3, 0.1, 0.8], **F64)
    torch.testing.assert_close(cosine_density(x, n), torch.tensor([float(f.subs(t, v)) for v in x.tolist()], **F64),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [3, 30, 300])
def test_measured_cosines_follow_the_law(n):
    cos = pairwise_cosines(sample_sphere(200, n, generator=_gen(n)))     # 19,900 pairs (weakly dependent)
    assert cos.numel() == 200 * 199 // 2
    assert ks_distance(cos, lambda x: cosine_cdf(x, n)) < 0.02
    assert float(cos.var()) == pytest.approx(1 / n, rel=0.05)


@pytest.mark.parametrize("n", [2, 10, 100, 1000])
def test_tail_bound_is_an_upper_bound(n):
    for eps in (0.01, 0.1, 0.3, 0.5, 0.9):
        exact = 2 * (1 - float(cosine_cdf(torch.tensor(eps, **F64), n)))
        assert exact <= cosine_tail_bound(eps, n) + 1e-15


def test_pairwise_cosines_of_an_orthonormal_basis_are_zero():
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=_gen(), **F64))
    torch.testing.assert_close(pairwise_cosines(3.0 * Q), torch.zeros(28, **F64), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------- Johnson-Lindenstrauss
@pytest.mark.parametrize("N,eps", [(10, 0.5), (1000, 0.1), (10 ** 6, 0.3)])
@pytest.mark.parametrize("beta", [0, 1, 2.5])
def test_jl_min_dim_formula(N, eps, beta):
    k = jl_min_dim(N, eps, beta=beta)
    bound = (4 + 2 * beta) * math.log(N) / (eps ** 2 / 2 - eps ** 3 / 3)
    assert k - 1 < bound <= k
    # the union bound at that k: at most (1 - 1/N) N^(-beta), so success >= 1 - N^(-beta)
    assert jl_failure_bound(N, k, eps) <= (1 - 1 / N) * N ** -beta * (1 + 1e-12)
    assert jl_failure_bound(N, k - 1, eps) > (1 - 1 / N) * N ** -beta     # k is the least such dimension


def test_jl_constant_4_guarantees_success_only_with_probability_1_over_N():
    # Dasgupta & Gupta's k = 4 ln N / (eps^2/2 - eps^3/3) is beta = 0: the union bound is 1 - 1/N exactly
    N, eps, k = sp.symbols("N epsilon k", positive=True)
    rate = eps ** 2 / 2 - eps ** 3 / 3
    union = N * (N - 1) / 2 * 2 * sp.exp(-k * rate / 2)          # pairs x (two chi-square tails)
    assert sp.simplify(union.subs(k, 4 * sp.log(N) / rate) - (1 - 1 / N)) == 0
    beta = sp.symbols("beta", positive=True)
    assert sp.simplify(union.subs(k, (4 + 2 * beta) * sp.log(N) / rate) - (1 - 1 / N) * N ** -beta) == 0
    assert jl_min_dim(10 ** 6, 0.1, beta=0) == 11842 and jl_min_dim(10 ** 6, 0.1) == 17763
    assert jl_failure_bound(10 ** 6, 11842, 0.1) > 0.999                   # guarantees almost nothing
    assert jl_failure_bound(10 ** 6, 17763, 0.1) <= 1e-6


@pytest.mark.parametrize("k", [10, 100, 1000])
@pytest.mark.parametrize("eps", [0.1, 0.3, 0.6, 0.9])
def test_one_pair_chernoff_bound_holds_against_the_exact_chi_square_tails(k, eps):
    # |f(x)|^2 / |x|^2 = chi2_k / k; P(chi2_k >= k (1 + eps)) + P(chi2_k <= k (1 - eps)), exactly
    half = torch.tensor(k / 2, **F64)
    upper = torch.special.gammaincc(half, torch.tensor(k * (1 + eps) / 2, **F64))
    lower = torch.special.gammainc(half, torch.tensor(k * (1 - eps) / 2, **F64))
    exact = float(upper + lower)
    assert exact <= jl_failure_bound(2, k, eps) * (1 + 1e-12)           # N = 2: one pair, 2 exp(-k rate / 2)
    assert exact <= 2 * math.exp(-k * (eps ** 2 / 2 - eps ** 3 / 3) / 2) * (1 + 1e-12)


@pytest.mark.parametrize("N,n,eps,seed", [(50, 2000, 0.5, 0), (200, 1000, 0.3, 1), (100, 5000, 0.25, 2)])
def test_random_projection_keeps_distances(N, n, eps, seed):
    g = _gen(seed)
    X = torch.randn(N, n, generator=g, **F64)
    k = jl_min_dim(N, eps)
    ratios = distance_ratios(X, random_projection(X, k, generator=g))
    assert ratios.numel() == N * (N - 1) // 2
    assert float(ratios.min()) > 1 - eps and float(ratios.max()) < 1 + eps
    assert float(ratios.mean()) == pytest.approx(1.0, abs=0.02)          # unbiased in expectation


def test_random_projection_to_too_few_dimensions_distorts():
    g = _gen(3)
    X = torch.randn(100, 1000, generator=g, **F64)
    ratios = distance_ratios(X, random_projection(X, 5, generator=g))
    assert float(ratios.max() - ratios.min()) > 1.5


# ---------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        ball_volume(0)
    with pytest.raises(ValueError, match=r"r must be a finite number in \[0, 1\], got 1.5"):
        volume_fraction_within(1.5, 3)
    with pytest.raises(TypeError, match="q must be a number"):
        radius_quantile("half", 3)
    with pytest.raises(ValueError, match=r"fraction must be a finite number in \[0, 1\), got 1.0"):
        shell_width(1.0, 3)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        cosine_cdf(torch.zeros(1), 1)
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        cosine_density(0.5, 3)
    with pytest.raises(ValueError, match=r"eps must be a finite number in \(0, 1\), got 1.0"):
        jl_min_dim(100, 1.0)
    with pytest.raises(ValueError, match=r"beta must be a finite number in \[0, inf\), got -1"):
        jl_min_dim(100, 0.5, beta=-1)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        jl_failure_bound(100, 0, 0.5)
    with pytest.raises(ValueError, match="X must have shape"):
        random_projection(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        pairwise_cosines(torch.ones(1, 3))
    with pytest.raises(ValueError, match="repeated rows"):
        distance_ratios(torch.ones(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="Y must have shape"):
        distance_ratios(torch.randn(3, 2), torch.randn(4, 2))


def test_hostile_input_gets_a_clear_error_or_the_right_answer():
    """Issue 15 (the API fuzz test): a boolean tensor used to reach torch's kernels ("normal_kernel_cpu
    not implemented for 'Bool'"), a cosine outside [-1, 1] gave a NaN density, a zero row gave NaN
    cosines, and NaN parameters slipped past ``r < 0``."""
    stats = pytest.importorskip("scipy.stats", reason="scipy gives the reference Beta((n-1)/2, (n-1)/2) law")
    t = torch.tensor([-2.0, -1.5, 0.5, 1.5, 2.0], **F64)
    for n in (3, 4, 10):  # scipy's pdf is 0 outside the support
        ref = torch.tensor(stats.beta.pdf((1 + t.numpy()) / 2, (n - 1) / 2, (n - 1) / 2) / 2, **F64)
        torch.testing.assert_close(cosine_density(t, n), ref, rtol=1e-9, atol=0)
    assert cosine_density(torch.tensor([float("nan")], **F64), 5).isnan().all()  # NaN in, NaN out
    for f in (cosine_density, cosine_cdf):
        with pytest.raises(TypeError, match="t must be a floating-point tensor, got dtype bool"):
            f(torch.ones(3, dtype=torch.bool), 3)
    for f in (pairwise_cosines, lambda X: random_projection(X, 2)):
        with pytest.raises(TypeError, match="X must be a floating-point tensor, got dtype bool"):
            f(torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="X has a zero row"):
        pairwise_cosines(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"r must be a finite number in \[0, inf\), got nan"):
        ball_volume(3, float("nan"))
    with pytest.raises(ValueError, match=r"q must be a finite number in \[0, 1\], got nan"):
        radius_quantile(float("nan"), 3)
    with pytest.raises(ValueError, match=r"beta must be a finite number in \[0, inf\), got inf"):
        jl_min_dim(100, 0.5, beta=float("inf"))
