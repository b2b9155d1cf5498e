"""Tests for mathllm.joint against torch.cov / torch.corrcoef, numpy and literal tables."""
import numpy as np
import pytest
import torch

from mathllm import joint as J


def table(seed=0, A=3, B=4):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(A, B, generator=g, dtype=torch.float64)
    return t / t.sum()


def test_marginals_and_conditional_known_answer():
    j = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    px, py = J.marginals(j)
    torch.testing.assert_close(px, torch.tensor([0.3, 0.7], dtype=torch.float64))
    torch.testing.assert_close(py, torch.tensor([0.4, 0.6], dtype=torch.float64))
    torch.testing.assert_close(J.conditional(j), torch.tensor([[1 / 3, 2 / 3], [3 / 7, 4 / 7]], dtype=torch.float64))
    assert abs(J.independence_gap(j).item() - 0.02) < 1e-15  # |0.1 - 0.3 * 0.4|


@pytest.mark.parametrize("seed", range(3))
def test_independent_table_and_conditional_rows(seed):
    j = table(seed)
    px, py = J.marginals(j)
    indep = px[:, None] * py[None, :]
    assert J.independence_gap(indep).item() < 1e-15
    assert J.independence_gap(j).item() > 1e-3
    torch.testing.assert_close(J.conditional(j).sum(1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(J.conditional(indep), py.expand(3, -1))  # P(y | x) = P(y)


@pytest.mark.parametrize("seed", range(3))
def test_table_covariance_matches_weighted_numpy(seed):
    j = table(seed)
    xv = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    yv = torch.tensor([0.0, 1.0, 3.0, -2.0], dtype=torch.float64)
    X, Y = np.meshgrid(xv.numpy(), yv.numpy(), indexing="ij")
    ref = np.cov(X.ravel(), Y.ravel(), aweights=j.numpy().ravel(), bias=True)[0, 1]
    assert abs(J.table_covariance(j, xv, yv).item() - ref) < 1e-12


def test_uncorrelated_but_dependent():
    # X uniform on {-1, 0, 1}, Y = X^2: Cov = E[X^3] = 0, yet Y is a function of X
    j = torch.tensor([[0.0, 1 / 3], [1 / 3, 0.0], [0.0, 1 / 3]], dtype=torch.float64)
    xv, yv = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert abs(J.table_covariance(j, xv, yv).item()) < 1e-15 and J.independence_gap(j).item() > 0.1


@pytest.mark.parametrize("N, d", [(2, 1), (50, 3), (400, 5)])
def test_covariance_and_correlation_match_torch(N, d):
    x = torch.randn(N, d, generator=torch.Generator().manual_seed(N), dtype=torch.float64) @ torch.randn(
        d, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    torch.testing.assert_close(J.covariance(x), torch.cov(x.T).reshape(d, d), rtol=1e-12, atol=1e-12)
    if N > 2:
        torch.testing.assert_close(J.correlation(x), torch.corrcoef(x.T).reshape(d, d), rtol=1e-10, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        J.marginals(torch.ones(4, dtype=torch.float64) / 4)
    with pytest.raises(ValueError, match="undefined"):
        J.conditional(torch.tensor([[0.5, 0.5], [0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="constant"):
        J.correlation(torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="N >= 2"):
        J.covariance(torch.ones(1, 3))
    with pytest.raises(ValueError, match="x_values"):
        J.table_covariance(table(), torch.ones(2, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
