"""Tests for mathllm.attention: against F.scaled_dot_product_attention, torch.autograd and torch.nn.MultiheadAttention."""
import math

import pytest
import torch
import torch.nn.functional as F

from mathllm import attention as A
from mathllm.attention import (KVCache, MultiHeadAttention, attention_backward, causal_mask,
                               scaled_dot_product_attention, softmax_jacobian)
from mathllm.positional import RoPE

D = dict(dtype=torch.float64)


def qkv(*shape, S=None, hv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    *lead, T, hs = shape
    S = T if S is None else S
    q = torch.randn(*lead, T, hs, generator=g, **D)
    k = torch.randn(*lead, S, hs, generator=g, **D)
    v = torch.randn(*lead, S, hv or hs, generator=g, **D)
    return q, k, v


# ---------------------------------------------------------------------------- one head
def test_causal_mask_known_answer():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    # 2 new queries after 3 cached keys: query 0 sits at position 3
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))


@pytest.mark.parametrize("shape,S,hv", [((5, 4), None, None), ((2, 3, 7, 8), 9, 5), ((1, 1, 1, 16), 4, 16)])
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_torch_forward_backward(shape, S, hv, masked):
    q, k, v = qkv(*shape, S=S, hv=hv)
    T, S = q.shape[-2], k.shape[-2]
    mask = causal_mask(T, S) if masked else None
    outs, grads = [], []
    for impl in ("manual", "sdpa", "torch"):
        a, b, c = (t.clone().requires_grad_() for t in (q, k, v))
        y = (F.scaled_dot_product_attention(a, b, c, attn_mask=mask) if impl == "torch"
             else scaled_dot_product_attention(a, b, c, mask=mask, impl=impl))
        y.backward(torch.cos(torch.arange(y.numel(), **D)).view_as(y))
        outs.append(y)
        grads.append((a.grad, b.grad, c.grad))
    for y, g in zip(outs[:2], grads[:2]):
        torch.testing.assert_close(y, outs[2], rtol=1e-12, atol=1e-12)
        for gi, gr in zip(g, grads[2]):
            torch.testing.assert_close(gi, gr, rtol=1e-10, atol=1e-12)


def test_sdpa_rows_are_convex_combinations_of_values():
    q, k, v = qkv(6, 4)
    y = scaled_dot_product_attention(q, k, torch.ones_like(v))
    torch.testing.assert_close(y, torch.ones_like(y), rtol=0, atol=1e-14)
    # the first query under a causal mask sees only the first value
    y = scaled_dot_product_attention(q, k, v, causal_mask(6))
    torch.testing.assert_close(y[0], v[0], rtol=0, atol=1e-14)


def test_sdpa_bad_input():
    q, k, v = qkv(4, 8)
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 4))
    with pytest.raises(ValueError, match="impl must be"):
        scaled_dot_product_attention(q, k, v, impl="flash")
    with pytest.raises(ValueError, match="head size"):
        scaled_dot_product_attention(q, k[:, :4], v)
    with pytest.raises(ValueError, match="same number of positions"):
        scaled_dot_product_attention(q, k, v[:3])
    with pytest.raises(TypeError, match="torch.Tensor"):
        scaled_dot_product_attention(q.tolist(), k, v)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_softmax_jacobian_against_autograd(n):
    x = torch.randn(2, n, **D)
    J = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), x[0])
    torch.testing.assert_close(softmax_jacobian(torch.softmax(x[0], -1)), J, rtol=1e-12, atol=1e-14)
    # known answer: uniform p = 1/n gives I/n - 1/n^2
    p = torch.full((n,), 1.0 / n, **D)
    torch.testing.assert_close(softmax_jacobian(p), torch.eye(n, **D) / n - 1.0 / n**2)
    # rows sum to zero: softmax outputs always sum to one
    torch.testing.assert_close(softmax_jacobian(torch.softmax(x, -1)).sum(-1), torch.zeros(2, n, **D))


@pytest.mark.parametrize("shape,S,hv,masked", [((5, 4), None, None, False), ((2, 3, 6, 8), 9, 5, True),
                                               ((3, 7, 2), None, 3, True)])
def test_attention_backward_against_autograd(shape, S, hv, masked):
    q, k, v = qkv(*shape, S=S, hv=hv, seed=1)
    mask = causal_mask(q.shape[-2], k.shape[-2]) if masked else None
    a, b, c = (t.clone().requires_grad_() for t in (q, k, v))
    y = scaled_dot_product_attention(a, b, c, mask)
    dout = torch.randn_like(y)
    y.backward(dout)
    for ours, ref in zip(attention_backward(q, k, v, dout, mask), (a.grad, b.grad, c.grad)):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- many heads
