"""mathllm.norms against torch.linalg.vector_norm / matrix_norm, and the norm inequalities."""
import math

import pytest
import torch

from mathllm.norms import matrix_norm, norm_equivalence, vector_norm

F64 = dict(dtype=torch.float64)
PS = [1, 1.5, 2, 3, math.inf]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_vector_norm_matches_torch(p, n):
    x = torch.randn(n, generator=_gen(n), **F64)
    torch.testing.assert_close(vector_norm(x, p), torch.linalg.vector_norm(x, p), rtol=1e-13, atol=0)


def test_vector_norm_no_overflow_and_known_answers():
    x = torch.tensor([3e200, 4e200], **F64)  # squaring would overflow to inf
    torch.testing.assert_close(vector_norm(x), torch.tensor(5e200, **F64), rtol=1e-14, atol=0)
    v = torch.tensor([3.0, -4.0], **F64)
    assert float(vector_norm(v, 1)) == 7.0 and float(vector_norm(v, math.inf)) == 4.0
    assert float(vector_norm(torch.zeros(3, **F64), 3)) == 0.0


@pytest.mark.parametrize("ord", ["fro", 1, 2, math.inf])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (3, 5), (8, 8)])
def test_matrix_norm_matches_torch(ord, shape):
    A = torch.randn(*shape, generator=_gen(sum(shape)), **F64)
    torch.testing.assert_close(matrix_norm(A, ord), torch.linalg.matrix_norm(A, ord), rtol=1e-12, atol=0)


def test_operator_norm_is_attained():
    A = torch.randn(6, 4, generator=_gen(1), **F64)
    j = int(A.abs().sum(0).argmax())
    e = torch.zeros(4, **F64)
    e[j] = 1.0
    torch.testing.assert_close(vector_norm(A @ e, 1), matrix_norm(A, 1), rtol=1e-14, atol=0)
    s = torch.sign(A[int(A.abs().sum(1).argmax())])
    torch.testing.assert_close(vector_norm(A @ s, math.inf), matrix_norm(A, math.inf), rtol=1e-14, atol=0)
    v = torch.linalg.svd(A).Vh[0]
    torch.testing.assert_close(vector_norm(A @ v), matrix_norm(A, 2), rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("q", PS)
def test_norm_equivalence_is_tight(p, q):
    n = 9
    c = norm_equivalence(n, p, q)
    for seed in range(20):
        x = torch.randn(n, generator=_gen(seed), **F64)
        assert float(vector_norm(x, p)) <= c * float(vector_norm(x, q)) * (1 + 1e-12)
    witness = torch.ones(n, **F64) if p < q else torch.eye(n, **F64)[0]
    assert math.isclose(float(vector_norm(witness, p)), c * float(vector_norm(witness, q)), rel_tol=1e-12)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="p must be a number in"):
        vector_norm(torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="ord must be"):
        matrix_norm(torch.ones(2, 2), 3)
    with pytest.raises(ValueError, match="shape"):
        matrix_norm(torch.ones(2, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        vector_norm(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n must be a positive int"):
        norm_equivalence(0, 1, 2)
