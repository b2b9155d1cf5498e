"""GPT-2's real tokenizer read by mathllm.bpe.BPETokenizer, against tiktoken's GPT-2 encoding and
Hugging Face ``tokenizers``, all three built offline from the same vocab.json / merges.txt
(../shared/data/gpt2/, see its README): identical ids on Tiny Shakespeare, Unicode, code,
whitespace runs and ``<|endoftext|>``; the files written back byte for byte; the download path
(a local file URL), the cache, the checksums and the offline error."""
import hashlib
import json
import pathlib

import pytest

from mathllm import gpt2_tokenizer
from mathllm.bpe import BPETokenizer, gpt2_bytes_to_unicode
from mathllm.corpus import load_text
from mathllm.pretokenize import GPT2_SPLIT_PATTERN

GPT2_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2"  # ../shared/data/gpt2 of the repo
if not (GPT2_DIR / "vocab.json").is_file() or not (GPT2_DIR / "merges.txt").is_file():
    pytest.skip(f"GPT-2's vocab.json and merges.txt are not in {GPT2_DIR} (see shared/data/gpt2/README.md)",
                allow_module_level=True)
tiktoken = pytest.importorskip("tiktoken", reason="tiktoken is a test extra (pip install -e '.[test]')")
tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is a test extra")

EOT = "<|endoftext|>"
VOCAB, MERGES = GPT2_DIR / "vocab.json", GPT2_DIR / "merges.txt"

UNICODE = [
    "東京は日本の首都です。中文汉字，繁體字。한국어 텍스트입니다.",      # CJK, Hangul, full-width punctuation
    "😀👍🏽 👩‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️‍🔥 🧑🏿‍🚀",                                   # emoji, skin tones, ZWJ sequences, flags
    "e\u0301 a\u0308\u0304 Z\u0335\u0336\u0337 n\u0303o\u0302 क्षि ที่",   # combining marks, Devanagari, Thai
    "Ελληνικά, русский, עברית, العربية, ქართული, Ꭰ",                        # other scripts
    "12345 3.14159 ١٢٣ ½ ² ⅷ 0x1F 1e-9",                                      # digits of every kind
    "\x00\x01\x07\x1b[0m\x7f\x85\u2028\u2029\u200b\ufeff\ufffd",             # controls and format characters
    "I'll've they're we'd it's WE'LL 'tis ''s",                               # contractions, and their uppercase
    "\U0001d49c\U0001d4b7 \U00010348 \U0010fffd",                             # outside the BMP
]
CODE = [
    'def f(x: int) -> int:\n    """Doc."""\n    return x ** 2  # square\n\n\nclass A(B):\n\tpass\n',
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 2; }\n#include <stdio.h>\n",
    '{"key": [1, 2.5e-3, null, true], "s": "a\\"b"}\n<a href="x?y=1&z=2">link</a>\n',
    "SELECT * FROM t WHERE x >= 10 AND y <> 'a';  -- comment\n$ ls -la | grep '^d' && echo $?\n",
    "    if x:\n        y = [i for i in range(10)]\r\n\t\t\treturn {**d, 'k': v}\n",
]
WHITESPACE = [
    "", " ", "  ", "a  b", "a   b", "a\t\tb", " \n \n ", "\n\n\n\n", "x \n", "trailing   ", "   leading",
    "\r\n\r\n", "\u00a0\u00a0x", "\u3000\u3000x", "a \u00a0 b", "\t \t \t", " " * 40 + "x", "\n" * 30,
    "a\u2003\u2003b", "word \x0b\x0c word",
]
SPECIAL = [
    f"a{EOT}b", f"{EOT}", f"{EOT}{EOT}", f" {EOT} ", f"Hello{EOT}\n\nworld {EOT}",
    "<|endoftext", "endoftext|>", f"<|{EOT}|>", f"<|endoftext|>x<|endoftext|", f"\n{EOT}\n{EOT}",
]


# ---------------------------------------------------------------------------- the three tokenizers
@pytest.fixture(scope="module")
def ours():
    return BPETokenizer.from_files(VOCAB, MERGES)


@pytest.fixture(scope="module")
def tik():
    """tiktoken's GPT-2 encoding, built from the same files (tiktoken's own gpt2 would download them)."""
    byte_of = {c: b for b, c in gpt2_bytes_to_unicode().items()}
    vocab = json.loads(VOCAB.read_text(encoding="utf-8"))
    ranks = {bytes(byte_of[c] for c in t): i for t, i in vocab.items() if t != EOT}
    return tiktoken.Encoding(name="gpt2-offline", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: vocab[EOT]})


