"""mathllm.encoder_decoder: who attends to what, cache == no cache, the task, and that it learns."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mathllm.encoder_decoder import (BOS, EncoderDecoder, EncoderDecoderConfig, seq2seq_batch,
                                     sequence_accuracy)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

VARIANTS = [dict(), dict(prenorm=False), dict(positions="sinusoidal", mlp="gelu", bias=False),
            dict(norm="rmsnorm", mlp="swiglu")]


def _model(**kw):
    torch.manual_seed(0)
    cfg = EncoderDecoderConfig(vocab_size=10, src_block_size=8, tgt_block_size=9, n_layer=2, n_head=2, n_embd=16, **kw)
    return EncoderDecoder(cfg).double().eval()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_embd=30, n_head=4), "n_embd=30 must be divisible by n_head=4"),
    (dict(n_layer=-1), "n_layer must be a positive int, got -1"),
    (dict(positions="rope"), "positions must be one of .*got 'rope'"),
    (dict(dropout=-0.1), r"dropout must be in \[0, 1\), got -0.1"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EncoderDecoderConfig(**kwargs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        EncoderDecoderConfig().n_layer = 3


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_the_task(task):
    src, tgt_in, targets = seq2seq_batch(task, 50, 7, 10, torch.Generator().manual_seed(0))
    assert src.shape == tgt_in.shape == targets.shape == (50, 7) and src.dtype == torch.long
    assert src.min() >= 1 and src.max() <= 9  # 0 is BOS, never a digit
    want = src.flip(1) if task == "reverse" else torch.sort(src, 1).values
    assert torch.equal(targets, want)
    assert torch.all(tgt_in[:, 0] == BOS) and torch.equal(tgt_in[:, 1:], targets[:, :-1])
    with pytest.raises(ValueError, match="task must be one of .*got 'copy'"):
        seq2seq_batch("copy", 2, 3, 10)
    with pytest.raises(ValueError, match=r"vocab_size must be at least 3 \(BOS and two digits\), got 2"):
        seq2seq_batch(task, 2, 3, 2)


@pytest.mark.parametrize("kw", VARIANTS)
def test_shapes_loss_and_who_sees_what(kw):
    m = _model(**kw)
    src, tgt_in, targets = seq2seq_batch("reverse", 3, 8, 10, torch.Generator().manual_seed(1))
    logits, loss = m(src, tgt_in, targets)
    assert logits.shape == (3, 8, 10)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1)))
    # the encoder is bidirectional: the last source token changes the memory at position 0
    src2 = src.clone()
    src2[:, -1] = src2[:, -1] % 9 + 1
    assert not torch.allclose(m.encoder(src)[:, 0], m.encoder(src2)[:, 0])
    # so every decoder position depends on every source token (through cross-attention)
    assert not torch.allclose(m(src, tgt_in)[0][:, 0], m(src2, tgt_in)[0][:, 0])
    # the decoder is causal in the target
    tgt2 = tgt_in.clone()
    tgt2[:, 5:] = tgt2[:, 5:] % 9 + 1
    torch.testing.assert_close(m(src, tgt_in)[0][:, :5], m(src, tgt2)[0][:, :5], rtol=1e-12, atol=1e-12)
    assert m.decoder.lm_head.weight is m.decoder.embed.token.weight


@pytest.mark.parametrize("kw", VARIANTS)
@pytest.mark.parametrize("sampling", [dict(), dict(temperature=1.0, top_k=4)])
def test_generation_with_and_without_cache(kw, sampling):
    m = _model(**kw)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(6.0 if p.dim() > 1 else 1.0)
    src = seq2seq_batch("sort", 4, 8, 10, torch.Generator().manual_seed(2))[0]
    a, b = (m.generate(src, 9, use_cache=c, generator=torch.Generator().manual_seed(3), **sampling) for c in (True, False))
    assert a.shape == (4, 9) and torch.equal(a, b)
    # greedy generation is the argmax of teacher-forced logits on its own output
    if not sampling:
        tgt_in = torch.cat([torch.full((4, 1), BOS), a[:, :-1]], 1)
        assert torch.equal(m(src, tgt_in)[0].argmax(-1), a)


def test_bad_inputs_are_named():
    m = _model()
    with pytest.raises(ValueError, match="src reaches position 8: longer than block size 8"):
        m(torch.ones(1, 9, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tgt holds token id 10, outside the vocabulary \[0, 10\)"):
        m(torch.ones(1, 3, dtype=torch.long), torch.tensor([[0, 10]]))
    with pytest.raises(TypeError, match="config must be an EncoderDecoderConfig, got GPTConfig"):
        from mathllm.transformer import GPTConfig
        EncoderDecoder(GPTConfig())


def test_it_learns_to_reverse():
    torch.manual_seed(0)
    cfg = EncoderDecoderConfig(vocab_size=8, src_block_size=6, tgt_block_size=6, n_layer=2, n_head=2, n_embd=32)
    m = EncoderDecoder(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        _, loss = m(*seq2seq_batch("reverse", 32, 6, 8, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    src, _, targets = seq2seq_batch("reverse", 200, 6, 8, torch.Generator().manual_seed(1))
    assert loss.item() < 0.3
    assert sequence_accuracy(m, src, targets) > 0.5  # chance is 7^-6; the chapter trains to ~100%


def test_stacks_and_accuracy_refuse_what_is_not_a_config_or_model():
    """Issue 15: ``Encoder(None)``, ``Decoder(64)`` gave "'NoneType' object has no attribute 'vocab_size'";
    ``sequence_accuracy`` of a tensor "no attribute 'generate'". Now the TypeError names the parameter."""
    from mathllm.encoder_decoder import Decoder, Encoder
    for cls in (Encoder, Decoder):
        with pytest.raises(TypeError, match="config must be an EncoderDecoderConfig, got NoneType"):
            cls(None)
        with pytest.raises(TypeError, match="config must be an EncoderDecoderConfig, got int"):
            cls(64)
    src, _, targets = seq2seq_batch("reverse", 4, 5, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="model must be an EncoderDecoder, got Tensor"):
        sequence_accuracy(src.float(), src, targets)
    assert 0.0 <= sequence_accuracy(_model(), src, targets) <= 1.0


def test_both_stacks_embed_with_the_chapter_09_functions(monkeypatch):
    """Issue 14: the encoder-decoder's embeddings are chapter 09's (a spy on mathllm.embedding.embed sees
    the source and the target), with the state-dict keys of before."""
    import mathllm.embedding as E
    from mathllm.embedding import LearnedPositionalEmbedding, TokenEmbedding
    calls = []
    real = E.embed
    monkeypatch.setattr(E, "embed", lambda ids, weight: calls.append(ids) or real(ids, weight))
    m = _model()
    assert isinstance(m.encoder.embed.token, TokenEmbedding)
    assert isinstance(m.decoder.embed.position, LearnedPositionalEmbedding)
    src, tgt_in, _ = seq2seq_batch("reverse", 2, 5, 10, generator=torch.Generator().manual_seed(0))
    m(src, tgt_in)
    assert len(calls) == 2 and calls[0] is src and calls[1] is tgt_in
    assert {"encoder.embed.token.weight", "encoder.embed.position.weight", "decoder.embed.token.weight"} <= set(m.state_dict())
