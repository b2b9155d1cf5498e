"""Gradient checking by finite differences, and the error of a finite difference.

Taylor's theorem gives the two schemes and their truncation errors:

    forward:  (f(x + h) - f(x)) / h          = f'(x) + h f''(x) / 2 + O(h^2)
    central:  (f(x + h) - f(x - h)) / (2h)   = f'(x) + h^2 f'''(x) / 6 + O(h^4)

In floating point each f is computed with a relative error of about eps (2.2e-16 in float64), and
the difference is divided by h, so a round-off error of order eps * abs(f) / h is added. The total
error is smallest where the two balance: at h ~ eps^(1/2) (error ~ 1e-8) for the forward scheme and
h ~ eps^(1/3) (error ~ 1e-11) for the central one (:func:`optimal_step`). Smaller steps make it
worse, not better.

:func:`gradcheck` compares the gradient of the from-scratch engine with central differences, as
``torch.autograd.gradcheck`` does for PyTorch.

Leaves out: complex step differentiation and Richardson extrapolation.

Book: :doc:`/notebooks/04_calculus_autodiff`
"""
from __future__ import annotations

import numpy as np

from .checks import check_callable, check_number
from .tensor_autograd import Tensor, _as_float_array, grad

SCHEMES = ("forward", "central")
EPS = float(np.finfo(np.float64).eps)  # 2.22e-16, the spacing of float64 numbers near 1


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _check_step(h):
    # kept as given: a float32 step keeps a float32 computation in float32
    return check_number(h, "h", low=0.0, low_open=True)


class GradientMismatch(AssertionError):
    """Raised by :func:`gradcheck` when the analytic and numerical gradients disagree."""


# ---------------------------------------------------------------------------- finite differences
def finite_difference(f, x: float, h: float, scheme: str = "central") -> float:
    """The derivative of a scalar function ``f`` at ``x`` estimated with step ``h``."""
    check_callable(f, "f")
    _check_scheme(scheme)
    h = _check_step(h)
    if scheme == "forward":
        return (f(x + h) - f(x)) / h
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_grad(f, x, h: float = 1e-6, scheme: str = "central") -> np.ndarray:
    """The gradient of ``f: array -> float`` at ``x``, one coordinate at a time.

    Args:
        f: a function of an array of ``x``'s shape returning a float.
        x: the point, an array of any shape (float64).
        h: the step; about eps^(1/3) ~ 6e-6 is best for the central scheme on O(1) inputs.

    Returns:
        An array of ``x``'s shape. Costs 2 x.size evaluations of ``f`` (central).
    """
    check_callable(f, "f")
    _check_scheme(scheme)
    h = _check_step(h)
    x = _as_float_array(x, "x").copy()
    out = np.empty_like(x)
    flat, g = x.reshape(-1), out.reshape(-1)  # views: writing flat[i] moves x
    f0 = f(x) if scheme == "forward" else None
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        f_plus = f(x)
        if scheme == "forward":
            g[i] = (f_plus - f0) / h
        else:
            flat[i] = old - h
            g[i] = (f_plus - f(x)) / (2 * h)
        flat[i] = old
    return out


def derivative_errors(f, df, x, hs, scheme: str = "central") -> np.ndarray:
    """``abs(finite difference - f'(x))`` for each step in ``hs``: the curve that shows the trade-off.

    ``x`` may be a number (returns shape (len(hs),)) or an array of points, with ``f`` and ``df``
    elementwise (returns shape (len(hs),) + x.shape).
    """
    check_callable(f, "f")
    check_callable(df, "df")
    if isinstance(hs, (str, bytes)) or not hasattr(hs, "__iter__"):
        raise TypeError(f"hs must be a sequence of steps, got {type(hs).__name__}")
    return np.array([abs(finite_difference(f, x, h, scheme) - df(x)) for h in hs])


def optimal_step(scheme: str, f_scale: float = 1.0, deriv_scale: float = 1.0, eps: float = EPS) -> float:
    """The step that balances truncation and round-off.

    With truncation ``h |f''| / 2`` (forward) or ``h^2 |f'''| / 6`` (central), round-off ``eps |f| / h``,
    ``f_scale = |f|`` and ``deriv_scale = |f''|`` or ``|f'''|``, minimising the sum over h gives
    ``h* = sqrt(2 eps |f| / |f''|)`` and ``h* = (3 eps |f| / |f'''|)^(1/3)``.
    """
    _check_scheme(scheme)
    for name, value in (("f_scale", f_scale), ("deriv_scale", deriv_scale), ("eps", eps)):
        check_number(value, name, low=0.0, low_open=True)
    if scheme == "forward":
        return float(np.sqrt(2 * eps * f_scale / deriv_scale))
    return float(np.cbrt(3 * eps * f_scale / deriv_scale))


# ---------------------------------------------------------------------------- checking the engine
def relative_error(a, b, floor: float = 1e-12) -> float:
    """Normwise relative error ``max(abs(a - b)) / max(max(abs(a)), max(abs(b)), floor)``.

    Normwise rather than elementwise, so that an entry whose true value is 0 (and whose
    finite difference is a round-off of 1e-11) does not count as a 100 % error.
    """
    a, b = _as_float_array(a, "a"), _as_float_array(b, "b")
    check_number(floor, "floor", low=0.0, low_open=True)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(b).max(), floor)
    return float(np.abs(a - b).max() / scale)


def gradcheck(f, x, h: float = 1e-6, rtol: float = 1e-6) -> float:
    """Check the engine's gradient of ``f`` at ``x`` against central differences.

    Args:
        f: maps a :class:`~mathllm.tensor_autograd.Tensor` to a scalar Tensor.
        x: the point, an array.
        h: the finite-difference step.
        rtol: the largest accepted :func:`relative_error`.

    Returns:
        The relative error. Raises :class:`GradientMismatch` if it is above ``rtol``.
    """
    check_callable(f, "f")
    x = _as_float_array(x, "x")
    h = _check_step(h)
    check_number(rtol, "rtol", low=0.0)
    xt = Tensor(x, requires_grad=True)
    (analytic,) = grad(f(xt), [xt])
    numeric = numerical_grad(lambda a: f(Tensor(a)).item(), x, h)
    err = relative_error(analytic.data, numeric)
    if not err <= rtol:
        raise GradientMismatch(f"gradient check failed: relative error {err:.3g} > rtol={rtol:g}\n"
                               f"analytic: {analytic.data}\nnumerical: {numeric}")
    return err
