"""Rotations of the plane: the matrices ``R(theta)``, the building block of rotary position embeddings.

``R(theta) = [[cos theta, -sin theta], [sin theta, cos theta]]`` turns a vector of ``R^2`` by
``theta`` counter-clockwise. It is orthogonal (``R^T R = I``, so lengths and angles are kept),
has determinant 1 (a rotation, not a reflection), and angles add: ``R(a) R(b) = R(a + b)``, so
``R(a)^T R(b) = R(b - a)``. RoPE rotates each pair of coordinates of a query at position ``m`` by
``m omega`` and of a key at position ``n`` by ``n omega``; their dot product then depends only on
``n - m`` (Su et al., "RoFormer", 2021; :mod:`mathllm.positional`). Checked against sympy and
``torch.linalg`` in ``tests/test_rotation.py``.

Leaves out: rotations in three and more dimensions (Euler angles, quaternions, the matrix
exponential of a skew-symmetric matrix), reflections.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import numbers

import torch

from .checks import check_finite, check_float_tensor


def rotation_2d(theta: float | torch.Tensor) -> torch.Tensor:
    """The rotation matrix ``R(theta)``, or a stack of them for a tensor of angles.

    Args:
        theta: an angle in radians (a number, giving float64), or a floating tensor of angles of
            any shape ``S``.

    Returns:
        (2, 2) for a number, ``(*S, 2, 2)`` for a tensor (of its dtype).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Orthogonal matrices and rotations".
    """
    if isinstance(theta, numbers.Real) and not isinstance(theta, bool):
        theta = torch.tensor(float(theta), dtype=torch.float64)
    elif not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta must be a number or a floating tensor of angles, got {type(theta).__name__}")
    check_float_tensor(theta, "theta")
    check_finite(theta, "theta")
    c, s = theta.cos(), theta.sin()
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (*S, 2, 2)