def _hf(with_special: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    hf = Tokenizer(models.BPE.from_file(str(VOCAB), str(MERGES)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    if with_special:
        hf.add_special_tokens([EOT])
    return hf


@pytest.fixture(scope="module")
def hf():
    return _hf(True)


@pytest.fixture(scope="module")
def hf_plain():
    """Without the special token registered: ``<|endoftext|>`` is ordinary text."""
    return _hf(False)


def test_gpt2_numbering(ours):
    """GPT-2's ``"!"`` is id 0 and the byte 0 is 188; merge k makes 256 + k; ``<|endoftext|>`` is 50256."""
    assert ours.vocab_size == 50257 and len(ours.merges) == 50000
    assert ours.special_ids == {EOT: 50256}
    assert ours.encode("!") == [0] and ours.encode("\x00") == [188] and ours.encode(" the") == [262]
    assert ours.encode("Hello world") == [15496, 995]  # the ids every GPT-2 tutorial shows
    assert ours.decode([15496, 995, 50256]) == "Hello world" + EOT


# ---------------------------------------------------------------------------- parity
def _agree(ours, tik, hf, hf_plain, texts):
    n = 0
    for text in texts:
        ids = ours.encode(text)
        assert ids == tik.encode(text, allowed_special="all"), text
        assert ids == hf.encode(text).ids, text
        assert ours.encode(text, allow_special=False) == tik.encode_ordinary(text) == hf_plain.encode(text).ids, text
        assert ours.decode(ids) == tik.decode(ids) == hf.decode(ids, skip_special_tokens=False) == text
        n += len(ids)
    return n


def test_tiny_shakespeare_identical(ours, tik, hf):
    text = load_text("tinyshakespeare")
    ids = ours.encode(text)
    assert ids == tik.encode_ordinary(text)
    assert ids == hf.encode(text).ids
    assert len(ids) == 338_025 and ours.decode(ids) == text


@pytest.mark.parametrize("part", ["unicode", "code", "whitespace", "special"])
def test_varied_text_identical(ours, tik, hf, hf_plain, part):
    texts = {"unicode": UNICODE, "code": CODE, "whitespace": WHITESPACE, "special": SPECIAL}[part]
    assert _agree(ours, tik, hf, hf_plain, texts + ["\n".join(texts)]) > 0


def test_the_package_source_identical(ours, tik, hf):
    """A large code corpus: every module of mathllm (about 650 KB of Python, docstrings, indentation)."""
    root = pathlib.Path(__file__).resolve().parents[1] / "mathllm"
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(root.glob("*.py")))
    ids = ours.encode(text)
    assert ids == tik.encode(text, allowed_special="all") == hf.encode(text).ids
    assert ours.decode(ids) == text and len(text) > 100_000


def test_every_unicode_block_identical(ours, tik, hf, hf_plain):
    """One string per 256-code-point block of the BMP and a few astral blocks (surrogates left out)."""
    texts = []
    for start in [*range(0, 0x10000, 256), 0x1F300, 0x1F600, 0x1F900, 0x20000, 0xE0000]:
        chars = [chr(c) for c in range(start, start + 256, 3) if not 0xD800 <= c < 0xE000]
        texts.append(" ".join("".join(chars[i:i + 5]) for i in range(0, len(chars), 5)))
    _agree(ours, tik, hf, hf_plain, texts)


def test_special_token_allowed_and_disallowed(ours, tik):
    text = f"The end.{EOT}Once upon"
    allowed = ours.encode(text)
    assert allowed.count(50256) == 1 and allowed == tik.encode(text, allowed_special={EOT})
    plain = ours.encode(text, allow_special=False)
    assert 50256 not in plain and plain == tik.encode(text, disallowed_special=())
    with pytest.raises(ValueError):
        tik.encode(text)  # tiktoken refuses by default; ours asks the caller to choose with allow_special
    assert list(ours.encode_iterable([text[:5], text[5:]], chunk_chars=1, allow_special=False)) == plain
    assert list(ours.encode_iterable([text[:12], text[12:]], chunk_chars=1)) == allowed
    without = BPETokenizer.from_files(VOCAB, MERGES, special_tokens=[])
    assert without.encode(text) == plain and without.vocab_size == 50257 and without.decode([50256]) == EOT


# ---------------------------------------------------------------------------- files
def test_save_files_writes_gpt2_files_back(ours, tmp_path):
    """The files written are the Hub's: vocab.json byte for byte, merges.txt with its header."""
    ours.save_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert (tmp_path / "vocab.json").read_bytes() == VOCAB.read_bytes()
    merges = (tmp_path / "merges.txt").read_bytes()
    assert hashlib.sha256(merges).hexdigest() == gpt2_tokenizer.GPT2_SHA256["merges.txt"][0]
    assert merges == b"#version: 0.2\n" + MERGES.read_bytes().removeprefix(b"#version: 0.2\n")
    again = BPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert again.vocab == ours.vocab and again.merges == ours.merges and again.special_ids == ours.special_ids


def test_save_load_json_keeps_the_numbering(ours, tmp_path):
    ours.save(tmp_path / "gpt2.json")
    again = BPETokenizer.load(tmp_path / "gpt2.json")
    text = "Hello world 東京 😀" + EOT
    assert again.encode(text) == ours.encode(text) and again.vocab == ours.vocab


def test_trained_tokenizer_round_trips_through_files(tmp_path):
    tok = BPETokenizer.train(load_text("tinyshakespeare")[:20_000], 400, special_tokens=[EOT, "<pad>"])
    tok.save_files(tmp_path / "v.json", tmp_path / "m.txt")
    again = BPETokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    assert again.vocab == tok.vocab and again.special_ids == tok.special_ids == {EOT: 398, "<pad>": 399}
    text = "First Citizen: before we proceed<pad>" + EOT
    assert again.encode(text) == tok.encode(text)


def test_truncate_keeps_the_gpt2_numbering(ours, tik):
    small = ours.truncate(1000)
    assert small.vocab_size == 1000 and small.special_ids == {EOT: 999}
    ids = small.encode("Hello world, the king")
    assert max(ids) < 999 and small.decode(ids) == "Hello world, the king"


# ---------------------------------------------------------------------------- from_pretrained
def test_from_pretrained_reads_a_folder_and_the_data_dir(ours, monkeypatch, tmp_path):
    assert BPETokenizer.from_pretrained(GPT2_DIR).vocab == ours.vocab
    monkeypatch.setenv("MATHLLM_DATA_DIR", str(GPT2_DIR.parent))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert BPETokenizer.from_pretrained("gpt2-xl", download_ok=False).merges == ours.merges


def test_from_pretrained_downloads_once_with_checksums(ours, monkeypatch, tmp_path):
    """A file URL stands in for the Hub: the files land in the cache, verified, and are read from there next time."""
    monkeypatch.delenv("MATHLLM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    hub = tmp_path / "hub"
    hub.mkdir()
    ours.save_files(hub / "vocab.json", hub / "merges.txt")
    monkeypatch.setattr(gpt2_tokenizer, "HUB_URL", hub.as_uri() + "/{file}")
    tok = BPETokenizer.from_pretrained("gpt2")
    cached = tmp_path / "cache" / "mathllm" / "gpt2"
    assert sorted(p.name for p in cached.iterdir()) == ["merges.txt", "vocab.json"]
    assert tok.encode("Hello world") == [15496, 995]
    (hub / "vocab.json").unlink()  # offline now: the cache answers
    assert BPETokenizer.from_pretrained("gpt2", download_ok=False).vocab == ours.vocab

    (cached / "merges.txt").write_text("#version: 0.2\nĠ t\n")  # a damaged copy is refused, never used
    with pytest.raises(ValueError, match="not GPT-2.s merges.txt"):
        BPETokenizer.from_pretrained("gpt2")
    (cached / "merges.txt").unlink()
    (hub / "merges.txt").write_text("#version: 0.2\nĠ t\n")  # so is a download with the wrong digest
    with pytest.raises(ValueError, match="SHA-256"):
        BPETokenizer.from_pretrained("gpt2")
    assert not (cached / "merges.txt").exists() and not list(cached.glob("*.part"))


def test_from_pretrained_offline_says_how_to_supply_the_files(monkeypatch, tmp_path):
    monkeypatch.delenv("MATHLLM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="downloading is off. Supply the files"):
        BPETokenizer.from_pretrained("gpt2", download_ok=False)
    monkeypatch.setattr(gpt2_tokenizer, "HUB_URL", (tmp_path / "nowhere").as_uri() + "/{file}")
    with pytest.raises(FileNotFoundError, match=r"could not be downloaded .*save .*vocab\.json.* into"):
        BPETokenizer.from_pretrained("gpt2")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="neither one of"):
        BPETokenizer.from_pretrained("gpt3")
    with pytest.raises(FileNotFoundError, match="has no merges.txt"):
        (tmp_path / "vocab.json").write_text("{}")
        BPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "m.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match="line 2: expected 'left right'"):
        BPETokenizer.from_files(VOCAB, tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("a b\n")
    (tmp_path / "v.json").write_text('{"a": 0}')
    with pytest.raises(ValueError, match="uses 'b', which is not in"):
        BPETokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    (tmp_path / "v.json").write_text('["a"]')
    with pytest.raises(ValueError, match="is not a vocab.json"):
        BPETokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    with pytest.raises(TypeError, match="single string"):
        BPETokenizer.from_files(VOCAB, MERGES, special_tokens=EOT)


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_byte_alphabet_conversions_refuse_the_wrong_type():
    """Before issue 15: "'float' object is not iterable", and token_text("a") a KeyError 'a' (a str
    iterates as characters, not as byte values)."""
    with pytest.raises(TypeError, match="token must be a str, got bytes"):
        gpt2_tokenizer.token_bytes(b"the")
    with pytest.raises(TypeError, match="b must be bytes, got str"):
        gpt2_tokenizer.token_text("the")
    with pytest.raises(TypeError, match="b must be bytes, got float"):
        gpt2_tokenizer.token_text(1.5)
    assert gpt2_tokenizer.token_text(bytearray(b" the")) == "Ġthe"
