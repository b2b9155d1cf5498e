"""Tests for mathllm.efficient_attention: blockwise = exact; sparse = dense masked; Linformer, Performer limits."""
import math

import pytest
import torch

from mathllm.attention import causal_mask, scaled_dot_product_attention
from mathllm.efficient_attention import (blockwise_attention, favor_features, linformer_attention,
                                         linformer_projection, online_softmax, orthogonal_gaussian, peak_memory,
                                         performer_attention, sliding_window_index, sliding_window_mask,
                                         sparse_attention, strided_index, strided_mask)

D = dict(dtype=torch.float64)


def qkv(*lead, T, S=None, hs=8, hv=None, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    S = T if S is None else S
    return (torch.randn(*lead, T, hs, generator=g, **D) * scale, torch.randn(*lead, S, hs, generator=g, **D) * scale,
            torch.randn(*lead, S, hv or hs, generator=g, **D))


# ---------------------------------------------------------------------------- blockwise (exact)
@pytest.mark.parametrize("n,block", [(1, 1), (10, 3), (100, 7), (64, 64), (33, 100)])
def test_online_softmax_equals_softmax(n, block):
    x = torch.randn(3, n, **D) * 5
    torch.testing.assert_close(online_softmax(x, block), torch.softmax(x, -1), rtol=1e-12, atol=1e-15)
    big = x + 1000.0  # exp(1000) overflows: the running maximum keeps it finite
    torch.testing.assert_close(online_softmax(big, block), torch.softmax(x, -1), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("T,S,block", [(50, 50, 1), (50, 50, 7), (50, 50, 64), (13, 40, 8), (64, 64, 16)])
@pytest.mark.parametrize("causal", [False, True])
def test_blockwise_equals_exact_forward_backward(T, S, block, causal):
    q, k, v = qkv(2, 3, T=T, S=S, hv=5)
    mask = causal_mask(T, S) if causal else None
    a, b, c = (t.clone().requires_grad_() for t in (q, k, v))
    y = blockwise_attention(a, b, c, block, causal=causal)
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = scaled_dot_product_attention(*ref_in, mask=mask)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y)
    y.backward(dy)
    ref.backward(dy)
    for g, gr in zip((a.grad, b.grad, c.grad), (t.grad for t in ref_in)):
        torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-12)


def test_blockwise_never_stores_the_score_matrix():
    q, k, v = (t.float() for t in qkv(1, T=256, hs=16))
    _, exact = peak_memory(scaled_dot_product_attention, q, k, v)
    _, block = peak_memory(blockwise_attention, q, k, v, 32)
    assert exact >= 256 * 256 * 4  # at least the (T, T) float32 scores
    assert block < 256 * 256 * 4 / 4


# ---------------------------------------------------------------------------- sparse
@pytest.mark.parametrize("T,w", [(1, 1), (20, 1), (20, 4), (20, 20), (37, 6)])
def test_sparse_gather_equals_dense_masked(T, w):
    q, k, v = qkv(2, T=T)
    for (idx, valid), mask in [(sliding_window_index(T, w), sliding_window_mask(T, w)),
                               (strided_index(T, w), strided_mask(T, w))]:
        assert torch.equal(valid.sum(1), mask.sum(1))  # the same keys per query
        torch.testing.assert_close(sparse_attention(q, k, v, idx, valid),
                                   scaled_dot_product_attention(q, k, v, mask), rtol=1e-12, atol=1e-12)


def test_sparse_patterns_known_answers_and_cost():
    assert torch.equal(sliding_window_mask(4, 2), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]],
                                                               dtype=torch.bool))
    assert strided_mask(9, 3)[8].nonzero().flatten().tolist() == [2, 5, 6, 7, 8]
    for T in (64, 256, 1024):
        s = int(math.isqrt(T))
        idx, valid = strided_index(T, s)
        assert idx.shape == (T, s + math.ceil(T / s) - 1)  # about 2 sqrt(T) keys per query
        assert valid.sum() <= 2 * T * math.sqrt(T)
    # the window pattern is a subset of the strided one with the same stride
    assert not (sliding_window_mask(30, 5) & ~strided_mask(30, 5)).any()


def test_full_window_is_exact_causal_attention():
    q, k, v = qkv(T=16)
    torch.testing.assert_close(sparse_attention(q, k, v, *sliding_window_index(16, 16)),
                               scaled_dot_product_attention(q, k, v, causal_mask(16)), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- Linformer
def test_linformer_identity_projection_is_exact_and_low_rank_approximates():
    q, k, v = qkv(2, T=40, S=40, scale=0.5)
    I = torch.eye(40, **D)
    exact = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(linformer_attention(q, k, v, I, I), exact, rtol=1e-12, atol=1e-12)
    # a permutation of the keys (the same for keys and values) changes nothing either
    P = I[torch.randperm(40)]
    torch.testing.assert_close(linformer_attention(q, k, v, P, P), exact, rtol=1e-12, atol=1e-12)
    E = linformer_projection(8, 40, torch.Generator().manual_seed(0)).double()
    y = linformer_attention(q, k, v, E, E)
    assert y.shape == exact.shape and (y - exact).abs().max() > 1e-3  # an approximation, not exact


def test_linformer_bad_input():
    q, k, v = qkv(T=10)
    with pytest.raises(ValueError, match=r"shape \(r, S=10\)"):
        linformer_attention(q, k, v, torch.randn(4, 9), torch.randn(4, 10))


# ---------------------------------------------------------------------------- Performer
def test_orthogonal_gaussian_rows_orthogonal_within_blocks():
    om = orthogonal_gaussian(20, 8, torch.Generator().manual_seed(0))
    assert om.shape == (20, 8)
    G = om[:8] @ om[:8].T
    torch.testing.assert_close(G - torch.diag(G.diag()), torch.zeros(8, 8, **D), rtol=0, atol=1e-12)


def test_favor_features_are_positive_and_unbiased():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 6, generator=g, **D) * 0.4, torch.randn(5, 6, generator=g, **D) * 0.4
    om = torch.randn(400000, 6, generator=g, **D)  # iid omega: E[phi(x).phi(y)] = exp(x.y)
    px, py = favor_features(x, om), favor_features(y, om)
    assert (px > 0).all()
    torch.testing.assert_close(px @ py.T, torch.exp(x @ y.T), rtol=2e-2, atol=0)