def copy_to_torch(m: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(m.n_embd, m.n_head, bias=m.qkv.bias is not None, batch_first=True, **D)
    with torch.no_grad():
        ref.in_proj_weight.copy_(m.qkv.weight)
        ref.out_proj.weight.copy_(m.proj.weight)
        if m.qkv.bias is not None:
            ref.in_proj_bias.copy_(m.qkv.bias)
            ref.out_proj.bias.copy_(m.proj.bias)
    return ref


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("C,nh,bias", [(16, 1, True), (32, 4, True), (24, 6, False)])
def test_mha_matches_torch_multihead_attention(impl, causal, C, nh, bias):
    torch.manual_seed(0)
    m = MultiHeadAttention(C, nh, causal=causal, bias=bias, impl=impl).double()
    ref = copy_to_torch(m)
    x = torch.randn(3, 7, C, **D)
    y = m(x)
    y_ref, _ = ref(x, x, x, attn_mask=~causal_mask(7) if causal else None, need_weights=False)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y)
    y.backward(dy)
    y_ref.backward(dy)
    torch.testing.assert_close(m.qkv.weight.grad, ref.in_proj_weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.proj.weight.grad, ref.out_proj.weight.grad, rtol=1e-10, atol=1e-12)
    if bias:
        torch.testing.assert_close(m.qkv.bias.grad, ref.in_proj_bias.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_cross_attention_with_key_padding_matches_torch(impl):
    torch.manual_seed(1)
    m = MultiHeadAttention(32, 4, causal=True, impl=impl).double()  # causal is ignored across sequences
    ref = copy_to_torch(m)
    x, ctx = torch.randn(2, 5, 32, **D), torch.randn(2, 9, 32, **D)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[0, 6:] = True  # the first source sentence has 6 tokens, then padding
    y = m(x, context=ctx, mask=~pad[:, None, None, :])  # (B, 1, 1, S): True = may attend
    y_ref, _ = ref(x, ctx, ctx, key_padding_mask=pad, need_weights=False)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    # padding really is ignored: changing padded positions changes nothing
    ctx2 = ctx.clone()
    ctx2[0, 6:] = 100.0
    torch.testing.assert_close(m(x, context=ctx2, mask=~pad[:, None, None, :])[0], y[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_manual_and_sdpa_agree_with_masks_forward_backward(causal):
    torch.manual_seed(2)
    ms = [MultiHeadAttention(32, 4, causal=causal, impl=impl).double() for impl in ("manual", "sdpa")]
    ms[1].load_state_dict(ms[0].state_dict())
    x = torch.randn(2, 8, 32, **D)
    mask = torch.ones(2, 1, 1, 8, dtype=torch.bool)
    mask[1, ..., 5:] = False  # right padding: every query keeps at least key 0
    ys = [m(x, mask=mask) for m in ms]
    torch.testing.assert_close(ys[0], ys[1], rtol=1e-12, atol=1e-12)
    for y in ys:
        y.square().sum().backward()
    torch.testing.assert_close(ms[0].qkv.weight.grad, ms[1].qkv.weight.grad, rtol=1e-10, atol=1e-12)


def test_heads_are_a_reshape_of_per_head_attention():
    torch.manual_seed(3)
    C, nh = 24, 3
    hs = C // nh
    m = MultiHeadAttention(C, nh, causal=True, impl="manual").double()
    x = torch.randn(2, 6, C, **D)
    Wq, Wk, Wv = m.qkv.weight.split(C)
    bq, bk, bv = m.qkv.bias.split(C)
    heads = []
    for h in range(nh):  # the loop the module avoids
        s = slice(h * hs, (h + 1) * hs)
        q, k, v = x @ Wq[s].T + bq[s], x @ Wk[s].T + bk[s], x @ Wv[s].T + bv[s]
        heads.append(scaled_dot_product_attention(q, k, v, causal_mask(6)))
    torch.testing.assert_close(m(x), m.proj(torch.cat(heads, -1)), rtol=1e-12, atol=1e-12)


def test_sdpa_fast_path_uses_is_causal_without_a_mask(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(A.F, "scaled_dot_product_attention", spy)
    m = MultiHeadAttention(16, 2, causal=True)
    m(torch.randn(1, 5, 16))
    assert calls[-1].get("is_causal") is True and calls[-1].get("attn_mask") is None
    cache = KVCache()
    m(torch.randn(1, 5, 16), kv_cache=cache)  # prefill of an empty cache: still the fast path
    assert calls[-1].get("is_causal") is True
    m(torch.randn(1, 1, 16), kv_cache=cache)  # a decoding step: explicit mask over the cache
    assert calls[-1].get("attn_mask") is not None and not calls[-1].get("is_causal", False)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("use_rope", [False, True])
@pytest.mark.parametrize("chunks", [(1,) * 9, (4, 1, 1, 3), (9,)])
def test_kv_cache_incremental_equals_full(impl, use_rope, chunks):
    torch.manual_seed(4)
    m = MultiHeadAttention(32, 4, causal=True, impl=impl, rope=RoPE(8, 16) if use_rope else None).double().eval()
    x = torch.randn(2, 9, 32, **D)
    full = m(x)
    cache, outs, t = KVCache(), [], 0
    for n in chunks:
        outs.append(m(x[:, t:t + n], kv_cache=cache))
        t += n
        assert cache.length == t and cache.k.shape == (2, 4, t, 8)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-12, atol=1e-12)
    cache.reset()
    assert cache.length == 0


def test_cross_attention_cache_reuses_encoder_keys():
    torch.manual_seed(5)
    m = MultiHeadAttention(16, 2).double()
    ctx = torch.randn(1, 7, 16, **D)
    x = torch.randn(1, 4, 16, **D)
    cache = KVCache()
    ys = [m(x[:, t:t + 1], context=ctx, kv_cache=cache) for t in range(4)]
    assert cache.length == 7  # filled once, not appended to
    torch.testing.assert_close(torch.cat(ys, 1), m(x, context=ctx), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("t", [0, 3, 6])
def test_causal_mask_does_not_leak_the_future(impl, t):
    torch.manual_seed(6)
    m = MultiHeadAttention(16, 4, causal=True, impl=impl).double()
    x = torch.randn(2, 8, 16, **D)
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(2, 7 - t, 16, **D)
    y, y2 = m(x), m(x2)
    torch.testing.assert_close(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=1e-14)
    assert (y2[:, t + 1:] - y[:, t + 1:]).abs().max() > 1e-3  # the later outputs did change
    # the same by gradients: output t does not depend on input t + 1
    xg = x.clone().requires_grad_()
    m(xg)[:, t].sum().backward()
    assert xg.grad[:, t + 1:].abs().max() == 0 and xg.grad[:, t].abs().max() > 0


def test_without_causal_mask_the_future_leaks():
    m = MultiHeadAttention(16, 4, causal=False).double()
    x = torch.randn(1, 5, 16, **D)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert (m(x2)[:, 0] - m(x)[:, 0]).abs().max() > 1e-6


def test_dropout_only_in_training():
    torch.manual_seed(7)
    m = MultiHeadAttention(16, 2, causal=True, dropout=0.5)
    x = torch.randn(2, 6, 16)
    m.train()
    assert not torch.allclose(m(x), m(x))
    m.eval()
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)


def test_mha_bad_input():
    with pytest.raises(ValueError, match="n_embd=30 must be divisible by n_head=4"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="impl must be"):
        MultiHeadAttention(32, 4, impl="flash")
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(32, 4, dropout=1.0)
    with pytest.raises(ValueError, match="rope has head size 4"):
        MultiHeadAttention(32, 4, rope=RoPE(4))
    m = MultiHeadAttention(32, 4)
    with pytest.raises(ValueError, match=r"C=32, got \(2, 5, 16\)"):
        m(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="context must have shape"):
        m(torch.randn(2, 5, 32), context=torch.randn(3, 5, 32))
    with pytest.raises(TypeError, match="boolean"):
        m(torch.randn(2, 5, 32), mask=torch.ones(5, 5))
    cache = KVCache()
    cache.append(torch.zeros(1, 4, 2, 8), torch.zeros(1, 4, 2, 8))
    with pytest.raises(ValueError, match="cannot append"):
        cache.append(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8))
    assert "length=2" in repr(cache)


def test_scaling_keeps_score_variance_one():
    # Var(q . k) = hs for unit-variance entries; dividing by sqrt(hs) brings it back to 1
    g = torch.Generator().manual_seed(8)
    for hs in (4, 64, 256):
        q, k = torch.randn(20000, hs, generator=g, **D), torch.randn(20000, hs, generator=g, **D)
        s = (q * k).sum(-1)
        assert abs(s.var().item() / hs - 1) < 0.05
        assert abs((s / math.sqrt(hs)).var().item() - 1) < 0.05


# ---------------------------------------------------------------------------- fully masked rows (issue 15)
def _mask_with_empty_rows(T, S):
    """Random (T, S) mask whose rows 1 and T - 1 may attend to nothing."""
    mask = torch.rand(T, S, generator=torch.Generator().manual_seed(3)) < 0.6
    mask[0, 0] = True
    mask[1] = False
    mask[-1] = False
    return mask


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_fully_masked_rows_match_torch_sdpa(impl):
    """A query that may attend to no key: torch 2.13's CPU SDPA returns 0 and a zero gradient; so do we."""
    q, k, v = qkv(2, 5, 4, S=6, hv=3, seed=2)
    mask = _mask_with_empty_rows(5, 6)
    outs, grads = [], []
    for which in (impl, "torch"):
        a, b, c = (t.clone().requires_grad_() for t in (q, k, v))
        y = (F.scaled_dot_product_attention(a, b, c, attn_mask=mask) if which == "torch"
             else scaled_dot_product_attention(a, b, c, mask=mask, impl=which))
        y.backward(torch.cos(torch.arange(y.numel(), **D)).view_as(y))
        outs.append(y)
        grads.append((a.grad, b.grad, c.grad))
    assert torch.isfinite(outs[0]).all() and (outs[0][:, [1, 4]] == 0).all()
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)  # float64: rounding only
    for g, gr in zip(*grads):
        torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-12)


