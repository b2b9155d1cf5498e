"""The fit's uncertainties and the compute-frontier baseline: the sandwich covariance against one
written by hand from scipy's finite-difference Jacobian, the terms at a point against the delta
method by hand, the frontier against its definition and its power law against scipy's linregress.
(The fit itself is tested in tests/test_scaling.py, through the names mathllm.scaling re-exports.)"""
import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

import mathllm.scaling as scaling
import mathllm.scaling_fit as scaling_fit
from mathllm.scaling import ChinchillaLaw, ComputeLaw
from mathllm.scaling_fit import compute_frontier, fit_chinchilla, fit_compute_law, log_loss_and_jacobian

pytestmark = pytest.mark.numerics  # fitted on random draws: rerun under other kernels and seeds

LAW = ChinchillaLaw.besiroglu2024()


def synthetic(noise, seed):
    """A 5 x 5 grid of (N, D) over two decades each; each loss times log-normal noise of sd ``noise``."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(6, 8, 5), 5)
    D = np.tile(np.logspace(8, 10, 5), 5)
    return N, D, LAW.loss(N, D) * np.exp(noise * rng.standard_normal(N.shape))


def test_moved_names_are_importable_from_scaling():
    for name in ("PARAM_NAMES", "ScalingFit", "fit_chinchilla", "log_loss_and_jacobian"):
        assert getattr(scaling, name) is getattr(scaling_fit, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        scaling.nope  # noqa: B018


@pytest.mark.parametrize("seed", [0, 1])
def test_sandwich_covariance_matches_hand_written(seed):
    """cov_robust = n/(n-p) (J^T J)^-1 J^T diag(r^2) J (J^T J)^-1, J from scipy's 3-point differences."""
    sd = np.where(np.tile(np.logspace(8, 10, 5), 5) < 1e9, 0.03, 0.003)   # noisier short runs
    N, D, L = synthetic(sd, seed)
    fit = fit_chinchilla(N, D, L)
    assert not fit.E_at_zero

    def residuals(theta):
        return log_loss_and_jacobian(torch.tensor(theta), torch.tensor(N), torch.tensor(D))[0].numpy() - np.log(L)

    theta = fit.theta.numpy()
    J = optimize.approx_fprime(theta, residuals, 1e-7)                      # (n, 5)
    r = residuals(theta)
    bread = np.linalg.inv(J.T @ J)
    want = len(L) / (len(L) - 5) * bread @ (J.T * r**2) @ J @ bread
    classic = r @ r / (len(L) - 5) * bread                                  # s^2 (J^T J)^-1, same bread
    for got, ref in ((fit.cov_robust.numpy(), want), (fit.cov.numpy(), classic)):
        se = np.sqrt(np.diag(ref))                          # entries relative to their scale: finite
        assert np.abs((got - ref) / np.outer(se, se)).max() < 1e-4   # differences agree to ~1e-6
    np.testing.assert_allclose(fit.residuals.numpy(), r, atol=1e-12)
    assert np.abs(np.diag(want) / np.diag(classic) - 1).max() > 0.05      # not the classic one renamed
    se = fit.standard_errors(robust=True)
    assert se["beta"] == pytest.approx(math.sqrt(want[4, 4]), rel=1e-4)
    assert se["B"] == pytest.approx(fit.law.B * math.sqrt(want[2, 2]), rel=1e-4)
    assert fit.stderr == fit.standard_errors(robust=False)