def test_performer_error_shrinks_with_features():
    q, k, v = qkv(2, T=128, hs=16, scale=0.5)
    exact = scaled_dot_product_attention(q, k, v)

    def rms_error(m):
        errs = [(performer_attention(q, k, v, orthogonal_gaussian(m, 16, torch.Generator().manual_seed(s))) - exact)
                .pow(2).mean().sqrt() for s in range(4)]
        return sum(errs) / len(errs)

    assert rms_error(1024) < rms_error(16) / 2.5


def test_performer_causal_is_noncausal_on_each_prefix():
    q, k, v = qkv(2, T=12, hs=8)
    om = orthogonal_gaussian(32, 8, torch.Generator().manual_seed(1))
    yc = performer_attention(q, k, v, om, causal=True)
    for t in (0, 5, 11):
        yt = performer_attention(q[..., t:t + 1, :], k[..., :t + 1, :], v[..., :t + 1, :], om)
        torch.testing.assert_close(yc[..., t:t + 1, :], yt, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- measuring memory
def test_peak_memory_counts_live_tensors():
    def f():
        a = torch.ones(1000)  # 4000 bytes
        b = torch.ones(2000)  # 8000 bytes, both alive: peak 12000
        del a
        c = torch.ones(500)  # 2000 bytes, a is gone
        return b, c

    x = torch.ones(10**6)  # allocated before the call: not counted
    out, peak = peak_memory(f)
    assert peak == 12000 and out[0].shape == (2000,)
    _, peak = peak_memory(lambda: x.view(1000, 1000).t())  # a view allocates nothing
    assert peak == 0


def test_efficient_bad_input():
    q, k, v = qkv(T=4)
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        blockwise_attention(q, k, v, 0)
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        sliding_window_index(4, 0)
    with pytest.raises(ValueError, match=r"shape \(T=4, K\)"):
        sparse_attention(q, k, v, torch.zeros(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.bool))


# ---------------------------------------------------------------------------- hostile shapes (issue 15)
def test_blockwise_causal_with_more_queries_than_keys_is_refused():
    """The queries are the last T of S positions: with T > S the first T - S would see no key (nan before)."""
    q, k, v = qkv(T=6, S=4)
    with pytest.raises(ValueError, match=r"causal blockwise attention needs S >= T .* got T=6, S=4"):
        blockwise_attention(q, k, v, 2, causal=True)
    assert torch.isfinite(blockwise_attention(q, k, v, 2, causal=False)).all()


def test_sparse_attention_query_with_no_valid_key_gives_zero_like_torch():
    q, k, v = qkv(T=5, hv=3)
    idx, valid = sliding_window_index(5, 2)
    valid = valid.clone()
    valid[2] = False  # query 2 may attend to nothing
    dense = torch.zeros(5, 5, dtype=torch.bool)
    dense.scatter_(1, idx, valid)  # the same pattern as a (T, S) mask; idx clamps invalid slots to key 0
    dense[0, 0] = True
    y = sparse_attention(q, k, v, idx, valid)
    assert (y[2] == 0).all()
    torch.testing.assert_close(y, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense),
                               rtol=1e-12, atol=1e-12)  # float64: rounding only


@pytest.mark.parametrize("bad", [2.5, 0, -1, float("nan")])
def test_counts_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match=rf"window must be a positive int, got {bad!r}"):
        sliding_window_mask(4, bad)
    with pytest.raises(ValueError, match=rf"block_size must be a positive int, got {bad!r}"):
        blockwise_attention(*qkv(T=4), bad)


# ---------------------------------------------------------------------------- issue 14: one definition
@pytest.mark.parametrize("causal", [False, True])
def test_performer_runs_favor_features_and_equals_the_written_out_estimate(monkeypatch, causal):
    """performer_attention builds phi(q), phi(k) with favor_features (a spy sees both calls) and equals
    the FAVOR+ estimate written out with exp directly: phi(q) (phi(k)^T V) / phi(q) (phi(k)^T 1), causal
    by prefix sums. The stabilising shifts cancel in the ratio; float64, small scores: 1e-10."""
    import mathllm.efficient_attention as EA
    calls = []
    real = EA.favor_features
    monkeypatch.setattr(EA, "favor_features", lambda x, om, **kw: calls.append(kw) or real(x, om, **kw))
    q, k, v = qkv(2, T=6, hs=8, seed=3)
    om = orthogonal_gaussian(32, 8, torch.Generator().manual_seed(4))
    y = performer_attention(q, k, v, om, causal=causal)
    assert len(calls) == 2
    s = 8 ** -0.25
    phi = lambda x: torch.exp(x @ om.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(32)  # noqa: E731
    pq, pk = phi(q * s), phi(k * s)  # (2, 6, 32)
    ref = torch.empty_like(y)
    for b in range(2):
        for t in range(6):
            n = t + 1 if causal else 6  # keys 0..t, or all of them
            ref[b, t] = (pq[b, t] @ (pk[b, :n].T @ v[b, :n])) / (pq[b, t] @ pk[b, :n].sum(0))
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
