"""mathllm.cholesky against torch.linalg.cholesky and the eigenvalue test of definiteness."""
import pytest
import sympy as sp
import torch

from mathllm.cholesky import cholesky, is_positive_definite

F64 = dict(dtype=torch.float64)


def _spd(n, seed, shift=1e-3):
    G = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), **F64)
    return G @ G.T + shift * torch.eye(n, **F64)


@pytest.mark.parametrize("n", [1, 2, 5, 30])
def test_cholesky_matches_torch(n):
    A = _spd(n, n)
    L = cholesky(A)
    torch.testing.assert_close(L, torch.linalg.cholesky(A), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(L @ L.T, A, rtol=1e-12, atol=1e-12)
    assert torch.equal(L, L.tril()) and (L.diagonal() > 0).all()


def test_cholesky_2x2_known_answer():
    a, b, c = sp.symbols("a b c", positive=True)
    Ls = sp.Matrix(sp.Matrix([[a, b], [b, c]]).cholesky(hermitian=False))
    vals = {a: 4.0, b: 2.0, c: 5.0}
    ref = torch.tensor([[float(e.subs(vals)) for e in row] for row in Ls.tolist()], **F64)
    torch.testing.assert_close(cholesky(torch.tensor([[4.0, 2.0], [2.0, 5.0]], **F64)), ref, rtol=1e-15, atol=0)


@pytest.mark.parametrize("seed", range(10))
def test_definiteness_agrees_with_eigenvalues(seed):
    G = torch.randn(6, 6, generator=torch.Generator().manual_seed(seed), **F64)
    A = G + G.T + 3.0 * torch.eye(6, **F64)  # some are definite, some not
    assert is_positive_definite(A) == bool(torch.linalg.eigvalsh(A)[0] > 0)


def test_rejects_indefinite_and_nonsymmetric():
    with pytest.raises(ValueError, match="not positive definite: pivot 1"):
        cholesky(torch.tensor([[1.0, 2.0], [2.0, 1.0]], **F64))
    with pytest.raises(ValueError, match="must be symmetric"):
        cholesky(torch.tensor([[1.0, 2.0], [0.0, 1.0]], **F64))
    with pytest.raises(ValueError, match="shape"):
        cholesky(torch.ones(2, 3, **F64))
    with pytest.raises(TypeError, match="floating-point"):
        cholesky(torch.eye(2, dtype=torch.long))
