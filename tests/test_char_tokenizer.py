"""Tests of mathllm.char_tokenizer: known answers, the Tiny Shakespeare alphabet, round trips,
save/load and bad input."""
import pytest
from hypothesis import given, settings, strategies as st

from mathllm.char_tokenizer import CharTokenizer
from mathllm.corpus import load_text


def test_known_answer():
    tok = CharTokenizer.train("hello")
    assert tok.chars == ["e", "h", "l", "o"] and tok.vocab_size == 4
    assert tok.encode("hole") == [1, 3, 2, 0]
    assert tok.decode([1, 0, 2, 2, 3]) == "hello"


def test_tiny_shakespeare_alphabet():
    # nanoGPT's shakespeare_char: 65 characters, newline first, then space and punctuation
    text = load_text("tinyshakespeare")
    tok = CharTokenizer.train(text)
    assert tok.vocab_size == 65
    assert tok.chars[:2] == ["\n", " "] and tok.chars[-1] == "z"
    ids = tok.encode(text[:10_000])
    assert len(ids) == 10_000 and tok.decode(ids) == text[:10_000]


@pytest.mark.parametrize("text", ["a", "😀 日本 e\u0301", "\x00\t\r\n", "abcabc" * 100])
def test_round_trip_awkward(text):
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text))
    assert tok.encode("") == [] and tok.decode([]) == ""


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1))
def test_round_trip_property(text):
    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert sorted(set(ids)) == list(range(tok.vocab_size))  # every id is used by its own text


def test_save_load(tmp_path):
    tok = CharTokenizer.train("To be, or not to be: 日本")
    path = tmp_path / "char.json"
    tok.save(path)
    back = CharTokenizer.load(path)
    assert back.chars == tok.chars and back.encode("be 日") == tok.encode("be 日")


def test_bad_input(tmp_path):
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match="character 'z' is not in this tokenizer's alphabet of 3"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"token id 3 is outside the vocabulary \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="non-empty str"):
        CharTokenizer.train("")
    with pytest.raises(ValueError, match="non-empty str"):
        CharTokenizer.train(b"abc")
    with pytest.raises(ValueError, match="distinct single characters"):
        CharTokenizer(["a", "a"])
    path = tmp_path / "bpe.json"
    path.write_text('{"type": "bpe"}')
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.load(path)


# ---------------------------------------------------------------------------- decode inputs
def test_decode_accepts_every_integer_container():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    tok = CharTokenizer.train("abc")
    for ids in ([1, 2], (1, 2), (i for i in [1, 2]), range(1, 3), np.array([1, 2], dtype=np.uint8),
                np.array([1, 2], dtype=np.int64), [np.int16(1), np.uint32(2)],
                *(torch.tensor([1, 2], dtype=d) for d in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64))):
        assert tok.decode(ids) == "bc"
    assert tok.decode([]) == "" and tok.decode(torch.tensor([], dtype=torch.long)) == ""


@pytest.mark.parametrize("ids, error, message", [
    ([1.7], TypeError, "token ids must be ints, got float 1.7"),  # once read as 'b'
    ([1.0], TypeError, "got float 1.0"),
    ([True, False], TypeError, "got bool True"),
    ("ab", TypeError, "must be a sequence of ints, got str"),
    (5, TypeError, "must be a sequence of ints, got int"),
    ([None], TypeError, "got NoneType None"),
    ((i for i in [0, "x"]), TypeError, "got str 'x'"),  # a generator: named, not a StopIteration
    ((i for i in [0, 9]), ValueError, r"token id 9 is outside the vocabulary \[0, 3\)"),
])
def test_decode_rejects_what_is_not_an_id(ids, error, message):
    tok = CharTokenizer.train("abc")
    with pytest.raises(error, match=message):
        tok.decode(ids)


def test_decode_rejects_float_bool_and_2d_arrays():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    tok = CharTokenizer.train("abc")
    for ids in (torch.tensor([1.0, 2.0]), torch.tensor([True, False]), np.array([1.7]), np.array([True])):
        with pytest.raises(TypeError, match="must have an integer dtype, got .* of dtype"):
            tok.decode(ids)
    with pytest.raises(ValueError, match=r"must be 1-D, got shape \(1, 2\)"):
        tok.decode(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"must be 1-D, got shape \(\)"):
        tok.decode(torch.tensor(1))


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("chars,error,message", [
    (1.5, TypeError, "chars must be a list of distinct single characters, got float"),  # was: not iterable
    (None, TypeError, "got NoneType"),
    (["a", "bc"], ValueError, "chars must be a list of distinct single characters, got 'bc'"),
    (["a", 1], ValueError, "got 1"),
    (["a", "b", "a"], ValueError, "got 'a' twice"),
])
def test_alphabet_must_be_distinct_single_characters(chars, error, message):
    with pytest.raises(error, match=message):
        CharTokenizer(chars)