def test_attention_backward_on_fully_masked_rows_matches_autograd():
    q, k, v = qkv(5, 4, S=6, seed=4)
    mask = _mask_with_empty_rows(5, 6)
    a, b, c = (t.clone().requires_grad_() for t in (q, k, v))
    dout = torch.randn(5, 4, generator=torch.Generator().manual_seed(5), **D)
    F.scaled_dot_product_attention(a, b, c, attn_mask=mask).backward(dout)
    for ours, ref in zip(attention_backward(q, k, v, dout, mask), (a.grad, b.grad, c.grad)):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_mha_manual_and_sdpa_agree_on_fully_masked_rows(impl):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, impl=impl).double()
    ref = MultiHeadAttention(8, 2, impl="sdpa").double()
    ref.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 8, **D)
    mask = _mask_with_empty_rows(5, 5)
    y = mha(x, mask=mask)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, ref(x, mask=mask), rtol=1e-12, atol=1e-12)


def test_causal_mask_with_fewer_keys_than_queries_is_refused():
    """The queries are the last T of S positions, so S < T would leave the first T - S with no key."""
    with pytest.raises(ValueError, match=r"causal_mask needs S >= T .* got T=5, S=3"):
        causal_mask(5, 3)
    with pytest.raises(ValueError, match="T must be a positive int"):
        causal_mask(0)


