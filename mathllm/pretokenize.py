"""Pre-tokenization: cutting text into the pieces that byte-level BPE merges inside.

BPE never merges across a pre-token boundary, so ``" dog"`` and ``" dog."`` share the token
``" dog"`` instead of learning ``"dog."``, ``"dog!"``, ``"dog?"`` as separate words. The pieces are
the matches of GPT-2's regular expression (Radford et al. 2019, ``openai/gpt-2`` ``encoder.py``):
English contractions, a run of letters or of digits or of other symbols (each with at most one
leading space), and runs of whitespace, where ``\\s+(?!\\S)`` leaves the last space of a run to
the word that follows it. Special tokens such as ``<|endoftext|>`` are cut out first, longest
first where two overlap, and the text on each side is pre-tokenized on its own.

:func:`settled_length` finds how much of a text whose end has not arrived yet can already be
split for good, which is what lets :meth:`mathllm.bpe.BPETokenizer.encode_iterable` stream a file with bounded memory
and still give exactly the ids of encoding it whole.

GPT-4's ``cl100k_base`` pattern (``CL100K_SPLIT_PATTERN``, as published in ``tiktoken``'s
``openai_public.py``; ``pretokenize(text, CL100K_SPLIT_PATTERN)``) changes three things:
contractions match in any case, digit runs are cut into groups of at most three, and newlines
are grouped with the whitespace and symbols before them. Its possessive quantifiers (``?+``,
``++``) only forbid backtracking. The streaming helpers below know GPT-2's pattern only.

Leaves out: Unicode normalization; streaming with the cl100k pattern.

Book: :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable

import regex  # the `re` module has no \p{L} (Unicode letter) classes

from .checks import check_str

GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
                        r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
_PRETOKEN = regex.compile(GPT2_SPLIT_PATTERN)
_SPACES = regex.compile(r"\s*")  # the same \s as the pattern (not str.isspace, which differs)
_BOUNDARY = regex.compile(r"(?r)\S\s")  # searched backwards: the last non-space followed by a space
_LOOKAHEAD = 3  # the longest contraction, "'re", reads 3 characters before it can fail


@functools.lru_cache(maxsize=8)
def _compiled(pattern: str):
    return regex.compile(pattern)


def pretokenize(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """The pre-tokens of ``text`` under ``pattern`` (GPT-2's by default); they concatenate back to ``text``.

    >>> pretokenize("Hello world's  end!!\\n")
    ['Hello', ' world', "'s", ' ', ' end', '!!', '\\n']
    >>> pretokenize("DON'T 12345", CL100K_SPLIT_PATTERN)
    ['DON', "'T", ' ', '123', '45']

    Book: :doc:`/notebooks/08_tokenization`
    """
    check_str(text, "text")
    if pattern == GPT2_SPLIT_PATTERN:
        return _PRETOKEN.findall(text)
    try:
        return _compiled(check_str(pattern, "pattern")).findall(text)
    except regex.error as err:
        raise ValueError(f"pattern is not a valid regular expression: {err}") from None


def check_special_tokens(special_tokens: Iterable[str] | None) -> tuple[str, ...]:
    """Validate special tokens: non-empty, distinct strings. Returns them as a tuple (``None``: none;
    a dict token -> id: its keys)."""
    if special_tokens is None:
        return ()
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, got the single string {special_tokens!r}")
    if isinstance(special_tokens, bytes) or not isinstance(special_tokens, Iterable) \
            or getattr(special_tokens, "ndim", None) is not None:  # a tensor or an array is no list of strings
        raise TypeError(f"special_tokens must be a list of strings, got {type(special_tokens).__name__}")
    out = tuple(special_tokens)
    for s in out:
        if not isinstance(s, str):
            raise TypeError(f"each special token must be a str, got {type(s).__name__} {s!r}")
        if not s:
            raise ValueError("a special token must be a non-empty str, got ''")
    if len(set(out)) != len(out):
        raise ValueError(f"special tokens must be distinct, got {list(out)}")
    return out


@functools.lru_cache(maxsize=64)
def special_regex(special_tokens: tuple[str, ...]):
    """A compiled alternation of the special tokens, longest first (None when there are none).

    Alternatives are tried in order, so sorting by length makes ``"<s><s>"`` win over ``"<s>"``.
    """
    tokens = sorted(check_special_tokens(special_tokens), key=lambda s: (-len(s), s))
    return regex.compile("|".join(regex.escape(s) for s in tokens)) if tokens else None


def split_special(text: str, special_tokens: tuple[str, ...] = ()) -> list[tuple[str, bool]]:
    """Cut ``text`` at special tokens: a list of ``(segment, is_special)``, empty segments dropped.

    >>> split_special("a<|endoftext|>b", ("<|endoftext|>",))
    [('a', False), ('<|endoftext|>', True), ('b', False)]
    """
    check_str(text, "text")
    special_re = special_regex(check_special_tokens(special_tokens))
    if special_re is None:
        return [(text, False)] if text else []
    out, pos = [], 0
    for m in special_re.finditer(text):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def count_pretokens(text: str, special_tokens: Iterable[str] = ()) -> Counter:
    """How often each pre-token occurs, as UTF-8 bytes; special tokens are cut out and not counted.

    This is all that BPE training needs to read from the text: merges happen inside pre-tokens,
    so a pre-token that occurs ``f`` times contributes ``f`` to each of its pairs.
    """
    counts: Counter = Counter()
    for segment, is_special in split_special(text, check_special_tokens(special_tokens)):
        if not is_special:
            counts.update(_PRETOKEN.findall(segment))
    return Counter({w.encode("utf-8"): n for w, n in counts.items()})


def _is_stable(text: str, start: int, end: int, limit: int) -> bool:
    """Whether the pre-token ``text[start:end]`` depends only on ``text[:limit]``.

    The regex reads at most ``_LOOKAHEAD`` characters from ``start`` while trying contractions
    and one character past a run of letters, digits or symbols. A whitespace match may have
    backtracked, so it read up to the first non-space after it, plus that character.
    """
    if _SPACES.match(text, start).end() >= end:  # the piece is all whitespace
        read_to = _SPACES.match(text, end).end() + 1
    else:
        read_to = end + 1
    return max(start + _LOOKAHEAD, read_to) <= limit


def settled_length(text: str, special_tokens: tuple[str, ...] = ()) -> int:
    """Length of the longest prefix of ``text`` whose pieces no continuation of ``text`` can change.

    Splitting ``text[:n]`` (``n`` the returned length) on its own gives the same first pre-tokens
    and special tokens as splitting ``text + more``, for any ``more``. What is left out is a word
    still growing, a run of spaces, a contraction or a special token half arrived; the prefix
    never ends in spaces, which the end of the string would turn into one piece. A non-space followed by a space is always a pre-token boundary, so the search jumps
    to the last one and checks only the few pieces after it.

    >>> settled_length("one two")  # " two" may still grow into " twofold"
    3

    Book: :doc:`/notebooks/08_tokenization`
    """
    start, limit = 0, len(check_str(text, "text"))
    special_tokens = check_special_tokens(special_tokens)
    special_re = special_regex(special_tokens)
    if special_re is not None:
        # a special token may still start anywhere the longest one does not fit yet
        limit = len(text) - max(map(len, special_tokens)) + 1
        for m in special_re.finditer(text):
            if m.start() >= limit:
                break
            start = m.end()
    # every piece before such a boundary q reads at most up to q + 1, and starts before q
    boundary = _BOUNDARY.search(text, start, max(start, limit - 1))
    pos = boundary.start() + 1 if boundary else start
    settled = pos
    for m in _PRETOKEN.finditer(text, pos):
        if not _is_stable(text, m.start(), m.end(), limit):
            break
        if _SPACES.match(text, m.start()).end() < m.end():
            settled = m.end()  # never end on spaces: cut there, "\s+(?!\S)" would see the end and grow
    return settled
