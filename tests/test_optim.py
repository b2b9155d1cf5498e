"""Tests for mathllm.optim: each optimizer equals its torch.optim namesake step by step (tinygrad's _test_optim)."""
import math

import pytest
import torch

from mathllm import optim

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _model(dtype, seed=0):
    """Two parameters of different shapes and a loss with curvature, so every state entry is exercised."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 3, generator=g, dtype=dtype)
    b = torch.randn(3, generator=g, dtype=dtype)
    X = torch.randn(8, 4, generator=g, dtype=dtype)
    return [W, b], X


def _loss(params, X, step):
    W, b = params
    return ((X @ W + b).tanh() ** 2).sum() + math.sin(step) * W.sum()  # the gradient changes sign over steps


def assert_steps_match_torch(ours, ref, steps, opts, dtype=torch.float32, groups=False):
    """Run ours(params, **opts) and ref(params, **opts) from the same start for `steps` steps; compare every step."""
    init, X = _model(dtype)
    runs = []
    for cls in (ours, ref):
        params = [p.clone().requires_grad_() for p in init]
        arg = [{"params": [params[0]]}, {"params": [params[1]], "lr": opts.get("lr", 1e-3) * 0.5}] if groups else params
        runs.append((params, cls(arg, **opts)))
    for step in range(steps):
        for params, opt in runs:
            opt.zero_grad()
            _loss(params, X, step).backward()
            opt.step()
        for a, b in zip(runs[0][0], runs[1][0]):
            torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"step {step + 1}: {m}")
    return runs


DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("opts", [
    dict(lr=0.01), dict(lr=0.3), dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, momentum=0.9), dict(lr=0.05, momentum=0.5, weight_decay=0.01),
    dict(lr=0.01, momentum=0.9, nesterov=True), dict(lr=0.1, momentum=0.99, nesterov=True, weight_decay=0.1),
])
def test_sgd_matches_torch(opts, steps, dtype):
    assert_steps_match_torch(optim.SGD, torch.optim.SGD, steps, opts, dtype)


ADAM_OPTS = [
    dict(), dict(lr=0.1), dict(lr=1e-2, betas=(0.5, 0.9)), dict(lr=1e-2, betas=(0.0, 0.0)),
    dict(lr=3e-3, weight_decay=0.1), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("opts", ADAM_OPTS)
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("pair", [(optim.Adam, torch.optim.Adam), (optim.AdamW, torch.optim.AdamW)], ids=["Adam", "AdamW"])
def test_adam_adamw_match_torch(pair, foreach, opts, steps, dtype):
    ours, ref = pair
    assert_steps_match_torch(lambda p, **o: ours(p, foreach=foreach, **o), ref, steps, opts, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(), dict(lr=0.1), dict(lr=0.05, weight_decay=0.1, eps=1e-6)])
def test_adagrad_matches_torch(opts, dtype):
    assert_steps_match_torch(optim.AdaGrad, torch.optim.Adagrad, 10, opts, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(), dict(lr=0.01, alpha=0.9), dict(lr=0.01, momentum=0.9, weight_decay=0.1)])
def test_rmsprop_matches_torch(opts, dtype):
    assert_steps_match_torch(optim.RMSProp, torch.optim.RMSprop, 10, opts, dtype)


@pytest.mark.parametrize("ours,ref", [(optim.SGD, torch.optim.SGD), (optim.AdamW, torch.optim.AdamW)])
def test_param_groups_match_torch(ours, ref):
    opts = dict(lr=0.05, weight_decay=0.1) | (dict(momentum=0.9) if ours is optim.SGD else {})
    assert_steps_match_torch(ours, ref, 5, opts, torch.float64, groups=True)


def test_adamw_defaults_equal_torch():
    p = [torch.zeros(2, requires_grad=True)]
    ours, ref = optim.AdamW(p).defaults, torch.optim.AdamW(p).defaults
    for key in ("lr", "betas", "eps", "weight_decay"):
        assert ours[key] == ref[key], key


def test_adamw_is_not_adam_with_l2():
    """Decoupled decay differs from L2 decay once weight_decay > 0 (and equals it at 0)."""
    runs = {}
    for cls in (optim.Adam, optim.AdamW):
        for wd in (0.0, 0.5):
            opts = dict(lr=0.05, weight_decay=wd)
            runs[cls.__name__, wd] = assert_steps_match_torch(cls, cls, 5, opts, torch.float64)[0][0]
    torch.testing.assert_close(runs["Adam", 0.0], runs["AdamW", 0.0], rtol=0, atol=0)
    assert not torch.allclose(runs["Adam", 0.5][0], runs["AdamW", 0.5][0], atol=1e-4)


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdaGrad, optim.RMSProp, optim.Adam, optim.AdamW])
def test_state_dict_round_trip_resumes_exactly(cls, tmp_path):
    """Train 6 steps straight, or 3 steps, save, load into a fresh optimizer, 3 more: the same parameters."""
    opts = dict(lr=0.05) | (dict(momentum=0.9) if cls in (optim.SGD, optim.RMSProp) else {})
    init, X = _model(torch.float32)
    straight = [p.clone().requires_grad_() for p in init]
    opt = cls(straight, **opts)
    for step in range(6):
        opt.zero_grad(); _loss(straight, X, step).backward(); opt.step()

    resumed = [p.clone().requires_grad_() for p in init]
    opt = cls(resumed, **opts)
    for step in range(3):
        opt.zero_grad(); _loss(resumed, X, step).backward(); opt.step()
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    opt = cls(resumed, **opts)
    opt.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    for step in range(3, 6):
        opt.zero_grad(); _loss(resumed, X, step).backward(); opt.step()
    for a, b in zip(straight, resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_adamw_state_dict_loads_into_ours():
    """The state names are torch's, so a torch.optim.AdamW checkpoint resumes in mathllm.optim.AdamW."""
    init, X = _model(torch.float64)
    a = [p.clone().requires_grad_() for p in init]
    b = [p.clone().requires_grad_() for p in init]
    ta, tb = torch.optim.AdamW(a, lr=0.05), torch.optim.AdamW(b, lr=0.05)
    for step in range(3):
        for params, opt in ((a, ta), (b, tb)):
            opt.zero_grad(); _loss(params, X, step).backward(); opt.step()
    ours = optim.AdamW(b, lr=0.05)
    ours.load_state_dict(tb.state_dict())
    for step in range(3, 6):
        for params, opt in ((a, ta), (b, ours)):
            opt.zero_grad(); _loss(params, X, step).backward(); opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **TOL[torch.float64])


