"""Sharpness by Hessian-vector products against the explicit Hessian (torch.autograd.functional)."""
import pytest
import torch

from mathllm.sharpness import hessian_vector_product, sharpness

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


def _problem(seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(20, 5, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (20,), generator=g)
    W = torch.randn(5, 3, dtype=torch.float64, generator=g)
    b = torch.randn(3, dtype=torch.float64, generator=g)

    def loss(W, b):
        return torch.nn.functional.cross_entropy(torch.tanh(X @ W + b), y)

    return loss, [W, b]


def _flat_hessian(loss, params):
    sizes = [p.numel() for p in params]
    def flat_loss(theta):
        parts = torch.split(theta, sizes)
        return loss(*(q.reshape(p.shape) for q, p in zip(parts, params)))
    return torch.autograd.functional.hessian(flat_loss, torch.cat([p.reshape(-1) for p in params]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvp_equals_the_explicit_hessian_times_v(seed):
    loss, params = _problem(seed)
    H = _flat_hessian(loss, params)
    v = [torch.randn(p.shape, dtype=torch.float64) for p in params]
    hv = torch.cat([h.reshape(-1) for h in hessian_vector_product(loss, params, v)])
    torch.testing.assert_close(hv, H @ torch.cat([u.reshape(-1) for u in v]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sharpness_is_the_largest_eigenvalue_in_magnitude(seed):
    loss, params = _problem(seed)
    eig = torch.linalg.eigvalsh(_flat_hessian(loss, params))
    top = eig.abs().max().item()
    lam, v = sharpness(loss, params, iters=500, generator=torch.Generator().manual_seed(seed))
    # power iteration's error shrinks as (|l2|/|l1|)^iters; 500 products leave < 1e-6 relative here
    assert abs(lam - top) <= 1e-6 * top
    vflat = torch.cat([u.reshape(-1) for u in v])
    assert abs(vflat.norm().item() - 1.0) < 1e-12


def test_sharpness_rejects_bad_input():
    loss, params = _problem(0)
    with pytest.raises(ValueError, match="iters"):
        sharpness(loss, params, iters=0)
    with pytest.raises(ValueError, match="norm"):
        sharpness(loss, params, init=[torch.zeros_like(p) for p in params])
    with pytest.raises(ValueError, match="shape"):
        hessian_vector_product(loss, params, [torch.zeros(2)])


def test_hostile_input_gets_a_clear_error():
    """Issue 15 (the API fuzz test): a number or a tensor where the loss goes failed inside with
    "'float' object is not callable", and a bare tensor for params was iterated row by row."""
    loss, params = _problem(0)
    for f in (lambda *a: hessian_vector_product(*a, params), sharpness):
        with pytest.raises(TypeError, match="loss_fn must be callable, got float"):
            f(0.5, params)
        with pytest.raises(TypeError, match="params must be a non-empty list of float tensors, got Tensor"):
            f(loss, params[0])
        with pytest.raises(TypeError, match=r"params\[0\] must be a floating-point tensor, got dtype bool"):
            f(loss, [params[0].bool()] + list(params[1:]))
    with pytest.raises(ValueError, match="init must hold one tensor of each parameter's shape"):
        sharpness(loss, params, init=[torch.ones(2)])
