"""Tests of mathllm.depth: the three arrangements, and per-layer gradient norms against autograd's .grad."""
import pytest
import torch
import torch.nn.functional as F

from mathllm.depth import ARRANGEMENTS, DepthStack, NoResidualBlock, layer_grad_norms
from mathllm.layers import LayerNorm


def _inputs(seed=0, B=2, T=8, C=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, C, generator=g), torch.randn(B, T, C, generator=g)


def test_no_residual_block_is_norm_of_sublayer_without_the_input():
    torch.manual_seed(0)
    blk = NoResidualBlock(16, 4).double()
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    h = F.layer_norm(blk.attn(x), (16,), blk.norm_attn.weight, blk.norm_attn.bias, 1e-5)
    want = F.layer_norm(blk.mlp(h), (16,), blk.norm_mlp.weight, blk.norm_mlp.bias, 1e-5)
    torch.testing.assert_close(blk(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_arrangement_formulas(arrangement):
    torch.manual_seed(1)
    stack = DepthStack(arrangement, n_layer=3, n_embd=16, n_head=2).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = x
    for blk in stack.layers:
        ln = lambda z, n: F.layer_norm(z, (16,), n.weight, n.bias, 1e-5)  # noqa: E731
        if arrangement == "prenorm":  # x + f(Norm(x)), written with torch's layer_norm
            h = h + blk.attn(ln(h, blk.norm_attn))
            h = h + blk.mlp(ln(h, blk.norm_mlp))
        elif arrangement == "postnorm":
            h = ln(h + blk.attn(h), blk.norm_attn)
            h = ln(h + blk.mlp(h), blk.norm_mlp)
        else:
            h = ln(blk.attn(h), blk.norm_attn)
            h = ln(blk.mlp(h), blk.norm_mlp)
    if arrangement == "prenorm":
        h = F.layer_norm(h, (16,), stack.norm_f.weight, stack.norm_f.bias, 1e-5)
    torch.testing.assert_close(stack(x), h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_layer_grad_norms_match_backward(arrangement):
    torch.manual_seed(2)
    stack = DepthStack(arrangement, n_layer=4, n_embd=16, n_head=4).double()
    x, G = (t.double() for t in _inputs(3))
    norms = layer_grad_norms(stack, x, G)
    assert norms.shape == (4,) and norms.dtype == torch.float64
    assert all(p.grad is None for p in stack.parameters())  # left untouched
    (stack(x) * G).sum().backward()
    for n, layer in zip(norms, stack.layers):
        want = torch.cat([p.grad.flatten() for p in layer.parameters()]).norm()
        torch.testing.assert_close(n, want, rtol=1e-12, atol=0)


def test_gpt2_init_applied():
    torch.manual_seed(0)
    stack = DepthStack("prenorm", n_layer=8, n_embd=64, n_head=4)
    proj = torch.cat([p.detach().flatten() for n, p in stack.named_parameters() if n.endswith("proj.weight")])
    qkv = torch.cat([p.detach().flatten() for n, p in stack.named_parameters() if n.endswith("qkv.weight")])
    assert abs(proj.std().item() / (0.02 / 4) - 1) < 0.05  # 0.02 / sqrt(2 L), L = 8
    assert abs(qkv.std().item() / 0.02 - 1) < 0.05


@pytest.mark.numerics
@pytest.mark.parametrize("seed", range(3))
def test_residuals_carry_the_gradient_and_no_residual_loses_it(seed):
    # measured over seeds 0-9 (24 layers, C = 32): no_residual first/last 8e-13 .. 2e-11,
    # post- and pre-norm max/min over layers 1.01-1.04
    x, G = _inputs(seed, B=4, T=16, C=32)
    norms = {}
    for arrangement in ARRANGEMENTS:
        torch.manual_seed(seed)
        norms[arrangement] = layer_grad_norms(DepthStack(arrangement), x, G)
    assert norms["no_residual"][0] / norms["no_residual"][-1] < 1e-6
    for arrangement in ("postnorm", "prenorm"):
        assert norms[arrangement].max() / norms[arrangement].min() < 1.25


@pytest.mark.numerics
@pytest.mark.parametrize("seed", range(3))
def test_without_residuals_the_norms_epsilon_is_what_loses_the_gradient(seed):
    # measured over seeds 0-9: with eps = 1e-12 first/last is 0.12-3.4 (with 1e-5: below 2e-11)
    x, G = _inputs(seed, B=4, T=16, C=32)
    torch.manual_seed(seed)
    stack = DepthStack("no_residual", eps=1e-12)
    assert all(m.eps == 1e-12 for m in stack.modules() if isinstance(m, LayerNorm))
    norms = layer_grad_norms(stack, x, G)
    assert norms[0] / norms[-1] > 1e-2


@pytest.mark.parametrize("kwargs, err", [
    (dict(arrangement="prenorm", eps=0.0), ValueError),
    (dict(arrangement="sandwich"), ValueError), (dict(arrangement=3), TypeError),
    (dict(arrangement="prenorm", n_layer=0), ValueError), (dict(arrangement="prenorm", n_embd=30, n_head=4), ValueError),
])
def test_depth_stack_rejects_bad_config(kwargs, err):
    with pytest.raises(err):
        DepthStack(**kwargs)


def test_layer_grad_norms_rejects_bad_input():
    stack = DepthStack("prenorm", n_layer=2, n_embd=16, n_head=2)
    x, G = _inputs()
    with pytest.raises(TypeError, match="stack"):
        layer_grad_norms(torch.nn.Linear(2, 2), x, G)
    with pytest.raises(ValueError, match="upstream"):
        layer_grad_norms(stack, x, G[:, :3])
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, C\)"):
        layer_grad_norms(stack, x[..., :8], G)
