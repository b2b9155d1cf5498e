"""Tests of mathllm.bpe and mathllm.pretokenize: known answers, naive = incremental training,
parity with Hugging Face ``tokenizers`` (pre-tokens and encodings), round trips, streaming,
special tokens, save/load and bad input."""
import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from mathllm.bpe import BPETokenizer, gpt2_bytes_to_unicode
from mathllm.bpe_train import merge, pair_counts, train_incremental, train_naive
from mathllm.corpus import load_text
from mathllm.pretokenize import count_pretokens, pretokenize, settled_length, split_special

EOT = "<|endoftext|>"
AWKWARD = [
    "",
    "a",
    " ",
    "\n\n\n",
    "hello world",
    "Hello world's  end!!\n",
    "I'll've they're we'd",
    "😀👍🏽 👩‍👩‍👧‍👦 🇫🇷",                       # emoji, skin tone, ZWJ family, flag
    "東京は日本の首都です。中文汉字",                # CJK
    "e\u0301 a\u0308\u0304 Z\u0335\u0336\u0337",       # combining marks
    "\x00\x01\x07\x1b[0m\x7f\x85\u2028\u200b\ufeff",  # control and format characters
    "\t \t\r\n \u00a0\u3000x",                          # tabs, CR, no-break and ideographic spaces
    "12345 3.14159 ١٢٣ ½",                             # digits, Arabic-Indic digits, vulgar fraction
    "Ελληνικά, русский, עברית, العربية",
]


@pytest.fixture(scope="module")
def shakespeare():
    return load_text("tinyshakespeare")


@pytest.fixture(scope="module")
def tok(shakespeare):
    return BPETokenizer.train(shakespeare[:60_000], vocab_size=600, special_tokens=[EOT])


# ---------------------------------------------------------------------------- known answers
def test_merge_left_to_right():
    assert merge([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3]
    assert merge([5, 5, 5, 5, 5], (5, 5), 7) == [7, 7, 5]  # overlapping pairs merge left to right
    assert merge([], (1, 2), 9) == [] and merge([1], (1, 2), 9) == [1]


def test_pair_counts_weighted():
    # eq. (bpe-pair-count): "aaa" holds (a, a) twice; weight 3 makes it 6
    assert pair_counts([[97, 97, 97], [97, 98]], [3, 2]) == {(97, 97): 6, (97, 98): 2}


@pytest.mark.parametrize("algorithm", ["incremental", "naive"])
def test_wikipedia_example(algorithm):
    """aaabdaaabac: aa (4) -> 256; (256, a) and (a, b) tie at 2 and (b"aa", b"a") > (b"a", b"b"),
    so (256, 97) -> 257 = "aaa"; then (257, b) -> 258 = "aaab": [258, d, 258, a, c]."""
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=259, algorithm=algorithm)
    assert tok.merges == [(97, 97), (256, 97), (257, 98)]
    assert tok.merge_counts == [4, 2, 2]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.vocab[258] == b"aaab"


def test_ties_go_to_greatest_byte_strings():
    # pre-tokens "ab" and " cd": pairs (a,b), ( ,c), (c,d) all occur once; (b"c", b"d") is greatest
    merges, counts = train_incremental(count_pretokens("ab cd"), 3)
    assert merges == [(99, 100), (97, 98), (32, 256)] and counts == [1, 1, 1]
    # a count beats any tie-break
    assert train_incremental(count_pretokens("ab ab zz"), 1)[0] == [(97, 98)]


def test_pretokenize_examples():
    assert pretokenize("Hello world's  end!!\n") == ["Hello", " world", "'s", " ", " end", "!!", "\n"]
    assert pretokenize("a\n\n  b") == ["a", "\n\n ", " b"]
    assert count_pretokens(f"the cat{EOT}the", [EOT]) == {b"the": 2, b" cat": 1}
    assert split_special(f"x{EOT}{EOT}y", (EOT,)) == [("x", False), (EOT, True), (EOT, True), ("y", False)]


