"""Tests for mathllm.schedules: each schedule equals its torch.optim.lr_scheduler counterpart."""

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LinearLR, SequentialLR, StepLR

from mathllm import optim, schedules as S

TOL = dict(rel=1e-12, abs=1e-15)


def _torch_lrs(make, steps, base_lr):
    """The rate torch's scheduler gives at steps 0 .. steps-1 (read before each optimizer step)."""
    p = [torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD(p, lr=base_lr)
    sched, out = make(opt), []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("step_size,gamma", [(1, 0.5), (7, 0.1), (30, 0.9)])
def test_step_decay_matches_steplr(step_size, gamma):
    ref = _torch_lrs(lambda o: StepLR(o, step_size=step_size, gamma=gamma), 100, 0.3)
    ours = [S.step_decay(t, base_lr=0.3, step_size=step_size, gamma=gamma) for t in range(100)]
    assert ours == pytest.approx(ref, **TOL)


@pytest.mark.parametrize("gamma", [0.5, 0.97, 1.0])
def test_exponential_decay_matches_exponentiallr(gamma):
    ref = _torch_lrs(lambda o: ExponentialLR(o, gamma=gamma), 100, 0.3)
    assert [S.exponential_decay(t, base_lr=0.3, gamma=gamma) for t in range(100)] == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("W,D", [(1, 10), (5, 20), (0, 10), (10, 200)])
@pytest.mark.parametrize("max_lr,min_lr", [(0.5, 0.01), (6e-4, 6e-5), (1.0, 0.0)])
def test_warmup_cosine_matches_linear_then_cosine(W, D, max_lr, min_lr):
    def make(opt):
        cosine = CosineAnnealingLR(opt, T_max=D - W, eta_min=min_lr)
        if W == 0:
            return cosine
        warm = LinearLR(opt, start_factor=1 / W, end_factor=1.0, total_iters=W - 1)
        return SequentialLR(opt, [warm, cosine], milestones=[W])
    ref = _torch_lrs(make, D + 1, max_lr)
    ours = [S.warmup_cosine(t, max_lr=max_lr, min_lr=min_lr, warmup_steps=W, decay_steps=D) for t in range(D + 1)]
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_warmup_cosine_shape():
    kw = dict(max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_steps=110)
    lrs = [S.warmup_cosine(t, **kw) for t in range(200)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0 and lrs[10] == 1.0    # (t + 1) / W, peak at W - 1 and W
    assert lrs[60] == pytest.approx(0.55, **TOL)                              # half way: the mean of max and min
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))                   # monotone after the warm-up
    assert lrs[110:] == [0.1] * 90                                           # flat at min_lr after D


@pytest.mark.parametrize("d_model,W", [(512, 4000), (64, 10)])
def test_inverse_sqrt_is_the_transformer_schedule(d_model, W):
    """Vaswani et al. eq. 3: lrate = d^-0.5 min(s^-0.5, s W^-1.5), s = t + 1."""
    for t in [0, 1, W // 2, W - 1, W, 3 * W, 100 * W]:
        s = t + 1
        ref = d_model ** -0.5 * min(s ** -0.5, s * W ** -1.5)
        assert S.inverse_sqrt(t, max_lr=(d_model * W) ** -0.5, warmup_steps=W) == pytest.approx(ref, **TOL)


def test_set_lr_sets_every_group():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = optim.AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}])
    S.set_lr(opt, 0.123)
    assert [g["lr"] for g in opt.param_groups] == [0.123, 0.123]


def test_lr_range_test_finds_the_stability_limit():
    """Full-batch GD on least squares diverges above 2 / lambda_max; the test stops near it and suggests below it."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 0.5, 0.2], dtype=torch.float64)
    y = X @ torch.randn(5, generator=g, dtype=torch.float64) + 0.1 * torch.randn(64, generator=g, dtype=torch.float64)
    H = 2 * X.T @ X / 64                                       # Hessian of the mean squared error
    limit = 2 / torch.linalg.eigvalsh(H).max().item()
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    res = S.lr_range_test(lambda k: ((X @ w - y) ** 2).mean(), [w], optim.SGD([w]), min_lr=1e-4, max_lr=10.0, steps=200)
    assert res.diverged
    assert limit < res.lrs[-1] < 10 * limit                   # blew up past the limit (growth needs a few steps)
    assert res.suggested_lr < limit
    assert torch.count_nonzero(w) == 0                         # parameters restored
    assert len(res.lrs) == len(res.losses) == len(res.smoothed)
    assert all(b / a == pytest.approx((1e5) ** (1 / 199)) for a, b in zip(res.lrs, res.lrs[1:]))


def test_bad_inputs_name_expected_and_received():
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        S.exponential_decay(-1, base_lr=0.1, gamma=0.9)
    with pytest.raises(TypeError, match="step must be an int, got float"):
        S.warmup_cosine(1.5, max_lr=1.0, min_lr=0.1, warmup_steps=1, decay_steps=5)
    with pytest.raises(ValueError, match="max_lr must be >= min_lr = 0.5, got 0.1"):
        S.warmup_cosine(0, max_lr=0.1, min_lr=0.5, warmup_steps=1, decay_steps=5)
    with pytest.raises(ValueError, match="decay_steps must be an int >= warmup_steps = 10, got 5"):
        S.warmup_cosine(0, max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_steps=5)
    with pytest.raises(ValueError, match="min_lr must be >= 0, got -0.1"):
        S.warmup_cosine(0, max_lr=1.0, min_lr=-0.1, warmup_steps=1, decay_steps=5)
    with pytest.raises(ValueError, match="step_size must be an int >= 1, got 0"):
        S.step_decay(3, base_lr=0.1, step_size=0)
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 1, got 0"):
        S.inverse_sqrt(3, max_lr=0.1, warmup_steps=0)
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        S.set_lr(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), -1)
    with pytest.raises(ValueError, match="need 0 < min_lr < max_lr, got min_lr=1.0, max_lr=0.1"):
        S.lr_range_test(lambda k: torch.zeros(()), [], None, min_lr=1.0, max_lr=0.1)


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("kw,error,match", [
    (dict(max_lr="a"), TypeError, "max_lr must be a number, got str"),
    (dict(max_lr=float("nan")), ValueError, "max_lr must be a finite number"),
    (dict(min_lr=float("inf"), max_lr=float("inf")), ValueError, "min_lr must be a finite number"),
    (dict(warmup_steps=2.0), ValueError, "warmup_steps must be an int >= 0, got 2.0"),
])
def test_warmup_cosine_refuses_bad_arguments(kw, error, match):
    args = dict(max_lr=1e-3, min_lr=1e-4, warmup_steps=2, decay_steps=10) | kw
    with pytest.raises(error, match=match):
        S.warmup_cosine(3, **args)
