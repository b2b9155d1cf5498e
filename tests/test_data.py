"""Token files and batches: exact round trips, windows that are the corpus, resumable and rank-split loaders."""
import json

import numpy as np
import pytest
import torch

from mathllm.bpe import BPETokenizer
from mathllm.char_tokenizer import CharTokenizer
from mathllm.corpus import load_text
from mathllm.data import (Batches, TokenData, eval_batches, prepare, tokenizer_from_dict, tokenizer_to_dict)

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


@pytest.fixture
def tokens():
    return np.arange(1000, dtype=np.uint16)  # position i holds token i: a window shows where it starts


def test_from_text_round_trip(tmp_path):
    tok = CharTokenizer.train(TEXT)
    data = TokenData.from_text(tmp_path, TEXT, tok, val_fraction=0.25, source="test")
    cut = int(len(TEXT) * 0.75)
    assert data.decode(data.train) == TEXT[:cut] and data.decode(data.val) == TEXT[cut:]
    assert data.train.dtype == np.uint16 and (tmp_path / "train.bin").stat().st_size == 2 * cut
    assert data.vocab_size == tok.vocab_size and data.chars_per_token == 1.0 == data.bytes_per_token
    again = TokenData(tmp_path)  # reopened from disk
    assert np.array_equal(again.val, data.val) and again.tokenizer.chars == tok.chars


def test_bpe_corpus_records_characters_and_bytes_per_token(tmp_path):
    text = TEXT + "Ünïcödé – 名前 ✓\n" * 5
    tok = BPETokenizer.train(text, 300)
    data = TokenData.from_text(tmp_path, text, tok, val_fraction=0.3)
    cut = int(len(text) * 0.7)
    val_text = text[cut:]
    assert data.decode(data.val) == val_text
    assert data.chars_per_token == pytest.approx(len(val_text) / len(data.val), rel=1e-12)
    assert data.bytes_per_token == pytest.approx(len(val_text.encode()) / len(data.val), rel=1e-12)
    assert data.bytes_per_token > data.chars_per_token > 1.0  # merges make tokens longer than characters


@pytest.mark.parametrize("tok", [CharTokenizer.train("hello world"), BPETokenizer.train("hello world " * 9, 260)])
def test_tokenizer_dict_round_trip(tok):
    back = tokenizer_from_dict(json.loads(json.dumps(tokenizer_to_dict(tok))))
    assert type(back) is type(tok) and back.encode("hello world") == tok.encode("hello world")
    assert tokenizer_from_dict(None) is None
    with pytest.raises(ValueError, match="not a saved tokenizer"):
        tokenizer_from_dict({"type": "wordpiece"})


def test_write_rejects_bad_ids(tmp_path):
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 10\)"):
        TokenData.write(tmp_path, [1, 2, 10], [1, 2], vocab_size=10)
    with pytest.raises(ValueError, match="uint16"):
        TokenData.write(tmp_path, [1, 2], [1, 2], vocab_size=70_000)
    with pytest.raises(ValueError, match="at least 2 token ids"):
        TokenData.write(tmp_path, [1], [1, 2], vocab_size=10)


