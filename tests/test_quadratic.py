"""Tests for mathllm.quadratic: rates from eigenvalues against measured runs, optimal tunings against a grid, CG exactness."""
import math

import pytest
import torch

from mathllm import optim
from mathllm.minimize import run_optimizer
from mathllm.quadratic import (Quadratic, conjugate_gradient, gd_optimal, gd_rate, heavy_ball_optimal, momentum_matrix,
                               momentum_rate, nesterov_optimal)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


def _q(n=8, kappa=50.0, seed=0):
    return Quadratic.random(n, kappa, generator=torch.Generator().manual_seed(seed))


def test_quadratic_matches_autograd_and_solves():
    q = _q()
    x = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    q(x).backward()
    torch.testing.assert_close(q.grad(x.detach()), x.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.A @ q.minimizer(), q.b, rtol=1e-10, atol=1e-10)
    lam = q.eigenvalues()
    assert lam[-1] / lam[0] == pytest.approx(50.0, rel=1e-8)
    grid = torch.randn(3, 5, 8, dtype=torch.float64)                        # batched evaluation
    torch.testing.assert_close(q(grid)[1, 2], q(grid[1, 2]), rtol=1e-12, atol=1e-12)


def _measured_rate(q, make, rate):
    """Geometric mean error ratio over the second half of a run long enough to shrink the error ~1e-8 (not to eps)."""
    steps = math.ceil(math.log(1e-8) / math.log(rate))
    res = run_optimizer(q, torch.zeros(len(q.b), dtype=torch.float64), make, max_iter=steps, tol=0.0)
    err = (res.path - q.minimizer()).norm(dim=1)
    return (err[-1] / err[steps // 2]).item() ** (1 / (steps - steps // 2))


@pytest.mark.parametrize("kappa", [10.0, 100.0])
@pytest.mark.parametrize("lr_factor", [0.5, 1.0])
def test_gd_rate_from_eigenvalues_is_the_measured_rate(kappa, lr_factor):
    q = _q(kappa=kappa)
    lam = q.eigenvalues()
    lr = lr_factor * gd_optimal(lam[0].item(), lam[-1].item())[0]
    predicted = gd_rate(lr, lam)
    measured = _measured_rate(q, lambda p: optim.SGD(p, lr=lr), predicted)
    assert measured == pytest.approx(predicted, rel=2e-3)


@pytest.mark.parametrize("mu,L", [(1.0, 9.0), (0.5, 100.0)])
def test_gd_optimal_is_the_minimiser_of_the_worst_case_rate(mu, L):
    """max(|1 - lr mu|, |1 - lr L|) is smallest where 1 - lr mu = lr L - 1: lr = 2/(mu + L), rate (L - mu)/(L + mu).
    Checked against the literal for mu = 1, L = 9 (lr 0.2, rate 0.8) and against a fine grid of gd_rate."""
    lr, rate = gd_optimal(mu, L)
    if (mu, L) == (1.0, 9.0):
        assert (lr, rate) == (pytest.approx(0.2, rel=1e-15), pytest.approx(0.8, rel=1e-15))
    ends = torch.tensor([mu, L], dtype=torch.float64)
    assert gd_rate(lr, ends) == pytest.approx(rate, rel=1e-12)
    grid = [lr * (1 + d) for d in torch.linspace(-0.5, 0.5, 201).tolist()]   # steps of 0.5% of lr
    assert min(gd_rate(x, ends) for x in grid) >= rate - 1e-12


def test_gd_diverges_beyond_two_over_lambda_max():
    q = _q(kappa=10.0)
    L = q.eigenvalues()[-1].item()
    for lr, diverges in ((1.95 / L, False), (2.05 / L, True)):
        res = run_optimizer(q, torch.zeros(8, dtype=torch.float64), lambda p: optim.SGD(p, lr=lr), max_iter=500, tol=0.0)
        err = (res.path[-1] - q.minimizer()).norm() / q.minimizer().norm()
        assert (err > 1) == diverges and (gd_rate(lr, q.eigenvalues()) > 1) == diverges


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_optimal_tunings_beat_a_grid(kappa):
    """No (lr, beta) on a grid has a smaller worst-case spectral radius than the closed-form tunings."""
    mu, L = 1.0, kappa
    lams = torch.linspace(mu, L, 41, dtype=torch.float64)
    for optimal, nesterov in ((heavy_ball_optimal, False), (nesterov_optimal, True)):
        lr_star, beta_star, rate = optimal(mu, L)
        assert momentum_rate(lr_star, beta_star, lams, nesterov=nesterov) == pytest.approx(rate, rel=1e-6)
        best = min(momentum_rate(lr_star * a, b, lams[[0, 20, -1]], nesterov=nesterov)
                   for a in (0.8, 0.9, 0.95, 1.05, 1.1) for b in (beta_star * 0.9, beta_star, min(beta_star * 1.1, 0.999)))
        assert best >= rate - 1e-9
    assert heavy_ball_optimal(mu, L)[2] < nesterov_optimal(mu, L)[2] < gd_optimal(mu, L)[1]


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_recurrence_is_torch_sgd(nesterov):
    """The 2x2 recurrence predicts the error of (mathllm == torch) SGD with momentum exactly, on a 1-D quadratic."""
    lam, lr, beta = 3.0, 0.1, 0.7
    q = Quadratic(torch.tensor([[lam]], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    res = run_optimizer(q, torch.tensor([1.0], dtype=torch.float64),
                        lambda p: optim.SGD(p, lr=lr, momentum=beta, nesterov=nesterov), max_iter=30, tol=0.0)
    e = res.path[:, 0]
    M = momentum_matrix(lr, beta, lam, nesterov=nesterov)
    for t in range(2, 30):
        pred = M @ torch.stack([e[t - 1], e[t - 2]])
        assert pred[0].item() == pytest.approx(e[t].item(), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_rate_is_the_spectral_radius_and_broadcasts(nesterov):
    lams = [1.0, 7.0, 40.0]
    for lr, beta in ((0.01, 0.5), (0.05, 0.9), (0.04, 0.0)):
        radius = max(torch.linalg.eigvals(momentum_matrix(lr, beta, lam, nesterov=nesterov)).abs().max().item() for lam in lams)
        assert momentum_rate(lr, beta, lams, nesterov=nesterov) == pytest.approx(radius, rel=1e-9)
    lr, beta = torch.meshgrid(torch.tensor([0.01, 0.05]), torch.tensor([0.5, 0.9]), indexing="ij")
    grid = momentum_rate(lr, beta, lams, nesterov=nesterov)
    assert grid.shape == (2, 2) and grid[1, 1].item() == pytest.approx(momentum_rate(0.05, 0.9, lams, nesterov=nesterov))


def test_heavy_ball_achieves_its_rate():
    q = _q(kappa=100.0)
    lam = q.eigenvalues()
    lr, beta, rate = heavy_ball_optimal(lam[0].item(), lam[-1].item())
    measured = _measured_rate(q, lambda p: optim.SGD(p, lr=lr, momentum=beta), rate)
    assert measured < rate * 1.02 and measured < gd_optimal(lam[0].item(), lam[-1].item())[1]


@pytest.mark.parametrize("n,kappa", [(5, 10.0), (20, 10.0), (10, 100.0), (50, 30.0)])
def test_cg_is_exact_in_n_steps(n, kappa):
    q = Quadratic.random(n, kappa, generator=torch.Generator().manual_seed(n))
    x, path = conjugate_gradient(q.A, q.b)
    assert path.shape == (n + 1, n)
    torch.testing.assert_close(x, q.minimizer(), rtol=1e-7, atol=1e-7)
    errs = (path - q.minimizer()).norm(dim=1)
    assert errs[-1] < 1e-6 * errs[0]
    # CG minimizes f over x0 + Krylov space: each f value is below that of the previous iterate
    fvals = q(path)
    assert bool((fvals[1:] <= fvals[:-1] + 1e-12).all())


def test_cg_in_floating_point_needs_a_few_extra_steps():
    """Rounding destroys the conjugacy slowly: at kappa = 100, n = 20 step n is 1e-4 off, n + 5 steps are exact."""
    q = Quadratic.random(20, 100.0, generator=torch.Generator().manual_seed(20))
    _, path = conjugate_gradient(q.A, q.b, max_iter=25)
    rel = (path - q.minimizer()).norm(dim=1) / q.minimizer().norm()
    assert rel[20] > 1e-6 and rel[25] < 1e-12


def test_cg_on_k_distinct_eigenvalues_stops_after_k():
    """With only 3 distinct eigenvalues the Krylov space is 3-dimensional: CG is exact after 3 steps."""
    Q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    lam = torch.tensor([1.0, 5.0, 30.0], dtype=torch.float64).repeat(4)
    A = (Q * lam) @ Q.T
    b = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x, _ = conjugate_gradient(A, (A + A.T) @ b / 2, max_iter=3)
    torch.testing.assert_close(x, b, rtol=1e-8, atol=1e-8)


def test_bad_inputs_name_expected_and_received():
    with pytest.raises(ValueError, match="A must be positive definite, got smallest eigenvalue -1"):
        Quadratic(torch.diag(torch.tensor([-1.0, 2.0], dtype=torch.float64)), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"b must have shape \(n\) with n=2; got shape \(3,\)"):
        Quadratic(torch.eye(2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="A must be symmetric"):
        Quadratic(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.zeros(2))
    with pytest.raises(ValueError, match="need 0 < mu <= L, got mu=2.0, L=1.0"):
        gd_optimal(2.0, 1.0)
    with pytest.raises(ValueError, match="kappa must be >= 1, got 0.5"):
        Quadratic.random(3, 0.5)
    assert math.isfinite(momentum_rate(0.1, 0.5, [1.0, 2.0]))


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_conjugate_gradient_refuses_an_indefinite_matrix():
    """d^T A d <= 0 makes the exact line search step meaningless (nan before): A = diag(1, -1)."""
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="A must be positive definite: d\\^T A d = .* <= 0"):
        conjugate_gradient(A, torch.tensor([1.0, 1.0], dtype=torch.float64))