# ---------------------------------------------------------------------------- issue 17: leading dimensions, positions
def _reference_mha(m: MultiHeadAttention, x, mask=None, causal=False, rotate=None):
    """Multi-head attention written with torch only: F.linear, a reshape to heads, an optional
    rotation of q and k, F.scaled_dot_product_attention, the merge and the output projection."""
    *lead, T, C = x.shape
    nh, hs = m.n_head, C // m.n_head
    q, k, v = F.linear(x, m.qkv.weight, m.qkv.bias).split(C, dim=-1)
    q, k, v = (t.reshape(*lead, T, nh, hs).movedim(-2, -3) for t in (q, k, v))  # (..., nh, T, hs)
    if rotate is not None:
        q, k = rotate(q), rotate(k)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
    return F.linear(y.movedim(-3, -2).reshape(*lead, T, C), m.proj.weight, m.proj.bias)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_mha_takes_any_leading_dimensions(impl, lead, masked):
    """x (..., T, C) against torch's attention on the same leading dimensions; float64, so only the
    order of additions differs (1e-12). The mask (a per-key padding pattern) forces the explicit path."""
    torch.manual_seed(0)
    m = MultiHeadAttention(24, 3, causal=True, impl=impl).double()
    x = torch.randn(*lead, 6, 24, **D)
    mask = None
    if masked:
        mask = torch.rand(*lead, 1, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.3  # (..., 1, T, S)
        mask |= torch.eye(6, dtype=torch.bool)  # every query keeps one key
    ref_mask = None if mask is None else mask & causal_mask(6)
    y = m(x, mask=mask)
    assert y.shape == x.shape
    torch.testing.assert_close(y, _reference_mha(m, x, ref_mask, causal=True), rtol=1e-12, atol=1e-12)


def _literal_rotation(positions, base=10000.0):
    """Rotate pairs (2i, 2i+1) of the last dimension by m theta_i, theta_i = base^(-2i/hs), m from
    ``positions`` (..., T): a float64 reference written from RoFormer's eq. 34, not from RoPE."""
    def rotate(x):  # (..., nh, T, hs)
        hs = x.shape[-1]
        theta = base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
        pos = positions.double()
        angle = (pos if pos.dim() == 1 else pos.unsqueeze(-2))[..., None] * theta  # (..., 1|nh, T, hs/2)
        c, s = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    return rotate


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_mha_with_explicit_positions_matches_a_literal_rotation(impl):
    """``positions`` (B, T) or (T,), as Hugging Face's position_ids: q and k rotated by m theta_i for the
    given m, then torch's attention. RoPE keeps cos and sin in float32: rows agree to about 1e-6."""
    torch.manual_seed(0)
    m = MultiHeadAttention(32, 4, causal=True, impl=impl, rope=RoPE(8, 64)).double()
    x = torch.randn(2, 5, 32, **D)
    positions = torch.tensor([[0, 0, 1, 2, 3], [17, 18, 19, 40, 63]])  # left padding; a packed jump
    y = m(x, positions=positions)
    ref = _reference_mha(m, x, causal=True, rotate=_literal_rotation(positions))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    one = torch.tensor([4, 5, 6, 7, 8])  # (T,): the same positions for every sequence
    torch.testing.assert_close(m(x, positions=one), _reference_mha(m, x, causal=True, rotate=_literal_rotation(one)),
                               rtol=1e-5, atol=1e-6)
    # the default is unchanged: token t at position t, bit for bit
    torch.testing.assert_close(m(x), m(x, positions=torch.arange(5)), rtol=0, atol=0)
    x4 = torch.randn(2, 3, 5, 32, **D)  # (B, beams, T, C) with positions (B, beams, T)
    pos4 = torch.randint(0, 64, (2, 3, 5), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(m(x4, positions=pos4),
                               _reference_mha(m, x4, causal=True, rotate=_literal_rotation(pos4)), rtol=1e-5, atol=1e-6)


def test_positions_need_rotary_self_attention():
    m = MultiHeadAttention(16, 2, causal=True)
    with pytest.raises(ValueError, match="positions rotate queries and keys: they need self-attention with rope"):
        m(torch.randn(1, 4, 16), positions=torch.arange(4))
    r = MultiHeadAttention(16, 2, causal=True, rope=RoPE(8, 8))
    with pytest.raises(ValueError, match=r"positions must be in \[0, 8\)"):
        r(torch.randn(1, 4, 16), positions=torch.tensor([0, 1, 2, 8]))
    with pytest.raises(TypeError, match="positions must be a torch.Tensor, got list"):
        r(torch.randn(1, 4, 16), positions=[0, 1, 2, 3])


@pytest.mark.parametrize("lead", [(), (2,), (2, 3, 2)])
def test_sdpa_takes_any_leading_dimensions_and_dropout(lead):
    """The per-head function on (..., nh, T, hs) equals torch's; dropout_p=0 changes nothing and an
    invalid dropout_p is refused."""
    q, k, v = qkv(*lead, 4, 5, 8, S=6, seed=2)
    mask = causal_mask(5, 6)
    for impl in ("manual", "sdpa"):
        torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask, impl=impl, dropout_p=0.0),
                                   F.scaled_dot_product_attention(q, k, v, attn_mask=mask), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\), got 1.0"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


