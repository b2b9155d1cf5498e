"""Tests for mathllm.pretokenize's patterns: GPT-4's cl100k pattern against its published text and by hand."""

import importlib.util
import pathlib
import random

import pytest
import regex

from mathllm.pretokenize import CL100K_SPLIT_PATTERN, GPT2_SPLIT_PATTERN, pretokenize

# tiktoken's openai_public.py, cl100k_base: the pattern as OpenAI publishes it
PUBLISHED = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""


def test_pattern_is_the_published_one():
    assert CL100K_SPLIT_PATTERN == PUBLISHED
    spec = importlib.util.find_spec("tiktoken_ext.openai_public")
    if spec is None or spec.origin is None:
        pytest.skip("tiktoken is a test extra")
    assert PUBLISHED in pathlib.Path(spec.origin).read_text()


@pytest.mark.parametrize("text,pieces", [
    ("I'LL say DON'T, don't", ["I", "'LL", " say", " DON", "'T", ",", " don", "'t"]),
    ("12345 + 6789", ["123", "45", " +", " ", "678", "9"]),
    ("def f(x):\n    return x\n\n\nend", ["def", " f", "(x", "):\n", "   ", " return", " x", "\n\n\n", "end"]),
    ("  hello  world  ", [" ", " hello", " ", " world", "  "]),
])
def test_cl100k_splits_by_hand(text, pieces):
    assert pretokenize(text, CL100K_SPLIT_PATTERN) == pieces


def test_cl100k_matches_regex_on_random_text():
    rng = random.Random(0)
    alphabet = "aZé東 \t\n\r0123456789'sSdDlLvVrReE.,:;!?()_-$😀"
    for _ in range(300):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        got = pretokenize(s, CL100K_SPLIT_PATTERN)
        assert got == regex.findall(PUBLISHED, s) and "".join(got) == s


def test_default_pattern_is_gpt2_and_bad_patterns_raise():
    assert pretokenize("DON'T 12345") == regex.findall(GPT2_SPLIT_PATTERN, "DON'T 12345")
    with pytest.raises(ValueError, match="regular expression"):
        pretokenize("abc", "(")
    with pytest.raises(TypeError):
        pretokenize("abc", 3)
