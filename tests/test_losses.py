"""Tests for mathllm.losses: every loss equals its torch.nn.functional counterpart, values and gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from mathllm import losses as L
from mathllm.probability import kl_divergence

TOL = dict(rtol=1e-12, atol=1e-12)
SHAPES = [(7,), (4, 5), (2, 3, 4)]
REDUCTIONS = ["mean", "sum", "none"]


def _pair(shape, seed, lo=-3.0, hi=3.0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo)
    b = (torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo)
    return a, b


def assert_matches_torch(ours, ref, *inputs, tol=TOL):
    """Values and gradients (w.r.t. every floating input) of ours(*inputs) and ref(*inputs) agree."""
    xs1 = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    xs2 = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    a, b = ours(*xs1), ref(*xs2)
    torch.testing.assert_close(a, b, **tol)
    w = torch.linspace(0.5, 1.5, a.numel(), dtype=a.dtype).reshape(a.shape)  # a non-uniform upstream gradient
    (a * w).sum().backward()
    (b * w).sum().backward()
    for x1, x2 in zip(xs1, xs2):
        if x1.is_floating_point():
            torch.testing.assert_close(x1.grad, x2.grad, **tol)


# ---------------------------------------------------------------------------- regression losses
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_mae_match_torch(shape, reduction):
    p, t = _pair(shape, 0)
    assert_matches_torch(lambda a, b: L.mse_loss(a, b, reduction),
                         lambda a, b: F.mse_loss(a, b, reduction=reduction), p, t)
    assert_matches_torch(lambda a, b: L.mae_loss(a, b, reduction),
                         lambda a, b: F.l1_loss(a, b, reduction=reduction), p, t)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_matches_torch(shape, reduction, delta):
    p, t = _pair(shape, 1)
    assert_matches_torch(lambda a, b: L.huber_loss(a, b, delta, reduction),
                         lambda a, b: F.huber_loss(a, b, reduction=reduction, delta=delta), p, t)


def test_huber_limits():
    """Huber is MSE/2 for small residuals and delta*(|r| - delta/2) for large ones."""
    r = torch.tensor([0.1, -0.2, 5.0, -7.0], dtype=torch.float64)
    h = L.huber_loss(r, torch.zeros_like(r), delta=1.0, reduction="none")
    torch.testing.assert_close(h, torch.tensor([0.005, 0.02, 4.5, 6.5], dtype=torch.float64), **TOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_matches_torch(shape, reduction):
    m, t = _pair(shape, 2)
    var = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.1
    assert_matches_torch(lambda a, b, v: L.gaussian_nll(a, b, v, reduction),
                         lambda a, b, v: F.gaussian_nll_loss(a, b, v, full=True, eps=0.0, reduction=reduction),
                         m, t, var)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_laplace_nll_matches_torch_distribution(scale):
    loc, t = _pair((4, 5), 4)
    ref = -torch.distributions.Laplace(loc, torch.full_like(loc, scale)).log_prob(t)
    torch.testing.assert_close(L.laplace_nll(loc, t, scale, reduction="none"), ref, **TOL)


def test_mse_is_gaussian_nll_up_to_a_constant():
    m, t = _pair((50,), 5)
    var = 0.7
    torch.testing.assert_close(L.gaussian_nll(m, t, var), L.mse_loss(m, t) / (2 * var) + 0.5 * math.log(2 * math.pi * var), **TOL)
    torch.testing.assert_close(L.laplace_nll(m, t, var), L.mae_loss(m, t) / var + math.log(2 * var), **TOL)


# ---------------------------------------------------------------------------- binary
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_torch(shape, reduction):
    g = torch.Generator().manual_seed(6)
    p = torch.rand(shape, generator=g, dtype=torch.float64) * 0.98 + 0.01
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    assert_matches_torch(lambda a, b: L.binary_cross_entropy(a, b, reduction),
                         lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), p, y)
    z, _ = _pair(shape, 7, -20.0, 20.0)
    assert_matches_torch(lambda a, b: L.binary_cross_entropy_with_logits(a, b, reduction),
                         lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), z, y)


def test_binary_cross_entropy_extremes():
    """p in {0, 1} gives torch's clamped value 100, and logits of +-1e4 stay finite."""
    p = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(L.binary_cross_entropy(p, y, "none"), F.binary_cross_entropy(p, y, reduction="none"), **TOL)
    z = torch.tensor([1e4, -1e4, 1e4, -1e4], dtype=torch.float32)
    out = L.binary_cross_entropy_with_logits(z, y.float(), "none")
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 1e4, 1e4]), rtol=0, atol=0)