# ---------------------------------------------------------------------------- naive = incremental
TEXTS = {
    "wikipedia": "aaabdaaabac",
    "repeats": "aaaa aaaa aaa aa a bbbb abab abab ababab",
    "unicode": " ".join(AWKWARD) * 3,
    "words": "low lower lowest newer newest wider wide new " * 5,
}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_incremental_equals_naive(name):
    freqs = count_pretokens(TEXTS[name])
    naive = train_naive(freqs, 200)
    assert train_incremental(freqs, 200) == naive
    assert len(naive[0]) > 0


@pytest.mark.parametrize("n_chars,vocab_size", [(5_000, 400), (20_000, 350)])
def test_incremental_equals_naive_shakespeare(shakespeare, n_chars, vocab_size):
    text = shakespeare[:n_chars]
    a = BPETokenizer.train(text, vocab_size, algorithm="naive")
    b = BPETokenizer.train(text, vocab_size, algorithm="incremental")
    assert a.merges == b.merges and a.merge_counts == b.merge_counts
    assert len(a.merges) == vocab_size - 256


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ab", "ba", "aa", " ", " a", "é", "\n"]), max_size=60).map("".join),
       st.integers(0, 40))
def test_incremental_equals_naive_property(text, n_merges):
    freqs = count_pretokens(text)
    assert train_incremental(freqs, n_merges) == train_naive(freqs, n_merges)


def test_stops_when_no_pairs_left():
    tok = BPETokenizer.train("ab ab", vocab_size=1000)
    assert tok.merges == [(97, 98), (32, 256)] and tok.vocab_size == 258


def test_merge_counts_are_greedy_and_nonincreasing(shakespeare):
    # the counts at merge time never increase: a merge can only lower other pairs' counts ... except
    # pairs that contain the new token, which were 0 before; so the sequence is non-increasing
    tok = BPETokenizer.train(shakespeare[:50_000], 512)
    c = tok.merge_counts
    assert all(x >= y for x, y in zip(c, c[1:]))


def test_truncate_equals_smaller_training(shakespeare):
    text = shakespeare[:30_000]
    big = BPETokenizer.train(text, 600, special_tokens=[EOT])
    small = BPETokenizer.train(text, 400, special_tokens=[EOT])
    cut = big.truncate(400)
    assert cut.merges == small.merges and cut.special_ids == small.special_ids == {EOT: 399}
    with pytest.raises(ValueError, match=r"vocab_size must be in \[257, 600\]"):
        big.truncate(700)


def test_encode_replays_training(shakespeare):
    # encoding a training pre-token equals applying the merges to it one by one, in training order
    text = shakespeare[:20_000]
    tok = BPETokenizer.train(text, 500)
    for word in list(count_pretokens(text))[:400]:
        ids = list(word)
        for k, pair in enumerate(tok.merges):
            ids = merge(ids, pair, 256 + k)
        assert tok.encode(word.decode()) == ids


# ---------------------------------------------------------------------------- Hugging Face parity
tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is a test extra")


U2B = {c: b for b, c in gpt2_bytes_to_unicode().items()}


def test_gpt2_byte_alphabet():
    table = gpt2_bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[32] == "Ġ" and table[10] == "Ċ" and table[0] == "Ā" and table[ord("a")] == "a"
    # it is the alphabet HF's byte-level pre-tokenizer uses
    assert set(table.values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())


def _hf_bytes(s):
    return bytes(U2B[c] for c in s)


@pytest.mark.parametrize("text", AWKWARD + ["SHAKESPEARE"])
def test_pretokens_match_hf(shakespeare, text):
    text = shakespeare[:20_000] if text == "SHAKESPEARE" else text
    hf = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str(text)
    assert [p.encode() for p in pretokenize(text)] == [_hf_bytes(s) for s, _ in hf]