def test_robust_prediction_and_local_slopes_match_the_delta_method():
    N, D, L = synthetic(0.01, 3)
    fit = fit_chinchilla(N, D, L)
    n0, d0, h = 3e7, 1e9, 1e-4

    def summary(theta):  # log L and its slopes in log N and log D, by central differences of the law
        law = ChinchillaLaw(*[math.exp(t) if i < 3 else t for i, t in enumerate(theta)])
        log_l = math.log(law.loss(n0, d0))
        up_n, down_n = (math.log(law.loss(n0 * math.exp(s * h), d0)) for s in (1, -1))
        up_d, down_d = (math.log(law.loss(n0, d0 * math.exp(s * h))) for s in (1, -1))
        return np.array([log_l, (up_n - down_n) / (2 * h), (up_d - down_d) / (2 * h)])

    theta = fit.theta.numpy()
    G = np.stack([(summary(theta + h * e) - summary(theta - h * e)) / (2 * h) for e in np.eye(5)], axis=1)
    for robust in (False, True):
        cov = fit.covariance(robust).numpy()
        got = fit.local_slopes(n0, d0, robust=robust)
        want, se = summary(theta), np.sqrt(np.diag(G @ cov @ G.T))
        assert got["L"][0] == pytest.approx(fit.law.loss(n0, d0), rel=1e-12)
        assert got["L"][1] == pytest.approx(got["L"][0] * se[0], rel=1e-4)
        for k, name in ((1, "dlogL/dlogN"), (2, "dlogL/dlogD")):
            assert got[name][0] == pytest.approx(want[k], rel=1e-4)
            assert got[name][1] == pytest.approx(se[k], rel=1e-3)
        loss, se_l = fit.predict(n0, d0, new_observation=False, robust=robust)
        g = log_loss_and_jacobian(fit.theta, torch.tensor([n0], dtype=torch.float64),
                                  torch.tensor([d0], dtype=torch.float64))[1][0].numpy()
        assert float(se_l) == pytest.approx(float(loss) * math.sqrt(g @ cov @ g), rel=1e-10)
        a, se_a = fit.allocation_exponent(robust=robust)
        grad = np.array([0, 0, 0, -fit.law.beta, fit.law.alpha]) / (fit.law.alpha + fit.law.beta) ** 2
        assert se_a == pytest.approx(math.sqrt(grad @ cov @ grad), rel=1e-10)
    # inside the grid the slopes are far better determined than the exponents they come from
    assert fit.local_slopes(n0, d0)["dlogL/dlogN"][1] < 0.5 * fit.stderr["alpha"]
    with pytest.raises(TypeError, match="robust must be a bool"):
        fit.covariance("yes")


def test_compute_frontier_matches_its_definition():
    rng = np.random.default_rng(0)
    C = rng.choice([1e10, 2e10, 5e10, 1e11, 3e11], size=30)                 # with ties in C
    L = 3.0 * (C / 1e10) ** -0.1 * np.exp(0.05 * rng.standard_normal(30))
    on = compute_frontier(C, L)
    for i in range(30):
        cheaper_or_tied_better = [j for j in range(30) if C[j] < C[i] or (C[j] == C[i] and L[j] < L[i])]
        assert on[i] == all(L[i] < L[j] for j in cheaper_or_tied_better), i
    assert on[np.argmin(L)] and on.sum() <= 5


def test_fit_compute_law_matches_linregress_and_recovers_a_power_law():
    truth = ComputeLaw(C_c=1e20, alpha_C=0.08)
    C = np.logspace(10, 14, 9)
    L = np.concatenate([truth.loss(C), truth.loss(C[1:]) * 1.2])           # dominated runs: ignored
    law = fit_compute_law(np.concatenate([C, C[1:]]), L)
    assert law.alpha_C == pytest.approx(0.08, rel=1e-10) and law.C_c == pytest.approx(1e20, rel=1e-8)
    rng = np.random.default_rng(1)
    C = 10 ** rng.uniform(10, 14, 40)
    L = truth.loss(C) * np.exp(0.05 * rng.standard_normal(40))
    on = compute_frontier(C, L)
    ref = stats.linregress(np.log(C[on]), np.log(L[on]))
    law = fit_compute_law(C, L)
    assert law.alpha_C == pytest.approx(-ref.slope, rel=1e-9)
    assert math.log(law.C_c) == pytest.approx(ref.intercept / -ref.slope, rel=1e-9)


def test_compute_law_defaults_and_bad_input():
    kaplan = ComputeLaw()
    assert kaplan.C_c == pytest.approx(2.6784e28, rel=1e-12) and kaplan.alpha_C == 0.05
    assert kaplan.loss(kaplan.C_c) == pytest.approx(1.0, rel=1e-12)
    assert kaplan.loss(kaplan.C_c / 2**20) == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="ComputeLaw.alpha_C must be a finite number > 0"):
        ComputeLaw(alpha_C=-1.0)
    with pytest.raises(ValueError, match="C must be finite and > 0"):
        kaplan.loss(-1.0)
    with pytest.raises(ValueError, match="at least 2 runs on the compute frontier"):
        fit_compute_law([1e10, 2e10], [2.0, 2.5])
    with pytest.raises(ValueError, match="same length"):
        compute_frontier([1e10, 2e10], [2.0])
    with pytest.raises(TypeError, match="C must be a sequence"):
        compute_frontier(1e10, 2.0)
    with pytest.raises(ValueError, match="too flat"):
        fit_compute_law([1e10, 1e11], [2.0, 2.0 - 1e-9])