def test_truncated_token_file_is_an_error(tmp_path):
    TokenData.write(tmp_path, list(range(10)) * 10, [1, 2, 3], vocab_size=10)
    (tmp_path / "train.bin").write_bytes((tmp_path / "train.bin").read_bytes()[:50])
    with pytest.raises(ValueError, match="missing or truncated"):
        TokenData(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no meta.json"):
        TokenData(tmp_path / "nowhere")


def test_prepare_tinyshakespeare_matches_nanogpt_and_is_cached(tmp_path):
    data = prepare("tinyshakespeare", tmp_path)
    # nanoGPT's data/shakespeare_char/prepare.py: 65 characters, 1,003,854 train and 111,540 val tokens
    assert (data.vocab_size, len(data.train), len(data.val)) == (65, 1_003_854, 111_540)
    text = load_text("tinyshakespeare")
    assert data.decode(data.val[:200]) == text[1_003_854:1_003_854 + 200]
    stamp = (tmp_path / "train.bin").stat().st_mtime_ns
    assert len(prepare("tinyshakespeare", tmp_path).train) == 1_003_854
    assert (tmp_path / "train.bin").stat().st_mtime_ns == stamp  # tokenized once


def test_prepare_file_with_bpe(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    data = prepare("file", tmp_path / "tok", path=path, tokenizer="bpe", bpe_vocab_size=300)
    assert data.vocab_size == 300 and data.decode(np.concatenate([data.train, data.val])) == TEXT
    with pytest.raises(ValueError, match="corpus must be one of"):
        prepare("wikipedia", tmp_path)
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        prepare("file", tmp_path, path=path, tokenizer="word")


@pytest.mark.parametrize("order", ["random", "sequential"])
def test_batches_are_windows_of_the_corpus(tokens, order):
    loader = Batches(tokens, 4, 16, order=order, seed=0)
    for _ in range(3):
        x, y = loader.next()
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64 and x.is_contiguous()
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        for row_x, row_y in zip(x, y):
            start = int(row_x[0])
            assert torch.equal(row_x, torch.arange(start, start + 16))
            assert int(row_y[-1]) == start + 16


def test_sequential_order_walks_the_corpus_and_wraps(tokens):
    loader = Batches(tokens, 3, 100, order="sequential")
    starts = [int(row[0]) for _ in range(4) for row in loader.next()[0]]
    # windows start 100 apart; 1000 tokens hold starts 0..899 (T + 1 = 101 tokens each), then wrap mod 900
    assert starts == [(100 * i) % 900 for i in range(12)]


@pytest.mark.parametrize("order", ["random", "sequential"])
def test_state_dict_resumes_the_same_batches(tokens, order):
    a = Batches(tokens, 4, 8, order=order, seed=5)
    for _ in range(3):
        a.next()
    state = a.state_dict()
    expected = [a.next() for _ in range(3)]
    b = Batches(tokens, 4, 8, order=order, seed=99)
    b.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(expected, (b.next() for _ in range(3))):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("order", ["random", "sequential"])
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_global_batch(tokens, order, world):
    whole = Batches(tokens, 2 * world, 8, order=order, seed=1)
    parts = [Batches(tokens, 2, 8, order=order, seed=1, rank=r, world_size=world) for r in range(world)]
    for _ in range(3):
        x, _ = whole.next()
        assert torch.equal(x, torch.cat([p.next()[0] for p in parts]))


def test_seed_decides_the_batches(tokens):
    first = lambda seed: Batches(tokens, 4, 8, seed=seed).next()[0]
    assert torch.equal(first(0), first(0)) and not torch.equal(first(0), first(1))


def test_eval_batches_are_fixed_and_leave_training_alone(tokens):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a, b = eval_batches(tokens, 3, 4, 8, seed=7), eval_batches(tokens, 3, 4, 8, seed=7)
    assert torch.equal(torch.rand(3), expected)  # the global generator was not touched
    assert len(a) == 3 and all(torch.equal(p[0], q[0]) for p, q in zip(a, b))


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(block_size=2.5), "block_size must be a positive int"),
    (dict(order="shuffled"), "order must be one of random, sequential"),
    (dict(rank=2, world_size=2), r"rank must be in \[0, world_size=2\)"),
    (dict(block_size=999), "too few for windows"),
])
def test_bad_loader_arguments(tokens, kwargs, match):
    args = dict(batch_size=4, block_size=8) | kwargs
    with pytest.raises(ValueError, match=match):
        Batches(tokens, args.pop("batch_size"), args.pop("block_size"), **args)


def test_loader_state_of_another_order_is_refused(tokens):
    state = Batches(tokens, 2, 4, order="random").state_dict()
    with pytest.raises(ValueError, match="order='random'"):
        Batches(tokens, 2, 4, order="sequential").load_state_dict(state)


def test_prepare_markov_is_the_source_sample(tmp_path):
    from mathllm.markov_source import MarkovSource, MarkovSourceConfig
    config = MarkovSourceConfig(vocab_size=4, order=1, concentration=0.5, seed=3)
    data = prepare("markov", tmp_path, markov=config, markov_tokens=2000, val_fraction=0.25, seed=7)
    source = MarkovSource(config)
    ids = source.sample(2000, seed=7).numpy()
    assert np.array_equal(np.concatenate([data.train, data.val]), ids) and len(data.val) == 500
    assert data.vocab_size == 4 and data.meta["entropy_rate"] == pytest.approx(source.entropy_rate(), rel=1e-12)
    assert data.decode(data.val[:20]) == source.decode(torch.from_numpy(ids[1500:1520]))  # symbols print as the alphabet
    first = np.array(data.train)
    del data
    again = prepare("markov", tmp_path, markov=config, markov_tokens=2000, val_fraction=0.25, seed=7)
    assert np.array_equal(again.train, first)
    del again
    other = prepare("markov", tmp_path, markov=config, markov_tokens=2000, val_fraction=0.25, seed=8)
    assert not np.array_equal(other.train, first)  # a new request rewrites the files


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("bad,error,message", [
    (1.5, TypeError, "tokens must be a 1-d integer array or tensor of token ids, got float"),  # was: float has no len()
    (None, TypeError, "got NoneType"),
    (list(range(100)), TypeError, "got list"),                       # was: accepted, then failed at next()
    (np.linspace(0, 1, 100), TypeError, "tokens must be integer token ids, got an array of dtype float64"),
    (torch.ones(100, dtype=torch.bool), TypeError, "got a tensor of dtype bool"),
    (np.zeros((10, 10), dtype=np.uint16), ValueError, r"tokens must be 1-d, got shape \(10, 10\)"),
])
def test_loader_refuses_what_is_not_a_1d_array_of_ids(bad, error, message):
    with pytest.raises(error, match=message):
        Batches(bad, 2, 4)
    with pytest.raises(error, match=message):
        eval_batches(bad, 1, 2, 4)


def test_loader_reads_an_integer_tensor_as_its_array(tokens):
    """A tensor used to pass the checks and then fail in next() (a tensor has no astype)."""
    x, y = Batches(torch.from_numpy(tokens.astype(np.int64)), 4, 8, seed=3).next()
    x_np, y_np = Batches(tokens, 4, 8, seed=3).next()
    assert torch.equal(x, x_np) and torch.equal(y, y_np)


def test_eval_batches_count_must_be_positive(tokens):
    with pytest.raises(ValueError, match="n_batches must be a positive int, got 0"):
        eval_batches(tokens, 0, 2, 4)