def test_encoding_matches_hf_with_the_same_merges(shakespeare):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator([shakespeare[:100_000]], trainer)
    ids = {bytes([b]): b for b in range(256)}
    merges = []
    for a, b in json.loads(hf.to_str())["model"]["merges"]:
        a, b = _hf_bytes(a), _hf_bytes(b)
        merges.append((ids[a], ids[b]))
        ids.setdefault(a + b, 255 + len(merges))
    ours = BPETokenizer(merges)
    for text in [shakespeare[200_000:230_000]] + AWKWARD:
        got = [ours.vocab[i] for i in ours.encode(text)]
        assert got == [_hf_bytes(t) for t in hf.encode(text).tokens]


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("text", AWKWARD)
def test_round_trip_awkward(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_property(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_corpus(tok, shakespeare):
    text = shakespeare[-50_000:]
    ids = tok.encode(text)
    assert tok.decode(ids) == text and len(ids) < 0.6 * len(text.encode())  # held-out text compresses


def test_decode_invalid_utf8_replaces(tok):
    assert tok.decode([0xFF]) == "\ufffd"
    cjk = tok.encode("日")  # three bytes; drop the last
    assert tok.decode_bytes(cjk) == "日".encode()
    assert tok.decode(list("日".encode())[:2]) == "\ufffd"


def test_decode_accepts_tensors(tok):
    torch = pytest.importorskip("torch")
    ids = tok.encode("To be, or not to be")
    assert tok.decode(torch.tensor(ids)) == "To be, or not to be"


# ---------------------------------------------------------------------------- streaming
PIECES = ["a", "b", "é", "日", " ", "  ", "\n", "\t", "\r\n", "\u00a0", "\x1c", "'", "'s", "re", "ll",
          "1", "23", "!", "?!", "<", "|", ">", "<|", "endoftext", "|>", EOT, "<s>", "<s><s>"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join), st.lists(st.integers(0, 200), max_size=8),
       st.sampled_from([(), (EOT,), ("<s>", "<s><s>", EOT)]))
def test_encode_iterable_equals_encode(text, cuts, specials):
    tok = BPETokenizer.train("ab ab 'sre ll 23 !! \n\n  \t" * 3 + "".join(PIECES), 300, special_tokens=specials)
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
    assert list(tok.encode_iterable(chunks, chunk_chars=1)) == tok.encode(text)


def test_encode_iterable_file(tok, shakespeare, tmp_path):
    text = shakespeare[:40_000].replace("\n\n", f"\n{EOT}\n")
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    for chunk_chars in (1, 100, 1 << 16):
        with open(path, encoding="utf-8") as f:
            streamed = list(tok.encode_iterable(f, chunk_chars=chunk_chars))
        assert streamed == tok.encode(text) and streamed.count(tok.special_ids[EOT]) == text.count(EOT)


def test_settled_length_holds_back_unfinished_pieces():
    assert settled_length("one two") == 3             # " two" may grow
    assert settled_length("one two ") == 7            # a non-space then a space: a boundary
    assert settled_length("a\n\n") == 1               # spaces may grow
    assert settled_length(" \n's") == 0               # " ", "\n" are settled, but " \n" alone is one piece
    assert settled_length("x'r") == 1                 # "'r" may become "'re"
    assert settled_length("") == 0 and settled_length("abc") == 0
    assert settled_length(f"hi{EOT}there <|end", (EOT,)) == 2 + len(EOT)
    # the spaces backtracked before "<", but a special token may start there: "\n\n\n\n" is then
    # one piece, so the run must wait (the regex read the "<" after the run to decide)
    text = "hello world\n\n\n\n" + EOT[:-1]
    assert settled_length(text, (EOT,)) == len("hello world")
    tok = BPETokenizer([], [EOT])
    assert list(tok.encode_iterable([text, ">"], chunk_chars=1)) == tok.encode(text + ">")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join), st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
       st.sampled_from([(), (EOT,), ("<s>", "<s><s>", EOT)]))
