"""Tests for mathllm.markov: stationary distributions against linear solves and eigen-decompositions, mixing bounds, sampling."""
import math

import pytest
import torch

from mathllm import markov as M
from mathllm.probability import entropy

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


def random_chain(S, seed=0, sparsity=0.0):
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(S, S, generator=g, dtype=torch.float64)
    if sparsity:
        P = P * (torch.rand(S, S, generator=g, dtype=torch.float64) > sparsity)
        P = P + torch.eye(S, dtype=torch.float64) * 1e-3  # keep every row non-empty and the chain aperiodic
    return P / P.sum(1, keepdim=True)


def stationary_by_solve(P):
    """pi (P - I) = 0 with sum(pi) = 1, as one least-squares system (exact for an irreducible chain)."""
    S = P.shape[0]
    A = torch.cat([(P - torch.eye(S, dtype=P.dtype)).T, torch.ones(1, S, dtype=P.dtype)])  # (S + 1, S)
    b = torch.cat([torch.zeros(S, dtype=P.dtype), torch.ones(1, dtype=P.dtype)])
    return torch.linalg.lstsq(A, b[:, None]).solution[:, 0]


@pytest.mark.parametrize("bad, err, match", [
    (torch.ones(2, 3) / 3, ValueError, "square"),
    (torch.tensor([[0.5, 0.5], [1.2, -0.2]]), ValueError, "negative"),
    (torch.tensor([[0.5, 0.4], [0.5, 0.5]]), ValueError, "sum to 1"),
    (torch.ones(4) / 4, ValueError, "square"),
    (torch.eye(2, dtype=torch.int64), TypeError, "floating-point"),
])
def test_bad_transition_matrices(bad, err, match):
    with pytest.raises(err, match=match):
        M.stationary_distribution(bad)


def test_other_bad_input():
    P = random_chain(3)
    with pytest.raises(ValueError, match=r"p0 must have shape \(S,\) = \(3,\)"):
        M.evolve(torch.ones(4, dtype=torch.float64) / 4, P, 2)
    with pytest.raises(ValueError, match="method must be"):
        M.stationary_distribution(P, method="svd")
    with pytest.raises(ValueError, match=r"start must be a state in \[0, 3\)"):
        M.simulate(P, 5, start=3)
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\)"):
        M.mixing_time(P, eps=0)
    with pytest.raises(ValueError, match="same shape"):
        M.total_variation(torch.ones(2, dtype=torch.float64) / 2, torch.ones(3, dtype=torch.float64) / 3)


@pytest.mark.parametrize("S, seed, sparsity", [(2, 0, 0.0), (5, 1, 0.0), (20, 2, 0.5), (64, 3, 0.8)])
def test_stationary_eig_power_and_solve_agree(S, seed, sparsity):
    P = random_chain(S, seed, sparsity)
    pi_eig = M.stationary_distribution(P, "eig")
    pi_pow = M.stationary_distribution(P, "power")
    pi_ref = stationary_by_solve(P)
    torch.testing.assert_close(pi_eig, pi_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pi_pow, pi_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pi_eig @ P, pi_eig, rtol=1e-10, atol=1e-13)  # pi P = pi
    # eigenvalue 1 is the largest in modulus (Perron-Frobenius)
    mods = M.eigenvalue_moduli(P)
    assert mods[0].item() == pytest.approx(1.0, abs=1e-10) and mods[1] < 1


def test_two_state_known_answer():
    a, b = 0.3, 0.1
    P = torch.tensor([[1 - a, a], [b, 1 - b]], dtype=torch.float64)
    torch.testing.assert_close(M.stationary_distribution(P), torch.tensor([b, a], dtype=torch.float64) / (a + b))
    assert M.spectral_gap(P) == pytest.approx(a + b, rel=1e-12)  # eigenvalues 1 and 1 - a - b
    d = M.mixing_profile(P, 30)
    # for two states, d(t) = max(pi) |1 - a - b|^t exactly
    torch.testing.assert_close(d, max(a, b) / (a + b) * (1 - a - b) ** torch.arange(31, dtype=torch.float64))


