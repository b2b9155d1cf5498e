"""mathllm.transformer: the config's checks, parameter and FLOP formulas, the forward pass, init, tying."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mathllm.transformer import GPT, GPTConfig, flops_per_token, gpt2_init_, matmul_params, param_count, xavier_init_

VARIANTS = [
    dict(),
    dict(bias=False),
    dict(mlp="swiglu", norm="rmsnorm", positions="rope"),
    dict(mlp="relu", positions="sinusoidal", tie_weights=False),
    dict(prenorm=False, bias=False, mlp="gelu_tanh"),
    dict(prenorm=False, norm="rmsnorm", tie_weights=False, positions="rope", n_head=4),
]


def _tiny(**kw):
    return GPTConfig.tiny(**kw)


# ---------------------------------------------------------------------------- config
def test_config_is_frozen_and_has_the_contract_defaults():
    c = GPTConfig()
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd, c.dropout, c.bias) == (65, 64, 4, 4, 128, 0.0, True)
    assert c.tie_weights and c.attn_impl == "sdpa" and c.prenorm
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n_layer = 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_embd=130, n_head=4), "n_embd=130 must be divisible by n_head=4"),
    (dict(n_layer=0), "n_layer must be a positive int, got 0"),
    (dict(vocab_size=6.5), "vocab_size must be a positive int, got 6.5"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (dict(mlp="tanh"), "mlp must be one of .*got 'tanh'"),
    (dict(norm="batch"), "norm must be one of .*got 'batch'"),
    (dict(positions="alibi"), "positions must be one of .*got 'alibi'"),
    (dict(attn_impl="flash"), "attn_impl must be one of .*got 'flash'"),
    (dict(n_embd=12, n_head=4, positions="rope"), "head size n_embd // n_head = 3 must be even"),
])
def test_config_errors_name_the_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_preset_parameter_counts():
    assert param_count(GPTConfig.tiny()) == 28_576
    assert param_count(GPTConfig.shakespeare_char()) == 10_745_088
    assert param_count(GPTConfig.gpt2_small()) == 124_439_808  # GPT-2 small, "124M"
    # GPT-2 small per block: 12 C^2 + 13 C
    C = 768
    assert param_count(GPTConfig.gpt2_small()) == 12 * (12 * C * C + 13 * C) + 50257 * C + 1024 * C + 2 * C
    m = GPT(GPTConfig.shakespeare_char())
    assert m.num_params() == 10_745_088 - 256 * 384  # nanoGPT prints "10.65M"


@pytest.mark.parametrize("kw", VARIANTS)
def test_param_count_formula_matches_numel(kw):
    cfg = _tiny(**kw)
    m = GPT(cfg)
    assert sum(p.numel() for p in m.parameters()) == param_count(cfg) == m.num_params(non_embedding=False)
    lookup = (cfg.block_size * cfg.n_embd if cfg.positions == "learned" else 0) + (
        0 if cfg.tie_weights else cfg.vocab_size * cfg.n_embd)
    assert m.num_params() == param_count(cfg) - lookup
    assert (m.lm_head.weight is m.token_embedding.weight) == cfg.tie_weights


@pytest.mark.parametrize("kw", VARIANTS)
def test_flops_per_token_counts_every_matmul(kw):
    """FlopCounterMode counts the matmuls of forward + backward; with the manual attention path it sees all."""
    cfg = _tiny(attn_impl="manual", **kw)
    m = GPT(cfg)
    B, T = 2, cfg.block_size
    idx = torch.randint(0, cfg.vocab_size, (B, T))
    with FlopCounterMode(display=False) as fc:
        _, loss = m(idx, idx)
        loss.backward()
    assert fc.get_total_flops() == flops_per_token(cfg) * B * T == m.flops_per_token() * B * T
    # the attention term alone: 12 L T C
    C, L = cfg.n_embd, cfg.n_layer
    assert flops_per_token(cfg) - 6 * matmul_params(cfg) == 12 * L * T * C


# ---------------------------------------------------------------------------- forward
@pytest.mark.parametrize("kw", VARIANTS)
def test_forward_shapes_and_loss(kw):
    torch.manual_seed(0)
    cfg = _tiny(**kw)
    m = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (3, 17))
    tgt = torch.randint(0, cfg.vocab_size, (3, 17))
    logits, loss = m(idx, tgt)
    assert logits.shape == (3, 17, cfg.vocab_size) and m(idx)[1] is None
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, cfg.vocab_size), tgt.reshape(-1)))
    if cfg.prenorm and kw.get("tie_weights", True):  # small GPT-2 init: logits near 0, loss near log V
        assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.1


@pytest.mark.parametrize("kw", VARIANTS)
def test_sdpa_and_manual_attention_give_the_same_model(kw):
    torch.manual_seed(0)
    a = GPT(_tiny(attn_impl="sdpa", **kw)).double()
    b = GPT(_tiny(attn_impl="manual", **kw)).double()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 65, (2, 32))
    la, lb = a(idx, idx)[1], b(idx, idx)[1]
    la.backward()
    lb.backward()
    torch.testing.assert_close(a(idx)[0], b(idx)[0], rtol=1e-10, atol=1e-10)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-8, atol=1e-10, msg=n)


@pytest.mark.parametrize("kw", VARIANTS)
def test_no_position_sees_the_future(kw):
    m = GPT(_tiny(**kw)).double()
    idx = torch.randint(0, 65, (2, 20))
    other = idx.clone()
    other[:, 12:] = (other[:, 12:] + 1) % 65
    torch.testing.assert_close(m(idx)[0][:, :12], m(other)[0][:, :12], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(m(idx)[0][:, 12:], m(other)[0][:, 12:])


def test_positions_matter():
    """Learned, sinusoidal and rotary positions make the logits depend on order; a permuted prefix differs."""
    for pos in ("learned", "sinusoidal", "rope"):
        m = GPT(_tiny(positions=pos)).double()
        if pos == "learned":
            torch.nn.init.normal_(m.position_embedding.weight, std=1.0)
        a = torch.tensor([[1, 2, 3, 4]])
        b = torch.tensor([[2, 1, 3, 4]])
        assert not torch.allclose(m(a)[0][:, -1], m(b)[0][:, -1]), pos


def test_forward_errors_name_the_values():
    m = GPT(_tiny())
    with pytest.raises(ValueError, match="length 33 is longer than block_size=32"):
        m(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token id 65, outside the vocabulary \[0, 65\)"):
        m(torch.tensor([[1, 65]]))
    with pytest.raises(ValueError, match=r"token id -1, outside"):
        m(torch.tensor([[-1, 3]]))
    with pytest.raises(TypeError, match="integer tensor of token ids, got dtype float32"):
        m(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        m(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="config must be a GPTConfig, got dict"):
        GPT({"n_layer": 2})


def test_the_forward_is_one_graph_under_torch_compile():
    # the id check's .item() would split a compiled forward in three; it is skipped while tracing
    import torch._dynamo

    m, idx = GPT(_tiny()), torch.randint(0, 65, (2, 8))
    explained = torch._dynamo.explain(m)(idx, idx)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_next_logits_with_cache_match_the_full_forward():
    m = GPT(_tiny(positions="rope")).double().eval()
    idx = torch.randint(0, 65, (2, 12))
    full = m(idx)[0]  # (B, T, V)
    caches = m.new_kv_caches()
    torch.testing.assert_close(m.next_logits(idx[:, :7], caches), full[:, 6], rtol=1e-10, atol=1e-10)
    for t in range(7, 12):
        torch.testing.assert_close(m.next_logits(idx[:, t:t + 1], caches), full[:, t], rtol=1e-10, atol=1e-10)
    assert caches[0].length == 12
    with pytest.raises(ValueError, match="longer than block_size=32"):
        m.next_logits(torch.zeros(2, 21, dtype=torch.long), caches)


# ---------------------------------------------------------------------------- init and tying
def test_gpt2_init_scales_the_residual_projections():
    cfg = GPTConfig(n_layer=8, n_embd=256, n_head=4)
    m = GPT(cfg)
    resid = torch.cat([p.flatten() for n, p in m.named_parameters() if n.endswith("proj.weight")])
    other = torch.cat([p.flatten() for n, p in m.named_parameters() if n.endswith(("qkv.weight", "fc.weight"))])
    assert abs(resid.std().item() - 0.02 / math.sqrt(2 * 8)) < 2e-4
    assert abs(other.std().item() - 0.02) < 2e-4
    assert all(torch.all(p == 0) for n, p in m.named_parameters() if n.endswith("bias") and "norm" not in n)
    assert all(torch.all(p == 1) for n, p in m.named_parameters() if n.endswith("norm_attn.weight"))


def test_xavier_init_keeps_the_tie():
    m = GPT(_tiny())
    xavier_init_(m)
    assert m.lm_head.weight is m.token_embedding.weight
    assert abs(m.token_embedding.weight.std().item() - 32 ** -0.5) < 0.02
    w = m.blocks[0].mlp.fc.weight  # (4C, C): uniform with variance 2 / (C + 4C)
    assert abs(w.var().item() - 2 / (32 + 128)) < 2e-3


def test_tied_weight_gets_both_gradients():
    torch.manual_seed(0)
    m = GPT(_tiny())
    idx = torch.randint(0, 65, (2, 8))
    m(idx, idx)[1].backward()
    g_tied = m.token_embedding.weight.grad.clone()
    m2 = GPT(_tiny(tie_weights=False))
    with torch.no_grad():
        sd = m.state_dict()
        m2.load_state_dict(sd)  # the untied copy starts from the same values
    m2(idx, idx)[1].backward()
    torch.testing.assert_close(g_tied, m2.token_embedding.weight.grad + m2.lm_head.weight.grad, rtol=1e-5, atol=1e-7)


def test_a_tiny_gpt_overfits_one_batch():
    torch.manual_seed(0)
    m = GPT(_tiny())
    idx = torch.randint(0, 65, (4, 32))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = m(idx[:, :-1], idx[:, 1:])[1]
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


# ---------------------------------------------------------------------------- targets (issue 15)
@pytest.mark.parametrize("targets,error,match", [
    (torch.zeros(4, 4, dtype=torch.long), ValueError, r"targets must have the shape of idx \(B, T\) = \(2, 8\), got \(4, 4\)"),
    (torch.zeros(16, dtype=torch.long), ValueError, r"targets must have the shape of idx \(B, T\) = \(2, 8\), got \(16,\)"),
    (torch.zeros(2, 8), TypeError, "targets must be an integer tensor of token ids, got dtype float32"),
    (torch.full((2, 8), 65), ValueError, r"targets holds token id 65, outside the vocabulary \[0, 65\) and not ignore_index=-100"),
    (torch.full((2, 8), -3), ValueError, r"targets holds token id -3, outside the vocabulary"),
    (torch.full((2, 8), -100), ValueError, "targets hold no token to predict: every entry is ignore_index=-100"),
    ([[0] * 8] * 2, TypeError, "targets must be a torch.Tensor, got list"),
])
def test_forward_checks_targets(targets, error, match):
    m = GPT(_tiny())
    with pytest.raises(error, match=match):
        m(torch.zeros(2, 8, dtype=torch.long), targets)


def test_forward_ignores_ignore_index_targets_as_torch_does():
    torch.manual_seed(0)
    m = GPT(_tiny())
    idx = torch.randint(0, 65, (2, 8))
    tgt = torch.randint(0, 65, (2, 8))
    tgt[0, :5] = -100
    logits, loss = m(idx, tgt)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 65), tgt.reshape(-1)))
    assert torch.isfinite(m(idx, tgt.int())[1])  # int32 ids are ids too


@pytest.mark.parametrize("shape", [(2, 0), (0, 8)])
def test_forward_refuses_an_empty_batch(shape):
    with pytest.raises(ValueError, match=rf"idx must hold at least one token, got shape \({shape[0]}, {shape[1]}\)"):
        GPT(_tiny())(torch.zeros(shape, dtype=torch.long))


def test_formulas_and_inits_refuse_what_is_not_a_config_or_module():
    """Issue 15: ``param_count(GPT(cfg))`` (the model for its config, a natural slip) or a number gave
    AttributeError ('... has no attribute n_embd'); ``gpt2_init_`` of a tensor "no attribute 'modules'"
    and ``n_residual=0`` a ZeroDivisionError. Now each TypeError or ValueError names the parameter."""
    model = GPT(_tiny())
    for fn in (param_count, matmul_params, flops_per_token):
        with pytest.raises(TypeError, match="config must be a GPTConfig, got GPT"):
            fn(model)
        with pytest.raises(TypeError, match="config must be a GPTConfig, got float"):
            fn(1e308)
    with pytest.raises(TypeError, match="module must be a Module, got Tensor"):
        gpt2_init_(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="n_residual must be a positive int, got 0"):
        gpt2_init_(model, 0)
    with pytest.raises(TypeError, match="module must be a Module, got NoneType"):
        xavier_init_(None)
    assert param_count(model.config) == sum(p.numel() for p in model.parameters())  # the valid call still works


# ---------------------------------------------------------------------------- issue 14: one definition
def test_gpt_embeds_with_the_chapter_09_functions(monkeypatch):
    """GPT's input is chapter 09's lookup (mathllm.embedding.embed, called through TokenEmbedding) plus
    rows of its LearnedPositionalEmbedding: a spy sees the call, and the first block's input equals
    E[idx] + P[0..T-1] computed by hand with plain indexing."""
    import mathllm.embedding as E
    from mathllm.embedding import LearnedPositionalEmbedding, TokenEmbedding
    calls = []
    real = E.embed

    def spy(ids, weight):
        calls.append((ids, weight))
        return real(ids, weight)

    monkeypatch.setattr(E, "embed", spy)
    torch.manual_seed(0)
    m = GPT(_tiny()).eval()
    assert isinstance(m.token_embedding, TokenEmbedding) and isinstance(m.position_embedding, LearnedPositionalEmbedding)
    idx = torch.randint(0, 65, (2, 9))
    seen = []
    m.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    m(idx)
    assert len(calls) == 1 and calls[0][0] is idx and calls[0][1] is m.token_embedding.weight
    x0 = m.token_embedding.weight[idx] + m.position_embedding.weight[:9]  # (B, T, C)
    torch.testing.assert_close(seen[0], x0, rtol=0, atol=0)
    assert list(m.state_dict())[:2] == ["token_embedding.weight", "position_embedding.weight"]  # keys unchanged
