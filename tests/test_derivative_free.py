"""Tests for mathllm.derivative_free: the ES gradient is unbiased; annealing escapes local minima that descent cannot."""
import pytest
import torch

from mathllm import optim
from mathllm.derivative_free import es_gradient, evolution_strategy, simulated_annealing
from mathllm.minimize import run_optimizer
from mathllm.objectives import rastrigin, rosenbrock
from mathllm.quadratic import Quadratic

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


@pytest.mark.parametrize("sigma", [0.01, 0.5])
def test_es_gradient_is_unbiased_on_a_quadratic(sigma):
    """For a quadratic the antithetic difference is exactly 2 sigma eps^T grad f, so E[g_hat] = grad f for any sigma."""
    q = Quadratic.random(4, 10.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = es_gradient(q, x, sigma=sigma, pairs=200_000, generator=torch.Generator().manual_seed(2))
    true = q.grad(x)
    assert (g - true).norm() < 0.02 * true.norm()         # Monte Carlo error ~ |grad| sqrt(n / pairs)


def test_es_gradient_estimates_the_smoothed_gradient():
    """On f(x) = sum x^4 the smoothed gradient is 4x^3 + 12 sigma^2 x, not 4x^3: ES sees the blurred function."""
    f = lambda x: (x ** 4).sum(-1)
    x, sigma = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.5
    g = es_gradient(f, x, sigma=sigma, pairs=400_000, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(g, 4 * x ** 3 + 12 * sigma ** 2 * x, rtol=0.03, atol=0.03)


def test_evolution_strategy_descends_rosenbrock():
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    res = evolution_strategy(rosenbrock, x0, steps=2000, pairs=10, sigma=0.02, lr=1e-3,
                             generator=torch.Generator().manual_seed(0))
    assert res.fun < 0.05 * rosenbrock(x0).item()
    assert res.n_fun == 1 + res.iterations * 21 and res.n_grad == 0


def test_simulated_annealing_escapes_local_minima_that_trap_gradient_descent():
    x0 = torch.tensor([3.1, -2.9], dtype=torch.float64)
    gd = run_optimizer(rastrigin, x0, lambda p: optim.SGD(p, lr=1e-3), max_iter=2000, tol=1e-8)
    assert gd.fun > 10                                   # stuck in the local minimum near (3, -3)
    runs = [simulated_annealing(rastrigin, x0, steps=4000, step_size=0.5, t0=10.0, cooling=0.998,
                                generator=torch.Generator().manual_seed(seed)) for seed in range(10)]
    assert sum(r.fun < 0.1 for r in runs) >= 8           # most runs find the global minimum at 0
    best = min(runs, key=lambda r: r.fun)
    assert best.x.abs().max() < 0.05
    assert all(r.n_fun == 4001 and 0 < r.info["acceptance_rate"] < 1 for r in runs)


def test_simulated_annealing_is_reproducible():
    x0 = torch.zeros(3, dtype=torch.float64) + 2
    a, b = (simulated_annealing(rastrigin, x0, steps=300, generator=torch.Generator().manual_seed(7)) for _ in range(2))
    torch.testing.assert_close(a.path, b.path, rtol=0, atol=0)


def test_bad_inputs_name_expected_and_received():
    x0 = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cooling must be a finite number in \(0, 1\], got 1.5"):
        simulated_annealing(rosenbrock, x0, cooling=1.5)
    with pytest.raises(ValueError, match=r"step_size must be a finite number in \(0, inf\), got -0.1"):
        simulated_annealing(rosenbrock, x0, step_size=-0.1)
    with pytest.raises(ValueError, match=r"sigma must be a finite number in \(0, inf\), got 0"):
        es_gradient(rosenbrock, x0, sigma=0, pairs=3)
    with pytest.raises(ValueError, match="pairs must be a positive int, got 0"):
        evolution_strategy(rosenbrock, x0, pairs=0)


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("pairs", [0, -1, 2.5, True])
def test_es_gradient_needs_a_positive_int_of_pairs(pairs):
    with pytest.raises(ValueError, match=rf"pairs must be a positive int, got {pairs!r}"):
        es_gradient(lambda xs: (xs ** 2).sum(-1), torch.zeros(3), sigma=0.1, pairs=pairs)


def test_non_finite_and_non_numeric_settings_refused():
    """NaN, inf and strings are refused the same way as in the other modules (checks.check_number): a
    NaN step size used to run the whole walk on NaN proposals; sigma was checked only inside es_gradient."""
    x0 = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"step_size must be a finite number in \(0, inf\), got nan"):
        simulated_annealing(rosenbrock, x0, step_size=float("nan"))
    with pytest.raises(ValueError, match=r"t0 must be a finite number in \(0, inf\), got inf"):
        simulated_annealing(rosenbrock, x0, t0=float("inf"))
    with pytest.raises(TypeError, match="lr must be a number, got str"):
        evolution_strategy(rosenbrock, x0, lr="0.1")
    with pytest.raises(ValueError, match=r"sigma must be a finite number in \(0, inf\), got -1"):
        evolution_strategy(rosenbrock, x0, sigma=-1, steps=0)
    with pytest.raises(ValueError, match="steps must be an int >= 0, got 2.5"):
        simulated_annealing(rosenbrock, x0, steps=2.5)
