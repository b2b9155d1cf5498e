"""mathllm.rotation against sympy's rotation algebra and torch.linalg."""
import math

import pytest
import sympy as sp
import torch

from mathllm.positional import rope_matrix
from mathllm.rotation import rotation_2d

F64 = dict(dtype=torch.float64)


def test_matches_sympy_and_composes():
    t = sp.Symbol("t", real=True)
    R = sp.Matrix([[sp.cos(t), -sp.sin(t)], [sp.sin(t), sp.cos(t)]])
    for a, b in [(0.3, 0.5), (-1.0, 2.5), (3.0, 4.0)]:
        ref = torch.tensor([[float(e) for e in row] for row in R.subs(t, a).evalf().tolist()], **F64)
        torch.testing.assert_close(rotation_2d(a), ref, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(rotation_2d(a) @ rotation_2d(b), rotation_2d(a + b), rtol=0, atol=1e-14)
    assert sp.simplify(R * R.subs(t, 2 * t) - R.subs(t, 3 * t)) == sp.zeros(2, 2)  # angles add


@pytest.mark.parametrize("theta", [0.0, 0.7, math.pi, -2.0])
def test_orthogonal_with_determinant_one(theta):
    R = rotation_2d(theta)
    torch.testing.assert_close(R.T @ R, torch.eye(2, **F64), rtol=0, atol=1e-15)
    assert math.isclose(float(torch.linalg.det(R)), 1.0, rel_tol=1e-14)


def test_batched_and_rope_block():
    th = torch.linspace(-3, 3, 12, **F64).reshape(3, 4)
    R = rotation_2d(th)
    assert R.shape == (3, 4, 2, 2)
    torch.testing.assert_close(R[1, 2], rotation_2d(float(th[1, 2])), rtol=0, atol=0)
    torch.testing.assert_close(rope_matrix(5, 8)[:2, :2], rotation_2d(5.0), rtol=0, atol=1e-15)  # omega_0 = 1


def test_rejects_bad_input():
    with pytest.raises(TypeError, match="theta must be"):
        rotation_2d("1.0")
    with pytest.raises(TypeError, match="floating-point"):
        rotation_2d(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="finite"):
        rotation_2d(float("nan"))