def test_manual_dropout_keeps_the_expected_output():
    """Inverted dropout on the weights: E[dropout(P)] = P, so the mean of N draws approaches P V. Each
    entry's error has standard deviation sigma = sqrt(p / (1 - p) / N * sum_j P_j^2 V_j^2) (independent
    Bernoulli masks); 6 sigma bounds all 20 entries for any draw but with probability about 1e-8."""
    q, k, v = qkv(5, 4, seed=4)
    N, p = 4000, 0.5
    torch.manual_seed(0)
    mean = torch.stack([scaled_dot_product_attention(q, k, v, dropout_p=p) for _ in range(N)]).mean(0)
    P = torch.softmax(q @ k.T / 2.0, dim=-1)  # (T, S), hs = 4
    sigma = (p / (1 - p) / N * (P ** 2) @ (v ** 2)).sqrt()  # (T, S) x (S, hv) -> (T, hv)
    assert ((mean - P @ v).abs() <= 6 * sigma).all()


# ---------------------------------------------------------------------------- issue 14: one definition
@pytest.mark.parametrize("impl,masked", [("manual", False), ("manual", True), ("sdpa", True)])
def test_mha_runs_the_chapter_attention_function(monkeypatch, impl, masked):
    """The readable path (and every masked call) of MultiHeadAttention is scaled_dot_product_attention of
    this module, not a second copy of the formula: a spy sees each call, with the heads' q, k, v."""
    calls = []
    real = A.scaled_dot_product_attention

    def spy(q, k, v, mask=None, **kw):
        calls.append((q.shape, kw.get("impl")))
        return real(q, k, v, mask, **kw)

    monkeypatch.setattr(A, "scaled_dot_product_attention", spy)
    m = MultiHeadAttention(16, 2, causal=True, impl=impl)
    m(torch.randn(3, 5, 16), mask=torch.ones(5, 5, dtype=torch.bool) if masked else None)
    assert calls == [((3, 2, 5, 8), impl)]


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_kv_cache_with_leading_dimensions_and_positions(impl):
    """(B, beams, T, C) decoded in chunks with a cache equals the full pass; with explicit positions the
    chunks carry their slice of the positions (the cache holds keys already rotated)."""
    torch.manual_seed(5)
    m = MultiHeadAttention(32, 4, causal=True, impl=impl, rope=RoPE(8, 64)).double().eval()
    x = torch.randn(2, 3, 7, 32, **D)
    positions = torch.tensor([0, 0, 1, 2, 3, 4, 5]).expand(2, 3, 7)  # one left-padding slot
    for pos in (None, positions):
        full = m(x) if pos is None else m(x, positions=pos)
        cache, outs = KVCache(), []
        for a, b in ((0, 4), (4, 5), (5, 7)):
            outs.append(m(x[..., a:b, :], kv_cache=cache, positions=None if pos is None else pos[..., a:b]))
        assert cache.k.shape == (2, 3, 4, 7, 8)
        torch.testing.assert_close(torch.cat(outs, -2), full, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- padding masks
def test_padding_mask_known_answer():
    got = A.padding_mask(torch.tensor([3, 1, 4]), 4)
    want = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert got.dtype == torch.bool and torch.equal(got, want)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_padded_batch_equals_each_sequence_alone_and_torch(impl):
    g = torch.Generator().manual_seed(0)
    lengths, T, C, nh = torch.tensor([7, 4, 1, 5]), 7, 16, 2
    mha = MultiHeadAttention(C, nh, causal=True, impl=impl).double()
    x = torch.randn(4, T, C, dtype=torch.float64, generator=g)
    keys = A.padding_mask(lengths, T)[:, None, None, :]  # (B, 1, 1, T)
    y = mha(x, mask=keys)  # the module ands in the causal mask
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(y[b, :n], mha(x[b:b + 1, :n])[0], rtol=1e-12, atol=1e-12)
    q, k, v = (torch.randn(4, nh, T, 8, dtype=torch.float64, generator=g) for _ in range(3))
    both = keys & causal_mask(T)  # (B, 1, T, T)
    torch.testing.assert_close(A.scaled_dot_product_attention(q, k, v, both, impl=impl),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=both), rtol=1e-12, atol=1e-12)


def test_fully_masked_rows_give_zeros_not_nan():
    lengths, T = torch.tensor([2, 4]), 4
    pad = A.padding_mask(lengths, T)
    mask = pad[:, None, :, None] & pad[:, None, None, :]  # padding queries may attend to nothing
    q, k, v = (torch.randn(2, 1, T, 3, dtype=torch.float64) for _ in range(3))
    out = A.scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and (out[0, 0, 2:] == 0).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("lengths, T, err", [
    (torch.tensor([0, 2]), 3, ValueError), (torch.tensor([4]), 3, ValueError),
    (torch.tensor([1.0]), 3, TypeError), (torch.tensor([[1]]), 3, TypeError), ([1, 2], 3, TypeError),
])
def test_padding_mask_rejects_bad_lengths(lengths, T, err):
    with pytest.raises(err, match="lengths"):
        A.padding_mask(lengths, T)
