"""Tests for mathllm.positional: sinusoidal encoding (formula, sympy shift rotation) and RoPE (complex form, Llama)."""
import math

import pytest
import sympy as sp
import torch

from mathllm.positional import (RoPE, apply_rope, frequencies, pairs_to_half, rope_angles, rope_matrix,
                                sinusoidal_encoding, sinusoidal_shift_matrix)

D = dict(dtype=torch.float64)


# ---------------------------------------------------------------------------- sinusoidal
@pytest.mark.parametrize("T,C,base", [(5, 4, 10000.0), (17, 16, 10000.0), (3, 2, 100.0)])
def test_sinusoidal_matches_the_formula(T, C, base):
    pe = sinusoidal_encoding(T, C, base)
    assert pe.shape == (T, C) and pe.dtype == torch.float32
    ref = torch.empty(T, C, **D)
    for p in range(T):
        for i in range(C // 2):
            ref[p, 2 * i] = math.sin(p / base ** (2 * i / C))
            ref[p, 2 * i + 1] = math.cos(p / base ** (2 * i / C))
    torch.testing.assert_close(pe.double(), ref, rtol=0, atol=1e-6)
    # position 0: sin 0 = 0 and cos 0 = 1
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * (C // 2)))


def test_shift_rotation_derived_in_sympy():
    p, k, w = sp.symbols("p k omega", real=True)
    pe = lambda pos: sp.Matrix([sp.sin(pos * w), sp.cos(pos * w)])  # noqa: E731
    M = sp.Matrix([[sp.cos(k * w), sp.sin(k * w)], [-sp.sin(k * w), sp.cos(k * w)]])
    assert sp.simplify(sp.expand_trig(pe(p + k) - M * pe(p))) == sp.zeros(2, 1)
    assert sp.simplify(M.T * M) == sp.eye(2)  # a rotation
    f = sp.lambdify((k, w), M)
    om = frequencies(8)[1].item()
    torch.testing.assert_close(sinusoidal_shift_matrix(3, 8)[2:4, 2:4].double(), torch.tensor(f(3, om), **D),
                               rtol=0, atol=1e-7)


@pytest.mark.parametrize("k", [0, 1, 5, 40])
@pytest.mark.parametrize("C", [4, 32])
def test_shift_matrix_moves_every_position(k, C):
    pe = sinusoidal_encoding(60, C).double()
    M = sinusoidal_shift_matrix(k, C).double()
    torch.testing.assert_close(pe[:20] @ M.T, pe[k:k + 20], rtol=0, atol=1e-5)  # PE(p + k) = M_k PE(p)
    torch.testing.assert_close(M @ M.T, torch.eye(C, **D), rtol=0, atol=1e-6)


def test_sinusoidal_dot_product_depends_only_on_offset():
    pe = sinusoidal_encoding(50, 16).double()
    G = pe @ pe.T  # (T, T): PE(p) . PE(q) = sum_i cos((p - q) omega_i)
    offsets = torch.arange(50)[:, None] - torch.arange(50)[None, :]
    torch.testing.assert_close(G, torch.cos(offsets[..., None] * frequencies(16)).sum(-1), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------- rotary
@pytest.mark.parametrize("hs", [2, 8, 64])
def test_rope_matrix_is_a_rotation_with_relative_composition(hs):
    for m, n in [(0, 0), (3, 7), (11, 2), (100, 40)]:
        Rm, Rn = rope_matrix(m, hs), rope_matrix(n, hs)
        torch.testing.assert_close(Rm.T @ Rm, torch.eye(hs, **D), rtol=0, atol=1e-12)
        torch.testing.assert_close(Rm.T @ Rn, rope_matrix(n - m, hs), rtol=0, atol=1e-12)


def test_rope_relative_property_in_sympy():
    m, n, t = sp.symbols("m n theta", real=True)
    q1, q2, k1, k2 = sp.symbols("q1 q2 k1 k2", real=True)
    R = lambda a: sp.Matrix([[sp.cos(a * t), -sp.sin(a * t)], [sp.sin(a * t), sp.cos(a * t)]])  # noqa: E731
    q, k = sp.Matrix([q1, q2]), sp.Matrix([k1, k2])
    lhs = ((R(m) * q).T * (R(n) * k))[0]
    rhs = (q.T * R(n - m) * k)[0]
    assert sp.simplify(sp.expand_trig(lhs - rhs)) == 0


@pytest.mark.parametrize("hs,T,offset", [(8, 5, 0), (16, 7, 3), (2, 1, 9)])
def test_rope_pairs_equals_matrix_and_complex_form(hs, T, offset):
    x = torch.randn(2, 3, T, hs, **D)
    rope = RoPE(hs, max_len=32).double()
    y = rope(x, offset=offset)
    ref = torch.stack([x[..., t, :] @ rope_matrix(offset + t, hs).T for t in range(T)], dim=-2)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)  # buffers are float32
    # RoFormer / Meta Llama form: adjacent pairs are complex numbers multiplied by e^{i m theta}
    z = torch.view_as_complex(x.reshape(2, 3, T, hs // 2, 2).contiguous())
    ang = rope_angles(T, hs, offset=offset)
    ref_c = torch.view_as_real(z * torch.polar(torch.ones_like(ang), ang)).flatten(-2)
    torch.testing.assert_close(y, ref_c, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["pairs", "half"])
def test_rope_scores_depend_only_on_offset(layout):
    rope = RoPE(16, 64, layout=layout).double()
    q, k = torch.randn(16, **D), torch.randn(16, **D)
    def score(m, n):
        return rope(q.expand(1, 64, 16))[0, m] @ rope(k.expand(1, 64, 16))[0, n]
    for m, n, d in [(0, 5, 5), (10, 15, 5), (40, 45, 5), (3, 3, 0), (30, 20, -10)]:
        torch.testing.assert_close(score(m, n), score(m - min(m, n), n - min(m, n)), rtol=0, atol=1e-5)
        if layout == "pairs":  # <R_m q, R_n k> = q^T R_m^T R_n k = <q, R_{n-m} k>
            torch.testing.assert_close(score(m, n), q @ rope_matrix(d, 16) @ k, rtol=0, atol=1e-5)


@pytest.mark.parametrize("hs", [2, 8, 32])
def test_half_layout_is_a_permutation_of_pairs(hs):
    P = pairs_to_half(hs)
    assert sorted(P.tolist()) == list(range(hs))
    x = torch.randn(3, 11, hs, **D)
    pairs, half = RoPE(hs, 16).double(), RoPE(hs, 16, layout="half").double()
    torch.testing.assert_close(half(x[..., P], offset=2), pairs(x, offset=2)[..., P], rtol=0, atol=1e-12)
    if hs > 2:  # with a single pair the two layouts coincide
        assert not torch.allclose(half(x), pairs(x))


def test_half_layout_matches_transformers_llama():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    cfg = transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                                   max_position_embeddings=64)
    rot = LlamaRotaryEmbedding(cfg)
    q, k = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 10, 8)
    cos, sin = rot(q, torch.arange(5, 15)[None])
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    rope = RoPE(8, 64, layout="half")
    torch.testing.assert_close(rope(q, offset=5), q_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rope(k, offset=5), k_ref, rtol=1e-5, atol=1e-5)


def test_rope_preserves_norm_and_position_zero():
    x = torch.randn(4, 6, 8, **D)
    y = RoPE(8, 8).double()(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-6, atol=0)
    torch.testing.assert_close(y[:, 0], x[:, 0], rtol=0, atol=0)


def test_positional_bad_input():
    with pytest.raises(ValueError, match="positive even int"):
        RoPE(7)
    with pytest.raises(ValueError, match="positive even int"):
        sinusoidal_encoding(4, 5)
    with pytest.raises(ValueError, match="layout must be"):
        RoPE(8, layout="interleaved")
    with pytest.raises(ValueError, match="layout must be"):
        apply_rope(torch.randn(2, 8), torch.ones(2, 4), torch.zeros(2, 4), layout="x")
    with pytest.raises(ValueError, match="head size 8"):
        RoPE(8)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"positions 6..9 do not fit in max_len=8"):
        RoPE(8, max_len=8)(torch.randn(4, 8), offset=6)
    with pytest.raises(ValueError, match="base must be > 0"):
        frequencies(8, base=0.0)


# ---------------------------------------------------------------------------- leading dims, positions, theta
def test_rope_any_leading_dimensions():
    rope = RoPE(8, 32).double()
    x = torch.randn(2, 3, 4, 5, 8, **D)  # (B, nh, extra, T, hs)
    y = rope(x, offset=3)
    torch.testing.assert_close(y[1, 2, 0], rope(x[1, 2, 0], offset=3), rtol=0, atol=0)  # (T, hs) alone
    torch.testing.assert_close(y.reshape(-1, 5, 8), rope(x.reshape(-1, 5, 8), offset=3), rtol=0, atol=0)


def test_rope_explicit_positions_equal_offsets():
    rope = RoPE(8, 32).double()
    x = torch.randn(2, 4, 6, 8, **D)  # (B, nh, T, hs)
    torch.testing.assert_close(rope(x, positions=torch.arange(5, 11)), rope(x, offset=5), rtol=0, atol=0)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5], [7, 3, 0, 0, 1, 31]])  # one row of positions per sequence
    y = rope(x, positions=pos[:, None, :])  # (B, 1, T) broadcasts over the heads
    for b in range(2):
        for t in range(6):
            p = int(pos[b, t])
            torch.testing.assert_close(y[b, :, t], rope(x[b, :, t:t + 1], offset=p)[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("theta", [10000.0, 500000.0, 1e6])
def test_rope_theta_and_positions_match_transformers_llama(theta):
    """Llama's rotary embedding with its rope_theta and per-sequence position_ids (left padding)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    cfg = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                                   max_position_embeddings=128, rope_theta=theta)
    rot = LlamaRotaryEmbedding(cfg)
    q, k = torch.randn(2, 4, 7, 16), torch.randn(2, 4, 7, 16)
    position_ids = torch.tensor([[0, 0, 0, 1, 2, 3, 4], [90, 91, 92, 93, 94, 95, 96]])
    cos, sin = rot(q, position_ids)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    rope = RoPE(16, 128, base=theta, layout="half")
    torch.testing.assert_close(rope(q, positions=position_ids[:, None]), q_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rope(k, positions=position_ids[:, None]), k_ref, rtol=1e-5, atol=1e-5)


def test_gpt_config_rope_theta_reaches_attention():
    from mathllm.transformer import GPT, GPTConfig
    model = GPT(GPTConfig.tiny(positions="rope", rope_theta=500000.0))
    rope = model.blocks[0].attn.rope
    assert rope.base == 500000.0
    torch.testing.assert_close(rope.cos, rope_angles(model.config.block_size, 16, 500000.0).cos().float())
    assert GPT(GPTConfig.tiny(positions="rope")).blocks[0].attn.rope.base == 10000.0
    with pytest.raises(ValueError, match="rope_theta must be a finite number > 1"):
        GPTConfig(rope_theta=0.5)


def test_rope_positions_bad_input():
    rope = RoPE(8, 16)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"positions must be in \[0, 16\), got 0..16"):
        rope(x, positions=torch.tensor([0, 1, 2, 3, 16]))
    with pytest.raises(ValueError, match="shape \\(\\.\\.\\., T\\) with T=5"):
        rope(x, positions=torch.arange(4))
    with pytest.raises(ValueError, match="integer tensor"):
        rope(x, positions=torch.arange(5.0))
    with pytest.raises(ValueError, match="either offset or positions"):
        rope(x, offset=1, positions=torch.arange(5))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., T, hs\)"):
        rope(torch.randn(8))


def test_positional_hostile_input_is_named():
    """Issue 15: ``rope_angles(1e308, 8)`` raised torch's "invalid size, possible overflow?",
    ``rope_matrix(float('nan'), 8)`` "unsupported range: nan -> nan", ``apply_rope`` of a (2, 3) tensor
    a broadcasting RuntimeError from inside torch, ``sinusoidal_shift_matrix(None, 8)`` an operand
    TypeError. Now each names its parameter."""
    with pytest.raises(ValueError, match="T must be an int >= 0, got 1e[+]308"):
        rope_angles(1e308, 8)
    with pytest.raises(ValueError, match="T must be an int >= 0, got -1"):
        sinusoidal_encoding(-1, 8)
    with pytest.raises(ValueError, match="m must be an int"):
        rope_matrix(float("nan"), 8)
    with pytest.raises(ValueError, match="k must be an int"):
        sinusoidal_shift_matrix(None, 8)
    with pytest.raises(ValueError, match=r"head size x.shape\[-1\] must be a positive even int.*got 3"):
        apply_rope(torch.randn(2, 3), torch.ones(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"cos and sin must have shape \(\.\.\., T, hs/2\).*got \(4, 8\)"):
        apply_rope(torch.randn(4, 8), torch.ones(4, 8), torch.zeros(4, 8))  # hs angles for hs/2 pairs
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype bool"):
        apply_rope(torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 2), torch.zeros(2, 2))
    # negative positions and shifts are rotations too: R_{-m} = R_m^T, M_{-k} = M_k^T
    torch.testing.assert_close(rope_matrix(-3, 8), rope_matrix(3, 8).T, rtol=0, atol=1e-15)
    torch.testing.assert_close(sinusoidal_shift_matrix(-3, 8), sinusoidal_shift_matrix(3, 8).T, rtol=0, atol=1e-7)


@pytest.mark.parametrize("layout", ["pairs", "half"])
def test_rope_positions_are_a_literal_rotation_by_m_theta(layout):
    """Issue 17: every row at an explicit position m is rotated, pair by pair, by the angle m theta_i,
    theta_i = base^(-2i/hs), written here with math.cos and math.sin (float64 reference; RoPE keeps its
    cos and sin in float32, so the rows agree to float32 rounding of values of size 1: atol 1e-6)."""
    hs, base = 8, 10000.0
    rope = RoPE(hs, 64, base=base, layout=layout).double()
    x = torch.randn(2, 3, 5, hs, **D)                                     # (B, nh, T, hs)
    positions = torch.tensor([[0, 1, 2, 3, 4], [40, 41, 7, 7, 63]])       # (B, T): packed or padded rows
    y = rope(x, positions=positions[:, None, :])                          # (B, 1, T) broadcasts over heads
    first = list(range(0, hs, 2)) if layout == "pairs" else list(range(hs // 2))
    second = [i + 1 for i in first] if layout == "pairs" else [i + hs // 2 for i in first]
    for b in range(2):
        for t in range(5):
            m = int(positions[b, t])
            ref = x[b, :, t].clone()                                      # (nh, hs)
            for i, (a, c) in enumerate(zip(first, second)):
                angle = m * base ** (-2 * i / hs)
                ref[:, a] = math.cos(angle) * x[b, :, t, a] - math.sin(angle) * x[b, :, t, c]
                ref[:, c] = math.sin(angle) * x[b, :, t, a] + math.cos(angle) * x[b, :, t, c]
            torch.testing.assert_close(y[b, :, t], ref, rtol=0, atol=1e-6)
