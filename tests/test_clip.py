"""mathllm.clip.clip_grad_norm against torch.nn.utils.clip_grad_norm_ over norm types, bounds,
dtypes, missing gradients and the non-finite case: the same returned norm and the same gradients."""
import math

import pytest
import torch

from mathllm.clip import clip_grad_norm


def _params(seed, dtype=torch.float32, scale=1.0, none_at=None, poison=None):
    """Two identical lists of parameters with gradients (shapes of a small layer and its bias)."""
    shapes = [(5, 7), (7,), (3, 4, 2), (1,)]
    out = []
    for _ in range(2):
        ps = []
        gg = torch.Generator().manual_seed(seed)
        for k, s in enumerate(shapes):
            p = torch.nn.Parameter(torch.randn(s, generator=gg, dtype=dtype))
            p.grad = None if k == none_at else scale * torch.randn(s, generator=gg, dtype=dtype)
            if p.grad is not None and poison is not None and k == 0:
                p.grad[1, 2] = poison
            ps.append(p)
        out.append(ps)
    return out


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf, 2])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch(norm_type, max_norm, dtype):
    ours, theirs = _params(0, dtype, scale=3.0)
    n_ours = clip_grad_norm(ours, max_norm, norm_type)
    n_ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    torch.testing.assert_close(n_ours, n_ref, rtol=0, atol=0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=0)
    clipped = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]), norm_type)
    if max_norm < n_ref:  # clipped to the bound
        torch.testing.assert_close(clipped, torch.tensor(max_norm, dtype=dtype), rtol=1e-5, atol=0)
    else:  # left as it was
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, _params(0, dtype, scale=3.0)[0]))


def test_skips_missing_gradients_and_takes_a_tensor_or_a_generator():
    ours, theirs = _params(1, none_at=1)
    torch.testing.assert_close(clip_grad_norm((p for p in ours), 0.5), torch.nn.utils.clip_grad_norm_(theirs, 0.5))
    assert ours[1].grad is None and all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs) if a.grad is not None)
    one, ref = _params(2)[0][0], _params(2)[1][0]
    torch.testing.assert_close(clip_grad_norm(one, 0.5), torch.nn.utils.clip_grad_norm_(ref, 0.5))
    assert torch.equal(one.grad, ref.grad)
    empty = torch.nn.Parameter(torch.ones(3))
    assert torch.equal(clip_grad_norm([empty], 1.0), torch.nn.utils.clip_grad_norm_([empty], 1.0))
    assert torch.equal(clip_grad_norm([], 1.0), torch.tensor(0.0))


@pytest.mark.parametrize("poison", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0])
def test_non_finite_like_torch(poison, norm_type):
    """Without the error flag both scale by 0 or nan (inf * 0 = nan); with it both raise and touch nothing."""
    ours, theirs = _params(3, poison=poison)
    n_ours = clip_grad_norm(ours, 1.0, norm_type)
    n_ref = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
    torch.testing.assert_close(n_ours, n_ref, equal_nan=True)
    assert not torch.isfinite(n_ours)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    ours, theirs = _params(3, poison=poison)
    before = [p.grad.clone() for p in ours]
    with pytest.raises(RuntimeError, match="is non-finite, so it cannot be clipped") as e_ours:
        clip_grad_norm(ours, 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as e_ref:
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type, error_if_nonfinite=True)
    assert str(e_ours.value) == str(e_ref.value)
    assert all(torch.equal(a.grad.nan_to_num(), b.nan_to_num()) for a, b in zip(ours, before))


def test_bad_max_norm():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    with pytest.raises(TypeError, match="max_norm must be a number, got str"):
        clip_grad_norm([p], "1.0")


@pytest.mark.parametrize("bad", [1.0, None, "ab", [torch.ones(2), 3.0]])
def test_parameters_that_are_not_tensors(bad):
    """Issue 15: a number gave "'float' object is not iterable", a str "'str' object has no attribute 'grad'";
    now a TypeError names ``parameters``. Tensors without a gradient still give torch's 0."""
    with pytest.raises(TypeError, match="parameters must be a (tensor or an iterable of tensors|torch.Tensor), got"):
        clip_grad_norm(bad, 1.0)
    t = torch.full((2, 3), float("nan"))  # no .grad: nothing to clip, as torch
    assert torch.equal(clip_grad_norm(t, 1.0), torch.nn.utils.clip_grad_norm_(t, 1.0))