def test_settled_prefix_splits_as_the_whole(text, more, specials):
    n = settled_length(text, specials)
    def split(t):
        return [p for seg, sp in split_special(t, specials) for p in ([seg] if sp else pretokenize(seg))]
    head = split(text[:n])
    assert split(text + more)[:len(head)] == head and "".join(head) == text[:n]


# ---------------------------------------------------------------------------- special tokens
def test_special_tokens_split_and_never_merged():
    text = f"hello{EOT}hello{EOT}{EOT}world" * 20
    tok = BPETokenizer.train(text, 400, special_tokens=[EOT])
    eot = tok.special_ids[EOT]
    assert eot == tok.vocab_size - 1 and tok.vocab[eot] == EOT.encode()
    assert not any(b"<|" in tok.vocab[256 + k] for k in range(len(tok.merges)))
    ids = tok.encode(f"x{EOT}y")
    assert ids == tok.encode("x") + [eot] + tok.encode("y")
    assert tok.decode(ids) == f"x{EOT}y"
    # text on each side is encoded on its own: no pre-token spans the special token
    assert tok.encode(f" {EOT} ") == tok.encode(" ") + [eot] + tok.encode(" ")


def test_special_tokens_longest_first():
    tok = BPETokenizer.train("abc", 300, special_tokens=["<s>", "<s><s>"])
    one, two = tok.special_ids["<s>"], tok.special_ids["<s><s>"]
    assert tok.encode("<s><s><s>") == [two, one]
    assert tok.encode("<s>a<s><s>") == [one, 97, two]


def test_special_token_text_without_specials_is_plain_bytes():
    tok = BPETokenizer([])
    assert tok.encode(EOT) == list(EOT.encode())


# ---------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "bpe" and data["tokens"]["256"] == tok.vocab[256].decode()
    back = BPETokenizer.load(path)
    assert back.merges == tok.merges and back.vocab == tok.vocab and back.special_ids == tok.special_ids
    assert back.merge_counts == tok.merge_counts
    text = f"Romeo, Romeo!{EOT}wherefore art thou 😀"
    assert back.encode(text) == tok.encode(text)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"type": "char", "chars": ["a"]}')
    with pytest.raises(ValueError, match="not a saved BPETokenizer"):
        BPETokenizer.load(path)


# ---------------------------------------------------------------------------- bad input
def test_bad_input(tok):
    with pytest.raises(ValueError, match=r"token id 600 is outside the vocabulary \[0, 600\)"):
        tok.decode([1, 600])
    with pytest.raises(ValueError, match="token id -1 is outside"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="token ids must be ints, got float"):
        tok.decode([1.0])
    with pytest.raises(ValueError, match=r"at least 256 \(the bytes\) \+ 0 special tokens = 256, got 100"):
        BPETokenizer.train("abc", 100)
    with pytest.raises(ValueError, match="= 257, got 256"):
        BPETokenizer.train("abc", 256, special_tokens=[EOT])
    with pytest.raises(TypeError, match="each special token must be a str, got int"):
        BPETokenizer.train("abc", 300, special_tokens=[EOT, 7])
    with pytest.raises(TypeError, match="a list of strings, got the single string"):
        BPETokenizer.train("abc", 300, special_tokens=EOT)
    with pytest.raises(ValueError, match="distinct"):
        BPETokenizer.train("abc", 300, special_tokens=[EOT, EOT])
    with pytest.raises(ValueError, match="non-empty"):
        BPETokenizer.train("abc", 300, special_tokens=[""])
    with pytest.raises(ValueError, match="algorithm must be one of"):
        BPETokenizer.train("abc", 300, algorithm="fast")
    with pytest.raises(TypeError, match="vocab_size must be an int, got float"):
        BPETokenizer.train("abc", 300.0)
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        BPETokenizer.train(b"abc", 300)
    with pytest.raises(TypeError, match="encode needs a str, got list"):
        tok.encode(["a"])
    with pytest.raises(TypeError, match="needs str lines, got bytes"):
        list(tok.encode_iterable([b"abc"]))
    with pytest.raises(ValueError, match="chunk_chars must be a positive int, got 0"):
        list(tok.encode_iterable(["abc"], chunk_chars=0))
    with pytest.raises(ValueError, match=r"merge 1 is \(256, 300\)"):
        BPETokenizer([(97, 98), (256, 300)])
    with pytest.raises(ValueError, match="merges must be distinct pairs"):
        BPETokenizer([(97, 98), (97, 98)])


