"""Tests for mathllm.interior_point: the barrier method against scipy's LP and QP solvers and its gap bound m / t."""
import pytest
import scipy.optimize
import torch

from mathllm.interior_point import barrier_method

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

D = dict(dtype=torch.float64)


def _lp(seed, n=4, m=10):
    """A bounded random LP: minimize c^T x subject to G x <= h, with 0 strictly feasible (h > 0) and box rows."""
    g = torch.Generator().manual_seed(seed)
    G = torch.cat([torch.randn(m, n, generator=g, **D), torch.eye(n, **D), -torch.eye(n, **D)])
    h = torch.cat([torch.rand(m, generator=g, **D) + 0.5, torch.full((2 * n,), 3.0, **D)])
    c = torch.randn(n, generator=g, **D)
    return c, G, h


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_barrier_solves_lps_like_scipy_linprog(seed):
    c, G, h = _lp(seed)
    res = barrier_method(lambda x: c @ x, lambda x: G @ x - h, torch.zeros(len(c), **D), eps=1e-9)
    ref = scipy.optimize.linprog(c.numpy(), A_ub=G.numpy(), b_ub=h.numpy(), bounds=(None, None), method="highs")
    assert ref.status == 0
    assert res.fun == pytest.approx(ref.fun, abs=1e-7)
    torch.testing.assert_close(res.x, torch.from_numpy(ref.x), rtol=1e-5, atol=1e-5)
    assert bool((G @ res.x < h).all())                   # the iterates stay strictly inside


@pytest.mark.parametrize("seed", [0, 1])
def test_central_path_is_m_over_t_suboptimal(seed):
    """f(x*(t)) - p* <= m / t at every centering (Boyd & Vandenberghe 11.2.2)."""
    c, G, h = _lp(seed)
    res = barrier_method(lambda x: c @ x, lambda x: G @ x - h, torch.zeros(len(c), **D), eps=1e-9)
    p_star = scipy.optimize.linprog(c.numpy(), A_ub=G.numpy(), b_ub=h.numpy(), bounds=(None, None)).fun
    gaps = [(c @ x).item() - p_star for x in res.info["central_path"]]
    for gap, bound in zip(gaps, res.info["gap_bound"]):
        assert -1e-9 <= gap <= bound * (1 + 1e-6)
    assert gaps[0] > 1e3 * gaps[-1]                      # and the bound is not vacuous: the gap shrinks with it


def test_central_points_carry_a_dual_certificate():
    """At x*(t), lambda_i = -1 / (t c_i(x)) is dual feasible (c + G^T lambda = 0) with duality gap exactly m / t."""
    c, G, h = _lp(1)
    res = barrier_method(lambda x: c @ x, lambda x: G @ x - h, torch.zeros(len(c), **D), eps=1e-6)
    for x, t in zip(res.info["central_path"], res.info["t"]):
        lam = -1 / (t * (G @ x - h))                          # (m,) > 0
        assert bool((lam > 0).all())
        torch.testing.assert_close(c + G.T @ lam, torch.zeros_like(c), rtol=0, atol=1e-6 * (1 + lam.abs().max().item()))
        dual_value = -(h @ lam)                               # g(lambda) = inf_x c^T x + lambda^T (G x - h)
        gap = (c @ x - dual_value).item()                     # exactly m / t at an exact center; centering
        assert abs(gap - len(h) / t) <= 1e-4 * len(h) / t + 1e-7   # stops at a Newton decrement of ~1e-10


def test_barrier_projects_onto_a_ball():
    """minimize |x - p|^2 subject to |x|^2 <= 1: the answer is p / |p| when |p| > 1 (a nonlinear constraint)."""
    p = torch.tensor([2.0, -1.0, 0.5], **D)
    res = barrier_method(lambda x: ((x - p) ** 2).sum(), lambda x: (x @ x - 1).reshape(1), torch.zeros(3, **D), eps=1e-10)
    torch.testing.assert_close(res.x, p / p.norm(), rtol=1e-5, atol=1e-5)
    ref = scipy.optimize.minimize(lambda z: ((z - p.numpy()) ** 2).sum(), [0, 0, 0], method="SLSQP",
                                  constraints=[{"type": "ineq", "fun": lambda z: 1 - z @ z}])
    torch.testing.assert_close(res.x, torch.from_numpy(ref.x), rtol=1e-5, atol=1e-5)


def test_bad_inputs_name_expected_and_received():
    c, G, h = _lp(0)
    with pytest.raises(ValueError, match=r"x0 must be strictly feasible \(every constraint < 0\), got max constraint 23.9"):
        barrier_method(lambda x: c @ x, lambda x: G @ x - h, torch.full((4,), 9.5, **D))
    with pytest.raises(ValueError, match=r"mu must be a finite number in \(1, inf\), got 0.5"):
        barrier_method(lambda x: c @ x, lambda x: G @ x - h, torch.zeros(4, **D), mu=0.5)
    with pytest.raises(ValueError, match=r"constraints\(x\) must return an \(m,\) tensor, got shape \(\)"):
        barrier_method(lambda x: c @ x, lambda x: (x @ x - 1), torch.zeros(4, **D))


def test_non_finite_settings_refused():
    """Issue 15: ``not mu > 1`` let mu = inf through, and t0 was not checked: both then failed inside
    autograd ("element 0 of tensors does not require grad"); every setting now goes through
    checks.check_number, NaN and inf refused alike."""
    c, G, h = _lp(0)
    args = (lambda x: c @ x, lambda x: G @ x - h, torch.zeros(4, **D))
    with pytest.raises(ValueError, match=r"mu must be a finite number in \(1, inf\), got inf"):
        barrier_method(*args, mu=float("inf"))
    with pytest.raises(ValueError, match=r"t0 must be a finite number in \(0, inf\), got nan"):
        barrier_method(*args, t0=float("nan"))
    with pytest.raises(ValueError, match="max_newton must be a positive int, got 0"):
        barrier_method(*args, max_newton=0)
    with pytest.raises(TypeError, match="constraints must be callable, got Tensor"):
        barrier_method(args[0], G, args[2])