def test_bias_correction_makes_first_step_lr_sign_g():
    """At t = 1, m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps): lr in every coordinate."""
    p = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    opt = optim.Adam([p], lr=0.1, eps=0.0)
    (p * torch.tensor([5.0, -0.01, 300.0], dtype=torch.float64)).sum().backward()
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9, 2.9], dtype=torch.float64), rtol=0, atol=1e-15)


def test_closure_is_called_and_returned():
    p = torch.ones(2, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss
    assert opt.step(closure).item() == 2.0
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.8))


def test_adam_direction_eps_placement():
    m = torch.tensor([1e-6, 1.0], dtype=torch.float64)
    v = m ** 2
    out = optim.adam_direction(m, v, 1e-8)
    inside = optim.adam_direction(m, v, 1e-8, eps_inside_sqrt=True)
    torch.testing.assert_close(out, m / (m.abs() + 1e-8), rtol=1e-15, atol=0)
    torch.testing.assert_close(inside, m / (m ** 2 + 1e-8).sqrt(), rtol=1e-15, atol=0)
    assert abs(out[1] - inside[1]) < 1e-8          # large gradients: the same step
    assert out[0] > 0.99 and inside[0] < 0.011     # tiny gradient: eps inside the root shrinks the step ~100x


def test_bad_hyperparameters_name_expected_and_received():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=r"lr must be a finite number in \[0, inf\), got -0.1"):
        optim.SGD(p, lr=-0.1)
    with pytest.raises(ValueError, match=r"betas\[0\] must be a finite number in \[0, 1\), got 1.0"):
        optim.Adam(p, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match=r"betas\[1\] must be a finite number in \[0, 1\), got -0.5"):
        optim.AdamW(p, betas=(0.9, -0.5))
    with pytest.raises(TypeError, match=r"betas must be a pair \(beta1, beta2\), got 0.9"):
        optim.AdamW(p, betas=0.9)
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\), got 1.5"):
        optim.SGD(p, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0, got momentum=0"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"weight_decay must be a finite number in \[0, inf\), got -1"):
        optim.AdamW(p, weight_decay=-1)
    with pytest.raises(ValueError, match=r"eps must be a finite number in \[0, inf\), got -1e-08"):
        optim.RMSProp(p, eps=-1e-8)
    with pytest.raises(TypeError, match="lr must be a number, got str"):
        optim.AdaGrad(p, lr="0.1")


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdaGrad, optim.RMSProp, optim.Adam, optim.AdamW])
def test_params_and_non_finite_hyperparameters_refused_as_torch_does(cls):
    """params must be an iterable of tensors (a bare tensor, a number or None is refused, as torch.optim
    refuses them), and NaN or inf hyper-parameters are refused: ``not lr >= 0`` alone let inf through,
    and a NaN or inf learning rate turns every parameter into NaN at the first step (issue 15)."""
    x = torch.zeros(2, requires_grad=True)
    for bad in (0.1, None, x):
        with pytest.raises(TypeError, match="params must be an iterable of tensors"):
            cls(bad)
        with pytest.raises(TypeError):  # torch.optim refuses the same inputs
            getattr(torch.optim, {"AdaGrad": "Adagrad", "RMSProp": "RMSprop"}.get(cls.__name__, cls.__name__))(bad)
    for name in ("lr", "weight_decay"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=rf"{name} must be a finite number in \[0, inf\), got {value}"):
                cls([x], **{name: value})
    cls(iter([x]), lr=0.1)  # a generator such as model.parameters() is an iterable


def test_adam_direction_refuses_mismatched_or_negative_second_moments():
    """Before issue 15, m_hat (2, 3) with v_hat (4, 4) raised torch's broadcasting RuntimeError and a
    negative v_hat returned NaN (the root of a negative number)."""
    m = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"m_hat and v_hat must have the same shape, got \(2, 3\) and \(4, 4\)"):
        optim.adam_direction(m, torch.ones(4, 4), 1e-8)
    with pytest.raises(ValueError, match="v_hat must be >= 0"):
        optim.adam_direction(m, -torch.ones(2, 3), 1e-8)
    with pytest.raises(TypeError, match="m_hat must be a floating-point tensor, got dtype bool"):
        optim.adam_direction(torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3), 1e-8)