def test_training_speed_guard(shakespeare):
    """Not a benchmark (benchmarks/bpe_benchmark.py is): a generous bound that only a return of the
    naive algorithm (tens of seconds here) would break."""
    import time
    t0 = time.perf_counter()
    BPETokenizer.train(shakespeare[:130_000], 500)
    assert time.perf_counter() - t0 < 8.0


# ---------------------------------------------------------------------------- decode inputs
def test_decode_accepts_every_integer_container(tok):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    ids = tok.encode("To be, or not")
    assert all(i < 256 for i in tok.encode("Tb"))
    for container in (ids, tuple(ids), iter(ids), np.array(ids, dtype=np.int16), torch.tensor(ids, dtype=torch.int16),
                      torch.tensor(ids, dtype=torch.int32)):
        assert tok.decode(container) == "To be, or not"
    small = tok.encode("Tb")
    assert tok.decode(torch.tensor(small, dtype=torch.uint8)) == tok.decode(np.array(small, dtype=np.uint8)) == "Tb"


@pytest.mark.parametrize("ids, error, message", [
    ([True, False], TypeError, "token ids must be ints, got bool True"),  # once decoded as '\x01\x00'
    ([97, 1.7], TypeError, "got float 1.7"),
    ((i for i in [97, "x"]), TypeError, "got str 'x'"),  # a generator: named, once a StopIteration
    ((i for i in [97, 10**6]), ValueError, r"token id 1000000 is outside the vocabulary \[0, 600\)"),
    (b"ab", TypeError, "must be a sequence of ints, got bytes"),
])
def test_decode_rejects_what_is_not_an_id(tok, ids, error, message):
    with pytest.raises(error, match=message):
        tok.decode(ids)


def test_decode_rejects_float_and_bool_tensors(tok):
    torch = pytest.importorskip("torch")
    for ids in (torch.tensor([97.0]), torch.tensor([True])):
        with pytest.raises(TypeError, match="integer dtype"):
            tok.decode(ids)
    with pytest.raises(ValueError, match="must be 1-D"):
        tok.decode(torch.tensor([[97]]))


def test_encode_iterable_names_a_bad_line_from_a_generator(tok):
    with pytest.raises(TypeError, match="needs str lines, got int"):
        list(tok.encode_iterable(line for line in ["ab", 3]))
    with pytest.raises(TypeError, match="needs str lines, got NoneType"):
        list(tok.encode_iterable(iter(["ab", None]), chunk_chars=1))


def test_special_tokens_none_means_none():
    tok = BPETokenizer.train("aaab", 258, special_tokens=None)
    assert tok.special_tokens == () and BPETokenizer([], None).vocab_size == 256
    assert BPETokenizer([], [EOT]).encode(EOT, allow_special=False) == list(EOT.encode())