def test_periodic_and_reducible_chains():
    cycle = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(M.stationary_distribution(cycle), torch.tensor([0.5, 0.5], dtype=torch.float64))
    star = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)  # period 2
    torch.testing.assert_close(M.stationary_distribution(star), torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="periodic"):
        M.stationary_distribution(star, "power", max_iter=100)
    with pytest.raises(ValueError, match="did not mix"):
        M.mixing_time(cycle, max_steps=50)
    assert M.spectral_gap(cycle) == pytest.approx(0.0, abs=1e-12)
    reducible = torch.block_diag(random_chain(2, 1), random_chain(3, 2))
    with pytest.raises(ValueError, match="reducible"):
        M.stationary_distribution(reducible)


@pytest.mark.parametrize("S, seed", [(4, 0), (10, 1), (30, 2)])
def test_mixing_profile_bound_for_reversible_chains(S, seed):
    """For a symmetric P (uniform pi, reversible): TV(P^t[x], pi) <= (1/2) sqrt((1 - pi_x) / pi_x) |lambda_2|^t."""
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(S, S, generator=g, dtype=torch.float64)
    A = (A + A.T) / 2
    c = A.sum(1).max() * 1.1
    P = A / c + torch.diag(1 - A.sum(1) / c)  # symmetric, rows sum to 1, positive diagonal
    torch.testing.assert_close(P.sum(1), torch.ones(S, dtype=torch.float64), rtol=0, atol=1e-12)
    d = M.mixing_profile(P, 40)
    assert (d.diff() <= 1e-15).all()  # d(t) never increases
    lam2 = M.eigenvalue_moduli(P)[1].item()
    bound = 0.5 * math.sqrt(S - 1) * lam2 ** torch.arange(41, dtype=torch.float64)
    assert (d <= bound + 1e-14).all()
    t_mix = M.mixing_time(P, 0.25)
    assert d[t_mix] <= 0.25 and (t_mix == 0 or d[t_mix - 1] > 0.25)


def test_evolve_is_matrix_power():
    P = random_chain(6, 4)
    p0 = torch.zeros(6, dtype=torch.float64)
    p0[2] = 1
    traj = M.evolve(p0, P, 12)
    assert traj.shape == (13, 6)
    torch.testing.assert_close(traj[12], p0 @ torch.linalg.matrix_power(P, 12), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(traj[-1], M.stationary_distribution(P), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("S, seed", [(3, 0), (8, 1)])
def test_simulate_estimate_and_entropy_rate(S, seed):
    P = random_chain(S, seed)
    n = 100_000
    x = M.simulate(P, n, seed=seed)
    assert x.dtype == torch.int64 and x.shape == (n,)
    torch.testing.assert_close(M.simulate(P, n, seed=seed), x, rtol=0, atol=0)  # deterministic
    P_hat = M.estimate_transition_matrix(x, S)
    pi = M.stationary_distribution(P)
    se = (P * (1 - P) / (n * pi[:, None])).sqrt()  # row i is estimated from about n pi_i visits
    assert ((P_hat - P).abs() <= 6 * se + 1e-3).all()
    freq = torch.bincount(x, minlength=S).double() / n
    assert (freq - pi).abs().max() < 0.01
    # entropy rate = long-run mean of -log P[x_t, x_{t+1}]
    nll = -P[x[:-1], x[1:]].log().mean().item()
    H = M.entropy_rate(P)
    assert H == pytest.approx(float((pi * entropy(P)).sum()), rel=1e-12)
    assert abs(nll - H) < 0.02
    assert M.simulate(P, 5, start=1, seed=3)[0] == 1


def test_estimate_handles_unvisited_states():
    P_hat = M.estimate_transition_matrix(torch.tensor([0, 1, 0, 1, 1]), 3)
    torch.testing.assert_close(P_hat, torch.tensor([[0, 1, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64))


@pytest.mark.parametrize("S, seed", [(3, 0), (30, 1)])
def test_the_one_stationary_solver_against_torch_eig(S, seed):
    """Both methods, and the matrix-free power routine MarkovSource uses, against torch.linalg.eig of P^T."""
    P = random_chain(S, seed, 0.3)
    evals, evecs = torch.linalg.eig(P.T)
    v = evecs[:, (evals - 1).abs().argmin()].real
    ref = v / v.sum()                                   # the left Perron vector, from LAPACK
    for pi in (M.stationary_distribution(P, "eig"), M.stationary_distribution(P, "power"),
               M.stationary_by_power(lambda p: p @ P, S)):
        torch.testing.assert_close(pi, ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="S must be a positive int"):
        M.stationary_by_power(lambda p: p @ P, 0)
