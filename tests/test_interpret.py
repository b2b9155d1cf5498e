"""mathllm.interpret on the package's GPT: hooks read the attention the model used, the residual stream adds up,
the logit lens and direct logit attribution reproduce the logits, induction scores, path counts, probes."""
import math

import pytest
import torch
import torch.nn.functional as F

from mathllm.interpret import (ablate_heads, attention_rollout, attention_weights, causal_path_counts, control_labels,
                               direct_logit_attribution, fit_probe, logit_lens, make_attention_only_,
                               offset_analogy_accuracy, prefix_matching_scores, previous_token_scores,
                               repeated_sequence_stream, repeated_tokens, residual_decomposition, run_with_trace,
                               token_losses)
from mathllm.transformer import GPT, GPTConfig

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

F64 = dict(dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = GPT(GPTConfig.tiny(vocab_size=23, **overrides)).double().eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so that attention patterns are far from uniform
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _idx(B=3, T=12, V=23, seed=0):
    return torch.randint(V, (B, T), generator=_gen(seed))


SETTINGS = [dict(), dict(positions="rope"), dict(attn_impl="manual"), dict(norm="rmsnorm", bias=False),
            dict(mlp="swiglu", positions="sinusoidal")]


# ---------------------------------------------------------------------------- the trace
@pytest.mark.parametrize("overrides", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_attention_weights_reproduce_the_attention_output(overrides):
    """softmax(q k^T / sqrt(hs)) from the hook, times v, through the output projection, is what the layer added."""
    model = _model(**overrides)
    idx = _idx()
    tr = run_with_trace(model, idx)
    L, nh, C = model.config.n_layer, model.config.n_head, model.config.n_embd
    assert len(tr.attn_weights) == L and len(tr.resid) == L + 1
    for layer, block in enumerate(model.blocks):
        A = tr.attn_weights[layer]  # (B, nh, T, T)
        assert A.shape == (3, nh, 12, 12)
        torch.testing.assert_close(A.sum(-1), torch.ones(3, nh, 12, **F64), rtol=0, atol=1e-12)
        assert torch.all(A.triu(diagonal=1) == 0)  # causal: no weight on the future
        x = block.norm_attn(tr.resid[layer])
        v = block.attn._heads(block.attn.qkv(x).split(C, dim=2)[2])  # (B, nh, T, hs)
        y = (A @ v).transpose(1, 2).reshape(3, 12, C)
        torch.testing.assert_close(block.attn.proj(y), tr.attn_out[layer], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("overrides", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_residual_stream_is_the_sum_of_its_contributions(overrides):
    model = _model(seed=1, **overrides)
    idx = _idx(seed=1)
    tr = run_with_trace(model, idx)
    parts = residual_decomposition(model, tr)
    assert list(parts) == ["embed", "attn 0", "mlp 0", "attn 1", "mlp 1"]
    torch.testing.assert_close(sum(parts.values()), tr.resid[-1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.lm_head(model.norm_f(tr.resid[-1])), tr.logits, rtol=1e-12, atol=1e-12)
    logits, _ = model(idx)
    torch.testing.assert_close(tr.logits, logits, rtol=0, atol=0)  # the hooks changed nothing
    lens = logit_lens(model, tr)
    assert lens.shape == (3, 3, 12, 23)
    torch.testing.assert_close(lens[-1], logits, rtol=1e-12, atol=1e-12)
    # direct logit attribution: the per-contribution logits add up to the real logit of each target
    targets = _idx(seed=2)
    dla = direct_logit_attribution(model, tr, targets)
    assert list(dla) == list(parts) + ["bias"]
    torch.testing.assert_close(sum(dla.values()), logits.gather(-1, targets[..., None])[..., 0], rtol=1e-10, atol=1e-10)


def test_hooks_are_removed_and_trace_needs_no_grad():
    model = _model()
    run_with_trace(model, _idx())
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in model.blocks)
    assert all(not b.attn._forward_hooks and not b.attn._forward_pre_hooks for b in model.blocks)


def test_token_losses_average_to_the_model_loss():
    model = _model()
    idx = _idx(B=4, T=16)
    per_token = token_losses(model, idx)
    assert per_token.shape == (4, 15)
    _, loss = model(idx[:, :-1], idx[:, 1:])
    torch.testing.assert_close(per_token.mean(), loss, rtol=1e-12, atol=1e-12)


def test_attention_only_model_adds_only_attention():
    model = _model()
    n_before = sum(p.numel() for p in model.parameters())
    make_attention_only_(model)
    tr = run_with_trace(model, _idx())
    assert all(torch.count_nonzero(m) == 0 for m in tr.mlp_out)
    torch.testing.assert_close(tr.resid[0] + sum(tr.attn_out), tr.resid[-1], rtol=1e-12, atol=1e-12)
    C, H = 32, 4 * 32
    assert n_before - sum(p.numel() for p in model.parameters()) == 2 * (2 * C * H + H + C + 2 * C)  # MLPs and their norms


@pytest.mark.parametrize("layer,head", [(0, 0), (1, 1)])
def test_ablating_a_head_removes_exactly_its_term(layer, head):
    model = _model(seed=2)
    idx = _idx(seed=3)
    full = run_with_trace(model, idx)
    with ablate_heads(model, [(layer, head)]):
        ablated = run_with_trace(model, idx)
    attn = model.blocks[layer].attn
    C, hs = 32, 16
    x = model.blocks[layer].norm_attn(full.resid[layer])
    v = attn._heads(attn.qkv(x).split(C, dim=2)[2])  # (B, nh, T, hs)
    y_h = full.attn_weights[layer][:, head] @ v[:, head]  # (B, T, hs): what the head read
    term = y_h @ attn.proj.weight[:, head * hs:(head + 1) * hs].T  # its share of the output projection
    torch.testing.assert_close(ablated.attn_out[layer], full.attn_out[layer] - term.detach(), rtol=1e-10, atol=1e-12)
    for other in range(layer):  # earlier layers do not change
        torch.testing.assert_close(ablated.attn_out[other], full.attn_out[other], rtol=0, atol=0)
    assert not attn.proj._forward_pre_hooks  # removed on exit
    torch.testing.assert_close(run_with_trace(model, idx).logits, full.logits, rtol=0, atol=0)


# ---------------------------------------------------------------------------- induction
def test_repeated_tokens_and_stream():
    x = repeated_tokens(5, 9, 40, generator=_gen())
    assert x.shape == (5, 18) and torch.equal(x[:, :9], x[:, 9:]) and int(x.max()) < 40
    s = repeated_sequence_stream(1000, 50, 3, 7, generator=_gen(1))
    assert s.shape == (1000,) and s.dtype == torch.int64
    # it parses into consecutive equal halves whose lengths lie in [3, 7]
    pos, lengths = 0, []
    while pos + 14 <= 1000:
        n = next(n for n in range(3, 8) if torch.equal(s[pos:pos + n], s[pos + n:pos + 2 * n]))
        lengths.append(n)
        pos += 2 * n
    assert set(lengths) <= set(range(3, 8)) and len(set(lengths)) > 2


def _ideal_patterns(length, kind):
    T = 2 * length
    A = torch.zeros(1, 1, T, T, **F64)
    for t in range(T):
        if kind == "induction" and t >= length:
            A[0, 0, t, t - length + 1] = 1
        elif kind == "previous" and t >= 1:
            A[0, 0, t, t - 1] = 1
        else:
            A[0, 0, t, : t + 1] = 1 / (t + 1)
    return A


def test_scores_of_ideal_heads():
    n = 8
    ind, prev, uni = (_ideal_patterns(n, k) for k in ("induction", "previous", "uniform"))
    scores = prefix_matching_scores([torch.cat([ind, prev, uni], dim=1)], n)
    assert scores.shape == (1, 3)
    torch.testing.assert_close(scores[0, 0], torch.tensor(1.0, **F64))
    assert scores[0, 1] == 0
    expected = sum(1 / (t + 1) for t in range(n, 2 * n)) / n  # uniform causal attention
    assert float(scores[0, 2]) == pytest.approx(expected, rel=1e-12)
    assert float(previous_token_scores([prev])[0, 0]) == 1.0


def test_induction_head_built_by_hand_predicts_the_copy():
    """Two hand-made layers: a previous-token head writes x_(t-1) next to x_t, then a head whose query is x_t
    looks for keys carrying x_(j-1) = x_t. The composed attention reaches the token after the earlier occurrence."""
    n = 10
    prev = _ideal_patterns(n, "previous")[0, 0]  # layer 0
    x = repeated_tokens(1, n, 1000, generator=_gen(3))[0]  # distinct tokens with overwhelming probability
    onehot = F.one_hot(x, 1000).double()  # (T, V)
    prev_token = prev @ onehot  # (T, V): what the previous-token head writes at each position
    scores = onehot @ prev_token.T  # query x_t against key "previous token of j"
    scores = scores.masked_fill(~torch.ones(2 * n, 2 * n, dtype=torch.bool).tril(), float("-inf"))
    A1 = torch.softmax(50 * scores, dim=-1)
    t = torch.arange(n + 1, 2 * n)
    assert torch.all(A1[t, t - n + 1] > 0.99)
    # at t = n the key 0, whose "previous token" is itself (x_0), ties with the key 1: half the weight each
    assert float(prefix_matching_scores([A1[None, None]], n)[0, 0]) == pytest.approx(1 - 0.5 / n, abs=1e-6)
    R = attention_rollout([prev[None, None], A1[None, None]], residual=False)[0]
    assert torch.all(R[t, t - n] > 0.99)  # the path t -> t-n+1 -> t-n: the earlier occurrence of x_t itself


def test_scores_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="do not come from sequences"):
        prefix_matching_scores([torch.zeros(1, 1, 10, 10)], 4)
    with pytest.raises(TypeError, match="non-empty list"):
        previous_token_scores([])


# ---------------------------------------------------------------------------- attention as a graph
@pytest.mark.parametrize("T,L", [(6, 1), (9, 2), (12, 3), (10, 5)])
def test_path_counts_are_binomials(T, L):
    counts = causal_path_counts(T, L)
    for t in range(T):
        for s in range(T):
            assert counts[t, s] == (math.comb(t - s + L - 1, L - 1) if s <= t else 0)


@pytest.mark.parametrize("T,L,w", [(20, 1, 3), (20, 3, 4), (30, 4, 2)])
def test_windowed_attention_reaches_back_l_times_w_minus_one(T, L, w):
    reach = causal_path_counts(T, L, window=w) > 0
    for t in range(T):
        earliest = int(reach[t].nonzero().min())
        assert earliest == max(0, t - L * (w - 1))


def test_rollout_rows_are_distributions():
    model = _model(positions="rope")
    tr = run_with_trace(model, _idx())
    R = attention_rollout(tr.attn_weights)
    torch.testing.assert_close(R.sum(-1), torch.ones(3, 12, **F64), rtol=0, atol=1e-12)
    assert torch.all(R.triu(diagonal=1) == 0)
    single = attention_rollout(tr.attn_weights[:1], residual=False)
    torch.testing.assert_close(single, tr.attn_weights[0].mean(1), rtol=0, atol=0)


# ---------------------------------------------------------------------------- probes
def test_probe_finds_a_linear_property_and_is_stationary():
    g = _gen()
    X = torch.randn(600, 10, generator=g, **F64)
    w = torch.randn(10, generator=g, **F64)
    y = (X @ w > 0).long()
    res = fit_probe(X[:400], y[:400], X[400:], y[400:], weight_decay=1e-3)
    assert res.test_accuracy > 0.95 and res.weight.shape == (2, 10)
    # the L-BFGS solution is a stationary point of the regularised cross-entropy
    Xs = (X[:400] - X[:400].mean(0)) / X[:400].std(0)
    W, b = res.weight.clone().requires_grad_(), res.bias.clone().requires_grad_()
    loss = F.cross_entropy(Xs @ W.T + b, y[:400]) + 1e-3 * W.square().sum()
    gW, gb = torch.autograd.grad(loss, (W, b))
    assert gW.abs().max() < 1e-6 and gb.abs().max() < 1e-6


def test_probe_cannot_learn_noise():
    g = _gen(1)
    X = torch.randn(800, 5, generator=g, **F64)
    y = torch.randint(3, (800,), generator=g)
    res = fit_probe(X[:400], y[:400], X[400:], y[400:])
    assert res.test_accuracy < 0.45  # chance is 1/3


def test_control_labels_are_a_function_of_the_token_type():
    g = _gen(2)
    tokens = torch.randint(30, (5000,), generator=g)
    labels = (torch.rand(5000, generator=g) < 0.3).long()
    ctrl = control_labels(tokens, labels, generator=g)
    for t in torch.unique(tokens):
        assert torch.unique(ctrl[tokens == t]).numel() == 1
    assert set(ctrl.tolist()) <= set(labels.tolist())


def test_offset_analogy_on_exact_and_random_offsets():
    g = _gen(3)
    base = torch.randn(10, 16, generator=g, **F64)
    offset = torch.randn(16, generator=g, **F64)
    E = torch.cat([base, base + offset, torch.randn(5, 16, generator=g, **F64)])
    pairs = [(i, i + 10) for i in range(10)]
    assert offset_analogy_accuracy(E, pairs) == 1.0
    E_random = torch.randn(25, 16, generator=g, **F64)
    assert offset_analogy_accuracy(E_random, pairs) <= 0.3


# ---------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    model = _model()
    with pytest.raises(TypeError, match="model must be a mathllm.transformer.GPT"):
        run_with_trace(torch.nn.Linear(2, 2), _idx())
    with pytest.raises(ValueError, match="idx must have shape"):
        run_with_trace(model, torch.zeros(5, dtype=torch.long))
    post = _model(prenorm=False)
    with pytest.raises(ValueError, match="needs a pre-norm GPT"):
        residual_decomposition(post, run_with_trace(post, _idx()))
    with pytest.raises(ValueError, match="needs a pre-norm GPT"):
        make_attention_only_(post)
    with pytest.raises(TypeError, match="attn must be a MultiHeadAttention"):
        attention_weights(torch.nn.Linear(2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="targets holds token id"):
        direct_logit_attribution(model, run_with_trace(model, _idx()), torch.full((3, 12), 99))
    with pytest.raises(ValueError, match="at least 2 positions"):
        token_losses(model, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="min_len <= max_len"):
        repeated_sequence_stream(100, 10, 5, 3)
    with pytest.raises(ValueError, match="window must be a positive int"):
        causal_path_counts(5, 2, window=0)
    with pytest.raises(ValueError, match="y_test must have shape"):
        fit_probe(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="does not exist"):
        with ablate_heads(model, [(2, 0)]):
            pass
    with pytest.raises(ValueError, match="at least 2 pairs"):
        offset_analogy_accuracy(torch.zeros(4, 2), [(0, 1)])


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("n_tokens", [float("inf"), float("nan"), "100", None, 0])
def test_repeated_sequence_stream_refuses_a_count_that_is_not_a_positive_int(n_tokens):
    """Before issue 15 inf looped for ever, NaN returned from an empty torch.cat, and a str or None
    failed in a comparison ("'<' not supported")."""
    with pytest.raises(ValueError, match="n_tokens must be a positive int"):
        repeated_sequence_stream(n_tokens, 10, 3, 5)


def test_offset_analogy_accuracy_checks_its_pairs():
    E = torch.eye(4)
    with pytest.raises(TypeError, match="pairs must be a list or tuple, got int"):
        offset_analogy_accuracy(E, 4)                                # was: "object of type 'int' has no len()"
    with pytest.raises(TypeError, match=r"pairs must hold \(a, b\) pairs of int row ids, got \(0, 1.5\)"):
        offset_analogy_accuracy(E, [(0, 1.5), (2, 3)])               # was: torch.tensor made the ids floats
    with pytest.raises(TypeError, match="E must be a floating-point tensor, got dtype int64"):
        offset_analogy_accuracy(torch.eye(4, dtype=torch.long), [(0, 1), (2, 3)])
