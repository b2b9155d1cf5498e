"""Tests for mathllm.calibration: reliability against a loop, temperature scaling against scipy."""
import math

import pytest
import scipy.optimize
import torch

from mathllm.calibration import fit_temperature, reliability, temperature_nll

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


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


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n_bins"):
        reliability(torch.zeros(2, 3), torch.tensor([0, 1]), n_bins=0)
    with pytest.raises(ValueError, match="temperature"):
        temperature_nll(torch.zeros(2, 3), torch.tensor([0, 1]), 0.0)


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("logits,error,message", [
    (0.5, TypeError, "logits must be a torch.Tensor, got float"),          # was: 'float' object has no attribute 'double'
    (None, TypeError, "logits must be a torch.Tensor, got NoneType"),
    (torch.ones(2, 3, dtype=torch.bool), TypeError, "logits must be a floating-point tensor, got dtype bool"),
    (torch.zeros(0, 3), ValueError, "logits must hold at least one prediction"),  # was: NaN, the mean of nothing
])
def test_temperature_nll_refuses_what_is_not_logits(logits, error, message):
    targets = torch.zeros(logits.shape[0] if isinstance(logits, torch.Tensor) else 2, dtype=torch.long)
    with pytest.raises(error, match=message):
        temperature_nll(logits, targets, 1.0)


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -1.0, True, "2"])
def test_temperature_nll_refuses_a_temperature_that_is_not_a_finite_positive_number(t):
    """NaN used to pass ``not temperature > 0``... and inf gave the uniform NLL log V without a word."""
    with pytest.raises((ValueError, TypeError), match="temperature must be"):
        temperature_nll(torch.zeros(2, 3), torch.tensor([0, 1]), t)


def test_reliability_of_no_predictions_is_refused():
    """An empty sample gave ece = NaN (0 / 0) before issue 15."""
    with pytest.raises(ValueError, match="logits must hold at least one prediction"):
        reliability(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