# ---------------------------------------------------------------------------- softmax cross-entropy
@pytest.mark.parametrize("N,V", [(1, 2), (5, 7), (16, 65)])
def test_cross_entropy_and_grad_match_torch(N, V):
    g = torch.Generator().manual_seed(N * V)
    z = torch.randn(N, V, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, V, (N,), generator=g)
    assert_matches_torch(L.cross_entropy, F.cross_entropy, z, y)
    zz = z.clone().requires_grad_()
    F.cross_entropy(zz, y).backward()
    torch.testing.assert_close(L.cross_entropy_grad(z, y), zz.grad, **TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothing_matches_torch(smoothing, reduction):
    g = torch.Generator().manual_seed(8)
    z = torch.randn(6, 9, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 9, (6,), generator=g)
    assert_matches_torch(lambda a, b: L.label_smoothed_cross_entropy(a, b, smoothing, reduction),
                         lambda a, b: F.cross_entropy(a, b, label_smoothing=smoothing, reduction=reduction), z, y)
    # it is cross-entropy to the mixture q = (1 - eps) onehot + eps / V ...
    q = L.smoothed_targets(y, 9, smoothing, dtype=torch.float64)
    torch.testing.assert_close(q.sum(-1), torch.ones(6, dtype=torch.float64), **TOL)
    torch.testing.assert_close(L.label_smoothed_cross_entropy(z, y, smoothing, reduction),
                               L.cross_entropy(z, q, reduction), **TOL)
    # ... which is H(q) + KL(q || p)
    log_q = torch.where(q > 0, q.log(), torch.zeros_like(q))
    entropy = -(q * log_q).sum(-1)
    torch.testing.assert_close(L.cross_entropy(z, q, "none"), entropy + kl_divergence(q, L.softmax(z)), **TOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_to_a_distribution_and_kl_match_torch(reduction):
    """One cross_entropy for ids and for target distributions, as F.cross_entropy; the one KL
    (mathllm.probability.kl_divergence, distributions first) against F.kl_div(log p, q) = KL(q || p)."""
    g = torch.Generator().manual_seed(9)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    q = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    q[0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # zeros: 0 log 0 = 0
    assert_matches_torch(lambda a, b: L.cross_entropy(a, b, reduction),
                         lambda a, b: F.cross_entropy(a, b, reduction=reduction), z, q)
    y = torch.tensor([0, 3, 1, 1, 2])
    assert_matches_torch(lambda a, b: L.cross_entropy(a, b, reduction),
                         lambda a, b: F.cross_entropy(a, b, reduction=reduction), z, y)
    ref = F.kl_div(F.log_softmax(z, -1), q, reduction="none").sum(-1)   # torch keeps (N, V) terms
    torch.testing.assert_close(kl_divergence(q, L.softmax(z)), ref, **TOL)
    torch.testing.assert_close(kl_divergence(q, L.softmax(z)).mean(),
                               F.kl_div(F.log_softmax(z, -1), q, reduction="batchmean"), **TOL)


def test_cross_entropy_of_two_distributions_through_log_q():
    """H(p, q) = -sum p log q: pass log q as logits (softmax(log q) = q); zeros of q give -inf logits."""
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.25, 0.75, 0.0], [0.1, 0.6, 0.3]], dtype=torch.float64)
    want = torch.tensor([-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)),
                         -(0.2 * math.log(0.1) + 0.3 * math.log(0.6) + 0.5 * math.log(0.3))], dtype=torch.float64)
    torch.testing.assert_close(L.cross_entropy(q.log(), p, "none"), want, rtol=1e-12, atol=0)  # by hand
    assert math.isinf(L.cross_entropy(torch.tensor([[0.0, -math.inf]]), torch.tensor([[0.5, 0.5]]), "none").item())


