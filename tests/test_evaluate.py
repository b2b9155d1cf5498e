"""Tests for mathllm.evaluate: per-token losses and bits per byte, against torch and hand counts."""
import math

import pytest
import torch
import torch.nn.functional as F

import mathllm.evaluate
from mathllm.bpe import BPETokenizer
from mathllm.char_tokenizer import CharTokenizer
from mathllm.evaluate import (bits_per_byte, chunk_sums, compare_bits_per_byte, next_token_logits,
                              token_byte_lengths, token_nll)
from mathllm.transformer import GPT, GPTConfig

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


class Bigram(torch.nn.Module):
    """A model that returns bare logits (no tuple): the next token depends on the current one only."""

    def __init__(self, V):
        super().__init__()
        self.table = torch.nn.Embedding(V, V)

    def forward(self, idx):
        return self.table(idx)


# ---------------------------------------------------------------------------- per-token losses
@pytest.mark.parametrize("N,T,batch", [(2, 4, 1), (17, 4, 2), (41, 8, 64), (64, 8, 3), (65, 8, 3)])
def test_next_token_logits_match_windows_of_the_model(N, T, batch):
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=11, block_size=T)).train()
    ids = torch.randint(0, 11, (N,))
    got = next_token_logits(model, ids, T, batch_size=batch)
    assert got.shape == (N - 1, 11) and model.training            # the mode is restored
    model.eval()
    with torch.no_grad():
        want = torch.cat([model(ids[s:min(s + T, N - 1)][None])[0][0] for s in range(0, N - 1, T)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_next_token_logits_accepts_models_returning_bare_logits():
    model = Bigram(5)
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    got = next_token_logits(model, ids, 3)
    torch.testing.assert_close(got, model.table.weight[ids[:-1]].detach())


@pytest.mark.parametrize("N,V", [(1, 2), (50, 7), (300, 65)])
def test_token_nll_is_cross_entropy(N, V):
    g = torch.Generator().manual_seed(N)
    logits, targets = 4 * torch.randn(N, V, generator=g), torch.randint(0, V, (N,), generator=g)
    got = token_nll(logits, targets)
    want = -torch.log_softmax(logits.double(), -1)[torch.arange(N), targets]
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    assert math.isclose(float(got.mean()), float(F.cross_entropy(logits, targets)), rel_tol=1e-5)


def test_bad_inputs_raise():
    model = Bigram(5)
    with pytest.raises(TypeError, match="int64"):
        next_token_logits(model, torch.zeros(4), 2)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        next_token_logits(model, torch.zeros(1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="block_size"):
        next_token_logits(model, torch.zeros(4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        token_nll(torch.zeros(3, 4), torch.tensor([0, 1, 4]))
    with pytest.raises(TypeError, match="tokenizer"):
        token_byte_lengths(object())


# ---------------------------------------------------------------------------- bits per byte
TEXTS = ["hello world", "naïve café", "日本語のテキスト", "emoji 🙂🙃 and more", "a\nb\n\nc"]


@pytest.mark.parametrize("text", TEXTS)
def test_token_byte_lengths_add_up_to_the_utf8_length(text):
    char = CharTokenizer.train(text)
    bpe = BPETokenizer.train(text * 3, vocab_size=270)
    for tok in (char, bpe):
        lengths = token_byte_lengths(tok)
        assert int(lengths[tok.encode(text)].sum()) == len(text.encode("utf-8"))


def test_bits_per_byte_known_answer():
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)
    assert bits_per_byte(torch.full((4,), math.log(2)), torch.tensor([1, 1, 2, 4])) == pytest.approx(0.5)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunk_sums_assign_each_token_to_the_chunk_of_its_first_byte(chunk):
    lengths = torch.tensor([1, 3, 2, 1, 4, 1, 2])
    values = torch.arange(7, dtype=torch.float64)
    v, b = chunk_sums(values, lengths, chunk)
    starts = [0, 1, 4, 6, 7, 11, 12]
    want_v = torch.zeros(max(starts) // chunk + 1, dtype=torch.float64)
    want_b = torch.zeros_like(want_v)
    for i, s in enumerate(starts):
        want_v[s // chunk] += values[i]
        want_b[s // chunk] += lengths[i]
    torch.testing.assert_close(v, want_v)
    torch.testing.assert_close(b, want_b)


def test_compare_bits_per_byte_of_two_tokenizations():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    char, bpe = CharTokenizer.train(text), BPETokenizer.train(text, vocab_size=300)
    g = torch.Generator().manual_seed(0)
    ids_c, ids_b = torch.tensor(char.encode(text)), torch.tensor(bpe.encode(text))
    bytes_c, bytes_b = token_byte_lengths(char)[ids_c], token_byte_lengths(bpe)[ids_b]
    nats_c = torch.rand(len(ids_c), generator=g, dtype=torch.float64)
    nats_b = torch.rand(len(ids_b), generator=g, dtype=torch.float64) * 3
    same = compare_bits_per_byte(nats_c, bytes_c, nats_c, bytes_c, chunk_bytes=64, n_boot=200, generator=g)
    assert same.difference.low == same.difference.high == 0.0
    res = compare_bits_per_byte(nats_c, bytes_c, nats_b, bytes_b, chunk_bytes=64, n_boot=500, generator=g)
    assert res.a.estimate == pytest.approx(bits_per_byte(nats_c, bytes_c), rel=1e-12)
    assert res.b.estimate == pytest.approx(bits_per_byte(nats_b, bytes_b), rel=1e-12)
    assert res.difference.estimate == pytest.approx(res.a.estimate - res.b.estimate, rel=1e-12)
    assert res.a.low < res.a.estimate < res.a.high and res.difference.low < res.difference.estimate < res.difference.high


# ---------------------------------------------------------------------------- the split of issue 15
# every name that notebooks and tests imported from mathllm.evaluate before it was split
BEFORE_THE_SPLIT = ("CHAR_CLASSES bits_per_byte bootstrap bootstrap_ci char_class char_classes chunk_sums "
                    "compare_bits_per_byte confusion_matrix fit_temperature good_turing_missing_mass ngram_overlap "
                    "ngram_seen next_token_logits percentile_interval reliability temperature_nll token_byte_lengths "
                    "token_nll ConfidenceInterval Comparison Reliability").split()


@pytest.mark.parametrize("name", BEFORE_THE_SPLIT)
def test_every_name_of_the_old_module_is_still_importable_from_it(name):
    assert hasattr(mathllm.evaluate, name), f"from mathllm.evaluate import {name} no longer works"


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("nats,n_bytes,error,message", [
    ("a", 4, TypeError, r"nats must be a real number or a tensor of them, got str"),
    (None, 4, TypeError, r"nats must be a real number or a tensor of them, got NoneType"),
    (1.0, True, TypeError, r"n_bytes must be a real number or a tensor of them, got bool"),
    (torch.ones(3, dtype=torch.bool), 4, TypeError, r"dtype bool"),
    (-1.0, 4, ValueError, r"nats must sum to >= 0"),
    (1.0, float("nan"), ValueError, r"n_bytes must be positive, got nan"),
])
def test_bits_per_byte_refuses_what_is_not_nats_over_bytes(nats, n_bytes, error, message):
    """Before issue 15 a str or None reached float() ("could not convert string to float"), a bool
    counted as 1 byte, and NaN bytes gave NaN instead of an error."""
    with pytest.raises(error, match=message):
        bits_per_byte(nats, n_bytes)


def test_token_nll_and_chunk_sums_refuse_integer_logits_and_empty_text():
    with pytest.raises(TypeError, match="logits must be a floating-point tensor, got dtype int64"):
        token_nll(torch.zeros(3, 4, dtype=torch.long), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="values must hold at least one token"):
        chunk_sums(torch.zeros(0), torch.zeros(0, dtype=torch.long), 4)   # used to be max() of an empty tensor
