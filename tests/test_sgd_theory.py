"""Tests for mathllm.sgd_theory against torch (losses, Hessians, optimizers, clipping) and sympy."""

import math

import pytest
import sympy as sp
import torch

from mathllm import sgd_theory as T

D64 = dict(dtype=torch.float64)


def _data(N=60, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, **D64)
    y = torch.where(torch.rand(N, generator=g, **D64) < 0.5, -1.0, 1.0).to(torch.float64)
    return X, y, torch.randn(d, generator=g, **D64)


def test_logistic_loss_matches_torch_bce():
    X, y, w = _data()
    ref = torch.nn.functional.binary_cross_entropy_with_logits(X @ w, (y + 1) / 2)
    torch.testing.assert_close(T.logistic_loss(w, X, y), ref, rtol=1e-12, atol=0)


def test_logistic_smoothness_is_the_hessian_bound():
    X, y, w = _data()
    hess = lambda w_: torch.autograd.functional.hessian(lambda v: T.logistic_loss(v, X, y), w_)
    L = T.logistic_smoothness(X)
    assert math.isclose(torch.linalg.eigvalsh(hess(torch.zeros(4, **D64)))[-1].item(), L, rel_tol=1e-10)
    for s in range(5):
        w_ = 3 * torch.randn(4, generator=torch.Generator().manual_seed(s), **D64)
        assert torch.linalg.eigvalsh(hess(w_))[-1].item() <= L * (1 + 1e-12)


def test_noise_floor_and_robbins_monro_match_sympy():
    lr, lam, sig, v, c, K, t = sp.symbols("eta lambda sigma v c K t", positive=True)
    floor = sp.solve(sp.Eq(v, (1 - lr * lam) ** 2 * v + lr ** 2 * sig ** 2), v)[0]
    resid = K / (t + 1) - (1 - c * lam / t) ** 2 * K / t - c ** 2 * sig ** 2 / t ** 2
    K_rm = sp.solve(sp.limit(resid * t ** 2, t, sp.oo), K)[0]
    for a, b, s2 in [(0.1, 2.0, 3.0), (0.01, 0.5, 1.0), (1.9, 1.0, 0.2)]:
        want = float(floor.subs({lr: a, lam: b, sig: math.sqrt(s2)}))
        assert math.isclose(T.noise_floor(a, b, s2), want, rel_tol=1e-12)
        want = float(K_rm.subs({c: a + 1, lam: b, sig: math.sqrt(s2)}))
        assert math.isclose(T.robbins_monro_constant(a + 1, b, s2), want, rel_tol=1e-12)
    with pytest.raises(ValueError, match="< 2"):
        T.noise_floor(1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="> 1"):
        T.robbins_monro_constant(0.25, 2.0, 1.0)


def test_sgd_noisy_quadratic_without_noise_is_the_linear_recurrence():
    lrs = [0.1, 0.3, 0.05, 0.2]
    path = T.sgd_noisy_quadratic(lrs, curvature=2.0, noise_std=0.0, x0=1.5, chains=3)
    assert path.shape == (5, 3)
    want = [1.5]
    for r in lrs:
        want.append(want[-1] * (1 - r * 2.0))
    torch.testing.assert_close(path[:, 0], torch.tensor(want, **D64), rtol=1e-15, atol=0)


@pytest.mark.numerics
def test_sgd_noisy_quadratic_reaches_the_noise_floor():
    path = T.sgd_noisy_quadratic([0.1] * 400, curvature=1.0, noise_std=1.0, chains=4000,
                                 generator=torch.Generator().manual_seed(0))
    measured = (path[-200:] ** 2).mean().item()
    assert abs(measured / T.noise_floor(0.1, 1.0, 1.0) - 1) < 0.1  # ~2 % spread from 4000 chains


@pytest.mark.parametrize("max_norm", [math.inf, 5.0, 0.3])
def test_clipped_gradient_descent_matches_torch(max_norm):
    f = lambda x: (x @ x) ** 2 / 4 + x.sum()
    x0 = torch.tensor([1.0, -2.0, 0.5], **D64)
    ours = T.clipped_gradient_descent(f, x0, lr=0.05, steps=20, max_norm=max_norm)
    x = x0.clone().requires_grad_()
    opt = torch.optim.SGD([x], lr=0.05)
    ref = [x.detach().clone()]
    for _ in range(20):
        opt.zero_grad()
        f(x).backward()
        if math.isfinite(max_norm):
            torch.nn.utils.clip_grad_norm_([x], max_norm)
        opt.step()
        ref.append(x.detach().clone())
    torch.testing.assert_close(ours, torch.stack(ref), rtol=1e-12, atol=1e-14)


def test_clipped_gradient_descent_stops_when_not_finite():
    path = T.clipped_gradient_descent(lambda x: (x @ x) ** 2 / 4, torch.tensor([3.0, 4.0], **D64),
                                      lr=0.1, steps=300)
    assert len(path) < 301 and not bool(torch.isfinite(path[-1]).all())


def test_least_squares_sgd_matches_torch_sgd():
    X, y, w0 = _data(N=40, d=3)
    batches = torch.randint(0, 40, (15, 4), generator=torch.Generator().manual_seed(1))
    ours = T.least_squares_sgd(X, y, w0, lr=0.05, batches=batches)
    w = w0.clone().requires_grad_()
    opt = torch.optim.SGD([w], lr=0.05)
    ref = [w.detach().clone()]
    for b in batches:
        opt.zero_grad()
        ((X[b] @ w - y[b]) ** 2).mean().backward()
        opt.step()
        ref.append(w.detach().clone())
    torch.testing.assert_close(ours, torch.stack(ref), rtol=1e-12, atol=1e-14)


def test_validation():
    X, y, w = _data()
    with pytest.raises(ValueError, match="-1 and \\+1"):
        T.logistic_loss(w, X, (y + 1) / 2)
    with pytest.raises(ValueError, match="shape"):
        T.logistic_loss(w[:2], X, y)
    with pytest.raises(TypeError):
        T.logistic_smoothness([[1.0]])
    with pytest.raises(ValueError, match="lrs"):
        T.sgd_noisy_quadratic([0.1, -0.1], curvature=1.0, noise_std=1.0)
    with pytest.raises(ValueError, match="max_norm"):
        T.clipped_gradient_descent(lambda x: x.sum(), w, lr=0.1, steps=2, max_norm=0)
    with pytest.raises(ValueError, match="indices"):
        T.least_squares_sgd(X, y, w, lr=0.1, batches=torch.full((2, 3), 60))
    with pytest.raises(ValueError, match="indices"):
        T.least_squares_sgd(X, y, w, lr=0.1, batches=torch.zeros(2, 3))