def test_cross_entropy_known_answer():
    """Uniform logits give log V whatever the target."""
    for V in (2, 10, 65):
        assert abs(L.cross_entropy(torch.zeros(3, V, dtype=torch.float64), torch.tensor([0, 1, V - 1])).item() - math.log(V)) < 1e-12


# ---------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype,big", [(torch.float32, 1e4), (torch.float16, 20.0), (torch.bfloat16, 1e4)])
def test_stable_softmax_survives_where_naive_fails(dtype, big):
    z = torch.tensor([[big, 0.0, -big], [big, big - 1, big - 2]], dtype=dtype)
    assert not torch.isfinite(L.naive_softmax(z)).all()        # exp overflows to inf; inf / inf = nan
    p = L.softmax(z)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p.float(), torch.softmax(z.float(), -1), rtol=1e-2, atol=1e-3)
    assert torch.isfinite(L.log_softmax(z)).all()
    assert torch.isfinite(L.cross_entropy(z, torch.tensor([0, 2]))).all()


def test_softmax_shift_invariance_and_logsumexp():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(4, 6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(L.softmax(z + 123.0), L.softmax(z), **TOL)
    torch.testing.assert_close(L.logsumexp(z), torch.logsumexp(z, -1), **TOL)
    torch.testing.assert_close(L.naive_softmax(z), L.softmax(z), **TOL)   # equal where nothing overflows


# ---------------------------------------------------------------------------- bias-variance
def test_bias_variance_decomposition_adds_up():
    g = torch.Generator().manual_seed(11)
    R, N = 4000, 8
    f = torch.linspace(-1, 1, N, dtype=torch.float64)
    pred = f + 0.3 + 0.5 * torch.randn(R, N, generator=g, dtype=torch.float64)  # bias 0.3, variance 0.25
    y = f + 0.2 * torch.randn(R, N, generator=g, dtype=torch.float64)           # noise 0.04
    bv = L.bias_variance(pred, f, y)
    assert abs(bv.bias_sq - 0.09) < 0.01 and abs(bv.variance - 0.25) < 0.01 and abs(bv.noise - 0.04) < 0.002
    assert abs(bv.bias_sq + bv.variance + bv.noise - bv.expected_mse) < 0.01


def test_bias_variance_known_answer_and_exact_identity_without_noise():
    """Two fits at one point, 1 and 3, of f = 0: E[f_hat] = 2, bias^2 = 4, Var = ((1-2)^2 + (3-2)^2) / 2 = 1
    (the population variance over the R fits, not the unbiased 2). With noise-free targets y = f the
    identity mean_r (f_hat - f)^2 = bias^2 + Var is exact: (1 + 9) / 2 = 5 = 4 + 1."""
    bv = L.bias_variance(torch.tensor([[1.0], [3.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                         torch.zeros(2, 1, dtype=torch.float64))
    assert (bv.bias_sq, bv.variance, bv.noise, bv.expected_mse) == (4.0, 1.0, 0.0, 5.0)  # exact in binary
    g = torch.Generator().manual_seed(3)
    R, N = 5, 7  # few fits: the unbiased variance would be R/(R-1) = 1.25 times too large
    f = torch.randn(N, generator=g, dtype=torch.float64)
    pred = f + 0.4 + torch.randn(R, N, generator=g, dtype=torch.float64)
    bv = L.bias_variance(pred, f, f.expand(R, N))
    assert bv.noise == 0.0
    assert bv.bias_sq + bv.variance == pytest.approx(bv.expected_mse, rel=1e-12)  # an identity: rounding only


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_name_expected_and_received():
    a = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"target must have the shape of input \(3, 4\), got \(4, 3\)"):
        L.mse_loss(a, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="reduction must be one of mean, sum, none, got 'avg'"):
        L.mae_loss(a, a, reduction="avg")
    with pytest.raises(ValueError, match=r"targets holds token id 4, outside the vocabulary \[0, 4\)"):
        L.cross_entropy(a, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], got a value 2"):
        L.binary_cross_entropy(torch.full((3,), 0.5), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\], got a value -0.5"):
        L.binary_cross_entropy(torch.tensor([-0.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="delta must be > 0, got -1"):
        L.huber_loss(a, a, delta=-1.0)
    with pytest.raises(ValueError, match=r"smoothing must lie in \[0, 1\], got 1.5"):
        L.label_smoothed_cross_entropy(a, torch.tensor([0, 1, 2]), smoothing=1.5)
    with pytest.raises(ValueError, match=r"target probabilities must have the shape of logits \(3, 4\), got \(3,\)"):
        L.cross_entropy(a, torch.tensor([0.0, 1.0, 2.0]))        # float targets are a distribution per row
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        L.cross_entropy_grad(a, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="input must be a torch.Tensor, got list"):
        L.mse_loss([1.0], torch.zeros(1))
    with pytest.raises(ValueError, match="var must be > 0"):
        L.gaussian_nll(a, a, 0.0)


# ---------------------------------------------------------------------------- huge logits (issue 15)
# bits of mantissa: a relative tolerance of 2 units in the last place of the dtype, because torch
# computes half-precision log_softmax in float32 and rounds once, and so do we
TWO_ULP = {torch.float32: 2 * 2.0 ** -23, torch.float16: 2 * 2.0 ** -10, torch.bfloat16: 2 * 2.0 ** -7}


@pytest.mark.parametrize("dtype,big", [(torch.float32, 1e8), (torch.float32, 1e30),
                                       (torch.float16, 1e4), (torch.bfloat16, 1e4)])
def test_log_softmax_and_cross_entropy_keep_ln2_at_huge_logits(dtype, big):
    """Two equal logits give log-probabilities -ln 2 however large they are; z - logsumexp(z) rounds
    the ln 2 away once ulp(z) > ln 2, so the log-sum must be taken after subtracting the maximum."""
    z = torch.tensor([[big, big], [big, -big], [-big, -big], [big, big / 2]], dtype=dtype)
    y = torch.tensor([0, 0, 1, 1])
    tol = dict(rtol=TWO_ULP[dtype], atol=0.0)
    torch.testing.assert_close(L.log_softmax(z), F.log_softmax(z, -1), **tol)
    torch.testing.assert_close(L.cross_entropy(z, y), F.cross_entropy(z, y), **tol)
    assert L.cross_entropy(z[:1], y[:1]).item() == pytest.approx(math.log(2), rel=TWO_ULP[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_log_softmax_of_a_large_vocabulary_in_half_precision(dtype):
    """70 000 equal logits: the sum of exp is 70 000 > 65 504, the float16 maximum, so it is taken in float32.

    The reference is float32 rounded once: torch 2.13's own float16 CPU log_softmax returns -inf here.
    """
    z = torch.zeros(2, 70_000, dtype=dtype)
    tol = dict(rtol=TWO_ULP[dtype], atol=0.0)
    torch.testing.assert_close(L.log_softmax(z), F.log_softmax(z.float(), -1).to(dtype), **tol)
    torch.testing.assert_close(L.softmax(z), torch.softmax(z.float(), -1).to(dtype), **tol)
    torch.testing.assert_close(L.logsumexp(z), torch.logsumexp(z.float(), -1).to(dtype), **tol)


def test_log_softmax_gradient_at_huge_logits_matches_torch():
    z = torch.tensor([[1e8, 1e8, 0.0], [3.0, -1e30, 1.0]])
    assert_matches_torch(lambda a: L.log_softmax(a), lambda a: F.log_softmax(a, -1), z,
                         tol=dict(rtol=TWO_ULP[torch.float32], atol=1e-7))


def test_kl_divergence_rejects_targets_that_are_not_distributions():
    p = L.softmax(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="p must sum to 1"):
        kl_divergence(torch.full((2, 3), 0.1), p)
    with pytest.raises(ValueError, match="p holds NaN"):
        kl_divergence(torch.tensor([[float("nan"), 0.5, 0.5], [1.0, 0.0, 0.0]]), p)


@pytest.mark.parametrize("delta", [float("nan"), float("inf"), -float("inf")])
def test_huber_rejects_non_finite_delta(delta):
    with pytest.raises(ValueError, match="delta must be a finite number"):
        L.huber_loss(torch.zeros(3), torch.ones(3), delta=delta)


# ---------------------------------------------------------------------------- (..., V) logits and ignore_index
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_cross_entropy_takes_leading_dims_and_ignore_index_as_torch(reduction, ignore_index):
    """(B, T, V) logits with some targets ignored equal F.cross_entropy on the flattened rows (torch puts the
    classes in dim 1, ours last, as a language model's logits are laid out); ignored tokens are 0 under
    "none" and left out of the mean's denominator (a mean over all B*T tokens would be 4/6 of torch's here)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(7, (2, 3), generator=g)
    y[0, 1] = y[1, 2] = ignore_index
    ours = L.cross_entropy(z, y, reduction, ignore_index=ignore_index)
    ref = F.cross_entropy(z.reshape(-1, 7), y.reshape(-1), reduction=reduction, ignore_index=ignore_index)
    torch.testing.assert_close(ours.reshape(-1), ref.reshape(-1), rtol=1e-12, atol=1e-12)
    g1, = torch.autograd.grad(ours.sum(), z)
    g2, = torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    if reduction == "none":
        assert ours.shape == (2, 3) and ours[0, 1] == 0 and ours[1, 2] == 0


def test_cross_entropy_refuses_bad_targets_and_all_ignored():
    z = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match=r"targets must have the shape of logits without V, \(2, 3\), got \(6,\)"):
        L.cross_entropy(z, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):  # -1 is not an id and not the ignore_index
        L.cross_entropy(z, torch.full((2, 3), -1))
    with pytest.raises(ValueError, match="every target equals ignore_index=-100"):
        L.cross_entropy(z, torch.full((2, 3), -100))
    assert L.cross_entropy(z, torch.full((2, 3), -100), "sum") == 0  # a sum over no tokens is 0
    with pytest.raises(ValueError, match=r"logits must have shape \(\.\.\., V\)"):
        L.cross_entropy(torch.zeros(5), torch.tensor(1))


# ---------------------------------------------------------------------------- masks, per-sequence mean, z-loss
def test_per_sequence_cross_entropy_against_loops_and_torch():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 6, 7, dtype=torch.float64, generator=g)
    targets = torch.randint(0, 7, (3, 6), generator=g)
    lengths = [6, 2, 4]
    for b, n in enumerate(lengths):
        targets[b, n:] = -100                              # right padding
    per_seq = torch.stack([F.cross_entropy(logits[b, :n], targets[b, :n]) for b, n in enumerate(lengths)])
    torch.testing.assert_close(L.per_sequence_cross_entropy(logits, targets), per_seq.mean(), **TOL)
    per_token = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(L.cross_entropy(logits, targets), per_token, **TOL)
    weights = torch.tensor(lengths, dtype=torch.float64)  # per token = a length-weighted mean of sequences
    torch.testing.assert_close(per_token, (per_seq * weights).sum() / weights.sum(), **TOL)
    with pytest.raises(ValueError, match="sequence 1"):
        t2 = targets.clone()
        t2[1] = -100
        L.per_sequence_cross_entropy(logits, t2)
    with pytest.raises(ValueError, match="B, T, V"):
        L.per_sequence_cross_entropy(logits[0], targets[0])


@pytest.mark.parametrize("shape", [(5,), (4, 9), (2, 3, 6)])
def test_z_loss_value_and_gradient(shape):
    g = torch.Generator().manual_seed(sum(shape))
    z = (torch.randn(shape, dtype=torch.float64, generator=g) * 3).requires_grad_()
    coef = 1e-4
    out = L.z_loss(z, coef, "sum")
    torch.testing.assert_close(out, coef * (torch.logsumexp(z, -1) ** 2).sum(), **TOL)
    (grad,) = torch.autograd.grad(out, z)
    want = 2 * coef * torch.logsumexp(z, -1, keepdim=True) * torch.softmax(z, -1)  # d/dz coef log^2 Z
    torch.testing.assert_close(grad, want.detach(), rtol=1e-12, atol=1e-18)
    torch.testing.assert_close(L.z_loss(z, coef), coef * (torch.logsumexp(z, -1) ** 2).mean(), **TOL)
    with pytest.raises(ValueError, match="reduction"):
        L.z_loss(z, coef, "avg")
    with pytest.raises(ValueError, match="coef"):
        L.z_loss(z, -1.0)