def test_another_numbering_is_checked():
    bytes_ = {i: bytes([255 - i]) for i in range(256)}  # byte b is id 255 - b
    tok = BPETokenizer([(255 - 97, 255 - 98)], vocab={**bytes_, 256: b"ab"})
    assert tok.encode("abc") == [256, 255 - 99] and tok.decode([256, 156]) == "abc"
    with pytest.raises(ValueError, match="no token for byte 0"):
        BPETokenizer([], vocab={0: b"xy", **{i: bytes([i]) for i in range(1, 256)}})
    with pytest.raises(ValueError, match=r"merge 0 makes b'ab', which is not in the vocabulary"):
        BPETokenizer([(255 - 97, 255 - 98)], vocab=bytes_)
    with pytest.raises(ValueError, match="have the same bytes"):
        BPETokenizer([], vocab={**bytes_, 256: b"a"})
    with pytest.raises(ValueError, match=r"none missing; missing \[256\]"):
        BPETokenizer([], vocab={**bytes_, 257: b"ab"})
    with pytest.raises(ValueError, match="special token '<s>' has id 3, which the vocabulary already gives"):
        BPETokenizer([], {"<s>": 3}, vocab=bytes_)


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("merges,error,message", [
    (1.5, TypeError, "merges must be a list or tuple, got float"),            # was: 'float' object is not iterable
    (None, TypeError, "merges must be a list or tuple, got NoneType"),
    ([(97, 98, 99)], TypeError, r"merges\[0\] must be a pair of token ids"),  # was: too many values to unpack
    ([(97, 98.0)], TypeError, r"merges\[0\] must be an int token id, got float"),
    ([(True, 98)], TypeError, r"merges\[0\] must be an int token id, got bool"),  # was: read as byte 1
    ([(97, 98)], ValueError, "merge_counts must hold one count per merge"),
])
def test_tokenizer_refuses_what_is_not_a_list_of_merges(merges, error, message):
    counts = [5, 4] if error is ValueError else None
    with pytest.raises(error, match=message):
        BPETokenizer(merges, merge_counts=counts)


def test_training_functions_refuse_what_count_pretokens_never_gives():
    """Before issue 15: AttributeError 'float' object has no attribute 'items', or a str read as pairs."""
    for train in (train_naive, train_incremental):
        with pytest.raises(TypeError, match="word_freqs must be a dict of pre-token bytes -> count"):
            train([b"ab"], 3)
        with pytest.raises(TypeError, match="word_freqs must map bytes to counts, got the key str 'ab'"):
            train({"ab": 1}, 3)
        with pytest.raises(ValueError, match="count >= 1"):
            train({b"ab": 0}, 3)
        with pytest.raises(ValueError, match="n_merges must be an int >= 0, got -1"):
            train({b"ab": 1}, -1)
    with pytest.raises(TypeError, match=r"pair must be a pair of token ids \(a, b\), got int 4"):
        merge([97, 98], 4, 256)                                      # was: cannot unpack non-iterable int object
    with pytest.raises(TypeError, match="ids must be a list or tuple, got str"):
        merge("ab", (97, 98), 256)
    with pytest.raises(ValueError, match="words and freqs must have one count per word"):
        pair_counts([[97, 98]], [1, 2])                              # was: zip dropped the extra count silently
    with pytest.raises(TypeError, match="freqs must be a list or tuple, got int"):
        pair_counts([[97, 98]], 4)


@pytest.mark.parametrize("text", [None, 1.5, b"bytes"])
def test_pretokenizers_refuse_what_is_not_text(text):
    """Before issue 15: "a bytes-like object is required" from the regex, or "object has no len()"."""
    for f in (pretokenize, count_pretokens, split_special, settled_length):
        with pytest.raises(TypeError, match=f"text must be a str, got {type(text).__name__}"):
            f(text)


def test_special_tokens_must_be_a_list_of_strings():
    with pytest.raises(TypeError, match="special_tokens must be a list of strings, got float"):
        split_special("a", 1.5)
    with pytest.raises(TypeError, match="special_tokens must be a list of strings, got Tensor"):
        count_pretokens("a", torch.zeros(2))                         # was: "Boolean value of Tensor ... ambiguous"
    assert split_special("a<s>b", ["<s>"]) == [("a", False), ("<s>", True), ("b", False)]  # a list works as a tuple
