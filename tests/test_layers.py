"""mathllm.layers against torch: LayerNorm and its hand-derived backward, RMSNorm, the MLPs, the blocks."""
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm as normal

from mathllm.layers import (Block, FeedForward, LayerNorm, RMSNorm, layer_norm, layer_norm_backward, make_norm,
                            mlp_hidden, rms_norm)

SHAPES = [(7,), (3, 5), (2, 4, 16), (2, 3, 4, 8)]


# ---------------------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 1e-2, 1.0])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(shape, eps, affine):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1
    C = shape[-1]
    w = torch.randn(C, generator=g, dtype=torch.float64) if affine else None
    b = torch.randn(C, generator=g, dtype=torch.float64) if affine else None
    torch.testing.assert_close(layer_norm(x, w, b, eps), F.layer_norm(x, (C,), w, b, eps), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 0.5])
@pytest.mark.parametrize("with_weight", [True, False])
def test_layer_norm_backward_matches_autograd(shape, eps, with_weight):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).requires_grad_()
    C = shape[-1]
    w = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_() if with_weight else None
    b = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=torch.float64)
    y = F.layer_norm(x, (C,), w, b, eps)
    grads = torch.autograd.grad(y, [x, b] + ([w] if with_weight else []), dy)
    dx, dw, db = layer_norm_backward(dy, x.detach(), None if w is None else w.detach(), eps)
    torch.testing.assert_close(dx, grads[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(db, grads[1], rtol=1e-10, atol=1e-12)
    if with_weight:
        torch.testing.assert_close(dw, grads[2], rtol=1e-10, atol=1e-12)


def test_layer_norm_backward_is_orthogonal_to_shift_and_scale():
    """dx sums to 0 and is orthogonal to xhat: LayerNorm ignores shifting and scaling its input."""
    g = torch.Generator().manual_seed(2)
    x, dy = torch.randn(2, 5, 12, generator=g, dtype=torch.float64), torch.randn(2, 5, 12, generator=g, dtype=torch.float64)
    dx, _, _ = layer_norm_backward(dy, x, eps=1e-12)
    xhat = layer_norm(x, eps=1e-12)
    torch.testing.assert_close(dx.sum(-1), torch.zeros(2, 5, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close((dx * xhat).sum(-1), torch.zeros(2, 5, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_module_paths_agree_with_nn(bias):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 10, generator=g, dtype=torch.float64)
    ref = torch.nn.LayerNorm(10, eps=1e-5, bias=bias, dtype=torch.float64)
    outs = []
    for impl in ("torch", "manual"):
        ln = LayerNorm(10, bias=bias, impl=impl).double()
        with torch.no_grad():
            ln.weight.copy_(torch.randn(10, generator=torch.Generator().manual_seed(9)))
            ref.weight.copy_(ln.weight)
            if bias:
                ln.bias.copy_(torch.randn(10, generator=torch.Generator().manual_seed(8)))
                ref.bias.copy_(ln.bias)
        xi = x.clone().requires_grad_()
        y = ln(xi)
        y.pow(3).sum().backward()
        outs.append((y.detach(), xi.grad, ln.weight.grad))
        assert (ln.bias is None) == (not bias)
    torch.testing.assert_close(outs[0][0], ref(x), rtol=1e-12, atol=1e-12)
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- RMSNorm
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-6, 1e-2])
@pytest.mark.parametrize("impl", ["torch", "manual"])
def test_rms_norm_matches_nn(shape, eps, impl):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5
    C = shape[-1]
    ours, ref = RMSNorm(C, eps=eps, impl=impl).double(), torch.nn.RMSNorm(C, eps=eps, dtype=torch.float64)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(C, generator=g))
        ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rms_norm(x, None, eps).pow(2).mean(-1), (x.pow(2).mean(-1) / (x.pow(2).mean(-1) + eps)))


def test_make_norm_and_bad_inputs():
    assert isinstance(make_norm("layernorm", 8, bias=False), LayerNorm) and make_norm("layernorm", 8, bias=False).bias is None
    assert isinstance(make_norm("rmsnorm", 8), RMSNorm)
    with pytest.raises(ValueError, match="norm must be one of.*'batchnorm'"):
        make_norm("batchnorm", 8)
    with pytest.raises(ValueError, match="impl must be one of.*'fast'"):
        LayerNorm(8, impl="fast")
    with pytest.raises(ValueError, match="eps must be > 0, got 0"):
        LayerNorm(8, eps=0)
    with pytest.raises(ValueError, match=r"C=8, got shape \(2, 7\)"):
        LayerNorm(8, impl="manual")(torch.zeros(2, 7))
    with pytest.raises(ValueError, match=r"C=8, got shape \(3, 4\)"):
        RMSNorm(8, impl="manual")(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="same shape"):
        layer_norm_backward(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------------------- feed-forward
def _phi(x):  # the standard normal CDF, from scipy
    return torch.from_numpy(normal.cdf(x.detach().numpy()))


@pytest.mark.parametrize("kind", ["relu", "gelu", "gelu_tanh", "swiglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_feedforward_formula(kind, bias):
    C = 12
    ff = FeedForward(C, kind=kind, bias=bias).double()
    x = torch.randn(2, 5, C, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = ff.fc(x)
    if kind == "relu":
        a = h.clamp_min(0)
    elif kind == "gelu":
        a = h * _phi(h)  # GELU(x) = x Phi(x)
    elif kind == "gelu_tanh":
        a = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    else:
        u = ff.gate(x)
        a = u * torch.sigmoid(u) * h  # silu(x W_gate) * (x W_fc)
    torch.testing.assert_close(ff(x), ff.proj(a), rtol=1e-12, atol=1e-12)
    H = mlp_hidden(C, kind)
    assert ff.fc.out_features == H and (H == 4 * C if kind != "swiglu" else H % 8 == 0 and abs(H - 8 * C / 3) < 8)
    weights = sum(p.numel() for n, p in ff.named_parameters() if n.endswith("weight"))
    assert weights == (3 if kind == "swiglu" else 2) * C * H


def test_gelu_tanh_is_close_to_exact_gelu():
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    gap = (F.gelu(x) - F.gelu(x, approximate="tanh")).abs().max().item()
    assert 1e-5 < gap < 1e-3  # close, but not equal: GPT-2's weights need the tanh form


def test_feedforward_bad_inputs():
    with pytest.raises(ValueError, match="mlp must be one of.*'tanh'"):
        FeedForward(8, kind="tanh")
    with pytest.raises(ValueError, match="hidden must be a positive int, got 0"):
        FeedForward(8, hidden=0)


# ---------------------------------------------------------------------------- blocks
def _block_pair(prenorm, cross=False, causal=True):
    torch.manual_seed(0)
    return Block(16, 4, causal=causal, cross_attention=cross, prenorm=prenorm, attn_impl="manual").double().eval()


@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("cross", [False, True])
def test_block_is_the_residual_formula(prenorm, cross):
    blk = _block_pair(prenorm, cross)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    ctx = torch.randn(2, 7, 16, generator=g, dtype=torch.float64) if cross else None
    h = x
    if prenorm:
        h = h + blk.attn(blk.norm_attn(h))
        if cross:
            h = h + blk.cross(blk.norm_cross(h), context=ctx)
        h = h + blk.mlp(blk.norm_mlp(h))
    else:
        h = blk.norm_attn(h + blk.attn(h))
        if cross:
            h = blk.norm_cross(h + blk.cross(h, context=ctx))
        h = blk.norm_mlp(h + blk.mlp(h))
    torch.testing.assert_close(blk(x, context=ctx), h, rtol=1e-12, atol=1e-12)
    if not prenorm:  # a post-norm block ends in a LayerNorm: each position has mean 0, variance 1
        torch.testing.assert_close(h.mean(-1), torch.zeros(2, 5, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize("prenorm", [True, False])
def test_causal_block_does_not_look_ahead(prenorm):
    blk = _block_pair(prenorm)
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    y = x.clone()
    y[:, 4:] += torch.randn(1, 2, 16, dtype=torch.float64)  # change the future (not by a constant: LayerNorm would remove it)
    torch.testing.assert_close(blk(x)[:, :4], blk(y)[:, :4], rtol=1e-12, atol=1e-12)
    enc = _block_pair(prenorm, causal=False)  # an encoder block sees everything
    assert not torch.allclose(enc(x)[:, :4], enc(y)[:, :4])


def test_block_context_errors():
    with pytest.raises(ValueError, match="needs context"):
        _block_pair(True, cross=True)(torch.zeros(1, 3, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="context given: True"):
        _block_pair(True)(torch.zeros(1, 3, 16, dtype=torch.float64), context=torch.zeros(1, 2, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_embd=16 must be divisible by n_head=3"):
        Block(16, 3)


# ---------------------------------------------------------------------------- half precision (issue 15)
# one float16 ulp is 2^-10 relative (bfloat16: 2^-7); torch computes the statistics in float32 and
# rounds the output once, so the two results differ by at most one rounding: allow two ulps
HALF_TOL = {torch.float16: dict(rtol=2 * 2.0 ** -10, atol=2 * 2.0 ** -10),
            torch.bfloat16: dict(rtol=2 * 2.0 ** -7, atol=2 * 2.0 ** -7)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("std", [1.0, 300.0])
def test_norms_in_half_precision_match_torch(dtype, std):
    """Activations of std 300: x^2 = 9e4 overflows float16 (max 65504), so the statistics are taken in float32."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 64, generator=g) * std + 0.5 * std).to(dtype)
    w = (1 + 0.1 * torch.randn(64, generator=g)).to(dtype)
    b = (0.1 * torch.randn(64, generator=g)).to(dtype)
    y = layer_norm(x, w, b)
    assert y.dtype == dtype and y.abs().amax() > 0.5
    torch.testing.assert_close(y, F.layer_norm(x, (64,), w, b, 1e-5), **HALF_TOL[dtype])
    y = rms_norm(x, w)
    assert y.dtype == dtype and y.abs().amax() > 0.5
    torch.testing.assert_close(y, F.rms_norm(x, (64,), w, 1e-6), **HALF_TOL[dtype])


@pytest.mark.parametrize("prenorm", [True, False])
def test_block_takes_leading_dimensions_and_positions(prenorm):
    """Issue 17: a block on x (..., T, C) equals the block on each (T, C) slice (float64: the same
    arithmetic, 1e-12), and ``positions`` reach its rotary attention: positions 0..T-1 are the default."""
    from mathllm.positional import RoPE
    torch.manual_seed(0)
    block = Block(16, 2, causal=True, prenorm=prenorm, rope=RoPE(8, 32)).double().eval()
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    y = block(x)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(y[i, j], block(x[i, j]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block(x, positions=torch.arange(5)), y, rtol=0, atol=0)
    # RoPE is relative: shifting every position changes nothing but rounding (cos, sin kept in float32) ...
    torch.testing.assert_close(block(x, positions=torch.arange(10, 15)), y, rtol=1e-5, atol=1e-5)
    # ... while other gaps between positions change the scores
    assert (block(x, positions=torch.tensor([0, 0, 1, 2, 3])) - y).abs().max() > 1e-3
