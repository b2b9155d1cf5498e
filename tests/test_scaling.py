"""Scaling laws: C = 6ND against torch's FLOP counter, the published forms, the Lagrange allocation against
sympy and scipy, the log-space fit against scipy and on synthetic data from a known law, and the sweep."""
import dataclasses
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import optimize
from torch.utils.flop_counter import FlopCounterMode

from mathllm.char_tokenizer import CharTokenizer
from mathllm.data import TokenData
from mathllm.scaling import (ChinchillaLaw, KaplanLaw, ScalingFit, approx_compute, fit_chinchilla,
                             log_loss_and_jacobian, run_config, sweep, train_point, training_compute)
from mathllm.train import TrainConfig
from mathllm.transformer import GPT, GPTConfig, matmul_params

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

LAWS = [ChinchillaLaw.hoffmann2022(), ChinchillaLaw.besiroglu2024(),
        ChinchillaLaw(E=1.2, A=50.0, B=2000.0, alpha=0.3, beta=0.4)]


def synthetic(law, noise, seed, n_side=5):
    """A 5 x 5 grid of (N, D) over two decades each, losses from ``law`` times log-normal noise."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(6, 8, n_side), n_side)
    D = np.tile(np.logspace(8, 10, n_side), n_side)
    return N, D, law.loss(N, D) * np.exp(noise * rng.standard_normal(N.shape))


# ---------------------------------------------------------------------------- compute
@pytest.mark.parametrize("overrides", [dict(), dict(mlp="swiglu"), dict(bias=False, tie_weights=False),
                                       dict(n_layer=3, n_embd=48, n_head=3, block_size=24)])
def test_training_compute_equals_torch_flop_counter(overrides):
    """FlopCounterMode counts every matmul of one forward and backward: exactly (6 N + 12 L T C) B T."""
    cfg = GPTConfig(**(dict(block_size=16, n_layer=2, n_head=2, n_embd=32, attn_impl="manual") | overrides))
    model, B, T = GPT(cfg), 3, cfg.block_size
    x = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(x, x)[1].backward()
    assert counter.get_total_flops() == training_compute(cfg, B * T)
    # the 6 N D part is exactly the matmul weights; the rest is attention's 12 L T C per token
    N = matmul_params(cfg)
    assert training_compute(cfg, B * T) - approx_compute(N, B * T) == 12 * cfg.n_layer * T * cfg.n_embd * B * T


@pytest.mark.parametrize("n_embd", [64, 256, 768, 4096])
def test_6nd_error_is_attention_share(n_embd):
    """(C_exact - 6ND) / 6ND = 12 L T C / 6 N, close to T / (6 C) for a wide model: below 1% once C >> T."""
    cfg = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=4, n_embd=n_embd)
    N, D = matmul_params(cfg), 10**6
    rel = (training_compute(cfg, D) - approx_compute(N, D)) / approx_compute(N, D)
    assert rel == pytest.approx(12 * 12 * 1024 * n_embd / (6 * N), rel=1e-12)
    block_only = 12 * 1024 * n_embd / (6 * 12 * n_embd ** 2)          # = T / (6 C), ignoring V C
    assert rel < block_only
    if n_embd == 4096:
        assert rel < 0.05


# ---------------------------------------------------------------------------- the published laws
def test_kaplan_limits_and_constants():
    """Eq. (1.5) reduces to eqs. (1.1) and (1.2) as D or N -> oo (sympy), and the preset constants."""
    N, D, Nc, Dc, aN, aD = sp.symbols("N D N_c D_c alpha_N alpha_D", positive=True)
    L = ((Nc / N) ** (aN / aD) + Dc / D) ** aD
    assert sp.simplify(sp.limit(L, D, sp.oo) - (Nc / N) ** aN) == 0
    assert sp.simplify(sp.limit(L, N, sp.oo) - (Dc / D) ** aD) == 0
    law = KaplanLaw.kaplan2020()
    assert (law.alpha_N, law.alpha_D, law.N_c, law.D_c) == (0.076, 0.095, 8.8e13, 5.4e13)
    big = 1e60
    assert law.loss(1e9, big) == pytest.approx((law.N_c / 1e9) ** law.alpha_N, rel=1e-9)
    assert law.loss(big, 1e10) == pytest.approx((law.D_c / 1e10) ** law.alpha_D, rel=1e-9)
    f = sp.lambdify((N, D, Nc, Dc, aN, aD), L)
    joint = KaplanLaw.kaplan2020_joint()
    assert joint.loss(3e8, 2e10) == pytest.approx(f(3e8, 2e10, 6.4e13, 1.8e13, 0.076, 0.103), rel=1e-12)


def test_chinchilla_known_answers():
    """Hoffmann et al.'s constants: Chinchilla (70B, 1.4T) beats Gopher (280B, 300B) at a similar C."""
    law = ChinchillaLaw.hoffmann2022()
    assert (law.E, law.A, law.B, law.alpha, law.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    chinchilla, gopher = law.loss(70e9, 1.4e12), law.loss(280e9, 300e9)
    assert chinchilla == pytest.approx(1.69 + 406.4 / 70e9 ** 0.34 + 410.7 / 1.4e12 ** 0.28, rel=1e-15)
    assert chinchilla == pytest.approx(1.937, abs=1e-3) and gopher == pytest.approx(1.993, abs=1e-3)
    assert approx_compute(70e9, 1.4e12) == pytest.approx(approx_compute(280e9, 300e9), rel=0.2)
    # the law broadcasts over numpy arrays and torch tensors alike
    t = law.loss(torch.tensor([1e9, 1e10], dtype=torch.float64), torch.tensor([1e11, 1e12], dtype=torch.float64))
    np.testing.assert_allclose(t.numpy(), law.loss(np.array([1e9, 1e10]), np.array([1e11, 1e12])), rtol=1e-15)


# ---------------------------------------------------------------------------- compute-optimal allocation
@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("C", [1e15, 1e19, 5.76e23, 1e26])
def test_compute_optimal_matches_numerical_minimisation(law, C):
    """The Lagrange closed form equals scipy's minimum of L(N, C / 6N) over log N, and 6 N* D* = C."""
    N_opt, D_opt = law.compute_optimal(C)
    assert 6 * N_opt * D_opt == pytest.approx(C, rel=1e-12)
    res = optimize.minimize_scalar(lambda u: law.loss(math.exp(u), C / (6 * math.exp(u))),
                                   bracket=(0.0, math.log(C) / 2), tol=1e-12)
    assert res.success
    assert math.exp(res.x) == pytest.approx(N_opt, rel=1e-5)
    assert law.loss(N_opt, D_opt) <= law.loss(N_opt * 1.01, D_opt / 1.01)
    assert law.loss(N_opt, D_opt) <= law.loss(N_opt / 1.01, D_opt * 1.01)


def test_compute_optimal_matches_sympy_lagrange():
    """Solve grad(L + lambda (6ND - C)) = 0 symbolically and compare with the package on several laws."""
    N, D, C, A, B, E, a, b, lam = sp.symbols("N D C A B E alpha beta lambda", positive=True)
    lagrangian = E + A / N ** a + B / D ** b + lam * (6 * N * D - C)
    (sol,) = sp.solve([sp.diff(lagrangian, v) for v in (N, D, lam)], [N, D, lam], dict=True)
    f = sp.lambdify((C, A, B, a, b), (sol[N], sol[D]))
    for law in LAWS:
        for budget in (1e18, 1e24):
            want = f(budget, law.A, law.B, law.alpha, law.beta)
            np.testing.assert_allclose(law.compute_optimal(budget), want, rtol=1e-10)
    # published exponents: N* grows as C^0.45, D* as C^0.55
    law = ChinchillaLaw.hoffmann2022()
    ratio = law.compute_optimal(1e24)[0] / law.compute_optimal(1e22)[0]
    assert math.log(ratio, 100) == pytest.approx(0.28 / 0.62, rel=1e-12)


# ---------------------------------------------------------------------------- fitting
def test_jacobian_matches_autograd():
    g = torch.Generator().manual_seed(0)
    N = torch.exp(torch.empty(7, dtype=torch.float64).uniform_(10, 20, generator=g))
    D = torch.exp(torch.empty(7, dtype=torch.float64).uniform_(15, 25, generator=g))
    theta = torch.tensor([0.4, 6.0, 5.5, 0.35, 0.3], dtype=torch.float64)
    log_L, J = log_loss_and_jacobian(theta, N, D)
    law = ChinchillaLaw(E=math.exp(0.4), A=math.exp(6.0), B=math.exp(5.5), alpha=0.35, beta=0.3)
    torch.testing.assert_close(log_L, torch.log(law.loss(N, D)), rtol=1e-14, atol=0)
    want = torch.autograd.functional.jacobian(lambda t: log_loss_and_jacobian(t, N, D)[0], theta)
    torch.testing.assert_close(J, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("law", LAWS)
def test_fit_recovers_exact_parameters_without_noise(law):
    fit = fit_chinchilla(*synthetic(law, 0.0, 0))
    got = [fit.law.E, fit.law.A, fit.law.B, fit.law.alpha, fit.law.beta]
    np.testing.assert_allclose(got, [law.E, law.A, law.B, law.alpha, law.beta], rtol=1e-6)
    assert fit.sigma < 1e-9 and fit.dof == 20


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("seed", [1, 2])
def test_fit_recovers_parameters_within_their_errors(law, seed):
    """With 1% noise every parameter lies within 4 standard errors, and s estimates the noise."""
    noise = 0.01
    fit = fit_chinchilla(*synthetic(law, noise, seed))
    for name in ("E", "A", "B", "alpha", "beta"):
        assert abs(getattr(fit.law, name) - getattr(law, name)) < 4 * fit.stderr[name], name
    assert 0.5 * noise < fit.sigma < 1.6 * noise
    assert fit.stderr["alpha"] < 0.2 * law.alpha


def test_fit_without_a_floor_holds_E_at_zero(recwarn):
    """Losses with no irreducible term: E goes to its bound 0, is held there, and the rest is estimated."""
    law = ChinchillaLaw(E=1e-9, A=30.0, B=400.0, alpha=0.3, beta=0.35)
    fit = fit_chinchilla(*synthetic(law, 0.0, 4))
    assert fit.E_at_zero and fit.dof == 21 and math.isnan(fit.stderr["E"]) and fit.law.E < 1e-6
    assert torch.all(fit.cov[0] == 0) and torch.all(fit.cov[:, 0] == 0)
    assert not [w for w in recwarn if "singular" in str(w.message)]
    np.testing.assert_allclose([fit.law.A, fit.law.B, fit.law.alpha, fit.law.beta], [30.0, 400.0, 0.3, 0.35], rtol=1e-6)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_fit_without_a_floor_with_noise(seed):
    """With noise, E lands at 0 or within its errors of 0, and the exponents within theirs."""
    law = ChinchillaLaw(E=1e-9, A=30.0, B=400.0, alpha=0.3, beta=0.35)
    fit = fit_chinchilla(*synthetic(law, 0.005, seed))
    assert fit.E_at_zero or fit.law.E < 4 * fit.stderr["E"]
    for name in ("alpha", "beta"):
        assert abs(getattr(fit.law, name) - getattr(law, name)) < 4 * fit.stderr[name]


def test_fit_uncertainty_is_calibrated():
    """Over 40 noisy data sets, alpha-hat falls within 2 of its standard errors about 95% of the time."""
    law, hits = LAWS[0], 0
    for seed in range(40):
        fit = fit_chinchilla(*synthetic(law, 0.005, 100 + seed))
        hits += abs(fit.law.alpha - law.alpha) < 2 * fit.stderr["alpha"]
    assert 32 <= hits <= 40


def test_fit_matches_scipy_least_squares():
    """scipy's curve_fit on the same log residuals finds the same minimum and the same covariance."""
    N, D, L = synthetic(LAWS[1], 0.01, 7)
    fit = fit_chinchilla(N, D, L)

    def model(x, *theta):
        return log_loss_and_jacobian(torch.tensor(theta, dtype=torch.float64), *map(torch.as_tensor, x))[0].numpy()

    p, pcov = optimize.curve_fit(model, (N, D), np.log(L), p0=fit.theta.numpy() * 1.02, method="lm",
                                 xtol=1e-14, ftol=1e-14, maxfev=100_000)
    np.testing.assert_allclose(p, fit.theta.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pcov, fit.cov.numpy(), rtol=1e-3, atol=1e-12)


def test_predict_and_allocation_exponent():
    N, D, L = synthetic(LAWS[0], 0.01, 3)
    fit = fit_chinchilla(N, D, L)
    loss, se_mean = fit.predict(N, D, new_observation=False)
    np.testing.assert_allclose(loss, fit.law.loss(N, D), rtol=1e-12)
    _, se_new = fit.predict(N, D)
    np.testing.assert_allclose(se_new ** 2, se_mean ** 2 + (loss * fit.sigma) ** 2, rtol=1e-12)
    # delta method by hand: g from finite differences of log L-hat
    n0, d0, h = 3e8, 3e10, 1e-6
    g = np.array([(math.log(ChinchillaLaw(*[math.exp(t) if i < 3 else t for i, t in enumerate(th)]).loss(n0, d0))
                   - math.log(fit.law.loss(n0, d0))) / h
                  for th in (fit.theta.numpy() + h * np.eye(5)[k] for k in range(5))])
    want = fit.law.loss(n0, d0) * math.sqrt(g @ fit.cov.numpy() @ g)
    assert float(fit.predict(n0, d0, new_observation=False)[1]) == pytest.approx(want, rel=1e-4)
    a, se_a = fit.allocation_exponent()
    assert a == pytest.approx(fit.law.beta / (fit.law.alpha + fit.law.beta), rel=1e-14)
    assert 0 < se_a < 0.1
    assert abs(a - 0.28 / 0.62) < 4 * se_a


# ---------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n") * 60
    return TokenData.from_text(tmp_path_factory.mktemp("data"), text, CharTokenizer.train(text))


def test_train_point_and_sweep(data):
    base = TrainConfig(model=GPTConfig.tiny(block_size=16), batch_size=4, max_steps=4, warmup_steps=1, lr=3e-3,
                       min_lr=3e-4, eval_interval=0, eval_batches=2, out_dir="", progress=False)
    records = sweep(base, data, widths=[16, 32], steps=[3, 6])
    assert [(r["n_embd"], r["steps"]) for r in records] == [(16, 3), (16, 6), (32, 3), (32, 6)]
    for r in records:
        cfg = GPTConfig.tiny(block_size=16, n_embd=r["n_embd"], vocab_size=data.vocab_size)
        assert r["N"] == matmul_params(cfg) and r["D"] == r["steps"] * 4 * 16
        assert r["C"] == 6 * r["N"] * r["D"] and r["C_exact"] == training_compute(cfg, r["D"])
        assert math.isfinite(r["loss"]) and 0 < r["loss"] < math.log(data.vocab_size) + 1
    assert [r["lr"] for r in records] == pytest.approx([6e-3, 6e-3, 3e-3, 3e-3], rel=1e-12)   # lr ~ 1 / width
    again = train_point(dataclasses.replace(base, max_steps=3, warmup_steps=0), data)   # base width 32
    assert (again["N"], again["D"]) == (records[2]["N"], records[2]["D"])
    assert again["loss"] == pytest.approx(records[2]["loss"], rel=1e-6)           # same seed, same run


@pytest.mark.parametrize("width, steps, exponent", [(16, 100, 1.0), (64, 1000, 1.0), (128, 50, 0.5), (32, 10, 0.0)])
def test_run_config(width, steps, exponent):
    base = TrainConfig(model=GPTConfig.tiny(n_embd=32), lr=1e-2, min_lr=1e-3, out_dir="", progress=False)
    cfg = run_config(base, width, steps, lr_exponent=exponent, warmup_fraction=0.2)
    scale = (32 / width) ** exponent
    assert cfg.model == dataclasses.replace(base.model, n_embd=width)
    assert (cfg.max_steps, cfg.decay_steps_resolved, cfg.warmup_steps) == (steps, steps, int(0.2 * steps))
    assert cfg.lr == pytest.approx(1e-2 * scale, rel=1e-12) and cfg.min_lr == pytest.approx(1e-3 * scale, rel=1e-12)
    assert dataclasses.replace(cfg, model=base.model, max_steps=base.max_steps, warmup_steps=base.warmup_steps,
                               lr=base.lr, min_lr=base.min_lr) == base                       # nothing else changed


# ---------------------------------------------------------------------------- bad input
def test_bad_input():
    N, D, L = synthetic(LAWS[0], 0.0, 0)
    with pytest.raises(ValueError, match="same length"):
        fit_chinchilla(N, D[:-1], L)
    with pytest.raises(ValueError, match="at least 6 runs"):
        fit_chinchilla(N[:5], D[:5], L[:5])
    with pytest.raises(ValueError, match="L must be finite and > 0"):
        fit_chinchilla(N, D, -L)
    with pytest.raises(ValueError, match="1-d"):
        fit_chinchilla(N.reshape(5, 5), D.reshape(5, 5), L.reshape(5, 5))
    with pytest.raises(TypeError, match="sequence, array or tensor"):
        fit_chinchilla(1e9, D, L)
    with pytest.raises(TypeError, match="must hold numbers"):
        fit_chinchilla(["a"] * 25, D, L)
    with pytest.raises(ValueError, match="n_starts"):
        fit_chinchilla(N, D, L, n_starts=0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        ChinchillaLaw(alpha=-0.3)
    with pytest.raises(ValueError, match="N_c must be a finite number > 0"):
        KaplanLaw(N_c=float("inf"))
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        ChinchillaLaw().loss(0.0, 1e9)
    with pytest.raises(TypeError, match="D must be a number"):
        KaplanLaw().loss(1e9, "many")
    with pytest.raises(ValueError, match="C must be finite and > 0"):
        ChinchillaLaw().compute_optimal(np.array([1e20, -1.0]))
    with pytest.raises(ValueError, match="tokens must be an int"):
        training_compute(GPTConfig.tiny(), 0)
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        training_compute("gpt2", 10)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train_point(GPTConfig.tiny(), None)
    with pytest.raises(TypeError, match="base must be a TrainConfig"):
        run_config(GPTConfig.tiny(), 16, 10)
    with pytest.raises(ValueError, match="warmup_fraction must be in"):
        run_config(TrainConfig(out_dir="", progress=False), 16, 10, warmup_fraction=1.0)
    with pytest.raises(ValueError, match="n_embd"):
        run_config(TrainConfig(out_dir="", progress=False), 17, 10)
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):  # ZeroDivisionError before
        run_config(TrainConfig(out_dir="", progress=False), 0, 10)
    with pytest.raises(ValueError, match="steps must be a positive int, got 2.5"):
        run_config(TrainConfig(out_dir="", progress=False), 16, 2.5)
    with pytest.raises(ValueError, match="lr_exponent must be a finite number, got nan"):
        run_config(TrainConfig(out_dir="", progress=False), 16, 10, lr_exponent=float("nan"))
    with pytest.raises(ValueError, match="widths and steps must both be non-empty"):
        sweep(TrainConfig(out_dir="", progress=False), None, widths=[], steps=[10])
    assert isinstance(fit_chinchilla(N, D, L), ScalingFit)


def test_fit_whose_log_E_underflows_reports_E_zero(monkeypatch):
    """On some CPUs the iterations push log E so far that exp(log E) is exactly 0.0 (issue 13): the
    fit must report the bound E = 0, not raise from ChinchillaLaw's validation."""
    import mathllm.scaling_fit as scaling

    real = scaling._levenberg_marquardt

    def far(theta0, *args):
        theta, rss, its = real(theta0, *args)
        theta = theta.clone()
        theta[0] = -800.0                      # exp(-800) == 0.0 in float64
        return theta, rss, its

    monkeypatch.setattr(scaling, "_levenberg_marquardt", far)
    law = ChinchillaLaw(E=1e-9, A=30.0, B=400.0, alpha=0.3, beta=0.35)
    fit = fit_chinchilla(*synthetic(law, 0.005, 6))
    assert fit.E_at_zero and fit.law.E == 0.0
    assert ChinchillaLaw(E=0.0, A=1.0, B=1.0, alpha=0.3, beta=0.3).loss(1e6, 1e9) > 0
    with pytest.raises(ValueError, match=r"E must be a finite number >= 0"):
        ChinchillaLaw(E=-1.0)


@pytest.mark.parametrize("rising", ["N", "D"])
def test_fit_on_losses_that_rise_is_a_clear_error(rising):
    """Issue 15: losses that rise with N (or D) drove A (or B) to 0, J^T J became singular and the fit
    raised torch's LinAlgError ("linalg.inv: The diagonal element 2 is zero"); now a ValueError that
    says what is wrong with the data."""
    N, D, _ = synthetic(LAWS[0], 0.0, 0)
    up, down = (N, D) if rising == "N" else (D, N)
    L = 1.0 + 0.05 * np.log(up) + 400.0 / down ** 0.3      # rises with one, falls with the other
    with pytest.raises(ValueError, match=f"the losses do not fall as {rising} grows"):
        fit_chinchilla(N, D, L)


def test_law_fields_and_log_loss_hostile_input():
    """Issue 15 (the API fuzz test): ChinchillaLaw("a") compared "a" >= 0 (TypeError from Python), and
    log_loss_and_jacobian(0.5, ...) failed to unpack a float. Valid input still matches the law:
    exp(log L) equals ChinchillaLaw.loss."""
    with pytest.raises(ValueError, match="ChinchillaLaw.E must be a finite number >= 0, got 'a'"):
        ChinchillaLaw("a")
    with pytest.raises(ValueError, match="KaplanLaw.N_c must be a finite number > 0, got None"):
        KaplanLaw(None)
    N, D = torch.tensor([1e6, 1e8], dtype=torch.float64), torch.tensor([1e9, 1e10], dtype=torch.float64)
    with pytest.raises(TypeError, match="theta must be a torch.Tensor, got float"):
        log_loss_and_jacobian(0.5, N, D)
    with pytest.raises(ValueError, match=r"theta must have shape \(P\), a 1-d tensor; got 0-d"):
        log_loss_and_jacobian(torch.tensor(1.0), N, D)
    with pytest.raises(ValueError, match=r"D must have shape \(n\) with n=2"):
        log_loss_and_jacobian(torch.zeros(5, dtype=torch.float64), N, D[:1])
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        log_loss_and_jacobian(torch.zeros(5, dtype=torch.float64), -N, D)
    law = ChinchillaLaw.hoffmann2022()
    theta = torch.tensor([math.log(law.E), math.log(law.A), math.log(law.B), law.alpha, law.beta], dtype=torch.float64)
    log_L, _ = log_loss_and_jacobian(theta, N, D)
    np.testing.assert_allclose(log_L.exp().numpy(), law.loss(N.numpy(), D.numpy()), rtol=1e-12)
